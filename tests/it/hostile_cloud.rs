//! Hostile neighbours of the cloud client: secret files swapped for FIFOs,
//! servers that echo credentials back, IAM and metadata outages, a metadata
//! service behind a private CA.

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
