//! The `/__standin/` admin API.

use crate::{INSTANCE, PROJECT, link_url, links, setup};

#[tokio::test]
async fn rotate_and_read_certificates_over_http() {
    let (standin, client) = setup();
    let base = format!("{}/__standin", standin.api_url());
    let before = standin.cert_pem(INSTANCE, "national");
    let resp = client
        .post(format!(
            "{base}/rotate?instance={INSTANCE}&category=national"
        ))
        .send()
        .await
        .expect("rotate");
    assert_eq!(resp.status(), 200);
    let rotated = resp.text().await.expect("body");
    assert_ne!(rotated, before);
    assert_eq!(standin.cert_pem(INSTANCE, "national"), rotated);

    let served = client
        .get(format!("{base}/cert?instance={INSTANCE}&category=national"))
        .send()
        .await
        .expect("cert")
        .text()
        .await
        .expect("body");
    assert_eq!(served, rotated);

    let missing = client
        .post(format!("{base}/rotate?instance=nope&category=national"))
        .send()
        .await
        .expect("rotate");
    assert_eq!(missing.status(), 400);
    let no_param = client
        .post(format!("{base}/rotate"))
        .send()
        .await
        .expect("rotate");
    assert_eq!(no_param.status(), 400);
    let unknown = client
        .get(format!("{base}/nothing"))
        .send()
        .await
        .expect("unknown");
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn instances_categories_faults_and_requests_over_http() {
    let (standin, client) = setup();
    let base = format!("{}/__standin", standin.api_url());
    let ok = |r: reqwest::Response| {
        assert_eq!(r.status(), 200, "{r:?}");
    };
    ok(client
        .post(format!("{base}/instances?project={PROJECT}&instance=added"))
        .send()
        .await
        .expect("add"));
    ok(client
        .post(format!("{base}/categories?instance=added&list=national"))
        .send()
        .await
        .expect("cats"));
    let listed: Vec<String> = links(&standin, &client, "added")
        .await
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    assert_eq!(listed, ["national"]);

    ok(client
        .post(format!(
            "{base}/faults?kind=api-status&status=429&retry_after=2&times=1"
        ))
        .send()
        .await
        .expect("fault"));
    let throttled = client
        .get(link_url(&standin, PROJECT, INSTANCE))
        .header("X-Auth-Token", standin.token())
        .send()
        .await
        .expect("api");
    assert_eq!(throttled.status(), 429);
    assert_eq!(
        throttled
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );

    ok(client
        .post(format!("{base}/faults?kind=api-reset"))
        .send()
        .await
        .expect("fault"));
    // Faults never hit the admin API itself...
    ok(client
        .delete(format!("{base}/faults"))
        .send()
        .await
        .expect("clear"));
    // ...and clearing them restores the API.
    assert_eq!(links(&standin, &client, INSTANCE).await.len(), 2);

    let bad = client
        .post(format!("{base}/faults?kind=bogus"))
        .send()
        .await
        .expect("fault");
    assert_eq!(bad.status(), 400);

    let recorded: serde_json::Value = client
        .get(format!("{base}/requests"))
        .send()
        .await
        .expect("requests")
        .json()
        .await
        .expect("json");
    let arr = recorded.as_array().expect("array");
    assert!(
        arr.iter()
            .any(|r| r["listener"] == "api" && r["method"] == "POST"),
        "{recorded}"
    );
    ok(client
        .delete(format!("{base}/requests"))
        .send()
        .await
        .expect("clear"));
    assert!(
        standin.requests().is_empty(),
        "the DELETE is recorded, then cleared too"
    );
}
