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
//! Removed from that environment: `NOTIFY_SOCKET` (a hook can never speak to
//! systemd in the daemon's name), every `HUAWEICLOUD_SDK_*` variable, and
//! every variable a `*_env` key of the config names ([`hidden_env_names`]):
//! a hook never sees the daemon's credentials.
//!
//! The hook's stdout and stderr are read as bytes, without stopping, until it
//! closes them: a line is logged with invalid UTF-8 replaced, cut at
//! [`LINE_CAP`] bytes, and at most [`VOLUME_CAP`] bytes are logged per run;
//! the rest is read and dropped (so the hook never dies of SIGPIPE), and the
//! log says once that output was cut. At the timeout, or if the daemon stops
//! while it runs, the whole process group is killed. A failing hook is
//! reported with its exit status and last stderr lines, never fatal.
//!
//! `reload_signal` + `pidfile` replace the command: the pidfile is read on
//! every delivery (never cached, off the runtime thread, at most
//! [`PIDFILE_LIMIT`] bytes, a regular file only, never through a symlink at
//! its own path: one who can write its directory could otherwise point it at
//! another user's pidfile and pass the owner rule; symlinks among the parent
//! directories, such as `/var/run`, are followed). The signal is refused for a
//! PID of 1 or less, and for a process whose real user differs from the
//! pidfile's owner unless `reload_signal_any_owner` is set ([`check_target`]).
//! The process is held by a pidfd (`pidfd_open`) before its owner is read
//! from `/proc/PID/status`, checked to be still alive after, and signalled
//! through the pidfd, so a PID that passes to another process between the
//! check and the signal is never signalled; where the kernel has no pidfd,
//! a plain `kill` (logged at debug). A refusal, a missing or malformed
//! pidfile, or a process that is gone (a zombie included) counts as a failed
//! delivery, retried like a failed command.
//!
//! Retries ([`retry_owed`]) take the instance from the current config
//! ([`Delivery::set_config`], called on every reload), never from a snapshot:
//! a corrected hook is retried at once with the new settings, and the retries
//! of a removed instance stop (its record stays in `state_dir`, so the
//! instance still owes its hook if it comes back).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::backoff::{Backoff, Jitter};
use crate::certcheck::hex;
use crate::config::{Auth, Config, Instance, ReloadSignal, SecretSource};
use crate::ledger::{self, Ledger, Owed};
use crate::outputs::Observation;
use crate::readfile::{self, Links};

/// How many of the hook's last stderr lines an error report keeps.
const STDERR_TAIL: usize = 5;
/// A line of hook output longer than this is cut to it.
pub const LINE_CAP: usize = 4 * 1024;
/// At most this much of a hook's output (stdout and stderr together) is
/// logged per run; the rest is read and dropped.
pub const VOLUME_CAP: usize = 64 * 1024;
/// A pidfile larger than this is refused.
pub const PIDFILE_LIMIT: u64 = 64;
/// The prefix of the official SDKs' variables, never passed to a hook.
const SDK_ENV_PREFIX: &str = "HUAWEICLOUD_SDK_";

/// One changed file, for the hook's environment (recorded by the ledger).
pub use crate::ledger::ChangedFile;

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

/// The variables named by the config's `*_env` keys, which a hook must not
/// inherit. Pure.
pub fn hidden_env_names(config: &Config) -> Vec<String> {
    let sources: Vec<&SecretSource> = match &config.auth {
        Auth::Token(s) => vec![s],
        Auth::Aksk(a) => {
            let mut v = vec![&a.access_key, &a.secret_key];
            v.extend(a.security_token.as_ref());
            v
        }
        Auth::Password(p) => vec![&p.password],
        Auth::EcsMetadata(_) => vec![],
    };
    sources
        .into_iter()
        .filter_map(|s| match s {
            SecretSource::Env(var) => Some(var.clone()),
            SecretSource::Inline(_) | SecretSource::File(_) => None,
        })
        .collect()
}

/// Whether the daemon's variable `name` is kept from a hook: `NOTIFY_SOCKET`,
/// `HUAWEICLOUD_SDK_*`, and the `named` ones. Pure.
pub fn is_hidden(name: &OsStr, named: &[String]) -> bool {
    name == "NOTIFY_SOCKET"
        || name
            .as_encoded_bytes()
            .starts_with(SDK_ENV_PREFIX.as_bytes())
        || named.iter().any(|n| name == n.as_str())
}

