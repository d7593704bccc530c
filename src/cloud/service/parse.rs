//! The answer parser of each service: bytes of a 200 answer in, links or an
//! [`ApiError::BadResponse`] out. Pure.
//!
//! DDS keeps the parser it has always had ([`api::parse_links`], whose
//! shape errors drop serde's text where it would quote a value). The others
//! walk a `serde_json::Value` by hand so that no error can quote a value of
//! the answer (serde's type errors quote the offending string, and a DCS
//! link is a pre-signed URL): errors name the service, the field and what
//! was wrong. Unknown fields are ignored, so an answer that grows a field
//! still parses. Bounds: [`MAX_ANSWER`] bytes, [`MAX_LINKS`] links,
//! [`MAX_LINK`] bytes per link, [`MAX_CATEGORY`] bytes per category.

use serde_json::{Map, Value};

use super::super::api::{self, ApiError, Link};

/// The largest answer parsed, in bytes (the client reads no more anyway).
pub const MAX_ANSWER: usize = 64 * 1024;
/// The most links one answer may list.
pub const MAX_LINKS: usize = 16;
/// The longest link accepted, in bytes.
pub const MAX_LINK: usize = 8 * 1024;
/// The longest category accepted, in bytes.
pub const MAX_CATEGORY: usize = 64;

/// The category reported for an answer that has none.
const STANDARD: &str = "international";

fn bad(service: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadResponse(format!("{service} answer: {why}"))
}

/// The answer as a JSON object, or an error that quotes nothing from it.
fn object(service: &str, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.len() > MAX_ANSWER {
        return Err(bad(service, format!("larger than {MAX_ANSWER} bytes")));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        bad(
            service,
            format!("not JSON (line {} column {})", e.line(), e.column()),
        )
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(bad(
            service,
            format!("expected a JSON object, got {}", kind(&other)),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A string field, present, non-empty and at most `max` bytes.
fn text<'a>(
    service: &str,
    map: &'a Map<String, Value>,
    field: &str,
    at: &str,
    max: usize,
) -> Result<&'a str, ApiError> {
    match map.get(field) {
        None | Some(Value::Null) => Err(bad(service, format!("{at}{field} is missing"))),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(bad(service, format!("{at}{field} is empty")))
        }
        Some(Value::String(s)) if s.len() > max => Err(bad(
            service,
            format!("{at}{field} is longer than {max} bytes"),
        )),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(bad(
            service,
            format!("{at}{field} should be a string, got {}", kind(other)),
        )),
    }
}

/// `{"<list>":[{"category":..,"download_link":..}, ..]}`.
fn listed(service: &str, body: &[u8], list: &str) -> Result<Vec<Link>, ApiError> {
    let map = object(service, body)?;
    let entries = match map.get(list) {
        None | Some(Value::Null) => return Err(bad(service, format!("{list} is missing"))),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(bad(
                service,
                format!("{list} should be an array, got {}", kind(other)),
            ));
        }
    };
    if entries.len() > MAX_LINKS {
        return Err(bad(
            service,
            format!(
                "{list} lists {} entries, more than {MAX_LINKS}",
                entries.len()
            ),
        ));
    }
    let mut links = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("{list}[{i}].");
        let Value::Object(entry) = entry else {
            return Err(bad(
                service,
                format!("{list}[{i}] should be an object, got {}", kind(entry)),
            ));
        };
        let category = text(service, entry, "category", &at, MAX_CATEGORY)?;
        let url = text(service, entry, "download_link", &at, MAX_LINK)?;
        if links.iter().any(|l: &Link| l.category == category) {
            return Err(bad(
                service,
                format!(
                    "the answer lists category {category:?} more than once; refusing it rather than picking one"
                ),
            ));
        }
        links.push(Link {
            category: category.to_owned(),
            url: url.to_owned(),
        });
    }
    Ok(links)
}

/// One link at the top level, reported as the standard certificate.
fn single(service: &str, body: &[u8], field: &str) -> Result<Vec<Link>, ApiError> {
    let map = object(service, body)?;
    let url = text(service, &map, field, "", MAX_LINK)?;
    Ok(vec![Link {
        category: STANDARD.to_owned(),
        url: url.to_owned(),
    }])
}

/// DDS: `certs[]`, parsed as it always has been.
pub(super) fn dds(body: &[u8]) -> Result<Vec<Link>, ApiError> {
    api::parse_links(body)
}

/// RDS: `cert_info_list[].category`, `cert_info_list[].download_link`.
pub(super) fn rds(body: &[u8]) -> Result<Vec<Link>, ApiError> {
    listed("RDS", body, "cert_info_list")
}

/// GeminiDB: `certs[].category` (only `international`), `certs[].download_link`.
pub(super) fn geminidb(body: &[u8]) -> Result<Vec<Link>, ApiError> {
    listed("GeminiDB", body, "certs")
}

/// openGauss: one `download_link`, no category.
pub(super) fn opengauss(body: &[u8]) -> Result<Vec<Link>, ApiError> {
    single("GaussDB (openGauss)", body, "download_link")
}

/// DCS: `link` (a pre-signed object-storage URL), no category. The answer's
/// `file_name` and `bucket_name` are not needed: downloads are told apart
/// by content, and the link already names the bucket.
pub(super) fn dcs(body: &[u8]) -> Result<Vec<Link>, ApiError> {
    single("DCS", body, "link")
}
