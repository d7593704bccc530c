//! The credentials the stand-in knows: permanent and temporary AK/SK pairs,
//! IAM users, the IAM tokens issued, the metadata service's session tokens
//! and behaviour, and call counters.
//!
//! One [`Credentials`] is shared by the auth checks (which read it), the IAM
//! and metadata handlers (which issue into it) and the public handle. Times
//! are wall-clock ([`SystemTime`]) because they are reported as RFC 3339
//! `expires_at` values.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::state::random_hex;

/// How the ECS metadata service behaves ([`crate::StandIn::set_metadata`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The `PUT /meta-data/latest/api/token` step is mandatory and the
    /// `GET` needs its session token in `X-Metadata-Token`. When false, the
    /// `PUT` answers 404 and the `GET` works without a token.
    pub require_session_token: bool,
    /// The VM has an agency. When false, `securitykey` answers 404 with
    /// "Please configure Cloud Service Agency first".
    pub agency: bool,
    /// Lifetime of the temporary keys handed out (`expires_at`).
    pub ttl: Duration,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            require_session_token: true,
            agency: true,
            ttl: Duration::from_secs(3600),
        }
    }
}

/// A temporary AK/SK pair.
#[derive(Debug, Clone)]
pub(crate) struct Temporary {
    pub(crate) sk: String,
    pub(crate) security_token: String,
    pub(crate) expires: SystemTime,
}

/// An IAM token issued by the stand-in.
#[derive(Debug, Clone)]
pub(crate) struct IamToken {
    pub(crate) project: String,
    pub(crate) expires: SystemTime,
    /// Set by [`Credentials::expire_tokens`].
    pub(crate) revoked: bool,
}

/// What an AK is.
#[derive(Debug, Clone)]
pub(crate) enum KeyKind {
    Permanent { sk: String },
    Temporary(Temporary),
}

/// Why an IAM token is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenState {
    /// Valid for this project.
    Valid { project: String },
    /// Issued, but expired (or expired on purpose).
    Expired,
    /// Never issued.
    Unknown,
}

#[derive(Default)]
struct Inner {
    permanent: HashMap<String, String>,
    temporary: HashMap<String, Temporary>,
    /// (domain, user) → password.
    users: HashMap<(String, String), String>,
    tokens: HashMap<String, IamToken>,
    /// Metadata session token → expiry.
    sessions: HashMap<String, SystemTime>,
    metadata: Metadata,
    iam_calls: usize,
    metadata_calls: usize,
}

/// The shared credential store.
pub(crate) struct Credentials {
    inner: Mutex<Inner>,
    token_ttl: Duration,
}

