//! Huawei Cloud AK/SK request signing (`SDK-HMAC-SHA256`).
//!
//! This module is pure: it performs no I/O, reads no clock (the caller passes
//! the `X-Sdk-Date` header it will send, see [`sdk_date`]) and holds no state.
//! It produces the `Authorization` header value that the API gateway expects,
//! byte-compatible with the official SDK's signer (`huaweicloudsdkcore`).
//!
//! # The algorithm
//!
//! ```text
//! canonical request = METHOD \n URI \n QUERY \n HEADERS \n SIGNED \n hex(sha256(body))
//! string to sign    = "SDK-HMAC-SHA256" \n X-Sdk-Date \n hex(sha256(canonical request))
//! signature         = hex(hmac_sha256(key = raw SK, string to sign))
//! Authorization     = "SDK-HMAC-SHA256 Access=AK, SignedHeaders=a;b;c, Signature=sig"
//! ```
//!
//! - `URI` ([`encode_path`]): every `/`-separated segment is percent-encoded
//!   (only `A-Za-z0-9-_.~` are kept, hex in uppercase) and a `/` is appended if
//!   missing. The trailing slash exists only for signing; the request itself is
//!   sent without it.
//! - `QUERY` ([`encode_query`]): `key=value` pairs with the same encoding,
//!   sorted by raw key, then raw value, joined with `&`.
//! - `HEADERS`: one `lowercase(name):trimmed value\n` line per signed header,
//!   sorted. Every header the request carries is signed, `host` (taken from
//!   [`SigningRequest::host`], port included) always, except names containing
//!   `_`, which the gateway ignores. `SIGNED` is the sorted, de-duplicated list
//!   of those names joined with `;`.
//!
//! # Secrets
//!
//! The secret key is only ever handed to the HMAC as bytes: it is never copied
//! into a `String`, formatted or logged. [`SigningRequest`]'s `Debug` output
//! omits header values because `X-Security-Token` is a credential too.
//!
//! The file runs past 500 lines for its tests: the official vectors and the
//! property tests sit next to the code they pin (the code is under 300 lines).

use std::fmt;
use std::time::SystemTime;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Name of the signing algorithm, first word of the `Authorization` value and
/// first line of the string to sign.
const ALGORITHM: &str = "SDK-HMAC-SHA256";

/// Lowercased name of the header carrying the signing timestamp.
const SDK_DATE_HEADER: &str = "x-sdk-date";

/// Everything about one HTTP request that goes into its signature.
///
/// All fields borrow from the caller; building one is free.
#[derive(Clone, Copy)]
pub struct SigningRequest<'a> {
    /// HTTP method exactly as sent, e.g. `GET`. Signed as given (not uppercased).
    pub method: &'a str,
    /// `host[:port]` exactly as sent in the `Host` header.
    pub host: &'a str,
    /// Raw (not yet percent-encoded) request path, e.g. `/v3/{project}/instances`.
    pub path: &'a str,
    /// Query parameters, raw (not yet percent-encoded), in any order.
    pub query: &'a [(String, String)],
    /// Every header that will be sent except `Host` and `Authorization`
    /// (entries with those names are ignored). Must include `X-Sdk-Date`.
    pub headers: &'a [(String, String)],
    /// Request body; empty for a request without one.
    pub body: &'a [u8],
}

impl fmt::Debug for SigningRequest<'_> {
    /// Shows header names only: values may hold credentials
    /// (`X-Security-Token`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("SigningRequest")
            .field("method", &self.method)
            .field("host", &self.host)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("header_names", &header_names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Formats `t` as an `X-Sdk-Date` value: `YYYYMMDDTHHMMSSZ` in UTC.
///
/// Times outside years 0000..=9999 (which the format cannot express) are
/// clamped to the nearest representable second.
#[must_use]
pub fn sdk_date(t: SystemTime) -> String {
    /// 0000-01-01T00:00:00Z as a Unix timestamp.
    const MIN_SECS: i64 = -62_167_219_200;
    /// 9999-12-31T23:59:59Z as a Unix timestamp.
    const MAX_SECS: i64 = 253_402_300_799;

    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            // Round towards the past so that e.g. 0.5 s before the epoch is
            // 23:59:59 on the previous day, like a UTC wall clock shows it.
            let before = before.duration();
            let whole = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            let partial = i64::from(before.subsec_nanos() > 0);
            0_i64.saturating_sub(whole).saturating_sub(partial)
        }
    };
    let secs = secs.clamp(MIN_SECS, MAX_SECS);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(dt) => format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        ),
        // Unreachable: `secs` was clamped into the supported range above.
        Err(_) if secs < 0 => "00000101T000000Z".to_owned(),
        Err(_) => "99991231T235959Z".to_owned(),
    }
}

