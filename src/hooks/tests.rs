//! The hook module's unit tests, kept together: most of them drive a real
//! process (a command, a signal target, a delivery through the ledger) with
//! helpers they share. Over 500 lines because they are many, not because a
//! test is long.

use super::command::{Budget, Lines, log_lines};
use super::delivery::lock;
use super::signal::real_uid;
use super::*;
use crate::config::ReloadSignal;
use crate::ledger;
use nix::sys::signal::Signal;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncRead;

fn call() -> HookCall {
    HookCall {
        instance_id: "i1".into(),
        instance_name: "orders".into(),
        service: "dcs",
        changed: vec![
            ChangedFile {
                path: "/a/x.crt".into(),
                old: None,
                new: [0xab; 32],
            },
            ChangedFile {
                path: "/a/y.crt".into(),
                old: Some([0x01; 32]),
                new: [0x02; 32],
            },
        ],
        reason: HookReason::PreviousDropped,
    }
}

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

#[test]
fn environment_lists_paths_and_hashes_in_order() {
    let env = call().env();
    let get = |k: &str| env.iter().find(|(n, _)| *n == k).unwrap().1.clone();
    assert_eq!(get("DDS_CERTSYNC_CHANGED"), "/a/x.crt\n/a/y.crt");
    assert_eq!(
        get("DDS_CERTSYNC_OLD_SHA256"),
        format!("\n{}", "01".repeat(32))
    );
    assert_eq!(
        get("DDS_CERTSYNC_NEW_SHA256"),
        format!("{}\n{}", "ab".repeat(32), "02".repeat(32))
    );
    assert_eq!(get("DDS_CERTSYNC_REASON"), "previous-dropped");
    assert_eq!(get("DDS_CERTSYNC_SERVICE"), "dcs");
}

#[test]
fn reasons_read_back_and_merge_toward_the_weightier() {
    use HookReason::*;
    for r in [Updated, PreviousDropped, RestoredAfterCrash] {
        assert_eq!(HookReason::parse(r.as_str()), Some(r));
    }
    assert_eq!(HookReason::parse("updated\n"), None);
    assert_eq!(PreviousDropped.merge(PreviousDropped), PreviousDropped);
    assert_eq!(PreviousDropped.merge(Updated), Updated);
    assert_eq!(Updated.merge(PreviousDropped), Updated);
    assert_eq!(Updated.merge(RestoredAfterCrash), RestoredAfterCrash);
    assert_eq!(
        PreviousDropped.merge(RestoredAfterCrash),
        RestoredAfterCrash
    );
}

#[tokio::test]
async fn success_and_failure_are_reported() {
    run(&sh("exit 0"), Duration::from_secs(5), &call(), &[])
        .await
        .unwrap();
    let e = run(
        &sh("echo boom >&2; exit 3"),
        Duration::from_secs(5),
        &call(),
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "/bin/sh exited with status 3; last stderr: boom"
    );
}

