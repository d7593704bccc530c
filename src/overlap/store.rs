//! The durable [`State`] of each output: which certificates were current,
//! which are kept, and when each kept one was superseded, so that a restart
//! neither extends nor shortens a window.
//!
//! One small JSON file per instance in `sync.state_dir`,
//! `kept-{instance_id}.v2.json`, holding the state of each of its categories:
//! the certificates themselves (PEM) with their SHA-256 fingerprints. One
//! file, not one per output: a first sync writes one record per instance,
//! and a round reads one. It is written like every state file
//! ([`output::replace`]: temp file, fsync, rename, fsync of the directory)
//! and read like any file a neighbour may plant ([`readfile::read_record`]:
//! no link followed, no FIFO blocked on, at most [`RECORD_LIMIT`] bytes). A
//! record that cannot be read or parsed, or whose certificates do not match
//! their fingerprints, is an error the caller answers by starting the
//! windows again from now (never dropping early), with a warning naming the
//! path.
//!
//! The record is written only when it changes, before the outputs are
//! renamed: after a crash between the two, the next round finds the record
//! and writes the same bundles with the same drop times.
//!
//! One record is not ordered and not fsynced: an instance's first
//! ([`Store::store_first`]), written after its outputs when it had none and
//! keeps no certificate. Nothing depends on it yet: lost to a power cut, the
//! next round finds the outputs it was written with, no record, and nothing
//! to keep, and writes the same record again. So a first sync pays for its
//! outputs' fsyncs only. An empty record, what such a cut can leave, counts
//! as none.
//!
//! Version 1 kept one file per instance and category,
//! `kept-{instance_id}-{category}.json`. [`Store::upgrade`], run once when
//! the program starts, turns those into version 2 records; a round never
//! looks for them. (The `.v2` in the new name keeps the two apart: an
//! instance ID may itself end in `-international`.)
//!
//! The file runs past 500 lines for its unit tests, which sit beside the
//! code they pin (the code is under 460 lines, a third of it the upgrade
//! from version 1 and its reader).

use std::collections::BTreeMap;
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
/// What a version 2 record's name ends in.
const V2_SUFFIX: &str = ".v2.json";
/// A record's permissions: the daemon's alone.
const RECORD_PERMS: Perms = Perms {
    mode: Some(0o600),
    owner: None,
    group: None,
    uid: None,
    gid: None,
};
/// A record larger than this is corrupt (a real one holds a few certificates).
const RECORD_LIMIT: u64 = readfile::SMALL_FILE_LIMIT;
/// The record format version.
const VERSION: u32 = 2;
/// The version of the per-output records [`Store::upgrade`] converts.
const VERSION_1: u32 = 1;

/// The states of one instance's outputs, one per category.
pub type States = Vec<(Category, State)>;

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

/// The on-disk form: one instance.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    version: u32,
    instance_id: String,
    outputs: Vec<RecordOutput>,
}

/// One category of an instance.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordOutput {
    category: String,
    current: Vec<RecordCert>,
    kept: Vec<RecordKept>,
}

/// The version 1 form: one instance and category.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordV1 {
    version: u32,
    instance_id: String,
    category: String,
    current: Vec<RecordCert>,
    kept: Vec<RecordKept>,
}

/// Only the version, to name it when a record does not parse.
#[derive(Deserialize)]
struct Versioned {
    version: u32,
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
        pem: certcheck::pem_text([c.der.as_slice()]),
    }
}

