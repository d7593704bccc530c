//! Prometheus metrics: one process-wide registry, rendered as OpenMetrics text
//! by `/metrics` (see [`crate::server`]).
//!
//! Every name is prefixed `dds_certsync_`:
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `cert_not_after_timestamp_seconds` | instance, category | earliest notAfter of the file on disk |
//! | `cert_expiring` | instance, category | 1 when that is within `sync.expiry_warning`, or past |
//! | `last_success_timestamp_seconds` | instance | end of the last fully successful round |
//! | `sync_errors_total` | instance, reason | failures, by [`crate::reason::Reason`] |
//! | `cert_changes_total` | instance, category | files replaced with a new certificate |
//! | `hook_runs_total` | instance, result | `on_change` runs: ok, failed, timeout |
//! | `api_requests_total` | code | DDS API answers by HTTP status (`error`: no answer) |
//! | `restores_total` | instance, category | outputs restored after being deleted or changed |
//! | `log_lines_dropped_total` | | log lines dropped because stderr was not being read |
//!
//! Every counter of a configured instance exists from the first scrape, at 0
//! ([`Metrics::declare_instance`]): `sync_errors_total` for each of
//! [`SYNC_ERROR_REASONS`], `cert_changes_total` and `restores_total` for each
//! configured category, `hook_runs_total` for each result when the instance
//! has a hook. So `increase()` sees the first error too. A failed hook counts
//! in `sync_errors_total` with reason `hook`, as it fails the round.
//!
//! `instance` is the DDS instance ID (stable, unlike the optional name). Note
//! that Prometheus renames a scraped `instance` label to `exported_instance`
//! unless the scrape job sets `honor_labels: true`.
//!
//! The registry is global ([`global`]) so that the cloud client can count its
//! requests without being handed a handle; tests use their own [`Metrics`].

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::{Category, Instance};
use crate::hooks::HookError;
use crate::sync::{FileOutcome, Report};

/// Every `reason` of `sync_errors_total`: the labels of
/// [`crate::reason::Reason`].
pub const SYNC_ERROR_REASONS: &[&str] = &crate::reason::LABELS;