#[test]
fn retry_delays_double_up_to_the_cap_with_jitter() {
    let cap = Duration::from_secs(30);
    let full: Vec<u64> = (1..=7)
        .map(|a| retry_delay(a, cap, 0.0).as_millis() as u64)
        .collect();
    assert_eq!(full, vec![1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    // Jitter takes off up to half, never more.
    assert_eq!(retry_delay(3, cap, 1.0), Duration::from_secs(2));
    assert_eq!(retry_delay(3, cap, 0.5), Duration::from_secs(3));
    // Absurd inputs stay bounded.
    assert_eq!(retry_delay(u32::MAX, cap, 7.0), Duration::from_secs(15));
    assert_eq!(retry_delay(0, Duration::ZERO, 0.0), RETRY_BASE);
}

#[test]
fn signal_delivery_failures_are_named() {
    let d = tempfile::tempdir().unwrap();
    let pidfile = d.path().join("app.pid");
    let r = ReloadSignal {
        signal: Signal::SIGHUP,
        pidfile: pidfile.clone(),
        any_owner: false,
    };
    let e = send_signal(&r).unwrap_err().to_string();
    assert!(e.contains("cannot read the pidfile"), "{e}");
    assert!(e.contains(&pidfile.display().to_string()), "{e}");
    assert!(e.starts_with("cannot send SIGHUP"), "{e}");
    // 0 and negative PIDs would signal a group or everyone: refused.
    for bad in ["0", "-1", "", "12ab", "99999999999"] {
        std::fs::write(&pidfile, bad).unwrap();
        let e = send_signal(&r).unwrap_err().to_string();
        assert!(e.contains("is not a process ID"), "{bad}: {e}");
    }
    // A process that is gone.
    let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    std::fs::write(&pidfile, format!("{pid}\n")).unwrap();
    let e = send_signal(&r).unwrap_err().to_string();
    assert!(e.contains("is not running"), "{e}");
}

#[tokio::test]
async fn missing_program_is_a_spawn_error() {
    let e = run(
        &["/nonexistent/hook".into()],
        Duration::from_secs(5),
        &call(),
        &[],
    )
    .await
    .unwrap_err();
    assert!(matches!(e, HookError::Spawn { .. }), "{e}");
}

#[test]
fn notify_socket_is_not_inherited() {
    const NAME: &str = "hooks::tests::notify_socket_is_not_inherited";
    const CHILD: &str = "DDS_CERTSYNC_TEST_NOTIFY_CHILD";
    if std::env::var_os(CHILD).is_some() {
        // The child process: NOTIFY_SOCKET is in its own environment.
        assert!(std::env::var_os("NOTIFY_SOCKET").is_some());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run(
            &sh("test -z \"$NOTIFY_SOCKET\""),
            Duration::from_secs(5),
            &call(),
            &[],
        ))
        .unwrap();
        return;
    }
    // The test binary's environment is shared by tests running in
    // parallel, so the variable is set only for a child process that
    // runs just this test.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--test-threads=1"])
        .env(CHILD, "1")
        .env("NOTIFY_SOCKET", "/run/systemd/notify")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child ran no test: {text}");
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let started = std::time::Instant::now();
    let e = run(&sh(&script), Duration::from_millis(500), &call(), &[])
        .await
        .unwrap_err();
    assert!(matches!(e, HookError::TimedOut { .. }), "{e}");
    // Killed at the timeout, not waited for until the grandchild ends.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the hook outlived its timeout: {:?}",
        started.elapsed()
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The grandchild got SIGKILL with the group; it is gone (or a zombie
    // reaped by init) within a moment.
    let mut alive = true;
    for _ in 0..50 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z ") {
            alive = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive, "grandchild {pid} survived the timeout");
}

#[test]
fn the_daemons_credentials_and_notify_socket_are_hidden_from_hooks() {
    let named = vec!["MY_SK".to_string()];
    for hidden in [
        "NOTIFY_SOCKET",
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN",
        "HUAWEICLOUD_SDK_ANYTHING",
        "MY_SK",
    ] {
        assert!(is_hidden(OsStr::new(hidden), &named), "{hidden}");
    }
    for kept in [
        "PATH",
        "HOME",
        "MY_SK2",
        "HUAWEICLOUD_SDK",
        "huaweicloud_sdk_ak",
    ] {
        assert!(!is_hidden(OsStr::new(kept), &named), "{kept}");
    }
}

#[test]
fn every_env_key_of_the_auth_section_is_hidden() {
    let config = |auth: &str| {
        let text = format!(
            "[cloud]\nregion = \"cn-north-4\"\nproject_id = \"p1\"\n[auth]\n{auth}\n[[instances]]\nid = \"i1\"\ninternational = \"/tmp/x/a.crt\"\n"
        );
        crate::config::validate(crate::config::parse(&text).unwrap(), Path::new("/")).unwrap()
    };
    let c = config(
        "method = \"aksk\"\naccess_key_env = \"A\"\nsecret_key_env = \"S\"\nsecurity_token_env = \"T\"",
    );
    assert_eq!(hidden_env_names(&c), ["A", "S", "T"]);
    let c = config("method = \"token\"\ntoken_env = \"TOK\"");
    assert_eq!(hidden_env_names(&c), ["TOK"]);
    let c = config("method = \"password\"\nuser = \"u\"\ndomain = \"d\"\npassword_env = \"PW\"");
    assert_eq!(hidden_env_names(&c), ["PW"]);
    let c = config("method = \"token\"\ntoken = \"inline\"");
    assert!(hidden_env_names(&c).is_empty());
    // A truststore's password variable too.
    let c = config(
        "method = \"token\"\ntoken_env = \"TOK\"\n[[instances]]\nid = \"i2\"\ntruststore = \"/tmp/x/t.p12\"\ntruststore_password_env = \"TS\"",
    );
    assert_eq!(hidden_env_names(&c), ["TOK", "TS"]);
}

#[test]
fn variables_once_named_stay_hidden_after_a_reload() {
    let config = |var: &str| {
        let text = format!(
            "[cloud]\nregion = \"cn-north-4\"\nproject_id = \"p1\"\n[auth]\nmethod = \"token\"\ntoken_env = \"{var}\"\n[sync]\nstate_dir = \"/nonexistent\"\n[[instances]]\nid = \"i1\"\ninternational = \"/tmp/x/a.crt\"\n"
        );
        crate::config::validate(crate::config::parse(&text).unwrap(), Path::new("/")).unwrap()
    };
    let d = Delivery::new(&config("OLD_TOKEN"));
    d.set_config(&config("NEW_TOKEN"));
    d.set_config(&config("NEW_TOKEN"));
    assert_eq!(&*lock(&d.current).hidden, ["OLD_TOKEN", "NEW_TOKEN"]);
}

#[tokio::test]
async fn a_delivery_lock_excludes_and_is_forgotten_once_nobody_holds_it() {
    let text = "[cloud]\nregion = \"cn-north-4\"\nproject_id = \"p1\"\n[auth]\nmethod = \"token\"\ntoken = \"t\"\n[sync]\nstate_dir = \"/nonexistent\"\n[[instances]]\nid = \"i1\"\ninternational = \"/tmp/x/a.crt\"\n";
    let config =
        crate::config::validate(crate::config::parse(text).unwrap(), Path::new("/")).unwrap();
    let d = Arc::new(Delivery::new(&config));
    let first = d.hold("i1").await;
    let other = d.hold("i2").await;
    let d2 = Arc::clone(&d);
    let second = tokio::spawn(async move { d2.hold("i1").await });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        !second.is_finished(),
        "a second holder got the lock while the first held it"
    );
    drop(other);
    assert_eq!(lock(&d.locks).len(), 1, "i2's lock outlived its holder");
    drop(first);
    // i1 is still awaited: its lock stays until that holder is done.
    let second = second.await.unwrap();
    assert_eq!(lock(&d.locks).len(), 1);
    drop(second);
    assert!(lock(&d.locks).is_empty(), "a lock outlived every holder");
}

