//! Small helpers shared by the integration tests: a stand-in plus a scratch
//! directory, config writing, running the binary (as root or as `nobody`),
//! waiting for hook runs, reading the outputs, scanning output for secrets,
//! the daemon's bound listen address, and [`skip`], the one honest way for a
//! test to give up (see docs/testing.md, "Skips").

#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use dds_standin::{Fault, FaultRule, Listener, StandIn};

pub mod jdk;

pub const BIN: &str = env!("CARGO_BIN_EXE_dds-certsync");
pub const PROJECT: &str = "0a1b2c3d4e5f";
/// The categories [`Env::instance`] writes, in the order of [`Env::outputs`].
pub const CATEGORIES: [&str; 2] = ["international", "national"];
/// How long a process-level wait polls before it fails: generous, for a
/// loaded two-core machine running debug builds.
pub const WAIT: Duration = Duration::from_secs(30);

/// A stand-in, a scratch directory and a config file in it.
pub struct Env {
    pub standin: StandIn,
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    /// Extra `[sync]` lines.
    pub sync: String,
    /// Extra `[cloud]` lines.
    pub cloud: String,
    /// The `[auth]` section body.
    pub auth: String,
    pub instances: Vec<String>,
    /// Whether `[cloud]` names the stand-in's CA as `ca_file` (the default);
    /// without it the stand-in is trusted only through the system's roots.
    pub with_ca_file: bool,
}

/// Puts SIGHUP back to its default action in the test process, once, so that
/// every process a test starts (the apps that trap or die of a reload signal)
/// inherits the default. A runner started under `nohup` ignores SIGHUP, an
/// ignored signal stays ignored across `exec`, and `sh` cannot trap a signal
/// that was ignored on entry: the reload-signal tests would then fail for a
/// reason that has nothing to do with the daemon.
fn default_hangup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use nix::sys::signal::{SigHandler, Signal, signal};
        // SAFETY: installs the default action, no handler code runs.
        unsafe { signal(Signal::SIGHUP, SigHandler::SigDfl) }.expect("reset SIGHUP");
    });
}

