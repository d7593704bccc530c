//! Disk and permission faults, made real although the tests run as root: a
//! full tmpfs (ENOSPC), a read-only remount, the daemon run as `nobody`
//! (EACCES), a parent that is a file, and a single-file bind mount (EBUSY).
//! Each leaves the old file byte for byte and no temp file, reports an error
//! naming the path, exits 1 in `--once`, and is retried by the daemon, which
//! recovers once the fault is gone. Where mounting or dropping privileges is
//! not possible the test calls [`skip`]: a failure in CI and as root, and
//! elsewhere too unless skips are allowed (docs/testing.md, "Skips").

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;

const LIMIT: Duration = WAIT;
const ID: &str = "inst-a";

/// A mount, lazily unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn run(args: &[&str]) -> Result<(), String> {
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

    fn tmpfs(at: &Path, size: &str) -> Result<Mount, String> {
        fs::create_dir_all(at).unwrap();
        Mount::run(&[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0755"),
            "tmpfs",
            &at.display().to_string(),
        ])?;
        Ok(Mount(at.to_path_buf()))
    }

    fn bind(src: &Path, at: &Path) -> Result<Mount, String> {
        Mount::run(&[
            "--bind",
            &src.display().to_string(),
            &at.display().to_string(),
        ])?;
        Ok(Mount(at.to_path_buf()))
    }

    fn remount(&self, opts: &str) {
        Mount::run(&[
            "-o",
            &format!("remount,{opts}"),
            &self.0.display().to_string(),
        ])
        .unwrap_or_else(|e| panic!("remount {opts}: {e}"));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn env() -> Env {
    let mut env = Env::new();
    env.instance(ID);
    env.sync
        .push_str("interval = \"1h\"\njitter = \"0s\"\nmax_backoff = \"1s\"\n");
    env
}

fn files(env: &Env) -> Vec<Vec<u8>> {
    env.outputs(ID)
}

fn served(env: &Env) -> Vec<Vec<u8>> {
    env.served_all(ID)
}

/// After the first good sync: the certificates change upstream, the fault
/// is in place, and `--once` must fail cleanly.
fn once_refuses(env: &Env, run: Run, before: &[Vec<u8>], needles: &[&str]) {
    run.assert_code(1);
    assert!(
        run.stdout.contains(&format!("FAILED name-{ID} ({ID})")),
        "{}",
        run.all()
    );
    for n in needles {
        assert!(run.all().contains(n), "expected {n:?} in\n{}", run.all());
    }
    assert_eq!(files(env), before, "the old files must stay byte for byte");
    let names: Vec<String> = ls(&env.path("out"))
        .into_iter()
        .filter(|n| n.contains(".dds-certsync-"))
        .collect();
    assert!(names.is_empty(), "temp files left: {names:?}");
    assert_eq!(
        env.hook_runs(ID).len(),
        1,
        "no hook for a change that did not happen"
    );
}

/// The daemon meets the fault, logs it at least twice (it retries), and
/// picks up the change once `fix` removed the fault.
fn daemon_retries_then_recovers(env: &Env, d: Daemon, needle: &str, fix: impl FnOnce()) {
    d.wait_log(needle, 2, LIMIT);
    fix();
    let ok = wait_until(LIMIT, || {
        files(env) == served(env) && env.hook_runs(ID).len() == 2
    });
    assert!(ok, "the daemon did not recover\n{}", d.log());
}

fn rotate_both(env: &Env) {
    env.standin.rotate(ID, "international");
    env.standin.rotate(ID, "national");
}

#[test]
fn a_full_disk_keeps_the_old_file_and_is_retried() {
    let env = env();
    let out = env.path("out");
    let _m = match Mount::tmpfs(&out, "64k") {
        Ok(m) => m,
        Err(e) => return skip("a_full_disk_keeps_the_old_file_and_is_retried", &e),
    };
    env.once(&[]).assert_code(0);
    let before = files(&env);
    // Fill the tmpfs to the last byte.
    let filler = out.join("filler");
    let mut f = fs::File::create(&filler).unwrap();
    while f.write_all(&[0u8; 1024]).is_ok() {}
    while f.write_all(&[0u8; 1]).is_ok() {}
    drop(f);
    rotate_both(&env);
    let path = env.out(ID, "international").display().to_string();
    once_refuses(
        &env,
        env.once(&[]),
        &before,
        &["No space left on device", &path],
    );

    let d = env.daemon(&[]);
    daemon_retries_then_recovers(&env, d, "No space left on device", || {
        fs::remove_file(&filler).unwrap()
    });
}

#[test]
fn a_read_only_directory_keeps_the_old_file_and_is_retried() {
    let env = env();
    let m = match Mount::tmpfs(&env.path("out"), "1m") {
        Ok(m) => m,
        Err(e) => {
            return skip(
                "a_read_only_directory_keeps_the_old_file_and_is_retried",
                &e,
            );
        }
    };
    env.once(&[]).assert_code(0);
    let before = files(&env);
    m.remount("ro");
    rotate_both(&env);
    let path = env.out(ID, "national").display().to_string();
    once_refuses(
        &env,
        env.once(&[]),
        &before,
        &["Read-only file system", &path],
    );

    let d = env.daemon(&[]);
    daemon_retries_then_recovers(&env, d, "Read-only file system", || m.remount("rw"));
}

#[test]
fn a_permission_error_keeps_the_old_file_and_is_retried() {
    const TEST: &str = "a_permission_error_keeps_the_old_file_and_is_retried";
    let env = env();
    env.once(&[]).assert_code(0);
    let before = files(&env);
    // Let `nobody` reach the config, the CA, its state and hook dirs, but
    // not write the output directory.
    let chown = |p: &Path| {
        nix::unistd::chown(p, Some(65534.into()), Some(65534.into())).unwrap();
    };
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&env.ca, fs::Permissions::from_mode(0o644)).unwrap();
    for d in ["state", "hook"] {
        fs::create_dir_all(env.path(d)).unwrap();
        chown(&env.path(d));
    }
    for e in fs::read_dir(env.path("hook")).unwrap() {
        chown(&e.unwrap().path());
    }
    env.write_config();
    if let Err(e) = can_drop_privileges() {
        return skip(TEST, &e);
    }
    // Privileges can be dropped, so a failing start-up as `nobody` is a
    // regression for non-root users, not a reason to skip.
    Run::from(env.command_as_nobody(&["--check"]).output().unwrap()).assert_code(0);
    rotate_both(&env);
    let run = Run::from(env.command_as_nobody(&["--once"]).output().unwrap());
    let path = env.out(ID, "international").display().to_string();
    once_refuses(&env, run, &before, &["Permission denied", &path]);

    let d = env.spawn(env.command_as_nobody(&[]));
    daemon_retries_then_recovers(&env, d, "Permission denied", || {
        // The directory and the old files become nobody's (a file that
        // stays root's could not keep its owner: see the next assertion).
        chown(&env.path("out"));
        chown(&env.out(ID, "international"));
        chown(&env.out(ID, "national"));
    });
}

