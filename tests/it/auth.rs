//! Every auth method end to end against the stand-in, which checks AK/SK
//! signatures the way the gateway does, issues IAM tokens and plays the ECS
//! metadata service: `aksk` (permanent and temporary), `password`,
//! `ecs-metadata` (with and without session tokens), `token`, and `auto`
//! from the environment, the credentials file and the metadata service.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use dds_standin::{Metadata, Recorded};

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(20);
const AK: &str = "AKSTANDINPERMANENT01";
const SK: &str = "sk-permanent-Zq8Vw3Lx9Pq2Rt6Yu1Io";
const USER: &str = "sync-bot";
const DOMAIN: &str = "acme-domain";
const PASSWORD: &str = "pw-Hx7Kq2Lm9Nb4Vc1Zs8";

/// The binary, with no `HUAWEICLOUD_SDK_*` from the test's environment and
/// `HOME` in the scratch directory, plus `vars`.
fn command(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut c = env.command(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HUAWEICLOUD_SDK_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", env.dir.path());
    for (k, v) in vars {
        c.env(k, v);
    }
    c
}

fn once(env: &Env, vars: &[(&str, &str)]) -> Run {
    Run::from(command(env, &["--once"], vars).output().expect("run"))
}

/// Writes the config with `edit` applied, mode 0600.
fn write_config_with(env: &Env, edit: impl Fn(String) -> String) {
    let p = env.path("config.toml");
    fs::write(&p, edit(env.config_text())).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
}

fn without_auth_section(text: String) -> String {
    let start = text.find("[auth]\n").expect("an [auth] section");
    let end = start + text[start..].find("\n[sync]").expect("[sync] after [auth]");
    format!("{}{}", &text[..start], &text[end + 1..])
}

fn without_project(text: String) -> String {
    text.replace(&format!("project_id = \"{PROJECT}\"\n"), "")
}

fn api_requests(env: &Env) -> Vec<Recorded> {
    env.standin
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Api)
        .collect()
}

/// The stand-in verified the signature; check the rest of what the gateway
/// and the issue ask for: every header sent is signed, the host with its
/// port, the date, the project, the security token for temporary keys, and
/// no credential header on any download.
fn assert_signed(env: &Env, ak: &str, security_token: Option<&str>) {
    let api = api_requests(env);
    assert!(!api.is_empty());
    for r in &api {
        let auth = r.header("authorization").expect("Authorization sent");
        let prefix = format!("SDK-HMAC-SHA256 Access={ak}, SignedHeaders=");
        assert!(auth.starts_with(&prefix), "{auth}");
        let signed: Vec<&str> = auth[prefix.len()..]
            .split(',')
            .next()
            .unwrap()
            .split(';')
            .collect();
        for (name, _) in &r.headers {
            if name != "authorization" {
                assert!(
                    signed.contains(&name.as_str()),
                    "{name} sent but not signed: {signed:?}"
                );
            }
        }
        for needed in ["host", "x-sdk-date", "x-project-id", "content-type"] {
            assert!(signed.contains(&needed), "{needed} not signed: {signed:?}");
        }
        let port = env
            .standin
            .api_url()
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(r.header("host"), Some(format!("127.0.0.1:{port}").as_str()));
        assert_eq!(r.header("x-project-id"), Some(PROJECT));
        assert_eq!(r.header("x-security-token"), security_token);
        if security_token.is_some() {
            assert!(signed.contains(&"x-security-token"));
        }
        assert!(!r.has_header("x-auth-token"));
    }
    assert_no_credentials_downloaded(env);
}

fn assert_no_credentials_downloaded(env: &Env) {
    let downloads: Vec<_> = env
        .standin
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Download)
        .collect();
    assert!(!downloads.is_empty());
    for r in downloads {
        for h in [
            "x-auth-token",
            "authorization",
            "x-security-token",
            "x-project-id",
            "x-sdk-date",
        ] {
            assert!(!r.has_header(h), "{h} sent to the download host: {r:?}");
        }
    }
}

fn assert_synced(env: &Env, id: &str) {
    for cat in ["international", "national"] {
        assert_eq!(fs::read(env.out(id, cat)).unwrap(), env.served(id, cat));
    }
}

