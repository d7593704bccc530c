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

/// One GET on a fresh connection, `limit` for each step: (status, body).
fn http_within(port: u16, path: &str, limit: Duration) -> Option<(u16, String)> {
    http(local(port), "GET", path, limit)
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

/// Replaces the config file by rename, as an editor or a ConfigMap would.
fn replace_config(env: &Env, text: &str) {
    let tmp = env.path("config.toml.new");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, env.path("config.toml")).unwrap();
}

#[test]
fn probes_answer_within_a_second_while_idle_and_reconnecting_connections_hold_the_server() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1h\"\n");
    listen_on(&mut env, "127.0.0.1:0");
    let d = env.daemon(&[]);
    let port = d.listen_addr(1).port();
    assert_eq!(get(port, "/healthz").0, 200, "{}", d.log());

    // 64 connections that never send a byte.
    let idle: Vec<(Instant, TcpStream)> = (0..64)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            (Instant::now(), s)
        })
        .collect();
    // 8 keep-alive connections that asked once and then say nothing.
    let kept: Vec<(Instant, TcpStream)> = (0..8).map(|_| keep_alive_once(port)).collect();
    // 40 holders that reconnect as soon as the server lets go of them.
    let stop = Arc::new(AtomicBool::new(false));
    let holders: Vec<_> = (0..40)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut closed = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut buf = [0u8; 64];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) => {
                                closed += 1;
                                break;
                            }
                            Ok(_) => {}
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) =>
                            {
                                if stop.load(Ordering::Relaxed) {
                                    break;
                                }
                            }
                            Err(_) => {
                                closed += 1;
                                break;
                            }
                        }
                    }
                }
                closed
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    // Like a kubelet: a fresh connection each time, one second to answer.
    let mut slow = Vec::new();
    for i in 0..10 {
        let t = Instant::now();
        let answer = http_within(port, "/healthz", Duration::from_secs(1));
        let took = t.elapsed();
        if answer.as_ref().map(|a| a.0) != Some(200) || took >= Duration::from_secs(1) {
            slow.push(format!("probe {i}: {answer:?} after {took:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    stop.store(true, Ordering::Relaxed);
    let reconnects: u32 = holders.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(
        slow.is_empty(),
        "probes failed under load ({reconnects} holder connections closed by the server):\n{}\n{}",
        slow.join("\n"),
        d.log()
    );
    // The holders were accepted and let go, not parked in the backlog.
    assert!(reconnects >= 1, "no holder connection was ever closed");

    // Connections that send nothing, or nothing more, are closed after a
    // short idle timeout.
    for (opened, mut s) in idle.into_iter().chain(kept) {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 16];
        let r = s.read(&mut buf);
        let closed = match &r {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        };
        assert!(
            closed && opened.elapsed() < Duration::from_secs(10),
            "an idle connection was held {:?} ({r:?})",
            opened.elapsed()
        );
    }
    assert_eq!(get(port, "/healthz").0, 200);
}

/// A keep-alive connection that got one answer to `/healthz`, and when.
fn keep_alive_once(port: u16) -> (Instant, TcpStream) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.ends_with(b"\r\n\r\nok\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the answer");
        got.extend_from_slice(&buf[..n]);
    }
    (Instant::now(), s)
}

/// A pipe of one page whose read end the test keeps and never reads.
fn stalled_pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = nix::unistd::pipe().unwrap();
    nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096)).unwrap();
    (r, w)
}

