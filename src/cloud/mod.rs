//! The cloud client: each service's download-link API and the certificate
//! download.
//!
//! One [`Client`] holds one HTTP connection pool (rustls, connections reused)
//! for the API and the download host. The two kinds of request are kept apart:
//!
//! * API requests ([`Client::download_links`]) carry credentials, added by
//!   [`auth::Credentials::apply`] on the finished request.
//! * Download requests ([`Client::download`]) never do: they are built from
//!   the bare link, and redirects are not followed, so no header can travel on
//!   to another host.
//!
//! Responses are read with a size cap and parsed by the pure functions in
//! [`api`]; every failure becomes an [`ApiError`] or [`DownloadError`] whose
//! text names what happened without echoing a secret or a pre-signed URL:
//! texts from the network are scrubbed of every live secret
//! ([`scrub::Scrubber`], fed by [`auth::Credentials::scrubber`]). The HTTP
//! status of every API answer goes to the [`ApiObserver`] the client was
//! given (the daemon's metrics), never to a global.
//!
//! The file runs past 500 lines for its unit tests, which sit beside the code
//! they pin (the code is under 470 lines).

pub mod api;
pub mod auth;
pub mod cache;
pub mod credential;
pub mod iam;
pub mod metadata;
pub mod scrub;
pub mod service;
pub mod signer;
pub mod trust;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue, RETRY_AFTER};

pub use crate::catalog::{Service, endpoint, profile};
pub use api::{ApiError, Link};

use crate::certcheck::MAX_BODY;
use crate::config::Cloud;
use crate::readfile;

/// The User-Agent of every request.
pub const USER_AGENT: &str = concat!("dds-certsync/", env!("CARGO_PKG_VERSION"));

/// The largest API answer read.
const MAX_API_BODY: usize = 64 * 1024;

/// A failure to build the HTTP client (a bad `ca_file`, mostly).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cloud.ca_file: cannot read {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

/// Why a certificate download failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    #[error("the download link is not https:// ({0})")]
    NotHttps(String),
    #[error("the download link is not a URL")]
    NotUrl,
    #[error("the download host answered HTTP {status}{detail}")]
    Status { status: u16, detail: String },
    #[error("the download host redirected; redirects are not followed")]
    Redirect,
    #[error("the body is larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("download timed out")]
    Timeout,
    #[error("download failed: {0}")]
    Network(String),
}

impl DownloadError {
    /// Whether trying again soon may help.
    pub fn is_transient(&self) -> bool {
        match self {
            DownloadError::Timeout | DownloadError::Network(_) => true,
            DownloadError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// Told of every DDS API request: the HTTP status of its answer, or `None`
/// when no answer came. The daemon counts them in its metrics; `--once`
/// gives none.
#[derive(Clone, Default)]
pub struct ApiObserver(Option<Arc<dyn Fn(Option<u16>) + Send + Sync>>);

impl ApiObserver {
    pub fn new(f: impl Fn(Option<u16>) + Send + Sync + 'static) -> Self {
        ApiObserver(Some(Arc::new(f)))
    }

    fn saw(&self, status: Option<u16>) {
        if let Some(f) = &self.0 {
            f(status);
        }
    }
}

impl std::fmt::Debug for ApiObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ApiObserver(set)"
        } else {
            "ApiObserver(none)"
        })
    }
}

/// The DDS client.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    /// One endpoint per service the config uses.
    endpoints: std::collections::BTreeMap<Service, String>,
    credentials: auth::Credentials,
    observer: ApiObserver,
}

impl Client {
    /// Builds the client: TLS roots are the system's plus `cloud.ca_file`
    /// ([`trust::Trust`]).
    /// `concurrency` is how many rounds run at once: that many idle
    /// connections per host are kept, so every round reuses one instead of
    /// paying for a new TLS handshake.
    pub fn new(
        cloud: &Cloud,
        credentials: auth::Credentials,
        timeout: Duration,
        concurrency: usize,
    ) -> Result<Client, BuildError> {
        let roots = configured_roots(cloud)?;
        Client::with_roots(cloud, roots, credentials, timeout, concurrency)
    }