#[tokio::test]
async fn named_variables_do_not_reach_the_hook() {
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("DDS_TEST_HIDDEN_SECRET", "s3cret") };
    let r = run(
        &sh("test -z \"$DDS_TEST_HIDDEN_SECRET\""),
        Duration::from_secs(5),
        &call(),
        &["DDS_TEST_HIDDEN_SECRET".to_string()],
    )
    .await;
    let visible = run(
        &sh("test -n \"$DDS_TEST_HIDDEN_SECRET\""),
        Duration::from_secs(5),
        &call(),
        &[],
    )
    .await;
    unsafe { std::env::remove_var("DDS_TEST_HIDDEN_SECRET") };
    r.unwrap();
    visible.unwrap();
}

#[test]
fn signals_go_only_to_an_application_of_the_pidfiles_owner() {
    for pid in [-1, 0, 1] {
        let e = check_target(pid, 0, 0, true).unwrap_err();
        assert!(e.contains(&format!("PID {pid}")), "{e}");
    }
    check_target(4242, 1000, 1000, false).unwrap();
    let e = check_target(4242, 0, 65534, false).unwrap_err();
    assert!(e.contains("process 4242"), "{e}");
    assert!(e.contains("uid 65534"), "{e}");
    assert!(e.contains("reload_signal_any_owner"), "{e}");
    check_target(4242, 0, 65534, true).unwrap();
}

#[test]
fn the_real_uid_is_read_from_proc_status() {
    let status = "Name:\tsleep\nUmask:\t0022\nUid:\t65534\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
    assert_eq!(real_uid(status), Some(65534));
    assert_eq!(real_uid("Name:\tx\n"), None);
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    assert_eq!(real_uid(&own), Some(nix::unistd::getuid().as_raw()));
}

