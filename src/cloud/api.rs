//! The DDS API's answers, parsed. Pure: bytes in, values or errors out.
//!
//! The success body is `{"certs":[{"category":..,"download_link":..}]}`. An
//! answer that lists a category twice is refused whole: which link is the
//! real one cannot be told, and picking one silently could write either.
//! Error bodies are parsed as leniently as the official SDK parses them:
//! `error_code`/`error_msg`, else `errorCode`/`errorMsg`, else
//! `code`/`message`, with `request_id` when present. Their texts are
//! scrubbed of live secrets ([`super::scrub`]) before they are clipped.
//!
//! The file runs past 500 lines for its unit tests, which sit beside the code
//! they pin (the code is under 300 lines).

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderValue;
use serde::Deserialize;

use super::scrub::Scrubber;
use crate::reason::Reason;

/// One download link from the API. The category is kept as the API spelled
/// it; categories the config does not ask for are simply never looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub category: String,
    pub url: String,
}

/// Why asking the API for links failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{}", describe_status(.status, .code, .message, .request_id))]
    Status {
        status: u16,
        code: Option<String>,
        message: Option<String>,
        request_id: Option<String>,
        retry_after: Option<Duration>,
    },
    #[error("the API answered with an unusable body: {0}")]
    BadResponse(String),
    #[error("API request timed out")]
    Timeout,
    #[error("API request failed: {0}")]
    Network(String),
    #[error("credentials: {0}")]
    Auth(String),
}

impl ApiError {
    /// Whether trying again soon may help.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Timeout | ApiError::Network(_) => true,
            ApiError::Status { status, .. } => *status == 429 || *status >= 500,
            ApiError::BadResponse(_) | ApiError::Auth(_) => false,
        }
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The error with every secret `scrubber` knows masked in its texts
    /// (which came from the network).
    #[must_use]
    pub fn scrubbed(self, scrubber: &Scrubber) -> ApiError {
        match self {
            ApiError::Status {
                status,
                code,
                message,
                request_id,
                retry_after,
            } => ApiError::Status {
                status,
                code: scrubber.scrub_opt(code),
                message: scrubber.scrub_opt(message),
                request_id: scrubber.scrub_opt(request_id),
                retry_after,
            },
            ApiError::BadResponse(t) => ApiError::BadResponse(scrubber.scrub(&t)),
            ApiError::Network(t) => ApiError::Network(scrubber.scrub(&t)),
            ApiError::Auth(t) => ApiError::Auth(scrubber.scrub(&t)),
            ApiError::Timeout => ApiError::Timeout,
        }
    }

    /// Why, as a round's failure reason (and the metrics' label).
    pub fn reason(&self) -> Reason {
        match self {
            ApiError::Status { status: 401, .. } | ApiError::Status { status: 403, .. } => {
                Reason::ApiAuth
            }
            ApiError::Status { status: 429, .. } => Reason::ApiThrottled,
            ApiError::Status { status, .. } if *status >= 500 => Reason::ApiServerError,
            ApiError::Status { .. } => Reason::ApiClientError,
            ApiError::BadResponse(_) => Reason::ApiBadResponse,
            ApiError::Timeout => Reason::ApiTimeout,
            ApiError::Network(_) => Reason::ApiNetwork,
            ApiError::Auth(_) => Reason::Credentials,
        }
    }
}

fn describe_status(
    status: &u16,
    code: &Option<String>,
    message: &Option<String>,
    request_id: &Option<String>,
) -> String {
    let mut s = format!("the API answered HTTP {status}");
    match (code, message) {
        (Some(c), Some(m)) => s.push_str(&format!(": {c}: {m}")),
        (Some(c), None) => s.push_str(&format!(": {c}")),
        (None, Some(m)) => s.push_str(&format!(": {m}")),
        (None, None) => {}
    }
    if let Some(r) = request_id {
        s.push_str(&format!(" (request_id {r})"));
    }
    s
}

#[derive(Deserialize)]
struct LinksBody {
    certs: Vec<CertEntry>,
}

#[derive(Deserialize)]
struct CertEntry {
    category: String,
    download_link: String,
}

/// serde's text for a shape error, unless it quotes a value of the answer
/// (its "invalid type: string \"…\"" and "invalid value" errors do, and a
/// link may be pre-signed): then only where the error is. A missing field
/// is named, which quotes nothing of the answer.
fn shape_detail(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.starts_with("invalid type") || text.starts_with("invalid value") {
        format!(
            "a value of the wrong type at line {} column {}",
            e.line(),
            e.column()
        )
    } else {
        text
    }
}

