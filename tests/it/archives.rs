//! Downloads that are DER or a zip (issue 15): the real binary, `--once`,
//! against the stand-in serving each form. A good form writes exactly the
//! file PEM writes; every hostile zip fails the category with exit 1, names
//! the instance, the category and why, and leaves the old file as it was.

use std::fs;

use dds_standin::{Form, HostileZip};

use crate::support::*;

#[test]
fn der_and_zips_write_the_same_file_as_pem() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.once(&[]).assert_code(0);
    let pem_files = env.outputs("inst-a");
    assert_eq!(pem_files, env.served_all("inst-a"));
    for form in [Form::Der, Form::Zip, Form::DerZip] {
        for category in CATEGORIES {
            env.standin.set_form("inst-a", category, form);
        }
        // The same certificates in another form: nothing to write, no hook.
        let run = env.once(&[]);
        run.assert_code(0);
        assert_eq!(env.outputs("inst-a"), pem_files, "{form:?}\n{}", run.all());
        assert_eq!(env.hook_runs("inst-a").len(), 1, "{form:?}");
    }
    // A rotation served zipped arrives as the canonical PEM.
    env.standin.set_form("inst-a", "international", Form::Zip);
    env.standin.set_form("inst-a", "national", Form::Der);
    env.standin.rotate("inst-a", "international");
    env.standin.rotate("inst-a", "national");
    let run = env.once(&[]);
    run.assert_code(0);
    assert_eq!(
        env.outputs("inst-a"),
        env.served_all("inst-a"),
        "{}",
        run.all()
    );
    assert_ne!(env.outputs("inst-a"), pem_files);
    assert_eq!(env.hook_runs("inst-a").len(), 2);
}

/// What each hostile zip's refusal says.
fn why(kind: HostileZip) -> &'static str {
    match kind {
        HostileZip::Traversal => {
            r#"zip member "../../etc/ca.pem" has an unsafe name (a `..` component)"#
        }
        HostileZip::Absolute => r#"zip member "/etc/ca.pem" has an unsafe name (absolute)"#,
        HostileZip::Bomb => r#"zip member "bundle.pem" unpacks to more than 1048576 bytes"#,
        HostileZip::Encrypted => r#"zip member "ca.pem" is encrypted"#,
        HostileZip::NoCertificate => "no member named *.pem, *.crt or *.cer",
        HostileZip::KeyInside => r#"zip member "server.pem": refused PEM block "PRIVATE KEY""#,
        HostileZip::Duplicate => "a member name is used twice",
        HostileZip::Symlink => r#"zip member "latest.pem" is a symbolic link entry"#,
        HostileZip::Nested => "nested archives are not opened",
        HostileZip::Truncated => "no end-of-central-directory record",
        HostileZip::BadCrc => r#"zip member "ca.pem" cannot be read"#,
        HostileZip::Bzip2 => "only stored and deflate are read",
        HostileZip::TooMany => "lists 65 entries, more than 64",
        HostileZip::Empty => "the zip archive has no members",
    }
}

#[test]
fn every_hostile_zip_is_refused_and_the_old_file_kept() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.once(&[]).assert_code(0);
    let before = env.outputs("inst-a");
    // The certificate changes upstream, but what arrives is hostile.
    env.standin.rotate("inst-a", "international");
    for kind in HostileZip::ALL {
        env.standin.clear_faults();
        env.standin
            .push_fault(FaultRule::always(Fault::DownloadZip(kind)).for_category("international"));
        let run = env.once(&[]);
        run.assert_code(1);
        let all = run.all();
        assert!(
            all.contains("FAILED name-inst-a (inst-a)"),
            "{kind:?}\n{all}"
        );
        assert!(all.contains("international FAILED"), "{kind:?}\n{all}");
        assert!(all.contains("category=international"), "{kind:?}\n{all}");
        // Text logs escape quotes inside a field; the summary line does not.
        assert!(
            all.contains(why(kind)) || all.contains(&why(kind).replace('"', "\\\"")),
            "{kind:?}: expected {:?} in\n{all}",
            why(kind)
        );
        assert_eq!(
            fs::read(env.out("inst-a", "international")).unwrap(),
            before[0],
            "{kind:?}: the old file must stay byte for byte"
        );
    }
    assert_eq!(
        ls(&env.path("out")),
        vec!["inst-a-international.crt", "inst-a-national.crt"],
        "nothing but the outputs: no member was written anywhere"
    );
    assert_eq!(env.hook_runs("inst-a").len(), 1);
}
