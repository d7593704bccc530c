//! The hook ledger: which instances are owed a hook run, persisted in
//! `[sync] state_dir` so that a crash, a SIGKILL or a power loss never loses
//! one.
//!
//! One small JSON file per instance, `hook-owed-{instance_id}.json`, lists the
//! changed paths with their old and new SHA-256. The sync step writes it with
//! [`output::replace`] (temp file, fsync, rename, fsync of the directory)
//! *before* it renames any certificate, and the delivery clears it only after
//! the hook exited 0 (or the signal was delivered). So at every instant either
//! the certificate on disk is the one the consumer was last told about, or a
//! record saying otherwise is on disk.
//!
//! The decisions are pure and unit tested here:
//! * [`merge`]: several changes before a successful run coalesce into one
//!   record with, per path, the oldest old hash and the newest new hash;
//! * [`reconcile`]: a record is corrected against the disk after writes (and
//!   after a crash): a path whose file still holds the old content was never
//!   replaced and is dropped; one whose file holds other content reports
//!   that content as new.
//!
//! A record is read like any file someone else may have planted
//! ([`readfile::read_record`]): never through a symlink, never blocking on a
//! FIFO, at most [`RECORD_LIMIT`] bytes. Anything else at its path is treated
//! like a corrupt record: a warning naming the path, and every output on disk
//! counts as changed. Writing a record over it fails and names it (outputs
//! are never renamed over a non-regular file); clearing the record, once
//! nothing is owed, removes it.
//!
//! The file runs past 500 lines for its unit tests, which sit beside the code
//! they pin (the code is under 430 lines).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::certcheck::{Sha256Digest, hex};
use crate::config::{Instance, Perms};
use crate::output;
use crate::outputs::{self, Format, Observation};
use crate::readfile::{self, RecordError};

/// One changed file: what the ledger records and the hook is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedFile {
    pub path: PathBuf,
    pub old: Option<Sha256Digest>,
    pub new: Sha256Digest,
}

/// Why a hook runs: its `DDS_CERTSYNC_REASON`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HookReason {
    /// A file changed because what is served changed (or the file had to be
    /// written anew: it was missing or held something else).
    #[default]
    Updated,
    /// The only change: previous certificates kept for `keep_previous` left
    /// the file (their window passed, or they expired).
    PreviousDropped,
    /// The change was recorded by an earlier run of dds-certsync that ended
    /// before the hook succeeded (a crash, a kill, a stop while the hook was
    /// failing); the hook may have run for it once already.
    RestoredAfterCrash,
}

impl HookReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HookReason::Updated => "updated",
            HookReason::PreviousDropped => "previous-dropped",
            HookReason::RestoredAfterCrash => "restored-after-crash",
        }
    }

    /// Parses [`HookReason::as_str`]'s text.
    pub fn parse(s: &str) -> Option<HookReason> {
        [
            HookReason::Updated,
            HookReason::PreviousDropped,
            HookReason::RestoredAfterCrash,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// The reason of two changes told in one run: an update outweighs a
    /// drop, and a change from before a crash outweighs both (the hook may
    /// have run for part of it). Pure.
    pub fn merge(self, other: HookReason) -> HookReason {
        use HookReason::*;
        match (self, other) {
            (RestoredAfterCrash, _) | (_, RestoredAfterCrash) => RestoredAfterCrash,
            (Updated, _) | (_, Updated) => Updated,
            (PreviousDropped, PreviousDropped) => PreviousDropped,
        }
    }
}

/// The prefix of ledger file names.
const PREFIX: &str = "hook-owed-";
/// The suffix of ledger file names.
const SUFFIX: &str = ".json";
/// A record larger than this is corrupt (a real one lists a few paths).
const RECORD_LIMIT: u64 = readfile::SMALL_FILE_LIMIT;
/// The record format version.
const VERSION: u32 = 1;

/// A hook owed to one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owed {
    pub instance_id: String,
    /// The changed files, in the order they first changed.
    pub files: Vec<ChangedFile>,
    /// Why: `updated` unless every change merged in only dropped kept
    /// certificates.
    pub reason: HookReason,
}

