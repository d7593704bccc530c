//! The outputs table: the one model of the files the daemon keeps.
//!
//! Every configured output is one [`Row`]: its path, instance, category,
//! [`Format`], configured permissions, the last bytes a round verified for
//! it, and the last [`Observation`] of its path.
//!
//! [`observe`] is the one way to look at an output: one read through
//! [`readfile`] (never through a symlink, never blocking on a FIFO or a
//! device, bounded), type-checked, hashed and parsed once. [`look`] reuses
//! the last observation when an `lstat` finds the very same file (device,
//! inode, size, mtime and ctime: its [`Stamp`]); that is how the daemon
//! recognises its own writes (it keeps the observation of what it wrote) and
//! files nobody touched, without reading them again. A round always reads
//! ([`observe`]), and so does the periodic sweep: a stamp is trusted between
//! them, never instead of them.
//!
//! What the daemon decides from the disk is a pure judge over observations,
//! unit-tested here without I/O:
//! * [`readiness`]: `/readyz`, `READY=1`, the expiry warning and gauges
//!   (a bundle that keeps a previous CA is judged by its current
//!   certificates, known from the round that verified it:
//!   [`LastVerified::current_not_after`]);
//! * [`drift`]: whether self-healing writes a file back;
//! * [`Observation::digest`]: what the planner and the hook ledger compare.
//!
//! A kind of output is a [`Format`]: how its bytes read ([`Format::read`]:
//! what they hold, and the digest that stands for them), what is written for
//! a verified PEM bundle ([`Format::render`]) and its digest
//! ([`Format::expected`]), and what a file that does not read is said not to
//! hold ([`Format::invalid`]). There are two: PEM files, and Java
//! truststores (PKCS#12), whose digest is of their content because their
//! bytes differ at every write.
//!
//! The table itself ([`Table`]) lives in [`table`]; this file holds the
//! model, the ways to look, and the judges. (It runs past 500 lines: about
//! 90 of them are the reads that reuse what was parsed already, the round's
//! certificates (`read_knowing`, `observe_knowing`) and the sweep's last
//! look (`observe_again`), which belong beside `observe`; the tests are in
//! `outputs/tests.rs`.)

pub mod table;

pub use table::{LastVerified, Outputs, RoundEnd, Row, Table};

use std::borrow::Cow;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::certcheck::{self, Sha256Digest, sha256};
use crate::config::{Category, Output, SecretSource, Truststore};
use crate::readfile::{self, Links};
use crate::secret::Secret;
use crate::truststore;

/// Files larger than this are not ours: never read whole, never an output.
pub const MAX_EXISTING: u64 = 4 * 1024 * 1024;

/// What an output holds, and so how its bytes are judged, what digest
/// stands for them, and what is written for a verified PEM bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Format {
    /// PEM certificates and nothing else ([`certcheck`]'s model). Its digest
    /// is the file's SHA-256, and what is written is the verified PEM itself.
    #[default]
    PemBundle,
    /// A Java truststore (PKCS#12) of the certificates ([`truststore`]). Its
    /// digest is the store's identity (profile and entries; the password is
    /// checked by opening it), since its bytes differ at every write.
    Truststore(Arc<Truststore>),
}

impl Format {
    /// The format of a configured output.
    pub fn of(output: &Output) -> Format {
        match &output.truststore {
            Some(t) => Format::Truststore(Arc::new(t.clone())),
            None => Format::PemBundle,
        }
    }

    /// This format with its password read now (a truststore's file or
    /// variable), so that every use in a round, and the restores of what it
    /// left, see the one password the round used. Blocking for a
    /// truststore. The error names the file or variable, never the value.
    pub fn resolved(&self) -> Result<Format, String> {
        match self {
            Format::PemBundle => Ok(Format::PemBundle),
            Format::Truststore(t) => Ok(Format::Truststore(Arc::new(Truststore {
                password: SecretSource::Inline(truststore_password(&t.password)?),
                profile: t.profile,
            }))),
        }
    }