#[test]
fn pid_1_in_a_pidfile_is_refused_and_named() {
    let d = tempfile::tempdir().unwrap();
    let pidfile = d.path().join("app.pid");
    std::fs::write(&pidfile, "1\n").unwrap();
    let r = ReloadSignal {
        signal: Signal::SIGHUP,
        pidfile: pidfile.clone(),
        any_owner: true,
    };
    let e = send_signal(&r).unwrap_err().to_string();
    assert!(e.contains(&pidfile.display().to_string()), "{e}");
    assert!(e.contains("refusing to signal PID 1"), "{e}");
}

#[test]
fn lines_are_split_cut_at_the_cap_and_carried_across_chunks() {
    let mut got: Vec<(String, bool)> = Vec::new();
    let mut emit = |l: &[u8], cut: bool| got.push((String::from_utf8_lossy(l).into(), cut));
    let mut lines = Lines::new(4);
    lines.push(b"ab\r\ncd", &mut emit);
    lines.push(b"e\nabcdefgh", &mut emit);
    lines.push(b"ijk\nxy", &mut emit);
    assert!(lines.pending());
    lines.finish(&mut emit);
    assert_eq!(
        got,
        [
            ("ab".into(), false),
            ("cde".into(), false),
            ("abcd".into(), true),
            ("xy".into(), false)
        ]
    );
    assert!(lines.line.capacity() <= 8, "the buffer grew past the cap");
}

#[tokio::test]
async fn a_flood_of_empty_lines_uses_up_the_volume_cap() {
    let budget = Arc::new(Budget::new("orders".into()));
    let flood = vec![b'\n'; VOLUME_CAP * 2];
    log_lines(&flood[..], Arc::clone(&budget), "stdout").await;
    assert_eq!(budget.left.load(Ordering::Relaxed), 0);
    assert!(budget.cut.load(Ordering::Relaxed), "the cut was not noted");
}

#[tokio::test]
async fn a_grandchild_holding_the_pipes_leaks_no_reader_task() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    // The hook exits at once; the subshell it leaves behind keeps its
    // stdout and stderr open for a few seconds.
    run(
        &sh("(sleep 3) & exit 0"),
        Duration::from_secs(10),
        &call(),
        &[],
    )
    .await
    .unwrap();
    // Aborted tasks finish at the next turns of the runtime.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        metrics.num_alive_tasks(),
        before,
        "a pipe reader outlived the hook"
    );
}

#[tokio::test]
async fn a_non_utf8_byte_in_the_output_keeps_the_real_exit_status() {
    // The invalid byte first, then more than a pipe holds, then stderr:
    // a reader that gave up would kill the hook with SIGPIPE.
    let e = run(
        &sh("printf 'bad \\377 byte\\n'; i=0; while [ $i -lt 3000 ]; do echo 0123456789012345678901234567890123456789; i=$((i+1)); done; echo real-error >&2; exit 3"),
        Duration::from_secs(20),
        &call(),
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "/bin/sh exited with status 3; last stderr: real-error"
    );
}

/// A config of one instance `i1` writing `dir/a.crt`, with `hook` (TOML
/// keys of the instance) and its records in `dir/state`.
fn hook_config(dir: &Path, hook: &str) -> Config {
    let text = format!(
        "[cloud]\nregion = \"cn-north-4\"\nproject_id = \"p1\"\n[auth]\nmethod = \"token\"\ntoken = \"t\"\n[sync]\nstate_dir = \"{}\"\n[[instances]]\nid = \"i1\"\ninternational = \"{}\"\n{hook}\n",
        dir.join("state").display(),
        dir.join("a.crt").display(),
    );
    crate::config::validate(crate::config::parse(&text).unwrap(), Path::new("/")).unwrap()
}

/// A signal hook whose pidfile is `dir/app.pid`.
fn signal_hook(dir: &Path, signal: &str) -> String {
    format!(
        "reload_signal = \"{signal}\"\npidfile = \"{}\"",
        dir.join("app.pid").display()
    )
}

/// Records that `dir/a.crt` changed from `old` to what it holds now.
fn owe(d: &Delivery, dir: &Path, old: &[u8]) {
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let path = dir.join("a.crt");
    let now = std::fs::read(&path).unwrap();
    d.ledger()
        .store(&ledger::Owed {
            instance_id: "i1".into(),
            files: vec![ChangedFile {
                path,
                old: Some(crate::certcheck::sha256(old)),
                new: crate::certcheck::sha256(&now),
            }],
            reason: HookReason::Updated,
        })
        .unwrap();
}