#[test]
fn an_owner_that_cannot_be_kept_is_explained() {
    let env = env();
    env.once(&[]).assert_code(0);
    let before = files(&env);
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&env.ca, fs::Permissions::from_mode(0o644)).unwrap();
    for d in ["state", "hook", "out"] {
        fs::create_dir_all(env.path(d)).unwrap();
        nix::unistd::chown(&env.path(d), Some(65534.into()), Some(65534.into())).unwrap();
    }
    env.write_config();
    rotate_both(&env);
    if let Err(e) = can_drop_privileges() {
        return skip("an_owner_that_cannot_be_kept_is_explained", &e);
    }
    let run = Run::from(env.command_as_nobody(&["--once"]).output().unwrap());
    once_refuses(&env, run, &before, &["set owner", "CAP_CHOWN"]);
}

#[test]
fn a_parent_that_is_a_file_is_named_and_retried() {
    let mut env = Env::new();
    env.standin.add_instance(PROJECT, ID);
    env.sync
        .push_str("interval = \"1h\"\njitter = \"0s\"\nmax_backoff = \"1s\"\n");
    env.raw_instance(&format!(
        "id = \"{ID}\"\ninternational = \"out/blocker/ca.crt\"\non_change = [\"/bin/sh\", \"{}\"]",
        env.record_hook().display()
    ));
    fs::create_dir_all(env.path("out")).unwrap();
    fs::write(env.path("out/blocker"), "a file, not a directory").unwrap();
    let run = env.once(&[]);
    run.assert_code(1);
    let target = env.path("out/blocker/ca.crt").display().to_string();
    assert!(run.all().contains(&target), "{}", run.all());
    assert!(run.all().contains("Not a directory"), "{}", run.all());
    assert_eq!(ls(&env.path("out")), vec!["blocker"]);
    assert!(env.hook_runs(ID).is_empty());

    let d = env.daemon(&[]);
    d.wait_log("Not a directory", 2, LIMIT);
    fs::remove_file(env.path("out/blocker")).unwrap();
    let ok = wait_until(LIMIT, || {
        fs::read(env.path("out/blocker/ca.crt")).ok() == Some(env.served(ID, "international"))
            && env.hook_runs(ID).len() == 1
    });
    assert!(ok, "{}", d.log());
}

#[test]
fn a_single_file_bind_mount_explains_the_fix() {
    let env = env();
    env.once(&[]).assert_code(0);
    let before = files(&env);
    let target = env.out(ID, "international");
    let src = env.path("bound-source.crt");
    fs::copy(&target, &src).unwrap();
    let m = match Mount::bind(&src, &target) {
        Ok(m) => m,
        Err(e) => return skip("a_single_file_bind_mount_explains_the_fix", &e),
    };
    rotate_both(&env);
    let run = env.once(&[]);
    run.assert_code(1);
    assert!(
        run.all().contains("single-file bind mount")
            && run.all().contains("mount the whole directory instead"),
        "{}",
        run.all()
    );
    assert!(
        run.all().contains(&target.display().to_string()),
        "{}",
        run.all()
    );
    assert_eq!(fs::read(&target).unwrap(), before[0]);
    // The other category is not blocked by it.
    assert_eq!(
        fs::read(env.out(ID, "national")).unwrap(),
        env.served(ID, "national")
    );
    assert!(
        !ls(&env.path("out"))
            .iter()
            .any(|n| n.contains(".dds-certsync-")),
        "temp file left"
    );

    let d = env.daemon(&[]);
    d.wait_log("mount the whole directory instead", 2, LIMIT);
    drop(m);
    let ok = wait_until(LIMIT, || {
        fs::read(&target).ok() == Some(env.served(ID, "international"))
            && env.hook_runs(ID).len() == 3
    });
    assert!(ok, "{}", d.log());
}
