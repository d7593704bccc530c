//! The ECS metadata listener (plain HTTP, like `169.254.169.254`).
//!
//! * `PUT /meta-data/latest/api/token` with `X-Metadata-Token-Ttl-Seconds`
//!   (1..=21600) answers a session token, or 404 when
//!   [`Metadata::require_session_token`](crate::Metadata) is off.
//! * `GET /openstack/latest/securitykey` (with `X-Metadata-Token` when
//!   required; 401 otherwise) answers
//!   `{"credential":{"access","secret","securitytoken","expires_at"}}` with
//!   fresh temporary keys the API accepts, or 404 "Please configure Cloud
//!   Service Agency first" when the VM has no agency.

use std::time::Duration;

use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};

use crate::body::Body;
use crate::creds::rfc3339_micros;
use crate::server::{JSON, response};
use crate::state::Shared;

const TEXT: &str = "text/plain; charset=utf-8";
/// The longest session the real service grants (6 hours).
const MAX_SESSION_SECS: u64 = 21600;
/// What the real service says when the VM has no agency.
pub(crate) const NO_AGENCY: &str = "Please configure Cloud Service Agency first";

fn text(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<Body> {
    response(status, TEXT, body)
}

/// Answers a request on the metadata listener.
pub(crate) fn handle(parts: &Parts, shared: &Shared) -> Response<Body> {
    let creds = &shared.creds;
    let behaviour = creds.metadata();
    match (&parts.method, parts.uri.path()) {
        (&Method::PUT, "/meta-data/latest/api/token") => {
            if !behaviour.require_session_token {
                return text(StatusCode::NOT_FOUND, "404 Not Found");
            }
            let ttl = parts
                .headers
                .get("x-metadata-token-ttl-seconds")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|s| (1..=MAX_SESSION_SECS).contains(s));
            match ttl {
                Some(secs) => text(
                    StatusCode::OK,
                    creds.issue_session(Duration::from_secs(secs)),
                ),
                None => text(
                    StatusCode::BAD_REQUEST,
                    "X-Metadata-Token-Ttl-Seconds must be between 1 and 21600",
                ),
            }
        }
        (&Method::GET, "/openstack/latest/securitykey") => {
            creds.count_metadata_call();
            if behaviour.require_session_token {
                let valid = parts
                    .headers
                    .get("x-metadata-token")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|t| creds.session_is_valid(t));
                if !valid {
                    return text(StatusCode::UNAUTHORIZED, "401 Unauthorized");
                }
            }
            if !behaviour.agency {
                let body = serde_json::json!({"error": {"code": 404, "message": NO_AGENCY}});
                return response(StatusCode::NOT_FOUND, JSON, body.to_string());
            }
            let (access, secret, securitytoken, expires) = creds.issue_temporary(behaviour.ttl);
            let body = serde_json::json!({"credential": {
                "access": access,
                "secret": secret,
                "securitytoken": securitytoken,
                "expires_at": rfc3339_micros(expires),
            }});
            response(StatusCode::OK, JSON, body.to_string())
        }
        _ => text(StatusCode::NOT_FOUND, "404 Not Found"),
    }
}
