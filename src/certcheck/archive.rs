//! Zip downloads: the certificate files inside an archive, read in memory
//! under bounds that a hostile archive cannot get past.
//!
//! Some Huawei Cloud services link to a zip (`Certificate_Download.zip`, with
//! members such as `ca.pem` and `ca-bundle.pem`; the exact list is not
//! documented). [`certificate_members`] takes every member whose name ends in
//! `.pem`, `.crt` or `.cer` (any case) and hands back its bytes; the caller
//! parses them (PEM or DER) and applies the usual rules. Members with other
//! names, and directory entries, are ignored.
//!
//! What refuses the whole download, with the member's name (escaped, at most
//! [`NAME_SHOWN`] characters: the names come from the archive):
//! - no end-of-central-directory record (a truncated body), an archive the
//!   zip reader cannot read, no member at all, more than [`MAX_MEMBERS`]
//!   entries, a name listed twice (which of the two would an unzip pick?);
//! - any member's name that is absolute (`/x`, `\x`, `C:x`), climbs (`..`),
//!   is empty or holds a NUL byte: nothing is ever written to disk from a
//!   member, so such a name could do no harm here, but no archive a cloud
//!   publishes has one, and one that does is not trusted for its certificates;
//! - a certificate-named member that is a symbolic link entry, encrypted,
//!   compressed by a method other than stored or deflate, unpacks to more than
//!   [`MAX_MEMBER_SIZE`] bytes (reading stops there, however small the member
//!   is packed: that is what stops a large zip bomb) or, below that, to more
//!   than [`MAX_RATIO`] times its compressed size (a small bomb, or padding),
//!   is itself a zip (nested archives are never opened), or fails its CRC or
//!   its deflate stream;
//! - certificate-named members that unpack to more than [`MAX_TOTAL_SIZE`]
//!   bytes together;
//! - no certificate-named member.
//!
//! Sizes are counted on the bytes that come out of the decompressor, read
//! through a limit of the cap plus one byte: the sizes an archive's headers
//! state are never trusted. The compressed size is bounded before this module
//! is reached: the download is capped at [`super::MAX_BODY`].
//!
//! Pure: the archive is read from memory.

use std::io::{Cursor, Read};

use zip::CompressionMethod;
use zip::ZipArchive;

/// The most entries (files, directories, anything) an archive may list. A CA
/// download holds a handful; the count is checked on the end record before
/// the central directory is read, so it also bounds what reading it costs.
pub const MAX_MEMBERS: u64 = 64;

/// The most bytes one certificate-named member may unpack to: as much as a
/// whole download may be.
pub const MAX_MEMBER_SIZE: u64 = super::MAX_BODY as u64;

/// The most bytes all certificate-named members together may unpack to.
pub const MAX_TOTAL_SIZE: u64 = 4 * super::MAX_BODY as u64;

/// The most a member may grow when unpacked, as a multiple of its compressed
/// size. Certificates in PEM shrink to about three quarters under deflate; a
/// member that grows a hundredfold is padding, or a bomb.
pub const MAX_RATIO: u64 = 100;

/// The most characters of a member's name an error shows.
pub const NAME_SHOWN: usize = 64;

/// A certificate-named member's bytes, as unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The name, escaped and capped for messages ([`shown_name`]).
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Why an archive was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("truncated or not a zip archive: no end-of-central-directory record")]
    NoEnd,
    #[error("unreadable zip archive: {0}")]
    Unreadable(String),
    #[error("the zip archive has no members")]
    Empty,
    #[error("the zip archive lists {0} entries, more than {MAX_MEMBERS}")]
    TooManyMembers(u64),
    #[error(
        "the zip archive lists {entries} entries but only {names} distinct names: a member name is used twice"
    )]
    DuplicateNames { entries: u64, names: u64 },
    #[error("the zip archive has no member named *.pem, *.crt or *.cer (it has {0} other entries)")]
    NoCertificateMember(u64),
    #[error("the zip archive's certificate members unpack to more than {MAX_TOTAL_SIZE} bytes")]
    TotalTooLarge,
    #[error("zip member \"{name}\" {problem}")]
    Member {
        name: String,
        problem: MemberProblem,
    },
}

