//! A whole CA rotation under real TLS clients that are not our code.
//!
//! Two clients reconnect every ~20 ms to the stand-in's instance listener,
//! each reading the CA file from disk for every connection, as MongoDB
//! drivers read `tlsCAFile`: Python's `ssl` module (OpenSSL) and a rustls
//! client. The script plays the rotation in the stand-in in one order or the
//! other while the real daemon keeps the file; the clients count every
//! failed handshake.
//!
//! * link first, default `keep_previous`: no client ever fails;
//! * link first through a short grace: the old CA is dropped after the
//!   server switched, the hook runs for it, and still no client fails;
//! * link first with `keep_previous = "0s"`: the same script fails clients,
//!   from the file's change until the server switches;
//! * server first with `probe`: the failures end within `probe_interval`
//!   plus one round, where without it they would last until the next poll
//!   (`interval`, an hour here).
//!
//! Each test prints its figures (`cargo test rotation -- --nocapture`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::*;

const INTL: &str = "international";
/// How long each client waits between connections.
const PACE: Duration = Duration::from_millis(20);

/// The Python client: one handshake per loop, the CA file read for each.
const PY_CLIENT: &str = r#"
import json, os, socket, ssl, sys, time
host, port, cafile, stop, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ok, failures = 0, []
while not os.path.exists(stop):
    t = time.time()
    try:
        ctx = ssl.create_default_context(cafile=cafile)  # the file as it is now
        ctx.check_hostname = False                       # the chain, not the name, as Huawei's examples
        with socket.create_connection((host, port), timeout=2) as sock:
            with ctx.wrap_socket(sock):
                pass
        ok += 1
        if ok == 1:
            open(out + ".started", "w").close()
    except OSError as e:
        failures.append([t, str(e)])
    time.sleep(0.02)
with open(out + ".tmp", "w") as f:
    json.dump({"ok": ok, "failures": failures}, f)
os.rename(out + ".tmp", out)
"#;

/// What one client saw.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    /// Wall-clock time of each failed handshake, and why.
    failures: Vec<(SystemTime, String)>,
}

impl Tally {
    fn connections(&self) -> usize {
        self.ok + self.failures.len()
    }

    /// From `from` to the last failure (zero without failures).
    fn window_after(&self, from: SystemTime) -> Duration {
        self.failures
            .iter()
            .filter_map(|(t, _)| t.duration_since(from).ok())
            .max()
            .unwrap_or_default()
    }

    fn first_reasons(&self) -> Vec<&str> {
        self.failures
            .iter()
            .take(3)
            .map(|(_, r)| r.as_str())
            .collect()
    }
}

/// One rustls handshake trusting exactly the certificates in the file now.
fn rustls_handshake(addr: SocketAddr, cafile: &Path) -> Result<(), String> {
    let pem = std::fs::read(cafile).map_err(|e| format!("read {}: {e}", cafile.display()))?;
    dds_standin::tls_handshake(addr, &pem, b"", Duration::from_secs(2))
}

/// The two clients, running.
struct Clients {
    python: Child,
    py_out: PathBuf,
    stop_file: PathBuf,
    stop: Arc<AtomicBool>,
    rust: JoinHandle<Tally>,
}

impl Clients {
    /// Starts both, and returns once each has had a successful handshake;
    /// `None` when `test` had to skip (no python3).
    fn start(test: &str, env: &Env, addr: SocketAddr, cafile: &Path) -> Option<Clients> {
        let script = env.path("tls-client.py");
        std::fs::write(&script, PY_CLIENT).expect("write client");
        let (stop_file, py_out) = (env.path("clients.stop"), env.path("python.json"));
        let python = Command::new("python3")
            .arg(&script)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .arg(cafile)
            .arg(&stop_file)
            .arg(&py_out)
            .stdin(Stdio::null())
            .spawn();
        let Ok(python) = python else {
            skip(
                test,
                "python3 is not installed (its ssl module is the OpenSSL client)",
            );
            return None;
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, file, started) = (
            Arc::clone(&stop),
            cafile.to_path_buf(),
            Arc::new(AtomicBool::new(false)),
        );
        let started_too = Arc::clone(&started);
        let rust = std::thread::spawn(move || {
            let mut tally = Tally::default();
            while !flag.load(Ordering::Relaxed) {
                match rustls_handshake(addr, &file) {
                    Ok(()) => {
                        tally.ok += 1;
                        started_too.store(true, Ordering::Relaxed);
                    }
                    Err(e) => tally.failures.push((SystemTime::now(), e)),
                }
                std::thread::sleep(PACE);
            }
            tally
        });
        let py_started = py_out.with_extension("json.started");
        let up = wait_until(WAIT, || {
            started.load(Ordering::Relaxed) && py_started.exists()
        });
        assert!(up, "the clients never connected");
        Some(Clients {
            python,
            py_out,
            stop_file,
            stop,
            rust,
        })
    }

