//! AK/SK request signatures (`SDK-HMAC-SHA256`), as the API gateway checks
//! them.
//!
//! Written from the field notes and the official SDK's documented algorithm,
//! independently of the daemon's signer, so that a bug in one is caught by
//! the other. The canonical request is
//! `METHOD\nURI\nQUERY\nHEADERS\nSIGNED\nHEX(SHA256(body))` where
//!
//! * URI: the percent-decoded path, split on `/`, each segment re-encoded
//!   (keeping `A-Za-z0-9-_.~`, uppercase hex), with a `/` appended when the
//!   path does not end in one;
//! * QUERY: the decoded pairs sorted by key (then value), each side encoded
//!   the same way, `k=v` joined by `&`;
//! * HEADERS: `name:trimmed value\n` for each header named in
//!   `SignedHeaders`, in that order; SIGNED: those names joined by `;`.
//!
//! The string to sign is `SDK-HMAC-SHA256\n{X-Sdk-Date}\nHEX(SHA256(canonical))`
//! and the signature is hex HMAC-SHA256 of it keyed with the raw SK.
//!
//! [`authorization`] signs a request the way the official SDK does (every
//! header given, plus `host`); the server uses `verify` on what it
//! receives. Both share [`canonical_request`], which the official SDK
//! vectors pin down (`standin/tests/it/aksk.rs`).

use std::time::{Duration, SystemTime};

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The signing algorithm's name, first word of the `Authorization` header.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";

/// How far `X-Sdk-Date` may be from the server's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The body hash the gateway accepts in place of the real one when the
/// client sends `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

type HmacSha256 = hmac::Hmac<Sha256>;

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes every byte outside `A-Za-z0-9-_.~`, with uppercase hex.
pub fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes; a `%` not followed by two hex digits stays literal.
fn decode(input: &str) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex_digit),
                bytes.get(i + 2).copied().and_then(hex_digit),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The canonical URI of a raw (as received) request path.
pub fn canonical_uri(raw_path: &str) -> String {
    let decoded = decode(raw_path);
    let mut out = decoded
        .split(|&b| b == b'/')
        .map(encode)
        .collect::<Vec<_>>()
        .join("/");
    if !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// The canonical query string of a raw query (without `?`). `+` decodes to
/// a space, as in form encoding.
pub fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k.as_bytes()), encode(v.as_bytes())))
        .collect::<Vec<_>>()
        .join("&")
}

/// Hex SHA-256.
fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The canonical request. `signed` are lowercase header names in the order
/// the client listed them; `header` looks a header's value up by lowercase
/// name. Fails, naming the header, when a signed header is absent.
pub fn canonical_request(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    signed: &[String],
    header: &dyn Fn(&str) -> Option<String>,
    payload_hash: &str,
) -> Result<String, String> {
    let mut headers = String::new();
    for name in signed {
        let value =
            header(name).ok_or_else(|| format!("signed header {name:?} is not in the request"))?;
        headers.push_str(name);
        headers.push(':');
        headers.push_str(value.trim());
        headers.push('\n');
    }
    Ok(format!(
        "{method}\n{uri}\n{query}\n{headers}\n{signed}\n{payload_hash}",
        uri = canonical_uri(raw_path),
        query = canonical_query(raw_query),
        signed = signed.join(";"),
    ))
}

/// The string to sign for a canonical request.
pub fn string_to_sign(sdk_date: &str, canonical: &str) -> String {
    format!(
        "{ALGORITHM}\n{sdk_date}\n{}",
        sha256_hex(canonical.as_bytes())
    )
}

fn mac(sk: &str, data: &str) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(sk.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(data.as_bytes());
    m
}

/// Hex HMAC-SHA256 of the string to sign, keyed with the raw SK.
pub fn signature(sk: &str, string_to_sign: &str) -> String {
    hex::encode(mac(sk, string_to_sign).finalize().into_bytes())
}

/// Signs a request as the official SDK does and returns the
/// `Authorization` header value. Every header in `headers` is signed
/// (names lowercased, names containing `_` skipped), plus `host`; one of
/// them must be `X-Sdk-Date`. `path_and_query` is the request target as it
/// goes on the wire (already percent-encoded).
///
/// For tests that need to craft signed requests; the stand-in's own check
/// is `verify`.
pub fn authorization(
    ak: &str,
    sk: &str,
    method: &str,
    host: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut all: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| !n.contains('_'))
        .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
        .collect();
    if !all.iter().any(|(n, _)| n == "host") {
        all.push(("host".to_owned(), host.to_owned()));
    }
    all.sort();
    let signed: Vec<String> = all.iter().map(|(n, _)| n.clone()).collect();
    let lookup = |name: &str| all.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let date = lookup("x-sdk-date").unwrap_or_default();
    let payload = if lookup("x-sdk-content-sha256").as_deref() == Some(UNSIGNED_PAYLOAD) {
        UNSIGNED_PAYLOAD.to_owned()
    } else {
        sha256_hex(body)
    };
    // Every signed header comes from `all`, so this cannot fail.
    let canonical =
        canonical_request(method, path, query, &signed, &lookup, &payload).unwrap_or_default();
    format!(
        "{ALGORITHM} Access={ak}, SignedHeaders={}, Signature={}",
        signed.join(";"),
        signature(sk, &string_to_sign(&date, &canonical))
    )
}

