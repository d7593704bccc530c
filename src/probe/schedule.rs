//! Pure: when each instance's addresses are probed, and whether a failed
//! probe asks for a sync.
//!
//! * Nothing is probed before the instance's first round (its file may not
//!   be there yet).
//! * A round's end makes a probe due at once ([`Cause::Round`]); if a probe
//!   is running then, another follows it.
//! * A finished probe makes the next one due `interval` later
//!   ([`Cause::Timer`]).
//! * An instance that gains `probe` by a reload after its first round is
//!   probed at once ([`Cause::Timer`]).
//! * Only a probe that a round did not cause asks for a sync ([`asks_sync`]):
//!   the round just consulted the link, so asking again at once would only
//!   repeat it. So a server that keeps presenting a CA the link does not
//!   serve costs one extra round per `interval`, never a loop.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::verdict::Outcome;

/// Why a probe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A round of the instance just ended.
    Round,
    /// `probe_interval` passed (or the probe was just configured).
    Timer,
}

/// Whether a finished probe asks for the instance to sync now: a probe the
/// timer started, in which some address's chain did not verify against the
/// file. An unreachable address says nothing about the file and asks
/// nothing.
pub fn asks_sync(cause: Cause, outcomes: &[Outcome]) -> bool {
    cause == Cause::Timer && outcomes.iter().any(|o| matches!(o, Outcome::Refused(_)))
}

#[derive(Debug)]
struct Entry {
    /// `None`: the instance has no `probe`.
    interval: Option<Duration>,
    due: Option<(Instant, Cause)>,
    running: bool,
    /// A round ended while a probe ran: probe again when it finishes.
    again: bool,
}

/// Every configured instance's probe timer.
#[derive(Debug, Default)]
pub struct Schedule {
    entries: HashMap<String, Entry>,
    /// Instances that have had a round.
    seen: HashSet<String>,
}

impl Schedule {
    /// Sets the instances, each with its `probe_interval` (`None`: not
    /// probed). Timers of instances that stay carry over (a shorter interval
    /// brings a due time closer); new ones wait for a round, unless the
    /// instance has had one.
    pub fn set(&mut self, instances: &[(String, Option<Duration>)], now: Instant) {
        let keep: HashSet<&String> = instances.iter().map(|(id, _)| id).collect();
        self.entries.retain(|id, _| keep.contains(id));
        self.seen.retain(|id| keep.contains(id));
        for (id, interval) in instances {
            let seen = self.seen.contains(id);
            let entry = self.entries.entry(id.clone()).or_insert(Entry {
                interval: None,
                due: None,
                running: false,
                again: false,
            });
            match (entry.interval, *interval) {
                (_, None) => entry.due = None,
                (None, Some(_)) if seen => entry.due = Some((now, Cause::Timer)),
                (None, Some(_)) => {}
                (Some(_), Some(new)) => {
                    if let Some((due, cause)) = entry.due
                        && due > now + new
                    {
                        entry.due = Some((now + new, cause));
                    }
                }
            }
            entry.interval = *interval;
        }
    }

    /// A round of `id` ended.
    pub fn round_done(&mut self, id: &str, now: Instant) {
        self.seen.insert(id.to_string());
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        if e.interval.is_none() {
            return;
        }
        if e.running {
            e.again = true;
        } else {
            e.due = Some((now, Cause::Round));
        }
    }

