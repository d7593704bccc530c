//! File output: replacing outputs atomically. (Reading them is
//! [`crate::outputs::observe`]'s: one read, never through a symlink, never
//! blocking on what is not a regular file.)
//!
//! The only way this module changes an output is [`replace`]:
//!
//! 1. create a temporary file in the target's own directory, exclusively
//!    (`O_CREAT|O_EXCL`, so it never follows a symlink or reuses an existing
//!    name);
//! 2. write the bytes and `fsync` them;
//! 3. set the mode and owner (the configured ones, else the old file's if it
//!    is a regular file, else 0644 and the daemon's user: never a link's);
//! 4. `rename` it over the target, which readers see as a single switch from
//!    the old inode to the new one;
//! 5. `fsync` the directory, so the rename itself survives a power loss.
//!
//! [`replace_unsynced`] takes the same steps without the two fsyncs; it is
//! for a state file whose loss costs nothing (an instance's first record of
//! kept certificates), never for an output.
//!
//! A target that is neither missing, nor a regular file, nor a symlink is
//! refused before step 1. A failure at any step removes the temporary file
//! and leaves the target as it was. Temporary files carry a recognisable name
//! (`.{file}.dds-certsync-XXXXXX.tmp`) so that [`clean_stale_temps`] can
//! remove any a crash left behind.
//!
//! The file runs past 500 lines for its unit tests, which sit beside the code
//! they pin (the code is under 420 lines).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File, Metadata, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::Perms;
use crate::readfile;
pub use crate::readfile::parent_dir;

/// The marker in the name of our temporary files.
const TEMP_MARK: &str = ".dds-certsync-";

/// A failed replacement: which path, which step, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {step}: {source}{hint}")]
pub struct WriteError {
    pub path: PathBuf,
    pub step: &'static str,
    #[source]
    pub source: io::Error,
    pub hint: Cow<'static, str>,
}

impl WriteError {
    fn new(path: &Path, step: &'static str, source: io::Error) -> Self {
        WriteError {
            path: path.to_path_buf(),
            step,
            source,
            hint: Cow::Borrowed(""),
        }
    }
}

const BIND_MOUNT_HINT: &str = " (the target looks like a single-file bind mount, and a file \
cannot be replaced by rename there; mount the whole directory instead, e.g. a Kubernetes \
volume without subPath)";

const CHOWN_HINT: &str = " (the owner to set, configured or the old file's, is another user; \
only root or a daemon with CAP_CHOWN can do that: grant CAP_CHOWN, or set the instance's owner \
and group to the daemon's own user)";

/// Replaces `path` with `bytes` atomically. See the module doc for the steps.
pub fn replace(path: &Path, bytes: &[u8], perms: &Perms) -> Result<(), WriteError> {
    replace_file(path, bytes, perms).map(drop)
}

/// [`replace`] without its two `fsync`s (steps 2 and 5): readers still see
/// the old file or the new one, never a mix, but a power cut may lose the
/// replacement or leave the new name with an empty file. Only for a file
/// whose loss costs nothing: one that the next round writes again alike.
pub fn replace_unsynced(path: &Path, bytes: &[u8], perms: &Perms) -> Result<(), WriteError> {
    rename_into_place(path, bytes, perms, Durability::Later).map(drop)
}

/// Whether a replacement's bytes are made durable before the rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// `fsync` the temporary file before it is renamed.
    Now,
    /// Leave the bytes to the kernel's writeback.
    Later,
}

/// [`replace`], returning the `fstat` of the new file taken after the
/// rename: the mode and owner it got, and what tells a later look that it is
/// still this file (`None` in the unlikely case that the `fstat` failed).
pub fn replace_file(
    path: &Path,
    bytes: &[u8],
    perms: &Perms,
) -> Result<Option<Metadata>, WriteError> {
    let (dir, meta) = rename_into_place(path, bytes, perms, Durability::Now)?;
    fsync_dir(&dir).map_err(|e| WriteError::new(path, "fsync directory", e))?;
    Ok(meta)
}

