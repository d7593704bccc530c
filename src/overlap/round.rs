//! One output's bundle in a round: the durable state read (once per
//! instance: [`Recorded`]; or, only without one and with a `keep_previous`,
//! the file the round's look found holding certificates: the one case an
//! output is read twice in a round), [`decide`] asked, and what it did
//! logged.
//!
//! Blocking (reads `state_dir` and the output); the sync step reads the
//! instance's record and calls [`plan_output`] on the blocking pool, stores
//! the record when a state changed before any rename ([`store_states`]),
//! and logs the events with [`log_events`] once it knows what was written.

use std::path::Path;

use super::store::States;
use super::{Decision, Event, Input, State, Store, StoreError, Why, decide};
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
    pub unreadable: Option<String>,
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

/// An instance's record of kept certificates, as the round read it: once,
/// for all its outputs.
#[derive(Debug)]
pub struct Recorded(Result<States, StoreError>);

impl Recorded {
    /// Reads `inst`'s record; `known`: certificates read already (served
    /// this round), not parsed again. Blocking.
    pub fn read(store: &Store, inst: &Instance, known: &[&CertInfo]) -> Recorded {
        Recorded(store.load(&inst.id, known))
    }

    /// Every certificate the record holds.
    pub fn certs(&self) -> impl Iterator<Item = &CertInfo> {
        let states = self.0.as_ref().map(Vec::as_slice).unwrap_or_default();
        states.iter().flat_map(|(_, s)| s.bundle())
    }

    /// The recorded state of `category`, if any.
    fn state(&self, category: Category) -> Option<&State> {
        let states = self.0.as_ref().ok()?;
        states.iter().find(|(c, _)| *c == category).map(|(_, s)| s)
    }

    /// Why the record could not be used, when one was there.
    fn unreadable(&self) -> Option<String> {
        self.0.as_ref().err().map(|e| e.to_string())
    }
}

