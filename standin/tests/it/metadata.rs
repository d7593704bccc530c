//! The ECS metadata service: session-token step on and off, no agency,
//! and the temporary keys it hands out working (and expiring) on the API.

use std::time::Duration;

use dds_standin::{Listener, Metadata, StandIn};

use crate::aksk::{Signed, get};
use crate::{INSTANCE, PROJECT, client, link_url};

const API_PATH: &str = "/v3/project-1/instances/instance-1/ssl-cert/download-link";

async fn put_token(
    standin: &StandIn,
    client: &reqwest::Client,
    ttl: Option<&str>,
) -> (u16, String) {
    let mut req = client.put(format!(
        "{}/meta-data/latest/api/token",
        standin.metadata_url()
    ));
    if let Some(ttl) = ttl {
        req = req.header("X-Metadata-Token-Ttl-Seconds", ttl);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT token: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

async fn securitykey(
    standin: &StandIn,
    client: &reqwest::Client,
    session: Option<&str>,
) -> (u16, String) {
    let mut req = client.get(format!(
        "{}/openstack/latest/securitykey",
        standin.metadata_url()
    ));
    if let Some(s) = session {
        req = req.header("X-Metadata-Token", s);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET securitykey: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// (access, secret, securitytoken, expires_at) from a securitykey answer.
fn credential(body: &str) -> (String, String, String, String) {
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("securitykey body {body:?}: {e}"));
    let c = &json["credential"];
    let s = |k: &str| {
        c[k].as_str()
            .unwrap_or_else(|| panic!("no {k} in {body}"))
            .to_owned()
    };
    (
        s("access"),
        s("secret"),
        s("securitytoken"),
        s("expires_at"),
    )
}

fn setup() -> (StandIn, reqwest::Client) {
    let standin = StandIn::start();
    standin.add_instance(PROJECT, INSTANCE);
    let client = client(&standin);
    (standin, client)
}

#[tokio::test]
async fn with_the_session_token_step_the_keys_work_on_the_api() {
    let (standin, client) = setup();
    assert!(standin.metadata_url().starts_with("http://127.0.0.1:"));
    assert_eq!(put_token(&standin, &client, None).await.0, 400);
    let (status, session) = put_token(&standin, &client, Some("21600")).await;
    assert_eq!(status, 200);
    assert!(!session.is_empty());

    assert_eq!(securitykey(&standin, &client, None).await.0, 401);
    assert_eq!(securitykey(&standin, &client, Some("forged")).await.0, 401);
    let (status, body) = securitykey(&standin, &client, Some(&session)).await;
    assert_eq!(status, 200, "{body}");
    let (ak, sk, token, expires_at) = credential(&body);
    assert!(
        expires_at.ends_with('Z') && expires_at.len() == 27,
        "{expires_at}"
    );
    assert_eq!(standin.metadata_calls(), 3);

    let signed = Signed {
        security_token: Some(&token),
        ..Signed::new(&ak, &sk)
    };
    let headers = signed.headers(&standin, API_PATH);
    let url = link_url(&standin, PROJECT, INSTANCE);
    let (status, body) = get(&client, &url, &headers).await;
    assert_eq!(status, 200, "{body}");

    let seen: Vec<_> = standin
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Metadata)
        .collect();
    assert_eq!(seen.len(), 5);
    assert_eq!(
        seen[1].header("x-metadata-token-ttl-seconds"),
        Some("21600")
    );
}

#[tokio::test]
async fn without_the_session_token_step_the_put_is_404_and_get_works() {
    let (standin, client) = setup();
    standin.set_metadata(Metadata {
        require_session_token: false,
        ..Metadata::default()
    });
    assert_eq!(put_token(&standin, &client, Some("21600")).await.0, 404);
    let (status, body) = securitykey(&standin, &client, None).await;
    assert_eq!(status, 200, "{body}");
    let (ak, sk, token, _) = credential(&body);
    let signed = Signed {
        security_token: Some(&token),
        ..Signed::new(&ak, &sk)
    };
    let (status, body) = get(
        &client,
        &link_url(&standin, PROJECT, INSTANCE),
        &signed.headers(&standin, API_PATH),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(standin.metadata_calls(), 1);
}

#[tokio::test]
async fn a_vm_without_an_agency_is_told_so() {
    let (standin, client) = setup();
    standin.set_metadata(Metadata {
        agency: false,
        ..Metadata::default()
    });
    let (_, session) = put_token(&standin, &client, Some("60")).await;
    let (status, body) = securitykey(&standin, &client, Some(&session)).await;
    assert_eq!(status, 404);
    assert!(
        body.contains("Please configure Cloud Service Agency first"),
        "{body}"
    );
    assert_eq!(standin.metadata_calls(), 1);
}

#[tokio::test]
async fn keys_expire_after_the_metadata_ttl() {
    let (standin, client) = setup();
    standin.set_metadata(Metadata {
        require_session_token: false,
        ttl: Duration::ZERO,
        ..Metadata::default()
    });
    let (_, body) = securitykey(&standin, &client, None).await;
    let (ak, sk, token, _) = credential(&body);
    let signed = Signed {
        security_token: Some(&token),
        ..Signed::new(&ak, &sk)
    };
    let (status, body) = get(
        &client,
        &link_url(&standin, PROJECT, INSTANCE),
        &signed.headers(&standin, API_PATH),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error_code"], "APIGW.0301");
}
