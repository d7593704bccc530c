//! Fuzz target: the hook ledger's record parser (a file in the state
//! directory that a crash, a full disk or a person may have mangled). No
//! panic, and an accepted record round-trips.
//! The check is `dds_certsync::fuzzcheck::hook_record`, which the seed replay
//! (`tests/it/fuzz_seeds.rs`) runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dds_certsync::fuzzcheck::hook_record(data);
});
