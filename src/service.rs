//! Service plumbing: signals, and the messages to systemd ([`notify`]).
//!
//! SIGTERM and SIGINT end the daemon (and an unfinished `--once`); SIGHUP asks
//! for a config reload. A replacement under way always completes first: it
//! runs on the blocking pool, which the runtime drains before exit.

use tokio::signal::unix::{SignalKind, signal};

/// Resolves at the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
        _ = int.recv() => tracing::info!("SIGINT received, stopping"),
    }
}

/// A stream of SIGHUPs.
pub fn hangups() -> Option<tokio::signal::unix::Signal> {
    signal(SignalKind::hangup()).ok()
}

/// Where the daemon's readiness, status and liveness go: systemd in the
/// binary ([`Systemd`]), a recorder in the tests.
pub trait Notifier: Send + Sync {
    /// `READY=1` with a status line.
    fn ready(&self, status: &str);
    /// `STATUS=` (one line).
    fn status(&self, status: &str);
    /// `RELOADING=1`.
    fn reloading(&self);
    /// `STOPPING=1`.
    fn stopping(&self);
    /// `WATCHDOG=1`.
    fn watchdog(&self);
}

/// The [`Notifier`] that talks to systemd through [`notify`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Systemd;

impl Notifier for Systemd {
    fn ready(&self, status: &str) {
        notify::ready(status);
    }
    fn status(&self, status: &str) {
        notify::status(status);
    }
    fn reloading(&self) {
        notify::reloading();
    }
    fn stopping(&self) {
        notify::stopping();
    }
    fn watchdog(&self) {
        notify::watchdog();
    }
}

/// Messages to systemd (`sd_notify`). Each does nothing when `NOTIFY_SOCKET`
/// is unset; a failure to send is logged at debug level and otherwise
/// ignored, since systemd then acts on its own timeouts. `NOTIFY_SOCKET`
/// stays in our environment (every message needs it) and is removed from the
/// hooks' (see [`crate::hooks`]).
pub mod notify {
    use std::time::Duration;

    use sd_notify::NotifyState;

    fn send(states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!("sd_notify failed: {e}");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(&one_line(status))]);
    }

    /// `STATUS=` (one line).
    pub fn status(status: &str) {
        send(&[NotifyState::Status(&one_line(status))]);
    }

    /// `RELOADING=1`, with the `MONOTONIC_USEC=` that `Type=notify-reload`
    /// requires.
    pub fn reloading() {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now]),
            Err(_) => send(&[NotifyState::Reloading]),
        }
    }

    /// `STOPPING=1`.
    pub fn stopping() {
        send(&[NotifyState::Stopping]);
    }

    /// `WATCHDOG=1`.
    pub fn watchdog() {
        send(&[NotifyState::Watchdog]);
    }

    /// The watchdog timeout systemd set for this process, if any
    /// (`WATCHDOG_USEC`, and `WATCHDOG_PID` naming us or unset).
    pub fn watchdog_timeout() -> Option<Duration> {
        sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
    }

    /// Newlines would end the message's field; keep one line.
    fn one_line(s: &str) -> String {
        s.replace(['\n', '\r'], " ")
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn status_stays_on_one_line() {
            assert_eq!(super::one_line("a\nb\r\nc"), "a b  c");
        }
    }
}
