//! Replays the committed fuzz corpus (`fuzz/seeds/<target>/`) through the
//! same code as the cargo-fuzz targets, in the normal suite, so CI checks
//! every seed (and every crash a fuzz run ever found, which is added there as
//! a regression input) without a nightly toolchain. Known-good and known-bad
//! seeds are also checked for the right verdict.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dds_certsync::{certcheck, cloud::api, config, ledger::Owed};

/// The fixed "now" of the certificate seeds (2027-01-15), inside the
/// validity of the committed stand-in certificates.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no seeds for {target}");
    v
}

#[test]
fn api_response_seeds() {
    for (name, data) in seeds("api_response") {
        let parsed = api::parse_links(&data);
        if name == "ok.json" {
            let links = parsed.unwrap();
            assert_eq!(links.len(), 2);
        } else if let Err(e) = parsed {
            assert!(!e.to_string().is_empty());
        }
        let e = api::status_error(404, &data, None, None);
        let text = e.to_string();
        if name == "err-dbs.json" {
            assert!(
                text.contains("DBS.200002: The DB instance does not exist"),
                "{text}"
            );
        }
        let _ = api::describe_download_error("application/xml", &data);
        if let Ok(v) = reqwest::header::HeaderValue::from_bytes(&data) {
            let _ = api::parse_retry_after(&v, now());
        }
    }
}

#[test]
fn cert_verify_seeds() {
    for (name, data) in seeds("cert_verify") {
        let r = certcheck::verify(&data, now());
        let should_pass = matches!(
            name.as_str(),
            "international.pem" | "national-sm2.pem" | "chain.pem" | "standin-ca.pem"
        );
        match r {
            Ok(v) => {
                assert!(should_pass, "{name} was accepted");
                let again = certcheck::verify(&v.pem, now()).unwrap();
                assert_eq!(again.pem, v.pem, "{name}: canonical form is stable");
            }
            Err(e) => {
                assert!(!should_pass, "{name} was refused: {e}");
                assert!(!e.to_string().is_empty());
            }
        }
        let _ = certcheck::inspect_pem(&data);
    }
}

#[test]
fn config_load_seeds() {
    for (name, data) in seeds("config_load") {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        let r = config::parse(text).and_then(|raw| config::validate(raw, Path::new("/base")));
        match name.as_str() {
            "example.toml" | "minimal.toml" => {
                r.unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            "typo-and-signal.toml" => {
                assert_eq!(r.unwrap_err().key.as_deref(), Some("sync.intervall"));
            }
            _ => {
                if let Err(e) = r {
                    assert!(!e.to_string().is_empty());
                }
            }
        }
    }
}

#[test]
fn hook_record_seeds() {
    for (name, data) in seeds("hook_record") {
        let r = Owed::from_json(&data);
        if name == "new-file.json" {
            let owed = r.unwrap();
            assert_eq!(owed.instance_id, "i1");
            assert_eq!(owed.files[0].old, None);
        }
    }
}
