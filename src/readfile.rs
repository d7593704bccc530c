//! Reading files that someone else may control: bounded, type-checked, and
//! never blocking on what is not a regular file.
//!
//! The daemon runs as root next to other users' containers. Every file it
//! reads that it did not just write itself (the config, secret files, a
//! pidfile, the outputs already on disk) may have been replaced by a FIFO, a
//! device such as `/dev/zero`, a directory or a symlink. [`read_regular`] is
//! the one way to read such a file:
//!
//! - it opens the path with `O_PATH` first, which runs no device driver and
//!   touches no FIFO end, and checks with `fstat` on that descriptor (no race
//!   with a rename) that the file is a regular file; anything else (a FIFO,
//!   a device such as a watchdog, whose mere open and close can act) is
//!   refused without ever being opened for reading;
//! - only then it reopens that same file for reading through
//!   `/proc/self/fd` (without `/proc`: through the path, checking device and
//!   inode), with `O_NONBLOCK`, so nothing it opens can stall the thread;
//! - with [`Links::Refuse`] it opens with `O_NOFOLLOW`, so a symlink at the
//!   path is refused rather than followed;
//! - it reads at most `limit` bytes, and a longer file is an error, never a
//!   partial read taken for the whole.
//!
//! It does blocking I/O: call it from the blocking pool, never on the
//! runtime thread. The one exception is [`crate::cloud::trust`], which reads
//! the system's bundle inside a TLS handshake when a chain needs it: once
//! per client build, a regular file only, bounded.
//!
//! [`parent_dir`], the directory a path names a file in, lives here too: the
//! config loader and the output writer both need it, and this module is a
//! leaf either may import.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
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
    Ok(read_regular_with_meta(path, limit, links)?.map(|(bytes, _)| bytes))
}

/// [`read_regular`], with the `fstat` of the file read, taken before the
/// read: its mode and owner, and what says whether it changed since (device,
/// inode, size, times).
pub fn read_regular_with_meta(
    path: &Path,
    limit: u64,
    links: Links,
) -> io::Result<Option<(Vec<u8>, Metadata)>> {
    let Some((file, meta)) = open_regular_with_meta(path, links)? else {
        return Ok(None);
    };
    if meta.len() > limit {
        return Err(too_large(limit));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    // The file may grow after the fstat: read one byte past the limit to see it.
    file.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(Some((buf, meta)))
}

/// Why a record file could not be read by [`read_record`].
#[derive(Debug)]
pub enum RecordError {
    /// What is at the path is not a record: a symlink, anything that is not
    /// a regular file, or a file over the limit. The text says what was
    /// found ("it is a FIFO, not a regular file").
    NotARecord(String),
    /// Reading failed.
    Io(io::Error),
}

/// The content of a record file the daemon keeps in its state directory, or
/// `None` if there is none: [`read_regular`] without following a symlink,
/// with what it refuses (something other than a small regular file) told
/// apart from an I/O failure, since a refused record is corrupt, not
/// unreadable.
pub fn read_record(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, RecordError> {
    read_regular(path, limit, Links::Refuse).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
            RecordError::NotARecord(format!("it {e}"))
        }
        _ => RecordError::Io(e),
    })
}

/// Whether an error of [`read_regular`] says the file is over its limit.
pub fn is_too_large(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TooLarge>())
}

/// Opens `path` for reading without blocking and checks that it is a regular
/// file. `None` if nothing is there.
///
/// What is not a regular file is never opened for reading: the path is first
/// opened with `O_PATH` (which opens nothing: no device driver, no FIFO end
/// runs), `fstat`ed, and only a regular file is then reopened for reading
/// through `/proc/self/fd` (or, without `/proc`, through the path again),
/// checking that the same file (device and inode) was reached.
pub fn open_regular(path: &Path, links: Links) -> io::Result<Option<File>> {
    Ok(open_regular_with_meta(path, links)?.map(|(file, _)| file))
}

