//! Temporary AK/SK from the ECS metadata service (a VM with an agency).
//!
//! 1. `PUT {endpoint}/meta-data/latest/api/token` with
//!    `X-Metadata-Token-Ttl-Seconds: 21600` gives a session token; 404, 405
//!    or 503 mean the service does not use them, and we go on without.
//! 2. `GET {endpoint}/openstack/latest/securitykey` (with `X-Metadata-Token`
//!    when we have one) answers
//!    `{"credential":{"access","secret","securitytoken","expires_at"}}`.
//!
//! The service is plain HTTP on a link-local address, so it has its own small
//! client (the cloud client is https-only), without proxies or redirects.
//! When `metadata_endpoint` is https, that client trusts `cloud.ca_file` on
//! top of the system's roots, like every other HTTPS call.
//! Keys are refreshed 40 minutes before they expire, as the SDK does, and
//! fetched once for all concurrent callers (single flight, in
//! [`super::cache::Cache`]); if the refresh fails, the keys keep being used
//! until they expire and the refresh is retried with backoff. A body saying
//! "Please configure Cloud Service Agency first" becomes an error telling the
//! user to attach an agency to the VM. Error texts never quote the answer's
//! body, and what they take from the network is scrubbed of the keys.
//!
//! Reached through `auto`, the service gets a short timeout, and a failure
//! lists what the chain tried before it. A failure is shared for
//! [`FAILURE_HOLD`] with the callers that waited for it, so twenty instances
//! on a host without a metadata service wait out one timeout, not twenty.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::cache::{Cache, Expiring, Generation};
use super::credential::AuthError;
use super::scrub::Scrubber;
use crate::secret::Secret;

/// Refresh this long before the keys expire (the SDK's margin).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(40 * 60);

/// The metadata timeout when the service is only probed by `auto`.
pub const AUTO_TIMEOUT: Duration = Duration::from_secs(2);

/// The timeout when `method = "ecs-metadata"` says the service is there.
pub const TIMEOUT: Duration = Duration::from_secs(10);

const TOKEN_PATH: &str = "/meta-data/latest/api/token";
const KEY_PATH: &str = "/openstack/latest/securitykey";
const SESSION_TTL: &str = "21600";
const NO_AGENCY: &str = "Please configure Cloud Service Agency first";
const MAX_BODY: usize = 64 * 1024;

/// Temporary keys.
#[derive(Debug, Clone)]
pub struct TempKeys {
    pub access_key: Secret,
    pub secret_key: Secret,
    pub security_token: Secret,
    pub expires_at: SystemTime,
}

/// When keys expiring at `expires` are due for replacement.
pub fn refresh_time(expires: SystemTime) -> SystemTime {
    expires
        .checked_sub(REFRESH_MARGIN)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Whether keys expiring at `expires` should be replaced at `now`.
pub fn needs_refresh(now: SystemTime, expires: SystemTime) -> bool {
    now >= refresh_time(expires)
}

impl Expiring for TempKeys {
    fn refresh_at(&self) -> SystemTime {
        refresh_time(self.expires_at)
    }
    fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

/// What to do with the answer to the session token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStep {
    Use(String),
    /// The service does not do session tokens: go on without.
    Skip,
    Fail(String),
}

/// Decides on the session token answer.
pub fn session_step(status: u16, body: &[u8]) -> SessionStep {
    match status {
        200..=299 => match std::str::from_utf8(body).map(str::trim) {
            Ok(t) if !t.is_empty() => SessionStep::Use(t.to_string()),
            _ => SessionStep::Fail("the session token answer is empty".into()),
        },
        404 | 405 | 503 => SessionStep::Skip,
        s => SessionStep::Fail(format!("the session token request answered HTTP {s}")),
    }
}

#[derive(Deserialize)]
struct KeyBody {
    credential: KeyFields,
}

#[derive(Deserialize)]
struct KeyFields {
    access: String,
    secret: String,
    securitytoken: String,
    expires_at: String,
}

/// Why the security key answer is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFailure {
    NoAgency,
    Status(u16),
    BadAnswer(String),
}