/// Runs `argv` for `call`, waiting at most `timeout`. The daemon's variables
/// that [`is_hidden`] (with `hidden`) are not passed on.
pub async fn run(
    argv: &[String],
    timeout: Duration,
    call: &HookCall,
    hidden: &[String],
) -> Result<(), HookError> {
    let program = argv.first().cloned().unwrap_or_default();
    let mut cmd = Command::new(&program);
    cmd.args(&argv[1.min(argv.len())..]);
    for (name, _) in std::env::vars_os() {
        if is_hidden(&name, hidden) {
            cmd.env_remove(name);
        }
    }
    cmd.envs(call.env())
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
    let budget = Arc::new(Budget::new(call.instance_name.clone()));
    let out = child
        .stdout
        .take()
        .map(|s| Reader(tokio::spawn(log_lines(s, Arc::clone(&budget), "stdout"))));
    let err = child
        .stderr
        .take()
        .map(|s| Reader(tokio::spawn(log_lines(s, Arc::clone(&budget), "stderr"))));

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
    if let Some(r) = out {
        r.finish(drain).await;
    }
    let stderr = match err {
        Some(r) => r.finish(drain).await,
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
/// read now, not cached. Blocking (reads files): call it off the runtime
/// thread, as [`run_action`] does.
pub fn send_signal(r: &ReloadSignal) -> Result<(), HookError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let fail = |reason: String| HookError::Signal {
        signal: r.signal.as_str().to_string(),
        pidfile: r.pidfile.clone(),
        reason,
    };
    // Owner and content from one open file: no race with a replacement. A
    // symlink at the path is refused: its target's owner would pass the
    // owner rule for whoever planted the link.
    let file = readfile::open_regular(&r.pidfile, Links::Refuse)
        .and_then(|f| f.ok_or_else(|| std::io::Error::other("it does not exist")))
        .map_err(|e| fail(format!("cannot read the pidfile: {e}")))?;
    let mut bytes = Vec::new();
    let owner = file
        .metadata()
        .and_then(|m| {
            file.take(PIDFILE_LIMIT + 1).read_to_end(&mut bytes)?;
            Ok(m.uid())
        })
        .map_err(|e| fail(format!("cannot read the pidfile: {e}")))?;
    if bytes.len() as u64 > PIDFILE_LIMIT {
        return Err(fail(format!(
            "cannot read the pidfile: it is larger than {PIDFILE_LIMIT} bytes"
        )));
    }
    let text = String::from_utf8_lossy(&bytes);
    let pid = parse_pid(&text).map_err(fail)?;
    // Hold the process first: while a pidfd is held, its PID cannot pass to
    // another process unnoticed between the owner check and the signal.
    let target = Target::open(pid).map_err(|e| fail(process_error(pid, e)))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
    let process_uid = match status {
        Ok(s) => real_uid(&s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(format!("process {pid} is not running")));
        }
        Err(e) => return Err(fail(format!("process {pid}: cannot read its owner: {e}"))),
    };
    let process_uid =
        process_uid.ok_or_else(|| fail(format!("process {pid}: cannot read its owner")))?;
    check_target(pid, owner, process_uid, r.any_owner).map_err(fail)?;
    // Still the process whose owner was read? (An exited one, zombie or
    // not, may have left its PID to another.)
    if target.exited().map_err(|e| fail(process_error(pid, e)))? {
        return Err(fail(format!("process {pid} is not running")));
    }
    target
        .signal(r.signal)
        .map_err(|e| fail(process_error(pid, e)))
}

/// A system call's failure on process `pid`, in words.
fn process_error(pid: i32, e: std::io::Error) -> String {
    if e.raw_os_error() == Some(nix::libc::ESRCH) {
        format!("process {pid} is not running")
    } else {
        format!("process {pid}: {e}")
    }
}

/// A process to signal: held by a pidfd (Linux 5.3 and later), or by its
/// bare PID where the kernel (or a seccomp filter) offers no pidfd.
enum Target {
    Fd(std::os::fd::OwnedFd),
    Pid(i32),
}

impl Target {
    fn open(pid: i32) -> std::io::Result<Target> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a PID and flags and returns a new
        // descriptor or -1; no memory is passed.
        let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
        if fd >= 0 {
            // SAFETY: the kernel just returned this descriptor; nothing else owns it.
            return Ok(Target::Fd(unsafe {
                std::os::fd::OwnedFd::from_raw_fd(fd as std::os::fd::RawFd)
            }));
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            // No pidfd here (old kernel; EPERM from a seccomp filter that
            // does not know the call): a bare PID, as before pidfds.
            Some(nix::libc::ENOSYS) | Some(nix::libc::EPERM) => {
                tracing::debug!(pid, "no pidfd ({e}); signalling by PID");
                Ok(Target::Pid(pid))
            }
            _ => Err(e),
        }
    }

    /// Whether the process has exited (a pidfd polls readable then).
    /// Unknown with a bare PID: `false`.
    fn exited(&self) -> std::io::Result<bool> {
        use std::os::fd::AsRawFd;
        let Target::Fd(fd) = self else {
            return Ok(false);
        };
        let mut p = nix::libc::pollfd {
            fd: fd.as_raw_fd(),
            events: nix::libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, a zero timeout.
        let n = unsafe { nix::libc::poll(&mut p, 1, 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n > 0 && p.revents & nix::libc::POLLIN != 0)
    }

    fn signal(&self, signal: Signal) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        match self {
            Target::Fd(fd) => {
                // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
                let r = unsafe {
                    nix::libc::syscall(
                        nix::libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        signal as nix::libc::c_int,
                        std::ptr::null::<nix::libc::siginfo_t>(),
                        0,
                    )
                };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            }
            Target::Pid(pid) => {
                nix::sys::signal::kill(Pid::from_raw(*pid), signal).map_err(std::io::Error::from)
            }
        }
    }
}

/// The PID a pidfile's text names. Pure.
fn parse_pid(text: &str) -> Result<i32, String> {
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{:?} is not a process ID", text.trim()))
}

/// The real user ID in the text of `/proc/PID/status`. Pure.
fn real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|u| u.parse().ok())
}

/// Whether the signal may go to `pid`, run by `process_uid`, named by a
/// pidfile owned by `pidfile_uid`: never to PID 1 or less (init, or a group),
/// and only to a process of the pidfile's owner unless `any_owner`. Pure.
pub fn check_target(
    pid: i32,
    pidfile_uid: u32,
    process_uid: u32,
    any_owner: bool,
) -> Result<(), String> {
    if pid <= 1 {
        return Err(format!(
            "refusing to signal PID {pid}: it is not the process of an application"
        ));
    }
    if process_uid != pidfile_uid && !any_owner {
        return Err(format!(
            "refusing to signal process {pid}: it runs as uid {process_uid}, but the pidfile is owned by uid {pidfile_uid} \
             (set reload_signal_any_owner = true to allow this)"
        ));
    }
    Ok(())
}

/// Runs the instance's reload action: its command, or its signal. `hidden`:
/// see [`run`].
pub async fn run_action(
    inst: &Instance,
    call: &HookCall,
    hidden: &[String],
) -> Result<(), HookError> {
    match (&inst.on_change, &inst.reload_signal) {
        (Some(argv), _) => run(argv, inst.hook_timeout, call, hidden).await,
        (None, Some(r)) => {
            let r = r.clone();
            let (signal, pidfile) = (r.signal.as_str().to_string(), r.pidfile.clone());
            tokio::task::spawn_blocking(move || send_signal(&r))
                .await
                .unwrap_or_else(|e| {
                    Err(HookError::Signal {
                        signal,
                        pidfile,
                        reason: format!("the signal task failed: {e}"),
                    })
                })
        }
        (None, None) => Ok(()),
    }
}