    /// What `bytes` on disk hold, and the digest the planner, the hook
    /// ledger and self-healing compare. Pure for PEM; for a truststore it
    /// reads the password (a file or a variable), so: blocking.
    pub fn read(&self, bytes: &[u8]) -> (Sha256Digest, Content) {
        self.read_knowing(bytes, &[])
    }

    /// [`Format::read`], taking the certificates among `known` from there
    /// instead of parsing them again ([`certcheck::inspect_pem_knowing`]):
    /// the same answer.
    pub fn read_knowing(
        &self,
        bytes: &[u8],
        known: &[&certcheck::CertInfo],
    ) -> (Sha256Digest, Content) {
        let content = |certs: Option<Vec<certcheck::CertInfo>>| {
            certs.map_or(Content::Invalid, |certs| certs_content(&certs))
        };
        match self {
            Format::PemBundle => (
                sha256(bytes),
                content(certcheck::inspect_pem_knowing(bytes, known)),
            ),
            Format::Truststore(t) => {
                let Ok(password) = truststore_password(&t.password) else {
                    return (sha256(bytes), Content::Invalid);
                };
                let read = truststore::read(bytes, &password, t.profile);
                let certs = (read.entries.ok()).and_then(|e| {
                    certcheck::inspect_ders_knowing(e.iter().map(|e| e.der.as_slice()), known)
                });
                (read.digest, content(certs))
            }
        }
    }

    /// The certificates in `bytes` on disk, in the file's order; `None` when
    /// they are not (only) what this format holds. For a truststore it reads
    /// the password: blocking.
    pub fn certs(&self, bytes: &[u8]) -> Option<Vec<certcheck::CertInfo>> {
        match self {
            Format::PemBundle => certcheck::inspect_pem(bytes),
            Format::Truststore(t) => {
                let password = truststore_password(&t.password).ok()?;
                let entries = truststore::decode(bytes, &password, t.profile).ok()?;
                certcheck::inspect_ders(entries.iter().map(|e| e.der.as_slice()))
            }
        }
    }

    /// What `bytes` on disk hold ([`Format::read`] without the digest).
    pub fn parse(&self, bytes: &[u8]) -> Content {
        self.read(bytes).1
    }

    /// The digest of a file of this format that holds the verified PEM
    /// bundle `pem`: what [`Format::read`] will say of [`Format::render`]'s
    /// bytes, and what the planner compares with the file on disk. Pure.
    pub fn digest(&self, pem: &[u8]) -> Result<Sha256Digest, String> {
        match self {
            Format::PemBundle => Ok(sha256(pem)),
            Format::Truststore(t) => {
                truststore::expected(pem, t.profile).map_err(|e| e.to_string())
            }
        }
    }

    /// The bytes to write for the verified PEM bundle `pem`: what a round
    /// or a restore writes. For a truststore it reads the password:
    /// blocking. The error never holds the password.
    pub fn render<'a>(&self, pem: &'a [u8]) -> Result<Cow<'a, [u8]>, String> {
        match self {
            Format::PemBundle => Ok(Cow::Borrowed(pem)),
            Format::Truststore(t) => {
                let password = truststore_password(&t.password)?;
                (truststore::render(pem, &password, t.profile).map(Cow::Owned))
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// What a file of this format that does not parse fails to hold, for
    /// `/readyz`: "{path} {this}".
    pub fn invalid(&self) -> &'static str {
        match self {
            Format::PemBundle => "does not hold only PEM certificates",
            Format::Truststore(_) => {
                "is not a truststore of the configured profile that opens with the configured password and holds only trusted certificates"
            }
        }
    }
}

fn certs_content(certs: &[certcheck::CertInfo]) -> Content {
    Content::Certs {
        not_after: certs.iter().map(|c| c.not_after).min().unwrap_or(0),
    }
}

