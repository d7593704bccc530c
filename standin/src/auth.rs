//! Authentication of DDS API requests.
//!
//! Each scheme is an [`AuthCheck`]: a function of the request (head, body,
//! the project in its path, the server's clock) that says whether the
//! request carries credentials of its kind and, if so, whether they are
//! good. The API accepts a request when any check accepts it; otherwise it
//! answers 403 `APIGW.0302` when a check found valid credentials for another
//! project, else 401 `APIGW.0301` with the first rejection's reason.
//!
//! * [`TokenAuth`]: `X-Auth-Token` equal to the fixed `Options::token`, or
//!   an unexpired IAM token the stand-in issued for the path's project.
//! * [`AkSkAuth`]: `Authorization: SDK-HMAC-SHA256 …` recomputed by
//!   [`crate::aksk::verify`] with the SK of a known permanent or temporary
//!   access key; temporary keys need their signed `X-Security-Token`, and
//!   every AK/SK request needs `X-Project-Id` naming the path's project.
//!
//! Reasons never contain a secret, a token or the expected signature.

use std::sync::Arc;
use std::time::SystemTime;

use hyper::http::request::Parts;

use crate::aksk::{self, SignedRequest};
use crate::creds::{Credentials, KeyKind, TokenState};

/// What one scheme thinks of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthOutcome {
    /// The request carries valid credentials of this kind.
    Accepted,
    /// The request carries no credentials of this kind.
    NotPresent,
    /// The request carries credentials of this kind, and they are wrong.
    Rejected(String),
    /// The credentials are valid, but not for the path's project.
    Forbidden(String),
}

/// Why the API refuses a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// 401 `APIGW.0301`.
    Unauthorized(String),
    /// 403 `APIGW.0302`.
    Forbidden(String),
}

/// The request as the checks see it.
pub(crate) struct AuthRequest<'a> {
    pub(crate) parts: &'a Parts,
    pub(crate) body: &'a [u8],
    /// The project id in the request path.
    pub(crate) project: &'a str,
    pub(crate) now: SystemTime,
}

impl AuthRequest<'_> {
    /// A header's value by (lowercase) name; repeated headers joined by `,`.
    fn header(&self, name: &str) -> Option<String> {
        let values: Vec<String> = self
            .parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }
}

/// One authentication scheme.
pub(crate) trait AuthCheck: Send + Sync {
    /// Judges the request.
    fn check(&self, req: &AuthRequest<'_>) -> AuthOutcome;
}

/// `X-Auth-Token`: the fixed token, or an IAM token issued by the stand-in.
pub(crate) struct TokenAuth {
    token: String,
    iam: Option<Arc<Credentials>>,
}

impl TokenAuth {
    /// Accepts only the fixed token.
    #[cfg(test)]
    pub(crate) fn new(token: &str) -> TokenAuth {
        TokenAuth {
            token: token.to_owned(),
            iam: None,
        }
    }