/// The first retry of a failed hook comes after about this long; each
/// further one waits twice as long, up to `sync.max_backoff`.
pub const RETRY_BASE: Duration = Duration::from_secs(1);

/// The delay before retry number `attempt` (1 = the first) of a failed
/// hook: exponential from [`RETRY_BASE`], capped at `cap`, with jitter
/// (`rand` in 0..1) taking it down by up to half: a
/// [`crate::backoff::Backoff`]. Pure.
pub fn retry_delay(attempt: u32, cap: Duration, rand: f64) -> Duration {
    Backoff {
        base: RETRY_BASE,
        cap: cap.max(RETRY_BASE),
        jitter: Jitter::Half,
        floor: Duration::ZERO,
    }
    .delay(attempt, rand)
}

/// A failed delivery waiting for its retry. It holds no copy of the
/// instance: the retry takes the one in the current config.
#[derive(Debug)]
struct Pending {
    attempts: u32,
    next: tokio::time::Instant,
}

/// What the running config says about hooks; replaced on every reload.
#[derive(Debug)]
struct Current {
    instances: HashMap<String, Instance>,
    /// Variables a hook must not inherit, see [`hidden_env_names`].
    hidden: Arc<[String]>,
    max_backoff: Duration,
}

impl Current {
    fn of(config: &Config) -> Current {
        Current {
            instances: config
                .instances
                .iter()
                .map(|i| (i.id.clone(), i.clone()))
                .collect(),
            hidden: hidden_env_names(config).into(),
            max_backoff: config.sync.max_backoff,
        }
    }
}

