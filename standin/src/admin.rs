//! The admin API under `/__standin/` on the API listener, for humans with
//! curl (no token needed; faults never apply to it).
//!
//! | method | path | query | effect |
//! |---|---|---|---|
//! | GET | `/__standin/` | | this list, as text |
//! | POST | `/__standin/instances` | `project`, `instance` | add (or reset) an instance |
//! | POST | `/__standin/rotate` | `instance`, `category` | new certificate; answers its PEM |
//! | GET | `/__standin/cert` | `instance`, `category` | the PEM served now |
//! | POST | `/__standin/form` | `instance`, `category`, `form` = `pem`, `der`, `zip` or `der-zip` | how the download host serves the slot (kept across rotations) |
//! | GET | `/__standin/server` | `instance` | the instance's TLS listener: address, CA PEM, handshake counts (JSON) |
//! | POST | `/__standin/server` | `instance`, `to` = `link` or `new` | the listener switches to the link's CA, or to a new one the link does not serve yet |
//! | POST | `/__standin/link` | `instance`, `to` = `server` | the link serves the listener's CA |
//! | POST | `/__standin/categories` | `instance`, `list` (comma-separated, may be empty) | categories the API lists |
//! | POST | `/__standin/service` | `instance`, `service` = `dds`, `rds`, `geminidb`, `opengauss` or `dcs` | the service whose call reaches the instance, and its answer's shape |
//! | POST | `/__standin/faults` | `kind`, see below; optional `instance`, `category`, `times` | add a fault rule |
//! | DELETE | `/__standin/faults` | | remove all fault rules |
//! | GET | `/__standin/requests` | | recorded requests as JSON |
//! | DELETE | `/__standin/requests` | | forget recorded requests |
//!
//! Fault kinds: `api-status` (`status`, `body`, `retry_after`), `api-body`
//! (`body`), `api-delay` (`ms`), `api-reset`, `download-status` (`status`,
//! `body`, `content_type`), `download-body` (`body`), `download-truncate`,
//! `download-reset`, `download-delay` (`ms`), `download-huge` (`bytes`),
//! `download-huge-chunked` (`bytes`), `download-zip` (`zip` = `traversal`,
//! `absolute`, `bomb`, `encrypted`, `no-certificate`, `key-inside`,
//! `duplicate`, `symlink`, `nested`, `truncated`, `bad-crc`, `bzip2`,
//! `too-many` or `empty`: see [`HostileZip`]).

use std::collections::HashMap;
use std::time::Duration;

use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};

use crate::body::Body;
use crate::fault::{Fault, FaultRule};
use crate::server::{JSON, query_map, response};
use crate::state::Shared;
use crate::zips::{Form, HostileZip};

const TEXT: &str = "text/plain;charset=UTF-8";

/// The help text answered at `GET /__standin/`.
const HELP: &str = "dds-standin admin API (no token needed)\n\
GET    /__standin/                                    this help\n\
POST   /__standin/instances?project=P&instance=I      add or reset an instance\n\
POST   /__standin/rotate?instance=I&category=C        rotate a certificate (answers its PEM)\n\
GET    /__standin/cert?instance=I&category=C          the PEM served now\n\
POST   /__standin/form?instance=I&category=C&form=F   serve as pem, der, zip or der-zip\n\
GET    /__standin/server?instance=I                   the instance's TLS listener (JSON)\n\
POST   /__standin/server?instance=I&to=link|new       listener: the link's CA, or a new unpublished one\n\
POST   /__standin/link?instance=I&to=server           link: the listener's CA\n\
POST   /__standin/categories?instance=I&list=a,b      categories the API lists\n\
POST   /__standin/service?instance=I&service=S        answer as dds, rds, geminidb, opengauss or dcs\n\
POST   /__standin/faults?kind=K[&instance=I][&category=C][&times=N][...]\n\
         kinds: api-status(status,body,retry_after) api-body(body) api-delay(ms) api-reset\n\
                download-status(status,body,content_type) download-body(body)\n\
                download-truncate download-reset download-delay(ms)\n\
                download-huge(bytes) download-huge-chunked(bytes)\n\
                download-zip(zip: traversal absolute bomb encrypted no-certificate\n\
                  key-inside duplicate symlink nested truncated bad-crc bzip2 too-many empty)\n\
DELETE /__standin/faults                              clear fault rules\n\
GET    /__standin/requests                            recorded requests (JSON)\n\
DELETE /__standin/requests                            clear recorded requests\n";

