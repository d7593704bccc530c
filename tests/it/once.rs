//! `--once` end to end: both categories, unchanged files, rotations, hooks,
//! and what is sent where.

use std::fs;

use crate::support::*;

#[test]
fn syncs_both_categories_including_sm2_and_runs_the_hook() {
    let mut env = Env::new();
    env.instance("inst-a").instance("inst-b");
    let run = env.once(&[]);
    run.assert_code(0);
    for id in ["inst-a", "inst-b"] {
        for cat in ["international", "national"] {
            assert_eq!(
                fs::read(env.out(id, cat)).unwrap(),
                env.served(id, cat),
                "{id} {cat}"
            );
        }
        assert!(
            run.stdout.contains(&format!(
                "ok     name-{id} ({id}): international created; national created; hook ok"
            )),
            "{}",
            run.all()
        );
    }
    // The national certificate really is SM2-with-SM3.
    let v = dds_certsync::certcheck::verify(
        &fs::read(env.out("inst-a", "national")).unwrap(),
        std::time::SystemTime::now(),
    )
    .unwrap();
    assert_eq!(v.certs[0].signature_oid, "1.2.156.10197.1.501");
    // One hook run per instance, with the documented environment.
    let runs = env.hook_runs("inst-a");
    assert_eq!(runs.len(), 1, "{runs:?}");
    let hook = &runs[0];
    assert!(hook.contains("DDS_CERTSYNC_INSTANCE_ID=inst-a\n"), "{hook}");
    assert!(
        hook.contains("DDS_CERTSYNC_INSTANCE_NAME=name-inst-a\n"),
        "{hook}"
    );
    let intl = env.out("inst-a", "international");
    let natl = env.out("inst-a", "national");
    assert!(
        hook.contains(&format!(
            "DDS_CERTSYNC_CHANGED={}\n{}\n",
            intl.display(),
            natl.display()
        )),
        "{hook}"
    );
    // New files: the old hashes are empty lines.
    assert!(hook.contains("DDS_CERTSYNC_OLD_SHA256=\n\n"), "{hook}");
    let new_intl =
        dds_certsync::certcheck::hex(&dds_certsync::certcheck::sha256(&fs::read(&intl).unwrap()));
    assert!(
        hook.contains(&format!("DDS_CERTSYNC_NEW_SHA256={new_intl}\n")),
        "{hook}"
    );
    // Logs carry one line per decision.
    assert_eq!(run.stderr.matches(" fetched ").count(), 4, "{}", run.stderr);
}

#[test]
fn unchanged_certificates_are_left_untouched() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.once(&[]).assert_code(0);
    let before = (
        stamp(&env.out("inst-a", "international")),
        stamp(&env.out("inst-a", "national")),
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    let run = env.once(&[]);
    run.assert_code(0);
    let after = (
        stamp(&env.out("inst-a", "international")),
        stamp(&env.out("inst-a", "national")),
    );
    assert_eq!(before, after, "same inode and mtime");
    assert!(
        run.stdout
            .contains("international unchanged; national unchanged"),
        "{}",
        run.all()
    );
    assert_eq!(
        env.hook_runs("inst-a").len(),
        1,
        "no hook for an unchanged round"
    );
}

#[test]
fn a_rotation_is_replaced_by_rename_and_reported_to_the_hook() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.once(&[]).assert_code(0);
    let natl = env.out("inst-a", "national");
    let intl = env.out("inst-a", "international");
    let (old_ino, _) = stamp(&natl);
    let (intl_stamp_before, old_bytes) = (stamp(&intl), fs::read(&natl).unwrap());
    env.standin.rotate("inst-a", "national");
    let run = env.once(&[]);
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("international unchanged; national replaced; hook ok"),
        "{}",
        run.all()
    );
    assert_ne!(stamp(&natl).0, old_ino, "replaced by rename: a new inode");
    assert_eq!(stamp(&intl), intl_stamp_before);
    assert_eq!(fs::read(&natl).unwrap(), env.served("inst-a", "national"));
    let runs = env.hook_runs("inst-a");
    assert_eq!(runs.len(), 2);
    let old_hex = dds_certsync::certcheck::hex(&dds_certsync::certcheck::sha256(&old_bytes));
    assert!(
        runs[1].contains(&format!("DDS_CERTSYNC_CHANGED={}\n", natl.display())),
        "{}",
        runs[1]
    );
    assert!(
        runs[1].contains(&format!("DDS_CERTSYNC_OLD_SHA256={old_hex}\n")),
        "{}",
        runs[1]
    );
    assert!(
        run.stderr.contains(&format!("old_sha256={old_hex}")),
        "{}",
        run.stderr
    );
    // Nothing but the outputs in the directory.
    assert_eq!(
        ls(&env.path("out")),
        vec!["inst-a-international.crt", "inst-a-national.crt"]
    );
}

