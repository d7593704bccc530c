//! The control loop: SIGHUP, file system events (the config's directory and
//! the outputs' directories, gathered for `SETTLE`), the end of a round, and a
//! periodic sweep as a fallback for lost events. It reloads the config (see
//! [`super::transaction`]) and restores outputs (see [`super::restore`]), and
//! keeps the set of watched directories current.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config;
use crate::output;
use crate::scheduler::{Command, sleep_until_opt};
use crate::service;
use crate::watch::{self, ContentTracker, Watcher};

use super::state::{Daemon, lock};
use super::{SETTLE, SWEEP};

/// The control loop: reloads and restores.
pub(super) async fn control(
    daemon: Arc<Daemon>,
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
        daemon,
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
                tracing::info!(config = %ctl.daemon.config_path.display(), "SIGHUP received, reloading the config");
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
                    let healer = lock(&ctl.daemon.healer);
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
                let candidates: Vec<_> = lock(&ctl.daemon.healer)
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
                let all = lock(&ctl.daemon.healer).all();
                if ctl.heal(all).await {
                    ctl.rewatch(watcher.as_mut(), true);
                }
            }
        }
    }
}

pub(super) struct Control {
    pub(super) daemon: Arc<Daemon>,
    pub(super) tx: mpsc::Sender<Command>,
    pub(super) tracker: ContentTracker,
    /// The last failure to read the config file, so that it is logged once,
    /// not at every event and sweep.
    pub(super) read_error: Option<String>,
    pub(super) server: Option<JoinHandle<()>>,
}

impl Control {
    /// The directories to watch: the config's (and its symlink target's) and
    /// every output's.
    fn wanted_dirs(&self) -> HashSet<PathBuf> {
        let mut dirs: HashSet<PathBuf> = self.config_dirs().into_iter().collect();
        let instances = self
            .daemon
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
        let p = &self.daemon.config_path;
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
        let p = &self.daemon.config_path;
        watch::may_affect(event_path, p)
            || std::fs::canonicalize(p).is_ok_and(|real| watch::may_affect(event_path, &real))
    }

    /// Watches what should be watched; `force` re-arms existing watches too
    /// (a directory may have been deleted and re-created).
    pub(super) fn rewatch(&self, watcher: Option<&mut Watcher>, force: bool) {
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
        let bytes = match config::read_async(self.daemon.config_path.clone()).await {
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
            tracing::info!(config = %self.daemon.config_path.display(), "the config file changed, reloading it");
            self.reload(false, watcher, Some(bytes)).await;
        }
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
