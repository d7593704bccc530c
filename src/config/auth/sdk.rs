//! The official SDKs' environment, captured once by the loader as an
//! [`SdkEnv`] (which `HUAWEICLOUD_SDK_*` variables are set, and the
//! credentials file's `[basic]` profile), and the `auto` method's chain
//! over that snapshot: environment, then credentials file, then the ECS
//! metadata service.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    AkSk, Auth, ENV_AK, ENV_IAM_ENDPOINT, ENV_PROJECT_ID, ENV_SECURITY_TOKEN, ENV_SK, MetadataAuth,
    SecretSource,
};
use crate::catalog::profile::{self, Profile};
use crate::config::{ConfigError, err};
use crate::readfile::{Links, SMALL_FILE_LIMIT, read_regular};

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
            let why = crate::config::load::read_problem(&e);
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
pub(in crate::config) fn warn_if_readable_by_others(path: &Path, what: &str) {
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

/// What the chain chose: the auth, and the project id and IAM endpoint its
/// source names, if it names them.
type Chosen = (Auth, Option<String>, Option<String>);

/// The SDK chain's first two steps, decided from the snapshot; else the
/// metadata service, with what was tried.
pub(super) fn auto_chain(env: &SdkEnv, metadata: String) -> Result<Chosen, ConfigError> {
    if let Some(var) = env.blank.first() {
        return Err(err(
            "auth",
            format!("auto: {var} is set but holds only whitespace; unset it or give it a value"),
        ));
    }
    let mut tried = Vec::new();
    if let Some(chosen) = from_environment(env, &mut tried)? {
        return Ok(chosen);
    }
    if let Some(chosen) = from_credentials_file(env, &mut tried)? {
        return Ok(chosen);
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

/// The chain's first step: `HUAWEICLOUD_SDK_AK` and `…_SK` (and the
/// security token, when set), both or neither.
fn from_environment(env: &SdkEnv, tried: &mut Vec<String>) -> Result<Option<Chosen>, ConfigError> {
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
            Ok(Some((auth, env.project_id.clone(), None)))
        }
        (true, false) | (false, true) => {
            let (set, unset) = if env.ak {
                (ENV_AK, ENV_SK)
            } else {
                (ENV_SK, ENV_AK)
            };
            Err(err(
                "auth",
                format!("auto: {set} is set but {unset} is not; set both, or neither"),
            ))
        }
        (false, false) => {
            tried.push(format!("environment: {ENV_AK} and {ENV_SK} not set"));
            Ok(None)
        }
    }
}

/// The chain's second step: the `[basic]` section of the SDK's credentials
/// file, with both `ak` and `sk` or neither.
fn from_credentials_file(
    env: &SdkEnv,
    tried: &mut Vec<String>,
) -> Result<Option<Chosen>, ConfigError> {
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
                return Ok(Some((
                    auth,
                    prof.project_id.clone(),
                    prof.iam_endpoint.clone(),
                )));
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
    Ok(None)
}
