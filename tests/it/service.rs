//! Running as a service: systemd notifications (a test socket stands in for
//! systemd), the HTTP endpoints and every metric, live reload by watching the
//! config file (rename and ConfigMap symlink swap), self-healing outputs, and
//! a dry-run daemon.

use std::fs;
use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(20);

/// How long an event-driven reaction (a restore, a reload on a config
/// change) may take: generous for a loaded machine, and still well under the
/// 30 s sweep that would catch a missed event.
const PROMPT: Duration = Duration::from_secs(15);

/// The `[server]` section that lets the kernel pick the port; the test
/// reads it back with [`Daemon::listen_addr`].
const ANY_PORT: &str = "\n[server]\nlisten = \"127.0.0.1:0\"\n";

/// A minimal HTTP/1.1 request to 127.0.0.1: (status, body).
fn http(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    http_at(([127, 0, 0, 1], port).into(), method, path)
}

/// A minimal HTTP/1.1 request: (status, body).
fn http_at(addr: std::net::SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    crate::support::http(addr, method, path, Duration::from_secs(5))
}

fn get(port: u16, path: &str) -> (u16, String) {
    let mut last = None;
    let ok = wait_until(LIMIT, || {
        last = http(port, "GET", path);
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

/// The systemd side of NOTIFY_SOCKET.
struct Systemd {
    sock: UnixDatagram,
    path: PathBuf,
    got: Vec<String>,
}

impl Systemd {
    fn new(dir: &Path) -> Systemd {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Systemd {
            sock,
            path,
            got: Vec::new(),
        }
    }

    /// Receives until a message contains `needle`; returns that message.
    fn wait_for(&mut self, needle: &str, limit: Duration) -> Option<String> {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        while start.elapsed() < limit {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.got.push(msg.clone());
                if msg.lines().any(|l| l == needle || l.starts_with(needle)) {
                    return Some(msg);
                }
            }
        }
        None
    }

    fn count(&self, needle: &str) -> usize {
        self.got
            .iter()
            .filter(|m| m.lines().any(|l| l == needle))
            .count()
    }
}

fn api_calls(env: &Env, id: &str) -> usize {
    env.standin
        .requests()
        .iter()
        .filter(|r| r.listener == Listener::Api && r.path.contains(&format!("/instances/{id}/")))
        .count()
}

/// Starts the daemon with extra environment variables.
fn daemon_with_env(env: &Env, args: &[&str], vars: &[(&str, String)]) -> Daemon {
    env.write_config();
    let mut cmd = env.command(args);
    cmd.envs(vars.iter().map(|(k, v)| (k, v)));
    env.spawn(cmd)
}

#[test]
fn systemd_hears_ready_only_once_the_files_exist_then_status_watchdog_reload_stop() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync
        .push_str("interval = \"1h\"\nmax_backoff = \"2s\"\n");
    // The first round fails: no file, so no READY=1 yet.
    env.standin.push_fault(FaultRule {
        instance: Some("inst-a".into()),
        category: None,
        fault: Fault::ApiStatus {
            status: 503,
            body: "{}".into(),
            retry_after: None,
        },
        times: Some(1),
    });
    let mut systemd = Systemd::new(env.dir.path());
    let mut d = daemon_with_env(
        &env,
        &[],
        &[
            ("NOTIFY_SOCKET", systemd.path.display().to_string()),
            ("WATCHDOG_USEC", "2000000".to_string()),
        ],
    );

    let status = systemd
        .wait_for("STATUS=", LIMIT)
        .unwrap_or_else(|| panic!("no STATUS=\n{}", d.log()));
    assert!(!status.contains("READY=1"), "{status}");
    assert!(status.contains("1 failing"), "{status}");
    assert!(!env.out("inst-a", "international").exists());

    let ready = systemd
        .wait_for("READY=1", LIMIT)
        .unwrap_or_else(|| panic!("no READY=1: {:?}\n{}", systemd.got, d.log()));
    // At the moment READY=1 arrives, both files are in place and current.
    for cat in ["international", "national"] {
        assert_eq!(
            fs::read(env.out("inst-a", cat)).unwrap(),
            env.served("inst-a", cat),
            "{cat}"
        );
    }
    assert!(
        ready.contains("STATUS=1 instance: 1 in sync, 0 failing"),
        "{ready}"
    );
    assert_eq!(systemd.count("READY=1"), 1);

    // WATCHDOG_USEC=2s: pings well within each second, although the next
    // sync is an hour away.
    let t = Instant::now();
    let before = systemd.count("WATCHDOG=1");
    while t.elapsed() < Duration::from_secs(3) {
        systemd.wait_for("WATCHDOG=1", Duration::from_secs(3));
    }
    let pings = systemd.count("WATCHDOG=1") - before;
    assert!(
        pings >= 3,
        "only {pings} WATCHDOG=1 in 3s: {:?}",
        systemd.got
    );

    // A reload is wrapped in RELOADING=1 ... READY=1.
    d.signal(Signal::SIGHUP);
    let reloading = systemd.wait_for("RELOADING=1", LIMIT).expect("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    systemd
        .wait_for("READY=1", LIMIT)
        .expect("READY=1 after the reload");

    // The hook never saw NOTIFY_SOCKET.
    let runs = env.hook_runs("inst-a");
    assert_eq!(runs.len(), 1);
    assert!(runs[0].contains("NOTIFY_SOCKET=\n"), "{}", runs[0]);

    d.signal(Signal::SIGTERM);
    assert!(systemd.wait_for("STOPPING=1", LIMIT).is_some());
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0), "{}", d.log());
}

