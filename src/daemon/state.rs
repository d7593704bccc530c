//! What the daemon's tasks share: the running config and API client, the
//! instance table, the healer, the per-instance file locks, the progress
//! behind `STATUS=`, and the health view behind the endpoints.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::mpsc;

use crate::config::{Config, Instance};
use crate::heal::Healer;
use crate::health::Health;
use crate::sync::Syncer;

use super::progress::Progress;

pub(super) fn index(c: &Config) -> HashMap<String, Instance> {
    c.instances
        .iter()
        .map(|i| (i.id.clone(), i.clone()))
        .collect()
}

/// What the tasks share.
pub(super) struct Daemon {
    pub(super) config_path: PathBuf,
    pub(super) dry_run: bool,
    /// Replaced when a reload changes `[cloud]`, `[auth]` or `sync.timeout`.
    pub(super) syncer: RwLock<Arc<Syncer>>,
    pub(super) instances: RwLock<HashMap<String, Instance>>,
    /// The running config, for [`reload::diff`].
    pub(super) config: Mutex<Config>,
    pub(super) healer: Mutex<Healer>,
    /// Per instance: held by its round, tried by a restore, so that a
    /// restore never races a round's own writes.
    pub(super) file_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub(super) progress: Mutex<Progress>,
    pub(super) health: Arc<Health>,
    /// Tells the control loop that an instance's round ended.
    pub(super) round_ended: mpsc::UnboundedSender<String>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Daemon {
    pub(super) fn file_lock(&self, instance_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(
            lock(&self.file_locks)
                .entry(instance_id.to_string())
                .or_default(),
        )
    }
}