/// Builds the canonical request and the signed-headers list (`a;b;c`).
///
/// The canonical request is
/// `METHOD\nURI\nQUERY\nHEADER LINES\nSIGNED HEADERS\nhex(sha256(body))`,
/// where each header line ends in `\n` (so an empty line precedes the signed
/// headers). Headers named `Host` or `Authorization` in
/// [`SigningRequest::headers`] are ignored; `host` comes from
/// [`SigningRequest::host`]. A header name given more than once (in any case)
/// is listed once in the signed headers and contributes one line per value,
/// sorted by value.
#[must_use]
pub fn canonical_request(req: &SigningRequest) -> (String, String) {
    let mut entries: Vec<(String, &str)> = req
        .headers
        .iter()
        .filter(|(name, _)| !name.contains('_'))
        .map(|(name, value)| (name.to_lowercase(), value.trim()))
        .filter(|(name, _)| name != "host" && name != "authorization")
        .collect();
    entries.push(("host".to_owned(), req.host.trim()));
    entries.sort_unstable();

    let mut header_lines = String::new();
    let mut signed_headers = String::new();
    let mut previous: Option<&str> = None;
    for (name, value) in &entries {
        header_lines.push_str(name);
        header_lines.push(':');
        header_lines.push_str(value);
        header_lines.push('\n');
        if previous != Some(name.as_str()) {
            if previous.is_some() {
                signed_headers.push(';');
            }
            signed_headers.push_str(name);
            previous = Some(name.as_str());
        }
    }

    let canonical = [
        req.method,
        &encode_path(req.path),
        &encode_query(req.query),
        &header_lines,
        &signed_headers,
        &hex::encode(Sha256::digest(req.body)),
    ]
    .join("\n");
    (canonical, signed_headers)
}

/// Signs `req` and returns the full `Authorization` header value:
/// `SDK-HMAC-SHA256 Access={access_key}, SignedHeaders={a;b;c}, Signature={hex}`.
///
/// The string to sign uses the (trimmed) value of the request's `X-Sdk-Date`
/// header. A request without that header gets a signature the gateway will
/// reject, so callers must always include it (see [`sdk_date`]).
///
/// # Panics
///
/// Never: HMAC-SHA256 accepts secret keys of any length, including empty.
#[must_use]
pub fn authorization(req: &SigningRequest, access_key: &str, secret_key: &[u8]) -> String {
    let (canonical, signed_headers) = canonical_request(req);
    let date = req
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(SDK_DATE_HEADER))
        .map_or("", |(_, value)| value.trim());
    let string_to_sign = format!(
        "{ALGORITHM}\n{date}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );

    // HMAC accepts keys of any length (longer ones are hashed first), so this
    // constructor cannot fail; the `Result` only exists because of the
    // generic `KeyInit` trait.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret_key)
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());

    format!(
        "{ALGORITHM} Access={access_key}, SignedHeaders={signed_headers}, Signature={signature}"
    )
}

/// Canonical URI of a raw path: every `/`-separated segment percent-encoded
/// (keeping only `A-Za-z0-9-_.~`, uppercase hex), with a trailing `/` appended
/// when missing.
///
/// A path that does not start with `/` is treated as if it did, because the
/// request target on the wire always does; the empty path becomes `/`.
#[must_use]
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 2);
    if !path.starts_with('/') {
        out.push('/');
    }
    for (index, segment) in path.split('/').enumerate() {
        if index > 0 {
            out.push('/');
        }
        percent_encode_into(&mut out, segment);
    }
    if !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// Canonical query string: `key=value` pairs, each side percent-encoded like a
