//! Fuzz target: the certificate verifier (PEM, DER or zip bodies). It must never panic, and whatever
//! it accepts must be canonical: verifying its own output gives the same
//! bytes and the same SHA-256.
//! The check is `dds_certsync::fuzzcheck::cert_verify`, which the seed replay
//! (`tests/it/fuzz_seeds.rs`) runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dds_certsync::fuzzcheck::cert_verify(data);
});
