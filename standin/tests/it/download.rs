//! The download host: serving, link freshness, OBS-style errors.

use std::time::Duration;

use dds_standin::{Options, StandIn};

use crate::{INSTANCE, PROJECT, client, link, setup};

#[tokio::test]
async fn serves_the_current_certificate_through_an_issued_link() {
    let (standin, client) = setup();
    for category in ["international", "national"] {
        let url = link(&standin, &client, INSTANCE, category).await;
        let resp = client.get(&url).send().await.expect("download");
        assert_eq!(resp.status(), 200);
        let headers = resp.headers().clone();
        assert_eq!(
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/x-x509-ca-cert")
        );
        let body = resp.bytes().await.expect("body");
        assert_eq!(
            headers.get("content-length").and_then(|v| v.to_str().ok()),
            Some(body.len().to_string().as_str())
        );
        assert_eq!(body, standin.cert_pem(INSTANCE, category).as_bytes());
    }
}

async fn expect_access_denied(client: &reqwest::Client, url: &str) {
    let resp = client.get(url).send().await.expect("download");
    assert_eq!(resp.status(), 403, "{url}");
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/xml")
    );
    let body = resp.text().await.expect("body");
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
}

#[tokio::test]
async fn refuses_links_it_did_not_issue() {
    let (standin, client) = setup();
    let good = link(&standin, &client, INSTANCE, "international").await;
    let host = standin.download_host();
    expect_access_denied(
        &client,
        &format!("https://{host}/dds-cert/{INSTANCE}/international/ca-dds.crt"),
    )
    .await;
    expect_access_denied(
        &client,
        &format!(
            "https://{host}/dds-cert/{INSTANCE}/international/ca-dds.crt?Expires=1&Signature=forged"
        ),
    )
    .await;
    // A genuine signature does not unlock another category.
    expect_access_denied(&client, &good.replace("/international/", "/national/")).await;
    // ...but the genuine link works, more than once while fresh.
    for _ in 0..2 {
        assert_eq!(
            client.get(&good).send().await.expect("download").status(),
            200
        );
    }
}

#[tokio::test]
async fn links_expire_after_the_ttl() {
    // Long enough for the first download on a loaded machine; the expiry is
    // then polled for, not slept for.
    const TTL: Duration = Duration::from_secs(3);
    let standin = StandIn::start_with(Options {
        link_ttl: TTL,
        ..Options::default()
    });
    standin.add_instance(PROJECT, INSTANCE);
    let client = client(&standin);
    let issued = std::time::Instant::now();
    let url = link(&standin, &client, INSTANCE, "national").await;
    assert_eq!(
        client.get(&url).send().await.expect("download").status(),
        200
    );
    assert!(
        issued.elapsed() < TTL,
        "the first download came too late to count"
    );
    // Valid until the TTL, refused from then on.
    let refused_at = loop {
        let status = client.get(&url).send().await.expect("download").status();
        if status == 403 {
            break issued.elapsed();
        }
        assert_eq!(status, 200);
        assert!(issued.elapsed() < TTL * 10, "the link never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        refused_at >= TTL,
        "refused after {refused_at:?}, before the TTL"
    );
    expect_access_denied(&client, &url).await;
}

#[tokio::test]
async fn unknown_paths_and_missing_slots_are_no_such_key() {
    let (standin, client) = setup();
    let resp = client
        .get(format!("https://{}/elsewhere", standin.download_host()))
        .send()
        .await
        .expect("download");
    assert_eq!(resp.status(), 404);
    assert!(
        resp.text()
            .await
            .expect("body")
            .contains("<Code>NoSuchKey</Code>")
    );

    standin.set_categories(INSTANCE, &["international", "future-category"]);
    let url = link(&standin, &client, INSTANCE, "future-category").await;
    let resp = client.get(&url).send().await.expect("download");
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn serves_arbitrary_bytes_set_by_the_test() {
    let (standin, client) = setup();
    standin.set_cert_pem(INSTANCE, "international", b"not a certificate\x00\xff");
    let url = link(&standin, &client, INSTANCE, "international").await;
    let body = client
        .get(&url)
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("body");
    assert_eq!(&body[..], b"not a certificate\x00\xff");
}

#[tokio::test]
async fn rotation_changes_what_is_served() {
    let (standin, client) = setup();
    for category in ["international", "national"] {
        let before = standin.cert_pem(INSTANCE, category);
        let rotated = standin.rotate(INSTANCE, category);
        assert_ne!(before, rotated);
        assert_eq!(standin.cert_pem(INSTANCE, category), rotated);
        let url = link(&standin, &client, INSTANCE, category).await;
        let body = client
            .get(&url)
            .send()
            .await
            .expect("download")
            .text()
            .await
            .expect("body");
        assert_eq!(body, rotated);
        assert_ne!(
            standin.rotate(INSTANCE, category),
            rotated,
            "each rotation is distinct"
        );
    }
}

#[tokio::test]
async fn localhost_resolves_to_the_download_listener() {
    // The links name `localhost`; make sure the client really gets there
    // (the server certificate covers that name).
    let (standin, client) = setup();
    let url = link(&standin, &client, INSTANCE, "international").await;
    assert!(url.starts_with("https://localhost:"));
    assert_eq!(
        client.get(&url).send().await.expect("download").status(),
        200
    );
}
