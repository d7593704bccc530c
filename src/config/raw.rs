//! The raw form of the config: exactly what the file says, and step 1,
//! [`parse`], from TOML text to it. Every struct is `deny_unknown_fields`,
//! so a misspelt key is an error naming it and its line, never ignored.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, RawAuth};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub cloud: RawCloud,
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub sync: RawSync,
    #[serde(default)]
    pub instances: Vec<RawInstance>,
    pub server: Option<RawServer>,
}

/// `[server]`: the health and metrics endpoints (off unless `listen` is set).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCloud {
    pub region: Option<String>,
    pub project_id: Option<String>,
    pub endpoint: Option<String>,
    pub iam_endpoint: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub endpoints: Option<RawEndpoints>,
}

/// `[cloud.endpoints]`: one service's endpoint each, keyed by the name the
/// `service` key uses (see [`crate::catalog::Service`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoints {
    pub dds: Option<String>,
    pub rds: Option<String>,
    pub geminidb: Option<String>,
    pub opengauss: Option<String>,
    pub dcs: Option<String>,
}

impl RawEndpoints {
    /// The endpoint written for `service`, if any.
    pub fn get(&self, service: crate::catalog::Service) -> Option<&String> {
        use crate::catalog::Service;
        match service {
            Service::Dds => self.dds.as_ref(),
            Service::Rds => self.rds.as_ref(),
            Service::GeminiDb => self.geminidb.as_ref(),
            Service::OpenGauss => self.opengauss.as_ref(),
            Service::Dcs => self.dcs.as_ref(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    pub interval: Option<Dur>,
    pub jitter: Option<Dur>,
    pub timeout: Option<Dur>,
    pub max_backoff: Option<Dur>,
    pub concurrency: Option<i64>,
    pub state_dir: Option<PathBuf>,
    pub expiry_warning: Option<Dur>,
    pub probe_interval: Option<Dur>,
    pub keep_previous: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstance {
    pub id: String,
    pub service: Option<String>,
    pub name: Option<String>,
    pub project_id: Option<String>,
    pub international: Option<PathBuf>,
    pub national: Option<PathBuf>,
    pub mode: Option<String>,
    pub owner: Option<NameOrId>,
    pub group: Option<NameOrId>,
    pub on_change: Option<Vec<String>>,
    pub hook_timeout: Option<Dur>,
    pub reload_signal: Option<String>,
    pub pidfile: Option<PathBuf>,
    pub allow_non_ca: Option<bool>,
    pub keep_previous: Option<Dur>,
    pub reload_signal_any_owner: Option<bool>,
    pub probe: Option<Vec<String>>,
    pub probe_interval: Option<Dur>,
    pub truststore: Option<PathBuf>,
    pub truststore_password: Option<crate::secret::Secret>,
    pub truststore_password_file: Option<PathBuf>,
    pub truststore_password_env: Option<String>,
    pub truststore_profile: Option<String>,
}

/// A user or group, by name or by number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum NameOrId {
    Id(u32),
    Name(String),
}

/// A humantime duration such as `30s`, `5m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?} ({e}); write a number and a unit, such as \"30s\", \"5m\" or \"1h\""
            ))
        })
    }
}

// ---------------------------------------------------------------------------
// Step 1: parse.
// ---------------------------------------------------------------------------

/// Parses TOML text into the raw form. Errors carry the key path and line.
pub fn parse(text: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| toml_error(text, "", e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        toml_error(text, &path, e.into_inner())
    })
}

fn toml_error(text: &str, path: &str, e: toml::de::Error) -> ConfigError {
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let key = (!path.is_empty() && path != ".").then(|| path.to_string());
    ConfigError {
        file: PathBuf::new(),
        key,
        line,
        message: e.message().trim().to_string(),
    }
}