/// What is wrong with one member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberProblem {
    #[error("has an unsafe name ({0})")]
    UnsafeName(&'static str),
    #[error("is a symbolic link entry")]
    Symlink,
    #[error("is encrypted")]
    Encrypted,
    #[error("uses compression method {0}; only stored and deflate are read")]
    Method(String),
    #[error("unpacks to more than {MAX_MEMBER_SIZE} bytes")]
    TooLarge,
    #[error(
        "unpacks to more than {MAX_RATIO} times its compressed size of {compressed} bytes: a zip bomb"
    )]
    Bomb { compressed: u64 },
    #[error("is itself a zip archive; nested archives are not opened")]
    Nested,
    #[error("cannot be read: {0}")]
    Unreadable(String),
}

/// Does a body look like a zip: a local file header first, or the end record
/// of an empty archive.
pub fn is_zip(body: &[u8]) -> bool {
    body.starts_with(b"PK\x03\x04") || body.starts_with(b"PK\x05\x06")
}

/// Every certificate-named member of a zip, in the central directory's order,
/// unpacked under the module's bounds.
pub fn certificate_members(body: &[u8]) -> Result<Vec<Member>, ArchiveError> {
    let entries = end_record_entries(body)?;
    if entries == 0 {
        return Err(ArchiveError::Empty);
    }
    if entries > MAX_MEMBERS {
        return Err(ArchiveError::TooManyMembers(entries));
    }
    let mut archive =
        ZipArchive::new(Cursor::new(body)).map_err(|e| ArchiveError::Unreadable(e.to_string()))?;
    let names = archive.len() as u64;
    if names != entries {
        // The reader keys members by name, so a repeated name leaves fewer.
        return Err(ArchiveError::DuplicateNames { entries, names });
    }
    let mut members = Vec::new();
    let mut total = 0u64;
    for i in 0..archive.len() {
        let Some(wanted) = look_at(&mut archive, i)? else {
            continue;
        };
        let member = unpack(&mut archive, i, wanted)?;
        total += member.bytes.len() as u64;
        if total > MAX_TOTAL_SIZE {
            return Err(ArchiveError::TotalTooLarge);
        }
        members.push(member);
    }
    if members.is_empty() {
        return Err(ArchiveError::NoCertificateMember(entries));
    }
    Ok(members)
}

/// A certificate-named member's name and compressed size, found by
/// [`look_at`] before it is unpacked.
struct Wanted {
    name: String,
    compressed: u64,
}

/// Judges entry `i` by its central directory record: `None` for what is not
/// read (a directory, another name), an error for what refuses the archive.
fn look_at(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    i: usize,
) -> Result<Option<Wanted>, ArchiveError> {
    let entry = archive
        .by_index_raw(i)
        .map_err(|e| ArchiveError::Unreadable(e.to_string()))?;
    let raw = entry.name_raw();
    let name = shown_name(raw);
    let refuse = |problem| ArchiveError::Member {
        name: name.clone(),
        problem,
    };
    if let Some(why) = unsafe_name(raw) {
        return Err(refuse(MemberProblem::UnsafeName(why)));
    }
    if entry.is_dir() || !is_certificate_name(raw) {
        return Ok(None);
    }
    if entry.is_symlink() {
        return Err(refuse(MemberProblem::Symlink));
    }
    if entry.encrypted() {
        return Err(refuse(MemberProblem::Encrypted));
    }
    let method = entry.compression();
    if method != CompressionMethod::Stored && method != CompressionMethod::Deflated {
        return Err(refuse(MemberProblem::Method(method.to_string())));
    }
    Ok(Some(Wanted {
        compressed: entry.compressed_size(),
        name,
    }))
}

