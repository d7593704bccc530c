//! Reload hooks: running an instance's `on_change` command after its files
//! changed.
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

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use crate::certcheck::{Sha256Digest, hex};

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

    #[tokio::test]
    async fn notify_socket_is_not_inherited() {
        // SAFETY: tests in this module do not read NOTIFY_SOCKET concurrently.
        unsafe { std::env::set_var("NOTIFY_SOCKET", "/run/systemd/notify") };
        let r = run(
            &sh("test -z \"$NOTIFY_SOCKET\""),
            Duration::from_secs(5),
            &call(),
        )
        .await;
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        r.unwrap();
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
