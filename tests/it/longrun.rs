//! The controller binary running for several resync periods against moto:
//! what it does over time (how many passes, how many re-reads of the
//! specs), not only in one pass. Each test counts what the process did,
//! from its `/metrics` and its log.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::aws::{
    dynamodb, lease_table, lines_of, run_controller, specs_dir, status_address, stevedore, stopped,
    wait_for,
};

/// The sum of a metric's samples whose line contains `labels` (all of
/// them with ""), as the controller's `/metrics` serves them now.
pub(crate) fn metric(address: &str, name: &str, labels: &str) -> u64 {
    let text = crate::aws::http_text(&format!("http://{address}/metrics"));
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Lines that arrived so far, without waiting.
fn drain(lines: &std::sync::mpsc::Receiver<String>, seen: &mut Vec<String>) {
    while let Ok(line) = lines.try_recv() {
        seen.push(line);
    }
}

pub(crate) fn sigterm(child: &std::process::Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
}

const POLICY: &str = "  placement: {azBalanced: true}\n";

/// With `--resync 2s`, three periods make at most four passes (at 0, 2, 4
/// and 6 s), however the specs are read, touched or swapped for the same
/// content meanwhile; a real edit is applied within a second and makes
/// one pass. The specs sit behind a symlink, as git-sync publishes them.
/// Before the watcher ignored reads, every resync's re-read of the specs
/// woke it, and the passes ran every 300 ms from the first resync on.
#[tokio::test]
async fn over_several_resyncs_passes_follow_the_period_and_only_a_real_edit_reloads() {
    let (moto, _client) = crate::aws::demo([1, 1, 1, 1, 1, 1]).await;
    let root = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(root.path()).unwrap();
    let original = std::fs::read_to_string(specs_dir(POLICY).path().join("web.yaml")).unwrap();
    for rev in ["rev-1", "rev-2"] {
        std::fs::create_dir_all(root.join(rev)).unwrap();
        std::fs::write(root.join(rev).join("web.yaml"), &original).unwrap();
    }
    std::os::unix::fs::symlink(root.join("rev-1"), root.join("current")).unwrap();
    let specs = root.join("current");

    let mut child = run_controller(
        &moto,
        specs.to_str().unwrap(),
        &["--resync", "2s", "--listen", "127.0.0.1:0"],
    );
    let lines = lines_of(&mut child);
    let mut seen = vec![];
    let address = status_address(&lines, &mut seen);
    wait_for(&lines, "demo/web/web: Satisfied", &mut seen);
    let started = Instant::now();

    // Three resync periods, untouched.
    std::thread::sleep(Duration::from_millis(6_500));
    let passes = metric(&address, "stevedore_reconciles_total", "");
    let elapsed = started.elapsed().as_secs_f64();
    drain(&lines, &mut seen);
    let implied = 1 + (elapsed / 2.0).floor() as u64;
    assert!(
        (3..=implied).contains(&passes),
        "{passes} passes in {elapsed:.1} s with a 2 s resync (at most {implied}):\n{}",
        seen.join("\n")
    );
    assert!(
        !seen.iter().any(|l| l.contains("specs: changed")),
        "no change was made:\n{}",
        seen.join("\n")
    );
    let unchanged = metric(
        &address,
        "stevedore_spec_reloads_total",
        r#"outcome="unchanged""#,
    );
    assert!(
        unchanged + 1 >= passes,
        "each resync after the first re-read the specs: {unchanged} re-reads, {passes} passes"
    );

    // A storm that changes nothing: the files rewritten with the same
    // text, read, and the symlink swapped between identical revisions.
    let before = metric(&address, "stevedore_reconciles_total", "");
    let storm_started = Instant::now();
    let mut swaps = 0;
    while storm_started.elapsed() < Duration::from_secs(3) {
        for rev in ["rev-1", "rev-2"] {
            std::fs::write(root.join(rev).join("web.yaml"), &original).unwrap();
            let _ = std::fs::read_to_string(root.join(rev).join("web.yaml")).unwrap();
        }
        swaps += 1;
        let rev = if swaps % 2 == 0 { "rev-1" } else { "rev-2" };
        let _ = std::fs::remove_file(root.join("next"));
        std::os::unix::fs::symlink(root.join(rev), root.join("next")).unwrap();
        std::fs::rename(root.join("next"), root.join("current")).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    // Let the watcher's quiet window pass, then count.
    std::thread::sleep(Duration::from_millis(2_500));
    let storm = storm_started.elapsed().as_secs_f64();
    let during = metric(&address, "stevedore_reconciles_total", "") - before;
    drain(&lines, &mut seen);
    assert!(
        during <= 1 + (storm / 2.0).ceil() as u64,
        "{during} passes in the {storm:.1} s of the storm and after; only resyncs should run"
    );
    assert!(
        !seen.iter().any(|l| l.contains("specs: changed")),
        "{}",
        seen.join("\n")
    );
    // The controller still answers.
    let health = ureq::get(&format!("http://{address}/healthz"))
        .call()
        .unwrap();
    assert_eq!(health.status(), 200);

    // A real edit (into the revision the link names now) is applied
    // within a second, and makes a pass.
    let target = std::fs::canonicalize(&specs).unwrap().join("web.yaml");
    let before = metric(&address, "stevedore_reconciles_total", "");
    let edited = Instant::now();
    std::fs::write(&target, format!("{original}  mode: DryRun\n")).unwrap();
    wait_for(&lines, "specs: changed; 1 policies loaded", &mut seen);
    let reaction = edited.elapsed();
    assert!(
        reaction < Duration::from_millis(1_500),
        "the edit took {reaction:?} to apply"
    );
    wait_for(&lines, "demo/web/web: Satisfied", &mut seen);
    assert!(metric(&address, "stevedore_reconciles_total", "") > before);
    assert_eq!(
        metric(
            &address,
            "stevedore_spec_reloads_total",
            r#"outcome="changed""#
        ),
        1
    );

    sigterm(&child);
    wait_for(&lines, "shutting down", &mut seen);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// SIGTERM while the first pass is stopping tasks: the batch is finished
/// (each StopTask held 400 ms by the front, so the signal lands after
/// the first), and the process exits 0. Before the handlers were
/// installed ahead of the first pass, the signal killed it at once.
#[tokio::test]
async fn sigterm_during_the_first_pass_lets_its_batch_finish_and_exits_0() {
    let (moto, client) = crate::aws::demo([5, 4, 0, 0, 0, 0]).await;
    let specs = specs_dir("  placement: {azBalanced: true}\n  disruption: {maxUnavailable: 4}\n");
    moto.delay("StopTask", Duration::from_millis(400));
    let mut child = run_controller(
        &moto,
        specs.path().to_str().unwrap(),
        &["--resync", "1h", "--listen", "off"],
    );
    let lines = lines_of(&mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while moto.calls("StopTask") == 0 {
        assert!(Instant::now() < deadline, "no StopTask within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    sigterm(&child);
    let mut seen = vec![];
    wait_for(&lines, "shutting down after 1 reconciles", &mut seen);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", seen.join("\n"));
    let done = seen
        .iter()
        .filter(|l| l.contains("done: stop task"))
        .count();
    assert_eq!(done, 4, "the whole batch:\n{}", seen.join("\n"));
    assert_eq!(stopped(&client).await, 4);
    assert_eq!(moto.calls("StopTask"), 4);
}

/// moto, like ECS, keeps `runningCount` at what it was after tasks are
/// stopped and before replacements start: a second pass must not stop
/// more on its word.
#[tokio::test]
async fn a_second_pass_does_not_spend_the_budget_again_while_runningcount_lags() {
    let (moto, client) = crate::aws::demo([5, 4, 0, 0, 0, 0]).await;
    let specs = specs_dir("  placement: {azBalanced: true}\n  disruption: {maxUnavailable: 4}\n");
    let dir = specs.path().to_str().unwrap();
    let first = stevedore(&moto, &["run", "--specs", dir, "--once"]);
    assert_eq!(first.status.code(), Some(0));
    assert_eq!(stopped(&client).await, 4);
    let running_count = client
        .describe_services()
        .cluster("demo")
        .services("web")
        .send()
        .await
        .unwrap()
        .services()[0]
        .running_count();
    let second = stevedore(&moto, &["run", "--specs", dir, "--once"]);
    let text = String::from_utf8_lossy(&second.stdout);
    assert_eq!(stopped(&client).await, 4, "no fifth stop:\n{text}");
    assert!(
        text.contains(&format!(
            "Paused: not at steady state: 5 running (ECS counts {running_count}, the task list holds 5)"
        )),
        "{text}"
    );
}

/// A lease table that does not exist is an error at start, with the
/// reason; a lease that stops answering later makes `/readyz` say so.
#[tokio::test]
async fn a_lease_that_cannot_be_written_is_an_error_at_start_and_not_ready_later() {
    let (moto, _client) = crate::aws::demo([1, 1, 1, 1, 1, 1]).await;
    let specs = specs_dir(POLICY);
    let dir = specs.path().to_str().unwrap();
    let out = stevedore(
        &moto,
        &[
            "run",
            "--specs",
            dir,
            "--once",
            "--lease-table",
            "no-such-table",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("lease no-such-table/") && stderr.contains("ResourceNotFound"),
        "{stderr}"
    );

    let dynamodb = dynamodb(&moto);
    lease_table(&dynamodb).await;
    let mut child = run_controller(
        &moto,
        dir,
        &[
            "--resync",
            "1h",
            "--listen",
            "127.0.0.1:0",
            "--lease-table",
            "stevedore-leases",
            "--lease-duration",
            "3s",
        ],
    );
    let lines = lines_of(&mut child);
    let mut seen = vec![];
    let address = status_address(&lines, &mut seen);
    wait_for(&lines, "demo/web/web: Satisfied", &mut seen);
    let readyz = |address: &str| {
        ureq::get(&format!("http://{address}/readyz"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(readyz(&address), 200);
    dynamodb
        .delete_table()
        .table_name("stevedore-leases")
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while readyz(&address) != 503 {
        assert!(
            Instant::now() < deadline,
            "/readyz still 200 after the table went"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    lease_table(&dynamodb).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while readyz(&address) != 200 {
        assert!(
            Instant::now() < deadline,
            "/readyz not 200 again with the table back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    sigterm(&child);
    wait_for(&lines, "shutting down", &mut seen);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
