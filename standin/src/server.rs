//! The listeners: the DDS API, the certificate download host, IAM (all
//! HTTPS) and the ECS metadata service (plain HTTP).
//!
//! All run the same accept loop (TLS via tokio-rustls with the `ring`
//! provider where there is an acceptor, HTTP/1.1 with keep-alive via hyper)
//! and differ only in the request handler. Every request is recorded before
//! anything else happens; then, on the API and download listeners, the first
//! matching fault rule, if any, decides the answer; otherwise the stand-in
//! behaves like the real service. API and IAM request bodies are read (up to
//! [`MAX_BODY`]) for signatures and logins.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER, SERVER};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::admin;
use crate::auth::{AuthFailure, AuthRequest, authenticate};
use crate::body::Body;
use crate::certs::TlsIdentity;
use crate::fault::Fault;
use crate::record::{Listener, Recorded};
use crate::state::{LinkLookup, Shared, random_hex};
use crate::{iam, metadata, services};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Body served by [`Fault::DownloadTruncate`] when the slot does not exist.
const TRUNCATE_FALLBACK_LEN: usize = 2048;
/// The largest request body read on the API and IAM listeners.
const MAX_BODY: usize = 64 * 1024;

pub(crate) const JSON: &str = "application/json;charset=UTF-8";
const CERT_CONTENT_TYPE: &str = "application/x-x509-ca-cert";
const XML: &str = "application/xml";

/// Returned by a handler to make hyper close the connection without answering.
#[derive(Debug)]
pub(crate) struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dds-standin: dropping the connection on purpose")
    }
}

impl std::error::Error for DropConnection {}

/// Builds the TLS acceptor for the stand-in's server certificate.
pub(crate) fn tls_acceptor(identity: &TlsIdentity) -> Result<TlsAcceptor, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves HTTP/1.1 on one connection (TLS or plain).
async fn serve_connection<I>(io: I, shared: Arc<Shared>, kind: Listener)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        async move { handle(req, &shared, kind).await }
    });
    // Connection errors (client went away, deliberate drops) end only
    // this connection.
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// Accepts connections forever (until the runtime is dropped); over TLS when
/// there is an acceptor, plain HTTP otherwise.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    kind: Listener,
) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _peer)) => tcp,
            Err(_) => {
                // E.g. out of file descriptors: back off briefly, keep serving.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let Some(acceptor) = acceptor else {
                serve_connection(tcp, shared, kind).await;
                return;
            };
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                _ => return,
            };
            serve_connection(tls, shared, kind).await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: &Shared,
    kind: Listener,
) -> Result<Response<Body>, DropConnection> {
    let (parts, body) = req.into_parts();
    shared.record(Recorded {
        listener: kind,
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    });
    match kind {
        Listener::Api => {
            let Some(body) = read_body(body).await else {
                return Ok(api_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "APIGW.0201",
                    "Request entity too large",
                    &random_hex(16),
                ));
            };
            api(&parts, &body, shared).await
        }
        Listener::Download => download(&parts, shared).await,
        Listener::Iam | Listener::Metadata => {
            if let Some(
                Fault::IamStatus {
                    status,
                    body: answer,
                }
                | Fault::MetadataStatus {
                    status,
                    body: answer,
                },
            ) = shared.take_fault(kind, None, None)
            {
                return Ok(response(status_or_500(status), JSON, answer));
            }
            other_listener(body, &parts, shared, kind).await
        }
    }
}

/// The IAM and metadata listeners' normal answers.
async fn other_listener(
    body: Incoming,
    parts: &Parts,
    shared: &Shared,
    kind: Listener,
) -> Result<Response<Body>, DropConnection> {
    match kind {
        Listener::Iam => Ok(match read_body(body).await {
            Some(body) => iam::handle(parts, &body, shared),
            None => response(
                StatusCode::PAYLOAD_TOO_LARGE,
                JSON,
                r#"{"error":{"code":413,"message":"Request entity too large","title":"Payload Too Large"}}"#,
            ),
        }),
        _ => Ok(metadata::handle(parts, shared)),
    }
}

/// An error text quoting every credential the request carried.
fn echo_credentials(parts: &Parts) -> String {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let mut quoted = Vec::new();
    if let Some(t) = header("x-auth-token") {
        quoted.push(format!("token {t}"));
    }
    if let Some(ak) = header("authorization")
        .and_then(|a| a.split("Access=").nth(1))
        .and_then(|rest| rest.split(',').next())
    {
        quoted.push(format!("access key {ak}"));
    }
    if let Some(t) = header("x-security-token") {
        quoted.push(format!("security token {t}"));
    }
    format!(
        "The request is forbidden for the credentials presented ({})",
        quoted.join(", ")
    )
}

