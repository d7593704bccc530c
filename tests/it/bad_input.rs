//! Bad input from the API or the download host: every case keeps the old
//! file byte for byte, exits 1, and names the instance, the category and why.

use std::fs;
use std::time::Duration;

use crate::support::*;

/// Syncs once cleanly, injects `rule`, runs `--once` again and checks the
/// failure. Returns the failing run.
fn refused(rule: FaultRule, category: Option<&str>, why: &str) -> Run {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("timeout = \"2s\"\n");
    env.once(&[]).assert_code(0);
    let before = env.outputs("inst-a");
    // The certificate changes upstream, but what arrives is bad.
    env.standin.rotate("inst-a", "international");
    env.standin.rotate("inst-a", "national");
    env.standin.push_fault(rule);
    let run = env.once(&["--deadline", "20s"]);
    run.assert_code(1);
    assert!(
        run.stdout.contains("FAILED name-inst-a (inst-a)"),
        "{}",
        run.all()
    );
    if let Some(cat) = category {
        assert!(
            run.stdout.contains(&format!("{cat} FAILED")),
            "{}",
            run.all()
        );
        assert!(
            run.stderr.contains(&format!("category={cat}")),
            "{}",
            run.all()
        );
    }
    assert!(
        run.all().contains(why),
        "expected {why:?} in\n{}",
        run.all()
    );
    for (c, old) in ["international", "national"].iter().zip(before) {
        let now = fs::read(env.out("inst-a", c)).unwrap();
        if category.is_some_and(|bad| bad != *c) {
            // The healthy category went ahead.
            assert_eq!(now, env.served("inst-a", c));
        } else {
            assert_eq!(now, old, "{c} must be byte-identical");
        }
    }
    assert_eq!(
        ls(&env.path("out")),
        vec!["inst-a-international.crt", "inst-a-national.crt"],
        "no temporary file left"
    );
    assert_eq!(
        env.hook_runs("inst-a").len(),
        1 + usize::from(category.is_some())
    );
    run
}

fn body(category: &str, bytes: impl Into<Vec<u8>>) -> FaultRule {
    FaultRule::always(Fault::DownloadBody(bytes.into())).for_category(category)
}

#[test]
fn private_key_is_refused() {
    let key = dds_standin::private_key_pem();
    refused(body("national", key), Some("national"), "PRIVATE KEY");
}

#[test]
fn certificate_with_a_private_key_is_refused() {
    let mixed = format!(
        "{}{}",
        dds_standin::sm2_cert_pem("x"),
        dds_standin::private_key_pem()
    );
    refused(
        body("national", mixed),
        Some("national"),
        "only CERTIFICATE blocks are accepted",
    );
}

#[test]
fn html_error_page_is_refused() {
    refused(
        body(
            "international",
            "<!DOCTYPE html><html><body>Service Unavailable</body></html>",
        ),
        Some("international"),
        "HTML",
    );
}

#[test]
fn xml_error_status_is_refused() {
    let rule = FaultRule::always(Fault::DownloadStatus {
        status: 403,
        body: "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>".into(),
        content_type: "application/xml".into(),
    })
    .for_category("international");
    refused(
        rule,
        Some("international"),
        "HTTP 403: AccessDenied: Request has expired",
    );
}

#[test]
fn empty_body_is_refused() {
    refused(body("national", ""), Some("national"), "empty body");
}

#[test]
fn truncated_body_is_refused() {
    refused(
        FaultRule::always(Fault::DownloadTruncate).for_category("national"),
        Some("national"),
        "failed: download failed: the connection broke while reading the body (truncated answer?)",
    );
}

#[test]
fn expired_certificate_is_refused() {
    refused(
        body("international", dds_standin::expired_cert_pem()),
        Some("international"),
        "expired at",
    );
}

#[test]
fn garbage_base64_is_refused() {
    refused(
        body(
            "international",
            "-----BEGIN CERTIFICATE-----\n@@@@ not base64 @@@@\n-----END CERTIFICATE-----\n",
        ),
        Some("international"),
        "malformed PEM",
    );
}

#[test]
fn huge_bodies_are_refused_with_or_without_a_length() {
    refused(
        FaultRule::always(Fault::DownloadHuge(3 << 20)).for_category("national"),
        Some("national"),
        "larger than 1048576 bytes",
    );
    refused(
        FaultRule::always(Fault::DownloadHugeChunked(3 << 20)).for_category("national"),
        Some("national"),
        "larger than 1048576 bytes",
    );
}

