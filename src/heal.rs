//! Self-healing outputs: the daemon owns its files and puts them back.
//!
//! After each round, the canonical bytes it verified and left in place
//! become the output's [`LastVerified`] in the outputs table ([`round_ends`];
//! certificate bundles are a few KB), with the digest of the file the
//! output's format makes of them; a restore renders them in that format (a
//! truststore anew: a new store of the same certificates). When a watched
//! directory changes, when
//! a round ends, and at the periodic sweep, each such output is looked at
//! ([`check_and_restore`]); one that was deleted, whose content differs, or
//! that a symlink replaced (never followed) is rewritten with those bytes by
//! the same atomic [`output::replace`], without an API call.
//!
//! Our own writes never trigger a restore: the table keeps the observation
//! of what they left, and a look that finds the same file (its
//! [`Stamp`](crate::outputs::Stamp)) is satisfied without reading it; the
//! sweep reads every file whatever its stamp. Outputs of an instance whose
//! round is running are left alone until the round has ended and updated
//! the table ([`Table::begin_round`](crate::outputs::Table::begin_round),
//! [`Table::end_round`](crate::outputs::Table::end_round)).

use crate::output::{self, WriteError};
use crate::outputs::{self, Drift, LastVerified, Observation, RoundEnd, Row, drift};
use crate::sync::{FileOutcome, Report};

/// What a finished round left at each output, for
/// [`Table::end_round`](crate::outputs::Table::end_round): what it saw or
/// wrote there, and the canonical PEM of the bundle (served, then kept
/// certificates) of every file it found current or wrote (unless
/// `keep_bytes` is false: a dry run writes nothing, and restores nothing),
/// with the expiry of its current certificates when it keeps others. Taken from the round itself, never re-read from the
/// disk, so a change made meanwhile is neither adopted nor missed. Pure.
pub fn round_ends(report: &Report, keep_bytes: bool) -> Vec<RoundEnd> {
    (report.files.iter())
        .map(|f| {
            let verified = f
                .pem
                .as_ref()
                .filter(|_| keep_bytes)
                .and_then(|(pem, sha, format)| {
                    match &f.outcome {
                        FileOutcome::Replaced { new, .. } if new == sha => {}
                        FileOutcome::Unchanged => {}
                        _ => return None,
                    }
                    Some(LastVerified {
                        bytes: pem.as_slice().into(),
                        sha256: *sha,
                        current_not_after: (report.kept.iter())
                            .find(|k| k.category == f.category && k.kept > 0)
                            .map(|k| k.current_not_after),
                        format: format.clone(),
                    })
                });
            RoundEnd {
                path: f.path.clone(),
                verified,
                seen: f.seen.clone(),
            }
        })
        .collect()
}

/// What one check of an output found and did.
#[derive(Debug)]
pub struct Checked {
    /// What the look saw.
    pub drift: Drift,
    /// What is at the path now, as far as known: what the look saw, or what
    /// a restore wrote (`None` if its `fstat` failed).
    pub seen: Option<Observation>,
    /// The restore's result, if one was attempted.
    pub restored: Option<Result<(), WriteError>>,
}

