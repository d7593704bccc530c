//! Reading the config file and running the three steps on its bytes:
//! [`load`] (blocking) and [`load_async`] (on the blocking pool), and
//! [`read`], the bounded, never-blocking read that secret files and the
//! SDKs' credentials file share.

use std::path::{Path, PathBuf};

use super::{Config, ConfigError, RawAuth, SdkEnv, auth, parse, resolve, validate_with_env};
use crate::readfile::{self, Links, SMALL_FILE_LIMIT};

/// A config file as read, and the config made from exactly those bytes. The
/// daemon's change tracker starts from `bytes`, so that an edit landing after
/// the read is seen as a change and never mistaken for the running config.
pub struct Loaded {
    pub config: Config,
    pub bytes: Vec<u8>,
}

/// By hand: the raw bytes may hold inline secrets, so only their length shows.
impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("config", &self.config)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .finish()
    }
}

/// Reads the config file: a regular file (a symlink to one is followed, as
/// Kubernetes mounts them) of at most [`SMALL_FILE_LIMIT`] bytes. A FIFO, a
/// device, a directory or a bigger file is an error naming what was found,
/// returned at once: the read never blocks and never grows without bound.
/// Blocking I/O: call it off the runtime thread (see [`read_async`]).
pub fn read(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let problem = |message: String| ConfigError {
        file: path.to_path_buf(),
        key: None,
        line: None,
        message,
    };
    match readfile::read_regular(path, SMALL_FILE_LIMIT, Links::Follow) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(problem(
            "cannot read the config file: it does not exist".into(),
        )),
        Err(e) => Err(problem(format!(
            "cannot read the config file: {}",
            read_problem(&e)
        ))),
    }
}

/// [`read`] on the blocking pool.
pub async fn read_async(path: PathBuf) -> Result<Vec<u8>, ConfigError> {
    let p = path.clone();
    tokio::task::spawn_blocking(move || read(&p))
        .await
        .unwrap_or_else(|e| {
            Err(ConfigError {
                file: path,
                key: None,
                line: None,
                message: format!("cannot read the config file: {e}"),
            })
        })
}

/// An I/O error of [`readfile`] in words: "it is a FIFO, not a regular
/// file", "it is larger than 1048576 bytes", or the system's message.
pub(super) fn read_problem(e: &std::io::Error) -> String {
    let text = e.to_string();
    if text.starts_with("is ") {
        format!("it {text}")
    } else {
        text
    }
}

/// Parses, validates and resolves the config in `bytes`, read from `path`
/// (which names the file in errors and anchors relative paths). Consults the
/// system (see [`resolve`]): call it off the runtime thread.
pub fn load_from(path: &Path, bytes: &[u8]) -> Result<Config, ConfigError> {
    let with_file = |mut e: ConfigError| {
        e.file = path.to_path_buf();
        e
    };
    let text = std::str::from_utf8(bytes).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        key: None,
        line: None,
        message: format!("cannot read the config file: it is not UTF-8 text ({e})"),
    })?;
    let base_dir = readfile::parent_dir(path);
    let base_dir = std::path::absolute(&base_dir).unwrap_or(base_dir);
    let raw = parse(text).map_err(with_file)?;
    if raw.auth.as_ref().is_some_and(RawAuth::has_inline_secret) {
        auth::warn_if_readable_by_others(path, "the config file");
    }
    let sdk_env = SdkEnv::capture(matches!(raw.auth, None | Some(RawAuth::Auto { .. })));
    let config = validate_with_env(raw, &base_dir, &sdk_env).map_err(with_file)?;
    resolve(config).map_err(with_file)
}

/// Reads a config file once, then parses, validates and resolves those bytes.
/// Blocking: see [`load_async`].
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let bytes = read(path)?;
    let config = load_from(path, &bytes)?;
    Ok(Loaded { config, bytes })
}

/// [`load`] on the blocking pool, so that nothing it reads or looks up can
/// stall the runtime thread.
pub async fn load_async(path: PathBuf) -> Result<Loaded, ConfigError> {
    let p = path.clone();
    tokio::task::spawn_blocking(move || load(&p))
        .await
        .unwrap_or_else(|e| {
            Err(ConfigError {
                file: path,
                key: None,
                line: None,
                message: format!("cannot load the config file: {e}"),
            })
        })
}
