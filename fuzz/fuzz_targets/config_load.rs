//! Fuzz target: the config loader's pure steps, parse then validate. Bad
//! input must give a ConfigError, never a panic.
//! The check is `dds_certsync::fuzzcheck::config_load`, which the seed replay
//! (`tests/it/fuzz_seeds.rs`) runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dds_certsync::fuzzcheck::config_load(data);
});
