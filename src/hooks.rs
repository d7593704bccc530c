//! Reload hooks: running an instance's `on_change` command, or sending its
//! `reload_signal`, after its files changed, until it succeeds.
//!
//! Delivery ([`Delivery`]) is driven by the hook ledger ([`crate::ledger`]):
//! the sync step records a change before it renames the certificate, and
//! [`Delivery::deliver`] runs the hook for whatever the record says and
//! clears it only when the hook exited 0 (or the signal was sent). A failed
//! delivery is retried by [`retry_owed`] with exponential backoff and jitter,
//! without waiting for a new change; after a restart the first round of an
//! instance delivers what a previous process still owed. Per instance, one
//! lock serialises "record + rename" and "run + clear", so a hook never runs
//! for a record that a concurrent rename is about to extend.
//!
//! The command is an argv list run without a shell, in a process group of its
//! own, with stdin closed and these variables added to the daemon's
//! environment:
//!
//! | variable | value |
//! |---|---|
//! | `DDS_CERTSYNC_INSTANCE_ID` | the instance ID |
//! | `DDS_CERTSYNC_INSTANCE_NAME` | the configured name, else the ID |
//! | `DDS_CERTSYNC_CHANGED` | the changed paths, newline-separated |
//! | `DDS_CERTSYNC_OLD_SHA256` | their previous SHA-256, same order (empty for a new file) |
//! | `DDS_CERTSYNC_NEW_SHA256` | their new SHA-256, same order |
//!
//! `NOTIFY_SOCKET` is removed, so a hook can never speak to systemd in the
//! daemon's name. The hook's stdout and stderr are logged line by line. At the
//! timeout, or if the daemon stops while it runs, the whole process group is
//! killed. A failing hook is reported, never fatal.
//!
//! `reload_signal` + `pidfile` replace the command: the pidfile is read on
//! every delivery (never cached), and a missing or malformed pidfile or a
//! process that is gone counts as a failed delivery, retried like a failed
//! command.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use crate::certcheck::{Sha256Digest, hex};
use crate::config::{Instance, ReloadSignal};
use crate::ledger::{self, Ledger, Owed};

/// How many of the hook's last stderr lines an error report keeps.
const STDERR_TAIL: usize = 5;

/// One changed file, for the hook's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedFile {
    pub path: PathBuf,
    pub old: Option<Sha256Digest>,
    pub new: Sha256Digest,
}

/// What a hook is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCall {
    pub instance_id: String,
    pub instance_name: String,
    pub changed: Vec<ChangedFile>,
}

impl HookCall {
    /// The environment variables of the call.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let join = |f: &dyn Fn(&ChangedFile) -> String| {
            self.changed.iter().map(f).collect::<Vec<_>>().join("\n")
        };
        vec![
            ("DDS_CERTSYNC_INSTANCE_ID", self.instance_id.clone()),
            ("DDS_CERTSYNC_INSTANCE_NAME", self.instance_name.clone()),
            (
                "DDS_CERTSYNC_CHANGED",
                join(&|c| c.path.display().to_string()),
            ),
            (
                "DDS_CERTSYNC_OLD_SHA256",
                join(&|c| c.old.as_ref().map(hex).unwrap_or_default()),
            ),
            ("DDS_CERTSYNC_NEW_SHA256", join(&|c| hex(&c.new))),
        ]
    }
}

/// How a hook run ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error("cannot start {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("{program} {status}{}", tail(.stderr))]
    Failed {
        program: String,
        status: String,
        stderr: Vec<String>,
    },
    #[error("{program} did not finish within {timeout:?} and was killed with its process group")]
    TimedOut { program: String, timeout: Duration },
    #[error("cannot send {signal} to the process in {pidfile}: {reason}")]
    Signal {
        signal: String,
        pidfile: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Ledger(String),
}

fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; last stderr: {}", lines.join(" | "))
    }
}

