//! The services whose SSL CA the daemon can fetch, as one table: per service,
//! the API call (method and path), the endpoint of each region, the
//! certificate categories it serves, and the parser of its answer. Pure: no
//! I/O here.
//!
//! Everything comes from the official Python SDKs, version 3.1.219 (each
//! package's `*_client.py` for the request, `model/*.py` for the answer,
//! `region/*_region.py` for the endpoints, copied in [`regions`]):
//!
//! | service | SDK package | operation | request | answer |
//! |---|---|---|---|---|
//! | `dds` | huaweicloudsdkdds | ListSslCertDownloadAddress | `GET /v3/{project_id}/instances/{instance_id}/ssl-cert/download-link` | `certs[].category`, `certs[].download_link` |
//! | `rds` | huaweicloudsdkrds | ListSslCertDownloadLink | `GET`, same path | `cert_info_list[].category`, `cert_info_list[].download_link` |
//! | `geminidb` | huaweicloudsdkgaussdbfornosql | ListSslCertDownloadAddresses | `GET`, same path | `certs[].category` (only `international`), `certs[].download_link` |
//! | `opengauss` | huaweicloudsdkgaussdbforopengauss | ShowSslCertDownloadLink | `GET`, same path | one `download_link`, no category |
//! | `dcs` | huaweicloudsdkdcs (v2) | DownloadSslCert | `POST /v2/{project_id}/instances/{instance_id}/ssl-certs/download`, no body | `file_name`, `link`, `bucket_name` |
//!
//! Every request carries `Content-Type: application/json` (the SDKs set it
//! on each of these calls, the POST included). An answer without a category
//! (openGauss, DCS) is the standard certificate: its one link is reported as
//! `international`. RDS's answer carries a category, but the SDK does not
//! enumerate its values; RDS is taken to serve both categories, like DDS.
//!
//! Parsers are hostile-input safe: answers over [`MAX_ANSWER`] bytes, more
//! than [`MAX_LINKS`] links, a link or category over its length cap, an empty
//! link, or a category listed twice are refused. Their errors name the
//! field and what was wrong, never a value from the answer: a DCS link is a
//! pre-signed URL whose query must not reach a log.
//!
//! The service itself, its config name, categories and region endpoints
//! are the catalogue's ([`crate::catalog`]); this module adds its API call.
//! Adding a service: one variant of [`Service`] and one row of the
//! catalogue (with its region rows), one row of [`TABLE`] here, one parser
//! in [`parse`].

mod parse;

#[cfg(test)]
mod tests;

pub use crate::catalog::Service;

use super::api::{ApiError, Link};

pub use parse::{MAX_ANSWER, MAX_CATEGORY, MAX_LINK, MAX_LINKS};

/// The HTTP method of a service's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    /// The method as it goes on the wire (and into the signature).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// How one service's certificate links are asked for: one row of [`TABLE`].
pub struct Spec {
    /// The SDK operation, for messages and docs.
    pub operation: &'static str,
    pub method: Method,
    /// With `{project_id}` and `{instance_id}` placeholders.
    pub path: &'static str,
    /// Parses a 200 answer into links.
    pub parse: fn(&[u8]) -> Result<Vec<Link>, ApiError>,
}

const LINK_PATH_V3: &str = "/v3/{project_id}/instances/{instance_id}/ssl-cert/download-link";

/// The API call of each service, in the order of [`Service::ALL`].
pub const TABLE: [Spec; 5] = [
    Spec {
        operation: "ListSslCertDownloadAddress",
        method: Method::Get,
        path: LINK_PATH_V3,
        parse: parse::dds,
    },
    Spec {
        operation: "ListSslCertDownloadLink",
        method: Method::Get,
        path: LINK_PATH_V3,
        parse: parse::rds,
    },
    Spec {
        operation: "ListSslCertDownloadAddresses",
        method: Method::Get,
        path: LINK_PATH_V3,
        parse: parse::geminidb,
    },
    Spec {
        operation: "ShowSslCertDownloadLink",
        method: Method::Get,
        path: LINK_PATH_V3,
        parse: parse::opengauss,
    },
    Spec {
        operation: "DownloadSslCert",
        method: Method::Post,
        path: "/v2/{project_id}/instances/{instance_id}/ssl-certs/download",
        parse: parse::dcs,
    },
];

/// The API call of each service, an addition to the catalogue's
/// [`Service`] made here, where the client's types are.
impl Service {
    /// The service's row of [`TABLE`].
    pub fn spec(self) -> &'static Spec {
        &TABLE[self as usize]
    }

    pub fn method(self) -> Method {
        self.spec().method
    }

    /// The request path for one instance, placeholders filled in one pass
    /// (a value that happens to contain a placeholder is not expanded).
    /// Not yet percent-encoded: the caller encodes it as the signer does.
    pub fn path(self, project_id: &str, instance_id: &str) -> String {
        fill(self.spec().path, project_id, instance_id)
    }

    /// Parses a 200 answer of this service's call.
    pub fn parse(self, body: &[u8]) -> Result<Vec<Link>, ApiError> {
        (self.spec().parse)(body)
    }
}

fn fill(template: &str, project_id: &str, instance_id: &str) -> String {
    let mut out = String::with_capacity(template.len() + project_id.len() + instance_id.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let (value, used) = if tail.starts_with("{project_id}") {
            (project_id, "{project_id}".len())
        } else if tail.starts_with("{instance_id}") {
            (instance_id, "{instance_id}".len())
        } else {
            ("{", 1)
        };
        out.push_str(value);
        rest = &tail[used..];
    }
    out.push_str(rest);
    out
}
