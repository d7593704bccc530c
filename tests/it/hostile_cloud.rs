//! Hostile neighbours of the cloud client: secret files swapped for FIFOs,
//! servers that echo credentials back, IAM and metadata outages, a metadata
//! service behind a private CA.

use dds_certsync::cloud::Service;
use std::fs;
use std::time::Duration;

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(30);

/// A FIFO renamed over the token file while the daemon runs: the round fails
/// at once with the file named, the daemon keeps turning, and a regular file
/// put back is used again.
#[test]
fn a_fifo_swapped_in_for_the_token_file_fails_the_round_naming_the_file_without_stalling() {
    let mut env = Env::new();
    env.instance("inst-a");
    let token = env.path("token");
    fs::write(&token, format!("{}\n", env.standin.token())).unwrap();
    env.auth = format!("method = \"token\"\ntoken_file = \"{}\"\n", token.display());
    env.sync
        .push_str("interval = \"1s\"\njitter = \"0s\"\nmax_backoff = \"1s\"\n");
    let d = env.daemon(&[]);
    assert!(
        wait_until(LIMIT, || env.hook_runs("inst-a").len() == 1),
        "{}",
        d.log()
    );

    let fifo = env.path("token.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    fs::rename(&fifo, &token).unwrap();
    let named = format!("cannot read the secret file {}", token.display());
    assert!(
        wait_until(LIMIT, || d.log().contains(&named)
            && d.log().contains("FIFO")),
        "no error naming the FIFO\n{}",
        d.log()
    );

    // The runtime was never stalled: a regular file put back is read again.
    let tmp = env.path("token.new");
    fs::write(&tmp, format!("{}\n", env.standin.token())).unwrap();
    fs::rename(&tmp, &token).unwrap();
    env.standin.rotate("inst-a", "national");
    assert!(
        wait_until(LIMIT, || env.hook_runs("inst-a").len() == 2),
        "{}",
        d.log()
    );
    assert_eq!(
        fs::read(env.out("inst-a", "national")).unwrap(),
        env.served("inst-a", "national")
    );
}

/// A metadata service reached over https whose certificate comes from the
/// private CA of `cloud.ca_file`: trusted like every other HTTPS call.
#[test]
fn an_https_metadata_service_is_trusted_through_cloud_ca_file() {
    let mut env = Env::new();
    env.standin = StandIn::start_with(dds_standin::Options {
        metadata_tls: true,
        ..dds_standin::Options::default()
    });
    env.standin.write_ca(&env.ca).unwrap();
    env.instance("inst-a");
    let meta = env.standin.metadata_url();
    assert!(meta.starts_with("https://"), "{meta}");
    env.auth = format!("method = \"ecs-metadata\"\nmetadata_endpoint = \"{meta}\"\n");
    let run = env.once(&[]);
    run.assert_code(0);
    assert_eq!(
        fs::read(env.out("inst-a", "international")).unwrap(),
        env.served("inst-a", "international")
    );
    assert!(env.standin.metadata_calls() >= 1);
    let signed = env
        .standin
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Api)
        .all(|r| r.has_header("x-security-token"));
    assert!(
        signed,
        "the API was called with the metadata service's keys"
    );
}

const DOMAIN: &str = "hostile-domain";
const USER: &str = "hostile-user";
const PASSWORD: &str = "hostile-Passw0rd";

/// Moves tokio's clock (the one the credential caches run on) forward.
async fn jump(d: Duration) {
    tokio::time::pause();
    tokio::time::advance(d).await;
    tokio::time::resume();
}

fn requests_to(standin: &StandIn, listener: Listener, path: &str) -> usize {
    standin
        .requests()
        .iter()
        .filter(|r| r.listener == listener && r.path.starts_with(path))
        .count()
}

/// The library's client against the stand-in, with `auth`.
fn library_client(
    standin: &StandIn,
    dir: &tempfile::TempDir,
    auth: dds_certsync::config::Auth,
) -> dds_certsync::cloud::Client {
    let ca = dir.path().join("ca.pem");
    standin.write_ca(&ca).unwrap();
    let cloud = dds_certsync::config::Cloud {
        region: None,
        endpoints: [(Service::Dds, standin.api_url())].into(),
        iam_endpoint: Some(standin.iam_url()),
        ca_file: Some(ca),
    };
    let credentials = dds_certsync::cloud::auth::Credentials::from_config(&auth, &cloud);
    dds_certsync::cloud::Client::new(&cloud, credentials, Duration::from_secs(10), 1).unwrap()
}

