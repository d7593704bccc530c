//! The `[auth]` section: how API requests are authenticated.
//!
//! Methods (`method = ...`): `token`, `aksk`, `password`, `ecs-metadata`
//! and `auto`, the default when `[auth]` is absent. Every secret may be given
//! inline (`secret_key`), as a file (`secret_key_file`, re-read when it
//! changes) or as the name of an environment variable (`secret_key_env`);
//! `aksk` falls back to the official SDKs' `HUAWEICLOUD_SDK_AK` /
//! `HUAWEICLOUD_SDK_SK` / `HUAWEICLOUD_SDK_SECURITY_TOKEN`.
//!
//! `auto` walks the official SDKs' chain: the `HUAWEICLOUD_SDK_*`
//! environment, then the `[basic]` profile of the credentials file, then the
//! ECS metadata service. The first two steps are decided here, purely, from
//! an [`SdkEnv`] snapshot taken by the loader; the metadata step happens at
//! run time (it needs the network), and carries the list of what was tried so
//! that its failure can say so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Cloud, ConfigError, err, https_url};
use crate::cloud::profile::{self, Profile};
use crate::readfile::{Links, SMALL_FILE_LIMIT, read_regular};
use crate::secret::Secret;

/// The official SDKs' environment variables.
pub const ENV_AK: &str = "HUAWEICLOUD_SDK_AK";
pub const ENV_SK: &str = "HUAWEICLOUD_SDK_SK";
pub const ENV_SECURITY_TOKEN: &str = "HUAWEICLOUD_SDK_SECURITY_TOKEN";
pub const ENV_PROJECT_ID: &str = "HUAWEICLOUD_SDK_PROJECT_ID";
pub const ENV_IAM_ENDPOINT: &str = "HUAWEICLOUD_SDK_IAM_ENDPOINT";

/// Where the ECS metadata service lives.
pub const DEFAULT_METADATA_ENDPOINT: &str = "http://169.254.169.254";

/// `[auth]` as written, selected by `method`.
#[derive(Debug, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RawAuth {
    Token {
        token: Option<Secret>,
        token_file: Option<PathBuf>,
        token_env: Option<String>,
    },
    Aksk {
        access_key: Option<Secret>,
        access_key_file: Option<PathBuf>,
        access_key_env: Option<String>,
        secret_key: Option<Secret>,
        secret_key_file: Option<PathBuf>,
        secret_key_env: Option<String>,
        security_token: Option<Secret>,
        security_token_file: Option<PathBuf>,
        security_token_env: Option<String>,
    },
    Password {
        user: Option<String>,
        domain: Option<String>,
        password: Option<Secret>,
        password_file: Option<PathBuf>,
        password_env: Option<String>,
    },
    EcsMetadata {
        metadata_endpoint: Option<String>,
    },
    Auto {
        metadata_endpoint: Option<String>,
    },
}

impl RawAuth {
    /// Whether the section holds a secret value inline (not a file or a
    /// variable name). The access key ID alone does not count.
    pub fn has_inline_secret(&self) -> bool {
        match self {
            RawAuth::Token { token, .. } => token.is_some(),
            RawAuth::Aksk {
                secret_key,
                security_token,
                ..
            } => secret_key.is_some() || security_token.is_some(),
            RawAuth::Password { password, .. } => password.is_some(),
            RawAuth::EcsMetadata { .. } | RawAuth::Auto { .. } => false,
        }
    }
}

/// How requests to the API are authenticated.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// An IAM token sent as `X-Auth-Token`.
    Token(SecretSource),
    /// Requests signed with `SDK-HMAC-SHA256`.
    Aksk(AkSk),
    /// IAM password: project-scoped tokens fetched from IAM.
    Password(PasswordAuth),
    /// Temporary AK/SK from the ECS metadata service.
    EcsMetadata(MetadataAuth),
}