impl Credentials {
    pub(crate) fn new(aksk: &[(String, String)], token_ttl: Duration) -> Credentials {
        let inner = Inner {
            permanent: aksk.iter().cloned().collect(),
            ..Inner::default()
        };
        Credentials {
            inner: Mutex::new(inner),
            token_ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Poisoning cannot leave this store inconsistent in a way that
        // matters to a test double.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn add_aksk(&self, ak: &str, sk: &str) {
        self.lock().permanent.insert(ak.to_owned(), sk.to_owned());
    }

    pub(crate) fn add_user(&self, domain: &str, user: &str, password: &str) {
        self.lock()
            .users
            .insert((domain.to_owned(), user.to_owned()), password.to_owned());
    }

    /// Issues a fresh temporary key pair valid for `ttl`: (ak, sk, token, expiry).
    pub(crate) fn issue_temporary(&self, ttl: Duration) -> (String, String, String, SystemTime) {
        let ak = format!("TMP{}", random_hex(9).to_ascii_uppercase());
        let sk = random_hex(20);
        let security_token = format!("gQ{}", random_hex(48));
        let expires = SystemTime::now() + ttl;
        self.lock().temporary.insert(
            ak.clone(),
            Temporary {
                sk: sk.clone(),
                security_token: security_token.clone(),
                expires,
            },
        );
        (ak, sk, security_token, expires)
    }

    /// What an AK is, if known.
    pub(crate) fn key(&self, ak: &str) -> Option<KeyKind> {
        let inner = self.lock();
        if let Some(sk) = inner.permanent.get(ak) {
            return Some(KeyKind::Permanent { sk: sk.clone() });
        }
        inner.temporary.get(ak).cloned().map(KeyKind::Temporary)
    }

    /// Counts an IAM call and, if the password is right, issues a token
    /// for the project: (token, issued, expires).
    pub(crate) fn password_login(
        &self,
        domain: &str,
        user: &str,
        password: &str,
        project: &str,
    ) -> Option<(String, SystemTime, SystemTime)> {
        let mut inner = self.lock();
        inner.iam_calls += 1;
        let key = (domain.to_owned(), user.to_owned());
        if inner.users.get(&key).map(String::as_str) != Some(password) {
            return None;
        }
        let token = format!("MII{}", random_hex(64));
        let issued = SystemTime::now();
        let expires = issued + self.token_ttl;
        inner.tokens.insert(
            token.clone(),
            IamToken {
                project: project.to_owned(),
                expires,
                revoked: false,
            },
        );
        Some((token, issued, expires))
    }

    /// Counts a failed-before-login IAM call (bad request body).
    pub(crate) fn count_iam_call(&self) {
        self.lock().iam_calls += 1;
    }

    pub(crate) fn token_state(&self, token: &str, now: SystemTime) -> TokenState {
        match self.lock().tokens.get(token) {
            None => TokenState::Unknown,
            Some(t) if t.revoked || now >= t.expires => TokenState::Expired,
            Some(t) => TokenState::Valid {
                project: t.project.clone(),
            },
        }
    }

    pub(crate) fn expire_tokens(&self) {
        for token in self.lock().tokens.values_mut() {
            token.revoked = true;
        }
    }

    pub(crate) fn iam_calls(&self) -> usize {
        self.lock().iam_calls
    }

    pub(crate) fn metadata_calls(&self) -> usize {
        self.lock().metadata_calls
    }

    pub(crate) fn count_metadata_call(&self) {
        self.lock().metadata_calls += 1;
    }

    pub(crate) fn metadata(&self) -> Metadata {
        self.lock().metadata.clone()
    }

    pub(crate) fn set_metadata(&self, m: Metadata) {
        self.lock().metadata = m;
    }

    /// Issues a metadata session token valid for `ttl`.
    pub(crate) fn issue_session(&self, ttl: Duration) -> String {
        let token = random_hex(24);
        let mut inner = self.lock();
        let now = SystemTime::now();
        inner.sessions.retain(|_, exp| *exp > now);
        inner.sessions.insert(token.clone(), now + ttl);
        token
    }

    pub(crate) fn session_is_valid(&self, token: &str) -> bool {
        self.lock()
            .sessions
            .get(token)
            .is_some_and(|exp| *exp > SystemTime::now())
    }
}

/// `2026-11-29T04:36:13.000000Z`, the format IAM and the metadata service use.
pub(crate) fn rfc3339_micros(at: SystemTime) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::from(at)
        .format(FORMAT)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_format_has_six_fraction_digits() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_926_973_123_456);
        assert_eq!(rfc3339_micros(at), "2026-11-29T04:36:13.123456Z");
    }

    #[test]
    fn tokens_expire_by_time_and_on_demand() {
        let creds = Credentials::new(&[], Duration::from_secs(60));
        creds.add_user("d", "u", "pw");
        assert_eq!(creds.password_login("d", "u", "wrong", "p"), None);
        let Some((token, _, expires)) = creds.password_login("d", "u", "pw", "p") else {
            panic!("login with the right password failed");
        };
        assert_eq!(creds.iam_calls(), 2);
        let now = SystemTime::now();
        assert_eq!(
            creds.token_state(&token, now),
            TokenState::Valid {
                project: "p".to_owned()
            }
        );
        assert_eq!(creds.token_state(&token, expires), TokenState::Expired);
        assert_eq!(creds.token_state("other", now), TokenState::Unknown);
        creds.expire_tokens();
        assert_eq!(creds.token_state(&token, now), TokenState::Expired);
    }
}
