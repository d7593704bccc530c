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
//! that its failure can say so. The SDKs' environment and that chain live
//! in `sdk`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::check::https_url;
use super::{Cloud, ConfigError, err};
use crate::secret::Secret;

mod sdk;
#[cfg(test)]
mod tests;

use sdk::auto_chain;
pub(super) use sdk::warn_if_readable_by_others;
pub use sdk::{CredentialsFile, SdkEnv};

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Inline(Secret),
    /// Re-read when the file changes; a trailing newline is trimmed.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
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
    secret_at(&format!("auth.{name}"), name, inline, file, env, base_dir)
}

/// [`secret`] for the key `key` (`auth.token`, `instances[0].truststore_password`),
/// whose last part is `name`.
pub(in crate::config) fn secret_at(
    key: &str,
    name: &str,
    inline: Option<Secret>,
    file: Option<PathBuf>,
    env: Option<String>,
    base_dir: &Path,
) -> Result<Option<SecretSource>, ConfigError> {
    let key = key.to_string();
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
        super::check::check_path(&format!("{key}_file"), &f)?;
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
        resolve_source(&format!("auth.{name}"), name, source)?;
    }
    Ok(())
}

/// Checks that the secret of `key` (whose last part is `name`) is there:
/// its file holds one, its variable is set to one.
pub(in crate::config) fn resolve_source(
    key: &str,
    name: &str,
    source: &SecretSource,
) -> Result<(), ConfigError> {
    match source {
        SecretSource::Inline(_) => Ok(()),
        SecretSource::File(p) => super::resolve::check_secret_file(&format!("{key}_file"), p),
        SecretSource::Env(var) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(()),
            Ok(v) if !v.is_empty() => Err(err(
                key,
                format!("the environment variable {var} holds only whitespace"),
            )),
            Err(std::env::VarError::NotUnicode(_)) => Err(err(
                key,
                format!("the environment variable {var} is not UTF-8 text"),
            )),
            _ => Err(err(
                key,
                format!(
                    "the environment variable {var} is not set; set {name}, {name}_file or {name}_env"
                ),
            )),
        },
    }
}
