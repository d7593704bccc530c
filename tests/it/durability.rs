//! Durability and exclusive creation, proven on the binary users run: one
//! replacement of each output under `strace`, and the system calls checked
//! in order. For every output: the temp file is opened with
//! `O_CREAT|O_EXCL` (so a planted symlink or file at its name is never
//! followed or reused) in the target's directory, written, `fsync`ed, given
//! its mode with `fchmod`, renamed over the target, and only then is its
//! directory opened and `fsync`ed (the two outputs live in two directories,
//! so a directory fsync shared by mistake shows). Nothing else opens the
//! target for writing.
//!
//! Needs `strace` (`.ci/run` installs it); without it the test fails under
//! `CI=true` and is skipped with a message elsewhere.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::support::*;

const TRACED: &str = "openat,write,fsync,fdatasync,fchmod,fchown,rename,renameat,renameat2";

/// One completed system call from the trace.
#[derive(Debug, Clone)]
struct Call {
    name: String,
    args: String,
    ret: String,
}

/// Parses `strace -f -o` output into completed calls, in completion order,
/// joining `<unfinished ...>` / `<... resumed>` pairs per thread.
fn parse_trace(text: &str) -> Vec<Call> {
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut calls = Vec::new();
    for line in text.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let full = if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            pending.insert(pid.to_string(), head.to_string());
            continue;
        } else if rest.starts_with("<...") {
            let Some((_, tail)) = rest.split_once("resumed>") else {
                continue;
            };
            format!("{}{}", pending.remove(pid).unwrap_or_default(), tail)
        } else {
            rest.to_string()
        };
        let Some(open) = full.find('(') else { continue };
        // strace pads the result: `fsync(12)        = 0`.
        let Some(eq) = full.rfind(" = ") else {
            continue;
        };
        let Some(args) = full[open + 1..eq].trim_end().strip_suffix(')') else {
            continue;
        };
        calls.push(Call {
            name: full[..open].to_string(),
            args: args.trim_end().to_string(),
            ret: full[eq + 3..]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string(),
        });
    }
    calls
}

/// The quoted strings among a call's arguments.
fn quoted(args: &str) -> Vec<String> {
    args.split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

fn first_fd(args: &str) -> &str {
    args.split(',').next().unwrap_or("").trim()
}

/// Runs `--once` under strace; returns the calls and the run.
fn traced_once(env: &Env) -> (Vec<Call>, Run) {
    env.write_config();
    let trace = env.path("strace.out");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .args(["-e", &format!("trace={TRACED}")])
        .arg(BIN)
        .arg("--config")
        .arg(env.path("config.toml"))
        .arg("--once")
        .env_remove("RUST_LOG")
        .current_dir(env.dir.path())
        .output()
        .expect("run strace");
    let run = Run::from(out);
    let text = fs::read_to_string(&trace).unwrap_or_else(|e| panic!("{e}\n{}", run.all()));
    (parse_trace(&text), run)
}

#[test]
fn a_replacement_is_exclusive_fsynced_chmodded_renamed_then_its_directory_fsynced() {
    if !strace_available("durability") {
        return;
    }
    let mut env = Env::new();
    env.standin.add_instance(PROJECT, "inst-a");
    // No hook: the daemon starts no process, so every fd in the trace is its own.
    // Two directories: each must be fsynced after its own rename.
    env.raw_instance(
        "id = \"inst-a\"\ninternational = \"out/intl.crt\"\nnational = \"out2/natl.crt\"\nmode = \"0640\"",
    );
    env.once(&[]).assert_code(0);
    env.standin.rotate("inst-a", "international");
    env.standin.rotate("inst-a", "national");
    let old = fs::read(env.path("out/intl.crt")).unwrap();

    let (calls, run) = traced_once(&env);
    run.assert_code(0);
    assert_ne!(
        fs::read(env.path("out/intl.crt")).unwrap(),
        old,
        "{}",
        run.all()
    );
    let dump = || {
        calls
            .iter()
            .map(|c| format!("{}({}) = {}", c.name, c.args, c.ret))
            .collect::<Vec<_>>()
            .join("\n")
    };

    for (dirname, file) in [("out", "intl.crt"), ("out2", "natl.crt")] {
        let dir = fs::canonicalize(env.path(dirname)).unwrap();
        let dir_s = env.path(dirname).display().to_string();
        let target = format!("{dir_s}/{file}");
        let temp_prefix = format!("{dir_s}/.{file}.dds-certsync-");
        // fd number -> path, as the openat lines assign them.
        let mut fds: HashMap<String, String> = HashMap::new();
        let mut temp: Option<String> = None;
        // 0 nothing yet, 1 temp opened, 2 written, 3 fsynced, 4 chmodded, 5 renamed, 6 dir fsynced
        let mut step = 0;
        let mut dir_fd_opened_after_rename = false;
        for (i, c) in calls.iter().enumerate() {
            let at = || format!("call #{i}: {}({}) = {}\n{}", c.name, c.args, c.ret, dump());
            match c.name.as_str() {
                "openat" => {
                    let path = quoted(&c.args).into_iter().next().unwrap_or_default();
                    if c.ret.parse::<i32>().is_ok_and(|fd| fd >= 0) {
                        fds.insert(c.ret.clone(), path.clone());
                    }
                    if path == target {
                        assert!(
                            !c.args.contains("O_WRONLY")
                                && !c.args.contains("O_RDWR")
                                && !c.args.contains("O_TRUNC"),
                            "the target was opened for writing: {}",
                            at()
                        );
                    }
                    if path.starts_with(&temp_prefix) && step == 0 {
                        assert!(path.ends_with(".tmp"), "{}", at());
                        assert!(
                            c.args.contains("O_CREAT") && c.args.contains("O_EXCL"),
                            "the temp file is not created exclusively: {}",
                            at()
                        );
                        temp = Some(path.clone());
                        step = 1;
                    }
                    if step >= 4 && (path == dir_s || Path::new(&path) == dir) {
                        dir_fd_opened_after_rename = true;
                    }
                }
                "write" if step >= 1 && fds.get(first_fd(&c.args)) == temp.as_ref() => {
                    assert!(step <= 2, "write after fsync: {}", at());
                    step = 2;
                }
                "fsync" | "fdatasync" => {
                    let p = fds.get(first_fd(&c.args)).cloned().unwrap_or_default();
                    if Some(&p) == temp.as_ref() && step == 2 {
                        step = 3;
                    } else if step == 5
                        && dir_fd_opened_after_rename
                        && (p == dir_s || Path::new(&p) == dir)
                    {
                        step = 6;
                    }
                }
                "fchmod" if step == 3 && fds.get(first_fd(&c.args)) == temp.as_ref() => {
                    assert!(c.args.ends_with("0640"), "wrong mode: {}", at());
                    step = 4;
                }
                "rename" | "renameat" | "renameat2" => {
                    let q = quoted(&c.args);
                    if q.last() == Some(&target) {
                        assert_eq!(
                            q.first(),
                            temp.as_ref(),
                            "renamed over the target from elsewhere: {}",
                            at()
                        );
                        assert_eq!(
                            step,
                            4,
                            "rename before fsync and fchmod of the temp file: {}",
                            at()
                        );
                        assert_eq!(c.ret, "0", "{}", at());
                        step = 5;
                        dir_fd_opened_after_rename = false;
                    }
                }
                _ => {}
            }
        }
        assert_eq!(
            step,
            6,
            "{file}: the sequence open(O_EXCL) → write → fsync → fchmod → rename → fsync(dir) \
             stopped after step {step}\n{}",
            dump()
        );
    }
}
