//! Java truststores, checked with a real JDK: `keytool` lists what the
//! daemon wrote, and a Java TLS client trusts exactly the CAs in the store.

use std::fs;
use std::path::Path;
use std::time::Duration;

use dds_certsync::secret::Secret;
use dds_certsync::truststore::{self, Entry, Profile};

use crate::support::jdk::{Jdk, KeytoolEntry, fingerprint};
use crate::support::{Env, PROJECT, assert_no_secret, wait_until};

/// Both profiles, as the library writes them: keytool lists every
/// certificate as a trustedCertEntry and nothing else, a wrong password
/// fails, and a JVM trusts the nodes of each instance whose CA is in the
/// store, and no other.
#[test]
fn the_jdk_reads_both_profiles_and_trusts_exactly_their_cas() {
    const TEST: &str = "truststore::the_jdk_reads_both_profiles_and_trusts_exactly_their_cas";
    let Some(jdk) = Jdk::find(TEST) else {
        return;
    };
    let env = Env::new();
    for id in ["a", "b", "stranger"] {
        env.standin.add_instance(PROJECT, id);
    }
    let pem = |id| env.standin.cert_pem(id, "international");
    let entries =
        truststore::entries_from_pem(format!("{}{}", pem("a"), pem("b")).as_bytes()).unwrap();
    let ports: Vec<u16> = ["a", "b", "stranger"]
        .iter()
        .map(|id| env.standin.instance_addr(id).port())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    for profile in [Profile::Modern, Profile::Legacy] {
        let store = dir.path().join(format!("{profile}.p12"));
        let bytes = truststore::encode(&entries, &Secret::new("changeit"), profile).unwrap();
        fs::write(&store, bytes).unwrap();
        let mut expected: Vec<KeytoolEntry> = entries
            .iter()
            .map(|e| KeytoolEntry {
                alias: e.alias.clone(),
                kind: "trustedCertEntry".into(),
                sha256: fingerprint(&e.der),
            })
            .collect();
        expected.sort();
        let listed = jdk.keytool_list(&store, "changeit");
        assert_eq!(listed, Ok(expected), "{profile} with {}", jdk.version());
        let wrong = jdk.keytool_list(&store, "changeme").unwrap_err();
        assert!(
            wrong.contains("password was incorrect"),
            "{profile}: {wrong}"
        );

        let r = jdk.handshakes(&store, "changeit", &ports);
        assert!(r[0].is_ok() && r[1].is_ok(), "{profile}: {r:?}");
        let e = r[2].as_ref().unwrap_err();
        assert!(e.contains("PKIX path building failed"), "{profile}: {e}");
    }
}

const PASSWORD: &str = "Orders-Truststore-Pass";

/// An instance writing only a truststore (and a hook), with `extra` lines.
fn java_instance(env: &mut Env, id: &str, extra: &str) {
    env.standin.add_instance(PROJECT, id);
    java_config(env, id, extra);
}

/// The config block of [`java_instance`], alone.
fn java_config(env: &mut Env, id: &str, extra: &str) {
    let hook = env.record_hook();
    env.raw_instance(&format!(
        "id = \"{id}\"\nname = \"name-{id}\"\ntruststore = \"out/{id}.p12\"\non_change = [\"/bin/sh\", \"{}\"]\nhook_timeout = \"10s\"\n{extra}",
        hook.display()
    ));
}

fn store(env: &Env, id: &str) -> std::path::PathBuf {
    env.path(&format!("out/{id}.p12"))
}

/// What keytool must list for a store of these PEM bundles.
pub(crate) fn expected_entries(pems: &[String]) -> Vec<KeytoolEntry> {
    let mut v: Vec<KeytoolEntry> = truststore::entries_from_pem(pems.concat().as_bytes())
        .unwrap()
        .into_iter()
        .map(|e| KeytoolEntry {
            alias: e.alias,
            kind: "trustedCertEntry".into(),
            sha256: fingerprint(&e.der),
        })
        .collect();
    v.sort();
    v
}

