//! The policy reload: a file caught half-written never replaces the
//! policies in force.

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

fn in_force(specs: &[PathBuf]) -> Vec<crate::spec::Policy> {
    let loaded = crate::spec::load_paths(specs).unwrap();
    assert!(!loaded.has_errors() && loaded.policies.len() == 1);
    loaded.policies
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
    assert_eq!(outcome, Reload::Changed(vec![]));
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
    assert_eq!(newer.len(), 1);
    assert_ne!(newer, current);
    std::fs::write(dir.path().join("web.yaml"), "spec: [").unwrap();
    assert_eq!(
        reload(&specs, &current, &Observer::new()).await,
        Reload::Invalid
    );
}
