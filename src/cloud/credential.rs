//! What every source of credentials shares: the error they fail with
//! ([`AuthError`]) and the reader of a configured secret ([`SecretReader`]).
//!
//! A leaf of [`crate::cloud`]: it imports nothing else of it, so the
//! credential methods ([`super::auth`]), the cache ([`super::cache`]), IAM
//! ([`super::iam`]) and the metadata service ([`super::metadata`]) all
//! depend on it, and not on each other in a circle.
//!
//! Secrets given as files are re-read when the file changes (inode, size or
//! modification time), so a rotated secret is picked up without a restart.
//! The check and the read run on the blocking pool and read only a regular
//! file of bounded size ([`crate::readfile`]), so a FIFO or a device put in
//! the secret's place is an error naming the file, not a stalled daemon.
//! Secrets given as environment variables are read when used.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::config::SecretSource;
use crate::readfile::{self, Links, SMALL_FILE_LIMIT};
use crate::secret::Secret;

/// Why credentials could not be applied. No variant holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the secret file {path}: {reason}")]
    SecretFile { path: PathBuf, reason: String },
    #[error("the secret file {0} is empty")]
    EmptySecret(PathBuf),
    #[error("the environment variable {0} is not set or empty")]
    SecretEnv(String),
    #[error("the secret contains characters not allowed in an HTTP header")]
    InvalidHeaderValue,
    #[error("cannot sign the request: {0}")]
    Unsignable(String),
    #[error("IAM at {iam} refused the password of user {user:?} in domain {domain:?}: {detail}")]
    IamRefused {
        iam: String,
        user: String,
        domain: String,
        detail: String,
    },
    #[error("IAM at {iam} gave no token for user {user:?}: {detail}")]
    Iam {
        iam: String,
        user: String,
        detail: String,
        transient: bool,
    },
    #[error("the ECS metadata service at {endpoint} gave no credentials: {detail}")]
    Metadata {
        endpoint: String,
        detail: String,
        transient: bool,
    },
    #[error("no credentials found (auth method auto); tried: {}", .tried.join("; "))]
    NothingFound { tried: Vec<String> },
}

impl AuthError {
    /// Whether trying again soon may help (IAM or metadata unreachable,
    /// throttled or failing).
    pub fn is_transient(&self) -> bool {
        match self {
            AuthError::Iam { transient, .. } | AuthError::Metadata { transient, .. } => *transient,
            _ => false,
        }
    }
}

/// Reads a [`SecretSource`], caching a file's content until the file changes.
#[derive(Debug)]
pub struct SecretReader {
    source: SecretSource,
    cache: Mutex<Option<(FileStamp, Secret)>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    len: u64,
    mtime: Option<SystemTime>,
}

impl SecretReader {
    pub fn new(source: SecretSource) -> Self {
        SecretReader {
            source,
            cache: Mutex::new(None),
        }
    }

    /// Where the secret comes from, for logs.
    pub fn describe(&self) -> String {
        match &self.source {
            SecretSource::Inline(_) => "inline".into(),
            SecretSource::File(p) => format!("from {}", p.display()),
            SecretSource::Env(v) => format!("from ${v}"),
        }
    }

    /// The current secret. A file is checked (and, when it changed, read)
    /// on the blocking pool, through [`readfile::read_regular`]: a FIFO, a
    /// device or a huge file swapped in for the secret is an error naming
    /// the file, never a stall of the runtime.
    pub async fn get(&self) -> Result<Secret, AuthError> {
        let path = match &self.source {
            SecretSource::Inline(s) => return Ok(s.clone()),
            SecretSource::Env(var) => {
                return match std::env::var(var) {
                    Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
                    _ => Err(AuthError::SecretEnv(var.clone())),
                };
            }
            SecretSource::File(p) => p.clone(),
        };
        let known = self.cached();
        let task_path = path.clone();
        let fresh = tokio::task::spawn_blocking(move || {
            let stamp = stamp(&task_path)?;
            if let Some((known_stamp, secret)) = known
                && known_stamp == stamp
            {
                return Ok((stamp, secret));
            }
            Ok((stamp, read_secret_file(&task_path)?))
        })
        .await
        .unwrap_or_else(|e| {
            Err(AuthError::SecretFile {
                path,
                reason: format!("the read failed: {e}"),
            })
        })?;
        let secret = fresh.1.clone();
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh);
        Ok(secret)
    }

    /// The value last read, without any I/O: for a file, what the last
    /// [`SecretReader::get`] read; for a variable, its current value.
    pub fn last_known(&self) -> Option<Secret> {
        match &self.source {
            SecretSource::Inline(s) => Some(s.clone()),
            SecretSource::Env(var) => std::env::var(var)
                .ok()
                .map(|v| Secret::new(v.trim()))
                .filter(|s| !s.expose().is_empty()),
            SecretSource::File(_) => self.cached().map(|(_, s)| s),
        }
    }

    fn cached(&self) -> Option<(FileStamp, Secret)> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Blocking: call it on the blocking pool.