#[test]
fn aksk_permanent_keys_sign_every_request() {
    let mut env = Env::new();
    env.standin.add_aksk(AK, SK);
    env.instance("inst-a").instance("inst-b");
    fs::write(env.path("sk"), format!("{SK}\n")).unwrap();
    env.auth = format!("method = \"aksk\"\naccess_key = \"{AK}\"\nsecret_key_file = \"sk\"\n");
    write_config_with(&env, |t| t);
    let run = once(&env, &[]);
    run.assert_code(0);
    assert_synced(&env, "inst-a");
    assert_synced(&env, "inst-b");
    assert_signed(&env, AK, None);
    assert!(
        run.stderr
            .contains("credentials: AK/SK (access key inline, secret key from "),
        "{}",
        run.stderr
    );
}

#[test]
fn aksk_temporary_keys_sign_the_security_token_from_the_environment() {
    let mut env = Env::new();
    let (ak, sk, token) = env.standin.issue_temporary(Duration::from_secs(3600));
    env.instance("inst-a");
    // No keys in the file: the SDK's variables are the default.
    env.auth = "method = \"aksk\"\n".into();
    write_config_with(&env, |t| t);
    let run = once(
        &env,
        &[
            ("HUAWEICLOUD_SDK_AK", &ak),
            ("HUAWEICLOUD_SDK_SK", &sk),
            ("HUAWEICLOUD_SDK_SECURITY_TOKEN", &token),
        ],
    );
    run.assert_code(0);
    assert_synced(&env, "inst-a");
    assert_signed(&env, &ak, Some(&token));
    assert!(run.stderr.contains("temporary AK/SK"), "{}", run.stderr);
}

#[test]
fn aksk_named_variables_and_an_expired_temporary_key() {
    let mut env = Env::new();
    let (ak, sk, token) = env.standin.issue_temporary(Duration::ZERO);
    env.instance("inst-a");
    env.auth = "method = \"aksk\"\naccess_key_env = \"MY_AK\"\nsecret_key_env = \"MY_SK\"\nsecurity_token_env = \"MY_TOKEN\"\n".into();
    write_config_with(&env, |t| t);
    let run = once(
        &env,
        &[("MY_AK", &ak), ("MY_SK", &sk), ("MY_TOKEN", &token)],
    );
    run.assert_code(1);
    assert!(
        run.stdout.contains("FAILED name-inst-a (inst-a):"),
        "{}",
        run.all()
    );
    assert!(run.all().contains("APIGW.0301"), "{}", run.all());
    // A variable that is not set is a config error naming the key.
    let run = once(&env, &[("MY_AK", &ak), ("MY_TOKEN", &token)]);
    run.assert_code(2);
    assert!(run.stderr.contains("auth.secret_key"), "{}", run.stderr);
    assert!(run.stderr.contains("MY_SK"), "{}", run.stderr);
}

#[test]
fn wrong_secret_key_fails_naming_the_instance_and_cause_and_keeps_the_old_file() {
    let mut env = Env::new();
    env.standin.add_aksk(AK, SK);
    env.instance("inst-a");
    env.auth = format!("method = \"aksk\"\naccess_key = \"{AK}\"\nsecret_key = \"{SK}\"\n");
    write_config_with(&env, |t| t);
    once(&env, &[]).assert_code(0);
    let before = fs::read(env.out("inst-a", "international")).unwrap();
    let stamp_before = stamp(&env.out("inst-a", "international"));
    env.standin.rotate("inst-a", "international");
    env.auth = format!(
        "method = \"aksk\"\naccess_key = \"{AK}\"\nsecret_key = \"sk-wrong-0000000000000\"\n"
    );
    write_config_with(&env, |t| t);
    let run = once(&env, &[]);
    run.assert_code(1);
    assert!(
        run.stdout.contains("FAILED name-inst-a (inst-a):"),
        "{}",
        run.all()
    );
    assert!(run.stdout.contains("HTTP 401"), "{}", run.all());
    assert!(run.stdout.contains("APIGW.0301"), "{}", run.all());
    assert_eq!(
        fs::read(env.out("inst-a", "international")).unwrap(),
        before
    );
    assert_eq!(stamp(&env.out("inst-a", "international")), stamp_before);
    assert!(!run.all().contains("sk-wrong-0000000000000"));
}

fn password_env(instances: usize) -> Env {
    let mut env = Env::new();
    env.standin.add_iam_user(DOMAIN, USER, PASSWORD);
    for i in 0..instances {
        env.instance(&format!("inst-{i:02}"));
    }
    fs::write(env.path("password"), format!("{PASSWORD}\n")).unwrap();
    env.auth = format!(
        "method = \"password\"\nuser = \"{USER}\"\ndomain = \"{DOMAIN}\"\npassword_file = \"password\"\n"
    );
    env
}

