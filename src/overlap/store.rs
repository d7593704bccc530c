//! The durable [`State`] of each output: which certificates were current,
//! which are kept, and when each kept one was superseded, so that a restart
//! neither extends nor shortens a window.
//!
//! One small JSON file per instance and category in `sync.state_dir`,
//! `kept-{instance_id}-{category}.json`, holding the certificates themselves
//! (PEM) with their SHA-256 fingerprints. It is written like every state file
//! ([`output::replace`]: temp file, fsync, rename, fsync of the directory; an
//! instance's records together, with one fsync of the directory:
//! [`Store::store_all`]) and
//! read like any file a neighbour may plant ([`readfile::read_regular`]: no
//! link followed, no FIFO blocked on, at most [`RECORD_LIMIT`] bytes). A record
//! that cannot be read or parsed, or whose certificates do not match their
//! fingerprints, is an error the caller answers by starting the windows again
//! from now (never dropping early), with a warning naming the path.
//!
//! The record is written only when it changes, before the output is renamed:
//! after a crash between the two, the next round finds the record and writes
//! the same bundle with the same drop times.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Kept, State};
use crate::certcheck::{self, CertInfo, hex};
use crate::config::{Category, Perms};
use crate::output;
use crate::readfile::{self, RecordError};

/// The prefix of record file names.
const PREFIX: &str = "kept-";
/// The suffix of record file names.
const SUFFIX: &str = ".json";
/// A record larger than this is corrupt (a real one holds a few certificates).
const RECORD_LIMIT: u64 = readfile::SMALL_FILE_LIMIT;
/// The record format version.
const VERSION: u32 = 1;