/// The whole request body, or `None` when it is too large or broken.
async fn read_body(body: Incoming) -> Option<bytes::Bytes> {
    Limited::new(body, MAX_BODY)
        .collect()
        .await
        .ok()
        .map(|c| c.to_bytes())
}

/// Query parameters (last value wins).
pub(crate) fn query_map(parts: &Parts) -> HashMap<String, String> {
    parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn status_or_500(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub(crate) fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// A response with a content type and a complete body.
pub(crate) fn response(
    status: StatusCode,
    content_type: &str,
    body: impl Into<bytes::Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, header_value(content_type));
    resp
}

/// An API-gateway style JSON response with `X-Request-Id`.
fn api_json(
    status: StatusCode,
    body: String,
    request_id: &str,
    retry_after: Option<&str>,
) -> Response<Body> {
    let mut resp = response(status, JSON, body);
    let headers = resp.headers_mut();
    headers.insert("x-request-id", header_value(request_id));
    headers.insert(SERVER, HeaderValue::from_static("api-gateway"));
    if let Some(ra) = retry_after {
        headers.insert(RETRY_AFTER, header_value(ra));
    }
    resp
}

fn api_error(status: StatusCode, code: &str, msg: &str, request_id: &str) -> Response<Body> {
    let body = serde_json::json!({"error_code": code, "error_msg": msg, "request_id": request_id});
    api_json(status, body.to_string(), request_id, None)
}

/// `/dds-cert/{instance}/{category}/ca-dds.crt` → (instance, category).
fn parse_download_path(path: &str) -> Option<(&str, &str)> {
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    match segments.as_slice() {
        ["dds-cert", instance, category, "ca-dds.crt"]
            if !instance.is_empty() && !category.is_empty() =>
        {
            Some((instance, category))
        }
        _ => None,
    }
}

async fn api(
    parts: &Parts,
    body: &[u8],
    shared: &Shared,
) -> Result<Response<Body>, DropConnection> {
    let path = parts.uri.path();
    if path == "/__standin" || path.starts_with("/__standin/") {
        return Ok(admin::handle(parts, shared));
    }
    let request_id = random_hex(16);
    let route = services::parse_route(path);
    match shared.take_fault(Listener::Api, route.map(|(_, _, i)| i), None) {
        Some(Fault::ApiReset) => return Err(DropConnection),
        Some(Fault::ApiDelay(d)) => tokio::time::sleep(d).await,
        Some(Fault::ApiStatus {
            status,
            body,
            retry_after,
        }) => {
            return Ok(api_json(
                status_or_500(status),
                body,
                &request_id,
                retry_after.as_deref(),
            ));
        }
        Some(Fault::ApiBody(body)) => return Ok(api_json(StatusCode::OK, body, &request_id, None)),
        Some(Fault::ApiEchoCredentials(status)) => {
            return Ok(api_error(
                status_or_500(status),
                "APIGW.0302",
                &echo_credentials(parts),
                &request_id,
            ));
        }
        Some(_) | None => {}
    }
    let Some((call, project, instance)) =
        route.filter(|(call, _, _)| parts.method.as_str() == call.method())
    else {
        return Ok(api_error(
            StatusCode::NOT_FOUND,
            "APIGW.0101",
            "The API does not exist or has not been published in the environment",
            &request_id,
        ));
    };
    let auth_request = AuthRequest {
        parts,
        body,
        project,
        now: std::time::SystemTime::now(),
    };
    match authenticate(&shared.auth, &auth_request) {
        Ok(()) => {}
        Err(AuthFailure::Unauthorized(reason)) => {
            return Ok(api_error(
                StatusCode::UNAUTHORIZED,
                "APIGW.0301",
                &format!("Incorrect IAM authentication information: {reason}"),
                &request_id,
            ));
        }
        Err(AuthFailure::Forbidden(reason)) => {
            return Ok(api_error(
                StatusCode::FORBIDDEN,
                "APIGW.0302",
                &format!("The IAM user is not authorized to access the API: {reason}"),
                &request_id,
            ));
        }
    }
    // An instance is reached only through its own service's call.
    if shared
        .service_of(instance)
        .is_some_and(|service| !call.serves(&service))
    {
        return Ok(not_found(call, &request_id));
    }
    Ok(match shared.issue_links(project, instance) {
        LinkLookup::Found(service, links) => api_json(
            StatusCode::OK,
            services::answer(&service, &links).to_string(),
            &request_id,
            None,
        ),
        LinkLookup::NotFound => not_found(call, &request_id),
        LinkLookup::WrongProject => api_error(
            StatusCode::FORBIDDEN,
            "DBS.200010",
            "The DB instance does not belong to the current project",
            &request_id,
        ),
    })
}

/// The answer of a call for an instance its service does not have.
fn not_found(call: services::Call, request_id: &str) -> Response<Body> {
    match call {
        services::Call::Dcs => api_error(
            StatusCode::NOT_FOUND,
            "DCS.4019",
            "The DCS instance does not exist",
            request_id,
        ),
        services::Call::V3 => api_error(
            StatusCode::NOT_FOUND,
            "DBS.200002",
            "The DB instance does not exist",
            request_id,
        ),
    }
}

/// An OBS-style XML error.
fn obs_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let request_id = random_hex(12).to_ascii_uppercase();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
         <Error><Code>{code}</Code><Message>{message}</Message>\
         <RequestId>{request_id}</RequestId><HostId>dds-standin</HostId></Error>"
    );
    let mut resp = response(status, XML, body);
    resp.headers_mut()
        .insert("x-obs-request-id", header_value(&request_id));
    resp.headers_mut()
        .insert(SERVER, HeaderValue::from_static("OBS"));
    resp
}

