//! The policies in force, read again: when the files change (watched, and
//! at each resync) or a new commit is fetched. An invalid change is
//! reported and the last good policies stay; a file caught half-written is
//! read again until it settles.

use crate::spec::Specs;

/// Loads the policies; on errors, reports them and returns `None` (the
/// caller keeps the last good set).
pub(super) fn load_policies(specs: &[std::path::PathBuf]) -> Option<Specs> {
    checked(crate::spec::load_paths(specs))
}

/// What a reload of the policies found, compared with those in force.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Reload {
    /// Valid and different: these replace the policies in force.
    Changed(Specs),
    /// Valid and equal to what is in force (an event that changed nothing,
    /// or a resync's re-read): nothing to do.
    Unchanged,
    /// Reported; the last good policies stay.
    Invalid,
    /// The files were still changing after [`SETTLE_READS`] reads: the
    /// last good policies stay until the next change or resync.
    Unsettled,
}

impl Reload {
    /// Compares what was loaded with what is in force (not whether
    /// something happened to the files), and counts the outcome.
    pub(super) fn of(
        loaded: Option<Specs>,
        current: &Specs,
        observer: &crate::status::Observer,
    ) -> Reload {
        let reload = match loaded {
            None => Reload::Invalid,
            Some(loaded) if loaded == *current => Reload::Unchanged,
            Some(loaded) => Reload::Changed(loaded),
        };
        reload.count(observer);
        reload
    }

    fn count(&self, observer: &crate::status::Observer) {
        observer.spec_reload(match self {
            Reload::Changed(_) => "changed",
            Reload::Unchanged => "unchanged",
            Reload::Invalid => "invalid",
            Reload::Unsettled => "unsettled",
        });
    }
}

/// How long a reload waits before reading the files again. An editor's
/// save, `cp` or `echo >` truncates a file and then writes it: a read in
/// between finds it empty or cut short, which must never replace the
/// policies in force (an empty file is valid: zero policies).
const SETTLE: std::time::Duration = std::time::Duration::from_millis(100);
/// Reads before a reload leaves files that keep changing for later.
const SETTLE_READS: usize = 5;

/// Reads the policy files again and compares them with those in force. A
/// read that differs is trusted only once a second read, [`SETTLE`] later,
/// finds the very same bytes; a read that matches costs no wait.
pub(super) async fn reload(
    specs: &[std::path::PathBuf],
    current: &Specs,
    observer: &crate::status::Observer,
) -> Reload {
    let read = || crate::spec::read_paths(specs);
    let first = read();
    let unchanged = first.as_ref().is_ok_and(|sources| {
        let loaded = crate::spec::load_sources(sources.clone());
        !loaded.has_errors() && loaded.specs() == *current
    });
    if unchanged {
        Reload::Unchanged.count(observer);
        return Reload::Unchanged;
    }
    match settle(first, read, same_files, SETTLE, SETTLE_READS).await {
        Some(settled) => Reload::of(
            checked(settled.map(crate::spec::load_sources)),
            current,
            observer,
        ),
        None => {
            tracing::info!(
                "specs: still being written after {SETTLE_READS} reads; \
                 keeping the last good policies until the next change or resync"
            );
            Reload::Unsettled.count(observer);
            Reload::Unsettled
        }
    }
}

type Read = Result<Vec<(String, Vec<u8>)>, crate::spec::Error>;

/// Two reads found the same files with the same bytes, or failed alike.
fn same_files(a: &Read, b: &Read) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a.to_string() == b.to_string(),
        _ => false,
    }
}

/// Reads again, `pause` apart, until two reads in a row are `same`; at
/// most `reads` reads in all (counting `first`). `None` when they never
/// agreed.
async fn settle<T>(
    first: T,
    mut read: impl FnMut() -> T,
    same: impl Fn(&T, &T) -> bool,
    pause: std::time::Duration,
    reads: usize,
) -> Option<T> {
    let mut last = first;
    for _ in 1..reads {
        tokio::time::sleep(pause).await;
        let next = read();
        if same(&last, &next) {
            return Some(next);
        }
        last = next;
    }
    None
}

/// The policies of a load, or `None` after reporting why not.
fn checked(loaded: Result<crate::spec::Loaded, crate::spec::Error>) -> Option<Specs> {
    match loaded {
        Ok(loaded) if !loaded.has_errors() => Some(loaded.specs()),
        Ok(loaded) => {
            let renderer = annotate_snippets::Renderer::plain();
            for d in loaded.diagnostics.iter().filter(|d| d.is_error()) {
                tracing::warn!("{}", d.render(&renderer));
            }
            tracing::warn!(
                "policies: {} errors; keeping the last good policies",
                loaded.error_count()
            );
            None
        }
        Err(e) => {
            tracing::warn!("policies: {e}; keeping the last good policies");
            None
        }
    }
}

/// Where the policies come from when they come from git.
#[derive(Debug, Clone)]
pub struct GitSpecs {
    pub source: crate::source::git::GitSource,
    /// How often to fetch.
    pub poll: std::time::Duration,
}

