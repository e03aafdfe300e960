//! Watching the specs for changes (notify), so a GitOps sync is applied
//! within a second instead of at the next resync.
//!
//! git-sync and similar tools publish a new revision by checking it out
//! into a new directory and then atomically renaming a symlink
//! (`current -> rev-2`) over the old one. A watch on the directory the
//! symlink pointed to sees nothing of that, so besides the specs themselves
//! (recursively, at the directory they resolve to now) the watcher also
//! watches the directory holding each symlink on the way, and after every
//! change it resolves the paths again and moves its watches to the new
//! target. Events elsewhere in those directories are ignored.
//!
//! The watcher only says *that* something changed; the caller reads and
//! validates the specs again and keeps the last good policies when the
//! change is invalid. The run loop also rereads the specs at each resync,
//! in case a file system does not deliver notifications (NFS, some FUSE).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

/// Why the specs cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Changes are collected until this long after the last one...
const QUIET: Duration = Duration::from_millis(300);
/// ...or this long after the first (a checkout writes many files).
const AT_MOST: Duration = Duration::from_secs(2);

/// What to watch for the specs paths as they resolve now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Plan {
    /// The resolved specs (directories recursively, files through their directory).
    targets: BTreeSet<PathBuf>,
    /// Directories holding a symlink on the way (or a specs file), watched
    /// non-recursively.
    parents: BTreeSet<PathBuf>,
    /// Paths whose change matters: everything under a target, and these.
    names: BTreeSet<PathBuf>,
}

