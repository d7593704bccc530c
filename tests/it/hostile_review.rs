//! Hostile input found by review: a reload that must prepare a new API
//! client while a file it reads stalls. The daemon reads `cloud.ca_file` and
//! the system's CA roots (here `SSL_CERT_FILE`, a file the test controls) to
//! build the client; that read must not hold the runtime thread, so the
//! endpoints keep answering, and a build that does not finish in time is
//! refused with a clear error while the running config stays.

use std::fs;
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(60);

/// One GET on a fresh connection, `limit` for each step: (status, body).
fn http_within(addr: std::net::SocketAddr, path: &str, limit: Duration) -> Option<(u16, String)> {
    http(addr, "GET", path, limit)
}

#[test]
fn a_reload_stalled_reading_ca_roots_keeps_the_endpoints_answering_and_is_refused() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1h\"\n");
    env.instances
        .push("\n[server]\nlisten = \"127.0.0.1:0\"\n".into());
    // The system's roots come from this file: the stand-in's CA, a valid PEM.
    let roots = env.path("system-roots.pem");
    fs::copy(&env.ca, &roots).unwrap();
    env.write_config();
    let mut cmd = env.command(&[]);
    cmd.env("SSL_CERT_FILE", &roots).env_remove("SSL_CERT_DIR");
    let d = env.spawn(cmd);
    let addr = d.listen_addr(1);
    env.wait_hook_runs(&d, "inst-a", 1);

    // The roots file becomes a FIFO; a writer that never writes holds it
    // open once the daemon opens it, so the daemon's read stalls.
    fs::remove_file(&roots).unwrap();
    nix::unistd::mkfifo(&roots, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let (opened_tx, opened_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let fifo = roots.clone();
    let writer = std::thread::spawn(move || {
        // Blocks until the daemon opens the FIFO for reading.
        let w = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        opened_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(Duration::from_secs(300));
        drop(w);
    });
    // A changed sync.timeout needs a new API client.
    env.sync.push_str("timeout = \"6s\"\n");
    replace_config(&env);
    d.signal(Signal::SIGHUP);
    assert!(
        opened_rx.recv_timeout(LIMIT).is_ok(),
        "the reload never read the system's roots\n{}",
        d.log()
    );

    // The build is stalled now: the endpoints still answer, at once.
    let health = http_within(addr, "/healthz", Duration::from_secs(5));
    assert_eq!(
        health.as_ref().map(|(s, _)| *s),
        Some(200),
        "/healthz did not answer while a reload read a stalled file\n{}",
        d.log()
    );
    let ready = http_within(addr, "/readyz", Duration::from_secs(5));
    assert_eq!(ready.map(|(s, _)| s), Some(200), "{}", d.log());

    // The build does not finish: the reload is refused, naming what it read.
    d.wait_log("reload refused", 1, LIMIT);
    let log = d.log();
    let line = log.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(line.contains("CA roots"), "{line}");
    assert!(!log.contains("config reloaded"), "{log}");
    release_tx.send(()).unwrap();
    writer.join().unwrap();

    // With readable roots again, the same change is taken.
    fs::remove_file(&roots).unwrap();
    fs::copy(&env.ca, &roots).unwrap();
    d.signal(Signal::SIGHUP);
    d.wait_log("config reloaded", 1, LIMIT);
    assert_eq!(
        http_within(addr, "/healthz", Duration::from_secs(5)).map(|(s, _)| s),
        Some(200),
        "{}",
        d.log()
    );
}
