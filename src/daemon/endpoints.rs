//! The running HTTP endpoints (`[server] listen`): the task that serves
//! them, owned by the control loop, which replaces it when a reload moves
//! `server.listen`. See [`crate::server`] for what they serve.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::ConfigError;
use crate::health::Health;
use crate::server;

/// The serving task, if `server.listen` is set, and the address its
/// listener is bound to (the port the kernel chose for a configured port 0).
pub(super) struct Endpoints {
    task: Option<JoinHandle<()>>,
    bound: Option<SocketAddr>,
    health: Arc<Health>,
}

impl Drop for Endpoints {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Endpoints {
    /// Serves on `listener`, if there is one.
    pub(super) fn start(listener: Option<TcpListener>, health: Arc<Health>) -> Endpoints {
        let mut e = Endpoints {
            task: None,
            bound: None,
            health,
        };
        e.replace(listener);
        e
    }

    /// Stops serving on the old listener and serves on `listener` instead
    /// (none: the endpoints are off).
    pub(super) fn replace(&mut self, listener: Option<TcpListener>) {
        if let Some(old) = self.task.take() {
            old.abort();
        }
        self.bound = listener.as_ref().and_then(|l| l.local_addr().ok());
        self.task = listener.map(|l| tokio::spawn(server::serve(l, Arc::clone(&self.health))));
    }

    /// Binds the new `server.listen`. When our own listener is in the way
    /// (the same port on another address: `127.0.0.1:P` → `0.0.0.0:P`,
    /// judged by the address it is bound to, so also when the kernel chose
    /// `P`), it is closed first; if the new address still cannot be bound,
    /// the old one is bound again and the error returned, so a refused
    /// reload leaves the endpoints where they were.
    pub(super) async fn bind_moving(
        &mut self,
        config_path: &Path,
        addr: SocketAddr,
    ) -> Result<TcpListener, ConfigError> {
        let old = self.bound;
        let err = match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => e,
        };
        let in_the_way = err.kind() == std::io::ErrorKind::AddrInUse
            && self.task.is_some()
            && old.is_some_and(|o| o.port() == addr.port());
        let (Some(old), true) = (old, in_the_way) else {
            return Err(listen_error(config_path, addr, &err));
        };
        if let Some(running) = self.task.take() {
            running.abort();
            // Once the task is gone, so is its listener.
            let _ = running.await;
        }
        match TcpListener::bind(addr).await {
            Ok(l) => Ok(l),
            Err(e) => {
                match TcpListener::bind(old).await {
                    Ok(l) => self.replace(Some(l)),
                    Err(e2) => tracing::error!(
                        "cannot listen on {old} again: {e2}; the endpoints are off until a reload succeeds"
                    ),
                }
                Err(listen_error(config_path, addr, &e))
            }
        }
    }
}

/// Binds `server.listen` at start.
pub(super) async fn bind(config_path: &Path, addr: SocketAddr) -> Result<TcpListener, ConfigError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| listen_error(config_path, addr, &e))
}

fn listen_error(config_path: &Path, addr: SocketAddr, e: &std::io::Error) -> ConfigError {
    ConfigError {
        file: config_path.to_path_buf(),
        key: Some("server.listen".into()),
        line: None,
        message: format!("cannot listen on {addr}: {e}"),
    }
}
