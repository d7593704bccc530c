//! Hostile neighbours: whoever can write the shared volume (or the download
//! host) puts something other than what dds-certsync expects in its way.
//!
//! * a symlink at an output path, dangling, to a 0600 file, or owned by
//!   another user: replaced by a regular file of the configured (else the
//!   default) mode and the daemon's user, the link's target untouched;
//! * a FIFO, socket, directory or device node at an output path: an error
//!   naming the path, left alone, with nothing blocking (`--once` ends long
//!   before `--deadline`; the daemon's `/readyz` and `/metrics` answer);
//! * a blocking-pool thread stuck for good: `--deadline` and SIGTERM still
//!   end the process;
//! * bodies and answers that must be refused: an indented private key, a
//!   certificate not valid yet or not a CA, a category listed twice;
//! * an output's directory that is a dangling link or a file: the summary
//!   line names it, one line whatever the link's text holds.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::time::{Duration, Instant};

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(30);

/// An instance with a single `international` output at `out/{file}`.
fn single(env: &mut Env, id: &str, file: &str, extra: &str) {
    env.standin.add_instance(PROJECT, id);
    env.standin.set_categories(id, &["international"]);
    env.raw_instance(&format!(
        "id = \"{id}\"\nname = \"name-{id}\"\ninternational = \"out/{file}\"\n{extra}"
    ));
}

/// Runs the binary with `args` in the background, output to files.
fn spawn(env: &Env, args: &[&str]) -> Daemon {
    env.write_config();
    let log = env.path("run.log");
    let child = env
        .command(args)
        .stdout(fs::File::create(env.path("run.out")).unwrap())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .expect("start binary");
    Daemon { child, log }
}

/// One HTTP/1.1 GET with a 5 s limit; `None` if no full answer came.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http(local(port), "GET", path, Duration::from_secs(5))
}

#[test]
fn a_symlinked_output_is_replaced_by_a_regular_file_never_taking_mode_or_owner_from_the_link() {
    let mut env = Env::new();
    let secret = env.path("secret");
    fs::create_dir_all(&secret).unwrap();
    fs::create_dir_all(env.path("out")).unwrap();
    let private = secret.join("private.pem");
    fs::write(&private, b"someone else's file").unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).unwrap();

    // (id, link target, configured mode, expected mode)
    let cases = [
        ("dangling", env.path("out/nowhere.crt"), "", 0o644),
        ("to-0600", private.clone(), "", 0o644),
        ("foreign", private.clone(), "", 0o644),
        ("with-mode", private.clone(), "mode = \"0640\"\n", 0o640),
    ];
    for (id, target, extra, _) in &cases {
        let link = env.path(&format!("out/{id}.crt"));
        symlink(target, &link).unwrap();
        single(&mut env, id, &format!("{id}.crt"), extra);
    }
    // A link owned by another user (the tests run as root, like the daemon in CI).
    let foreign = env.path("out/foreign.crt");
    std::os::unix::fs::lchown(&foreign, Some(65534), Some(65534)).unwrap();

    let run = env.once(&[]);
    run.assert_code(0);
    let me = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    for (id, _, _, mode) in &cases {
        let p = env.path(&format!("out/{id}.crt"));
        let m = fs::symlink_metadata(&p).unwrap();
        assert!(m.is_file(), "{id}: still a link\n{}", run.all());
        assert_eq!(m.mode() & 0o7777, *mode, "{id}: mode\n{}", run.all());
        assert_eq!((m.uid(), m.gid()), me, "{id}: owner");
        assert_eq!(fs::read(&p).unwrap(), env.served(id, "international"));
        assert!(
            run.stderr.lines().any(|l| l.contains(&format!("name-{id}"))
                && l.contains("international")
                && l.contains(&p.display().to_string())
                && l.contains("was a symbolic link; replaced by a regular file")),
            "{id}: no warning naming instance, category and path\n{}",
            run.all()
        );
    }
    // The targets were neither written nor changed nor created.
    assert_eq!(fs::read(&private).unwrap(), b"someone else's file");
    let m = fs::metadata(&private).unwrap();
    assert_eq!(
        (m.mode() & 0o7777, m.uid()),
        (0o600, me.0),
        "target's mode and owner"
    );
    assert!(!env.path("out/nowhere.crt").exists());
    assert_eq!(ls(&secret), vec!["private.pem"]);
}