#[test]
fn endpoints_and_every_metric() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync
        .push_str("interval = \"1h\"\nmax_backoff = \"2s\"\nexpiry_warning = \"36500d\"\n");
    // The first call is slow, so /readyz is seen at 503 (no file yet) first.
    env.standin.push_fault(FaultRule {
        instance: Some("inst-a".into()),
        category: None,
        fault: Fault::ApiDelay(Duration::from_millis(1500)),
        times: Some(1),
    });
    env.instances.push(ANY_PORT.into());
    let d = env.daemon(&[]);
    let port = d.listen_addr(1).port();

    let (code, body) = get(port, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("inst-a-international.crt is missing"),
        "{body}"
    );
    assert_eq!(get(port, "/healthz"), (200, "ok\n".to_string()));

    assert!(
        wait_until(LIMIT, || get(port, "/readyz").0 == 200),
        "{}",
        d.log()
    );
    assert_eq!(get(port, "/readyz").1, "ready\n");
    assert_eq!(get(port, "/nope").0, 404);
    assert_eq!(http(port, "POST", "/metrics").map(|r| r.0), Some(405));

    // Readiness follows the disk; the round (hook included) ends a bit later.
    // (Every counter is there from the start, at 0: wait for the value.)
    assert!(wait_until(LIMIT, || metric(
        &get(port, "/metrics").1,
        "dds_certsync_hook_runs_total{instance=\"inst-a\",service=\"dds\",result=\"ok\"}"
    ) == Some(1.0)));
    let (code, m) = get(port, "/metrics");
    assert_eq!(code, 200);
    let not_after = |cat: &str| {
        dds_certsync::certcheck::verify(&env.served("inst-a", cat), std::time::SystemTime::now())
            .unwrap()
            .not_after() as f64
    };
    for cat in ["international", "national"] {
        let labels = format!("{{instance=\"inst-a\",service=\"dds\",category=\"{cat}\"}}");
        assert_eq!(
            metric(
                &m,
                &format!("dds_certsync_cert_not_after_timestamp_seconds{labels}")
            ),
            Some(not_after(cat)),
            "{m}"
        );
        assert_eq!(
            metric(&m, &format!("dds_certsync_cert_changes_total{labels}")),
            Some(1.0),
            "{m}"
        );
        // expiry_warning is 100 years: every certificate is "expiring".
        assert_eq!(
            metric(&m, &format!("dds_certsync_cert_expiring{labels}")),
            Some(1.0),
            "{m}"
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    let last = metric(
        &m,
        "dds_certsync_last_success_timestamp_seconds{instance=\"inst-a\",service=\"dds\"}",
    )
    .expect("last success");
    assert!((now - last).abs() < 60.0, "{last} vs {now}");
    assert_eq!(
        metric(
            &m,
            "dds_certsync_hook_runs_total{instance=\"inst-a\",service=\"dds\",result=\"ok\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "dds_certsync_api_requests_total{code=\"200\"}"),
        Some(1.0),
        "{m}"
    );
    assert!(
        d.log().contains("expires within sync.expiry_warning"),
        "{}",
        d.log()
    );

    // Now every poll fails: errors are counted, readiness stays (the files
    // are still good), liveness too.
    env.standin.push_fault(FaultRule::always(Fault::ApiStatus {
        status: 429,
        body: "{\"error_code\":\"APIGW.0308\",\"error_msg\":\"throttled\"}".into(),
        retry_after: None,
    }));
    d.signal(Signal::SIGHUP);
    assert!(
        wait_until(LIMIT, || {
            let m = get(port, "/metrics").1;
            metric(&m, "dds_certsync_api_requests_total{code=\"429\"}").is_some()
                && metric(
                    &m,
                    "dds_certsync_sync_errors_total{instance=\"inst-a\",service=\"dds\",reason=\"api_throttled\"}",
                )
                .is_some_and(|n| n >= 1.0)
        }),
        "{}\n{}",
        get(port, "/metrics").1,
        d.log()
    );
    assert_eq!(get(port, "/readyz").0, 200);
    assert_eq!(get(port, "/healthz").0, 200);
}

/// The API client reports its answers to the daemon's metrics; a reload
/// that builds a new client (here: a new `sync.timeout`) keeps reporting.
#[test]
fn api_answers_are_counted_by_a_client_a_reload_rebuilt() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1h\"\n");
    env.instances.push(ANY_PORT.into());
    let d = env.daemon(&[]);
    let port = d.listen_addr(1).port();
    let ok = "dds_certsync_api_requests_total{code=\"200\"}";
    assert!(
        wait_until(LIMIT, || metric(&get(port, "/metrics").1, ok) == Some(1.0)),
        "{}\n{}",
        get(port, "/metrics").1,
        d.log()
    );

    env.sync.push_str("timeout = \"6s\"\n");
    let tmp = env.path("config.toml.new");
    fs::write(&tmp, env.config_text()).unwrap();
    fs::rename(&tmp, env.path("config.toml")).unwrap();
    d.wait_log("config reloaded", 1, PROMPT);
    assert!(
        wait_until(LIMIT, || metric(&get(port, "/metrics").1, ok) == Some(2.0)),
        "{}\n{}",
        get(port, "/metrics").1,
        d.log()
    );
    assert_eq!(api_calls(&env, "inst-a"), 2);
}

