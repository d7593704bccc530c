//! AK/SK signatures: the official SDK vectors, and the API's gateway-style
//! checks over HTTPS (mismatch, clock skew, temporary keys, expiry,
//! project header).

use std::time::{Duration, SystemTime};

use dds_standin::{Options, StandIn, aksk};

use crate::{INSTANCE, PROJECT, client, link_url};

const AK: &str = "HPUASTANDINTEST00001";
const SK: &str = "StandinSecretKey000000000000000000000001";

/// Every vector in the repository's official-SDK file, byte for byte.
#[test]
fn official_vectors_are_reproduced_byte_for_byte() {
    let text = include_str!("../../../tests/data/aksk-signing-vectors.json");
    let doc: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("vectors: {e}"));
    let vectors = doc["vectors"].as_array().cloned().unwrap_or_default();
    assert!(vectors.len() >= 6, "expected the official vectors");
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    for v in &vectors {
        let query: Vec<String> = v["query"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|kv| {
                format!(
                    "{}={}",
                    aksk::encode(s(&kv[0]).as_bytes()),
                    aksk::encode(s(&kv[1]).as_bytes())
                )
            })
            .collect();
        let mut target = s(&v["path"]);
        if !query.is_empty() {
            target = format!("{target}?{}", query.join("&"));
        }
        let headers: Vec<(String, String)> = v["headers"]
            .as_object()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|(k, val)| (k.clone(), s(val)))
            .collect();
        let borrowed: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, val)| (k.as_str(), val.as_str()))
            .collect();
        let got = aksk::authorization(
            &s(&v["access_key"]),
            &s(&v["secret_key"]),
            &s(&v["method"]),
            &s(&v["host"]),
            &target,
            &borrowed,
            s(&v["body"]).as_bytes(),
        );
        assert_eq!(got, s(&v["authorization"]), "vector {:?}", s(&v["name"]));
    }
}

/// How to build one signed request.
pub struct Signed<'a> {
    pub ak: &'a str,
    pub sk: &'a str,
    pub project: Option<&'a str>,
    pub security_token: Option<&'a str>,
    pub date: SystemTime,
}

impl<'a> Signed<'a> {
    pub fn new(ak: &'a str, sk: &'a str) -> Signed<'a> {
        Signed {
            ak,
            sk,
            project: Some(PROJECT),
            security_token: None,
            date: SystemTime::now(),
        }
    }

    /// The headers to send (without Host, which reqwest adds) and the
    /// Authorization value, signed as the official SDK does.
    pub fn headers(&self, standin: &StandIn, path: &str) -> Vec<(String, String)> {
        let host = standin.api_url().trim_start_matches("https://").to_owned();
        let mut headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X-Sdk-Date".to_owned(), aksk::sdk_date(self.date)),
        ];
        if let Some(p) = self.project {
            headers.push(("X-Project-Id".to_owned(), p.to_owned()));
        }
        if let Some(t) = self.security_token {
            headers.push(("X-Security-Token".to_owned(), t.to_owned()));
        }
        let borrowed: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let auth = aksk::authorization(self.ak, self.sk, "GET", &host, path, &borrowed, b"");
        headers.push(("Authorization".to_owned(), auth));
        headers
    }
}

fn api_path(project: &str) -> String {
    format!("/v3/{project}/instances/{INSTANCE}/ssl-cert/download-link")
}

/// Sends a GET with these headers; returns (status, body).
pub async fn get(
    client: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
) -> (u16, serde_json::Value) {
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("request failed: {e}"));
    let status = resp.status().as_u16();
    let body = resp
        .json()
        .await
        .unwrap_or_else(|e| panic!("body is not JSON: {e}"));
    (status, body)
}

fn with_key() -> (StandIn, reqwest::Client) {
    let standin = StandIn::start_with(Options {
        aksk: vec![(AK.to_owned(), SK.to_owned())],
        ..Options::default()
    });
    standin.add_instance(PROJECT, INSTANCE);
    let client = client(&standin);
    (standin, client)
}

fn assert_401(status: u16, body: &serde_json::Value, needle: &str) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error_code"], "APIGW.0301", "{body}");
    let msg = body["error_msg"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
}