/// A ledger problem, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot record the owed hook in {path} (sync.state_dir): {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: output::WriteError,
    },
    #[error("cannot read the hook record {path} (sync.state_dir): {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a valid hook record ({why}); treating every output as changed")]
    Corrupt { path: PathBuf, why: String },
    #[error("cannot remove {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The on-disk form.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    version: u32,
    instance_id: String,
    files: Vec<RecordFile>,
    /// Absent for `updated`, so such records read as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordFile {
    path: PathBuf,
    /// Empty for a file that did not exist before.
    old_sha256: String,
    new_sha256: String,
}

fn unhex(s: &str) -> Option<Sha256Digest> {
    let bytes = hex::decode(s).ok()?;
    bytes.try_into().ok()
}

impl Owed {
    pub fn to_json(&self) -> Vec<u8> {
        let record = Record {
            version: VERSION,
            instance_id: self.instance_id.clone(),
            files: self
                .files
                .iter()
                .map(|f| RecordFile {
                    path: f.path.clone(),
                    old_sha256: f.old.as_ref().map(hex).unwrap_or_default(),
                    new_sha256: hex(&f.new),
                })
                .collect(),
            reason: (self.reason != HookReason::Updated).then(|| self.reason.as_str().to_string()),
        };
        let mut v = serde_json::to_vec_pretty(&record).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Parses a record. Pure.
    pub fn from_json(bytes: &[u8]) -> Result<Owed, String> {
        let r: Record = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if r.version != VERSION {
            return Err(format!("unknown version {}", r.version));
        }
        let mut files = Vec::with_capacity(r.files.len());
        for f in r.files {
            let old = if f.old_sha256.is_empty() {
                None
            } else {
                Some(unhex(&f.old_sha256).ok_or("bad old_sha256")?)
            };
            let new = unhex(&f.new_sha256).ok_or("bad new_sha256")?;
            files.push(ChangedFile {
                path: f.path,
                old,
                new,
            });
        }
        let reason = match r.reason.as_deref() {
            None => HookReason::Updated,
            Some(text) => match HookReason::parse(text) {
                Some(HookReason::RestoredAfterCrash) | None => {
                    return Err(format!("unknown reason {text:?}"));
                }
                Some(r) => r,
            },
        };
        Ok(Owed {
            instance_id: r.instance_id,
            files,
            reason,
        })
    }
}

/// Adds `changes` to what is already owed. Pure.
///
/// Per path the oldest old hash stays and the newest new hash wins, so a hook
/// that runs once after several changes hears about all of them at once.
pub fn merge(instance_id: &str, prev: Option<Owed>, changes: &[ChangedFile]) -> Owed {
    merge_with(instance_id, prev, changes, HookReason::Updated)
}

/// [`merge`], for changes made for `reason`; the record's reason becomes
/// both merged ([`HookReason::merge`]). Pure.
pub fn merge_with(
    instance_id: &str,
    prev: Option<Owed>,
    changes: &[ChangedFile],
    reason: HookReason,
) -> Owed {
    let mut owed = prev.unwrap_or_else(|| Owed {
        instance_id: instance_id.to_string(),
        files: Vec::new(),
        reason,
    });
    owed.reason = owed.reason.merge(reason);
    for c in changes {
        match owed.files.iter_mut().find(|f| f.path == c.path) {
            Some(f) => f.new = c.new,
            None => owed.files.push(c.clone()),
        }
    }
    owed
}

/// Corrects `owed` against the disk, as `disk` says each path is. Pure.
/// Returns `None` when nothing is owed any more.
///
/// * a file that still holds its old content (or is still missing when it
///   was new) was never replaced: the path is dropped;
/// * a file that holds something else than the recorded new content (a crash
///   between recording a second change and its rename) reports what it holds;
/// * a file that is gone, unreadable, a symlink or too large to be ours
///   keeps its entry, so the hook still runs: nothing is concluded from it.
pub fn reconcile(mut owed: Owed, disk: impl Fn(&Path) -> Observation) -> Option<Owed> {
    owed.files.retain_mut(|f| match disk(&f.path) {
        Observation::File(seen) if Some(seen.sha256) == f.old => false,
        Observation::File(seen) => {
            f.new = seen.sha256;
            true
        }
        Observation::Missing => f.old.is_some(),
        Observation::Link | Observation::Unreadable(_) | Observation::Oversized { .. } => true,
    });
    (!owed.files.is_empty()).then_some(owed)
}

/// What is at `path`, an output of `inst` (or a path it had when the record
/// was written), read as its format reads it. Blocking.
pub fn disk_state(inst: &Instance, path: &Path) -> Observation {
    let format = (inst.outputs.iter())
        .find(|o| o.path == path)
        .map(Format::of)
        .unwrap_or_default();
    outputs::observe(path, &format)
}

/// An instance ID as part of a file name in `state_dir`: itself when it is
/// letters, digits, `-` and `_` (as the config requires), else `x` and its
/// hex encoding, so that an ID can never name a path outside the directory.
pub fn file_stem(instance_id: &str) -> String {
    let safe = !instance_id.is_empty()
        && instance_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if safe {
        instance_id.to_string()
    } else {
        format!("x{}", hex::encode(instance_id))
    }
}

/// The records of one state directory. Blocking I/O.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
}