/// One certificate of a record, checked against its fingerprint; taken from
/// `known` (certificates read already) when one has that fingerprint, since
/// then the PEM can only hold that certificate or not match.
fn parse_cert(sha256: &str, pem: &str, known: &[&CertInfo]) -> Result<CertInfo, String> {
    let mut fingerprint = [0u8; 32];
    if hex::decode_to_slice(sha256, &mut fingerprint).is_ok()
        && let Some(c) = known.iter().find(|c| c.fingerprint == fingerprint)
    {
        return Ok((*c).clone());
    }
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

/// The state of one category, its certificates checked.
fn parse_state(
    current: &[RecordCert],
    kept: &[RecordKept],
    known: &[&CertInfo],
) -> Result<State, String> {
    let current = current
        .iter()
        .map(|c| parse_cert(&c.sha256, &c.pem, known))
        .collect::<Result<Vec<_>, _>>()?;
    let kept = kept
        .iter()
        .map(|k| {
            Ok(Kept {
                cert: parse_cert(&k.sha256, &k.pem, known)?,
                superseded_at: k.superseded_at,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(State { current, kept })
}

fn category_named(name: &str) -> Result<Category, String> {
    Category::from_name(name).ok_or_else(|| format!("unknown category {name:?}"))
}

/// Why a record did not parse: its version when that is not `want`, else
/// what serde said.
fn parse_error(bytes: &[u8], want: u32, e: serde_json::Error) -> String {
    match serde_json::from_slice::<Versioned>(bytes) {
        Ok(v) if v.version != want => format!("unknown version {}", v.version),
        _ => e.to_string(),
    }
}

/// The record of one instance as JSON, its categories in the order given.
/// Pure.
pub fn to_json(instance_id: &str, states: &[(Category, &State)]) -> Vec<u8> {
    let record = Record {
        version: VERSION,
        instance_id: instance_id.to_string(),
        outputs: (states.iter())
            .map(|(category, state)| RecordOutput {
                category: category.as_str().to_string(),
                current: state.current.iter().map(record_cert).collect(),
                kept: (state.kept.iter())
                    .map(|k| {
                        let c = record_cert(&k.cert);
                        RecordKept {
                            sha256: c.sha256,
                            superseded_at: k.superseded_at,
                            pem: c.pem,
                        }
                    })
                    .collect(),
            })
            .collect(),
    };
    let mut v = serde_json::to_vec_pretty(&record).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Parses the record of one instance; it must name that instance, and name
/// each category once. A certificate whose fingerprint is one of `known`'s
/// (read already) is taken from there instead of parsing its PEM: the same
/// answer for a sound record. Pure.
pub fn from_json(bytes: &[u8], instance_id: &str, known: &[&CertInfo]) -> Result<States, String> {
    let r: Record = serde_json::from_slice(bytes).map_err(|e| parse_error(bytes, VERSION, e))?;
    if r.version != VERSION {
        return Err(format!("unknown version {}", r.version));
    }
    if r.instance_id != instance_id {
        return Err(format!("it is for instance {:?}", r.instance_id));
    }
    let mut states: States = Vec::with_capacity(r.outputs.len());
    for o in &r.outputs {
        let category = category_named(&o.category)?;
        if states.iter().any(|(c, _)| *c == category) {
            return Err(format!("category {category:?} appears twice"));
        }
        states.push((category, parse_state(&o.current, &o.kept, known)?));
    }
    Ok(states)
}

/// Parses a version 1 record (one instance and category), as
/// [`Store::upgrade`] reads them: the instance and category it names, and
/// the state. Pure.
pub fn from_json_v1(bytes: &[u8]) -> Result<(String, Category, State), String> {
    let r: RecordV1 =
        serde_json::from_slice(bytes).map_err(|e| parse_error(bytes, VERSION_1, e))?;
    if r.version != VERSION_1 {
        return Err(format!("unknown version {}", r.version));
    }
    let category = category_named(&r.category)?;
    let state = parse_state(&r.current, &r.kept, &[])?;
    Ok((r.instance_id, category, state))
}

/// What [`Store::upgrade`] did.
#[derive(Debug, Default)]
pub struct Upgraded {
    /// Version 2 records written (one per instance).
    pub converted: usize,
    /// Version 1 records that could not be converted, and why: each is left
    /// in place, and its output's windows start again from now.
    pub failed: Vec<(PathBuf, String)>,
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

    /// The record file of an instance. An instance ID that is not plain
    /// letters, digits, `-` and `_` is hex-encoded (see
    /// [`crate::ledger::file_stem`]).
    pub fn path(&self, instance_id: &str) -> PathBuf {
        self.dir.join(format!(
            "{PREFIX}{}{V2_SUFFIX}",
            crate::ledger::file_stem(instance_id)
        ))
    }

    /// The states recorded for an instance's categories; none when there is
    /// no record. `known` as in [`from_json`].
    pub fn load(&self, instance_id: &str, known: &[&CertInfo]) -> Result<States, StoreError> {
        let path = self.path(instance_id);
        let bytes = match readfile::read_record(&path, RECORD_LIMIT) {
            // Empty: a first record a power cut interrupted (never written so).
            Ok(Some(b)) if b.is_empty() => return Ok(Vec::new()),
            Ok(Some(b)) => b,
            Ok(None) => return Ok(Vec::new()),
            Err(RecordError::NotARecord(why)) => return Err(StoreError::Corrupt { path, why }),
            Err(RecordError::Io(source)) => return Err(StoreError::Read { path, source }),
        };
        from_json(&bytes, instance_id, known).map_err(|why| StoreError::Corrupt { path, why })
    }

    /// Writes the record of an instance atomically and durably (mode 0600).
    pub fn store(
        &self,
        instance_id: &str,
        states: &[(Category, &State)],
    ) -> Result<(), StoreError> {
        self.write(instance_id, states, output::replace)
    }

    /// Writes an instance's first record, one that keeps no certificate,
    /// atomically but not durably (see the module doc): after its outputs.
    pub fn store_first(
        &self,
        instance_id: &str,
        states: &[(Category, &State)],
    ) -> Result<(), StoreError> {
        self.write(instance_id, states, output::replace_unsynced)
    }

    /// Writes the record of an instance with `replace` (mode 0600).
    fn write(
        &self,
        instance_id: &str,
        states: &[(Category, &State)],
        replace: fn(&Path, &[u8], &Perms) -> Result<(), output::WriteError>,
    ) -> Result<(), StoreError> {
        let path = self.path(instance_id);
        replace(&path, &to_json(instance_id, states), &RECORD_PERMS)
            .map_err(|source| StoreError::Write { path, source })
    }

    /// Removes the record of an instance, durably. No record is fine.
    pub fn remove(&self, instance_id: &str) -> Result<(), StoreError> {
        let path = self.path(instance_id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(StoreError::Remove { path, source }),
        }
        output::fsync_dir(&self.dir).map_err(|source| StoreError::Remove { path, source })
    }

    /// Turns the version 1 records in the directory (one per instance and
    /// category) into version 2 records (one per instance), then removes
    /// them. An instance that already has a version 2 record keeps it: its
    /// version 1 leftovers are only removed. A version 1 record that is not
    /// a readable regular file or does not parse is left in place and
    /// named. Nothing happens in a directory without version 1 records.
    pub fn upgrade(&self) -> Upgraded {
        let mut done = Upgraded::default();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return done;
        };
        let mut by_instance: BTreeMap<String, (Vec<PathBuf>, States)> = BTreeMap::new();
        for name in entries.flatten().map(|e| e.file_name()) {
            // A name that is not UTF-8 is no record of ours (a lossy copy of
            // it could name another file).
            let Some(name) = name.to_str() else {
                continue;
            };
            if !(name.starts_with(PREFIX) && name.ends_with(SUFFIX)) || name.ends_with(V2_SUFFIX) {
                continue;
            }
            let path = self.dir.join(name);
            let parsed = match readfile::read_record(&path, RECORD_LIMIT) {
                Ok(Some(bytes)) => from_json_v1(&bytes),
                Ok(None) => continue,
                Err(RecordError::NotARecord(why)) => Err(why),
                Err(RecordError::Io(e)) => Err(e.to_string()),
            };
            // Only a record whose name is the one its content claims.
            let parsed = parsed.and_then(|(id, category, state)| {
                let own = format!(
                    "{PREFIX}{}-{category}{SUFFIX}",
                    crate::ledger::file_stem(&id)
                );
                if own == name {
                    Ok((id, category, state))
                } else {
                    Err(format!("it is for instance {id:?}, category {category:?}"))
                }
            });
            match parsed {
                Ok((id, category, state)) => {
                    let (paths, states) = by_instance.entry(id).or_default();
                    paths.push(path);
                    states.push((category, state));
                }
                Err(why) => done.failed.push((path, why)),
            }
        }
        for (id, (paths, mut states)) in by_instance {
            // A regular file there is a version 2 record already: it wins.
            let has_v2 = fs::symlink_metadata(self.path(&id)).is_ok_and(|m| m.is_file());
            if !has_v2 {
                states.sort_by_key(|(c, _)| *c);
                let refs: Vec<(Category, &State)> = states.iter().map(|(c, s)| (*c, s)).collect();
                if let Err(e) = self.store(&id, &refs) {
                    (done.failed).extend(paths.into_iter().map(|p| (p, e.to_string())));
                    continue;
                }
                done.converted += 1;
            }
            for p in paths {
                // Once the new record is durable; a leftover is only read
                // by the next upgrade, which removes it.
                let _ = fs::remove_file(p);
            }
        }
        done
    }

    /// Removes temporary files an interrupted [`Store::store`] left behind.
    pub fn clean_stale_temps(&self) -> usize {
        output::clean_stale_temps_in(&self.dir, |base| {
            base.starts_with(PREFIX) && base.ends_with(SUFFIX)
        })
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
    const INT: Category = Category::International;
    const NAT: Category = Category::National;

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

    fn other() -> State {
        State {
            current: vec![cert(CERT_SM2)],
            kept: Vec::new(),
        }
    }

    /// A version 1 record, as the previous release wrote it.
    fn v1(instance_id: &str, category: Category, state: &State) -> Vec<u8> {
        let c = |c: &CertInfo| {
            let pem = certcheck::pem_text([c.der.as_slice()]);
            (hex(&c.fingerprint), pem)
        };
        let current: Vec<_> = (state.current.iter().map(c))
            .map(|(sha256, pem)| serde_json::json!({"sha256": sha256, "pem": pem}))
            .collect();
        let kept: Vec<_> = (state.kept.iter())
            .map(|k| {
                let (sha256, pem) = c(&k.cert);
                serde_json::json!({"sha256": sha256, "superseded_at": k.superseded_at, "pem": pem})
            })
            .collect();
        serde_json::to_vec_pretty(&serde_json::json!({
            "version": 1, "instance_id": instance_id, "category": category.as_str(),
            "current": current, "kept": kept,
        }))
        .unwrap()
    }

    #[test]
    fn a_record_survives_its_round_trip_through_the_disk() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        assert!(s.load("i1", &[]).unwrap().is_empty());
        let (a, b) = (state(), other());
        s.store("i1", &[(INT, &a), (NAT, &b)]).unwrap();
        assert_eq!(
            s.load("i1", &[]).unwrap(),
            vec![(INT, state()), (NAT, other())]
        );
        // Per instance, in one file.
        assert!(s.load("i2", &[]).unwrap().is_empty());
        let path = s.path("i1");
        assert_eq!(path, d.path().join("kept-i1.v2.json"));
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        s.remove("i1").unwrap();
        assert!(s.load("i1", &[]).unwrap().is_empty());
        s.remove("i1").unwrap();
    }

    #[test]
    fn a_first_record_is_written_whole_and_an_empty_one_is_none() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        let b = other();
        s.store_first("i1", &[(NAT, &b)]).unwrap();
        assert_eq!(s.load("i1", &[]).unwrap(), vec![(NAT, other())]);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(s.path("i1")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        // What a power cut can leave of it.
        fs::write(s.path("i1"), b"").unwrap();
        assert!(s.load("i1", &[]).unwrap().is_empty());
        // One byte is not empty: a damaged record is still an error.
        fs::write(s.path("i1"), b"{").unwrap();
        assert!(matches!(s.load("i1", &[]), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn a_directory_planted_at_the_record_fails_the_store_and_names_it() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        fs::create_dir(s.path("i1")).unwrap();
        let e = s.store("i1", &[(INT, &state())]).unwrap_err();
        assert!(e.to_string().contains("kept-i1.v2.json"), "{e}");
        assert!(matches!(s.load("i1", &[]), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn a_record_for_another_instance_or_with_a_wrong_fingerprint_is_corrupt() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        let st = state();
        // Another instance's record copied in place.
        fs::write(s.path("i1"), to_json("i2", &[(INT, &st)])).unwrap();
        let e = s.load("i1", &[]).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("kept-i1.v2.json"), "{e}");
        // A certificate swapped under its fingerprint.
        let text = String::from_utf8(to_json("i1", &[(INT, &st)])).unwrap();
        let a = cert(CERT_A);
        let swapped = text.replacen(&hex(&a.fingerprint), &"0".repeat(64), 1);
        fs::write(s.path("i1"), swapped).unwrap();
        let e = s.load("i1", &[]).unwrap_err();
        assert!(
            e.to_string().contains("does not match its fingerprint"),
            "{e}"
        );
        // A category twice, an unknown one, a version 1 record at the path.
        let twice = String::from_utf8(to_json("i1", &[(INT, &st), (INT, &st)])).unwrap();
        let unknown = twice.replacen("\"international\"", "\"galactic\"", 1);
        let cases: [(&[u8], &str); 5] = [
            (twice.as_bytes(), "appears twice"),
            (unknown.as_bytes(), "unknown category \"galactic\""),
            (&v1("i1", INT, &st), "unknown version 1"),
            (b"{\"version\": 9}", "unknown version 9"),
            (b"{", "EOF"),
        ];
        for (junk, why) in cases {
            fs::write(s.path("i1"), junk).unwrap();
            let e = s.load("i1", &[]).unwrap_err();
            assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
            assert!(e.to_string().contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn a_certificate_read_already_is_not_parsed_again_and_the_answer_is_the_same() {
        let (st, o) = (state(), other());
        let json = to_json("i1", &[(INT, &st), (NAT, &o)]);
        let parsed = from_json(&json, "i1", &[]).unwrap();
        let a = cert(CERT_A);
        let sm2 = cert(CERT_SM2);
        for known in [vec![&a], vec![&sm2, &a]] {
            assert_eq!(from_json(&json, "i1", &known).unwrap(), parsed);
        }
        // A record whose PEM is damaged under a fingerprint that a known
        // certificate has: the known certificate is the one meant. Without
        // it, the record is corrupt.
        let text = String::from_utf8(to_json("i1", &[(INT, &o)])).unwrap();
        let body = CERT_SM2.lines().nth(3).unwrap();
        let damaged = text.replacen(body, &"A".repeat(body.len()), 1);
        assert_ne!(damaged, text);
        assert!(from_json(damaged.as_bytes(), "i1", &[]).is_err());
        let got = from_json(damaged.as_bytes(), "i1", &[&sm2]).unwrap();
        assert_eq!(got, vec![(INT, o)]);
    }

    #[test]
    fn a_fifo_or_symlink_record_is_corrupt_and_read_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        nix::unistd::mkfifo(&s.path("f"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(s.load("f", &[]), Err(StoreError::Corrupt { .. })));
        let real = d.path().join("real.json");
        fs::write(&real, to_json("l", &[(NAT, &state())])).unwrap();
        std::os::unix::fs::symlink(&real, s.path("l")).unwrap();
        assert!(matches!(s.load("l", &[]), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn stale_temps_of_records_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        let names = [
            ".kept-i1.v2.json.dds-certsync-abc123.tmp",
            ".kept-i1-international.json.dds-certsync-abc123.tmp",
        ];
        for name in names {
            fs::write(d.path().join(name), b"x").unwrap();
        }
        fs::write(d.path().join(".other.dds-certsync-abc123.tmp"), b"x").unwrap();
        assert_eq!(s.clean_stale_temps(), 2);
        assert!(names.iter().all(|n| !d.path().join(n).exists()));
    }

    #[test]
    fn version_1_records_become_one_record_per_instance_and_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        let put = |name: &str, bytes: &[u8]| fs::write(d.path().join(name), bytes).unwrap();
        put("kept-i1-international.json", &v1("i1", INT, &state()));
        put("kept-i1-national.json", &v1("i1", NAT, &other()));
        put("kept-i2-national.json", &v1("i2", NAT, &state()));
        // An instance ID that is not plain: its name is hex-encoded.
        let odd = "a/b";
        let odd_name = format!("kept-{}-international.json", crate::ledger::file_stem(odd));
        put(&odd_name, &v1(odd, INT, &other()));
        // i3 has a version 2 record already: it wins.
        s.store("i3", &[(INT, &other())]).unwrap();
        put("kept-i3-international.json", &v1("i3", INT, &state()));
        // Left in place and named: a corrupt record, and one whose content
        // is another instance's.
        put("kept-i4-international.json", b"{");
        put("kept-i5-international.json", &v1("i1", INT, &state()));
        // Not records: the hook ledger, something else.
        put("hook-owed-i1.json", b"{}");
        put("notes.txt", b"x");

        let done = s.upgrade();
        assert_eq!(done.converted, 3, "{done:?}");
        assert_eq!(
            s.load("i1", &[]).unwrap(),
            vec![(INT, state()), (NAT, other())]
        );
        assert_eq!(s.load("i2", &[]).unwrap(), vec![(NAT, state())]);
        assert_eq!(s.load(odd, &[]).unwrap(), vec![(INT, other())]);
        assert_eq!(s.load("i3", &[]).unwrap(), vec![(INT, other())]);
        let mut failed: Vec<String> = (done.failed.iter())
            .map(|(p, why)| format!("{} {why}", p.file_name().unwrap().to_string_lossy()))
            .collect();
        failed.sort();
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(
            failed[0].starts_with("kept-i4-international.json EOF"),
            "{failed:?}"
        );
        assert!(
            failed[1].starts_with("kept-i5-international.json it is for instance \"i1\""),
            "{failed:?}"
        );
        let mut left: Vec<String> = (fs::read_dir(d.path()).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("kept-") && !n.ends_with(".v2.json"))
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["kept-i4-international.json", "kept-i5-international.json"]
        );
        assert!(d.path().join("hook-owed-i1.json").exists());
        // Once done, nothing more to do.
        let again = s.upgrade();
        assert_eq!((again.converted, again.failed.len()), (0, 2));
    }

    #[test]
    fn a_name_that_is_not_utf8_is_not_taken_for_a_record() {
        use std::os::unix::ffi::OsStrExt;
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        let odd = d.path().join(std::ffi::OsStr::from_bytes(
            b"kept-i\xff-international.json",
        ));
        fs::write(&odd, v1("i", INT, &state())).unwrap();
        // Its lossy spelling names another file: never read for it.
        let lossy = d.path().join("kept-i\u{fffd}-international.json");
        fs::write(&lossy, b"{").unwrap();
        let done = s.upgrade();
        assert_eq!(done.converted, 0);
        let failed: Vec<_> = done.failed.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(failed, vec![lossy]);
        assert!(odd.exists());
    }

    #[test]
    fn an_upgrade_that_cannot_write_keeps_the_version_1_records() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        let v1_path = d.path().join("kept-i1-international.json");
        fs::write(&v1_path, v1("i1", INT, &state())).unwrap();
        fs::create_dir(s.path("i1")).unwrap();
        let done = s.upgrade();
        assert_eq!(done.converted, 0);
        assert_eq!(done.failed.len(), 1, "{done:?}");
        assert!(done.failed[0].1.contains("kept-i1.v2.json"), "{done:?}");
        assert!(v1_path.exists());
    }
}