#[test]
fn a_fifo_at_an_output_path_fails_fast_and_names_the_path() {
    let mut env = Env::new();
    env.instance("inst-a").instance("inst-b");
    fs::create_dir_all(env.path("out")).unwrap();
    let fifo = env.out("inst-a", "international");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    // Other things that are not files, each its own instance.
    let sock_path = env.path("out/sock.crt");
    let _sock = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    single(&mut env, "sock", "sock.crt", "");
    fs::create_dir_all(env.path("out/dir.crt")).unwrap();
    single(&mut env, "dir", "dir.crt", "");
    let dev = env.path("out/dev.crt");
    let dev_made = nix::sys::stat::mknod(
        &dev,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3), // like /dev/null
    )
    .is_ok();
    if dev_made {
        single(&mut env, "dev", "dev.crt", "");
    }

    let deadline = Duration::from_secs(60);
    let start = Instant::now();
    let mut run = spawn(&env, &["--once", "--deadline", "60s"]);
    let code = run.wait_exit(deadline / 2);
    let elapsed = start.elapsed();
    let out = fs::read_to_string(env.path("run.out")).unwrap_or_default();
    assert_eq!(
        code,
        Some(1),
        "--once must end well within --deadline ({elapsed:?})\n{out}\n{}",
        run.log()
    );

    let line = |id: &str| {
        out.lines()
            .find(|l| l.contains(&format!("({id})")))
            .unwrap_or_else(|| panic!("no summary line for {id}\n{out}"))
            .to_string()
    };
    let a = line("inst-a");
    assert!(a.starts_with("FAILED"), "{a}");
    assert!(a.contains(&fifo.display().to_string()), "{a}");
    assert!(a.contains("is a FIFO, not a regular file"), "{a}");
    // The other category of the same instance, and the other instance, went on.
    assert!(a.contains("national created"), "{a}");
    assert_eq!(
        fs::read(env.out("inst-a", "national")).unwrap(),
        env.served("inst-a", "national")
    );
    assert!(line("inst-b").starts_with("ok"), "{out}");
    let mut others = vec![("sock", "a socket"), ("dir", "a directory")];
    if dev_made {
        others.push(("dev", "a character device"));
    }
    for (id, what) in others {
        let l = line(id);
        assert!(l.starts_with("FAILED"), "{l}");
        assert!(
            l.contains(&env.path(&format!("out/{id}.crt")).display().to_string()),
            "{l}"
        );
        assert!(l.contains(&format!("is {what}, not a regular file")), "{l}");
    }
    // Everything was left alone.
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(
        fs::symlink_metadata(&sock_path)
            .unwrap()
            .file_type()
            .is_socket()
    );
    assert!(
        fs::symlink_metadata(env.path("out/dir.crt"))
            .unwrap()
            .is_dir()
    );
    assert!(ls(&env.path("out/dir.crt")).is_empty());
    if dev_made {
        assert!(
            fs::symlink_metadata(&dev)
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }
}

#[test]
fn the_daemon_keeps_answering_readyz_and_metrics_with_a_fifo_at_an_output_path() {
    let mut env = Env::new();
    env.instance("inst-a");
    fs::create_dir_all(env.path("out")).unwrap();
    let fifo = env.out("inst-a", "international");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    env.instances
        .push("\n[server]\nlisten = \"127.0.0.1:0\"\n".into());
    let d = env.daemon(&[]);
    let port = d.listen_addr(1).port();
    d.wait_log("is a FIFO, not a regular file", 1, LIMIT);
    assert!(
        d.log().contains(&fifo.display().to_string()),
        "the error names the path\n{}",
        d.log()
    );

    // Every request gets a full answer, again and again: no thread is left
    // blocked behind the FIFO.
    for _ in 0..5 {
        let (code, body) = http_get(port, "/readyz")
            .unwrap_or_else(|| panic!("/readyz did not answer\n{}", d.log()));
        assert_eq!(code, 503, "{body}");
        assert!(body.contains(&fifo.display().to_string()), "{body}");
        assert!(body.contains("FIFO"), "{body}");
        let (code, body) = http_get(port, "/metrics")
            .unwrap_or_else(|| panic!("/metrics did not answer\n{}", d.log()));
        assert_eq!(code, 200);
        assert!(body.contains("dds_certsync_"), "{body}");
    }
    // The national file was written all the same; the FIFO is still there.
    assert_eq!(
        fs::read(env.out("inst-a", "national")).unwrap(),
        env.served("inst-a", "national")
    );
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
}

