//! The TLS "instance" listener: what a DDS node presents on its port.
//!
//! Each instance added to the stand-in gets one loopback listener that speaks
//! TLS directly (no STARTTLS, like DDS on port 8635) and presents a server
//! certificate issued by one of the instance's `international` CAs: the leaf
//! alone, so a client verifies it only with a CA file that holds the issuing
//! CA. Which CA that is (the *server's* CA) is switched independently of what
//! the download link serves (see `Shared::server_follow_link`,
//! `Shared::server_rotate_first` and `Shared::link_follow_server`), so tests
//! can script a rotation in either order.
//!
//! After the handshake the listener reads what the client sends (nothing is
//! answered) until the client closes, for at most [`LINGER`], and counts
//! handshakes that succeeded, handshakes that failed (a client that refused
//! the certificate), and application bytes received.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rustls::ServerConfig;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::certs::{CertError, TlsIdentity};

/// How long a client may take to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection stays open after the handshake, waiting for the
/// client to close it.
const LINGER: Duration = Duration::from_secs(5);

/// Counts of what an instance's TLS listener saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Handshakes {
    /// Handshakes that completed.
    pub ok: u64,
    /// Handshakes that failed (most often: the client refused the
    /// certificate and sent an alert).
    pub failed: u64,
    /// Application bytes received after handshakes, all connections together.
    pub bytes_received: u64,
}

/// One `international` CA minted for an instance, with the server
/// configuration that presents a certificate it issued.
pub(crate) struct MintedCa {
    pub(crate) generation: u32,
    pub(crate) pem: Bytes,
    config: Arc<ServerConfig>,
}

impl MintedCa {
    pub(crate) fn new(generation: u32, identity: TlsIdentity) -> Result<MintedCa, CertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.with_no_client_auth()
                    .with_single_cert(identity.chain, identity.key)
            })
            .map_err(|e| CertError::new(format!("server configuration: {e}")))?;
        Ok(MintedCa {
            generation,
            pem: Bytes::from(identity.ca_pem),
            config: Arc::new(config),
        })
    }
}

/// What the listener task and the state share: the configuration presented
/// now, and the counters.
#[derive(Default)]
pub(crate) struct NodeCell {
    config: Mutex<Option<Arc<ServerConfig>>>,
    ok: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
}

impl NodeCell {
    /// From now on, new connections are served with this CA's certificate.
    pub(crate) fn present(&self, ca: &MintedCa) {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&ca.config));
    }

    fn current(&self) -> Option<Arc<ServerConfig>> {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn handshakes(&self) -> Handshakes {
        Handshakes {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            bytes_received: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// An instance's listener: its port and its shared cell.
pub(crate) struct Node {
    pub(crate) addr: SocketAddr,
    pub(crate) cell: Arc<NodeCell>,
}

impl Node {
    /// Binds a loopback port and starts serving it on `runtime`; the task
    /// ends when the runtime is dropped.
    pub(crate) fn start(runtime: &tokio::runtime::Handle) -> std::io::Result<Node> {
        let std_listener = StdTcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let cell = Arc::new(NodeCell::default());
        let task_cell = Arc::clone(&cell);
        // Registering the listener needs the runtime's reactor: do it there.
        runtime.spawn(async move {
            match TcpListener::from_std(std_listener) {
                Ok(listener) => serve(listener, task_cell).await,
                Err(e) => eprintln!("dds-standin: cannot register an instance listener: {e}"),
            }
        });
        Ok(Node { addr, cell })
    }
}

async fn serve(listener: TcpListener, cell: Arc<NodeCell>) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _peer)) => tcp,
            Err(_) => {
                // E.g. out of file descriptors: back off briefly, keep serving.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let cell = Arc::clone(&cell);
        tokio::spawn(async move {
            let Some(config) = cell.current() else {
                return;
            };
            let acceptor = TlsAcceptor::from(config);
            let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                Ok(Ok(tls)) => {
                    cell.ok.fetch_add(1, Ordering::Relaxed);
                    tls
                }
                _ => {
                    cell.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            let mut buf = [0u8; 4096];
            let _ = tokio::time::timeout(LINGER, async {
                while let Ok(n @ 1..) = tls.read(&mut buf).await {
                    cell.bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
            })
            .await;
        });
    }
}
