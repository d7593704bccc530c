//! Keeping the previous CA for a grace period (`keep_previous`): which
//! certificates an output's bundle holds, and when a kept one leaves.
//!
//! When the certificates a category serves change, those that were current
//! before and are no longer served stay in the written file, after the served
//! ones, so that a client can still verify a server that has not switched to
//! the new CA yet. The rules, all in [`decide`]:
//!
//! * a superseded certificate is kept until `keep_previous` has passed since
//!   it was superseded, or until it expires, whichever comes first
//!   ([`drop_at`]); an expired certificate is never kept;
//! * a kept certificate that is served again becomes current again (it moves
//!   back among the served ones, and its window is forgotten);
//! * `keep_previous = 0s` keeps nothing: the file is replaced outright;
//! * the bundle is the served certificates in the order served, then the kept
//!   ones, the most recently superseded first; its order is stable from round
//!   to round, so an unchanged upstream with a kept certificate present is no
//!   change;
//! * at most [`MAX_KEPT`] certificates are kept per output; beyond that the
//!   oldest superseded go first (an upstream that changes its answer every
//!   round must not swell the file).
//!
//! What was current and when each kept certificate was superseded comes from
//! the durable [`State`] ([`store`]), which holds the
//! certificates themselves: a certificate someone planted in a shared output
//! file is never adopted while the state is there. Without a state (first
//! run, state lost or corrupt), the certificates in the file that are not
//! served are kept with their window starting now: never dropped early.
//!
//! This file is pure: no I/O, no clock; times are Unix seconds. The I/O is
//! in [`store`] (the records) and [`round`] (one output in a round).

use std::time::Duration;

pub mod round;
pub mod store;

pub use store::{Store, StoreError};

use crate::certcheck::{CertInfo, Sha256Digest};

/// The most certificates kept per output.
pub const MAX_KEPT: usize = 16;

/// A certificate kept after it was superseded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub cert: CertInfo,
    /// When it stopped being served (Unix seconds).
    pub superseded_at: i64,
}

/// What is known durably about one output (instance + category).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The certificates served when the bundle was last decided, in order.
    pub current: Vec<CertInfo>,
    /// The kept certificates, the most recently superseded first.
    pub kept: Vec<Kept>,
}

impl State {
    /// The bundle this state describes: current, then kept.
    pub fn bundle(&self) -> Vec<&CertInfo> {
        self.current
            .iter()
            .chain(self.kept.iter().map(|k| &k.cert))
            .collect()
    }

    /// When the next kept certificate is due to leave, under `keep`.
    pub fn next_drop(&self, keep: Duration) -> Option<i64> {
        self.kept
            .iter()
            .map(|k| drop_at(k.superseded_at, &k.cert, keep))
            .min()
    }
}

/// Why a kept certificate left, or a superseded one was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `keep_previous` has passed since it was superseded (or is `0s`).
    WindowPassed,
    /// It expired.
    Expired,
    /// More than [`MAX_KEPT`] were kept: the oldest went.
    TooMany,
    /// basicConstraints CA:FALSE, not allowed for the instance (a
    /// certificate found in the file only).
    NotCa,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::WindowPassed => "keep_previous has passed",
            Why::Expired => "it expired",
            Why::TooMany => "too many previous certificates are kept",
            Why::NotCa => "it is not a CA certificate",
        }
    }
}

/// What [`decide`] did, one event per certificate concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Superseded now, and kept until `drop_at`.
    Kept { cert: CertInfo, drop_at: i64 },
    /// Found in the file without a record of when it was superseded (no or
    /// unreadable state): kept until `drop_at`, its window starting now.
    KeptWithoutRecord { cert: CertInfo, drop_at: i64 },
    /// Superseded now and not kept.
    NotKept { cert: CertInfo, why: Why },
    /// Kept until now; it leaves the file. `drop_at`: when it was due to.
    Dropped {
        cert: CertInfo,
        why: Why,
        drop_at: i64,
    },
    /// Kept, and served again: current again.
    Restored { cert: CertInfo },
}

/// What one output's round has to go on.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The durable state; `None` when there is none (or it was unreadable).
    pub previous: Option<&'a State>,
    /// The certificates in the file now; consulted only without a state.
    pub in_file: &'a [CertInfo],
    /// The certificates served now, verified, in order, without duplicates.
    pub served: &'a [CertInfo],
    pub now: i64,
    pub keep: Duration,
    /// Whether a certificate with basicConstraints CA:FALSE may be kept.
    pub allow_non_ca: bool,
}

/// The decision for one output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The state to store; its [`State::bundle`] is what the file must hold.
    pub state: State,
    pub events: Vec<Event>,
    /// Whether the served certificates differ from the previous state's
    /// current ones (always true without a previous state).
    pub served_changed: bool,
}

impl Decision {
    /// The certificates the file must hold, in order.
    pub fn bundle(&self) -> Vec<&CertInfo> {
        self.state.bundle()
    }

    /// When the next kept certificate leaves, under `keep`.
    pub fn next_drop(&self, keep: Duration) -> Option<i64> {
        self.state.next_drop(keep)
    }

