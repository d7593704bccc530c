//! `dds-demo`: dds-certsync end to end, with no cloud account.
//!
//! Starts the stand-in, writes a config for two instances into `demo-out/`,
//! runs `dds-certsync --once`, then starts the daemon and plays a CA rotation
//! of one instance ("link first": the download link serves the new CA before
//! the instance's nodes present it) under a client that reconnects to the
//! instance's TLS listener every 20 ms, reading the CA file for each
//! connection as a MongoDB driver does. It shows the reload hook firing for
//! that instance only, prints "N connections, 0 failed", and stops the
//! daemon with SIGTERM. Exits 0 when everything happened as it should,
//! within a minute.
//!
//! Run it with `./demo.sh` from the repository root (which builds both
//! binaries first). The daemon binary is found next to this one, or at
//! `$DDS_CERTSYNC_BIN`.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dds_standin::StandIn;

const PROJECT: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const ORDERS: &str = "e73893ef73754465a8bd2e0857bbf13ein02";
const BILLING: &str = "5b8c2f0e4d1a4c7e9f3b6a2d8e0c1f4ain02";
const LIMIT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    match run() {
        Ok(()) => {
            println!("\ndemo finished: all steps succeeded");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\ndemo FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn step(text: &str) {
    println!("\n==> {text}");
}

fn run() -> Result<(), String> {
    let bin = daemon_binary()?;
    let out = PathBuf::from("demo-out");
    if out.exists() {
        fs::remove_dir_all(&out).map_err(|e| format!("cannot clean {}: {e}", out.display()))?;
    }
    fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let out = fs::canonicalize(&out).map_err(|e| e.to_string())?;

    step("starting the local stand-in of DDS (HTTPS API + download host, own CA)");
    let standin = StandIn::start();
    standin.add_instance(PROJECT, ORDERS);
    standin.add_instance(PROJECT, BILLING);
    standin
        .write_ca(&out.join("standin-ca.pem"))
        .map_err(|e| e.to_string())?;
    println!("    API:           {}", standin.api_url());
    println!("    download host: {}", standin.download_host());

    let hook_log = out.join("hook.log");
    let config = out.join("config.toml");
    fs::write(&config, config_text(&standin, &out, &hook_log)).map_err(|e| e.to_string())?;
    println!("    config:        {}", config.display());

    step("dds-certsync --check");
    let check = Command::new(&bin)
        .args(["--check", "--config"])
        .arg(&config)
        .status()
        .map_err(|e| e.to_string())?;
    expect(check.code() == Some(0), "--check exits 0")?;

    step("dds-certsync --once: first sync of both instances, both categories");
    let once = Command::new(&bin)
        .args(["--once", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .status()
        .map_err(|e| e.to_string())?;
    expect(once.code() == Some(0), "--once exits 0")?;
    list(&out.join("tls"))?;

    step("dds-certsync --once again: nothing changed upstream, so nothing is written");
    let before = fs::read_to_string(&hook_log).unwrap_or_default();
    let again = Command::new(&bin)
        .args(["--once", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .status()
        .map_err(|e| e.to_string())?;
    expect(again.code() == Some(0), "second --once exits 0")?;
    expect(
        fs::read_to_string(&hook_log).unwrap_or_default() == before,
        "no hook ran for unchanged files",
    )?;

    step("starting the daemon (interval 2s); its log follows, prefixed with |");
    let mut daemon = Daemon::start(&bin, &config)?;
    wait_for(
        || daemon.log_contains("unchanged"),
        "the daemon's first round",
    )?;

    let ca_file = out.join("tls/orders-ca.crt");
    step("a client connects to the nodes of 'orders' every 20 ms, reading orders-ca.crt each time");
    let client = ClientLoop::start(standin.instance_addr(ORDERS), ca_file.clone());
    wait_for(
        || client.connections() >= 10,
        "the client's first connections",
    )?;
    println!("    node: {}", standin.instance_addr(ORDERS));

    step(
        "CA rotation, link first: the link serves a new CA for 'orders'; its nodes keep the old one",
    );
    standin.rotate(ORDERS, "international");
    wait_for(
        || {
            fs::read_to_string(&hook_log)
                .unwrap_or_default()
                .lines()
                .count()
                > before.lines().count()
        },
        "the hook to fire",
    )?;
    let fired = fs::read_to_string(&hook_log).unwrap_or_default();
    let new_lines: Vec<&str> = fired.lines().skip(before.lines().count()).collect();
    println!("    hook.log gained:");
    for l in &new_lines {
        println!("      {l}");
    }
    expect(
        new_lines.len() == 1
            && new_lines[0].contains("orders")
            && new_lines[0].contains("orders-ca.crt"),
        "exactly one hook run, for 'orders', naming the changed file",
    )?;
    list(&out.join("tls"))?;
    println!("    orders-ca.crt holds the new CA, then the previous one (keep_previous, 30 days)");
    std::thread::sleep(Duration::from_secs(1));

    step("the nodes of 'orders' switch to the new CA");
    standin.server_follow_link(ORDERS);
    std::thread::sleep(Duration::from_secs(1));
    let (connections, failed) = client.stop();
    println!("    {connections} connections, {} failed", failed.len());
    for f in failed.iter().take(3) {
        println!("      {f}");
    }
    expect(
        failed.is_empty() && connections > 50,
        "no connection failed through the rotation",
    )?;

    step("stopping the daemon with SIGTERM");
    let code = daemon.terminate()?;
    expect(code == Some(0), "the daemon exits 0 on SIGTERM")?;
    list(&out.join("tls"))?;
    println!("\n    Files, config and logs are in {}", out.display());
    Ok(())
}

/// A client like a MongoDB driver: a new TLS connection every 20 ms, the
/// CA file read for each one (rustls, verifying the chain to the file's
/// certificates).
struct ClientLoop {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
    thread: JoinHandle<Vec<String>>,
}

impl ClientLoop {
    fn start(addr: SocketAddr, ca_file: PathBuf) -> ClientLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let (flag, n) = (Arc::clone(&stop), Arc::clone(&count));
        let thread = std::thread::spawn(move || {
            let mut failed = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Err(e) = handshake(addr, &ca_file) {
                    failed.push(e);
                }
                n.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
            failed
        });
        ClientLoop {
            stop,
            count,
            thread,
        }
    }

    fn connections(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Connections made, and the failures.
    fn stop(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failed = self
            .thread
            .join()
            .unwrap_or_else(|_| vec!["the client thread panicked".into()]);
        (self.count.load(Ordering::Relaxed), failed)
    }
}

/// One TLS handshake to `addr`, trusting exactly the certificates in the file.
fn handshake(addr: SocketAddr, ca_file: &Path) -> Result<(), String> {
    let pem = fs::read(ca_file).map_err(|e| format!("{}: {e}", ca_file.display()))?;
    dds_standin::tls_handshake(addr, &pem, b"", Duration::from_secs(2))
}

fn config_text(standin: &StandIn, out: &Path, hook_log: &Path) -> String {
    let hook = |name: &str| {
        format!(
            r#"["/bin/sh", "-c", "echo \"$(date +%T) reload {name}: $DDS_CERTSYNC_CHANGED\" | tr '\\n' ' ' >> {log}; echo >> {log}"]"#,
            log = hook_log.display()
        )
    };
    format!(
        r#"# Written by dds-demo: two instances against the local stand-in.
[cloud]
endpoint = "{api}"            # the stand-in, instead of https://dds.{{region}}.myhuaweicloud.com
project_id = "{PROJECT}"
ca_file = "{out}/standin-ca.pem" # the stand-in's own CA

[auth]
method = "token"
token = "{token}"

[sync]
interval = "2s"
jitter = "0s"
state_dir = "{out}/state"
probe_interval = "2s"         # how often the nodes' certificates are checked against the files

[[instances]]
id = "{ORDERS}"
name = "orders"
international = "{out}/tls/orders-ca.crt"
national = "{out}/tls/orders-ca-sm2.crt"
on_change = {orders_hook}
probe = ["{orders_node}"]     # the instance's nodes (here the stand-in's listener)

[[instances]]
id = "{BILLING}"
name = "billing"
international = "{out}/tls/billing-ca.crt"
on_change = {billing_hook}
"#,
        api = standin.api_url(),
        token = standin.token(),
        out = out.display(),
        orders_hook = hook("orders"),
        orders_node = standin.instance_addr(ORDERS),
        billing_hook = hook("billing"),
    )
}

fn daemon_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("DDS_CERTSYNC_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let sibling = me.with_file_name("dds-certsync");
    if sibling.exists() {
        Ok(sibling)
    } else {
        Err(format!(
            "{} not found; build it first (./demo.sh does: cargo build --workspace)",
            sibling.display()
        ))
    }
}

fn expect(cond: bool, what: &str) -> Result<(), String> {
    if cond {
        println!("    ok: {what}");
        Ok(())
    } else {
        Err(format!("expected: {what}"))
    }
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < LIMIT {
        if cond() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("timed out waiting for {what}"))
}

fn list(dir: &Path) -> Result<(), String> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let bytes = fs::read(e.path()).unwrap_or_default();
        let blocks = String::from_utf8_lossy(&bytes)
            .matches("BEGIN CERTIFICATE")
            .count();
        println!(
            "    {:<24} {:>5} bytes, {blocks} certificate(s)",
            e.file_name().to_string_lossy(),
            bytes.len()
        );
    }
    Ok(())
}

/// The daemon, with its stderr echoed and kept for inspection.
struct Daemon {
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    fn start(bin: &Path, config: &Path) -> Result<Daemon, String> {
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the daemon: {e}"))?;
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = std::sync::Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    println!("    | {line}");
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
        }
        Ok(Daemon { child, log })
    }

    fn log_contains(&self, needle: &str) -> bool {
        self.log.lock().map(|l| l.contains(needle)).unwrap_or(false)
    }

    fn terminate(&mut self) -> Result<Option<i32>, String> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .map_err(|e| e.to_string())?;
        let start = Instant::now();
        while start.elapsed() < LIMIT {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok(status.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("the daemon did not stop within 30 s of SIGTERM".into())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
