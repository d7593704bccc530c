//! One instance, one round: links → downloads → checks → plan → writes → hook.
//!
//! [`Syncer::sync`] never fails as a whole: it returns a [`Report`] saying,
//! per file, what happened, and whether the round as a whole succeeded. Each
//! decision is logged once, as one structured line: `fetched`, `unchanged`,
//! `replaced` (with both SHA-256), `would replace` (dry run), or `failed` (with
//! why). File system work runs on tokio's blocking pool, so a slow disk never
//! stalls the scheduler, and a replacement that has begun always completes,
//! even when the daemon is stopping.
//!
//! Hooks: when the plan replaces files of an instance that has a hook, the
//! change is recorded in the hook ledger (merged with whatever is still owed)
//! *before* the first rename, under the instance's delivery lock; if the
//! record cannot be written, nothing is replaced. At the end of every round,
//! successful or not, [`crate::hooks::Delivery::deliver`] runs whatever hook the
//! ledger says is owed (a change of this round, or one a failed hook or a
//! crash left), unless a failed hook is waiting for its retry time and this
//! round changed nothing.
//!
//! Bundles (`keep_previous`): each verified download becomes the output's
//! bundle ([`crate::overlap::round`]: the served certificates, then the
//! previous ones kept), which the planner compares and the output's format
//! renders. The bundles' records are stored before the hook record and the
//! renames (an instance's first record, which keeps nothing, after them);
//! the hook is told `previous-dropped` when every write only dropped kept
//! certificates. (About 650 lines, 500 of them code: one round's steps in
//! order; the report types are in [`crate::report`], the bundle's rules and
//! records in [`crate::overlap`].)

use std::borrow::Cow;
use std::fs::Metadata;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::certcheck::{self, Sha256Digest, Verified, hex};
use crate::cloud::{self, Client, DownloadError};
use crate::config::{Category, Config, Instance, Output, Perms};
use crate::hooks::{ChangedFile, Delivery, HookReason};
use crate::ledger::{self, LedgerError};
use crate::output::{self, WriteError};
use crate::outputs::{self, Format, Observation};
use crate::overlap::{self, round::Planned};
use crate::plan::{self, Slot};
use crate::reason::Reason;

// What a round returns, re-exported: `sync` is where a report comes from.
pub use crate::report::{Failure, FileOutcome, FileReport, KeptReport, Report};

/// A category's download, checked: or why not, whether a retry soon may help.
type Fetched = Result<Verified, (Reason, String, bool)>;

/// One output's way through a round: its download, the file at its path,
/// the plan's decision and the write. A round keeps one per configured
/// output, in the config's order.
#[derive(Debug)]
struct OutputRound {
    /// The verified download, or why there is none (already reported).
    fetched: Result<Verified, String>,
    /// The output's format: what its bytes are made from the download.
    format: Format,
    /// What the disk step saw at the path; `None`: not looked at (yet). A
    /// symlink is not our file: it counts as none, so the plan replaces the
    /// link itself (never what it points at).
    found: Option<Observation>,
    /// What the plan decided, and how the write went.
    decision: Decision,
    /// What a successful replacement left at the path (`None` if its
    /// `fstat` failed).
    wrote: Option<Observation>,
    /// The bundle to hold (served, then kept certificates), when the
    /// download was verified.
    bundle: Option<Planned>,
    /// Why the bundle's record could not be stored.
    state_error: Option<String>,
    /// The digest of the file the output's format makes of the bundle
    /// ([`Format::digest`]): what the planner compares with the disk.
    digest: Option<Sha256Digest>,
    /// Why the output's format could make no file of the bundle.
    unmade: Option<String>,
}

/// What the plan decided for one output.
#[derive(Debug)]
enum Decision {
    /// Nothing: no verified download, or a file that could not be read.
    LeftAlone,
    /// The file is already current.
    Unchanged,
    /// Replace the file. `written`: the replacement's result, `None` when it
    /// was not attempted (a dry run).
    Replace {
        old: Option<Sha256Digest>,
        new: Sha256Digest,
        written: Option<Result<(), String>>,
    },
}

