//! Running a hook's command: argv without a shell, in a process group of
//! its own, with the daemon's credentials kept out of its environment, a
//! timeout that kills the whole group, and its output read as bytes and
//! logged within bounds ([`LINE_CAP`] a line, [`VOLUME_CAP`] a run).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::{HookCall, HookError, is_hidden};

/// How many of the hook's last stderr lines an error report keeps.
const STDERR_TAIL: usize = 5;
/// A line of hook output longer than this is cut to it.
pub const LINE_CAP: usize = 4 * 1024;
/// At most this much of a hook's output (stdout and stderr together) is
/// logged per run; the rest is read and dropped.
pub const VOLUME_CAP: usize = 64 * 1024;

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

/// Runs `argv` for `call`, waiting at most `timeout`. The daemon's variables
/// that [`is_hidden`] (with `hidden`) are not passed on.
pub async fn run(
    argv: &[String],
    timeout: Duration,
    call: &HookCall,
    hidden: &[String],
) -> Result<(), HookError> {
    let program = argv.first().cloned().unwrap_or_default();
    let mut child = command(argv, call, hidden)
        .spawn()
        .map_err(|e| HookError::Spawn {
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
        Err(HookError::Failed {
            program,
            status: describe_exit(status),
            stderr,
        })
    }
}

/// The hook's process: `argv` without a shell, stdin closed, stdout and
/// stderr piped to us, in a process group of its own (so a timeout kills
/// what it started), with the call's variables and without the daemon's
/// hidden ones.
fn command(argv: &[String], call: &HookCall, hidden: &[String]) -> Command {
    let mut cmd = Command::new(argv.first().map_or("", String::as_str));
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
    cmd
}

/// How a process that did not succeed ended, in words.
fn describe_exit(status: std::process::ExitStatus) -> String {
    match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        (None, None) => "failed".to_string(),
    }
}

/// The output budget of one hook run, shared by its stdout and stderr.
pub(super) struct Budget {
    pub(super) instance: String,
    pub(super) left: AtomicUsize,
    pub(super) cut: AtomicBool,
}

impl Budget {
    pub(super) fn new(instance: String) -> Budget {
        Budget {
            instance,
            left: AtomicUsize::new(VOLUME_CAP),
            cut: AtomicBool::new(false),
        }
    }

    /// Takes `n` bytes from the budget; false if they do not fit.
    pub(super) fn take(&self, n: usize) -> bool {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }

    /// Says once per run that output was cut.
    pub(super) fn note_cut(&self) {
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
pub(super) struct Lines {
    cap: usize,
    pub(super) line: Vec<u8>,
    /// The current line was longer than `cap`; the rest of it is skipped.
    over: bool,
}

impl Lines {
    pub(super) fn new(cap: usize) -> Lines {
        Lines {
            cap,
            line: Vec::new(),
            over: false,
        }
    }

    /// Feeds `bytes`; `emit(line, was_cut)` gets each finished line without
    /// its newline (and `\r`).
    pub(super) fn push(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(&[u8], bool)) {
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
    pub(super) fn finish(&mut self, emit: &mut impl FnMut(&[u8], bool)) {
        if self.line.last() == Some(&b'\r') && !self.over {
            self.line.pop();
        }
        emit(&self.line, self.over);
        self.line.clear();
        self.over = false;
    }

    pub(super) fn pending(&self) -> bool {
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
pub(super) async fn log_lines(
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