/// [`spawn`], with a blocking-pool thread that hangs for good at the
/// certificate's rename (as on a FIFO or a hung network file system).
fn spawn_hanging(env: &Env, args: &[&str]) -> Daemon {
    env.write_config();
    let log = env.path("run.log");
    let child = env
        .command(args)
        .env("DDS_CERTSYNC_HANG_AT", "before-rename")
        .stdout(fs::File::create(env.path("run.out")).unwrap())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .expect("start binary");
    Daemon { child, log }
}

#[test]
fn the_deadline_and_sigterm_win_over_a_blocking_read_that_never_returns() {
    // A debug-build failpoint blocks a blocking-pool thread for good, just
    // before the certificate's rename.
    let mut env = Env::new();
    env.instance("inst-a");

    // --deadline.
    let start = Instant::now();
    let mut run = spawn_hanging(&env, &["--once", "--deadline", "3s"]);
    let code = run.wait_exit(LIMIT);
    assert_eq!(
        code,
        Some(1),
        "--deadline 3s did not end the run ({:?})\n{}",
        start.elapsed(),
        run.log()
    );
    assert!(
        run.log().contains("failpoint before-rename: hanging"),
        "{}",
        run.log()
    );
    let out = fs::read_to_string(env.path("run.out")).unwrap_or_default();
    assert!(out.contains("did not finish within the deadline"), "{out}");

    // SIGTERM, once the thread is known to be stuck.
    let mut run = spawn_hanging(&env, &["--once", "--deadline", "10m"]);
    run.wait_log("failpoint before-rename: hanging", 1, LIMIT);
    run.signal(nix::sys::signal::Signal::SIGTERM);
    let code = run.wait_exit(LIMIT);
    assert_eq!(code, Some(1), "SIGTERM did not end the run\n{}", run.log());
    let out = fs::read_to_string(env.path("run.out")).unwrap_or_default();
    assert!(out.contains("interrupted before it finished"), "{out}");
    // The rename never happened.
    assert!(!env.out("inst-a", "international").exists());
}

#[test]
fn an_indented_private_key_block_is_refused_and_the_file_kept() {
    let mut env = Env::new();
    single(&mut env, "inst-a", "a.crt", "");
    let cert = env.standin.cert_pem("inst-a", "international");
    let key: String = dds_standin::private_key_pem()
        .lines()
        .map(|l| format!("   {l}\n"))
        .collect();
    env.standin
        .set_cert_pem("inst-a", "international", format!("{cert}{key}").as_bytes());
    let run = env.once(&[]);
    run.assert_code(1);
    assert!(run.stdout.contains("PRIVATE KEY"), "{}", run.all());
    assert!(!env.path("out/a.crt").exists(), "{}", run.all());
}

#[test]
fn certificates_not_yet_valid_or_not_a_ca_are_refused_unless_allowed_and_v1_roots_pass() {
    let mut env = Env::new();
    single(&mut env, "future", "future.crt", "");
    single(&mut env, "leaf", "leaf.crt", "");
    single(&mut env, "leaf-ok", "leaf-ok.crt", "allow_non_ca = true\n");
    single(&mut env, "v1", "v1.crt", "");
    let future = dds_standin::not_yet_valid_cert_pem(Duration::from_secs(3600));
    let leaf = dds_standin::non_ca_cert_pem();
    let v1 = dds_standin::v1_cert_pem("Old v1 Root");
    env.standin
        .set_cert_pem("future", "international", future.as_bytes());
    env.standin
        .set_cert_pem("leaf", "international", leaf.as_bytes());
    env.standin
        .set_cert_pem("leaf-ok", "international", leaf.as_bytes());
    env.standin
        .set_cert_pem("v1", "international", v1.as_bytes());
    let run = env.once(&[]);
    run.assert_code(1);
    let line = |id: &str| {
        run.stdout
            .lines()
            .find(|l| l.contains(&format!("({id})")))
            .unwrap_or_else(|| panic!("no line for {id}\n{}", run.all()))
            .to_string()
    };
    let l = line("future");
    assert!(
        l.starts_with("FAILED") && l.contains("is not valid before"),
        "{l}"
    );
    assert!(l.contains("DDS Stand-in not yet valid CA"), "subject: {l}");
    let l = line("leaf");
    assert!(l.starts_with("FAILED") && l.contains("not a CA"), "{l}");
    assert!(l.contains("DDS Stand-in leaf, not a CA"), "subject: {l}");
    assert!(line("leaf-ok").starts_with("ok"), "{}", run.all());
    assert!(line("v1").starts_with("ok"), "{}", run.all());
    assert!(!env.path("out/future.crt").exists());
    assert!(!env.path("out/leaf.crt").exists());
    let allowed = dds_certsync::certcheck::Policy { allow_non_ca: true };
    let leaf_pem = dds_certsync::certcheck::verify_with(
        leaf.as_bytes(),
        std::time::SystemTime::now(),
        allowed,
    )
    .unwrap()
    .pem;
    assert_eq!(fs::read(env.path("out/leaf-ok.crt")).unwrap(), leaf_pem);
    assert_eq!(
        fs::read(env.path("out/v1.crt")).unwrap(),
        canonical(v1.as_bytes())
    );
    // The subject is logged when accepted too, with a warning for the leaf.
    assert!(
        run.stderr.lines().any(|l| l.contains("name-leaf-ok")
            && l.contains("DDS Stand-in leaf, not a CA")
            && l.contains("allow_non_ca")),
        "{}",
        run.all()
    );
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("name-v1") && l.contains("Old v1 Root") && l.contains("fetched")),
        "{}",
        run.all()
    );
}