/// Whether the reload action of an instance differs between two configs.
fn same_hook(a: &Instance, b: &Instance) -> bool {
    a.on_change == b.on_change
        && a.reload_signal == b.reload_signal
        && a.hook_timeout == b.hook_timeout
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
    current: Mutex<Current>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pending: Mutex<HashMap<String, Pending>>,
    wake: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Delivery {
    /// A delivery keeping its records in the config's `sync.state_dir`.
    pub fn new(config: &Config) -> Delivery {
        Delivery {
            ledger: Ledger::new(&config.sync.state_dir),
            current: Mutex::new(Current::of(config)),
            locks: Mutex::default(),
            pending: Mutex::default(),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Switches to a reloaded config (`sync.state_dir` excepted, which is
    /// kept). Retries of instances no longer configured stop; their records
    /// stay on disk. A waiting retry whose hook was changed runs now, with
    /// the new hook. Variables named by `*_env` keys stay hidden from hooks
    /// after a reload that no longer names them: they are still in the
    /// daemon's environment.
    pub fn set_config(&self, config: &Config) {
        let mut new = Current::of(config);
        {
            let mut pending = lock(&self.pending);
            let old = lock(&self.current);
            let mut hidden: Vec<String> = old.hidden.to_vec();
            hidden.extend(
                new.hidden
                    .iter()
                    .filter(|n| !old.hidden.contains(n))
                    .cloned(),
            );
            new.hidden = hidden.into();
            pending.retain(|id, p| match new.instances.get(id) {
                None => {
                    tracing::info!(instance_id = %id, "the instance was removed from the config; its hook is no longer retried (the record stays in sync.state_dir and is delivered if the instance comes back)");
                    false
                }
                Some(inst) => {
                    if old.instances.get(id).is_none_or(|o| !same_hook(o, inst)) {
                        tracing::info!(instance = %inst.label(), instance_id = %id, "the instance's hook changed; retrying it now");
                        p.attempts = 0;
                        p.next = tokio::time::Instant::now();
                    }
                    true
                }
            });
        }
        *lock(&self.current) = new;
        self.wake.notify_one();
    }

    /// The instance as the current config has it.
    fn instance(&self, id: &str) -> Option<Instance> {
        lock(&self.current).instances.get(id).cloned()
    }

    /// Takes the instance's lock; hold it across "record + rename" and
    /// across [`Delivery::deliver`].
    pub async fn hold(&self, instance_id: &str) -> Held {
        let lock = Arc::clone(
            lock(&self.locks)
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
        lock(&self.pending)
            .get(instance_id)
            .is_some_and(|p| p.next > tokio::time::Instant::now())
    }

    /// Runs the hook the ledger says `inst` is owed, if any, and clears the
    /// record when it succeeded. `None`: nothing was owed. `seen`: what a
    /// round just read or wrote at some paths, so that the record is
    /// corrected against it rather than by reading those files again.
    pub async fn deliver(
        &self,
        inst: &Instance,
        _held: &Held,
        seen: Vec<(PathBuf, Observation)>,
    ) -> Option<Result<(), HookError>> {
        let name = inst.label().to_string();
        let ledger = self.ledger.clone();
        let inst_c = inst.clone();
        let owed = tokio::task::spawn_blocking(move || prepare(&ledger, &inst_c, &seen))
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
        let hidden = Arc::clone(&lock(&self.current).hidden);
        crate::failpoint::hit("before-hook");
        match run_action(inst, &call, &hidden).await {
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
        lock(&self.pending).remove(id);
    }

    fn failed(&self, inst: &Instance, e: &HookError) {
        let (max_backoff, configured) = {
            let current = lock(&self.current);
            (
                current.max_backoff,
                current.instances.contains_key(&inst.id),
            )
        };
        if !configured {
            // Removed by a reload while this run was under way.
            self.forget(&inst.id);
            tracing::warn!(
                instance = %inst.label(),
                instance_id = %inst.id,
                reason = "hook",
                "hook failed: {e}; the instance is no longer configured, so it is not retried (its record stays in sync.state_dir)"
            );
            return;
        }
        let delay = {
            let mut pending = lock(&self.pending);
            let p = pending.entry(inst.id.clone()).or_insert_with(|| Pending {
                attempts: 0,
                next: tokio::time::Instant::now(),
            });
            p.attempts += 1;
            let delay = retry_delay(p.attempts, max_backoff, fastrand::f64());
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

/// Reads and corrects the instance's record, against `seen` where it says
/// what is at a path, else against the disk. Blocking.
fn prepare(
    ledger: &Ledger,
    inst: &Instance,
    seen: &[(PathBuf, Observation)],
) -> Result<Option<Owed>, String> {
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
    let fixed = ledger::reconcile(owed.clone(), |path| {
        match seen.iter().find(|(p, _)| p == path) {
            Some((_, o)) => o.clone(),
            None => ledger::disk_state(inst, path),
        }
    });
    if fixed.as_ref() != Some(&owed) {
        ledger
            .put(&inst.id, fixed.as_ref())
            .map_err(|e| e.to_string())?;
    }
    Ok(fixed)
}

/// Retries failed deliveries until they succeed, each on its own backoff,
/// each with the instance as the current config has it.
/// Runs until dropped; the daemon spawns it once.
pub async fn retry_owed(delivery: Arc<Delivery>) {
    loop {
        let wake = delivery.wake.notified();
        let next = lock(&delivery.pending)
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
        let due = lock(&delivery.pending)
            .get(&id)
            .filter(|p| p.next <= tokio::time::Instant::now())
            .map(|p| p.attempts);
        let Some(attempts) = due else { continue };
        let Some(inst) = delivery.instance(&id) else {
            // Removed by a reload that raced this turn.
            delivery.forget(&id);
            continue;
        };
        tracing::info!(instance = %inst.label(), instance_id = %inst.id, attempt = attempts + 1, "running the owed hook again");
        delivery.deliver(&inst, &held, Vec::new()).await;
    }
}

/// The output budget of one hook run, shared by its stdout and stderr.
struct Budget {
    instance: String,
    left: AtomicUsize,
    cut: AtomicBool,
}

impl Budget {
    fn new(instance: String) -> Budget {
        Budget {
            instance,
            left: AtomicUsize::new(VOLUME_CAP),
            cut: AtomicBool::new(false),
        }
    }

    /// Takes `n` bytes from the budget; false if they do not fit.
    fn take(&self, n: usize) -> bool {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }

    /// Says once per run that output was cut.
    fn note_cut(&self) {
        if !self.cut.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                instance = %self.instance,
                "hook output cut: lines are logged up to {LINE_CAP} bytes and at most {VOLUME_CAP} bytes per run; the rest was read and dropped"
            );
        }
    }
}

/// Splits a byte stream into lines of at most `cap` bytes, holding at most
/// `cap` bytes itself. Pure.
#[derive(Debug)]
struct Lines {
    cap: usize,
    line: Vec<u8>,
    /// The current line was longer than `cap`; the rest of it is skipped.
    over: bool,
}

impl Lines {
    fn new(cap: usize) -> Lines {
        Lines {
            cap,
            line: Vec::new(),
            over: false,
        }
    }

    /// Feeds `bytes`; `emit(line, was_cut)` gets each finished line without
    /// its newline (and `\r`).
    fn push(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(&[u8], bool)) {
        while !bytes.is_empty() {
            let nl = bytes.iter().position(|b| *b == b'\n');
            let part = &bytes[..nl.unwrap_or(bytes.len())];
            let room = self.cap - self.line.len();
            if part.len() > room {
                self.over = true;
            }
            self.line.extend_from_slice(&part[..part.len().min(room)]);
            match nl {
                Some(i) => {
                    self.finish(emit);
                    bytes = &bytes[i + 1..];
                }
                None => bytes = &[],
            }
        }
    }

    /// Emits the line in progress, if any.
    fn finish(&mut self, emit: &mut impl FnMut(&[u8], bool)) {
        if self.line.last() == Some(&b'\r') && !self.over {
            self.line.pop();
        }
        emit(&self.line, self.over);
        self.line.clear();
        self.over = false;
    }

    fn pending(&self) -> bool {
        !self.line.is_empty() || self.over
    }
}

/// A task reading one of a hook's pipes. Dropping it aborts the task, so a
/// grandchild that keeps the pipe open (a daemon the hook started) never
/// leaks the task, its buffer or the descriptor, on any path out of [`run`].
struct Reader(tokio::task::JoinHandle<Vec<String>>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Reader {
    /// The last lines read, if the reader reaches the end within `within`;
    /// otherwise the reader is stopped and what it saw is given up.
    async fn finish(mut self, within: Duration) -> Vec<String> {
        tokio::time::timeout(within, &mut self.0)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    }
}

/// Reads a hook's output to its end, logging each line within the run's
/// budget; returns the last few lines.
async fn log_lines(
    mut stream: impl AsyncRead + Unpin,
    budget: Arc<Budget>,
    name: &'static str,
) -> Vec<String> {
    let mut last: Vec<String> = Vec::new();
    let mut lines = Lines::new(LINE_CAP);
    let mut buf = vec![0u8; 64 * 1024];
    let mut emit = |line: &[u8], was_cut: bool| {
        let text = String::from_utf8_lossy(line);
        if was_cut {
            budget.note_cut();
        }
        // The newline counts too: a flood of empty lines is not free.
        if budget.take(line.len() + 1) {
            let more = if was_cut { " [cut]" } else { "" };
            tracing::info!(instance = %budget.instance, stream = name, "hook output: {text}{more}");
        } else {
            budget.note_cut();
        }
        if last.len() == STDERR_TAIL {
            last.remove(0);
        }
        last.push(text.into_owned());
    };
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => lines.push(&buf[..n], &mut emit),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(instance = %budget.instance, stream = name, "cannot read the hook's output: {e}");
                break;
            }
        }
    }
    if lines.pending() {
        lines.finish(&mut emit);
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
        run(&sh("exit 0"), Duration::from_secs(5), &call(), &[])
            .await
            .unwrap();
        let e = run(
            &sh("echo boom >&2; exit 3"),
            Duration::from_secs(5),
            &call(),
            &[],
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
            any_owner: false,
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
            &[],
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
                &[],
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
        let e = run(&sh(&script), Duration::from_millis(500), &call(), &[])
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

    #[test]
    fn the_daemons_credentials_and_notify_socket_are_hidden_from_hooks() {
        let named = vec!["MY_SK".to_string()];
        for hidden in [
            "NOTIFY_SOCKET",
            "HUAWEICLOUD_SDK_AK",
            "HUAWEICLOUD_SDK_SK",
            "HUAWEICLOUD_SDK_SECURITY_TOKEN",
            "HUAWEICLOUD_SDK_ANYTHING",
            "MY_SK",
        ] {
            assert!(is_hidden(OsStr::new(hidden), &named), "{hidden}");
        }
        for kept in [
            "PATH",
            "HOME",
            "MY_SK2",
            "HUAWEICLOUD_SDK",
            "huaweicloud_sdk_ak",
        ] {
            assert!(!is_hidden(OsStr::new(kept), &named), "{kept}");
        }
    }

    #[test]
    fn every_env_key_of_the_auth_section_is_hidden() {
        let config = |auth: &str| {
            let text = format!(
                "[cloud]\nregion = \"cn-north-4\"\nproject_id = \"p1\"\n[auth]\n{auth}\n[[instances]]\nid = \"i1\"\ninternational = \"/tmp/x/a.crt\"\n"
            );
            crate::config::validate(crate::config::parse(&text).unwrap(), Path::new("/")).unwrap()
        };
        let c = config(
            "method = \"aksk\"\naccess_key_env = \"A\"\nsecret_key_env = \"S\"\nsecurity_token_env = \"T\"",
        );
        assert_eq!(hidden_env_names(&c), ["A", "S", "T"]);
        let c = config("method = \"token\"\ntoken_env = \"TOK\"");
        assert_eq!(hidden_env_names(&c), ["TOK"]);
        let c =
            config("method = \"password\"\nuser = \"u\"\ndomain = \"d\"\npassword_env = \"PW\"");
        assert_eq!(hidden_env_names(&c), ["PW"]);
        let c = config("method = \"token\"\ntoken = \"inline\"");
        assert!(hidden_env_names(&c).is_empty());
    }

    #[test]
    fn variables_once_named_stay_hidden_after_a_reload() {
        let config = |var: &str| {
            let text = format!(
                "[cloud]\nregion = \"cn-north-4\"\nproject_id = \"p1\"\n[auth]\nmethod = \"token\"\ntoken_env = \"{var}\"\n[sync]\nstate_dir = \"/nonexistent\"\n[[instances]]\nid = \"i1\"\ninternational = \"/tmp/x/a.crt\"\n"
            );
            crate::config::validate(crate::config::parse(&text).unwrap(), Path::new("/")).unwrap()
        };
        let d = Delivery::new(&config("OLD_TOKEN"));
        d.set_config(&config("NEW_TOKEN"));
        d.set_config(&config("NEW_TOKEN"));
        assert_eq!(&*lock(&d.current).hidden, ["OLD_TOKEN", "NEW_TOKEN"]);
    }

    #[tokio::test]
    async fn named_variables_do_not_reach_the_hook() {
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::set_var("DDS_TEST_HIDDEN_SECRET", "s3cret") };
        let r = run(
            &sh("test -z \"$DDS_TEST_HIDDEN_SECRET\""),
            Duration::from_secs(5),
            &call(),
            &["DDS_TEST_HIDDEN_SECRET".to_string()],
        )
        .await;
        let visible = run(
            &sh("test -n \"$DDS_TEST_HIDDEN_SECRET\""),
            Duration::from_secs(5),
            &call(),
            &[],
        )
        .await;
        unsafe { std::env::remove_var("DDS_TEST_HIDDEN_SECRET") };
        r.unwrap();
        visible.unwrap();
    }

    #[test]
    fn signals_go_only_to_an_application_of_the_pidfiles_owner() {
        for pid in [-1, 0, 1] {
            let e = check_target(pid, 0, 0, true).unwrap_err();
            assert!(e.contains(&format!("PID {pid}")), "{e}");
        }
        check_target(4242, 1000, 1000, false).unwrap();
        let e = check_target(4242, 0, 65534, false).unwrap_err();
        assert!(e.contains("process 4242"), "{e}");
        assert!(e.contains("uid 65534"), "{e}");
        assert!(e.contains("reload_signal_any_owner"), "{e}");
        check_target(4242, 0, 65534, true).unwrap();
    }

    #[test]
    fn the_real_uid_is_read_from_proc_status() {
        let status = "Name:\tsleep\nUmask:\t0022\nUid:\t65534\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(real_uid(status), Some(65534));
        assert_eq!(real_uid("Name:\tx\n"), None);
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert_eq!(real_uid(&own), Some(nix::unistd::getuid().as_raw()));
    }

    #[test]
    fn pid_1_in_a_pidfile_is_refused_and_named() {
        let d = tempfile::tempdir().unwrap();
        let pidfile = d.path().join("app.pid");
        std::fs::write(&pidfile, "1\n").unwrap();
        let r = ReloadSignal {
            signal: Signal::SIGHUP,
            pidfile: pidfile.clone(),
            any_owner: true,
        };
        let e = send_signal(&r).unwrap_err().to_string();
        assert!(e.contains(&pidfile.display().to_string()), "{e}");
        assert!(e.contains("refusing to signal PID 1"), "{e}");
    }

    #[test]
    fn lines_are_split_cut_at_the_cap_and_carried_across_chunks() {
        let mut got: Vec<(String, bool)> = Vec::new();
        let mut emit = |l: &[u8], cut: bool| got.push((String::from_utf8_lossy(l).into(), cut));
        let mut lines = Lines::new(4);
        lines.push(b"ab\r\ncd", &mut emit);
        lines.push(b"e\nabcdefgh", &mut emit);
        lines.push(b"ijk\nxy", &mut emit);
        assert!(lines.pending());
        lines.finish(&mut emit);
        assert_eq!(
            got,
            [
                ("ab".into(), false),
                ("cde".into(), false),
                ("abcd".into(), true),
                ("xy".into(), false)
            ]
        );
        assert!(lines.line.capacity() <= 8, "the buffer grew past the cap");
    }

    #[tokio::test]
    async fn a_flood_of_empty_lines_uses_up_the_volume_cap() {
        let budget = Arc::new(Budget::new("orders".into()));
        let flood = vec![b'\n'; VOLUME_CAP * 2];
        log_lines(&flood[..], Arc::clone(&budget), "stdout").await;
        assert_eq!(budget.left.load(Ordering::Relaxed), 0);
        assert!(budget.cut.load(Ordering::Relaxed), "the cut was not noted");
    }

    #[tokio::test]
    async fn a_grandchild_holding_the_pipes_leaks_no_reader_task() {
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        // The hook exits at once; the subshell it leaves behind keeps its
        // stdout and stderr open for a few seconds.
        run(
            &sh("(sleep 3) & exit 0"),
            Duration::from_secs(10),
            &call(),
            &[],
        )
        .await
        .unwrap();
        // Aborted tasks finish at the next turns of the runtime.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            metrics.num_alive_tasks(),
            before,
            "a pipe reader outlived the hook"
        );
    }

    #[tokio::test]
    async fn a_non_utf8_byte_in_the_output_keeps_the_real_exit_status() {
        // The invalid byte first, then more than a pipe holds, then stderr:
        // a reader that gave up would kill the hook with SIGPIPE.
        let e = run(
            &sh("printf 'bad \\377 byte\\n'; i=0; while [ $i -lt 3000 ]; do echo 0123456789012345678901234567890123456789; i=$((i+1)); done; echo real-error >&2; exit 3"),
            Duration::from_secs(20),
            &call(),
            &[],
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/bin/sh exited with status 3; last stderr: real-error"
        );
    }

    /// A config of one instance `i1` writing `dir/a.crt`, with `hook` (TOML
    /// keys of the instance) and its records in `dir/state`.
    fn hook_config(dir: &Path, hook: &str) -> Config {
        let text = format!(
            "[cloud]\nregion = \"cn-north-4\"\nproject_id = \"p1\"\n[auth]\nmethod = \"token\"\ntoken = \"t\"\n[sync]\nstate_dir = \"{}\"\n[[instances]]\nid = \"i1\"\ninternational = \"{}\"\n{hook}\n",
            dir.join("state").display(),
            dir.join("a.crt").display(),
        );
        crate::config::validate(crate::config::parse(&text).unwrap(), Path::new("/")).unwrap()
    }

    /// A signal hook whose pidfile is `dir/app.pid`.
    fn signal_hook(dir: &Path, signal: &str) -> String {
        format!(
            "reload_signal = \"{signal}\"\npidfile = \"{}\"",
            dir.join("app.pid").display()
        )
    }

    /// Records that `dir/a.crt` changed from `old` to what it holds now.
    fn owe(d: &Delivery, dir: &Path, old: &[u8]) {
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let path = dir.join("a.crt");
        let now = std::fs::read(&path).unwrap();
        d.ledger()
            .store(&ledger::Owed {
                instance_id: "i1".into(),
                files: vec![ChangedFile {
                    path,
                    old: Some(crate::certcheck::sha256(old)),
                    new: crate::certcheck::sha256(&now),
                }],
            })
            .unwrap();
    }

    /// A process to signal, and a pidfile naming it `width` bytes wide.
    fn target(dir: &Path, width: usize) -> std::process::Child {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        std::fs::write(dir.join("app.pid"), format!("{pid:>width$}")).unwrap();
        child
    }

    /// How `child` ended, waiting up to 10 s.
    fn killed_by(mut child: std::process::Child) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        for _ in 0..500 {
            if let Some(status) = child.try_wait().unwrap() {
                return status.signal();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    fn retry_in(d: &Delivery) -> Duration {
        lock(&d.pending)["i1"]
            .next
            .saturating_duration_since(tokio::time::Instant::now())
    }

    #[tokio::test]
    async fn an_owed_hook_runs_with_its_record_and_the_record_is_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let ran = dir.path().join("ran");
        let script = format!("echo \"$DDS_CERTSYNC_CHANGED\" > {}", ran.display());
        let config = hook_config(
            dir.path(),
            &format!("on_change = [\"/bin/sh\", \"-c\", {script:?}]"),
        );
        let inst = &config.instances[0];
        let d = Delivery::new(&config);
        std::fs::write(dir.path().join("a.crt"), "new").unwrap();
        let held = d.hold("i1").await;
        assert!(
            d.deliver(inst, &held, Vec::new()).await.is_none(),
            "nothing was owed"
        );
        owe(&d, dir.path(), b"old");
        d.deliver(inst, &held, Vec::new()).await.unwrap().unwrap();
        let told = std::fs::read_to_string(&ran).unwrap();
        assert_eq!(told.trim(), dir.path().join("a.crt").display().to_string());
        assert!(!d.ledger().exists("i1"), "the record outlived the hook");
        assert!(!d.waiting("i1"));
        std::fs::remove_file(&ran).unwrap();
        assert!(d.deliver(inst, &held, Vec::new()).await.is_none());
        assert!(!ran.exists(), "the hook ran twice for one change");
    }

    #[tokio::test]
    async fn a_record_the_disk_contradicts_is_corrected_and_owes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ran = dir.path().join("ran");
        let config = hook_config(
            dir.path(),
            &format!("on_change = [\"/bin/touch\", \"{}\"]", ran.display()),
        );
        let d = Delivery::new(&config);
        // The file still holds its old content: the rename never happened.
        std::fs::write(dir.path().join("a.crt"), "old").unwrap();
        owe(&d, dir.path(), b"old");
        let held = d.hold("i1").await;
        assert!(
            d.deliver(&config.instances[0], &held, Vec::new())
                .await
                .is_none()
        );
        assert!(!d.ledger().exists("i1"), "the corrected record stayed");
        assert!(!ran.exists());
    }

    #[tokio::test]
    async fn a_record_of_an_instance_without_a_hook_is_dropped_unrun() {
        let dir = tempfile::tempdir().unwrap();
        let config = hook_config(dir.path(), "");
        let d = Delivery::new(&config);
        std::fs::write(dir.path().join("a.crt"), "new").unwrap();
        owe(&d, dir.path(), b"old");
        let held = d.hold("i1").await;
        assert!(
            d.deliver(&config.instances[0], &held, Vec::new())
                .await
                .is_none()
        );
        assert!(!d.ledger().exists("i1"));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_deliveries_wait_longer_each_time_until_one_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let config = hook_config(dir.path(), &signal_hook(dir.path(), "SIGTERM"));
        let inst = &config.instances[0];
        let d = Delivery::new(&config);
        std::fs::write(dir.path().join("a.crt"), "new").unwrap();
        owe(&d, dir.path(), b"old");
        let held = d.hold("i1").await;
        // No pidfile: each delivery fails and waits about twice as long
        // as the one before (1 s, 2 s, 4 s, less up to half of jitter).
        let mut waits = Vec::new();
        for _ in 0..3 {
            let e = d
                .deliver(inst, &held, Vec::new())
                .await
                .unwrap()
                .unwrap_err();
            assert!(e.to_string().contains("cannot read the pidfile"), "{e}");
            assert!(d.waiting("i1"));
            waits.push(retry_in(&d));
        }
        let secs = |w: Duration| w.as_secs_f64();
        assert!((0.5..=1.0).contains(&secs(waits[0])), "{waits:?}");
        assert!((1.0..=2.0).contains(&secs(waits[1])), "{waits:?}");
        assert!((2.0..=4.0).contains(&secs(waits[2])), "{waits:?}");
        assert!(d.ledger().exists("i1"), "a failed hook must stay owed");
        // The process appears: the next delivery signals it and clears all.
        let child = target(dir.path(), 0);
        d.deliver(inst, &held, Vec::new()).await.unwrap().unwrap();
        assert_eq!(killed_by(child), Some(Signal::SIGTERM as i32));
        assert!(!d.waiting("i1"), "a delivered hook still waits for a retry");
        assert!(!d.ledger().exists("i1"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_retries_a_changed_hook_at_once_and_forgets_a_removed_instance() {
        let dir = tempfile::tempdir().unwrap();
        let config = hook_config(dir.path(), &signal_hook(dir.path(), "SIGTERM"));
        let d = Delivery::new(&config);
        std::fs::write(dir.path().join("a.crt"), "new").unwrap();
        owe(&d, dir.path(), b"old");
        let held = d.hold("i1").await;
        d.deliver(&config.instances[0], &held, Vec::new())
            .await
            .unwrap()
            .unwrap_err();
        assert!(d.waiting("i1"));
        // The same hook: the retry keeps its time.
        d.set_config(&config);
        assert!(d.waiting("i1"), "an unchanged hook was retried early");
        let timeout = hook_config(
            dir.path(),
            &format!(
                "{}\nhook_timeout = \"7s\"",
                signal_hook(dir.path(), "SIGTERM")
            ),
        );
        d.set_config(&timeout);
        assert!(!d.waiting("i1"), "a new hook_timeout is a changed hook");
        d.deliver(&timeout.instances[0], &held, Vec::new())
            .await
            .unwrap()
            .unwrap_err();
        assert!(d.waiting("i1"));
        let other = hook_config(
            dir.path(),
            &format!(
                "{}\nhook_timeout = \"7s\"",
                signal_hook(dir.path(), "SIGUSR1")
            ),
        );
        d.set_config(&other);
        assert!(!d.waiting("i1"), "a changed signal must be retried now");
        assert_eq!(lock(&d.pending)["i1"].attempts, 0, "the backoff restarts");
        // Removed: its retries stop, its record stays.
        let mut none = other.clone();
        none.instances.clear();
        d.set_config(&none);
        assert!(lock(&d.pending).is_empty());
        assert!(d.ledger().exists("i1"));
        // A run that fails for an instance removed meanwhile is not retried.
        d.deliver(&other.instances[0], &held, Vec::new())
            .await
            .unwrap()
            .unwrap_err();
        assert!(lock(&d.pending).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_retry_task_delivers_a_failed_hook_without_a_new_change() {
        let dir = tempfile::tempdir().unwrap();
        let config = hook_config(dir.path(), &signal_hook(dir.path(), "SIGTERM"));
        let d = Arc::new(Delivery::new(&config));
        std::fs::write(dir.path().join("a.crt"), "new").unwrap();
        owe(&d, dir.path(), b"old");
        {
            let held = d.hold("i1").await;
            d.deliver(&config.instances[0], &held, Vec::new())
                .await
                .unwrap()
                .unwrap_err();
        }
        let child = target(dir.path(), 0);
        let start = tokio::time::Instant::now();
        let task = tokio::spawn(retry_owed(Arc::clone(&d)));
        // Virtual time: the retry is due within 1 s; real time bounds the wait.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while d.ledger().exists("i1") {
            assert!(
                std::time::Instant::now() < deadline,
                "the owed hook was never retried"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
        assert!(
            start.elapsed() >= Duration::from_millis(500),
            "retried too early"
        );
        assert_eq!(killed_by(child), Some(Signal::SIGTERM as i32));
        assert!(lock(&d.pending).is_empty());
    }

    #[test]
    fn a_pidfile_of_64_bytes_is_read_and_one_of_65_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let r = ReloadSignal {
            signal: Signal::SIGTERM,
            pidfile: d.path().join("app.pid"),
            any_owner: false,
        };
        // The PID at the very end: a shorter read would name another process.
        let child = target(d.path(), 64);
        send_signal(&r).unwrap();
        assert_eq!(killed_by(child), Some(Signal::SIGTERM as i32));
        let child = target(d.path(), 65);
        let e = send_signal(&r).unwrap_err().to_string();
        assert!(e.contains("larger than 64 bytes"), "{e}");
        assert_eq!(
            killed_by_now(child),
            None,
            "signalled through a refused pidfile"
        );
    }

    /// Kills `child` and says whether it had died of a signal before.
    fn killed_by_now(mut child: std::process::Child) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        let before = child.try_wait().unwrap().and_then(|s| s.signal());
        let _ = child.kill();
        let _ = child.wait();
        before
    }

    #[test]
    fn a_zombie_is_not_running() {
        let d = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        // Exited, not yet reaped: its PID and /proc entry are still there.
        let zombie = (0..500).any(|_| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.contains(") Z ") || {
                std::thread::sleep(Duration::from_millis(10));
                false
            }
        });
        assert!(zombie, "process {pid} never became a zombie");
        std::fs::write(d.path().join("app.pid"), format!("{pid}\n")).unwrap();
        let r = ReloadSignal {
            signal: Signal::SIGTERM,
            pidfile: d.path().join("app.pid"),
            any_owner: false,
        };
        let e = send_signal(&r).unwrap_err().to_string();
        child.wait().unwrap();
        assert!(e.contains(&format!("process {pid} is not running")), "{e}");
    }

    #[tokio::test]
    async fn a_line_is_logged_up_to_4_kib() {
        let mut out = vec![b'a'; 4096];
        out.push(b'\n');
        out.extend(vec![b'b'; 4097]);
        out.push(b'\n');
        let budget = Arc::new(Budget::new("orders".into()));
        let last = log_lines(&out[..], Arc::clone(&budget), "stderr").await;
        assert_eq!(last, ["a".repeat(4096), "b".repeat(4096)]);
        assert!(budget.cut.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn exactly_64_kib_of_output_is_logged_and_one_byte_more_is_cut() {
        // 1024 lines of 63 bytes and a newline: 64 KiB.
        let full: Vec<u8> = [[b'x'; 63].as_slice(), b"\n"].concat().repeat(1024);
        let budget = Arc::new(Budget::new("orders".into()));
        log_lines(&full[..], Arc::clone(&budget), "stdout").await;
        assert!(!budget.cut.load(Ordering::Relaxed), "64 KiB must fit");
        assert!(!budget.take(1));
        let budget = Arc::new(Budget::new("orders".into()));
        let over = [full.as_slice(), b"\n"].concat();
        log_lines(&over[..], Arc::clone(&budget), "stdout").await;
        assert!(budget.cut.load(Ordering::Relaxed), "64 KiB + 1 was not cut");
    }

    #[test]
    fn a_line_that_exactly_fits_is_not_cut() {
        let mut got: Vec<(Vec<u8>, bool)> = Vec::new();
        let mut lines = Lines::new(4);
        lines.push(b"abcd\nab\r\n", &mut |l: &[u8], cut| {
            got.push((l.to_vec(), cut))
        });
        assert!(!lines.pending());
        assert_eq!(got, [(b"abcd".to_vec(), false), (b"ab".to_vec(), false)]);
    }

    #[test]
    fn the_cut_is_said_once_per_run() {
        use tracing_subscriber::fmt::MakeWriter;
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                lock(&self.0).extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl<'a> MakeWriter<'a> for Buf {
            type Writer = Buf;
            fn make_writer(&'a self) -> Buf {
                self.clone()
            }
        }
        let buf = Buf::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(false)
            .finish();
        let said = || {
            String::from_utf8_lossy(&lock(&buf.0))
                .matches("hook output cut")
                .count()
        };
        let budget = Budget::new("orders".into());
        tracing::subscriber::with_default(subscriber, || {
            budget.note_cut();
            assert_eq!(said(), 1, "the first cut was not said");
            budget.note_cut();
            budget.note_cut();
        });
        assert_eq!(said(), 1, "the cut was said more than once");
    }

    /// A pipe that returns these reads, then its end.
    struct Script(std::collections::VecDeque<std::io::Result<&'static [u8]>>);

    impl AsyncRead for Script {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(match self.0.pop_front() {
                Some(Ok(bytes)) => {
                    buf.put_slice(bytes);
                    Ok(())
                }
                Some(Err(e)) => Err(e),
                None => Ok(()),
            })
        }
    }

    #[tokio::test]
    async fn an_interrupted_read_goes_on_and_a_failed_one_stops() {
        use std::io::{Error, ErrorKind};
        let script = Script(
            [
                Err(Error::from(ErrorKind::Interrupted)),
                Ok(b"one\n".as_slice()),
                Err(Error::other("broken pipe")),
                Ok(b"two\n".as_slice()),
            ]
            .into(),
        );
        let budget = Arc::new(Budget::new("orders".into()));
        assert_eq!(log_lines(script, budget, "stderr").await, ["one"]);
    }

    #[tokio::test]
    async fn a_failed_command_fails_the_action_and_no_action_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let config = hook_config(dir.path(), "on_change = [\"/bin/false\"]");
        let e = run_action(&config.instances[0], &call(), &[])
            .await
            .unwrap_err();
        assert!(
            e.to_string().starts_with("/bin/false exited with status 1"),
            "{e}"
        );
        let config = hook_config(dir.path(), "");
        run_action(&config.instances[0], &call(), &[])
            .await
            .unwrap();
    }
}
