//! Unit tests of parsing, validation, resolution and loading.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::instance::parse_mode;
use super::*;
use crate::catalog::Service;

const MINIMAL: &str = r#"
[cloud]
region = "cn-north-4"
project_id = "p1"
[auth]
method = "token"
token = "t"
[[instances]]
id = "i1"
international = "/tmp/x/a.crt"
"#;

fn check(text: &str) -> Result<Config, ConfigError> {
    validate(parse(text)?, Path::new("/base"))
}

#[test]
fn minimal_config_gets_defaults() {
    let c = check(MINIMAL).unwrap();
    assert_eq!(
        c.cloud.endpoint(Service::Dds),
        Some("https://dds.cn-north-4.myhuaweicloud.com")
    );
    assert_eq!(
        c.cloud.iam_endpoint.as_deref(),
        Some("https://iam.cn-north-4.myhuaweicloud.com")
    );
    assert_eq!(c.sync.interval, Duration::from_secs(3600));
    assert_eq!(c.sync.jitter, Duration::from_secs(300));
    assert_eq!(c.sync.concurrency, 8);
    assert_eq!(c.instances[0].project_id, "p1");
    assert_eq!(c.instances[0].hook_timeout, Duration::from_secs(30));
    assert_eq!(c.instances[0].outputs.len(), 1);
}

#[test]
fn the_shipped_example_is_valid() {
    let text = include_str!("../../config/example.toml");
    let c = check(text).unwrap();
    assert_eq!(c.instances[0].perms.mode, Some(0o644));
    assert_eq!(c.instances[0].outputs.len(), 2);
}

#[test]
fn misspelt_key_is_named_with_its_line() {
    let text = MINIMAL.replace("[[instances]]", "[sync]\nintervall = \"1h\"\n[[instances]]");
    let e = check(&text).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("sync.intervall"));
    assert_eq!(e.line, Some(9));
    assert!(e.message.contains("intervall"), "{e}");
}

#[test]
fn bad_duration_names_the_key() {
    let text = MINIMAL.replace(
        "[[instances]]",
        "[sync]\ninterval = \"1 fortnight\"\n[[instances]]",
    );
    let e = check(&text).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("sync.interval"));
    assert!(e.message.contains("1 fortnight"), "{e}");
}

#[test]
fn bad_mode_names_the_key() {
    let text = format!("{MINIMAL}mode = \"0999\"\n");
    let e = check(&text).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("instances[0].mode"));
}

#[test]
fn modes_parse() {
    assert_eq!(parse_mode("0644"), Some(0o644));
    assert_eq!(parse_mode("600"), Some(0o600));
    assert_eq!(parse_mode("0o640"), Some(0o640));
    assert_eq!(parse_mode("rw-r--r--"), None);
    assert_eq!(parse_mode("17777"), None);
    assert_eq!(parse_mode(""), None);
}

#[test]
fn unknown_auth_method_is_named() {
    let text = MINIMAL.replace("method = \"token\"", "method = \"magic\"");
    let e = check(&text).unwrap_err();
    assert!(e.key.as_deref().unwrap_or("").starts_with("auth"), "{e}");
    assert!(e.message.contains("magic"), "{e}");
}

#[test]
fn missing_instance_id_is_named() {
    let text = MINIMAL.replace("id = \"i1\"\n", "");
    let e = check(&text).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("instances[0]"));
    assert!(e.message.contains("id"), "{e}");
}

#[test]
fn two_outputs_on_one_path_are_refused() {
    let text =
        format!("{MINIMAL}\n[[instances]]\nid = \"i2\"\nnational = \"/tmp/x/./b/../a.crt\"\n");
    let e = check(&text).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("instances[1].national"));
    assert!(e.message.contains("instances[0].international"), "{e}");
}

#[test]
fn instance_without_output_is_refused() {
    let text = MINIMAL.replace("international = \"/tmp/x/a.crt\"\n", "");
    let e = check(&text).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("instances[0]"));
}

