//! Fuzz target: the hook ledger's record parser (a file in the state
//! directory that a crash, a full disk or a person may have mangled).
#![no_main]

use dds_certsync::ledger::Owed;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(owed) = Owed::from_json(data) {
        let _ = owed.files.len();
    }
});
