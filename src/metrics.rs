//! Prometheus metrics: one process-wide registry, rendered as OpenMetrics text
//! by `/metrics` (see [`crate::server`]).
//!
//! Every name is prefixed `dds_certsync_`:
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `cert_not_after_timestamp_seconds` | instance, service, category | earliest notAfter of the current certificates in the file on disk (previous ones kept for `keep_previous` left out) |
//! | `cert_expiring` | instance, service, category | 1 when that is within `sync.expiry_warning`, or past |
//! | `last_success_timestamp_seconds` | instance, service | end of the last fully successful round |
//! | `sync_errors_total` | instance, service, reason | failures, by [`crate::reason::Reason`] |
//! | `cert_changes_total` | instance, service, category | files replaced with a new certificate |
//! | `hook_runs_total` | instance, service, result | hook runs, a round's and each retry's: ok, failed, timeout |
//! | `api_requests_total` | code | API answers of every service by HTTP status (`error`: no answer) |
//! | `restores_total` | instance, service, category | outputs restored after being deleted or changed |
//!
//! The four series of an output (`cert_*`, `restores_total`) carry one more
//! label, `output="truststore"`, for a Java truststore; a PEM file's series
//! have only `instance`, `service` and `category`.
//! | `log_lines_dropped_total` | | log lines dropped because stderr was not being read |
//! | `probe_ok` | instance, service, address | 1 when the last probe's chain verified against the file on disk, 0 when it did not or the address could not be reached |
//! | `kept_certificates` | instance, service, category | previous certificates the file holds after the current ones (`keep_previous`) |
//! | `next_drop_timestamp_seconds` | instance, service, category | when the next of them leaves the file; absent when none is kept |
//!
//! Every counter of a configured instance exists from the first scrape, at 0
//! ([`Metrics::declare_instance`]): `sync_errors_total` for each of
//! [`SYNC_ERROR_REASONS`], `cert_changes_total` and `restores_total` for each
//! configured category, `hook_runs_total` for each result when the instance
//! has a hook. So `increase()` sees the first error too. A failed hook run
//! (a round's or a retry's) counts in `sync_errors_total` with reason `hook`.
//!
//! `instance` is the instance ID (stable, unlike the optional name), and
//! `service` its service (`dds`, `rds`, `geminidb`, `opengauss`, `dcs`).
//! Callers hand both in ([`Who`]): every caller holds the instance, so the
//! registry keeps no map of its own. A reload that removes an instance, or
//! moves it to another service, drops its gauges under the old labels
//! ([`Metrics::forget_instance`]). Note
//! that Prometheus renames a scraped `instance` label to `exported_instance`
//! unless the scrape job sets `honor_labels: true`.
//!
//! The metrics take plain values (an instance ID, a category, a
//! [`Reason`], a [`HookResult`], an HTTP status): what a round's report means
//! for them is the daemon's to say, and the cloud client reports its HTTP
//! statuses to an observer the daemon gives it. No module below the daemon
//! imports this one, so `--once` counts into no registry.
//!
//! The registry is global ([`global`]), used by the daemon, its server and
//! the probes it runs (handed [`global`]);
//! tests use their own [`Metrics`].
//!
//! The file runs past 500 lines for its unit tests, which sit beside the code
//! they pin (the code is under 460 lines).

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::cloud::Service;
use crate::config::{Category, Instance};
use crate::reason::Reason;

/// Every `reason` of `sync_errors_total`: the labels of
/// [`crate::reason::Reason`].
pub const SYNC_ERROR_REASONS: &[&str] = &crate::reason::LABELS;

/// How a hook run ended: the `result` label of `hook_runs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookResult {
    Ok,
    Failed,
    TimedOut,
}

impl HookResult {
    /// Every result, in the order they are exported.
    pub const ALL: [HookResult; 3] = [HookResult::Ok, HookResult::Failed, HookResult::TimedOut];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            HookResult::Ok => "ok",
            HookResult::Failed => "failed",
            HookResult::TimedOut => "timeout",
        }
    }
}

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    instance: String,
    service: &'static str,
}

/// An output's labels: `instance` and `category`, and `output` for an
/// output that is not the category's PEM file (`output="truststore"`), so
/// that the PEM files' series keep the labels they always had.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct FileLabels {
    instance: String,
    service: &'static str,
    category: &'static str,
    output: Option<&'static str>,
}