fn cert_response(body: Body, content_length: Option<usize>) -> Response<Body> {
    let mut resp = Response::new(body);
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(CERT_CONTENT_TYPE));
    headers.insert(SERVER, HeaderValue::from_static("OBS"));
    if let Some(len) = content_length {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    resp
}

async fn download(parts: &Parts, shared: &Shared) -> Result<Response<Body>, DropConnection> {
    let route = parse_download_path(parts.uri.path());
    match shared.take_fault(
        Listener::Download,
        route.map(|(i, _)| i),
        route.map(|(_, c)| c),
    ) {
        Some(Fault::DownloadReset) => return Err(DropConnection),
        Some(Fault::DownloadDelay(d)) => tokio::time::sleep(d).await,
        Some(Fault::DownloadStatus {
            status,
            body,
            content_type,
        }) => return Ok(response(status_or_500(status), &content_type, body)),
        Some(Fault::DownloadBody(bytes)) => {
            let len = bytes.len();
            return Ok(cert_response(Body::full(bytes), Some(len)));
        }
        Some(Fault::DownloadTruncate) => {
            let full = route
                .and_then(|(i, c)| shared.cert_body(i, c).ok())
                .unwrap_or_else(|| bytes::Bytes::from(vec![b'A'; TRUNCATE_FALLBACK_LEN]));
            let half = full.slice(..full.len() / 2);
            return Ok(cert_response(Body::truncated(half), Some(full.len())));
        }
        Some(Fault::DownloadZip(kind)) => {
            let pem = route
                .and_then(|(i, c)| shared.cert_body(i, c).ok())
                .unwrap_or_default();
            let zip = kind.build(&pem);
            let len = zip.len();
            return Ok(cert_response(Body::full(zip), Some(len)));
        }
        Some(Fault::DownloadHuge(n)) => return Ok(cert_response(Body::filler(n, true), Some(n))),
        Some(Fault::DownloadHugeChunked(n)) => {
            return Ok(cert_response(Body::filler(n, false), None));
        }
        Some(_) | None => {}
    }
    let Some((instance, category)) = route else {
        return Ok(obs_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        ));
    };
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return Ok(obs_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
        ));
    }
    let query = query_map(parts);
    let signature = query.get("Signature").map_or("", String::as_str);
    if !shared.link_is_valid(instance, category, signature) {
        return Ok(obs_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Request has expired or the signature does not match.",
        ));
    }
    Ok(match shared.served_body(instance, category) {
        Ok(bytes) => {
            let len = bytes.len();
            cert_response(Body::full(bytes), Some(len))
        }
        Err(_) => obs_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_parse_strictly() {
        assert_eq!(
            services::parse_route("/v3/p1/instances/i1/ssl-cert/download-link")
                .map(|(_, p, i)| (p, i)),
            Some(("p1", "i1"))
        );
        assert_eq!(
            services::parse_route("/v3/p1/instances//ssl-cert/download-link")
                .map(|(_, p, i)| (p, i)),
            None
        );
        assert_eq!(
            services::parse_route("/v3/p1/instances/i1/ssl-cert/download-link/")
                .map(|(_, p, i)| (p, i)),
            None
        );
        assert_eq!(
            services::parse_route("v3/p1/instances/i1/ssl-cert/download-link")
                .map(|(_, p, i)| (p, i)),
            None
        );
    }

    #[test]
    fn download_paths_parse_strictly() {
        assert_eq!(
            parse_download_path("/dds-cert/i1/national/ca-dds.crt"),
            Some(("i1", "national"))
        );
        assert_eq!(parse_download_path("/dds-cert/i1/national/other.crt"), None);
    }
}