/// A process to signal, and a pidfile naming it `width` bytes wide.
fn target(dir: &Path, width: usize) -> std::process::Child {
    let child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = child.id();
    std::fs::write(dir.join("app.pid"), format!("{pid:>width$}")).unwrap();
    child
}

/// How `child` ended, waiting up to 10 s.
fn killed_by(mut child: std::process::Child) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    for _ in 0..500 {
        if let Some(status) = child.try_wait().unwrap() {
            return status.signal();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn retry_in(d: &Delivery) -> Duration {
    lock(&d.pending)["i1"]
        .next
        .saturating_duration_since(tokio::time::Instant::now())
}

#[tokio::test]
async fn an_owed_hook_runs_with_its_record_and_the_record_is_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let script = format!("echo \"$DDS_CERTSYNC_CHANGED\" > {}", ran.display());
    let config = hook_config(
        dir.path(),
        &format!("on_change = [\"/bin/sh\", \"-c\", {script:?}]"),
    );
    let inst = &config.instances[0];
    let d = Delivery::new(&config);
    std::fs::write(dir.path().join("a.crt"), "new").unwrap();
    let held = d.hold("i1").await;
    assert!(
        d.deliver(inst, &held, Vec::new()).await.is_none(),
        "nothing was owed"
    );
    owe(&d, dir.path(), b"old");
    d.deliver(inst, &held, Vec::new()).await.unwrap().unwrap();
    let told = std::fs::read_to_string(&ran).unwrap();
    assert_eq!(told.trim(), dir.path().join("a.crt").display().to_string());
    assert!(!d.ledger().exists("i1"), "the record outlived the hook");
    assert!(!d.waiting("i1"));
    std::fs::remove_file(&ran).unwrap();
    assert!(d.deliver(inst, &held, Vec::new()).await.is_none());
    assert!(!ran.exists(), "the hook ran twice for one change");
}

#[tokio::test]
async fn the_reason_is_the_records_own_only_for_a_record_this_process_made() {
    let dir = tempfile::tempdir().unwrap();
    let reasons = dir.path().join("reasons");
    let breaker = dir.path().join("break");
    let d0 = Delivery::new(&hook_config(dir.path(), ""));
    let record = d0.ledger().path("i1");
    // Each run appends its reason; with `break` present, it also turns its
    // record into a directory, so that clearing the record fails.
    let script = format!(
        "echo \"$DDS_CERTSYNC_REASON\" >> {r}; if [ -e {b} ]; then rm {b} && rm -f {rec} && mkdir {rec}; fi",
        r = reasons.display(),
        b = breaker.display(),
        rec = record.display(),
    );
    let config = hook_config(
        dir.path(),
        &format!("on_change = [\"/bin/sh\", \"-c\", {script:?}]"),
    );
    let inst = &config.instances[0];
    let d = Delivery::new(&config);
    std::fs::write(dir.path().join("a.crt"), "new").unwrap();
    let held = d.hold("i1").await;
    let last = || {
        let text = std::fs::read_to_string(&reasons).unwrap();
        text.lines().last().unwrap().to_string()
    };
    // A record this process did not make: an earlier run's.
    owe(&d, dir.path(), b"old");
    d.deliver(inst, &held, Vec::new()).await.unwrap().unwrap();
    assert_eq!(last(), "restored-after-crash");
    // One it made: the record's own reason.
    owe(&d, dir.path(), b"old");
    d.recorded("i1", true);
    d.deliver(inst, &held, Vec::new()).await.unwrap().unwrap();
    assert_eq!(last(), "updated");
    // The hook ran but its record could not be cleared: the record is still
    // this process's, and runs again with its own reason.
    owe(&d, dir.path(), b"old");
    d.recorded("i1", true);
    std::fs::write(&breaker, "").unwrap();
    d.deliver(inst, &held, Vec::new()).await.unwrap().unwrap();
    assert!(record.is_dir(), "the hook did not break the record");
    std::fs::remove_dir(&record).unwrap();
    owe(&d, dir.path(), b"old");
    d.deliver(inst, &held, Vec::new()).await.unwrap().unwrap();
    assert_eq!(last(), "updated");
    assert_eq!(
        std::fs::read_to_string(&reasons).unwrap().lines().count(),
        4
    );
}

/// A scratch folder, the file a `touch` hook creates when it runs, and a
/// config and delivery with that hook.
fn touch_hook() -> (tempfile::TempDir, PathBuf, Config, Delivery) {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let config = hook_config(
        dir.path(),
        &format!("on_change = [\"/bin/touch\", \"{}\"]", ran.display()),
    );
    let d = Delivery::new(&config);
    (dir, ran, config, d)
}

#[tokio::test]
async fn a_record_the_disk_contradicts_is_corrected_and_owes_nothing() {
    let (dir, ran, config, d) = touch_hook();
    // The file still holds its old content: the rename never happened.
    std::fs::write(dir.path().join("a.crt"), "old").unwrap();
    owe(&d, dir.path(), b"old");
    let held = d.hold("i1").await;
    assert!(
        d.deliver(&config.instances[0], &held, Vec::new())
            .await
            .is_none()
    );
    assert!(!d.ledger().exists("i1"), "the corrected record stayed");
    assert!(!ran.exists());
}

#[tokio::test]
async fn the_record_is_judged_by_what_the_round_saw_at_its_path_not_by_a_later_disk() {
    let (dir, ran, config, d) = touch_hook();
    let path = dir.path().join("a.crt");
    std::fs::write(&path, "new").unwrap();
    owe(&d, dir.path(), b"old");
    // The round saw the new file; the disk says otherwise by now. The
    // round's look at the path is what the record is judged by.
    std::fs::write(&path, "old").unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    let seen = crate::outputs::Observation::written(crate::certcheck::sha256(b"new"), &[], &meta);
    let held = d.hold("i1").await;
    d.deliver(&config.instances[0], &held, vec![(path, seen)])
        .await
        .unwrap()
        .unwrap();
    assert!(
        ran.exists(),
        "the hook did not run for the change the round saw"
    );
    assert!(!d.ledger().exists("i1"));
}

#[tokio::test]
async fn a_record_of_an_instance_without_a_hook_is_dropped_unrun() {
    let dir = tempfile::tempdir().unwrap();
    let config = hook_config(dir.path(), "");
    let d = Delivery::new(&config);
    std::fs::write(dir.path().join("a.crt"), "new").unwrap();
    owe(&d, dir.path(), b"old");
    let held = d.hold("i1").await;
    assert!(
        d.deliver(&config.instances[0], &held, Vec::new())
            .await
            .is_none()
    );
    assert!(!d.ledger().exists("i1"));
}

#[tokio::test(start_paused = true)]
async fn failed_deliveries_wait_longer_each_time_until_one_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let config = hook_config(dir.path(), &signal_hook(dir.path(), "SIGTERM"));
    let inst = &config.instances[0];
    let d = Delivery::new(&config);
    std::fs::write(dir.path().join("a.crt"), "new").unwrap();
    owe(&d, dir.path(), b"old");
    let held = d.hold("i1").await;
    // No pidfile: each delivery fails and waits about twice as long
    // as the one before (1 s, 2 s, 4 s, less up to half of jitter).
    let mut waits = Vec::new();
    for _ in 0..3 {
        let e = d
            .deliver(inst, &held, Vec::new())
            .await
            .unwrap()
            .unwrap_err();
        assert!(e.to_string().contains("cannot read the pidfile"), "{e}");
        assert!(d.waiting("i1"));
        waits.push(retry_in(&d));
    }
    let secs = |w: Duration| w.as_secs_f64();
    assert!((0.5..=1.0).contains(&secs(waits[0])), "{waits:?}");
    assert!((1.0..=2.0).contains(&secs(waits[1])), "{waits:?}");
    assert!((2.0..=4.0).contains(&secs(waits[2])), "{waits:?}");
    assert!(d.ledger().exists("i1"), "a failed hook must stay owed");
    // The process appears: the next delivery signals it and clears all.
    let child = target(dir.path(), 0);
    d.deliver(inst, &held, Vec::new()).await.unwrap().unwrap();
    assert_eq!(killed_by(child), Some(Signal::SIGTERM as i32));
    assert!(!d.waiting("i1"), "a delivered hook still waits for a retry");
    assert!(!d.ledger().exists("i1"));
}