impl EncodeLabelSet for FileLabels {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelSetEncoder,
    ) -> Result<(), std::fmt::Error> {
        let mut labels = vec![
            ("instance", self.instance.as_str()),
            ("service", self.service),
            ("category", self.category),
        ];
        labels.extend(self.output.map(|o| ("output", o)));
        labels.as_slice().encode(encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    instance: String,
    service: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    instance: String,
    service: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    instance: String,
    service: &'static str,
    address: String,
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
    probe_ok: Family<ProbeLabels, Gauge>,
    kept: Family<FileLabels, Gauge>,
    next_drop: Family<FileLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// An instance's ID and service: the labels every per-instance series has.
pub type Who<'a> = (&'a str, Service);

/// The labels of the output `output` (its config key: `international`,
/// `national`, `truststore`) of `category`, of an instance of `service`.
fn file((instance, service): Who, category: Category, output: &'static str) -> FileLabels {
    FileLabels {
        instance: instance.to_string(),
        service: service.name(),
        category: category.as_str(),
        output: (output != category.as_str()).then_some(output),
    }
}

fn probe_labels((instance, service): Who, address: &str) -> ProbeLabels {
    ProbeLabels {
        instance: instance.to_string(),
        service: service.name(),
        address: address.to_string(),
    }
}

fn reason_labels((instance, service): Who, reason: Reason) -> ReasonLabels {
    ReasonLabels {
        instance: instance.to_string(),
        service: service.name(),
        reason: reason.as_str(),
    }
}

fn result_labels((instance, service): Who, result: HookResult) -> ResultLabels {
    ResultLabels {
        instance: instance.to_string(),
        service: service.name(),
        result: result.as_str(),
    }
}

fn instance_labels((instance, service): Who) -> InstanceLabels {
    InstanceLabels {
        instance: instance.to_string(),
        service: service.name(),
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
            probe_ok: Family::default(),
            kept: Family::default(),
            next_drop: Family::default(),
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
            "API requests (every service) by HTTP status code (error: no answer)",
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
        registry.register(
            "probe_ok",
            "1 when the last probe of the address found a server chain that verifies against the international file on disk, else 0",
            m.probe_ok.clone(),
        );
        registry.register(
            "kept_certificates",
            "Previous certificates the output file holds after the current ones, until keep_previous passes or they expire",
            m.kept.clone(),
        );
        registry.register(
            "next_drop_timestamp_seconds",
            "When the next previous certificate kept in the output file leaves it (Unix seconds); absent when none is kept",
            m.next_drop.clone(),
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
        let who = (inst.id.as_str(), inst.service);
        for reason in Reason::ALL {
            self.sync_errors
                .get_or_create_owned(&reason_labels(who, reason));
        }
        for out in &inst.outputs {
            let labels = file(who, out.category, out.name());
            self.cert_changes.get_or_create_owned(&labels);
            self.restores.get_or_create_owned(&labels);
        }
        if inst.has_hook() {
            for result in HookResult::ALL {
                self.hook_runs
                    .get_or_create_owned(&result_labels(who, result));
            }
        }
    }

    /// Records the end of a fully successful round, at Unix time `now`.
    pub fn round_succeeded(&self, who: Who, now: i64) {
        self.last_success
            .get_or_create(&instance_labels(who))
            .set(now);
    }

    /// Counts a failure of a round.
    pub fn sync_error(&self, who: Who, reason: Reason) {
        self.sync_errors
            .get_or_create(&reason_labels(who, reason))
            .inc();
    }

    /// Counts an output replaced with a new certificate.
    pub fn cert_changed(&self, who: Who, category: Category, output: &'static str) {
        self.cert_changes
            .get_or_create(&file(who, category, output))
            .inc();
    }

    /// Counts a hook run.
    pub fn hook_run(&self, who: Who, result: HookResult) {
        self.hook_runs
            .get_or_create(&result_labels(who, result))
            .inc();
    }

    /// Sets what an output keeps after a round: how many previous
    /// certificates, and when the next of them leaves (`None`: none kept,
    /// so that series is dropped).
    pub fn set_kept(&self, who: Who, category: Category, kept: usize, next_drop: Option<i64>) {
        let labels = file(who, category, category.as_str());
        self.kept
            .get_or_create(&labels)
            .set(i64::try_from(kept).unwrap_or(i64::MAX));
        match next_drop {
            Some(t) => {
                self.next_drop.get_or_create(&labels).set(t);
            }
            None => {
                self.next_drop.remove(&labels);
            }
        }
    }

    /// Sets what is known of a file on disk: its earliest notAfter (`None`:
    /// missing or unreadable, so the series is dropped) and whether it expires
    /// soon.
    pub fn set_file(
        &self,
        who: Who,
        (category, output): (Category, &'static str),
        not_after: Option<i64>,
        expiring: bool,
    ) {
        let labels = file(who, category, output);
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

    /// Brings `log_lines_dropped_total` up to `total`, the count of log
    /// lines stderr could not take since the start (kept by
    /// [`crate::logging::lines_dropped`]). It never goes down.
    pub fn log_lines_dropped(&self, total: u64) {
        self.log_lines_dropped
            .inner()
            .fetch_max(total, std::sync::atomic::Ordering::Relaxed);
    }

    /// The result of the last probe of `address` for `instance`.
    pub fn set_probe(&self, who: Who, address: &str, ok: bool) {
        self.probe_ok
            .get_or_create(&probe_labels(who, address))
            .set(i64::from(ok));
    }

    /// `address` is no longer probed for `instance`.
    pub fn forget_probe(&self, who: Who, address: &str) {
        self.probe_ok.remove(&probe_labels(who, address));
    }

    /// Counts a restored output.
    pub fn restored(&self, who: Who, category: Category, output: &'static str) {
        self.restores
            .get_or_create(&file(who, category, output))
            .inc();
    }

    /// Drops the gauges of an instance that is no longer configured, or no
    /// longer of that service. Counters stay: they only ever grow, and
    /// Prometheus handles their staleness.
    pub fn forget_instance(&self, who: Who) {
        for c in Category::ALL {
            for output in [c.as_str(), "truststore"] {
                let labels = file(who, c, output);
                self.not_after.remove(&labels);
                self.expiring.remove(&labels);
            }
            self.kept.remove(&file(who, c, c.as_str()));
            self.next_drop.remove(&file(who, c, c.as_str()));
        }
        self.last_success.remove(&instance_labels(who));
    }
}

/// The process-wide registry.
pub fn global() -> &'static Metrics {
    static GLOBAL: OnceLock<Metrics> = OnceLock::new();
    GLOBAL.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
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
    fn kept_certificates_and_the_next_drop_are_exported_and_cleared() {
        let m = Metrics::new();
        m.set_kept(
            ("i-1", Service::Dds),
            Category::International,
            2,
            Some(1_900_000_000),
        );
        let t = m.encode();
        assert!(
            line(
                &t,
                "dds_certsync_kept_certificates{instance=\"i-1\",service=\"dds\",category=\"international\"} 2"
            )
            .is_some(),
            "{t}"
        );
        assert!(line(&t, "dds_certsync_next_drop_timestamp_seconds{instance=\"i-1\",service=\"dds\",category=\"international\"} 1900000000").is_some(), "{t}");
        assert!(
            t.contains("# TYPE dds_certsync_kept_certificates gauge"),
            "{t}"
        );
        // The last one dropped: none kept, no next drop.
        m.set_kept(("i-1", Service::Dds), Category::International, 0, None);
        let t = m.encode();
        assert!(
            line(
                &t,
                "dds_certsync_kept_certificates{instance=\"i-1\",service=\"dds\",category=\"international\"} 0"
            )
            .is_some(),
            "{t}"
        );
        assert!(
            !t.contains("dds_certsync_next_drop_timestamp_seconds{"),
            "{t}"
        );
        m.set_kept(("i-1", Service::Dds), Category::International, 1, Some(7));
        m.forget_instance(("i-1", Service::Dds));
        assert!(!m.encode().contains("instance=\"i-1\""));
    }

    #[test]
    fn forgetting_an_instance_drops_its_gauges() {
        let m = Metrics::new();
        m.set_file(
            ("gone", Service::Dds),
            (Category::International, "international"),
            Some(10),
            false,
        );
        m.round_succeeded(("gone", Service::Dds), 7);
        m.forget_instance(("gone", Service::Dds));
        let t = m.encode();
        assert!(!t.contains("instance=\"gone\""), "{t}");
    }

    #[test]
    fn a_truststore_is_told_apart_by_its_output_label_and_pem_files_keep_theirs() {
        let m = Metrics::new();
        let intl = Category::International;
        m.set_file(("i", Service::Dds), (intl, "international"), Some(5), false);
        m.set_file(("i", Service::Dds), (intl, "truststore"), Some(6), true);
        m.cert_changed(("i", Service::Dds), intl, "truststore");
        m.restored(("i", Service::Dds), intl, "truststore");
        let t = m.encode();
        for l in [
            "dds_certsync_cert_not_after_timestamp_seconds{instance=\"i\",service=\"dds\",category=\"international\"} 5",
            "dds_certsync_cert_not_after_timestamp_seconds{instance=\"i\",service=\"dds\",category=\"international\",output=\"truststore\"} 6",
            "dds_certsync_cert_expiring{instance=\"i\",service=\"dds\",category=\"international\",output=\"truststore\"} 1",
            "dds_certsync_cert_changes_total{instance=\"i\",service=\"dds\",category=\"international\",output=\"truststore\"} 1",
            "dds_certsync_restores_total{instance=\"i\",service=\"dds\",category=\"international\",output=\"truststore\"} 1",
        ] {
            assert!(line(&t, l).is_some(), "{l}\n{t}");
        }
        m.forget_instance(("i", Service::Dds));
        assert!(!m.encode().contains("cert_expiring{instance=\"i\""));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.set_file(
            ("a\"b\\c\nd", Service::Dds),
            (Category::International, "international"),
            Some(1),
            false,
        );
        let t = m.encode();
        assert!(t.contains(r#"instance="a\"b\\c\nd""#), "{t}");
    }

    #[test]
    fn dropped_log_lines_follow_the_total_and_never_go_down() {
        let m = Metrics::new();
        m.log_lines_dropped(3);
        m.log_lines_dropped(2);
        let t = m.encode();
        assert!(
            line(&t, "dds_certsync_log_lines_dropped_total 3").is_some(),
            "{t}"
        );
    }
}