/// Every `result` of `hook_runs_total`.
pub const HOOK_RESULTS: &[&str] = &["ok", "failed", "timeout"];

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabels {
    instance: String,
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    instance: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    instance: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

/// The daemon's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    not_after: Family<FileLabels, Gauge>,
    expiring: Family<FileLabels, Gauge>,
    last_success: Family<InstanceLabels, Gauge>,
    sync_errors: Family<ReasonLabels, Counter>,
    cert_changes: Family<FileLabels, Counter>,
    hook_runs: Family<ResultLabels, Counter>,
    api_requests: Family<CodeLabels, Counter>,
    restores: Family<FileLabels, Counter>,
    log_lines_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn file(instance: &str, category: Category) -> FileLabels {
    FileLabels {
        instance: instance.to_string(),
        category: category.as_str().to_string(),
    }
}

fn reason_labels(instance: &str, reason: &str) -> ReasonLabels {
    ReasonLabels {
        instance: instance.to_string(),
        reason: reason.to_string(),
    }
}

impl Metrics {
    /// An empty registry with every family registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("dds_certsync");
        let m = Metrics {
            registry: Registry::default(),
            not_after: Family::default(),
            expiring: Family::default(),
            last_success: Family::default(),
            sync_errors: Family::default(),
            cert_changes: Family::default(),
            hook_runs: Family::default(),
            api_requests: Family::default(),
            restores: Family::default(),
            log_lines_dropped: Counter::default(),
        };
        registry.register(
            "cert_not_after_timestamp_seconds",
            "Earliest notAfter (Unix seconds) of the certificates in the output file on disk",
            m.not_after.clone(),
        );
        registry.register(
            "cert_expiring",
            "1 when the output file's certificate expires within sync.expiry_warning or has expired, else 0",
            m.expiring.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "When the instance's last fully successful sync round ended (Unix seconds)",
            m.last_success.clone(),
        );
        registry.register(
            "sync_errors",
            "Sync failures by reason",
            m.sync_errors.clone(),
        );
        registry.register(
            "cert_changes",
            "Output files replaced with a new certificate",
            m.cert_changes.clone(),
        );
        registry.register(
            "hook_runs",
            "on_change hook runs by result (ok, failed, timeout)",
            m.hook_runs.clone(),
        );
        registry.register(
            "api_requests",
            "DDS API requests by HTTP status code (error: no answer)",
            m.api_requests.clone(),
        );
        registry.register(
            "restores",
            "Output files restored after being deleted or changed by someone else",
            m.restores.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stderr was not being read",
            m.log_lines_dropped.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The metrics as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts one DDS API request: its HTTP status, or `None` when no answer came.
    pub fn api_request(&self, status: Option<u16>) {
        let code = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        self.api_requests.get_or_create(&CodeLabels { code }).inc();
    }

    /// Exports the counters of a configured instance at 0 (those that exist
    /// already keep their value).
    pub fn declare_instance(&self, inst: &Instance) {
        for reason in SYNC_ERROR_REASONS {
            self.sync_errors
                .get_or_create_owned(&reason_labels(&inst.id, reason));
        }
        for out in &inst.outputs {
            self.cert_changes
                .get_or_create_owned(&file(&inst.id, out.category));
            self.restores
                .get_or_create_owned(&file(&inst.id, out.category));
        }
        if inst.has_hook() {
            for result in HOOK_RESULTS {
                self.hook_runs.get_or_create_owned(&ResultLabels {
                    instance: inst.id.clone(),
                    result: result.to_string(),
                });
            }
        }
    }

    /// Records what a round did. `now` is the Unix time the round ended.
    pub fn record_round(&self, instance: &str, report: &Report, now: i64) {
        if report.ok() {
            self.last_success
                .get_or_create(&InstanceLabels {
                    instance: instance.to_string(),
                })
                .set(now);
        }
        for f in &report.failures {
            self.sync_errors
                .get_or_create(&reason_labels(instance, f.reason.as_str()))
                .inc();
        }
        if let Some(Err(_)) = &report.hook {
            self.sync_errors
                .get_or_create(&reason_labels(instance, "hook"))
                .inc();
        }
        for f in &report.files {
            if matches!(f.outcome, FileOutcome::Replaced { .. }) {
                self.cert_changes
                    .get_or_create(&file(instance, f.category))
                    .inc();
            }
        }
        if let Some(hook) = &report.hook {
            let result = match hook {
                Ok(()) => "ok",
                Err(HookError::TimedOut { .. }) => "timeout",
                Err(_) => "failed",
            };
            self.hook_runs
                .get_or_create(&ResultLabels {
                    instance: instance.to_string(),
                    result: result.to_string(),
                })
                .inc();
        }
    }

    /// Sets what is known of a file on disk: its earliest notAfter (`None`:
    /// missing or unreadable, so the series is dropped) and whether it expires
    /// soon.
    pub fn set_file(
        &self,
        instance: &str,
        category: Category,
        not_after: Option<i64>,
        expiring: bool,
    ) {
        let labels = file(instance, category);
        match not_after {
            Some(t) => {
                self.not_after.get_or_create(&labels).set(t);
                self.expiring
                    .get_or_create(&labels)
                    .set(i64::from(expiring));
            }
            None => {
                self.not_after.remove(&labels);
                self.expiring.remove(&labels);
            }
        }
    }

    /// Counts a log line that stderr could not take.
    pub fn log_line_dropped(&self) {
        self.log_lines_dropped.inc();
    }

    /// Counts a restored output.
    pub fn restored(&self, instance: &str, category: Category) {
        self.restores.get_or_create(&file(instance, category)).inc();
    }

    /// Drops the gauges of an instance that is no longer configured. Counters
    /// stay: they only ever grow, and Prometheus handles their staleness.
    pub fn forget_instance(&self, instance: &str) {
        for c in Category::ALL {
            self.set_file(instance, c, None, false);
        }
        self.last_success.remove(&InstanceLabels {
            instance: instance.to_string(),
        });
    }
}

/// The process-wide registry.
pub fn global() -> &'static Metrics {
    static GLOBAL: OnceLock<Metrics> = OnceLock::new();
    GLOBAL.get_or_init(Metrics::new)
}

/// Counts one DDS API request in the global registry.
pub fn api_request(status: Option<u16>) {
    global().api_request(status);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{Failure, FileReport};
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
                path: PathBuf::from("/x"),
                outcome: FileOutcome::Replaced {
                    old: None,
                    new: [0; 32],
                },
                pem: None,
            }],
            hook: Some(Ok(())),
            ..Report::default()
        };
        m.record_round("i-1", &report, 1_700_000_000);
        m.api_request(Some(200));
        m.api_request(None);
        m.set_file("i-1", Category::National, Some(2_000_000_000), true);
        let t = m.encode();
        assert!(
            line(
                &t,
                "dds_certsync_last_success_timestamp_seconds{instance=\"i-1\"} 1700000000"
            )
            .is_some(),
            "{t}"
        );
        assert!(
            line(
                &t,
                "dds_certsync_cert_changes_total{instance=\"i-1\",category=\"national\"} 1"
            )
            .is_some(),
            "{t}"
        );
        assert!(
            line(
                &t,
                "dds_certsync_hook_runs_total{instance=\"i-1\",result=\"ok\"} 1"
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
        assert!(line(&t, "dds_certsync_cert_not_after_timestamp_seconds{instance=\"i-1\",category=\"national\"} 2000000000").is_some(), "{t}");
        assert!(
            line(
                &t,
                "dds_certsync_cert_expiring{instance=\"i-1\",category=\"national\"} 1"
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
        m.record_round("i-2", &report, 5);
        m.record_round("i-2", &report, 6);
        let t = m.encode();
        assert!(
            line(
                &t,
                "dds_certsync_sync_errors_total{instance=\"i-2\",reason=\"api_throttled\"} 2"
            )
            .is_some(),
            "{t}"
        );
        assert!(
            line(
                &t,
                "dds_certsync_hook_runs_total{instance=\"i-2\",result=\"timeout\"} 2"
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
                    "dds_certsync_sync_errors_total{{instance=\"{id}\",reason=\"{reason}\"}} 0"
                );
                assert!(line(&t, &series).is_some(), "{series}\n{t}");
            }
        }
        for series in [
            "dds_certsync_cert_changes_total{instance=\"i-1\",category=\"international\"} 0",
            "dds_certsync_restores_total{instance=\"i-2\",category=\"national\"} 0",
            "dds_certsync_hook_runs_total{instance=\"i-1\",result=\"timeout\"} 0",
        ] {
            assert!(line(&t, series).is_some(), "{series}\n{t}");
        }
        // Only configured categories, and hook results only with a hook.
        assert!(!t.contains("instance=\"i-1\",category=\"national\""), "{t}");
        assert!(!t.contains("hook_runs_total{instance=\"i-2\""), "{t}");

        let report = Report {
            hook: Some(Err(HookError::Spawn {
                program: "p".into(),
                reason: "gone".into(),
            })),
            ..Report::default()
        };
        m.record_round("i-1", &report, 5);
        m.declare_instance(&cfg.instances[0]);
        let t = m.encode();
        assert!(
            line(
                &t,
                "dds_certsync_sync_errors_total{instance=\"i-1\",reason=\"hook\"} 1"
            )
            .is_some(),
            "{t}"
        );
        assert!(
            line(
                &t,
                "dds_certsync_hook_runs_total{instance=\"i-1\",result=\"failed\"} 1"
            )
            .is_some(),
            "{t}"
        );
    }

    #[test]
    fn every_api_error_reason_is_a_declared_reason() {
        use crate::cloud::ApiError;
        let status = |status| ApiError::Status {
            status,
            code: None,
            message: None,
            request_id: None,
            retry_after: None,
        };
        for e in [
            status(401),
            status(403),
            status(429),
            status(400),
            status(404),
            status(503),
            ApiError::BadResponse(String::new()),
            ApiError::Timeout,
            ApiError::Network(String::new()),
            ApiError::Auth(String::new()),
        ] {
            assert!(SYNC_ERROR_REASONS.contains(&e.reason().as_str()), "{e:?}");
        }
    }

    #[test]
    fn forgetting_an_instance_drops_its_gauges() {
        let m = Metrics::new();
        m.set_file("gone", Category::International, Some(10), false);
        m.record_round("gone", &Report::default(), 7);
        m.forget_instance("gone");
        let t = m.encode();
        assert!(!t.contains("instance=\"gone\""), "{t}");
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.set_file("a\"b\\c\nd", Category::International, Some(1), false);
        let t = m.encode();
        assert!(t.contains(r#"instance="a\"b\\c\nd""#), "{t}");
    }
}
