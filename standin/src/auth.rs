//! Authentication of DDS API requests.
//!
//! Each scheme is an [`AuthCheck`]: a pure function of the request head that
//! says whether the request carries credentials of its kind and, if so,
//! whether they are good. The API accepts a request when any check accepts it;
//! otherwise it answers 401 `APIGW.0301` with the first rejection's reason.
//! Today only [`TokenAuth`] (`X-Auth-Token`) exists; IAM password tokens and
//! AK/SK signatures are meant to plug in as further checks.

use hyper::http::request::Parts;

/// What one scheme thinks of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthOutcome {
    /// The request carries valid credentials of this kind.
    Accepted,
    /// The request carries no credentials of this kind.
    NotPresent,
    /// The request carries credentials of this kind, and they are wrong.
    Rejected(String),
}

/// One authentication scheme.
pub(crate) trait AuthCheck: Send + Sync {
    /// Judges the request head.
    fn check(&self, req: &Parts) -> AuthOutcome;
}

/// Accepts requests whose `X-Auth-Token` equals a fixed token.
pub(crate) struct TokenAuth {
    token: String,
}

impl TokenAuth {
    pub(crate) fn new(token: &str) -> TokenAuth {
        TokenAuth {
            token: token.to_owned(),
        }
    }
}

impl AuthCheck for TokenAuth {
    fn check(&self, req: &Parts) -> AuthOutcome {
        match req.headers.get("x-auth-token") {
            None => AuthOutcome::NotPresent,
            Some(v) if v.as_bytes() == self.token.as_bytes() => AuthOutcome::Accepted,
            Some(_) => AuthOutcome::Rejected("The token is invalid or has expired".to_owned()),
        }
    }
}

/// Runs the checks in order: `Ok` if one accepts, else the reason to report.
pub(crate) fn authenticate(checks: &[Box<dyn AuthCheck>], req: &Parts) -> Result<(), String> {
    let mut first_rejection = None;
    for check in checks {
        match check.check(req) {
            AuthOutcome::Accepted => return Ok(()),
            AuthOutcome::NotPresent => {}
            AuthOutcome::Rejected(reason) => {
                first_rejection.get_or_insert(reason);
            }
        }
    }
    Err(first_rejection.unwrap_or_else(|| "x-auth-token not found".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Request;

    fn parts(token: Option<&str>) -> Parts {
        let mut b = Request::builder().uri("/v3/p/instances/i/ssl-cert/download-link");
        if let Some(t) = token {
            b = b.header("X-Auth-Token", t);
        }
        match b.body(()) {
            Ok(req) => req.into_parts().0,
            Err(e) => panic!("test request: {e}"),
        }
    }

    #[test]
    fn token_check_accepts_only_the_token() {
        let checks: Vec<Box<dyn AuthCheck>> = vec![Box::new(TokenAuth::new("good"))];
        assert_eq!(authenticate(&checks, &parts(Some("good"))), Ok(()));
        assert_eq!(
            authenticate(&checks, &parts(Some("bad"))),
            Err("The token is invalid or has expired".to_owned())
        );
        assert_eq!(
            authenticate(&checks, &parts(None)),
            Err("x-auth-token not found".to_owned())
        );
    }
}