/// A permanent or temporary access key pair.
#[derive(Debug, Clone, PartialEq)]
pub struct AkSk {
    pub access_key: SecretSource,
    pub secret_key: SecretSource,
    /// Present for temporary keys.
    pub security_token: Option<SecretSource>,
    /// Where `auto` found the keys; `None` when `[auth]` named them.
    pub origin: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PasswordAuth {
    pub user: String,
    pub domain: String,
    pub password: SecretSource,
    /// `https://iam...`, without a trailing slash.
    pub iam_endpoint: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetadataAuth {
    /// `http://host[:port]`, without a trailing slash.
    pub endpoint: String,
    /// When reached through `auto`: the steps tried before, with why each
    /// did not apply. Empty for `method = "ecs-metadata"`.
    pub auto_tried: Vec<String>,
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretSource {
    Inline(Secret),
    /// Re-read when the file changes; a trailing newline is trimmed.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
}

/// What the official SDKs' environment holds, captured once by the loader
/// so that validation stays pure. Secret values are not captured, only
/// whether they are set: they are read when used.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SdkEnv {
    pub ak: bool,
    pub sk: bool,
    pub security_token: bool,
    pub project_id: Option<String>,
    pub iam_endpoint: Option<String>,
    pub credentials_file: CredentialsFile,
    /// The credential variables set to nothing but whitespace: neither set
    /// (they hold no secret) nor unset (someone meant to set them). `auto`
    /// and `aksk` refuse them rather than fail at the first request.
    pub blank: Vec<&'static str>,
}

/// The credentials file as found.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum CredentialsFile {
    /// Not looked for, or no path (neither the variable nor `HOME` set).
    #[default]
    Unknown,
    Missing(PathBuf),
    Found(PathBuf, Profile),
    Broken(PathBuf, String),
}

fn env_set(vars: &BTreeMap<String, String>, name: &str) -> bool {
    vars.get(name).is_some_and(|v| !v.trim().is_empty())
}

fn env_blank(vars: &BTreeMap<String, String>, name: &str) -> bool {
    vars.get(name)
        .is_some_and(|v| !v.is_empty() && v.trim().is_empty())
}

impl SdkEnv {
    /// Reads the process environment and, when `read_file`, the credentials
    /// file.
    pub fn capture(read_file: bool) -> SdkEnv {
        let vars: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("HUAWEICLOUD_SDK_") || k == "HOME")
            .collect();
        let credentials_file = if read_file {
            let path = profile::default_path(
                vars.get(profile::FILE_VAR).map(String::as_str),
                vars.get("HOME").map(Path::new),
            );
            match path {
                None => CredentialsFile::Unknown,
                Some(p) => read_credentials_file(p),
            }
        } else {
            CredentialsFile::Unknown
        };
        SdkEnv {
            ak: env_set(&vars, ENV_AK),
            sk: env_set(&vars, ENV_SK),
            security_token: env_set(&vars, ENV_SECURITY_TOKEN),
            project_id: vars
                .get(ENV_PROJECT_ID)
                .filter(|v| !v.trim().is_empty())
                .cloned(),
            iam_endpoint: vars
                .get(ENV_IAM_ENDPOINT)
                .filter(|v| !v.trim().is_empty())
                .cloned(),
            credentials_file,
            blank: [ENV_AK, ENV_SK, ENV_SECURITY_TOKEN]
                .into_iter()
                .filter(|n| env_blank(&vars, n))
                .collect(),
        }
    }
}

/// Reads the credentials file like the config file: a regular file (or a
/// symlink to one), bounded, never blocking on a FIFO.
fn read_credentials_file(path: PathBuf) -> CredentialsFile {
    let bytes = match read_regular(&path, SMALL_FILE_LIMIT, Links::Follow) {
        Ok(None) => return CredentialsFile::Missing(path),
        Err(e) => {
            let why = super::read_problem(&e);
            return CredentialsFile::Broken(path, why);
        }
        Ok(Some(b)) => b,
    };
    match String::from_utf8(bytes) {
        Err(_) => CredentialsFile::Broken(path, "it is not UTF-8 text".into()),
        Ok(text) => {
            warn_if_readable_by_others(&path, "the credentials file");
            match profile::parse_basic(&text) {
                Ok(Some(p)) => CredentialsFile::Found(path, p),
                Ok(None) => CredentialsFile::Found(path, Profile::default()),
                Err(e) => CredentialsFile::Broken(path, e),
            }
        }
    }
}

