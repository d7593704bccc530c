//! IAM password authentication: project-scoped tokens, cached per project.
//!
//! `POST {iam}/v3/auth/tokens` with the user, the domain and the password
//! answers 201 with the token in `X-Subject-Token` and its expiry in the body
//! (`token.expires_at`). [`TokenCache`] keeps one token per project and hands
//! it to every instance of that project: one IAM call per project, not per
//! instance or per round. Each project has its own async lock, held while a
//! token is fetched, so many instances asking at once wait for the one call
//! in flight instead of each calling IAM (single flight).
//!
//! The caching is [`super::cache::Cache`], one per project. A failed request
//! is shared the same way for a while ([`failure_hold`]): a wrong password is
//! tried once, not once per instance, which could lock the IAM user out.
//!
//! A token is refreshed well before it expires ([`needs_refresh`]); if the
//! refresh fails, the token keeps being used until it expires and the
//! refresh is retried with backoff. After a 401 from DDS,
//! [`TokenCache::invalidate`] drops exactly the token that was refused, so a
//! second refusal of the same token cannot throw away a fresh one fetched
//! meanwhile.
//!
//! Parsing IAM's answer ([`parse_token_answer`]) and the refresh decision are
//! pure; errors name IAM and the user, never the password or the token: IAM's
//! texts are scrubbed of the password and every token ([`super::scrub`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::Deserialize;

use super::cache::{Cache, Expiring, Generation};
use super::credential::{AuthError, SecretReader};
use super::scrub::Scrubber;
use crate::secret::Secret;

/// Refresh a token this long before it expires, at most.
const REFRESH_MARGIN: Duration = Duration::from_secs(3600);

/// The largest IAM answer read.
const MAX_IAM_BODY: usize = 256 * 1024;

/// A token and when it stops working.
#[derive(Debug, Clone)]
pub struct IamToken {
    pub value: Secret,
    pub obtained_at: SystemTime,
    pub expires_at: SystemTime,
}

/// When a token obtained at `obtained` and expiring at `expires` is due for
/// replacement: an hour before its expiry, or at half its life for a token
/// that lives less than two hours.
pub fn refresh_time(obtained: SystemTime, expires: SystemTime) -> SystemTime {
    let life = expires.duration_since(obtained).unwrap_or(Duration::ZERO);
    let margin = REFRESH_MARGIN.min(life / 2);
    expires
        .checked_sub(margin)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Whether a token obtained at `obtained` and expiring at `expires` should be
/// replaced at `now` (see [`refresh_time`]).
pub fn needs_refresh(now: SystemTime, obtained: SystemTime, expires: SystemTime) -> bool {
    now >= refresh_time(obtained, expires)
}

impl Expiring for IamToken {
    fn refresh_at(&self) -> SystemTime {
        refresh_time(self.obtained_at, self.expires_at)
    }
    fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

/// Why IAM did not give a token, before the user and endpoint are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IamFailure {
    /// IAM refused the credentials (401/403): not worth retrying soon.
    Refused(String),
    /// Another status; transient when 429 or 5xx.
    Status(u16, String),
    /// 201, but unusable.
    BadAnswer(String),
}

#[derive(Deserialize)]
struct TokenBody {
    token: TokenInfo,
}

#[derive(Deserialize)]
struct TokenInfo {
    expires_at: String,
}

/// Parses IAM's answer to a token request.
pub fn parse_token_answer(
    status: u16,
    subject_token: Option<&str>,
    body: &[u8],
) -> Result<(Secret, SystemTime), IamFailure> {
    if !(200..300).contains(&status) {
        let msg = error_message(body);
        return Err(if status == 401 || status == 403 {
            IamFailure::Refused(msg)
        } else {
            IamFailure::Status(status, msg)
        });
    }
    let token = subject_token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| IamFailure::BadAnswer("no X-Subject-Token header".into()))?;
    let parsed: TokenBody = serde_json::from_slice(body)
        .map_err(|e| IamFailure::BadAnswer(format!("no token.expires_at in the body ({e})")))?;
    let expires = parse_time(&parsed.token.expires_at).ok_or_else(|| {
        IamFailure::BadAnswer(format!(
            "token.expires_at {:?} is not a time",
            parsed.token.expires_at
        ))
    })?;
    Ok((Secret::new(token), expires))
}