/// Replaces several files, like [`replace`] each, but fsyncs each directory
/// once, after all renames into it (an instance's outputs usually share
/// one). A file counts as replaced only once its directory is fsynced. Each
/// result is like [`replace_file`]'s.
pub fn replace_all(files: &[(&Path, &[u8], &Perms)]) -> Vec<Result<Option<Metadata>, WriteError>> {
    // Each directory is made (if missing) once, not once per file in it.
    let mut made: Vec<PathBuf> = Vec::new();
    let mut results: Vec<Result<(PathBuf, Option<Metadata>), WriteError>> = files
        .iter()
        .map(|(path, bytes, perms)| {
            let dir = parent_dir(path);
            if !made.contains(&dir) {
                ensure_dir(path, &dir)?;
                made.push(dir.clone());
            }
            rename_into_made(path, dir, bytes, perms, Durability::Now)
        })
        .collect();
    let mut synced: Vec<(PathBuf, Option<io::ErrorKind>, String)> = Vec::new();
    for (i, r) in results.iter_mut().enumerate() {
        let Ok((dir, _)) = r else { continue };
        let (kind, msg) = match synced.iter().find(|(d, _, _)| d == dir) {
            Some((_, kind, msg)) => (*kind, msg.clone()),
            None => {
                let outcome = fsync_dir(dir);
                let kind = outcome.as_ref().err().map(io::Error::kind);
                let msg = outcome.err().map(|e| e.to_string()).unwrap_or_default();
                synced.push((dir.clone(), kind, msg.clone()));
                (kind, msg)
            }
        };
        if let Some(kind) = kind {
            *r = Err(WriteError::new(
                files[i].0,
                "fsync directory",
                io::Error::new(kind, msg),
            ));
        }
    }
    results
        .into_iter()
        .map(|r| r.map(|(_, meta)| meta))
        .collect()
}

/// Steps 1 to 4 of a replacement (`sync`: whether step 2 fsyncs); returns
/// the directory to fsync and the new file's `fstat` after the rename (a
/// rename may change its ctime).
fn rename_into_place(
    path: &Path,
    bytes: &[u8],
    perms: &Perms,
    sync: Durability,
) -> Result<(PathBuf, Option<Metadata>), WriteError> {
    let dir = parent_dir(path);
    ensure_dir(path, &dir)?;
    rename_into_made(path, dir, bytes, perms, sync)
}

/// Makes `dir`, the directory of `path`, and any missing parent. A folder
/// that is there (nearly always) costs one `stat`: `create_dir_all` would
/// try `mkdir` first and `stat` after its failure.
fn ensure_dir(path: &Path, dir: &Path) -> Result<(), WriteError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| {
        let mut w = WriteError::new(path, "create directory", e);
        if let Some(why) = what_blocks(dir) {
            w.hint = format!(" ({why})").into();
        }
        w
    })
}

