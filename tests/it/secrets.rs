//! The token never appears in any output, at any log level, in any format.

use crate::support::*;

#[test]
fn token_never_appears_in_trace_logs_text_or_json() {
    for format in ["text", "json"] {
        let mut env = Env::new();
        env.instance("inst-a");
        // A 401 on the first call too, so error paths are covered.
        env.standin.push_fault(FaultRule::once(Fault::ApiStatus {
            status: 503,
            body: "{}".into(),
            retry_after: Some("0".into()),
        }));
        env.write_config();
        let out = env
            .command(&["--once", "--log-format", format])
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        let run = Run::from(out);
        run.assert_code(0);
        assert!(
            run.stderr.lines().count() > 20,
            "trace logging is on: {}",
            run.stderr
        );
        if format == "json" {
            for line in run.stderr.lines() {
                assert!(
                    serde_json::from_str::<serde_json::Value>(line).is_ok(),
                    "not JSON: {line}"
                );
            }
        }
        assert_no_secret(format, &run.all(), &[env.standin.token()]);
        // Nor the pre-signed part of the download links.
        assert!(
            !run.all().contains("Signature="),
            "{format}: a pre-signed URL leaked"
        );
    }
}

#[test]
fn token_never_appears_in_an_auth_failure() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.auth = "method = \"token\"\ntoken = \"wrong-token-0123456789\"\n".into();
    let run = env.once(&[]);
    run.assert_code(1);
    assert!(run.all().contains("HTTP 401"), "{}", run.all());
    assert!(run.all().contains("APIGW.0301"), "{}", run.all());
    assert_no_secret(
        "auth failure",
        &run.all(),
        &["wrong-token-0123456789".into()],
    );
}