#[test]
fn non_https_and_non_url_links_are_refused() {
    let api_body = |link: &str| {
        FaultRule::always(Fault::ApiBody(format!(
            r#"{{"certs":[{{"category":"international","download_link":"{link}"}},{{"category":"national","download_link":"https://localhost:1/x"}}]}}"#
        )))
    };
    let run = refused(api_body("http://localhost/ca.crt"), None, "not https://");
    assert!(run.stdout.contains("international FAILED"), "{}", run.all());
    let run = refused(api_body("not a url"), None, "not a URL");
    assert!(run.stdout.contains("international FAILED"), "{}", run.all());
}

#[test]
fn missing_category_is_an_error_for_the_instance() {
    let run = refused(
        FaultRule::always(Fault::ApiBody(
            r#"{"certs":[{"category":"international","download_link":"https://localhost:1/x"},{"category":"quantum","download_link":"https://localhost:1/q"}]}"#.into(),
        )),
        None,
        "has no national certificate (it lists: international, quantum)",
    );
    assert!(run.stdout.contains("national FAILED"), "{}", run.all());
}

#[test]
fn invalid_json_and_wrong_shapes_are_refused() {
    refused(
        FaultRule::always(Fault::ApiBody("{\"certs\": [".into())),
        None,
        "not JSON",
    );
    refused(
        FaultRule::always(Fault::ApiBody("{\"certs\": {}}".into())),
        None,
        "unexpected JSON shape",
    );
}

#[test]
fn api_error_body_is_shown() {
    refused(
        FaultRule::always(Fault::ApiStatus {
            status: 404,
            body: r#"{"error_code":"DBS.200002","error_msg":"The DB instance does not exist"}"#
                .into(),
            retry_after: None,
        }),
        None,
        "HTTP 404: DBS.200002: The DB instance does not exist",
    );
}

#[test]
fn api_server_errors_are_retried_then_reported() {
    let run = refused(
        FaultRule::always(Fault::ApiStatus {
            status: 503,
            body: "<html>busy</html>".into(),
            retry_after: Some("1".into()),
        }),
        None,
        "HTTP 503",
    );
    assert!(run.stderr.contains("retrying in"), "{}", run.stderr);
}

#[test]
fn resets_are_reported() {
    refused(
        FaultRule::always(Fault::ApiReset),
        None,
        "API request failed",
    );
    refused(
        FaultRule::always(Fault::DownloadReset).for_category("national"),
        Some("national"),
        "failed: download failed: the request failed",
    );
}

#[test]
fn stalls_time_out() {
    refused(
        FaultRule::always(Fault::DownloadDelay(Duration::from_secs(30))).for_category("national"),
        Some("national"),
        "timed out",
    );
}

#[test]
fn a_dead_server_fails_fast_and_a_stalled_one_within_the_deadline() {
    let mut env = Env::new();
    env.instance("inst-a");
    // A port nobody listens on.
    let dead = dead_port();
    let port = dead.addr.port();
    let text = env
        .config_text()
        .replace(&env.standin.api_url(), &format!("https://127.0.0.1:{port}"));
    fs::write(env.path("config.toml"), text).unwrap();
    let t = std::time::Instant::now();
    let run = Run::from(
        env.command(&["--once", "--deadline", "30s"])
            .output()
            .unwrap(),
    );
    let took = t.elapsed();
    run.assert_code(1);
    // Refused connections are not waited on until the deadline.
    assert!(
        took < Duration::from_secs(15),
        "took {took:?}\n{}",
        run.all()
    );
    assert!(
        run.stdout.contains("FAILED name-inst-a (inst-a)"),
        "{}",
        run.all()
    );
    assert!(run.all().contains("cannot connect"), "{}", run.all());

    // A server that never answers: the deadline ends the run.
    env.standin
        .push_fault(FaultRule::always(Fault::ApiDelay(Duration::from_secs(120))));
    env.sync.push_str("timeout = \"60s\"\n");
    let t = std::time::Instant::now();
    let run = env.once(&["--deadline", "2s"]);
    let took = t.elapsed();
    run.assert_code(1);
    // The deadline, not the 60 s timeout nor the 120 s stall, ends it.
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "took {took:?}\n{}",
        run.all()
    );
    assert!(
        run.stdout
            .contains("did not finish within the deadline of 2s"),
        "{}",
        run.all()
    );
}
