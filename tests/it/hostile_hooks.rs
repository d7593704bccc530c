//! Hooks next to hostile neighbours: a hook never sees the daemon's
//! credentials, a signal never goes to init or to another user's process
//! unless the config says so, a hook's output cannot kill it or swell the
//! daemon, and retries follow the config as it is now.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(30);

/// The binary with none of the test's own `HUAWEICLOUD_SDK_*`, plus `vars`.
fn once_with(env: &Env, vars: &[(&str, &str)]) -> Run {
    env.write_config();
    let mut c = env.command(&["--once"]);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HUAWEICLOUD_SDK_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", env.dir.path()).envs(vars.iter().copied());
    Run::from(c.output().expect("run binary"))
}

/// Writes the config through a temp file and a rename, as an editor or a
/// config manager does, then tells the daemon with SIGHUP.
fn reload(env: &Env, daemon: &Daemon) {
    let tmp = env.path("config.toml.tmp");
    fs::write(&tmp, env.config_text()).unwrap();
    fs::rename(&tmp, env.path("config.toml")).unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
}

fn lines(p: &Path) -> usize {
    fs::read_to_string(p).unwrap_or_default().lines().count()
}

/// The peak resident memory of a process, in kB.
fn vm_hwm_kb(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// An instance, new to the stand-in, whose hook runs `script` with
/// `/bin/sh -c`.
fn sh_instance(env: &mut Env, id: &str, script: &str) {
    env.standin.add_instance(PROJECT, id);
    sh_config(env, id, script);
}

/// The config block of an instance whose hook runs `script` with `/bin/sh -c`
/// (the stand-in keeps serving the same certificate).
fn sh_config(env: &mut Env, id: &str, script: &str) {
    env.raw_instance(&format!(
        "id = \"{id}\"\ninternational = \"out/{id}.crt\"\non_change = [\"/bin/sh\", \"-c\", {script:?}]\nhook_timeout = \"20s\""
    ));
}

/// An instance whose hook appends to `runs-{id}` and then fails.
fn failing_instance(env: &mut Env, id: &str) -> PathBuf {
    let runs = env.path(&format!("runs-{id}"));
    sh_instance(env, id, &format!("echo run >> {}; exit 7", runs.display()));
    runs
}

#[test]
fn a_removed_instances_hook_is_not_retried_but_stays_owed_if_it_returns() {
    let mut env = Env::new();
    env.sync = "max_backoff = \"1s\"\n".into();
    env.instance("inst-keep");
    let runs = failing_instance(&mut env, "inst-gone");
    let daemon = env.daemon(&[]);
    assert!(
        wait_until(LIMIT, || lines(&runs) >= 2),
        "the failing hook was not retried\n{}",
        daemon.log()
    );

    // Removed: its retries stop.
    env.instances.pop();
    reload(&env, &daemon);
    daemon.wait_log("config reloaded", 1, LIMIT);
    let after_reload = lines(&runs);
    std::thread::sleep(Duration::from_secs(4)); // 4+ retries at a 1 s cap
    // One run may have been under way at the reload; none may follow.
    assert!(
        lines(&runs) <= after_reload + 1,
        "a removed instance's hook was still retried ({} runs, {after_reload} at the reload)\n{}",
        lines(&runs),
        daemon.log()
    );
    let record = env.path("state/hook-owed-inst-gone.json");
    assert!(record.exists(), "the record must stay in state_dir");

    // Back, with a hook that works, and no new certificate: it still owes
    // its hook.
    let fixed = env.path("fixed-ran");
    sh_config(
        &mut env,
        "inst-gone",
        &format!("echo \"$DDS_CERTSYNC_CHANGED\" >> {}", fixed.display()),
    );
    reload(&env, &daemon);
    assert!(
        wait_until(LIMIT, || lines(&fixed) >= 1),
        "the re-added instance's owed hook never ran\n{}",
        daemon.log()
    );
    assert!(wait_until(LIMIT, || !record.exists()));
    assert!(
        fs::read_to_string(&fixed)
            .unwrap()
            .contains("inst-gone.crt")
    );
}

#[test]
fn a_corrected_hook_is_used_by_the_next_retry() {
    let mut env = Env::new();
    env.sync = "max_backoff = \"2s\"\n".into();
    let runs = failing_instance(&mut env, "inst-a");
    let daemon = env.daemon(&[]);
    assert!(
        wait_until(LIMIT, || lines(&runs) >= 2),
        "the failing hook was not retried\n{}",
        daemon.log()
    );

    let fixed = env.path("fixed-ran");
    env.instances.clear();
    sh_config(
        &mut env,
        "inst-a",
        &format!("echo \"$DDS_CERTSYNC_CHANGED\" >> {}", fixed.display()),
    );
    reload(&env, &daemon);
    assert!(
        wait_until(LIMIT, || lines(&fixed) >= 1),
        "the corrected hook never ran\n{}",
        daemon.log()
    );
    assert!(wait_until(LIMIT, || !env
        .path("state/hook-owed-inst-a.json")
        .exists()));
    let old_runs = lines(&runs);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(lines(&runs), old_runs, "the old hook ran after the fix");
    assert_eq!(
        lines(&fixed),
        1,
        "the corrected hook ran more than once\n{}",
        daemon.log()
    );
}

#[test]
fn hooks_never_see_the_daemons_credentials() {
    // The official SDK variables, and variables named by *_env keys.
    let mut env = Env::new();
    let (ak, sk, token) = env.standin.issue_temporary(Duration::from_secs(3600));
    let seen = env.path("hook-env");
    sh_instance(
        &mut env,
        "inst-a",
        &format!("env; env > {}", seen.display()),
    );
    env.auth = "method = \"aksk\"\n".into();
    let run = once_with(
        &env,
        &[
            ("HUAWEICLOUD_SDK_AK", &ak),
            ("HUAWEICLOUD_SDK_SK", &sk),
            ("HUAWEICLOUD_SDK_SECURITY_TOKEN", &token),
            ("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT),
        ],
    );
    run.assert_code(0);
    let hook_env = fs::read_to_string(&seen).unwrap();
    assert!(
        hook_env.contains("DDS_CERTSYNC_INSTANCE_ID=inst-a") && hook_env.contains("PATH="),
        "the hook did not get its own environment:\n{hook_env}"
    );
    for (what, value) in [("AK", &ak), ("SK", &sk), ("security token", &token)] {
        assert!(
            !hook_env.contains(value.as_str()),
            "the hook saw the {what}:\n{hook_env}"
        );
        assert!(
            !run.all().contains(value.as_str()),
            "the daemon's log holds the {what}:\n{}",
            run.all()
        );
    }
    assert!(!hook_env.contains("HUAWEICLOUD_SDK_"), "{hook_env}");

    // Keys in variables of the config's choosing.
    let mut env = Env::new();
    let (ak, sk, token) = env.standin.issue_temporary(Duration::from_secs(3600));
    let seen = env.path("hook-env");
    sh_instance(
        &mut env,
        "inst-b",
        &format!("env; env > {}", seen.display()),
    );
    env.auth = "method = \"aksk\"\naccess_key_env = \"APP_AK\"\nsecret_key_env = \"APP_SK\"\nsecurity_token_env = \"APP_TOKEN\"\n".into();
    let run = once_with(
        &env,
        &[
            ("APP_AK", &ak),
            ("APP_SK", &sk),
            ("APP_TOKEN", &token),
            ("APP_UNRELATED", "still-passed-on"),
        ],
    );
    run.assert_code(0);
    let hook_env = fs::read_to_string(&seen).unwrap();
    assert!(
        hook_env.contains("APP_UNRELATED=still-passed-on"),
        "{hook_env}"
    );
    for (what, value) in [("AK", &ak), ("SK", &sk), ("security token", &token)] {
        assert!(
            !hook_env.contains(value.as_str()),
            "the hook saw the {what}:\n{hook_env}"
        );
        assert!(
            !run.all().contains(value.as_str()),
            "the daemon's log holds the {what}:\n{}",
            run.all()
        );
    }
}

fn signal_instance(env: &mut Env, signal: &str, pidfile: &Path, extra: &str) {
    env.instances.clear();
    env.raw_instance(&format!(
        "id = \"inst-a\"\ninternational = \"out/a.crt\"\nreload_signal = \"{signal}\"\npidfile = \"{}\"\n{extra}",
        pidfile.display()
    ));
}

#[test]
fn a_pidfile_naming_init_or_no_process_is_refused_and_kept_owed() {
    let mut env = Env::new();
    env.standin.add_instance(PROJECT, "inst-a");
    let pidfile = env.path("app.pid");
    // SIGWINCH: were the rule ever broken, init would ignore it.
    signal_instance(
        &mut env,
        "SIGWINCH",
        &pidfile,
        "reload_signal_any_owner = true",
    );
    for (content, reason) in [
        ("1\n", "refusing to signal PID 1"),
        ("0\n", "\"0\" is not a process ID"),
    ] {
        fs::write(&pidfile, content).unwrap();
        let run = env.once(&[]);
        run.assert_code(1);
        let all = run.all();
        assert!(all.contains(reason), "{content:?}: {all}");
        assert!(
            all.contains(&pidfile.display().to_string()),
            "{content:?}: {all}"
        );
        assert!(
            env.path("state/hook-owed-inst-a.json").exists(),
            "{content:?}: the hook must stay owed"
        );
    }
}

/// `sleep 60` run as `nobody` (uid 65534); `None` when this test process
/// cannot change users.
fn sleep_as_nobody() -> Option<Child> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let child = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "sleep",
            "60",
        ])
        .stdin(Stdio::null())
        .spawn()
        .ok()?;
    // setpriv execs sleep: the PID is the sleeper's once its uid changed.
    let pid = child.id();
    let switched = wait_until(LIMIT, || {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .is_ok_and(|s| s.contains("Uid:\t65534\t") && s.contains("Name:\tsleep"))
    });
    assert!(switched, "setpriv did not become sleep as uid 65534");
    Some(child)
}