/// Kills the hook's process group if the run is abandoned (daemon stopping).
struct GroupGuard {
    pgid: Option<Pid>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

/// Runs `argv` for `call`, waiting at most `timeout`.
pub async fn run(argv: &[String], timeout: Duration, call: &HookCall) -> Result<(), HookError> {
    let program = argv.first().cloned().unwrap_or_default();
    let mut cmd = Command::new(&program);
    cmd.args(&argv[1.min(argv.len())..])
        .env_remove("NOTIFY_SOCKET")
        .envs(call.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| HookError::Spawn {
        program: program.clone(),
        reason: e.to_string(),
    })?;
    let mut guard = GroupGuard {
        pgid: child.id().map(|p| Pid::from_raw(p as i32)),
    };
    let instance = call.instance_name.clone();
    let out = child
        .stdout
        .take()
        .map(|s| tokio::spawn(log_lines(s, instance.clone(), "stdout")));
    let err = child
        .stderr
        .take()
        .map(|s| tokio::spawn(log_lines(s, instance, "stderr")));

    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            return Err(HookError::Spawn {
                program,
                reason: e.to_string(),
            });
        }
        Err(_) => {
            drop(guard); // kills the whole group
            let _ = child.wait().await;
            return Err(HookError::TimedOut { program, timeout });
        }
    };
    // The leader is reaped; its group may live on (a daemon the hook started)
    // and must not be killed.
    guard.pgid = None;
    // Give the readers a moment to drain; a grandchild holding the pipes open
    // must not hold us.
    let drain = Duration::from_millis(500);
    if let Some(h) = out {
        let _ = tokio::time::timeout(drain, h).await;
    }
    let stderr = match err {
        Some(h) => tokio::time::timeout(drain, h)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    if status.success() {
        Ok(())
    } else {
        let status = match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(s)) => format!("was killed by signal {s}"),
            (None, None) => "failed".to_string(),
        };
        Err(HookError::Failed {
            program,
            status,
            stderr,
        })
    }
}

/// Sends the configured signal to the process named by the pidfile, which is
/// read now, not cached.
pub fn send_signal(r: &ReloadSignal) -> Result<(), HookError> {
    use std::io::Read;
    let fail = |reason: String| HookError::Signal {
        signal: r.signal.as_str().to_string(),
        pidfile: r.pidfile.clone(),
        reason,
    };
    let mut text = String::new();
    std::fs::File::open(&r.pidfile)
        .and_then(|f| f.take(64).read_to_string(&mut text))
        .map_err(|e| fail(format!("cannot read the pidfile: {e}")))?;
    let pid: i32 = text
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| fail(format!("{:?} is not a process ID", text.trim())))?;
    nix::sys::signal::kill(Pid::from_raw(pid), r.signal).map_err(|e| {
        if e == nix::errno::Errno::ESRCH {
            fail(format!("process {pid} is not running"))
        } else {
            fail(format!("process {pid}: {}", e.desc()))
        }
    })
}

/// Runs the instance's reload action: its command, or its signal.
pub async fn run_action(inst: &Instance, call: &HookCall) -> Result<(), HookError> {
    match (&inst.on_change, &inst.reload_signal) {
        (Some(argv), _) => run(argv, inst.hook_timeout, call).await,
        (None, Some(r)) => send_signal(r),
        (None, None) => Ok(()),
    }
}

/// The first retry of a failed hook comes after about this long; each
/// further one waits twice as long, up to `sync.max_backoff`.
pub const RETRY_BASE: Duration = Duration::from_secs(1);

/// The delay before retry number `attempt` (1 = the first) of a failed
/// hook: exponential from [`RETRY_BASE`], capped at `cap`, with jitter
/// (`rand` in 0..1) taking it down by up to half. Pure.
pub fn retry_delay(attempt: u32, cap: Duration, rand: f64) -> Duration {
    let exp = RETRY_BASE.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let full = exp.min(cap.max(RETRY_BASE));
    full.mul_f64(1.0 - 0.5 * rand.clamp(0.0, 1.0))
}

/// A failed delivery waiting for its retry.
#[derive(Debug)]
struct Pending {
    inst: Instance,
    attempts: u32,
    next: tokio::time::Instant,
}

