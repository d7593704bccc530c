//! `dds-standin`: a local stand-in of the Huawei Cloud DDS API, of the host
//! its certificate download links point to, of IAM and of the ECS metadata
//! service.
//!
//! [`StandIn::start`] binds loopback listeners; the first three are served
//! over real TLS (rustls, `ring`) with a server certificate from the
//! stand-in's own CA ([`StandIn::ca_pem`]):
//!
//! * the **API** (`https://127.0.0.1:{port}`, [`StandIn::api_url`]) answers
//!   `GET /v3/{project_id}/instances/{instance_id}/ssl-cert/download-link`
//!   like DDS does, and, for an instance registered with another service
//!   ([`StandIn::set_service`]), that service's request and answer shape:
//!   RDS, GeminiDB and openGauss on the same `GET`, DCS on
//!   `POST /v2/{project_id}/instances/{instance_id}/ssl-certs/download`
//!   (one listener for all, told apart by the instance; see `services.rs`).
//!   Credentials are checked the same way for every service (401 `APIGW.0301`; 403
//!   `APIGW.0302` for another project's credentials): the fixed
//!   [`Options::token`] or an IAM token in `X-Auth-Token`, or an AK/SK
//!   `SDK-HMAC-SHA256` signature recomputed as the gateway does ([`aksk`]);
//!   unknown instances get 404 `DBS.200002`, an instance of another project 403
//!   `DBS.200010`, and a success lists a fresh pre-signed-looking link per
//!   category. It also hosts a small admin API under `/__standin/` (see
//!   the crate README or `GET /__standin/`).
//! * the **download host** (`localhost:{port}`, [`StandIn::download_host`])
//!   serves the current certificate of each instance and category, but only
//!   through a link the API issued within [`Options::link_ttl`]; otherwise it
//!   answers 403 with an OBS-style XML error.
//! * **IAM** ([`StandIn::iam_url`]) issues project-scoped tokens for
//!   password logins (`POST /v3/auth/tokens`).
//! * one **TLS listener per instance** ([`StandIn::instance_addr`]), standing
//!   in for the instance's nodes: TLS directly on the port, presenting a
//!   server certificate issued by one of the instance's `international` CAs.
//!   Which one is scripted apart from the download link, so a rotation can
//!   be played in either order: [`StandIn::rotate`] then
//!   [`StandIn::server_follow_link`] ("link first"), or
//!   [`StandIn::server_rotate_first`] then [`StandIn::link_follow_server`]
//!   ("server first").
//! * the **ECS metadata** service ([`StandIn::metadata_url`], plain HTTP,
//!   or TLS with [`Options::metadata_tls`]) hands out temporary AK/SK, with
//!   or without the session-token step ([`Metadata`]).
//!
//! Every request on any listener is recorded ([`StandIn::requests`]), and
//! [`FaultRule`]s make the API, the download host, IAM or the metadata
//! service misbehave on demand. The servers run on a
//! dedicated thread with its own tokio runtime, so the handle works from
//! plain `#[test]` functions and async tests alike; dropping the handle stops
//! the servers and closes the ports.
//!
//! ```no_run
//! let standin = dds_standin::StandIn::start();
//! standin.add_instance("project-1", "instance-1");
//! println!("{} {}", standin.api_url(), standin.download_host());
//! ```

mod admin;
pub mod aksk;
mod auth;
mod body;
mod certs;
mod client;
mod creds;
mod der;
mod fault;
mod iam;
mod metadata;
mod node;
mod record;
mod server;
mod services;
mod state;
pub mod zips;

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener as StdTcpListener};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

pub use certs::pem_to_der;
pub use certs::{
    CertError, INTERNATIONAL, NATIONAL, ca_and_server_pem, expired_cert_pem, non_ca_cert_pem,
    not_yet_valid_cert_pem, private_key_pem, short_lived_cert_pem, sm2_cert_pem, v1_cert_pem,
};
pub use client::{client_config, tls_handshake};
pub use creds::Metadata;
pub use fault::{Fault, FaultRule};
pub use node::Handshakes;
pub use record::{Listener, Recorded};
pub use services::SERVICES;
pub use state::OpError;
pub use zips::{Form, HostileZip, ZipMember, certificate_zip, zip_of};

use auth::{AkSkAuth, AuthCheck, TokenAuth};
use creds::Credentials;
use state::Shared;

