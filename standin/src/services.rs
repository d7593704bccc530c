//! The API shapes of the services the stand-in answers for: DDS (the
//! default), RDS, GeminiDB, GaussDB (openGauss) and DCS, as the official
//! SDKs 3.1.219 call them.
//!
//! Real services are separate hosts; the stand-in serves them all on its one
//! API listener and tells them apart by the instance: a test registers each
//! instance's service ([`crate::StandIn::set_service`]), and point every
//! `cloud.endpoints.<service>` of the daemon at [`crate::StandIn::api_url`].
//! An instance is answered only through its own service's request:
//!
//! | service | request | answer |
//! |---|---|---|
//! | `dds` | `GET /v3/{project}/instances/{instance}/ssl-cert/download-link` | `{"certs":[{"category","download_link"}]}` |
//! | `rds` | the same `GET` | `{"cert_info_list":[{"category","download_link"}]}` |
//! | `geminidb` | the same `GET` | `{"certs":[…]}`, the `international` entry only |
//! | `opengauss` | the same `GET` | `{"download_link"}`: the `international` link |
//! | `dcs` | `POST /v2/{project}/instances/{instance}/ssl-certs/download`, no body | `{"file_name","link","bucket_name"}`: the `international` link |
//!
//! A `GET` of the v3 path for a DCS instance answers as an unknown instance
//! would (404 `DBS.200002`), and the DCS `POST` for an instance of another
//! service 404 `DCS.4019` (the stand-in's code for "no such DCS instance").
//! The four v3 services share a path, so an instance registered as one of
//! them answers in its own shape whatever the caller expected: that is how a
//! test plays a wrong answer shape. DCS links are pre-signed object-storage
//! URLs (`?AWSAccessKeyId=…&Expires=…&Signature=…`); the others keep the
//! stand-in's `?AccessKeyId=…` shape. Both expire after
//! [`crate::Options::link_ttl`].

use crate::certs::INTERNATIONAL;

/// The services, by the name the daemon's `service` key uses.
pub const SERVICES: [&str; 5] = ["dds", "rds", "geminidb", "opengauss", "dcs"];

/// Which request an API path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    /// `GET /v3/…/ssl-cert/download-link` (DDS, RDS, GeminiDB, openGauss).
    V3,
    /// `POST /v2/…/ssl-certs/download` (DCS).
    Dcs,
}

impl Call {
    /// The method the call is made with.
    pub(crate) fn method(self) -> &'static str {
        match self {
            Call::V3 => "GET",
            Call::Dcs => "POST",
        }
    }

    /// Whether an instance of `service` is asked through this call.
    pub(crate) fn serves(self, service: &str) -> bool {
        (service == "dcs") == (self == Call::Dcs)
    }
}

/// An API path → (call, project, instance).
pub(crate) fn parse_route(path: &str) -> Option<(Call, &str, &str)> {
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    match segments.as_slice() {
        [
            "v3",
            project,
            "instances",
            instance,
            "ssl-cert",
            "download-link",
        ] if !project.is_empty() && !instance.is_empty() => Some((Call::V3, project, instance)),
        [
            "v2",
            project,
            "instances",
            instance,
            "ssl-certs",
            "download",
        ] if !project.is_empty() && !instance.is_empty() => Some((Call::Dcs, project, instance)),
        _ => None,
    }
}

/// The query of a link the stand-in issues for `service`.
pub(crate) fn link_query(service: &str, expires_unix: u64, signature: &str) -> String {
    let key = if service == "dcs" {
        "AWSAccessKeyId"
    } else {
        "AccessKeyId"
    };
    format!("{key}=STANDINACCESSKEY&Expires={expires_unix}&Signature={signature}")
}

/// The 200 answer of `service` listing `links` (`(category, link)`).
pub(crate) fn answer(service: &str, links: &[(String, String)]) -> serde_json::Value {
    let entries = |only_international: bool| -> Vec<serde_json::Value> {
        links
            .iter()
            .filter(|(c, _)| !only_international || c == INTERNATIONAL)
            .map(|(c, l)| serde_json::json!({"category": c, "download_link": l}))
            .collect()
    };
    let standard = links
        .iter()
        .find(|(c, _)| c == INTERNATIONAL)
        .map(|(_, l)| l.clone());
    match service {
        "rds" => serde_json::json!({ "cert_info_list": entries(false) }),
        "geminidb" => serde_json::json!({ "certs": entries(true) }),
        "opengauss" => match standard {
            Some(l) => serde_json::json!({ "download_link": l }),
            None => serde_json::json!({}),
        },
        "dcs" => match standard {
            Some(l) => serde_json::json!({
                "file_name": "dcs-ssl-cert.zip",
                "link": l,
                "bucket_name": "dcs-ssl-cert-standin",
            }),
            None => serde_json::json!({}),
        },
        _ => serde_json::json!({ "certs": entries(false) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_strictly() {
        assert_eq!(
            parse_route("/v3/p1/instances/i1/ssl-cert/download-link"),
            Some((Call::V3, "p1", "i1"))
        );
        assert_eq!(
            parse_route("/v2/p1/instances/i1/ssl-certs/download"),
            Some((Call::Dcs, "p1", "i1"))
        );
        assert_eq!(parse_route("/v2/p1/instances/i1/ssl-cert/download"), None);
        assert_eq!(parse_route("/v2/p1/instances//ssl-certs/download"), None);
        assert_eq!(parse_route("/v3/p1/instances/i1/ssl-certs/download"), None);
    }

    #[test]
    fn each_service_answers_in_its_shape() {
        let links = vec![
            ("international".to_owned(), "https://l/i".to_owned()),
            ("national".to_owned(), "https://l/n".to_owned()),
        ];
        assert_eq!(answer("dds", &links)["certs"][1]["category"], "national");
        assert_eq!(
            answer("rds", &links)["cert_info_list"][1]["download_link"],
            "https://l/n"
        );
        let g = answer("geminidb", &links);
        assert_eq!(g["certs"].as_array().map(Vec::len), Some(1));
        assert_eq!(answer("opengauss", &links)["download_link"], "https://l/i");
        assert_eq!(answer("dcs", &links)["link"], "https://l/i");
        assert!(Call::Dcs.serves("dcs") && !Call::Dcs.serves("rds"));
        assert!(Call::V3.serves("opengauss") && !Call::V3.serves("dcs"));
    }
}
