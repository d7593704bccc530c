//! Self-healing outputs: the daemon owns its files and puts them back.
//!
//! After each round, the content of every output that is in place and
//! verified is held in memory ([`verified_outputs`]; certificate bundles are
//! a few KB). When a watched directory changes, each held output in it is compared
//! with the disk by SHA-256 ([`judge`]); one that was deleted, whose content
//! differs, or that a symlink replaced (never followed) is rewritten with the held bytes by the same atomic
//! [`output::replace`], without an API call. Our own writes never trigger a
//! restore: they leave the disk equal to what is held, and outputs of an
//! instance whose round is running are left alone until the round has ended
//! and updated what is held ([`Healer::begin_round`]/[`Healer::end_round`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::certcheck::{Sha256Digest, sha256};
use crate::config::{Category, Instance, Perms};
use crate::output::{self, Existing};
use crate::sync::{FileOutcome, Report};

/// The last verified content of one output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub instance_id: String,
    pub category: Category,
    pub bytes: Vec<u8>,
    pub sha256: Sha256Digest,
    pub perms: Perms,
}

/// What happened to an output, compared with what is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Intact,
    Deleted,
    Modified,
    /// A symlink took its place: not followed; the link is replaced.
    Link,
    /// It cannot be read; it is not overwritten blindly.
    Unreadable,
}

/// Compares the disk with the held digest. Pure.
pub fn judge(on_disk: &std::io::Result<Existing<Sha256Digest>>, held: &Sha256Digest) -> Verdict {
    match on_disk {
        Ok(Existing::Missing) => Verdict::Deleted,
        Ok(Existing::Link) => Verdict::Link,
        Ok(Existing::File(d)) if d == held => Verdict::Intact,
        Ok(Existing::File(_)) => Verdict::Modified,
        Err(_) => Verdict::Unreadable,
    }
}

/// The held outputs and the instances whose round is running.
#[derive(Debug, Default)]
pub struct Healer {
    held: HashMap<PathBuf, Held>,
    busy: HashSet<String>,
}

impl Healer {
    /// A round of `instance_id` starts: its outputs are not healed until it ends.
    pub fn begin_round(&mut self, instance_id: &str) {
        self.busy.insert(instance_id.to_string());
    }

    /// A round ended; `held` is what it left verified on disk.
    pub fn end_round(&mut self, instance_id: &str, held: Vec<(PathBuf, Held)>) {
        self.busy.remove(instance_id);
        self.held.retain(|_, h| h.instance_id != instance_id);
        self.held.extend(held);
    }

    /// Keeps only the outputs of a (new) config. (An instance whose
    /// settings changed syncs at once, and its round refreshes what is held.)
    pub fn retain_config(&mut self, instances: &[Instance]) {
        let mut keep: HashMap<&Path, (&str, Category)> = HashMap::new();
        for i in instances {
            for o in &i.outputs {
                keep.insert(&o.path, (&i.id, o.category));
            }
        }
        self.held.retain(|path, h| {
            keep.get(path.as_path())
                .is_some_and(|(id, cat)| *id == h.instance_id && *cat == h.category)
        });
    }

    /// The held outputs an event on `event_path` may concern, except those
    /// of instances in a round.
    pub fn candidates(&self, event_path: &Path) -> Vec<(PathBuf, Held)> {
        self.held
            .iter()
            .filter(|(p, h)| {
                !self.busy.contains(&h.instance_id) && crate::watch::may_affect(event_path, p)
            })
            .map(|(p, h)| (p.clone(), h.clone()))
            .collect()
    }

    /// Every held output not in a round.
    pub fn all(&self) -> Vec<(PathBuf, Held)> {
        self.candidates(Path::new(""))
    }

    /// Whether the output is still held with this digest and its instance
    /// is not in a round (checked again just before writing).
    pub fn still_current(&self, path: &Path, sha: &Sha256Digest) -> bool {
        self.held
            .get(path)
            .is_some_and(|h| &h.sha256 == sha && !self.busy.contains(&h.instance_id))
    }

    /// The directories of the held outputs.
    pub fn dirs(&self) -> HashSet<PathBuf> {
        self.held
            .keys()
            .map(|p| crate::output::parent_dir(p))
            .collect()
    }
}

