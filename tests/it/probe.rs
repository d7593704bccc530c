//! `probe` against the stand-in's instance listener, through the real
//! binary: the gauge, the "server first" sync, what a probe sends (nothing),
//! a dead address, a link that lags behind the server, and `/readyz`, which
//! never looks at probes.

use std::time::{Duration, Instant};

use crate::support::*;

const INTL: &str = "international";

/// An instance `id` probing its stand-in listener (plus `extra` addresses),
/// the daemon's endpoints on, a long `interval` and a 1 s `probe_interval`.
fn probed(id: &str, extra: &[String]) -> Env {
    let mut env = Env::new();
    env.sync = "interval = \"1h\"\njitter = \"0s\"\nprobe_interval = \"1s\"\n".into();
    env.instance(id);
    let mut addrs = vec![format!("\"{}\"", env.standin.instance_addr(id))];
    addrs.extend(extra.iter().map(|a| format!("\"{a}\"")));
    let last = env.instances.last_mut().expect("instance");
    last.push_str(&format!("probe = [{}]\n", addrs.join(", ")));
    env.instances
        .push("\n[server]\nlisten = \"127.0.0.1:0\"\n".into());
    env
}

fn metrics(d: &Daemon) -> String {
    http(d.listen_addr(1), "GET", "/metrics", Duration::from_secs(5))
        .map(|(_, body)| body)
        .unwrap_or_default()
}

fn gauge(id: &str, addr: &str) -> String {
    format!("dds_certsync_probe_ok{{instance=\"{id}\",service=\"dds\",address=\"{addr}\"}}")
}

fn wait_metric(d: &Daemon, line: &str) {
    let ok = wait_until(WAIT, || metrics(d).contains(line));
    assert!(ok, "no {line:?} in\n{}\n{}", metrics(d), d.log());
}

fn file_has(env: &Env, id: &str, pem: &str) -> bool {
    let want = canonical(pem.as_bytes());
    let body = std::fs::read(env.out(id, INTL)).unwrap_or_default();
    body.windows(want.len()).any(|w| w == want.as_slice())
}

#[test]
fn a_verifying_server_is_a_one_and_the_probe_sends_nothing() {
    let env = probed("pr-ok", &[]);
    let d = env.daemon(&[]);
    let addr = env.standin.instance_addr("pr-ok").to_string();
    wait_metric(&d, &format!("{} 1", gauge("pr-ok", &addr)));
    // Probes keep coming (after the round, then every second), each a full
    // handshake, and not one byte after it.
    let ok = wait_until(WAIT, || env.standin.handshakes("pr-ok").ok >= 3);
    assert!(ok, "{:?}\n{}", env.standin.handshakes("pr-ok"), d.log());
    let seen = env.standin.handshakes("pr-ok");
    assert_eq!(seen.failed, 0, "the probe never refuses the handshake");
    assert_eq!(seen.bytes_received, 0, "the probe sends nothing");
    // Nothing else went to the stand-in for it: one round's API call only.
    assert_eq!(api_requests(&env, "pr-ok").len(), 1, "{}", d.log());
}

#[test]
fn a_dead_address_is_a_zero_and_a_warning_and_readiness_stays() {
    // A port nothing listens on, held so that no other test's server
    // takes it meanwhile.
    let held = dead_port();
    let dead = held.addr.to_string();
    let env = probed("pr-dead", std::slice::from_ref(&dead));
    let d = env.daemon(&[]);
    wait_metric(&d, &format!("{} 0", gauge("pr-dead", &dead)));
    let live = env.standin.instance_addr("pr-dead").to_string();
    wait_metric(&d, &format!("{} 1", gauge("pr-dead", &live)));
    d.wait_log("probe: cannot check the server", 2, WAIT);
    let log = d.log();
    assert!(log.contains(&format!("address={dead}")), "{log}");
    // No sync is asked for an unreachable node, and no hot loop: over ~3
    // probe intervals, a handful of warnings.
    std::thread::sleep(Duration::from_secs(3));
    let warnings = d.log().matches("probe: cannot check the server").count();
    assert!(warnings <= 6, "{warnings} warnings in ~4 s\n{}", d.log());
    assert_eq!(api_requests(&env, "pr-dead").len(), 1, "{}", d.log());
    let (status, _) =
        http(d.listen_addr(1), "GET", "/readyz", Duration::from_secs(5)).expect("readyz");
    assert_eq!(status, 200);
}