/// Fetches the repository; returns a new commit with its policies (`None`
/// when any of it is invalid, reported once: the last good policies stay).
pub(super) async fn poll_git(
    git: &GitSpecs,
    seen: &mut Option<String>,
) -> Option<(String, Option<Specs>)> {
    let source = git.source.clone();
    let fetched = tokio::task::spawn_blocking(move || source.fetch()).await;
    let commit = match fetched {
        Ok(Ok(commit)) => commit,
        Ok(Err(e)) => {
            tracing::warn!("specs: {e}; keeping the last good policies");
            return None;
        }
        Err(e) => {
            tracing::warn!("specs: fetch failed: {e}");
            return None;
        }
    };
    if seen.as_deref() == Some(commit.id.as_str()) {
        return None;
    }
    *seen = Some(commit.id.clone());
    tracing::info!(commit = %commit.id, "specs: commit {}: {} files", commit.id, commit.files.len());
    Some((
        commit.id,
        checked(Ok(crate::spec::load_sources(commit.files))),
    ))
}

#[cfg(test)]
mod tests {
    //! A file caught half-written never replaces the policies in force.

    use std::cell::Cell;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use super::{Reload, SETTLE, reload, settle};
    use crate::status::Observer;

    const WEB: &str = include_str!("../../specs/payments/web.yaml");

    fn one_file(text: &str) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.yaml"), text).unwrap();
        let specs = vec![dir.path().to_path_buf()];
        (dir, specs)
    }

    fn in_force(specs: &[PathBuf]) -> crate::spec::Specs {
        let loaded = crate::spec::load_paths(specs).unwrap();
        assert!(!loaded.has_errors() && loaded.policies.len() == 1);
        loaded.specs()
    }

    /// Reads a script of values, counting the reads.
    async fn settle_script(script: &[u32]) -> (Option<u32>, usize) {
        let reads = Cell::new(1);
        let settled = settle(
            script[0],
            || {
                let at = reads.get();
                reads.set(at + 1);
                script[at.min(script.len() - 1)]
            },
            |a, b| a == b,
            Duration::from_millis(1),
            5,
        )
        .await;
        (settled, reads.get())
    }

    #[tokio::test]
    async fn settle_takes_the_first_value_read_twice_in_a_row() {
        assert_eq!(settle_script(&[7, 7]).await, (Some(7), 2));
        assert_eq!(settle_script(&[0, 7, 7]).await, (Some(7), 3));
        // 1 and 1 are not in a row.
        assert_eq!(settle_script(&[1, 2, 1, 3, 3]).await, (Some(3), 5));
        // Five reads, never twice the same: given up on.
        assert_eq!(settle_script(&[1, 2, 3, 4, 5, 6, 6]).await, (None, 5));
    }

    #[tokio::test]
    async fn a_file_caught_empty_while_it_is_written_is_not_a_change() {
        let (dir, specs) = one_file(WEB);
        let current = in_force(&specs);
        // An editor's save: the file is truncated, and written again 30 ms
        // later, after the reload's first read.
        std::fs::write(dir.path().join("web.yaml"), "").unwrap();
        let path = dir.path().join("web.yaml");
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            std::fs::write(path, WEB).unwrap();
        });
        let observer = Observer::new();
        let outcome = reload(&specs, &current, &observer).await;
        writer.join().unwrap();
        assert_eq!(outcome, Reload::Unchanged);
    }

    #[tokio::test]
    async fn a_file_that_stays_empty_is_a_change_to_no_policies() {
        let (dir, specs) = one_file(WEB);
        let current = in_force(&specs);
        std::fs::write(dir.path().join("web.yaml"), "").unwrap();
        let started = Instant::now();
        let outcome = reload(&specs, &current, &Observer::new()).await;
        assert_eq!(outcome, Reload::Changed(crate::spec::Specs::default()));
        assert!(
            started.elapsed() >= SETTLE,
            "trusted after one read, {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn the_same_policies_cost_one_read_and_no_wait() {
        let (_dir, specs) = one_file(WEB);
        let current = in_force(&specs);
        let started = Instant::now();
        let outcome = reload(&specs, &current, &Observer::new()).await;
        assert_eq!(outcome, Reload::Unchanged);
        assert!(started.elapsed() < SETTLE, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_real_edit_is_adopted_and_a_broken_one_is_invalid() {
        let (dir, specs) = one_file(WEB);
        let current = in_force(&specs);
        let edited = WEB.replace("maxUnavailable: 1", "maxUnavailable: 2");
        std::fs::write(dir.path().join("web.yaml"), &edited).unwrap();
        let Reload::Changed(newer) = reload(&specs, &current, &Observer::new()).await else {
            panic!("an edit is a change");
        };
        assert_eq!(newer.policies.len(), 1);
        assert_ne!(newer, current);
        std::fs::write(dir.path().join("web.yaml"), "spec: [").unwrap();
        assert_eq!(
            reload(&specs, &current, &Observer::new()).await,
            Reload::Invalid
        );
    }
}
