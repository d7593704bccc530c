//! The daemon: the scheduler, fed by the config, stopped by signals, watched
//! by systemd and by the HTTP probes, and keeping its files in place.
//!
//! Tasks, all on the one runtime thread:
//!
//! * the **scheduler** ([`scheduler::run`]): each round of an instance is one
//!   [`Syncer::sync`](crate::sync::Syncer::sync), followed by `after_round`
//!   ([`round`]): metrics, the expiry warning, systemd's `STATUS=` (and
//!   `READY=1` once every instance has had its first round and every file is
//!   in place), and the verified content handed to the healer;
//! * the **heartbeat** ([`heartbeat`]): nudges the scheduler loop with
//!   [`Command::Ping`](crate::scheduler::Command::Ping) and, when the loop
//!   answered, sends `WATCHDOG=1` (if systemd asked for it); the loop's turns
//!   are also what `/healthz` reports;
//! * the **control loop** ([`control`]): SIGHUP, file system events (the
//!   config's directory and the outputs' directories), a periodic sweep as a
//!   fallback for lost events. It reloads the config ([`transaction`]) and
//!   restores outputs ([`restore`]);
//! * the **server** (`[server] listen`), see [`crate::server`];
//! * hook retries, see [`crate::hooks::retry_owed`].
//!
//! What the tasks share is a [`state::Daemon`]; what systemd's `STATUS=`
//! says is kept by [`progress::Progress`].

mod control;
mod heartbeat;
mod progress;
mod restore;
mod round;
mod state;
mod transaction;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{Config, ConfigError};
use crate::heal::Healer;
use crate::health::Health;
use crate::metrics;
use crate::scheduler::{self, Observer, RoundResult, Timing};
use crate::server;
use crate::service::{self, notify};
use crate::sync::Syncer;
use crate::watch::ContentTracker;

use progress::Progress;
use state::{Daemon, index};

/// How long rounds in progress may take to finish after SIGTERM.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_millis(700);
/// File events are gathered this long before acting on them.
pub(crate) const SETTLE: Duration = Duration::from_millis(100);
/// The fallback check of the config and the outputs, for lost events.
pub(crate) const SWEEP: Duration = Duration::from_secs(30);
/// How long a reload may take to build the new API client (it reads
/// `cloud.ca_file` and the system's CA roots) before it is refused.
pub(crate) const CLIENT_BUILD_LIMIT: Duration = Duration::from_secs(20);

/// Runs until SIGTERM or SIGINT. Fails only at start, when `server.listen`
/// cannot be bound. `config_bytes` are the bytes `config` was parsed from:
/// the config file's change tracker starts from them, so an edit made after
/// they were read is a change, applied once the watches are armed.
pub async fn run(
    config_path: PathBuf,
    config: Config,
    config_bytes: Vec<u8>,
    syncer: Arc<Syncer>,
) -> Result<(), ConfigError> {
    let listener = match config.server.listen {
        Some(addr) => Some(bind(&config_path, addr).await?),
        None => None,
    };
    for inst in &config.instances {
        metrics::global().declare_instance(inst);
    }
    let (tx, rx) = mpsc::channel(8);
    let (ended_tx, ended_rx) = mpsc::unbounded_channel();
    let health = Arc::new(Health::new(&config));
    let daemon = Arc::new(Daemon {
        config_path: config_path.clone(),
        dry_run: syncer.dry_run,
        syncer: RwLock::new(Arc::clone(&syncer)),
        instances: RwLock::new(index(&config)),
        config: Mutex::new(config.clone()),
        healer: Mutex::new(Healer::default()),
        file_locks: Mutex::new(HashMap::new()),
        progress: Mutex::new(Progress::default()),
        health: Arc::clone(&health),
        round_ended: ended_tx,
    });
    let watchdog = notify::watchdog_timeout();
    tracing::info!(
        instances = config.instances.len(),
        interval = %humantime::format_duration(config.sync.interval),
        credentials = %syncer.client.credentials().describe(),
        dry_run = syncer.dry_run,
        watchdog = %watchdog.map(|d| humantime::format_duration(d).to_string()).unwrap_or_else(|| "off".into()),
        "daemon started"
    );

    // Start-up work before the first round goes here.
    // Failed hooks are retried on their own backoff (see hooks::retry_owed).
    tokio::spawn(crate::hooks::retry_owed(Arc::clone(&syncer.delivery)));
    let server = listener.map(|l| tokio::spawn(server::serve(l, Arc::clone(&health))));
    let heartbeat = tokio::spawn(heartbeat::heartbeat(
        Arc::clone(&health),
        tx.clone(),
        watchdog,
    ));
    let tracker = ContentTracker::new(Some(&config_bytes));
    let control = control::control(Arc::clone(&daemon), tx, ended_rx, server, tracker);

    let round = round::round_fn(Arc::clone(&daemon));
    let mut observer = DaemonObserver { health };
    let setup = scheduler::Setup {
        keys: config.instances.iter().map(|i| i.id.clone()).collect(),
        timing: Timing::from(&config.sync),
        concurrency: config.sync.concurrency,
        grace: SHUTDOWN_GRACE,
    };
    let shutdown = async {
        service::shutdown_signal().await;
        notify::stopping();
    };
    let sched = scheduler::run(setup, round, rx, &mut observer, shutdown);
    tokio::select! {
        _ = sched => {}
        _ = control => {}
    }
    heartbeat.abort();
    tracing::info!("stopped");
    Ok(())
}

pub(crate) async fn bind(
    config_path: &Path,
    addr: std::net::SocketAddr,
) -> Result<tokio::net::TcpListener, ConfigError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| listen_error(config_path, addr, &e))
}

pub(crate) fn listen_error(
    config_path: &Path,
    addr: std::net::SocketAddr,
    e: &std::io::Error,
) -> ConfigError {
    ConfigError {
        file: config_path.to_path_buf(),
        key: Some("server.listen".into()),
        line: None,
        message: format!("cannot listen on {addr}: {e}"),
    }
}

struct DaemonObserver {
    health: Arc<Health>,
}

impl Observer for DaemonObserver {
    fn round_done(&mut self, key: &str, result: &RoundResult, next_in: Duration) {
        let next = humantime::format_duration(Duration::from_secs(next_in.as_secs().max(1)));
        if result.ok {
            tracing::debug!(instance_id = %key, "next sync in {next}");
        } else {
            tracing::info!(instance_id = %key, "retrying in {next}");
        }
    }

    fn tick(&mut self) {
        self.health.tick();
    }
}
