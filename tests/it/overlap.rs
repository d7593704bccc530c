//! `keep_previous`: a rotation keeps the previous CA after the new one for a
//! grace period; the daemon wakes up by itself to drop it, runs the hook
//! once with `DDS_CERTSYNC_REASON=previous-dropped`; the window survives a
//! SIGKILL; a lost or corrupt record restarts the window (never drops
//! early); `0s` replaces outright; an expired certificate is never kept; a
//! kept one served again is current again. The real binary against the
//! stand-in; windows of a few seconds, waited for by polling.

use std::fs;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;

use crate::support::*;

const ID: &str = "inst-a";
const CAT: &str = "international";

/// One instance, its international file only, polled hourly (so any
/// earlier round is one the daemon chose), with a hook that records its
/// reason, the changed paths and the second it ran.
fn setup(keep_previous: &str) -> Env {
    let mut env = Env::new();
    env.standin.add_instance(PROJECT, ID);
    env.sync.push_str(&format!(
        "keep_previous = \"{keep_previous}\"\ninterval = \"1h\"\njitter = \"0s\"\n"
    ));
    let dir = env.path("hook");
    fs::create_dir_all(&dir).unwrap();
    let script = env.path("reason-hook.sh");
    fs::write(
        &script,
        format!(
            r#"dir="{dir}"
n=$(ls "$dir" | grep -c "^$DDS_CERTSYNC_INSTANCE_ID\.")
printf 'REASON=%s\nCHANGED=%s\nAT=%s\n' "$DDS_CERTSYNC_REASON" "$DDS_CERTSYNC_CHANGED" "$(date +%s)" > "$dir/$DDS_CERTSYNC_INSTANCE_ID.$n.env.tmp"
mv "$dir/$DDS_CERTSYNC_INSTANCE_ID.$n.env.tmp" "$dir/$DDS_CERTSYNC_INSTANCE_ID.$n.env"
"#,
            dir = dir.display()
        ),
    )
    .unwrap();
    env.raw_instance(&format!(
        "id = \"{ID}\"\ninternational = \"out/{ID}-{CAT}.crt\"\non_change = [\"/bin/sh\", \"{}\"]\nhook_timeout = \"10s\"",
        script.display()
    ));
    env
}

/// A `KEY=value` line of a recorded hook run.
fn var<'a>(run: &'a str, key: &str) -> &'a str {
    run.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {run:?}"))
}

/// The `field=` value on the first log line containing `marker`.
fn field(log: &str, marker: &str, field: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no line with {marker:?}\n{log}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{field}=")))
        .unwrap_or_else(|| panic!("no {field}= in {line:?}"))
        .to_string()
}

/// Unix seconds of an RFC 3339 time.
fn unix(rfc3339: &str) -> i64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339:?}: {e}"))
        .unix_timestamp()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The value of the series starting with `prefix` in a scrape.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn scrape(d: &Daemon) -> String {
    let addr = d.listen_addr(1);
    http(addr, "GET", "/metrics", Duration::from_secs(5))
        .map(|(_, body)| body)
        .unwrap_or_default()
}

const KEPT: &str = "dds_certsync_kept_certificates{instance=\"inst-a\",service=\"dds\",category=\"international\"}";
const NEXT_DROP: &str = "dds_certsync_next_drop_timestamp_seconds{instance=\"inst-a\",service=\"dds\",category=\"international\"}";

/// The instance's record of kept certificates (one file per instance).
fn record_path(env: &Env) -> std::path::PathBuf {
    env.path(&format!("state/kept-{ID}.v2.json"))
}

/// What the record holds for the output's category, as JSON.
fn record(env: &Env) -> serde_json::Value {
    let p = record_path(env);
    let whole: serde_json::Value =
        serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
            .unwrap();
    (whole["outputs"].as_array().unwrap().iter())
        .find(|o| o["category"] == CAT)
        .unwrap_or_else(|| panic!("no {CAT} in {whole}"))
        .clone()
}

