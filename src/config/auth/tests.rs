//! Unit tests of the `[auth]` section and the `auto` chain.

use super::super::{parse, validate_with_env};
use super::*;
use crate::catalog::profile;

const BASE: &str = r#"
[cloud]
region = "cn-north-4"
project_id = "p1"
[[instances]]
id = "i1"
international = "/tmp/x/a.crt"
"#;

fn with_auth(auth: &str) -> String {
    BASE.replace("[[instances]]", &format!("[auth]\n{auth}\n[[instances]]"))
}

fn check(text: &str, env: &SdkEnv) -> Result<super::super::Config, ConfigError> {
    validate_with_env(parse(text)?, Path::new("/base"), env)
}

#[test]
fn absent_auth_is_auto_and_falls_to_metadata_listing_what_was_tried() {
    let c = check(BASE, &SdkEnv::default()).unwrap();
    let Auth::EcsMetadata(m) = c.auth else {
        panic!("{:?}", c.auth)
    };
    assert_eq!(m.endpoint, DEFAULT_METADATA_ENDPOINT);
    assert_eq!(m.auto_tried.len(), 2, "{:?}", m.auto_tried);
    assert!(m.auto_tried[0].contains(ENV_AK));
}

#[test]
fn auto_prefers_the_environment_and_takes_its_project_id() {
    let env = SdkEnv {
        ak: true,
        sk: true,
        security_token: true,
        project_id: Some("p-env".into()),
        credentials_file: CredentialsFile::Found(
            "/c".into(),
            profile::parse_basic("[basic]\nak=a\nsk=b\n")
                .unwrap()
                .unwrap(),
        ),
        ..SdkEnv::default()
    };
    let text = BASE.replace("project_id = \"p1\"\n", "");
    let c = check(&text, &env).unwrap();
    let Auth::Aksk(a) = &c.auth else {
        panic!("{:?}", c.auth)
    };
    assert_eq!(a.access_key, SecretSource::Env(ENV_AK.into()));
    assert_eq!(
        a.security_token,
        Some(SecretSource::Env(ENV_SECURITY_TOKEN.into()))
    );
    assert!(a.origin.as_deref().unwrap().contains("environment"));
    assert_eq!(c.instances[0].project_id, "p-env");
    // The config's project ID wins over the environment's.
    let c = check(BASE, &env).unwrap();
    assert_eq!(c.instances[0].project_id, "p1");
}

#[test]
fn auto_uses_the_credentials_file_with_its_project_and_iam_endpoint() {
    let prof = profile::parse_basic(
        "[basic]\nak=AKF\nsk=SKF\nproject_id=p-file\niam_endpoint=https://iam.local:9/\n",
    )
    .unwrap()
    .unwrap();
    let env = SdkEnv {
        credentials_file: CredentialsFile::Found("/home/u/.huaweicloud/credentials".into(), prof),
        ..SdkEnv::default()
    };
    let text = BASE.replace("project_id = \"p1\"\n", "");
    let c = check(&text, &env).unwrap();
    let Auth::Aksk(a) = &c.auth else {
        panic!("{:?}", c.auth)
    };
    assert_eq!(a.access_key, SecretSource::Inline(Secret::new("AKF")));
    assert_eq!(a.security_token, None);
    assert!(
        a.origin
            .as_deref()
            .unwrap()
            .contains("/home/u/.huaweicloud/credentials")
    );
    assert_eq!(c.instances[0].project_id, "p-file");
    assert_eq!(c.cloud.iam_endpoint.as_deref(), Some("https://iam.local:9"));
}

#[test]
fn auto_refuses_half_configured_sources() {
    let env = SdkEnv {
        ak: true,
        ..SdkEnv::default()
    };
    let e = check(BASE, &env).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("auth"));
    assert!(e.message.contains(ENV_SK), "{e}");
    let env = SdkEnv {
        credentials_file: CredentialsFile::Broken(
            "/c".into(),
            "line 2: expected key = value".into(),
        ),
        ..SdkEnv::default()
    };
    let e = check(BASE, &env).unwrap_err();
    assert!(
        e.message.contains("/c") && e.message.contains("line 2"),
        "{e}"
    );
}

