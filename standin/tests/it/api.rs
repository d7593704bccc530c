//! The DDS API listener: happy path, authentication, error bodies.

use dds_standin::{Listener, Options, StandIn};

use crate::{INSTANCE, PROJECT, client, link_url, links, setup};

#[tokio::test]
async fn lists_both_categories_with_fresh_links_to_the_download_host() {
    let (standin, client) = setup();
    let resp = client
        .get(link_url(&standin, PROJECT, INSTANCE))
        .header("X-Auth-Token", standin.token())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json;charset=UTF-8")
    );
    assert!(resp.headers().contains_key("x-request-id"));
    let json: serde_json::Value = resp.json().await.expect("json");
    let certs = json["certs"].as_array().expect("certs array");
    let categories: Vec<&str> = certs
        .iter()
        .filter_map(|c| c["category"].as_str())
        .collect();
    assert_eq!(categories, ["international", "national"]);
    for c in certs {
        let link = c["download_link"].as_str().expect("link");
        let category = c["category"].as_str().expect("category");
        let prefix = format!(
            "https://{}/dds-cert/{INSTANCE}/{category}/ca-dds.crt?",
            standin.download_host()
        );
        assert!(link.starts_with(&prefix), "{link}");
        assert!(
            link.contains("Expires=") && link.contains("Signature="),
            "{link}"
        );
    }

    let first: Vec<&str> = certs
        .iter()
        .filter_map(|c| c["download_link"].as_str())
        .collect();
    let again = links(&standin, &client, INSTANCE).await;
    assert_eq!(again.len(), first.len());
    for (old, (_, new)) in first.iter().zip(&again) {
        assert_ne!(old, new, "every call issues a fresh link");
    }
}

#[tokio::test]
async fn rejects_missing_and_wrong_tokens_with_apigw_0301() {
    let (standin, client) = setup();
    for token in [None, Some("wrong-token")] {
        let mut req = client.get(link_url(&standin, PROJECT, INSTANCE));
        if let Some(t) = token {
            req = req.header("X-Auth-Token", t);
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status(), 401, "token {token:?}");
        let json: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(json["error_code"], "APIGW.0301");
        assert!(
            json["error_msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("Incorrect IAM authentication information")),
            "{json}"
        );
        assert!(json["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    }
}

#[tokio::test]
async fn accepts_a_custom_token() {
    let standin = StandIn::start_with(Options {
        token: "custom".to_owned(),
        ..Options::default()
    });
    standin.add_instance(PROJECT, INSTANCE);
    assert_eq!(standin.token(), "custom");
    let client = client(&standin);
    let ok = client
        .get(link_url(&standin, PROJECT, INSTANCE))
        .header("X-Auth-Token", "custom")
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    let default_token = client
        .get(link_url(&standin, PROJECT, INSTANCE))
        .header("X-Auth-Token", "standin-token")
        .send()
        .await
        .expect("request");
    assert_eq!(default_token.status(), 401);
}

async fn error_of(client: &reqwest::Client, url: &str, token: &str) -> (u16, serde_json::Value) {
    let resp = client
        .get(url)
        .header("X-Auth-Token", token)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json error body"))
}

#[tokio::test]
async fn unknown_instance_wrong_project_and_unknown_path() {
    let (standin, client) = setup();
    let token = standin.token();
    let (status, json) = error_of(&client, &link_url(&standin, PROJECT, "nope"), &token).await;
    assert_eq!(
        (status, json["error_code"].as_str()),
        (404, Some("DBS.200002"))
    );
    assert_eq!(json["error_msg"], "The DB instance does not exist");

    let (status, json) = error_of(
        &client,
        &link_url(&standin, "other-project", INSTANCE),
        &token,
    )
    .await;
    assert_eq!(
        (status, json["error_code"].as_str()),
        (403, Some("DBS.200010"))
    );

    let url = format!(
        "{}/v3/{PROJECT}/instances/{INSTANCE}/ssl-cert",
        standin.api_url()
    );
    let (status, json) = error_of(&client, &url, &token).await;
    assert_eq!(
        (status, json["error_code"].as_str()),
        (404, Some("APIGW.0101"))
    );

    let post = client
        .post(link_url(&standin, PROJECT, INSTANCE))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .expect("request");
    assert_eq!(post.status(), 404, "only GET is routed");
}

#[tokio::test]
async fn set_categories_controls_the_listing() {
    let (standin, client) = setup();
    standin.set_categories(INSTANCE, &["national"]);
    let listed: Vec<String> = links(&standin, &client, INSTANCE)
        .await
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    assert_eq!(listed, ["national"]);
    standin.set_categories(INSTANCE, &[]);
    assert!(links(&standin, &client, INSTANCE).await.is_empty());
}

#[tokio::test]
async fn records_every_request_with_lowercase_headers() {
    let (standin, client) = setup();
    let link = crate::link(&standin, &client, INSTANCE, "international").await;
    let body = client
        .get(&link)
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("body");
    assert!(!body.is_empty());
    let seen = standin.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].listener, Listener::Api);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(
        seen[0].path,
        format!("/v3/{PROJECT}/instances/{INSTANCE}/ssl-cert/download-link")
    );
    assert_eq!(
        seen[0].header("x-auth-token"),
        Some(standin.token().as_str())
    );
    assert!(
        seen[0]
            .headers
            .iter()
            .all(|(n, _)| *n == n.to_ascii_lowercase())
    );
    assert_eq!(seen[1].listener, Listener::Download);
    assert!(
        link.ends_with(&seen[1].path),
        "path keeps its query: {}",
        seen[1].path
    );
    assert!(!seen[1].has_header("x-auth-token"));
    standin.clear_requests();
    assert!(standin.requests().is_empty());
}
