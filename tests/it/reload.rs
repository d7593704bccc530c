//! Reload end to end: the real daemon, its config replaced by rename and
//! SIGHUP sent, the stand-in's request record and the files on disk checked.
//! Removing an instance stops its rounds and keeps its files; an instance's
//! changed settings take effect; new credentials replace the old ones for
//! every later request; new timing applies; a `state_dir` change waits for
//! the next start; and a refused reload leaves the old config syncing.

use std::fs;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(30);

/// Replaces the config, sends SIGHUP, and waits for the reload's verdict
/// (the `n`th "config reloaded" or "reload refused" line).
fn reload(env: &Env, d: &Daemon, verdict: &str) {
    let before = d.log().matches(verdict).count();
    replace_config(env);
    d.signal(Signal::SIGHUP);
    d.wait_log(verdict, before + 1, LIMIT);
}

fn wait_hooks(env: &Env, d: &Daemon, id: &str, n: usize) {
    assert!(
        wait_until(LIMIT, || env.hook_runs(id).len() >= n),
        "{id}: expected {n} hook runs\n{}",
        d.log()
    );
}

#[test]
fn a_removed_instance_is_no_longer_polled_and_its_files_stay() {
    let mut env = Env::new();
    env.instance("inst-a").instance("inst-b");
    env.sync.push_str("interval = \"1s\"\njitter = \"0s\"\n");
    let d = env.daemon(&[]);
    wait_hooks(&env, &d, "inst-a", 1);
    wait_hooks(&env, &d, "inst-b", 1);
    let b_files = [
        env.out("inst-b", "international"),
        env.out("inst-b", "national"),
    ];
    let b_bytes: Vec<Vec<u8>> = b_files.iter().map(|p| fs::read(p).unwrap()).collect();

    env.instances.retain(|block| !block.contains("\"inst-b\""));
    reload(&env, &d, "config reloaded");
    assert!(d.log().contains("removed inst-b"), "{}", d.log());
    // A round of inst-b that was running at the reload may still finish;
    // after that, none starts. Several of inst-a's 1 s rounds later:
    let b_after_reload = api_requests(&env, "inst-b").len();
    let a_after_reload = api_requests(&env, "inst-a").len();
    assert!(
        wait_until(LIMIT, || api_requests(&env, "inst-a").len()
            >= a_after_reload + 4),
        "inst-a stopped being polled\n{}",
        d.log()
    );
    assert!(
        api_requests(&env, "inst-b").len() <= b_after_reload + 1,
        "inst-b is still polled after its removal\n{}",
        d.log()
    );
    let settled = api_requests(&env, "inst-b").len();
    assert!(wait_until(LIMIT, || api_requests(&env, "inst-a").len()
        >= a_after_reload + 7));
    assert_eq!(api_requests(&env, "inst-b").len(), settled, "{}", d.log());
    // Its files are left in place, byte for byte.
    for (p, b) in b_files.iter().zip(&b_bytes) {
        assert_eq!(&fs::read(p).unwrap(), b, "{}", p.display());
    }
}

#[test]
fn a_changed_output_path_is_written_at_once_and_the_others_keep_their_schedule() {
    let mut env = Env::new();
    env.instance("inst-a").instance("inst-b");
    env.sync.push_str("interval = \"1h\"\n");
    let d = env.daemon(&[]);
    wait_hooks(&env, &d, "inst-a", 1);
    wait_hooks(&env, &d, "inst-b", 1);
    let b_calls = api_requests(&env, "inst-b").len();

    for block in env.instances.iter_mut() {
        if block.contains("\"inst-a\"") {
            *block = block.replace("out/inst-a-international.crt", "moved/intl.crt");
        }
    }
    // Not SIGHUP (which syncs everyone): the watched file's new content.
    let before = d.log().matches("config reloaded").count();
    replace_config(&env);
    d.wait_log("config reloaded", before + 1, LIMIT);
    assert!(d.log().contains("changed inst-a"), "{}", d.log());
    let moved = env.path("moved/intl.crt");
    assert!(
        wait_until(LIMIT, || fs::read(&moved).ok()
            == Some(env.served("inst-a", "international"))),
        "the new output path was not written\n{}",
        d.log()
    );
    wait_hooks(&env, &d, "inst-a", 2);
    assert!(
        env.hook_runs("inst-a")[1].contains(&moved.display().to_string()),
        "{:?}",
        env.hook_runs("inst-a")
    );
    // inst-b was not synced again: its hourly schedule stands.
    assert_eq!(api_requests(&env, "inst-b").len(), b_calls, "{}", d.log());
}