    /// Stops both; their tallies: (python, rustls).
    fn stop(mut self) -> (Tally, Tally) {
        std::fs::write(&self.stop_file, "").expect("stop file");
        self.stop.store(true, Ordering::Relaxed);
        let rust = self.rust.join().expect("rustls client");
        let done = wait_until(WAIT, || self.py_out.exists());
        let _ = self.python.kill();
        let _ = self.python.wait();
        assert!(done, "the Python client never wrote its tally");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&self.py_out).expect("tally")).expect("json");
        let failures = json["failures"]
            .as_array()
            .expect("failures")
            .iter()
            .map(|f| {
                let secs = f[0].as_f64().unwrap_or_default();
                (
                    UNIX_EPOCH + Duration::from_secs_f64(secs),
                    f[1].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let python = Tally {
            ok: json["ok"].as_u64().unwrap_or_default() as usize,
            failures,
        };
        (python, rust)
    }
}

/// Starts the daemon for `env`, waits for its first write of instance
/// `id`, then starts both clients against the instance's listener; `None`
/// when `test` had to skip.
fn connected(test: &str, env: &Env, id: &str) -> Option<(Daemon, Clients)> {
    let d = env.daemon(&[]);
    wait_reasons(env, &d, 1);
    let addr = env.standin.instance_addr(id);
    let clients = Clients::start(test, env, addr, &env.out(id, INTL))?;
    Some((d, clients))
}

/// Each client made at least `min_ok` connections and none failed.
fn assert_none_failed(d: &Daemon, python: &Tally, rust: &Tally, min_ok: usize) {
    for (name, t) in [("python", python), ("rustls", rust)] {
        assert!(t.ok >= min_ok, "{name}: only {} connections", t.ok);
        assert!(
            t.failures.is_empty(),
            "{name}: {} failed: {:?}\n{}",
            t.failures.len(),
            t.first_reasons(),
            d.log()
        );
    }
}

/// Whether the file holds this certificate now.
fn file_has(env: &Env, id: &str, pem: &str) -> bool {
    let want = canonical(pem.as_bytes());
    let body = std::fs::read(env.out(id, INTL)).unwrap_or_default();
    body.windows(want.len()).any(|w| w == want.as_slice())
}

fn wait_file(env: &Env, d: &Daemon, id: &str, pem: &str, has: bool, what: &str) {
    let ok = wait_until(WAIT, || file_has(env, id, pem) == has);
    assert!(ok, "{what}\n{}", d.log());
}

/// An instance `id` writing only `international`, with `[sync]` lines
/// `sync` (plus `jitter = "0s"`), and a hook that appends its
/// `DDS_CERTSYNC_REASON` to `reasons.log`. `sync` names `keep_previous` in
/// every test, so the suite's `0s` default stays out.
fn env_with(id: &str, sync: &str) -> Env {
    let mut env = Env::new();
    env.standin.add_instance(PROJECT, id);
    env.sync = format!("jitter = \"0s\"\n{sync}");
    let reasons = env.path("reasons.log");
    env.raw_instance(&format!(
        "id = \"{id}\"\ninternational = \"out/{id}-{INTL}.crt\"\n\
         on_change = [\"/bin/sh\", \"-c\", \"echo \\\"$DDS_CERTSYNC_REASON\\\" >> {}\"]",
        reasons.display()
    ));
    env
}

/// The hook's reasons so far, one per run.
fn reasons(env: &Env) -> Vec<String> {
    std::fs::read_to_string(env.path("reasons.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_reasons(env: &Env, d: &Daemon, n: usize) {
    let ok = wait_until(WAIT, || reasons(env).len() >= n);
    assert!(ok, "{:?}, wanted {n} hook runs\n{}", reasons(env), d.log());
}

fn print(test: &str, python: &Tally, rust: &Tally, extra: &str) {
    eprintln!(
        "{test}: python/OpenSSL {} connections, {} failed; rustls {} connections, {} failed{extra}",
        python.connections(),
        python.failures.len(),
        rust.connections(),
        rust.failures.len(),
    );
}

/// The "link first" script: the link serves a new CA; once the daemon wrote
/// it, the clients go on for `before_switch` against the old server; then
/// the server switches. Returns the new CA's PEM, the old one's, and the
/// running clients.
fn link_first(env: &Env, d: &Daemon, id: &str, before_switch: Duration) -> (String, String) {
    let old = env.standin.cert_pem(id, INTL);
    let new = env.standin.rotate(id, INTL);
    wait_file(env, d, id, &new, true, "the daemon never wrote the new CA");
    std::thread::sleep(before_switch);
    env.standin.server_follow_link(id);
    (new, old)
}

#[test]
fn link_first_with_the_default_keep_previous_no_client_fails() {
    let id = "rot-default";
    // The key is left out: its default (30 days) applies.
    let env = env_with(id, "interval = \"1s\"\n# keep_previous: the default\n");
    let Some((d, clients)) = connected(
        "rotation::link_first_with_the_default_keep_previous_no_client_fails",
        &env,
        id,
    ) else {
        return;
    };
    let (new, old) = link_first(&env, &d, id, Duration::from_millis(700));
    std::thread::sleep(Duration::from_millis(700));
    let (python, rust) = clients.stop();
    print("link first, default keep_previous", &python, &rust, "");
    assert_none_failed(&d, &python, &rust, 20);
    // Both CAs are in the file: the old one is kept for 30 days.
    assert!(file_has(&env, id, &new) && file_has(&env, id, &old));
}

#[test]
fn link_first_through_the_grace_period_the_old_ca_is_dropped_and_no_client_fails() {
    let id = "rot-grace";
    let env = env_with(id, "interval = \"1s\"\nkeep_previous = \"4s\"\n");
    let Some((d, clients)) = connected(
        "rotation::link_first_through_the_grace_period_the_old_ca_is_dropped_and_no_client_fails",
        &env,
        id,
    ) else {
        return;
    };
    let started = Instant::now();
    let (new, old) = link_first(&env, &d, id, Duration::from_millis(700));
    wait_reasons(&env, &d, 2);
    // The grace passes: the old CA goes, and the hook runs for that too.
    wait_file(&env, &d, id, &old, false, "the old CA was never dropped");
    wait_reasons(&env, &d, 3);
    std::thread::sleep(Duration::from_millis(500));
    let (python, rust) = clients.stop();
    let took = started.elapsed();
    print(
        "link first through a 4 s grace",
        &python,
        &rust,
        &format!("; rotation to drop in {took:.1?}"),
    );
    assert_none_failed(&d, &python, &rust, 50);
    assert!(file_has(&env, id, &new));
    assert_eq!(reasons(&env), ["updated", "updated", "previous-dropped"]);
}

#[test]
fn link_first_without_keep_previous_clients_fail_until_the_server_switches() {
    let id = "rot-none";
    let env = env_with(id, "interval = \"1s\"\nkeep_previous = \"0s\"\n");
    let Some((d, clients)) = connected(
        "rotation::link_first_without_keep_previous_clients_fail_until_the_server_switches",
        &env,
        id,
    ) else {
        return;
    };
    let (_new, old) = link_first(&env, &d, id, Duration::from_millis(700));
    assert!(!file_has(&env, id, &old), "replaced outright");
    std::thread::sleep(Duration::from_millis(700));
    let (python, rust) = clients.stop();
    print("link first, keep_previous = \"0s\"", &python, &rust, "");
    for (name, t) in [("python", &python), ("rustls", &rust)] {
        // ~700 ms between the file's change and the server's switch, one
        // connection every 20 ms and then some: several failures, each.
        assert!(
            t.failures.len() >= 5,
            "{name}: only {} failed\n{}",
            t.failures.len(),
            d.log()
        );
    }
}

#[test]
fn server_first_with_probe_the_failures_end_within_probe_interval_and_a_round() {
    let id = "rot-server";
    let probe_interval = Duration::from_secs(1);
    // The default keep_previous: the old CA stays, which changes nothing
    // here (the server has moved on from it).
    let mut env = env_with(
        id,
        "interval = \"1h\"\nprobe_interval = \"1s\"\n# keep_previous: the default\n",
    );
    let addr = env.standin.instance_addr(id);
    env.instances
        .last_mut()
        .expect("instance")
        .push_str(&format!("probe = [\"{addr}\"]\n"));
    let Some((d, clients)) = connected(
        "rotation::server_first_with_probe_the_failures_end_within_probe_interval_and_a_round",
        &env,
        id,
    ) else {
        return;
    };
    // The nodes switch first; the link serves the new CA at once, but the
    // daemon polls it only hourly.
    let switched = SystemTime::now();
    let new = env.standin.server_rotate_first(id);
    env.standin.link_follow_server(id);
    wait_file(
        &env,
        &d,
        id,
        &new,
        true,
        "the daemon never wrote the new CA",
    );
    let fixed = switched.elapsed().unwrap_or_default();
    std::thread::sleep(Duration::from_millis(700));
    let (python, rust) = clients.stop();
    let window = python
        .window_after(switched)
        .max(rust.window_after(switched));
    print(
        "server first with probe_interval = 1s, interval = 1h",
        &python,
        &rust,
        &format!(
            "; failures for {window:.2?} after the switch; the file had the new CA after {fixed:.2?}"
        ),
    );
    // One round here takes well under a second; 2 s covers it and a loaded
    // machine's scheduling, and is still nothing like the hour of `interval`.
    let bound = probe_interval + Duration::from_secs(2);
    assert!(
        window <= bound,
        "failures for {window:?}, bound {bound:?}\n{}",
        d.log()
    );
    assert!(
        !python.failures.is_empty() || !rust.failures.is_empty(),
        "the switch must have failed some clients until the daemon caught up"
    );
    assert!(
        d.log()
            .contains("probe: clients reading the file would fail")
    );
}
