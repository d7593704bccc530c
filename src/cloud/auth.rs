//! Credentials: turning the configured auth method into request headers.
//!
//! [`Credentials::apply`] is called on every API request, after the request is
//! built and before it is sent; it is never called for the download host, so
//! no credential header can reach it. Header values carrying secrets are
//! marked sensitive, which keeps them out of reqwest's and hyper's debug
//! output.
//!
//! The methods:
//! * IAM token: `X-Auth-Token`.
//! * AK/SK (permanent, or temporary with a security token): the request is
//!   signed with `SDK-HMAC-SHA256` ([`sign_request`]) over exactly the
//!   headers it will carry on the wire: `Host` (with its port), `User-Agent`,
//!   `Accept`, `Content-Type`, `X-Project-Id`, `X-Sdk-Date` and, for temporary
//!   keys, `X-Security-Token`. All of them are set on the request before
//!   signing (the first ones by [`super::Client::download_links`]), so reqwest
//!   and hyper add nothing unsigned.
//! * IAM password: a project-scoped token from [`iam::TokenCache`].
//! * ECS metadata: temporary keys from [`metadata::MetadataSource`], signed
//!   like any AK/SK.
//!
//! Configured secrets (inline, from a file, from a variable) are read by
//! [`SecretReader`] ([`super::credential`]), off the runtime thread.

use std::sync::Arc;
use std::time::SystemTime;

use reqwest::header::{AUTHORIZATION, HOST, HeaderName, HeaderValue};

use super::cache::Generation;
use super::credential::{AuthError, SecretReader};
use super::scrub::Scrubber;
use super::{iam, metadata, signer};
use crate::config::{Auth, Cloud};
use crate::secret::Secret;

/// The credentials of the configured auth method.
#[derive(Debug)]
pub enum Credentials {
    /// An IAM token sent as `X-Auth-Token`.
    Token(SecretReader),
    /// An access key pair, signing every request.
    Aksk(StaticKeys),
    /// IAM password tokens, per project.
    Password(iam::TokenCache),
    /// Temporary keys from the ECS metadata service.
    Metadata(metadata::MetadataSource),
}

/// A configured access key pair (permanent, or temporary with a token).
#[derive(Debug)]
pub struct StaticKeys {
    access_key: SecretReader,
    secret_key: SecretReader,
    security_token: Option<SecretReader>,
    origin: Option<String>,
}

/// Which credentials [`Credentials::apply`] put on a request, so that a 401
/// invalidates exactly those: the cache generation of a fetched token or
/// key, none for configured ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsedCredentials {
    generation: Generation,
}

impl Credentials {
    /// Builds the credentials and logs where they come from (never the
    /// secret).
    /// `cloud` gives the extra trusted roots (`ca_file`) for the clients
    /// the credentials bring along (an https metadata service).
    /// Blocking (it reads `ca_file`).
    pub fn from_config(auth: &Auth, cloud: &Cloud) -> Self {
        let roots = super::configured_roots(cloud).map_err(|e| e.to_string());
        Credentials::with_roots(auth, roots)
    }

    /// [`Credentials::from_config`] with the roots of `cloud.ca_file` already
    /// read ([`super::configured_roots`]).
    pub fn with_roots(auth: &Auth, trust: Result<Arc<super::trust::Trust>, String>) -> Self {
        let creds = match auth {
            Auth::Token(src) => Credentials::Token(SecretReader::new(src.clone())),
            Auth::Aksk(a) => Credentials::Aksk(StaticKeys {
                access_key: SecretReader::new(a.access_key.clone()),
                secret_key: SecretReader::new(a.secret_key.clone()),
                security_token: a.security_token.clone().map(SecretReader::new),
                origin: a.origin.clone(),
            }),
            Auth::Password(p) => Credentials::Password(iam::TokenCache::new(
                p.user.clone(),
                p.domain.clone(),
                SecretReader::new(p.password.clone()),
                p.iam_endpoint.clone(),
            )),
            Auth::EcsMetadata(m) => Credentials::Metadata(metadata::MetadataSource::new(
                m.endpoint.clone(),
                m.auto_tried.clone(),
                trust,
            )),
        };
        tracing::info!("credentials: {}", creds.describe());
        creds
    }

