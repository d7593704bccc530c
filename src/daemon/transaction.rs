//! The reload transaction: [`prepare`], then [`Control::commit`].
//!
//! * **Load**: the new config is read and validated whole (off the runtime
//!   thread). A config that fails is logged, naming the key, and the running
//!   one stays.
//! * **Prepare**: [`crate::reload::diff`] decides what changed; the fallible
//!   parts are done beside the running generation: a new API client when
//!   `[cloud]`, `[auth]` or `sync.timeout` changed (built on the blocking pool
//!   within [`CLIENT_BUILD_LIMIT`]), a new listener when `server.listen` did.
//!   Any failure refuses the reload, and nothing has been switched. (One
//!   exception, for a `server.listen` that moves to another address on the
//!   same port: the old listener is closed before the new one is bound, and
//!   bound again if that fails; see [`Endpoints::bind_moving`].)
//! * **Commit**: the new [`Generation`] is swapped in with one store; then
//!   the endpoints move, what outlives generations is trimmed to the new
//!   instances, and the scheduler is told (new timing, the instance set, who
//!   syncs now).

use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::{self, Config};
use crate::metrics;
use crate::reload::{self, Changes, SyncNow};
use crate::scheduler::{Command, Timing};
use crate::sync::Syncer;

use super::CLIENT_BUILD_LIMIT;
use super::control::Control;
use super::endpoints::Endpoints;
use super::state::{Generation, lock};

/// A reload with every fallible part done, ready to commit.
pub(super) struct Prepared {
    pub(super) next: Generation,
    pub(super) changes: Changes,
    /// When `server.listen` changed: the new listener, or none (endpoints off).
    pub(super) listener: Option<Option<TcpListener>>,
}

/// Prepares the switch from `current` to `new`: `None` when nothing changed
/// and the reload is not `forced`. An error says why the reload is refused;
/// nothing was switched.
pub(super) async fn prepare(
    current: &Generation,
    new: Config,
    forced: bool,
    endpoints: &mut Endpoints,
    config_path: &Path,
) -> Result<Option<Prepared>, String> {
    let changes = reload::diff(&current.config, &new);
    if changes.is_empty() && !forced {
        return Ok(None);
    }
    let syncer = if changes.client {
        build_syncer(current, &new).await?
    } else {
        Arc::clone(&current.syncer)
    };
    let listener = match (changes.server, new.server.listen) {
        (true, Some(addr)) => Some(Some(
            endpoints
                .bind_moving(config_path, addr)
                .await
                .map_err(|e| e.to_string())?,
        )),
        (true, None) => Some(None),
        (false, _) => None,
    };
    Ok(Some(Prepared {
        next: Generation::new(new, syncer),
        changes,
        listener,
    }))
}

/// A new client for `new`; the hook delivery and the API observer carry
/// over. Reading
/// `ca_file` and the system's roots is file I/O: on the blocking pool, and
/// bounded, so that neither the endpoints nor the rounds wait on a stalled
/// file.
async fn build_syncer(current: &Generation, new: &Config) -> Result<Arc<Syncer>, String> {
    let delivery = Arc::clone(&current.syncer.delivery);
    let observer = current.syncer.client.observer().clone();
    let (config, dry_run) = (new.clone(), current.syncer.dry_run);
    let build =
        tokio::task::spawn_blocking(move || Syncer::new(&config, dry_run, delivery, observer));
    match tokio::time::timeout(CLIENT_BUILD_LIMIT, build).await {
        Ok(Ok(Ok(s))) => Ok(Arc::new(s)),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(e)) => Err(format!("building the client failed: {e}")),
        Err(_) => Err(format!(
            "building the client (reading cloud.ca_file and the system's CA roots) took longer than {}",
            humantime::format_duration(CLIENT_BUILD_LIMIT)
        )),
    }
}