/// Why a directory cannot be made: the nearest of `dir` and its parents that
/// is there but is no directory (a file, a FIFO, a symbolic link to
/// something else or to nothing), in words; `None` if none is, and the
/// system's own error says it all (permissions, a full disk).
pub fn what_blocks(dir: &Path) -> Option<String> {
    let (at, meta) = dir
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .find_map(|a| fs::symlink_metadata(a).ok().map(|m| (a, m)))?;
    let shown = at.display();
    if !meta.file_type().is_symlink() {
        return (!meta.is_dir()).then(|| {
            let what = readfile::describe(meta.file_type());
            format!("{shown} is {what}, not a directory")
        });
    }
    let target = fs::read_link(at)
        .map(|t| t.display().to_string())
        .unwrap_or_default();
    match fs::metadata(at) {
        Ok(m) if m.is_dir() => None,
        Ok(m) => {
            let what = readfile::describe(m.file_type());
            Some(format!(
                "{shown} is a symbolic link to {target}, which is {what}, not a directory"
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(format!(
            "{shown} is a symbolic link to {target}, which does not exist"
        )),
        Err(e) => Some(format!(
            "{shown} is a symbolic link to {target}, which cannot be followed: {e}"
        )),
    }
}

/// [`rename_into_place`] into `dir`, the directory of `path`, which exists;
/// `sync`: whether step 2 fsyncs.
fn rename_into_made(
    path: &Path,
    dir: PathBuf,
    bytes: &[u8],
    perms: &Perms,
    sync: Durability,
) -> Result<(PathBuf, Option<Metadata>), WriteError> {
    let name = path
        .file_name()
        .ok_or_else(|| WriteError::new(path, "path", io::Error::other("no file name")))?;

    let existing = existing_regular(path)?;
    let mode = perms
        .mode
        .or_else(|| existing.as_ref().map(|m| inherited_mode(m.mode())))
        .unwrap_or(0o644);
    let uid = perms.uid.or_else(|| existing.as_ref().map(|m| m.uid()));
    let gid = perms.gid.or_else(|| existing.as_ref().map(|m| m.gid()));

    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}{TEMP_MARK}", name.to_string_lossy()))
        .suffix(".tmp")
        .rand_bytes(6)
        .tempfile_in(&dir)
        .map_err(|e| WriteError::new(path, "create temporary file", e))?;
    // From here on, dropping `tmp` deletes the temporary file.
    tmp.write_all(bytes)
        .map_err(|e| WriteError::new(path, "write temporary file", e))?;
    if sync == Durability::Now {
        tmp.as_file()
            .sync_all()
            .map_err(|e| WriteError::new(path, "fsync temporary file", e))?;
    }
    tmp.as_file()
        .set_permissions(Permissions::from_mode(mode))
        .map_err(|e| WriteError::new(path, "set mode", e))?;
    set_owner(tmp.as_file(), path, uid, gid, mode)?;
    crate::failpoint::hit("before-rename");
    let file = tmp.persist(path).map_err(|e| {
        let mut w = WriteError::new(path, "rename over the target", e.error);
        if matches!(
            w.source.raw_os_error(),
            Some(nix::libc::EBUSY | nix::libc::EXDEV)
        ) {
            w.hint = BIND_MOUNT_HINT.into();
        }
        w
    })?;
    crate::failpoint::hit("after-rename");
    // The file is in place: a failed fstat only means nothing is known of it.
    Ok((dir, file.metadata().ok()))
}

/// The file at `path` when it is a regular file, whose mode and owner a
/// replacement inherits; `None` when there is none or it is a symlink (whose
/// lstat says 0777 and the link's owner, and whose target is not ours to
/// copy); an error, leaving it alone, when it is anything else.
fn existing_regular(path: &Path) -> Result<Option<Metadata>, WriteError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => Ok(Some(m)),
        Ok(m) if m.file_type().is_symlink() => Ok(None),
        Ok(m) => {
            let what = readfile::describe(m.file_type());
            Err(WriteError::new(
                path,
                "check the target",
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("is {what}, not a regular file; left alone"),
                ),
            ))
        }
        Err(_) => Ok(None),
    }
}

/// Gives the temporary file `uid` and `gid` where they differ from its
/// own, then puts `mode` back (chown clears setuid and setgid).
fn set_owner(
    tmp: &File,
    path: &Path,
    uid: Option<u32>,
    gid: Option<u32>,
    mode: u32,
) -> Result<(), WriteError> {
    if uid.is_none() && gid.is_none() {
        return Ok(());
    }
    let current = tmp.metadata().ok();
    let differs = current
        .as_ref()
        .is_none_or(|m| uid.is_some_and(|u| u != m.uid()) || gid.is_some_and(|g| g != m.gid()));
    if !differs {
        return Ok(());
    }
    std::os::unix::fs::fchown(tmp, uid, gid).map_err(|e| {
        let mut w = WriteError::new(path, "set owner", e);
        if w.source.raw_os_error() == Some(nix::libc::EPERM) {
            w.hint = CHOWN_HINT.into();
        }
        w
    })?;
    tmp.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| WriteError::new(path, "set mode", e))
}

