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
//! successful or not, [`hooks::Delivery::deliver`] runs whatever hook the
//! ledger says is owed (a change of this round, or one a failed hook or a
//! crash left), unless a failed hook is waiting for its retry time and this
//! round changed nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::certcheck::{self, Sha256Digest, Verified, hex};
use crate::cloud::{self, Client, DownloadError};
use crate::config::{Category, Config, Instance, Perms};
use crate::hooks::{ChangedFile, Delivery, HookError};
use crate::ledger::{self, LedgerError};
use crate::output::{self, WriteError};
use crate::plan::{self, Slot};

/// What happened to one output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    Unchanged,
    Replaced {
        old: Option<Sha256Digest>,
        new: Sha256Digest,
    },
    /// Dry run: it would have been replaced.
    WouldReplace {
        old: Option<Sha256Digest>,
        new: Sha256Digest,
    },
    Failed(String),
}

/// One file's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    pub category: Category,
    pub path: PathBuf,
    pub outcome: FileOutcome,
    /// The canonical PEM fetched, when it passed the checks: what the file
    /// holds after `Unchanged` or `Replaced` (kept by the self-healing).
    pub pem: Option<Vec<u8>>,
}

/// Why a round failed, for the log and for the metrics' `reason` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: &'static str,
    pub message: String,
}

/// The result of one round for one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub files: Vec<FileReport>,
    /// `None`: no hook was due. `Some(Ok)`: it ran and succeeded.
    pub hook: Option<Result<(), HookError>>,
    pub failures: Vec<Failure>,
    /// Whether a retry soon may help (network trouble, throttling, 5xx).
    pub transient: bool,
    /// The delay the server asked for.
    pub retry_after: Option<Duration>,
}

impl Report {
    /// Whether every configured file is in place and current and any hook
    /// succeeded.
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && !matches!(self.hook, Some(Err(_)))
    }

    /// One line for humans: what happened to each file.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .files
            .iter()
            .map(|f| {
                let what = match &f.outcome {
                    FileOutcome::Unchanged => "unchanged".to_string(),
                    FileOutcome::Replaced { old: None, .. } => "created".to_string(),
                    FileOutcome::Replaced { .. } => "replaced".to_string(),
                    FileOutcome::WouldReplace { old: None, .. } => "would be created".to_string(),
                    FileOutcome::WouldReplace { .. } => "would be replaced".to_string(),
                    FileOutcome::Failed(why) => format!("FAILED ({why})"),
                };
                format!("{} {what}", f.category)
            })
            .collect();
        if parts.is_empty() {
            // The API call itself failed.
            parts.extend(self.failures.iter().map(|f| f.message.clone()));
        }
        match &self.hook {
            Some(Ok(())) => parts.push("hook ok".into()),
            Some(Err(e)) => parts.push(format!("hook FAILED ({e})")),
            None => {}
        }
        parts.join("; ")
    }

    fn fail(&mut self, reason: &'static str, message: String, transient: bool) {
        self.transient |= transient;
        self.failures.push(Failure { reason, message });
    }
}

