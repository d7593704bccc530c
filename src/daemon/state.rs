//! What the daemon's tasks share, in two kinds.
//!
//! * A [`Generation`]: everything a reload replaces (the config, the
//!   instance table, the API client with its hook delivery). It is immutable:
//!   a reload builds a new one beside it and [`Daemon::swap`]s it in, one
//!   store behind one lock. A reader takes the current one once
//!   ([`Daemon::current`]) and reads everything from that value, so it never
//!   sees half of one config and half of another, whatever awaits in between
//!   and on whatever runtime: there is nothing to see half-switched.
//! * What outlives generations, because it is about the files and the
//!   rounds, not about a config: the outputs table (last verified bytes and observations), the per-instance
//!   file locks, the [`Progress`] behind `STATUS=`, the health view behind the
//!   endpoints. After a swap these are trimmed to the new generation's
//!   instances (see [`super::transaction`]); until then they may still name a
//!   removed instance, which no reader of the new generation asks about.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::mpsc;

use crate::config::{Config, Instance};
use crate::health::Health;
use crate::outputs::Outputs;
use crate::service::Notifier;
use crate::sync::{Report, Syncer};

use super::Event;
use super::progress::Progress;

/// Runs one round of an instance with a generation's syncer: in the binary
/// [`Syncer::sync`]; in the tests, a stand-in round.
pub type SyncFn = Arc<
    dyn Fn(Arc<Syncer>, Instance) -> Pin<Box<dyn Future<Output = Report> + Send>> + Send + Sync,
>;

/// The round function of the binary: [`Syncer::sync`].
pub fn real_sync() -> SyncFn {
    Arc::new(|syncer: Arc<Syncer>, inst: Instance| {
        Box::pin(async move { syncer.sync(&inst).await })
    })
}

/// Everything a reload replaces, as one immutable value.
pub(super) struct Generation {
    /// The config this generation was built from, for [`crate::reload::diff`].
    pub(super) config: Config,
    /// Instance ID → instance, as `config` has them.
    pub(super) instances: HashMap<String, Instance>,
    /// The API client and the hook delivery (which carries over to every
    /// later generation's syncer: it holds the ledger and the retries).
    pub(super) syncer: Arc<Syncer>,
}

impl Generation {
    pub(super) fn new(config: Config, syncer: Arc<Syncer>) -> Generation {
        let instances = config
            .instances
            .iter()
            .map(|i| (i.id.clone(), i.clone()))
            .collect();
        Generation {
            config,
            instances,
            syncer,
        }
    }

    /// The instance IDs, in the config's order.
    pub(super) fn keys(&self) -> Vec<String> {
        self.config.instances.iter().map(|i| i.id.clone()).collect()
    }
}

/// What the daemon's tasks share.
pub(super) struct Daemon {
    pub(super) config_path: PathBuf,
    pub(super) dry_run: bool,
    /// The current generation. Written only by [`Daemon::swap`].
    generation: RwLock<Arc<Generation>>,
    /// The outputs table (the one [`Health`] judges readiness over): what
    /// a restore writes back, and what was last seen at each path.
    pub(super) outputs: Arc<Outputs>,
    /// Per instance: held by its round, tried by a restore, so that a
    /// restore never races a round's own writes.
    file_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub(super) progress: Mutex<Progress>,
    pub(super) health: Arc<Health>,
    pub(super) notifier: Arc<dyn Notifier>,
    /// Runs a round's sync.
    pub(super) sync: SyncFn,
    /// The control loop's events; rounds send [`Event::RoundEnded`] here.
    pub(super) events: mpsc::UnboundedSender<Event>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What [`Daemon::new`] starts from.
pub(super) struct Start {
    pub(super) config_path: PathBuf,
    pub(super) generation: Generation,
    pub(super) health: Arc<Health>,
    pub(super) notifier: Arc<dyn Notifier>,
    pub(super) sync: SyncFn,
    pub(super) events: mpsc::UnboundedSender<Event>,
}

impl Daemon {
    pub(super) fn new(s: Start) -> Daemon {
        let progress = Progress::with_keys(&s.generation.keys());
        Daemon {
            config_path: s.config_path,
            dry_run: s.generation.syncer.dry_run,
            generation: RwLock::new(Arc::new(s.generation)),
            outputs: Arc::clone(s.health.outputs()),
            file_locks: Mutex::new(HashMap::new()),
            progress: Mutex::new(progress),
            health: s.health,
            notifier: s.notifier,
            sync: s.sync,
            events: s.events,
        }
    }

    /// The current generation: take it once, read everything from it.
    pub(super) fn current(&self) -> Arc<Generation> {
        Arc::clone(&self.generation.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Makes `next` the current generation, in one store, and returns it.
    /// Readers that took the old one keep it until they are done.
    pub(super) fn swap(&self, next: Generation) -> Arc<Generation> {
        let next = Arc::new(next);
        *self.generation.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&next);
        next
    }

    pub(super) fn file_lock(&self, instance_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(
            lock(&self.file_locks)
                .entry(instance_id.to_string())
                .or_default(),
        )
    }
}
