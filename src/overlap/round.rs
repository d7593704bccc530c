//! One output's bundle in a round: the durable state read (or, only without
//! one and with a `keep_previous`, the file the round's look found holding
//! certificates: the one case an output is read twice in a round),
//! [`decide`] asked, and what it did logged.
//!
//! Blocking (reads `state_dir` and the output); the sync step calls
//! [`plan_output`] on the blocking pool, stores the states that changed
//! before any rename, and logs the events with [`log_events`] once it knows
//! what was written.

use std::path::Path;

use super::{Decision, Event, Input, Store, StoreError, Why, decide};
use crate::certcheck::{self, CertInfo, Verified, format_time, hex};
use crate::config::{Category, Instance, Output};
use crate::outputs::{self, Content, FileSeen, Format, Observation};
use crate::readfile::{self, Links};
use crate::report::KeptReport;

/// What becomes of an output's stored state after a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// It is current (or nothing is stored and nothing needs to be).
    Keep,
    /// The decided state differs from the stored one.
    Store,
    /// `keep_previous = 0s`: nothing is kept and no state is needed; one
    /// left from before goes, so that a later `keep_previous` never takes
    /// its stale "current" certificates for ones superseded now.
    Remove,
}

/// One output's bundle for this round.
#[derive(Debug)]
pub struct Planned {
    pub category: Category,
    pub decision: Decision,
    /// The bundle, served certificates then kept ones, as one verified
    /// download (each was verified when it was served): what the output's
    /// format renders into the file.
    pub bundle: Verified,
    /// What to do with the stored state.
    pub persist: Persist,
    /// Why no stored state could be used, when one was there.
    pub unreadable: Option<StoreError>,
}

impl Planned {
    /// When the next kept certificate leaves, under `inst`'s keep_previous.
    pub fn next_drop(&self, inst: &Instance) -> Option<i64> {
        self.decision.next_drop(inst.keep_previous)
    }

    /// What the output keeps, for the round's report.
    pub fn kept_report(&self, inst: &Instance) -> KeptReport {
        let state = &self.decision.state;
        KeptReport {
            category: self.category,
            kept: state.kept.len(),
            next_drop: self.next_drop(inst),
            current_not_after: state.current.iter().map(|c| c.not_after).min().unwrap_or(0),
        }
    }
}