    /// [`Client::new`] with the trust of this build already made
    /// ([`configured_roots`]), so that one read serves every client.
    pub fn with_roots(
        cloud: &Cloud,
        trust: Arc<trust::Trust>,
        credentials: auth::Credentials,
        timeout: Duration,
        concurrency: usize,
    ) -> Result<Client, BuildError> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(trust.tls_config()?)
            .user_agent(USER_AGENT)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(concurrency.max(1))
            .https_only(true)
            .build()
            .map_err(|e| BuildError::Tls(e.without_url().to_string()))?;
        Ok(Client {
            http,
            endpoints: cloud.endpoints.clone(),
            credentials,
            observer: ApiObserver::default(),
        })
    }

    /// The client, telling `observer` of every API request's answer.
    pub fn observed_by(self, observer: ApiObserver) -> Client {
        Client { observer, ..self }
    }

    /// Who is told of the API requests' answers.
    pub fn observer(&self) -> &ApiObserver {
        &self.observer
    }

    /// The credentials in use.
    pub fn credentials(&self) -> &auth::Credentials {
        &self.credentials
    }

    /// Asks `service` for the download links of an instance's
    /// certificates. Any text of the answer in the error is scrubbed of the
    /// live secrets.
    pub async fn download_links(
        &self,
        service: Service,
        project_id: &str,
        instance_id: &str,
    ) -> Result<Vec<Link>, ApiError> {
        self.ask_links(service, project_id, instance_id)
            .await
            .map_err(|e| e.scrubbed(&self.credentials.scrubber()))
    }

    /// One service's download-link call, as its row of the service table
    /// describes it (method, path, answer parser).
    async fn ask_links(
        &self,
        service: Service,
        project_id: &str,
        instance_id: &str,
    ) -> Result<Vec<Link>, ApiError> {
        // The path goes on the wire in the signer's canonical encoding, so
        // that what the gateway recomputes is what was signed.
        let path = signer::encode_path(&service.path(project_id, instance_id));
        let method = match service.method() {
            service::Method::Get => reqwest::Method::GET,
            service::Method::Post => reqwest::Method::POST,
        };
        // The config gives an endpoint to every service an instance uses.
        let endpoint = self.endpoints.get(&service).ok_or_else(|| {
            ApiError::BadResponse(format!("no endpoint is configured for {service}"))
        })?;
        let url = format!("{endpoint}{}", path.trim_end_matches('/'));
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Every header that goes on the wire is set here, so that AK/SK
            // signing covers them all (reqwest would add these two later).
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header(reqwest::header::USER_AGENT, USER_AGENT)
                .header(ACCEPT, "*/*")
                .header(CONTENT_TYPE, "application/json")
                .header("X-Project-Id", project_id)
                .build()
                .map_err(|e| ApiError::Network(e.without_url().to_string()))?;
            let used = self
                .credentials
                .apply(&self.http, &mut req, project_id)
                .await
                .map_err(auth_error)?;
            let resp = self.http.execute(req).await;
            self.observer
                .saw(resp.as_ref().ok().map(|r| r.status().as_u16()));
            let resp = resp.map_err(request_error)?;
            let status = resp.status();
            let request_id = header_string(&resp, "x-request-id");
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| api::parse_retry_after(v, std::time::SystemTime::now()));
            let body = read_capped(resp, MAX_API_BODY).await.map_err(|e| match e {
                ReadError::TooLarge => {
                    ApiError::BadResponse(format!("answer larger than {MAX_API_BODY} bytes"))
                }
                ReadError::Http(e) => request_error(e),
            })?;
            if status == StatusCode::UNAUTHORIZED && attempt == 1 && self.credentials.retry_on_401()
            {
                tracing::info!(
                    instance_id,
                    "the API refused the credentials (HTTP 401); fetching fresh ones and retrying once"
                );
                self.credentials.invalidate(project_id, used).await;
                continue;
            }
            if !status.is_success() {
                return Err(api::status_error_scrubbed(
                    status.as_u16(),
                    &body,
                    request_id,
                    retry_after,
                    &self.credentials.scrubber(),
                ));
            }
            return service.parse(&body);
        }
    }

    /// Downloads a certificate from a link the API returned. No credential
    /// header is sent; the body is capped at [`MAX_BODY`].
    pub async fn download(&self, link: &str) -> Result<Vec<u8>, DownloadError> {
        let url: reqwest::Url = link.parse().map_err(|_| DownloadError::NotUrl)?;
        if url.scheme() != "https" {
            return Err(DownloadError::NotHttps(url.scheme().to_string()));
        }
        if url.host_str().is_none() {
            return Err(DownloadError::NotUrl);
        }
        let resp =
            self.http
                .get(url)
                .send()
                .await
                .map_err(|e| match download_request_error(e) {
                    DownloadError::Network(t) => {
                        DownloadError::Network(self.credentials.scrubber().scrub(&t))
                    }
                    other => other,
                })?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(DownloadError::Redirect);
        }
        if !status.is_success() {
            let ctype = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = read_capped(resp, 4096).await.unwrap_or_default();
            let body = self
                .credentials
                .scrubber()
                .scrub(&String::from_utf8_lossy(&body));
            return Err(DownloadError::Status {
                status: status.as_u16(),
                detail: api::describe_download_error(&ctype, body.as_bytes()),
            });
        }
        read_capped(resp, MAX_BODY).await.map_err(|e| match e {
            ReadError::TooLarge => DownloadError::TooLarge,
            ReadError::Http(e) => download_request_error(e),
        })
    }
}

