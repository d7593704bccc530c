//! The checks behind the fuzz targets, shared with the seed replay.
//!
//! Each function takes the raw input, runs it through the code under test,
//! panics if an invariant breaks (which is what a fuzzer finds), and returns
//! a short text of what happened. The cargo-fuzz targets in `fuzz/` call
//! exactly these functions, and so does `tests/it/fuzz_seeds.rs`, which also
//! compares the text with the `<seed>.expect` file stored beside a seed. So
//! the seeds replayed in the normal suite run the same code as the fuzzers.
//!
//! Not part of the daemon's interface; public only for those two users.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::certcheck;
use crate::cloud::api;
use crate::config;
use crate::ledger::Owed;

/// The fixed "now" of the checks (2027-01-15), inside the validity of the
/// committed stand-in certificates.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// The DDS API answer and error parsers, and the download host's error-page
/// summary: no panic, every error renders, a 429 is transient and keeps its
/// `Retry-After`.
pub fn api_response(data: &[u8]) -> String {
    let mut out = String::new();
    match api::parse_links(data) {
        Ok(links) => {
            let l: Vec<String> = links
                .iter()
                .map(|l| format!("{}={}", l.category, l.url))
                .collect();
            let _ = writeln!(out, "links: {}", l.join(" "));
        }
        Err(e) => {
            let text = e.to_string();
            assert!(!text.is_empty());
            assert!(
                !e.is_transient(),
                "a body is never a transient failure: {e}"
            );
            let _ = writeln!(out, "links refused ({}): {text}", e.reason());
        }
    }
    let e = api::status_error(
        429,
        data,
        Some("req-1".into()),
        Some(Duration::from_secs(1)),
    );
    let text = e.to_string();
    assert!(!text.is_empty());
    assert!(e.is_transient(), "429 is transient");
    assert_eq!(e.reason(), crate::reason::Reason::ApiThrottled);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    assert!(
        text.len() < 1024,
        "status error text is bounded: {}",
        text.len()
    );
    let _ = writeln!(out, "status 429: {text}");
    for ct in ["text/html", "application/xml"] {
        let d = api::describe_download_error(ct, data);
        assert!(d.len() < 512, "download error text is bounded: {}", d.len());
        let _ = writeln!(out, "download {ct}:{d}");
    }
    if let Ok(v) = reqwest::header::HeaderValue::from_bytes(data) {
        let r = api::parse_retry_after(&v, now());
        if let Some(d) = r {
            assert!(d <= Duration::from_secs(24 * 3600), "Retry-After is capped");
        }
        let _ = writeln!(out, "retry-after: {r:?}");
    }
    out
}

/// The certificate verifier (PEM, DER or zip bodies): no panic, and whatever
/// it accepts is canonical PEM (verifying its own output gives the same bytes
/// and SHA-256).
pub fn cert_verify(data: &[u8]) -> String {
    let mut out = match certcheck::verify(data, now()) {
        Ok(v) => {
            let again = certcheck::verify(&v.pem, now()).expect("canonical output verifies");
            assert_eq!(again.pem, v.pem, "canonical form is stable");
            assert_eq!(again.sha256, v.sha256);
            assert_eq!(certcheck::sha256(&v.pem), v.sha256);
            format!("accepted sha256={}\n", certcheck::hex(&v.sha256))
        }
        Err(e) => {
            let text = e.to_string();
            assert!(!text.is_empty());
            format!("refused: {text}\n")
        }
    };
    let n = certcheck::inspect_pem(data).map(|c| c.len());
    let _ = writeln!(out, "inspect: {n:?}");
    out
}

/// The config loader's pure steps, parse then validate: bad input gives a
/// `ConfigError` that renders, never a panic.
pub fn config_load(data: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(data) else {
        return "not UTF-8\n".into();
    };
    match config::parse(text).and_then(|raw| config::validate(raw, Path::new("/base"))) {
        Ok(c) => {
            let _ = format!("{c:?}");
            format!("valid: {} instances\n", c.instances.len())
        }
        Err(e) => {
            let text = e.to_string();
            assert!(!text.is_empty());
            format!("refused: key={:?}: {text}\n", e.key)
        }
    }
}

/// The hook ledger's record parser (a file in the state directory that a
/// crash, a full disk or a person may have mangled): no panic, and a record
/// it accepts round-trips (serialized and parsed again, it is the same, and
/// serializing is stable).
pub fn hook_record(data: &[u8]) -> String {
    match Owed::from_json(data) {
        Ok(owed) => {
            let json = owed.to_json();
            let again = Owed::from_json(&json).expect("a serialized record parses");
            assert_eq!(again, owed, "a record round-trips");
            assert_eq!(again.to_json(), json, "serializing is stable");
            format!(
                "record: instance={:?} files={}\n",
                owed.instance_id,
                owed.files.len()
            )
        }
        Err(e) => {
            assert!(!e.is_empty());
            format!("refused: {e}\n")
        }
    }
}

/// A record of kept certificates (`kept-*.json` in the state directory,
/// which a crash, a full disk or a person may have mangled), of either
/// version: a version 1 record as [`store::Store::upgrade`] reads it, else
/// a version 2 record. No panic; a record it accepts round-trips through
/// the version 2 form, and every certificate in it matches its fingerprint.
pub fn kept_record(data: &[u8]) -> String {
    use crate::overlap::store;
    let parsed = match store::from_json_v1(data) {
        Ok((id, _, _)) if id != "i1" => Err(format!("it is for instance {id:?}")),
        Ok((_, category, state)) => Ok(vec![(category, state)]),
        Err(e) if e.starts_with("unknown version") => store::from_json(data, "i1", &[]),
        Err(e) => Err(e),
    };
    match parsed {
        Ok(states) => {
            let refs: Vec<_> = states.iter().map(|(c, s)| (*c, s)).collect();
            let json = store::to_json("i1", &refs);
            let again = store::from_json(&json, "i1", &[]).expect("a serialized record parses");
            assert_eq!(again, states, "a record round-trips");
            let refs: Vec<_> = again.iter().map(|(c, s)| (*c, s)).collect();
            assert_eq!(store::to_json("i1", &refs), json, "serializing is stable");
            let certs = states.iter().flat_map(|(_, s)| s.bundle());
            for c in certs {
                assert_eq!(certcheck::sha256(&c.der), c.fingerprint);
            }
            let count = |f: fn(&crate::overlap::State) -> usize| -> usize {
                states.iter().map(|(_, s)| f(s)).sum()
            };
            format!(
                "record: current={} kept={}\n",
                count(|s| s.current.len()),
                count(|s| s.kept.len())
            )
        }
        Err(e) => {
            assert!(!e.is_empty());
            format!("refused: {e}\n")
        }
    }
}