fn bad_request(msg: impl Into<String>) -> Response<Body> {
    response(StatusCode::BAD_REQUEST, TEXT, format!("{}\n", msg.into()))
}

fn ok_text(msg: impl Into<String>) -> Response<Body> {
    response(StatusCode::OK, TEXT, msg.into())
}

/// Why an admin request is a bad request (answered as 400 with this text).
type BadRequest = String;

fn required<'q>(q: &'q HashMap<String, String>, key: &str) -> Result<&'q str, BadRequest> {
    q.get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("missing query parameter `{key}`"))
}

fn number<T: std::str::FromStr>(q: &HashMap<String, String>, key: &str) -> Result<T, BadRequest> {
    let raw = required(q, key)?;
    raw.parse()
        .map_err(|_| format!("query parameter `{key}` is not a valid number: {raw:?}"))
}

fn text_param(q: &HashMap<String, String>, key: &str) -> String {
    q.get(key).cloned().unwrap_or_default()
}

/// Parses a fault rule from the query of `POST /__standin/faults`.
fn fault_from_query(q: &HashMap<String, String>) -> Result<FaultRule, BadRequest> {
    let fault = match required(q, "kind")? {
        "api-status" => Fault::ApiStatus {
            status: number(q, "status")?,
            body: text_param(q, "body"),
            retry_after: q.get("retry_after").cloned(),
        },
        "api-body" => Fault::ApiBody(text_param(q, "body")),
        "api-delay" => Fault::ApiDelay(Duration::from_millis(number(q, "ms")?)),
        "api-reset" => Fault::ApiReset,
        "api-echo-credentials" => Fault::ApiEchoCredentials(number(q, "status")?),
        "iam-status" => Fault::IamStatus {
            status: number(q, "status")?,
            body: text_param(q, "body"),
        },
        "metadata-status" => Fault::MetadataStatus {
            status: number(q, "status")?,
            body: text_param(q, "body"),
        },
        "download-status" => Fault::DownloadStatus {
            status: number(q, "status")?,
            body: text_param(q, "body"),
            content_type: q
                .get("content_type")
                .cloned()
                .unwrap_or_else(|| "text/html".to_owned()),
        },
        "download-body" => Fault::DownloadBody(text_param(q, "body").into_bytes()),
        "download-truncate" => Fault::DownloadTruncate,
        "download-reset" => Fault::DownloadReset,
        "download-delay" => Fault::DownloadDelay(Duration::from_millis(number(q, "ms")?)),
        "download-huge" => Fault::DownloadHuge(number(q, "bytes")?),
        "download-huge-chunked" => Fault::DownloadHugeChunked(number(q, "bytes")?),
        "download-zip" => {
            let kind = required(q, "zip")?;
            Fault::DownloadZip(
                HostileZip::from_name(kind).ok_or_else(|| format!("unknown zip kind {kind:?}"))?,
            )
        }
        other => return Err(format!("unknown fault kind {other:?}")),
    };
    let mut rule = FaultRule::always(fault);
    rule.instance = q.get("instance").cloned();
    rule.category = q.get("category").cloned();
    if q.contains_key("times") {
        rule.times = Some(number(q, "times")?);
    }
    Ok(rule)
}

/// Answers one admin request.
pub(crate) fn handle(parts: &Parts, shared: &Shared) -> Response<Body> {
    route(parts, shared).unwrap_or_else(bad_request)
}

