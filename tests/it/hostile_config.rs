//! A config file someone else controls: FIFOs, devices, huge files, edits
//! racing the start, and configs `--check` must refuse because they would
//! fail at run time.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::stat::Mode;

use crate::support::*;

/// Generous for a loaded 2-core CI box; a passing run takes a fraction.
const LIMIT: Duration = Duration::from_secs(30);

/// Runs `cmd` to its end, or kills it after `limit`: `None` if it had to be
/// killed. Output goes to files, so a child that writes a lot cannot stall.
fn run_within(mut cmd: Command, limit: Duration) -> Option<Run> {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .expect("start binary");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    status.map(|s| Run {
        code: s.code().unwrap_or(-1),
        stdout: fs::read_to_string(&out).unwrap_or_default(),
        stderr: fs::read_to_string(&err).unwrap_or_default(),
    })
}

/// The binary with `-c path`, under an address-space limit so that a
/// regression that reads without bound fails the test instead of the machine.
fn bin_with_config(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("/bin/sh");
    c.arg("-c")
        .arg("ulimit -v 1000000 && exec \"$0\" \"$@\"")
        .arg(BIN)
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("DDS_CERTSYNC_CONFIG");
    c
}

/// A plain HTTP/1.1 GET with a short timeout: the status, or `None`.
fn http_status(port: u16, path: &str) -> Option<u16> {
    http(local(port), "GET", path, Duration::from_secs(3)).map(|(status, _)| status)
}

#[test]
fn a_fifo_or_a_device_as_the_config_is_refused_at_once_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("config.toml");
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
    let cases: [(&Path, &str); 2] = [
        (&fifo, "is a FIFO, not a regular file"),
        (
            Path::new("/dev/zero"),
            "is a character device, not a regular file",
        ),
    ];
    for (config, found) in cases {
        for args in [&["--check"][..], &["--once"], &[]] {
            let t = Instant::now();
            let run = run_within(bin_with_config(config, args), LIMIT).unwrap_or_else(|| {
                panic!(
                    "-c {} {args:?} still running after {LIMIT:?}",
                    config.display()
                )
            });
            run.assert_code(2);
            assert!(
                run.stderr.contains(&config.display().to_string()) && run.stderr.contains(found),
                "{args:?}: expected the path and {found:?}\n{}",
                run.all()
            );
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{args:?} took {:?}",
                t.elapsed()
            );
        }
    }
}

#[test]
fn a_config_file_over_1_mib_is_refused_naming_the_limit() {
    let mut env = Env::new();
    env.instance("inst-a");
    let cfg = env.write_config();
    // A valid config padded with a comment past the cap.
    let mut text = env.config_text();
    text.push('#');
    text.push_str(&"x".repeat(1024 * 1024));
    text.push('\n');
    fs::write(&cfg, text).unwrap();
    let run = run_within(bin_with_config(&cfg, &["--check"]), LIMIT).expect("--check ends");
    run.assert_code(2);
    assert!(
        run.stderr.contains(&cfg.display().to_string())
            && run.stderr.contains("is larger than 1048576 bytes"),
        "{}",
        run.all()
    );
}

#[test]
fn a_fifo_renamed_over_the_config_leaves_the_daemon_answering_stoppable_and_on_the_old_config() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.sync.push_str("interval = \"1s\"\njitter = \"0s\"\n");
    env.instances
        .push("\n[server]\nlisten = \"127.0.0.1:0\"\n".into());
    let mut d = env.daemon(&[]);
    let port = d.listen_addr(1).port();
    assert!(
        wait_until(LIMIT, || env.hook_runs("inst-a").len() == 1),
        "{}",
        d.log()
    );
    assert!(wait_until(LIMIT, || http_status(port, "/healthz") == Some(200)));

    // A FIFO with no writer, renamed over the config: a blocking open of it
    // would never return.
    let fifo = env.path("config.fifo");
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o644)).unwrap();
    fs::rename(&fifo, env.path("config.toml")).unwrap();
    d.wait_log(
        "is a FIFO, not a regular file; keeping the running config",
        1,
        LIMIT,
    );
    // SIGHUP reads it too.
    d.signal(Signal::SIGHUP);
    d.wait_log("reload refused, keeping the running config", 1, LIMIT);
    for _ in 0..5 {
        assert_eq!(http_status(port, "/healthz"), Some(200), "{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }

    // The old config keeps working: a rotation is still picked up.
    env.standin.rotate("inst-a", "national");
    assert!(
        wait_until(LIMIT, || fs::read(env.out("inst-a", "national")).ok()
            == Some(env.served("inst-a", "national"))),
        "{}",
        d.log()
    );
    assert!(wait_until(LIMIT, || env.hook_runs("inst-a").len() == 2));

    let t = Instant::now();
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(LIMIT), Some(0), "{}", d.log());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "SIGTERM took {:?}",
        t.elapsed()
    );
}

