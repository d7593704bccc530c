//! The other services' API shapes: each instance answers only through its
//! own service's request, in its own shape; DCS links are pre-signed
//! object-storage URLs that the download host refuses once expired.

use std::time::Duration;

use dds_standin::{Options, StandIn};

use crate::{INSTANCE, PROJECT, client, link_url};

fn dcs_url(standin: &StandIn, instance: &str) -> String {
    format!(
        "{}/v2/{PROJECT}/instances/{instance}/ssl-certs/download",
        standin.api_url()
    )
}

#[tokio::test]
async fn each_v3_service_answers_in_its_shape() {
    let standin = StandIn::start();
    let client = client(&standin);
    for (service, check) in [
        ("rds", "cert_info_list"),
        ("geminidb", "certs"),
        ("opengauss", "download_link"),
    ] {
        let id = format!("{service}-1");
        standin.add_instance(PROJECT, &id);
        standin.set_service(&id, service);
        let resp = client
            .get(link_url(&standin, PROJECT, &id))
            .header("X-Auth-Token", standin.token())
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "{service}");
        let json: serde_json::Value = resp.json().await.expect("json");
        assert!(!json[check].is_null(), "{service}: {json}");
        if service == "geminidb" {
            assert_eq!(json["certs"].as_array().map(Vec::len), Some(1), "{json}");
            assert_eq!(json["certs"][0]["category"], "international");
        }
    }
}

#[tokio::test]
async fn dcs_answers_a_post_with_a_presigned_link_and_nothing_else_does() {
    // Long enough for the first download on a loaded machine; the expiry is
    // then polled for, not slept for.
    const TTL: Duration = Duration::from_secs(3);
    let standin = StandIn::start_with(Options {
        link_ttl: TTL,
        ..Options::default()
    });
    let client = client(&standin);
    standin.add_instance(PROJECT, INSTANCE);
    standin.add_instance(PROJECT, "redis-1");
    let token = standin.token();
    // Set over the admin API, as by hand with the dds-standin binary.
    let set = |service: &'static str| {
        client
            .post(format!(
                "{}/__standin/service?instance=redis-1&service={service}",
                standin.api_url()
            ))
            .send()
    };
    assert_eq!(set("redis").await.expect("admin").status(), 400);
    assert_eq!(set("dcs").await.expect("admin").status(), 200);
    // The GET of the v3 path does not reach a DCS instance, nor the POST a
    // DDS one, nor a GET of the DCS path anything.
    let get = client
        .get(link_url(&standin, PROJECT, "redis-1"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .expect("request");
    assert_eq!(get.status(), 404);
    let post = client
        .post(dcs_url(&standin, INSTANCE))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .expect("request");
    assert_eq!(post.status(), 404);
    let json: serde_json::Value = post.json().await.expect("json");
    assert_eq!(json["error_code"], "DCS.4019");
    let wrong_method = client
        .get(dcs_url(&standin, "redis-1"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .expect("request");
    assert_eq!(wrong_method.status(), 404);

    let issued = std::time::Instant::now();
    let resp = client
        .post(dcs_url(&standin, "redis-1"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let json: serde_json::Value = resp.json().await.expect("json");
    let link = json["link"].as_str().expect("link").to_owned();
    assert!(json["file_name"].is_string() && json["bucket_name"].is_string());
    assert!(
        link.contains("?AWSAccessKeyId=")
            && link.contains("&Expires=")
            && link.contains("&Signature="),
        "{link}"
    );
    let fresh = client.get(&link).send().await.expect("download");
    assert_eq!(fresh.status(), 200);
    assert!(issued.elapsed() < TTL, "the first download came too late");
    // Once expired, the object store refuses it.
    let refused_at = loop {
        let status = client.get(&link).send().await.expect("download").status();
        if status == 403 {
            break issued.elapsed();
        }
        assert_eq!(status, 200);
        assert!(issued.elapsed() < TTL * 10, "the link never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(refused_at >= TTL, "refused after {refused_at:?}");
}
