//! Fuzz target: the parser of an output's record of kept certificates
//! (`kept-*.json` in the state directory, which a crash, a full disk or a
//! person may have mangled). No panic, and an accepted record round-trips.
//! The check is `dds_certsync::fuzzcheck::kept_record`, which the seed replay
//! (`tests/it/fuzz_seeds.rs`) runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dds_certsync::fuzzcheck::kept_record(data);
});