#[test]
fn a_rotation_keeps_the_previous_ca_after_the_new_one_and_the_daemon_drops_it_when_the_window_passes()
 {
    let mut env = setup("8s");
    env.instances
        .push("\n[server]\nlisten = \"127.0.0.1:0\"\n".into());
    let out = env.out(ID, CAT);
    env.once(&[]).assert_code(0);
    let a = env.served(ID, CAT);
    assert_eq!(fs::read(&out).unwrap(), a);

    env.standin.rotate(ID, CAT);
    let b = env.served(ID, CAT);
    let run = env.once(&[]);
    run.assert_code(0);
    // The new CA first, then the previous one.
    assert_eq!(fs::read(&out).unwrap(), [b.clone(), a.clone()].concat());
    let runs = env.hook_runs(ID);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(var(&runs[0], "REASON"), "updated");
    assert_eq!(var(&runs[1], "REASON"), "updated");
    let due = field(&run.stderr, "keeping the previous certificate", "drop_at");
    let due = unix(&due);
    assert!(
        run.stderr.contains("subject=") && run.stderr.contains("sha256="),
        "{}",
        run.all()
    );
    assert_eq!(record(&env)["kept"].as_array().unwrap().len(), 1);

    // The daemon polls hourly, yet wakes up for the drop.
    let mut d = env.daemon(&[]);
    d.wait_log("unchanged", 1, WAIT);
    let before = now();
    let text = scrape(&d);
    if before < due {
        assert_eq!(metric(&text, KEPT), Some(1.0), "{text}");
        assert_eq!(metric(&text, NEXT_DROP), Some(due as f64), "{text}");
    }
    env.wait_hook_runs(&d, ID, 3);
    let runs = env.hook_runs(ID);
    assert_eq!(var(&runs[2], "REASON"), "previous-dropped");
    assert_eq!(var(&runs[2], "CHANGED"), out.display().to_string());
    let ran_at: i64 = var(&runs[2], "AT").parse().unwrap();
    assert!(ran_at >= due, "dropped early: hook at {ran_at}, due {due}");
    assert_eq!(fs::read(&out).unwrap(), b);
    d.wait_log("dropping the previous certificate", 1, WAIT);
    let log = d.log();
    assert_eq!(
        unix(&field(&log, "dropping the previous certificate", "drop_at")),
        due
    );
    assert!(log.contains("keep_previous has passed"), "{log}");
    // The round's gauges are set when it ends, a moment after its hook ran.
    assert!(
        wait_until(WAIT, || metric(&scrape(&d), KEPT) == Some(0.0)),
        "{}",
        scrape(&d)
    );
    let text = scrape(&d);
    assert_eq!(metric(&text, NEXT_DROP), None, "{text}");
    // Two rounds: the first at start, the second for the drop; then the
    // hourly interval again, and the hook ran once for the drop.
    assert_eq!(api_requests(&env, ID).len(), 4, "{log}");
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0), "{}", d.log());
    assert_eq!(env.hook_runs(ID).len(), 3);
}

#[test]
fn a_sigkill_during_the_grace_period_keeps_the_drop_time() {
    let env = setup("20s");
    let out = env.out(ID, CAT);
    env.once(&[]).assert_code(0);
    let a = env.served(ID, CAT);
    env.standin.rotate(ID, CAT);
    let b = env.served(ID, CAT);

    let d = env.daemon(&[]);
    d.wait_log("keeping the previous certificate", 1, WAIT);
    let due = unix(&field(
        &d.log(),
        "keeping the previous certificate",
        "drop_at",
    ));
    env.wait_hook_runs(&d, ID, 2);
    // Its record cleared: a kill before that would owe the hook again
    // (`restored-after-crash`, tested on its own below).
    d.wait_log("hook succeeded", 1, WAIT);
    let kept = record(&env);
    assert!(now() < due, "the machine is too slow for a 20 s window");
    d.signal(Signal::SIGKILL);
    drop(d);
    let bundle = [b.clone(), a].concat();
    assert_eq!(fs::read(&out).unwrap(), bundle);

    // The restart neither extends nor shortens the window.
    let d = env.daemon(&[]);
    d.wait_log("unchanged", 1, WAIT);
    assert_eq!(record(&env), kept, "the record is untouched by the restart");
    // Self-healing holds the whole bundle, kept CA included.
    fs::remove_file(&out).unwrap();
    assert!(
        wait_until(WAIT, || fs::read(&out).is_ok_and(|f| f == bundle)),
        "not restored with the kept CA\n{}",
        d.log()
    );
    env.wait_hook_runs(&d, ID, 3);
    let runs = env.hook_runs(ID);
    assert_eq!(var(&runs[2], "REASON"), "previous-dropped");
    assert!(var(&runs[2], "AT").parse::<i64>().unwrap() >= due);
    d.wait_log("dropping the previous certificate", 1, WAIT);
    assert_eq!(
        unix(&field(
            &d.log(),
            "dropping the previous certificate",
            "drop_at"
        )),
        due
    );
    assert_eq!(fs::read(&out).unwrap(), b);
}

