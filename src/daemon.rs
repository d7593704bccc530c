//! The daemon: the scheduler, fed by the config, stopped by signals, watched
//! by systemd and by the HTTP probes, and keeping its files in place.
//!
//! Tasks, all on the one runtime thread:
//!
//! * the **scheduler** ([`scheduler::run`]): each round of an instance is one
//!   [`Syncer::sync`], followed by [`after_round`]: metrics, the expiry
//!   warning, systemd's `STATUS=` (and `READY=1` once every instance has had
//!   its first round and every file is in place), and the verified content
//!   handed to the [`Healer`];
//! * the **heartbeat**: nudges the scheduler loop with [`Command::Ping`] and,
//!   when the loop answered, sends `WATCHDOG=1` (if systemd asked for it); the
//!   loop's turns are also what `/healthz` reports;
//! * the **control loop** ([`control`]): SIGHUP, file system events (the
//!   config's directory and the outputs' directories), a periodic sweep as a
//!   fallback for lost events. It reloads the config and restores outputs;
//! * the **server** (`[server] listen`), see [`crate::server`];
//! * hook retries, see [`crate::hooks::retry_owed`].
//!
//! A reload is transactional: the new config is loaded and validated, its
//! fallible parts (a new API client, built on the blocking pool within
//! `CLIENT_BUILD_LIMIT`; a new listener) are prepared, and only then is
//! anything switched. A config that fails is logged, naming the key,
//! and the running one stays. (One exception, for a `server.listen` that
//! moves to another address on the same port: the old listener is closed
//! before the new one is bound, and bound again if that fails.) What changed
//! is [`reload::diff`]'s to decide.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{self, Config, ConfigError, Instance};
use crate::heal::{self, Healer, Verdict};
use crate::health::{self, Health};
use crate::metrics;
use crate::output;
use crate::reload::{self, SyncNow};
use crate::scheduler::{self, Command, Observer, RoundFn, RoundResult, Timing, sleep_until_opt};
use crate::server;
use crate::service::{self, notify};
use crate::sync::{Report, Syncer};
use crate::watch::{self, ContentTracker, Watcher};

/// How long rounds in progress may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(700);
/// File events are gathered this long before acting on them.
const SETTLE: Duration = Duration::from_millis(100);
/// The fallback check of the config and the outputs, for lost events.
const SWEEP: Duration = Duration::from_secs(30);
/// How long a reload may take to build the new API client (it reads
/// `cloud.ca_file` and the system's CA roots) before it is refused.
const CLIENT_BUILD_LIMIT: Duration = Duration::from_secs(20);

fn index(c: &Config) -> HashMap<String, Instance> {
    c.instances
        .iter()
        .map(|i| (i.id.clone(), i.clone()))
        .collect()
}

/// What the tasks share.
struct Shared {
    config_path: PathBuf,
    dry_run: bool,
    /// Replaced when a reload changes `[cloud]`, `[auth]` or `sync.timeout`.
    syncer: RwLock<Arc<Syncer>>,
    instances: RwLock<HashMap<String, Instance>>,
    /// The running config, for [`reload::diff`].
    config: Mutex<Config>,
    healer: Mutex<Healer>,
    /// Per instance: held by its round, tried by a restore, so that a
    /// restore never races a round's own writes.
    file_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    book: Mutex<Book>,
    health: Arc<Health>,
    /// Tells the control loop that an instance's round ended.
    round_ended: mpsc::UnboundedSender<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn file_lock(&self, instance_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(
            lock(&self.file_locks)
                .entry(instance_id.to_string())
                .or_default(),
        )
    }
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
        Some(addr) => Some(bind(&config_path, addr).await?),
        None => None,
    };
    for inst in &config.instances {
        metrics::global().declare_instance(inst);
    }
    let (tx, rx) = mpsc::channel(8);
    let (ended_tx, ended_rx) = mpsc::unbounded_channel();
    let health = Arc::new(Health::new(&config));
    let shared = Arc::new(Shared {
        config_path: config_path.clone(),
        dry_run: syncer.dry_run,
        syncer: RwLock::new(Arc::clone(&syncer)),
        instances: RwLock::new(index(&config)),
        config: Mutex::new(config.clone()),
        healer: Mutex::new(Healer::default()),
        file_locks: Mutex::new(HashMap::new()),
        book: Mutex::new(Book::default()),
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
    let heartbeat = tokio::spawn(heartbeat(Arc::clone(&health), tx.clone(), watchdog));
    let tracker = ContentTracker::new(Some(&config_bytes));
    let control = control(Arc::clone(&shared), tx, ended_rx, server, tracker);

    let round = round_fn(Arc::clone(&shared));
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

async fn bind(
    config_path: &Path,
    addr: std::net::SocketAddr,
) -> Result<tokio::net::TcpListener, ConfigError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| listen_error(config_path, addr, &e))
}