#[tokio::test(start_paused = true)]
async fn a_reload_retries_a_changed_hook_at_once_and_forgets_a_removed_instance() {
    let dir = tempfile::tempdir().unwrap();
    let config = hook_config(dir.path(), &signal_hook(dir.path(), "SIGTERM"));
    let d = Delivery::new(&config);
    std::fs::write(dir.path().join("a.crt"), "new").unwrap();
    owe(&d, dir.path(), b"old");
    let held = d.hold("i1").await;
    d.deliver(&config.instances[0], &held, Vec::new())
        .await
        .unwrap()
        .unwrap_err();
    assert!(d.waiting("i1"));
    // The same hook: the retry keeps its time.
    d.set_config(&config);
    assert!(d.waiting("i1"), "an unchanged hook was retried early");
    let timeout = hook_config(
        dir.path(),
        &format!(
            "{}\nhook_timeout = \"7s\"",
            signal_hook(dir.path(), "SIGTERM")
        ),
    );
    d.set_config(&timeout);
    assert!(!d.waiting("i1"), "a new hook_timeout is a changed hook");
    d.deliver(&timeout.instances[0], &held, Vec::new())
        .await
        .unwrap()
        .unwrap_err();
    assert!(d.waiting("i1"));
    let other = hook_config(
        dir.path(),
        &format!(
            "{}\nhook_timeout = \"7s\"",
            signal_hook(dir.path(), "SIGUSR1")
        ),
    );
    d.set_config(&other);
    assert!(!d.waiting("i1"), "a changed signal must be retried now");
    assert_eq!(lock(&d.pending)["i1"].attempts, 0, "the backoff restarts");
    // Removed: its retries stop, its record stays.
    let mut none = other.clone();
    none.instances.clear();
    d.set_config(&none);
    assert!(lock(&d.pending).is_empty());
    assert!(d.ledger().exists("i1"));
    // A run that fails for an instance removed meanwhile is not retried.
    d.deliver(&other.instances[0], &held, Vec::new())
        .await
        .unwrap()
        .unwrap_err();
    assert!(lock(&d.pending).is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_retry_task_delivers_a_failed_hook_without_a_new_change() {
    let dir = tempfile::tempdir().unwrap();
    let config = hook_config(dir.path(), &signal_hook(dir.path(), "SIGTERM"));
    let d = Arc::new(Delivery::new(&config));
    std::fs::write(dir.path().join("a.crt"), "new").unwrap();
    owe(&d, dir.path(), b"old");
    {
        let held = d.hold("i1").await;
        d.deliver(&config.instances[0], &held, Vec::new())
            .await
            .unwrap()
            .unwrap_err();
    }
    let child = target(dir.path(), 0);
    let start = tokio::time::Instant::now();
    let (tx, mut told) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(retry_owed(Arc::clone(&d), move |inst, result| {
        let _ = tx.send((inst.id.clone(), result.is_ok()));
    }));
    // Virtual time: the retry is due within 1 s; real time bounds the wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while d.ledger().exists("i1") {
        assert!(
            std::time::Instant::now() < deadline,
            "the owed hook was never retried"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "retried too early"
    );
    assert_eq!(killed_by(child), Some(Signal::SIGTERM as i32));
    assert!(lock(&d.pending).is_empty());
    // The retry's outcome was told, once.
    assert_eq!(told.try_recv().ok(), Some(("i1".to_string(), true)));
    assert!(told.try_recv().is_err());
}

#[test]
fn a_pidfile_of_64_bytes_is_read_and_one_of_65_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let r = ReloadSignal {
        signal: Signal::SIGTERM,
        pidfile: d.path().join("app.pid"),
        any_owner: false,
    };
    // The PID at the very end: a shorter read would name another process.
    let child = target(d.path(), 64);
    send_signal(&r).unwrap();
    assert_eq!(killed_by(child), Some(Signal::SIGTERM as i32));
    let child = target(d.path(), 65);
    let e = send_signal(&r).unwrap_err().to_string();
    assert!(e.contains("larger than 64 bytes"), "{e}");
    assert_eq!(
        killed_by_now(child),
        None,
        "signalled through a refused pidfile"
    );
}

/// Kills `child` and says whether it had died of a signal before.
fn killed_by_now(mut child: std::process::Child) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    let before = child.try_wait().unwrap().and_then(|s| s.signal());
    let _ = child.kill();
    let _ = child.wait();
    before
}