#[test]
fn broken_toml_has_a_line() {
    let e = check("[cloud\nregion = 1").unwrap_err();
    assert_eq!(e.line, Some(1));
}

#[test]
fn unknown_region_without_endpoint_is_named() {
    let e = check(&MINIMAL.replace("cn-north-4", "mars-1")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("cloud.region"));
    assert!(e.message.contains("mars-1"));
    let ok = MINIMAL.replace(
        "region = \"cn-north-4\"",
        "region = \"mars-1\"\nendpoint = \"https://127.0.0.1:8443/\"",
    );
    assert_eq!(
        check(&ok).unwrap().cloud.endpoint(Service::Dds),
        Some("https://127.0.0.1:8443")
    );
}

#[test]
fn plain_http_endpoint_is_refused() {
    let text = MINIMAL.replace(
        "region = \"cn-north-4\"",
        "endpoint = \"http://127.0.0.1:80\"",
    );
    let e = check(&text).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("cloud.endpoint"));
}

#[test]
fn token_and_token_file_are_exclusive() {
    let text = MINIMAL.replace("token = \"t\"", "token = \"t\"\ntoken_file = \"/x\"");
    let e = check(&text).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("auth.token"));
}

#[test]
fn missing_token_file_is_a_config_error() {
    let text = MINIMAL.replace("token = \"t\"", "token_file = \"/nonexistent/token\"");
    let e = resolve(check(&text).unwrap()).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("auth.token_file"));
    assert!(e.message.contains("/nonexistent/token"));
}

#[test]
fn relative_paths_are_anchored_at_the_config_dir() {
    let text = MINIMAL.replace("/tmp/x/a.crt", "out/a.crt");
    let c = check(&text).unwrap();
    assert_eq!(
        c.instances[0].outputs[0].path,
        PathBuf::from("/base/out/a.crt")
    );
}

#[test]
fn server_is_off_by_default_and_listen_is_checked() {
    let c = check(MINIMAL).unwrap();
    assert_eq!(c.server.listen, None);
    assert_eq!(c.sync.expiry_warning, Duration::from_secs(30 * 86400));
    let text = format!("{MINIMAL}\n[server]\nlisten = \"127.0.0.1:9464\"\n");
    assert_eq!(
        check(&text).unwrap().server.listen,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    let text = format!("{MINIMAL}\n[server]\nlisten = \"localhost\"\n");
    let e = check(&text).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("server.listen"));
    let text = format!("{MINIMAL}\n[server]\nport = 1\n");
    assert_eq!(
        check(&text).unwrap_err().key.as_deref(),
        Some("server.port")
    );
}

#[test]
fn expiry_warning_is_a_duration() {
    let text = MINIMAL.replace(
        "[[instances]]",
        "[sync]\nexpiry_warning = \"14d\"\n[[instances]]",
    );
    assert_eq!(
        check(&text).unwrap().sync.expiry_warning,
        Duration::from_secs(14 * 86400)
    );
}

#[test]
fn keep_previous_defaults_to_30_days_and_an_instance_may_set_its_own() {
    let day = Duration::from_secs(86400);
    let c = check(MINIMAL).unwrap();
    assert_eq!(c.sync.keep_previous, 30 * day);
    assert_eq!(c.instances[0].keep_previous, 30 * day);
    let text = MINIMAL.replace(
        "[[instances]]",
        "[sync]\nkeep_previous = \"7d\"\n[[instances]]",
    );
    let c = check(&format!(
        "{text}\n[[instances]]\nid = \"i2\"\nnational = \"/tmp/x/b.crt\"\nkeep_previous = \"0s\"\n"
    ))
    .unwrap();
    assert_eq!(c.sync.keep_previous, 7 * day);
    assert_eq!(c.instances[0].keep_previous, 7 * day);
    assert_eq!(c.instances[1].keep_previous, Duration::ZERO);
}