fn listen_error(config_path: &Path, addr: std::net::SocketAddr, e: &std::io::Error) -> ConfigError {
    ConfigError {
        file: config_path.to_path_buf(),
        key: Some("server.listen".into()),
        line: None,
        message: format!("cannot listen on {addr}: {e}"),
    }
}

fn round_fn(shared: Arc<Shared>) -> RoundFn {
    Arc::new(move |key: String| {
        let shared = Arc::clone(&shared);
        let inst = shared
            .instances
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let syncer = Arc::clone(&shared.syncer.read().unwrap_or_else(|e| e.into_inner()));
        Box::pin(async move {
            let Some(inst) = inst else {
                return RoundResult {
                    ok: true,
                    retry_after: None,
                };
            };
            let files = shared.file_lock(&inst.id).lock_owned().await;
            lock(&shared.healer).begin_round(&inst.id);
            let report = syncer.sync(&inst).await;
            let ok = report.ok();
            if ok {
                tracing::debug!(instance = %inst.label(), instance_id = %inst.id, "round ok: {}", report.summary());
            } else {
                tracing::warn!(instance = %inst.label(), instance_id = %inst.id, "round failed: {}", report.summary());
            }
            after_round(&shared, &inst, &report).await;
            drop(files);
            // Now that the round's writes are done: check for changes made meanwhile.
            let _ = shared.round_ended.send(inst.id.clone());
            RoundResult {
                ok,
                retry_after: report.retry_after,
            }
        })
    })
}

/// Everything that follows a round: metrics, expiry warning, the healer,
/// systemd status and readiness.
async fn after_round(shared: &Arc<Shared>, inst: &Instance, report: &Report) {
    metrics::global().record_round(&inst.id, report, health::unix_now());
    let keys: Vec<String> = shared
        .instances
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .cloned()
        .collect();
    // READY=1 is considered once every instance has had a round; from then
    // on until it is sent, each round checks every file.
    let check_ready = {
        let mut book = lock(&shared.book);
        book.record(&inst.id, inst.label(), report);
        !book.ready_sent && book.all_synced(&keys)
    };

    let (inst_c, dry_run) = (inst.clone(), shared.dry_run);
    let mut held = if dry_run {
        Vec::new()
    } else {
        heal::verified_outputs(inst, report)
    };
    let h = Arc::clone(&shared.health);
    let disk = tokio::task::spawn_blocking(move || {
        heal::capture_ownership(&mut held);
        let warning = h.warning();
        let files = health::inspect_outputs(&health::targets_of(&inst_c));
        let now = health::unix_now();
        let verdict = health::judge(&files, now, warning);
        server::update_file_gauges(metrics::global(), &files, &verdict);
        for (t, not_after) in &verdict.expiring {
            if *not_after <= now {
                tracing::error!(
                    instance = %inst_c.label(),
                    instance_id = %inst_c.id,
                    category = %t.category,
                    path = %t.path.display(),
                    not_after = %crate::certcheck::format_time(*not_after),
                    "the certificate on disk has expired; the cloud has not rotated it yet, or it cannot be fetched"
                );
                continue;
            }
            tracing::warn!(
                instance = %inst_c.label(),
                instance_id = %inst_c.id,
                category = %t.category,
                path = %t.path.display(),
                not_after = %crate::certcheck::format_time(*not_after),
                "the certificate on disk expires within sync.expiry_warning ({}); the cloud has not rotated it yet",
                humantime::format_duration(warning)
            );
        }
        let files_ready = check_ready && (dry_run || h.assess().1.ready());
        (held, files_ready)
    })
    .await;
    let (held, files_ready) = disk.unwrap_or_default();
    lock(&shared.healer).end_round(&inst.id, held);

    let mut book = lock(&shared.book);
    let line = book.status_line(&keys);
    if files_ready && !book.ready_sent {
        book.ready_sent = true;
        tracing::info!("first round done and every file in place: ready");
        notify::ready(&line);
    } else {
        notify::status(&line);
    }
}

