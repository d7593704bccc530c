//! Which roots the HTTPS clients trust: the system's, as `rustls-native-certs`
//! finds them (`SSL_CERT_FILE` and `SSL_CERT_DIR` when set), plus
//! `cloud.ca_file`; both at once, and nothing else. The system's bundle file
//! is read with the clients and its directories only when a chain needs them
//! (`cloud::trust`), so these tests make one run need both: the API
//! (stand-in A) is signed by the CA of `ca_file`, and the download links it
//! hands out point at stand-in B, whose CA is the "system's", in a bundle
//! file or in a directory.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::support::*;

/// Stand-in A serves the API, answering with download links of stand-in B
/// for `inst-a`; the config trusts A's CA through `ca_file`. Returns B,
/// and B's CA written to `b-ca.pem`.
fn api_on_a_downloads_on_b(env: &mut Env) -> (StandIn, std::path::PathBuf) {
    env.instance("inst-a");
    let b = StandIn::start();
    b.add_instance(PROJECT, "inst-a");
    let b_ca = env.path("b-ca.pem");
    b.write_ca(&b_ca).unwrap();
    // B's links are signed by B's API: ask it, trusting its CA.
    let cloud = dds_certsync::config::Cloud {
        region: None,
        endpoints: [(dds_certsync::cloud::Service::Dds, b.api_url())].into(),
        iam_endpoint: None,
        ca_file: Some(b_ca.clone()),
    };
    let auth = dds_certsync::config::Auth::Token(dds_certsync::config::SecretSource::Inline(
        dds_certsync::secret::Secret::new(b.token()),
    ));
    let credentials = dds_certsync::cloud::auth::Credentials::from_config(&auth, &cloud);
    let client =
        dds_certsync::cloud::Client::new(&cloud, credentials, Duration::from_secs(10), 1).unwrap();
    let links = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(client.download_links(dds_certsync::cloud::Service::Dds, PROJECT, "inst-a"))
        .expect("B's links");
    let certs: Vec<String> = links
        .iter()
        .map(|l| {
            format!(
                r#"{{"category":"{}","download_link":"{}"}}"#,
                l.category, l.url
            )
        })
        .collect();
    env.standin
        .push_fault(FaultRule::always(Fault::ApiBody(format!(
            r#"{{"certs":[{}]}}"#,
            certs.join(",")
        ))));
    (b, b_ca)
}

/// `--once` with the given variables of `rustls-native-certs` (and no other).
fn once_with_system_roots(env: &Env, vars: &[(&str, &Path)]) -> Run {
    env.write_config();
    let mut cmd = env.command(&["--once"]);
    cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    Run::from(cmd.output().expect("run binary"))
}

fn assert_synced_from(env: &Env, b: &StandIn, run: &Run) {
    run.assert_code(0);
    for category in CATEGORIES {
        assert_eq!(
            fs::read(env.out("inst-a", category)).unwrap(),
            canonical(b.cert_pem("inst-a", category).as_bytes()),
            "{category}\n{}",
            run.all()
        );
    }
}

#[test]
fn the_system_roots_from_ssl_cert_file_and_ca_file_are_trusted_in_one_run() {
    let mut env = Env::new();
    let (b, b_ca) = api_on_a_downloads_on_b(&mut env);
    let run = once_with_system_roots(&env, &[("SSL_CERT_FILE", &b_ca)]);
    assert_synced_from(&env, &b, &run);
}

#[test]
fn the_system_roots_from_ssl_cert_dir_and_ca_file_are_trusted_in_one_run() {
    let mut env = Env::new();
    let (b, b_ca) = api_on_a_downloads_on_b(&mut env);
    let dir = env.path("certs");
    fs::create_dir(&dir).unwrap();
    fs::copy(&b_ca, dir.join("b.pem")).unwrap();
    let run = once_with_system_roots(&env, &[("SSL_CERT_DIR", &dir)]);
    assert_synced_from(&env, &b, &run);
}

#[test]
fn a_server_neither_the_system_nor_ca_file_vouches_for_is_refused() {
    let mut env = Env::new();
    let (_b, _b_ca) = api_on_a_downloads_on_b(&mut env);
    // The "system" holds only an unrelated CA: B's downloads are refused.
    let other = StandIn::start();
    let other_ca = env.path("other-ca.pem");
    other.write_ca(&other_ca).unwrap();
    let run = once_with_system_roots(&env, &[("SSL_CERT_FILE", &other_ca)]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("download") && run.stderr.contains("certificate"),
        "{}",
        run.all()
    );
    assert!(!env.out("inst-a", "international").exists());
}

#[test]
fn without_ca_file_the_api_is_trusted_only_through_the_system_roots() {
    let mut env = Env::new();
    env.instance("inst-a");
    let a_ca = env.ca.clone();
    env.with_ca_file = false;
    let config = env.write_config();
    assert!(!fs::read_to_string(config).unwrap().contains("ca_file"));
    // A's CA as the system's: trusted.
    let mut cmd = env.command(&["--once"]);
    cmd.env_remove("SSL_CERT_DIR").env("SSL_CERT_FILE", &a_ca);
    let run = Run::from(cmd.output().unwrap());
    run.assert_code(0);
    assert_eq!(env.outputs("inst-a"), env.served_all("inst-a"));
    // An unrelated CA as the system's: refused.
    let other = StandIn::start();
    let other_ca = env.path("other-ca.pem");
    other.write_ca(&other_ca).unwrap();
    let mut cmd = env.command(&["--once"]);
    cmd.env_remove("SSL_CERT_DIR")
        .env("SSL_CERT_FILE", &other_ca);
    let run = Run::from(cmd.output().unwrap());
    run.assert_code(1);
    assert!(run.stderr.contains("certificate"), "{}", run.all());
}