fn stamp(path: &Path) -> Result<FileStamp, AuthError> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| AuthError::SecretFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(FileStamp {
        ino: m.ino(),
        len: m.len(),
        mtime: m.modified().ok(),
    })
}

/// Reads a secret file, trimming one trailing newline (and surrounding
/// blanks). Blocking: call it on the blocking pool. Only a regular file of at
/// most [`SMALL_FILE_LIMIT`] bytes is read.
pub fn read_secret_file(path: &Path) -> Result<Secret, AuthError> {
    let failed = |reason: String| AuthError::SecretFile {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = readfile::read_regular(path, SMALL_FILE_LIMIT, Links::Follow)
        .map_err(|e| failed(e.to_string()))?
        .ok_or_else(|| failed("no such file".into()))?;
    let text = String::from_utf8(bytes).map_err(|_| failed("not UTF-8 text".into()))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(AuthError::EmptySecret(path.to_path_buf()));
    }
    Ok(Secret::new(trimmed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_secret_is_trimmed_and_reread_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "first-token\n").unwrap();
        let r = SecretReader::new(SecretSource::File(p.clone()));
        assert_eq!(r.get().await.unwrap().expose(), "first-token");
        // Replace by rename, as secret managers do: a new inode.
        let tmp = dir.path().join("token.new");
        std::fs::write(&tmp, "second-token-longer\n").unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        assert_eq!(r.get().await.unwrap().expose(), "second-token-longer");
    }

    #[tokio::test]
    async fn empty_or_missing_file_is_an_error_that_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        let r = SecretReader::new(SecretSource::File(p.clone()));
        let e = r.get().await.unwrap_err();
        assert!(e.to_string().contains(&*p.to_string_lossy()));
        std::fs::write(&p, "\n").unwrap();
        assert_eq!(r.get().await.unwrap_err(), AuthError::EmptySecret(p));
    }

    /// A FIFO or a device swapped in for a secret file is refused at once,
    /// with the file named: never a stalled runtime, never an endless read.
    #[tokio::test]
    async fn a_fifo_or_a_device_in_place_of_a_secret_file_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "good-token\n").unwrap();
        let r = SecretReader::new(SecretSource::File(p.clone()));
        assert_eq!(r.get().await.unwrap().expose(), "good-token");
        std::fs::remove_file(&p).unwrap();
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = tokio::time::timeout(std::time::Duration::from_secs(10), r.get())
            .await
            .expect("a FIFO must not stall the read")
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&*p.to_string_lossy()) && text.contains("FIFO"),
            "{text}"
        );
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
        let e = tokio::time::timeout(std::time::Duration::from_secs(10), r.get())
            .await
            .expect("a device must not be read endlessly")
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&*p.to_string_lossy()) && text.contains("character device"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn env_secret_is_read_when_used() {
        // A variable name no other test uses; set before any thread reads it.
        let var = "DDS_CERTSYNC_UNIT_TEST_SECRET_ENV";
        let r = SecretReader::new(SecretSource::Env(var.into()));
        assert_eq!(r.get().await.unwrap_err(), AuthError::SecretEnv(var.into()));
        assert_eq!(r.describe(), format!("from ${var}"));
    }
}