impl Ledger {
    pub fn new(dir: impl Into<PathBuf>) -> Ledger {
        Ledger { dir: dir.into() }
    }

    /// The record file of an instance. Instance IDs are validated by the
    /// config (letters, digits, `-`, `_`); anything else is hex-encoded so
    /// that an ID can never name a path outside the directory.
    pub fn path(&self, instance_id: &str) -> PathBuf {
        self.dir
            .join(format!("{PREFIX}{}{SUFFIX}", file_stem(instance_id)))
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The record of an instance, if one is on disk.
    pub fn load(&self, instance_id: &str) -> Result<Option<Owed>, LedgerError> {
        let path = self.path(instance_id);
        // Without blocking on a FIFO, following a symlink, or swallowing a
        // device: what is not a small regular file is not a record.
        let bytes = match readfile::read_record(&path, RECORD_LIMIT) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(RecordError::NotARecord(why)) => return Err(LedgerError::Corrupt { path, why }),
            Err(RecordError::Io(source)) => return Err(LedgerError::Read { path, source }),
        };
        match Owed::from_json(&bytes) {
            Ok(o) if o.instance_id == instance_id => Ok(Some(o)),
            Ok(o) => Err(LedgerError::Corrupt {
                path,
                why: format!("it is for instance {:?}", o.instance_id),
            }),
            Err(why) => Err(LedgerError::Corrupt { path, why }),
        }
    }

    /// The record of an instance, like [`Ledger::load`]; a corrupt record is
    /// logged and replaced by one naming every output on disk as changed
    /// from an unknown state, so the hook still runs.
    pub fn load_or_rebuild(&self, inst: &Instance) -> Result<Option<Owed>, LedgerError> {
        match self.load(&inst.id) {
            Err(e @ LedgerError::Corrupt { .. }) => {
                tracing::warn!(instance = %inst.label(), instance_id = %inst.id, service = %inst.service, "{e}");
                Ok(Some(Owed {
                    instance_id: inst.id.clone(),
                    files: inst
                        .outputs
                        .iter()
                        .filter_map(|o| match disk_state(inst, &o.path) {
                            Observation::File(seen) => Some(ChangedFile {
                                path: o.path.clone(),
                                old: None,
                                new: seen.sha256,
                            }),
                            _ => None,
                        })
                        .collect(),
                    reason: HookReason::Updated,
                }))
            }
            other => other,
        }
    }

    /// Whether a record exists for the instance (cheap).
    pub fn exists(&self, instance_id: &str) -> bool {
        fs::symlink_metadata(self.path(instance_id)).is_ok()
    }

    /// Writes the record atomically and durably (mode 0600).
    pub fn store(&self, owed: &Owed) -> Result<(), LedgerError> {
        let path = self.path(&owed.instance_id);
        let perms = Perms {
            mode: Some(0o600),
            ..Perms::default()
        };
        crate::failpoint::hit("ledger-before-store");
        output::replace(&path, &owed.to_json(), &perms)
            .map_err(|source| LedgerError::Write { path, source })
    }

    /// Stores `owed`, or removes the record when it is `None`.
    pub fn put(&self, instance_id: &str, owed: Option<&Owed>) -> Result<(), LedgerError> {
        match owed {
            Some(o) => self.store(o),
            None => self.clear(instance_id),
        }
    }

