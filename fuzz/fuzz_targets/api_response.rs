//! Fuzz target: the DDS API answer and error parsers, and the download
//! host's error-page summary. None may panic; every error must render.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use dds_certsync::cloud::api;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match api::parse_links(data) {
        Ok(links) => {
            for l in links {
                let _ = (l.category.len(), l.url.len());
            }
        }
        Err(e) => {
            let _ = (e.to_string(), e.is_transient(), e.reason());
        }
    }
    let e = api::status_error(
        429,
        data,
        Some("req-1".into()),
        Some(Duration::from_secs(1)),
    );
    let _ = (e.to_string(), e.retry_after(), e.reason());
    let _ = api::describe_download_error("text/html", data);
    let _ = api::describe_download_error("application/xml", data);
    if let Ok(v) = reqwest::header::HeaderValue::from_bytes(data) {
        let _ = api::parse_retry_after(&v, UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    }
});