#[test]
fn a_keep_previous_that_is_no_duration_or_not_whole_seconds_is_refused_naming_the_key() {
    let text = MINIMAL.replace(
        "[[instances]]",
        "[sync]\nkeep_previous = \"a month\"\n[[instances]]",
    );
    let e = check(&text).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("sync.keep_previous"), "{e}");
    let e = check(&format!("{MINIMAL}keep_previous = \"1500ms\"\n")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("instances[0].keep_previous"), "{e}");
    assert!(e.message.contains("whole number of seconds"), "{e}");
}

#[test]
fn reload_signal_needs_a_pidfile_and_excludes_on_change() {
    let c = check(&format!(
        "{MINIMAL}reload_signal = \"hup\"\npidfile = \"run/app.pid\"\n"
    ))
    .unwrap();
    let r = c.instances[0].reload_signal.as_ref().unwrap();
    assert_eq!(r.signal, nix::sys::signal::Signal::SIGHUP);
    assert_eq!(r.pidfile, PathBuf::from("/base/run/app.pid"));
    assert!(c.instances[0].has_hook());

    let e = check(&format!("{MINIMAL}reload_signal = \"SIGHUP\"\n")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("instances[0].pidfile"));
    let e = check(&format!("{MINIMAL}pidfile = \"/run/a.pid\"\n")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("instances[0].reload_signal"));
    let e = check(&format!(
        "{MINIMAL}reload_signal = \"SIGHUP\"\npidfile = \"/a\"\non_change = [\"/bin/true\"]\n"
    ))
    .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("instances[0].reload_signal"));
    for bad in ["SIGKILL", "SIGBOGUS", "", "9"] {
        let e = check(&format!(
            "{MINIMAL}reload_signal = \"{bad}\"\npidfile = \"/a\"\n"
        ))
        .unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("instances[0].reload_signal"),
            "{bad}"
        );
    }
}