/// What systemd's `STATUS=` says: per instance, how its last round went.
#[derive(Debug, Default)]
struct Book {
    /// Instance ID → (label, ok, summary of the last round).
    last: HashMap<String, (String, bool, String)>,
    last_key: Option<String>,
    ready_sent: bool,
}

impl Book {
    fn record(&mut self, id: &str, label: &str, report: &Report) {
        self.last.insert(
            id.to_string(),
            (label.to_string(), report.ok(), report.summary()),
        );
        self.last_key = Some(id.to_string());
    }

    fn all_synced(&self, keys: &[String]) -> bool {
        keys.iter().all(|k| self.last.contains_key(k))
    }

    fn retain(&mut self, keys: &[String]) {
        self.last.retain(|k, _| keys.contains(k));
    }

    /// One line: counts, then the latest round. Pure.
    fn status_line(&self, keys: &[String]) -> String {
        let ok = keys
            .iter()
            .filter(|k| self.last.get(*k).is_some_and(|l| l.1))
            .count();
        let failing = keys
            .iter()
            .filter(|k| self.last.get(*k).is_some_and(|l| !l.1))
            .count();
        let pending = keys.len() - ok - failing;
        let mut s = format!(
            "{} instance{}: {ok} in sync, {failing} failing",
            keys.len(),
            if keys.len() == 1 { "" } else { "s" }
        );
        if pending > 0 {
            s.push_str(&format!(", {pending} not synced yet"));
        }
        if let Some((label, _, summary)) = self.last_key.as_ref().and_then(|k| self.last.get(k)) {
            let mut summary = summary.clone();
            if summary.len() > 160 {
                let mut cut = 160;
                while !summary.is_char_boundary(cut) {
                    cut -= 1;
                }
                summary.truncate(cut);
                summary.push('…');
            }
            s.push_str(&format!("; last: {label}: {summary}"));
        }
        s
    }
}

/// Proves the scheduler loop alive: nudges it, and when it turns, pings the
/// systemd watchdog.
async fn heartbeat(health: Arc<Health>, tx: mpsc::Sender<Command>, watchdog: Option<Duration>) {
    let period = health::heartbeat_period(watchdog);
    let mut ticks = health.subscribe();
    let mut missed = 0u32;
    loop {
        tokio::time::sleep(period).await;
        ticks.borrow_and_update();
        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Command::Ping) {
            return;
        }
        let turned = matches!(
            tokio::time::timeout(period, ticks.changed()).await,
            Ok(Ok(()))
        );
        if turned {
            missed = 0;
            if watchdog.is_some() {
                notify::watchdog();
            }
        } else {
            missed += 1;
            if missed == 3 {
                tracing::warn!(
                    "the scheduler loop has not answered for {:?}; no watchdog pings until it does",
                    period * 6
                );
            }
        }
    }
}

