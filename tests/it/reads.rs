//! Each output is read once per round, counted on the binary users run:
//! every look at an output path opens it (`readfile` opens with `O_PATH`
//! first, even to find that nothing is there), so the `openat` calls on the
//! path under `strace` count the reads. Checked for one `--once` round and
//! for the daemon's rounds: the first (which creates the files and runs the
//! hook), one that finds them current, and one that replaces them (hook,
//! healing's look after the round, the watcher's events of our own renames).
//!
//! Needs `strace` (`.ci/run` installs it); without it the test fails under
//! `CI=true` and is skipped with a message elsewhere.

use std::fs;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::*;

/// How long after a round its follow-ups (the check after the round, the
/// events of its own renames) are given to happen.
const SETTLE: Duration = Duration::from_secs(2);

/// Per output of `inst-a` (international, national): how many `openat`
/// calls in `trace` name it.
fn opens(trace: &str) -> [usize; 2] {
    CATEGORIES.map(|c| {
        let needle = format!("/out/inst-a-{c}.crt\"");
        trace
            .lines()
            .filter(|l| l.contains("openat(") && l.contains(&needle))
            .count()
    })
}

fn strace(trace: &std::path::Path) -> Command {
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-e", "trace=openat,open", "-o"])
        .arg(trace)
        .arg(BIN);
    c
}

#[test]
fn a_once_round_reads_each_output_once() {
    if !strace_available("reads::a_once_round_reads_each_output_once") {
        return;
    }
    let mut env = Env::new();
    env.instance("inst-a");
    env.once(&[]).assert_code(0);
    env.standin.rotate("inst-a", "international");
    for (round, what) in [(1, "replaces one file"), (2, "finds both current")] {
        let trace = env.path(&format!("once-{round}.trace"));
        let out = strace(&trace)
            .arg("--config")
            .arg(env.path("config.toml"))
            .arg("--once")
            .env_remove("RUST_LOG")
            .current_dir(env.dir.path())
            .output()
            .unwrap();
        let run = Run::from(out);
        run.assert_code(0);
        let text = fs::read_to_string(&trace).unwrap();
        assert_eq!(
            opens(&text),
            [1, 1],
            "a --once round that {what}: reads per output\n{}",
            run.all()
        );
    }
}

#[test]
fn a_daemon_round_reads_each_output_once() {
    if !strace_available("reads::a_daemon_round_reads_each_output_once") {
        return;
    }
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1h\"\n");
    let trace = env.path("daemon.trace");
    let d = env.daemon_under_strace(&[
        "-f".as_ref(),
        "-qq".as_ref(),
        "-e".as_ref(),
        "trace=openat,open".as_ref(),
        "-o".as_ref(),
        trace.as_os_str(),
    ]);
    // Signals go to the daemon, strace's child, not to strace.
    let tracer = d.child.id();
    let mut daemon = None;
    assert!(
        wait_until(WAIT, || {
            // strace forks short-lived children of its own first.
            daemon = fs::read_to_string(format!("/proc/{tracer}/task/{tracer}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|pid| pid.parse::<i32>().ok())
                .find(|pid| {
                    fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "dds-certsync")
                });
            daemon.is_some()
        }),
        "strace started no daemon"
    );
    let hup = || {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.unwrap()), Signal::SIGHUP)
            .unwrap_or_else(|e| panic!("SIGHUP to {daemon:?}: {e}\n{}", d.log()))
    };
    let count = || opens(&fs::read_to_string(&trace).unwrap_or_default());
    let settled = |before: [usize; 2]| {
        std::thread::sleep(SETTLE);
        let now = count();
        [now[0] - before[0], now[1] - before[1]]
    };

    // The first round: both files created, the hook run, READY.
    env.wait_hook_runs(&d, "inst-a", 1);
    d.wait_log("ready", 1, WAIT);
    let first = settled([0, 0]);

    // A round that finds both files current (SIGHUP syncs every instance).
    let before = count();
    hup();
    d.wait_log("unchanged", 2, WAIT);
    let unchanged = settled(before);

    // A round that replaces both, runs the hook, and sees its own renames.
    env.standin.rotate("inst-a", "international");
    env.standin.rotate("inst-a", "national");
    let before = count();
    hup();
    env.wait_hook_runs(&d, "inst-a", 2);
    let replaced = settled(before);

    assert_eq!(
        (first, unchanged, replaced),
        ([1, 1], [1, 1], [1, 1]),
        "reads per output (international, national) in the first round, a round with nothing to do, a round that replaces both\n{}",
        d.log()
    );
}