/// What the disk step of a round saw and did.
struct Applied {
    /// Per output: its slot for the planner, and why its file could not be read.
    slots: Vec<(Slot, Option<String>)>,
    /// Per output: whether a symlink was at its path (replaced, if written).
    links: Vec<bool>,
    plan: plan::Plan,
    /// Per written slot: the outcome of its replacement.
    writes: Vec<(usize, Result<(), String>)>,
    /// The verified downloads, handed back.
    fetched: Vec<Option<Verified>>,
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
    /// Builds the API client for `config` (TLS roots, credentials, timeout).
    /// Blocking: it reads `cloud.ca_file` (once, for every client) and the
    /// system's roots.
    pub fn new(
        config: &Config,
        dry_run: bool,
        delivery: Arc<Delivery>,
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
            )?,
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
        if planned_writes || !self.delivery.waiting(&inst.id) {
            report.hook = self.delivery.deliver(inst, &held).await;
        }
        report
    }

    /// The files part of a round. Also says whether the plan had writes.
    async fn sync_files(self: &Arc<Self>, inst: &Instance) -> (Report, bool) {
        let mut report = Report::default();
        let id = inst.id.as_str();
        let name = inst.label();

        let links = match self.client.download_links(&inst.project_id, id).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(
                    instance = %name,
                    instance_id = %id,
                    reason = e.reason(),
                    "failed: {e}"
                );
                report.retry_after = e.retry_after();
                report.fail(e.reason(), e.to_string(), e.is_transient());
                return (report, false);
            }
        };

        // Download and check every configured category.
        let mut fetched: Vec<Option<Verified>> = Vec::with_capacity(inst.outputs.len());
        let mut errors: Vec<Option<String>> = Vec::with_capacity(inst.outputs.len());
        for out in &inst.outputs {
            match self.fetch(inst, out.category, &links).await {
                Ok(v) => {
                    fetched.push(Some(v));
                    errors.push(None);
                }
                Err((reason, msg, transient)) => {
                    tracing::warn!(
                        instance = %name,
                        instance_id = %id,
                        category = %out.category,
                        reason,
                        "failed: {msg}; keeping {}",
                        out.path.display()
                    );
                    report.fail(reason, format!("{}: {msg}", out.category), transient);
                    fetched.push(None);
                    errors.push(Some(msg));
                }
            }
        }

        // Compare with the disk and write, on the blocking pool.
        let this = Arc::clone(self);
        let inst_c = inst.clone();
        let disk = tokio::task::spawn_blocking(move || this.apply(&inst_c, fetched)).await;
        let Applied {
            slots,
            links,
            plan,
            writes,
            fetched,
        } = match disk {
            Ok(r) => r,
            Err(e) => {
                report.fail("internal", format!("disk task failed: {e}"), false);
                return (report, false);
            }
        };

        for (i, out) in inst.outputs.iter().enumerate() {
            let outcome = if let Some(msg) = &errors[i] {
                FileOutcome::Failed(msg.clone())
            } else if let Some(slot_err) = &slots[i].1 {
                tracing::warn!(instance = %name, instance_id = %id, category = %out.category, reason = "disk", "failed: {slot_err}");
                report.fail("disk", format!("{}: {slot_err}", out.category), false);
                FileOutcome::Failed(slot_err.clone())
            } else if plan.unchanged.contains(&i) {
                tracing::info!(instance = %name, instance_id = %id, category = %out.category, path = %out.path.display(), "unchanged");
                FileOutcome::Unchanged
            } else if let Some(w) = plan.writes.iter().find(|w| w.slot == i) {
                let old_hex = w.old.as_ref().map(hex).unwrap_or_default();
                let new_hex = hex(&w.new);
                match writes.iter().find(|(s, _)| *s == i).map(|(_, r)| r) {
                    None if self.dry_run => {
                        tracing::info!(instance = %name, instance_id = %id, category = %out.category, path = %out.path.display(), old_sha256 = %old_hex, new_sha256 = %new_hex, "would replace (dry run)");
                        FileOutcome::WouldReplace {
                            old: w.old,
                            new: w.new,
                        }
                    }
                    Some(Ok(())) => {
                        if links[i] {
                            tracing::warn!(instance = %name, instance_id = %id, category = %out.category, path = %out.path.display(), "was a symbolic link; replaced by a regular file");
                        }
                        tracing::info!(instance = %name, instance_id = %id, category = %out.category, path = %out.path.display(), old_sha256 = %old_hex, new_sha256 = %new_hex, "replaced");
                        FileOutcome::Replaced {
                            old: w.old,
                            new: w.new,
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(instance = %name, instance_id = %id, category = %out.category, reason = "write", "failed: {e}");
                        report.fail("write", format!("{}: {e}", out.category), false);
                        FileOutcome::Failed(e.clone())
                    }
                    None => FileOutcome::Failed("not written".into()),
                }
            } else {
                FileOutcome::Failed("not fetched".into())
            };
            report.files.push(FileReport {
                category: out.category,
                path: out.path.clone(),
                outcome,
                pem: fetched[i].as_ref().map(|v| v.pem.clone()),
            });
        }

        (report, !plan.writes.is_empty())
    }

    /// Downloads and checks one category.
    async fn fetch(
        &self,
        inst: &Instance,
        category: Category,
        links: &[cloud::Link],
    ) -> Result<Verified, (&'static str, String, bool)> {
        let Some(link) = links.iter().find(|l| l.category == category.as_str()) else {
            let listed: Vec<&str> = links.iter().map(|l| l.category.as_str()).collect();
            return Err((
                "api_missing_category",
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
                    "download",
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
            .map_err(|e| ("verify", format!("refused the download: {e}"), false))?;
        for c in &verified.certs {
            let ca = match c.ca {
                Some(true) => "yes",
                Some(false) => "no",
                None => "unstated",
            };
            tracing::info!(
                instance = %inst.label(),
                instance_id = %inst.id,
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
                    instance_id = %inst.id,
                    category = %category,
                    subject = %c.subject,
                    "accepted a certificate that is not a CA (basicConstraints CA:FALSE) because allow_non_ca = true"
                );
            }
        }
        Ok(verified)
    }

    /// Reads the disk, plans, and (unless dry-running) writes. Blocking.
    fn apply(&self, inst: &Instance, fetched: Vec<Option<Verified>>) -> Applied {
        let mut links = vec![false; inst.outputs.len()];
        let slots: Vec<(Slot, Option<String>)> = inst
            .outputs
            .iter()
            .zip(&fetched)
            .enumerate()
            .map(|(i, (out, v))| {
                // A symlink is not our file: it counts as no file, so the
                // plan replaces the link itself (never what it points at).
                let (on_disk, err) = match output::existing_digest(&out.path) {
                    Ok(existing) => {
                        links[i] = existing == output::Existing::Link;
                        (existing.file(), None)
                    }
                    Err(e) => (
                        None,
                        Some(format!("cannot read {}: {e}", out.path.display())),
                    ),
                };
                let slot = Slot {
                    category: out.category,
                    path: out.path.clone(),
                    on_disk,
                    // A file we cannot read is never overwritten blindly.
                    verified: if err.is_some() {
                        None
                    } else {
                        v.as_ref().map(|v| v.sha256)
                    },
                };
                (slot, err)
            })
            .collect();
        let plain: Vec<Slot> = slots.iter().map(|(s, _)| s.clone()).collect();
        let plan = plan::plan(&plain, inst.has_hook());
        let mut writes = Vec::new();
        if !self.dry_run && plan.run_hook {
            // The hook is owed from before the first rename on.
            if let Err(e) = self.record_owed(inst, &plan) {
                let msg = format!("not replaced: {e}");
                writes = plan
                    .writes
                    .iter()
                    .map(|w| (w.slot, Err(msg.clone())))
                    .collect();
                return Applied {
                    slots,
                    links,
                    plan,
                    writes,
                    fetched,
                };
            }
        }
        if !self.dry_run {
            let todo: Vec<(usize, &Path, &[u8], &Perms)> = plan
                .writes
                .iter()
                .filter_map(|w| {
                    let v = fetched[w.slot].as_ref()?;
                    Some((w.slot, w.path.as_path(), v.pem.as_slice(), &inst.perms))
                })
                .collect();
            let files: Vec<_> = todo.iter().map(|(_, p, b, m)| (*p, *b, *m)).collect();
            let results = output::replace_all(&files);
            writes.extend(
                todo.iter()
                    .zip(results)
                    .map(|((slot, ..), r)| (*slot, r.map_err(|e: WriteError| e.to_string()))),
            );
        }
        Applied {
            slots,
            links,
            plan,
            writes,
            fetched,
        }
    }

    /// Adds the plan's changes to the instance's hook record, durably.
    /// Blocking.
    fn record_owed(&self, inst: &Instance, plan: &plan::Plan) -> Result<(), LedgerError> {
        let ledger = self.delivery.ledger();
        let prev = ledger.load_or_rebuild(inst)?;
        let changes: Vec<ChangedFile> = plan
            .writes
            .iter()
            .map(|w| ChangedFile {
                path: w.path.clone(),
                old: w.old,
                new: w.new,
            })
            .collect();
        ledger.store(&ledger::merge(&inst.id, prev, &changes))
    }
}