/// IAM down when the token is due for refresh (an hour before it expires):
/// every request still goes through with the valid token, IAM is asked again
/// with backoff, and only after the token's expiry does a request fail.
#[tokio::test]
async fn an_iam_outage_inside_the_refresh_margin_costs_no_request_until_the_token_expires() {
    let standin = StandIn::start();
    standin.add_iam_user(DOMAIN, USER, PASSWORD);
    standin.add_instance(PROJECT, "inst-a");
    let dir = tempfile::tempdir().unwrap();
    let client = library_client(
        &standin,
        &dir,
        dds_certsync::config::Auth::Password(dds_certsync::config::PasswordAuth {
            user: USER.into(),
            domain: DOMAIN.into(),
            password: dds_certsync::config::SecretSource::Inline(
                dds_certsync::secret::Secret::new(PASSWORD),
            ),
            iam_endpoint: standin.iam_url(),
        }),
    );
    let iam = || requests_to(&standin, Listener::Iam, "/v3/auth/tokens");
    client
        .download_links(Service::Dds, PROJECT, "inst-a")
        .await
        .unwrap();
    assert_eq!(iam(), 1);

    standin.push_fault(FaultRule::always(Fault::IamStatus {
        status: 503,
        body: r#"{"error":{"code":503,"message":"IAM is down","title":"Service Unavailable"}}"#
            .into(),
    }));
    // The stand-in's tokens live 24 h: 23 h in, the refresh is due.
    jump(Duration::from_secs(23 * 3600 + 60)).await;
    client
        .download_links(Service::Dds, PROJECT, "inst-a")
        .await
        .expect("the still-valid token is used while IAM is down");
    assert_eq!(iam(), 2, "the refresh was tried");
    client
        .download_links(Service::Dds, PROJECT, "inst-a")
        .await
        .unwrap();
    assert_eq!(iam(), 2, "and is not retried before its backoff");
    jump(Duration::from_secs(6)).await;
    client
        .download_links(Service::Dds, PROJECT, "inst-a")
        .await
        .unwrap();
    assert_eq!(iam(), 3, "but after it");

    // Past the token's expiry, the outage shows.
    jump(Duration::from_secs(3600)).await;
    let e = client
        .download_links(Service::Dds, PROJECT, "inst-a")
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().contains("IAM is down"), "{e}");

    standin.clear_faults();
    jump(Duration::from_secs(6)).await;
    client
        .download_links(Service::Dds, PROJECT, "inst-a")
        .await
        .unwrap();
}

/// The same for the metadata service's keys, refreshed 40 minutes before
/// they expire.
#[tokio::test]
async fn a_metadata_outage_inside_the_refresh_margin_costs_no_request_until_the_keys_expire() {
    let standin = StandIn::start();
    standin.add_instance(PROJECT, "inst-a");
    let dir = tempfile::tempdir().unwrap();
    let client = library_client(
        &standin,
        &dir,
        dds_certsync::config::Auth::EcsMetadata(dds_certsync::config::MetadataAuth {
            endpoint: standin.metadata_url(),
            auto_tried: Vec::new(),
        }),
    );
    let keys = || {
        requests_to(
            &standin,
            Listener::Metadata,
            "/openstack/latest/securitykey",
        )
    };
    client
        .download_links(Service::Dds, PROJECT, "inst-a")
        .await
        .unwrap();
    assert_eq!(keys(), 1);

    standin.push_fault(FaultRule::always(Fault::MetadataStatus {
        status: 503,
        body: "metadata service unavailable".into(),
    }));
    // The keys live an hour: 21 minutes in, the refresh is due.
    jump(Duration::from_secs(21 * 60)).await;
    client
        .download_links(Service::Dds, PROJECT, "inst-a")
        .await
        .expect("the still-valid keys are used while the service is down");
    assert_eq!(keys(), 2, "the refresh was tried");
    client
        .download_links(Service::Dds, PROJECT, "inst-a")
        .await
        .unwrap();
    assert_eq!(keys(), 2, "and is not retried before its backoff");

    jump(Duration::from_secs(40 * 60)).await;
    let e = client
        .download_links(Service::Dds, PROJECT, "inst-a")
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().contains("HTTP 503"), "{e}");
}