#[test]
fn a_zombie_is_not_running() {
    let d = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
    let pid = child.id();
    // Exited, not yet reaped: its PID and /proc entry are still there.
    let zombie = (0..500).any(|_| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.contains(") Z ") || {
            std::thread::sleep(Duration::from_millis(10));
            false
        }
    });
    assert!(zombie, "process {pid} never became a zombie");
    std::fs::write(d.path().join("app.pid"), format!("{pid}\n")).unwrap();
    let r = ReloadSignal {
        signal: Signal::SIGTERM,
        pidfile: d.path().join("app.pid"),
        any_owner: false,
    };
    let e = send_signal(&r).unwrap_err().to_string();
    child.wait().unwrap();
    assert!(e.contains(&format!("process {pid} is not running")), "{e}");
}

#[tokio::test]
async fn a_line_is_logged_up_to_4_kib() {
    let mut out = vec![b'a'; 4096];
    out.push(b'\n');
    out.extend(vec![b'b'; 4097]);
    out.push(b'\n');
    let budget = Arc::new(Budget::new("orders".into()));
    let last = log_lines(&out[..], Arc::clone(&budget), "stderr").await;
    assert_eq!(last, ["a".repeat(4096), "b".repeat(4096)]);
    assert!(budget.cut.load(Ordering::Relaxed));
}