/// The whole life of a truststore in `--once`, at trace level: created with
/// exactly the instance's CA as a trustedCertEntry; a wrong password fails
/// keytool; a JVM trusts the instance's node and refuses another's; an
/// unchanged upstream rewrites nothing and runs no hook; a rotation with a
/// grace period (`keep_previous`) rewrites it with the new CA and the
/// previous one and runs the hook once, and a fresh JVM trusts the node
/// before and after it switches to the new CA; a changed password rewrites it (a change); the password is in no
/// log line.
#[test]
fn once_keeps_a_truststore_that_keytool_lists_and_a_jvm_trusts() {
    const TEST: &str = "truststore::once_keeps_a_truststore_that_keytool_lists_and_a_jvm_trusts";
    let Some(jdk) = Jdk::find(TEST) else {
        return;
    };
    let mut env = Env::new();
    java_instance(
        &mut env,
        "ts-a",
        &format!("truststore_password = \"{PASSWORD}\"\ninternational = \"out/ts-a.crt\"\n"),
    );
    env.standin.add_instance(PROJECT, "other");
    // A grace period: after a rotation the store holds the previous CA too.
    env.sync.push_str("keep_previous = \"30d\"\n");
    let once = |env: &Env| {
        env.write_config();
        let out = env
            .command(&["--once"])
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        let run = crate::support::Run::from(out);
        assert_no_secret("--once at trace level", &run.all(), &[PASSWORD.to_string()]);
        run
    };
    let p = store(&env, "ts-a");
    let run = once(&env);
    run.assert_code(0);
    assert!(run.stdout.contains("truststore created"), "{}", run.all());
    let pem = env.standin.cert_pem("ts-a", "international");
    assert_eq!(
        jdk.keytool_list(&p, PASSWORD),
        Ok(expected_entries(std::slice::from_ref(&pem)))
    );
    let wrong = jdk.keytool_list(&p, "changeit").unwrap_err();
    assert!(wrong.contains("password was incorrect"), "{wrong}");
    let node = env.standin.instance_addr("ts-a").port();
    let other = env.standin.instance_addr("other").port();
    let r = jdk.handshakes(&p, PASSWORD, &[node, other]);
    assert!(r[0].is_ok(), "{r:?}");
    assert!(
        r[1].as_ref()
            .unwrap_err()
            .contains("PKIX path building failed"),
        "{r:?}"
    );
    assert_eq!(env.hook_runs("ts-a").len(), 1);

    // Unchanged upstream: the same file (inode and bytes), no hook.
    let (before, bytes) = (crate::support::stamp(&p), fs::read(&p).unwrap());
    let run = once(&env);
    run.assert_code(0);
    assert!(run.stdout.contains("truststore unchanged"), "{}", run.all());
    assert_eq!(
        (crate::support::stamp(&p), fs::read(&p).unwrap()),
        (before, bytes)
    );
    assert_eq!(env.hook_runs("ts-a").len(), 1);

    // Rotation, with the grace period: the new CA and the previous one, the
    // hook once; a fresh JVM trusts the node before it
    // switches to the new CA and after.
    env.standin.rotate("ts-a", "international");
    once(&env).assert_code(0);
    let rotated = env.standin.cert_pem("ts-a", "international");
    assert_eq!(
        jdk.keytool_list(&p, PASSWORD),
        Ok(expected_entries(&[rotated.clone(), pem.clone()]))
    );
    assert_eq!(env.hook_runs("ts-a").len(), 2);
    // The same certificates as the international file.
    let in_pem: Vec<String> =
        dds_certsync::certcheck::inspect_pem(&fs::read(env.path("out/ts-a.crt")).unwrap())
            .unwrap()
            .iter()
            .map(|c| fingerprint(&c.der))
            .collect();
    let mut in_store: Vec<String> = (jdk.keytool_list(&p, PASSWORD).unwrap().into_iter())
        .map(|e| e.sha256)
        .collect();
    in_store.sort();
    let mut sorted = in_pem.clone();
    sorted.sort();
    assert_eq!((in_store, in_pem.len()), (sorted, 2));
    assert!(jdk.handshakes(&p, PASSWORD, &[node])[0].is_ok(), "old CA");
    env.standin.server_follow_link("ts-a");
    assert!(jdk.handshakes(&p, PASSWORD, &[node])[0].is_ok(), "new CA");

    // A new password: rewritten, a change; the old one no longer opens it.
    env.instances.clear();
    java_config(
        &mut env,
        "ts-a",
        "truststore_password = \"Another-Pass-2\"\n",
    );
    once(&env).assert_code(0);
    assert_eq!(env.hook_runs("ts-a").len(), 3);
    assert!(jdk.keytool_list(&p, "Another-Pass-2").is_ok());
    assert!(jdk.keytool_list(&p, PASSWORD).is_err());
}