/// With `keep_previous = "1h"`: a first sync, a rotation, and a second sync
/// that keeps the previous CA after the new one. The output's path and the
/// bundle it holds.
fn rotated_and_kept() -> (Env, std::path::PathBuf, Vec<u8>) {
    let env = setup("1h");
    let out = env.out(ID, CAT);
    env.once(&[]).assert_code(0);
    let a = env.served(ID, CAT);
    env.standin.rotate(ID, CAT);
    let b = env.served(ID, CAT);
    env.once(&[]).assert_code(0);
    let bundle = [b, a].concat();
    assert_eq!(fs::read(&out).unwrap(), bundle);
    (env, out, bundle)
}

#[test]
fn a_lost_or_corrupt_record_restarts_the_window_and_never_drops_early() {
    let (env, out, bundle) = rotated_and_kept();
    let first = record(&env)["kept"][0]["superseded_at"].as_i64().unwrap();
    let path = record_path(&env);

    for (what, damage) in [
        ("corrupt", Some(&b"{\"version\": 1, \"kept\": ["[..])),
        ("lost", None),
    ] {
        match damage {
            Some(bytes) => fs::write(&path, bytes).unwrap(),
            None => fs::remove_file(&path).unwrap(),
        }
        let run = env.once(&[]);
        run.assert_code(0);
        // The file keeps the previous CA; nothing changed, no hook.
        assert_eq!(fs::read(&out).unwrap(), bundle, "{what}");
        assert_eq!(env.hook_runs(ID).len(), 2, "{what}");
        assert!(
            run.stderr
                .contains("no record of when this certificate in the file was superseded"),
            "{what}\n{}",
            run.all()
        );
        if damage.is_some() {
            assert!(
                run.stderr.contains(&path.display().to_string())
                    && run.stderr.contains("start again from now"),
                "{what}\n{}",
                run.all()
            );
        }
        // The window starts again from now: later, never earlier.
        let again = record(&env)["kept"][0]["superseded_at"].as_i64().unwrap();
        assert!(again >= first, "{what}: {again} < {first}");
    }
}

#[test]
fn zero_replaces_outright_and_keeps_no_record() {
    let mut env = setup("1h");
    let out = env.out(ID, CAT);
    env.once(&[]).assert_code(0);
    env.standin.rotate(ID, CAT);
    env.once(&[]).assert_code(0);
    assert_eq!(record(&env)["kept"].as_array().unwrap().len(), 1);

    // Switching to 0s drops what is kept, as a drop, and the record goes.
    env.sync = env
        .sync
        .replace("keep_previous = \"1h\"", "keep_previous = \"0s\"");
    env.once(&[]).assert_code(0);
    assert_eq!(fs::read(&out).unwrap(), env.served(ID, CAT));
    let runs = env.hook_runs(ID);
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(var(&runs[2], "REASON"), "previous-dropped");
    assert_eq!(ls(&env.path("state")), Vec::<String>::new());

    // A rotation under 0s: the new CA alone, today's behaviour.
    env.standin.rotate(ID, CAT);
    env.once(&[]).assert_code(0);
    assert_eq!(fs::read(&out).unwrap(), env.served(ID, CAT));
    assert_eq!(var(&env.hook_runs(ID)[3], "REASON"), "updated");
    assert_eq!(ls(&env.path("state")), Vec::<String>::new());
}