/// Bytes waiting in a pipe.
fn queued(r: &OwnedFd) -> usize {
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int into `n`, which outlives the call.
    let rc = unsafe { nix::libc::ioctl(r.as_raw_fd(), nix::libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD failed");
    n as usize
}

#[test]
fn once_with_a_stalled_stderr_still_ends_at_its_deadline() {
    let mut env = Env::new();
    let ids: Vec<String> = (0..30).map(|i| format!("inst-{i:02}")).collect();
    for id in &ids {
        env.instance(id);
    }
    // One instance never answers: only the deadline ends the run.
    env.standin.push_fault(FaultRule {
        instance: Some("inst-00".into()),
        category: None,
        fault: Fault::ApiDelay(Duration::from_secs(120)),
        times: None,
    });
    env.sync.push_str("timeout = \"300s\"\n");
    env.write_config();
    let (r, w) = stalled_pipe();
    let t = Instant::now();
    let mut child = env
        .command(&["--once", "--deadline", "8s"])
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(w))
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let mut status = None;
    wait_until(Duration::from_secs(40), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let took = t.elapsed();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = out.join().unwrap();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "--once with a stalled stderr did not end by its deadline (after {took:?})\n{stdout}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // The log really stalled: the pipe is full.
    assert!(queued(&r) >= 2048, "only {} bytes in the pipe", queued(&r));
    assert!(
        stdout.contains("inst-00): did not finish within the deadline"),
        "{stdout}"
    );
    // Every instance got its summary line, and the others did sync.
    assert_eq!(stdout.lines().count(), 30, "{stdout}");
    assert!(stdout.contains("ok     "), "{stdout}");
    drop(r);
}

#[test]
fn a_stalled_stderr_stops_neither_sync_nor_sigterm() {
    let mut env = Env::new();
    for i in 0..4 {
        env.instance(&format!("inst-{i}"));
    }
    env.sync.push_str("interval = \"1s\"\njitter = \"0s\"\n");
    env.write_config();
    let (r, w) = stalled_pipe();
    let child = env
        .command(&[])
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::from(w))
        .spawn()
        .unwrap();
    let mut d = Daemon {
        child,
        log: env.path("no-log"),
    };
    assert!(
        wait_until(LIMIT, || queued(&r) >= 2048),
        "the log never filled the pipe"
    );
    // The log stays stalled; rounds go on.
    let before = env.standin.requests().len();
    assert!(
        wait_until(LIMIT, || env.standin.requests().len() >= before + 12),
        "sync stopped while stderr was stalled ({} requests before, {} after)",
        before,
        env.standin.requests().len()
    );
    let t = Instant::now();
    d.signal(Signal::SIGTERM);
    assert_eq!(
        d.wait_exit(Duration::from_secs(15)),
        Some(0),
        "SIGTERM did not stop a daemon with a stalled stderr"
    );
    assert!(t.elapsed() < Duration::from_secs(15));
    drop(r);
}

#[test]
fn log_lines_lost_to_a_stalled_stderr_are_counted_once_it_drains() {
    let mut env = Env::new();
    // A chatty hook: each of its output lines is a log line.
    env.standin.add_instance(PROJECT, "inst-a");
    env.raw_instance(
        "id = \"inst-a\"\ninternational = \"out/a.crt\"\non_change = [\"/bin/sh\", \"-c\", \"seq 1 5000\"]\n",
    );
    env.sync.push_str("interval = \"1h\"\n");
    listen_on(&mut env, "127.0.0.1:0");
    env.write_config();
    let (r, w) = stalled_pipe();
    let child = env
        .command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::from(w))
        .spawn()
        .unwrap();
    let _d = Daemon {
        child,
        log: env.path("no-log"),
    };
    let port = listening_port(_d.child.id(), LIMIT);
    let dropped = "dds_certsync_log_lines_dropped_total";
    assert!(
        wait_until(LIMIT, || metric(&get(port, "/metrics").1, dropped)
            .is_some_and(|n| n > 0.0)),
        "{}",
        get(port, "/metrics").1
    );
    // Someone reads again: the loss is reported in the log.
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let l = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut f = fs::File::from(r);
        let mut buf = [0u8; 4096];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            l.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    assert!(
        wait_until(LIMIT, || log
            .lock()
            .unwrap()
            .contains("log line(s) dropped: stderr was not being read")),
        "{}",
        log.lock().unwrap()
    );
}

#[test]
fn an_expired_certificate_on_disk_keeps_cert_expiring_at_one() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1h\"\n");
    listen_on(&mut env, "127.0.0.1:0");
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
    let port = d.listen_addr(1).port();
    d.wait_log("round failed", 1, LIMIT);
    let m = get(port, "/metrics").1;
    let labels = "{instance=\"inst-a\",service=\"dds\",category=\"international\"}";
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

#[test]
fn every_configured_counter_is_exported_at_zero_before_the_first_round_ends() {
    let mut env = Env::new();
    env.instance("inst-a").instance("inst-b");
    env.sync.push_str("interval = \"1h\"\ntimeout = \"60s\"\n");
    listen_on(&mut env, "127.0.0.1:0");
    env.standin
        .push_fault(FaultRule::always(Fault::ApiDelay(Duration::from_secs(60))));
    let _d = env.daemon(&[]);
    let port = _d.listen_addr(1).port();
    let m = get(port, "/metrics").1;
    for id in ["inst-a", "inst-b"] {
        // Every reason the daemon counts, as the unit test of `reason`
        // pins them.
        for reason in dds_certsync::reason::LABELS {
            let series = format!(
                "dds_certsync_sync_errors_total{{instance=\"{id}\",service=\"dds\",reason=\"{reason}\"}}"
            );
            assert_eq!(metric(&m, &series), Some(0.0), "{series}\n{m}");
        }
        for cat in ["international", "national"] {
            for name in ["cert_changes_total", "restores_total"] {
                let series = format!(
                    "dds_certsync_{name}{{instance=\"{id}\",service=\"dds\",category=\"{cat}\"}}"
                );
                assert_eq!(metric(&m, &series), Some(0.0), "{series}\n{m}");
            }
        }
        for result in ["ok", "failed", "timeout"] {
            let series = format!(
                "dds_certsync_hook_runs_total{{instance=\"{id}\",service=\"dds\",result=\"{result}\"}}"
            );
            assert_eq!(metric(&m, &series), Some(0.0), "{series}\n{m}");
        }
    }
    // No round has ended yet.
    assert!(
        metric(&m, "dds_certsync_last_success_timestamp_seconds{").is_none(),
        "{m}"
    );
}