impl OutputRound {
    fn new(fetched: Result<Verified, String>, format: Format) -> Self {
        OutputRound {
            fetched,
            format,
            found: None,
            decision: Decision::LeftAlone,
            wrote: None,
            bundle: None,
            state_error: None,
            digest: None,
            unmade: None,
        }
    }

    /// The planner's view of this output.
    fn slot(&self, out: &Output) -> Slot {
        let (on_disk, readable) = match self.found.as_ref().map(Observation::digest) {
            Some(Ok(digest)) => (digest, true),
            Some(Err(_)) | None => (None, false),
        };
        Slot {
            category: out.category,
            path: out.path.clone(),
            on_disk,
            // A file we cannot read is never overwritten blindly.
            verified: if readable { self.digest } else { None },
        }
    }

    /// Records how the replacement with the bytes of digest `new` went;
    /// `Ok` carries the new file's `fstat`, from which (and the bundle
    /// written) what is there now is known, without reading it again.
    fn written(&mut self, result: Result<Option<Metadata>, String>, new: Sha256Digest) {
        if let (Ok(Some(meta)), Some(b)) = (&result, &self.bundle) {
            self.wrote = Some(Observation::written(new, &b.bundle.certs, meta));
        }
        if let Decision::Replace { written, .. } = &mut self.decision {
            *written = Some(result.map(drop));
        }
    }

    /// The bytes to write, in the output's format: its bundle, rendered
    /// anew at each call (a truststore's salts are fresh each time).
    /// Blocking: a truststore reads its password.
    fn render(&self) -> Result<Cow<'_, [u8]>, String> {
        match &self.bundle {
            Some(b) => self.format.render(&b.bundle.pem),
            None => Err("nothing verified to write".into()),
        }
    }

    /// Whether the disk step could read what is at the path (a file, or
    /// nothing): only then is the output written, and its record stored.
    fn readable(&self) -> bool {
        matches!(self.found.as_ref().map(Observation::digest), Some(Ok(_)))
    }

    /// What is at the path after the round.
    fn after(&self) -> Option<Observation> {
        match &self.decision {
            Decision::Replace {
                written: Some(Ok(())),
                ..
            } => self.wrote.clone(),
            _ => self.found.clone(),
        }
    }
}

/// Runs rounds. Shared by the scheduler's tasks.
#[derive(Debug)]
pub struct Syncer {
    pub client: Client,
    pub dry_run: bool,
    /// Hook records and delivery (`sync.state_dir`).
    pub delivery: Arc<Delivery>,
}

impl Syncer {
    /// Builds the API client for `config` (TLS roots, credentials, timeout),
    /// telling `observer` of every API answer. Blocking: it reads
    /// `cloud.ca_file` (once, for every client) and the system's roots.
    pub fn new(
        config: &Config,
        dry_run: bool,
        delivery: Arc<Delivery>,
        observer: cloud::ApiObserver,
    ) -> Result<Syncer, cloud::BuildError> {
        let roots = cloud::configured_roots(&config.cloud)?;
        let credentials = cloud::auth::Credentials::with_roots(&config.auth, Ok(roots.clone()));
        Ok(Syncer {
            client: Client::with_roots(
                &config.cloud,
                roots,
                credentials,
                config.sync.timeout,
                config.sync.concurrency,
            )?
            .observed_by(observer),
            dry_run,
            delivery,
        })
    }

    /// Syncs one instance once, then delivers any hook it is owed.
    pub async fn sync(self: &Arc<Self>, inst: &Instance) -> Report {
        if self.dry_run {
            return self.sync_files(inst).await.0;
        }
        let held = self.delivery.hold(&inst.id).await;
        let (mut report, planned_writes) = self.sync_files(inst).await;
        // An instance without a hook had any record of one it was owed
        // dropped by `sync_files`, on the blocking pool it was on anyway.
        if inst.has_hook() && (planned_writes || !self.delivery.waiting(&inst.id)) {
            // The hook record is corrected against what this round saw and
            // wrote: the files are not read again.
            let seen = (report.files.iter())
                .filter_map(|f| Some((f.path.clone(), f.seen.clone()?)))
                .collect();
            report.hook = self.delivery.deliver(inst, &held, seen).await;
        }
        report
    }

