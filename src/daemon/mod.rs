//! The daemon: the scheduler, fed by the config, stopped by signals, watched
//! by systemd and by the HTTP probes, and keeping its files in place.
//!
//! [`run`] wires the real world ([`Sources::system`], systemd, the bound
//! listener) into [`run_with`], which takes every dependency from its caller,
//! as [`scheduler::run`] does, so that reloads, restores, readiness and
//! `READY=1`/`STATUS=` are tested in process, in paused time.
//!
//! State (see [`state`]): one immutable [`state::Generation`] (config,
//! instance table, API client) swapped whole by a reload, and what outlives
//! generations (held content, file locks, progress, health view).
//!
//! Tasks, all on the one runtime thread, and what each owns:
//!
//! * the **scheduler** ([`scheduler::run`]) owns the timers; each round of an
//!   instance ([`round`]) takes one generation, syncs, then `after_round`:
//!   metrics, the expiry warning, systemd's `STATUS=` (and `READY=1` once
//!   every instance has had its first round and every file is in place), and
//!   the verified content handed to the healer;
//! * the **control loop** ([`control`]) owns the config's change tracker,
//!   the watches and the endpoints' task: it acts on one stream of
//!   [`Event`]s (SIGHUP, file events, round ends, the sweep), reloads the
//!   config ([`transaction`]) and restores outputs ([`restore`]);
//! * the **heartbeat** ([`heartbeat`]): nudges the scheduler loop with
//!   [`Command::Ping`](crate::scheduler::Command::Ping) and, when the loop
//!   answered, sends `WATCHDOG=1` (if systemd asked for it); the loop's turns
//!   are also what `/healthz` reports;
//! * the **server** (`[server] listen`), see [`crate::server`];
//! * hook retries, see [`crate::hooks::retry_owed`];
//! * the **probes** ([`crate::probe::run`]), told of each round's end and
//!   each applied reload; one that finds the file does not verify the
//!   server's chain sends the scheduler
//!   [`Command::SyncSoon`](crate::scheduler::Command::SyncSoon).

mod control;
mod endpoints;
mod heartbeat;
mod progress;
mod restore;
mod round;
mod sources;
mod state;
mod tally;
#[cfg(test)]
mod tests;
mod transaction;
mod watching;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError};
use crate::health::Health;
use crate::metrics;
use crate::probe;
use crate::scheduler::{self, Observer, RoundResult, Timing};
use crate::service::{self, Notifier, Systemd, notify};
use crate::sync::Syncer;
use crate::watch::ContentTracker;

pub use sources::{Event, Sources};
pub use state::{SyncFn, real_sync};

use control::Control;
use endpoints::Endpoints;
use state::{Daemon, Generation, Start};
use watching::WatchSet;

/// How long rounds in progress may take to finish after SIGTERM.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_millis(700);
/// File events are gathered this long before acting on them.
pub(crate) const SETTLE: Duration = Duration::from_millis(100);
/// The fallback check of the config and the outputs, for lost events.
pub(crate) const SWEEP: Duration = Duration::from_secs(30);
/// How long a reload may take to build the new API client (it reads
/// `cloud.ca_file` and the system's CA roots) before it is refused.
pub(crate) const CLIENT_BUILD_LIMIT: Duration = Duration::from_secs(20);

/// What the daemon's API client reports to: its metrics. (`--once` counts
/// into no registry: it gives its client none.)
pub fn api_observer() -> crate::cloud::ApiObserver {
    crate::cloud::ApiObserver::new(|status| metrics::global().api_request(status))
}

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
        Some(addr) => Some(endpoints::bind(&config_path, addr).await?),
        None => None,
    };
    let deps = Deps {
        config_path,
        config,
        config_bytes,
        syncer,
        sync: real_sync(),
        notifier: Arc::new(Systemd),
        listener,
        watchdog: notify::watchdog_timeout(),
        sources: Sources::system(),
    };
    run_with(deps, service::shutdown_signal()).await;
    Ok(())
}

/// What the daemon runs with. [`run`] makes the binary's; the tests make
/// their own (a recording notifier, a stand-in round, events they send).
pub struct Deps {
    pub config_path: PathBuf,
    pub config: Config,
    /// The bytes `config` was parsed from.
    pub config_bytes: Vec<u8>,
    pub syncer: Arc<Syncer>,
    /// Runs a round's sync with a generation's syncer.
    pub sync: SyncFn,
    /// Hears `READY=1`, `STATUS=`, `RELOADING=1`, `STOPPING=1`, `WATCHDOG=1`.
    pub notifier: Arc<dyn Notifier>,
    /// `server.listen`, bound.
    pub listener: Option<TcpListener>,
    /// The watchdog timeout systemd set, if any.
    pub watchdog: Option<Duration>,
    /// The control loop's events.
    pub sources: Sources,
}