#[test]
fn an_expired_previous_ca_is_never_kept_and_a_kept_one_leaves_when_it_expires() {
    let mut env = setup("1h");
    env.instances
        .push("\n[server]\nlisten = \"127.0.0.1:0\"\n".into());
    let out = env.out(ID, CAT);

    // Superseded after it expired: not kept.
    let short = dds_standin::short_lived_cert_pem("short-lived CA", Duration::from_secs(3));
    env.standin.set_cert_pem(ID, CAT, short.as_bytes());
    env.once(&[]).assert_code(0);
    let expires = now() + 3;
    assert!(wait_until(WAIT, || now() > expires + 1));
    env.standin.rotate(ID, CAT);
    let run = env.once(&[]);
    run.assert_code(0);
    assert_eq!(fs::read(&out).unwrap(), env.served(ID, CAT));
    assert!(
        run.stderr
            .contains("not keeping the previous certificate: it expired"),
        "{}",
        run.all()
    );

    // Superseded while valid: kept until it expires, well within 1h (the
    // CA before it, B, is kept too: it was superseded minutes ago).
    let b = env.served(ID, CAT);
    let short = dds_standin::short_lived_cert_pem("short-lived CA 2", Duration::from_secs(12));
    env.standin.set_cert_pem(ID, CAT, short.as_bytes());
    env.once(&[]).assert_code(0);
    let s = canonical(short.as_bytes());
    assert_eq!(fs::read(&out).unwrap(), [s.clone(), b.clone()].concat());
    env.standin.rotate(ID, CAT);
    let c = env.served(ID, CAT);
    let run = env.once(&[]);
    run.assert_code(0);
    assert_eq!(fs::read(&out).unwrap(), [c.clone(), s, b.clone()].concat());
    let due = unix(&field(
        &run.stderr,
        "keeping the previous certificate",
        "drop_at",
    ));
    assert!(due <= now() + 13, "kept past its expiry: {due}");

    let d = env.daemon(&[]);
    d.wait_log("unchanged", 1, WAIT);
    let text = scrape(&d);
    if now() < due {
        // The kept one expires within expiry_warning: no alarm from it.
        let expiring = "dds_certsync_cert_expiring{instance=\"inst-a\",service=\"dds\",category=\"international\"}";
        assert_eq!(metric(&text, expiring), Some(0.0), "{text}");
        assert_eq!(metric(&text, KEPT), Some(2.0), "{text}");
        assert_eq!(metric(&text, NEXT_DROP), Some(due as f64), "{text}");
    }
    let n = env.hook_runs(ID).len();
    env.wait_hook_runs(&d, ID, n + 1);
    assert_eq!(var(&env.hook_runs(ID)[n], "REASON"), "previous-dropped");
    assert_eq!(fs::read(&out).unwrap(), [c, b].concat());
    d.wait_log("dropping the previous certificate: it expired", 1, WAIT);
}

#[test]
fn a_kept_ca_served_again_becomes_current_again() {
    let env = setup("1h");
    let out = env.out(ID, CAT);
    env.once(&[]).assert_code(0);
    let a_pem = env.standin.cert_pem(ID, CAT);
    let a = env.served(ID, CAT);
    env.standin.rotate(ID, CAT);
    let b = env.served(ID, CAT);
    env.once(&[]).assert_code(0);
    assert_eq!(fs::read(&out).unwrap(), [b.clone(), a.clone()].concat());

    // The rotation is rolled back: A is current again, B is kept.
    env.standin.set_cert_pem(ID, CAT, a_pem.as_bytes());
    let run = env.once(&[]);
    run.assert_code(0);
    assert_eq!(fs::read(&out).unwrap(), [a, b].concat());
    assert!(
        run.stderr
            .contains("a kept certificate is served again; it is current again"),
        "{}",
        run.all()
    );
    let r = record(&env);
    assert_eq!(r["current"].as_array().unwrap().len(), 1);
    assert_eq!(r["kept"].as_array().unwrap().len(), 1);
    assert_eq!(var(&env.hook_runs(ID)[2], "REASON"), "updated");
}