    /// Accepts the fixed token and the IAM tokens in `creds`.
    pub(crate) fn with_iam(token: &str, creds: Arc<Credentials>) -> TokenAuth {
        TokenAuth {
            token: token.to_owned(),
            iam: Some(creds),
        }
    }
}

impl AuthCheck for TokenAuth {
    fn check(&self, req: &AuthRequest<'_>) -> AuthOutcome {
        let Some(given) = req.parts.headers.get("x-auth-token") else {
            return AuthOutcome::NotPresent;
        };
        if given.as_bytes() == self.token.as_bytes() {
            return AuthOutcome::Accepted;
        }
        let state = match (&self.iam, given.to_str()) {
            (Some(creds), Ok(token)) => creds.token_state(token, req.now),
            _ => TokenState::Unknown,
        };
        match state {
            TokenState::Valid { project } if project == req.project => AuthOutcome::Accepted,
            TokenState::Valid { .. } => AuthOutcome::Forbidden(
                "the token is scoped to another project than the one in the request".to_owned(),
            ),
            TokenState::Expired => AuthOutcome::Rejected("The token expired".to_owned()),
            TokenState::Unknown => {
                AuthOutcome::Rejected("The token is invalid or has expired".to_owned())
            }
        }
    }
}

/// `Authorization: SDK-HMAC-SHA256 …` with a known permanent or temporary key.
pub(crate) struct AkSkAuth {
    creds: Arc<Credentials>,
}

impl AkSkAuth {
    pub(crate) fn new(creds: Arc<Credentials>) -> AkSkAuth {
        AkSkAuth { creds }
    }
}

impl AuthCheck for AkSkAuth {
    fn check(&self, req: &AuthRequest<'_>) -> AuthOutcome {
        let Some(value) = req.header("authorization") else {
            return AuthOutcome::NotPresent;
        };
        let auth = match aksk::parse_authorization(value.trim()) {
            None => {
                return AuthOutcome::Rejected(
                    "unsupported Authorization scheme (expected SDK-HMAC-SHA256)".to_owned(),
                );
            }
            Some(Err(reason)) => return AuthOutcome::Rejected(reason),
            Some(Ok(auth)) => auth,
        };
        let Some(kind) = self.creds.key(&auth.access) else {
            return AuthOutcome::Rejected("the access key does not exist".to_owned());
        };
        let sk = match &kind {
            KeyKind::Permanent { sk } => sk.as_str(),
            KeyKind::Temporary(t) => t.sk.as_str(),
        };
        let header = |name: &str| req.header(name);
        let signed = SignedRequest {
            method: req.parts.method.as_str(),
            raw_path: req.parts.uri.path(),
            raw_query: req.parts.uri.query().unwrap_or(""),
            header: &header,
            body: req.body,
        };
        if let Err(reason) = aksk::verify(&signed, &auth, sk, req.now) {
            return AuthOutcome::Rejected(reason);
        }
        let security_token = req.header("x-security-token");
        match (&kind, security_token) {
            (KeyKind::Permanent { .. }, None) => {}
            (KeyKind::Permanent { .. }, Some(_)) => {
                return AuthOutcome::Rejected(
                    "X-Security-Token was sent with a permanent access key".to_owned(),
                );
            }
            (KeyKind::Temporary(_), None) => {
                return AuthOutcome::Rejected(
                    "a temporary access key needs X-Security-Token".to_owned(),
                );
            }
            (KeyKind::Temporary(t), Some(token)) => {
                if !auth.signed_headers.iter().any(|h| h == "x-security-token") {
                    return AuthOutcome::Rejected(
                        "x-security-token is not in SignedHeaders".to_owned(),
                    );
                }
                if token.trim() != t.security_token {
                    return AuthOutcome::Rejected(
                        "the security token does not match the access key".to_owned(),
                    );
                }
                if req.now >= t.expires {
                    return AuthOutcome::Rejected("the security token has expired".to_owned());
                }
            }
        }
        match req.header("x-project-id") {
            None => AuthOutcome::Rejected("X-Project-Id is required with AK/SK".to_owned()),
            Some(p) if p.trim() != req.project => AuthOutcome::Forbidden(
                "X-Project-Id does not match the project in the request".to_owned(),
            ),
            Some(_) => AuthOutcome::Accepted,
        }
    }
}

/// Runs the checks in order: `Ok` if one accepts, else why not.
pub(crate) fn authenticate(
    checks: &[Box<dyn AuthCheck>],
    req: &AuthRequest<'_>,
) -> Result<(), AuthFailure> {
    let mut first_rejection = None;
    let mut forbidden = None;
    for check in checks {
        match check.check(req) {
            AuthOutcome::Accepted => return Ok(()),
            AuthOutcome::NotPresent => {}
            AuthOutcome::Rejected(reason) => {
                first_rejection.get_or_insert(reason);
            }
            AuthOutcome::Forbidden(reason) => {
                forbidden.get_or_insert(reason);
            }
        }
    }
    if let Some(reason) = forbidden {
        return Err(AuthFailure::Forbidden(reason));
    }
    Err(AuthFailure::Unauthorized(
        first_rejection.unwrap_or_else(|| "x-auth-token not found".to_owned()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Request;
    use std::time::Duration;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::builder().uri("/v3/p/instances/i/ssl-cert/download-link");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        match b.body(()) {
            Ok(req) => req.into_parts().0,
            Err(e) => panic!("test request: {e}"),
        }
    }

    fn run(checks: &[Box<dyn AuthCheck>], parts: &Parts) -> Result<(), AuthFailure> {
        let req = AuthRequest {
            parts,
            body: b"",
            project: "p",
            now: SystemTime::now(),
        };
        authenticate(checks, &req)
    }

    #[test]
    fn token_check_accepts_only_the_token() {
        let checks: Vec<Box<dyn AuthCheck>> = vec![Box::new(TokenAuth::new("good"))];
        assert_eq!(run(&checks, &parts(&[("X-Auth-Token", "good")])), Ok(()));
        assert_eq!(
            run(&checks, &parts(&[("X-Auth-Token", "bad")])),
            Err(AuthFailure::Unauthorized(
                "The token is invalid or has expired".to_owned()
            ))
        );
        assert_eq!(
            run(&checks, &parts(&[])),
            Err(AuthFailure::Unauthorized(
                "x-auth-token not found".to_owned()
            ))
        );
    }

    #[test]
    fn iam_tokens_are_scoped_and_expire() {
        let creds = Arc::new(Credentials::new(&[], Duration::from_secs(60)));
        creds.add_user("d", "u", "pw");
        let checks: Vec<Box<dyn AuthCheck>> =
            vec![Box::new(TokenAuth::with_iam("fixed", Arc::clone(&creds)))];
        let login = |project: &str| match creds.password_login("d", "u", "pw", project) {
            Some((token, _, _)) => token,
            None => panic!("login failed"),
        };
        let here = login("p");
        let there = login("q");
        assert_eq!(run(&checks, &parts(&[("X-Auth-Token", &here)])), Ok(()));
        assert!(matches!(
            run(&checks, &parts(&[("X-Auth-Token", &there)])),
            Err(AuthFailure::Forbidden(_))
        ));
        creds.expire_tokens();
        assert_eq!(
            run(&checks, &parts(&[("X-Auth-Token", &here)])),
            Err(AuthFailure::Unauthorized("The token expired".to_owned()))
        );
        assert_eq!(run(&checks, &parts(&[("X-Auth-Token", "fixed")])), Ok(()));
    }

    #[test]
    fn aksk_needs_a_known_key_and_the_project_header() {
        let creds = Arc::new(Credentials::new(
            &[("AK1".to_owned(), "SK1".to_owned())],
            Duration::from_secs(60),
        ));
        let checks: Vec<Box<dyn AuthCheck>> = vec![Box::new(AkSkAuth::new(creds))];
        let date = aksk::sdk_date(SystemTime::now());
        let path = "/v3/p/instances/i/ssl-cert/download-link";
        let sign = |ak: &str, sk: &str, headers: &[(&str, &str)]| {
            aksk::authorization(ak, sk, "GET", "h:1", path, headers, b"")
        };
        let good = [
            ("Host", "h:1"),
            ("X-Project-Id", "p"),
            ("X-Sdk-Date", &date),
        ];
        let auth = sign("AK1", "SK1", &good);
        let mut with_auth = good.to_vec();
        with_auth.push(("Authorization", &auth));
        assert_eq!(run(&checks, &parts(&with_auth)), Ok(()));

        let unknown = sign("AK2", "SK1", &good);
        let mut req = good.to_vec();
        req.push(("Authorization", &unknown));
        assert_eq!(
            run(&checks, &parts(&req)),
            Err(AuthFailure::Unauthorized(
                "the access key does not exist".to_owned()
            ))
        );

        let no_project = [("Host", "h:1"), ("X-Sdk-Date", &date)];
        let auth = sign("AK1", "SK1", &no_project);
        let mut req = no_project.to_vec();
        req.push(("Authorization", &auth));
        assert_eq!(
            run(&checks, &parts(&req)),
            Err(AuthFailure::Unauthorized(
                "X-Project-Id is required with AK/SK".to_owned()
            ))
        );

        let other = [
            ("Host", "h:1"),
            ("X-Project-Id", "q"),
            ("X-Sdk-Date", &date),
        ];
        let auth = sign("AK1", "SK1", &other);
        let mut req = other.to_vec();
        req.push(("Authorization", &auth));
        assert!(matches!(
            run(&checks, &parts(&req)),
            Err(AuthFailure::Forbidden(_))
        ));
    }
}
