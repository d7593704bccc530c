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