/// A truststore's password, read now from where the config says, and
/// checked ([`truststore::check_password`]). Blocking. The error names the
/// file or variable, never the value.
fn truststore_password(source: &SecretSource) -> Result<Secret, String> {
    let password = match source {
        SecretSource::Inline(s) => s.clone(),
        SecretSource::File(p) => crate::cloud::credential::read_secret_file(p)
            .map_err(|e| format!("truststore password: {e}"))?,
        SecretSource::Env(var) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Secret::new(v.trim()),
            _ => {
                return Err(format!(
                    "truststore password: the environment variable {var} is not set or empty"
                ));
            }
        },
    };
    truststore::check_password(&password).map_err(|why| format!("truststore password {why}"))?;
    Ok(password)
}

/// What a regular file at an output path holds, as its [`Format`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Certificates; the earliest `notAfter`, in Unix seconds.
    Certs { not_after: i64 },
    /// Not (only) what the format holds.
    Invalid,
}

/// What tells one version of a file from another without reading it:
/// device, inode, size, and the modification and change times. A write in
/// place changes the times; a replacement changes the inode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub fn of(m: &Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// A file's mode and owner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owner {
    /// The whole `st_mode` permission bits (`& 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub fn of(m: &Metadata) -> Owner {
        Owner {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        }
    }
}

/// A regular file at an output path, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSeen {
    pub sha256: Sha256Digest,
    pub content: Content,
    pub owner: Owner,
    pub stamp: Stamp,
}

/// What one look at an output path found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// Nothing.
    Missing,
    /// A symbolic link, dangling or not: never followed; not our file.
    Link,
    /// Something that cannot be read (a FIFO, a directory, a denied
    /// permission): what the error says, without the path.
    Unreadable(String),
    /// A regular file larger than [`MAX_EXISTING`]: not ours, never read.
    Oversized { owner: Owner, stamp: Stamp },
    /// A regular file, read whole.
    File(FileSeen),
}

impl Observation {
    /// The observation of `bytes` in a file whose `fstat` is `meta`: what
    /// [`observe`] reads, or what a replacement just wrote. Pure.
    pub fn of_file(format: &Format, bytes: &[u8], meta: &Metadata) -> Observation {
        Observation::of_file_knowing(format, bytes, meta, &[])
    }

    /// [`Observation::of_file`], with `known` as in [`Format::read_knowing`].
    fn of_file_knowing(
        format: &Format,
        bytes: &[u8],
        meta: &Metadata,
        known: &[&certcheck::CertInfo],
    ) -> Observation {
        let (sha256, content) = format.read_knowing(bytes, known);
        Observation::file(sha256, content, meta)
    }

    /// A regular file with this digest and content, whose `fstat` is `meta`.
    fn file(sha256: Sha256Digest, content: Content, meta: &Metadata) -> Observation {
        Observation::File(FileSeen {
            sha256,
            content,
            owner: Owner::of(meta),
            stamp: Stamp::of(meta),
        })
    }

    /// What a replacement just wrote into the file whose `fstat` is `meta`:
    /// `certs` in the output's format, whose digest is `sha256` (the plan's
    /// new digest). Known without parsing the bytes again, since a format
    /// reads back exactly what it writes (the test
    /// `what_a_format_writes_is_what_it_reads_and_compares`); for a
    /// truststore, reading back would also mean a key derivation. Pure.
    pub fn written(
        sha256: Sha256Digest,
        certs: &[certcheck::CertInfo],
        meta: &Metadata,
    ) -> Observation {
        Observation::file(sha256, certs_content(certs), meta)
    }

    /// The digest the planner and the hook ledger compare. `Ok(None)`: no
    /// file of ours is there (nothing, a symlink, a file too large to be
    /// ours), so a round writes one; `Err`: it cannot be read, and is not
    /// overwritten blindly. Pure.
    pub fn digest(&self) -> Result<Option<Sha256Digest>, &str> {
        match self {
            Observation::File(f) => Ok(Some(f.sha256)),
            Observation::Missing | Observation::Link | Observation::Oversized { .. } => Ok(None),
            Observation::Unreadable(e) => Err(e),
        }
    }

    /// The stamp of the regular file seen, if one was.
    pub fn stamp(&self) -> Option<Stamp> {
        match self {
            Observation::File(f) => Some(f.stamp),
            Observation::Oversized { stamp, .. } => Some(*stamp),
            _ => None,
        }
    }

