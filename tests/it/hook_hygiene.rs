//! Hook hygiene, end to end through the real binary: `on_change` is an argv
//! run without a shell (metacharacters in an argument stay literal), the
//! hook's stdin is closed (not the daemon's), and its output is logged line
//! by line with the instance named.

use std::fs;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

/// A `[[instances]]` block for `id` whose hook is `argv` (quoted as TOML basic strings).
fn instance_with_hook(env: &mut Env, id: &str, argv: &[String]) {
    env.standin.add_instance(PROJECT, id);
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    env.raw_instance(&format!(
        "id = \"{id}\"\nname = \"name-{id}\"\ninternational = \"out/{id}.crt\"\non_change = [{}]\nhook_timeout = \"20s\"",
        argv.join(", ")
    ));
}

#[test]
fn shell_metacharacters_in_hook_arguments_stay_literal() {
    let mut env = Env::new();
    let planted = env.path("planted");
    let args_file = env.path("args.txt");
    // The script is ours; the arguments after it would be interpreted only
    // if the daemon handed the argv to a shell.
    let argv = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        format!("printf '%s\\n' \"$@\" > {}", args_file.display()),
        "hook".to_string(),
        format!("a; touch {}-semicolon", planted.display()),
        format!("$(touch {}-subst)", planted.display()),
        format!("`touch {}-backtick`", planted.display()),
        "* && |".to_string(),
    ];
    instance_with_hook(&mut env, "inst-a", &argv);
    let run = env.once(&[]);
    run.assert_code(0);
    let got = fs::read_to_string(&args_file).unwrap_or_else(|e| panic!("{e}\n{}", run.all()));
    let want: String = argv[4..].iter().map(|a| format!("{a}\n")).collect();
    assert_eq!(got, want, "the hook received other arguments");
    for suffix in ["semicolon", "subst", "backtick"] {
        let p = format!("{}-{suffix}", planted.display());
        assert!(
            fs::symlink_metadata(&p).is_err(),
            "{p} exists: an argument was run by a shell"
        );
    }
}

#[test]
fn a_hook_reading_stdin_gets_eof_at_once_although_the_daemons_stdin_stays_open() {
    let mut env = Env::new();
    let got = env.path("stdin.txt");
    let argv = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        format!("cat > {0}.tmp && mv {0}.tmp {0}", got.display()),
    ];
    instance_with_hook(&mut env, "inst-a", &argv);
    env.write_config();
    // The daemon's own stdin is a pipe we keep open and write to: a hook
    // that inherited it would read our bytes, or block until its timeout.
    let mut child = env
        .command(&["--once"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"bytes for the daemon, not the hook\n")
        .unwrap();
    let t = Instant::now();
    let done = wait_until(Duration::from_secs(60), || {
        child.try_wait().unwrap().is_some()
    });
    let elapsed = t.elapsed();
    drop(stdin);
    let out = Run::from(child.wait_with_output().unwrap());
    assert!(done, "--once did not finish\n{}", out.all());
    out.assert_code(0);
    assert_eq!(
        fs::read(&got).unwrap_or_else(|e| panic!("{e}\n{}", out.all())),
        b"",
        "the hook read something from stdin"
    );
    // The hook's timeout is 20 s; at once means well under it.
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
}

#[test]
fn hook_output_is_logged_line_by_line_with_the_instance_named() {
    let mut env = Env::new();
    let argv = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        "echo first out line; echo second out line; echo first err line >&2; printf 'no newline at end'".to_string(),
    ];
    instance_with_hook(&mut env, "inst-a", &argv);
    let run = env.once(&[]);
    run.assert_code(0);
    let log = run.all();
    for line in [
        "first out line",
        "second out line",
        "first err line",
        "no newline at end",
    ] {
        let hits: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&format!("hook output: {line}")))
            .collect();
        assert_eq!(hits.len(), 1, "{line:?} not logged once on its own\n{log}");
        // One log record per line of output: the line's neighbours are not in it.
        assert!(
            !hits[0].contains("second out line") || line == "second out line",
            "{log}"
        );
        assert!(
            hits[0].contains("name-inst-a"),
            "the instance is not named: {}",
            hits[0]
        );
    }
    let stream = |l: &str, s: &str| {
        log.lines()
            .any(|x| x.contains(&format!("hook output: {l}")) && x.contains(s))
    };
    assert!(stream("first out line", "stdout"), "{log}");
    assert!(stream("first err line", "stderr"), "{log}");
}
