//! The reload transaction: the new config is loaded and validated, its
//! fallible parts (a new API client, built on the blocking pool within
//! `CLIENT_BUILD_LIMIT`; a new listener) are prepared, and only then is
//! anything switched. A config that fails is logged, naming the key, and the
//! running one stays. (One exception, for a `server.listen` that moves to
//! another address on the same port: the old listener is closed before the
//! new one is bound, and bound again if that fails.) What changed is
//! [`reload::diff`]'s to decide.

use std::sync::Arc;

use crate::config::{self, ConfigError};
use crate::metrics;
use crate::reload::{self, SyncNow};
use crate::scheduler::{Command, Timing};
use crate::server;
use crate::service::notify;
use crate::sync::Syncer;
use crate::watch::Watcher;

use super::control::Control;
use super::state::{index, lock};
use super::{CLIENT_BUILD_LIMIT, listen_error};

impl Control {
    /// Applies the config in `bytes` (else read now) whole or not at all.
    /// `forced` (SIGHUP) also syncs every instance now.
    pub(super) async fn reload(
        &mut self,
        forced: bool,
        watcher: Option<&mut Watcher>,
        bytes: Option<Vec<u8>>,
    ) {
        let ready = lock(&self.daemon.progress).ready_sent;
        if ready {
            notify::reloading();
        }
        self.reload_inner(forced, bytes).await;
        self.rewatch(watcher, false);
        if ready {
            let keys: Vec<String> = lock(&self.daemon.config)
                .instances
                .iter()
                .map(|i| i.id.clone())
                .collect();
            let line = lock(&self.daemon.progress).status_line(&keys);
            notify::ready(&line);
        }
    }

    async fn reload_inner(&mut self, forced: bool, bytes: Option<Vec<u8>>) {
        let path = self.daemon.config_path.clone();
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
        let old = lock(&self.daemon.config).clone();
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
                    .daemon
                    .syncer
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .delivery,
            );
            // Reading `ca_file` and the system's roots is file I/O: on the
            // blocking pool, and bounded, so that neither the endpoints nor
            // the rounds wait on a stalled file.
            let (config, dry_run) = (new.clone(), self.daemon.dry_run);
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
                .daemon
                .syncer
                .write()
                .unwrap_or_else(|e| e.into_inner()) = s;
        }
        if let Some(listener) = new_listener {
            if let Some(old) = self.server.take() {
                old.abort();
            }
            self.server =
                listener.map(|l| tokio::spawn(server::serve(l, Arc::clone(&self.daemon.health))));
        }
        *self
            .daemon
            .instances
            .write()
            .unwrap_or_else(|e| e.into_inner()) = index(&new);
        // Hook retries take their instance from the current config.
        self.daemon
            .syncer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .delivery
            .set_config(&new);
        lock(&self.daemon.healer).retain_config(&new.instances);
        self.daemon.health.set_config(&new);
        let keys: Vec<String> = new.instances.iter().map(|i| i.id.clone()).collect();
        lock(&self.daemon.progress).retain(&keys);
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
        *lock(&self.daemon.config) = new.clone();

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
        let path = self.daemon.config_path.clone();
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
                            Arc::clone(&self.daemon.health),
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
}