    /// The mode and owner of the regular file seen, if one was (never a
    /// link's).
    pub fn owner(&self) -> Option<Owner> {
        match self {
            Observation::File(f) => Some(f.owner),
            Observation::Oversized { owner, .. } => Some(*owner),
            _ => None,
        }
    }
}

#[cfg(test)]
static READS: std::sync::Mutex<Option<std::collections::HashMap<PathBuf, usize>>> =
    std::sync::Mutex::new(None);

/// How many times [`observe`] read `path` in this test process.
#[cfg(test)]
pub(crate) fn reads_of(path: &Path) -> usize {
    READS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(path).copied())
        .unwrap_or(0)
}

#[cfg(test)]
fn count_read(path: &Path) {
    *READS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_default()
        .entry(path.to_path_buf())
        .or_default() += 1;
}

/// Looks at an output path: one read, never through a symlink, never
/// blocking on what is not a regular file, at most [`MAX_EXISTING`] bytes;
/// hashed and parsed as `format`. Blocking.
pub fn observe(path: &Path, format: &Format) -> Observation {
    observe_knowing(path, format, &[])
}

/// [`observe`], taking the certificates among `known` (served this round,
/// or recorded) from there instead of parsing them again: the same answer
/// ([`Format::read_knowing`]). Blocking.
pub fn observe_knowing(
    path: &Path,
    format: &Format,
    known: &[&certcheck::CertInfo],
) -> Observation {
    observe_with(path, |bytes, meta| {
        Observation::of_file_knowing(format, bytes, meta, known)
    })
}

/// [`observe`] for the periodic sweep, which reads every output whatever
/// its stamp: a PEM bundle holding exactly the bytes `last` saw (the same
/// SHA-256, which is its digest) takes `last`'s content instead of being
/// parsed again, since the same bytes read the same. Anything else is
/// [`observe`]d. Blocking.
pub fn observe_again(path: &Path, format: &Format, last: Option<&Observation>) -> Observation {
    let last_pem = match (format, last) {
        (Format::PemBundle, Some(Observation::File(f))) => Some((f.sha256, f.content)),
        _ => None,
    };
    observe_with(path, |bytes, meta| match last_pem {
        Some((digest, content)) if sha256(bytes) == digest => {
            Observation::file(digest, content, meta)
        }
        _ => Observation::of_file(format, bytes, meta),
    })
}

/// The one read behind [`observe`]: what is at `path`, with a regular
/// file's bytes and `fstat` handed to `of_file`.
fn observe_with(path: &Path, of_file: impl FnOnce(&[u8], &Metadata) -> Observation) -> Observation {
    #[cfg(test)]
    count_read(path);
    match readfile::read_regular_with_meta(path, MAX_EXISTING, Links::Refuse) {
        Ok(None) => Observation::Missing,
        Ok(Some((bytes, meta))) => of_file(&bytes, &meta),
        // Say what is there: a link (`O_NOFOLLOW` refused it), or a file
        // too large to be ours.
        Err(e) => match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => Observation::Link,
            Ok(m) if m.is_file() && readfile::is_too_large(&e) => Observation::Oversized {
                owner: Owner::of(&m),
                stamp: Stamp::of(&m),
            },
            // A parent that is no directory: say which.
            _ if e.raw_os_error() == Some(nix::libc::ENOTDIR) => {
                let why = path.parent().and_then(crate::output::what_blocks);
                Observation::Unreadable(match why {
                    Some(why) => format!("{e} ({why})"),
                    None => e.to_string(),
                })
            }
            _ => Observation::Unreadable(e.to_string()),
        },
    }
}

/// Looks at an output path, reusing `last` when an `lstat` finds the same
/// regular file it saw (same [`Stamp`]); reads ([`observe`]) only a file
/// that changed. Nothing and a symlink are told by the `lstat` alone.
/// Blocking.
pub fn look(path: &Path, format: &Format, last: Option<&Observation>) -> Observation {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Observation::Missing,
        Ok(m) if m.file_type().is_symlink() => Observation::Link,
        Ok(m) if m.is_file() => match last {
            Some(seen) if seen.stamp() == Some(Stamp::of(&m)) => seen.clone(),
            _ => observe(path, format),
        },
        _ => observe(path, format),
    }
}