/// Whether `child` was ended by SIGHUP within the limit.
fn hung_up(child: &mut Child) -> bool {
    let mut status = None;
    wait_until(LIMIT, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.and_then(|s| s.signal()) == Some(nix::libc::SIGHUP)
}

#[test]
fn reload_signal_reaches_only_a_process_of_the_pidfiles_owner_unless_allowed() {
    let Some(mut other) = sleep_as_nobody() else {
        return skip(
            "hostile_hooks::reload_signal_reaches_only_a_process_of_the_pidfiles_owner_unless_allowed",
            "cannot run a process as another user (not root)",
        );
    };
    let mut env = Env::new();
    env.standin.add_instance(PROJECT, "inst-a");
    let pidfile: PathBuf = env.path("app.pid");
    signal_instance(&mut env, "SIGHUP", &pidfile, "");
    // A root-owned pidfile naming nobody's process: refused, kept owed.
    fs::write(&pidfile, format!("{}\n", other.id())).unwrap();
    let run = env.once(&[]);
    run.assert_code(1);
    let all = run.all();
    for needle in [
        pidfile.display().to_string(),
        format!("refusing to signal process {}", other.id()),
        "uid 65534".to_string(),
        "reload_signal_any_owner".to_string(),
    ] {
        assert!(all.contains(&needle), "missing {needle:?}: {all}");
    }
    assert!(
        other.try_wait().unwrap().is_none(),
        "the process was signalled"
    );
    assert!(env.path("state/hook-owed-inst-a.json").exists());

    // The pidfile now belongs to the process's user: delivered.
    nix::unistd::chown(&pidfile, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    env.once(&[]).assert_code(0);
    assert!(hung_up(&mut other), "the owner's process got no SIGHUP");
    assert!(!env.path("state/hook-owed-inst-a.json").exists());

    // A root-owned pidfile again, with the rule lifted by the config.
    let mut other = sleep_as_nobody().unwrap();
    fs::remove_file(&pidfile).unwrap();
    fs::write(&pidfile, format!("{}\n", other.id())).unwrap();
    signal_instance(
        &mut env,
        "SIGHUP",
        &pidfile,
        "reload_signal_any_owner = true",
    );
    env.standin.rotate("inst-a", "international");
    env.once(&[]).assert_code(0);
    assert!(
        hung_up(&mut other),
        "reload_signal_any_owner did not allow it"
    );
}

#[test]
fn a_non_utf8_byte_in_hook_output_keeps_the_real_exit_status_and_stderr() {
    let mut env = Env::new();
    // The invalid byte, then more than a pipe holds, then the real error.
    sh_instance(
        &mut env,
        "inst-a",
        "printf 'bad \\377 byte\\n'; i=0; while [ $i -lt 3000 ]; do echo 0123456789012345678901234567890123456789; i=$((i+1)); done; echo the-real-error >&2; exit 3",
    );
    let run = env.once(&[]);
    run.assert_code(1);
    let all = run.all();
    assert!(
        all.contains("exited with status 3; last stderr: the-real-error"),
        "{all}"
    );
    assert!(!all.contains("signal 13"), "{all}");
    assert!(all.contains("bad \u{fffd} byte"), "{all}");
}

#[test]
fn a_50_mb_line_of_hook_output_is_cut_and_the_daemon_stays_small() {
    let mut env = Env::new();
    sh_instance(
        &mut env,
        "inst-a",
        "head -c 50000000 /dev/zero | tr '\\0' x; echo; echo finished >&2",
    );
    let daemon = env.daemon(&[]);
    daemon.wait_log("hook succeeded", 1, Duration::from_secs(120));
    let hwm = vm_hwm_kb(daemon.child.id());
    eprintln!("the daemon's peak RSS: {hwm} kB");
    let log = daemon.log();
    assert!(
        hwm < 60 * 1024,
        "the daemon's peak RSS was {hwm} kB after a 50 MB line"
    );
    assert!(log.contains("hook output cut"), "{log}");
    assert!(log.contains("hook output: finished"), "{log}");
    assert!(
        log.len() < 1024 * 1024,
        "the log took {} bytes of the hook's output",
        log.len()
    );
}