#[test]
fn a_hook_run_again_after_a_crash_says_so() {
    let env = setup("1h");
    env.once(&[]).assert_code(0);
    env.standin.rotate(ID, CAT);
    // The hook exits 0, then the process dies before clearing its record.
    env.write_config();
    let run = Run::from(
        env.command(&["--once"])
            .env("DDS_CERTSYNC_CRASH_AT", "after-hook")
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, -1, "expected a crash\n{}", run.all());
    let runs = env.hook_runs(ID);
    assert_eq!(var(&runs[1], "REASON"), "updated");
    // The restart runs it again, and tells it why.
    env.once(&[]).assert_code(0);
    let runs = env.hook_runs(ID);
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(var(&runs[2], "REASON"), "restored-after-crash");
    assert_eq!(var(&runs[2], "CHANGED"), var(&runs[1], "CHANGED"));
}

#[test]
fn a_record_of_the_previous_version_is_converted_at_start_and_its_window_kept() {
    let (env, out, bundle) = rotated_and_kept();
    let first = record(&env);
    let superseded_at = first["kept"][0]["superseded_at"].as_i64().unwrap();

    // What the previous release wrote: one file per instance and category.
    let mut v1 = first.clone();
    v1["version"] = 1.into();
    v1["instance_id"] = ID.into();
    let v1_path = env.path(&format!("state/kept-{ID}-{CAT}.json"));
    fs::write(&v1_path, serde_json::to_vec_pretty(&v1).unwrap()).unwrap();
    fs::remove_file(record_path(&env)).unwrap();

    let run = env.once(&[]);
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("converted the records of kept certificates of 1 instance(s)"),
        "{}",
        run.all()
    );
    assert!(
        !run.stderr.contains("no record of when"),
        "the window was lost:\n{}",
        run.all()
    );
    // Same file, no hook, the same window, and only the new record left.
    assert_eq!(fs::read(&out).unwrap(), bundle);
    assert_eq!(env.hook_runs(ID).len(), 2);
    let again = record(&env)["kept"][0]["superseded_at"].as_i64().unwrap();
    assert_eq!(again, superseded_at);
    assert_eq!(ls(&env.path("state")), vec![format!("kept-{ID}.v2.json")]);
}

#[test]
fn a_first_record_is_written_after_the_outputs_and_a_crash_before_it_costs_nothing() {
    let env = setup("1h");
    let out = env.path(&format!("out/{ID}-{CAT}.crt"));
    // A first sync passes "before-rename" for the hook record, the output,
    // and last the record of kept certificates, which keeps nothing yet.
    env.once_crashing_at("before-rename:3");
    assert_eq!(fs::read(&out).unwrap(), env.served(ID, CAT));
    assert!(
        !record_path(&env).exists(),
        "the record came before the output"
    );

    // The next run finds the file it wrote, no record and nothing to keep:
    // no window to start again, the same file, the owed hook once, and now
    // the record (the crash's temp file removed).
    let run = env.once(&[]);
    run.assert_code(0);
    for lost in ["start again", "no record of when"] {
        assert!(!run.stderr.contains(lost), "{}", run.all());
    }
    assert!(
        run.stderr.contains("removed 1 temporary file(s)"),
        "{}",
        run.all()
    );
    assert_eq!(ls(&env.path("state")), vec![format!("kept-{ID}.v2.json")]);
    assert_eq!(fs::read(&out).unwrap(), env.served(ID, CAT));
    assert_eq!(env.hook_runs(ID).len(), 1);
    let fingerprint = record(&env)["current"][0]["sha256"].clone();
    let served = dds_certsync::certcheck::inspect_pem(&env.served(ID, CAT)).unwrap();
    let served = dds_certsync::certcheck::hex(&served[0].fingerprint);
    assert_eq!(fingerprint.as_str(), Some(served.as_str()));
    assert!(record(&env)["kept"].as_array().unwrap().is_empty());

    // A record a power cut left empty counts as none, without a warning.
    fs::write(record_path(&env), b"").unwrap();
    let run = env.once(&[]);
    run.assert_code(0);
    assert!(!run.stderr.contains("start again"), "{}", run.all());
    assert_eq!(record(&env)["current"][0]["sha256"], fingerprint);
    assert_eq!(env.hook_runs(ID).len(), 1);
}