/// Settings of a stand-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The accepted `X-Auth-Token` (default `"standin-token"`).
    pub token: String,
    /// How long a download link stays valid after the API issued it
    /// (default 5 minutes).
    pub link_ttl: Duration,
    /// Port of the API listener on 127.0.0.1 (default 0 = any free port).
    pub api_port: u16,
    /// Port of the download listener on 127.0.0.1 (default 0 = any free port).
    pub download_port: u16,
    /// Accepted permanent AK/SK pairs (default none; see also
    /// [`StandIn::add_aksk`]).
    pub aksk: Vec<(String, String)>,
    /// Lifetime of the IAM tokens issued (default 24 hours).
    pub token_ttl: Duration,
    /// Port of the IAM listener on 127.0.0.1 (default 0 = any free port).
    pub iam_port: u16,
    /// Port of the metadata listener on 127.0.0.1 (default 0 = any free port).
    pub metadata_port: u16,
    /// Serve the metadata listener over TLS with the stand-in's CA, like the
    /// others, instead of plain HTTP (default false).
    pub metadata_tls: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token: "standin-token".to_owned(),
            link_ttl: Duration::from_secs(300),
            api_port: 0,
            download_port: 0,
            aksk: Vec::new(),
            token_ttl: Duration::from_secs(24 * 3600),
            iam_port: 0,
            metadata_port: 0,
            metadata_tls: false,
        }
    }
}

/// A running stand-in. Dropping it stops every listener.
pub struct StandIn {
    shared: Arc<Shared>,
    token: String,
    api_port: u16,
    download_port: u16,
    iam_port: u16,
    metadata_port: u16,
    metadata_tls: bool,
    ca_pem: String,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for StandIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandIn")
            .field("api_url", &self.api_url())
            .field("download_host", &self.download_host())
            .field("iam_url", &self.iam_url())
            .field("metadata_url", &self.metadata_url())
            .finish_non_exhaustive()
    }
}