#[test]
fn a_nul_in_a_path_or_argument_is_refused_naming_the_key() {
    let nul = "\\u0000";
    let cases = [
        (
            MINIMAL.replace("/tmp/x/a.crt", &format!("/tmp/x/a{nul}.crt")),
            "instances[0].international",
        ),
        (
            format!("{MINIMAL}on_change = [\"/bin/echo\", \"a{nul}b\"]\n"),
            "instances[0].on_change[1]",
        ),
        (
            format!("{MINIMAL}reload_signal = \"HUP\"\npidfile = \"/run/a{nul}.pid\"\n"),
            "instances[0].pidfile",
        ),
        (format!("{MINIMAL}name = \"a{nul}\"\n"), "instances[0].name"),
        (
            format!("{MINIMAL}owner = \"a{nul}\"\n"),
            "instances[0].owner",
        ),
        (
            MINIMAL.replace(
                "[[instances]]",
                &format!("[sync]\nstate_dir = \"/s{nul}\"\n[[instances]]"),
            ),
            "sync.state_dir",
        ),
        (
            MINIMAL.replace("[auth]", &format!("ca_file = \"/c{nul}\"\n[auth]")),
            "cloud.ca_file",
        ),
        (
            MINIMAL.replace("token = \"t\"", &format!("token_file = \"/t{nul}\"")),
            "auth.token_file",
        ),
    ];
    for (text, key) in cases {
        let e = check(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert!(
            e.message.contains("NUL") || e.message.contains("\\0"),
            "{e}"
        );
    }
}

#[test]
fn a_relative_hook_program_is_anchored_at_the_config_dir_and_a_bare_name_left_to_path() {
    let program = |argv: &str| {
        check(&format!("{MINIMAL}on_change = {argv}\n"))
            .unwrap()
            .instances[0]
            .on_change
            .clone()
            .unwrap()
    };
    assert_eq!(program(r#"["./reload.sh", "x"]"#), ["/base/reload.sh", "x"]);
    assert_eq!(program(r#"["hooks/../bin/reload"]"#), ["/base/bin/reload"]);
    assert_eq!(
        program(r#"["systemctl", "reload", "app"]"#),
        ["systemctl", "reload", "app"]
    );
    assert_eq!(program(r#"["/bin/sh", "./x.sh"]"#), ["/bin/sh", "./x.sh"]);
}

#[test]
fn a_mode_with_special_bits_or_no_bits_is_refused() {
    for bad in ["4644", "2644", "1644", "06755", "0000", "0"] {
        let e = check(&format!("{MINIMAL}mode = \"{bad}\"\n")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("instances[0].mode"), "{bad}");
        assert!(e.message.contains(bad), "{e}");
    }
    for good in ["0644", "0600", "0444", "640"] {
        assert!(
            check(&format!("{MINIMAL}mode = \"{good}\"\n")).is_ok(),
            "{good}"
        );
    }
}

#[test]
fn two_outputs_that_are_one_file_through_a_symlinked_dir_are_refused() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("real")).unwrap();
    std::os::unix::fs::symlink(d.path().join("real"), d.path().join("link")).unwrap();
    let text = |a: &str, b: &str| {
        MINIMAL.replace(
            "international = \"/tmp/x/a.crt\"",
            &format!("international = \"{a}\"\n\n[[instances]]\nid = \"i2\"\nnational = \"{b}\""),
        )
    };
    let load = |a: &str, b: &str| resolve(validate(parse(&text(a, b)).unwrap(), d.path()).unwrap());
    // Through a symlinked directory, existing or not yet created below it.
    for (a, b) in [
        ("real/a.crt", "link/a.crt"),
        ("real/new/a.crt", "link/new/a.crt"),
    ] {
        let e = load(a, b).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("instances[1].national"), "{e}");
        assert!(e.message.contains("instances[0].international"), "{e}");
    }
    // Same directory, other names; other directories: fine.
    assert!(load("real/a.crt", "link/b.crt").is_ok());
    assert!(load("real/new/a.crt", "link/other/a.crt").is_ok());
}

#[test]
fn reload_signal_any_owner_defaults_to_false_and_needs_reload_signal() {
    let sig = format!("{MINIMAL}reload_signal = \"SIGHUP\"\npidfile = \"/a\"\n");
    let c = check(&sig).unwrap();
    assert!(!c.instances[0].reload_signal.as_ref().unwrap().any_owner);
    let c = check(&format!("{sig}reload_signal_any_owner = true\n")).unwrap();
    assert!(c.instances[0].reload_signal.as_ref().unwrap().any_owner);
    let e = check(&format!("{MINIMAL}reload_signal_any_owner = true\n")).unwrap_err();
    assert_eq!(
        e.key.as_deref(),
        Some("instances[0].reload_signal_any_owner")
    );
    assert!(e.message.contains("reload_signal"), "{e}");
}

#[test]
fn a_loaded_config_never_shows_its_raw_bytes_in_debug() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("c.toml");
    let text = MINIMAL.replace("token = \"t\"", "token = \"s3cr3t-token-value\"");
    std::fs::write(&p, &text).unwrap();
    let loaded = load(&p).unwrap();
    let shown = format!("{loaded:?}");
    // Neither as text nor as the list of byte values a derived Debug prints.
    assert!(!shown.contains("s3cr3t-token-value"), "{shown}");
    let secret_bytes = format!("{:?}", b"s3cr3t-token-value");
    let secret_bytes = &secret_bytes[1..secret_bytes.len() - 1];
    assert!(!shown.contains(secret_bytes), "{shown}");
    assert!(
        shown.contains(&format!("<{} bytes>", text.len())),
        "{shown}"
    );
}

#[test]
fn inline_token_never_shows_in_debug() {
    let text = MINIMAL.replace("token = \"t\"", "token = \"s3cr3t-token-value\"");
    let c = check(&text).unwrap();
    assert!(!format!("{c:?}").contains("s3cr3t-token-value"));
}
