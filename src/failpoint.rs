//! Crash points for the crash-safety tests, compiled into debug builds only.
//!
//! `DDS_CERTSYNC_CRASH_AT=name[:n]` makes the process abort (like a SIGKILL
//! or a power loss: no destructor, no flush, no cleanup) the `n`-th time
//! (default: the first) it reaches the point `name`. The integration tests
//! use it to stop the daemon between any two steps of a replacement or of a
//! hook delivery and check what a restart makes of it.
//!
//! `DDS_CERTSYNC_PAUSE_AT=name:ms[,name:ms...]` makes the thread sleep `ms`
//! milliseconds at each named point instead: a slow disk, which widens the
//! window between two steps so that the SIGKILL torture test lands in it
//! often enough to assert that it did. In release builds [`hit`] is an
//! empty function and both variables are ignored.
//!
//! The points, in the order a change passes them:
//!
//! | name | where |
//! |---|---|
//! | `ledger-before-store` | before the hook record is written |
//! | `before-rename` | certificate temp file written, fsynced and chmodded, not yet renamed |
//! | `after-rename` | certificate renamed, directory not yet fsynced |
//! | `before-hook` | files in place and recorded, hook not yet started |
//! | `after-hook` | hook exited 0, its record not yet cleared |

/// Aborts the process if `DDS_CERTSYNC_CRASH_AT` names this point (debug
/// builds only).
#[cfg(debug_assertions)]
pub fn hit(name: &str) {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    static SPEC: Mutex<Option<Option<(String, u64)>>> = Mutex::new(None);
    let spec = {
        let mut s = SPEC.lock().unwrap_or_else(|e| e.into_inner());
        s.get_or_insert_with(|| {
            let v = std::env::var("DDS_CERTSYNC_CRASH_AT").ok()?;
            let (n, k) = match v.split_once(':') {
                Some((n, k)) => (n.to_string(), k.parse().unwrap_or(1)),
                None => (v, 1),
            };
            Some((n, k))
        })
        .clone()
    };
    static PAUSES: std::sync::OnceLock<Vec<(String, u64)>> = std::sync::OnceLock::new();
    let pauses = PAUSES.get_or_init(|| {
        std::env::var("DDS_CERTSYNC_PAUSE_AT")
            .unwrap_or_default()
            .split(',')
            .filter_map(|p| {
                let (n, ms) = p.split_once(':')?;
                Some((n.to_string(), ms.parse().ok()?))
            })
            .collect()
    });
    for (_, ms) in pauses.iter().filter(|(n, _)| n == name) {
        std::thread::sleep(std::time::Duration::from_millis(*ms));
    }
    if let Some((point, nth)) = spec
        && point == name
        && COUNT.fetch_add(1, Ordering::SeqCst) + 1 >= nth
    {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

/// Release builds: nothing.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_name: &str) {}
