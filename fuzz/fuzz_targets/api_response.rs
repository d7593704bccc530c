//! Fuzz target: the DDS API answer and error parsers, and the download
//! host's error-page summary. None may panic; every error must render; a 429
//! is transient and keeps its Retry-After.
//! The check is `dds_certsync::fuzzcheck::api_response`, which the seed replay
//! (`tests/it/fuzz_seeds.rs`) runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dds_certsync::fuzzcheck::api_response(data);
});