/// Unpacks entry `i` through a limit of [`MAX_MEMBER_SIZE`] plus one byte;
/// the CRC is checked when the reader reaches the end.
fn unpack(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    i: usize,
    wanted: Wanted,
) -> Result<Member, ArchiveError> {
    let Wanted { name, compressed } = wanted;
    let refuse = |problem| ArchiveError::Member {
        name: name.clone(),
        problem,
    };
    let mut bytes = Vec::new();
    archive
        .by_index(i)
        .and_then(|entry| Ok(entry.take(MAX_MEMBER_SIZE + 1).read_to_end(&mut bytes)?))
        .map_err(|e| refuse(MemberProblem::Unreadable(clip(&e.to_string()))))?;
    let out = bytes.len() as u64;
    if exceeds_ratio(out, compressed) {
        return Err(refuse(MemberProblem::Bomb { compressed }));
    }
    if out > MAX_MEMBER_SIZE {
        return Err(refuse(MemberProblem::TooLarge));
    }
    if is_zip(&bytes) {
        return Err(refuse(MemberProblem::Nested));
    }
    Ok(Member { name, bytes })
}

/// Did a member grow more than [`MAX_RATIO`] times its compressed size? Pure.
pub fn exceeds_ratio(unpacked: u64, compressed: u64) -> bool {
    unpacked > compressed.max(1).saturating_mul(MAX_RATIO)
}

/// The entry count of the archive's end-of-central-directory record: the last
/// `PK\x05\x06` whose comment ends exactly at the end of the body. Pure.
pub fn end_record_entries(body: &[u8]) -> Result<u64, ArchiveError> {
    const FIXED: usize = 22;
    if body.len() < FIXED {
        return Err(ArchiveError::NoEnd);
    }
    let lowest = body.len().saturating_sub(FIXED + u16::MAX as usize);
    (lowest..=body.len() - FIXED)
        .rev()
        .find_map(|at| {
            let record = &body[at..];
            let comment = u16::from_le_bytes([record[20], record[21]]) as usize;
            (record.starts_with(b"PK\x05\x06") && at + FIXED + comment == body.len())
                .then(|| u64::from(u16::from_le_bytes([record[10], record[11]])))
        })
        .ok_or(ArchiveError::NoEnd)
}

/// Is this a name whose member is read: ends in `.pem`, `.crt` or `.cer`, in
/// any case. Pure.
pub fn is_certificate_name(raw: &[u8]) -> bool {
    let lower = raw.to_ascii_lowercase();
    [b".pem", b".crt", b".cer"]
        .iter()
        .any(|ext| lower.ends_with(*ext))
}

/// Why a member's name is refused, if it is: empty, a NUL byte, absolute
/// (`/`, `\`, a drive letter) or a `..` component. Pure.
pub fn unsafe_name(raw: &[u8]) -> Option<&'static str> {
    if raw.is_empty() {
        return Some("empty");
    }
    if raw.contains(&0) {
        return Some("a NUL byte");
    }
    if raw[0] == b'/' || raw[0] == b'\\' {
        return Some("absolute");
    }
    if raw.len() >= 2 && raw[0].is_ascii_alphabetic() && raw[1] == b':' {
        return Some("a drive letter");
    }
    if raw.split(|b| *b == b'/' || *b == b'\\').any(|c| c == b"..") {
        return Some("a `..` component");
    }
    None
}

/// A member's name for a message: decoded lossily, control characters,
/// quotes and backslashes escaped, at most [`NAME_SHOWN`] characters (then
/// `…`). Pure.
pub fn shown_name(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let escaped: String = text.chars().flat_map(char::escape_debug).collect();
    clip_to(&escaped, NAME_SHOWN)
}

/// A reader's error text, capped.
fn clip(text: &str) -> String {
    clip_to(text, 200)
}

fn clip_to(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests;