#[test]
fn server_first_the_probe_syncs_within_the_probe_interval_not_the_interval() {
    let env = probed("pr-first", &[]);
    let d = env.daemon(&[]);
    let addr = env.standin.instance_addr("pr-first").to_string();
    wait_metric(&d, &format!("{} 1", gauge("pr-first", &addr)));
    let old = env.standin.cert_pem("pr-first", INTL);

    // The nodes switch; the link follows at once, but the daemon would not
    // poll it for an hour.
    let switched = Instant::now();
    let new = env.standin.server_rotate_first("pr-first");
    env.standin.link_follow_server("pr-first");
    let ok = wait_until(WAIT, || file_has(&env, "pr-first", &new));
    let took = switched.elapsed();
    assert!(ok, "the file never got the new CA\n{}", d.log());
    assert!(took < Duration::from_secs(10), "{took:?}\n{}", d.log());
    wait_metric(&d, &format!("{} 1", gauge("pr-first", &addr)));

    // The warning named the address, the server's issuer and the file's subjects.
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("probe: clients reading the file would fail"))
        .unwrap_or_else(|| panic!("no probe warning\n{log}"));
    assert!(line.contains(&format!("address={addr}")), "{line}");
    assert!(line.contains("gen 2"), "the server's issuer: {line}");
    assert!(line.contains("gen 1"), "the file's subject: {line}");
    assert!(line.contains("syncing the instance now"), "{line}");
    assert_ne!(old, new);
    // Readiness never looked at the probe.
    let (status, _) =
        http(d.listen_addr(1), "GET", "/readyz", Duration::from_secs(5)).expect("readyz");
    assert_eq!(status, 200);
}

#[test]
fn a_link_that_lags_behind_the_server_costs_one_round_per_probe_interval() {
    let env = probed("pr-lag", &[]);
    let d = env.daemon(&[]);
    let addr = env.standin.instance_addr("pr-lag").to_string();
    wait_metric(&d, &format!("{} 1", gauge("pr-lag", &addr)));
    env.standin.server_rotate_first("pr-lag");
    wait_metric(&d, &format!("{} 0", gauge("pr-lag", &addr)));
    let before = api_requests(&env, "pr-lag").len();
    std::thread::sleep(Duration::from_secs(5));
    let rounds = api_requests(&env, "pr-lag").len() - before;
    // One per probe interval (1 s), plus the odd one: never a loop.
    assert!(
        (2..=7).contains(&rounds),
        "{rounds} rounds in 5 s\n{}",
        d.log()
    );
    assert!(
        d.log().contains("the round that just ended did not fix it"),
        "{}",
        d.log()
    );
    // The link catches up: the next probe's sync fixes the file.
    env.standin.link_follow_server("pr-lag");
    wait_metric(&d, &format!("{} 1", gauge("pr-lag", &addr)));
    d.wait_log(
        "probe: the server's chain verifies against the file again",
        1,
        WAIT,
    );
}

#[test]
fn a_reload_that_only_changes_probe_settings_syncs_nothing() {
    let mut env = probed("pr-reload", &[]);
    let d = env.daemon(&[]);
    let addr = env.standin.instance_addr("pr-reload").to_string();
    wait_metric(&d, &format!("{} 1", gauge("pr-reload", &addr)));
    env.sync = env
        .sync
        .replace("probe_interval = \"1s\"", "probe_interval = \"2s\"");
    replace_config(&env);
    d.wait_log("config reloaded: new probe settings", 1, WAIT);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(api_requests(&env, "pr-reload").len(), 1, "{}", d.log());
}