/// Logs a warning when a file holding secrets is readable by group or others.
pub(super) fn warn_if_readable_by_others(path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        let mode = m.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:04o}", mode & 0o7777),
                "{what} holds a secret and is readable by group or others; chmod 600 it, or move the secret to a *_file"
            );
        }
    }
}

/// What the auth section contributes to the rest of the config.
#[derive(Debug, Default)]
pub(super) struct AuthDefaults {
    /// A project ID found by `auto` (environment or credentials file), used
    /// when the config has none.
    pub project_id: Option<String>,
}

/// Validates `[auth]` (absent: `auto`), and settles `cloud.iam_endpoint`:
/// the config's, else `HUAWEICLOUD_SDK_IAM_ENDPOINT`, else the credentials
/// file's (when `auto` uses it), else the one derived from the region.
/// `config_iam` says whether `cloud.iam_endpoint` came from the config.
pub(super) fn validate(
    raw: Option<RawAuth>,
    cloud: &mut Cloud,
    config_iam: bool,
    base_dir: &Path,
    env: &SdkEnv,
) -> Result<(Auth, AuthDefaults), ConfigError> {
    let mut defaults = AuthDefaults::default();
    let mut profile_iam = None;
    let auth = match raw.unwrap_or(RawAuth::Auto {
        metadata_endpoint: None,
    }) {
        RawAuth::Token {
            token,
            token_file,
            token_env,
        } => Auth::Token(
            secret("token", token, token_file, token_env, base_dir)?
                .ok_or_else(|| err("auth.token", "missing; set token, token_file or token_env"))?,
        ),
        RawAuth::Aksk {
            access_key,
            access_key_file,
            access_key_env,
            secret_key,
            secret_key_file,
            secret_key_env,
            security_token,
            security_token_file,
            security_token_env,
        } => {
            let ak = secret(
                "access_key",
                access_key,
                access_key_file,
                access_key_env,
                base_dir,
            )?;
            let ak_from_sdk_env = ak.is_none();
            if ak_from_sdk_env
                && security_token.is_none()
                && security_token_file.is_none()
                && security_token_env.is_none()
                && env.blank.contains(&ENV_SECURITY_TOKEN)
            {
                return Err(err(
                    "auth.security_token",
                    format!(
                        "{ENV_SECURITY_TOKEN} is set but holds only whitespace; unset it or give it a value"
                    ),
                ));
            }
            let sk = secret(
                "secret_key",
                secret_key,
                secret_key_file,
                secret_key_env,
                base_dir,
            )?
            .unwrap_or_else(|| SecretSource::Env(ENV_SK.into()));
            let token = secret(
                "security_token",
                security_token,
                security_token_file,
                security_token_env,
                base_dir,
            )?
            .or_else(|| {
                (ak_from_sdk_env && env.security_token)
                    .then(|| SecretSource::Env(ENV_SECURITY_TOKEN.into()))
            });
            Auth::Aksk(AkSk {
                access_key: ak.unwrap_or_else(|| SecretSource::Env(ENV_AK.into())),
                secret_key: sk,
                security_token: token,
                origin: None,
            })
        }
        RawAuth::Password {
            user,
            domain,
            password,
            password_file,
            password_env,
        } => {
            let user = non_empty("auth.user", user, "the IAM user name")?;
            let domain = non_empty(
                "auth.domain",
                domain,
                "the account (domain) name the IAM user belongs to",
            )?;
            let password = secret("password", password, password_file, password_env, base_dir)?
                .ok_or_else(|| {
                    err(
                        "auth.password",
                        "missing; set password, password_file or password_env",
                    )
                })?;
            Auth::Password(PasswordAuth {
                user,
                domain,
                password,
                // Filled in below, once the IAM endpoint is settled.
                iam_endpoint: String::new(),
            })
        }
        RawAuth::EcsMetadata { metadata_endpoint } => Auth::EcsMetadata(MetadataAuth {
            endpoint: metadata_url(metadata_endpoint.as_deref())?,
            auto_tried: Vec::new(),
        }),
        RawAuth::Auto { metadata_endpoint } => {
            let endpoint = metadata_url(metadata_endpoint.as_deref())?;
            let (auth, project, iam) = auto_chain(env, endpoint)?;
            defaults.project_id = project;
            profile_iam = iam;
            auth
        }
    };

    if !config_iam {
        if let Some(e) = &env.iam_endpoint {
            cloud.iam_endpoint = Some(https_url(ENV_IAM_ENDPOINT, e)?);
        } else if let Some(e) = &profile_iam {
            cloud.iam_endpoint = Some(https_url("credentials file: iam_endpoint", e)?);
        }
    }
    let auth = match auth {
        Auth::Password(mut p) => {
            p.iam_endpoint = cloud.iam_endpoint.clone().ok_or_else(|| {
                err(
                    "cloud.iam_endpoint",
                    format!(
                        "the password method needs IAM, and no IAM endpoint is known{}; set cloud.region to a known region, cloud.iam_endpoint, or {ENV_IAM_ENDPOINT}",
                        cloud
                            .region
                            .as_deref()
                            .map(|r| format!(" for region {r:?}"))
                            .unwrap_or_default()
                    ),
                )
            })?;
            Auth::Password(p)
        }
        other => other,
    };
    Ok((auth, defaults))
}

