//! Replays the committed fuzz corpus (`fuzz/seeds/<target>/`) in the normal
//! suite, through the very functions the cargo-fuzz targets call
//! (`dds_certsync::fuzzcheck`), so CI checks every seed (and every crash a
//! fuzz run ever found, which is added there as a regression input) without
//! a nightly toolchain. Where a seed has a `<seed>.expect` file beside it,
//! every line of that file must appear in the check's account of the seed.

use std::fs;
use std::path::{Path, PathBuf};

use dds_certsync::fuzzcheck;

fn replay(target: &str, check: fn(&[u8]) -> String) {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut seeds: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none_or(|x| x != "expect"))
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds for {target}");
    let mut expected = 0;
    for seed in &seeds {
        let name = seed.file_name().unwrap().to_string_lossy();
        let got = check(&fs::read(seed).unwrap());
        let expect = PathBuf::from(format!("{}.expect", seed.display()));
        let Ok(want) = fs::read_to_string(&expect) else {
            continue;
        };
        expected += 1;
        for line in want.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                got.contains(line),
                "{target}/{name}: expected {line:?} in\n{got}"
            );
        }
    }
    // Every .expect belongs to a seed.
    for e in fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "expect") {
            assert!(p.with_extension("").exists(), "{} has no seed", p.display());
        }
    }
    assert!(expected > 0, "{target}: no seed has an expected outcome");
}

#[test]
fn api_response_seeds() {
    replay("api_response", fuzzcheck::api_response);
}

#[test]
fn cert_verify_seeds() {
    replay("cert_verify", fuzzcheck::cert_verify);
}

#[test]
fn config_load_seeds() {
    replay("config_load", fuzzcheck::config_load);
}

#[test]
fn hook_record_seeds() {
    replay("hook_record", fuzzcheck::hook_record);
}

#[test]
fn kept_record_seeds() {
    replay("kept_record", fuzzcheck::kept_record);
}