/// Checks one output that has bytes to restore, and restores it if needed:
/// a `full` check reads the file ([`outputs::observe_again`]: parsed again
/// only if its bytes changed); otherwise a file with the stamp last seen is
/// taken as last seen ([`outputs::look`]).
/// `still_current` is asked just before writing. Blocking.
pub fn check_and_restore(row: &Row, full: bool, still_current: impl Fn() -> bool) -> Checked {
    // What the round left is judged and written back as the round made it.
    let format = row.verified.as_ref().map_or(&row.format, |v| &v.format);
    let seen = if full {
        outputs::observe_again(&row.path, format, row.seen.as_ref())
    } else {
        outputs::look(&row.path, format, row.seen.as_ref())
    };
    let Some(good) = &row.verified else {
        return Checked {
            drift: Drift::Intact,
            seen: Some(seen),
            restored: None,
        };
    };
    let verdict = drift(&seen, &good.sha256);
    match verdict {
        Drift::Deleted | Drift::Modified | Drift::Link if still_current() => {
            // The held PEM, in the output's format (a truststore anew).
            let written = format.render(&good.bytes).map_err(|e| WriteError {
                path: row.path.clone(),
                step: "make the file's bytes",
                source: std::io::Error::other(e),
                hint: "".into(),
            });
            match written.and_then(|bytes| {
                output::replace_file(&row.path, &bytes, &row.restore_perms())
                    .map(|meta| meta.map(|m| Observation::of_file(format, &bytes, &m)))
            }) {
                Ok(wrote) => Checked {
                    drift: verdict,
                    seen: wrote,
                    restored: Some(Ok(())),
                },
                Err(e) => Checked {
                    drift: verdict,
                    seen: Some(seen),
                    restored: Some(Err(e)),
                },
            }
        }
        _ => Checked {
            drift: verdict,
            seen: Some(seen),
            restored: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::certcheck::sha256;
    use crate::config::{Category, Perms};
    use crate::outputs::Format;

    fn row(path: &Path, bytes: &[u8]) -> Row {
        Row {
            instance_id: "a".into(),
            service: crate::cloud::Service::Dds,
            category: Category::International,
            path: path.to_path_buf(),
            format: Format::PemBundle,
            perms: Perms::default(),
            verified: Some(LastVerified {
                bytes: bytes.into(),
                sha256: sha256(bytes),
                current_not_after: None,
                format: Format::PemBundle,
            }),
            owner: None,
            seen: None,
        }
    }

    /// The row as a round that left `path` as it is now would leave it.
    fn after_a_round(path: &Path, bytes: &[u8]) -> Row {
        let mut r = row(path, bytes);
        let seen = outputs::observe(path, &Format::PemBundle);
        r.owner = seen.owner();
        r.seen = Some(seen);
        r
    }

    #[test]
    fn a_restore_rewrites_deleted_and_modified_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.crt");
        let h = row(&p, b"good");
        std::fs::write(&p, b"good").unwrap();
        assert_eq!(check_and_restore(&h, true, || true).drift, Drift::Intact);

        std::fs::remove_file(&p).unwrap();
        let c = check_and_restore(&h, false, || true);
        assert_eq!(c.drift, Drift::Deleted);
        assert!(c.restored.unwrap().is_ok());
        assert_eq!(std::fs::read(&p).unwrap(), b"good");
        assert_eq!(c.seen.unwrap().digest(), Ok(Some(sha256(b"good"))));

        std::fs::write(&p, b"tampered").unwrap();
        let c = check_and_restore(&h, false, || false);
        assert_eq!(
            (c.drift, c.restored.is_none()),
            (Drift::Modified, true),
            "not current: no write"
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"tampered");
        let c = check_and_restore(&h, false, || true);
        assert_eq!(c.drift, Drift::Modified);
        assert_eq!(std::fs::read(&p).unwrap(), b"good");
    }

    #[test]
    fn a_file_as_last_seen_is_not_read_but_the_sweep_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.crt");
        std::fs::write(&p, b"good").unwrap();
        let h = after_a_round(&p, b"good");
        let reads = crate::outputs::reads_of(&p);
        assert_eq!(check_and_restore(&h, false, || true).drift, Drift::Intact);
        assert_eq!(crate::outputs::reads_of(&p), reads);
        assert_eq!(check_and_restore(&h, true, || true).drift, Drift::Intact);
        assert_eq!(crate::outputs::reads_of(&p), reads + 1);
    }

    #[test]
    fn only_files_in_place_and_verified_are_held() {
        use crate::sync::FileReport;
        let file = |outcome, pem: Option<&[u8]>| FileReport {
            category: Category::International,
            output: "international",
            path: PathBuf::from("/o/a.crt"),
            outcome,
            pem: pem.map(|p| (p.to_vec(), sha256(p), Format::PemBundle)),
            seen: None,
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
        let held: Vec<Vec<u8>> = round_ends(&report, true)
            .into_iter()
            .filter_map(|e| Some(e.verified?.bytes.to_vec()))
            .collect();
        assert_eq!(held, vec![b"A".to_vec(), b"B".to_vec()]);
        assert!(
            round_ends(&report, false)
                .iter()
                .all(|e| e.verified.is_none()),
            "a dry run holds nothing"
        );
    }

    #[test]
    fn a_bundle_that_keeps_a_previous_ca_is_held_with_the_expiry_of_its_current_one() {
        use crate::sync::{FileReport, KeptReport};
        let report = |kept| Report {
            files: vec![FileReport {
                category: Category::International,
                output: "international",
                path: PathBuf::from("/o/a.crt"),
                outcome: FileOutcome::Unchanged,
                pem: Some((
                    b"new+old".to_vec(),
                    sha256(b"new+old"),
                    crate::outputs::Format::PemBundle,
                )),
                seen: None,
            }],
            kept: vec![KeptReport {
                category: Category::International,
                kept,
                next_drop: Some(7),
                current_not_after: 1_900_000_000,
            }],
            ..Report::default()
        };
        let held = |r: &Report| round_ends(r, true)[0].verified.clone().unwrap();
        let v = held(&report(1));
        assert_eq!(&v.bytes[..], b"new+old", "the whole bundle is held");
        assert_eq!(v.current_not_after, Some(1_900_000_000));
        assert_eq!(held(&report(0)).current_not_after, None);
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
        let held = after_a_round(&p, b"good");
        assert_eq!(
            held.restore_perms(),
            Perms::default(),
            "nothing taken from a link"
        );
        let c = check_and_restore(&held, false, || true);
        assert_eq!(c.drift, Drift::Link);
        assert!(c.restored.unwrap().is_ok());
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
        let held = after_a_round(&p, b"good");
        assert_eq!(held.restore_perms().mode, Some(0o640));
        std::fs::remove_file(&p).unwrap();
        let c = check_and_restore(&held, false, || true);
        assert_eq!(c.drift, Drift::Deleted);
        assert!(c.restored.unwrap().is_ok());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn a_truststore_is_judged_and_restored_with_the_password_its_round_used() {
        use crate::config::{SecretSource, Truststore};
        use crate::secret::Secret;
        let store = |pw: &str| {
            Format::Truststore(std::sync::Arc::new(Truststore {
                password: SecretSource::Inline(Secret::new(pw)),
                profile: crate::truststore::Profile::Modern,
            }))
        };
        let pem = include_bytes!("../tests/data/cert-a.pem");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ts.p12");
        let (old, new) = (store("old-pass"), store("new-pass"));
        std::fs::write(&p, old.render(pem).unwrap()).unwrap();
        // The config says new-pass now; the round that wrote the store used
        // old-pass. The store is intact: the new password is the next
        // round's change (with its hook), not a restore.
        let mut r = row(&p, pem);
        r.format = new.clone();
        r.verified = Some(LastVerified {
            bytes: pem.as_slice().into(),
            sha256: old.digest(pem).unwrap(),
            current_not_after: None,
            format: old.clone(),
        });
        let c = check_and_restore(&r, true, || true);
        assert_eq!((c.drift, c.restored.is_none()), (Drift::Intact, true));
        // Altered, it is put back as that round made it: with old-pass.
        std::fs::write(&p, b"garbage").unwrap();
        let c = check_and_restore(&r, true, || true);
        assert_eq!(c.drift, Drift::Modified);
        assert!(c.restored.unwrap().is_ok());
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(old.read(&bytes).0, old.digest(pem).unwrap());
        assert_eq!(new.parse(&bytes), crate::outputs::Content::Invalid);
    }
}