#[test]
fn categories_not_configured_are_ignored_and_mode_is_applied() {
    use std::os::unix::fs::PermissionsExt;
    let mut env = Env::new();
    env.standin.add_instance(PROJECT, "only-intl");
    env.raw_instance("id = \"only-intl\"\ninternational = \"out/x.crt\"\nmode = \"0640\"");
    env.once(&[]).assert_code(0);
    assert_eq!(ls(&env.path("out")), vec!["x.crt"]);
    assert_eq!(
        fs::metadata(env.path("out/x.crt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
}

#[test]
fn no_credential_reaches_the_download_host() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.once(&[]).assert_code(0);
    let reqs = env.standin.requests();
    let downloads: Vec<_> = reqs
        .iter()
        .filter(|r| r.listener == Listener::Download)
        .collect();
    assert_eq!(downloads.len(), 2);
    for r in downloads {
        for h in [
            "x-auth-token",
            "authorization",
            "x-security-token",
            "x-project-id",
        ] {
            assert!(!r.has_header(h), "{h} sent to the download host: {r:?}");
        }
    }
    let api: Vec<_> = reqs
        .iter()
        .filter(|r| r.listener == Listener::Api)
        .collect();
    assert_eq!(api.len(), 1);
    assert_eq!(
        api[0].header("x-auth-token"),
        Some(env.standin.token().as_str())
    );
    assert_eq!(api[0].header("x-project-id"), Some(PROJECT));
}

#[test]
fn a_failed_instance_does_not_stop_the_others() {
    let mut env = Env::new();
    env.instance("good").instance("bad");
    env.standin
        .push_fault(FaultRule::always(Fault::DownloadReset).for_instance("bad"));
    let run = env.once(&[]);
    run.assert_code(1);
    assert!(env.out("good", "national").exists());
    assert!(
        run.stdout.contains("ok     name-good (good)"),
        "{}",
        run.all()
    );
    assert!(
        run.stdout.contains("FAILED name-bad (bad)"),
        "{}",
        run.all()
    );
}

#[test]
fn throttling_is_retried_after_retry_after() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.standin.push_fault(FaultRule::once(Fault::ApiStatus {
        status: 429,
        body:
            r#"{"error_code":"APIGW.0308","error_msg":"The throttling threshold has been reached"}"#
                .into(),
        retry_after: Some("1".into()),
    }));
    let run = env.once(&[]);
    run.assert_code(0);
    assert!(run.stderr.contains("APIGW.0308"), "{}", run.stderr);
    assert!(run.stderr.contains("retrying in 1s"), "{}", run.stderr);
    let api = env
        .standin
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Api)
        .count();
    assert_eq!(api, 2);
}

#[test]
fn dry_run_fetches_but_writes_nothing() {
    let mut env = Env::new();
    env.instance("inst-a");
    let run = env.once(&["--dry-run"]);
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("international would be created; national would be created"),
        "{}",
        run.all()
    );
    assert!(!env.path("out").exists());
    assert!(env.hook_runs("inst-a").is_empty());
    // Nor is a hook recorded as owed for the changes it did not make.
    assert_eq!(ls(&env.path("state")), Vec::<String>::new());
    // A real run afterwards runs the hook once, for the real change.
    env.once(&[]).assert_code(0);
    assert_eq!(env.hook_runs("inst-a").len(), 1);
}