    /// The probes due at `now`, marked running.
    pub fn take_due(&mut self, now: Instant) -> Vec<(String, Cause)> {
        let mut out = Vec::new();
        for (id, e) in &mut self.entries {
            if let Some((due, cause)) = e.due
                && !e.running
                && due <= now
            {
                e.running = true;
                e.due = None;
                out.push((id.clone(), cause));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The probe of `id` finished at `now`.
    pub fn finished(&mut self, id: &str, now: Instant) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        e.running = false;
        let Some(interval) = e.interval else {
            e.due = None;
            return;
        };
        e.due = Some(if std::mem::take(&mut e.again) {
            (now, Cause::Round)
        } else {
            (now + interval, Cause::Timer)
        });
    }

    /// The earliest due time of a probe not running.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| !e.running)
            .filter_map(|e| e.due.map(|(t, _)| t))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::verdict::Refusal;

    const MIN: Duration = Duration::from_secs(60);

    fn refused() -> Outcome {
        Outcome::Refused(Refusal {
            reason: "r".into(),
            issuer: "i".into(),
            subjects: vec![],
        })
    }

    fn one(interval: Option<Duration>) -> Vec<(String, Option<Duration>)> {
        vec![("a".to_string(), interval)]
    }

    #[test]
    fn only_a_timer_probe_that_was_refused_asks_for_a_sync() {
        let unreachable = Outcome::Unreachable("refused".into());
        assert!(asks_sync(Cause::Timer, &[Outcome::Verified, refused()]));
        assert!(!asks_sync(Cause::Round, &[refused()]));
        assert!(!asks_sync(Cause::Timer, &[Outcome::Verified, unreachable]));
        assert!(!asks_sync(Cause::Timer, &[]));
    }

    #[test]
    fn nothing_is_due_before_the_first_round_then_after_each_round_and_interval() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.set(&one(Some(MIN)), t0);
        assert_eq!(s.next_due(), None);
        assert!(s.take_due(t0 + MIN * 10).is_empty());

        s.round_done("a", t0 + MIN);
        assert_eq!(s.next_due(), Some(t0 + MIN));
        assert_eq!(s.take_due(t0 + MIN), vec![("a".into(), Cause::Round)]);
        assert_eq!(s.next_due(), None, "running");
        s.finished("a", t0 + MIN + Duration::from_secs(1));
        let next = t0 + 2 * MIN + Duration::from_secs(1);
        assert_eq!(s.next_due(), Some(next));
        assert!(s.take_due(next - Duration::from_millis(1)).is_empty());
        assert_eq!(s.take_due(next), vec![("a".into(), Cause::Timer)]);
    }

    #[test]
    fn a_round_during_a_probe_is_followed_by_another_probe() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.set(&one(Some(MIN)), t0);
        s.round_done("a", t0);
        assert_eq!(s.take_due(t0).len(), 1);
        s.round_done("a", t0 + Duration::from_secs(1));
        assert!(
            s.take_due(t0 + Duration::from_secs(1)).is_empty(),
            "one at a time"
        );
        s.finished("a", t0 + Duration::from_secs(2));
        assert_eq!(
            s.take_due(t0 + Duration::from_secs(2)),
            vec![("a".into(), Cause::Round)]
        );
    }

    #[test]
    fn instances_without_probe_are_never_due() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.set(&one(None), t0);
        s.round_done("a", t0);
        assert_eq!(s.next_due(), None);
        s.finished("a", t0);
        assert_eq!(s.next_due(), None);
        s.round_done("unknown", t0);
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn a_probe_added_by_a_reload_runs_at_once_if_the_instance_has_synced() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.set(&[("a".into(), None), ("b".into(), None)], t0);
        s.round_done("a", t0);
        let later = t0 + MIN;
        s.set(&[("a".into(), Some(MIN)), ("b".into(), Some(MIN))], later);
        assert_eq!(s.take_due(later), vec![("a".into(), Cause::Timer)]);
        // Removing the probe stops it; removing the instance forgets it.
        s.set(&[("a".into(), None), ("b".into(), Some(MIN))], later);
        s.finished("a", later);
        assert_eq!(s.next_due(), None);
        s.set(&[], later);
        s.round_done("b", later);
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn a_shorter_interval_brings_the_next_probe_closer_a_longer_one_waits() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.set(&one(Some(MIN * 10)), t0);
        s.round_done("a", t0);
        s.take_due(t0);
        s.finished("a", t0);
        assert_eq!(s.next_due(), Some(t0 + MIN * 10));
        s.set(&one(Some(MIN)), t0 + Duration::from_secs(1));
        assert_eq!(s.next_due(), Some(t0 + Duration::from_secs(1) + MIN));
        s.set(&one(Some(MIN * 100)), t0 + Duration::from_secs(2));
        assert_eq!(s.next_due(), Some(t0 + Duration::from_secs(1) + MIN));
    }
}