/// Parses a 200 answer. A category listed more than once is an error.
pub fn parse_links(body: &[u8]) -> Result<Vec<Link>, ApiError> {
    let parsed: LinksBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadResponse(if e.is_syntax() || e.is_eof() {
            format!("not JSON ({e})")
        } else {
            format!("unexpected JSON shape ({})", shape_detail(&e))
        })
    })?;
    let links: Vec<Link> = parsed
        .certs
        .into_iter()
        .map(|c| Link {
            category: c.category,
            url: c.download_link,
        })
        .collect();
    for (i, l) in links.iter().enumerate() {
        let times = links.iter().filter(|o| o.category == l.category).count();
        if times > 1 && !links[..i].iter().any(|o| o.category == l.category) {
            return Err(ApiError::BadResponse(format!(
                "the answer lists category {:?} {times} times; refusing it rather than picking one",
                clip(&l.category, 64)
            )));
        }
    }
    Ok(links)
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    error_code: Option<String>,
    error_msg: Option<String>,
    #[serde(rename = "errorCode")]
    error_code_camel: Option<String>,
    #[serde(rename = "errorMsg")]
    error_msg_camel: Option<String>,
    code: Option<serde_json::Value>,
    message: Option<String>,
    request_id: Option<String>,
}

/// The code, message and request ID of a Huawei Cloud error body, read as
/// leniently as the official SDK reads them. Unclipped.
pub fn error_fields(body: &[u8]) -> (Option<String>, Option<String>, Option<String>) {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let code = parsed
        .error_code
        .or(parsed.error_code_camel)
        .or(match parsed.code {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        });
    let message = parsed
        .error_msg
        .or(parsed.error_msg_camel)
        .or(parsed.message);
    (code, message, parsed.request_id)
}

/// Builds the error for a non-2xx answer from its body.
pub fn status_error(
    status: u16,
    body: &[u8],
    header_request_id: Option<String>,
    retry_after: Option<Duration>,
) -> ApiError {
    status_error_scrubbed(
        status,
        body,
        header_request_id,
        retry_after,
        &Scrubber::default(),
    )
}

/// [`status_error`], with every secret `scrubber` knows masked in the
/// server's texts before they are clipped (a secret is never cut in half).
pub fn status_error_scrubbed(
    status: u16,
    body: &[u8],
    header_request_id: Option<String>,
    retry_after: Option<Duration>,
    scrubber: &Scrubber,
) -> ApiError {
    let (code, message, request_id) = error_fields(body);
    let text = |t: String, max| clip(&scrubber.scrub(&t), max);
    ApiError::Status {
        status,
        code: code.map(|c| text(c, 64)),
        message: message.map(|m| text(m, 300)),
        request_id: request_id.or(header_request_id).map(|r| text(r, 64)),
        retry_after,
    }
}

/// A short description of a download host's error page (OBS answers XML).
pub fn describe_download_error(content_type: &str, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find('<')? + start;
        Some(text[start..end].trim().to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!(": {}: {}", clip(&c, 64), clip(&m, 200)),
        (Some(c), None) => format!(": {}", clip(&c, 64)),
        _ if content_type.contains("html") => " (an HTML error page)".into(),
        _ => String::new(),
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(v: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let s = v.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(24 * 3600)));
    }
    let when = httpdate::parse_http_date(s).ok()?;
    Some(
        when.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(24 * 3600)),
    )
}