#[test]
fn a_failed_hook_counts_as_a_sync_error_with_reason_hook() {
    let mut env = Env::new();
    env.standin.add_instance(PROJECT, "inst-h");
    env.raw_instance(
        "id = \"inst-h\"\ninternational = \"out/h.crt\"\non_change = [\"/bin/false\"]\n",
    );
    env.sync.push_str("interval = \"1h\"\n");
    listen_on(&mut env, "127.0.0.1:0");
    let d = env.daemon(&[]);
    let port = d.listen_addr(1).port();
    let failed =
        "dds_certsync_hook_runs_total{instance=\"inst-h\",service=\"dds\",result=\"failed\"}";
    assert!(
        wait_until(LIMIT, || metric(&get(port, "/metrics").1, failed)
            .is_some_and(|v| v >= 1.0)),
        "{}\n{}",
        get(port, "/metrics").1,
        d.log()
    );
    let m = get(port, "/metrics").1;
    let hook_errors = metric(
        &m,
        "dds_certsync_sync_errors_total{instance=\"inst-h\",service=\"dds\",reason=\"hook\"}",
    );
    assert_eq!(hook_errors, metric(&m, failed), "{m}");
    // The files themselves were fine.
    assert_eq!(
        metric(
            &m,
            "dds_certsync_sync_errors_total{instance=\"inst-h\",service=\"dds\",reason=\"write\"}"
        )
        .unwrap_or(0.0),
        0.0,
        "{m}"
    );
}

#[test]
fn text_logs_escape_control_characters_from_certificates_and_hooks() {
    let mut env = Env::new();
    env.instance("inst-a");
    let evil_cn = "evil\nINJECTED level=ERROR\x1b[31mred\r\x07\u{9b}2J\x7f";
    env.standin.set_cert_pem(
        "inst-a",
        "national",
        dds_standin::sm2_cert_pem(evil_cn).as_bytes(),
    );
    // A hook whose output rewrites the terminal line.
    env.standin.add_instance(PROJECT, "inst-b");
    env.raw_instance(
        "id = \"inst-b\"\ninternational = \"out/b.crt\"\non_change = [\"/bin/sh\", \"-c\", 'printf \"hook\\033[2J\\rFORGED\\n\"']\n",
    );
    let run = env.once(&[]);
    run.assert_code(0);
    let log = &run.stderr;
    for bad in ['\x1b', '\r', '\x07', '\u{9b}', '\x7f'] {
        assert!(!log.contains(bad), "raw {bad:?} in the text log:\n{log:?}");
    }
    for line in log.lines() {
        assert!(
            !line.starts_with("INJECTED") && !line.starts_with("FORGED"),
            "a forged log line: {line:?}"
        );
    }
    let subject_line = log
        .lines()
        .find(|l| l.contains("INJECTED"))
        .unwrap_or_else(|| panic!("no subject in the log:\n{log}"));
    assert!(subject_line.contains("fetched"), "{subject_line}");
    assert!(
        subject_line.contains(r"evil\nINJECTED level=ERROR\x1b[31mred\r\x07"),
        "{subject_line}"
    );
    let hook_line = log
        .lines()
        .find(|l| l.contains("FORGED"))
        .unwrap_or_else(|| panic!("no hook output in the log:\n{log}"));
    assert!(hook_line.contains(r"hook\x1b[2J\rFORGED"), "{hook_line}");

    // JSON keeps the exact text, properly encoded.
    let run = env.once(&["--log-format", "json"]);
    let mut seen = false;
    for line in run.stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        if v["subject"].as_str().is_some_and(|s| s.contains(evil_cn)) {
            seen = true;
        }
    }
    assert!(seen, "{}", run.stderr);
}

#[test]
fn moving_the_listener_to_another_address_on_the_same_port_works_or_keeps_the_old_one() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1h\"\n");
    listen_on(&mut env, "127.0.0.1:0");
    let d = env.daemon(&[]);
    let port = d.listen_addr(1).port();
    assert_eq!(get(port, "/healthz").0, 200, "{}", d.log());

    // Someone else holds 127.0.0.2 on the same port: the wildcard cannot be
    // bound even after ours is closed, so the old listener comes back.
    let squatter = TcpListener::bind(("127.0.0.2", port));
    let text = env
        .config_text()
        .replace("127.0.0.1:0", &format!("0.0.0.0:{port}"));
    if squatter.is_ok() {
        replace_config(&env, &text);
        d.wait_log("reload refused", 1, LIMIT);
        assert!(d.log().contains("server.listen"), "{}", d.log());
        assert_eq!(get(port, "/healthz").0, 200, "{}", d.log());
        drop(squatter);
        d.signal(Signal::SIGHUP);
    } else {
        skip(
            "hostile_service::moving_the_listener (the refused part)",
            "cannot bind 127.0.0.2",
        );
        replace_config(&env, &text);
    }
    d.wait_log(&format!("listen=0.0.0.0:{port}"), 1, LIMIT);
    assert!(d.log().contains("new server.listen"), "{}", d.log());
    // The wildcard answers on loopback too.
    assert_eq!(get(port, "/healthz").0, 200, "{}", d.log());
}
