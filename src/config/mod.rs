//! Configuration: the TOML file, parsed strictly and validated in one place.
//!
//! Loading happens in three steps, each usable on its own:
//!
//! 1. [`parse`]: text to raw structs. Pure. Every struct is
//!    `deny_unknown_fields`, so a misspelt key is an error, never ignored.
//! 2. [`validate`]: raw structs to a [`Config`] whose invariants hold (durations
//!    positive, at least one output per instance, no two outputs on one path,
//!    endpoints derivable, ...). Pure apart from nothing: it consults neither
//!    the file system nor the user database. [`validate_with_env`] is the same
//!    with a snapshot of the official SDKs' environment ([`SdkEnv`]), which the
//!    `auto` auth method and `HUAWEICLOUD_SDK_IAM_ENDPOINT` need.
//! 3. [`resolve`]: the part that consults the system: owner and group names,
//!    secret files holding a secret (not empty, not only whitespace), secret
//!    variables set to one, and no two outputs one file through a symlinked
//!    or twice-mounted directory.
//!
//! [`load`] reads the file once ([`read`]: a regular file, or a symlink to
//! one, of at most 1 MiB, never blocking on a FIFO) and runs all three on
//! those bytes, taking the [`SdkEnv`] snapshot itself; it returns the bytes
//! with the config ([`Loaded`]). It does blocking I/O: the daemon calls it
//! through [`load_async`], on the blocking pool. Secret files and the SDKs'
//! credentials file are read the same way.
//! Every error is a [`ConfigError`] that names the file, the key
//! (`sync.interval`, `instances[2].mode`, ...) and, where TOML knows it, the
//! line.
//!
//! The files, one step or one section each: `raw` (the raw form and
//! [`parse`]), `types` (the validated form and its defaults), `validate`
//! and `instance` (step 2), `auth` (the `[auth]` section and the SDKs'
//! `auto` chain), `probe` (`probe` and `probe_interval`), `resolve` (step 3)
//! and `load` (reading the file and
//! running the steps). Validation stays in one place: this module, and
//! nothing outside it, decides what a config means.

use std::fmt;
use std::path::PathBuf;

mod auth;
mod check;
mod instance;
mod load;
mod probe;
mod raw;
mod resolve;
#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod truststore_tests;
mod types;
mod validate;

pub use auth::{
    AkSk, Auth, CredentialsFile, MetadataAuth, PasswordAuth, RawAuth, SdkEnv, SecretSource,
};
pub use load::{Loaded, load, load_async, load_from, read, read_async};
pub use probe::parse_probe_addr;
pub use raw::{
    Dur, NameOrId, RawCloud, RawConfig, RawEndpoints, RawInstance, RawServer, RawSync, parse,
};
pub use resolve::resolve;
pub use types::{
    Category, Cloud, Config, Instance, Output, Perms, Probe, ProbeAddr, ReloadSignal, Server,
    SyncSettings, Truststore,
};
pub use validate::{validate, validate_with_env};

/// The default location of the config file.
pub const DEFAULT_PATH: &str = "/etc/dds-certsync/config.toml";

/// A config problem: which file, which key, which line, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: Option<String>,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: PathBuf::new(),
        key: Some(key.into()),
        line: None,
        message: message.into(),
    }
}
