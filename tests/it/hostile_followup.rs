//! Hostile neighbours, continued: a pidfile swapped for a symlink, a pidfile
//! naming a process that has exited, a FIFO in place of a hook record, a
//! stdout nobody reads, and a stalled stderr at a crash or a panic.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::symlink;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(60);

fn signal_instance(env: &mut Env, pidfile: &Path) {
    env.instances.clear();
    env.raw_instance(&format!(
        "id = \"inst-a\"\ninternational = \"out/a.crt\"\nreload_signal = \"SIGHUP\"\npidfile = \"{}\"\n",
        pidfile.display()
    ));
}

fn sleeper() -> Child {
    Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .expect("start sleep")
}

/// How `child` ended, if it did within `limit`.
fn ended(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(limit, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status
}

#[test]
fn a_symlink_at_the_pidfile_path_is_refused_but_a_symlinked_directory_is_followed() {
    let mut env = Env::new();
    env.standin.add_instance(PROJECT, "inst-a");
    let mut app = sleeper();
    // A genuine pidfile, of the right owner, naming a live process.
    let real = env.path("real");
    fs::create_dir_all(&real).unwrap();
    fs::write(real.join("app.pid"), format!("{}\n", app.id())).unwrap();

    // A link at the pidfile path itself: refused, named, kept owed.
    let link = env.path("app.pid");
    symlink(real.join("app.pid"), &link).unwrap();
    signal_instance(&mut env, &link);
    let run = env.once(&[]);
    run.assert_code(1);
    let all = run.all();
    assert!(all.contains(&link.display().to_string()), "{all}");
    assert!(all.contains("is a symbolic link"), "{all}");
    assert!(
        app.try_wait().unwrap().is_none(),
        "the process was signalled"
    );
    assert!(env.path("state/hook-owed-inst-a.json").exists());

    // A link among the parent directories (as /var/run -> /run): delivered.
    let dir_link = env.path("run");
    symlink(&real, &dir_link).unwrap();
    signal_instance(&mut env, &dir_link.join("app.pid"));
    env.once(&[]).assert_code(0);
    let status = ended(&mut app, LIMIT);
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(nix::libc::SIGHUP),
        "no SIGHUP"
    );
    assert!(!env.path("state/hook-owed-inst-a.json").exists());
}

#[test]
fn a_pidfile_naming_an_exited_process_fails_clearly_and_a_live_one_is_signalled() {
    let mut env = Env::new();
    env.standin.add_instance(PROJECT, "inst-a");
    let pidfile = env.path("app.pid");
    signal_instance(&mut env, &pidfile);

    // Exited but not yet reaped (a zombie): /proc still shows it and kill()
    // succeeds, yet nobody would get the signal.
    let mut gone = Command::new("/bin/true").spawn().unwrap();
    let pid = gone.id();
    let zombie = wait_until(LIMIT, || {
        fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    });
    assert!(zombie, "/bin/true did not exit");
    fs::write(&pidfile, format!("{pid}\n")).unwrap();
    let run = env.once(&[]);
    run.assert_code(1);
    let all = run.all();
    assert!(
        all.contains(&format!("process {pid} is not running")),
        "{all}"
    );
    assert!(all.contains(&pidfile.display().to_string()), "{all}");
    assert!(env.path("state/hook-owed-inst-a.json").exists());

    // Reaped: gone from /proc.
    gone.wait().unwrap();
    let run = env.once(&[]);
    run.assert_code(1);
    assert!(
        run.all().contains(&format!("process {pid} is not running")),
        "{}",
        run.all()
    );

    // A live process gets the signal.
    let mut app = sleeper();
    fs::write(&pidfile, format!("{}\n", app.id())).unwrap();
    env.once(&[]).assert_code(0);
    let status = ended(&mut app, LIMIT);
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(nix::libc::SIGHUP),
        "no SIGHUP"
    );
    assert!(!env.path("state/hook-owed-inst-a.json").exists());
}

#[test]
fn a_fifo_in_place_of_a_hook_record_fails_fast_and_names_the_path() {
    let mut env = Env::new();
    env.instance("inst-a");
    let state = env.path("state");
    fs::create_dir_all(&state).unwrap();
    let record = state.join("hook-owed-inst-a.json");
    nix::unistd::mkfifo(&record, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();

    env.write_config();
    let log = env.path("run.log");
    let child = env
        .command(&["--once", "--deadline", "10m"])
        .stdout(fs::File::create(env.path("run.out")).unwrap())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut run = Daemon { child, log };
    let code = run.wait_exit(LIMIT);
    let all = format!(
        "{}{}",
        fs::read_to_string(env.path("run.out")).unwrap_or_default(),
        run.log()
    );
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains(&record.display().to_string()), "{all}");
    assert!(all.contains("is a FIFO"), "{all}");
    // Like a corrupt record with nothing owed, it was cleared: the next run
    // syncs.
    env.once(&[]).assert_code(0);
    assert_eq!(
        fs::read(env.out("inst-a", "international")).unwrap(),
        env.served("inst-a", "international")
    );
}

/// A pipe whose buffer is full: (read end, kept open and never read; write
/// end, blocking again).
fn full_pipe() -> (OwnedFd, OwnedFd) {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let (r, w) = nix::unistd::pipe().unwrap();
    fcntl(&w, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
    let chunk = [b'x'; 4096];
    while nix::unistd::write(&w, &chunk).is_ok() {}
    fcntl(&w, FcntlArg::F_SETFL(OFlag::empty())).unwrap();
    (r, w)
}

#[test]
fn once_with_a_stdout_nobody_reads_ends_by_its_deadline_with_its_exit_code() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.write_config();
    let deadline = Duration::from_secs(20);

    let (_reader, writer) = full_pipe();
    let start = Instant::now();
    let mut child = env
        .command(&["--once", "--deadline", "20s"])
        .stdout(Stdio::from(writer))
        .stderr(fs::File::create(env.path("run.log")).unwrap())
        .spawn()
        .unwrap();
    let status = ended(&mut child, deadline + LIMIT);
    let log = fs::read_to_string(env.path("run.log")).unwrap_or_default();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{:?}\n{log}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < deadline + Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        fs::read(env.out("inst-a", "international")).unwrap(),
        env.served("inst-a", "international")
    );

    // --check alike.
    let (_reader, writer) = full_pipe();
    let mut child = env
        .command(&["--check"])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = ended(&mut child, LIMIT);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(status.and_then(|s| s.code()), Some(0), "--check");
}

#[test]
fn a_crash_point_or_a_panic_with_a_stalled_stderr_still_ends_the_process() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.write_config();
    let run = |var: &str, stderr: Stdio| {
        let mut child = env
            .command(&["--once", "--deadline", "10m"])
            .env(var, "before-rename")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let status = ended(&mut child, LIMIT);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    };

    // A crash point aborts, whether or not anyone reads stderr.
    let (_reader, writer) = full_pipe();
    let status = run("DDS_CERTSYNC_CRASH_AT", Stdio::from(writer));
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(nix::libc::SIGABRT),
        "{status:?}"
    );

    // A panic on the blocking pool fails the instance and the run ends.
    let (_reader, writer) = full_pipe();
    let status = run("DDS_CERTSYNC_PANIC_AT", Stdio::from(writer));
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{status:?}");

    // With a healthy stderr, the panic is logged.
    let out = env
        .command(&["--once", "--deadline", "10m"])
        .env("DDS_CERTSYNC_PANIC_AT", "before-rename")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("panicked at"), "{err}");
    assert!(err.contains("failpoint before-rename"), "{err}");
}