#[test]
fn password_one_iam_call_for_twenty_instances_of_one_project() {
    let mut env = password_env(20);
    env.cloud = format!("iam_endpoint = \"{}\"\n", env.standin.iam_url());
    env.sync.push_str("concurrency = 20\n");
    write_config_with(&env, |t| t);
    let run = once(&env, &[]);
    run.assert_code(0);
    assert_eq!(
        run.stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        20
    );
    assert_eq!(env.standin.iam_calls(), 1, "{}", run.all());
    let api = api_requests(&env);
    assert_eq!(api.len(), 20);
    let token = api[0]
        .header("x-auth-token")
        .expect("an IAM token")
        .to_string();
    assert_ne!(token, env.standin.token());
    assert!(
        api.iter()
            .all(|r| r.header("x-auth-token") == Some(token.as_str()))
    );
    assert!(api.iter().all(|r| !r.has_header("authorization")));
    assert_no_credentials_downloaded(&env);
    assert!(
        run.stderr
            .contains(&format!("IAM password of user \"{USER}\"")),
        "{}",
        run.stderr
    );
}

#[test]
fn password_iam_endpoint_from_the_sdk_variable_and_projects_get_their_own_token() {
    let mut env = password_env(1);
    env.standin.add_instance("second-project", "inst-other");
    env.raw_instance(
        "id = \"inst-other\"\nproject_id = \"second-project\"\ninternational = \"out/other.crt\"",
    );
    write_config_with(&env, |t| t);
    let iam = env.standin.iam_url();
    let run = once(&env, &[("HUAWEICLOUD_SDK_IAM_ENDPOINT", &iam)]);
    run.assert_code(0);
    assert_eq!(env.standin.iam_calls(), 2, "{}", run.all());
    // Without any IAM endpoint, the password method is a config error.
    let run = once(&env, &[]);
    run.assert_code(2);
    assert!(run.stderr.contains("cloud.iam_endpoint"), "{}", run.stderr);
    assert!(
        run.stderr.contains("HUAWEICLOUD_SDK_IAM_ENDPOINT"),
        "{}",
        run.stderr
    );
}

#[test]
fn wrong_password_names_iam_and_the_user_never_the_password() {
    let mut env = password_env(3);
    env.cloud = format!("iam_endpoint = \"{}\"\n", env.standin.iam_url());
    write_config_with(&env, |t| t);
    once(&env, &[]).assert_code(0);
    let before = fs::read(env.out("inst-00", "national")).unwrap();
    env.standin.rotate("inst-00", "national");
    fs::write(env.path("password"), "pw-wrong-Qq1Ww2Ee3Rr4\n").unwrap();
    let run = once(&env, &[]);
    run.assert_code(1);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("FAILED name-inst-00 (inst-00):"))
        .unwrap_or_else(|| panic!("{}", run.all()));
    assert!(line.contains("IAM at https://127.0.0.1:"), "{line}");
    assert!(line.contains(&format!("user \"{USER}\"")), "{line}");
    assert!(
        !run.all().contains("pw-wrong-Qq1Ww2Ee3Rr4"),
        "{}",
        run.all()
    );
    assert_eq!(fs::read(env.out("inst-00", "national")).unwrap(), before);
    // The refusal is shared by the three instances: one IAM call, not three
    // (each wrong password counts towards locking the user out).
    assert_eq!(env.standin.iam_calls(), 2, "{}", run.all());
    assert_eq!(run.stdout.matches("refused the password").count(), 3);
}

#[test]
fn password_token_expiring_mid_run_is_replaced_after_the_401() {
    let mut env = password_env(2);
    env.cloud = format!("iam_endpoint = \"{}\"\n", env.standin.iam_url());
    env.sync.push_str("interval = \"1s\"\njitter = \"0s\"\n");
    write_config_with(&env, |t| t);
    let d = start_daemon(&env);
    env.wait_hook_runs(&d, "inst-00", 1);
    env.wait_hook_runs(&d, "inst-01", 1);
    assert_eq!(env.standin.iam_calls(), 1, "{}", d.log());
    env.standin.expire_tokens();
    env.standin.rotate("inst-00", "international");
    env.wait_hook_runs(&d, "inst-00", 2);
    assert_eq!(
        fs::read(env.out("inst-00", "international")).unwrap(),
        env.served("inst-00", "international")
    );
    assert!(d.log().contains("HTTP 401"), "{}", d.log());
    // One fresh token for the project, not one per instance.
    d.wait_log("unchanged", 8, LIMIT);
    assert_eq!(env.standin.iam_calls(), 2, "{}", d.log());
    assert!(!d.log().contains("round failed"), "{}", d.log());
}