/// The control loop: reloads and restores.
async fn control(
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
    mut round_ended: mpsc::UnboundedReceiver<String>,
    server: Option<JoinHandle<()>>,
    tracker: ContentTracker,
) {
    let mut hup = service::hangups();
    let (mut watcher, mut events) = match Watcher::new() {
        Ok((w, rx)) => (Some(w), Some(rx)),
        Err(e) => {
            tracing::warn!(
                "cannot watch files ({e}); config changes need SIGHUP, and outputs are checked every {}",
                humantime::format_duration(SWEEP)
            );
            (None, None)
        }
    };
    let mut ctl = Control {
        tracker,
        read_error: None,
        shared,
        tx,
        server,
    };
    ctl.rewatch(watcher.as_mut(), false);
    // An edit between the start-up load and the watches is seen now, not at
    // the next edit: the tracker holds what was parsed.
    ctl.config_maybe_changed(watcher.as_mut()).await;

    let mut pending: HashSet<PathBuf> = HashSet::new();
    let mut settle_at: Option<Instant> = None;
    let mut sweep = tokio::time::interval_at(Instant::now() + SWEEP, SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(_) = recv_hup(&mut hup) => {
                tracing::info!(config = %ctl.shared.config_path.display(), "SIGHUP received, reloading the config");
                ctl.reload(true, watcher.as_mut(), None).await;
            }
            Some(p) = recv_event(&mut events) => {
                pending.insert(p);
                settle_at.get_or_insert_with(|| Instant::now() + SETTLE);
            }
            _ = sleep_until_opt(settle_at), if settle_at.is_some() => {
                settle_at = None;
                let touched = std::mem::take(&mut pending);
                if touched.iter().any(|p| ctl.affects_config(p)) {
                    ctl.config_maybe_changed(watcher.as_mut()).await;
                }
                let mut seen = HashSet::new();
                let candidates: Vec<_> = {
                    let healer = lock(&ctl.shared.healer);
                    touched
                        .iter()
                        .flat_map(|p| healer.candidates(p))
                        .filter(|(p, _)| seen.insert(p.clone()))
                        .collect()
                };
                if ctl.heal(candidates).await {
                    // A restore may have re-created a deleted directory: watch the new one.
                    ctl.rewatch(watcher.as_mut(), true);
                }
            }
            Some(id) = round_ended.recv() => {
                ctl.rewatch(watcher.as_mut(), false);
                let candidates: Vec<_> = lock(&ctl.shared.healer)
                    .all()
                    .into_iter()
                    .filter(|(_, h)| h.instance_id == id)
                    .collect();
                if ctl.heal(candidates).await {
                    ctl.rewatch(watcher.as_mut(), true);
                }
            }
            _ = sweep.tick() => {
                ctl.rewatch(watcher.as_mut(), true);
                ctl.config_maybe_changed(watcher.as_mut()).await;
                let all = lock(&ctl.shared.healer).all();
                if ctl.heal(all).await {
                    ctl.rewatch(watcher.as_mut(), true);
                }
            }
        }
    }
}

struct Control {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
    tracker: ContentTracker,
    /// The last failure to read the config file, so that it is logged once,
    /// not at every event and sweep.
    read_error: Option<String>,
    server: Option<JoinHandle<()>>,
}

impl Control {
    /// The directories to watch: the config's (and its symlink target's) and
    /// every output's.
    fn wanted_dirs(&self) -> HashSet<PathBuf> {
        let mut dirs: HashSet<PathBuf> = self.config_dirs().into_iter().collect();
        let instances = self
            .shared
            .instances
            .read()
            .unwrap_or_else(|e| e.into_inner());
        for i in instances.values() {
            for o in &i.outputs {
                dirs.insert(output::parent_dir(&o.path));
            }
        }
        dirs
    }

    fn config_dirs(&self) -> Vec<PathBuf> {
        let p = &self.shared.config_path;
        let mut v = vec![output::parent_dir(p)];
        if let Ok(real) = std::fs::canonicalize(p) {
            let d = output::parent_dir(&real);
            if !v.contains(&d) {
                v.push(d);
            }
        }
        v
    }

    fn affects_config(&self, event_path: &Path) -> bool {
        let p = &self.shared.config_path;
        watch::may_affect(event_path, p)
            || std::fs::canonicalize(p).is_ok_and(|real| watch::may_affect(event_path, &real))
    }