/// The SDK chain's first two steps, decided from the snapshot; else the
/// metadata service, with what was tried.
fn auto_chain(
    env: &SdkEnv,
    metadata: String,
) -> Result<(Auth, Option<String>, Option<String>), ConfigError> {
    let mut tried = Vec::new();
    if let Some(var) = env.blank.first() {
        return Err(err(
            "auth",
            format!("auto: {var} is set but holds only whitespace; unset it or give it a value"),
        ));
    }
    match (env.ak, env.sk) {
        (true, true) => {
            let temporary = env.security_token;
            let auth = Auth::Aksk(AkSk {
                access_key: SecretSource::Env(ENV_AK.into()),
                secret_key: SecretSource::Env(ENV_SK.into()),
                security_token: temporary.then(|| SecretSource::Env(ENV_SECURITY_TOKEN.into())),
                origin: Some(format!(
                    "auto: environment ({ENV_AK}, {ENV_SK}{})",
                    if temporary {
                        format!(", {ENV_SECURITY_TOKEN}")
                    } else {
                        String::new()
                    }
                )),
            });
            return Ok((auth, env.project_id.clone(), None));
        }
        (true, false) | (false, true) => {
            let (set, unset) = if env.ak {
                (ENV_AK, ENV_SK)
            } else {
                (ENV_SK, ENV_AK)
            };
            return Err(err(
                "auth",
                format!("auto: {set} is set but {unset} is not; set both, or neither"),
            ));
        }
        (false, false) => tried.push(format!("environment: {ENV_AK} and {ENV_SK} not set")),
    }
    match &env.credentials_file {
        CredentialsFile::Unknown => tried.push(format!(
            "credentials file: no path ({} and HOME not set)",
            profile::FILE_VAR
        )),
        CredentialsFile::Missing(p) => {
            tried.push(format!("credentials file {}: not found", p.display()))
        }
        CredentialsFile::Broken(p, why) => {
            return Err(err(
                "auth",
                format!(
                    "auto: cannot use the credentials file {}: {why}",
                    p.display()
                ),
            ));
        }
        CredentialsFile::Found(p, prof) => match (&prof.ak, &prof.sk) {
            (Some(ak), Some(sk)) => {
                let auth = Auth::Aksk(AkSk {
                    access_key: SecretSource::Inline(ak.clone()),
                    secret_key: SecretSource::Inline(sk.clone()),
                    security_token: prof.security_token.clone().map(SecretSource::Inline),
                    origin: Some(format!("auto: credentials file {} [basic]", p.display())),
                });
                return Ok((auth, prof.project_id.clone(), prof.iam_endpoint.clone()));
            }
            (None, None) => tried.push(format!(
                "credentials file {}: no ak/sk in a [basic] section",
                p.display()
            )),
            _ => {
                return Err(err(
                    "auth",
                    format!(
                        "auto: the credentials file {} has only one of ak and sk in [basic]",
                        p.display()
                    ),
                ));
            }
        },
    }
    Ok((
        Auth::EcsMetadata(MetadataAuth {
            endpoint: metadata,
            auto_tried: tried,
        }),
        None,
        None,
    ))
}

