//! What systemd's `STATUS=` says, and whether `READY=1` went out: per
//! instance, how its last round went. Pure.
//!
//! The counts are kept as rounds are recorded, over the configured
//! instances ([`Progress::set_keys`], at the start and after each reload),
//! so that a round's status line costs the same with ten instances as with
//! ten thousand.

use std::collections::{HashMap, HashSet};

use crate::sync::Report;

/// What systemd's `STATUS=` says: per instance, how its last round went.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Instance ID → (label, ok, summary of the last round).
    last: HashMap<String, (String, bool, String)>,
    last_key: Option<String>,
    pub(super) ready_sent: bool,
    /// The configured instances.
    keys: HashSet<String>,
    /// Of `keys`, how many had a successful and a failed last round.
    ok: usize,
    failing: usize,
}

impl Progress {
    pub(super) fn with_keys(keys: &[String]) -> Progress {
        let mut p = Progress::default();
        p.set_keys(keys);
        p
    }

    /// Takes the configured instances (at the start, and after a reload):
    /// what is recorded of others is dropped.
    pub(super) fn set_keys(&mut self, keys: &[String]) {
        self.keys = keys.iter().cloned().collect();
        self.last.retain(|k, _| self.keys.contains(k));
        self.ok = self.last.values().filter(|l| l.1).count();
        self.failing = self.last.len() - self.ok;
    }

    pub(super) fn record(&mut self, id: &str, label: &str, report: &Report) {
        let ok = report.ok();
        let before = self
            .last
            .insert(id.to_string(), (label.to_string(), ok, report.summary()));
        if self.keys.contains(id) {
            match before.map(|l| l.1) {
                Some(true) => self.ok -= 1,
                Some(false) => self.failing -= 1,
                None => {}
            }
            if ok {
                self.ok += 1;
            } else {
                self.failing += 1;
            }
        }
        self.last_key = Some(id.to_string());
    }

    /// Whether every configured instance has had a round.
    pub(super) fn all_synced(&self) -> bool {
        self.ok + self.failing == self.keys.len()
    }

    /// One line: counts, then the latest round. Pure.
    pub(super) fn status_line(&self) -> String {
        let (ok, failing, total) = (self.ok, self.failing, self.keys.len());
        let pending = total - ok - failing;
        let mut s = format!(
            "{total} instance{}: {ok} in sync, {failing} failing",
            if total == 1 { "" } else { "s" }
        );
        if pending > 0 {
            s.push_str(&format!(", {pending} not synced yet"));
        }
        if let Some((label, _, summary)) = self.last_key.as_ref().and_then(|k| self.last.get(k)) {
            let mut summary = summary.clone();
            if summary.len() > 160 {
                let mut cut = 160;
                while !summary.is_char_boundary(cut) {
                    cut -= 1;
                }
                summary.truncate(cut);
                summary.push('…');
            }
            s.push_str(&format!("; last: {label}: {summary}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ok: bool) -> Report {
        let mut r = Report::default();
        if !ok {
            r.failures.push(crate::sync::Failure {
                reason: crate::reason::Reason::ApiServerError,
                message: "HTTP 503".into(),
            });
        }
        r
    }

    #[test]
    fn status_line_counts_and_names_the_latest_round() {
        let keys: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        let mut progress = Progress::default();
        progress.set_keys(&keys);
        assert_eq!(
            progress.status_line(),
            "3 instances: 0 in sync, 0 failing, 3 not synced yet"
        );
        progress.record("a", "orders", &report(true));
        progress.record("b", "b", &report(false));
        assert!(!progress.all_synced());
        let line = progress.status_line();
        assert_eq!(
            line,
            "3 instances: 1 in sync, 1 failing, 1 not synced yet; last: b: HTTP 503"
        );
        progress.record("c", "c", &report(true));
        assert!(progress.all_synced());
        progress.set_keys(&keys[..1]);
        assert_eq!(progress.status_line(), "1 instance: 1 in sync, 0 failing");
    }

    #[test]
    fn the_counts_follow_each_configured_instances_latest_round() {
        let keys: Vec<String> = vec!["a".into(), "b".into()];
        let mut progress = Progress::with_keys(&keys);
        progress.record("a", "a", &report(true));
        progress.record("a", "a", &report(false));
        let counts = |p: &Progress| p.status_line().split(';').next().unwrap().to_string();
        assert_eq!(
            counts(&progress),
            "2 instances: 0 in sync, 1 failing, 1 not synced yet"
        );
        // A round of an instance no longer configured counts for nothing.
        progress.record("gone", "gone", &report(true));
        assert_eq!(
            counts(&progress),
            "2 instances: 0 in sync, 1 failing, 1 not synced yet"
        );
        assert!(!progress.all_synced());
        progress.record("b", "b", &report(true));
        assert!(progress.all_synced());
        progress.set_keys(&["b".to_string(), "c".to_string()]);
        assert_eq!(
            counts(&progress),
            "2 instances: 1 in sync, 0 failing, 1 not synced yet"
        );
        assert!(!progress.all_synced());
    }

    #[test]
    fn a_long_summary_is_cut_on_a_char_boundary() {
        let mut progress = Progress::default();
        let mut r = report(false);
        r.failures[0].message = "é".repeat(200);
        progress.set_keys(&["a".to_string()]);
        progress.record("a", "a", &r);
        let line = progress.status_line();
        assert!(line.ends_with('…'));
        assert!(line.len() < 260);
    }
}