#[tokio::test]
async fn exactly_64_kib_of_output_is_logged_and_one_byte_more_is_cut() {
    // 1024 lines of 63 bytes and a newline: 64 KiB.
    let full: Vec<u8> = [[b'x'; 63].as_slice(), b"\n"].concat().repeat(1024);
    let budget = Arc::new(Budget::new("orders".into()));
    log_lines(&full[..], Arc::clone(&budget), "stdout").await;
    assert!(!budget.cut.load(Ordering::Relaxed), "64 KiB must fit");
    assert!(!budget.take(1));
    let budget = Arc::new(Budget::new("orders".into()));
    let over = [full.as_slice(), b"\n"].concat();
    log_lines(&over[..], Arc::clone(&budget), "stdout").await;
    assert!(budget.cut.load(Ordering::Relaxed), "64 KiB + 1 was not cut");
}

#[test]
fn a_line_that_exactly_fits_is_not_cut() {
    let mut got: Vec<(Vec<u8>, bool)> = Vec::new();
    let mut lines = Lines::new(4);
    lines.push(b"abcd\nab\r\n", &mut |l: &[u8], cut| {
        got.push((l.to_vec(), cut))
    });
    assert!(!lines.pending());
    assert_eq!(got, [(b"abcd".to_vec(), false), (b"ab".to_vec(), false)]);
}

#[test]
fn the_cut_is_said_once_per_run() {
    use tracing_subscriber::fmt::MakeWriter;
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }
    let buf = Buf::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buf.clone())
        .with_ansi(false)
        .finish();
    let said = || {
        String::from_utf8_lossy(&lock(&buf.0))
            .matches("hook output cut")
            .count()
    };
    let budget = Budget::new("orders".into());
    tracing::subscriber::with_default(subscriber, || {
        budget.note_cut();
        assert_eq!(said(), 1, "the first cut was not said");
        budget.note_cut();
        budget.note_cut();
    });
    assert_eq!(said(), 1, "the cut was said more than once");
}

/// A pipe that returns these reads, then its end.
struct Script(std::collections::VecDeque<std::io::Result<&'static [u8]>>);

impl AsyncRead for Script {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(match self.0.pop_front() {
            Some(Ok(bytes)) => {
                buf.put_slice(bytes);
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => Ok(()),
        })
    }
}

#[tokio::test]
async fn an_interrupted_read_goes_on_and_a_failed_one_stops() {
    use std::io::{Error, ErrorKind};
    let script = Script(
        [
            Err(Error::from(ErrorKind::Interrupted)),
            Ok(b"one\n".as_slice()),
            Err(Error::other("broken pipe")),
            Ok(b"two\n".as_slice()),
        ]
        .into(),
    );
    let budget = Arc::new(Budget::new("orders".into()));
    assert_eq!(log_lines(script, budget, "stderr").await, ["one"]);
}

#[tokio::test]
async fn a_failed_command_fails_the_action_and_no_action_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let config = hook_config(dir.path(), "on_change = [\"/bin/false\"]");
    let e = run_action(&config.instances[0], &call(), &[])
        .await
        .unwrap_err();
    assert!(
        e.to_string().starts_with("/bin/false exited with status 1"),
        "{e}"
    );
    let config = hook_config(dir.path(), "");
    run_action(&config.instances[0], &call(), &[])
        .await
        .unwrap();
}
