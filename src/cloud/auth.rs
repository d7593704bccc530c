//! Credentials: turning the configured auth method into request headers.
//!
//! [`Credentials::apply`] is called on every API request, after the request is
//! built and before it is sent; it is never called for the download host, so
//! no credential header can reach it. Header values carrying secrets are
//! marked sensitive, which keeps them out of reqwest's and hyper's debug
//! output.
//!
//! Secrets given as files are re-read when the file changes (inode, size or
//! modification time), so a rotated token is picked up without a restart.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use reqwest::header::{HeaderName, HeaderValue};

use crate::config::{Auth, SecretSource};
use crate::secret::Secret;

/// Why credentials could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the secret file {path}: {reason}")]
    SecretFile { path: PathBuf, reason: String },
    #[error("the secret file {0} is empty")]
    EmptySecret(PathBuf),
    #[error("the secret contains characters not allowed in an HTTP header")]
    InvalidHeaderValue,
}

/// The credentials of the configured auth method.
#[derive(Debug)]
pub enum Credentials {
    /// An IAM token sent as `X-Auth-Token`.
    Token(SecretReader),
}

impl Credentials {
    pub fn from_config(auth: &Auth) -> Self {
        match auth {
            Auth::Token(src) => Credentials::Token(SecretReader::new(src.clone())),
        }
    }

    /// A short description for logs: which method, never the secret.
    pub fn describe(&self) -> String {
        match self {
            Credentials::Token(r) => format!("IAM token ({})", r.describe()),
        }
    }

    /// Adds the authentication headers to an API request.
    pub async fn apply(&self, req: &mut reqwest::Request) -> Result<(), AuthError> {
        match self {
            Credentials::Token(reader) => {
                let token = reader.get()?;
                let mut value = HeaderValue::from_str(token.expose())
                    .map_err(|_| AuthError::InvalidHeaderValue)?;
                value.set_sensitive(true);
                req.headers_mut()
                    .insert(HeaderName::from_static("x-auth-token"), value);
                Ok(())
            }
        }
    }

    /// Called after the API answered 401: forget cached credentials so the
    /// next request starts afresh.
    pub fn invalidate(&self) {
        match self {
            Credentials::Token(reader) => reader.forget(),
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

    fn describe(&self) -> String {
        match &self.source {
            SecretSource::Inline(_) => "inline".into(),
            SecretSource::File(p) => format!("from {}", p.display()),
        }
    }

    /// The current secret.
    pub fn get(&self) -> Result<Secret, AuthError> {
        let path = match &self.source {
            SecretSource::Inline(s) => return Ok(s.clone()),
            SecretSource::File(p) => p,
        };
        let stamp = stamp(path)?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached_stamp, secret)) = cache.as_ref()
            && *cached_stamp == stamp
        {
            return Ok(secret.clone());
        }
        let secret = read_secret_file(path)?;
        *cache = Some((stamp, secret.clone()));
        Ok(secret)
    }

    fn forget(&self) {
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

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

/// Reads a secret file, trimming one trailing newline (and surrounding blanks).
pub fn read_secret_file(path: &Path) -> Result<Secret, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|e| AuthError::SecretFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(AuthError::EmptySecret(path.to_path_buf()));
    }
    Ok(Secret::new(trimmed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_secret_is_trimmed_and_reread_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "first-token\n").unwrap();
        let r = SecretReader::new(SecretSource::File(p.clone()));
        assert_eq!(r.get().unwrap().expose(), "first-token");
        // Replace by rename, as secret managers do: a new inode.
        let tmp = dir.path().join("token.new");
        std::fs::write(&tmp, "second-token-longer\n").unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        assert_eq!(r.get().unwrap().expose(), "second-token-longer");
    }

    #[test]
    fn empty_or_missing_file_is_an_error_that_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        let r = SecretReader::new(SecretSource::File(p.clone()));
        let e = r.get().unwrap_err();
        assert!(e.to_string().contains(&*p.to_string_lossy()));
        std::fs::write(&p, "\n").unwrap();
        assert_eq!(r.get().unwrap_err(), AuthError::EmptySecret(p));
    }

    #[tokio::test]
    async fn token_header_is_sensitive() {
        let creds =
            Credentials::from_config(&Auth::Token(SecretSource::Inline(Secret::new("tok-abc"))));
        let mut req = reqwest::Request::new(
            reqwest::Method::GET,
            "https://example.invalid/x".parse().unwrap(),
        );
        creds.apply(&mut req).await.unwrap();
        let v = req.headers().get("x-auth-token").unwrap();
        assert!(v.is_sensitive());
        assert_eq!(v, "tok-abc");
        assert!(!format!("{:?}", req.headers()).contains("tok-abc"));
        assert!(!creds.describe().contains("tok-abc"));
    }
}