impl Env {
    pub fn new() -> Env {
        default_hangup();
        let standin = StandIn::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("standin-ca.pem");
        standin.write_ca(&ca).expect("write CA");
        let auth = format!("method = \"token\"\ntoken = \"{}\"\n", standin.token());
        Env {
            standin,
            dir,
            ca,
            sync: String::new(),
            cloud: String::new(),
            auth,
            instances: Vec::new(),
            with_ca_file: true,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Registers an instance with the stand-in and the config, writing both
    /// categories to `out/{id}-{category}.crt`, with a hook recording its
    /// environment into `hook/{id}.{n}.env`.
    pub fn instance(&mut self, id: &str) -> &mut Env {
        self.standin.add_instance(PROJECT, id);
        self.instances.push(format!(
            r#"
[[instances]]
id = "{id}"
name = "name-{id}"
international = "out/{id}-international.crt"
national = "out/{id}-national.crt"
on_change = ["/bin/sh", "{hook}"]
hook_timeout = "10s"
"#,
            hook = self.record_hook().display()
        ));
        self
    }

    /// A hook script that records the variables it was given, one file per run.
    pub fn record_hook(&self) -> PathBuf {
        let dir = self.path("hook");
        fs::create_dir_all(&dir).unwrap();
        let script = self.path("record-hook.sh");
        fs::write(
            &script,
            format!(
                r#"dir="{dir}"
n=$(ls "$dir" | grep -c "^$DDS_CERTSYNC_INSTANCE_ID\.")
printf 'DDS_CERTSYNC_INSTANCE_ID=%s\nDDS_CERTSYNC_INSTANCE_NAME=%s\nDDS_CERTSYNC_CHANGED=%s\nDDS_CERTSYNC_OLD_SHA256=%s\nDDS_CERTSYNC_NEW_SHA256=%s\nNOTIFY_SOCKET=%s\n' \
  "$DDS_CERTSYNC_INSTANCE_ID" "$DDS_CERTSYNC_INSTANCE_NAME" "$DDS_CERTSYNC_CHANGED" \
  "$DDS_CERTSYNC_OLD_SHA256" "$DDS_CERTSYNC_NEW_SHA256" "${{NOTIFY_SOCKET:-}}" > "$dir/$DDS_CERTSYNC_INSTANCE_ID.$n.env.tmp"
mv "$dir/$DDS_CERTSYNC_INSTANCE_ID.$n.env.tmp" "$dir/$DDS_CERTSYNC_INSTANCE_ID.$n.env"
"#,
                dir = dir.display()
            ),
        )
        .unwrap();
        script
    }

    /// Adds a raw `[[instances]]` block.
    pub fn raw_instance(&mut self, block: &str) -> &mut Env {
        self.instances.push(format!("\n[[instances]]\n{block}\n"));
        self
    }

    pub fn config_text(&self) -> String {
        format!(
            "[cloud]\nendpoint = \"{api}\"\nproject_id = \"{PROJECT}\"\n{ca}{cloud}\n[auth]\n{auth}\n[sync]\n{timeout}{state}{keep}{sync}\n{inst}",
            api = self.standin.api_url(),
            ca = if self.with_ca_file {
                format!("ca_file = \"{}\"\n", self.ca.display())
            } else {
                String::new()
            },
            cloud = self.cloud,
            auth = self.auth,
            sync = self.sync,
            timeout = if self.sync.contains("timeout") {
                ""
            } else {
                "timeout = \"5s\"\n"
            },
            inst = self.instances.concat(),
            // A file holds exactly what is served unless a test asks for
            // kept certificates (`keep_previous`, tests/it/overlap.rs).
            keep = if self.sync.contains("keep_previous") {
                ""
            } else {
                "keep_previous = \"0s\"\n"
            },
            state = if self.sync.contains("state_dir") {
                String::new()
            } else {
                format!("state_dir = \"{}\"\n", self.path("state").display())
            },
        )
    }

    pub fn write_config(&self) -> PathBuf {
        let p = self.path("config.toml");
        fs::write(&p, self.config_text()).unwrap();
        p
    }

    pub fn out(&self, id: &str, category: &str) -> PathBuf {
        self.path(&format!("out/{id}-{category}.crt"))
    }

    /// The hook runs recorded for an instance, oldest first.
    pub fn hook_runs(&self, id: &str) -> Vec<String> {
        let mut runs: Vec<(usize, String)> = fs::read_dir(self.path("hook"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let n = name
                            .strip_prefix(&format!("{id}."))?
                            .strip_suffix(".env")?
                            .parse()
                            .ok()?;
                        Some((n, fs::read_to_string(e.path()).ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        runs.sort();
        runs.into_iter().map(|(_, s)| s).collect()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config").arg(self.path("config.toml")).args(args);
        self.sanitize(&mut c);
        c
    }

    /// The binary run as `nobody` (uid and gid 65534, no supplementary
    /// groups) through `setpriv`, with the same clean environment as
    /// [`Env::command`]. Check [`can_drop_privileges`] first.
    pub fn command_as_nobody(&self, args: &[&str]) -> Command {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            BIN,
            "--config",
        ])
        .arg(self.path("config.toml"))
        .args(args);
        self.sanitize(&mut c);
        c
    }

    /// No variable of the caller's that would change what the binary does.
    fn sanitize(&self, c: &mut Command) {
        c.env_remove("RUST_LOG")
            .env_remove("DDS_CERTSYNC_CONFIG")
            .env_remove("DDS_CERTSYNC_LOG_FORMAT")
            .env_remove("DDS_CERTSYNC_CRASH_AT")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .current_dir(self.dir.path());
    }

    /// Starts `cmd` as a daemon, its stderr going to `daemon.log`. The one
    /// way every test starts a long-running process of the binary.
    pub fn spawn(&self, mut cmd: Command) -> Daemon {
        let log = self.path("daemon.log");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start daemon");
        Daemon { child, log }
    }

    /// Both output files of an instance added with [`Env::instance`], as
    /// they are now (panics if one is missing).
    pub fn outputs(&self, id: &str) -> Vec<Vec<u8>> {
        CATEGORIES
            .iter()
            .map(|c| {
                let p = self.out(id, c);
                fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            })
            .collect()
    }

    /// What [`Env::outputs`] must be once the instance is in sync.
    pub fn served_all(&self, id: &str) -> Vec<Vec<u8>> {
        CATEGORIES.iter().map(|c| self.served(id, c)).collect()
    }

    /// Waits until the instance's hook ran exactly `n` times (with exit 0),
    /// failing with the daemon's log if it does not within [`WAIT`].
    pub fn wait_hook_runs(&self, d: &Daemon, id: &str, n: usize) {
        let ok = wait_until(WAIT, || self.hook_runs(id).len() == n);
        assert!(
            ok,
            "{id}: expected {n} hook runs, saw {}\n{}",
            self.hook_runs(id).len(),
            d.log()
        );
    }

    /// Writes the config and runs `--once`.
    pub fn once(&self, extra: &[&str]) -> Run {
        self.write_config();
        let mut args = vec!["--once"];
        args.extend_from_slice(extra);
        Run::from(self.command(&args).output().expect("run binary"))
    }

    /// Writes the config and runs `--once` with a crash point (see the
    /// binary's `failpoint` module); it must die by the abort there.
    pub fn once_crashing_at(&self, point: &str) -> Run {
        self.write_config();
        let run = Run::from(
            self.command(&["--once"])
                .env("DDS_CERTSYNC_CRASH_AT", point)
                .output()
                .expect("run binary"),
        );
        assert_eq!(run.code, -1, "expected a crash at {point}\n{}", run.all());
        let name = point.split(':').next().unwrap_or(point);
        assert!(
            run.stderr.contains(&format!("failpoint {name}")),
            "{}",
            run.all()
        );
        run
    }

    /// Writes the config and starts the daemon.
    pub fn daemon(&self, extra: &[&str]) -> Daemon {
        self.write_config();
        self.spawn(self.command(extra))
    }

    /// Writes the config and starts the daemon under `strace` with
    /// `strace_args` before the binary, in a process group of its own so
    /// that dropping the [`Daemon`] kills the traced daemon too (strace
    /// detaches rather than kills its tracee when killed).
    pub fn daemon_under_strace(&self, strace_args: &[&OsStr]) -> Daemon {
        self.write_config();
        let mut c = Command::new("strace");
        c.args(strace_args)
            .arg(BIN)
            .arg("--config")
            .arg(self.path("config.toml"));
        self.sanitize(&mut c);
        c.process_group(0);
        self.spawn(c)
    }

    /// The expected file content for what the stand-in serves now.
    pub fn served(&self, id: &str, category: &str) -> Vec<u8> {
        canonical(self.standin.cert_pem(id, category).as_bytes())
    }
}

/// What a run printed and how it ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn all(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }

    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "unexpected exit status\n{}", self.all());
        self
    }
}

/// A daemon process, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits until the log contains `needle` `count` times.
    pub fn wait_log(&self, needle: &str, count: usize, limit: Duration) {
        let ok = wait_until(limit, || self.log().matches(needle).count() >= count);
        assert!(ok, "log never showed {needle:?} x{count}\n{}", self.log());
    }