/// The `X-Sdk-Date` format, `YYYYMMDDTHHMMSSZ` (UTC).
const SDK_DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");

/// Formats a time as `X-Sdk-Date`.
pub fn sdk_date(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(SDK_DATE)
        .unwrap_or_default()
}

/// Parses `X-Sdk-Date`.
fn parse_sdk_date(value: &str) -> Option<SystemTime> {
    time::PrimitiveDateTime::parse(value, SDK_DATE)
        .ok()
        .map(|t| SystemTime::from(t.assume_utc()))
}

/// The parts of an `Authorization: SDK-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthHeader {
    pub(crate) access: String,
    pub(crate) signed_headers: Vec<String>,
    pub(crate) signature: String,
}

/// Parses `SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`.
/// `None` when the header is of another scheme.
pub(crate) fn parse_authorization(value: &str) -> Option<Result<AuthHeader, String>> {
    let rest = value.strip_prefix(ALGORITHM)?;
    let mut access = None;
    let mut signed = None;
    let mut sig = None;
    for item in rest.split(',') {
        let Some((key, val)) = item.trim().split_once('=') else {
            return Some(Err("malformed Authorization header".to_owned()));
        };
        let slot = match key.trim() {
            "Access" => &mut access,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut sig,
            _ => return Some(Err("malformed Authorization header".to_owned())),
        };
        *slot = Some(val.trim().to_owned());
    }
    let (Some(access), Some(signed), Some(signature)) = (access, signed, sig) else {
        return Some(Err(
            "Authorization needs Access, SignedHeaders and Signature".to_owned(),
        ));
    };
    let signed_headers: Vec<String> = signed.split(';').map(str::to_owned).collect();
    if access.is_empty() || signed_headers.iter().any(String::is_empty) {
        return Some(Err("malformed Authorization header".to_owned()));
    }
    Some(Ok(AuthHeader {
        access,
        signed_headers,
        signature,
    }))
}

/// What the gateway needs from a request to check its signature.
pub(crate) struct SignedRequest<'a> {
    pub(crate) method: &'a str,
    pub(crate) raw_path: &'a str,
    pub(crate) raw_query: &'a str,
    /// Header values by lowercase name (repeated headers joined with `,`).
    pub(crate) header: &'a dyn Fn(&str) -> Option<String>,
    pub(crate) body: &'a [u8],
}

