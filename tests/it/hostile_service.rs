//! The service under hostile neighbours: connections that hold the health
//! server, a log reader that stops reading, a listener moved to another
//! address on the same port, expired files, metrics before the first round,
//! and control characters from certificates and API answers in the text log.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(20);

/// A free loopback port (bound, read, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request on a fresh connection, with `limit` for each of
/// connect, write and read: (status, body).
fn http_within(port: u16, path: &str, limit: Duration) -> Option<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, limit).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    s.set_write_timeout(Some(limit)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n").map(|x| x.1)?.to_string();
    Some((status, body))
}

/// GET, retried until an answer comes (the daemon may still be starting).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut last = None;
    let ok = wait_until(LIMIT, || {
        last = http_within(port, path, Duration::from_secs(5));
        last.is_some()
    });
    assert!(ok, "no answer on 127.0.0.1:{port}{path}");
    last.unwrap()
}

/// The value of the metric line starting with `prefix` (name and labels).
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn listen_on(env: &mut Env, addr: &str) {
    env.instances
        .push(format!("\n[server]\nlisten = \"{addr}\"\n"));
}

#[test]
fn an_expired_certificate_on_disk_keeps_cert_expiring_at_one() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1h\"\n");
    let port = free_port();
    listen_on(&mut env, &format!("127.0.0.1:{port}"));
    // The API never answers well, so the expired file stays.
    env.standin.push_fault(FaultRule::always(Fault::ApiStatus {
        status: 503,
        body: "{}".into(),
        retry_after: None,
    }));
    fs::create_dir_all(env.path("out")).unwrap();
    fs::write(
        env.out("inst-a", "international"),
        dds_standin::expired_cert_pem(),
    )
    .unwrap();
    let d = env.daemon(&[]);
    d.wait_log("round failed", 1, LIMIT);
    let m = get(port, "/metrics").1;
    let labels = "{instance=\"inst-a\",category=\"international\"}";
    assert_eq!(
        metric(&m, &format!("dds_certsync_cert_expiring{labels}")),
        Some(1.0),
        "{m}"
    );
    let not_after = metric(
        &m,
        &format!("dds_certsync_cert_not_after_timestamp_seconds{labels}"),
    )
    .expect("not_after of the expired file");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    assert!(not_after < now, "{not_after} vs {now}");
    let (code, body) = get(port, "/readyz");
    assert_eq!(code, 503);
    assert!(body.contains("expired at"), "{body}");
}
