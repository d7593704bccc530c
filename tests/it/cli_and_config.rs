//! The command line and config errors: exit 2 naming the key, `--check`,
//! `--help`, `--version`.

use std::fs;

use crate::support::*;

fn config_error(edit: impl Fn(&str) -> String, key: &str) -> Run {
    let mut env = Env::new();
    env.instance("inst-a");
    env.write_config();
    let text = edit(&env.config_text());
    fs::write(env.path("config.toml"), &text).unwrap();
    for args in [&["--check"][..], &["--once"], &[]] {
        let run = Run::from(env.command(args).output().unwrap());
        run.assert_code(2);
        assert!(
            run.stderr.contains(key),
            "{args:?}: expected {key:?} in\n{}\nconfig:\n{text}",
            run.all()
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.all());
    }
    assert!(
        env.standin.requests().is_empty(),
        "a config error contacts nothing"
    );
    assert!(!env.path("out").exists(), "a config error writes nothing");
    Run::from(env.command(&["--check"]).output().unwrap())
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let run = config_error(
        |t| t.replace("[sync]\n", "[sync]\nintervall = \"1h\"\n"),
        "sync.intervall",
    );
    assert!(
        run.stderr.contains("unknown field `intervall`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("config.toml:"), "{}", run.stderr);
}

#[test]
fn bad_duration_is_named() {
    config_error(
        |t| t.replace("[sync]\n", "[sync]\ninterval = \"soon\"\n"),
        "sync.interval",
    );
}

#[test]
fn bad_mode_is_named() {
    config_error(
        |t| t.replace("hook_timeout", "mode = \"rw-r--r--\"\nhook_timeout"),
        "instances[0].mode",
    );
}

#[test]
fn unknown_auth_method_is_named() {
    let run = config_error(
        |t| t.replace("method = \"token\"", "method = \"kerberos\""),
        "auth",
    );
    assert!(run.stderr.contains("kerberos"), "{}", run.stderr);
}

#[test]
fn missing_instance_id_is_named() {
    let run = config_error(|t| t.replace("id = \"inst-a\"\n", ""), "instances[0]");
    assert!(run.stderr.contains("missing field `id`"), "{}", run.stderr);
}

#[test]
fn missing_token_file_is_named() {
    let run = config_error(
        |t| {
            let start = t.find("token = ").unwrap();
            let end = start + t[start..].find('\n').unwrap();
            format!(
                "{}token_file = \"/nonexistent/iam-token\"{}",
                &t[..start],
                &t[end..]
            )
        },
        "auth.token_file",
    );
    assert!(
        run.stderr.contains("/nonexistent/iam-token"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_state_dir_that_is_a_file_or_a_dangling_link_is_named() {
    let with_state_dir = |t: &str, dir: &str| {
        let start = t.find("state_dir = ").unwrap();
        let end = start + t[start..].find('\n').unwrap();
        format!("{}state_dir = \"{dir}\"{}", &t[..start], &t[end..])
    };
    // Below a regular file that every Linux has.
    let run = config_error(
        |t| with_state_dir(t, "/proc/version/state"),
        "sync.state_dir",
    );
    assert!(
        run.stderr
            .contains("/proc/version is a regular file, not a directory"),
        "{}",
        run.stderr
    );
    let links = tempfile::tempdir().unwrap();
    let link = links.path().join("state");
    std::os::unix::fs::symlink("/nonexistent/state", &link).unwrap();
    let run = config_error(
        |t| with_state_dir(t, &link.display().to_string()),
        "sync.state_dir",
    );
    assert!(
        run.stderr.contains(&format!(
            "{} is a symbolic link to /nonexistent/state, which does not exist",
            link.display()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn two_outputs_on_one_path_are_named() {
    config_error(
        |t| {
            t.replace(
                "national = \"out/inst-a-national.crt\"",
                "national = \"out/inst-a-international.crt\"",
            )
        },
        "instances[0].national",
    );
}

#[test]
fn broken_toml_is_reported_with_a_line() {
    let run = config_error(|t| t.replace("[sync]", "[sync"), "config.toml:");
    assert!(!run.stderr.contains("panicked"));
}

#[test]
fn unknown_region_is_named() {
    config_error(
        |t| {
            let start = t.find("endpoint = ").unwrap();
            let end = start + t[start..].find('\n').unwrap();
            format!("{}region = \"xx-nowhere-9\"{}", &t[..start], &t[end..])
        },
        "xx-nowhere-9",
    );
}

#[test]
fn missing_config_file_is_a_config_error() {
    let env = Env::new();
    let run = Run::from(env.command(&["--once"]).output().unwrap());
    run.assert_code(2);
    assert!(
        run.stderr.contains("cannot read the config file"),
        "{}",
        run.all()
    );
}

#[test]
fn check_accepts_a_good_config_and_contacts_nothing() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.write_config();
    let run = Run::from(env.command(&["--check"]).output().unwrap());
    run.assert_code(0);
    assert!(run.stdout.contains("ok (1 instance)"), "{}", run.all());
    assert!(env.standin.requests().is_empty());
    assert!(!env.path("out").exists());
}

#[test]
fn the_shipped_example_passes_check() {
    // The example's secret key file does not exist here, so point it at one.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    fs::write(&token, "t\n").unwrap();
    let text = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml"))
        .unwrap()
        .replace(
            "/run/credentials/dds-certsync.service/secret-key",
            &token.display().to_string(),
        );
    let cfg = dir.path().join("config.toml");
    fs::write(&cfg, text).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("--check")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let run = Run::from(out);
    run.assert_code(0);
}

#[test]
fn the_mixed_fleet_example_passes_check() {
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/config/mixed-fleet.toml");
    let out = std::process::Command::new(BIN)
        .args(["--check", "--config", cfg])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let run = Run::from(out);
    run.assert_code(0);
    assert!(run.all().contains("5 instances"), "{}", run.all());
}

#[test]
fn help_and_version_and_usage_errors() {
    let run = Run::from(
        std::process::Command::new(BIN)
            .arg("--help")
            .output()
            .unwrap(),
    );
    run.assert_code(0);
    for flag in [
        "--config",
        "--once",
        "--check",
        "--dry-run",
        "--log-format",
        "--deadline",
        "DDS_CERTSYNC_CONFIG",
    ] {
        assert!(
            run.stdout.contains(flag),
            "--help lacks {flag}\n{}",
            run.stdout
        );
    }
    let run = Run::from(
        std::process::Command::new(BIN)
            .arg("--version")
            .output()
            .unwrap(),
    );
    run.assert_code(0);
    assert!(run.stdout.starts_with("dds-certsync "), "{}", run.stdout);
    let run = Run::from(
        std::process::Command::new(BIN)
            .arg("--bogus")
            .output()
            .unwrap(),
    );
    run.assert_code(2);
    let run = Run::from(
        std::process::Command::new(BIN)
            .args(["--log-format", "xml", "--check"])
            .output()
            .unwrap(),
    );
    run.assert_code(2);
}

#[test]
fn config_path_comes_from_the_environment() {
    let mut env = Env::new();
    env.instance("inst-a");
    let cfg = env.write_config();
    let out = std::process::Command::new(BIN)
        .arg("--check")
        .env("DDS_CERTSYNC_CONFIG", &cfg)
        .output()
        .unwrap();
    Run::from(out).assert_code(0);
}