#[tokio::test]
async fn a_correct_signature_is_accepted_and_recorded() {
    let (standin, client) = with_key();
    let headers = Signed::new(AK, SK).headers(&standin, &api_path(PROJECT));
    let (status, body) = get(&client, &link_url(&standin, PROJECT, INSTANCE), &headers).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["certs"].as_array().map(Vec::len), Some(2));
    let seen = standin.requests();
    let auth = seen[0].header("authorization").unwrap_or_default();
    assert!(auth.starts_with("SDK-HMAC-SHA256 Access=HPUASTANDINTEST00001, SignedHeaders=content-type;host;x-project-id;x-sdk-date, Signature="), "{auth}");
}

#[tokio::test]
async fn a_key_added_at_run_time_works_and_unknown_keys_do_not() {
    let standin = StandIn::start();
    standin.add_instance(PROJECT, INSTANCE);
    let client = client(&standin);
    let url = link_url(&standin, PROJECT, INSTANCE);
    let headers = Signed::new("AKLATER", "sk-later").headers(&standin, &api_path(PROJECT));
    let (status, body) = get(&client, &url, &headers).await;
    assert_401(status, &body, "access key does not exist");
    standin.add_aksk("AKLATER", "sk-later");
    let headers = Signed::new("AKLATER", "sk-later").headers(&standin, &api_path(PROJECT));
    assert_eq!(get(&client, &url, &headers).await.0, 200);
}

#[tokio::test]
async fn a_wrong_signature_is_401_without_the_expected_signature() {
    let (standin, client) = with_key();
    let path = api_path(PROJECT);
    let date = SystemTime::now();
    let right = Signed {
        date,
        ..Signed::new(AK, SK)
    }
    .headers(&standin, &path);
    let wrong = Signed {
        date,
        ..Signed::new(AK, "not-the-secret")
    }
    .headers(&standin, &path);
    let (status, body) = get(&client, &link_url(&standin, PROJECT, INSTANCE), &wrong).await;
    assert_401(status, &body, "verify aksk signature fail");
    let expected_sig = right
        .iter()
        .find(|(k, _)| k == "Authorization")
        .and_then(|(_, v)| v.rsplit("Signature=").next())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(expected_sig.len(), 64);
    let text = body.to_string();
    assert!(
        !text.contains(&expected_sig),
        "echoes the expected signature"
    );
    assert!(!text.contains(SK), "echoes the secret key");
}

#[tokio::test]
async fn a_changed_request_no_longer_matches_its_signature() {
    let (standin, client) = with_key();
    // Signed for instance-1, sent for instance-2.
    standin.add_instance(PROJECT, "instance-2");
    let headers = Signed::new(AK, SK).headers(&standin, &api_path(PROJECT));
    let (status, body) = get(
        &client,
        &link_url(&standin, PROJECT, "instance-2"),
        &headers,
    )
    .await;
    assert_401(status, &body, "verify aksk signature fail");
    // A signed header altered after signing.
    let mut headers = Signed::new(AK, SK).headers(&standin, &api_path(PROJECT));
    for (k, v) in &mut headers {
        if k == "Content-Type" {
            *v = "text/plain".to_owned();
        }
    }
    let (status, body) = get(&client, &link_url(&standin, PROJECT, INSTANCE), &headers).await;
    assert_401(status, &body, "verify aksk signature fail");
}

#[tokio::test]
async fn the_date_must_be_within_15_minutes() {
    let (standin, client) = with_key();
    let url = link_url(&standin, PROJECT, INSTANCE);
    let path = api_path(PROJECT);
    let now = SystemTime::now();
    let min = Duration::from_secs(60);
    for (date, ok) in [
        (now - 20 * min, false),
        (now + 20 * min, false),
        (now - 10 * min, true),
        (now + 10 * min, true),
    ] {
        let headers = Signed {
            date,
            ..Signed::new(AK, SK)
        }
        .headers(&standin, &path);
        let (status, body) = get(&client, &url, &headers).await;
        if ok {
            assert_eq!(status, 200, "{body}");
        } else {
            assert_401(status, &body, "15 minutes");
        }
    }
    // No X-Sdk-Date at all (signed without it).
    let host = standin.api_url().trim_start_matches("https://").to_owned();
    let auth = aksk::authorization(
        AK,
        SK,
        "GET",
        &host,
        &path,
        &[("X-Project-Id", PROJECT)],
        b"",
    );
    let headers = vec![
        ("X-Project-Id".to_owned(), PROJECT.to_owned()),
        ("Authorization".to_owned(), auth),
    ];
    let (status, body) = get(&client, &url, &headers).await;
    assert_401(status, &body, "x-sdk-date is not in SignedHeaders");
}