/// What a finished round left verified on disk, for [`Healer::end_round`]:
/// the fetched canonical PEM of every file the round found current or
/// wrote. Taken from the round itself, never re-read from the disk, so a
/// change made meanwhile is neither adopted nor missed. Pure.
pub fn verified_outputs(inst: &Instance, report: &Report) -> Vec<(PathBuf, Held)> {
    report
        .files
        .iter()
        .filter_map(|f| {
            let bytes = f.pem.as_ref()?;
            let sha = sha256(bytes);
            match &f.outcome {
                FileOutcome::Replaced { new, .. } if *new == sha => {}
                FileOutcome::Unchanged => {}
                _ => return None,
            }
            Some((
                f.path.clone(),
                Held {
                    instance_id: inst.id.clone(),
                    category: f.category,
                    bytes: bytes.clone(),
                    sha256: sha,
                    perms: inst.perms.clone(),
                },
            ))
        })
        .collect()
}

/// Completes the permissions of held outputs with the mode and owner their
/// files have now (where the config sets none), so that a file restored after
/// a deletion gets them back rather than the defaults. Only a regular file
/// counts: a symlink is never followed. Blocking.
pub fn capture_ownership(held: &mut [(PathBuf, Held)]) {
    use std::os::unix::fs::MetadataExt;
    for (path, h) in held {
        if let Some(m) = std::fs::symlink_metadata(path).ok().filter(|m| m.is_file()) {
            h.perms.mode = h
                .perms
                .mode
                .or(Some(crate::output::inherited_mode(m.mode())));
            h.perms.uid = h.perms.uid.or(Some(m.uid()));
            h.perms.gid = h.perms.gid.or(Some(m.gid()));
        }
    }
}