    /// The files part of a round. Also says whether the plan had writes.
    async fn sync_files(self: &Arc<Self>, inst: &Instance) -> (Report, bool) {
        let mut report = Report::default();
        let id = inst.id.as_str();
        let name = inst.label();

        let links = match self
            .client
            .download_links(inst.service, &inst.project_id, id)
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(
                    instance = %name,
                    instance_id = %id, service = %inst.service,
                    reason = %e.reason(),
                    "failed: {e}"
                );
                report.retry_after = e.retry_after();
                report.fail(e.reason(), e.to_string(), e.is_transient());
                return (report, false);
            }
        };

        let rounds = self.fetch_all(inst, &links, &mut report).await;

        // Compare with the disk and write, on the blocking pool.
        let this = Arc::clone(self);
        let inst_c = inst.clone();
        let disk = tokio::task::spawn_blocking(move || {
            let applied = this.apply(&inst_c, rounds);
            let unhooked = (!this.dry_run && !inst_c.has_hook())
                .then(|| crate::hooks::drop_unwanted(this.delivery.ledger(), &inst_c));
            (applied, unhooked)
        })
        .await;
        let ((rounds, planned_writes), unhooked) = match disk {
            Ok(r) => r,
            Err(e) => {
                report.fail(Reason::Internal, format!("disk task failed: {e}"), false);
                return (report, false);
            }
        };
        if let Some(dropped) = unhooked {
            report.hook = self.delivery.nothing_owed(inst, dropped);
        }

        for (out, round) in inst.outputs.iter().zip(rounds) {
            let outcome = self.conclude(inst, out, &round, &mut report);
            self.conclude_bundle(inst, out, &round, &outcome, &mut report);
            report.files.push(FileReport {
                category: out.category,
                output: out.name(),
                path: out.path.clone(),
                outcome,
                seen: round.after(),
                pem: (round.bundle.zip(round.digest))
                    .map(|(b, digest)| (b.bundle.pem, digest, round.format)),
            });
        }

        (report, planned_writes)
    }

    /// Downloads and checks every configured category, once each whatever
    /// the outputs made of it, and starts each output's round with it.
    /// Failures are logged and reported.
    async fn fetch_all(
        &self,
        inst: &Instance,
        links: &[cloud::Link],
        report: &mut Report,
    ) -> Vec<OutputRound> {
        let mut rounds = Vec::with_capacity(inst.outputs.len());
        let mut downloads: Vec<(Category, Fetched)> = Vec::new();
        for out in &inst.outputs {
            let fetched = match downloads.iter().find(|(c, _)| *c == out.category) {
                Some((_, f)) => f.clone(),
                None => {
                    let f = self.fetch(inst, out.category, links).await;
                    downloads.push((out.category, f.clone()));
                    f
                }
            };
            let format = Format::of(out);
            let fetched = fetched.map_err(|(reason, msg, transient)| {
                tracing::warn!(
                    instance = %inst.label(),
                    instance_id = %inst.id, service = %inst.service,
                    category = %out.category,
                    output = out.name(),
                    reason = %reason,
                    "failed: {msg}; keeping {}",
                    out.path.display()
                );
                report.fail(reason, format!("{}: {msg}", out.name()), transient);
                msg
            });
            rounds.push(OutputRound::new(fetched, format));
        }
        rounds
    }

    /// What became of one output, logged once (and reported, when it failed
    /// on the disk).
    fn conclude(
        &self,
        inst: &Instance,
        out: &Output,
        round: &OutputRound,
        report: &mut Report,
    ) -> FileOutcome {
        let (name, id, category, path) = (inst.label(), &inst.id, out.category, out.path.display());
        if let Err(msg) = &round.fetched {
            return FileOutcome::Failed(msg.clone());
        }
        if let Some(Observation::Unreadable(e)) = &round.found {
            let e = format!("cannot read {path}: {e}");
            tracing::warn!(instance = %name, instance_id = %id, service = %inst.service, category = %category, output = out.name(), reason = %Reason::Disk, "failed: {e}");
            report.fail(Reason::Disk, format!("{}: {e}", out.name()), false);
            return FileOutcome::Failed(e.clone());
        }
        if let Some(e) = &round.unmade {
            tracing::warn!(instance = %name, instance_id = %id, service = %inst.service, category = %category, output = out.name(), reason = %Reason::Verify, "failed: {e}; keeping {path}");
            report.fail(Reason::Verify, format!("{}: {e}", out.name()), false);
            return FileOutcome::Failed(e.clone());
        }
        let (old, new, written) = match &round.decision {
            Decision::LeftAlone => return FileOutcome::Failed("not fetched".into()),
            Decision::Unchanged => {
                tracing::info!(instance = %name, instance_id = %id, service = %inst.service, category = %category, output = out.name(), path = %path, "unchanged");
                return FileOutcome::Unchanged;
            }
            Decision::Replace { old, new, written } => (*old, *new, written),
        };
        let (old_hex, new_hex) = (old.as_ref().map(hex).unwrap_or_default(), hex(&new));
        match written {
            None if self.dry_run => {
                tracing::info!(instance = %name, instance_id = %id, service = %inst.service, category = %category, output = out.name(), path = %path, old_sha256 = %old_hex, new_sha256 = %new_hex, "would replace (dry run)");
                FileOutcome::WouldReplace { old, new }
            }
            Some(Ok(())) => {
                if matches!(round.found, Some(Observation::Link)) {
                    tracing::warn!(instance = %name, instance_id = %id, service = %inst.service, category = %category, output = out.name(), path = %path, "was a symbolic link; replaced by a regular file");
                }
                tracing::info!(instance = %name, instance_id = %id, service = %inst.service, category = %category, output = out.name(), path = %path, old_sha256 = %old_hex, new_sha256 = %new_hex, "replaced");
                FileOutcome::Replaced { old, new }
            }
            Some(Err(e)) => {
                tracing::warn!(instance = %name, instance_id = %id, service = %inst.service, category = %category, output = out.name(), reason = %Reason::Write, "failed: {e}");
                report.fail(Reason::Write, format!("{}: {e}", out.name()), false);
                FileOutcome::Failed(e.clone())
            }
            None => FileOutcome::Failed("not written".into()),
        }
    }

    /// What became of one output's bundle: each keep and drop logged, what
    /// it keeps reported, and a record that could not be stored failed.
    fn conclude_bundle(
        &self,
        inst: &Instance,
        out: &Output,
        round: &OutputRound,
        outcome: &FileOutcome,
        report: &mut Report,
    ) {
        let Some(b) = &round.bundle else { return };
        if round.readable() {
            overlap::round::log_events(inst, b, self.dry_run);
            if !matches!(outcome, FileOutcome::Failed(_)) {
                report.kept.push(b.kept_report(inst));
            }
        }
        if let Some(e) = &round.state_error {
            tracing::warn!(instance = %inst.label(), instance_id = %inst.id, service = %inst.service, category = %out.category, reason = %Reason::Disk, "failed: {e}; the file holds the new bundle, but the windows of its previous certificates start again at the next round");
            report.fail(Reason::Disk, format!("{}: {e}", out.category), false);
        }
    }

    /// Downloads and checks one category.
    async fn fetch(&self, inst: &Instance, category: Category, links: &[cloud::Link]) -> Fetched {
        let Some(link) = links.iter().find(|l| l.category == category.as_str()) else {
            let listed: Vec<&str> = links.iter().map(|l| l.category.as_str()).collect();
            return Err((
                Reason::ApiMissingCategory,
                format!(
                    "the API's answer has no {category} certificate (it lists: {})",
                    if listed.is_empty() {
                        "nothing".to_string()
                    } else {
                        listed.join(", ")
                    }
                ),
                false,
            ));
        };
        let body = self
            .client
            .download(&link.url)
            .await
            .map_err(|e: DownloadError| {
                (
                    Reason::Download,
                    format!(
                        "download from {} failed: {e}",
                        cloud::redact_link(&link.url)
                    ),
                    e.is_transient(),
                )
            })?;
        let policy = certcheck::Policy {
            allow_non_ca: inst.allow_non_ca,
        };
        let verified = certcheck::verify_with(&body, SystemTime::now(), policy)
            .map_err(|e| (Reason::Verify, format!("refused the download: {e}"), false))?;
        for c in &verified.certs {
            let ca = match c.ca {
                Some(true) => "yes",
                Some(false) => "no",
                None => "unstated",
            };
            tracing::info!(
                instance = %inst.label(),
                instance_id = %inst.id, service = %inst.service,
                category = %category,
                subject = %c.subject,
                ca,
                not_after = %certcheck::format_time(c.not_after),
                sha256 = %hex(&verified.sha256),
                "fetched"
            );
            if c.ca == Some(false) {
                tracing::warn!(
                    instance = %inst.label(),
                    instance_id = %inst.id, service = %inst.service,
                    category = %category,
                    subject = %c.subject,
                    "accepted a certificate that is not a CA (basicConstraints CA:FALSE) because allow_non_ca = true"
                );
            }
        }
        Ok(verified)
    }

    /// Reads the disk and the records of kept certificates, decides each
    /// output's bundle, plans, and (unless dry-running) stores the records
    /// that changed and writes: fills in each output's `found`, `bundle`
    /// and `decision`. Also says whether the plan had writes. Blocking.
    fn apply(&self, inst: &Instance, mut rounds: Vec<OutputRound>) -> (Vec<OutputRound>, bool) {
        let store = overlap::Store::new(self.delivery.ledger().dir());
        let now = crate::health::unix_now();
        let recorded = read_outputs(&store, inst, &mut rounds, now);
        let slots: Vec<Slot> = inst
            .outputs
            .iter()
            .zip(&rounds)
            .map(|(out, round)| round.slot(out))
            .collect();
        let plan = plan::plan(&slots, inst.has_hook());
        for &i in &plan.unchanged {
            rounds[i].decision = Decision::Unchanged;
        }
        for w in &plan.writes {
            rounds[w.slot].decision = Decision::Replace {
                old: w.old,
                new: w.new,
                written: None,
            };
        }
        let planned_writes = !plan.writes.is_empty();
        if self.dry_run {
            return (rounds, planned_writes);
        }
        // The windows are on disk before the files change; an instance's
        // first record, which keeps nothing, is written after them.
        let first = overlap::round::is_first_record(&recorded, &planned_bundles(&rounds).1);
        if !first {
            store_records(&store, inst, &recorded, &mut rounds, false);
        }
        // The bytes of every file to replace, made before anything is
        // recorded or renamed: a file whose bytes cannot be made (a
        // truststore whose password cannot be read) is not replaced and owes
        // no hook.
        let mut todo: Vec<(&plan::Change, Vec<u8>)> = Vec::with_capacity(plan.writes.len());
        for w in &plan.writes {
            match rounds[w.slot].render() {
                Ok(bytes) => todo.push((w, bytes.into_owned())),
                Err(e) => rounds[w.slot].written(Err(format!("not replaced: {e}")), w.new),
            }
        }
        // The hook is owed from before the first rename on; it is told why.
        let reason = if (todo.iter())
            .all(|(w, _)| (rounds[w.slot].bundle.as_ref()).is_some_and(|b| b.decision.only_drops()))
        {
            HookReason::PreviousDropped
        } else {
            HookReason::Updated
        };
        if plan.run_hook
            && !todo.is_empty()
            && let Err(e) = self.record_owed(inst, todo.iter().map(|(w, _)| *w), reason)
        {
            let msg = format!("not replaced: {e}");
            for (w, _) in &todo {
                rounds[w.slot].written(Err(msg.clone()), w.new);
            }
            return (rounds, planned_writes);
        }
        let files: Vec<(&Path, &[u8], &Perms)> = (todo.iter())
            .map(|(w, bytes)| (w.path.as_path(), bytes.as_slice(), &inst.perms))
            .collect();
        let results = output::replace_all(&files);
        for ((w, _), result) in todo.iter().zip(results) {
            rounds[w.slot].written(result.map_err(|e: WriteError| e.to_string()), w.new);
        }
        if first {
            store_records(&store, inst, &recorded, &mut rounds, true);
        }
        (rounds, planned_writes)
    }

    /// Adds these changes of the plan to the instance's hook record, durably.
    /// Blocking.
    fn record_owed<'a>(
        &self,
        inst: &Instance,
        writes: impl Iterator<Item = &'a plan::Change>,
        reason: HookReason,
    ) -> Result<(), LedgerError> {
        let ledger = self.delivery.ledger();
        let prev = ledger.load_or_rebuild(inst)?;
        let created = prev.is_none();
        let changes: Vec<ChangedFile> = writes
            .map(|w| ChangedFile {
                path: w.path.clone(),
                old: w.old,
                new: w.new,
            })
            .collect();
        ledger.store(&ledger::merge_with(&inst.id, prev, &changes, reason))?;
        self.delivery.recorded(&inst.id, created);
        Ok(())
    }
}