#[test]
fn aksk_defaults_to_the_sdk_variables() {
    let c = check(&with_auth("method = \"aksk\""), &SdkEnv::default()).unwrap();
    assert_eq!(
        c.auth,
        Auth::Aksk(AkSk {
            access_key: SecretSource::Env(ENV_AK.into()),
            secret_key: SecretSource::Env(ENV_SK.into()),
            security_token: None,
            origin: None,
        })
    );
    let text = with_auth(
        "method = \"aksk\"\naccess_key = \"AK\"\nsecret_key_file = \"sk\"\nsecurity_token_env = \"MY_TOKEN\"",
    );
    let c = check(&text, &SdkEnv::default()).unwrap();
    let Auth::Aksk(a) = &c.auth else { panic!() };
    assert_eq!(a.secret_key, SecretSource::File("/base/sk".into()));
    assert_eq!(a.security_token, Some(SecretSource::Env("MY_TOKEN".into())));
}

#[test]
fn a_secret_given_two_ways_is_refused() {
    let text = with_auth("method = \"aksk\"\nsecret_key = \"x\"\nsecret_key_env = \"Y\"");
    let e = check(&text, &SdkEnv::default()).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("auth.secret_key"));
}

#[test]
fn misspelt_auth_key_is_refused() {
    let text = with_auth("method = \"aksk\"\nsecret_keyy = \"x\"");
    let e = check(&text, &SdkEnv::default()).unwrap_err();
    assert!(e.to_string().contains("secret_keyy"), "{e}");
}

#[test]
fn password_needs_user_domain_and_an_iam_endpoint() {
    let pw = "method = \"password\"\nuser = \"bob\"\ndomain = \"acme\"\npassword = \"pw\"";
    let c = check(&with_auth(pw), &SdkEnv::default()).unwrap();
    let Auth::Password(p) = &c.auth else { panic!() };
    assert_eq!(p.iam_endpoint, "https://iam.cn-north-4.myhuaweicloud.com");
    // HUAWEICLOUD_SDK_IAM_ENDPOINT overrides the derived one...
    let env = SdkEnv {
        iam_endpoint: Some("https://127.0.0.1:9443".into()),
        ..SdkEnv::default()
    };
    let c = check(&with_auth(pw), &env).unwrap();
    let Auth::Password(p) = &c.auth else { panic!() };
    assert_eq!(p.iam_endpoint, "https://127.0.0.1:9443");
    // ...but not the config's.
    let text = with_auth(pw).replace(
        "region = \"cn-north-4\"",
        "region = \"cn-north-4\"\niam_endpoint = \"https://iam.example:1\"",
    );
    let c = check(&text, &env).unwrap();
    assert_eq!(
        c.cloud.iam_endpoint.as_deref(),
        Some("https://iam.example:1")
    );
    // No region, no IAM endpoint: a config error naming the key.
    let text = with_auth(pw).replace(
        "region = \"cn-north-4\"",
        "endpoint = \"https://127.0.0.1:1\"",
    );
    let e = check(&text, &SdkEnv::default()).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("cloud.iam_endpoint"));
    assert!(e.message.contains(ENV_IAM_ENDPOINT), "{e}");
    let e = check(
        &with_auth("method = \"password\"\ndomain = \"d\"\npassword = \"p\""),
        &SdkEnv::default(),
    )
    .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("auth.user"));
    // A plain-HTTP IAM endpoint from the environment is refused.
    let env = SdkEnv {
        iam_endpoint: Some("http://iam.example".into()),
        ..SdkEnv::default()
    };
    let e = check(&with_auth(pw), &env).unwrap_err();
    assert_eq!(e.key.as_deref(), Some(ENV_IAM_ENDPOINT));
}