    /// A short description for logs: which method and source, never the secret.
    pub fn describe(&self) -> String {
        match self {
            Credentials::Token(r) => format!("IAM token ({})", r.describe()),
            Credentials::Aksk(k) => {
                let kind = if k.security_token.is_some() {
                    "temporary AK/SK"
                } else {
                    "AK/SK"
                };
                match &k.origin {
                    Some(o) => format!("{kind} ({o})"),
                    None => {
                        let mut s = format!(
                            "{kind} (access key {}, secret key {}",
                            k.access_key.describe(),
                            k.secret_key.describe()
                        );
                        if let Some(t) = &k.security_token {
                            s.push_str(&format!(", security token {}", t.describe()));
                        }
                        s.push(')');
                        s
                    }
                }
            }
            Credentials::Password(c) => c.describe(),
            Credentials::Metadata(m) => m.describe(),
        }
    }

    /// Adds the authentication headers to an API request for `project_id`.
    pub async fn apply(
        &self,
        http: &reqwest::Client,
        req: &mut reqwest::Request,
        project_id: &str,
    ) -> Result<UsedCredentials, AuthError> {
        match self {
            Credentials::Token(reader) => {
                set_token(req, &reader.get().await?)?;
                Ok(UsedCredentials::default())
            }
            Credentials::Password(cache) => {
                let (token, generation) = cache.token(http, project_id).await?;
                set_token(req, &token.value)?;
                Ok(UsedCredentials { generation })
            }
            Credentials::Aksk(k) => {
                let ak = k.access_key.get().await?;
                let sk = k.secret_key.get().await?;
                let token = match &k.security_token {
                    Some(t) => Some(t.get().await?),
                    None => None,
                };
                sign_request(req, &ak, &sk, token.as_ref(), SystemTime::now())?;
                Ok(UsedCredentials::default())
            }
            Credentials::Metadata(m) => {
                let (keys, generation) = m.keys().await?;
                sign_request(
                    req,
                    &keys.access_key,
                    &keys.secret_key,
                    Some(&keys.security_token),
                    SystemTime::now(),
                )?;
                Ok(UsedCredentials { generation })
            }
        }
    }

    /// A scrubber fed with every live secret of the method: the token, the
    /// access and secret keys and the security token, the password and the
    /// IAM tokens in use, the metadata service's keys. No I/O, no waiting.
    pub fn scrubber(&self) -> Scrubber {
        match self {
            Credentials::Token(r) => Scrubber::new(r.last_known()),
            Credentials::Aksk(k) => Scrubber::new(
                [
                    k.access_key.last_known(),
                    k.secret_key.last_known(),
                    k.security_token.as_ref().and_then(SecretReader::last_known),
                ]
                .into_iter()
                .flatten(),
            ),
            Credentials::Password(c) => Scrubber::new(c.secrets()),
            Credentials::Metadata(m) => Scrubber::new(m.secrets()),
        }
    }

    /// Whether a 401 may be cured by fetching credentials afresh: only for
    /// credentials this program fetches itself.
    pub fn retry_on_401(&self) -> bool {
        matches!(self, Credentials::Password(_) | Credentials::Metadata(_))
    }

    /// Called after the API answered 401 to a request carrying `used`:
    /// forget those credentials so the next request starts afresh.
    pub async fn invalidate(&self, project_id: &str, used: UsedCredentials) {
        match self {
            // Not retried after a 401 (see `Client::retry_on_401`): their
            // secrets are re-read whenever their files change anyway.
            Credentials::Token(_) | Credentials::Aksk(_) => {}
            Credentials::Password(c) => c.invalidate(project_id, used.generation).await,
            Credentials::Metadata(m) => m.invalidate(used.generation).await,
        }
    }
}

fn set_token(req: &mut reqwest::Request, token: &Secret) -> Result<(), AuthError> {
    let mut value =
        HeaderValue::from_str(token.expose()).map_err(|_| AuthError::InvalidHeaderValue)?;
    value.set_sensitive(true);
    req.headers_mut()
        .insert(HeaderName::from_static("x-auth-token"), value);
    Ok(())
}