/// Decides the bundle of one output from what was served (`served`,
/// verified) at Unix time `now`; `seen` is the round's look at the path and
/// `recorded` the instance's record. Reads the file only without a recorded
/// state (and with a `keep_previous`). Blocking.
pub fn plan_output(
    recorded: &Recorded,
    inst: &Instance,
    out: &Output,
    served: &Verified,
    now: i64,
    seen: &Observation,
) -> Planned {
    let category = out.category;
    let previous = recorded.state(category);
    let unreadable = recorded.unreadable();
    let file = if previous.is_none() && !inst.keep_previous.is_zero() {
        in_file(&out.path, &Format::of(out), seen)
    } else {
        Vec::new()
    };
    let decision = decide(Input {
        previous,
        in_file: &file,
        served: &served.certs,
        now,
        keep: inst.keep_previous,
        allow_non_ca: inst.allow_non_ca,
    });
    let bundle = bundle_of(decision.bundle(), served);
    let persist = if inst.keep_previous.is_zero() {
        if previous.is_some() || unreadable.is_some() {
            Persist::Remove
        } else {
            Persist::Keep
        }
    } else if previous != Some(&decision.state) {
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

/// The bundle's file contents: when it is the download as served (nothing
/// kept), the download's PEM and digest, made already; else made afresh.
/// Either way the PEM of exactly `certs`, in order. Pure.
fn bundle_of(certs: Vec<&CertInfo>, served: &Verified) -> Verified {
    let certs: Vec<CertInfo> = certs.into_iter().cloned().collect();
    let as_served = certs.len() == served.certs.len()
        && (certs.iter().zip(&served.certs)).all(|(a, b)| a.fingerprint == b.fingerprint);
    if as_served {
        return Verified {
            sha256: served.sha256,
            pem: served.pem.clone(),
            certs,
        };
    }
    let pem = certcheck::pem_of(certs.iter().map(|c| c.der.as_slice()));
    Verified {
        sha256: certcheck::sha256(&pem),
        pem,
        certs,
    }
}

/// Whether the record these planned outputs store is the instance's first
/// and keeps no certificate: then it need not be on disk before the outputs
/// change, nor durable ([`Store::store_first`]). Pure.
pub fn is_first_record(recorded: &Recorded, planned: &[&Planned]) -> bool {
    matches!(&recorded.0, Ok(states) if states.is_empty())
        && planned.iter().any(|p| p.persist == Persist::Store)
        && (planned.iter()).all(|p| p.persist == Persist::Keep || p.decision.state.kept.is_empty())
}

/// Stores (or removes) the record of an instance's planned outputs, as their
/// [`Planned::persist`] say: one result per output, in order. The record
/// is written once, holding each category the instance has outputs for:
/// the state planned this round, or, for a category whose download failed,
/// the one recorded. `first`: it is the instance's first
/// ([`is_first_record`]), written without fsyncs. A failure to store
/// matters only when certificates are kept (their windows would start
/// again at the next round); otherwise the next round rebuilds the same
/// state from the file. Blocking.
pub fn store_states(
    store: &Store,
    inst: &Instance,
    recorded: &Recorded,
    planned: &[&Planned],
    first: bool,
) -> Vec<Result<(), String>> {
    let wants = |p: Persist| planned.iter().any(|x| x.persist == p);
    let result = if wants(Persist::Remove) {
        store.remove(&inst.id)
    } else if wants(Persist::Store) {
        let mut states: Vec<(Category, &State)> = Vec::new();
        for category in inst.outputs.iter().map(|o| o.category) {
            if states.iter().any(|(c, _)| *c == category) {
                continue;
            }
            let planned = planned.iter().find(|p| p.category == category);
            let state = planned.map(|p| &p.decision.state);
            if let Some(state) = state.or_else(|| recorded.state(category)) {
                states.push((category, state));
            }
        }
        if first {
            store.store_first(&inst.id, &states)
        } else {
            store.store(&inst.id, &states)
        }
    } else {
        Ok(())
    };
    let error = result.err().map(|e| e.to_string());
    (planned.iter())
        .map(|p| match (&error, p.persist) {
            (None, _) | (_, Persist::Keep) => Ok(()),
            (Some(e), Persist::Store) if p.decision.state.kept.is_empty() => {
                tracing::debug!(instance = %inst.label(), instance_id = %inst.id, service = %inst.service, category = %p.category, "{e}");
                Ok(())
            }
            (Some(e), _) => Err(e.clone()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlap::Kept;

    fn cert(n: u8) -> CertInfo {
        CertInfo {
            subject: format!("CN=ca-{n}"),
            not_before: 0,
            not_after: 2_000_000_000,
            ca: Some(true),
            signature_oid: "1.2.840.10045.4.3.2".into(),
            der: vec![n],
            fingerprint: [n; 32],
        }
    }

    fn planned(persist: Persist, kept: bool) -> Planned {
        let kept = if kept {
            vec![Kept {
                cert: cert(2),
                superseded_at: 1_800_000_000,
            }]
        } else {
            Vec::new()
        };
        Planned {
            category: Category::International,
            decision: Decision {
                state: State {
                    current: vec![cert(1)],
                    kept,
                },
                events: Vec::new(),
                served_changed: true,
            },
            bundle: Verified {
                pem: Vec::new(),
                sha256: [0; 32],
                certs: Vec::new(),
            },
            persist,
            unreadable: None,
        }
    }

    #[test]
    fn a_bundle_is_the_pem_of_its_certificates_whether_served_or_not() {
        let (one, two) = (cert(1), cert(2));
        let pem = certcheck::pem_of([one.der.as_slice()]);
        let served = Verified {
            sha256: certcheck::sha256(&pem),
            pem,
            certs: vec![one.clone()],
        };
        for certs in [vec![&one], vec![&one, &two], vec![&two, &one], vec![&two]] {
            let bundle = bundle_of(certs.clone(), &served);
            let pem = certcheck::pem_of(certs.iter().map(|c| c.der.as_slice()));
            assert_eq!(bundle.pem, pem);
            assert_eq!(bundle.sha256, certcheck::sha256(&pem));
            assert_eq!(bundle.certs, certs.into_iter().cloned().collect::<Vec<_>>());
        }
    }

    #[test]
    fn only_a_first_record_that_keeps_nothing_waits_for_the_outputs() {
        let none = Recorded(Ok(Vec::new()));
        let (store, keep) = (
            planned(Persist::Store, false),
            planned(Persist::Keep, false),
        );
        let keeping = planned(Persist::Store, true);
        assert!(is_first_record(&none, &[&store]));
        assert!(is_first_record(&none, &[&store, &keep]));
        // Something kept: its window must be on disk before the file changes.
        assert!(!is_first_record(&none, &[&store, &keeping]));
        // Nothing to store.
        assert!(!is_first_record(&none, &[&keep]));
        assert!(!is_first_record(&none, &[]));
        // A record was there: readable, or not.
        let some = Recorded(Ok(vec![(Category::National, store.decision.state.clone())]));
        assert!(!is_first_record(&some, &[&store]));
        let corrupt = Recorded(Err(StoreError::Corrupt {
            path: "kept-i.v2.json".into(),
            why: "truncated".into(),
        }));
        assert!(!is_first_record(&corrupt, &[&store]));
    }
}
