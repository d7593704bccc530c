//! The checks of single values that every section of the config shares: an
//! https endpoint, a project ID, a path, a `keep_previous`, and the lexical
//! form of a path used to find duplicates. Pure. A leaf inside `config`:
//! [`super::validate`], [`super::instance`] and [`super::auth`] all use it,
//! so none of those imports another for a helper.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ConfigError, Dur, err};

/// An `https://host[:port]` endpoint, without a trailing `/`.
pub(super) fn https_url(key: &str, value: &str) -> Result<String, ConfigError> {
    let v = value.trim().trim_end_matches('/');
    let rest = v.strip_prefix("https://").ok_or_else(|| {
        err(
            key,
            format!("{value:?} must be an https:// URL; credentials are never sent in clear text"),
        )
    })?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(err(
            key,
            format!("{value:?} must be a bare https://host[:port], without a path"),
        ));
    }
    Ok(v.to_string())
}

/// A project ID: letters, digits, `-` and `_`, as the API's paths take it.
pub(super) fn check_project_id(key: &str, p: &str) -> Result<(), ConfigError> {
    if p.is_empty()
        || !p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(err(
            key,
            format!("{p:?} is not a project ID (letters, digits, '-' and '_' only)"),
        ));
    }
    Ok(())
}

/// A `keep_previous`: whole seconds (its windows are kept to the second),
/// zero allowed (replace outright).
pub(super) fn keep_previous(key: &str, v: Option<Dur>) -> Result<Option<Duration>, ConfigError> {
    match v {
        Some(Dur(d)) if d.subsec_nanos() != 0 => Err(err(
            key,
            format!(
                "{} is not a whole number of seconds; write for example \"30d\", \"12h\", or \"0s\" to replace the file outright",
                humantime::format_duration(d)
            ),
        )),
        other => Ok(other.map(|d| d.0)),
    }
}

/// A path holding a NUL byte can be written in TOML (`"\u0000"`) but no
/// system call takes it: refused here rather than failing at run time.
pub(super) fn check_path(key: &str, p: &Path) -> Result<(), ConfigError> {
    use std::os::unix::ffi::OsStrExt;
    if p.as_os_str().as_bytes().contains(&0) {
        return Err(err(
            key,
            format!(
                "{:?} contains a NUL character, which no path can hold",
                p.display().to_string()
            ),
        ));
    }
    Ok(())
}

/// Removes `.` and `..` components lexically, so that two spellings of one
/// path are seen as one when checking for duplicate outputs.
pub(super) fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