/// The `Host` header value a request to `url` carries: the host, and the
/// port unless it is the scheme's default.
pub fn host_header(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

/// Decodes `%XX` escapes of a URL path (a malformed escape stays as it is).
/// `None` if the result is not UTF-8.
pub fn percent_decode(path: &str) -> Option<String> {
    percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Signs an API request with `SDK-HMAC-SHA256`, as the official SDK does.
///
/// Sets `Host` (with the port, as sent), `X-Sdk-Date` (from `now`) and, for
/// temporary keys, `X-Security-Token`, then signs every header the request
/// carries and adds `Authorization`. The caller sets every other header that
/// goes on the wire (`User-Agent` and `Accept` included, which reqwest would
/// otherwise add after signing). The signed path is
/// the request's path, decoded; the caller must send a path already in the
/// canonical encoding (see [`signer::encode_path`]) so the gateway sees the
/// same bytes.
pub fn sign_request(
    req: &mut reqwest::Request,
    access_key: &Secret,
    secret_key: &Secret,
    security_token: Option<&Secret>,
    now: SystemTime,
) -> Result<(), AuthError> {
    let host = host_header(req.url())
        .ok_or_else(|| AuthError::Unsignable("the URL has no host".into()))?;
    let path = percent_decode(req.url().path())
        .ok_or_else(|| AuthError::Unsignable("the path is not UTF-8".into()))?;
    let query: Vec<(String, String)> = req.url().query_pairs().into_owned().collect();
    let body: Vec<u8> = match req.body() {
        None => Vec::new(),
        Some(b) => b
            .as_bytes()
            .ok_or_else(|| AuthError::Unsignable("a streamed body cannot be signed".into()))?
            .to_vec(),
    };
    let headers = req.headers_mut();
    headers.insert(
        HOST,
        HeaderValue::from_str(&host).map_err(|_| AuthError::Unsignable("bad host".into()))?,
    );
    let date = signer::sdk_date(now);
    headers.insert(
        HeaderName::from_static("x-sdk-date"),
        HeaderValue::from_str(&date).map_err(|_| AuthError::Unsignable("bad date".into()))?,
    );
    if let Some(t) = security_token {
        let mut v = HeaderValue::from_str(t.expose()).map_err(|_| AuthError::InvalidHeaderValue)?;
        v.set_sensitive(true);
        headers.insert(HeaderName::from_static("x-security-token"), v);
    }
    let mut signed: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        if name == HOST || name == AUTHORIZATION {
            continue;
        }
        let v = value.to_str().map_err(|_| {
            AuthError::Unsignable(format!("the {name} header is not visible ASCII"))
        })?;
        signed.push((name.as_str().to_string(), v.to_string()));
    }
    let sreq = signer::SigningRequest {
        method: req.method().as_str(),
        host: &host,
        path: &path,
        query: &query,
        headers: &signed,
        body: &body,
    };
    let auth = signer::authorization(&sreq, access_key.expose(), secret_key.expose().as_bytes());
    let mut value = HeaderValue::from_str(&auth).map_err(|_| AuthError::InvalidHeaderValue)?;
    value.set_sensitive(true);
    req.headers_mut().insert(AUTHORIZATION, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_cloud() -> Cloud {
        Cloud {
            region: None,
            endpoints: [(crate::cloud::Service::Dds, "https://example.invalid".into())].into(),
            iam_endpoint: None,
            ca_file: None,
        }
    }

    #[tokio::test]
    async fn token_header_is_sensitive() {
        let creds = Credentials::from_config(
            &Auth::Token(crate::config::SecretSource::Inline(Secret::new("tok-abc"))),
            &test_cloud(),
        );
        let mut req = reqwest::Request::new(
            reqwest::Method::GET,
            "https://example.invalid/x".parse().unwrap(),
        );
        crate::cloud::install_crypto_provider();
        creds
            .apply(&reqwest::Client::new(), &mut req, "p1")
            .await
            .unwrap();
        let v = req.headers().get("x-auth-token").unwrap();
        assert!(v.is_sensitive());
        assert_eq!(v, "tok-abc");
        assert!(!format!("{:?}", req.headers()).contains("tok-abc"));
        assert!(!creds.describe().contains("tok-abc"));
    }

    /// The official SDK's vectors, replayed through a real reqwest request:
    /// what goes on the wire is what was signed.
    #[test]
    fn signed_reqwest_requests_match_every_official_vector() {
        for v in signer::vectors::load() {
            let mut url: reqwest::Url = format!(
                "https://{}{}",
                v.host,
                signer::encode_path(&v.path).trim_end_matches('/')
            )
            .parse()
            .unwrap();
            if !v.query.is_empty() {
                let mut q = url.query_pairs_mut();
                for (k, val) in &v.query {
                    q.append_pair(k, val);
                }
            }
            let mut req = reqwest::Request::new(v.method.parse().unwrap(), url);
            let mut token = None;
            for (k, val) in &v.headers {
                if k.eq_ignore_ascii_case("x-security-token") {
                    token = Some(Secret::new(val.clone()));
                    continue;
                }
                req.headers_mut().insert(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(val).unwrap(),
                );
            }
            if !v.body.is_empty() {
                *req.body_mut() = Some(v.body.clone().into());
            }
            let date = &v.headers["X-Sdk-Date"];
            let now = time::PrimitiveDateTime::parse(
                date,
                time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"),
            )
            .unwrap()
            .assume_utc();
            sign_request(
                &mut req,
                &Secret::new(v.access_key.clone()),
                &Secret::new(v.secret_key.clone()),
                token.as_ref(),
                now.into(),
            )
            .unwrap();
            let got = req.headers().get(AUTHORIZATION).unwrap();
            assert!(got.is_sensitive());
            assert_eq!(
                got.to_str().unwrap(),
                v.authorization,
                "vector {:?}",
                v.name
            );
            assert_eq!(req.headers().get(HOST).unwrap(), v.host.as_str());
            if let Some(t) = &token {
                assert_eq!(req.headers().get("x-security-token").unwrap(), t.expose());
                assert!(
                    req.headers()
                        .get("x-security-token")
                        .unwrap()
                        .is_sensitive()
                );
            }
        }
    }

    #[test]
    fn every_header_sent_is_signed_and_secrets_stay_out_of_debug() {
        let mut req = reqwest::Request::new(
            reqwest::Method::GET,
            "https://127.0.0.1:8443/v3/p/instances/i/ssl-cert/download-link"
                .parse()
                .unwrap(),
        );
        for (k, v) in [
            ("user-agent", "dds-certsync/0.1"),
            ("accept", "*/*"),
            ("content-type", "application/json"),
            ("x-project-id", "p"),
        ] {
            req.headers_mut().insert(k, HeaderValue::from_static(v));
        }
        sign_request(
            &mut req,
            &Secret::new("AK-EXAMPLE"),
            &Secret::new("SK-very-secret"),
            Some(&Secret::new("TOKEN-very-secret")),
            SystemTime::now(),
        )
        .unwrap();
        let auth = req.headers()[AUTHORIZATION].to_str().unwrap().to_string();
        let signed = auth
            .split("SignedHeaders=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        let mut names: Vec<&str> = req
            .headers()
            .keys()
            .map(|k| k.as_str())
            .filter(|k| *k != "authorization")
            .collect();
        names.sort_unstable();
        assert_eq!(signed, names.join(";"));
        assert_eq!(req.headers()[HOST], "127.0.0.1:8443");
        let dbg = format!("{:?}", req.headers());
        assert!(!dbg.contains("TOKEN-very-secret") && !dbg.contains("SK-very-secret"));
    }

    #[test]
    fn host_header_and_percent_decoding() {
        let u: reqwest::Url = "https://h.example:443/a".parse().unwrap();
        assert_eq!(host_header(&u).as_deref(), Some("h.example"));
        let u: reqwest::Url = "https://h.example:8443/a".parse().unwrap();
        assert_eq!(host_header(&u).as_deref(), Some("h.example:8443"));
        let u: reqwest::Url = "https://[::1]:8443/a".parse().unwrap();
        assert_eq!(host_header(&u).as_deref(), Some("[::1]:8443"));
        assert_eq!(
            percent_decode("/a%20b/%C3%A4/%zz%4").as_deref(),
            Some("/a b/ä/%zz%4")
        );
        assert_eq!(percent_decode("/%FF"), None);
    }

    proptest::proptest! {
        /// A path sent in the signer's encoding reaches the wire unchanged by
        /// the URL parser, and decodes back to the raw path that was signed:
        /// the gateway's canonical URI is the one we signed. (Dot segments,
        /// which URL parsers collapse, never occur: IDs are validated.)
        #[test]
        fn wire_path_is_the_signed_path(segments in proptest::collection::vec(
            proptest::strategy::Strategy::prop_filter("[^/]{0,12}", "no dot segment", |s: &String| {
                s != "." && s != ".."
            }),
            1..5,
        )) {
            let raw = format!("/{}", segments.join("/"));
            let encoded = signer::encode_path(&raw);
            let sent = if raw.ends_with('/') { encoded.clone() } else { encoded.trim_end_matches('/').to_string() };
            let url: reqwest::Url = format!("https://h.example{sent}").parse().unwrap();
            proptest::prop_assert_eq!(url.path(), sent.as_str());
            let decoded = percent_decode(url.path()).unwrap();
            proptest::prop_assert_eq!(&decoded, &raw);
            proptest::prop_assert_eq!(signer::encode_path(&decoded), encoded);
        }
    }
}