#[test]
fn an_answer_listing_a_category_twice_is_refused_naming_the_instance() {
    let mut env = Env::new();
    env.instance("inst-a").instance("inst-b");
    // Two international entries, with different (both valid) links.
    env.standin
        .set_categories("inst-a", &["international", "national", "international"]);
    let run = env.once(&[]);
    run.assert_code(1);
    let a = run
        .stdout
        .lines()
        .find(|l| l.contains("(inst-a)"))
        .unwrap_or_else(|| panic!("{}", run.all()));
    assert!(a.starts_with("FAILED"), "{a}");
    assert!(a.contains("name-inst-a"), "{a}");
    assert!(
        a.contains("lists category \"international\" 2 times"),
        "{a}"
    );
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("inst-a") && l.contains("lists category")),
        "{}",
        run.all()
    );
    // Nothing of inst-a was written, not even the unambiguous category.
    assert!(!env.out("inst-a", "international").exists());
    assert!(!env.out("inst-a", "national").exists());
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("(inst-b)"))
    );
}

#[test]
fn an_output_directory_that_is_a_dangling_link_is_named_in_one_summary_line() {
    let mut env = Env::new();
    env.instance("inst-b");
    fs::create_dir_all(env.path("out")).unwrap();
    // A neighbour's link with a line break and an escape sequence in its
    // target, where the output's directory should be.
    let link = env.path("out/gone");
    let target = "/nonexistent/x\nok     forged\x1b[31m";
    symlink(target, &link).unwrap();
    single(&mut env, "dl", "gone/ca.crt", "");
    // And one whose parent is a regular file.
    fs::write(env.path("out/plain"), b"x").unwrap();
    single(&mut env, "pf", "plain/sub/ca.crt", "");

    let mut run = spawn(&env, &["--once", "--deadline", "60s"]);
    let code = run.wait_exit(LIMIT);
    let out = fs::read_to_string(env.path("run.out")).unwrap_or_default();
    assert_eq!(code, Some(1), "{out}\n{}", run.log());
    // One line per instance: the link's text cannot start a line of its own.
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(!out.contains('\x1b'), "{out:?}");
    let line = |id: &str| {
        out.lines()
            .find(|l| l.contains(&format!("({id})")))
            .unwrap_or_else(|| panic!("no summary line for {id}\n{out}"))
            .to_string()
    };
    let dl = line("dl");
    assert!(dl.starts_with("FAILED"), "{dl}");
    assert!(
        dl.contains(&format!(
            "{} is a symbolic link to /nonexistent/x\\nok     forged\\x1b[31m, which does not exist",
            link.display()
        )),
        "{dl}"
    );
    let pf = line("pf");
    assert!(
        pf.contains(&format!(
            "{} is a regular file, not a directory",
            env.path("out/plain").display()
        )),
        "{pf}"
    );
    assert!(line("inst-b").starts_with("ok"), "{out}");
    // Nothing was made through the link or in place of the file.
    assert_eq!(fs::read_link(&link).unwrap().to_str(), Some(target));
    assert!(!std::path::Path::new("/nonexistent").exists());
    assert_eq!(fs::read(env.path("out/plain")).unwrap(), b"x");
}
