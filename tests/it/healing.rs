//! Self-healing end to end, on the real daemon: a restore that fails (a
//! read-only directory) is logged with the path and done once the fault is
//! gone; a deletion during a round is left to the round, never answered with
//! stale bytes; without file watching the periodic sweep restores; a deleted
//! directory is recreated; a restored file gets its old owner and mode back;
//! a path that became a directory or a FIFO is named, not followed, and does
//! not stall the daemon.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(30);
/// The daemon's periodic sweep is every 30 s; allow for a loaded machine.
const SWEEP_LIMIT: Duration = Duration::from_secs(75);

/// A daemon with one instance, hourly rounds, after its first round.
fn started(env: &mut Env) -> Daemon {
    env.instance("inst-a");
    env.sync.push_str("interval = \"1h\"\n");
    let d = env.daemon(&[]);
    assert!(
        wait_until(LIMIT, || env.hook_runs("inst-a").len() == 1),
        "{}",
        d.log()
    );
    // The check after the first round (which captures owner and mode) is done.
    d.wait_log("ready", 1, LIMIT);
    std::thread::sleep(Duration::from_millis(500));
    d
}

fn mount(args: &[&str]) -> Result<(), String> {
    let out = Command::new("mount")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Mount points, lazily unmounted (last first) on drop.
struct Mounts(Vec<PathBuf>);

impl Drop for Mounts {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
    }
}

#[test]
fn a_failed_restore_names_the_path_and_is_done_once_the_fault_is_gone() {
    let mut env = Env::new();
    let d = started(&mut env);
    let out = env.path("out");
    let rw = env.path("rw");
    fs::create_dir(&rw).unwrap();
    // `rw` is a writable view of the output directory; `out` itself is
    // made read-only, so the daemon sees the deletion and cannot undo it.
    let mut mounts = Mounts(Vec::new());
    let s = |p: &Path| p.display().to_string();
    if let Err(e) = mount(&["--bind", &s(&out), &s(&rw)]) {
        return skip("a_failed_restore…", &format!("cannot bind mount: {e}"));
    }
    mounts.0.push(rw.clone());
    mount(&["--bind", &s(&out), &s(&out)]).unwrap();
    mounts.0.push(out.clone());
    mount(&["-o", "remount,ro,bind", &s(&out)]).unwrap();

    let natl = env.out("inst-a", "national");
    let good = fs::read(&natl).unwrap();
    fs::remove_file(rw.join("inst-a-national.crt")).unwrap();
    d.wait_log("and restoring it failed", 1, LIMIT);
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("and restoring it failed"))
        .unwrap();
    assert!(line.contains(&natl.display().to_string()), "{line}");
    assert!(line.contains("Read-only file system"), "{line}");
    assert!(!natl.exists());

    // The fault goes; the next check (the sweep at the latest) restores.
    drop(mounts);
    assert!(
        wait_until(SWEEP_LIMIT, || fs::read(&natl).ok().as_ref() == Some(&good)),
        "not restored after the fault went\n{}",
        d.log()
    );
    d.wait_log("restored: the file was deleted", 1, LIMIT);
}