const LIMIT: Duration = Duration::from_secs(30);

/// The store at `p` holds exactly `entries` and opens with `password` (the
/// library's reading: cheap enough to poll; keytool checks it at the end).
fn holds(p: &Path, password: &str, entries: &[Entry]) -> bool {
    fs::read(p).is_ok_and(|b| {
        truststore::decode(&b, &Secret::new(password), Profile::Modern)
            .ok()
            .as_deref()
            == Some(entries)
    })
}

/// The value of the metric line starting with `prefix` (name and labels).
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The daemon keeps a truststore whose password is in a file: ready once it
/// is there, its expiry in the gauges under `output="truststore"`, and put
/// back (with the configured password and exactly its entries) when it is
/// deleted, overwritten, replaced by a store with another password or with
/// one more certificate; a restore runs no hook.
#[test]
fn the_daemon_heals_a_truststore_and_reports_its_expiry() {
    const TEST: &str = "truststore::the_daemon_heals_a_truststore_and_reports_its_expiry";
    let Some(jdk) = Jdk::find(TEST) else {
        return;
    };
    let mut env = Env::new();
    let pass_file = env.path("truststore-pass");
    fs::write(&pass_file, format!("{PASSWORD}\n")).unwrap();
    java_instance(
        &mut env,
        "ts-a",
        &format!("truststore_password_file = \"{}\"\n", pass_file.display()),
    );
    env.standin.add_instance(PROJECT, "other");
    env.sync.push_str("interval = \"1h\"\n");
    env.instances
        .push("\n[server]\nlisten = \"127.0.0.1:0\"\n".into());
    let d = env.daemon(&[]);
    let addr = d.listen_addr(1);
    env.wait_hook_runs(&d, "ts-a", 1);
    let p = store(&env, "ts-a");
    let pem = env.standin.cert_pem("ts-a", "international");
    let entries = truststore::entries_from_pem(pem.as_bytes()).unwrap();
    assert!(holds(&p, PASSWORD, &entries));

    let get = |path: &str| crate::support::http(addr, "GET", path, Duration::from_secs(5));
    assert!(
        wait_until(LIMIT, || get("/readyz").is_some_and(|r| r.0 == 200)),
        "{}",
        d.log()
    );
    let labels =
        "{instance=\"ts-a\",service=\"dds\",category=\"international\",output=\"truststore\"}";
    let not_after = dds_certsync::certcheck::verify(pem.as_bytes(), std::time::SystemTime::now())
        .unwrap()
        .not_after() as f64;
    let m = get("/metrics").unwrap().1;
    assert_eq!(
        metric(
            &m,
            &format!("dds_certsync_cert_not_after_timestamp_seconds{labels}")
        ),
        Some(not_after),
        "{m}"
    );
    assert_eq!(
        metric(&m, &format!("dds_certsync_cert_expiring{labels}")),
        Some(0.0),
        "{m}"
    );

    let other_pass = truststore::encode(&entries, &Secret::new("not-the-pass"), Profile::Modern);
    let mut more = entries.clone();
    more.extend(
        truststore::entries_from_pem(env.standin.cert_pem("other", "international").as_bytes())
            .unwrap(),
    );
    let one_more = truststore::encode(&more, &Secret::new(PASSWORD), Profile::Modern);
    let tampering: [(&str, Option<Vec<u8>>); 4] = [
        ("deleted", None),
        ("overwritten", Some(b"garbage".to_vec())),
        ("another password", Some(other_pass.unwrap())),
        ("one more certificate", Some(one_more.unwrap())),
    ];
    for (n, (what, bytes)) in tampering.into_iter().enumerate() {
        let tmp = env.path("out/.planted");
        match bytes {
            None => fs::remove_file(&p).unwrap(),
            Some(b) => {
                fs::write(&tmp, b).unwrap();
                fs::rename(&tmp, &p).unwrap();
            }
        }
        assert!(
            wait_until(LIMIT, || holds(&p, PASSWORD, &entries)),
            "{what}: not restored\n{}",
            d.log()
        );
        let restores = format!("dds_certsync_restores_total{labels}");
        assert!(
            wait_until(LIMIT, || metric(&get("/metrics").unwrap().1, &restores)
                == Some((n + 1) as f64)),
            "{what}"
        );
    }
    assert_eq!(jdk.keytool_list(&p, PASSWORD), Ok(expected_entries(&[pem])));
    assert_eq!(env.hook_runs("ts-a").len(), 1, "a restore runs no hook");
    assert_no_secret("the daemon's log", &d.log(), &[PASSWORD.to_string()]);
}

