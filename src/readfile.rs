//! Reading files that someone else may control: bounded, type-checked, and
//! never blocking on what is not a regular file.
//!
//! The daemon runs as root next to other users' containers. Every file it
//! reads that it did not just write itself (the config, secret files, a
//! pidfile, the outputs already on disk) may have been replaced by a FIFO, a
//! device such as `/dev/zero`, a directory or a symlink. [`read_regular`] is
//! the one way to read such a file:
//!
//! - it opens with `O_NONBLOCK`, so opening a FIFO with no writer returns at
//!   once instead of stalling the thread;
//! - it checks with `fstat` on the open descriptor (no race with a rename)
//!   that the file is a regular file;
//! - with [`Links::Refuse`] it opens with `O_NOFOLLOW`, so a symlink at the
//!   path is refused rather than followed;
//! - it reads at most `limit` bytes, and a longer file is an error, never a
//!   partial read taken for the whole.
//!
//! It does blocking I/O: call it from the blocking pool, or through
//! [`read_regular_async`], never on the runtime thread.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::libc;

/// The size cap for config and secret files: far more than any real one.
pub const SMALL_FILE_LIMIT: u64 = 1024 * 1024;

/// Whether a symlink at the path itself is followed or refused.
/// (Symlinks among the parent directories are always followed.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Follow it, as for config files (Kubernetes mounts them through
    /// `..data` symlinks).
    Follow,
    /// Refuse it, as for outputs, whose mode and content must never come
    /// from whatever a link points at.
    Refuse,
}

/// The content of the regular file at `path`, or `None` if nothing is there.
///
/// Errors (the message says what was found, the caller adds the path): a
/// symlink under [`Links::Refuse`], anything that is not a regular file, a
/// file over `limit` bytes, and the usual I/O errors.
pub fn read_regular(path: &Path, limit: u64, links: Links) -> io::Result<Option<Vec<u8>>> {
    let Some(file) = open_regular(path, links)? else {
        return Ok(None);
    };
    let len = file.metadata()?.len();
    if len > limit {
        return Err(too_large(limit));
    }
    let mut buf = Vec::with_capacity(len as usize);
    // The file may grow after the fstat: read one byte past the limit to see it.
    file.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(Some(buf))
}

/// [`read_regular`] on tokio's blocking pool.
pub async fn read_regular_async(
    path: PathBuf,
    limit: u64,
    links: Links,
) -> io::Result<Option<Vec<u8>>> {
    tokio::task::spawn_blocking(move || read_regular(&path, limit, links))
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("reading a file failed: {e}"))))
}

/// Opens `path` for reading without blocking and checks that it is a regular
/// file. `None` if nothing is there.
pub fn open_regular(path: &Path, links: Links) -> io::Result<Option<File>> {
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    if links == Links::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let file = match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // O_NOFOLLOW on a symlink fails with ELOOP.
        Err(e) if links == Links::Refuse && e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(not_regular("a symbolic link"));
        }
        Err(e) => return Err(e),
    };
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(Some(file));
    }
    Err(not_regular(describe(kind)))
}

/// What a file type is, in words, for error messages.
pub fn describe(kind: std::fs::FileType) -> &'static str {
    if kind.is_file() {
        "a regular file"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

fn not_regular(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {what}, not a regular file"),
    )
}

fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("is larger than {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn reads_a_regular_file_and_reports_a_missing_one_as_none() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        assert!(read_regular(&p, 10, Links::Refuse).unwrap().is_none());
        fs::write(&p, b"hello").unwrap();
        assert_eq!(
            read_regular(&p, 10, Links::Refuse).unwrap().unwrap(),
            b"hello"
        );
        assert_eq!(
            read_regular(&p, 5, Links::Follow).unwrap().unwrap(),
            b"hello"
        );
    }

    #[test]
    fn a_file_over_the_limit_is_an_error_not_a_truncated_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        fs::write(&p, b"123456").unwrap();
        let e = read_regular(&p, 5, Links::Follow).unwrap_err();
        assert!(e.to_string().contains("larger than 5 bytes"), "{e}");
    }

    #[test]
    fn a_fifo_is_refused_at_once_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("fifo");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // No writer: a blocking open would never return.
        for links in [Links::Follow, Links::Refuse] {
            let e = read_regular(&p, 10, links).unwrap_err();
            assert!(e.to_string().contains("is a FIFO"), "{e}");
        }
    }

    #[test]
    fn devices_and_directories_are_refused() {
        let e = read_regular(Path::new("/dev/zero"), 10, Links::Follow).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let d = tempfile::tempdir().unwrap();
        let e = read_regular(d.path(), 10, Links::Follow).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
    }

    #[test]
    fn a_symlink_is_followed_or_refused_as_asked() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("target");
        fs::write(&target, b"secret").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(
            read_regular(&link, 10, Links::Follow).unwrap().unwrap(),
            b"secret"
        );
        let e = read_regular(&link, 10, Links::Refuse).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        // A dangling link is refused too, not taken for "nothing there".
        let dangling = d.path().join("dangling");
        std::os::unix::fs::symlink(d.path().join("nowhere"), &dangling).unwrap();
        assert!(read_regular(&dangling, 10, Links::Refuse).is_err());
        assert!(
            read_regular(&dangling, 10, Links::Follow)
                .unwrap()
                .is_none()
        );
    }
}