    /// Watches what should be watched; `force` re-arms existing watches too
    /// (a directory may have been deleted and re-created).
    fn rewatch(&self, watcher: Option<&mut Watcher>, force: bool) {
        let Some(w) = watcher else { return };
        let wanted = self.wanted_dirs();
        let stale: Vec<PathBuf> = w.dirs().difference(&wanted).cloned().collect();
        for d in stale {
            w.unwatch_dir(&d);
        }
        for d in wanted {
            if (force || !w.dirs().contains(&d))
                && let Err(e) = w.watch_dir(&d)
            {
                // A directory that does not exist yet is watched once a round created it.
                tracing::debug!(dir = %d.display(), "cannot watch: {e}");
            }
        }
    }

    /// Reads the config file (off the runtime thread, bounded, refusing what
    /// is not a regular file) and reloads it if its content changed. A file
    /// that cannot be read is no change: the running config stays.
    async fn config_maybe_changed(&mut self, watcher: Option<&mut Watcher>) {
        let bytes = match config::read_async(self.shared.config_path.clone()).await {
            Ok(b) => {
                self.read_error = None;
                b
            }
            Err(e) => {
                let text = e.to_string();
                if self.read_error.as_ref() != Some(&text) {
                    tracing::warn!("{text}; keeping the running config");
                    self.read_error = Some(text);
                }
                return;
            }
        };
        if self.tracker.update(Some(&bytes)) {
            tracing::info!(config = %self.shared.config_path.display(), "the config file changed, reloading it");
            self.reload(false, watcher, Some(bytes)).await;
        }
    }

    /// Applies the config in `bytes` (else read now) whole or not at all.
    /// `forced` (SIGHUP) also syncs every instance now.
    async fn reload(
        &mut self,
        forced: bool,
        watcher: Option<&mut Watcher>,
        bytes: Option<Vec<u8>>,
    ) {
        let ready = lock(&self.shared.book).ready_sent;
        if ready {
            notify::reloading();
        }
        self.reload_inner(forced, bytes).await;
        self.rewatch(watcher, false);
        if ready {
            let keys: Vec<String> = lock(&self.shared.config)
                .instances
                .iter()
                .map(|i| i.id.clone())
                .collect();
            let line = lock(&self.shared.book).status_line(&keys);
            notify::ready(&line);
        }
    }