#[test]
fn a_deletion_during_a_round_is_left_to_the_round_never_restored_with_stale_bytes() {
    let mut env = Env::new();
    let d = started(&mut env);
    let intl = env.out("inst-a", "international");
    // A rotation, and a round that takes a while to get its links.
    env.standin.rotate("inst-a", "international");
    let new = env.served("inst-a", "international");
    env.standin
        .push_fault(FaultRule::once(Fault::ApiDelay(Duration::from_secs(2))));
    let calls = env.standin.requests().len();
    d.signal(Signal::SIGHUP);
    assert!(wait_until(LIMIT, || env.standin.requests().len() > calls));
    // The round is waiting on the API: delete the file under it.
    fs::remove_file(&intl).unwrap();
    // Watch the file until the round has written and a while after: it may
    // be missing, then it is the new certificate; never the held old one.
    let t = Instant::now();
    let mut seen_new = false;
    while t.elapsed() < Duration::from_secs(8) {
        if let Ok(b) = fs::read(&intl) {
            assert_eq!(
                b,
                new,
                "the old certificate was restored during the round\n{}",
                d.log()
            );
            seen_new = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(seen_new, "{}", d.log());
    assert!(!d.log().contains("restored:"), "{}", d.log());
    assert_eq!(env.hook_runs("inst-a").len(), 2, "{}", d.log());
}

#[test]
fn without_file_watching_the_sweep_restores_a_deleted_output() {
    // File watching cannot be switched off by configuration; inotify is
    // made to fail at the system call with strace's fault injection.
    if !strace_available("healing::without_file_watching_the_sweep_restores_a_deleted_output") {
        return;
    }
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1h\"\n");
    let d = env.daemon_under_strace(
        &[
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=inotify_init,inotify_init1",
            "-e",
            "inject=inotify_init,inotify_init1:error=EMFILE",
        ]
        .map(OsStr::new),
    );
    assert!(
        wait_until(LIMIT, || env.hook_runs("inst-a").len() == 1),
        "{}",
        d.log()
    );
    assert!(d.log().contains("cannot watch files"), "{}", d.log());
    // Past the check that follows the first round, so only the sweep is left.
    d.wait_log("ready", 1, LIMIT);
    std::thread::sleep(Duration::from_secs(1));
    let natl = env.out("inst-a", "national");
    let good = fs::read(&natl).unwrap();
    let t = Instant::now();
    fs::remove_file(&natl).unwrap();
    assert!(
        wait_until(SWEEP_LIMIT, || fs::read(&natl).ok().as_ref() == Some(&good)),
        "the sweep did not restore the file\n{}",
        d.log()
    );
    eprintln!("restored by the sweep after {:?}", t.elapsed());
    d.wait_log("restored: the file was deleted", 1, LIMIT);
    drop(d);
}

#[test]
fn a_deleted_output_directory_is_recreated_and_watched_again() {
    let mut env = Env::new();
    let d = started(&mut env);
    let want = [
        fs::read(env.out("inst-a", "international")).unwrap(),
        fs::read(env.out("inst-a", "national")).unwrap(),
    ];
    let paths = [
        env.out("inst-a", "international"),
        env.out("inst-a", "national"),
    ];
    // Gone at once (a restore cannot race a file-by-file removal), then deleted.
    fs::rename(env.path("out"), env.path("gone")).unwrap();
    fs::remove_dir_all(env.path("gone")).unwrap();
    assert!(
        wait_until(SWEEP_LIMIT, || paths
            .iter()
            .zip(&want)
            .all(|(p, w)| fs::read(p).ok().as_ref() == Some(w))),
        "the directory was not recreated\n{}",
        d.log()
    );
    // The new directory is watched: a deletion in it is restored at once,
    // not at the next sweep.
    let before = d.log().matches("restored:").count();
    std::thread::sleep(Duration::from_millis(500));
    fs::remove_file(&paths[1]).unwrap();
    let t = Instant::now();
    assert!(
        wait_until(SWEEP_LIMIT, || fs::read(&paths[1]).ok().as_ref()
            == Some(&want[1])),
        "{}",
        d.log()
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "restored only after {:?}: the recreated directory is not watched\n{}",
        t.elapsed(),
        d.log()
    );
    d.wait_log("restored:", before + 1, LIMIT);
}

#[test]
fn a_restored_output_gets_its_owner_and_mode_back() {
    let mut env = Env::new();
    // Files an administrator set up before the daemon: another owner, 0640.
    fs::create_dir_all(env.path("out")).unwrap();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1h\"\n");
    for cat in ["international", "national"] {
        let p = env.out("inst-a", cat);
        fs::write(&p, b"placeholder").unwrap();
        std::os::unix::fs::chown(&p, Some(4242), Some(4343)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
    }
    let d = env.daemon(&[]);
    assert!(
        wait_until(LIMIT, || env.hook_runs("inst-a").len() == 1),
        "{}",
        d.log()
    );
    d.wait_log("ready", 1, LIMIT);
    std::thread::sleep(Duration::from_millis(500));
    let natl = env.out("inst-a", "national");
    let m = fs::metadata(&natl).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (4242, 4343, 0o640));
    let good = fs::read(&natl).unwrap();

    fs::remove_file(&natl).unwrap();
    assert!(
        wait_until(LIMIT, || fs::read(&natl).ok().as_ref() == Some(&good)),
        "{}",
        d.log()
    );
    let m = fs::metadata(&natl).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777),
        (4242, 4343, 0o640),
        "the restored file did not get its owner and mode back"
    );
}

/// Replaces an output by something that is not a regular file; the daemon
/// names the path and leaves it alone, stays responsive (the other output is
/// still restored), and restores once a file can be written again.
fn not_a_file(make: impl FnOnce(&Path)) {
    let mut env = Env::new();
    let d = started(&mut env);
    let natl = env.out("inst-a", "national");
    let intl = env.out("inst-a", "international");
    let good = fs::read(&natl).unwrap();
    let good_intl = fs::read(&intl).unwrap();
    make(&natl);
    d.wait_log("cannot read the output to check it", 1, LIMIT);
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("cannot read the output to check it"))
        .unwrap();
    assert!(line.contains(&natl.display().to_string()), "{line}");
    // Not stalled: a deletion of the other output is still restored.
    fs::remove_file(&intl).unwrap();
    assert!(
        wait_until(LIMIT, || fs::read(&intl).ok().as_ref() == Some(&good_intl)),
        "the daemon stalled\n{}",
        d.log()
    );
    // Once the thing is gone, the file comes back (at the latest by the sweep).
    if natl.is_dir() {
        fs::remove_dir(&natl).unwrap();
    } else {
        fs::remove_file(&natl).unwrap();
    }
    assert!(
        wait_until(SWEEP_LIMIT, || fs::read(&natl).ok().as_ref() == Some(&good)),
        "{}",
        d.log()
    );
}

#[test]
fn an_output_that_became_a_directory_is_named_and_left_alone() {
    not_a_file(|p| {
        fs::remove_file(p).unwrap();
        fs::create_dir(p).unwrap();
    });
}

#[test]
fn an_output_that_became_a_fifo_is_named_and_does_not_stall_the_daemon() {
    not_a_file(|p| {
        let tmp = p.with_extension("fifo-tmp");
        nix::unistd::mkfifo(&tmp, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        fs::rename(&tmp, p).unwrap();
    });
}
