//! What the packages ship for monitoring: every metric that the alert rules
//! (`deploy/prometheus-rules.yaml`, `deploy/prometheus-rule.yaml`) and the
//! Grafana dashboard (`deploy/grafana-dashboard.json`) name is one that a
//! running daemon exports. The names are read from the files, not listed here,
//! so a rule or panel added later is checked too.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(30);
const PREFIX: &str = "dds_certsync_";
const MONITORING_FILES: [&str; 3] = [
    "deploy/prometheus-rules.yaml",
    "deploy/prometheus-rule.yaml",
    "deploy/grafana-dashboard.json",
];

/// Every `dds_certsync_*` metric name a file mentions. A prefix followed by
/// anything but a name character (a regex such as `dds_certsync_.+` in a
/// Grafana variable) names no metric and is skipped.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + PREFIX.len()..];
        let len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(after.len());
        let part_of_a_word = before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if len > 0 && !part_of_a_word {
            names.insert(format!("{PREFIX}{}", &after[..len]));
        }
        rest = &after[len..];
    }
    names
}

/// The sample names an OpenMetrics exposition declares: `# TYPE x counter`
/// exports `x_total`, a gauge `x` itself. Families without a series yet are
/// declared all the same.
fn exported(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (name, kind) = l.split_once(' ')?;
            Some(match kind {
                "counter" => format!("{name}_total"),
                _ => name.to_string(),
            })
        })
        .collect()
}

/// GET /metrics: the body of a 200 answer, else None.
fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

#[test]
fn every_metric_in_the_rules_and_the_dashboard_is_exported_by_a_running_daemon() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut wanted: Vec<(&str, String)> = Vec::new();
    for file in MONITORING_FILES {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let names = metric_names(&text);
        assert!(!names.is_empty(), "{file} names no dds_certsync_ metric");
        wanted.extend(names.into_iter().map(|n| (file, n)));
    }

    // prometheus-client declares a family only once it has a series, so the
    // daemon is made to do everything that fills one: a full round with a
    // hook (inst-m), a failing instance (inst-f: its API answers 500), and a
    // restore of a deleted output.
    let mut env = Env::new();
    env.instance("inst-m").instance("inst-f");
    env.standin.push_fault(FaultRule {
        instance: Some("inst-f".into()),
        category: None,
        fault: Fault::ApiStatus {
            status: 500,
            body: r#"{"error_code":"DBS.200001","error_msg":"internal"}"#.into(),
            retry_after: None,
        },
        times: None,
    });
    env.sync.push_str("max_backoff = \"2s\"\n");
    env.instances
        .push("\n[server]\nlisten = \"127.0.0.1:0\"\n".into());
    let d = env.daemon(&[]);
    let port = d.listen_addr(1).port();
    let mut body = String::new();
    let synced = wait_until(LIMIT, || {
        body = scrape(port).unwrap_or_default();
        body.contains(
            "dds_certsync_last_success_timestamp_seconds{instance=\"inst-m\",service=\"dds\"}",
        ) && body.contains("dds_certsync_hook_runs_total{")
            && body.contains("dds_certsync_sync_errors_total{instance=\"inst-f\"")
    });
    assert!(synced, "no full round in /metrics\n{body}\n{}", d.log());
    std::fs::remove_file(env.out("inst-m", "international")).unwrap();
    let restored = wait_until(LIMIT, || {
        body = scrape(port).unwrap_or_default();
        body.contains("dds_certsync_restores_total{")
    });
    assert!(restored, "no restore in /metrics\n{body}\n{}", d.log());
    let have = exported(&body);
    assert!(
        have.contains("dds_certsync_hook_runs_total")
            && have.contains("dds_certsync_cert_not_after_timestamp_seconds"),
        "the exposition was not parsed: {have:?}\n{body}"
    );

    let missing: Vec<String> = wanted
        .iter()
        .filter(|(_, name)| !have.contains(name))
        .map(|(file, name)| format!("{file}: {name}"))
        .collect();
    assert!(
        missing.is_empty(),
        "named but not exported: {missing:?}\nexported: {have:?}"
    );
    // The check itself can fail: a misspelt or base (counter without _total)
    // name is not among the exported ones.
    for wrong in [
        "dds_certsync_cert_not_after_seconds",
        "dds_certsync_hook_runs",
    ] {
        assert!(!have.contains(wrong), "{wrong} accepted: {have:?}");
    }
}

#[test]
fn metric_names_are_found_in_promql_and_json_but_not_in_regexes() {
    let names = metric_names(
        r#"expr: time() - dds_certsync_last_success_timestamp_seconds > 3 * 3600
        "expr": "sum by (code) (rate(dds_certsync_api_requests_total{job=~\"$job\"}[5m]))",
        "query": "label_values({__name__=~\"dds_certsync_.+\"}, job)",
        x_dds_certsync_not_a_name"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "dds_certsync_api_requests_total",
            "dds_certsync_last_success_timestamp_seconds"
        ]
    );
}
