//! Integration tests of the stand-in, driven over real HTTPS with reqwest
//! (rustls + ring) trusting only the stand-in's CA. One test binary; the
//! modules group the behaviours.

mod admin;
mod aksk;
mod api;
mod certs;
mod download;
mod faults;
mod iam;
mod lifecycle;
mod metadata;
mod node;
mod services;
mod zips;

use std::time::Duration;

use dds_standin::StandIn;

pub const PROJECT: &str = "project-1";
pub const INSTANCE: &str = "instance-1";

/// A client that trusts exactly the stand-in's CA.
pub fn client(standin: &StandIn) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(standin.ca_pem().as_bytes())
        .unwrap_or_else(|e| panic!("stand-in CA is not PEM: {e}"));
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| panic!("client: {e}"))
}

/// A stand-in with one instance of [`PROJECT`], plus a client for it.
pub fn setup() -> (StandIn, reqwest::Client) {
    let standin = StandIn::start();
    standin.add_instance(PROJECT, INSTANCE);
    let client = client(&standin);
    (standin, client)
}

/// The download-link URL for an instance.
pub fn link_url(standin: &StandIn, project: &str, instance: &str) -> String {
    format!(
        "{}/v3/{project}/instances/{instance}/ssl-cert/download-link",
        standin.api_url()
    )
}

/// Calls the API with the right token and returns `(category, link)` pairs.
pub async fn links(
    standin: &StandIn,
    client: &reqwest::Client,
    instance: &str,
) -> Vec<(String, String)> {
    let resp = client
        .get(link_url(standin, PROJECT, instance))
        .header("X-Auth-Token", standin.token())
        .send()
        .await
        .unwrap_or_else(|e| panic!("API request failed: {e}"));
    assert_eq!(resp.status(), 200);
    let json: serde_json::Value = resp
        .json()
        .await
        .unwrap_or_else(|e| panic!("API body: {e}"));
    json["certs"]
        .as_array()
        .unwrap_or_else(|| panic!("no certs array in {json}"))
        .iter()
        .map(|c| {
            (
                c["category"].as_str().unwrap_or_default().to_owned(),
                c["download_link"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The link for one category.
pub async fn link(
    standin: &StandIn,
    client: &reqwest::Client,
    instance: &str,
    category: &str,
) -> String {
    links(standin, client, instance)
        .await
        .into_iter()
        .find(|(c, _)| c == category)
        .map(|(_, l)| l)
        .unwrap_or_else(|| panic!("no {category} link"))
}