    async fn reload_inner(&mut self, forced: bool, bytes: Option<Vec<u8>>) {
        let path = self.shared.config_path.clone();
        let bytes = match bytes {
            Some(b) => b,
            None => match config::read_async(path.clone()).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!("reload refused, keeping the running config: {e}");
                    return;
                }
            },
        };
        // Keep the tracker on what is parsed, so one change is one reload.
        self.tracker.update(Some(&bytes));
        let loaded = tokio::task::spawn_blocking(move || config::load_from(&path, &bytes)).await;
        let new = match loaded {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::error!("reload refused, keeping the running config: {e}");
                return;
            }
            Err(e) => {
                tracing::error!("reload refused, keeping the running config: {e}");
                return;
            }
        };
        let old = lock(&self.shared.config).clone();
        let changes = reload::diff(&old, &new);
        if changes.is_empty() && !forced {
            tracing::info!("config reloaded: nothing changed");
            return;
        }

        // The fallible parts first: nothing is switched if one fails.
        let new_syncer = if changes.client {
            // The hook delivery carries over to the new client.
            let old_delivery = Arc::clone(
                &self
                    .shared
                    .syncer
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .delivery,
            );
            // Reading `ca_file` and the system's roots is file I/O: on the
            // blocking pool, and bounded, so that neither the endpoints nor
            // the rounds wait on a stalled file.
            let (config, dry_run) = (new.clone(), self.shared.dry_run);
            let build =
                tokio::task::spawn_blocking(move || Syncer::new(&config, dry_run, old_delivery));
            match tokio::time::timeout(CLIENT_BUILD_LIMIT, build).await {
                Ok(Ok(Ok(s))) => Some(Arc::new(s)),
                Ok(Ok(Err(e))) => {
                    tracing::error!("reload refused, keeping the running config: {e}");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::error!(
                        "reload refused, keeping the running config: building the client failed: {e}"
                    );
                    return;
                }
                Err(_) => {
                    tracing::error!(
                        "reload refused, keeping the running config: building the client (reading cloud.ca_file and the system's CA roots) took longer than {}",
                        humantime::format_duration(CLIENT_BUILD_LIMIT)
                    );
                    return;
                }
            }
        } else {
            None
        };
        let new_listener = match (changes.server, new.server.listen) {
            (true, Some(addr)) => match self.bind_moving(old.server.listen, addr).await {
                Ok(l) => Some(Some(l)),
                Err(e) => {
                    tracing::error!("reload refused, keeping the running config: {e}");
                    return;
                }
            },
            (true, None) => Some(None),
            (false, _) => None,
        };

        // Switch.
        if let Some(s) = new_syncer {
            *self
                .shared
                .syncer
                .write()
                .unwrap_or_else(|e| e.into_inner()) = s;
        }
        if let Some(listener) = new_listener {
            if let Some(old) = self.server.take() {
                old.abort();
            }
            self.server =
                listener.map(|l| tokio::spawn(server::serve(l, Arc::clone(&self.shared.health))));
        }
        *self
            .shared
            .instances
            .write()
            .unwrap_or_else(|e| e.into_inner()) = index(&new);
        // Hook retries take their instance from the current config.
        self.shared
            .syncer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .delivery
            .set_config(&new);
        lock(&self.shared.healer).retain_config(&new.instances);
        self.shared.health.set_config(&new);
        let keys: Vec<String> = new.instances.iter().map(|i| i.id.clone()).collect();
        lock(&self.shared.book).retain(&keys);
        // Counters of removed instances stay (they only grow); new or
        // changed instances get theirs at 0.
        for id in &changes.removed {
            metrics::global().forget_instance(id);
        }
        for inst in &new.instances {
            metrics::global().declare_instance(inst);
        }
        if old.sync.state_dir != new.sync.state_dir {
            tracing::warn!("sync.state_dir changes take effect at the next start");
        }
        *lock(&self.shared.config) = new.clone();

        let _ = self
            .tx
            .send(Command::SetTiming(
                Timing::from(&new.sync),
                new.sync.concurrency,
            ))
            .await;
        let _ = self.tx.send(Command::SetInstances(keys)).await;
        match changes.sync_now(forced) {
            SyncNow::All => {
                let _ = self.tx.send(Command::SyncAllNow).await;
            }
            SyncNow::Some(ids) if !ids.is_empty() => {
                let _ = self.tx.send(Command::SyncNow(ids)).await;
            }
            SyncNow::Some(_) => {}
        }
        tracing::info!(
            instances = new.instances.len(),
            "config reloaded: {}",
            changes.summary()
        );
    }

    /// Binds the new `server.listen`. When our own listener on `old` is in
    /// the way (the same port on another address: `127.0.0.1:P` →
    /// `0.0.0.0:P`), it is closed first; if the new address still cannot be
    /// bound, the old one is bound again and the error returned, so a refused
    /// reload leaves the endpoints where they were.
    async fn bind_moving(
        &mut self,
        old: Option<std::net::SocketAddr>,
        addr: std::net::SocketAddr,
    ) -> Result<tokio::net::TcpListener, ConfigError> {
        let path = self.shared.config_path.clone();
        let err = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => e,
        };
        let in_the_way = err.kind() == std::io::ErrorKind::AddrInUse
            && self.server.is_some()
            && old.is_some_and(|o| o.port() == addr.port());
        let (Some(old), true) = (old, in_the_way) else {
            return Err(listen_error(&path, addr, &err));
        };
        if let Some(running) = self.server.take() {
            running.abort();
            // Once the task is gone, so is its listener.
            let _ = running.await;
        }
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Ok(l),
            Err(e) => {
                match tokio::net::TcpListener::bind(old).await {
                    Ok(l) => {
                        self.server = Some(tokio::spawn(server::serve(
                            l,
                            Arc::clone(&self.shared.health),
                        )));
                    }
                    Err(e2) => tracing::error!(
                        "cannot listen on {old} again: {e2}; the endpoints are off until a reload succeeds"
                    ),
                }
                Err(listen_error(&path, addr, &e))
            }
        }
    }

    /// Checks the given held outputs and restores those deleted or changed.
    /// Returns whether anything was restored.
    async fn heal(&self, candidates: Vec<(PathBuf, heal::Held)>) -> bool {
        let mut restored_any = false;
        for (path, held) in candidates {
            // A round of this instance is writing: it is checked again when it ends.
            let Ok(files) = self.shared.file_lock(&held.instance_id).try_lock_owned() else {
                continue;
            };
            let shared = Arc::clone(&self.shared);
            let (p, h) = (path.clone(), held.clone());
            let result = tokio::task::spawn_blocking(move || {
                let _files = files;
                heal::check_and_restore(&p, &h, || {
                    lock(&shared.healer).still_current(&p, &h.sha256)
                })
            })
            .await;
            let Ok((verdict, restored)) = result else {
                continue;
            };
            let what = match verdict {
                Verdict::Deleted => "was deleted",
                Verdict::Modified => "was changed by someone else",
                Verdict::Link => "was replaced by a symbolic link (not followed)",
                Verdict::Intact => continue,
                Verdict::Unreadable => {
                    tracing::warn!(instance_id = %held.instance_id, path = %path.display(), "cannot read the output to check it; leaving it alone");
                    continue;
                }
            };
            match restored {
                Some(Ok(())) => {
                    restored_any = true;
                    metrics::global().restored(&held.instance_id, held.category);
                    tracing::warn!(
                        instance_id = %held.instance_id,
                        category = %held.category,
                        path = %path.display(),
                        sha256 = %crate::certcheck::hex(&held.sha256),
                        "restored: the file {what}; wrote back the last verified certificate"
                    );
                }
                Some(Err(e)) => tracing::error!(
                    instance_id = %held.instance_id,
                    path = %path.display(),
                    "the file {what}, and restoring it failed: {e}"
                ),
                None => {}
            }
        }
        restored_any
    }
}