/// [`open_regular`], with the `fstat` of the file opened (the one that
/// checked it is the file found), so that a reader needs no other.
fn open_regular_with_meta(path: &Path, links: Links) -> io::Result<Option<(File, Metadata)>> {
    let mut flags = libc::O_PATH | libc::O_CLOEXEC;
    if links == Links::Refuse {
        // With O_PATH, O_NOFOLLOW opens the link itself: fstat shows it.
        flags |= libc::O_NOFOLLOW;
    }
    let handle = match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = handle.metadata()?;
    if !meta.file_type().is_file() {
        return Err(not_regular(describe(meta.file_type())));
    }
    let read_flags = libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    let through_proc = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()));
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(read_flags)
        .open(&through_proc)
    {
        Ok(f) => f,
        // No /proc: open the path again; the check below catches a swap.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut flags = read_flags;
            if links == Links::Refuse {
                flags |= libc::O_NOFOLLOW;
            }
            match OpenOptions::new().read(true).custom_flags(flags).open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) if links == Links::Refuse && e.raw_os_error() == Some(libc::ELOOP) => {
                    return Err(not_regular("a symbolic link"));
                }
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    let opened = file.metadata()?;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        return Err(io::Error::other(
            "was replaced while it was being opened".to_string(),
        ));
    }
    Ok(Some((file, opened)))
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

/// A file over the size limit of [`read_regular`].
#[derive(Debug, thiserror::Error)]
#[error("is larger than {0} bytes")]
struct TooLarge(u64);

fn too_large(limit: u64) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, TooLarge(limit))
}

/// The directory a file lives in (`.` for a bare name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
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
        assert!(is_too_large(&e));
        assert!(!is_too_large(
            &read_regular(d.path(), 5, Links::Follow).unwrap_err()
        ));
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

    #[test]
    fn a_record_that_is_not_a_small_regular_file_is_not_a_record() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rec");
        assert!(read_record(&p, 10).unwrap().is_none());
        fs::write(&p, b"123456").unwrap();
        assert_eq!(read_record(&p, 10).unwrap().unwrap(), b"123456");
        match read_record(&p, 5) {
            Err(RecordError::NotARecord(why)) => assert_eq!(why, "it is larger than 5 bytes"),
            other => panic!("{other:?}"),
        }
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        match read_record(&link, 10) {
            Err(RecordError::NotARecord(why)) => assert!(why.contains("symbolic link"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    /// The thread `tid` of this process is inside `open`/`openat`.
    fn in_open(tid: i32) -> bool {
        let Ok(s) = fs::read_to_string(format!("/proc/self/task/{tid}/syscall")) else {
            return false;
        };
        let nr = s.split_whitespace().next().unwrap_or("");
        nr == libc::SYS_openat.to_string()
    }

    #[test]
    fn a_fifo_is_refused_without_ever_being_opened() {
        use std::sync::mpsc;
        use std::time::{Duration, Instant};
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("fifo");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // A writer blocks in open until someone opens the FIFO for reading,
        // even with O_NONBLOCK and even if that reader closes at once: it
        // shows whether the FIFO was opened at all.
        let (tid_tx, tid_rx) = mpsc::channel();
        let (opened_tx, opened_rx) = mpsc::channel();
        let writer_path = p.clone();
        let writer = std::thread::spawn(move || {
            tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
            let f = OpenOptions::new().write(true).open(&writer_path);
            opened_tx.send(f.is_ok()).unwrap();
        });
        let tid = tid_rx.recv().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !in_open(tid) {
            assert!(Instant::now() < deadline, "the writer never reached open");
            std::thread::sleep(Duration::from_millis(5));
        }
        for links in [Links::Follow, Links::Refuse] {
            let e = read_regular(&p, 10, links).unwrap_err();
            assert!(e.to_string().contains("is a FIFO"), "{e}");
        }
        let released = opened_rx.recv_timeout(Duration::from_millis(500));
        // Let the writer go before asserting, so the thread never leaks.
        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&p)
            .unwrap();
        writer.join().unwrap();
        assert!(
            released.is_err(),
            "reading the FIFO's path opened the FIFO and released its writer"
        );
    }
}