/// The part of an old file's mode a replacement inherits: never the setuid,
/// setgid or sticky bits (which a configured `mode` may not hold either), and
/// never write access for others, whoever planted the old file.
pub fn inherited_mode(mode: u32) -> u32 {
    mode & 0o775
}

/// Fsyncs a directory, opened so that nothing swapped in for it can block.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_DIRECTORY: something swapped in for the directory (a FIFO) is an
    // error, not an open that blocks.
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(dir)?
        .sync_all()
}

/// Removes temporary files that an interrupted [`replace`] of `path` left in
/// its directory. Returns how many were removed.
pub fn clean_stale_temps(path: &Path) -> usize {
    clean_stale_temps_all(&[path])[0]
}

/// [`clean_stale_temps`] for many outputs, reading each directory once
/// however many of them it holds: one read per output would make the start
/// with thousands of outputs in one directory quadratic. Returns, per output
/// in order, how many temporary files were removed.
pub fn clean_stale_temps_all(paths: &[&Path]) -> Vec<usize> {
    let mut removed = vec![0; paths.len()];
    // Directory → output file name → the output's index.
    let mut dirs: HashMap<PathBuf, HashMap<String, usize>> = HashMap::new();
    for (i, p) in paths.iter().enumerate() {
        if let Some(name) = p.file_name() {
            dirs.entry(parent_dir(p))
                .or_default()
                .insert(name.to_string_lossy().into_owned(), i);
        }
    }
    for (dir, names) in dirs {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(i) = stale_temp_of(&name.to_string_lossy(), &names) else {
                continue;
            };
            if fs::remove_file(entry.path()).is_ok() {
                removed[i] += 1;
            }
        }
    }
    removed
}

/// Removes, in one read of `dir`, the temporary files an interrupted
/// [`replace`] left for any file of `dir` whose name `ours` accepts (a
/// store's records, whatever their instance). Returns how many were removed.
pub fn clean_stale_temps_in(dir: &Path, ours: impl Fn(&str) -> bool) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            (name.strip_prefix('.'))
                .filter(|rest| rest.ends_with(".tmp"))
                .and_then(|rest| rest.split_once(TEMP_MARK))
                .is_some_and(|(base, _)| ours(base))
        })
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}