/// How an output differs from the bytes it should hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drift {
    Intact,
    Deleted,
    Modified,
    /// A symlink took its place: not followed; the link is replaced.
    Link,
    /// It cannot be read; it is not overwritten blindly.
    Unreadable,
}

/// Compares what was seen with the digest of what should be there. Pure.
pub fn drift(seen: &Observation, expected: &Sha256Digest) -> Drift {
    match seen {
        Observation::Missing => Drift::Deleted,
        Observation::Link => Drift::Link,
        Observation::File(f) if f.sha256 == *expected => Drift::Intact,
        Observation::File(_) | Observation::Oversized { .. } => Drift::Modified,
        Observation::Unreadable(_) => Drift::Unreadable,
    }
}

/// An output whose certificate expires within the warning window, or has
/// expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring {
    pub instance_id: String,
    pub category: Category,
    pub path: PathBuf,
    /// The earliest `notAfter` in the file, in Unix seconds.
    pub not_after: i64,
}

/// The judgement of the files: what `/readyz` and `READY=1` say, and which
/// expire.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Readiness {
    /// Why the daemon is not ready, one short phrase per file; empty: ready.
    pub problems: Vec<String>,
    pub expiring: Vec<Expiring>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.problems.is_empty()
    }
}

/// When the file seen (its digest `seen`) is the bundle a round verified
/// and that bundle keeps previous certificates (`keep_previous`): the
/// earliest notAfter of its current ones. A kept certificate leaves the file
/// before it expires, so one about to go raises no alarm; any other file is
/// judged by all of its certificates. Pure.
fn current_not_after(row: &Row, seen: &Sha256Digest) -> Option<i64> {
    let v = row.verified.as_ref().filter(|v| &v.sha256 == seen)?;
    v.current_not_after
}

/// Judges the outputs, each with what was seen at its path, at Unix time
/// `now`: every file must be there, hold only what its format holds, and not
/// have expired (a bundle that keeps previous certificates: its current
/// ones, see [`current_not_after`]); those expiring within `warning` (or
/// expired) are listed. Pure.
pub fn readiness<'a>(
    files: impl IntoIterator<Item = (&'a Row, &'a Observation)>,
    now: i64,
    warning: Duration,
) -> Readiness {
    let mut v = Readiness::default();
    let horizon = now.saturating_add(i64::try_from(warning.as_secs()).unwrap_or(i64::MAX));
    for (row, seen) in files {
        let p = row.path.display();
        let not_after = match seen {
            Observation::Missing => {
                v.problems.push(format!("{p} is missing"));
                continue;
            }
            Observation::Link => {
                v.problems.push(format!(
                    "{p} is unreadable: is a symbolic link, not a regular file (the next round replaces it)"
                ));
                continue;
            }
            Observation::Unreadable(e) => {
                v.problems.push(format!("{p} is unreadable: {e}"));
                continue;
            }
            Observation::Oversized { .. }
            | Observation::File(FileSeen {
                content: Content::Invalid,
                ..
            }) => {
                v.problems.push(format!("{p} {}", row.format.invalid()));
                continue;
            }
            Observation::File(FileSeen {
                content: Content::Certs { not_after },
                sha256,
                ..
            }) => current_not_after(row, sha256).unwrap_or(*not_after),
        };
        if not_after <= now {
            v.problems.push(format!(
                "{p} expired at {}",
                certcheck::format_time(not_after)
            ));
        }
        // Expired is the last stage of expiring: an alert on
        // `cert_expiring` must not clear when it comes.
        if not_after <= horizon {
            v.expiring.push(Expiring {
                instance_id: row.instance_id.clone(),
                category: row.category,
                path: row.path.clone(),
                not_after,
            });
        }
    }
    v
}

#[cfg(test)]
mod tests;