/// Parses the security key answer. Never echoes the body: it may hold keys.
pub fn parse_keys(
    status: u16,
    body: &[u8],
) -> Result<(Secret, Secret, Secret, SystemTime), KeyFailure> {
    if String::from_utf8_lossy(body).contains(NO_AGENCY) {
        return Err(KeyFailure::NoAgency);
    }
    if !(200..300).contains(&status) {
        return Err(KeyFailure::Status(status));
    }
    let k: KeyBody = serde_json::from_slice(body).map_err(|_| {
        KeyFailure::BadAnswer(
            "not {\"credential\":{\"access\",\"secret\",\"securitytoken\",\"expires_at\"}}".into(),
        )
    })?;
    let c = k.credential;
    if c.access.is_empty() || c.secret.is_empty() || c.securitytoken.is_empty() {
        return Err(KeyFailure::BadAnswer("a key field is empty".into()));
    }
    let keys = [
        Secret::new(c.access),
        Secret::new(c.secret),
        Secret::new(c.securitytoken),
    ];
    let expires = super::iam::parse_time(&c.expires_at).ok_or_else(|| {
        let scrubber = Scrubber::new(keys.iter().cloned());
        KeyFailure::BadAnswer(format!(
            "expires_at {:?} is not a time",
            scrubber.scrub(&c.expires_at)
        ))
    })?;
    let [access, secret, token] = keys;
    Ok((access, secret, token, expires))
}

/// How long a failed fetch is answered from memory, so that the instances
/// waiting for it do not each wait out a timeout again.
pub const FAILURE_HOLD: Duration = Duration::from_secs(5);

/// Keys from the metadata service, cached until 40 minutes before expiry.
#[derive(Debug)]
pub struct MetadataSource {
    endpoint: String,
    auto_tried: Vec<String>,
    http: Result<reqwest::Client, String>,
    cached: Cache<TempKeys>,
    announced: AtomicBool,
}

impl MetadataSource {
    /// `auto_tried` non-empty means the service was reached by `auto`: a short
    /// timeout, and errors list those steps.
    /// `trust` is what every client of one build trusts, the system's roots
    /// plus `cloud.ca_file` ([`super::configured_roots`]), for an https
    /// endpoint; an error reading `ca_file` is this source's error.
    pub fn new(
        endpoint: String,
        auto_tried: Vec<String>,
        trust: Result<Arc<super::trust::Trust>, String>,
    ) -> Self {
        super::install_crypto_provider();
        let timeout = if auto_tried.is_empty() {
            TIMEOUT
        } else {
            AUTO_TIMEOUT
        };
        let http = trust.and_then(|trust| metadata_client(timeout, &trust));
        MetadataSource {
            endpoint,
            auto_tried,
            http,
            cached: Cache::new(
                "the temporary AK/SK from the ECS metadata service".into(),
                |_| FAILURE_HOLD,
            ),
            announced: AtomicBool::new(false),
        }
    }

    pub fn describe(&self) -> String {
        if self.auto_tried.is_empty() {
            format!(
                "temporary AK/SK from the ECS metadata service at {}",
                self.endpoint
            )
        } else {
            format!(
                "auto: temporary AK/SK from the ECS metadata service at {} (tried first: {})",
                self.endpoint,
                self.auto_tried.join("; ")
            )
        }
    }

    /// Current keys and their generation, fetched once for all concurrent
    /// callers when missing or due for refresh.
    pub async fn keys(&self) -> Result<(TempKeys, Generation), AuthError> {
        self.cached
            .get(|_| async {
                self.fetch().await.map_err(|(detail, transient)| {
                    let detail = Scrubber::new(self.secrets()).scrub(&detail);
                    let mut tried = self.auto_tried.clone();
                    if !tried.is_empty() {
                        tried.push(format!("ECS metadata service {}: {detail}", self.endpoint));
                        return AuthError::NothingFound { tried };
                    }
                    AuthError::Metadata {
                        endpoint: self.endpoint.clone(),
                        detail,
                        transient,
                    }
                })
            })
            .await
    }

    /// The live secrets: the keys most recently fetched.
    pub fn secrets(&self) -> Vec<Secret> {
        self.cached
            .recent()
            .into_iter()
            .flat_map(|k| [k.access_key, k.secret_key, k.security_token])
            .collect()
    }

    /// Forgets the keys of `generation`, if still cached.
    pub async fn invalidate(&self, generation: Generation) {
        self.cached.invalidate(generation).await;
    }