fn io_error(e: impl fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn bind_loopback(port: u16) -> std::io::Result<StdTcpListener> {
    let listener = StdTcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

impl StandIn {
    /// Starts a stand-in with [`Options::default`].
    ///
    /// # Panics
    /// If the listeners cannot be bound or the runtime cannot start; see
    /// [`StandIn::try_start_with`] for the fallible form.
    pub fn start() -> StandIn {
        StandIn::start_with(Options::default())
    }

    /// Starts a stand-in with the given options.
    ///
    /// # Panics
    /// As [`StandIn::start`].
    pub fn start_with(opts: Options) -> StandIn {
        StandIn::try_start_with(opts).unwrap_or_else(|e| panic!("dds-standin: cannot start: {e}"))
    }

    /// Starts a stand-in, reporting failures (ports in use, no runtime).
    pub fn try_start_with(opts: Options) -> std::io::Result<StandIn> {
        let identity = certs::tls_identity().map_err(io_error)?;
        let acceptor = server::tls_acceptor(&identity).map_err(io_error)?;

        let api = bind_loopback(opts.api_port)?;
        let download = bind_loopback(opts.download_port)?;
        let iam = bind_loopback(opts.iam_port)?;
        let metadata = bind_loopback(opts.metadata_port)?;
        let api_port = api.local_addr()?.port();
        let download_port = download.local_addr()?.port();
        let iam_port = iam.local_addr()?.port();
        let metadata_port = metadata.local_addr()?.port();
        // Links name `localhost`, which may resolve to ::1 first. Serve there
        // too when that port is free; 127.0.0.1 alone is enough otherwise.
        let download_v6 =
            StdTcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, download_port)))
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .ok();

        let creds = Arc::new(Credentials::new(&opts.aksk, opts.token_ttl));
        let checks: Vec<Box<dyn AuthCheck>> = vec![
            Box::new(TokenAuth::with_iam(&opts.token, Arc::clone(&creds))),
            Box::new(AkSkAuth::new(Arc::clone(&creds))),
        ];
        let metadata_tls = opts.metadata_tls;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared::new(
            checks,
            creds,
            opts.link_ttl,
            download_port,
            runtime.handle().clone(),
        ));
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let task_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("dds-standin".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listeners = [
                        (Some(api), Listener::Api, true),
                        (Some(download), Listener::Download, true),
                        (download_v6, Listener::Download, true),
                        (Some(iam), Listener::Iam, true),
                        (Some(metadata), Listener::Metadata, metadata_tls),
                    ];
                    for (listener, kind, tls) in listeners {
                        let Some(std_listener) = listener else {
                            continue;
                        };
                        match tokio::net::TcpListener::from_std(std_listener) {
                            Ok(l) => {
                                tokio::spawn(server::serve(
                                    l,
                                    tls.then(|| acceptor.clone()),
                                    Arc::clone(&task_shared),
                                    kind,
                                ));
                            }
                            Err(e) => {
                                eprintln!("dds-standin: cannot register a {kind:?} listener: {e}")
                            }
                        }
                    }
                    // Resolves on an explicit shutdown and when the handle is
                    // dropped without one.
                    let _ = shutdown_rx.await;
                });
                // Dropping the runtime cancels every server task and closes
                // the listening and connected sockets.
                drop(runtime);
            })?;

        Ok(StandIn {
            shared,
            token: opts.token,
            api_port,
            download_port,
            iam_port,
            metadata_port,
            metadata_tls,
            ca_pem: identity.ca_pem,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// The DDS API endpoint, `https://127.0.0.1:{port}` (no trailing slash).
    pub fn api_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    /// The download host as `localhost:{port}`; links point there.
    pub fn download_host(&self) -> String {
        format!("localhost:{}", self.download_port)
    }

    /// The IAM endpoint, `https://127.0.0.1:{port}` (no trailing slash).
    pub fn iam_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.iam_port)
    }

    /// The ECS metadata endpoint, `http://127.0.0.1:{port}` (plain HTTP, no
    /// trailing slash), standing in for `http://169.254.169.254`; with
    /// [`Options::metadata_tls`], `https://127.0.0.1:{port}`.
    pub fn metadata_url(&self) -> String {
        let scheme = if self.metadata_tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.metadata_port)
    }

    /// Accepts this permanent AK/SK pair from now on.
    pub fn add_aksk(&self, ak: &str, sk: &str) {
        self.shared.creds.add_aksk(ak, sk);
    }

    /// Adds an IAM user who can log in with this password.
    pub fn add_iam_user(&self, domain: &str, user: &str, password: &str) {
        self.shared.creds.add_user(domain, user, password);
    }

    /// Issues a temporary key pair, `(ak, sk, security_token)`, valid for
    /// `ttl` (zero: already expired). The API accepts it only with the
    /// signed `X-Security-Token`.
    pub fn issue_temporary(&self, ttl: Duration) -> (String, String, String) {
        let (ak, sk, token, _) = self.shared.creds.issue_temporary(ttl);
        (ak, sk, token)
    }

    /// Makes every IAM token issued so far invalid (401 `APIGW.0301`, "The
    /// token expired"); later logins get valid tokens again.
    pub fn expire_tokens(&self) {
        self.shared.creds.expire_tokens();
    }

    /// How many `POST /v3/auth/tokens` IAM has answered (success or not).
    pub fn iam_calls(&self) -> usize {
        self.shared.creds.iam_calls()
    }

    /// How many `GET /openstack/latest/securitykey` the metadata service has
    /// answered (success or not).
    pub fn metadata_calls(&self) -> usize {
        self.shared.creds.metadata_calls()
    }

    /// Sets how the metadata service behaves from now on.
    pub fn set_metadata(&self, m: Metadata) {
        self.shared.creds.set_metadata(m);
    }

    /// PEM of the stand-in's CA, which signed the TLS listeners' certificates.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// Writes [`StandIn::ca_pem`] to a file.
    pub fn write_ca(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.ca_pem.as_bytes())
    }

    /// The accepted `X-Auth-Token`.
    pub fn token(&self) -> String {
        self.token.clone()
    }

    /// Adds (or resets) an instance under a project, with fresh
    /// certificates in both categories, both listed by the API.
    ///
    /// # Panics
    /// Only if certificate generation fails (system RNG failure).
    pub fn add_instance(&self, project_id: &str, instance_id: &str) {
        self.shared
            .add_instance(project_id, instance_id)
            .unwrap_or_else(|e| panic!("dds-standin: add_instance: {e}"));
    }

    /// Sets the service an instance belongs to (`dds` until set; see
    /// [`SERVICES`]): the request that reaches it and its answer's shape
    /// (the `services` module's table). Kept across [`StandIn::add_instance`]
    /// of the same instance.
    ///
    /// # Panics
    /// If the instance was never added, or the name is not a service.
    pub fn set_service(&self, instance_id: &str, service: &str) {
        self.shared
            .set_service(instance_id, service)
            .unwrap_or_else(|e| panic!("dds-standin: set_service: {e}"));
    }

    /// Sets which categories the API lists for an instance, in this order.
    /// Listing a category that has no certificate yields a link that
    /// answers 404 `NoSuchKey`.
    ///
    /// # Panics
    /// If the instance was never added.
    pub fn set_categories(&self, instance_id: &str, categories: &[&str]) {
        self.shared
            .set_categories(instance_id, categories)
            .unwrap_or_else(|e| panic!("dds-standin: set_categories: {e}"));
    }

    /// Replaces the certificate of a slot with a new, distinct one (SM2/SM3
    /// for `national`, ECDSA P-256 otherwise) and returns its PEM. The
    /// instance's TLS listener keeps presenting what it did until
    /// [`StandIn::server_follow_link`].
    ///
    /// # Panics
    /// If the instance was never added.
    pub fn rotate(&self, instance_id: &str, category: &str) -> String {
        self.shared
            .rotate(instance_id, category)
            .unwrap_or_else(|e| panic!("dds-standin: rotate: {e}"))
    }

    /// The address (`127.0.0.1:port`) of the instance's TLS listener, which
    /// stands in for its nodes. It lives as long as the stand-in, also
    /// across [`StandIn::add_instance`] of the same instance.
    ///
    /// # Panics
    /// If the instance was never added.
    pub fn instance_addr(&self, instance_id: &str) -> std::net::SocketAddr {
        self.shared
            .node_addr(instance_id)
            .unwrap_or_else(|e| panic!("dds-standin: instance_addr: {e}"))
    }

    /// The instance's TLS listener presents, from its next connection on, a
    /// server certificate issued by the `international` CA the link serves
    /// now: the second step of a "link first" rotation.
    ///
    /// # Panics
    /// If the instance was never added, or the link serves bytes set with
    /// [`StandIn::set_cert_pem`] (the stand-in has no key for them).
    pub fn server_follow_link(&self, instance_id: &str) {
        self.shared
            .server_follow_link(instance_id)
            .unwrap_or_else(|e| panic!("dds-standin: server_follow_link: {e}"));
    }

    /// The instance's TLS listener presents, from its next connection on, a
    /// server certificate issued by a new `international` CA that the link
    /// does not serve yet: the first step of a "server first" rotation.
    /// Returns the new CA's PEM.
    ///
    /// # Panics
    /// If the instance was never added.
    pub fn server_rotate_first(&self, instance_id: &str) -> String {
        self.shared
            .server_rotate_first(instance_id)
            .unwrap_or_else(|e| panic!("dds-standin: server_rotate_first: {e}"))
    }

    /// The link serves the `international` CA the instance's TLS listener
    /// chains to: the second step of a "server first" rotation.
    ///
    /// # Panics
    /// If the instance was never added.
    pub fn link_follow_server(&self, instance_id: &str) {
        self.shared
            .link_follow_server(instance_id)
            .unwrap_or_else(|e| panic!("dds-standin: link_follow_server: {e}"));
    }

    /// The PEM of the CA the instance's TLS listener chains to now.
    ///
    /// # Panics
    /// If the instance was never added.
    pub fn server_ca_pem(&self, instance_id: &str) -> String {
        self.shared
            .server_ca(instance_id)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| panic!("dds-standin: server_ca_pem: {e}"))
    }

    /// What the instance's TLS listener has seen so far.
    ///
    /// # Panics
    /// If the instance was never added.
    pub fn handshakes(&self, instance_id: &str) -> Handshakes {
        self.shared
            .handshakes(instance_id)
            .unwrap_or_else(|e| panic!("dds-standin: handshakes: {e}"))
    }

    /// What the download host serves now for a slot (lossy UTF-8).
    ///
    /// # Panics
    /// If the instance or the slot does not exist.
    pub fn cert_pem(&self, instance_id: &str, category: &str) -> String {
        self.shared
            .cert_body(instance_id, category)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| panic!("dds-standin: cert_pem: {e}"))
    }

    /// Serves arbitrary bytes as a slot's certificate.
    ///
    /// # Panics
    /// If the instance was never added.
    pub fn set_cert_pem(&self, instance_id: &str, category: &str, body: &[u8]) {
        self.shared
            .set_cert(instance_id, category, body)
            .unwrap_or_else(|e| panic!("dds-standin: set_cert_pem: {e}"));
    }

    /// Sets how the download host serves a slot: PEM (the default), DER or
    /// zipped ([`Form`]). Rotations keep it.
    ///
    /// # Panics
    /// If the instance or the slot does not exist.
    pub fn set_form(&self, instance_id: &str, category: &str, form: Form) {
        self.shared
            .set_form(instance_id, category, form)
            .unwrap_or_else(|e| panic!("dds-standin: set_form: {e}"));
    }

    /// Adds a fault rule after the existing ones.
    pub fn push_fault(&self, rule: FaultRule) {
        self.shared.push_fault(rule);
    }

    /// Removes all fault rules.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Every request seen on every listener so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Joining guarantees the ports are closed when drop returns.
            let _ = thread.join();
        }
    }
}
