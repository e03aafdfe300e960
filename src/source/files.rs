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
//! Only events that can change what the specs say count ([`may_change`]):
//! reading the specs (open, read, close without writing, an access time)
//! never does, or every reload would report the next one.
//!
//! Two rules keep the watcher from ever waiting on itself: notify's event
//! handler locks nothing and never blocks (it filters by kind and hands the
//! paths to an unbounded channel), and the calls that (un)register watches,
//! which wait for notify's event-loop thread to answer, run on a blocking
//! thread of their own, never on the async runtime's.
//!
//! The watcher only says *that* something changed; the caller reads and
//! validates the specs again, keeps the last good policies when the change
//! is invalid, and compares what it loaded with what it has, so a spurious
//! event costs one quiet re-read. The run loop also rereads the specs at
//! each resync, in case a file system does not deliver notifications (NFS,
//! some FUSE).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, MetadataKind, ModifyKind};
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

/// Whether an event of this kind can change what the specs say. Reading
/// never does; anything notify cannot name (`Any`, `Other`) might.
pub fn may_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        // Permissions and ownership decide whether a file can be read;
        // an access time does not.
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Remove(_)
        | EventKind::Any
        | EventKind::Other => true,
    }
}

/// What notify's handler passes on: the paths of an event that may change
/// the specs, or `None` for a watcher error (a queue overflow, say), which
/// may hide a change.
type News = Option<Vec<PathBuf>>;

/// Tells when the specs changed.
pub struct SpecWatcher {
    paths: Vec<PathBuf>,
    /// Taken while a blocking thread (re)registers the watches.
    watcher: Option<notify::RecommendedWatcher>,
    /// Owned here, never shared with the handler: nothing to lock.
    plan: Plan,
    news: tokio::sync::mpsc::UnboundedReceiver<News>,
}

impl std::fmt::Debug for SpecWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpecWatcher")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