#[test]
fn new_credentials_build_a_new_client_and_the_old_ones_are_never_sent_again() {
    let mut env = Env::new();
    let (ak1, sk1) = ("OLDKEY0123456789ABCD", "old-secret-0123456789");
    let (ak2, sk2) = ("NEWKEY0123456789ABCD", "new-secret-0123456789");
    env.standin.add_aksk(ak1, sk1);
    env.standin.add_aksk(ak2, sk2);
    fs::write(env.path("sk1"), sk1).unwrap();
    fs::write(env.path("sk2"), sk2).unwrap();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1h\"\n");
    env.auth = format!("method = \"aksk\"\naccess_key = \"{ak1}\"\nsecret_key_file = \"sk1\"\n");
    let d = env.daemon(&[]);
    wait_hooks(&env, &d, "inst-a", 1);
    let before = api_requests(&env, "inst-a").len();
    assert!(before >= 1);
    assert!(
        api_requests(&env, "inst-a").iter().all(|r| r
            .header("authorization")
            .is_some_and(|a| a.contains(&format!("Access={ak1}")))),
        "{:?}",
        env.standin.requests()
    );

    env.auth = format!("method = \"aksk\"\naccess_key = \"{ak2}\"\nsecret_key_file = \"sk2\"\n");
    reload(&env, &d, "config reloaded");
    assert!(d.log().contains("new cloud/auth settings"), "{}", d.log());
    // A new client was built: its credentials line is logged again.
    assert_eq!(
        d.log().matches("credentials: AK/SK").count(),
        2,
        "{}",
        d.log()
    );
    // Two more forced rounds, each after the last one's request arrived.
    for n in 1..=3 {
        if n > 1 {
            d.signal(Signal::SIGHUP);
        }
        assert!(
            wait_until(LIMIT, || api_requests(&env, "inst-a").len() >= before + n),
            "{}",
            d.log()
        );
        d.wait_log("unchanged", 2 * n, LIMIT);
    }
    let later = &api_requests(&env, "inst-a")[before..];
    for r in later {
        let auth = r.header("authorization").unwrap_or_default();
        assert!(auth.contains(&format!("Access={ak2}")), "{auth}");
    }
    // Nothing anywhere (any listener) carries the old key after the reload.
    let all = env.standin.requests();
    let first_new = all
        .iter()
        .position(|r| r.headers.iter().any(|(_, v)| v.contains(ak2)))
        .expect("a request with the new key");
    for r in &all[first_new..] {
        assert!(
            !r.headers.iter().any(|(_, v)| v.contains(ak1)),
            "old key sent after the reload: {r:?}"
        );
    }
}

#[test]
fn a_shorter_interval_applies_after_a_reload() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1h\"\njitter = \"0s\"\n");
    let d = env.daemon(&[]);
    wait_hooks(&env, &d, "inst-a", 1);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(api_requests(&env, "inst-a").len(), 1, "{}", d.log());

    env.sync = "interval = \"1s\"\njitter = \"0s\"\n".into();
    reload(&env, &d, "config reloaded");
    assert!(d.log().contains("new timing"), "{}", d.log());
    // The reload's own round, then one a second: at least 4 more.
    assert!(
        wait_until(LIMIT, || api_requests(&env, "inst-a").len() >= 5),
        "the new interval did not apply: {} requests\n{}",
        api_requests(&env, "inst-a").len(),
        d.log()
    );

    // And back to an hour: polling stops after the reload's round.
    env.sync = "interval = \"1h\"\njitter = \"0s\"\n".into();
    reload(&env, &d, "config reloaded");
    let n = api_requests(&env, "inst-a").len();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        api_requests(&env, "inst-a").len() <= n + 2,
        "still polling every second\n{}",
        d.log()
    );
}

#[test]
fn a_state_dir_change_waits_for_the_next_start() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1h\"\n");
    // A hook that fails keeps its record in the ledger.
    fs::write(env.path("fail"), "").unwrap();
    let gate = env.path("fail");
    for block in env.instances.iter_mut() {
        *block = block.replace(
            "on_change = [\"/bin/sh\", ",
            &format!(
                "on_change = [\"/bin/sh\", \"-c\", \"test ! -e {} && exec /bin/sh \\\"$0\\\"\", ",
                gate.display()
            ),
        );
    }
    let d = env.daemon(&[]);
    d.wait_log("hook", 1, LIMIT);
    let old_record = env.path("state/hook-owed-inst-a.json");
    assert!(
        wait_until(LIMIT, || old_record.exists()),
        "no hook record in the old state_dir\n{}",
        d.log()
    );

    env.sync = format!(
        "interval = \"1h\"\nstate_dir = \"{}\"\n",
        env.path("state2").display()
    );
    reload(&env, &d, "config reloaded");
    assert!(
        d.log()
            .contains("sync.state_dir changes take effect at the next start"),
        "{}",
        d.log()
    );
    // The running daemon keeps its ledger where it was: a new change is
    // recorded in the old directory, not the new one.
    env.standin.rotate("inst-a", "national");
    d.signal(Signal::SIGHUP);
    assert!(
        wait_until(LIMIT, || fs::read_to_string(&old_record)
            .is_ok_and(|t| t.contains("national"))),
        "{}",
        d.log()
    );
    assert!(!env.path("state2/hook-owed-inst-a.json").exists());
    drop(d);

    // The next start uses the new directory (the old record is left behind,
    // as documented for a state_dir change).
    fs::remove_file(&gate).unwrap();
    env.standin.rotate("inst-a", "international");
    let d = env.daemon(&[]);
    wait_hooks(&env, &d, "inst-a", 1);
    assert!(env.path("state2").is_dir(), "{}", d.log());
    assert!(old_record.exists());
}

#[test]
fn after_a_refused_reload_the_old_config_keeps_syncing() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1s\"\njitter = \"0s\"\n");
    let d = env.daemon(&[]);
    wait_hooks(&env, &d, "inst-a", 1);

    env.sync.push_str("intervall = \"5s\"\n");
    reload(&env, &d, "reload refused");
    assert!(d.log().contains("sync.intervall"), "{}", d.log());

    env.standin.rotate("inst-a", "international");
    let want = env.served("inst-a", "international");
    assert!(
        wait_until(LIMIT, || fs::read(env.out("inst-a", "international")).ok()
            == Some(want.clone())),
        "the old config stopped syncing after a refused reload\n{}",
        d.log()
    );
    wait_hooks(&env, &d, "inst-a", 2);
}