/// Starts the daemon with [`command`]'s environment.
fn start_daemon(env: &Env) -> Daemon {
    env.spawn(command(env, &[], &[]))
}

#[test]
fn password_tokens_are_refreshed_before_they_expire_without_a_401() {
    let mut env = password_env(2);
    // A stand-in whose IAM tokens live 16 s: refreshed after half their life, which
    // leaves 8 s of slack for a request signed just before a refresh on a loaded
    // two-core machine.
    env.standin = dds_standin::StandIn::start_with(dds_standin::Options {
        token_ttl: Duration::from_secs(16),
        ..dds_standin::Options::default()
    });
    env.standin.write_ca(&env.ca).unwrap();
    env.standin.add_iam_user(DOMAIN, USER, PASSWORD);
    env.standin.add_instance(PROJECT, "inst-00");
    env.standin.add_instance(PROJECT, "inst-01");
    env.cloud = format!("iam_endpoint = \"{}\"\n", env.standin.iam_url());
    env.sync.push_str("interval = \"1s\"\njitter = \"0s\"\n");
    write_config_with(&env, |t| t);
    let d = start_daemon(&env);
    // Two refreshes: 16 s at the least.
    assert!(
        wait_until(Duration::from_secs(60), || env.standin.iam_calls() >= 3),
        "{}",
        d.log()
    );
    // The stand-in counts a call before the daemon has logged its answer.
    d.wait_log("obtained an IAM token", 3, LIMIT);
    let log = d.log();
    assert!(!log.contains("HTTP 401"), "{log}");
    assert!(!log.contains("round failed"), "{log}");
}

#[test]
fn metadata_keys_are_refreshed_forty_minutes_before_expiry() {
    // Keys valid for 40 min + 3 s are due for refresh 3 s after they come.
    let mut env = metadata_env(true);
    env.standin.set_metadata(Metadata {
        require_session_token: true,
        agency: true,
        ttl: Duration::from_secs(40 * 60 + 3),
    });
    env.sync.push_str("interval = \"1s\"\njitter = \"0s\"\n");
    write_config_with(&env, |t| t);
    let d = start_daemon(&env);
    assert!(
        wait_until(LIMIT, || env.standin.metadata_calls() >= 2),
        "{}",
        d.log()
    );
    d.wait_log("refreshed the temporary AK/SK", 1, LIMIT);
    let log = d.log();
    assert!(!log.contains("HTTP 401"), "{log}");
    assert!(!log.contains("round failed"), "{log}");
    drop(d);

    // Keys valid for hours are fetched once, however many rounds run.
    let mut env = metadata_env(true);
    env.sync.push_str("interval = \"1s\"\njitter = \"0s\"\n");
    write_config_with(&env, |t| t);
    let d = start_daemon(&env);
    d.wait_log("unchanged", 12, LIMIT);
    assert_eq!(env.standin.metadata_calls(), 1, "{}", d.log());
}

fn metadata_env(require_session_token: bool) -> Env {
    let mut env = Env::new();
    env.standin.set_metadata(Metadata {
        require_session_token,
        agency: true,
        ttl: Duration::from_secs(6 * 3600),
    });
    env.instance("inst-a").instance("inst-b").instance("inst-c");
    env.auth = format!(
        "method = \"ecs-metadata\"\nmetadata_endpoint = \"{}\"\n",
        env.standin.metadata_url()
    );
    env
}

fn metadata_requests(env: &Env) -> Vec<Recorded> {
    env.standin
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Metadata)
        .collect()
}

#[test]
fn ecs_metadata_with_a_session_token() {
    let env = metadata_env(true);
    write_config_with(&env, |t| t);
    let run = once(&env, &[]);
    run.assert_code(0);
    for id in ["inst-a", "inst-b", "inst-c"] {
        assert_synced(&env, id);
    }
    // Fetched once for the three instances.
    assert_eq!(env.standin.metadata_calls(), 1, "{}", run.all());
    let meta = metadata_requests(&env);
    let put = meta
        .iter()
        .find(|r| r.method == "PUT")
        .expect("session token step");
    assert_eq!(put.header("x-metadata-token-ttl-seconds"), Some("21600"));
    let get = meta.iter().find(|r| r.method == "GET").unwrap();
    assert!(get.has_header("x-metadata-token"));
    let api = api_requests(&env);
    let token = api[0]
        .header("x-security-token")
        .expect("temporary keys")
        .to_string();
    let ak = api[0].header("authorization").unwrap()["SDK-HMAC-SHA256 Access=".len()..]
        .split(',')
        .next()
        .unwrap()
        .to_string();
    assert_signed(&env, &ak, Some(&token));
}