#[test]
fn a_fifo_as_a_secret_file_or_the_credentials_file_is_refused_at_once() {
    let mut env = Env::new();
    env.instance("inst-a");
    let fifo = env.path("secret.fifo");
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
    env.auth = format!("method = \"token\"\ntoken_file = \"{}\"\n", fifo.display());
    env.write_config();
    let mut cmd = env.command(&["--check"]);
    cmd.env_remove("HUAWEICLOUD_SDK_AK")
        .env_remove("HUAWEICLOUD_SDK_SK");
    let run = run_within(cmd, LIMIT).expect("--check with a FIFO token_file ends");
    run.assert_code(2);
    assert!(
        run.stderr.contains("auth.token_file") && run.stderr.contains("is a FIFO"),
        "{}",
        run.all()
    );

    // `auto` reads the official SDKs' credentials file.
    let text = env.config_text();
    let start = text.find("[auth]").unwrap();
    let end = start + text[start..].find("[sync]").unwrap();
    fs::write(
        env.path("config.toml"),
        format!("{}{}", &text[..start], &text[end..]),
    )
    .unwrap();
    let mut cmd = env.command(&["--check"]);
    cmd.env_remove("HUAWEICLOUD_SDK_AK")
        .env_remove("HUAWEICLOUD_SDK_SK")
        .env("HUAWEICLOUD_SDK_CREDENTIALS_FILE", &fifo);
    let run = run_within(cmd, LIMIT).expect("--check with a FIFO credentials file ends");
    run.assert_code(2);
    assert!(
        run.stderr.contains(&fifo.display().to_string()) && run.stderr.contains("is a FIFO"),
        "{}",
        run.all()
    );
}

fn set_nonblocking(fd: &std::os::fd::OwnedFd, on: bool) {
    use nix::libc;
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a descriptor the caller owns.
    let rc = unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        let fl = if on {
            fl | libc::O_NONBLOCK
        } else {
            fl & !libc::O_NONBLOCK
        };
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl)
    };
    assert_eq!(rc, 0);
}

/// Waits until `fd` (an inotify descriptor) has an event, up to `limit`.
fn wait_inotify(fd: i32, limit: Duration) -> bool {
    use nix::libc;
    let mut buf = [0u8; 4096];
    wait_until(limit, || {
        // SAFETY: reads into a buffer of the given length from an fd we own.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        n > 0
    })
}

#[test]
fn an_edit_landing_between_the_start_up_load_and_the_watches_is_applied() {
    use nix::libc;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;

    let mut env = Env::new();
    env.instance("inst-a");
    let cfg = env.write_config();
    env.instance("inst-b");
    let edited = env.config_text();

    // "The config was read and closed", from the kernel.
    // SAFETY: plain syscalls on a descriptor this test owns.
    let ino = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    assert!(ino >= 0);
    let ino = unsafe { OwnedFd::from_raw_fd(ino) };
    let c_path = std::ffi::CString::new(cfg.as_os_str().as_bytes()).unwrap();
    let wd = unsafe {
        libc::inotify_add_watch(ino.as_raw_fd(), c_path.as_ptr(), libc::IN_CLOSE_NOWRITE)
    };
    assert!(wd >= 0);

    // The daemon's stderr is a pipe that is full before it starts: its first
    // log line (at the latest "daemon started") blocks until the pipe is
    // drained, after the config was read and before anything else happens.
    let (rd, wr) = nix::unistd::pipe().unwrap();
    set_nonblocking(&wr, true);
    let mut w = fs::File::from(wr);
    while w.write(b"\n").is_ok() {}
    let wr = OwnedFd::from(w);
    set_nonblocking(&wr, false);

    let log = env.path("daemon.log");
    let child = env
        .command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::from(wr))
        .spawn()
        .unwrap();
    let d = Daemon {
        child,
        log: log.clone(),
    };
    assert!(
        wait_inotify(ino.as_raw_fd(), LIMIT),
        "the daemon never read its config"
    );
    // The edit lands after the start-up read, before the daemon can go on.
    fs::write(env.path("config.toml.new"), &edited).unwrap();
    fs::rename(env.path("config.toml.new"), &cfg).unwrap();
    std::thread::spawn(move || {
        let mut r = fs::File::from(rd);
        let mut out = fs::File::create(&log).unwrap();
        let _ = std::io::copy(&mut r, &mut out);
    });

    assert!(
        wait_until(LIMIT, || fs::read(env.out("inst-b", "international")).ok()
            == Some(env.served("inst-b", "international"))),
        "the edit was never applied\n{}",
        d.log().trim_start()
    );
    assert!(
        d.log().contains("config reloaded"),
        "{}",
        d.log().trim_start()
    );
}

