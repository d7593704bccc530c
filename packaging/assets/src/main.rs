//! Writes the files the .deb and .rpm packages carry that are generated rather
//! than kept in the tree, so that none of them can drift from its source:
//!
//! | file (under the output folder) | generated from |
//! |---|---|
//! | `dds-certsync.1.gz` | the clap definitions in `src/cli.rs` (options, environment, exit statuses) and the keys of `config/example.toml` |
//! | `completions/dds-certsync.bash`, `_dds-certsync`, `dds-certsync.fish` | the clap definitions |
//! | `dds-certsync.service` | `systemd/dds-certsync.service`, with `ExecStart=` pointing at `/usr/bin` |
//!
//! Usage: `cargo run -p dds-certsync-assets [-- OUT_DIR]` (default `target/assets`),
//! before `cargo deb` and `cargo generate-rpm`. It needs no release build: it
//! links the library for its definitions only.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};
use dds_certsync::cli::{Cli, EXIT_STATUSES, LOGGING};

/// The repository root (this crate lives in `packaging/assets`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the unit file in the tree starts the daemon, and where the packages put it.
const SOURCE_BIN: &str = "/usr/local/bin/dds-certsync";
const PACKAGED_BIN: &str = "/usr/bin/dds-certsync";

fn main() -> ExitCode {
    let root = repo_root();
    let out = std::env::args_os()
        .nth(1)
        .map_or_else(|| root.join("target/assets"), PathBuf::from);
    match write_all(&root, &out) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dds-certsync-assets: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(root: &Path, out: &Path) -> Result<Vec<PathBuf>, String> {
    let read = |rel: &str| {
        std::fs::read_to_string(root.join(rel)).map_err(|e| format!("reading {rel}: {e}"))
    };
    let example = read("config/example.toml")?;
    let unit = read("systemd/dds-certsync.service")?;
    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)
        .map_err(|e| format!("creating {}: {e}", completions.display()))?;
    let write = |path: PathBuf, bytes: &[u8]| -> Result<PathBuf, String> {
        std::fs::write(&path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(path)
    };

    let mut written = Vec::new();
    let page = man_page(&config_keys(&example)?);
    written.push(write(
        out.join("dds-certsync.1.gz"),
        &gzip(page.as_bytes())?,
    )?);
    for (shell, name) in [
        (Shell::Bash, "dds-certsync.bash"),
        (Shell::Zsh, "_dds-certsync"),
        (Shell::Fish, "dds-certsync.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "dds-certsync", &mut buf);
        written.push(write(completions.join(name), &buf)?);
    }
    written.push(write(
        out.join("dds-certsync.service"),
        packaged_unit(&unit)?.as_bytes(),
    )?);
    Ok(written)
}

/// gzip -9n: maximum compression and no name or timestamp in the header, so
/// the output depends on the input only (reproducible packages). gzip is on
/// every system that builds packages; this avoids a compression crate.
fn gzip(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running gzip: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("gzip: no stdin")?;
    let input = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().map_err(|e| format!("gzip: {e}"))?;
    feeder
        .join()
        .map_err(|_| "gzip: the writer panicked".to_string())?
        .map_err(|e| format!("gzip: writing its input: {e}"))?;
    if !output.status.success() {
        return Err(format!("gzip failed: {}", output.status));
    }
    Ok(output.stdout)
}

/// The unit the packages install: the tree's unit with the packaged binary
/// path in `ExecStart=`, and the by-hand install notes at its top replaced by
/// the packaged way. Fails if the unit no longer has the expected
/// `ExecStart=` line or notes, rather than shipping something unchecked.
fn packaged_unit(unit: &str) -> Result<String, String> {
    let exec = format!("ExecStart={SOURCE_BIN} ");
    let starts = unit.lines().filter(|l| l.starts_with(&exec)).count();
    if starts != 1 {
        return Err(format!(
            "systemd/dds-certsync.service: expected one line starting `{exec}`, found {starts}"
        ));
    }
    let mut out = String::with_capacity(unit.len());
    let mut in_install_notes = false;
    let mut notes_seen = false;
    for line in unit.lines() {
        if line == "# Install:" {
            in_install_notes = true;
            notes_seen = true;
            out.push_str(
                "# Installed by the dds-certsync package (binary /usr/bin/dds-certsync), disabled.\n\
                 # Write /etc/dds-certsync/config.toml first, then:\n\
                 #   systemctl enable --now dds-certsync\n",
            );
            continue;
        }
        if in_install_notes {
            if line.starts_with("#   ") {
                continue;
            }
            in_install_notes = false;
        }
        match line.strip_prefix(&exec) {
            Some(rest) => {
                let _ = writeln!(out, "ExecStart={PACKAGED_BIN} {rest}");
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if !notes_seen {
        return Err("systemd/dds-certsync.service: the `# Install:` notes are missing".into());
    }
    Ok(out)
}

/// One key of the example config, as the man page lists it.
#[derive(Debug, PartialEq, Eq)]
struct Key {
    /// `sync.interval`, `instances.id`, ...
    name: String,
    /// The value the example gives, as written.
    example: String,
    /// The comment on the key's line and its continuation lines.
    about: String,
}

/// The keys of `config/example.toml`, set and commented out alike, in file
/// order, each once. The example documents every key (a unit test of the
/// daemon keeps it valid), so listing its keys lists the config's keys.
fn config_keys(example: &str) -> Result<Vec<Key>, String> {
    let mut keys: Vec<Key> = Vec::new();
    let mut table = String::new();
    let mut last: Option<usize> = None;
    for line in example.lines() {
        let trimmed = line.trim();
        let (commented, body) = match trimmed.strip_prefix('#') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, trimmed),
        };
        if let Some(name) = table_header(body) {
            table = name.to_string();
            last = None;
            continue;
        }
        if let Some((name, rest)) = key_line(body) {
            if table.is_empty() {
                return Err(format!(
                    "config/example.toml: key `{name}` before any table"
                ));
            }
            let (value, comment) = split_value(rest);
            let full = format!("{table}.{name}");
            match keys.iter().position(|k| k.name == full) {
                Some(i) => {
                    if keys[i].about.is_empty() {
                        keys[i].about = comment.to_string();
                    }
                    last = Some(i);
                }
                None => {
                    keys.push(Key {
                        name: full,
                        example: value.to_string(),
                        about: comment.to_string(),
                    });
                    last = Some(keys.len() - 1);
                }
            }
            continue;
        }
        // "#   more about the key above" continues the previous key's comment.
        match (last, line.trim_start().strip_prefix("#   ")) {
            (Some(i), Some(more)) if commented => {
                let about = &mut keys[i].about;
                if !about.is_empty() {
                    about.push(' ');
                }
                about.push_str(more.trim());
            }
            _ => last = None,
        }
    }
    if keys.is_empty() {
        return Err("config/example.toml: no keys found".into());
    }
    Ok(keys)
}

/// `[name]` or `[[name]]`.
fn table_header(body: &str) -> Option<&str> {
    let inner = body.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(inner);
    inner.split('.').all(is_key).then_some(inner)
}

/// `name = rest`, where name is a bare TOML key in lower case.
fn key_line(body: &str) -> Option<(&str, &str)> {
    let (name, rest) = body.split_once('=')?;
    let name = name.trim();
    is_key(name).then_some((name, rest.trim()))
}

fn is_key(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Splits `"1h"        # poll period` into the value and the comment,
/// minding `#` inside strings.
fn split_value(rest: &str) -> (&str, &str) {
    let mut in_string = false;
    for (i, c) in rest.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => return (rest[..i].trim(), rest[i + 1..].trim()),
            _ => {}
        }
    }
    (rest.trim(), "")
}

/// The man page: clap_mangen's sections from the command definition, then
/// EXIT STATUS, ENVIRONMENT, CONFIGURATION, FILES and SEE ALSO.
fn man_page(keys: &[Key]) -> String {
    // The exit statuses get their own section below, from the same constant
    // that --help prints them from; clap_mangen's EXTRA section would repeat them.
    let cmd = Cli::command().after_help("");
    let man = Man::new(cmd).manual("User Commands");
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = man.render_title(&mut buf);
    let _ = man.render_name_section(&mut buf);
    let _ = man.render_synopsis_section(&mut buf);
    let _ = man.render_description_section(&mut buf);
    let _ = man.render_options_section(&mut buf);
    let mut page = String::from_utf8_lossy(&buf).into_owned();
    // Each render_* call repeats roff's two-line apostrophe preamble; keep the first.
    let preamble: String = page.lines().take(2).map(|l| format!("{l}\n")).collect();
    if preamble.starts_with(".ie ") {
        let rest = page[preamble.len()..].replace(&preamble, "");
        page = format!("{preamble}{rest}");
    }

    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_STATUSES {
        roff.control("TP", []);
        roff.text([bold(code.to_string())]);
        roff.text([roman(meaning)]);
    }

    roff.control("SH", ["ENVIRONMENT"]);
    roff.control("TP", []);
    roff.text([bold("RUST_LOG")]);
    roff.text([roman(LOGGING)]);
    roff.control("PP", []);
    roff.text([roman(
        "The environment variables given with the options above set those options. \
         Secrets may come from variables the config names (keys ending in _env).",
    )]);

    roff.control("SH", ["CONFIGURATION"]);
    roff.text([roman(
        "A TOML file, strict: an unknown or misspelt key is an error. Durations are written \
         as \"30s\", \"5m\", \"1h\". Relative paths are relative to the config file's directory. \
         Every secret (access_key, secret_key, security_token, password, token) may be given \
         inline, as key_file (a file, re-read when it changes) or as key_env (an environment \
         variable). The keys, with the example's values:",
    )]);
    for key in keys {
        roff.control("TP", []);
        roff.text([
            bold(key.name.as_str()),
            roman(" = "),
            italic(key.example.as_str()),
        ]);
        if !key.about.is_empty() {
            roff.text([roman(key.about.as_str())]);
        }
    }

    roff.control("SH", ["FILES"]);
    for (path, what) in [
        (
            "/etc/dds-certsync/config.toml",
            "the config (mode 0600; kept on upgrades)",
        ),
        (
            "/var/lib/dds-certsync",
            "the daemon's state (sync.state_dir): the hooks still owed",
        ),
        (
            "/usr/lib/systemd/system/dds-certsync.service",
            "the systemd unit (Type=notify, sandboxed); adapt it with systemctl edit dds-certsync",
        ),
        (
            "/usr/share/doc/dds-certsync/README.md",
            "the full reference: authentication, metrics, alerts, guarantees",
        ),
    ] {
        roff.control("TP", []);
        roff.text([italic(path)]);
        roff.text([roman(what)]);
    }

    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("systemctl"),
        roman("(1), "),
        bold("systemd.exec"),
        roman("(5), "),
        bold("journalctl"),
        roman("(1)"),
    ]);

    page.push_str(&roff.to_roff());
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> String {
        std::fs::read_to_string(repo_root().join("config/example.toml")).unwrap()
    }

    #[test]
    fn every_key_of_the_example_is_found_once_with_its_table() {
        let keys = config_keys(&example()).unwrap();
        let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        for want in [
            "cloud.region",
            "cloud.ca_file",
            "auth.method",
            "auth.password_file",
            "sync.interval",
            "sync.expiry_warning",
            "server.listen",
            "instances.id",
            "instances.on_change",
            "instances.pidfile",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicates in {names:?}");
        let interval = keys.iter().find(|k| k.name == "sync.interval").unwrap();
        assert_eq!(interval.example, "\"1h\"");
        assert_eq!(interval.about, "poll period per instance");
        let hook = keys
            .iter()
            .find(|k| k.name == "instances.on_change")
            .unwrap();
        assert!(hook.about.contains("looked up in PATH"), "{hook:?}");
    }

    #[test]
    fn every_key_line_of_the_example_is_in_the_man_page() {
        let text = example();
        let page = man_page(&config_keys(&text).unwrap());
        let mut count = 0;
        for line in text.lines() {
            let body = line.trim().trim_start_matches('#').trim_start();
            if let Some((name, _)) = key_line(body) {
                assert!(
                    page.contains(&format!(".{name}\\fR = ")),
                    "`{name}` missing from the man page"
                );
                count += 1;
            }
        }
        assert!(count > 30, "only {count} key lines seen");
    }

    #[test]
    fn the_man_page_has_every_option_and_exit_status() {
        let page = man_page(&config_keys(&example()).unwrap());
        for arg in Cli::command().get_arguments() {
            if let Some(long) = arg.get_long() {
                let escaped = format!("\\-\\-{}", long.replace('-', "\\-"));
                assert!(page.contains(&escaped), "--{long} missing");
            }
        }
        for (code, meaning) in EXIT_STATUSES {
            assert!(
                page.contains(&format!("\\fB{code}\\fR")),
                "exit status {code}"
            );
            let first = meaning.split_whitespace().next().unwrap();
            assert!(page.contains(first), "{meaning}");
        }
        for section in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH OPTIONS",
            ".SH \"EXIT STATUS\"",
            ".SH CONFIGURATION",
        ] {
            assert!(page.contains(section), "{section} missing");
        }
        assert_eq!(page.matches(".ie \\n(.g").count(), 1, "one preamble");
    }

    #[test]
    fn the_packaged_unit_differs_from_the_tree_unit_only_in_the_binary_path_and_notes() {
        let unit =
            std::fs::read_to_string(repo_root().join("systemd/dds-certsync.service")).unwrap();
        let packaged = packaged_unit(&unit).unwrap();
        assert!(!packaged.contains(SOURCE_BIN), "{packaged}");
        assert!(packaged.contains(&format!("\nExecStart={PACKAGED_BIN} --config ")));
        let directives = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| l.replace(SOURCE_BIN, PACKAGED_BIN))
                .collect()
        };
        assert_eq!(directives(&unit), directives(&packaged));
    }

    #[test]
    fn a_unit_without_the_expected_exec_start_is_refused() {
        let err = packaged_unit("[Service]\nExecStart=/opt/x --config y\n").unwrap_err();
        assert!(
            err.contains("ExecStart=/usr/local/bin/dds-certsync"),
            "{err}"
        );
        let twice = "# Install:\n[Service]\nExecStart=/usr/local/bin/dds-certsync a\nExecStart=/usr/local/bin/dds-certsync b\n";
        assert!(packaged_unit(twice).unwrap_err().contains("found 2"));
    }

    #[test]
    fn values_keep_hashes_inside_strings() {
        assert_eq!(split_value("\"a#b\"  # c"), ("\"a#b\"", "c"));
        assert_eq!(split_value("8"), ("8", ""));
    }
}