/// The daemon, with IAM tokens living 20 s (refreshed after 10 s): IAM goes
/// down after the first round, and the rounds after the failed refresh still
/// succeed with the valid token.
#[test]
fn the_daemon_rides_out_an_iam_outage_inside_the_refresh_margin() {
    let mut env = Env::new();
    env.standin = StandIn::start_with(dds_standin::Options {
        token_ttl: Duration::from_secs(20),
        ..dds_standin::Options::default()
    });
    env.standin.write_ca(&env.ca).unwrap();
    env.standin.add_iam_user(DOMAIN, USER, PASSWORD);
    env.instance("inst-a");
    env.cloud = format!("iam_endpoint = \"{}\"\n", env.standin.iam_url());
    env.auth = format!(
        "method = \"password\"\nuser = \"{USER}\"\ndomain = \"{DOMAIN}\"\npassword = \"{PASSWORD}\"\n"
    );
    env.sync.push_str("interval = \"1s\"\njitter = \"0s\"\n");
    env.write_config();
    fs::set_permissions(
        env.path("config.toml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let d = env.daemon(&[]);
    assert!(
        wait_until(LIMIT, || env.hook_runs("inst-a").len() == 1),
        "{}",
        d.log()
    );
    env.standin.push_fault(FaultRule::always(Fault::IamStatus {
        status: 503,
        body: r#"{"error":{"code":503,"message":"IAM is down","title":"Service Unavailable"}}"#
            .into(),
    }));
    let iam = || requests_to(&env.standin, Listener::Iam, "/v3/auth/tokens");
    assert!(wait_until(LIMIT, || iam() >= 2), "no refresh\n{}", d.log());
    let unchanged = d.log().matches("unchanged").count();
    assert!(
        wait_until(Duration::from_secs(8), || d
            .log()
            .matches("unchanged")
            .count()
            >= unchanged + 4),
        "rounds failed after the refresh failed, although the token was valid\n{}",
        d.log()
    );
    let log = d.log();
    assert!(!log.contains("failed: "), "a round failed\n{log}");
    assert!(
        log.contains("failed; the current one is still valid and stays in use"),
        "{log}"
    );
}

/// Runs `--once` at trace level in both log formats against an API that
/// answers 403 quoting the credentials it was sent; returns every run's
/// output.
fn once_against_an_echoing_api(env: &Env) -> Vec<Run> {
    env.standin
        .push_fault(FaultRule::always(Fault::ApiEchoCredentials(403)));
    env.write_config();
    ["text", "json"]
        .iter()
        .map(|format| {
            let run = Run::from(
                env.command(&["--once", "--log-format", format])
                    .env("RUST_LOG", "trace")
                    .output()
                    .expect("run binary"),
            );
            run.assert_code(1);
            assert!(
                run.all()
                    .contains("The request is forbidden for the credentials presented")
                    && run.all().contains("APIGW.0302"),
                "the reason is still shown\n{}",
                run.all()
            );
            run
        })
        .collect()
}

/// Neither a secret nor a recognisable piece of it is in the output.
fn assert_no_secret(runs: &[Run], secrets: &[String]) {
    for run in runs {
        let all = run.all();
        for s in secrets {
            assert!(s.len() >= 12, "test secrets are long: {s}");
            assert!(!all.contains(&s[..12]), "secret {s} leaked\n{all}");
        }
    }
}

fn sent_header(standin: &StandIn, name: &str) -> Vec<String> {
    let mut v: Vec<String> = standin
        .requests()
        .iter()
        .filter(|r| r.listener == Listener::Api)
        .filter_map(|r| r.header(name).map(str::to_string))
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn an_api_error_echoing_the_access_key_and_security_token_is_logged_without_them() {
    let mut env = Env::new();
    env.instance("inst-a");
    let (ak, sk, token) = env.standin.issue_temporary(Duration::from_secs(3600));
    env.auth = format!(
        "method = \"aksk\"\naccess_key = \"{ak}\"\nsecret_key = \"{sk}\"\nsecurity_token = \"{token}\"\n"
    );
    let runs = once_against_an_echoing_api(&env);
    assert_eq!(
        sent_header(&env.standin, "x-security-token"),
        vec![token.clone()]
    );
    assert_no_secret(&runs, &[ak, sk, token]);
}

#[test]
fn an_api_error_echoing_the_iam_token_is_logged_without_it() {
    let mut env = Env::new();
    env.standin.add_iam_user(DOMAIN, USER, PASSWORD);
    env.instance("inst-a");
    env.cloud = format!("iam_endpoint = \"{}\"\n", env.standin.iam_url());
    env.auth = format!(
        "method = \"password\"\nuser = \"{USER}\"\ndomain = \"{DOMAIN}\"\npassword = \"{PASSWORD}\"\n"
    );
    let runs = once_against_an_echoing_api(&env);
    let mut secrets = sent_header(&env.standin, "x-auth-token");
    assert!(!secrets.is_empty(), "IAM tokens were sent");
    secrets.push(PASSWORD.to_string());
    assert_no_secret(&runs, &secrets);
}

#[test]
fn an_api_error_echoing_a_fixed_token_from_a_file_is_logged_without_it() {
    let mut env = Env::new();
    env.instance("inst-a");
    let token = env.path("token");
    fs::write(&token, format!("{}\n", env.standin.token())).unwrap();
    env.auth = format!("method = \"token\"\ntoken_file = \"{}\"\n", token.display());
    let runs = once_against_an_echoing_api(&env);
    assert_no_secret(&runs, &[env.standin.token()]);
}

#[test]
fn an_iam_refusal_echoing_the_password_is_logged_without_it() {
    let mut env = Env::new();
    env.standin.add_iam_user(DOMAIN, USER, PASSWORD);
    env.instance("inst-a");
    env.cloud = format!("iam_endpoint = \"{}\"\n", env.standin.iam_url());
    env.auth = format!(
        "method = \"password\"\nuser = \"{USER}\"\ndomain = \"{DOMAIN}\"\npassword = \"{PASSWORD}\"\n"
    );
    env.standin.push_fault(FaultRule::always(Fault::IamStatus {
        status: 401,
        body: format!(
            r#"{{"error":{{"code":401,"message":"The password {PASSWORD} is wrong.","title":"Unauthorized"}}}}"#
        ),
    }));
    env.write_config();
    let run = Run::from(
        env.command(&["--once"])
            .env("RUST_LOG", "trace")
            .output()
            .expect("run binary"),
    );
    run.assert_code(1);
    assert!(
        run.all().contains("The password ******** is wrong."),
        "{}",
        run.all()
    );
    assert_no_secret(&[run], &[PASSWORD.to_string()]);
}
