//! IAM password tokens: issue, use, project scoping, wrong password,
//! expiry on demand and by lifetime, call counting.

use std::time::Duration;

use dds_standin::{Listener, Options, StandIn};

use crate::{INSTANCE, PROJECT, client, link_url};

const DOMAIN: &str = "acme";
const USER: &str = "certsync";
const PASSWORD: &str = "correct horse battery staple";

fn login_body(user: &str, password: &str, project: &str) -> serde_json::Value {
    serde_json::json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "password": password, "domain": {"name": DOMAIN}}}},
        "scope": {"project": {"id": project}}}})
}

/// Logs in; returns (status, X-Subject-Token, body).
async fn login(
    standin: &StandIn,
    client: &reqwest::Client,
    password: &str,
    project: &str,
) -> (u16, Option<String>, serde_json::Value) {
    let resp = client
        .post(format!("{}/v3/auth/tokens", standin.iam_url()))
        .json(&login_body(USER, password, project))
        .send()
        .await
        .unwrap_or_else(|e| panic!("IAM request failed: {e}"));
    let status = resp.status().as_u16();
    let token = resp
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp
        .json()
        .await
        .unwrap_or_else(|e| panic!("IAM body is not JSON: {e}"));
    (status, token, body)
}

async fn call_api(
    standin: &StandIn,
    client: &reqwest::Client,
    project: &str,
    token: &str,
) -> (u16, serde_json::Value) {
    let resp = client
        .get(link_url(standin, project, INSTANCE))
        .header("X-Auth-Token", token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("API request failed: {e}"));
    let status = resp.status().as_u16();
    let body = resp
        .json()
        .await
        .unwrap_or_else(|e| panic!("API body is not JSON: {e}"));
    (status, body)
}

fn setup_with(opts: Options) -> (StandIn, reqwest::Client) {
    let standin = StandIn::start_with(opts);
    standin.add_instance(PROJECT, INSTANCE);
    standin.add_iam_user(DOMAIN, USER, PASSWORD);
    let client = client(&standin);
    (standin, client)
}

/// `2026-11-29T04:36:13.000000Z`-shaped.
fn is_iam_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 27
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[26] == b'Z'
        && b[20..26].iter().all(u8::is_ascii_digit)
}

#[tokio::test]
async fn a_password_login_issues_a_project_token_the_api_accepts() {
    let (standin, client) = setup_with(Options::default());
    assert_ne!(standin.iam_url(), standin.api_url());
    let (status, token, body) = login(&standin, &client, PASSWORD, PROJECT).await;
    assert_eq!(status, 201, "{body}");
    let token = token.unwrap_or_else(|| panic!("no X-Subject-Token"));
    assert!(token.len() > 32);
    let t = &body["token"];
    assert!(
        is_iam_time(t["expires_at"].as_str().unwrap_or_default()),
        "{t}"
    );
    assert!(
        is_iam_time(t["issued_at"].as_str().unwrap_or_default()),
        "{t}"
    );
    assert_eq!(t["methods"], serde_json::json!(["password"]));
    assert_eq!(t["project"]["id"], PROJECT);
    assert!(!body.to_string().contains(&token), "token in the body");

    let (status, body) = call_api(&standin, &client, PROJECT, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(standin.iam_calls(), 1);
    let iam: Vec<_> = standin
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Iam)
        .collect();
    assert_eq!(iam.len(), 1);
    assert_eq!(iam[0].method, "POST");
    assert_eq!(iam[0].path, "/v3/auth/tokens");
}

#[tokio::test]
async fn a_wrong_password_gets_iams_own_401() {
    let (standin, client) = setup_with(Options::default());
    let (status, token, body) = login(&standin, &client, "wrong", PROJECT).await;
    assert_eq!(status, 401);
    assert_eq!(token, None);
    assert_eq!(
        body,
        serde_json::json!({"error": {"code": 401,
            "message": "The username or password is wrong.", "title": "Unauthorized"}})
    );
    let resp = client
        .post(format!("{}/v3/auth/tokens", standin.iam_url()))
        .body("{not json")
        .send()
        .await
        .unwrap_or_else(|e| panic!("IAM request failed: {e}"));
    assert_eq!(resp.status(), 400);
    assert_eq!(standin.iam_calls(), 2);
}

#[tokio::test]
async fn a_token_is_scoped_to_its_project() {
    let (standin, client) = setup_with(Options::default());
    standin.add_instance("project-2", "instance-2");
    let (_, token, _) = login(&standin, &client, PASSWORD, "project-2").await;
    let token = token.unwrap_or_default();
    let (status, body) = call_api(&standin, &client, PROJECT, &token).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error_code"], "APIGW.0302");
    let resp = client
        .get(link_url(&standin, "project-2", "instance-2"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("API request failed: {e}"));
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn expired_tokens_are_refused_and_a_new_login_works() {
    let (standin, client) = setup_with(Options::default());
    let (_, old, _) = login(&standin, &client, PASSWORD, PROJECT).await;
    let old = old.unwrap_or_default();
    standin.expire_tokens();
    let (status, body) = call_api(&standin, &client, PROJECT, &old).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error_code"], "APIGW.0301");
    assert!(
        body["error_msg"]
            .as_str()
            .unwrap_or_default()
            .contains("token expired"),
        "{body}"
    );
    // The fixed token is not an IAM token and keeps working.
    assert_eq!(
        call_api(&standin, &client, PROJECT, &standin.token())
            .await
            .0,
        200
    );
    let (_, new, _) = login(&standin, &client, PASSWORD, PROJECT).await;
    let new = new.unwrap_or_default();
    assert_ne!(new, old);
    assert_eq!(call_api(&standin, &client, PROJECT, &new).await.0, 200);
    assert_eq!(standin.iam_calls(), 2);
}

#[tokio::test]
async fn tokens_expire_after_their_lifetime() {
    let (standin, client) = setup_with(Options {
        token_ttl: Duration::ZERO,
        ..Options::default()
    });
    let (status, token, body) = login(&standin, &client, PASSWORD, PROJECT).await;
    assert_eq!(status, 201);
    assert_eq!(body["token"]["expires_at"], body["token"]["issued_at"]);
    let (status, body) = call_api(&standin, &client, PROJECT, &token.unwrap_or_default()).await;
    assert_eq!(status, 401, "{body}");
}