/// Checks a request's signature with the SK that belongs to `auth.access`.
/// The reasons never contain the expected signature or any secret.
pub(crate) fn verify(
    req: &SignedRequest<'_>,
    auth: &AuthHeader,
    sk: &str,
    now: SystemTime,
) -> Result<(), String> {
    for required in ["host", "x-sdk-date"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(format!("{required} is not in SignedHeaders"));
        }
    }
    let date = (req.header)("x-sdk-date").ok_or("x-sdk-date not found")?;
    let Some(at) = parse_sdk_date(date.trim()) else {
        return Err(format!(
            "X-Sdk-Date {date:?} is not in the format YYYYMMDDTHHMMSSZ"
        ));
    };
    let skew = now
        .duration_since(at)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap_or_default();
    if skew > MAX_SKEW {
        return Err(format!(
            "the request has expired: X-Sdk-Date {date} is more than 15 minutes from the server time {}",
            sdk_date(now)
        ));
    }
    let payload = if (req.header)("x-sdk-content-sha256").as_deref() == Some(UNSIGNED_PAYLOAD) {
        UNSIGNED_PAYLOAD.to_owned()
    } else {
        sha256_hex(req.body)
    };
    let canonical = canonical_request(
        req.method,
        req.raw_path,
        req.raw_query,
        &auth.signed_headers,
        req.header,
        &payload,
    )?;
    let expected = mac(sk, &string_to_sign(date.trim(), &canonical));
    let given = hex::decode(&auth.signature).map_err(|_| "verify aksk signature fail")?;
    expected
        .verify_slice(&given)
        .map_err(|_| "verify aksk signature fail".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_only_unreserved() {
        assert_eq!(encode(b"aZ09-_.~"), "aZ09-_.~");
        assert_eq!(encode("a b/ä+*".as_bytes()), "a%20b%2F%C3%A4%2B%2A");
    }

    #[test]
    fn uri_is_reencoded_and_gets_a_trailing_slash() {
        assert_eq!(canonical_uri("/v3/p/x"), "/v3/p/x/");
        assert_eq!(canonical_uri("/v3/p/x/"), "/v3/p/x/");
        assert_eq!(canonical_uri("/a%20b/c%7e"), "/a%20b/c~/");
        assert_eq!(canonical_uri("/bad%zz"), "/bad%25zz/");
        assert_eq!(canonical_uri(""), "/");
    }

    #[test]
    fn query_is_sorted_and_encoded() {
        assert_eq!(
            canonical_query("b=2&a=x+y&a=%C3%A4&c"),
            "a=x%20y&a=%C3%A4&b=2&c="
        );
        assert_eq!(canonical_query(""), "");
    }

    #[test]
    fn authorization_header_parses() {
        let parsed = parse_authorization(
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=00ff",
        );
        assert_eq!(
            parsed,
            Some(Ok(AuthHeader {
                access: "AK".to_owned(),
                signed_headers: vec!["host".to_owned(), "x-sdk-date".to_owned()],
                signature: "00ff".to_owned(),
            }))
        );
        assert_eq!(parse_authorization("Bearer x"), None);
        assert!(matches!(
            parse_authorization("SDK-HMAC-SHA256 Access=AK"),
            Some(Err(_))
        ));
        assert!(matches!(
            parse_authorization("SDK-HMAC-SHA256 Access=AK, SignedHeaders=;, Signature=1"),
            Some(Err(_))
        ));
    }

    /// The official SDK's vectors, checked through the server-side path:
    /// the request as received (target encoded in the vector's query order,
    /// `Host` header) must verify with the vector's `Authorization`, at the
    /// vector's date, and fail with one bit of the SK changed.
    #[test]
    fn verify_accepts_every_official_vector() {
        let text = include_str!("../../tests/data/aksk-signing-vectors.json");
        let doc: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => panic!("vectors: {e}"),
        };
        let vectors = doc["vectors"].as_array().cloned().unwrap_or_default();
        assert!(vectors.len() >= 6, "too few vectors");
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        for v in vectors {
            let name = s(&v["name"]);
            let query: Vec<String> = v["query"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|kv| {
                    format!(
                        "{}={}",
                        encode(s(&kv[0]).as_bytes()),
                        encode(s(&kv[1]).as_bytes())
                    )
                })
                .collect();
            let mut headers: Vec<(String, String)> = v["headers"]
                .as_object()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|(k, val)| (k.to_ascii_lowercase(), s(val)))
                .collect();
            headers.push(("host".to_owned(), s(&v["host"])));
            let lookup = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, val)| val.clone())
            };
            let raw_query = query.join("&");
            let body = s(&v["body"]);
            let method = s(&v["method"]);
            let path = s(&v["path"]);
            let req = SignedRequest {
                method: &method,
                raw_path: &path,
                raw_query: &raw_query,
                header: &lookup,
                body: body.as_bytes(),
            };
            let auth = match parse_authorization(&s(&v["authorization"])) {
                Some(Ok(a)) => a,
                other => panic!("{name}: authorization does not parse: {other:?}"),
            };
            let at = lookup("x-sdk-date").and_then(|d| parse_sdk_date(&d));
            let Some(at) = at else {
                panic!("{name}: no X-Sdk-Date");
            };
            let sk = s(&v["secret_key"]);
            assert_eq!(verify(&req, &auth, &sk, at), Ok(()), "{name}");
            let mut wrong = sk.clone().into_bytes();
            if let Some(last) = wrong.last_mut() {
                *last ^= 1;
            }
            let wrong = String::from_utf8_lossy(&wrong).into_owned();
            assert_eq!(
                verify(&req, &auth, &wrong, at),
                Err("verify aksk signature fail".to_owned()),
                "{name}"
            );
            let late = at + MAX_SKEW + Duration::from_secs(1);
            let skewed = verify(&req, &auth, &sk, late);
            assert!(
                skewed.as_ref().is_err_and(|e| e.contains("15 minutes")),
                "{name}: {skewed:?}"
            );
            let early = at - MAX_SKEW + Duration::from_secs(1);
            assert_eq!(verify(&req, &auth, &sk, early), Ok(()), "{name}");
        }
    }

    #[test]
    fn sdk_dates_round_trip() {
        let at = parse_sdk_date("20261128T043613Z");
        assert!(at.is_some());
        assert_eq!(at.map(sdk_date).as_deref(), Some("20261128T043613Z"));
        assert_eq!(parse_sdk_date("2026-11-28T04:36:13Z"), None);
    }
}