/// path segment, sorted by raw key then raw value (byte order), joined with
/// `&`. An empty list gives the empty string.
#[must_use]
pub fn encode_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<&(String, String)> = query.iter().collect();
    pairs.sort_unstable();
    let mut out = String::new();
    for (index, (key, value)) in pairs.into_iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        percent_encode_into(&mut out, key);
        out.push('=');
        percent_encode_into(&mut out, value);
    }
    out
}

/// Whether `byte` is left as-is by the canonical encoding (RFC 3986 unreserved).
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~')
}

/// Appends `s` to `out`, percent-encoding every UTF-8 byte that is not
/// unreserved, with uppercase hex digits.
fn percent_encode_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in s.as_bytes() {
        if is_unreserved(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0F)]));
        }
    }
}

/// The official SDK's signing vectors, for the tests of this module and of
/// [`super::auth`].
#[cfg(test)]
pub(crate) mod vectors {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    #[derive(Deserialize)]
    struct VectorFile {
        vectors: Vec<Vector>,
    }

    /// One request signed by the official SDK, with its expected header value.
    #[derive(Deserialize)]
    pub(crate) struct Vector {
        pub name: String,
        pub access_key: String,
        pub secret_key: String,
        pub method: String,
        pub host: String,
        pub path: String,
        pub query: Vec<(String, String)>,
        pub headers: BTreeMap<String, String>,
        pub body: String,
        pub authorization: String,
    }

