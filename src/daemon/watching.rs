//! The watched directories: the config's (and its symlink target's) and
//! every output's, kept current by the control loop.
//!
//! Resolving the config's real path and arming watches are system calls on
//! paths others control (a hung network file system blocks them), so they
//! run on the blocking pool: the watcher is moved there and back.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::output;
use crate::watch::{self, Watcher};

/// The watcher and what it should watch.
pub(super) struct WatchSet {
    config_path: PathBuf,
    /// `None` when watching is not available, or stopped.
    watcher: Option<Watcher>,
}

impl WatchSet {
    pub(super) fn new(config_path: PathBuf, watcher: Option<Watcher>) -> WatchSet {
        WatchSet {
            config_path,
            watcher,
        }
    }

    /// Watches the config's directories and those of `config`'s outputs, and
    /// nothing else; `force` re-arms existing watches too (a directory may
    /// have been deleted and re-created).
    pub(super) async fn refresh(&mut self, config: &Config, force: bool) {
        let Some(mut w) = self.watcher.take() else {
            return;
        };
        let mut wanted: HashSet<PathBuf> = config
            .instances
            .iter()
            .flat_map(|i| &i.outputs)
            .map(|o| output::parent_dir(&o.path))
            .collect();
        let path = self.config_path.clone();
        let done = tokio::task::spawn_blocking(move || {
            wanted.extend(config_dirs(&path));
            rewatch(&mut w, &wanted, force);
            w
        })
        .await;
        match done {
            Ok(w) => self.watcher = Some(w),
            Err(e) => stopped(&e),
        }
    }

    /// After a round: watches those of `dirs` (its outputs' directories)
    /// not watched yet, as the round may have created one; if the config's
    /// real directory is not watched (its symlink moved), everything is
    /// brought up to date as [`WatchSet::refresh`] does. A round's end costs
    /// what its instance has, not what the whole config has.
    pub(super) async fn round_ended(&mut self, config: &Config, dirs: Vec<PathBuf>) {
        let Some(mut w) = self.watcher.take() else {
            return;
        };
        let path = self.config_path.clone();
        let done = tokio::task::spawn_blocking(move || {
            let moved = config_dirs(&path).iter().any(|d| !w.dirs().contains(d));
            let new: HashSet<PathBuf> = (dirs.into_iter())
                .filter(|d| !w.dirs().contains(d))
                .collect();
            rewatch_only(&mut w, &new);
            (w, moved)
        })
        .await;
        match done {
            Ok((w, moved)) => {
                self.watcher = Some(w);
                if moved {
                    self.refresh(config, false).await;
                }
            }
            Err(e) => stopped(&e),
        }
    }

    /// Whether an event on one of `touched` may have changed the config file
    /// (at its path, or at the file its path resolves to now).
    pub(super) async fn affects_config(&self, touched: &HashSet<PathBuf>) -> bool {
        let p = &self.config_path;
        if touched.iter().any(|t| watch::may_affect(t, p)) {
            return true;
        }
        let path = p.clone();
        let real = tokio::task::spawn_blocking(move || std::fs::canonicalize(path).ok())
            .await
            .ok()
            .flatten();
        real.is_some_and(|real| touched.iter().any(|t| watch::may_affect(t, &real)))
    }
}

/// The config's directory, and its real file's if that differs. Blocking.
fn config_dirs(p: &Path) -> Vec<PathBuf> {
    let mut v = vec![output::parent_dir(p)];
    if let Ok(real) = std::fs::canonicalize(p) {
        let d = output::parent_dir(&real);
        if !v.contains(&d) {
            v.push(d);
        }
    }
    v
}

fn stopped(e: &tokio::task::JoinError) {
    tracing::warn!(
        "file watching stopped ({e}); config changes need SIGHUP, and outputs are checked every {}",
        humantime::format_duration(super::SWEEP)
    );
}

/// Makes `w` watch exactly `wanted`. Blocking.
fn rewatch(w: &mut Watcher, wanted: &HashSet<PathBuf>, force: bool) {
    let stale: Vec<PathBuf> = w.dirs().difference(wanted).cloned().collect();
    for d in stale {
        w.unwatch_dir(&d);
    }
    let todo: HashSet<PathBuf> = (wanted.iter())
        .filter(|d| force || !w.dirs().contains(*d))
        .cloned()
        .collect();
    rewatch_only(w, &todo);
}

/// Watches each of `dirs`, leaving the others as they are. Blocking.
fn rewatch_only(w: &mut Watcher, dirs: &HashSet<PathBuf>) {
    for d in dirs {
        if let Err(e) = w.watch_dir(d) {
            // A directory that does not exist yet is watched once a round created it.
            tracing::debug!(dir = %d.display(), "cannot watch: {e}");
        }
    }
}