/// The certificates in the file at `path` (as its `format` reads them: a
/// truststore's entries too), for an output without a record:
/// none when it is missing, a link (never followed), unreadable, or holds
/// anything but certificates. Read only when the round's look (`seen`)
/// found a file of certificates, so an output without one is read once.
fn in_file(path: &Path, format: &Format, seen: &Observation) -> Vec<CertInfo> {
    let Observation::File(FileSeen {
        content: Content::Certs { .. },
        ..
    }) = seen
    else {
        return Vec::new();
    };
    match readfile::read_regular(path, outputs::MAX_EXISTING, Links::Refuse) {
        Ok(Some(bytes)) => format.certs(&bytes).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Decides the bundle of one output from what was served (`served`,
/// verified) at Unix time `now`; `seen` is the round's look at the path.
/// Reads the output's record and, only without one (and with a
/// `keep_previous`), the file. Blocking.
pub fn plan_output(
    store: &Store,
    inst: &Instance,
    out: &Output,
    served: &Verified,
    now: i64,
    seen: &Observation,
) -> Planned {
    let category = out.category;
    let (previous, unreadable) = match store.load(&inst.id, category) {
        Ok(s) => (s, None),
        Err(e) => (None, Some(e)),
    };
    let file = if previous.is_none() && !inst.keep_previous.is_zero() {
        in_file(&out.path, &Format::of(out), seen)
    } else {
        Vec::new()
    };
    let decision = decide(Input {
        previous: previous.as_ref(),
        in_file: &file,
        served: &served.certs,
        now,
        keep: inst.keep_previous,
        allow_non_ca: inst.allow_non_ca,
    });
    let pem = certcheck::pem_of(decision.bundle().iter().map(|c| c.der.as_slice()));
    let bundle = Verified {
        sha256: certcheck::sha256(&pem),
        pem,
        certs: decision.bundle().into_iter().cloned().collect(),
    };
    let persist = if inst.keep_previous.is_zero() {
        if previous.is_some() || unreadable.is_some() {
            Persist::Remove
        } else {
            Persist::Keep
        }
    } else if previous.as_ref() != Some(&decision.state) {
        Persist::Store
    } else {
        Persist::Keep
    };
    Planned {
        category,
        persist,
        bundle,
        decision,
        unreadable,
    }
}

/// Stores (or removes) the states of an instance's planned outputs, as each
/// [`Planned::persist`] says: one result per output, in order. The records
/// stored are written together, with one fsync of `state_dir`
/// ([`Store::store_all`]). A failure to store matters only when
/// certificates are kept (their windows would start again at the next
/// round); otherwise the next round rebuilds the same state from the file.
/// Blocking.
pub fn store_states(
    store: &Store,
    inst: &Instance,
    planned: &[&Planned],
) -> Vec<Result<(), StoreError>> {
    let to_store: Vec<(Category, &super::State)> = (planned.iter())
        .filter(|p| p.persist == Persist::Store)
        .map(|p| (p.category, &p.decision.state))
        .collect();
    let mut stored = store.store_all(&inst.id, &to_store).into_iter();
    (planned.iter())
        .map(|p| {
            let r = match p.persist {
                Persist::Keep => return Ok(()),
                Persist::Remove => return store.remove(&inst.id, p.category),
                Persist::Store => stored.next().unwrap_or(Ok(())),
            };
            match r {
                Err(e) if p.decision.state.kept.is_empty() => {
                    tracing::debug!(instance = %inst.label(), instance_id = %inst.id, service = %inst.service, category = %p.category, "{e}");
                    Ok(())
                }
                other => other,
            }
        })
        .collect()
}

/// Logs what the decision did for one output: one line per certificate
/// kept, dropped, not kept or current again, with its subject, SHA-256
/// fingerprint and drop time. `dry_run`: nothing was written.
pub fn log_events(inst: &Instance, planned: &Planned, dry_run: bool) {
    let (name, id, category) = (inst.label(), inst.id.as_str(), planned.category);
    if let Some(e) = &planned.unreadable {
        tracing::warn!(instance = %name, instance_id = %id, service = %inst.service, %category, "{e}; the windows of the previous certificates in the file start again from now");
    }
    let would = if dry_run { " (dry run)" } else { "" };
    for event in &planned.decision.events {
        match event {
            Event::Kept { cert, drop_at } => tracing::info!(
                instance = %name, instance_id = %id, service = %inst.service, %category, subject = %cert.subject,
                sha256 = %hex(&cert.fingerprint), drop_at = %format_time(*drop_at),
                "keeping the previous certificate after the new one until {}{would}", format_time(*drop_at)
            ),
            Event::KeptWithoutRecord { cert, drop_at } => tracing::warn!(
                instance = %name, instance_id = %id, service = %inst.service, %category, subject = %cert.subject,
                sha256 = %hex(&cert.fingerprint), drop_at = %format_time(*drop_at),
                "no record of when this certificate in the file was superseded (sync.state_dir lost, unreadable or new); keeping it until {}{would}", format_time(*drop_at)
            ),
            Event::Dropped { cert, why, drop_at } => tracing::info!(
                instance = %name, instance_id = %id, service = %inst.service, %category, subject = %cert.subject,
                sha256 = %hex(&cert.fingerprint), drop_at = %format_time(*drop_at),
                "dropping the previous certificate: {}{would}", why.as_str()
            ),
            Event::NotKept {
                cert,
                why: Why::WindowPassed,
            } if inst.keep_previous.is_zero() => tracing::debug!(
                instance = %name, instance_id = %id, service = %inst.service, %category, subject = %cert.subject,
                sha256 = %hex(&cert.fingerprint),
                "not keeping the previous certificate (keep_previous = 0s)"
            ),
            Event::NotKept { cert, why } => tracing::info!(
                instance = %name, instance_id = %id, service = %inst.service, %category, subject = %cert.subject,
                sha256 = %hex(&cert.fingerprint),
                "not keeping the previous certificate: {}", why.as_str()
            ),
            Event::Restored { cert } => tracing::info!(
                instance = %name, instance_id = %id, service = %inst.service, %category, subject = %cert.subject,
                sha256 = %hex(&cert.fingerprint),
                "a kept certificate is served again; it is current again"
            ),
        }
    }
}