/// A problem with a record, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot record the kept certificates in {path} (sync.state_dir): {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: output::WriteError,
    },
    #[error("cannot read {path} (sync.state_dir): {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a valid record of kept certificates ({why})")]
    Corrupt { path: PathBuf, why: String },
    #[error("cannot remove {path} (sync.state_dir): {source}")]
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
    category: String,
    current: Vec<RecordCert>,
    kept: Vec<RecordKept>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordCert {
    sha256: String,
    pem: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordKept {
    sha256: String,
    /// When it stopped being served, in Unix seconds.
    superseded_at: i64,
    pem: String,
}

fn record_cert(c: &CertInfo) -> RecordCert {
    RecordCert {
        sha256: hex(&c.fingerprint),
        pem: String::from_utf8_lossy(&certcheck::pem_of([c.der.as_slice()])).into_owned(),
    }
}

/// One certificate of a record, checked against its fingerprint.
fn parse_cert(sha256: &str, pem: &str) -> Result<CertInfo, String> {
    let mut certs = certcheck::inspect_pem(pem.as_bytes())
        .ok_or_else(|| format!("certificate {sha256:?} is not a PEM certificate"))?;
    if certs.len() != 1 {
        return Err(format!(
            "certificate {sha256:?} holds {} certificates",
            certs.len()
        ));
    }
    let cert = certs.remove(0);
    if hex(&cert.fingerprint) != sha256 {
        return Err(format!(
            "certificate {sha256:?} does not match its fingerprint"
        ));
    }
    Ok(cert)
}

/// The record of one output as JSON. Pure.
pub fn to_json(instance_id: &str, category: Category, state: &State) -> Vec<u8> {
    let record = Record {
        version: VERSION,
        instance_id: instance_id.to_string(),
        category: category.as_str().to_string(),
        current: state.current.iter().map(record_cert).collect(),
        kept: state
            .kept
            .iter()
            .map(|k| {
                let c = record_cert(&k.cert);
                RecordKept {
                    sha256: c.sha256,
                    superseded_at: k.superseded_at,
                    pem: c.pem,
                }
            })
            .collect(),
    };
    let mut v = serde_json::to_vec_pretty(&record).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Parses the record of one output; it must name that output. Pure.
pub fn from_json(bytes: &[u8], instance_id: &str, category: Category) -> Result<State, String> {
    let r: Record = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if r.version != VERSION {
        return Err(format!("unknown version {}", r.version));
    }
    if r.instance_id != instance_id || r.category != category.as_str() {
        return Err(format!(
            "it is for instance {:?}, category {:?}",
            r.instance_id, r.category
        ));
    }
    let current = r
        .current
        .iter()
        .map(|c| parse_cert(&c.sha256, &c.pem))
        .collect::<Result<Vec<_>, _>>()?;
    let kept = r
        .kept
        .iter()
        .map(|k| {
            Ok(Kept {
                cert: parse_cert(&k.sha256, &k.pem)?,
                superseded_at: k.superseded_at,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(State { current, kept })
}

/// The records of one state directory. Blocking I/O.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    /// The record file of an output. An instance ID that is not plain
    /// letters, digits, `-` and `_` is hex-encoded (see
    /// [`crate::ledger::file_stem`]).
    pub fn path(&self, instance_id: &str, category: Category) -> PathBuf {
        self.dir.join(format!(
            "{PREFIX}{}-{category}{SUFFIX}",
            crate::ledger::file_stem(instance_id)
        ))
    }

    /// The record of an output; `None` when there is none.
    pub fn load(&self, instance_id: &str, category: Category) -> Result<Option<State>, StoreError> {
        let path = self.path(instance_id, category);
        let bytes = match readfile::read_record(&path, RECORD_LIMIT) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(RecordError::NotARecord(why)) => return Err(StoreError::Corrupt { path, why }),
            Err(RecordError::Io(source)) => return Err(StoreError::Read { path, source }),
        };
        from_json(&bytes, instance_id, category)
            .map(Some)
            .map_err(|why| StoreError::Corrupt { path, why })
    }

    /// Writes the records of one instance's outputs, each atomically and
    /// durably (mode 0600), fsyncing the directory once, after all renames
    /// ([`output::replace_all`]): one result per record, in order.
    pub fn store_all(
        &self,
        instance_id: &str,
        states: &[(Category, &State)],
    ) -> Vec<Result<(), StoreError>> {
        let perms = Perms {
            mode: Some(0o600),
            ..Perms::default()
        };
        let records: Vec<(PathBuf, Vec<u8>)> = (states.iter())
            .map(|&(c, state)| (self.path(instance_id, c), to_json(instance_id, c, state)))
            .collect();
        let files: Vec<(&Path, &[u8], &Perms)> = (records.iter())
            .map(|(path, bytes)| (path.as_path(), bytes.as_slice(), &perms))
            .collect();
        (output::replace_all(&files).into_iter())
            .zip(records)
            .map(|(r, (path, _))| {
                r.map(drop)
                    .map_err(|source| StoreError::Write { path, source })
            })
            .collect()
    }

    /// Removes the record of an output, durably. No record is fine.
    pub fn remove(&self, instance_id: &str, category: Category) -> Result<(), StoreError> {
        let path = self.path(instance_id, category);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(StoreError::Remove { path, source }),
        }
        output::fsync_dir(&self.dir).map_err(|source| StoreError::Remove { path, source })
    }

    /// Removes temporary files an interrupted [`Store::store_all`] left behind.
    pub fn clean_stale_temps(&self) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        entries
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                let base = n.strip_prefix('.')?.split(".dds-certsync-").next()?;
                (base.starts_with(PREFIX) && base.ends_with(SUFFIX)).then(|| self.dir.join(base))
            })
            .map(|target| output::clean_stale_temps(&target))
            .sum()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT_A: &str = include_str!("../../tests/data/cert-a.pem");
    const CERT_SM2: &str = include_str!("../../tests/data/cert-sm2.pem");

    fn cert(pem: &str) -> CertInfo {
        certcheck::inspect_pem(pem.as_bytes()).unwrap().remove(0)
    }

    fn state() -> State {
        State {
            current: vec![cert(CERT_A)],
            kept: vec![Kept {
                cert: cert(CERT_SM2),
                superseded_at: 1_800_000_000,
            }],
        }
    }

    #[test]
    fn a_record_survives_its_round_trip_through_the_disk() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        let cat = Category::International;
        assert!(s.load("i1", cat).unwrap().is_none());
        let stored = s.store_all("i1", &[(cat, &state())]);
        assert!(stored.iter().all(Result::is_ok), "{stored:?}");
        assert_eq!(s.load("i1", cat).unwrap(), Some(state()));
        // Per instance and category.
        assert!(s.load("i1", Category::National).unwrap().is_none());
        assert!(s.load("i2", cat).unwrap().is_none());
        let path = s.path("i1", cat);
        assert_eq!(path, d.path().join("kept-i1-international.json"));
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        s.remove("i1", cat).unwrap();
        assert!(s.load("i1", cat).unwrap().is_none());
        s.remove("i1", cat).unwrap();
    }

    #[test]
    fn an_instances_records_are_stored_together_and_each_fails_alone() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        let (int, nat) = (Category::International, Category::National);
        let other = State {
            current: vec![cert(CERT_SM2)],
            kept: Vec::new(),
        };
        let results = s.store_all("i1", &[(int, &state()), (nat, &other)]);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(s.load("i1", int).unwrap(), Some(state()));
        assert_eq!(s.load("i1", nat).unwrap(), Some(other.clone()));
        // A directory planted at one record's path: that record fails, named,
        // and the other is still written.
        fs::remove_file(s.path("i1", int)).unwrap();
        fs::create_dir(s.path("i1", int)).unwrap();
        let results = s.store_all("i1", &[(int, &other), (nat, &state())]);
        let e = results[0].as_ref().unwrap_err();
        assert!(e.to_string().contains("kept-i1-international.json"), "{e}");
        assert!(results[1].is_ok(), "{results:?}");
        assert_eq!(s.load("i1", nat).unwrap(), Some(state()));
        assert!(s.store_all("i1", &[]).is_empty());
    }

    #[test]
    fn a_record_for_another_output_or_with_a_wrong_fingerprint_is_corrupt() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        let cat = Category::International;
        // Another instance's record copied in place.
        fs::write(s.path("i1", cat), to_json("i2", cat, &state())).unwrap();
        let e = s.load("i1", cat).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("kept-i1-international.json"), "{e}");
        // A certificate swapped under its fingerprint.
        let text = String::from_utf8(to_json("i1", cat, &state())).unwrap();
        let a = cert(CERT_A);
        let swapped = text.replacen(&hex(&a.fingerprint), &"0".repeat(64), 1);
        fs::write(s.path("i1", cat), swapped).unwrap();
        let e = s.load("i1", cat).unwrap_err();
        assert!(
            e.to_string().contains("does not match its fingerprint"),
            "{e}"
        );
        for junk in [&b"{"[..], b"", b"{\"version\": 9}"] {
            fs::write(s.path("i1", cat), junk).unwrap();
            assert!(matches!(s.load("i1", cat), Err(StoreError::Corrupt { .. })));
        }
    }

    #[test]
    fn a_fifo_or_symlink_record_is_corrupt_and_read_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        let cat = Category::National;
        nix::unistd::mkfifo(&s.path("f", cat), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(s.load("f", cat), Err(StoreError::Corrupt { .. })));
        let real = d.path().join("real.json");
        fs::write(&real, to_json("l", cat, &state())).unwrap();
        std::os::unix::fs::symlink(&real, s.path("l", cat)).unwrap();
        assert!(matches!(s.load("l", cat), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn stale_temps_of_records_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        let name = ".kept-i1-international.json.dds-certsync-abc123.tmp";
        fs::write(d.path().join(name), b"x").unwrap();
        fs::write(d.path().join(".other.dds-certsync-abc123.tmp"), b"x").unwrap();
        assert_eq!(s.clean_stale_temps(), 1);
        assert!(!d.path().join(name).exists());
    }
}