#[test]
fn an_instance_added_by_renaming_the_config_is_synced_before_the_sweep() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1h\"\n");
    let d = env.daemon(&[]);
    env.wait_hook_runs(&d, "inst-a", 1);
    let calls_a = api_calls(&env, "inst-a");

    // A broken config, saved by rename: refused, naming the key; still running.
    let tmp = env.path("config.toml.new");
    fs::write(
        &tmp,
        env.config_text().replace("[sync]", "[sync]\nbogus = 1"),
    )
    .unwrap();
    fs::rename(&tmp, env.path("config.toml")).unwrap();
    d.wait_log("reload refused", 1, PROMPT);
    assert!(d.log().contains("sync.bogus"), "{}", d.log());

    env.instance("inst-new");
    let t = Instant::now();
    fs::write(&tmp, env.config_text()).unwrap();
    fs::rename(&tmp, env.path("config.toml")).unwrap();
    assert!(
        wait_until(PROMPT, || env.hook_runs("inst-new").len() == 1),
        "not synced within {PROMPT:?}\n{}",
        d.log()
    );
    eprintln!("added instance synced {:?} after the rename", t.elapsed());
    assert!(d.log().contains("added inst-new"), "{}", d.log());
    // Only the new instance was synced; inst-a keeps its hourly schedule.
    assert_eq!(api_calls(&env, "inst-a"), calls_a);
}

#[test]
fn a_configmap_symlink_swap_is_applied() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1h\"\n");
    // config.toml -> ..data/config.toml, ..data -> ..v1, as the kubelet lays it out.
    let dir = env.dir.path().to_path_buf();
    fs::create_dir(dir.join("..v1")).unwrap();
    fs::write(dir.join("..v1/config.toml"), env.config_text()).unwrap();
    std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/config.toml", dir.join("config.toml")).unwrap();
    let mut d = env.spawn(env.command(&[]));
    env.wait_hook_runs(&d, "inst-a", 1);

    env.instance("inst-b");
    fs::create_dir(dir.join("..v2")).unwrap();
    fs::write(dir.join("..v2/config.toml"), env.config_text()).unwrap();
    std::os::unix::fs::symlink("..v2", dir.join("..data_tmp")).unwrap();
    fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    fs::remove_dir_all(dir.join("..v1")).unwrap();
    assert!(
        wait_until(PROMPT, || env.hook_runs("inst-b").len() == 1),
        "{}",
        d.log()
    );
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0), "{}", d.log());
}