/// Moves the watches from `old` to `next` (blocking: each call waits for
/// notify's event-loop thread).
fn register(watcher: &mut notify::RecommendedWatcher, old: &Plan, next: &Plan) -> Result<()> {
    // Old targets may be gone already (git-sync removes old worktrees).
    for path in old.targets.iter().chain(&old.parents) {
        let _ = watcher.unwatch(path);
    }
    let watches = next
        .targets
        .iter()
        .map(|t| (t, RecursiveMode::Recursive))
        .chain(
            next.parents
                .iter()
                .map(|p| (p, RecursiveMode::NonRecursive)),
        );
    for (path, mode) in watches {
        watcher.watch(path, mode).map_err(|source| Error::Watch {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

impl SpecWatcher {
    /// Starts watching (blocking, briefly: call it before the runtime's
    /// work starts, or from a blocking thread).
    pub fn new(paths: &[PathBuf]) -> Result<SpecWatcher> {
        let (send, news) = tokio::sync::mpsc::unbounded_channel::<News>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let news = match event {
                    Ok(event) if may_change(&event.kind) => Some(event.paths),
                    Ok(_) => return,
                    Err(_) => None,
                };
                // Unbounded: the handler never waits. A closed channel
                // means the controller is gone.
                let _ = send.send(news);
            })
            .map_err(|source| Error::Watch {
                path: paths.first().cloned().unwrap_or_default(),
                source,
            })?;
        let plan = Plan::of(paths)?;
        register(&mut watcher, &Plan::default(), &plan)?;
        Ok(SpecWatcher {
            paths: paths.to_vec(),
            watcher: Some(watcher),
            plan,
            news,
        })
    }

    /// Resolves the paths again and watches what they resolve to now, on a
    /// blocking thread. All watches are renewed, not only those whose path
    /// changed: a watch holds a directory, not a path, and a path through a
    /// swapped symlink now names another directory. If the paths cannot be
    /// resolved right now (mid-swap), the old watches stay and the next
    /// change tries again.
    async fn rearm(&mut self) {
        let Some(mut watcher) = self.watcher.take() else {
            return;
        };
        let (paths, old) = (self.paths.clone(), self.plan.clone());
        let moved = tokio::task::spawn_blocking(move || {
            let next = Plan::of(&paths).and_then(|next| {
                register(&mut watcher, &old, &next)?;
                Ok(next)
            });
            (watcher, next)
        })
        .await;
        match moved {
            Ok((watcher, next)) => {
                self.watcher = Some(watcher);
                match next {
                    Ok(next) => self.plan = next,
                    Err(e) => tracing::debug!("specs: cannot watch them yet ({e})"),
                }
            }
            // The blocking thread panicked: the watcher is lost with it,
            // and the resync's re-read is all that is left.
            Err(e) => tracing::warn!(
                "specs: the watcher failed ({e}); reading them again at each resync only"
            ),
        }
    }

    /// Whether news is about the specs.
    fn matters(&self, news: &News) -> bool {
        news.as_ref()
            .is_none_or(|paths| paths.iter().any(|p| self.plan.matters(p)))
    }

    /// Waits for the next news about the specs (forever once the watcher
    /// is gone).
    async fn next_change(&mut self) {
        loop {
            match self.news.recv().await {
                Some(news) if self.matters(&news) => return,
                Some(_) => {}
                None => return std::future::pending().await,
            }
        }
    }

    /// Waits until the specs changed and then were quiet for a moment,
    /// then moves the watches to where the paths resolve now.
    pub async fn changed(&mut self) {
        self.next_change().await;
        let deadline = tokio::time::Instant::now() + AT_MOST;
        loop {
            let wait = QUIET.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            let more = tokio::time::timeout(wait, self.next_change()).await.is_ok();
            if !more || tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        self.rearm().await;
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

    #[test]
    fn reading_the_specs_is_no_change_and_writing_them_is() {
        use notify::event::{CreateKind, DataChange, RemoveKind, RenameMode};
        let table = [
            (EventKind::Access(AccessKind::Open(AccessMode::Read)), false),
            (EventKind::Access(AccessKind::Read), false),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                false,
            ),
            (EventKind::Access(AccessKind::Any), false),
            (
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
                false,
            ),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                true,
            ),
            (EventKind::Create(CreateKind::File), true),
            (
                EventKind::Modify(ModifyKind::Data(DataChange::Content)),
                true,
            ),
            (EventKind::Modify(ModifyKind::Name(RenameMode::Both)), true),
            (
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::Permissions)),
                true,
            ),
            (
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
                true,
            ),
            (EventKind::Remove(RemoveKind::File), true),
            (EventKind::Any, true),
            (EventKind::Other, true),
        ];
        for (kind, expected) in table {
            assert_eq!(may_change(&kind), expected, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn reading_the_specs_again_and_again_reports_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.yaml"), "one").unwrap();
        let mut watcher = SpecWatcher::new(&[dir.path().to_path_buf()]).unwrap();
        // What a reload does: list the directory, open and read each file.
        for _ in 0..20 {
            crate::spec::load_paths(&[dir.path().to_path_buf()]).unwrap();
        }
        assert!(!changes_within(&mut watcher, 1).await);
    }

    /// Many rearms while events pour in (a writer touching the files in a
    /// tight loop and swapping the symlink): every rearm returns, and an
    /// edit afterwards is still seen. The watcher runs on a thread of its
    /// own, so a deadlock fails the test instead of hanging it.
    #[test]
    fn rearming_while_events_pour_in_never_waits_on_itself() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let root = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        for rev in ["rev-1", "rev-2"] {
            std::fs::create_dir_all(root.join(rev).join("specs")).unwrap();
            std::fs::write(root.join(rev).join("specs/web.yaml"), "one").unwrap();
        }
        std::os::unix::fs::symlink(root.join("rev-1"), root.join("current")).unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let writer = {
            let (root, stop) = (root.clone(), std::sync::Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut writes = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for rev in ["rev-1", "rev-2"] {
                        std::fs::write(root.join(rev).join("specs/web.yaml"), "two").unwrap();
                    }
                    writes += 1;
                    if writes.is_multiple_of(50) {
                        let rev = if writes.is_multiple_of(100) {
                            "rev-1"
                        } else {
                            "rev-2"
                        };
                        let _ = std::fs::remove_file(root.join("next"));
                        std::os::unix::fs::symlink(root.join(rev), root.join("next")).unwrap();
                        std::fs::rename(root.join("next"), root.join("current")).unwrap();
                    }
                }
                writes
            })
        };
        let (done, finished) = std::sync::mpsc::channel();
        let watched = root.join("current/specs");
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut watcher = SpecWatcher::new(&[watched]).unwrap();
                let until = std::time::Instant::now() + Duration::from_secs(3);
                let mut rearms = 0u32;
                while std::time::Instant::now() < until {
                    watcher.rearm().await;
                    rearms += 1;
                    while watcher.news.try_recv().is_ok() {}
                }
                let _ = done.send(rearms);
            });
        });
        let rearms = finished.recv_timeout(Duration::from_secs(60));
        stop.store(true, Ordering::Relaxed);
        let writes = writer.join().unwrap();
        let rearms = rearms.expect("the watcher stopped answering while rearming");
        assert!(
            rearms > 10 && writes > 100,
            "{rearms} rearms, {writes} writes"
        );
    }

    #[tokio::test]
    async fn after_a_storm_of_events_an_edit_is_still_seen() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.yaml");
        std::fs::write(&file, "one").unwrap();
        let mut watcher = SpecWatcher::new(&[dir.path().to_path_buf()]).unwrap();
        for i in 0..2_000 {
            std::fs::write(&file, format!("{i}")).unwrap();
        }
        assert!(changes_within(&mut watcher, 10).await);
        // Whatever the storm left queued is drained by quiet waits.
        while changes_within(&mut watcher, 1).await {}
        std::fs::write(&file, "last").unwrap();
        assert!(
            changes_within(&mut watcher, 10).await,
            "an edit after the storm is seen"
        );
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
