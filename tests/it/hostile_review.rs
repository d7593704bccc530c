//! Hostile input found by review: a reload that must prepare a new API
//! client while a file it reads is hostile. Without `cloud.ca_file` the
//! daemon reads the system's CA roots (here `SSL_CERT_FILE`, a file the test
//! controls) to build the client. A FIFO planted there once stalled that
//! read until the build's time ran out; the roots are now read only as a
//! regular file, so the reload is refused at once, the FIFO never opened,
//! the endpoints keep answering and the running config stays.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
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
fn a_fifo_as_the_system_roots_refuses_a_reload_at_once_and_the_endpoints_keep_answering() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1h\"\n");
    env.instances
        .push("\n[server]\nlisten = \"127.0.0.1:0\"\n".into());
    // The system's roots come from this file: the stand-in's CA, a valid PEM.
    // Without ca_file they are the only roots, read whenever the client is
    // built (with one, the daemon reads them only when a chain needs them).
    env.with_ca_file = false;
    let roots = env.path("system-roots.pem");
    fs::copy(&env.ca, &roots).unwrap();
    env.write_config();
    let mut cmd = env.command(&[]);
    cmd.env("SSL_CERT_FILE", &roots).env_remove("SSL_CERT_DIR");
    let d = env.spawn(cmd);
    let addr = d.listen_addr(1);
    env.wait_hook_runs(&d, "inst-a", 1);

    // The roots file becomes a FIFO, with a writer waiting for a reader:
    // opening it for reading would block until then.
    fs::remove_file(&roots).unwrap();
    nix::unistd::mkfifo(&roots, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let (opened_tx, opened_rx) = mpsc::channel();
    let fifo = roots.clone();
    let writer = std::thread::spawn(move || {
        // Blocks until someone opens the FIFO for reading.
        let w = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let _ = opened_tx.send(());
        drop(w);
    });
    // A changed sync.timeout needs a new API client.
    env.sync.push_str("timeout = \"6s\"\n");
    replace_config(&env);
    d.signal(Signal::SIGHUP);

    // Refused at once, naming what was wrong, long before the build's limit.
    let started = std::time::Instant::now();
    d.wait_log("reload refused", 1, LIMIT);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the refusal took {:?}\n{}",
        started.elapsed(),
        d.log()
    );
    let log = d.log();
    let line = log.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(line.contains("CA certificates"), "{line}");
    assert!(!log.contains("config reloaded"), "{log}");
    assert!(
        opened_rx.recv_timeout(Duration::from_secs(1)).is_err(),
        "the daemon opened the FIFO\n{log}"
    );
    // The endpoints answer, and the running config is still the one in use.
    let health = http_within(addr, "/healthz", Duration::from_secs(5));
    assert_eq!(health.map(|(s, _)| s), Some(200), "{}", d.log());
    let ready = http_within(addr, "/readyz", Duration::from_secs(5));
    assert_eq!(ready.map(|(s, _)| s), Some(200), "{}", d.log());
    // Let the writer go: open the FIFO for reading ourselves.
    let reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&roots)
        .unwrap();
    writer.join().unwrap();
    drop(reader);

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
