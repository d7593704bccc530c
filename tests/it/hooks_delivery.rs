//! Guaranteed hook delivery: a hook owed is recorded before the rename,
//! survives crashes at every step, is retried with backoff until it exits 0,
//! runs after a restart even though the files are current, and several
//! changes before a success coalesce into one run. Also `reload_signal`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(20);

/// One recorded hook run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRun {
    pub files: Vec<(String, String, String)>,
}

/// Parses the runs the record hook left for `id`, oldest first.
pub fn parsed_runs(env: &Env, id: &str) -> Vec<HookRun> {
    env.hook_runs(id)
        .iter()
        .map(|text| {
            // Multi-line values: the variables are newline-separated lists
            // printed with %s, so re-read them line by line after the key.
            let list = |k: &str| -> Vec<String> {
                let start = text.find(&format!("{k}=")).map(|i| i + k.len() + 1);
                let Some(start) = start else { return vec![] };
                let rest = &text[start..];
                let end = rest
                    .find("\nDDS_CERTSYNC_")
                    .or_else(|| rest.find("\nNOTIFY_SOCKET="));
                rest[..end.unwrap_or(rest.len())]
                    .split('\n')
                    .map(str::to_string)
                    .collect()
            };
            let changed = list("DDS_CERTSYNC_CHANGED");
            let old = list("DDS_CERTSYNC_OLD_SHA256");
            let new = list("DDS_CERTSYNC_NEW_SHA256");
            HookRun {
                files: changed
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| {
                        (
                            p,
                            old.get(i).cloned().unwrap_or_default(),
                            new.get(i).cloned().unwrap_or_default(),
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The hex SHA-256 of a file, or "" when it is missing.
pub fn file_hash(p: &Path) -> String {
    match dds_certsync::outputs::observe(p, &Default::default())
        .digest()
        .unwrap()
    {
        Some(d) => dds_certsync::certcheck::hex(&d),
        None => String::new(),
    }
}

/// Checks that the successful hook runs tell a consistent story: per path,
/// each run's old hash is the previous run's new hash (a repeat of the
/// previous run is allowed: the crash-after-exit-0 case), the first old hash
/// is empty (the file did not exist), and the last new hash is what is on
/// disk now. Returns how many runs were repeats.
pub fn check_chain(env: &Env, id: &str, paths: &[&Path]) -> usize {
    let runs = parsed_runs(env, id);
    let mut last: HashMap<String, (String, String)> = HashMap::new();
    let mut repeats = 0;
    for (n, run) in runs.iter().enumerate() {
        let mut all_repeat = true;
        for (p, old, new) in &run.files {
            match last.get(p) {
                Some((lold, lnew)) if lold == old && lnew == new => {}
                Some((_, lnew)) => {
                    all_repeat = false;
                    assert_eq!(
                        old, lnew,
                        "run {n} of {p}: old hash is not the last announced new hash\n{runs:#?}"
                    );
                }
                None => {
                    all_repeat = false;
                    assert_eq!(
                        old, "",
                        "run {n}: first announcement of {p} must have no old hash\n{runs:#?}"
                    );
                }
            }
            assert_ne!(new, "", "run {n}: no new hash for {p}");
            last.insert(p.clone(), (old.clone(), new.clone()));
        }
        repeats += usize::from(all_repeat);
    }
    for p in paths {
        let key = p.display().to_string();
        let on_disk = file_hash(p);
        match last.get(&key) {
            Some((_, new)) => assert_eq!(
                new, &on_disk,
                "{key}: the content on disk was never announced to a hook\n{runs:#?}"
            ),
            None => assert_eq!(on_disk, "", "{key} exists but no hook ever ran for it"),
        }
    }
    repeats
}

/// An instance whose hook fails while `hook-broken` exists and otherwise
/// records its call.
fn breakable_instance(env: &mut Env, id: &str) {
    env.standin.add_instance(PROJECT, id);
    let record = env.record_hook();
    let broken = env.path("hook-broken");
    env.raw_instance(&format!(
        r#"id = "{id}"
name = "name-{id}"
international = "out/{id}-international.crt"
national = "out/{id}-national.crt"
on_change = ["/bin/sh", "-c", "if [ -e {broken} ]; then echo hook-is-broken >&2; exit 3; fi; exec /bin/sh {record}"]
hook_timeout = "10s""#,
        broken = broken.display(),
        record = record.display()
    ));
}

fn outputs(env: &Env, id: &str) -> [std::path::PathBuf; 2] {
    [env.out(id, "international"), env.out(id, "national")]
}

fn owed_record(env: &Env, id: &str) -> std::path::PathBuf {
    env.path(&format!("state/hook-owed-{id}.json"))
}

/// Every certificate file is complete and one the stand-in served.
fn assert_valid(env: &Env, id: &str, served: &[Vec<u8>]) {
    for p in outputs(env, id) {
        let bytes = fs::read(&p).unwrap();
        assert!(
            served.contains(&bytes),
            "{} is not a complete served certificate",
            p.display()
        );
    }
}

#[test]
fn a_crash_at_any_step_never_loses_the_hook() {
    // Each point, in the order a change passes it: "before-rename:1" is the
    // hook record's own temp file, ":2"/":3" the two certificates.
    let points = [
        "ledger-before-store",
        "before-rename:1",
        "after-rename:1",
        "before-rename:2",
        "after-rename:2",
        "before-rename:3",
        "after-rename:3",
        "before-hook",
        "after-hook",
    ];
    for point in points {
        let mut env = Env::new();
        env.instance("inst-a");
        env.once(&[]).assert_code(0);
        let mut served = vec![
            env.served("inst-a", "international"),
            env.served("inst-a", "national"),
        ];
        env.standin.rotate("inst-a", "international");
        env.standin.rotate("inst-a", "national");
        served.extend([
            env.served("inst-a", "international"),
            env.served("inst-a", "national"),
        ]);

        env.once_crashing_at(point);
        assert_valid(&env, "inst-a", &served);
        for name in ls(&env.path("out")) {
            assert!(
                name.starts_with("inst-a-") || name.contains(".dds-certsync-"),
                "{point}: unexpected {name}"
            );
        }

        // The restart finishes the job and delivers the hook.
        env.once(&[]).assert_code(0);
        assert_eq!(
            ls(&env.path("out")),
            vec!["inst-a-international.crt", "inst-a-national.crt"],
            "{point}: temporary files are cleaned at start"
        );
        assert!(!owed_record(&env, "inst-a").exists(), "{point}");
        assert_eq!(
            fs::read(env.out("inst-a", "national")).unwrap(),
            env.served("inst-a", "national")
        );
        let repeats = check_chain(
            &env,
            "inst-a",
            &outputs(&env, "inst-a").each_ref().map(|p| p.as_path()),
        );
        let runs = env.hook_runs("inst-a").len();
        if point == "after-hook" {
            // The documented at-least-once case: the hook exited 0 but its
            // record was not cleared, so it runs again after the restart.
            assert_eq!((runs, repeats), (3, 1), "{point}");
        } else {
            assert_eq!(
                (runs, repeats),
                (2, 0),
                "{point}: exactly one run for the rotation"
            );
        }
        assert_eq!(
            ls(&env.path("state")),
            Vec::<String>::new(),
            "{point}: no record or temp file left in the state dir"
        );
    }
}

#[test]
fn changes_coalesce_while_the_hook_fails_and_once_exits_1() {
    let mut env = Env::new();
    breakable_instance(&mut env, "inst-a");
    env.once(&[]).assert_code(0);
    let intl = env.out("inst-a", "international");
    let first = file_hash(&intl);

    fs::write(env.path("hook-broken"), "").unwrap();
    env.standin.rotate("inst-a", "international");
    let run = env.once(&[]);
    run.assert_code(1);
    assert!(run.stdout.contains("hook FAILED"), "{}", run.all());
    assert!(run.all().contains("exited with status 3"), "{}", run.all());
    assert!(run.all().contains("hook-is-broken"), "{}", run.all());
    assert!(owed_record(&env, "inst-a").exists());

    env.standin.rotate("inst-a", "international");
    env.once(&[]).assert_code(1);
    let last = file_hash(&intl);
    assert_ne!(first, last);

    // Fixed: one run reports the oldest old and the newest new hash.
    fs::remove_file(env.path("hook-broken")).unwrap();
    let run = env.once(&[]);
    run.assert_code(0);
    assert!(run.stdout.contains("hook ok"), "{}", run.all());
    let runs = parsed_runs(&env, "inst-a");
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_eq!(
        runs[1].files,
        vec![(intl.display().to_string(), first, last)]
    );
    assert!(!owed_record(&env, "inst-a").exists());
    // Nothing more is owed: another round runs no hook.
    env.once(&[]).assert_code(0);
    assert_eq!(env.hook_runs("inst-a").len(), 2);
}

#[test]
fn the_daemon_runs_a_hook_owed_from_before_although_files_are_current() {
    let mut env = Env::new();
    breakable_instance(&mut env, "inst-a");
    fs::write(env.path("hook-broken"), "").unwrap();
    env.once(&[]).assert_code(1);
    assert!(env.hook_runs("inst-a").is_empty());
    let stamps = outputs(&env, "inst-a").map(|p| stamp(&p));

    fs::remove_file(env.path("hook-broken")).unwrap();
    // The API is down, too: the owed hook must not depend on it.
    env.standin.push_fault(FaultRule::always(Fault::ApiStatus {
        status: 503,
        body: "{}".into(),
        retry_after: None,
    }));
    let d = env.daemon(&[]);
    env.wait_hook_runs(&d, "inst-a", 1);
    assert_eq!(
        outputs(&env, "inst-a").map(|p| stamp(&p)),
        stamps,
        "files untouched"
    );
    check_chain(
        &env,
        "inst-a",
        &outputs(&env, "inst-a").each_ref().map(|p| p.as_path()),
    );
    assert!(wait_until(LIMIT, || !owed_record(&env, "inst-a").exists()));
}

/// The delays of the `next attempt in {d}` lines, in order.
fn next_attempts(log: &str) -> Vec<Duration> {
    logged_durations(log, "next attempt in ", |_| true)
}

#[test]
fn a_failed_hook_is_retried_with_backoff_without_a_new_change() {
    let mut env = Env::new();
    env.standin.add_instance(PROJECT, "inst-a");
    let record = env.record_hook();
    let attempts = env.path("attempts");
    // Fails three times, then succeeds; each attempt notes when it began.
    env.raw_instance(&format!(
        r#"id = "inst-a"
international = "out/a.crt"
on_change = ["/bin/sh", "-c", "date +%s.%N >> {attempts}; if [ $(wc -l < {attempts}) -le 3 ]; then echo not-yet >&2; exit 9; fi; exec /bin/sh {record}"]"#,
        attempts = attempts.display(),
        record = record.display()
    ));
    env.sync
        .push_str("interval = \"1h\"\nmax_backoff = \"30s\"\n");
    let d = env.daemon(&[]);
    env.wait_hook_runs(&d, "inst-a", 1);
    let log = d.log();
    assert_eq!(log.matches("hook failed").count(), 3, "{log}");
    assert!(
        log.contains("exited with status 9; last stderr: not-yet"),
        "{log}"
    );
    // Doubling from 1 s, each taken down by up to half: [0.5, 1], [1, 2],
    // [2, 4]. Constant or un-doubled retries fall outside.
    let delays = next_attempts(&log);
    assert_eq!(delays.len(), 3, "{log}");
    for (i, d) in delays.iter().enumerate() {
        let full = Duration::from_secs(1 << i);
        assert!(
            *d >= full / 2 && *d <= full,
            "retry {i} after {d:?}, want within [{:?}, {full:?}]\n{log}",
            full / 2
        );
    }
    // And they were waited out: each attempt began no sooner than its delay
    // after the previous one (the clock of `date`, a few ms of slack).
    let began: Vec<f64> = fs::read_to_string(&attempts)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(began.len(), 4, "three failures and one success");
    for (i, w) in began.windows(2).enumerate() {
        let gap = w[1] - w[0];
        assert!(
            gap + 0.05 >= delays[i].as_secs_f64(),
            "attempt {} came {gap:.3}s after the previous, before its delay {:?}",
            i + 1,
            delays[i]
        );
    }
    // Nothing rotated: the retries are the owed hook's own.
    assert_eq!(
        log.matches("running the owed hook again").count(),
        3,
        "{log}"
    );
}

/// A stand-in for the application to reload: a shell that counts the
/// SIGHUPs it gets in `got`. Returns once its trap is set.
struct App {
    child: std::process::Child,
    got: PathBuf,
}

impl App {
    fn start(dir: &Path, name: &str) -> App {
        let got = dir.join(format!("{name}.hups"));
        let ready = dir.join(format!("{name}.ready"));
        let child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "trap 'echo hup >> {got}' HUP; : > {ready}; while :; do sleep 0.05; done",
                got = got.display(),
                ready = ready.display()
            ))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            wait_until(LIMIT, || ready.exists()),
            "{name} never set its trap"
        );
        App { child, got }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn hups(&self) -> usize {
        fs::read_to_string(&self.got)
            .unwrap_or_default()
            .lines()
            .count()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An instance whose change is announced by `SIGHUP` to the PID in `app.pid`.
fn signal_instance(env: &mut Env) -> PathBuf {
    env.standin.add_instance(PROJECT, "inst-a");
    let pidfile = env.path("app.pid");
    env.raw_instance(&format!(
        "id = \"inst-a\"\ninternational = \"out/a.crt\"\nreload_signal = \"SIGHUP\"\npidfile = \"{}\"",
        pidfile.display()
    ));
    pidfile
}

#[test]
fn reload_signal_is_sent_to_the_pid_in_the_pidfile_reread_each_time() {
    let mut env = Env::new();
    let pidfile = signal_instance(&mut env);

    // No pidfile: a failed delivery, kept owed.
    let run = env.once(&[]);
    run.assert_code(1);
    assert!(
        run.all().contains("cannot read the pidfile"),
        "{}",
        run.all()
    );
    assert!(
        run.all().contains(&pidfile.display().to_string()),
        "{}",
        run.all()
    );
    assert!(owed_record(&env, "inst-a").exists());

    // A dead process: also a failure.
    let mut dead = std::process::Command::new("/bin/true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    fs::write(&pidfile, format!("{dead_pid}\n")).unwrap();
    let run = env.once(&[]);
    run.assert_code(1);
    assert!(run.all().contains("is not running"), "{}", run.all());

    // The process is there now: delivered once, record cleared.
    let app = App::start(env.dir.path(), "app1");
    fs::write(&pidfile, format!("{}\n", app.pid())).unwrap();
    env.once(&[]).assert_code(0);
    assert!(wait_until(LIMIT, || app.hups() == 1));
    assert!(!owed_record(&env, "inst-a").exists());

    // The app restarts with a new PID; the next rotation reaches the new one.
    drop(app);
    let app2 = App::start(env.dir.path(), "app2");
    fs::write(&pidfile, format!("{}\n", app2.pid())).unwrap();
    env.standin.rotate("inst-a", "international");
    env.once(&[]).assert_code(0);
    assert!(wait_until(LIMIT, || app2.hups() == 1));
    env.once(&[]).assert_code(0);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(app2.hups(), 1, "no signal without a change");
}

#[test]
fn one_daemon_rereads_the_pidfile_on_every_delivery() {
    let mut env = Env::new();
    let pidfile = signal_instance(&mut env);
    env.sync
        .push_str("interval = \"1s\"\njitter = \"0s\"\nmax_backoff = \"2s\"\n");
    let app1 = App::start(env.dir.path(), "app1");
    fs::write(&pidfile, format!("{}\n", app1.pid())).unwrap();
    let d = env.daemon(&[]);
    assert!(wait_until(LIMIT, || app1.hups() == 1), "{}", d.log());
    assert!(wait_until(LIMIT, || !owed_record(&env, "inst-a").exists()));

    // The application restarts under a new PID while the daemon runs: the
    // next change reaches the new process, not the one read before.
    let app2 = App::start(env.dir.path(), "app2");
    fs::write(&pidfile, format!("{}\n", app2.pid())).unwrap();
    drop(app1);
    env.standin.rotate("inst-a", "international");
    assert!(wait_until(LIMIT, || app2.hups() == 1), "{}", d.log());

    // The pidfile disappears: the next change's delivery fails and stays
    // owed; once the pidfile is back, the retry reaches the process with no
    // further change.
    fs::remove_file(&pidfile).unwrap();
    env.standin.rotate("inst-a", "international");
    d.wait_log("cannot read the pidfile", 1, LIMIT);
    assert!(owed_record(&env, "inst-a").exists());
    let app3 = App::start(env.dir.path(), "app3");
    fs::write(&pidfile, format!("{}\n", app3.pid())).unwrap();
    assert!(wait_until(LIMIT, || app3.hups() == 1), "{}", d.log());
    assert!(wait_until(LIMIT, || !owed_record(&env, "inst-a").exists()));
    assert_eq!(app2.hups(), 1, "the old process got nothing more");
    assert_eq!(
        fs::read(env.path("out/a.crt")).unwrap(),
        env.served("inst-a", "international")
    );
}

#[test]
fn an_unwritable_state_dir_blocks_the_replacement_not_just_the_hook() {
    let mut env = Env::new();
    env.instance("inst-a");
    // The state dir cannot be made, not even by root: /proc takes no new
    // directory. (A state dir that is a file is a config error:
    // cli_and_config::a_state_dir_that_is_a_file_or_a_dangling_link_is_named.)
    env.sync
        .push_str("state_dir = \"/proc/dds-certsync-state\"\n");
    let run = env.once(&[]);
    run.assert_code(1);
    assert!(run.all().contains("sync.state_dir"), "{}", run.all());
    assert!(!env.out("inst-a", "national").exists());
    assert!(env.hook_runs("inst-a").is_empty());
}

#[test]
fn a_hook_taken_out_of_the_config_is_owed_no_more() {
    let mut env = Env::new();
    breakable_instance(&mut env, "inst-a");
    env.once(&[]).assert_code(0);
    fs::write(env.path("hook-broken"), "").unwrap();
    env.standin.rotate("inst-a", "international");
    env.once(&[]).assert_code(1);
    assert!(owed_record(&env, "inst-a").exists());

    // The same instance without its hook: the record goes, nothing runs,
    // and the round is a success.
    env.instances.clear();
    env.raw_instance(
        "id = \"inst-a\"\nname = \"name-inst-a\"\ninternational = \"out/inst-a-international.crt\"\nnational = \"out/inst-a-national.crt\"",
    );
    let run = env.once(&[]);
    run.assert_code(0);
    assert!(
        run.stderr.contains("no hook is configured any more"),
        "{}",
        run.all()
    );
    assert!(!owed_record(&env, "inst-a").exists());
    assert_eq!(env.hook_runs("inst-a").len(), 1);
}