#[test]
fn deleted_or_modified_outputs_are_restored_without_an_api_call() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1h\"\n");
    env.instances.push(ANY_PORT.into());
    let d = env.daemon(&[]);
    let port = d.listen_addr(1).port();
    env.wait_hook_runs(&d, "inst-a", 1);
    let calls = env.standin.requests().len();
    let natl = env.out("inst-a", "national");
    let intl = env.out("inst-a", "international");
    let good = fs::read(&natl).unwrap();

    fs::remove_file(&natl).unwrap();
    let t = Instant::now();
    assert!(
        wait_until(PROMPT, || fs::read(&natl).ok().as_ref() == Some(&good)),
        "not restored within {PROMPT:?}\n{}",
        d.log()
    );
    eprintln!("deleted output restored after {:?}", t.elapsed());
    d.wait_log("restored: the file was deleted", 1, LIMIT);

    // Changed in place: restored too.
    fs::write(
        &intl,
        b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let want = env.served("inst-a", "international");
    assert!(
        wait_until(PROMPT, || fs::read(&intl).unwrap_or_default() == want),
        "{}",
        d.log()
    );
    d.wait_log("restored: the file was changed by someone else", 1, LIMIT);

    // Neither needed the cloud, nor ran the hook again.
    assert_eq!(env.standin.requests().len(), calls);
    assert_eq!(env.hook_runs("inst-a").len(), 1);
    // And our own writes did not trigger restores of their own.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.log().matches("restored:").count(), 2, "{}", d.log());
    let m = get(port, "/metrics").1;
    for cat in ["international", "national"] {
        let series = format!(
            "dds_certsync_restores_total{{instance=\"inst-a\",service=\"dds\",category=\"{cat}\"}}"
        );
        assert_eq!(metric(&m, &series), Some(1.0), "{m}");
    }
}

#[test]
fn a_reload_moves_the_endpoints() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1h\"\n");
    env.instances.push(ANY_PORT.into());
    let d = env.daemon(&[]);
    let old = d.listen_addr(1).port();
    assert_eq!(get(old, "/healthz").0, 200);

    // Another loopback address, so the reload sees a new `listen`.
    let text = env.config_text().replace("127.0.0.1:0", "127.0.0.2:0");
    let tmp = env.path("config.toml.new");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, env.path("config.toml")).unwrap();
    let new = d.listen_addr(2);
    assert_eq!(new.ip().to_string(), "127.0.0.2", "{}", d.log());
    assert!(
        wait_until(PROMPT, || http_at(new, "GET", "/healthz")
            .is_some_and(|r| r.0 == 200)),
        "{}",
        d.log()
    );
    assert!(d.log().contains("new server.listen"), "{}", d.log());
    assert!(
        wait_until(PROMPT, || http(old, "GET", "/healthz").is_none()),
        "the old address still answers"
    );
}

#[test]
fn a_dry_run_daemon_writes_nothing() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1s\"\njitter = \"0s\"\n");
    let mut d = env.daemon(&["--dry-run"]);
    d.wait_log("would replace (dry run)", 4, LIMIT);
    assert!(
        ls(&env.path("out")).is_empty(),
        "{:?}",
        ls(&env.path("out"))
    );
    assert!(env.hook_runs("inst-a").is_empty());
    assert_eq!(
        ls(&env.path("state")),
        Vec::<String>::new(),
        "a dry run records no owed hook"
    );
    let names = ls(env.dir.path());
    assert!(
        names.iter().all(|n| !n.contains("dds-certsync-")),
        "{names:?}"
    );
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0), "{}", d.log());
}

#[test]
fn an_unusable_listen_address_is_a_config_error() {
    let mut env = Env::new();
    env.instance("inst-a");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    env.instances
        .push(format!("\n[server]\nlisten = \"127.0.0.1:{port}\"\n"));
    let mut d = env.daemon(&[]);
    assert_eq!(d.wait_exit(LIMIT), Some(2), "{}", d.log());
    assert!(d.log().contains("server.listen"), "{}", d.log());
    assert!(env.standin.requests().is_empty());
}
