//! The daemon: first round at start, rotations on the interval, failures
//! retried, signals.

use std::fs;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn syncs_at_start_follows_rotations_and_stops_on_sigterm() {
    let mut env = Env::new();
    env.instance("inst-a").instance("inst-b");
    env.sync.push_str("interval = \"1s\"\njitter = \"0s\"\n");
    let mut d = env.daemon(&[]);
    assert!(
        wait_until(LIMIT, || env.hook_runs("inst-a").len() == 1
            && env.hook_runs("inst-b").len() == 1),
        "{}",
        d.log()
    );
    let natl = env.out("inst-a", "national");
    let ino = stamp(&natl).0;

    env.standin.rotate("inst-a", "national");
    assert!(
        wait_until(LIMIT, || env.hook_runs("inst-a").len() == 2),
        "{}",
        d.log()
    );
    assert_eq!(fs::read(&natl).unwrap(), env.served("inst-a", "national"));
    assert_ne!(stamp(&natl).0, ino);
    assert!(
        env.hook_runs("inst-a")[1].contains(&format!("DDS_CERTSYNC_CHANGED={}\n", natl.display()))
    );
    // inst-b saw no change, so no second hook run.
    d.wait_log("unchanged", 4, LIMIT);
    assert_eq!(env.hook_runs("inst-b").len(), 1);

    let t = Instant::now();
    d.signal(Signal::SIGTERM);
    let code = d.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", d.log());
    // The requirement is "within a second"; allow slack for a loaded CI box.
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert!(d.log().contains("SIGTERM received"));
}

#[test]
fn sigint_during_a_stalled_request_stops_promptly() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("timeout = \"60s\"\n");
    env.standin
        .push_fault(FaultRule::always(Fault::ApiDelay(Duration::from_secs(60))));
    let mut d = env.daemon(&[]);
    assert!(wait_until(LIMIT, || !env.standin.requests().is_empty()));
    d.signal(Signal::SIGINT);
    assert_eq!(d.wait_exit(Duration::from_secs(5)), Some(0), "{}", d.log());
}

#[test]
fn failures_back_off_and_recover_without_delaying_others() {
    let mut env = Env::new();
    env.instance("flaky").instance("steady");
    env.sync
        .push_str("interval = \"1h\"\nmax_backoff = \"2s\"\n");
    env.standin.push_fault(FaultRule {
        instance: Some("flaky".into()),
        category: None,
        fault: Fault::ApiStatus {
            status: 503,
            body: "{}".into(),
            retry_after: None,
        },
        times: Some(2),
    });
    let d = env.daemon(&[]);
    assert!(
        wait_until(LIMIT, || env.hook_runs("flaky").len() == 1),
        "{}",
        d.log()
    );
    assert_eq!(env.hook_runs("steady").len(), 1);
    let log = d.log();
    assert_eq!(log.matches("retrying in").count(), 2, "{log}");
    assert!(log.contains("HTTP 503"), "{log}");
}

#[test]
fn sighup_applies_a_good_config_and_ignores_a_broken_one() {
    let mut env = Env::new();
    env.instance("inst-a");
    let mut d = env.daemon(&[]);
    assert!(
        wait_until(LIMIT, || env.hook_runs("inst-a").len() == 1),
        "{}",
        d.log()
    );

    // A broken config is refused; the daemon keeps running.
    fs::write(
        env.path("config.toml"),
        env.config_text().replace("[sync]", "[sync]\nbogus = 1"),
    )
    .unwrap();
    d.signal(Signal::SIGHUP);
    d.wait_log("reload refused", 1, LIMIT);
    assert!(d.log().contains("sync.bogus"), "{}", d.log());
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "daemon exited on a bad reload"
    );

    // A good one with a new instance is applied, and the instance synced.
    env.instance("inst-new");
    env.write_config();
    d.signal(Signal::SIGHUP);
    assert!(
        wait_until(LIMIT, || env.hook_runs("inst-new").len() == 1),
        "{}",
        d.log()
    );
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_failing_hook_does_not_bring_the_daemon_down() {
    let mut env = Env::new();
    env.standin.add_instance(PROJECT, "inst-a");
    env.raw_instance("id = \"inst-a\"\ninternational = \"out/a.crt\"\non_change = [\"/bin/sh\", \"-c\", \"echo reload-broke >&2; exit 7\"]");
    env.sync.push_str("interval = \"1s\"\njitter = \"0s\"\n");
    let mut d = env.daemon(&[]);
    d.wait_log("hook failed", 1, LIMIT);
    assert!(d.log().contains("exited with status 7"), "{}", d.log());
    assert!(d.log().contains("reload-broke"), "{}", d.log());
    env.standin.rotate("inst-a", "international");
    // The failed hook stays owed and is retried on its own, so failures go
    // on without a new change; the rotation is still picked up.
    assert!(
        wait_until(LIMIT, || fs::read(env.path("out/a.crt")).ok()
            == Some(env.served("inst-a", "international"))),
        "{}",
        d.log()
    );
    d.wait_log("hook failed", 2, LIMIT);
    assert!(d.child.try_wait().unwrap().is_none());
}