/// Runs the daemon on `deps` until `shutdown` resolves; then rounds in
/// progress get [`SHUTDOWN_GRACE`] to finish.
pub async fn run_with(deps: Deps, shutdown: impl Future<Output = ()>) {
    let Deps {
        config_path,
        config,
        config_bytes,
        syncer,
        sync,
        notifier,
        listener,
        watchdog,
        sources,
    } = deps;
    tally::declare_config(metrics::global(), None, &config);
    let (tx, rx) = mpsc::channel(8);
    let health = Arc::new(Health::new(&config));
    let (probes, probe_tx) = start_probes(&config, tx.clone());
    let setup = scheduler::Setup {
        keys: config.instances.iter().map(|i| i.id.clone()).collect(),
        timing: Timing::from(&config.sync),
        concurrency: config.sync.concurrency,
        grace: SHUTDOWN_GRACE,
    };
    log_start(&config, &syncer, watchdog);
    // Failed hooks are retried on their own backoff (see hooks::retry_owed);
    // how each retry ended is an event of the control loop.
    let delivered = sources.sender.clone();
    let retries = tokio::spawn(crate::hooks::retry_owed(
        Arc::clone(&syncer.delivery),
        move |inst, result| {
            let event = Event::HookDelivered(inst.id.clone(), tally::hook_result(result));
            let _ = delivered.send(event);
        },
    ));
    let daemon = Arc::new(Daemon::new(Start {
        config_path: config_path.clone(),
        generation: Generation::new(config, syncer),
        health: Arc::clone(&health),
        notifier: Arc::clone(&notifier),
        sync,
        events: sources.sender,
    }));
    let heartbeat = tokio::spawn(heartbeat::heartbeat(
        Arc::clone(&health),
        tx.clone(),
        watchdog,
        Arc::clone(&notifier),
    ));
    let ctl = Control {
        daemon: Arc::clone(&daemon),
        scheduler: tx,
        tracker: ContentTracker::new(Some(&config_bytes)),
        read_error: None,
        endpoints: Endpoints::start(listener, Arc::clone(&health)),
        watch: WatchSet::new(config_path, sources.watcher),
        probes: probe_tx.clone(),
    };
    let control = control::control(ctl, sources.events, sources.sweep);

    let round = round::round_fn(daemon);
    let mut observer = DaemonObserver {
        health,
        probes: probe_tx,
    };
    let shutdown = async {
        shutdown.await;
        notifier.stopping();
    };
    let sched = scheduler::run(setup, round, rx, &mut observer, shutdown);
    tokio::select! {
        _ = sched => {}
        _ = control => {}
    }
    heartbeat.abort();
    retries.abort();
    probes.abort();
    tracing::info!("stopped");
}

fn log_start(config: &Config, syncer: &Syncer, watchdog: Option<Duration>) {
    tracing::info!(
        instances = config.instances.len(),
        interval = %humantime::format_duration(config.sync.interval),
        credentials = %syncer.client.credentials().describe(),
        dry_run = syncer.dry_run,
        watchdog = %watchdog.map(|d| humantime::format_duration(d).to_string()).unwrap_or_else(|| "off".into()),
        "daemon started"
    );
}

/// Starts the probes ([`probe::run`]), which are told of every round's end
/// and every applied reload through the sender returned; a failed one asks
/// the scheduler for a sync.
fn start_probes(
    config: &Config,
    scheduler: mpsc::Sender<scheduler::Command>,
) -> (JoinHandle<()>, mpsc::UnboundedSender<probe::Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(probe::run(
        probe::Plan::of(config),
        Arc::new(probe::Tls),
        rx,
        scheduler,
        metrics::global(),
    ));
    (task, tx)
}

/// The scheduler's observer: logs when each instance runs next, and turns
/// every turn of the loop into liveness for `/healthz` and the heartbeat.
struct DaemonObserver {
    health: Arc<Health>,
    probes: mpsc::UnboundedSender<probe::Event>,
}

impl Observer for DaemonObserver {
    fn round_done(&mut self, key: &str, result: &RoundResult, next_in: Duration) {
        // The round's writes are done: the probes check the file now.
        let _ = self.probes.send(probe::Event::RoundDone(key.to_string()));
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
