//! The planner: given what is on disk and what was downloaded and verified,
//! decide which files to write and whether the instance's hook runs.
//!
//! Pure: no I/O, no clock, no randomness. The sync step gathers the inputs,
//! calls [`plan`], and carries out what it returns.
//!
//! The rules:
//! * a file is written only from a verified download, and only when its
//!   SHA-256 differs from the file on disk (a missing file always differs);
//! * a category whose download or verification failed is never written, and
//!   its file is left alone;
//! * the hook is asked for once per instance and round, listing exactly the
//!   files that change, and only if at least one does.

use std::path::PathBuf;

use crate::certcheck::Sha256Digest;
use crate::config::Category;

/// One configured output, with what the round learned about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub category: Category,
    pub path: PathBuf,
    /// The SHA-256 of the file on disk; `None` when there is no file.
    pub on_disk: Option<Sha256Digest>,
    /// The SHA-256 of the verified download; `None` when the download or its
    /// verification failed this round.
    pub verified: Option<Sha256Digest>,
}

/// One file to replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The index of the slot in the planner's input.
    pub slot: usize,
    pub category: Category,
    pub path: PathBuf,
    pub old: Option<Sha256Digest>,
    pub new: Sha256Digest,
}

/// What to do for one instance this round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Files to replace, in slot order.
    pub writes: Vec<Change>,
    /// Slots whose file is already current.
    pub unchanged: Vec<usize>,
    /// Whether the instance's hook runs after the writes.
    pub run_hook: bool,
}

/// Decides the writes and the hook for one instance.
pub fn plan(slots: &[Slot], has_hook: bool) -> Plan {
    let mut p = Plan::default();
    for (i, s) in slots.iter().enumerate() {
        let Some(new) = s.verified else { continue };
        if s.on_disk == Some(new) {
            p.unchanged.push(i);
        } else {
            p.writes.push(Change {
                slot: i,
                category: s.category,
                path: s.path.clone(),
                old: s.on_disk,
                new,
            });
        }
    }
    p.run_hook = has_hook && !p.writes.is_empty();
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn slot(cat: Category, disk: Option<u8>, verified: Option<u8>) -> Slot {
        Slot {
            category: cat,
            path: PathBuf::from(format!("/o/{cat}")),
            on_disk: disk.map(|b| [b; 32]),
            verified: verified.map(|b| [b; 32]),
        }
    }

    #[test]
    fn unchanged_files_are_left_and_no_hook_runs() {
        let p = plan(&[slot(Category::International, Some(1), Some(1))], true);
        assert!(p.writes.is_empty());
        assert_eq!(p.unchanged, vec![0]);
        assert!(!p.run_hook);
    }

    #[test]
    fn a_new_file_counts_as_a_change() {
        let p = plan(&[slot(Category::National, None, Some(2))], true);
        assert_eq!(p.writes.len(), 1);
        assert_eq!(p.writes[0].old, None);
        assert!(p.run_hook);
    }

    #[test]
    fn failed_categories_are_not_written_but_others_are() {
        let p = plan(
            &[
                slot(Category::International, Some(1), Some(3)),
                slot(Category::National, Some(2), None),
            ],
            true,
        );
        assert_eq!(p.writes.len(), 1);
        assert_eq!(p.writes[0].category, Category::International);
        assert_eq!(p.writes[0].old, Some([1; 32]));
        assert_eq!(p.writes[0].new, [3; 32]);
        assert!(p.run_hook);
    }

    #[test]
    fn no_hook_configured_means_no_hook() {
        let p = plan(&[slot(Category::International, None, Some(1))], false);
        assert_eq!(p.writes.len(), 1);
        assert!(!p.run_hook);
    }

    fn arb_slot() -> impl Strategy<Value = Slot> {
        (
            prop_oneof![Just(Category::International), Just(Category::National)],
            proptest::option::of(0u8..4),
            proptest::option::of(0u8..4),
        )
            .prop_map(|(c, d, v)| slot(c, d, v))
    }

    proptest! {
        #[test]
        fn writes_only_verified_changed_bytes(slots in proptest::collection::vec(arb_slot(), 0..6), hook in any::<bool>()) {
            let p = plan(&slots, hook);
            for w in &p.writes {
                let s = &slots[w.slot];
                // Never an unverified byte.
                prop_assert_eq!(Some(w.new), s.verified);
                // Never a write of what is already there.
                prop_assert_ne!(s.on_disk, s.verified);
                prop_assert_eq!(w.old, s.on_disk);
            }
            // Every verified slot is either written or unchanged, exactly once.
            let verified = slots.iter().filter(|s| s.verified.is_some()).count();
            prop_assert_eq!(p.writes.len() + p.unchanged.len(), verified);
            for &u in &p.unchanged {
                prop_assert_eq!(slots[u].on_disk, slots[u].verified);
            }
            // The hook runs iff configured and something changes.
            prop_assert_eq!(p.run_hook, hook && !p.writes.is_empty());
        }
    }
}