/// Parses an RFC 3339 time such as `2026-11-29T04:36:13.000000Z`.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()?;
    Some(SystemTime::from(t))
}

/// IAM's error text: `error.message`, else the SDK's lenient fields.
fn error_message(body: &[u8]) -> String {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return String::from("(no JSON error body)"),
    };
    if let Some(e) = v.get("error") {
        let title = e.get("title").and_then(|x| x.as_str());
        let msg = e.get("message").and_then(|x| x.as_str());
        match (title, msg) {
            (Some(t), Some(m)) => return format!("{t}: {m}"),
            (None, Some(m)) => return m.to_string(),
            _ => {}
        }
    }
    match super::api::error_fields(body) {
        (Some(c), Some(m), _) => format!("{c}: {m}"),
        (None, Some(m), _) => m,
        (Some(c), None, _) => c,
        (None, None, _) => String::from("(no error message)"),
    }
}

/// How long a failed token request is answered from memory: callers that
/// waited for it share its error instead of each asking IAM again (a wrong
/// password tried once per instance could lock the IAM user out).
pub fn failure_hold(e: &AuthError) -> Duration {
    if e.is_transient() {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(60)
    }
}

type Slot = Arc<Cache<IamToken>>;

/// Tokens for an IAM user, one per project.
#[derive(Debug)]
pub struct TokenCache {
    user: String,
    domain: String,
    password: SecretReader,
    iam_endpoint: String,
    slots: Mutex<HashMap<String, Slot>>,
}

