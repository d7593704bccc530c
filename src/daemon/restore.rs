//! Restoring outputs: the outputs an event may concern are looked at, and
//! those deleted, changed or replaced by a link are written back from their
//! last verified bytes (see [`crate::heal`]), never while a round of their
//! instance is writing. What each look saw, or each restore wrote, goes back
//! into the outputs table, so that the events of our own writes find the
//! file as last seen and read nothing.

use std::sync::Arc;

use crate::heal;
use crate::metrics;
use crate::outputs::{Drift, Row};

use super::state::Daemon;

/// How closely outputs are looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Look {
    /// A file with the stamp last seen is taken as last seen (events, the
    /// end of a round).
    Stamp,
    /// Every file is read (the sweep: the fallback for whatever an event or
    /// a stamp could miss).
    Read,
}

/// Checks the given outputs and restores those deleted or changed.
/// Returns whether anything was restored.
pub(super) async fn heal(daemon: &Daemon, candidates: Vec<Row>, look: Look) -> bool {
    let mut restored_any = false;
    for row in candidates {
        // A round of this instance is writing: it is checked again when it ends.
        let Ok(files) = daemon.file_lock(&row.instance_id).try_lock_owned() else {
            continue;
        };
        let Some(sha) = row.verified.as_ref().map(|v| v.sha256) else {
            continue;
        };
        let outputs = Arc::clone(&daemon.outputs);
        let r = row.clone();
        let result = tokio::task::spawn_blocking(move || {
            let _files = files;
            let checked = heal::check_and_restore(&r, look == Look::Read, || {
                outputs.lock().still_current(&r.path, &sha)
            });
            let mut table = outputs.lock();
            match (&checked.restored, checked.seen.clone()) {
                (Some(Ok(())), seen) => table.wrote(&r.path, seen),
                (_, Some(seen)) => table.saw(&r.path, r.seen.as_ref(), seen),
                (_, None) => {}
            }
            checked
        })
        .await;
        let Ok(checked) = result else {
            continue;
        };
        restored_any |= report(&row, checked.drift, checked.restored);
    }
    restored_any
}

/// Logs (and counts) what a check found and did. Returns whether it
/// restored the file.
fn report(
    row: &Row,
    drift: Drift,
    restored: Option<Result<(), crate::output::WriteError>>,
) -> bool {
    let what = match drift {
        Drift::Deleted => "was deleted",
        Drift::Modified => "was changed by someone else",
        Drift::Link => "was replaced by a symbolic link (not followed)",
        Drift::Intact => return false,
        Drift::Unreadable => {
            tracing::warn!(instance_id = %row.instance_id, path = %row.path.display(), "cannot read the output to check it; leaving it alone");
            return false;
        }
    };
    match restored {
        Some(Ok(())) => {
            metrics::global().restored(row.who(), row.category, row.output());
            tracing::warn!(
                instance_id = %row.instance_id,
                category = %row.category,
                path = %row.path.display(),
                sha256 = %row.verified.as_ref().map(|v| crate::certcheck::hex(&v.sha256)).unwrap_or_default(),
                "restored: the file {what}; wrote back the last verified certificate"
            );
            true
        }
        Some(Err(e)) => {
            tracing::error!(
                instance_id = %row.instance_id,
                path = %row.path.display(),
                "the file {what}, and restoring it failed: {e}"
            );
            false
        }
        None => false,
    }
}
