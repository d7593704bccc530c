//! File system watching with `notify`: the config file and the outputs.
//!
//! Directories are watched, never single files: a file replaced by rename (an
//! editor's save, `mv`, our own atomic writes) or the Kubernetes ConfigMap
//! swap (`config.toml -> ..data/config.toml`, where `..data` is a symlink that
//! is atomically replaced) changes the directory, while a watch on the old
//! inode would go quiet. Events only say "look again": what counts is
//! decided by comparing content ([`ContentTracker`]) or digests
//! ([`crate::heal`]), so spurious or coalesced events are harmless.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use crate::certcheck::{Sha256Digest, sha256};

/// A `notify` watcher over a set of directories. Every event's paths go to
/// the receiver returned by [`Watcher::new`].
pub struct Watcher {
    inner: notify::RecommendedWatcher,
    dirs: HashSet<PathBuf>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").field("dirs", &self.dirs).finish()
    }
}

impl Watcher {
    /// Starts the watcher (a background thread of `notify`'s).
    pub fn new() -> notify::Result<(Watcher, mpsc::UnboundedReceiver<PathBuf>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            match res {
                Ok(ev) if !relevant(&ev) => {}
                Ok(ev) => {
                    for p in ev.paths {
                        let _ = tx.send(p);
                    }
                }
                // Typically an overflowed queue: say "look at everything".
                Err(e) => {
                    tracing::debug!("file watch error: {e}");
                    let _ = tx.send(PathBuf::new());
                }
            }
        })?;
        Ok((
            Watcher {
                inner,
                dirs: HashSet::new(),
            },
            rx,
        ))
    }

    /// Watches a directory (not recursively). Watching it again re-arms the
    /// watch, which is what is needed after the directory was re-created.
    pub fn watch_dir(&mut self, dir: &Path) -> notify::Result<()> {
        self.inner.watch(dir, RecursiveMode::NonRecursive)?;
        self.dirs.insert(dir.to_path_buf());
        Ok(())
    }

    /// Stops watching a directory.
    pub fn unwatch_dir(&mut self, dir: &Path) {
        if self.dirs.remove(dir) {
            let _ = self.inner.unwatch(dir);
        }
    }

    /// The directories watched now.
    pub fn dirs(&self) -> &HashSet<PathBuf> {
        &self.dirs
    }
}

/// Whether an event may mean a change. Opening or reading a file changes
/// nothing, and our own reads of what we watch would otherwise wake us again,
/// in a loop that keeps a CPU busy.
pub fn relevant(ev: &notify::Event) -> bool {
    !matches!(ev.kind, notify::EventKind::Access(_))
}

use crate::output::parent_dir;

/// Whether an event on `event_path` may have changed `file`: the path itself,
/// anything in its directory (a `..data` swap, a rename onto it), or the
/// directory. An empty path (a watch error) matches everything.
pub fn may_affect(event_path: &Path, file: &Path) -> bool {
    if event_path.as_os_str().is_empty() || event_path == file {
        return true;
    }
    let dir = parent_dir(file);
    event_path == dir || event_path.parent() == Some(dir.as_path())
}

/// Remembers the digest of a file's content, so that "did it change?" is
/// answered by content, not by events.
#[derive(Debug, Clone, Default)]
pub struct ContentTracker {
    seen: Option<Sha256Digest>,
}

impl ContentTracker {
    /// Starts from content already read.
    pub fn new(content: Option<&[u8]>) -> ContentTracker {
        ContentTracker {
            seen: content.map(sha256),
        }
    }

    /// Records `content`; true if it differs from what was seen before. An
    /// unreadable file (`None`) is not a change: a config is never "deleted",
    /// it is only replaced.
    pub fn update(&mut self, content: Option<&[u8]>) -> bool {
        let Some(c) = content else { return false };
        let d = sha256(c);
        let changed = self.seen != Some(d);
        self.seen = Some(d);
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_not_changes() {
        use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind};
        let ev = |kind| notify::Event::new(kind).add_path("/x/ca.crt".into());
        assert!(!relevant(&ev(EventKind::Access(AccessKind::Open(
            AccessMode::Any
        )))));
        assert!(!relevant(&ev(EventKind::Access(AccessKind::Close(
            AccessMode::Read
        )))));
        assert!(relevant(&ev(EventKind::Create(CreateKind::File))));
        assert!(relevant(&ev(EventKind::Modify(ModifyKind::Any))));
        assert!(relevant(&ev(EventKind::Any)));
    }
    use std::time::Duration;

    #[test]
    fn events_in_the_directory_affect_the_file() {
        let f = Path::new("/config/config.toml");
        assert!(may_affect(Path::new("/config/config.toml"), f));
        assert!(may_affect(Path::new("/config/..data"), f));
        assert!(may_affect(Path::new("/config/..2026_11_28_05_00_00.1"), f));
        assert!(may_affect(Path::new("/config"), f));
        assert!(may_affect(Path::new(""), f));
        assert!(!may_affect(Path::new("/other/config.toml"), f));
        assert!(!may_affect(Path::new("/config/sub/config.toml"), f));
        assert_eq!(parent_dir(Path::new("config.toml")), PathBuf::from("."));
    }

    #[test]
    fn content_decides_what_changed() {
        let mut t = ContentTracker::new(Some(b"a"));
        assert!(!t.update(Some(b"a")));
        assert!(!t.update(None), "a vanished file is no change");
        assert!(t.update(Some(b"b")));
        assert!(!t.update(Some(b"b")));
        assert!(t.update(Some(b"a")));
    }

    async fn next_matching(
        rx: &mut mpsc::UnboundedReceiver<PathBuf>,
        file: &Path,
    ) -> Option<PathBuf> {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let p = rx.recv().await?;
                if may_affect(&p, file) {
                    return Some(p);
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    #[tokio::test]
    async fn a_rename_and_a_symlink_swap_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, mut rx) = Watcher::new().unwrap();
        w.watch_dir(dir.path()).unwrap();
        let file = dir.path().join("config.toml");

        // Replacement by rename.
        std::fs::write(dir.path().join("new.tmp"), "x").unwrap();
        std::fs::rename(dir.path().join("new.tmp"), &file).unwrap();
        assert!(next_matching(&mut rx, &file).await.is_some());

        // The ConfigMap pattern: config.toml -> ..data/config.toml, ..data swapped.
        let cm = tempfile::tempdir().unwrap();
        let (mut w2, mut rx2) = Watcher::new().unwrap();
        std::fs::create_dir(cm.path().join("..v1")).unwrap();
        std::fs::write(cm.path().join("..v1/config.toml"), "v1").unwrap();
        std::os::unix::fs::symlink("..v1", cm.path().join("..data")).unwrap();
        let link = cm.path().join("config.toml");
        std::os::unix::fs::symlink("..data/config.toml", &link).unwrap();
        w2.watch_dir(cm.path()).unwrap();
        let mut t = ContentTracker::new(std::fs::read(&link).ok().as_deref());
        std::fs::create_dir(cm.path().join("..v2")).unwrap();
        std::fs::write(cm.path().join("..v2/config.toml"), "v2").unwrap();
        std::os::unix::fs::symlink("..v2", cm.path().join("..data_tmp")).unwrap();
        std::fs::rename(cm.path().join("..data_tmp"), cm.path().join("..data")).unwrap();
        assert!(next_matching(&mut rx2, &link).await.is_some());
        assert!(t.update(std::fs::read(&link).ok().as_deref()));
        assert_eq!(std::fs::read(&link).unwrap(), b"v2");
        w2.unwatch_dir(cm.path());
        assert!(w2.dirs().is_empty());
    }
}
