//! Every fault does what it says, and rules match and count down.

use std::time::{Duration, Instant};

use dds_standin::{Fault, FaultRule};

use crate::{INSTANCE, PROJECT, link, link_url, links, setup};

async fn api_get(
    standin: &dds_standin::StandIn,
    client: &reqwest::Client,
) -> reqwest::Result<reqwest::Response> {
    client
        .get(link_url(standin, PROJECT, INSTANCE))
        .header("X-Auth-Token", standin.token())
        .send()
        .await
}

#[tokio::test]
async fn api_status_with_retry_after() {
    let (standin, client) = setup();
    standin.push_fault(FaultRule::once(Fault::ApiStatus {
        status: 429,
        body: r#"{"error_code":"APIGW.0308","error_msg":"The request is throttled"}"#.to_owned(),
        retry_after: Some("7".to_owned()),
    }));
    let resp = api_get(&standin, &client).await.expect("request");
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );
    assert!(resp.text().await.expect("body").contains("APIGW.0308"));
    assert_eq!(
        api_get(&standin, &client).await.expect("request").status(),
        200,
        "once = once"
    );
}

#[tokio::test]
async fn api_body_replaces_the_answer() {
    let (standin, client) = setup();
    standin.push_fault(FaultRule::always(Fault::ApiBody("{not json".to_owned())));
    for _ in 0..2 {
        let resp = api_get(&standin, &client).await.expect("request");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.expect("body"), "{not json");
    }
    standin.clear_faults();
    assert_eq!(links(&standin, &client, INSTANCE).await.len(), 2);
}

#[tokio::test]
async fn api_delay_stalls_then_answers() {
    let (standin, client) = setup();
    standin.push_fault(FaultRule::once(Fault::ApiDelay(Duration::from_millis(300))));
    let start = Instant::now();
    let resp = api_get(&standin, &client).await.expect("request");
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn api_reset_closes_without_an_answer() {
    let (standin, client) = setup();
    standin.push_fault(FaultRule::once(Fault::ApiReset));
    let err = api_get(&standin, &client)
        .await
        .expect_err("reset must fail the request");
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    assert_eq!(
        api_get(&standin, &client).await.expect("request").status(),
        200
    );
}

#[tokio::test]
async fn api_rules_match_instances() {
    let (standin, client) = setup();
    standin.add_instance(PROJECT, "instance-2");
    standin.push_fault(
        FaultRule::always(Fault::ApiStatus {
            status: 503,
            body: String::new(),
            retry_after: None,
        })
        .for_instance("instance-2"),
    );
    assert_eq!(
        api_get(&standin, &client).await.expect("request").status(),
        200
    );
    let other = client
        .get(link_url(&standin, PROJECT, "instance-2"))
        .header("X-Auth-Token", standin.token())
        .send()
        .await
        .expect("request");
    assert_eq!(other.status(), 503);
}

#[tokio::test]
async fn download_status_serves_an_error_page() {
    let (standin, client) = setup();
    let url = link(&standin, &client, INSTANCE, "international").await;
    standin.push_fault(FaultRule::once(Fault::DownloadStatus {
        status: 403,
        body: "<html>denied</html>".to_owned(),
        content_type: "text/html".to_owned(),
    }));
    let resp = client.get(&url).send().await.expect("download");
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/html")
    );
    assert_eq!(resp.text().await.expect("body"), "<html>denied</html>");
}

#[tokio::test]
async fn download_body_and_category_filter() {
    let (standin, client) = setup();
    standin.push_fault(
        FaultRule::always(Fault::DownloadBody(b"garbage".to_vec())).for_category("national"),
    );
    let national = link(&standin, &client, INSTANCE, "national").await;
    let international = link(&standin, &client, INSTANCE, "international").await;
    let body = client
        .get(&national)
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("body");
    assert_eq!(&body[..], b"garbage");
    let body = client
        .get(&international)
        .send()
        .await
        .expect("download")
        .text()
        .await
        .expect("body");
    assert_eq!(body, standin.cert_pem(INSTANCE, "international"));
}

#[tokio::test]
async fn download_truncate_announces_more_than_it_sends() {
    let (standin, client) = setup();
    let full_len = standin.cert_pem(INSTANCE, "international").len();
    let url = link(&standin, &client, INSTANCE, "international").await;
    standin.push_fault(FaultRule::once(Fault::DownloadTruncate));
    let resp = client.get(&url).send().await.expect("headers arrive");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(full_len as u64));
    assert!(resp.bytes().await.is_err(), "the body must end early");
}

#[tokio::test]
async fn download_reset_and_delay() {
    let (standin, client) = setup();
    let url = link(&standin, &client, INSTANCE, "national").await;
    standin.push_fault(FaultRule::once(Fault::DownloadReset));
    standin.push_fault(FaultRule::once(Fault::DownloadDelay(
        Duration::from_millis(250),
    )));
    assert!(client.get(&url).send().await.is_err(), "reset");
    let start = Instant::now();
    let resp = client.get(&url).send().await.expect("delayed download");
    assert!(start.elapsed() >= Duration::from_millis(250));
    assert_eq!(
        resp.text().await.expect("body"),
        standin.cert_pem(INSTANCE, "national")
    );
}

#[tokio::test]
async fn download_huge_streams_the_announced_size() {
    let (standin, client) = setup();
    let url = link(&standin, &client, INSTANCE, "international").await;
    let size = 3 * 1024 * 1024 + 17;
    standin.push_fault(FaultRule::once(Fault::DownloadHuge(size)));
    standin.push_fault(FaultRule::once(Fault::DownloadHugeChunked(size)));

    let resp = client.get(&url).send().await.expect("huge");
    assert_eq!(resp.content_length(), Some(size as u64));
    let body = resp.bytes().await.expect("body");
    assert_eq!(body.len(), size);
    assert!(body.starts_with(b"-----BEGIN CERTIFICATE-----\n"));

    let resp = client.get(&url).send().await.expect("huge chunked");
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(
        resp.headers()
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("chunked")
    );
    assert_eq!(resp.bytes().await.expect("body").len(), size);
}

#[tokio::test]
async fn rules_count_down_and_download_faults_skip_the_api() {
    let (standin, client) = setup();
    standin.push_fault(FaultRule::times(Fault::DownloadBody(b"x".to_vec()), 2));
    // API calls are unaffected and do not consume the download rule.
    let url = link(&standin, &client, INSTANCE, "international").await;
    let url2 = link(&standin, &client, INSTANCE, "international").await;
    for u in [&url, &url2] {
        let body = client
            .get(u)
            .send()
            .await
            .expect("download")
            .bytes()
            .await
            .expect("body");
        assert_eq!(&body[..], b"x");
    }
    let body = client
        .get(&url)
        .send()
        .await
        .expect("download")
        .text()
        .await
        .expect("body");
    assert_eq!(body, standin.cert_pem(INSTANCE, "international"));
}
