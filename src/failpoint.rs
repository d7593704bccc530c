//! Crash points for the crash-safety tests, compiled into debug builds only.
//!
//! `DDS_CERTSYNC_CRASH_AT=name[:n]` makes the process abort (like a SIGKILL
//! or a power loss: no destructor, no flush, no cleanup) the `n`-th time
//! (default: the first) it reaches the point `name`. The integration tests
//! use it to stop the daemon between any two steps of a replacement or of a
//! hook delivery and check what a restart makes of it.
//!
//! `DDS_CERTSYNC_HANG_AT=name[:n]` instead blocks the thread that reaches the
//! point for good, like a system call that never returns (a FIFO, a hung
//! network file system): the tests use it to prove that `--deadline` and
//! SIGTERM do not wait for such a thread. `DDS_CERTSYNC_PANIC_AT=name[:n]`
//! panics there, for the tests of panic handling.
//!
//! `DDS_CERTSYNC_PAUSE_AT=name:ms[,name:ms...]` makes the thread sleep `ms`
//! milliseconds at each named point: a slow disk, which widens the window
//! between two steps so that the SIGKILL torture test lands in it often
//! enough to assert that it did.
//!
//! The failpoint's own message goes through the log queue, never straight to
//! stderr. In release builds [`hit`] is an empty function and the variables
//! are ignored.
//!
//! The points, in the order a change passes them:
//!
//! | name | where |
//! |---|---|
//! | `ledger-before-store` | before the hook record is written |
//! | `before-rename` | certificate temp file written, fsynced and chmodded, not yet renamed (on the blocking pool) |
//! | `after-rename` | certificate renamed, directory not yet fsynced |
//! | `before-hook` | files in place and recorded, hook not yet started |
//! | `after-hook` | hook exited 0, its record not yet cleared |

/// What a failpoint does when its variable names it.
#[cfg(debug_assertions)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Crash,
    Hang,
    Panic,
}

/// Aborts, hangs or panics if `DDS_CERTSYNC_CRASH_AT`, `_HANG_AT` or
/// `_PANIC_AT` names this point (debug builds only).
#[cfg(debug_assertions)]
pub fn hit(name: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    const VARS: [(&str, Action); 3] = [
        ("DDS_CERTSYNC_CRASH_AT", Action::Crash),
        ("DDS_CERTSYNC_HANG_AT", Action::Hang),
        ("DDS_CERTSYNC_PANIC_AT", Action::Panic),
    ];
    static SPECS: OnceLock<Vec<(Action, String, u64, AtomicU64)>> = OnceLock::new();
    static PAUSES: OnceLock<Vec<(String, u64)>> = OnceLock::new();
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
    let specs = SPECS.get_or_init(|| {
        VARS.iter()
            .filter_map(|(var, action)| {
                let (point, nth) = parse(&std::env::var(var).ok()?);
                Some((*action, point, nth, AtomicU64::new(0)))
            })
            .collect()
    });
    for (action, point, nth, count) in specs {
        if point != name || count.fetch_add(1, Ordering::SeqCst) + 1 < *nth {
            continue;
        }
        // Through the log queue: a stalled stderr must not keep the point
        // from doing what it says.
        match action {
            Action::Crash => {
                crate::logging::print_line(&format!("failpoint {name}: aborting"));
                crate::logging::flush(std::time::Duration::from_secs(1));
                std::process::abort();
            }
            Action::Hang => {
                crate::logging::print_line(&format!("failpoint {name}: hanging"));
                loop {
                    std::thread::park();
                }
            }
            Action::Panic => panic!("failpoint {name}: panicking"),
        }
    }
}

/// `name[:n]` as (name, n); `n` is 1 when absent or unreadable. Pure.
#[cfg(debug_assertions)]
fn parse(spec: &str) -> (String, u64) {
    match spec.split_once(':') {
        Some((n, k)) => (n.to_string(), k.parse().unwrap_or(1)),
        None => (spec.to_string(), 1),
    }
}

/// Release builds: nothing.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_name: &str) {}