async fn recv_hup(hup: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match hup {
        Some(h) => h.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_event(events: &mut Option<mpsc::UnboundedReceiver<PathBuf>>) -> Option<PathBuf> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ok: bool) -> Report {
        let mut r = Report::default();
        if !ok {
            r.failures.push(crate::sync::Failure {
                reason: "api_status",
                message: "HTTP 503".into(),
            });
        }
        r
    }

    #[test]
    fn status_line_counts_and_names_the_latest_round() {
        let keys: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        let mut book = Book::default();
        assert_eq!(
            book.status_line(&keys),
            "3 instances: 0 in sync, 0 failing, 3 not synced yet"
        );
        book.record("a", "orders", &report(true));
        book.record("b", "b", &report(false));
        assert!(!book.all_synced(&keys));
        let line = book.status_line(&keys);
        assert_eq!(
            line,
            "3 instances: 1 in sync, 1 failing, 1 not synced yet; last: b: HTTP 503"
        );
        book.record("c", "c", &report(true));
        assert!(book.all_synced(&keys));
        book.retain(&keys[..1]);
        assert_eq!(
            book.status_line(&keys[..1]),
            "1 instance: 1 in sync, 0 failing"
        );
    }

    #[test]
    fn a_long_summary_is_cut_on_a_char_boundary() {
        let mut book = Book::default();
        let mut r = report(false);
        r.failures[0].message = "é".repeat(200);
        book.record("a", "a", &r);
        let line = book.status_line(&["a".to_string()]);
        assert!(line.ends_with('…'));
        assert!(line.len() < 260);
    }
}