#[test]
fn ecs_metadata_without_session_tokens() {
    let env = metadata_env(false);
    write_config_with(&env, |t| t);
    let run = once(&env, &[]);
    run.assert_code(0);
    assert_synced(&env, "inst-a");
    let meta = metadata_requests(&env);
    let get = meta.iter().find(|r| r.method == "GET").unwrap();
    assert!(!get.has_header("x-metadata-token"));
    assert!(
        api_requests(&env)
            .iter()
            .all(|r| r.has_header("x-security-token"))
    );
}

#[test]
fn ecs_metadata_without_an_agency_tells_the_user_to_attach_one() {
    let env = metadata_env(true);
    env.standin.set_metadata(Metadata {
        require_session_token: true,
        agency: false,
        ttl: Duration::from_secs(3600),
    });
    write_config_with(&env, |t| t);
    let run = once(&env, &[]);
    run.assert_code(1);
    assert!(
        run.stdout.contains("FAILED name-inst-a (inst-a):"),
        "{}",
        run.all()
    );
    assert!(run.stdout.contains("attach an agency"), "{}", run.all());
    assert!(api_requests(&env).is_empty());
}

#[test]
fn auto_from_the_environment_with_its_project_id() {
    let mut env = Env::new();
    env.standin.add_aksk(AK, SK);
    env.instance("inst-a");
    write_config_with(&env, |t| without_project(without_auth_section(t)));
    let run = once(
        &env,
        &[
            ("HUAWEICLOUD_SDK_AK", AK),
            ("HUAWEICLOUD_SDK_SK", SK),
            ("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT),
        ],
    );
    run.assert_code(0);
    assert_synced(&env, "inst-a");
    assert_signed(&env, AK, None);
    assert!(
        run.stderr
            .contains("auto: environment (HUAWEICLOUD_SDK_AK, HUAWEICLOUD_SDK_SK)"),
        "{}",
        run.stderr
    );
}

#[test]
fn auto_from_the_credentials_file_in_home_and_from_the_variable() {
    let mut env = Env::new();
    let (ak, sk, token) = env.standin.issue_temporary(Duration::from_secs(3600));
    env.instance("inst-a");
    let dir = env.path(".huaweicloud");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("credentials"),
        format!(
            "[basic]\nak = {ak}\nsk = {sk}\nsecurity_token = {token}\nproject_id = {PROJECT}\n"
        ),
    )
    .unwrap();
    fs::set_permissions(dir.join("credentials"), fs::Permissions::from_mode(0o600)).unwrap();
    env.auth = "method = \"auto\"\n".into();
    write_config_with(&env, without_project);
    let run = once(&env, &[]);
    run.assert_code(0);
    assert_synced(&env, "inst-a");
    assert_signed(&env, &ak, Some(&token));
    assert!(
        run.stderr.contains("auto: credentials file "),
        "{}",
        run.stderr
    );

    // $HUAWEICLOUD_SDK_CREDENTIALS_FILE names another file, which wins.
    env.standin.clear_requests();
    env.standin.add_aksk(AK, SK);
    let other = env.path("other-credentials");
    fs::write(
        &other,
        format!("[basic]\nak={AK}\nsk={SK}\nproject_id={PROJECT}\n"),
    )
    .unwrap();
    let run = once(
        &env,
        &[("HUAWEICLOUD_SDK_CREDENTIALS_FILE", other.to_str().unwrap())],
    );
    run.assert_code(0);
    assert_signed(&env, AK, None);
    // A group-readable credentials file is warned about.
    assert!(
        run.stderr.contains("readable by group or others"),
        "{}",
        run.stderr
    );
}