/// The outputs of this round that have a bundle to hold (read, planned):
/// their indexes and their bundles.
fn planned_bundles(rounds: &[OutputRound]) -> (Vec<usize>, Vec<&Planned>) {
    (rounds.iter().enumerate())
        .filter(|(_, r)| r.readable())
        .filter_map(|(i, r)| Some((i, r.bundle.as_ref()?)))
        .unzip()
}

/// Stores the instance's record of kept certificates as this round planned
/// it ([`overlap::round::store_states`]; `first`: an instance's first, not
/// made durable) and notes any failure on each output it concerns. Blocking.
fn store_records(
    store: &overlap::Store,
    inst: &Instance,
    recorded: &overlap::round::Recorded,
    rounds: &mut [OutputRound],
    first: bool,
) {
    let (with_bundle, bundles) = planned_bundles(rounds);
    let stored = overlap::round::store_states(store, inst, recorded, &bundles, first);
    for (i, r) in with_bundle.into_iter().zip(stored) {
        rounds[i].state_error = r.err();
    }
}

/// The round's one read of each output, with the bundle it is to hold
/// ([`overlap::round::plan_output`], from the instance's record of kept
/// certificates, read once and returned for storing) and the digest of the
/// file its format makes of that bundle; fills in each output's `found`,
/// `bundle` and `digest`, or says why its file cannot be made. Blocking.
fn read_outputs(
    store: &overlap::Store,
    inst: &Instance,
    rounds: &mut [OutputRound],
    now: i64,
) -> overlap::round::Recorded {
    for (out, round) in inst.outputs.iter().zip(rounds.iter_mut()) {
        match round.format.resolved() {
            Ok(f) => round.format = f,
            Err(e) => round.unmade = Some(format!("cannot make a {}: {e}", out.name())),
        }
    }
    // What was served and what is recorded is parsed already: a record or a
    // file holding the same certificates takes them from there.
    let served: Vec<&certcheck::CertInfo> = (rounds.iter())
        .filter_map(|r| r.fetched.as_ref().ok())
        .flat_map(|v| &v.certs)
        .collect();
    let recorded = overlap::round::Recorded::read(store, inst, &served);
    let mut known = served;
    known.extend(recorded.certs());
    let looked: Vec<(Observation, Option<Planned>)> = (inst.outputs.iter())
        .zip(rounds.iter())
        .map(|(out, round)| {
            let seen = outputs::observe_knowing(&out.path, &round.format, &known);
            let planned = (round.fetched.as_ref().ok())
                .map(|v| overlap::round::plan_output(&recorded, inst, out, v, now, &seen));
            (seen, planned)
        })
        .collect();
    drop(known);
    for ((out, round), (seen, planned)) in inst.outputs.iter().zip(rounds.iter_mut()).zip(looked) {
        if let Some(b) = &planned {
            match round.format.digest(&b.bundle.pem) {
                Ok(d) => round.digest = Some(d),
                Err(e) => {
                    round
                        .unmade
                        .get_or_insert(format!("cannot make a {}: {e}", out.name()));
                }
            }
        }
        round.bundle = planned;
        round.found = Some(seen);
    }
    recorded
}
