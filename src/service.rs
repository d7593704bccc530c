//! Service plumbing: signals.
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