/// Checks one held output and restores it if needed. Returns the verdict
/// and, if a restore was attempted, its result. Blocking.
pub fn check_and_restore(
    path: &Path,
    held: &Held,
    still_current: impl Fn() -> bool,
) -> (Verdict, Option<Result<(), output::WriteError>>) {
    let verdict = judge(&output::existing_digest(path), &held.sha256);
    match verdict {
        Verdict::Deleted | Verdict::Modified | Verdict::Link if still_current() => {
            let r = output::replace(path, &held.bytes, &held.perms);
            (verdict, Some(r))
        }
        _ => (verdict, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(id: &str, bytes: &[u8]) -> Held {
        Held {
            instance_id: id.into(),
            category: Category::International,
            bytes: bytes.to_vec(),
            sha256: sha256(bytes),
            perms: Perms::default(),
        }
    }

    #[test]
    fn verdicts() {
        let h = sha256(b"x");
        assert_eq!(judge(&Ok(Existing::File(h)), &h), Verdict::Intact);
        assert_eq!(
            judge(&Ok(Existing::File(sha256(b"y"))), &h),
            Verdict::Modified
        );
        assert_eq!(judge(&Ok(Existing::Missing), &h), Verdict::Deleted);
        assert_eq!(judge(&Ok(Existing::Link), &h), Verdict::Link);
        assert_eq!(
            judge(&Err(std::io::Error::other("denied")), &h),
            Verdict::Unreadable
        );
    }

    #[test]
    fn outputs_of_an_instance_in_a_round_are_left_alone() {
        let mut healer = Healer::default();
        healer.end_round("a", vec![(PathBuf::from("/o/a.crt"), held("a", b"A"))]);
        healer.end_round("b", vec![(PathBuf::from("/o/b.crt"), held("b", b"B"))]);
        assert_eq!(healer.candidates(Path::new("/o/a.crt")).len(), 2);
        healer.begin_round("a");
        let c = healer.candidates(Path::new("/o"));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, PathBuf::from("/o/b.crt"));
        assert!(!healer.still_current(Path::new("/o/a.crt"), &sha256(b"A")));
        healer.end_round("a", vec![(PathBuf::from("/o/a.crt"), held("a", b"A2"))]);
        assert!(healer.still_current(Path::new("/o/a.crt"), &sha256(b"A2")));
        assert!(!healer.still_current(Path::new("/o/a.crt"), &sha256(b"A")));
        assert!(healer.candidates(Path::new("/elsewhere/x")).is_empty());
        assert_eq!(healer.dirs(), HashSet::from([PathBuf::from("/o")]));
    }

    #[test]
    fn a_round_that_verified_nothing_releases_the_instance() {
        let mut healer = Healer::default();
        healer.end_round("a", vec![(PathBuf::from("/o/a.crt"), held("a", b"A"))]);
        healer.begin_round("a");
        healer.end_round("a", vec![]);
        assert!(healer.all().is_empty());
    }

    #[test]
    fn a_restore_rewrites_deleted_and_modified_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.crt");
        let h = held("a", b"good");
        std::fs::write(&p, b"good").unwrap();
        assert_eq!(check_and_restore(&p, &h, || true).0, Verdict::Intact);

        std::fs::remove_file(&p).unwrap();
        let (v, r) = check_and_restore(&p, &h, || true);
        assert_eq!(v, Verdict::Deleted);
        assert!(r.unwrap().is_ok());
        assert_eq!(std::fs::read(&p).unwrap(), b"good");

        std::fs::write(&p, b"tampered").unwrap();
        let (v, r) = check_and_restore(&p, &h, || false);
        assert_eq!(
            (v, r.is_none()),
            (Verdict::Modified, true),
            "not current: no write"
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"tampered");
        let (v, _) = check_and_restore(&p, &h, || true);
        assert_eq!(v, Verdict::Modified);
        assert_eq!(std::fs::read(&p).unwrap(), b"good");
    }

    #[test]
    fn only_files_in_place_and_verified_are_held() {
        use crate::sync::FileReport;
        let text = "[cloud]\nregion = \"cn-north-4\"\nproject_id = \"p\"\n[auth]\nmethod = \"token\"\ntoken = \"t\"\n[[instances]]\nid = \"a\"\ninternational = \"/o/a.crt\"\n";
        let cfg =
            crate::config::validate(crate::config::parse(text).unwrap(), Path::new("/")).unwrap();
        let file = |outcome, pem: Option<&[u8]>| FileReport {
            category: Category::International,
            path: PathBuf::from("/o/a.crt"),
            outcome,
            pem: pem.map(<[u8]>::to_vec),
        };
        let report = Report {
            files: vec![
                file(FileOutcome::Unchanged, Some(b"A")),
                file(
                    FileOutcome::Replaced {
                        old: None,
                        new: sha256(b"B"),
                    },
                    Some(b"B"),
                ),
                file(
                    FileOutcome::Replaced {
                        old: None,
                        new: sha256(b"other"),
                    },
                    Some(b"C"),
                ),
                file(FileOutcome::Failed("x".into()), Some(b"D")),
                file(
                    FileOutcome::WouldReplace {
                        old: None,
                        new: sha256(b"E"),
                    },
                    Some(b"E"),
                ),
                file(FileOutcome::Unchanged, None),
            ],
            ..Report::default()
        };
        let held: Vec<Vec<u8>> = verified_outputs(&cfg.instances[0], &report)
            .into_iter()
            .map(|(_, h)| h.bytes)
            .collect();
        assert_eq!(held, vec![b"A".to_vec(), b"B".to_vec()]);
    }

    #[test]
    fn a_new_config_drops_outputs_no_longer_configured() {
        let text = "[cloud]\nregion = \"cn-north-4\"\nproject_id = \"p\"\n[auth]\nmethod = \"token\"\ntoken = \"t\"\n[[instances]]\nid = \"a\"\ninternational = \"/o/a.crt\"\nmode = \"0600\"\n";
        let cfg =
            crate::config::validate(crate::config::parse(text).unwrap(), Path::new("/")).unwrap();
        let mut healer = Healer::default();
        healer.end_round("a", vec![(PathBuf::from("/o/a.crt"), held("a", b"A"))]);
        healer.end_round("b", vec![(PathBuf::from("/o/b.crt"), held("b", b"B"))]);
        healer.retain_config(&cfg.instances);
        let all = healer.all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, PathBuf::from("/o/a.crt"));
    }

    #[test]
    fn a_symlink_swapped_in_is_replaced_and_lends_neither_mode_nor_owner() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"someone else's").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        let p = dir.path().join("a.crt");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        let _ = std::os::unix::fs::lchown(&p, Some(65534), Some(65534));
        let mut held = vec![(p.clone(), held("a", b"good"))];
        capture_ownership(&mut held);
        assert_eq!(
            held[0].1.perms,
            Perms::default(),
            "nothing taken from a link"
        );
        let (v, r) = check_and_restore(&p, &held[0].1, || true);
        assert_eq!(v, Verdict::Link);
        assert!(r.unwrap().is_ok());
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert!(m.is_file());
        assert_eq!(m.mode() & 0o7777, 0o644);
        assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());
        assert_eq!(std::fs::read(&p).unwrap(), b"good");
        assert_eq!(std::fs::read(&target).unwrap(), b"someone else's");
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o7777, 0o600);
    }

    #[test]
    fn a_restored_file_gets_its_mode_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.crt");
        std::fs::write(&p, b"good").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut held = vec![(p.clone(), held("a", b"good"))];
        capture_ownership(&mut held);
        assert_eq!(held[0].1.perms.mode, Some(0o640));
        std::fs::remove_file(&p).unwrap();
        let (v, r) = check_and_restore(&p, &held[0].1, || true);
        assert_eq!(v, Verdict::Deleted);
        assert!(r.unwrap().is_ok());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
    }
}
