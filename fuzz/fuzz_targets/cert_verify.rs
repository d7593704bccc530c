//! Fuzz target: the PEM/X.509 verifier. It must never panic, and whatever
//! it accepts must be canonical: verifying its own output gives the same
//! bytes and the same SHA-256.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use dds_certsync::certcheck;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    match certcheck::verify(data, now) {
        Ok(v) => {
            let again = certcheck::verify(&v.pem, now).expect("canonical output verifies");
            assert_eq!(again.pem, v.pem, "canonical form is stable");
            assert_eq!(again.sha256, v.sha256);
            assert_eq!(certcheck::sha256(&v.pem), v.sha256);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = certcheck::inspect_pem(data);
});