    /// Removes the record of an instance, durably. No record is fine.
    pub fn clear(&self, instance_id: &str) -> Result<(), LedgerError> {
        let path = self.path(instance_id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(LedgerError::Remove { path, source }),
        }
        crate::output::fsync_dir(&self.dir).map_err(|source| LedgerError::Remove { path, source })
    }

    /// Removes temporary files an interrupted [`Ledger::store`] left behind.
    /// One read of the directory, however many records it holds.
    pub fn clean_stale_temps(&self) -> usize {
        output::clean_stale_temps_in(&self.dir, |base| {
            base.starts_with(PREFIX) && base.ends_with(SUFFIX)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(b: u8) -> Observation {
        Observation::File(crate::outputs::FileSeen {
            sha256: [b; 32],
            content: crate::outputs::Content::Invalid,
            owner: crate::outputs::Owner::default(),
            stamp: crate::outputs::Stamp::default(),
        })
    }

    fn cf(path: &str, old: Option<u8>, new: u8) -> ChangedFile {
        ChangedFile {
            path: path.into(),
            old: old.map(|b| [b; 32]),
            new: [new; 32],
        }
    }

    #[test]
    fn changes_coalesce_to_oldest_old_and_newest_new() {
        let first = merge("i1", None, &[cf("/a", Some(1), 2)]);
        let second = merge(
            "i1",
            Some(first),
            &[cf("/a", Some(2), 3), cf("/b", None, 9)],
        );
        assert_eq!(second.files, vec![cf("/a", Some(1), 3), cf("/b", None, 9)]);
        assert_eq!(second.instance_id, "i1");
    }

    #[test]
    fn a_drop_merged_with_an_update_is_an_update_and_both_survive_the_disk() {
        let dropped = merge_with(
            "i1",
            None,
            &[cf("/a", Some(1), 2)],
            HookReason::PreviousDropped,
        );
        assert_eq!(dropped.reason, HookReason::PreviousDropped);
        assert_eq!(Owed::from_json(&dropped.to_json()).unwrap(), dropped);
        let both = merge("i1", Some(dropped.clone()), &[cf("/a", Some(2), 3)]);
        assert_eq!(both.reason, HookReason::Updated);
        assert_eq!(
            merge_with(
                "i1",
                Some(dropped),
                &[cf("/a", Some(2), 3)],
                HookReason::PreviousDropped
            )
            .reason,
            HookReason::PreviousDropped
        );
        // An update is written as before, without a reason, so a record
        // reads the same in an earlier version.
        let plain = String::from_utf8(both.to_json()).unwrap();
        assert!(!plain.contains("reason"), "{plain}");
        // A reason the record cannot hold is refused.
        let text = "{\"version\":1,\"instance_id\":\"i1\",\"files\":[],\"reason\":\"restored-after-crash\"}";
        assert!(Owed::from_json(text.as_bytes()).is_err());
    }

    #[test]
    fn reconcile_drops_what_was_never_replaced() {
        let owed = merge("i1", None, &[cf("/a", Some(1), 2), cf("/b", None, 5)]);
        let disk = |p: &Path| match p.to_str() {
            Some("/a") => content(1),
            _ => Observation::Missing,
        };
        assert_eq!(reconcile(owed, disk), None);
    }

    #[test]
    fn reconcile_reports_what_is_on_disk() {
        // /a: owed 1→3, but the crash came before 3 was renamed in; 2 is there.
        let owed = merge("i1", None, &[cf("/a", Some(1), 3), cf("/b", Some(4), 5)]);
        let disk = |p: &Path| match p.to_str() {
            Some("/a") => content(2),
            Some("/b") => Observation::Unreadable("denied".into()),
            _ => Observation::Missing,
        };
        let r = reconcile(owed, disk).unwrap();
        assert_eq!(r.files, vec![cf("/a", Some(1), 2), cf("/b", Some(4), 5)]);
    }

    #[test]
    fn reconcile_keeps_a_deleted_file() {
        let owed = merge("i1", None, &[cf("/a", Some(1), 2)]);
        assert!(reconcile(owed, |_| Observation::Missing).is_some());
    }

    proptest::proptest! {
        /// Any sequence of rounds, each changing some of three files along
        /// their own history, merges into one record whose entry per path
        /// holds the first old and the last new hash; and a record always
        /// survives its own JSON round trip.
        #[test]
        fn merging_any_history_keeps_first_old_and_last_new(
            rounds in proptest::collection::vec(proptest::collection::vec(0usize..3, 0..3), 1..8)
        ) {
            let paths = ["/a", "/b", "/c"];
            let mut current: [Option<u8>; 3] = [None, Some(100), Some(200)];
            let mut first_old: [Option<Option<u8>>; 3] = [None; 3];
            let mut owed = None;
            let mut next = 1u8;
            for round in rounds {
                let mut changes = Vec::new();
                for i in round {
                    if changes.iter().any(|c: &ChangedFile| c.path == Path::new(paths[i])) {
                        continue;
                    }
                    changes.push(cf(paths[i], current[i], next));
                    first_old[i].get_or_insert(current[i]);
                    current[i] = Some(next);
                    next += 1;
                }
                owed = Some(merge("i1", owed, &changes));
            }
            let owed = owed.unwrap();
            for f in &owed.files {
                let i = paths.iter().position(|p| Path::new(p) == f.path).unwrap();
                proptest::prop_assert_eq!(f.old, first_old[i].unwrap().map(|b| [b; 32]));
                proptest::prop_assert_eq!(Some(f.new), current[i].map(|b| [b; 32]));
            }
            let changed = first_old.iter().filter(|o| o.is_some()).count();
            proptest::prop_assert_eq!(owed.files.len(), changed);
            proptest::prop_assert_eq!(Owed::from_json(&owed.to_json()).unwrap(), owed);
        }
    }

    #[test]
    fn records_round_trip_and_clear() {
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::new(d.path().join("state"));
        assert!(l.load("i1").unwrap().is_none());
        let owed = merge("i1", None, &[cf("/a", None, 2), cf("/b", Some(7), 8)]);
        l.store(&owed).unwrap();
        assert!(l.exists("i1"));
        assert_eq!(l.load("i1").unwrap(), Some(owed));
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(l.path("i1")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        l.clear("i1").unwrap();
        assert!(!l.exists("i1"));
        l.clear("i1").unwrap();
    }

    #[test]
    fn corrupt_and_foreign_records_are_errors_not_panics() {
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::new(d.path());
        for bad in [
            &b"not json"[..],
            b"{\"version\":1,\"instance_id\":\"i1\",\"files\":[{\"path\":\"/a\",\"old_sha256\":\"zz\",\"new_sha256\":\"00\"}]}",
            b"{\"version\":9,\"instance_id\":\"i1\",\"files\":[]}",
            b"{\"version\":1,\"instance_id\":\"other\",\"files\":[]}",
        ] {
            fs::write(l.path("i1"), bad).unwrap();
            assert!(
                matches!(l.load("i1"), Err(LedgerError::Corrupt { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_corrupt_record_is_rebuilt_from_the_disk_so_the_hook_still_runs() {
        use crate::config::{Category, Output};
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::new(d.path().join("state"));
        fs::create_dir_all(d.path().join("state")).unwrap();
        let present = d.path().join("out/intl.crt");
        let missing = d.path().join("out/natl.crt");
        fs::create_dir_all(d.path().join("out")).unwrap();
        fs::write(&present, b"on disk").unwrap();
        let inst = Instance {
            id: "i1".into(),
            service: crate::cloud::Service::Dds,
            name: Some("orders".into()),
            project_id: "p".into(),
            outputs: vec![
                Output::pem(Category::International, present.clone()),
                Output::pem(Category::National, missing),
            ],
            perms: Perms::default(),
            on_change: Some(vec!["/bin/true".into()]),
            hook_timeout: std::time::Duration::from_secs(1),
            reload_signal: None,
            allow_non_ca: false,
            probe: None,
            keep_previous: std::time::Duration::ZERO,
        };
        // No record: nothing owed. A good record: returned as is.
        assert_eq!(l.load_or_rebuild(&inst).unwrap(), None);
        let good = merge("i1", None, &[cf("/x", Some(1), 2)]);
        l.store(&good).unwrap();
        assert_eq!(l.load_or_rebuild(&inst).unwrap(), Some(good));
        // Corrupt records (garbage, wrong instance): every output on disk is
        // owed, from an unknown state to what the disk holds; a missing
        // output is not.
        for bad in [
            &b"{\"version\":1,\"instance_id\":\"i1\",\"fil"[..],
            b"{\"version\":1,\"instance_id\":\"other\",\"files\":[]}",
        ] {
            fs::write(l.path("i1"), bad).unwrap();
            let rebuilt = l.load_or_rebuild(&inst).unwrap().expect("owed");
            assert_eq!(
                rebuilt,
                Owed {
                    instance_id: "i1".into(),
                    files: vec![ChangedFile {
                        path: present.clone(),
                        old: None,
                        new: crate::certcheck::sha256(b"on disk"),
                    }],
                    reason: HookReason::Updated,
                },
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // Something that is not a regular file there (a directory, a FIFO a
        // neighbour planted) counts as corrupt too: rebuilt, never read.
        fs::remove_file(l.path("i1")).unwrap();
        fs::create_dir(l.path("i1")).unwrap();
        assert!(l.load_or_rebuild(&inst).unwrap().is_some());
    }

    #[test]
    fn a_fifo_or_symlink_record_is_corrupt_and_read_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::new(d.path());
        nix::unistd::mkfifo(
            &l.path("i1"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let e = l.load("i1").unwrap_err();
        assert!(matches!(e, LedgerError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("is a FIFO"), "{e}");
        assert!(
            e.to_string().contains(&l.path("i1").display().to_string()),
            "{e}"
        );
        let good = merge("i2", None, &[cf("/a", None, 2)]);
        fs::write(d.path().join("elsewhere"), good.to_json()).unwrap();
        std::os::unix::fs::symlink(d.path().join("elsewhere"), l.path("i2")).unwrap();
        let e = l.load("i2").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }

    #[test]
    fn odd_ids_stay_inside_the_directory() {
        let l = Ledger::new("/state");
        assert_eq!(
            l.path("i-1_a"),
            PathBuf::from("/state/hook-owed-i-1_a.json")
        );
        let p = l.path("../x");
        assert_eq!(p.parent(), Some(Path::new("/state")));
    }

    #[test]
    fn stale_ledger_temps_are_cleaned() {
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::new(d.path());
        fs::write(
            d.path().join(".hook-owed-i1.json.dds-certsync-abc123.tmp"),
            b"x",
        )
        .unwrap();
        fs::write(d.path().join("unrelated"), b"x").unwrap();
        assert_eq!(l.clean_stale_temps(), 1);
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "only the unrelated file is left"
        );
        // Every record's temps go; the temps of other files in the
        // directory, which only look alike, stay.
        let temp = |name: &str| d.path().join(format!(".{name}.dds-certsync-abc123.tmp"));
        for name in [
            "hook-owed-i1.json",
            "hook-owed-i2.json",
            "hook-owed-i3.txt",
            "orders.json",
        ] {
            fs::write(temp(name), b"x").unwrap();
        }
        assert_eq!(l.clean_stale_temps(), 2);
        assert!(!temp("hook-owed-i1.json").exists() && !temp("hook-owed-i2.json").exists());
        assert!(temp("hook-owed-i3.txt").exists() && temp("orders.json").exists());
    }

    #[test]
    fn a_record_that_cannot_be_read_is_an_error_not_rebuilt() {
        let d = tempfile::tempdir().unwrap();
        // A state_dir that is a file: reading a record in it fails, and
        // nothing says the record is corrupt, so nothing is rebuilt.
        fs::write(d.path().join("state"), b"").unwrap();
        let l = Ledger::new(d.path().join("state"));
        let e = l.load("i1").unwrap_err();
        assert!(matches!(e, LedgerError::Read { .. }), "{e}");
        assert!(e.to_string().contains("cannot read the hook record"), "{e}");
    }

    #[test]
    fn clearing_a_record_that_cannot_be_removed_fails_and_names_it() {
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::new(d.path());
        fs::create_dir(l.path("i1")).unwrap();
        let e = l.clear("i1").unwrap_err();
        assert!(matches!(e, LedgerError::Remove { .. }), "{e}");
        assert!(
            e.to_string().contains(&l.path("i1").display().to_string()),
            "{e}"
        );
    }
}
