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
//! | `DDS_CERTSYNC_SERVICE` | the instance's `service`: `dds`, `rds`, `geminidb`, `opengauss` or `dcs` |
//! | `DDS_CERTSYNC_CHANGED` | the changed paths, newline-separated |
//! | `DDS_CERTSYNC_OLD_SHA256` | their previous SHA-256, same order (empty for a new file) |
//! | `DDS_CERTSYNC_NEW_SHA256` | their new SHA-256, same order |
//! | `DDS_CERTSYNC_REASON` | why it runs: `updated`, `previous-dropped` or `restored-after-crash` ([`HookReason`]) |
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
//! Retries ([`retry_owed`]) take the instance (its name and service
//! included) from the current config
//! ([`Delivery::set_config`], called on every reload), never from a snapshot:
//! a corrected hook is retried at once with the new settings, and the retries
//! of a removed instance stop (its record stays in `state_dir`, so the
//! instance still owes its hook if it comes back).
//!
//! The parts: running a command and capturing its output (`command.rs`),
//! sending a signal (`signal.rs`), delivering and retrying (`delivery.rs`);
//! this file holds what they share (the call, the error, the hidden
//! variables) and [`run_action`], which picks the command or the signal.

mod command;
mod delivery;
mod signal;
#[cfg(test)]
mod tests;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use crate::certcheck::hex;
use crate::config::{Auth, Config, Instance, SecretSource};

pub use command::{LINE_CAP, VOLUME_CAP, run};
pub use delivery::{Delivery, Held, RETRY_BASE, drop_unwanted, retry_delay, retry_owed};
pub use signal::{PIDFILE_LIMIT, check_target, send_signal};

/// The prefix of the official SDKs' variables, never passed to a hook.
const SDK_ENV_PREFIX: &str = "HUAWEICLOUD_SDK_";

/// One changed file, for the hook's environment (recorded by the ledger).
pub use crate::ledger::{ChangedFile, HookReason};

/// What a hook is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCall {
    pub instance_id: String,
    pub instance_name: String,
    /// The instance's service, by its config name.
    pub service: &'static str,
    pub changed: Vec<ChangedFile>,
    pub reason: HookReason,
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
            ("DDS_CERTSYNC_SERVICE", self.service.to_string()),
            (
                "DDS_CERTSYNC_CHANGED",
                join(&|c| c.path.display().to_string()),
            ),
            (
                "DDS_CERTSYNC_OLD_SHA256",
                join(&|c| c.old.as_ref().map(hex).unwrap_or_default()),
            ),
            ("DDS_CERTSYNC_NEW_SHA256", join(&|c| hex(&c.new))),
            ("DDS_CERTSYNC_REASON", self.reason.as_str().to_string()),
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
        .chain(
            (config.instances.iter())
                .flat_map(|i| &i.outputs)
                .filter_map(|o| o.truststore.as_ref().map(|t| &t.password)),
        )
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