#[test]
fn auto_falls_back_to_the_metadata_service_and_lists_what_it_tried() {
    let mut env = Env::new();
    env.instance("inst-a");
    let meta = env.standin.metadata_url();
    env.auth = format!("method = \"auto\"\nmetadata_endpoint = \"{meta}\"\n");
    write_config_with(&env, |t| t);
    let run = once(&env, &[]);
    run.assert_code(0);
    assert_synced(&env, "inst-a");
    assert!(
        run.stderr
            .contains("auto: temporary AK/SK from the ECS metadata service"),
        "{}",
        run.stderr
    );

    // Nothing anywhere: the error lists the three steps.
    env.standin.clear_requests();
    let dead = dead_port();
    let dead_url = format!("http://{}", dead.addr);
    let mut env2 = Env::new();
    env2.instance("inst-a");
    env2.auth = format!("method = \"auto\"\nmetadata_endpoint = \"{dead_url}\"\n");
    write_config_with(&env2, |t| t);
    let run = once(&env2, &[]);
    run.assert_code(1);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("FAILED name-inst-a (inst-a):"))
        .unwrap_or_else(|| panic!("{}", run.all()));
    assert!(line.contains("no credentials found"), "{line}");
    assert!(line.contains("HUAWEICLOUD_SDK_AK"), "{line}");
    assert!(
        line.contains(".huaweicloud/credentials: not found"),
        "{line}"
    );
    assert!(line.contains(&dead_url), "{line}");
}

#[test]
fn an_inline_secret_in_a_readable_config_is_warned_about() {
    let mut env = Env::new();
    env.instance("inst-a");
    let p = env.write_config();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    let run = once(&env, &[]);
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("the config file holds a secret and is readable by group or others"),
        "{}",
        run.stderr
    );
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    let run = once(&env, &[]);
    run.assert_code(0);
    assert!(
        !run.stderr.contains("readable by group or others"),
        "{}",
        run.stderr
    );
}

/// Every secret of every method, at trace level, in text and JSON, on
/// success and failure paths: none may appear in the output.
#[test]
fn no_secret_of_any_method_appears_at_trace_level() {
    let mut env = Env::new();
    env.standin.add_aksk(AK, SK);
    env.standin.add_iam_user(DOMAIN, USER, PASSWORD);
    let (tak, tsk, ttoken) = env.standin.issue_temporary(Duration::from_secs(3600));
    env.instance("inst-a");
    let iam = env.standin.iam_url();
    let meta = env.standin.metadata_url();
    let mut secrets: Vec<String> = vec![
        SK.into(),
        PASSWORD.into(),
        tsk.clone(),
        ttoken.clone(),
        "pw-wrong-Aa1Bb2Cc3Dd4".into(),
    ];
    let methods = [
        format!("method = \"aksk\"\naccess_key = \"{AK}\"\nsecret_key = \"{SK}\"\n"),
        format!(
            "method = \"aksk\"\naccess_key = \"{tak}\"\nsecret_key = \"{tsk}\"\nsecurity_token = \"{ttoken}\"\n"
        ),
        format!(
            "method = \"password\"\nuser = \"{USER}\"\ndomain = \"{DOMAIN}\"\npassword = \"{PASSWORD}\"\n"
        ),
        format!(
            "method = \"password\"\nuser = \"{USER}\"\ndomain = \"{DOMAIN}\"\npassword = \"pw-wrong-Aa1Bb2Cc3Dd4\"\n"
        ),
        format!("method = \"ecs-metadata\"\nmetadata_endpoint = \"{meta}\"\n"),
    ];
    let mut outputs = Vec::new();
    for auth in &methods {
        for format in ["text", "json"] {
            env.auth = auth.clone();
            env.cloud = format!("iam_endpoint = \"{iam}\"\n");
            write_config_with(&env, |t| t);
            env.standin.clear_requests();
            let run = Run::from(
                command(
                    &env,
                    &["--once", "--log-format", format],
                    &[("RUST_LOG", "trace")],
                )
                .output()
                .unwrap(),
            );
            assert!(
                run.stderr.contains("TRACE"),
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
            // Secrets the daemon obtained: IAM tokens, metadata keys and
            // session tokens, as they went on the wire.
            for r in env.standin.requests() {
                for h in ["x-auth-token", "x-security-token", "x-metadata-token"] {
                    if let Some(v) = r.header(h) {
                        secrets.push(v.to_string());
                    }
                }
                if r.listener == Listener::Api
                    && let Some(a) = r.header("authorization")
                {
                    // The metadata service's access key, and the signature.
                    secrets.extend(
                        a.split([' ', ',', '='])
                            .filter(|p| p.len() >= 16 && !p.contains(';'))
                            .map(str::to_string),
                    );
                }
            }
            outputs.push((auth.lines().next().unwrap().to_string(), run));
        }
    }
    assert!(secrets.len() > 10);
    for (method, run) in &outputs {
        assert_no_secret(method, &run.all(), &secrets);
    }
}