    /// Every vector (at least the six the SDK's signer produced).
    pub(crate) fn load() -> Vec<Vector> {
        let file: VectorFile =
            serde_json::from_str(include_str!("../../tests/data/aksk-signing-vectors.json"))
                .expect("vectors file is valid JSON");
        assert!(
            file.vectors.len() >= 6,
            "expected the full vector set, got {}",
            file.vectors.len()
        );
        file.vectors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use proptest::prelude::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn sample_headers() -> Vec<(String, String)> {
        pairs(&[
            ("Content-Type", "application/json"),
            ("X-Project-Id", "p1"),
            ("X-Sdk-Date", "20261128T043613Z"),
        ])
    }

    fn sample_request<'a>(
        headers: &'a [(String, String)],
        query: &'a [(String, String)],
    ) -> SigningRequest<'a> {
        SigningRequest {
            method: "GET",
            host: "dds.cn-north-4.myhuaweicloud.com",
            path: "/v3/p1/instances/i1/ssl-cert/download-link",
            query,
            headers,
            body: b"",
        }
    }

    /// Reverses the canonical encoding; `None` on a malformed escape.
    fn percent_decode(s: &str) -> Option<Vec<u8>> {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        Some(out)
    }

    /// Whether `s` consists only of unreserved chars, `/` and `%XX` escapes
    /// with uppercase hex.
    fn only_canonical_chars(s: &str) -> bool {
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' => {
                    let ok = bytes.get(i + 1..i + 3).is_some_and(|h| {
                        h.iter()
                            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b))
                    });
                    if !ok {
                        return false;
                    }
                    i += 3;
                }
                b'/' => i += 1,
                b if is_unreserved(b) => i += 1,
                _ => return false,
            }
        }
        true
    }

    #[test]
    fn reproduces_every_official_vector() {
        for v in &vectors::load() {
            let headers: Vec<(String, String)> = v.headers.clone().into_iter().collect();
            let req = SigningRequest {
                method: &v.method,
                host: &v.host,
                path: &v.path,
                query: &v.query,
                headers: &headers,
                body: v.body.as_bytes(),
            };
            let got = authorization(&req, &v.access_key, v.secret_key.as_bytes());
            assert_eq!(got, v.authorization, "vector {:?}", v.name);
        }
    }

    /// The POST with an empty body (DCS's certificate download) is among
    /// the vectors and signs like the SDK: the payload hash is that of
    /// zero bytes, and the method takes part in the canonical request.
    #[test]
    fn post_with_empty_body_matches_the_sdk() {
        let all = vectors::load();
        let post: Vec<_> = all
            .iter()
            .filter(|v| v.method == "POST" && v.body.is_empty())
            .collect();
        assert!(!post.is_empty(), "no POST-with-empty-body vector");
        for v in post {
            let headers: Vec<(String, String)> = v.headers.clone().into_iter().collect();
            let req = SigningRequest {
                method: &v.method,
                host: &v.host,
                path: &v.path,
                query: &v.query,
                headers: &headers,
                body: b"",
            };
            let (canonical, _) = canonical_request(&req);
            assert!(canonical.starts_with("POST\n"), "{canonical}");
            assert!(
                canonical
                    .ends_with("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
                "{canonical}"
            );
            let got = authorization(&req, &v.access_key, v.secret_key.as_bytes());
            assert_eq!(got, v.authorization, "vector {:?}", v.name);
        }
    }

    #[test]
    fn header_order_does_not_matter() {
        let headers = sample_headers();
        let mut reversed = headers.clone();
        reversed.reverse();
        let a = authorization(&sample_request(&headers, &[]), "AK", b"SK");
        let b = authorization(&sample_request(&reversed, &[]), "AK", b"SK");
        assert_eq!(a, b);
    }

    #[test]
    fn canonical_request_layout() {
        let headers = sample_headers();
        let query = pairs(&[("b", "2"), ("a", "x y")]);
        let (canonical, signed) = canonical_request(&sample_request(&headers, &query));
        assert_eq!(signed, "content-type;host;x-project-id;x-sdk-date");
        let expected = "GET\n\
             /v3/p1/instances/i1/ssl-cert/download-link/\n\
             a=x%20y&b=2\n\
             content-type:application/json\n\
             host:dds.cn-north-4.myhuaweicloud.com\n\
             x-project-id:p1\n\
             x-sdk-date:20261128T043613Z\n\
             \n\
             content-type;host;x-project-id;x-sdk-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(canonical, expected);
    }

    #[test]
    fn header_filtering_and_duplicates() {
        let headers = pairs(&[
            ("X-Sdk-Date", "20261128T043613Z"),
            ("X_Custom_Underscore", "skipped"),
            ("Host", "evil.example"),
            ("Authorization", "old"),
            ("X-Multi", "b"),
            ("x-multi", " a "),
            ("UPPER", "\tv\t"),
        ]);
        let req = SigningRequest {
            host: "127.0.0.1:8443",
            ..sample_request(&headers, &[])
        };
        let (canonical, signed) = canonical_request(&req);
        assert_eq!(signed, "host;upper;x-multi;x-sdk-date");
        assert!(canonical.contains(
            "host:127.0.0.1:8443\nupper:v\nx-multi:a\nx-multi:b\nx-sdk-date:20261128T043613Z\n\n"
        ));
        assert!(!canonical.contains("evil"));
        assert!(!canonical.contains("skipped"));
        assert!(!canonical.contains("old"));

        let auth = authorization(&req, "AK1", b"secret");
        assert!(auth.starts_with(
            "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host;upper;x-multi;x-sdk-date, Signature="
        ));
        let sig = auth.rsplit("Signature=").next().unwrap_or_default();
        assert_eq!(sig.len(), 64);
        assert!(
            sig.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }

    #[test]
    fn secret_does_not_appear_in_output_or_debug() {
        let headers = pairs(&[
            ("X-Sdk-Date", "20261128T043613Z"),
            ("X-Security-Token", "tok-SECRET-VALUE"),
        ]);
        let req = sample_request(&headers, &[]);
        let auth = authorization(&req, "AK", b"my-very-secret-key");
        assert!(!auth.contains("my-very-secret-key"));
        let debug = format!("{req:?}");
        assert!(debug.contains("X-Security-Token"));
        assert!(!debug.contains("tok-SECRET-VALUE"));
    }

    #[test]
    fn payload_hash_of_known_body() {
        let headers = sample_headers();
        let req = SigningRequest {
            method: "POST",
            body: b"abc",
            ..sample_request(&headers, &[])
        };
        let (canonical, _) = canonical_request(&req);
        assert!(
            canonical
                .ends_with("\nba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert!(canonical.starts_with("POST\n"));
    }

    #[test]
    fn date_header_is_what_gets_signed() {
        let headers = sample_headers();
        let mut later = headers.clone();
        later[2].1 = "20261128T043614Z".to_owned();
        let a = authorization(&sample_request(&headers, &[]), "AK", b"SK");
        let b = authorization(&sample_request(&later, &[]), "AK", b"SK");
        assert_ne!(a, b);
    }

    #[test]
    fn different_secrets_give_different_signatures() {
        let headers = sample_headers();
        let req = sample_request(&headers, &[]);
        assert_ne!(
            authorization(&req, "AK", b"SK1"),
            authorization(&req, "AK", b"SK2")
        );
        // Keys longer than the SHA-256 block are accepted (hashed by HMAC).
        let long = [7_u8; 200];
        assert_ne!(
            authorization(&req, "AK", &long),
            authorization(&req, "AK", &long[..199])
        );
    }

    #[test]
    fn encode_path_edge_cases() {
        assert_eq!(encode_path(""), "/");
        assert_eq!(encode_path("/"), "/");
        assert_eq!(encode_path("/a b"), "/a%20b/");
        assert_eq!(encode_path("/ä/€"), "/%C3%A4/%E2%82%AC/");
        assert_eq!(encode_path("/v3/p/"), "/v3/p/");
        assert_eq!(encode_path("v3/p"), "/v3/p/");
        assert_eq!(encode_path("/a//b"), "/a//b/");
        assert_eq!(encode_path("/A-z_0.9~"), "/A-z_0.9~/");
        assert_eq!(encode_path("/100%+:@?#"), "/100%25%2B%3A%40%3F%23/");
    }

    #[test]
    fn encode_query_edge_cases() {
        assert_eq!(encode_query(&[]), "");
        assert_eq!(
            encode_query(&pairs(&[("name", "orders db/ä"), ("k", "")])),
            "k=&name=orders%20db%2F%C3%A4"
        );
        // Repeated keys: sorted by value too.
        assert_eq!(
            encode_query(&pairs(&[("a", "2"), ("a", "1"), ("A", "3")])),
            "A=3&a=1&a=2"
        );
        assert_eq!(encode_query(&pairs(&[("a&b", "c=d")])), "a%26b=c%3Dd");
    }

    #[test]
    fn sdk_date_formats_utc() {
        let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(sdk_date(at(1_795_840_573)), "20261128T043613Z");
        assert_eq!(sdk_date(at(951_782_400)), "20000229T000000Z");
        assert_eq!(sdk_date(SystemTime::UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(
            sdk_date(at(1_795_840_573) + Duration::from_millis(999)),
            "20261128T043613Z"
        );
        assert_eq!(
            sdk_date(SystemTime::UNIX_EPOCH - Duration::from_millis(500)),
            "19691231T235959Z"
        );
        assert_eq!(
            sdk_date(SystemTime::UNIX_EPOCH - Duration::from_secs(1)),
            "19691231T235959Z"
        );
        if let Some(far) = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(1 << 40)) {
            assert_eq!(sdk_date(far), "99991231T235959Z");
        }
    }

    /// A header name that is signed (no `_`, not Host/Authorization).
    fn header_name() -> impl Strategy<Value = String> {
        "X-[A-Za-z0-9-]{1,12}"
    }

    /// A header value as reqwest can send it (visible ASCII and spaces).
    fn header_value() -> impl Strategy<Value = String> {
        "[ -~]{0,24}"
    }

    /// Headers (with `X-Sdk-Date`), query and body of a generated request.
    type RequestParts = (Vec<(String, String)>, Vec<(String, String)>, Vec<u8>);

    fn request_parts() -> impl Strategy<Value = RequestParts> {
        (
            proptest::collection::vec((header_name(), header_value()), 0..6),
            proptest::collection::vec((".{0,8}", ".{0,8}"), 0..6),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(mut headers, query, body)| {
                headers.push(("X-Sdk-Date".to_owned(), "20261128T043613Z".to_owned()));
                (headers, query, body)
            })
    }

    fn sign(
        headers: &[(String, String)],
        query: &[(String, String)],
        body: &[u8],
        method: &str,
    ) -> String {
        let req = SigningRequest {
            method,
            host: "127.0.0.1:8443",
            path: "/v3/p/instances/i/ssl-cert/download-link",
            query,
            headers,
            body,
        };
        authorization(&req, "AK", b"SK")
    }

    proptest! {
        #[test]
        fn encode_path_output_is_canonical(path in ".{0,40}") {
            let encoded = encode_path(&path);
            prop_assert!(only_canonical_chars(&encoded), "bad chars in {encoded:?}");
            prop_assert!(encoded.starts_with('/'));
            prop_assert!(encoded.ends_with('/'));
        }

        #[test]
        fn encode_path_round_trips(segments in proptest::collection::vec("[^/]{0,10}", 0..6)) {
            let mut path = String::from("/");
            for segment in &segments {
                path.push_str(segment);
                path.push('/');
            }
            let encoded = encode_path(&path);
            prop_assert!(only_canonical_chars(&encoded), "bad chars in {encoded:?}");
            let decoded = percent_decode(&encoded).and_then(|b| String::from_utf8(b).ok());
            prop_assert_eq!(decoded.as_deref(), Some(path.as_str()));
        }

        #[test]
        fn encode_query_is_order_independent(
            (query, shuffled) in proptest::collection::vec((".{0,6}", ".{0,6}"), 0..8)
                .prop_flat_map(|q| (Just(q.clone()), Just(q).prop_shuffle()))
        ) {
            let encoded = encode_query(&query);
            prop_assert_eq!(&encoded, &encode_query(&shuffled));
            prop_assert!(only_canonical_chars(&encoded.replace(['&', '='], "")));
        }

        #[test]
        fn changing_a_signed_header_value_changes_signature(
            (headers, query, body) in request_parts(),
            pick in any::<prop::sample::Index>(),
            new_value in header_value(),
        ) {
            let i = pick.index(headers.len());
            prop_assume!(new_value.trim() != headers[i].1.trim());
            let mut changed = headers.clone();
            changed[i].1 = new_value;
            prop_assert_ne!(sign(&headers, &query, &body, "GET"), sign(&changed, &query, &body, "GET"));
        }

        #[test]
        fn changing_the_body_changes_signature(
            (headers, query, body) in request_parts(),
            other in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            prop_assume!(body != other);
            prop_assert_ne!(sign(&headers, &query, &body, "GET"), sign(&headers, &query, &other, "GET"));
        }

        #[test]
        fn changing_a_query_value_changes_signature(
            (headers, mut query, body) in request_parts(),
            key in ".{0,8}",
            value in ".{0,8}",
            other in ".{0,8}",
        ) {
            prop_assume!(value != other);
            query.push((key, value));
            let mut changed = query.clone();
            if let Some(last) = changed.last_mut() {
                last.1 = other;
            }
            prop_assert_ne!(sign(&headers, &query, &body, "GET"), sign(&headers, &changed, &body, "GET"));
        }

        #[test]
        fn changing_the_method_changes_signature(
            (headers, query, body) in request_parts(),
            method in "[A-Za-z]{1,8}",
            other in "[A-Za-z]{1,8}",
        ) {
            prop_assume!(method != other);
            prop_assert_ne!(sign(&headers, &query, &body, &method), sign(&headers, &query, &body, &other));
        }

        #[test]
        fn payload_hash_is_last_line(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let headers = sample_headers();
            let req = SigningRequest { body: &body, ..sample_request(&headers, &[]) };
            let (canonical, _) = canonical_request(&req);
            let expected = hex::encode(Sha256::digest(&body));
            prop_assert_eq!(canonical.rsplit('\n').next(), Some(expected.as_str()));
        }
    }
}
