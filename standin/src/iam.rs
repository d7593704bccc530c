//! The IAM listener: `POST /v3/auth/tokens` with a password identity.
//!
//! Right credentials get 201 with the token in `X-Subject-Token` and its
//! expiry in `token.expires_at`; wrong ones get IAM's own 401 error shape
//! (`{"error":{"code","message","title"}}`, unlike DDS's `error_code`). The
//! token is scoped to `scope.project.id` and valid for `Options::token_ttl`.

use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde::Deserialize;

use crate::body::Body;
use crate::creds::rfc3339_micros;
use crate::server::{JSON, header_value, response};
use crate::state::{Shared, random_hex};

#[derive(Deserialize)]
struct TokenRequest {
    auth: Auth,
}

#[derive(Deserialize)]
struct Auth {
    identity: Identity,
    scope: Option<Scope>,
}

#[derive(Deserialize)]
struct Identity {
    methods: Vec<String>,
    password: Option<PasswordIdentity>,
}

#[derive(Deserialize)]
struct PasswordIdentity {
    user: User,
}

#[derive(Deserialize)]
struct User {
    name: String,
    password: String,
    domain: Domain,
}

#[derive(Deserialize)]
struct Domain {
    name: String,
}

#[derive(Deserialize)]
struct Scope {
    project: Option<Project>,
}

#[derive(Deserialize)]
struct Project {
    id: String,
}

/// An IAM-style error: `{"error":{"code":…,"message":…,"title":…}}`.
fn iam_error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {
        "code": status.as_u16(),
        "message": message,
        "title": status.canonical_reason().unwrap_or("Error"),
    }});
    let mut resp = response(status, JSON, body.to_string());
    resp.headers_mut()
        .insert("x-request-id", header_value(&random_hex(16)));
    resp
}

/// A login request's fields, or why the body is unusable.
fn parse(body: &[u8]) -> Result<(String, String, String, String), &'static str> {
    let req: TokenRequest =
        serde_json::from_slice(body).map_err(|_| "The request body is invalid.")?;
    if !req.auth.identity.methods.iter().any(|m| m == "password") {
        return Err("Only the password method is supported by the stand-in.");
    }
    let user = req
        .auth
        .identity
        .password
        .ok_or("auth.identity.password is required.")?
        .user;
    let project = req
        .auth
        .scope
        .and_then(|s| s.project)
        .map(|p| p.id)
        .filter(|id| !id.is_empty())
        .ok_or("scope.project.id is required.")?;
    Ok((user.domain.name, user.name, user.password, project))
}

/// Answers a request on the IAM listener.
pub(crate) fn handle(parts: &Parts, body: &[u8], shared: &Shared) -> Response<Body> {
    if parts.uri.path() != "/v3/auth/tokens" {
        return iam_error(StatusCode::NOT_FOUND, "The resource could not be found.");
    }
    if parts.method != Method::POST {
        return iam_error(StatusCode::METHOD_NOT_ALLOWED, "The method is not allowed.");
    }
    let (domain, user, password, project) = match parse(body) {
        Ok(fields) => fields,
        Err(message) => {
            shared.creds.count_iam_call();
            return iam_error(StatusCode::BAD_REQUEST, message);
        }
    };
    let Some((token, issued, expires)) = shared
        .creds
        .password_login(&domain, &user, &password, &project)
    else {
        return iam_error(
            StatusCode::UNAUTHORIZED,
            "The username or password is wrong.",
        );
    };
    let body = serde_json::json!({"token": {
        "expires_at": rfc3339_micros(expires),
        "issued_at": rfc3339_micros(issued),
        "methods": ["password"],
        "project": {"id": project, "name": project, "domain": {"name": domain}},
        "user": {"name": user, "domain": {"name": domain}},
    }});
    let mut resp = response(StatusCode::CREATED, JSON, body.to_string());
    let headers = resp.headers_mut();
    headers.insert("x-subject-token", header_value(&token));
    headers.insert("x-request-id", header_value(&random_hex(16)));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_bodies_parse_strictly_enough() {
        let good = br#"{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"u","password":"p","domain":{"name":"d"}}}},"scope":{"project":{"id":"proj"}}}}"#;
        assert_eq!(
            parse(good),
            Ok((
                "d".to_owned(),
                "u".to_owned(),
                "p".to_owned(),
                "proj".to_owned()
            ))
        );
        let no_scope = br#"{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"u","password":"p","domain":{"name":"d"}}}}}}"#;
        assert_eq!(parse(no_scope), Err("scope.project.id is required."));
        let token_method = br#"{"auth":{"identity":{"methods":["token"]}}}"#;
        assert!(parse(token_method).is_err());
        assert!(parse(b"not json").is_err());
    }
}