impl Control {
    /// Applies the config in `bytes` (else read now) whole or not at all.
    /// `forced` (SIGHUP) also syncs every instance now.
    pub(super) async fn reload(&mut self, forced: bool, bytes: Option<Vec<u8>>) {
        let ready = lock(&self.daemon.progress).ready_sent;
        if ready {
            self.daemon.notifier.reloading();
        }
        self.reload_inner(forced, bytes).await;
        self.rewatch(false).await;
        if ready {
            let line = lock(&self.daemon.progress).status_line();
            self.daemon.notifier.ready(&line);
        }
    }

    async fn reload_inner(&mut self, forced: bool, bytes: Option<Vec<u8>>) {
        let Some(new) = self.load(bytes).await else {
            return;
        };
        let current = self.daemon.current();
        let path = self.daemon.config_path.clone();
        match prepare(&current, new, forced, &mut self.endpoints, &path).await {
            Err(e) => tracing::error!("reload refused, keeping the running config: {e}"),
            Ok(None) => tracing::info!("config reloaded: nothing changed"),
            Ok(Some(prepared)) => self.commit(&current, prepared, forced).await,
        }
    }

    /// Reads (unless given) and validates the config; `None` (logged) when
    /// it cannot be used.
    async fn load(&mut self, bytes: Option<Vec<u8>>) -> Option<Config> {
        let path = self.daemon.config_path.clone();
        let bytes = match bytes {
            Some(b) => b,
            None => match config::read_async(path.clone()).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!("reload refused, keeping the running config: {e}");
                    return None;
                }
            },
        };
        // Keep the tracker on what is parsed, so one change is one reload.
        self.tracker.update(Some(&bytes));
        match tokio::task::spawn_blocking(move || config::load_from(&path, &bytes)).await {
            Ok(Ok(c)) => Some(c),
            Ok(Err(e)) => {
                tracing::error!("reload refused, keeping the running config: {e}");
                None
            }
            Err(e) => {
                tracing::error!("reload refused, keeping the running config: {e}");
                None
            }
        }
    }

    /// Switches to the prepared generation. Cannot fail.
    pub(super) async fn commit(&mut self, old: &Generation, p: Prepared, forced: bool) {
        let Prepared {
            next,
            changes,
            listener,
        } = p;
        // The switch, in one store: from here on every round, restore and
        // status line takes the new generation whole; one that took the old
        // one finishes with it.
        let g = self.daemon.swap(next);
        if let Some(listener) = listener {
            self.endpoints.replace(listener);
        }
        self.trim(old, &g);
        if old.config.sync.state_dir != g.config.sync.state_dir {
            tracing::warn!("sync.state_dir changes take effect at the next start");
        }
        let s = &self.scheduler;
        let (timing, concurrency) = (Timing::from(&g.config.sync), g.config.sync.concurrency);
        let _ = s.send(Command::SetTiming(timing, concurrency)).await;
        let _ = s.send(Command::SetInstances(g.keys())).await;
        match changes.sync_now(forced) {
            SyncNow::All => {
                let _ = s.send(Command::SyncAllNow).await;
            }
            SyncNow::Some(ids) if !ids.is_empty() => {
                let _ = s.send(Command::SyncNow(ids)).await;
            }
            SyncNow::Some(_) => {}
        }
        let plan = crate::probe::Plan::of(&g.config);
        let _ = self.probes.send(crate::probe::Event::Plan(plan));
        tracing::info!(
            instances = g.config.instances.len(),
            "config reloaded: {}",
            changes.summary()
        );
    }

    /// Brings what outlives generations in line with `g`.
    fn trim(&self, old: &Generation, g: &Generation) {
        // Hook retries take their instance from the current config.
        g.syncer.delivery.set_config(&g.config);
        self.daemon.outputs.lock().set_config(&g.config);
        lock(&self.daemon.progress).set_keys(&g.keys());
        super::tally::declare_config(metrics::global(), Some(&old.config), &g.config);
    }
}
