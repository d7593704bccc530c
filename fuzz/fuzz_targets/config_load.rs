//! Fuzz target: the config loader's pure steps, parse then validate. Bad
//! input must give a ConfigError (naming a key where it can), never a panic.
#![no_main]

use std::path::Path;

use dds_certsync::config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse(text) {
        Ok(raw) => match config::validate(raw, Path::new("/base")) {
            Ok(c) => {
                let _ = format!("{c:?}");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        },
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
