//! The fault suite, in `--once` and in the daemon: one instance per fault,
//! all faulted at once against one stand-in. Every status class, bad JSON
//! and wrong shapes, unknown categories, bad links, resets, stalls,
//! truncation, huge bodies, HTML pages, and bad PEM. For each: the file is
//! untouched, no hook runs, and the error is clear. The daemon then lives
//! through a long run of these faults and picks up the next real rotation
//! of every instance.

use std::fs;
use std::time::Duration;

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(60);

fn api_status(status: u16, body: &str) -> Fault {
    Fault::ApiStatus {
        status,
        body: body.into(),
        retry_after: None,
    }
}

fn links(list: &str) -> Fault {
    Fault::ApiBody(format!("{{\"certs\":[{list}]}}"))
}

fn link(category: &str, url: &str) -> String {
    format!("{{\"category\":\"{category}\",\"download_link\":\"{url}\"}}")
}

/// (case name, fault, what the instance's summary line must say).
fn cases() -> Vec<(&'static str, Fault, &'static str)> {
    let cert = dds_standin::sm2_cert_pem("x");
    let key = dds_standin::private_key_pem();
    vec![
        // Status classes.
        // A 2xx other than 200 is read as an answer; its empty body is refused.
        ("status-204", api_status(204, ""), "unusable body: not JSON"),
        ("status-302", api_status(302, ""), "HTTP 302"),
        (
            "status-400",
            api_status(400, r#"{"error_code":"DBS.200001","error_msg":"Invalid parameter"}"#),
            "HTTP 400: DBS.200001: Invalid parameter",
        ),
        (
            "status-401",
            api_status(401, r#"{"error_code":"APIGW.0301","error_msg":"Incorrect IAM authentication information"}"#),
            "HTTP 401: APIGW.0301",
        ),
        (
            "status-403",
            api_status(403, r#"{"errorCode":"DBS.200019","errorMsg":"The instance is frozen"}"#),
            "HTTP 403: DBS.200019: The instance is frozen",
        ),
        (
            "status-429",
            Fault::ApiStatus {
                status: 429,
                body: r#"{"code":"APIGW.0308","message":"The throttling threshold has been reached"}"#.into(),
                retry_after: Some("1".into()),
            },
            "HTTP 429",
        ),
        ("status-500", api_status(500, "{}"), "HTTP 500"),
        (
            "status-502-html",
            api_status(502, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
            "HTTP 502",
        ),
        // Bodies that are not the expected JSON.
        ("json-invalid", Fault::ApiBody("{\"certs\": [".into()), "not JSON"),
        ("json-html-200", Fault::ApiBody("<!DOCTYPE html><html></html>".into()), "not JSON"),
        ("json-certs-object", Fault::ApiBody("{\"certs\": {}}".into()), "unexpected JSON shape"),
        ("json-array", Fault::ApiBody("[]".into()), "unexpected JSON shape"),
        (
            "json-category-number",
            Fault::ApiBody("{\"certs\":[{\"category\":1,\"download_link\":\"https://x/\"}]}".into()),
            "unexpected JSON shape",
        ),
        ("json-no-certs", Fault::ApiBody("{}".into()), "missing field `certs`"),
        // Categories and links.
        (
            "category-unknown",
            links(&link("quantum", "https://localhost:1/q")),
            "no international certificate (it lists: quantum)",
        ),
        (
            "link-http",
            links(&format!(
                "{},{}",
                link("international", "http://localhost/ca.crt"),
                link("national", "http://localhost/ca2.crt")
            )),
            "not https://",
        ),
        (
            "link-not-url",
            links(&format!(
                "{},{}",
                link("international", "not a url"),
                link("national", "::")
            )),
            "not a URL",
        ),
        // Transport.
        ("api-reset", Fault::ApiReset, "API request failed"),
        ("api-stall", Fault::ApiDelay(Duration::from_secs(60)), "timed out"),
        (
            "download-reset",
            Fault::DownloadReset,
            "failed: download failed: the request failed",
        ),
        ("download-stall", Fault::DownloadDelay(Duration::from_secs(60)), "timed out"),
        (
            "download-truncated",
            Fault::DownloadTruncate,
            "failed: download failed: the connection broke while reading the body (truncated answer?)",
        ),
        ("download-huge", Fault::DownloadHuge(3 << 20), "larger than 1048576 bytes"),
        (
            "download-huge-chunked",
            Fault::DownloadHugeChunked(3 << 20),
            "larger than 1048576 bytes",
        ),
        (
            "download-403-xml",
            Fault::DownloadStatus {
                status: 403,
                body: "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>".into(),
                content_type: "application/xml".into(),
            },
            "HTTP 403: AccessDenied",
        ),
        (
            "download-html",
            Fault::DownloadBody(b"<!DOCTYPE html><html><body>Maintenance</body></html>".to_vec()),
            "HTML",
        ),
        // PEM.
        ("pem-private-key", Fault::DownloadBody(key.clone().into_bytes()), "PRIVATE KEY"),
        (
            "pem-mixed-key",
            Fault::DownloadBody(format!("{cert}{key}").into_bytes()),
            "only CERTIFICATE blocks are accepted",
        ),
        (
            "pem-mixed-crl",
            Fault::DownloadBody(
                format!("{cert}-----BEGIN X509 CRL-----\nMIIBAA==\n-----END X509 CRL-----\n").into_bytes(),
            ),
            "only CERTIFICATE blocks are accepted",
        ),
        (
            "pem-expired",
            Fault::DownloadBody(dds_standin::expired_cert_pem().into_bytes()),
            "expired at",
        ),
        (
            "pem-garbage-base64",
            Fault::DownloadBody(
                b"-----BEGIN CERTIFICATE-----\n@@@@ not base64 @@@@\n-----END CERTIFICATE-----\n".to_vec(),
            ),
            "malformed PEM",
        ),
        ("pem-empty", Fault::DownloadBody(Vec::new()), "empty body"),
    ]
}

/// The summary line `--once` printed for an instance.
fn line_of<'a>(stdout: &'a str, id: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.contains(&format!("({id}):")))
        .unwrap_or("")
}

/// Failed rounds the daemon logged for an instance.
fn failed_rounds(log: &str, id: &str) -> usize {
    let field = format!("instance_id={id}");
    log.lines()
        .filter(|l| l.contains("round failed") && l.split_whitespace().any(|w| w == field))
        .count()
}

fn snapshot(env: &Env, ids: &[String]) -> Vec<Vec<u8>> {
    ids.iter().flat_map(|id| env.outputs(id)).collect()
}

#[test]
fn every_fault_keeps_the_files_in_once_and_in_the_daemon_which_then_recovers() {
    let cases = cases();
    let mut env = Env::new();
    let ids: Vec<String> = cases.iter().map(|(n, _, _)| n.to_string()).collect();
    for id in &ids {
        env.instance(id);
    }
    env.sync.push_str(
        // 3 s, not less: 64 concurrent TLS handshakes of a debug build on a
        // loaded two-core machine must not time out on their own.
        "timeout = \"3s\"\ninterval = \"1s\"\njitter = \"0s\"\nmax_backoff = \"1s\"\nconcurrency = 64\n",
    );
    env.once(&[]).assert_code(0);

    // Every certificate changes upstream; every instance gets its fault.
    for id in &ids {
        env.standin.rotate(id, "international");
        env.standin.rotate(id, "national");
    }
    let before = snapshot(&env, &ids);
    for (id, fault, _) in &cases {
        env.standin
            .push_fault(FaultRule::always(fault.clone()).for_instance(id));
    }

    // --once: exit 1, each instance FAILED with its reason, nothing written.
    let run = env.once(&["--deadline", "30s"]);
    run.assert_code(1);
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(id, _, why)| {
            let line = line_of(&run.stdout, id);
            (!(line.starts_with("FAILED") && line.contains(why)))
                .then(|| format!("{id}: expected FAILED with {why:?}, got {line:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}\n{}", run.all());
    assert_eq!(snapshot(&env, &ids), before, "a fault let bytes through");
    for id in &ids {
        assert_eq!(env.hook_runs(id).len(), 1, "{id}: no hook without a change");
    }

    // The daemon: a long run of faults (every instance fails round after
    // round), still nothing written and no hook.
    let mut d = env.daemon(&[]);
    let ok = wait_until(LIMIT, || {
        let log = d.log();
        ids.iter().all(|id| failed_rounds(&log, id) >= 3)
    });
    let log = d.log();
    assert!(
        ok,
        "not every instance failed 3 times: {:?}\n{log}",
        ids.iter()
            .map(|id| (id, failed_rounds(&log, id)))
            .collect::<Vec<_>>()
    );
    for (id, _, why) in &cases {
        let field = format!("instance_id={id}");
        assert!(
            log.lines()
                .any(|l| l.contains(why) && l.split_whitespace().any(|w| w == field)),
            "{id}: the daemon never logged {why:?}\n{log}"
        );
    }
    assert_eq!(snapshot(&env, &ids), before, "a fault let bytes through");
    assert!(
        !ls(&env.path("out"))
            .iter()
            .any(|n| n.contains(".dds-certsync-")),
        "temp files left"
    );
    for id in &ids {
        assert_eq!(env.hook_runs(id).len(), 1, "{id}");
    }

    // The faults end: every instance picks up its rotation and its hook
    // runs. (Usually once; twice when the faults ended between an instance's
    // two downloads, so its categories changed in two rounds.)
    env.standin.clear_faults();
    let ok = wait_until(LIMIT, || {
        ids.iter().all(|id| {
            env.hook_runs(id).len() >= 2
                // Settled: no hook still owed (a round that changed the
                // second category may not have run its hook yet).
                && !env.path(&format!("state/hook-owed-{id}.json")).exists()
                && fs::read(env.out(id, "national")).ok() == Some(env.served(id, "national"))
                && fs::read(env.out(id, "international")).ok()
                    == Some(env.served(id, "international"))
        })
    });
    assert!(ok, "the daemon did not recover every instance\n{}", d.log());
    for id in &ids {
        let paths = [env.out(id, "international"), env.out(id, "national")];
        crate::hooks_delivery::check_chain(&env, id, &paths.each_ref().map(|p| p.as_path()));
    }
    assert!(d.child.try_wait().unwrap().is_none(), "the daemon died");
}
