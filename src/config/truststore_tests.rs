//! Unit tests of the `truststore` keys: what they require, their defaults,
//! and that the password is checked and never shown.

use std::path::{Path, PathBuf};

use super::*;
use crate::secret::Secret;
use crate::truststore::Profile;

const BASE: &str = r#"
[cloud]
region = "cn-north-4"
project_id = "p1"
[auth]
method = "token"
token = "t"
[[instances]]
id = "i1"
"#;

fn check(instance_lines: &str) -> Result<Config, ConfigError> {
    validate(
        parse(&format!("{BASE}{instance_lines}"))?,
        Path::new("/base"),
    )
}

fn key_of(instance_lines: &str) -> String {
    check(instance_lines).unwrap_err().key.unwrap_or_default()
}

#[test]
fn a_truststore_alone_is_an_output_with_java_defaults() {
    let c = check("truststore = \"out/ts.p12\"\n").unwrap();
    let outs = &c.instances[0].outputs;
    assert_eq!(outs.len(), 1, "international is optional with a truststore");
    assert_eq!(outs[0].name(), "truststore");
    assert_eq!(outs[0].category, Category::International);
    assert_eq!(outs[0].path, PathBuf::from("/base/out/ts.p12"));
    let t = outs[0].truststore.as_ref().unwrap();
    assert_eq!(t.password, SecretSource::Inline(Secret::new("changeit")));
    assert_eq!(t.profile, Profile::Modern);
    // With the PEM output too, and every key set.
    let c = check(
        "international = \"a.crt\"\ntruststore = \"ts.p12\"\ntruststore_password_env = \"TS_PASS\"\ntruststore_profile = \"legacy\"\n",
    )
    .unwrap();
    let outs = &c.instances[0].outputs;
    let names: Vec<&str> = outs.iter().map(Output::name).collect();
    assert_eq!(names, ["international", "truststore"]);
    let t = outs[1].truststore.as_ref().unwrap();
    assert_eq!(t.password, SecretSource::Env("TS_PASS".into()));
    assert_eq!(t.profile, Profile::Legacy);
}

#[test]
fn truststore_keys_without_a_truststore_are_refused_naming_the_key() {
    for k in [
        "truststore_password = \"x\"",
        "truststore_password_file = \"/x\"",
        "truststore_password_env = \"X\"",
        "truststore_profile = \"modern\"",
    ] {
        let key = key_of(&format!("international = \"a.crt\"\n{k}\n"));
        assert_eq!(
            key,
            format!("instances[0].{}", k.split(' ').next().unwrap())
        );
    }
    // And an instance with nothing to write says truststore is an option.
    let e = check("").unwrap_err();
    assert!(e.message.contains("truststore"), "{e}");
}

#[test]
fn the_password_is_one_source_printable_ascii_and_never_shown() {
    let ts = "truststore = \"ts.p12\"\n";
    assert_eq!(
        key_of(&format!(
            "{ts}truststore_password = \"a\"\ntruststore_password_env = \"B\"\n"
        )),
        "instances[0].truststore_password"
    );
    for bad in ["", "   ", "pässwörd", "tab\\there"] {
        let e = check(&format!("{ts}truststore_password = \"{bad}\"\n")).unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("instances[0].truststore_password"),
            "{bad:?}"
        );
        assert!(!e.to_string().contains("pässwörd"), "{e}");
    }
    assert_eq!(
        key_of(&format!("{ts}truststore_password_env = \"A=B\"\n")),
        "instances[0].truststore_password_env"
    );
    let c = check(&format!("{ts}truststore_password = \"S3cret pass!\"\n")).unwrap();
    assert!(!format!("{c:?}").contains("S3cret"), "{c:?}");
}

#[test]
fn an_unknown_profile_is_refused_naming_the_choices() {
    let e = check("truststore = \"ts.p12\"\ntruststore_profile = \"rc2\"\n").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("instances[0].truststore_profile"));
    assert!(
        e.message.contains("modern") && e.message.contains("legacy"),
        "{e}"
    );
}

#[test]
fn a_truststore_on_another_outputs_path_is_refused() {
    let e = check("international = \"a.crt\"\ntruststore = \"a.crt\"\n").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("instances[0].truststore"));
    assert!(e.message.contains("instances[0].international"), "{e}");
    let e = check("truststore = \"\"\n").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("instances[0].truststore"));
}

#[test]
fn resolve_reads_a_password_file_or_variable_and_checks_it() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("pass");
    let with_file = format!(
        "truststore = \"ts.p12\"\ntruststore_password_file = \"{}\"\n",
        f.display()
    );
    let run = |lines: &str| resolve(check(lines).unwrap());
    let e = run(&with_file).unwrap_err();
    assert_eq!(
        e.key.as_deref(),
        Some("instances[0].truststore_password_file"),
        "{e}"
    );
    for (content, ok) in [
        ("\n", false),
        ("pässwörd\n", false),
        ("from-a-file\n", true),
    ] {
        std::fs::write(&f, content).unwrap();
        let r = run(&with_file);
        assert_eq!(r.is_ok(), ok, "{content:?}: {r:?}");
        if let Err(e) = r {
            assert!(
                e.key
                    .as_deref()
                    .unwrap()
                    .starts_with("instances[0].truststore_password"),
                "{e}"
            );
            assert!(!e.to_string().contains("pässwörd"), "{e}");
        }
    }
    let var = "DDS_CERTSYNC_TEST_TRUSTSTORE_PASS_UNSET";
    let e = run(&format!(
        "truststore = \"ts.p12\"\ntruststore_password_env = \"{var}\"\n"
    ))
    .unwrap_err();
    assert_eq!(
        e.key.as_deref(),
        Some("instances[0].truststore_password"),
        "{e}"
    );
    assert!(e.message.contains(var), "{e}");
}