#[tokio::test]
async fn the_project_header_is_required_and_must_match() {
    let (standin, client) = with_key();
    let url = link_url(&standin, PROJECT, INSTANCE);
    let headers = Signed {
        project: None,
        ..Signed::new(AK, SK)
    }
    .headers(&standin, &api_path(PROJECT));
    let (status, body) = get(&client, &url, &headers).await;
    assert_401(status, &body, "X-Project-Id is required");
    let headers = Signed {
        project: Some("project-2"),
        ..Signed::new(AK, SK)
    }
    .headers(&standin, &api_path(PROJECT));
    let (status, body) = get(&client, &url, &headers).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error_code"], "APIGW.0302");
}

#[tokio::test]
async fn temporary_keys_need_their_signed_security_token() {
    let (standin, client) = with_key();
    let url = link_url(&standin, PROJECT, INSTANCE);
    let path = api_path(PROJECT);
    let (ak, sk, token) = standin.issue_temporary(Duration::from_secs(3600));

    let good = Signed {
        security_token: Some(&token),
        ..Signed::new(&ak, &sk)
    };
    assert_eq!(
        get(&client, &url, &good.headers(&standin, &path)).await.0,
        200
    );

    let (status, body) = get(
        &client,
        &url,
        &Signed::new(&ak, &sk).headers(&standin, &path),
    )
    .await;
    assert_401(status, &body, "needs X-Security-Token");

    let other = Signed {
        security_token: Some("gQforged"),
        ..Signed::new(&ak, &sk)
    };
    let (status, body) = get(&client, &url, &other.headers(&standin, &path)).await;
    assert_401(status, &body, "does not match");
    assert!(!body.to_string().contains(&token));

    // Sent but not signed: added after signing.
    let mut unsigned = Signed::new(&ak, &sk).headers(&standin, &path);
    unsigned.push(("X-Security-Token".to_owned(), token.clone()));
    let (status, body) = get(&client, &url, &unsigned).await;
    assert_401(status, &body, "x-security-token is not in SignedHeaders");

    // A permanent key with a security token is refused too.
    let permanent = Signed {
        security_token: Some(&token),
        ..Signed::new(AK, SK)
    };
    let (status, body) = get(&client, &url, &permanent.headers(&standin, &path)).await;
    assert_401(status, &body, "permanent access key");
}

#[tokio::test]
async fn expired_temporary_keys_are_refused() {
    let (standin, client) = with_key();
    let (ak, sk, token) = standin.issue_temporary(Duration::ZERO);
    let signed = Signed {
        security_token: Some(&token),
        ..Signed::new(&ak, &sk)
    };
    let headers = signed.headers(&standin, &api_path(PROJECT));
    let (status, body) = get(&client, &link_url(&standin, PROJECT, INSTANCE), &headers).await;
    assert_401(status, &body, "security token has expired");
}

#[tokio::test]
async fn the_download_host_needs_no_credentials_and_records_headers() {
    let (standin, client) = with_key();
    let headers = Signed::new(AK, SK).headers(&standin, &api_path(PROJECT));
    let (_, body) = get(&client, &link_url(&standin, PROJECT, INSTANCE), &headers).await;
    let link = body["certs"][0]["download_link"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let resp = client
        .get(&link)
        .header("X-Probe", "1")
        .send()
        .await
        .unwrap_or_else(|e| panic!("download: {e}"));
    assert_eq!(resp.status(), 200);
    let seen = standin.requests();
    let download = seen
        .iter()
        .find(|r| r.listener == dds_standin::Listener::Download)
        .unwrap_or_else(|| panic!("download not recorded"));
    assert_eq!(download.header("x-probe"), Some("1"));
    assert!(!download.has_header("authorization"));
}
