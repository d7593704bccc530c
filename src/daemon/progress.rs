//! What systemd's `STATUS=` says, and whether `READY=1` went out: per
//! instance, how its last round went. Pure.

use std::collections::HashMap;

use crate::sync::Report;

/// What systemd's `STATUS=` says: per instance, how its last round went.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Instance ID → (label, ok, summary of the last round).
    last: HashMap<String, (String, bool, String)>,
    last_key: Option<String>,
    pub(super) ready_sent: bool,
}

impl Progress {
    pub(super) fn record(&mut self, id: &str, label: &str, report: &Report) {
        self.last.insert(
            id.to_string(),
            (label.to_string(), report.ok(), report.summary()),
        );
        self.last_key = Some(id.to_string());
    }

    pub(super) fn all_synced(&self, keys: &[String]) -> bool {
        keys.iter().all(|k| self.last.contains_key(k))
    }

    pub(super) fn retain(&mut self, keys: &[String]) {
        self.last.retain(|k, _| keys.contains(k));
    }

    /// One line: counts, then the latest round. Pure.
    pub(super) fn status_line(&self, keys: &[String]) -> String {
        let ok = keys
            .iter()
            .filter(|k| self.last.get(*k).is_some_and(|l| l.1))
            .count();
        let failing = keys
            .iter()
            .filter(|k| self.last.get(*k).is_some_and(|l| !l.1))
            .count();
        let pending = keys.len() - ok - failing;
        let mut s = format!(
            "{} instance{}: {ok} in sync, {failing} failing",
            keys.len(),
            if keys.len() == 1 { "" } else { "s" }
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
        assert_eq!(
            progress.status_line(&keys),
            "3 instances: 0 in sync, 0 failing, 3 not synced yet"
        );
        progress.record("a", "orders", &report(true));
        progress.record("b", "b", &report(false));
        assert!(!progress.all_synced(&keys));
        let line = progress.status_line(&keys);
        assert_eq!(
            line,
            "3 instances: 1 in sync, 1 failing, 1 not synced yet; last: b: HTTP 503"
        );
        progress.record("c", "c", &report(true));
        assert!(progress.all_synced(&keys));
        progress.retain(&keys[..1]);
        assert_eq!(
            progress.status_line(&keys[..1]),
            "1 instance: 1 in sync, 0 failing"
        );
    }

    #[test]
    fn a_long_summary_is_cut_on_a_char_boundary() {
        let mut progress = Progress::default();
        let mut r = report(false);
        r.failures[0].message = "é".repeat(200);
        progress.record("a", "a", &r);
        let line = progress.status_line(&["a".to_string()]);
        assert!(line.ends_with('…'));
        assert!(line.len() < 260);
    }
}
