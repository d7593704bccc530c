//! What a round's report means for the metrics: the one place that knows
//! both a [`Report`] and the [`Metrics`]. The metrics take plain values; this
//! is where a round's failures, replaced files, kept certificates and hook
//! run become them.

use crate::hooks::HookError;
use crate::metrics::{HookResult, Metrics};
use crate::reason::Reason;
use crate::report::{FileOutcome, Report};

/// Records what a round did. `now` is the Unix time the round ended. A
/// failed hook fails the round, so it also counts as a sync error (`hook`).
pub(crate) fn record_round(m: &Metrics, instance: &str, report: &Report, now: i64) {
    if report.ok() {
        m.round_succeeded(instance, now);
    }
    for f in &report.failures {
        m.sync_error(instance, f.reason);
    }
    for f in &report.files {
        if matches!(f.outcome, FileOutcome::Replaced { .. }) {
            m.cert_changed(instance, f.category, f.output);
        }
    }
    for k in &report.kept {
        m.set_kept(instance, k.category, k.kept, k.next_drop);
    }
    if let Some(hook) = &report.hook {
        let result = match hook {
            Ok(()) => HookResult::Ok,
            Err(HookError::TimedOut { .. }) => HookResult::TimedOut,
            Err(_) => HookResult::Failed,
        };
        if result != HookResult::Ok {
            m.sync_error(instance, Reason::Hook);
        }
        m.hook_run(instance, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Category;
    use crate::metrics::SYNC_ERROR_REASONS;
    use crate::report::{Failure, FileReport};
    use std::path::PathBuf;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn a_round_is_recorded_under_the_prefixed_names() {
        let m = Metrics::new();
        let report = Report {
            files: vec![FileReport {
                category: Category::National,
                output: "national",
                path: PathBuf::from("/x"),
                outcome: FileOutcome::Replaced {
                    old: None,
                    new: [0; 32],
                },
                pem: None,
                seen: None,
            }],
            hook: Some(Ok(())),
            ..Report::default()
        };
        record_round(&m, "i-1", &report, 1_700_000_000);
        m.api_request(Some(200));
        m.api_request(None);
        m.set_file(
            "i-1",
            (Category::National, "national"),
            Some(2_000_000_000),
            true,
        );
        let t = m.encode();
        assert!(
            line(
                &t,
                "dds_certsync_last_success_timestamp_seconds{instance=\"i-1\",service=\"dds\"} 1700000000"
            )
            .is_some(),
            "{t}"
        );
        assert!(
            line(
                &t,
                "dds_certsync_cert_changes_total{instance=\"i-1\",service=\"dds\",category=\"national\"} 1"
            )
            .is_some(),
            "{t}"
        );
        assert!(
            line(
                &t,
                "dds_certsync_hook_runs_total{instance=\"i-1\",service=\"dds\",result=\"ok\"} 1"
            )
            .is_some(),
            "{t}"
        );
        assert!(
            line(&t, "dds_certsync_api_requests_total{code=\"200\"} 1").is_some(),
            "{t}"
        );
        assert!(
            line(&t, "dds_certsync_api_requests_total{code=\"error\"} 1").is_some(),
            "{t}"
        );
        assert!(line(&t, "dds_certsync_cert_not_after_timestamp_seconds{instance=\"i-1\",service=\"dds\",category=\"national\"} 2000000000").is_some(), "{t}");
        assert!(
            line(
                &t,
                "dds_certsync_cert_expiring{instance=\"i-1\",service=\"dds\",category=\"national\"} 1"
            )
            .is_some(),
            "{t}"
        );
        assert!(t.contains("# TYPE dds_certsync_hook_runs counter"), "{t}");
        assert!(t.trim_end().ends_with("# EOF"), "{t}");
    }

    #[test]
    fn failures_count_by_reason_and_no_success_time_is_set() {
        let m = Metrics::new();
        let report = Report {
            failures: vec![Failure {
                reason: crate::reason::Reason::ApiThrottled,
                message: "x".into(),
            }],
            hook: Some(Err(HookError::TimedOut {
                program: "p".into(),
                timeout: std::time::Duration::from_secs(1),
            })),
            ..Report::default()
        };
        record_round(&m, "i-2", &report, 5);
        record_round(&m, "i-2", &report, 6);
        let t = m.encode();
        assert!(
            line(
                &t,
                "dds_certsync_sync_errors_total{instance=\"i-2\",service=\"dds\",reason=\"api_throttled\"} 2"
            )
            .is_some(),
            "{t}"
        );
        assert!(
            line(
                &t,
                "dds_certsync_hook_runs_total{instance=\"i-2\",service=\"dds\",result=\"timeout\"} 2"
            )
            .is_some(),
            "{t}"
        );
        assert!(
            line(&t, "dds_certsync_last_success_timestamp_seconds{").is_none(),
            "{t}"
        );
    }

    #[test]
    fn a_declared_instance_has_every_counter_at_zero_and_a_failed_hook_is_a_sync_error() {
        let m = Metrics::new();
        let cfg = crate::config::validate(
            crate::config::parse(
                "[cloud]\nregion = \"cn-north-4\"\nproject_id = \"p\"\n[auth]\nmethod = \"token\"\ntoken = \"t\"\n\
                 [[instances]]\nid = \"i-1\"\ninternational = \"/x/a.crt\"\non_change = [\"/bin/true\"]\n\
                 [[instances]]\nid = \"i-2\"\nnational = \"/x/b.crt\"\n",
            )
            .unwrap(),
            std::path::Path::new("/"),
        )
        .unwrap();
        for i in &cfg.instances {
            m.declare_instance(i);
        }
        let t = m.encode();
        for id in ["i-1", "i-2"] {
            for reason in SYNC_ERROR_REASONS {
                let series = format!(
                    "dds_certsync_sync_errors_total{{instance=\"{id}\",service=\"dds\",reason=\"{reason}\"}} 0"
                );
                assert!(line(&t, &series).is_some(), "{series}\n{t}");
            }
        }
        for series in [
            "dds_certsync_cert_changes_total{instance=\"i-1\",service=\"dds\",category=\"international\"} 0",
            "dds_certsync_restores_total{instance=\"i-2\",service=\"dds\",category=\"national\"} 0",
            "dds_certsync_hook_runs_total{instance=\"i-1\",service=\"dds\",result=\"timeout\"} 0",
        ] {
            assert!(line(&t, series).is_some(), "{series}\n{t}");
        }
        // Only configured categories, and hook results only with a hook.
        assert!(
            !t.contains("instance=\"i-1\",service=\"dds\",category=\"national\""),
            "{t}"
        );
        assert!(!t.contains("hook_runs_total{instance=\"i-2\""), "{t}");

        let report = Report {
            hook: Some(Err(HookError::Spawn {
                program: "p".into(),
                reason: "gone".into(),
            })),
            ..Report::default()
        };
        record_round(&m, "i-1", &report, 5);
        m.declare_instance(&cfg.instances[0]);
        let t = m.encode();
        assert!(
            line(
                &t,
                "dds_certsync_sync_errors_total{instance=\"i-1\",service=\"dds\",reason=\"hook\"} 1"
            )
            .is_some(),
            "{t}"
        );
        assert!(
            line(
                &t,
                "dds_certsync_hook_runs_total{instance=\"i-1\",service=\"dds\",result=\"failed\"} 1"
            )
            .is_some(),
            "{t}"
        );
    }
}