/// Proof that the caller holds an instance's delivery lock.
pub struct Held {
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

/// Delivers owed hooks: one per process, shared by the rounds and
/// [`retry_owed`].
#[derive(Debug)]
pub struct Delivery {
    ledger: Ledger,
    max_backoff: Duration,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pending: Mutex<HashMap<String, Pending>>,
    wake: tokio::sync::Notify,
}

impl Delivery {
    /// A delivery keeping its records in `state_dir`; failed hooks are
    /// retried at most `max_backoff` apart.
    pub fn new(state_dir: &Path, max_backoff: Duration) -> Delivery {
        Delivery {
            ledger: Ledger::new(state_dir),
            max_backoff,
            locks: Mutex::default(),
            pending: Mutex::default(),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Takes the instance's lock; hold it across "record + rename" and
    /// across [`Delivery::deliver`].
    pub async fn hold(&self, instance_id: &str) -> Held {
        let lock = Arc::clone(
            self.locks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(instance_id.to_string())
                .or_default(),
        );
        Held {
            _guard: lock.lock_owned().await,
        }
    }

    /// Whether a failed delivery of this instance waits for a retry time
    /// still ahead.
    pub fn waiting(&self, instance_id: &str) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(instance_id)
            .is_some_and(|p| p.next > tokio::time::Instant::now())
    }

    /// Runs the hook the ledger says `inst` is owed, if any, and clears the
    /// record when it succeeded. `None`: nothing was owed.
    pub async fn deliver(&self, inst: &Instance, _held: &Held) -> Option<Result<(), HookError>> {
        let name = inst.label().to_string();
        let ledger = self.ledger.clone();
        let inst_c = inst.clone();
        let owed = tokio::task::spawn_blocking(move || prepare(&ledger, &inst_c))
            .await
            .unwrap_or_else(|e| Err(format!("hook record task failed: {e}")));
        let owed = match owed {
            Ok(Some(o)) => o,
            Ok(None) => {
                self.forget(&inst.id);
                return None;
            }
            Err(msg) => {
                let e = HookError::Ledger(msg);
                self.failed(inst, &e);
                return Some(Err(e));
            }
        };
        let call = HookCall {
            instance_id: inst.id.clone(),
            instance_name: name.clone(),
            changed: owed.files,
        };
        crate::failpoint::hit("before-hook");
        match run_action(inst, &call).await {
            Ok(()) => {
                crate::failpoint::hit("after-hook");
                let ledger = self.ledger.clone();
                let id = inst.id.clone();
                let cleared = tokio::task::spawn_blocking(move || ledger.clear(&id)).await;
                if let Ok(Err(e)) = cleared {
                    tracing::error!(instance = %name, instance_id = %inst.id, "hook succeeded but {e}; it will run again");
                }
                self.forget(&inst.id);
                tracing::info!(instance = %name, instance_id = %inst.id, "hook succeeded");
                Some(Ok(()))
            }
            Err(e) => {
                self.failed(inst, &e);
                Some(Err(e))
            }
        }
    }

    fn forget(&self, id: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    fn failed(&self, inst: &Instance, e: &HookError) {
        let delay = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let p = pending.entry(inst.id.clone()).or_insert_with(|| Pending {
                inst: inst.clone(),
                attempts: 0,
                next: tokio::time::Instant::now(),
            });
            p.inst = inst.clone();
            p.attempts += 1;
            let delay = retry_delay(p.attempts, self.max_backoff, fastrand::f64());
            p.next = tokio::time::Instant::now() + delay;
            delay
        };
        self.wake.notify_one();
        let next = humantime::format_duration(Duration::from_millis(delay.as_millis() as u64));
        tracing::warn!(
            instance = %inst.label(),
            instance_id = %inst.id,
            reason = "hook",
            "hook failed: {e}; the hook stays owed, next attempt in {next}"
        );
    }
}

/// Reads and corrects the instance's record. Blocking.
fn prepare(ledger: &Ledger, inst: &Instance) -> Result<Option<Owed>, String> {
    if !inst.has_hook() {
        if ledger.exists(&inst.id) {
            tracing::info!(instance = %inst.label(), instance_id = %inst.id, "no hook is configured any more; dropping the hook it was owed");
            ledger.clear(&inst.id).map_err(|e| e.to_string())?;
        }
        return Ok(None);
    }
    let owed = match ledger.load_or_rebuild(inst) {
        Ok(Some(o)) => o,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let fixed = ledger::reconcile(owed.clone(), ledger::disk_state);
    if fixed.as_ref() != Some(&owed) {
        ledger
            .put(&inst.id, fixed.as_ref())
            .map_err(|e| e.to_string())?;
    }
    Ok(fixed)
}

/// Retries failed deliveries until they succeed, each on its own backoff.
/// Runs until dropped; the daemon spawns it once.
pub async fn retry_owed(delivery: Arc<Delivery>) {
    loop {
        let wake = delivery.wake.notified();
        let next = delivery
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .min_by_key(|(_, p)| p.next)
            .map(|(id, p)| (id.clone(), p.next));
        let Some((id, at)) = next else {
            wake.await;
            continue;
        };
        if at > tokio::time::Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = wake => {}
            }
            continue;
        }
        let held = delivery.hold(&id).await;
        // A round may have delivered (or failed anew) while we waited.
        let due = delivery
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .filter(|p| p.next <= tokio::time::Instant::now())
            .map(|p| (p.inst.clone(), p.attempts));
        if let Some((inst, attempts)) = due {
            tracing::info!(instance = %inst.label(), instance_id = %inst.id, attempt = attempts + 1, "running the owed hook again");
            delivery.deliver(&inst, &held).await;
        }
    }
}

/// Logs each line of a hook's output; returns the last few lines.
async fn log_lines(
    stream: impl AsyncRead + Unpin,
    instance: String,
    name: &'static str,
) -> Vec<String> {
    let mut lines = BufReader::new(stream).lines();
    let mut last: Vec<String> = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(instance = %instance, stream = name, "hook output: {line}");
        if last.len() == STDERR_TAIL {
            last.remove(0);
        }
        last.push(line);
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> HookCall {
        HookCall {
            instance_id: "i1".into(),
            instance_name: "orders".into(),
            changed: vec![
                ChangedFile {
                    path: "/a/x.crt".into(),
                    old: None,
                    new: [0xab; 32],
                },
                ChangedFile {
                    path: "/a/y.crt".into(),
                    old: Some([0x01; 32]),
                    new: [0x02; 32],
                },
            ],
        }
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn environment_lists_paths_and_hashes_in_order() {
        let env = call().env();
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("DDS_CERTSYNC_CHANGED"), "/a/x.crt\n/a/y.crt");
        assert_eq!(
            get("DDS_CERTSYNC_OLD_SHA256"),
            format!("\n{}", "01".repeat(32))
        );
        assert_eq!(
            get("DDS_CERTSYNC_NEW_SHA256"),
            format!("{}\n{}", "ab".repeat(32), "02".repeat(32))
        );
    }

    #[tokio::test]
    async fn success_and_failure_are_reported() {
        run(&sh("exit 0"), Duration::from_secs(5), &call())
            .await
            .unwrap();
        let e = run(
            &sh("echo boom >&2; exit 3"),
            Duration::from_secs(5),
            &call(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/bin/sh exited with status 3; last stderr: boom"
        );
    }

    #[test]
    fn retry_delays_double_up_to_the_cap_with_jitter() {
        let cap = Duration::from_secs(30);
        let full: Vec<u64> = (1..=7)
            .map(|a| retry_delay(a, cap, 0.0).as_millis() as u64)
            .collect();
        assert_eq!(full, vec![1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        // Jitter takes off up to half, never more.
        assert_eq!(retry_delay(3, cap, 1.0), Duration::from_secs(2));
        assert_eq!(retry_delay(3, cap, 0.5), Duration::from_secs(3));
        // Absurd inputs stay bounded.
        assert_eq!(retry_delay(u32::MAX, cap, 7.0), Duration::from_secs(15));
        assert_eq!(retry_delay(0, Duration::ZERO, 0.0), RETRY_BASE);
    }

    #[test]
    fn signal_delivery_failures_are_named() {
        let d = tempfile::tempdir().unwrap();
        let pidfile = d.path().join("app.pid");
        let r = ReloadSignal {
            signal: Signal::SIGHUP,
            pidfile: pidfile.clone(),
        };
        let e = send_signal(&r).unwrap_err().to_string();
        assert!(e.contains("cannot read the pidfile"), "{e}");
        assert!(e.contains(&pidfile.display().to_string()), "{e}");
        assert!(e.starts_with("cannot send SIGHUP"), "{e}");
        // 0 and negative PIDs would signal a group or everyone: refused.
        for bad in ["0", "-1", "", "12ab", "99999999999"] {
            std::fs::write(&pidfile, bad).unwrap();
            let e = send_signal(&r).unwrap_err().to_string();
            assert!(e.contains("is not a process ID"), "{bad}: {e}");
        }
        // A process that is gone.
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        std::fs::write(&pidfile, format!("{pid}\n")).unwrap();
        let e = send_signal(&r).unwrap_err().to_string();
        assert!(e.contains("is not running"), "{e}");
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let e = run(
            &["/nonexistent/hook".into()],
            Duration::from_secs(5),
            &call(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, HookError::Spawn { .. }), "{e}");
    }

    #[test]
    fn notify_socket_is_not_inherited() {
        const NAME: &str = "hooks::tests::notify_socket_is_not_inherited";
        const CHILD: &str = "DDS_CERTSYNC_TEST_NOTIFY_CHILD";
        if std::env::var_os(CHILD).is_some() {
            // The child process: NOTIFY_SOCKET is in its own environment.
            assert!(std::env::var_os("NOTIFY_SOCKET").is_some());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(run(
                &sh("test -z \"$NOTIFY_SOCKET\""),
                Duration::from_secs(5),
                &call(),
            ))
            .unwrap();
            return;
        }
        // The test binary's environment is shared by tests running in
        // parallel, so the variable is set only for a child process that
        // runs just this test.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--test-threads=1"])
            .env(CHILD, "1")
            .env("NOTIFY_SOCKET", "/run/systemd/notify")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "the child ran no test: {text}");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let e = run(&sh(&script), Duration::from_millis(500), &call())
            .await
            .unwrap_err();
        assert!(matches!(e, HookError::TimedOut { .. }), "{e}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild got SIGKILL with the group; it is gone (or a zombie
        // reaped by init) within a moment.
        let mut alive = true;
        for _ in 0..50 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                alive = false;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive, "grandchild {pid} survived the timeout");
    }
}