impl TokenCache {
    pub fn new(user: String, domain: String, password: SecretReader, iam_endpoint: String) -> Self {
        TokenCache {
            user,
            domain,
            password,
            iam_endpoint,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// For logs: who, where, and how the password is given.
    pub fn describe(&self) -> String {
        format!(
            "IAM password of user {:?} in domain {:?} (password {}), tokens from {}",
            self.user,
            self.domain,
            self.password.describe(),
            self.iam_endpoint
        )
    }

    /// The live secrets: the password and the tokens of every project.
    pub fn secrets(&self) -> Vec<Secret> {
        let slots: Vec<Slot> = {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.values().cloned().collect()
        };
        self.password
            .last_known()
            .into_iter()
            .chain(slots.iter().flat_map(|s| s.recent()).map(|t| t.value))
            .collect()
    }

    fn slot(&self, project: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(project.to_string()).or_insert_with(|| {
            Arc::new(Cache::new(
                format!("the IAM token of project {project}"),
                failure_hold,
            ))
        });
        Arc::clone(slot)
    }

    /// A valid token for `project` and its generation, from the cache or,
    /// once for all waiting callers, from IAM.
    pub async fn token(
        &self,
        http: &reqwest::Client,
        project: &str,
    ) -> Result<(IamToken, Generation), AuthError> {
        self.slot(project).get(|_| self.fetch(http, project)).await
    }

    /// Forgets `project`'s token if it is still the one of `generation`.
    pub async fn invalidate(&self, project: &str, generation: Generation) {
        self.slot(project).invalidate(generation).await;
    }

    async fn fetch(&self, http: &reqwest::Client, project: &str) -> Result<IamToken, AuthError> {
        let password = self.password.get().await?;
        let body = serde_json::json!({
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {
                        "name": self.user,
                        "password": password.expose(),
                        "domain": {"name": self.domain},
                    }},
                },
                "scope": {"project": {"id": project}},
            }
        });
        let body = serde_json::to_vec(&body).map_err(|e| self.error(format!("{e}"), false))?;
        let url = format!("{}/v3/auth/tokens", self.iam_endpoint);
        // IAM's texts may echo what it was sent, or a token.
        let scrubber = Scrubber::new(self.secrets()).with([password.clone()]);
        tracing::debug!(iam = %self.iam_endpoint, user = %self.user, project, "requesting an IAM token");
        let resp = http
            .post(&url)
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json;charset=utf8"),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| self.error(scrubber.scrub(&super::describe(&e)), true))?;
        let status = resp.status().as_u16();
        let subject = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(|s| Secret::new(s.trim()));
        let answer = super::read_capped(resp, MAX_IAM_BODY)
            .await
            .map_err(|_| self.error("the answer could not be read".into(), true))?;
        let parsed = parse_token_answer(status, subject.as_ref().map(Secret::expose), &answer);
        let scrubber = scrubber.with(subject);
        let (value, expires_at) = parsed.map_err(|f| match f {
            IamFailure::Refused(m) => AuthError::IamRefused {
                iam: self.iam_endpoint.clone(),
                user: self.user.clone(),
                domain: self.domain.clone(),
                detail: scrubber.scrub(&m),
            },
            IamFailure::Status(s, m) => self.error(
                format!("HTTP {s}: {}", scrubber.scrub(&m)),
                s == 429 || s >= 500,
            ),
            IamFailure::BadAnswer(m) => self.error(scrubber.scrub(&m), false),
        })?;
        let now = SystemTime::now();
        tracing::info!(
            iam = %self.iam_endpoint,
            user = %self.user,
            project,
            expires_at = %humantime::format_rfc3339_seconds(expires_at),
            "obtained an IAM token"
        );
        Ok(IamToken {
            value,
            obtained_at: now,
            expires_at,
        })
    }

    fn error(&self, detail: String, transient: bool) -> AuthError {
        AuthError::Iam {
            iam: self.iam_endpoint.clone(),
            user: self.user.clone(),
            detail,
            transient,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn refresh_an_hour_early_or_at_half_life() {
        let day = 24 * 3600;
        assert!(!needs_refresh(at(0), at(0), at(day)));
        assert!(!needs_refresh(at(day - 3601), at(0), at(day)));
        assert!(needs_refresh(at(day - 3600), at(0), at(day)));
        assert!(needs_refresh(at(day + 5), at(0), at(day)));
        // A 20-minute token is refreshed after 10 minutes.
        assert!(!needs_refresh(at(599), at(0), at(1200)));
        assert!(needs_refresh(at(600), at(0), at(1200)));
        // Already expired when obtained (clock skew): refresh.
        assert!(needs_refresh(at(10), at(10), at(5)));
    }

    #[test]
    fn parses_a_token_answer() {
        let body =
            br#"{"token":{"expires_at":"2026-11-29T04:36:13.000000Z","methods":["password"]}}"#;
        let (tok, exp) = parse_token_answer(201, Some("MIItoken"), body).unwrap();
        assert_eq!(tok.expose(), "MIItoken");
        assert_eq!(
            exp.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            1_795_926_973
        );
    }

    #[test]
    fn refusals_and_bad_answers() {
        let body = br#"{"error":{"code":401,"message":"The username or password is wrong.","title":"Unauthorized"}}"#;
        assert_eq!(
            parse_token_answer(401, None, body),
            Err(IamFailure::Refused(
                "Unauthorized: The username or password is wrong.".into()
            ))
        );
        assert_eq!(
            parse_token_answer(503, None, b"oops"),
            Err(IamFailure::Status(503, "(no JSON error body)".into()))
        );
        assert_eq!(
            parse_token_answer(400, None, br#"{"error_code":"IAM.0001","error_msg":"bad"}"#),
            Err(IamFailure::Status(400, "IAM.0001: bad".into()))
        );
        assert!(matches!(
            parse_token_answer(201, None, b"{}"),
            Err(IamFailure::BadAnswer(_))
        ));
        assert!(matches!(
            parse_token_answer(201, Some("t"), br#"{"token":{"expires_at":"tomorrow"}}"#),
            Err(IamFailure::BadAnswer(m)) if m.contains("tomorrow")
        ));
    }
}