/// `--dry-run` plans a truststore without writing it; `--check` names the
/// truststore keys that would fail at run time.
#[test]
fn dry_run_writes_no_truststore_and_check_names_its_keys() {
    let mut env = Env::new();
    java_instance(&mut env, "ts-a", "");
    let run = env.once(&["--dry-run"]);
    run.assert_code(0);
    assert!(
        run.stdout.contains("truststore would be created"),
        "{}",
        run.all()
    );
    assert!(!store(&env, "ts-a").exists());
    assert!(env.hook_runs("ts-a").is_empty());

    for (lines, key) in [
        (
            "truststore_profile = \"rc2\"\n",
            "instances[0].truststore_profile",
        ),
        (
            "truststore_password_file = \"/nonexistent/pass\"\n",
            "instances[0].truststore_password_file",
        ),
        (
            "truststore_password = \"pässwörd\"\n",
            "instances[0].truststore_password",
        ),
    ] {
        env.instances.clear();
        java_config(&mut env, "ts-a", lines);
        env.write_config();
        let run = crate::support::Run::from(env.command(&["--check"]).output().unwrap());
        run.assert_code(2);
        assert!(run.all().contains(key), "{key}\n{}", run.all());
        assert!(!run.all().contains("pässwörd"), "{}", run.all());
    }
}

/// A crash (an abort, like SIGKILL) at each step of a truststore's
/// replacement leaves a store keytool opens, the old or the new one; the
/// restart finishes the job and runs the hook.
#[test]
fn a_crash_at_each_step_of_a_truststore_replacement_leaves_a_store_keytool_opens() {
    const TEST: &str =
        "truststore::a_crash_at_each_step_of_a_truststore_replacement_leaves_a_store_keytool_opens";
    let Some(jdk) = Jdk::find(TEST) else {
        return;
    };
    // "before-rename:1" is the hook record's temp file, ":2" the store's.
    let points = [
        "ledger-before-store",
        "before-rename:1",
        "after-rename:1",
        "before-rename:2",
        "after-rename:2",
        "before-hook",
        "after-hook",
    ];
    for point in points {
        let mut env = Env::new();
        java_instance(
            &mut env,
            "ts-a",
            &format!("truststore_password = \"{PASSWORD}\"\n"),
        );
        env.once(&[]).assert_code(0);
        let old = expected_entries(&[env.standin.cert_pem("ts-a", "international")]);
        env.standin.rotate("ts-a", "international");
        let new = expected_entries(&[env.standin.cert_pem("ts-a", "international")]);

        env.write_config();
        let run = crate::support::Run::from(
            env.command(&["--once"])
                .env("DDS_CERTSYNC_CRASH_AT", point)
                .output()
                .unwrap(),
        );
        assert_eq!(run.code, -1, "expected a crash at {point}\n{}", run.all());
        let listed = jdk.keytool_list(&store(&env, "ts-a"), PASSWORD);
        assert!(
            listed == Ok(old.clone()) || listed == Ok(new.clone()),
            "{point}: {listed:?}"
        );

        env.once(&[]).assert_code(0);
        assert_eq!(
            jdk.keytool_list(&store(&env, "ts-a"), PASSWORD),
            Ok(new),
            "{point}"
        );
        let runs = env.hook_runs("ts-a").len();
        let expected = if point == "after-hook" { 3 } else { 2 };
        assert_eq!(runs, expected, "{point}");
        assert_eq!(
            crate::support::ls(&env.path("out")),
            vec!["ts-a.p12"],
            "{point}: temporary files are cleaned at start"
        );
    }
}