/// A credentials failure as an API error: transient ones (IAM or the
/// metadata service unreachable, throttled, failing) are retried like network
/// trouble.
fn auth_error(e: credential::AuthError) -> ApiError {
    if e.is_transient() {
        ApiError::Network(format!("credentials: {e}"))
    } else {
        ApiError::Auth(e.to_string())
    }
}

/// What the clients of one build trust: the system's roots plus those of
/// `cloud.ca_file`, read once for all of them. Blocking (it reads `ca_file`;
/// the system's roots are read when a connection first needs them).
pub fn configured_roots(cloud: &Cloud) -> Result<Arc<trust::Trust>, BuildError> {
    let extra = match &cloud.ca_file {
        Some(path) => extra_roots(path)?,
        None => Vec::new(),
    };
    trust::Trust::new(extra)
}

/// The trusted roots of `cloud.ca_file`, added to the system's by every
/// HTTPS client of the process (the API, the downloads, IAM and an https
/// metadata service).
pub(crate) fn extra_roots(
    path: &Path,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, BuildError> {
    use rustls_pki_types::pem::PemObject;
    let failed = |reason: String| BuildError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = readfile::read_regular(path, readfile::SMALL_FILE_LIMIT, readfile::Links::Follow)
        .map_err(|e| failed(e.to_string()))?
        .ok_or_else(|| failed("no such file".into()))?;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(e.to_string()))?;
    if certs.is_empty() {
        return Err(failed("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// Installs ring as the process's rustls provider (once; later calls no-op).
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The process's rustls provider (ring), installed first if need be.
fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    install_crypto_provider();
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

fn header_string(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_string)
}

enum ReadError {
    TooLarge,
    Http(reqwest::Error),
}

/// Reads a body, refusing it as soon as it exceeds `cap` bytes.
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, ReadError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut body =
        Vec::with_capacity(resp.content_length().unwrap_or(4096).min(cap as u64) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Http)? {
        if body.len() + chunk.len() > cap {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Describes a transport error without its URL (which may be pre-signed).
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut msg = if e.is_connect() {
        "cannot connect".to_string()
    } else if e.is_body() || e.is_decode() {
        "the connection broke while reading the body (truncated answer?)".to_string()
    } else if e.is_request() {
        "the request failed".to_string()
    } else {
        "HTTP error".to_string()
    };
    let mut source = e.source();
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    if let Some(cause) = last {
        msg.push_str(": ");
        msg.push_str(&cause);
    }
    msg
}

fn request_error(e: reqwest::Error) -> ApiError {
    if e.is_timeout() {
        ApiError::Timeout
    } else {
        ApiError::Network(describe(&e))
    }
}

fn download_request_error(e: reqwest::Error) -> DownloadError {
    if e.is_timeout() {
        DownloadError::Timeout
    } else {
        DownloadError::Network(describe(&e))
    }
}

/// A link with its query (the pre-signature) removed, for logs.
pub fn redact_link(link: &str) -> String {
    match link.parse::<reqwest::Url>() {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => "<not a URL>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_drops_the_signature() {
        assert_eq!(
            redact_link("https://obs.example.com/a/ca.crt?Signature=abc&Expires=1"),
            "https://obs.example.com/a/ca.crt"
        );
        assert_eq!(redact_link("::"), "<not a URL>");
    }

    #[test]
    fn transient_download_errors() {
        assert!(DownloadError::Timeout.is_transient());
        assert!(
            DownloadError::Status {
                status: 503,
                detail: String::new()
            }
            .is_transient()
        );
        assert!(
            !DownloadError::Status {
                status: 403,
                detail: String::new()
            }
            .is_transient()
        );
        assert!(!DownloadError::TooLarge.is_transient());
    }
}