/// Whose temporary file `entry` is: the output named `N` among `names` when
/// `entry` is `.N.dds-certsync-….tmp`. Pure.
fn stale_temp_of(entry: &str, names: &HashMap<String, usize>) -> Option<usize> {
    let rest = entry.strip_prefix('.')?;
    if !rest.ends_with(".tmp") {
        return None;
    }
    rest.match_indices(TEMP_MARK)
        .find_map(|(at, _)| names.get(&rest[..at]).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn creates_parents_and_sets_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b/ca.crt");
        let perms = Perms {
            mode: Some(0o640),
            ..Perms::default()
        };
        replace(&p, b"one", &perms).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);
        assert_eq!(entries(p.parent().unwrap()), vec!["ca.crt"]);
    }

    #[test]
    fn replacement_is_a_new_inode_and_keeps_the_old_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ca.crt");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, Permissions::from_mode(0o600)).unwrap();
        let old_ino = fs::metadata(&p).unwrap().ino();
        replace(&p, b"new", &Perms::default()).unwrap();
        let m = fs::metadata(&p).unwrap();
        assert_ne!(m.ino(), old_ino);
        assert_eq!(m.mode() & 0o7777, 0o600);
        assert_eq!(fs::read(&p).unwrap(), b"new");
    }

    #[test]
    fn a_planted_file_lends_neither_special_bits_nor_write_access_for_others() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ca.crt");
        for (planted, inherited) in [(0o6777, 0o775), (0o1666, 0o664), (0o4640, 0o640)] {
            fs::write(&p, b"old").unwrap();
            fs::set_permissions(&p, Permissions::from_mode(planted)).unwrap();
            replace(&p, b"new", &Perms::default()).unwrap();
            let mode = fs::metadata(&p).unwrap().mode() & 0o7777;
            assert_eq!(mode, inherited, "planted {planted:o}");
        }
    }

    #[test]
    fn new_files_default_to_0644() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ca.crt");
        replace(&p, b"x", &Perms::default()).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o644);
    }

    #[test]
    fn failure_leaves_old_file_and_no_temp() {
        let d = tempfile::tempdir().unwrap();
        // The target is a directory: rename of a file over it fails.
        let p = d.path().join("ca.crt");
        fs::create_dir(&p).unwrap();
        let e = replace(&p, b"new", &Perms::default()).unwrap_err();
        assert!(e.to_string().contains("ca.crt"), "{e}");
        assert_eq!(entries(d.path()), vec!["ca.crt"]);
    }

    #[test]
    fn replace_all_writes_each_file_and_reports_each_failure() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("x/a.crt");
        let b = d.path().join("x/b.crt");
        let c = d.path().join("y/c.crt");
        fs::create_dir_all(d.path().join("y/c.crt")).unwrap(); // c's target is a directory
        let perms = Perms::default();
        let r = replace_all(&[
            (a.as_path(), b"a".as_slice(), &perms),
            (c.as_path(), b"c".as_slice(), &perms),
            (b.as_path(), b"b".as_slice(), &perms),
        ]);
        assert!(r[0].is_ok() && r[2].is_ok(), "{r:?}");
        assert_eq!(r[1].as_ref().unwrap_err().step, "check the target");
        assert_eq!(fs::read(&a).unwrap(), b"a");
        assert_eq!(fs::read(&b).unwrap(), b"b");
        assert_eq!(entries(&d.path().join("x")), vec!["a.crt", "b.crt"]);
        assert_eq!(entries(&d.path().join("y")), vec!["c.crt"]);
    }

    #[test]
    fn parent_that_is_a_file_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("f"), b"x").unwrap();
        let e = replace(&d.path().join("f/ca.crt"), b"new", &Perms::default()).unwrap_err();
        assert_eq!(e.step, "create directory");
        let f = d.path().join("f");
        assert_eq!(
            e.hint,
            format!(" ({} is a regular file, not a directory)", f.display())
        );
        // Deeper: the nearest thing that is there is named.
        let e = replace(&f.join("a/b/ca.crt"), b"new", &Perms::default()).unwrap_err();
        assert_eq!(
            e.hint,
            format!(" ({} is a regular file, not a directory)", f.display())
        );
    }

    #[test]
    fn directory_that_is_a_dangling_link_or_a_fifo_is_named() {
        let d = tempfile::tempdir().unwrap();
        let link = d.path().join("o");
        std::os::unix::fs::symlink("/nonexistent/x", &link).unwrap();
        let e = replace(&link.join("ca.crt"), b"new", &Perms::default()).unwrap_err();
        assert_eq!(e.step, "create directory");
        let msg = e.to_string();
        assert!(
            msg.ends_with(&format!(
                " ({} is a symbolic link to /nonexistent/x, which does not exist)",
                link.display()
            )),
            "{msg}"
        );
        let fifo = d.path().join("p");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = replace(&fifo.join("ca.crt"), b"new", &Perms::default()).unwrap_err();
        assert_eq!(
            e.hint,
            format!(" ({} is a FIFO, not a directory)", fifo.display())
        );
        let to_fifo = d.path().join("q");
        std::os::unix::fs::symlink(&fifo, &to_fifo).unwrap();
        let e = replace(&to_fifo.join("ca.crt"), b"new", &Perms::default()).unwrap_err();
        assert_eq!(
            e.hint,
            format!(
                " ({} is a symbolic link to {}, which is a FIFO, not a directory)",
                to_fifo.display(),
                fifo.display()
            )
        );
        let looped = d.path().join("l");
        std::os::unix::fs::symlink(&looped, &looped).unwrap();
        let e = replace(&looped.join("ca.crt"), b"new", &Perms::default()).unwrap_err();
        assert!(
            e.hint.contains("which cannot be followed") && e.hint.contains("symbolic links"),
            "{}",
            e.hint
        );
        // Only the hint is new: nothing was made or written anywhere.
        assert!(!Path::new("/nonexistent").exists());
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(
            &fs::symlink_metadata(&fifo).unwrap().file_type()
        ));
    }

    #[test]
    fn stale_temps_are_cleaned_and_others_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ca.crt");
        fs::write(d.path().join(".ca.crt.dds-certsync-abc123.tmp"), b"x").unwrap();
        fs::write(d.path().join(".other.dds-certsync-abc123.tmp"), b"x").unwrap();
        fs::write(d.path().join("ca.crt"), b"x").unwrap();
        assert_eq!(clean_stale_temps(&p), 1);
        assert_eq!(
            entries(d.path()),
            vec![".other.dds-certsync-abc123.tmp", "ca.crt"]
        );
    }

    #[test]
    fn stale_temps_of_a_store_go_in_one_pass() {
        let d = tempfile::tempdir().unwrap();
        for name in [
            ".rec-a.json.dds-certsync-1.tmp",
            ".rec-a.json.dds-certsync-2.tmp",
            ".rec-b.json.dds-certsync-1.tmp",
            ".rec-c.json.dds-certsync-1",
            ".other.json.dds-certsync-1.tmp",
            "rec-a.json",
        ] {
            fs::write(d.path().join(name), b"x").unwrap();
        }
        fs::create_dir(d.path().join(".rec-d.json.dds-certsync-1.tmp")).unwrap();
        let ours = |base: &str| base.starts_with("rec-");
        assert_eq!(clean_stale_temps_in(d.path(), ours), 3);
        assert_eq!(
            entries(d.path()),
            [
                ".other.json.dds-certsync-1.tmp",
                ".rec-c.json.dds-certsync-1",
                ".rec-d.json.dds-certsync-1.tmp",
                "rec-a.json",
            ]
        );
        assert_eq!(clean_stale_temps_in(&d.path().join("none"), ours), 0);
    }

    #[test]
    fn stale_temps_of_many_outputs_are_counted_per_output() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.crt"), d.path().join("b.crt"));
        let (sub, c) = (d.path().join("s"), d.path().join("s/a.crt"));
        fs::create_dir(&sub).unwrap();
        for name in [
            ".a.crt.dds-certsync-1.tmp",
            ".a.crt.dds-certsync-2.tmp",
            ".b.crt.dds-certsync-1.tmp",
            ".b.crt.dds-certsync-1.kept",
            "a.crt.dds-certsync-1.tmp",
            ".c.crt.dds-certsync-1.tmp",
        ] {
            fs::write(d.path().join(name), b"x").unwrap();
        }
        fs::write(sub.join(".a.crt.dds-certsync-9.tmp"), b"x").unwrap();
        let missing = d.path().join("gone/x.crt");
        let paths = [a.as_path(), b.as_path(), c.as_path(), missing.as_path()];
        assert_eq!(clean_stale_temps_all(&paths), [2, 1, 1, 0]);
        assert_eq!(
            entries(d.path()),
            [
                ".b.crt.dds-certsync-1.kept",
                ".c.crt.dds-certsync-1.tmp",
                "a.crt.dds-certsync-1.tmp",
                "s"
            ]
        );
        assert!(entries(&sub).is_empty());
    }

    #[test]
    fn a_symlink_at_the_path_is_never_followed_and_gives_neither_mode_nor_owner() {
        use std::os::unix::fs::{lchown, symlink};
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("secret");
        fs::write(&secret, b"private").unwrap();
        fs::set_permissions(&secret, Permissions::from_mode(0o600)).unwrap();
        let me = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        for (name, target) in [
            ("dangling", d.path().join("nowhere")),
            ("to-0600", secret.clone()),
        ] {
            let p = d.path().join(name);
            symlink(&target, &p).unwrap();
            // Owned by someone else where we may say so (root in CI).
            let _ = lchown(&p, Some(65534), Some(65534));
            replace(&p, b"cert", &Perms::default()).unwrap();
            let m = fs::symlink_metadata(&p).unwrap();
            assert!(m.is_file(), "{name}: the link itself was replaced");
            assert_eq!(m.mode() & 0o7777, 0o644, "{name}");
            assert_eq!((m.uid(), m.gid()), me, "{name}");
            assert_eq!(fs::read(&p).unwrap(), b"cert");
        }
        // The target was neither written nor changed.
        assert_eq!(fs::read(&secret).unwrap(), b"private");
        assert_eq!(fs::metadata(&secret).unwrap().mode() & 0o7777, 0o600);
        assert!(!d.path().join("nowhere").exists());
    }

    #[test]
    fn a_fifo_socket_or_directory_at_the_path_is_an_error_and_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let sock = d.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let dir = d.path().join("dir");
        fs::create_dir(&dir).unwrap();
        for (p, what) in [
            (&fifo, "a FIFO"),
            (&sock, "a socket"),
            (&dir, "a directory"),
        ] {
            let e = replace(p, b"x", &Perms::default()).unwrap_err();
            assert_eq!(e.step, "check the target");
            assert!(e.to_string().contains(what), "{e}");
            assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        }
        let ft = fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&ft));
        assert_eq!(entries(d.path()), vec!["dir", "fifo", "sock"]);
    }

    #[test]
    fn a_configured_owner_or_group_alone_is_set() {
        let d = tempfile::tempdir().unwrap();
        let root = nix::unistd::geteuid().is_root();
        for (uid, gid) in [
            (Some(65534), None),
            (None, Some(65534)),
            (Some(65534), Some(65533)),
        ] {
            let p = d.path().join("ca.crt");
            let _ = fs::remove_file(&p);
            let perms = Perms {
                mode: Some(0o644),
                uid,
                gid,
                ..Perms::default()
            };
            let r = replace(&p, b"x", &perms);
            if !root {
                // Only root (or CAP_CHOWN) may give a file away: the error
                // says so, and nothing was written.
                let e = r.unwrap_err();
                assert_eq!(e.step, "set owner");
                assert!(e.to_string().contains("CAP_CHOWN"), "{e}");
                assert!(!p.exists());
                continue;
            }
            r.unwrap();
            let m = fs::metadata(&p).unwrap();
            let me = (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            );
            assert_eq!(m.uid(), uid.unwrap_or(me.0), "{uid:?} {gid:?}");
            assert_eq!(m.gid(), gid.unwrap_or(me.1), "{uid:?} {gid:?}");
        }
    }

    #[test]
    fn a_directory_fsync_never_opens_anything_but_a_directory_and_never_blocks() {
        let d = tempfile::tempdir().unwrap();
        fsync_dir(d.path()).unwrap();
        let file = d.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(
            fsync_dir(&file).is_err(),
            "a regular file was fsynced as a directory"
        );
        // A FIFO swapped in for the directory: a blocking open would wait
        // for a writer for ever.
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let f = fifo.clone();
        std::thread::spawn(move || tx.send(fsync_dir(&f).is_err()).unwrap());
        let outcome = rx.recv_timeout(std::time::Duration::from_secs(10));
        if outcome.is_err() {
            // Release the blocked open before failing.
            let _ = fs::OpenOptions::new().write(true).open(&fifo);
        }
        assert_eq!(
            outcome,
            Ok(true),
            "fsync_dir blocked on a FIFO or accepted it"
        );
    }
}