    /// Whether the only news is kept certificates leaving: the same
    /// certificates are served as before, and at least one was dropped.
    pub fn only_drops(&self) -> bool {
        !self.served_changed
            && self
                .events
                .iter()
                .any(|e| matches!(e, Event::Dropped { .. }))
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// When a certificate superseded at `superseded_at` leaves the file under
/// `keep`: `keep` later, or the second after its notAfter (certificates are
/// valid through their notAfter second), whichever comes first. Pure.
pub fn drop_at(superseded_at: i64, cert: &CertInfo, keep: Duration) -> i64 {
    superseded_at
        .saturating_add(secs(keep))
        .min(cert.not_after.saturating_add(1))
}

/// Why a certificate superseded at `superseded_at` may not stay at `now`,
/// if it may not.
fn must_go(superseded_at: i64, cert: &CertInfo, now: i64, keep: Duration) -> Option<Why> {
    if now < drop_at(superseded_at, cert, keep) {
        None
    } else if cert.not_after < now && cert.not_after < superseded_at.saturating_add(secs(keep)) {
        Some(Why::Expired)
    } else {
        Some(Why::WindowPassed)
    }
}

fn contains(list: &[CertInfo], fp: &Sha256Digest) -> bool {
    list.iter().any(|c| &c.fingerprint == fp)
}

/// Decides what one output holds now. See the module doc for the rules. Pure.
pub fn decide(input: Input<'_>) -> Decision {
    let served_changed = match input.previous {
        Some(prev) => {
            let fps = |l: &[CertInfo]| l.iter().map(|c| c.fingerprint).collect::<Vec<_>>();
            fps(&prev.current) != fps(input.served)
        }
        None => true,
    };
    let mut sorting = Sorting {
        input: &input,
        kept: Vec::new(),
        events: Vec::new(),
    };
    match input.previous {
        Some(prev) => {
            sorting.supersede(&prev.current);
            sorting.carry(&prev.kept);
        }
        None => sorting.adopt(input.in_file),
    }
    sorting.cap();
    Decision {
        state: State {
            current: input.served.to_vec(),
            kept: sorting.kept,
        },
        events: sorting.events,
        served_changed,
    }
}

/// [`decide`]'s work in progress: what is kept so far, and what was said.
struct Sorting<'a> {
    input: &'a Input<'a>,
    kept: Vec<Kept>,
    events: Vec<Event>,
}

impl Sorting<'_> {
    /// Neither served nor already kept: a certificate to sort.
    fn is_new(&self, c: &CertInfo) -> bool {
        !contains(self.input.served, &c.fingerprint)
            && !self
                .kept
                .iter()
                .any(|k| k.cert.fingerprint == c.fingerprint)
    }

    /// Keeps `c` from now on, or says why not.
    fn keep_from_now(&mut self, c: &CertInfo, why_not: Option<Why>, without_record: bool) {
        let (now, keep) = (self.input.now, self.input.keep);
        match why_not {
            None => {
                let drop_at = drop_at(now, c, keep);
                self.events.push(if without_record {
                    Event::KeptWithoutRecord {
                        cert: c.clone(),
                        drop_at,
                    }
                } else {
                    Event::Kept {
                        cert: c.clone(),
                        drop_at,
                    }
                });
                self.kept.push(Kept {
                    cert: c.clone(),
                    superseded_at: now,
                });
            }
            // `0s` without a record: replacing outright is no news.
            Some(Why::WindowPassed) if without_record && keep.is_zero() => {}
            Some(why) => self.events.push(Event::NotKept {
                cert: c.clone(),
                why,
            }),
        }
    }

    /// Superseded now: current before, not served any more.
    fn supersede(&mut self, current_before: &[CertInfo]) {
        let (now, keep) = (self.input.now, self.input.keep);
        for c in current_before {
            if self.is_new(c) {
                self.keep_from_now(c, must_go(now, c, now, keep), false);
            }
        }
    }

    /// Kept before: served again, gone, or still kept.
    fn carry(&mut self, kept_before: &[Kept]) {
        let (now, keep) = (self.input.now, self.input.keep);
        for k in kept_before {
            if contains(self.input.served, &k.cert.fingerprint) {
                self.events.push(Event::Restored {
                    cert: k.cert.clone(),
                });
            } else if !self.is_new(&k.cert) {
                // Listed twice: once is enough.
            } else if let Some(why) = must_go(k.superseded_at, &k.cert, now, keep) {
                self.events.push(Event::Dropped {
                    cert: k.cert.clone(),
                    why,
                    drop_at: drop_at(k.superseded_at, &k.cert, keep),
                });
            } else {
                self.kept.push(k.clone());
            }
        }
    }

    /// No record: what the file holds beyond the served certificates is
    /// kept, its window starting now.
    fn adopt(&mut self, in_file: &[CertInfo]) {
        let (now, keep) = (self.input.now, self.input.keep);
        for c in in_file {
            if !self.is_new(c) {
                continue;
            }
            let why = if c.ca == Some(false) && !self.input.allow_non_ca {
                Some(Why::NotCa)
            } else {
                must_go(now, c, now, keep)
            };
            self.keep_from_now(c, why, true);
        }
    }

    /// At most [`MAX_KEPT`]: the oldest superseded go first; ties: the later
    /// in the list.
    fn cap(&mut self) {
        while self.kept.len() > MAX_KEPT {
            let oldest = self
                .kept
                .iter()
                .enumerate()
                .min_by_key(|(i, k)| (k.superseded_at, std::cmp::Reverse(*i)))
                .map(|(i, _)| i)
                .unwrap_or(0);
            let k = self.kept.remove(oldest);
            self.events.push(Event::Dropped {
                cert: k.cert,
                why: Why::TooMany,
                drop_at: self.input.now,
            });
        }
    }
}

#[cfg(test)]
mod tests;