    async fn fetch(&self) -> Result<TempKeys, (String, bool)> {
        let http = self.http.as_ref().map_err(|e| (e.clone(), false))?;
        let net = |what: &str, e: reqwest::Error| {
            let d = if e.is_timeout() {
                format!("{what}: no answer in time")
            } else {
                format!("{what}: {}", super::describe(&e))
            };
            (d, true)
        };
        let session = http
            .put(format!("{}{TOKEN_PATH}", self.endpoint))
            .header("X-Metadata-Token-Ttl-Seconds", SESSION_TTL)
            .send()
            .await
            .map_err(|e| net("session token", e))?;
        let status = session.status().as_u16();
        let body = super::read_capped(session, MAX_BODY).await.map_err(|_| {
            (
                "session token: the answer could not be read".to_string(),
                true,
            )
        })?;
        let session = match session_step(status, &body) {
            SessionStep::Use(t) => Some(Secret::new(t)),
            SessionStep::Skip => {
                tracing::debug!(endpoint = %self.endpoint, status, "metadata service without session tokens");
                None
            }
            SessionStep::Fail(m) => return Err((m, status >= 500)),
        };
        let mut req = http.get(format!("{}{KEY_PATH}", self.endpoint));
        if let Some(s) = &session {
            let mut v = reqwest::header::HeaderValue::from_str(s.expose())
                .map_err(|_| ("the session token is not a header value".to_string(), false))?;
            v.set_sensitive(true);
            req = req.header("X-Metadata-Token", v);
        }
        let resp = req.send().await.map_err(|e| net("security key", e))?;
        let status = resp.status().as_u16();
        let body = super::read_capped(resp, MAX_BODY).await.map_err(|_| {
            (
                "security key: the answer could not be read".to_string(),
                true,
            )
        })?;
        let (access_key, secret_key, security_token, expires_at) =
            parse_keys(status, &body).map_err(|f| match f {
                KeyFailure::NoAgency => (
                    "the VM has no agency (\"Please configure Cloud Service Agency first\"); attach an agency to this ECS instance (ECS console: Management Information > Agency) that grants dds:instance:getSslCertDownloadAddress".to_string(),
                    false,
                ),
                KeyFailure::Status(s) => (
                    format!("security key: HTTP {s}"),
                    s == 429 || s >= 500,
                ),
                KeyFailure::BadAnswer(m) => (format!("security key: {m}"), false),
            })?;
        let first = !self.announced.swap(true, Ordering::Relaxed);
        let expires = humantime::format_rfc3339_seconds(expires_at);
        if first {
            tracing::info!(endpoint = %self.endpoint, expires_at = %expires, session_token = session.is_some(), "credentials: {}", self.describe());
        } else {
            tracing::info!(endpoint = %self.endpoint, expires_at = %expires, "refreshed the temporary AK/SK from the ECS metadata service");
        }
        Ok(TempKeys {
            access_key,
            secret_key,
            security_token,
            expires_at,
        })
    }
}

/// The metadata service's own client: no proxy, no redirects, the given
/// timeout, and the system's roots plus `ca_file`'s for an https endpoint.
fn metadata_client(
    timeout: Duration,
    trust: &Arc<super::trust::Trust>,
) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(trust.tls_config().map_err(|e| e.to_string())?)
        .user_agent(super::USER_AGENT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| e.without_url().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn refresh_forty_minutes_early() {
        let exp = at(10_000);
        assert!(!needs_refresh(at(10_000 - 2401), exp));
        assert!(needs_refresh(at(10_000 - 2400), exp));
        assert!(needs_refresh(at(0), at(100)));
    }

    #[test]
    fn session_token_steps() {
        assert_eq!(session_step(200, b"abc\n"), SessionStep::Use("abc".into()));
        for s in [404, 405, 503] {
            assert_eq!(session_step(s, b""), SessionStep::Skip);
        }
        assert!(matches!(session_step(500, b""), SessionStep::Fail(_)));
        assert!(matches!(session_step(200, b" "), SessionStep::Fail(_)));
    }

    #[test]
    fn parses_keys_and_recognizes_a_missing_agency() {
        let body = br#"{"credential":{"access":"AKT","secret":"SKT","securitytoken":"TOK","expires_at":"2026-11-28T06:00:00.000000Z"}}"#;
        let (ak, sk, tok, _) = parse_keys(200, body).unwrap();
        assert_eq!(
            (ak.expose(), sk.expose(), tok.expose()),
            ("AKT", "SKT", "TOK")
        );
        assert_eq!(
            parse_keys(404, b"Please configure Cloud Service Agency first").unwrap_err(),
            KeyFailure::NoAgency
        );
        assert_eq!(
            parse_keys(
                200,
                br#"{"error":"Please configure Cloud Service Agency first"}"#
            )
            .unwrap_err(),
            KeyFailure::NoAgency
        );
        assert_eq!(parse_keys(500, b"x").unwrap_err(), KeyFailure::Status(500));
        let e = parse_keys(
            200,
            br#"{"credential":{"access":"AKT","secret":"SKT-secret"}}"#,
        )
        .unwrap_err();
        assert!(!format!("{e:?}").contains("SKT-secret"));
    }
}