impl Plan {
    fn of(paths: &[PathBuf]) -> Result<Plan> {
        let mut plan = Plan::default();
        for path in paths {
            let absolute = std::path::absolute(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            // Every symlink on the way, and the path itself, is watched
            // through the directory holding it, so a swap is seen.
            let mut prefix = PathBuf::new();
            for component in absolute.components() {
                prefix.push(component);
                let is_link =
                    std::fs::symlink_metadata(&prefix).is_ok_and(|m| m.file_type().is_symlink());
                if (is_link || prefix == absolute)
                    && let Some(parent) = prefix.parent()
                {
                    plan.parents.insert(parent.to_path_buf());
                    plan.names.insert(prefix.clone());
                }
            }
            let target = std::fs::canonicalize(&absolute).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            if target.is_dir() {
                plan.targets.insert(target);
            } else if let Some(parent) = target.parent() {
                plan.parents.insert(parent.to_path_buf());
                plan.names.insert(target);
            }
        }
        Ok(plan)
    }

    fn matters(&self, path: &Path) -> bool {
        self.names.contains(path) || self.targets.iter().any(|t| path.starts_with(t))
    }
}

/// Tells when the specs changed.
pub struct SpecWatcher {
    paths: Vec<PathBuf>,
    watcher: notify::RecommendedWatcher,
    plan: std::sync::Arc<std::sync::Mutex<Plan>>,
    changes: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl std::fmt::Debug for SpecWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpecWatcher")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl SpecWatcher {
    /// Starts watching. Must be called within a tokio runtime's context
    /// only to await [`SpecWatcher::changed`]; the watch itself runs on
    /// notify's thread.
    pub fn new(paths: &[PathBuf]) -> Result<SpecWatcher> {
        let plan = std::sync::Arc::new(std::sync::Mutex::new(Plan::default()));
        let (send, changes) = tokio::sync::mpsc::unbounded_channel();
        let seen = std::sync::Arc::clone(&plan);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Errors (such as a queue overflow) may hide a change: say "changed".
            let relevant = match event {
                Ok(event) => {
                    let plan = seen
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    event.paths.iter().any(|p| plan.matters(p))
                }
                Err(_) => true,
            };
            if relevant {
                let _ = send.send(());
            }
        })
        .map_err(|source| Error::Watch {
            path: paths.first().cloned().unwrap_or_default(),
            source,
        })?;
        let mut watching = SpecWatcher {
            paths: paths.to_vec(),
            watcher,
            plan,
            changes,
        };
        watching.rearm()?;
        Ok(watching)
    }

    /// Resolves the paths again and watches what they resolve to now. All
    /// watches are renewed, not only those whose path changed: a watch
    /// holds a directory, not a path, and a path through a swapped symlink
    /// now names another directory.
    fn rearm(&mut self) -> Result<()> {
        let next = Plan::of(&self.paths)?;
        let mut current = self
            .plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Old targets may be gone already (git-sync removes old worktrees).
        for old in current.targets.iter().chain(&current.parents) {
            let _ = self.watcher.unwatch(old);
        }
        let watch = |w: &mut notify::RecommendedWatcher, path: &Path, mode| {
            w.watch(path, mode).map_err(|source| Error::Watch {
                path: path.to_path_buf(),
                source,
            })
        };
        for target in &next.targets {
            watch(&mut self.watcher, target, RecursiveMode::Recursive)?;
        }
        for parent in &next.parents {
            watch(&mut self.watcher, parent, RecursiveMode::NonRecursive)?;
        }
        *current = next;
        Ok(())
    }

    /// Waits until the specs changed and then were quiet for a moment.
    /// Watches follow a symlink that now points elsewhere; if the paths
    /// cannot be resolved right now (mid-swap), the old watches stay and
    /// the next change tries again.
    pub async fn changed(&mut self) {
        if self.changes.recv().await.is_none() {
            // The watcher's thread is gone: nothing will ever change.
            return std::future::pending().await;
        }
        let deadline = tokio::time::Instant::now() + AT_MOST;
        loop {
            let wait = QUIET.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            match tokio::time::timeout(wait, self.changes.recv()).await {
                Ok(Some(())) if tokio::time::Instant::now() < deadline => {}
                _ => break,
            }
        }
        let _ = self.rearm();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_watches_the_directory_of_each_symlink_on_the_way() {
        let root = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        std::fs::create_dir_all(root.join("rev-1/specs")).unwrap();
        std::os::unix::fs::symlink(root.join("rev-1"), root.join("current")).unwrap();
        let plan = Plan::of(&[root.join("current/specs")]).unwrap();
        assert_eq!(plan.targets, [root.join("rev-1/specs")].into());
        assert_eq!(
            plan.parents,
            [root.clone(), root.join("current")].into(),
            "the symlink's directory, and the specs' own"
        );
        assert!(plan.matters(&root.join("current")));
        assert!(plan.matters(&root.join("rev-1/specs/web.yaml")));
        assert!(!plan.matters(&root.join("rev-2/specs/web.yaml")));
        assert!(!plan.matters(&root.join("unrelated")));
    }

    async fn changes_within(watcher: &mut SpecWatcher, seconds: u64) -> bool {
        tokio::time::timeout(Duration::from_secs(seconds), watcher.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_git_sync_symlink_swap_is_seen_and_the_watch_follows_it() {
        let root = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        std::fs::create_dir_all(root.join("rev-1/specs")).unwrap();
        std::fs::write(root.join("rev-1/specs/web.yaml"), "one").unwrap();
        std::os::unix::fs::symlink(root.join("rev-1"), root.join("current")).unwrap();
        let mut watcher = SpecWatcher::new(&[root.join("current/specs")]).unwrap();

        // Unrelated changes next to the symlink are ignored.
        std::fs::write(root.join("unrelated"), "x").unwrap();
        assert!(!changes_within(&mut watcher, 1).await);

        // git-sync: check out the new revision, swap the link, remove the old one.
        std::fs::create_dir_all(root.join("rev-2/specs")).unwrap();
        std::fs::write(root.join("rev-2/specs/web.yaml"), "two").unwrap();
        std::os::unix::fs::symlink(root.join("rev-2"), root.join("current.tmp")).unwrap();
        std::fs::rename(root.join("current.tmp"), root.join("current")).unwrap();
        assert!(changes_within(&mut watcher, 10).await, "the swap is seen");
        std::fs::remove_dir_all(root.join("rev-1")).unwrap();

        // The watch moved to the new revision: an edit there is seen too.
        std::fs::write(root.join("rev-2/specs/web.yaml"), "three").unwrap();
        assert!(
            changes_within(&mut watcher, 10).await,
            "an edit after the swap is seen"
        );
    }

    #[tokio::test]
    async fn an_edit_in_a_plain_directory_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.yaml"), "one").unwrap();
        let mut watcher = SpecWatcher::new(&[dir.path().to_path_buf()]).unwrap();
        // An editor's save: write a temporary file, rename it over the old one.
        std::fs::write(dir.path().join(".web.yaml.swp"), "two").unwrap();
        std::fs::rename(
            dir.path().join(".web.yaml.swp"),
            dir.path().join("web.yaml"),
        )
        .unwrap();
        assert!(changes_within(&mut watcher, 10).await);
    }
}
