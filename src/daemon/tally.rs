//! What a round's report means for the metrics: the one place that knows
//! both a [`Report`] and the [`Metrics`]. The metrics take plain values; this
//! is where a round's failures, replaced files, kept certificates and hook
//! run become them.

use std::collections::HashSet;

use crate::config::Config;
use crate::hooks::HookError;
use crate::metrics::{HookResult, Metrics, Who};
use crate::reason::Reason;
use crate::report::{FileOutcome, Report};

/// Records what a round did. `now` is the Unix time the round ended. A
/// failed hook fails the round, so it also counts as a sync error (`hook`),
/// as does a failed retry of it ([`record_hook`]).
pub(crate) fn record_round(m: &Metrics, who: Who, report: &Report, now: i64) {
    if report.ok() {
        m.round_succeeded(who, now);
    }
    for f in &report.failures {
        m.sync_error(who, f.reason);
    }
    for f in &report.files {
        if matches!(f.outcome, FileOutcome::Replaced { .. }) {
            m.cert_changed(who, f.category, f.output);
        }
    }
    for k in &report.kept {
        m.set_kept(who, k.category, k.kept, k.next_drop);
    }
    if let Some(hook) = &report.hook {
        record_hook(m, who, hook_result(hook));
    }
}

/// Records a hook run, a round's or a retry's: by result, and, when it
/// failed, as a sync error (`hook`): the instance is not in sync until its
/// hook ran.
pub(crate) fn record_hook(m: &Metrics, who: Who, result: HookResult) {
    if result != HookResult::Ok {
        m.sync_error(who, Reason::Hook);
    }
    m.hook_run(who, result);
}

/// How a hook run ended, as `hook_runs_total` labels it.
pub(crate) fn hook_result(run: &Result<(), HookError>) -> HookResult {
    match run {
        Ok(()) => HookResult::Ok,
        Err(HookError::TimedOut { .. }) => HookResult::TimedOut,
        Err(_) => HookResult::Failed,
    }
}

/// Brings the metrics to `config`, coming from `old` (`None` at start):
/// an instance gone from it, or moved to another service, loses its gauges
/// under the old labels (its counters stay: they only ever grow); every
/// instance of it has its counters, at 0 where new.
pub(crate) fn declare_config(m: &Metrics, old: Option<&Config>, config: &Config) {
    let now: HashSet<Who> = (config.instances.iter())
        .map(|i| (i.id.as_str(), i.service))
        .collect();
    for inst in old.map_or(&[][..], |c| &c.instances) {
        let who = (inst.id.as_str(), inst.service);
        if !now.contains(&who) {
            m.forget_instance(who);
        }
    }
    for inst in &config.instances {
        m.declare_instance(inst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Service;
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
        record_round(&m, ("i-1", Service::Dds), &report, 1_700_000_000);
        m.api_request(Some(200));
        m.api_request(None);
        m.set_file(
            ("i-1", Service::Dds),
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
        record_round(&m, ("i-2", Service::Dds), &report, 5);
        record_round(&m, ("i-2", Service::Dds), &report, 6);
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
        declare_config(&m, None, &cfg);
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
        record_round(&m, ("i-1", Service::Dds), &report, 5);
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

    #[test]
    fn series_carry_the_service_and_a_reload_to_another_service_drops_the_old_gauges() {
        let cfg = |service: &str| {
            let text = format!(
                "[cloud]\nregion = \"cn-north-4\"\nproject_id = \"p\"\n[auth]\nmethod = \"token\"\ntoken = \"t\"\n[[instances]]\nid = \"r-1\"\nservice = \"{service}\"\ninternational = \"/x/a.crt\"\n[[instances]]\nid = \"d-1\"\ninternational = \"/x/d.crt\"\n"
            );
            crate::config::validate(
                crate::config::parse(&text).unwrap(),
                std::path::Path::new("/"),
            )
            .unwrap()
        };
        let m = Metrics::new();
        let (rds, dcs) = (cfg("rds"), cfg("dcs"));
        declare_config(&m, None, &rds);
        for who in [("r-1", Service::Rds), ("d-1", Service::Dds)] {
            m.set_file(
                who,
                (Category::International, "international"),
                Some(9),
                false,
            );
            record_round(&m, who, &Report::default(), 5);
        }
        let t = m.encode();
        assert!(line(&t, "dds_certsync_cert_not_after_timestamp_seconds{instance=\"r-1\",service=\"rds\",category=\"international\"} 9").is_some(), "{t}");
        assert!(
            line(
                &t,
                "dds_certsync_last_success_timestamp_seconds{instance=\"r-1\",service=\"rds\"} 5"
            )
            .is_some(),
            "{t}"
        );
        assert!(line(&t, "dds_certsync_sync_errors_total{instance=\"r-1\",service=\"rds\",reason=\"verify\"} 0").is_some(), "{t}");
        // Moved to DCS: the gauges under rds go, the counters stay; the
        // instance that kept its service keeps its gauges.
        declare_config(&m, Some(&rds), &dcs);
        let t = m.encode();
        assert!(
            !t.contains("not_after_timestamp_seconds{instance=\"r-1\""),
            "{t}"
        );
        assert!(
            !t.contains("last_success_timestamp_seconds{instance=\"r-1\""),
            "{t}"
        );
        assert!(line(&t, "dds_certsync_sync_errors_total{instance=\"r-1\",service=\"rds\",reason=\"verify\"} 0").is_some(), "{t}");
        assert!(line(&t, "dds_certsync_sync_errors_total{instance=\"r-1\",service=\"dcs\",reason=\"verify\"} 0").is_some(), "{t}");
        assert!(line(&t, "dds_certsync_cert_not_after_timestamp_seconds{instance=\"d-1\",service=\"dds\",category=\"international\"} 9").is_some(), "{t}");
        // Removed: its gauges go too.
        let only_d = crate::config::Config {
            instances: dcs.instances[1..].to_vec(),
            ..dcs.clone()
        };
        declare_config(&m, Some(&dcs), &only_d);
        declare_config(
            &m,
            Some(&only_d),
            &crate::config::Config {
                instances: vec![],
                ..dcs.clone()
            },
        );
        let t = m.encode();
        assert!(!t.contains("not_after_timestamp_seconds{"), "{t}");
        assert!(!t.contains("last_success_timestamp_seconds{"), "{t}");
    }
}