/// `--check` exits 2 naming `key` for a config the edit makes, and so do
/// `--once` and the daemon, before contacting anything.
fn refused(env: &Env, edit: impl Fn(&str) -> String, key: &str, extra_env: &[(&str, &str)]) {
    let text = edit(&env.config_text());
    fs::write(env.path("config.toml"), &text).unwrap();
    for args in [&["--check"][..], &["--once"], &[]] {
        let mut cmd = env.command(args);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let run = run_within(cmd, LIMIT).expect("a config error ends the run");
        run.assert_code(2);
        assert!(
            run.stderr.contains(key),
            "{args:?}: expected {key:?} in\n{}\nconfig:\n{text}",
            run.all()
        );
    }
    assert!(
        env.standin.requests().is_empty(),
        "a config error contacts nothing"
    );
}

#[test]
fn check_refuses_configs_that_would_fail_at_run_time_naming_the_key() {
    let mut env = Env::new();
    env.instance("inst-a");
    let out_a = "out/inst-a-international.crt";
    // A NUL in a path.
    refused(
        &env,
        |t| t.replace(out_a, "out/inst-a\\u0000.crt"),
        "instances[0].international",
        &[],
    );
    // A secret file that is empty, or holds only whitespace.
    let token = env.path("token");
    let token_file = |t: &str| {
        let start = t.find("token = ").unwrap();
        let end = start + t[start..].find('\n').unwrap();
        format!(
            "{}token_file = \"{}\"{}",
            &t[..start],
            env.path("token").display(),
            &t[end..]
        )
    };
    for blank in ["", " \n"] {
        fs::write(&token, blank).unwrap();
        refused(&env, token_file, "auth.token_file", &[]);
    }
    // A *_env variable holding only whitespace.
    let token_env = |t: &str| {
        let start = t.find("token = ").unwrap();
        let end = start + t[start..].find('\n').unwrap();
        format!("{}token_env = \"DDS_TEST_TOKEN\"{}", &t[..start], &t[end..])
    };
    refused(&env, token_env, "auth.token", &[("DDS_TEST_TOKEN", " \t ")]);
    // Two outputs that are one file through a symlinked directory.
    std::os::unix::fs::symlink(env.path("out"), env.path("out-link")).unwrap();
    fs::create_dir_all(env.path("out")).unwrap();
    refused(
        &env,
        |t| {
            t.replace(
                "national = \"out/inst-a-national.crt\"",
                "national = \"out-link/inst-a-international.crt\"",
            )
        },
        "instances[0].national",
        &[],
    );
    // A mode with setuid, setgid or sticky bits, or none at all.
    for mode in ["4644", "2755", "1644", "0000"] {
        refused(
            &env,
            |t| t.replace("hook_timeout", &format!("mode = \"{mode}\"\nhook_timeout")),
            "instances[0].mode",
            &[],
        );
    }
    assert!(!env.out("inst-a", "international").exists());
}

#[test]
fn a_relative_hook_program_runs_from_the_config_dir_whatever_the_working_dir() {
    let mut env = Env::new();
    env.instance("inst-a");
    fs::create_dir_all(env.path("hooks")).unwrap();
    let marker = env.path("hook-ran");
    fs::write(
        env.path("hooks/reload.sh"),
        format!("#!/bin/sh\necho ran > \"{}\"\n", marker.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(
        env.path("hooks/reload.sh"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let text = env.config_text();
    let start = text.find("on_change = ").unwrap();
    let end = start + text[start..].find('\n').unwrap();
    let text = format!(
        "{}on_change = [\"./hooks/reload.sh\"]{}",
        &text[..start],
        &text[end..]
    );
    fs::write(env.path("config.toml"), text).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let mut cmd = env.command(&["--once"]);
    cmd.current_dir(elsewhere.path());
    let run = run_within(cmd, LIMIT).expect("--once ends");
    run.assert_code(0);
    assert_eq!(
        fs::read_to_string(&marker).unwrap(),
        "ran\n",
        "{}",
        run.all()
    );
}
