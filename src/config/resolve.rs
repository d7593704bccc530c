//! Step 3, [`resolve`]: the part of loading that consults the system:
//! owner and group names, secret files holding a secret (not empty, not
//! only whitespace), secret variables set to one, no two outputs one
//! file through a symlinked or twice-mounted directory, and a
//! `sync.state_dir` that is a directory or can be made one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::load::read_problem;
use super::{Config, ConfigError, NameOrId, SecretSource, Truststore, auth, err};
use crate::readfile::{self, Links, SMALL_FILE_LIMIT};
use crate::secret::Secret;

/// Resolves owner and group names, checks that secret files hold a secret
/// and secret variables a value, and that no two outputs are one file
/// through a symlinked directory.
pub fn resolve(mut config: Config) -> Result<Config, ConfigError> {
    auth::resolve(&config.auth)?;
    check_state_dir(&config.sync.state_dir)?;
    check_outputs_distinct(&config)?;
    for (i, inst) in config.instances.iter().enumerate() {
        for t in inst.outputs.iter().filter_map(|o| o.truststore.as_ref()) {
            resolve_truststore_password(&format!("instances[{i}].truststore_password"), t)?;
        }
    }
    for (i, inst) in config.instances.iter_mut().enumerate() {
        if let Some(o) = &inst.perms.owner {
            inst.perms.uid = Some(match o {
                NameOrId::Id(n) => *n,
                NameOrId::Name(n) => lookup_user(n).ok_or_else(|| {
                    err(
                        format!("instances[{i}].owner"),
                        format!("no user named {n:?} on this system"),
                    )
                })?,
            });
        }
        if let Some(g) = &inst.perms.group {
            inst.perms.gid = Some(match g {
                NameOrId::Id(n) => *n,
                NameOrId::Name(n) => lookup_group(n).ok_or_else(|| {
                    err(
                        format!("instances[{i}].group"),
                        format!("no group named {n:?} on this system"),
                    )
                })?,
            });
        }
    }
    Ok(config)
}

/// `sync.state_dir`, or the nearest of its parents that is there, is a
/// directory (through symbolic links): a file or a dangling link there would
/// fail every record of a hook delivery or of kept certificates, round after
/// round, while the outputs still sync. A directory not made yet is fine.
fn check_state_dir(dir: &Path) -> Result<(), ConfigError> {
    match crate::output::what_blocks(dir) {
        None => Ok(()),
        Some(why) => Err(err(
            "sync.state_dir",
            format!("{why}; the records of hook deliveries and kept certificates go there"),
        )),
    }
}

/// A truststore password from a file or a variable is there, and is one
/// every JDK reads ([`crate::truststore::check_password`]). Never shows it.
/// A file is read once: the secret it is checked to hold is the one judged.
fn resolve_truststore_password(key: &str, t: &Truststore) -> Result<(), ConfigError> {
    let value = match &t.password {
        SecretSource::Inline(_) => return Ok(()),
        SecretSource::File(p) => read_secret_file(&format!("{key}_file"), p)?,
        SecretSource::Env(var) => {
            auth::resolve_source(key, "truststore_password", &t.password)?;
            Secret::new(std::env::var(var).unwrap_or_default().trim())
        }
    };
    crate::truststore::check_password(&value).map_err(|why| err(key, why))
}

/// Checks that the secret file named by `key` holds a secret
/// ([`read_secret_file`]).
pub(super) fn check_secret_file(key: &str, p: &Path) -> Result<(), ConfigError> {
    read_secret_file(key, p).map(drop)
}

/// Reads a secret file named by `key` the way the config file is read, and
/// checks that it holds a secret: UTF-8, and not empty or only whitespace
/// (what would be sent after trimming). The secret is trimmed; the content
/// is never put in an error.
fn read_secret_file(key: &str, p: &Path) -> Result<Secret, ConfigError> {
    let bytes = match readfile::read_regular(p, SMALL_FILE_LIMIT, Links::Follow) {
        Ok(Some(b)) => b,
        Ok(None) => {
            return Err(err(
                key,
                format!("cannot read {}: it does not exist", p.display()),
            ));
        }
        Err(e) => {
            return Err(err(
                key,
                format!("cannot read {}: {}", p.display(), read_problem(&e)),
            ));
        }
    };
    match std::str::from_utf8(&bytes) {
        Err(_) => Err(err(key, format!("{} is not UTF-8 text", p.display()))),
        Ok(t) if t.trim().is_empty() => Err(err(
            key,
            format!(
                "{} is empty (or only whitespace); it must hold the secret",
                p.display()
            ),
        )),
        Ok(t) => Ok(Secret::new(t.trim())),
    }
}

/// Where an output really is: the directory it is written into, identified
/// by device and inode (so a symlinked directory or a second mount of it is
/// the same), and the file name. A directory that does not exist yet is
/// identified through its nearest existing ancestor plus the rest of the path.
fn output_location(path: &Path) -> (u64, u64, PathBuf) {
    use std::os::unix::fs::MetadataExt;
    let mut rest = Vec::new();
    let mut cur = path;
    while let Some(parent) = cur.parent() {
        rest.push(cur.file_name().map(PathBuf::from).unwrap_or_default());
        if let Ok(m) = std::fs::metadata(parent) {
            let tail: PathBuf = rest.iter().rev().collect();
            return (m.dev(), m.ino(), tail);
        }
        cur = parent;
    }
    (0, 0, path.to_path_buf())
}

/// Two outputs that are one file through a symlinked (or twice mounted)
/// directory would overwrite each other: refused, naming both.
fn check_outputs_distinct(config: &Config) -> Result<(), ConfigError> {
    let mut seen: HashMap<(u64, u64, PathBuf), (String, &Path)> = HashMap::new();
    for (i, inst) in config.instances.iter().enumerate() {
        for (name, path) in inst.outputs.iter().map(|o| (o.name(), o.path.as_path())) {
            let key = format!("instances[{i}].{name}");
            if let Some((other, other_path)) =
                seen.insert(output_location(path), (key.clone(), path))
            {
                return Err(err(
                    key,
                    format!(
                        "{} is the same file as {} ({other}), through a symbolic link or a mount; every output needs its own file",
                        path.display(),
                        other_path.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn lookup_user(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

fn lookup_group(name: &str) -> Option<u32> {
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}