fn non_empty(key: &str, v: Option<String>, what: &str) -> Result<String, ConfigError> {
    match v {
        Some(s) if !s.trim().is_empty() => Ok(s),
        Some(_) => Err(err(key, "must not be empty")),
        None => Err(err(key, format!("missing; set {what}"))),
    }
}

fn metadata_url(v: Option<&str>) -> Result<String, ConfigError> {
    let Some(v) = v else {
        return Ok(DEFAULT_METADATA_ENDPOINT.into());
    };
    let t = v.trim().trim_end_matches('/');
    let rest = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.contains(['/', '?', '#', ' ', '@']) => Ok(t.to_string()),
        _ => Err(err(
            "auth.metadata_endpoint",
            format!("{v:?} must be a bare http://host[:port], without a path"),
        )),
    }
}

/// One secret from at most one of `name`, `name_file`, `name_env`.
/// `Ok(None)` when none is set.
fn secret(
    name: &str,
    inline: Option<Secret>,
    file: Option<PathBuf>,
    env: Option<String>,
    base_dir: &Path,
) -> Result<Option<SecretSource>, ConfigError> {
    let key = format!("auth.{name}");
    let given =
        usize::from(inline.is_some()) + usize::from(file.is_some()) + usize::from(env.is_some());
    if given > 1 {
        return Err(err(
            key,
            format!("set only one of {name}, {name}_file and {name}_env"),
        ));
    }
    if let Some(s) = inline {
        if s.expose().trim().is_empty() {
            return Err(err(key, "must not be empty or only whitespace"));
        }
        return Ok(Some(SecretSource::Inline(s)));
    }
    if let Some(f) = file {
        if f.as_os_str().is_empty() {
            return Err(err(format!("{key}_file"), "must not be empty"));
        }
        super::check_path(&format!("{key}_file"), &f)?;
        return Ok(Some(SecretSource::File(base_dir.join(f))));
    }
    if let Some(v) = env {
        if v.is_empty() || v.contains(['=', '\0']) {
            return Err(err(
                format!("{key}_env"),
                format!("{v:?} is not an environment variable name"),
            ));
        }
        return Ok(Some(SecretSource::Env(v)));
    }
    Ok(None)
}

/// Checks that secret files are readable and secret variables set.
pub(super) fn resolve(auth: &Auth) -> Result<(), ConfigError> {
    let mut sources: Vec<(&str, &SecretSource)> = Vec::new();
    match auth {
        Auth::Token(s) => sources.push(("token", s)),
        Auth::Aksk(a) => {
            sources.push(("access_key", &a.access_key));
            sources.push(("secret_key", &a.secret_key));
            if let Some(t) = &a.security_token {
                sources.push(("security_token", t));
            }
        }
        Auth::Password(p) => sources.push(("password", &p.password)),
        Auth::EcsMetadata(_) => {}
    }
    for (name, source) in sources {
        match source {
            SecretSource::Inline(_) => {}
            SecretSource::File(p) => super::check_secret_file(&format!("auth.{name}_file"), p)?,
            SecretSource::Env(var) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => {}
                Ok(v) if !v.is_empty() => {
                    return Err(err(
                        format!("auth.{name}"),
                        format!("the environment variable {var} holds only whitespace"),
                    ));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(err(
                        format!("auth.{name}"),
                        format!("the environment variable {var} is not UTF-8 text"),
                    ));
                }
                _ => {
                    return Err(err(
                        format!("auth.{name}"),
                        format!(
                            "the environment variable {var} is not set; set {name}, {name}_file or {name}_env"
                        ),
                    ));
                }
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{parse, validate_with_env};
    use super::*;

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
            credentials_file: CredentialsFile::Found(
                "/home/u/.huaweicloud/credentials".into(),
                prof,
            ),
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
            !raw("method = \"aksk\"\naccess_key = \"AK\"\nsecret_key_env = \"S\"")
                .has_inline_secret()
        );
        assert!(
            raw("method = \"password\"\nuser=\"u\"\ndomain=\"d\"\npassword=\"p\"")
                .has_inline_secret()
        );
    }
}
