//! Restoring outputs: the held outputs an event may concern are compared
//! with the disk, and those deleted, changed or replaced by a link are
//! written back from the held bytes (see [`crate::heal`]), never while a
//! round of their instance is writing.

use std::path::PathBuf;
use std::sync::Arc;

use crate::heal::{self, Verdict};
use crate::metrics;

use super::control::Control;
use super::state::lock;

impl Control {
    /// Checks the given held outputs and restores those deleted or changed.
    /// Returns whether anything was restored.
    pub(super) async fn heal(&self, candidates: Vec<(PathBuf, heal::Held)>) -> bool {
        let mut restored_any = false;
        for (path, held) in candidates {
            // A round of this instance is writing: it is checked again when it ends.
            let Ok(files) = self.daemon.file_lock(&held.instance_id).try_lock_owned() else {
                continue;
            };
            let daemon = Arc::clone(&self.daemon);
            let (p, h) = (path.clone(), held.clone());
            let result = tokio::task::spawn_blocking(move || {
                let _files = files;
                heal::check_and_restore(&p, &h, || {
                    lock(&daemon.healer).still_current(&p, &h.sha256)
                })
            })
            .await;
            let Ok((verdict, restored)) = result else {
                continue;
            };
            let what = match verdict {
                Verdict::Deleted => "was deleted",
                Verdict::Modified => "was changed by someone else",
                Verdict::Link => "was replaced by a symbolic link (not followed)",
                Verdict::Intact => continue,
                Verdict::Unreadable => {
                    tracing::warn!(instance_id = %held.instance_id, path = %path.display(), "cannot read the output to check it; leaving it alone");
                    continue;
                }
            };
            match restored {
                Some(Ok(())) => {
                    restored_any = true;
                    metrics::global().restored(&held.instance_id, held.category);
                    tracing::warn!(
                        instance_id = %held.instance_id,
                        category = %held.category,
                        path = %path.display(),
                        sha256 = %crate::certcheck::hex(&held.sha256),
                        "restored: the file {what}; wrote back the last verified certificate"
                    );
                }
                Some(Err(e)) => tracing::error!(
                    instance_id = %held.instance_id,
                    path = %path.display(),
                    "the file {what}, and restoring it failed: {e}"
                ),
                None => {}
            }
        }
        restored_any
    }
}