/// Cuts untrusted text to a length, on a character boundary, and flattens
/// control characters so one log line stays one line.
fn clip(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_links_and_keeps_unknown_categories() {
        let body = br#"{"certs":[{"category":"international","download_link":"https://a/x.crt"},
            {"category":"quantum","download_link":"https://a/q.crt"}]}"#;
        let links = parse_links(body).unwrap();
        assert_eq!(links.len(), 2);
        assert_eq!(links[0].category, "international");
        assert_eq!(links[1].url, "https://a/q.crt");
    }

    #[test]
    fn an_answer_listing_a_category_twice_is_refused() {
        let body = br#"{"certs":[{"category":"international","download_link":"https://a/x.crt"},
            {"category":"national","download_link":"https://a/n.crt"},
            {"category":"international","download_link":"https://evil/y.crt"}]}"#;
        let e = parse_links(body).unwrap_err();
        assert!(matches!(e, ApiError::BadResponse(_)), "{e:?}");
        assert!(
            e.to_string()
                .contains("lists category \"international\" 2 times"),
            "{e}"
        );
        assert!(!e.is_transient());
    }

    #[test]
    fn bad_bodies_are_described() {
        let e = parse_links(b"<html>").unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
        let e = parse_links(br#"{"certs":{"category":"x"}}"#).unwrap_err();
        assert!(e.to_string().contains("unexpected JSON shape"), "{e}");
        let e = parse_links(br#"{"links":[]}"#).unwrap_err();
        assert!(e.to_string().contains("certs"), "{e}");
        assert!(!e.is_transient());
    }

    #[test]
    fn error_bodies_are_parsed_leniently() {
        let e = status_error(
            404,
            br#"{"error_code":"DBS.200002","error_msg":"The DB instance does not exist"}"#,
            Some("abc".into()),
            None,
        );
        assert_eq!(
            e.to_string(),
            "the API answered HTTP 404: DBS.200002: The DB instance does not exist (request_id abc)"
        );
        let e = status_error(
            401,
            br#"{"errorCode":"APIGW.0301","errorMsg":"bad sig"}"#,
            None,
            None,
        );
        assert!(e.to_string().contains("APIGW.0301: bad sig"));
        let e = status_error(500, br#"{"code":500,"message":"oops"}"#, None, None);
        assert!(e.to_string().contains("500: oops"));
        assert!(e.is_transient());
        let e = status_error(502, b"<html>bad gateway</html>", None, None);
        assert_eq!(e.to_string(), "the API answered HTTP 502");
    }

    #[test]
    fn an_echoed_secret_is_masked_whole_before_the_message_is_clipped() {
        let secret = "S".repeat(40);
        let body = format!(
            r#"{{"error_code":"X {secret}","error_msg":"{pad} {secret} tail","request_id":"{secret}"}}"#,
            pad = "p".repeat(280)
        );
        let scrubber = Scrubber::new([crate::secret::Secret::new(secret.clone())]);
        let e = status_error_scrubbed(403, body.as_bytes(), None, None, &scrubber);
        let text = e.to_string();
        assert!(!text.contains("SSSS"), "{text}");
        assert!(
            text.contains("X ********") && text.contains(&"p".repeat(280)),
            "{text}"
        );
        let e =
            ApiError::BadResponse(format!("invalid type: string {secret:?}")).scrubbed(&scrubber);
        assert!(!e.to_string().contains(&secret));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("7"), now),
            Some(Duration::from_secs(7))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&HeaderValue::from_str(&date).unwrap(), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("soon"), now),
            None
        );
    }

    #[test]
    fn obs_xml_errors_are_summarised() {
        let d = describe_download_error(
            "application/xml",
            b"<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
        );
        assert_eq!(d, ": AccessDenied: Request has expired");
        assert_eq!(
            describe_download_error("text/html", b"<html>"),
            " (an HTML error page)"
        );
    }

    #[test]
    fn clip_flattens_and_cuts() {
        assert_eq!(clip("a\nb", 10), "a b");
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("abc", 3), "abc", "a text that fits is not marked cut");
    }

    #[test]
    fn throttling_and_server_errors_are_transient_client_errors_are_not() {
        let status = |s| status_error(s, b"", None, None);
        for s in [429, 500, 503] {
            assert!(status(s).is_transient(), "{s}");
        }
        for s in [400, 401, 403, 404, 428, 430, 499] {
            assert!(!status(s).is_transient(), "{s}");
        }
        assert!(ApiError::Timeout.is_transient());
        assert!(ApiError::Network("reset".into()).is_transient());
        assert!(!ApiError::Auth("no key".into()).is_transient());
    }

    #[test]
    fn each_failure_has_its_reason() {
        let status = |s| status_error(s, b"", None, None).reason().as_str();
        assert_eq!(status(401), "api_auth");
        assert_eq!(status(403), "api_auth");
        assert_eq!(status(429), "api_throttled");
        assert_eq!(status(500), "api_server_error");
        assert_eq!(status(504), "api_server_error");
        assert_eq!(status(499), "api_client_error");
        assert_eq!(status(404), "api_client_error");
        assert_eq!(
            ApiError::BadResponse("x".into()).reason().as_str(),
            "api_bad_response"
        );
        assert_eq!(ApiError::Timeout.reason().as_str(), "api_timeout");
        assert_eq!(
            ApiError::Network("x".into()).reason().as_str(),
            "api_network"
        );
        assert_eq!(ApiError::Auth("x".into()).reason().as_str(), "credentials");
    }

    #[test]
    fn only_a_status_answer_carries_the_delay_the_server_asked_for() {
        let wait = Some(Duration::from_secs(7));
        assert_eq!(status_error(429, b"", None, wait).retry_after(), wait);
        assert_eq!(status_error(503, b"", None, None).retry_after(), None);
        assert_eq!(ApiError::Timeout.retry_after(), None);
    }

    #[test]
    fn retry_after_is_capped_at_a_day() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let day = Some(Duration::from_secs(86_400));
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("100000"), now),
            day
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(2 * 86_400));
        assert_eq!(
            parse_retry_after(&HeaderValue::from_str(&date).unwrap(), now),
            day
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(60));
        assert_eq!(
            parse_retry_after(&HeaderValue::from_str(&past).unwrap(), now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn a_string_code_is_read_like_a_numeric_one() {
        let e = status_error(400, br#"{"code":"DBS.280001","message":"bad"}"#, None, None);
        assert_eq!(e.to_string(), "the API answered HTTP 400: DBS.280001: bad");
        let e = status_error(400, br#"{"error_code":"DBS.1"}"#, None, None);
        assert_eq!(e.to_string(), "the API answered HTTP 400: DBS.1");
        // Some gateways answer with a number.
        let e = status_error(404, br#"{"code":404,"message":"not found"}"#, None, None);
        assert_eq!(e.to_string(), "the API answered HTTP 404: 404: not found");
    }

    #[test]
    fn error_fields_read_each_spelling_in_the_sdks_order() {
        let f = |body: &str| error_fields(body.as_bytes());
        let some = |s: &str| Some(s.to_string());
        // Every field in its snake_case spelling, with a request ID.
        assert_eq!(
            f(r#"{"error_code":"DBS.1","error_msg":"m1","request_id":"r1"}"#),
            (some("DBS.1"), some("m1"), some("r1"))
        );
        // snake_case before camelCase before the plain names.
        assert_eq!(
            f(
                r#"{"code":"C","errorCode":"B","error_code":"A","message":"z","errorMsg":"y","error_msg":"x"}"#
            ),
            (some("A"), some("x"), None)
        );
        assert_eq!(
            f(r#"{"code":"C","errorCode":"B","message":"z","errorMsg":"y"}"#),
            (some("B"), some("y"), None)
        );
        assert_eq!(
            f(r#"{"code":7,"message":"z"}"#),
            (some("7"), some("z"), None)
        );
        // A code of another type is no code; a body that is no JSON object
        // has no fields.
        assert_eq!(f(r#"{"code":[1],"request_id":""}"#), (None, None, some("")));
        assert_eq!(f("<html>bad gateway</html>"), (None, None, None));
    }

    #[test]
    fn a_shape_error_quotes_no_value_of_the_answer() {
        for body in [
            &br#"{"certs":"https://obs/x.crt?Signature=SECRET"}"#[..],
            br#"{"certs":["https://obs/x.crt?Signature=SECRET"]}"#,
        ] {
            let e = parse_links(body).unwrap_err().to_string();
            assert!(e.contains("unexpected JSON shape"), "{e}");
            assert!(!e.contains("SECRET"), "{e}");
        }
    }

    #[test]
    fn the_first_category_listed_twice_is_the_one_named() {
        let link = |c: &str| format!(r#"{{"category":"{c}","download_link":"https://a/{c}.crt"}}"#);
        let body = format!(
            r#"{{"certs":[{},{},{},{},{}]}}"#,
            link("quantum"),
            link("national"),
            link("international"),
            link("international"),
            link("national")
        );
        let e = parse_links(body.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("category \"national\" 2 times"), "{e}");
    }

    #[test]
    fn an_error_page_without_a_message_or_tags_is_summarised() {
        assert_eq!(
            describe_download_error("application/xml", b"<Error><Code>NoSuchKey</Code></Error>"),
            ": NoSuchKey"
        );
        assert_eq!(describe_download_error("application/xml", b"gone"), "");
        assert_eq!(
            describe_download_error("text/html; charset=utf-8", b"gone"),
            " (an HTML error page)"
        );
    }
}