    /// The address the `n`-th (1-based) start of the HTTP endpoints bound,
    /// read from the daemon's log. Configure `listen = "127.0.0.1:0"` and
    /// let the kernel pick the port: no port can be lost between a check
    /// and the bind.
    pub fn listen_addr(&self, n: usize) -> std::net::SocketAddr {
        const LINE: &str = "serving /healthz, /readyz and /metrics";
        self.wait_log(LINE, n, WAIT);
        let log = self.log();
        let line = log.lines().filter(|l| l.contains(LINE)).nth(n - 1).unwrap();
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("listen="))
            .unwrap_or_else(|| panic!("no listen= in {line:?}"));
        addr.parse()
            .unwrap_or_else(|e| panic!("{addr:?} in {line:?}: {e}"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A daemon started under a wrapper in its own process group (strace,
        // which detaches rather than kills its tracee when killed) goes with
        // the group; for a plain child there is no such group and this fails
        // harmlessly.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The canonical form dds-certsync writes for a PEM body.
pub fn canonical(pem: &[u8]) -> Vec<u8> {
    dds_certsync::certcheck::verify(pem, std::time::SystemTime::now())
        .expect("stand-in serves a valid certificate")
        .pem
}

/// (inode, mtime in ns) of a file.
pub fn stamp(p: &Path) -> (u64, i64) {
    let m = fs::metadata(p).unwrap();
    (m.ino(), m.mtime() * 1_000_000_000 + m.mtime_nsec())
}

/// The names in a directory, sorted.
pub fn ls(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Replaces the config file the way an editor or `mv` does (write a temp,
/// rename over), so a reader never sees half a file.
pub fn replace_config(env: &Env) {
    let p = env.path("config.toml");
    let tmp = env.path(".config.toml.new");
    fs::write(&tmp, env.config_text()).unwrap();
    fs::rename(&tmp, &p).unwrap();
}

/// The DDS API requests the stand-in saw for an instance.
pub fn api_requests(env: &Env, id: &str) -> Vec<dds_standin::Recorded> {
    env.standin
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Api && r.path.contains(&format!("/instances/{id}/")))
        .collect()
}

/// Panics if any of `secrets` occurs in `text`, naming which (by length,
/// never by value) and where.
pub fn assert_no_secret(what: &str, text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!s.is_empty(), "{what}: an empty secret matches everything");
        assert!(
            !text.contains(s.as_str()),
            "{what}: a secret leaked ({} chars):\n{text}",
            s.len()
        );
    }
}

/// Whether this process may run a program as `nobody` with `setpriv`:
/// `Err` says why not (no `setpriv`, or no privilege to switch users).
pub fn can_drop_privileges() -> Result<(), String> {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "/bin/sh",
            "-c",
            "test \"$(id -u)\" = 65534",
        ])
        .output()
        .map_err(|e| format!("cannot run setpriv: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cannot drop privileges to nobody: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The environment variable that lets a developer accept skips.
pub const ALLOW_SKIPS: &str = "DDS_CERTSYNC_ALLOW_SKIPS";

/// Gives up on a test whose setting cannot be made here (no mount, no
/// `setpriv`). A skip is not a pass, so by default it is a failure and shows
/// in the test summary with its reason. It is always a failure in CI
/// (`CI=true`) and as root, where every setting can be made. Elsewhere
/// `DDS_CERTSYNC_ALLOW_SKIPS=1` accepts it: the test returns, and the skip is
/// printed and recorded in `target/tmp/skipped-tests/` (one file per test;
/// `cat target/tmp/skipped-tests/*` lists them). See docs/testing.md.
///
/// Call as `return skip(TEST, reason)`.
pub fn skip(test: &str, reason: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let root = nix::unistd::geteuid().is_root();
    let allowed = std::env::var(ALLOW_SKIPS).is_ok_and(|v| v == "1");
    if ci || root || !allowed {
        let why = if ci {
            "skips are failures in CI (CI=true)".to_string()
        } else if root {
            "skips are failures as root, where the setting can be made".to_string()
        } else {
            format!("skips are failures unless {ALLOW_SKIPS}=1")
        };
        panic!("SKIPPED {test}: {reason}\n({why})");
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests");
    let _ = fs::create_dir_all(&dir);
    let _ = fs::write(dir.join(test), format!("SKIPPED {test}: {reason}\n"));
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}

/// One HTTP/1.1 request on a fresh connection to the daemon's server, with
/// `limit` for each of connect, write and read: (status, body), or `None` if
/// no full answer came.
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    limit: Duration,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, limit).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    s.set_write_timeout(Some(limit)).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n").map(|x| x.1)?.to_string();
    Some((status, body))
}

/// A loopback port where nothing listens, and nothing will while this
/// lives: the socket is bound but never listens, so a connection is
/// refused at once and no other test can take the port (a port bound and
/// closed again, by contrast, may be a stand-in's a moment later).
pub struct DeadPort {
    _held: tokio::net::TcpSocket,
    pub addr: std::net::SocketAddr,
}

pub fn dead_port() -> DeadPort {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(local(0)).expect("bind 127.0.0.1:0");
    let addr = socket.local_addr().expect("bound address");
    DeadPort {
        _held: socket,
        addr,
    }
}

/// The loopback port process `pid` listens on, found through `/proc` (its
/// socket inodes, then `/proc/net/tcp`): for a daemon whose log cannot be
/// read, where [`Daemon::listen_addr`] cannot look.
pub fn listening_port(pid: u32, limit: Duration) -> u16 {
    let inodes = || -> Vec<String> {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| fs::read_link(e.path()).ok())
            .filter_map(|l| {
                let l = l.to_string_lossy().into_owned();
                Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
            })
            .collect()
    };
    let mut port = None;
    let found = wait_until(limit, || {
        let ours = inodes();
        let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        // sl local_address rem_address st ... uid timeout inode
        port = table.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let listening =
                f.get(3) == Some(&"0A") && ours.iter().any(|i| f.get(9) == Some(&i.as_str()));
            let (_, hex) = f.get(1)?.split_once(':')?;
            listening
                .then(|| u16::from_str_radix(hex, 16).ok())
                .flatten()
        });
        port.is_some()
    });
    assert!(found, "process {pid} listens on no TCP port");
    port.unwrap()
}

/// The loopback address with `port`.
pub fn local(port: u16) -> std::net::SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// The durations logged after `marker` (e.g. `"retrying in "`) on the lines
/// `keep` accepts, in order: the duration's words up to the first
/// `key=value` field.
pub fn logged_durations(log: &str, marker: &str, keep: impl Fn(&str) -> bool) -> Vec<Duration> {
    log.lines()
        .filter(|l| keep(l))
        .filter_map(|l| l.split_once(marker).map(|x| x.1))
        .map(|rest| {
            let d: Vec<&str> = rest
                .split_whitespace()
                .take_while(|w| !w.contains('='))
                .collect();
            let d = d.join(" ");
            humantime::parse_duration(&d).unwrap_or_else(|e| panic!("{d:?}: {e}"))
        })
        .collect()
}

/// Whether `strace` can be run; if not, a [`skip`] of `test` (a failure in CI
/// and as root, where `.ci/run` installs it).
pub fn strace_available(test: &str) -> bool {
    let ok = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip(
            test,
            "strace is not installed (apt-get install strace; .ci/run installs it)",
        );
    }
    ok
}