#[test]
fn metadata_endpoint_is_a_bare_url() {
    let c = check(
        &with_auth("method = \"ecs-metadata\"\nmetadata_endpoint = \"http://127.0.0.1:8080/\""),
        &SdkEnv::default(),
    )
    .unwrap();
    assert_eq!(
        c.auth,
        Auth::EcsMetadata(MetadataAuth {
            endpoint: "http://127.0.0.1:8080".into(),
            auto_tried: vec![]
        })
    );
    let e = check(
        &with_auth("method = \"ecs-metadata\"\nmetadata_endpoint = \"169.254.169.254\""),
        &SdkEnv::default(),
    )
    .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("auth.metadata_endpoint"));
}

#[test]
fn unset_secret_variable_is_a_resolve_error() {
    let auth = Auth::Token(SecretSource::Env(
        "DDS_CERTSYNC_TEST_SURELY_UNSET_VARIABLE".into(),
    ));
    let e = resolve(&auth).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("auth.token"));
    assert!(
        e.message
            .contains("DDS_CERTSYNC_TEST_SURELY_UNSET_VARIABLE")
    );
}

#[test]
fn blank_sdk_variables_are_refused_not_taken_for_unset() {
    let env = SdkEnv {
        sk: true,
        blank: vec![ENV_AK],
        ..SdkEnv::default()
    };
    let e = check(BASE, &env).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("auth"));
    assert!(
        e.message.contains(ENV_AK) && e.message.contains("whitespace"),
        "{e}"
    );
    let env = SdkEnv {
        blank: vec![ENV_SECURITY_TOKEN],
        ..SdkEnv::default()
    };
    let e = check(&with_auth("method = \"aksk\""), &env).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("auth.security_token"));
    // An explicit token makes the variable irrelevant.
    assert!(
        check(
            &with_auth("method = \"aksk\"\nsecurity_token_env = \"T\""),
            &env
        )
        .is_ok()
    );
    let e = check(&with_auth("method = \"token\"\ntoken = \" \\n\""), &env).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("auth.token"));
}

#[test]
fn a_blank_secret_variable_or_file_is_a_resolve_error() {
    // A variable name no other test uses; set before any thread reads it.
    let var = "DDS_CERTSYNC_TEST_BLANK_SECRET_VARIABLE";
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var(var, " \t\n") };
    let e = resolve(&Auth::Token(SecretSource::Env(var.into()))).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("auth.token"));
    assert!(
        e.message.contains(var) && e.message.contains("whitespace"),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("sk");
    for blank in ["", "\n", "  \r\n"] {
        std::fs::write(&f, blank).unwrap();
        let e = resolve(&Auth::Token(SecretSource::File(f.clone()))).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("auth.token_file"));
        assert!(e.message.contains("is empty"), "{e}");
    }
    std::fs::write(&f, "s3cr3t\n").unwrap();
    assert!(resolve(&Auth::Token(SecretSource::File(f.clone()))).is_ok());
    std::fs::write(&f, b"\xff\xfe").unwrap();
    let e = resolve(&Auth::Token(SecretSource::File(f))).unwrap_err();
    assert!(e.message.contains("not UTF-8"), "{e}");
}

#[test]
fn inline_secret_detection() {
    let raw = |t: &str| parse(&with_auth(t)).unwrap().auth.unwrap();
    assert!(raw("method = \"token\"\ntoken = \"x\"").has_inline_secret());
    assert!(!raw("method = \"token\"\ntoken_file = \"x\"").has_inline_secret());
    assert!(
        !raw("method = \"aksk\"\naccess_key = \"AK\"\nsecret_key_env = \"S\"").has_inline_secret()
    );
    assert!(
        raw("method = \"password\"\nuser=\"u\"\ndomain=\"d\"\npassword=\"p\"").has_inline_secret()
    );
}