fn route(parts: &Parts, shared: &Shared) -> Result<Response<Body>, BadRequest> {
    let q = query_map(parts);
    let path = parts.uri.path().trim_end_matches('/');
    let op_err = |e: crate::OpError| e.to_string();
    let resp = match (&parts.method, path) {
        (&Method::GET, "/__standin") => ok_text(HELP),
        (&Method::POST, "/__standin/instances") => {
            let (project, instance) = (required(&q, "project")?, required(&q, "instance")?);
            shared.add_instance(project, instance).map_err(op_err)?;
            ok_text(format!("added {project}/{instance}\n"))
        }
        (&Method::POST, "/__standin/rotate") => {
            let (instance, category) = (required(&q, "instance")?, required(&q, "category")?);
            ok_text(shared.rotate(instance, category).map_err(op_err)?)
        }
        (&Method::GET, "/__standin/cert") => {
            let (instance, category) = (required(&q, "instance")?, required(&q, "category")?);
            ok_text(
                String::from_utf8_lossy(&shared.cert_body(instance, category).map_err(op_err)?)
                    .into_owned(),
            )
        }
        (&Method::POST, "/__standin/form") => {
            let (instance, category) = (required(&q, "instance")?, required(&q, "category")?);
            let name = required(&q, "form")?;
            let form = Form::from_name(name).ok_or_else(|| format!("unknown form {name:?}"))?;
            shared.set_form(instance, category, form).map_err(op_err)?;
            ok_text(format!("{instance}/{category}: served as {name}\n"))
        }
        (&Method::GET, "/__standin/server") => {
            let instance = required(&q, "instance")?;
            let (addr, ca, seen) = (
                shared.node_addr(instance).map_err(op_err)?,
                shared.server_ca(instance).map_err(op_err)?,
                shared.handshakes(instance).map_err(op_err)?,
            );
            let json = serde_json::json!({
                "address": addr.to_string(),
                "ca_pem": String::from_utf8_lossy(&ca),
                "handshakes_ok": seen.ok,
                "handshakes_failed": seen.failed,
                "bytes_received": seen.bytes_received,
            });
            response(StatusCode::OK, JSON, json.to_string())
        }
        (&Method::POST, "/__standin/server") => {
            let (instance, to) = (required(&q, "instance")?, required(&q, "to")?);
            match to {
                "link" => {
                    shared.server_follow_link(instance).map_err(op_err)?;
                    ok_text(format!("{instance}: the server presents the link's CA\n"))
                }
                "new" => ok_text(shared.server_rotate_first(instance).map_err(op_err)?),
                other => return Err(format!("`to` must be `link` or `new`, not {other:?}")),
            }
        }
        (&Method::POST, "/__standin/link") => {
            let (instance, to) = (required(&q, "instance")?, required(&q, "to")?);
            if to != "server" {
                return Err(format!("`to` must be `server`, not {to:?}"));
            }
            shared.link_follow_server(instance).map_err(op_err)?;
            ok_text(format!("{instance}: the link serves the server's CA\n"))
        }
        (&Method::POST, "/__standin/service") => {
            let (instance, service) = (required(&q, "instance")?, required(&q, "service")?);
            shared.set_service(instance, service).map_err(op_err)?;
            ok_text(format!("{instance}: answers as {service}\n"))
        }
        (&Method::POST, "/__standin/categories") => {
            let instance = required(&q, "instance")?;
            let list = text_param(&q, "list");
            let categories: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            shared
                .set_categories(instance, &categories)
                .map_err(op_err)?;
            ok_text(format!("{instance}: {}\n", categories.join(",")))
        }
        (&Method::POST, "/__standin/faults") => {
            let rule = fault_from_query(&q)?;
            let text = format!("{rule:?}\n");
            shared.push_fault(rule);
            ok_text(text)
        }
        (&Method::DELETE, "/__standin/faults") => {
            shared.clear_faults();
            ok_text("faults cleared\n")
        }
        (&Method::GET, "/__standin/requests") => {
            let json =
                serde_json::to_string_pretty(&shared.requests()).map_err(|e| e.to_string())?;
            response(StatusCode::OK, JSON, json)
        }
        (&Method::DELETE, "/__standin/requests") => {
            shared.clear_requests();
            ok_text("requests cleared\n")
        }
        _ => response(
            StatusCode::NOT_FOUND,
            TEXT,
            format!("no such admin endpoint\n\n{HELP}"),
        ),
    };
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn fault_query_parses_kinds_and_filters() {
        let rule = fault_from_query(&q(&[
            ("kind", "api-status"),
            ("status", "429"),
            ("retry_after", "3"),
            ("times", "2"),
        ]));
        assert_eq!(
            rule.ok(),
            Some(FaultRule {
                instance: None,
                category: None,
                fault: Fault::ApiStatus {
                    status: 429,
                    body: String::new(),
                    retry_after: Some("3".into())
                },
                times: Some(2),
            })
        );
        let rule = fault_from_query(&q(&[
            ("kind", "download-reset"),
            ("instance", "i"),
            ("category", "national"),
        ]));
        assert_eq!(
            rule.ok(),
            Some(
                FaultRule::always(Fault::DownloadReset)
                    .for_instance("i")
                    .for_category("national")
            )
        );
    }

    #[test]
    fn fault_query_rejects_bad_input() {
        assert!(fault_from_query(&q(&[("kind", "nope")])).is_err());
        assert!(fault_from_query(&q(&[("kind", "api-delay"), ("ms", "soon")])).is_err());
        assert!(fault_from_query(&q(&[])).is_err());
    }
}
