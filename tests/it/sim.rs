//! The controller against the simulator, in virtual time: every shipped
//! scenario, the CLI around it, and random small clusters.

use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use stevedore::controller::PassKind;
use stevedore::plan::State;
use stevedore::sim::run::{self, Display, Report, ServiceReport};
use stevedore::sim::scenario;

use crate::repo;

fn run_report(scenario: scenario::Scenario) -> Report {
    run::run(
        scenario,
        Display {
            timeline: None,
            progress: false,
            series: false,
        },
    )
}

fn run_file(name: &str) -> Report {
    run_report(scenario::load(&repo(&format!("examples/scenarios/{name}.yaml"))).unwrap())
}

fn service<'a>(report: &'a Report, name: &str) -> &'a ServiceReport {
    report
        .services
        .iter()
        .find(|s| s.service == name)
        .unwrap_or_else(|| panic!("no {name} in {report:#?}"))
}

/// What must hold for every scenario: moves made equal the optimum for
/// every policy that acts, nothing went other than predicted, and a policy
/// that cannot be satisfied moved nothing. The simulated ECS places with
/// the planner's own placement model and "optimal" is the planner's own
/// count, so this checks the run loop's bookkeeping; the planner itself is
/// held to references that share none of its code in `plan::reference`
/// (an enumerated optimum, every tie ECS may break) and
/// `plan::placement::tests` (placement and scale-in from the instances).
fn check_invariants(report: &Report) {
    assert!(
        report.violations.is_empty(),
        "{}: {:#?}",
        report.scenario,
        report.violations
    );
    for s in &report.services {
        assert_eq!(s.mispredicted_moves, 0, "{}: {s:#?}", report.scenario);
        // Every state says why, a policy of scaling alone too.
        assert!(!s.reason.is_empty(), "{}: {s:#?}", report.scenario);
        // The moves ECS's own AZ rebalancing made count towards the optimum.
        let moved = s.tasks_moved + s.ecs_rebalancing_stops;
        match s.state {
            State::Satisfied => assert_eq!(moved, s.optimal_moves, "{}: {s:#?}", report.scenario),
            State::Unsatisfiable => assert_eq!(s.tasks_moved, 0, "{}: {s:#?}", report.scenario),
            _ => assert!(moved <= s.optimal_moves, "{}: {s:#?}", report.scenario),
        }
    }
}

#[test]
fn every_shipped_scenario_keeps_the_invariants() {
    let mut names = vec![];
    for entry in std::fs::read_dir(repo("examples/scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "yaml") {
            names.push(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(names.len() >= 5, "{names:?}");
    for name in names {
        if name == "model-disagrees" {
            // Its simulated ECS places against the model on purpose: its
            // moves are mispredicted by design (`budgets.rs` checks it).
            continue;
        }
        check_invariants(&run_file(&name));
    }
}

#[test]
fn a_host_joining_moves_only_what_balances_each_service() {
    let report = run_file("host-joins-after-scale-out");
    let web = service(&report, "web");
    assert_eq!(
        (
            web.state,
            web.tasks_moved,
            web.optimal_moves,
            web.forced_redeploy_tasks
        ),
        (State::Satisfied, 2, 2, 6)
    );
    assert_eq!(
        web.tasks_per_zone.values().copied().collect::<Vec<_>>(),
        [2, 2, 2]
    );
    // maxUnavailable 1: never more than one task down at a time.
    assert_eq!(web.peak_unavailable, 1);
    let api = service(&report, "api-orders");
    assert_eq!(
        (
            api.state,
            api.tasks_moved,
            api.optimal_moves,
            api.forced_redeploy_tasks
        ),
        (State::Satisfied, 3, 3, 9)
    );
    assert!(api.peak_unavailable <= 2);
    // `batch` has no policy and is never touched.
    assert!(report.services.iter().all(|s| s.service != "batch"));
    assert_eq!(report.api_calls.get("StopTask"), Some(&5));
}

#[test]
fn a_zone_left_out_is_fixed_once_there_is_room() {
    let report = run_file("binpack-leaves-a-zone-out");
    let checkout = service(&report, "checkout");
    assert_eq!(
        (checkout.state, checkout.tasks_moved),
        (State::Satisfied, 1)
    );
    assert!(
        checkout.converged_at_s.unwrap() >= 180.0,
        "not before the batch job ends at 3m"
    );
}

#[test]
fn the_unsatisfiable_scenario_says_why_and_moves_nothing() {
    let report = run_file("strategy-prevents-rebalancing");
    let reports = service(&report, "reports");
    assert_eq!(
        (reports.state, reports.tasks_moved),
        (State::Unsatisfiable, 0)
    );
    assert!(
        reports.reason.contains("does not spread on zone"),
        "{}",
        reports.reason
    );
    // The DryRun policy plans moves but none is executed.
    let search = service(&report, "search");
    assert_eq!((search.state, search.tasks_moved), (State::Converging, 0));
    assert!(search.optimal_moves > 0);
    assert_eq!(report.api_calls.get("StopTask"), None);
}

#[test]
fn one_task_per_host_follows_hosts_and_ignores_draining_ones() {
    let report = run_file("one-task-per-host");
    let agent = service(&report, "log-agent");
    assert_eq!(agent.state, State::Satisfied);
    // 4 hosts + 2 joined - 1 drained then terminated.
    assert_eq!(agent.tasks_per_zone.values().sum::<u32>(), 5);
    assert_eq!(report.api_calls.get("UpdateService"), Some(&2));
}

#[test]
fn a_zone_failure_is_left_alone_and_recovery_rebalanced() {
    let report = run_file("zone-failure-and-recovery");
    let web = service(&report, "web");
    assert_eq!(
        (web.state, web.tasks_moved, web.optimal_moves),
        (State::Satisfied, 2, 2)
    );
    assert_eq!(web.skew.values().copied().max(), Some(0));
    // Nothing is stopped while the zone is down; its recovery is answered
    // within the debounce window (2 s) plus a read and a verify, or sooner
    // when a resync falls due then (here: 1.35 s).
    let reactions: Vec<(f64, Option<f64>)> = report
        .reactions
        .iter()
        .map(|r| (r.at_s, r.first_stop_s))
        .collect();
    assert_eq!(reactions.len(), 2, "{:?}", report.reactions);
    assert_eq!(reactions[0].0, 120.0);
    assert_eq!(reactions[1].0, 360.0);
    let after_recovery = reactions[1].1.expect("a stop after the recovery");
    assert!(
        after_recovery > 0.0 && after_recovery <= 5.0,
        "{:?}",
        report.reactions
    );
    assert_eq!(reactions[0].1, Some(240.0 + after_recovery));
}

#[test]
fn faults_are_retried_and_never_acted_on() {
    let text = std::fs::read_to_string(repo("examples/scenarios/host-joins-after-scale-out.yaml"))
        .unwrap();
    // Tasks start and stop within a second, so events held back for a few
    // seconds arrive after the next change of the same task.
    let text = text.replace(
        "  timeline:",
        "  taskStartDelay: 1s\n  taskStopDelay: 1s\n  faults: {apiErrorRate: 0.2, throttleRate: 0.1, eventLossRate: 0.3, eventDuplicationRate: 0.3, eventReordering: true}\n  timeline:",
    );
    // Over a few seeds: each run converges within its invariants, and
    // between them every kind of fault was met and handled (an event
    // arriving after a newer one of its task is rare: 4 in these 8 runs).
    let (mut failed, mut duplicate, mut stale) = (0, 0, 0);
    for seed in 1..=8 {
        let text = text.replacen("spec:\n", &format!("spec:\n  seed: {seed}\n"), 1);
        let s = scenario::from_text("faulty.yaml", &text, &repo("examples/scenarios")).unwrap();
        let report = run_report(s);
        assert_eq!(report.events_malformed, 0);
        check_invariants(&report);
        for name in ["web", "api-orders"] {
            assert_eq!(
                service(&report, name).state,
                State::Satisfied,
                "{name} converges despite the faults (seed {seed}): {report:#?}"
            );
        }
        failed += report.failed_snapshots;
        duplicate += report.events_duplicate;
        stale += report.events_stale;
    }
    assert!(failed > 0, "the faults were injected");
    assert!(
        duplicate > 0 && stale > 0,
        "duplicates ({duplicate}) and reordering ({stale}) were seen and dropped"
    );
}

/// The simulator runs production's schedule: a read that fails every time
/// is retried after 1, 2, 4, ... s, up to a minute, not every second (the
/// simulator's own loop once read again every second for 3 minutes).
#[test]
fn a_read_failing_again_and_again_is_retried_backing_off_to_a_minute() {
    let text = std::fs::read_to_string(repo("examples/scenarios/host-joins-after-scale-out.yaml"))
        .unwrap();
    let duration = text
        .lines()
        .find(|l| l.trim_start().starts_with("duration:"))
        .unwrap()
        .to_owned();
    let text = text
        .replace(&duration, "  duration: 3m")
        .replace("  timeline:", "  faults: {throttleRate: 1.0}\n  timeline:");
    let s = scenario::from_text("throttled.yaml", &text, &repo("examples/scenarios")).unwrap();
    let report = run_report(s);
    // Each failed read is retried 1, 2, 4 ... s after it ended, up to a
    // minute: passes at about 0, 1, 3, 7, 15, 31, 63 and 123 s (each read
    // takes its calls' virtual time before it fails); the next would come
    // after 183 s.
    assert_eq!(report.reconciles, 8, "{report:#?}");
    assert_eq!(report.failed_snapshots, 8);
    let waits: Vec<f64> = report
        .passes
        .windows(2)
        .map(|w| w[1].at_s - (w[0].at_s + w[0].took_s))
        .collect();
    // The host joining at 60 s sends events: they wait for the retry.
    for (wait, backoff) in waits.iter().zip([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0]) {
        assert!(
            (wait - backoff).abs() < 0.002,
            "{waits:?} {:?}",
            report.passes
        );
    }
    assert!(report.passes.iter().all(|p| p.kind == PassKind::Full));
    assert!(report.passes.iter().all(|p| !p.ok && p.took_s > 0.0));
    assert!(report.services.iter().all(|s| s.tasks_moved == 0));
}

/// A receive is kept in flight while a pass runs: with every call taking
/// 2 s, a full pass takes 12 s, yet the events of a zone failing in the
/// middle of one are taken in the moment they are queued, not when the
/// pass ends.
#[test]
fn events_are_taken_in_while_a_long_pass_runs() {
    let text = std::fs::read_to_string(repo("examples/scenarios/zone-failure-and-recovery.yaml"))
        .unwrap()
        .replace("  timeline:", "  apiLatency: 2s\n  timeline:")
        .replace("    - at: 2m\n", "    - at: 80s\n");
    let s = scenario::from_text("slow.yaml", &text, &repo("examples/scenarios")).unwrap();
    let report = run_report(s);
    check_invariants(&report);
    // The zone fails at 80 s, during the full pass that starts at 74 s.
    let during = report
        .passes
        .iter()
        .find(|p| p.at_s < 80.0 && p.at_s + p.took_s > 80.0)
        .unwrap_or_else(|| panic!("no pass runs at 80 s: {:#?}", report.passes));
    assert!(during.took_s >= 10.0, "{during:?}");
    assert!(report.events_delivered > 0);
    assert_eq!(report.event_wait_max_s, 0.0, "{:#?}", report.passes);
}

/// A zone recovering under 500 services: every one of them needs moves,
/// yet the first stop comes within the debounce (2 s) and one batch's
/// reads, as the stops are verified 50 services at a time (2.27 s here;
/// verifying all 500 first: 4.71 s, and 125 s at 5,000 services), and one
/// pass still stops them all; every service converges with the optimal
/// moves.
#[test]
fn a_rebalance_of_many_services_is_verified_in_batches_and_converges_optimally() {
    let g = scenario::GenerateSpec {
        hosts: 300,
        services: 500,
        tasks: 5_000,
        zones: 3,
        skewed_share: 0.0,
    };
    let mut s = scenario::generated(g, 3, 30 * 60_000);
    s.timeline = vec![
        (60_000, scenario::Event::ZoneFails("us-east-1c".into())),
        (240_000, scenario::Event::ZoneRecovers("us-east-1c".into())),
    ];
    let report = run_report(s);
    check_invariants(&report);
    let recovery = &report.reactions[1];
    let first_stop = recovery.first_stop_s.expect("stops after the recovery");
    assert!(first_stop < 3.0, "{:?}", report.reactions);
    let most = report.passes.iter().map(|p| p.stops).max().unwrap_or(0);
    assert!(most > 400, "{:?}", report.passes);
    for s in &report.services {
        assert_eq!(s.state, State::Satisfied, "{s:#?}");
        assert_eq!(s.tasks_moved, s.optimal_moves, "{s:#?}");
    }
}

#[test]
fn a_host_joining_during_a_rebalance_with_events_lost_stays_within_budget_and_converges() {
    let text = std::fs::read_to_string(repo("examples/scenarios/host-joins-after-scale-out.yaml"))
        .unwrap();
    // A second host joins zone c while the first moves are under way, and
    // half the events are lost: partial reads see only what arrived, and
    // the resync fills the gaps.
    let text = text
        .replace(
            "  timeline:",
            "  faults: {eventLossRate: 0.5}\n  timeline:",
        )
        .replace(
            "      hostJoins: {name: c, zone: us-east-1c, count: 1}",
            "      hostJoins: {name: c, zone: us-east-1c, count: 1}\n    - at: 85s\n      hostJoins: {name: d, zone: us-east-1c, count: 1}",
        );
    let s = scenario::from_text("joins.yaml", &text, &repo("examples/scenarios")).unwrap();
    let report = run_report(s);
    check_invariants(&report);
    for (name, budget) in [("web", 1), ("api-orders", 2)] {
        let s = service(&report, name);
        assert_eq!(s.state, State::Satisfied, "{s:#?}");
        assert!(s.peak_unavailable <= budget, "{s:#?}");
    }
}

/// The simulator's accounting of a full read is held to the AWS backend's
/// calls on the wire by `reads.rs`; here, at full scale, it is the floor.
#[test]
fn full_resync_calls_are_exactly_the_floor_at_full_scale_after_the_first() {
    // 5,000 hosts, 5,000 services, 100,000 tasks: one full read.
    let g = scenario::GenerateSpec {
        hosts: 5_000,
        services: 5_000,
        tasks: 100_000,
        zones: 3,
        skewed_share: 0.0,
    };
    let backend = stevedore::sim::SimBackend::new(scenario::generated(g, 7, 0).sim);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    use stevedore::backend::Backend;
    let total = |b: &stevedore::sim::SimBackend| -> u64 { b.api_calls().values().sum() };
    let snapshot = runtime.block_on(backend.snapshot("demo")).unwrap();
    assert_eq!(snapshot.tasks.len(), 100_000);
    let floor = 5_000u64.div_ceil(100)
        + 5_000u64.div_ceil(10)
        + 2 * 5_000u64.div_ceil(100)
        + 2 * 100_000u64.div_ceil(100);
    // The first read also describes each service's task definition, once.
    let first = total(&backend);
    assert_eq!(first, floor + 5_000);
    runtime.block_on(backend.snapshot("demo")).unwrap();
    let second = total(&backend) - first;
    assert_eq!(second, floor);
    assert_eq!((first, second), (7_650, 2_650), "the README's figures");
}

/// At 5,000 hosts, 5,000 services and 100,000 tasks, the first full read
/// takes the time ECS's read rate allows its calls (a burst of 100, then 20
/// a second), no less and little more, and no throttle reaches the loop.
#[test]
fn a_first_full_read_at_full_scale_takes_what_the_read_rate_allows() {
    let out = stevedore(&[
        "sim",
        "--generate",
        "5000,5000,100000",
        "--duration",
        "1m",
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &report["passes"][0];
    assert_eq!(first["kind"], "full");
    assert_eq!(first["ok"], true);
    let calls = first["readCalls"].as_f64().unwrap();
    // Every service, host and task, and each service's task definition.
    assert_eq!(calls, 7_650.0);
    let floor = (calls - 100.0) / 20.0;
    let read = first["readS"].as_f64().unwrap();
    assert!(
        (floor..=floor * 1.1).contains(&read),
        "read {read} s, floor {floor} s"
    );
    assert_eq!(report["failedSnapshots"], 0);
    assert_eq!(report["apiThrottles"], serde_json::json!({}));
}

fn stevedore(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stevedore"))
        .args(args)
        .current_dir(repo(""))
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn sim_without_arguments_runs_the_embedded_demo() {
    let out = stevedore(&["sim"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("scenario host-joins-after-scale-out"),
        "{text}"
    );
    assert!(
        text.contains("moved 2 (optimal 2, a forced redeploy: 6)"),
        "{text}"
    );
    assert!(
        text.contains("places the replacement on zone us-east-1c"),
        "{text}"
    );
}

#[test]
fn sim_json_report_has_the_promised_fields() {
    let out = stevedore(&[
        "sim",
        "examples/scenarios/zone-failure-and-recovery.yaml",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let web = &report["services"][0];
    for field in [
        "tasksPerZone",
        "skew",
        "tasksMoved",
        "optimalMoves",
        "forcedRedeployTasks",
        "peakUnavailable",
        "convergedAtS",
    ] {
        assert!(web.get(field).is_some(), "{field} missing: {web}");
    }
    assert!(report["apiCalls"]["DescribeTasks"].as_u64().unwrap() > 0);
}

#[test]
fn plan_against_a_scenario_explains_every_action() {
    let out = stevedore(&[
        "plan",
        "--sim",
        "examples/scenarios/strategy-prevents-rebalancing.yaml",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("reports-balanced/reports: Unsatisfiable (the service's placement strategy (binpack(memory)) does not spread on zone"), "{text}");
    assert!(
        text.contains("(dry run: not executed)\n      move 1 of 2: zone skew 3 (max 1)"),
        "{text}"
    );
    assert!(
        text.contains("  - later, after the moves above: move 2 of 2: "),
        "{text}"
    );
    assert!(
        text.contains("search-trial/search: Converging [dry run] (2 moves needed"),
        "{text}"
    );
    assert!(
        text.contains("1 action (0 executable, 1 dry run)"),
        "{text}"
    );

    let json = stevedore(&[
        "plan",
        "--sim",
        "examples/scenarios/strategy-prevents-rebalancing.yaml",
        "--output",
        "json",
    ]);
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(plan["actions"][0]["action"], "stopTask");
    assert_eq!(plan["actions"][0]["dryRun"], true);
}

/// `plan` says where the cluster's budget stands, first, in words and in
/// the JSON.
#[test]
fn plan_says_where_the_budget_stands() {
    let out = stevedore(&["plan", "--sim", "examples/scenarios/budget-rate.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(
            "DisruptionBudget slow-and-steady: 0 of 3 moves in the last 10m; stops allowed\n"
        ),
        "{text}"
    );
    let json = stevedore(&[
        "plan",
        "--sim",
        "examples/scenarios/budget-rate.yaml",
        "--output",
        "json",
    ]);
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        plan["budget"],
        serde_json::json!({"budget": "slow-and-steady", "inFlight": 0, "movesInPeriod": 0, "movesMax": 3, "per": "10m", "windowClosed": false})
    );
    // Without a budget, no such line.
    let out = stevedore(&["plan", "--sim", "examples/scenarios/load-ramp.yaml"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("DisruptionBudget"));
}

#[test]
fn plan_with_other_specs_uses_them() {
    let out = stevedore(&[
        "plan",
        "--sim",
        "examples/scenarios/host-joins-after-scale-out.yaml",
        "--specs",
        "specs",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("web-balanced/web:"), "{text}");
    let bad = stevedore(&[
        "plan",
        "--sim",
        "examples/scenarios/host-joins-after-scale-out.yaml",
        "--specs",
        "tests/fixtures/invalid/typos.yaml",
    ]);
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn a_scenario_with_invalid_policies_is_reported_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo("examples/scenarios/zone-failure-and-recovery.yaml"))
        .unwrap()
        .replace("maxSkew: 1}]", "maxskew: 1}]");
    let path = dir.path().join("s.yaml");
    std::fs::write(&path, text).unwrap();
    let out = stevedore(&["sim", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("#policies[0]:") && err.contains("did you mean `maxSkew`?"),
        "{err}"
    );
}

#[test]
fn scenario_schema_is_committed_and_accepts_every_shipped_scenario() {
    let committed = std::fs::read_to_string(repo(stevedore::schema::SCENARIO_SCHEMA_PATH)).unwrap();
    assert!(
        committed == stevedore::schema::scenario_json(),
        "run `cargo run -- schema scenario > {}`",
        stevedore::schema::SCENARIO_SCHEMA_PATH
    );
    // The measurements at scale too (too large to run in debug builds).
    let files: Vec<_> = ["examples/scenarios", "benches/scenarios"]
        .into_iter()
        .flat_map(|dir| std::fs::read_dir(repo(dir)).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    let verdicts = crate::schema::python_verdicts(stevedore::schema::SCENARIO_SCHEMA_PATH, &files);
    assert_eq!(verdicts.len(), files.len());
    for (file, _, valid, errors) in verdicts {
        assert!(valid, "{file}: {errors:?}");
    }
}

/// Builds a scenario: hosts in three zones, one service with the given
/// tasks per host, an azBalanced policy (and a host constraint if asked).
fn random_scenario(
    hosts_per_zone: [u32; 3],
    layout: &[u32],
    host_skew: Option<u32>,
    seed: u64,
) -> String {
    let mut hosts = String::new();
    let mut names = vec![];
    for (z, n) in hosts_per_zone.iter().enumerate() {
        let zone = ["a", "b", "c"][z];
        for k in 1..=*n {
            hosts.push_str(&format!(
                "    - {{name: {zone}{k}, zone: us-east-1{zone}, cpu: 2048, memory: 4096}}\n"
            ));
            names.push(format!("{zone}{k}"));
        }
    }
    let tasks: Vec<String> = names
        .iter()
        .zip(layout)
        .filter(|(_, n)| **n > 0)
        .map(|(h, n)| format!("{h}: {n}"))
        .collect();
    let host = host_skew.map_or(String::new(), |s| {
        format!("\n            spread: [{{topologyKey: host, maxSkew: {s}}}]")
    });
    format!(
        "apiVersion: stevedore.io/v1alpha1\nkind: Scenario\nmetadata: {{name: random}}\nspec:\n  seed: {seed}\n  duration: 20m\n  hosts:\n{hosts}  services:\n    - name: web\n      strategy: [\"spread(attribute:ecs.availability-zone)\", \"spread(instanceId)\"]\n      cpu: 512\n      memory: 1024\n      tasks: {{{}}}\n  policies:\n    - inline: |\n        apiVersion: stevedore.io/v1alpha1\n        kind: ServicePolicy\n        metadata: {{name: web}}\n        spec:\n          target: {{cluster: demo, service: web}}\n          placement:\n            azBalanced: true{host}\n          disruption: {{maxUnavailable: 2}}\n",
        tasks.join(", ")
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    /// Over a whole run on a random small cluster, the moves made add up to
    /// the optimum computed at the start (never more), and a policy that
    /// can be satisfied is.
    #[test]
    fn whole_runs_make_exactly_the_optimal_moves(
        hosts_per_zone in proptest::array::uniform3(1u32..=2),
        layout in proptest::collection::vec(0u32..=4, 6),
        host_skew in proptest::option::of(1u32..=3),
        seed in 0u64..1000,
    ) {
        let text = random_scenario(hosts_per_zone, &layout, host_skew, seed);
        let s = scenario::from_text("random.yaml", &text, Path::new(".")).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let initial = stevedore::plan::plan(&s.policies, &s.sim.state(), 0);
        let report = run_report(s);
        let web = &report.services[0];
        prop_assert_eq!(web.mispredicted_moves, 0, "{}", text);
        prop_assert!(web.tasks_moved <= initial.statuses[0].moves_remaining.max(web.optimal_moves), "{}\n{:#?}", text, web);
        if web.state == State::Satisfied {
            prop_assert_eq!(web.tasks_moved, web.optimal_moves, "{}\n{:#?}", text, web);
            prop_assert_eq!(web.tasks_moved, initial.statuses[0].moves_remaining, "{}\n{:#?}", text, web);
        }
        prop_assert!(web.peak_unavailable <= 2, "{}\n{:#?}", text, web);
    }
}

fn draining_scenario(minimum_healthy_percent: u32) -> Report {
    let text = format!(
        "apiVersion: stevedore.io/v1alpha1\nkind: Scenario\nmetadata: {{name: drain}}\nspec:\n  duration: 5m\n  hosts:\n    - {{name: a, zone: us-east-1a, count: 2}}\n    - {{name: b, zone: us-east-1b, count: 2}}\n  services:\n    - name: web\n      minimumHealthyPercent: {minimum_healthy_percent}\n      tasks: {{a-1: 2, b-1: 2}}\n  policies:\n    - inline: |\n        apiVersion: stevedore.io/v1alpha1\n        kind: ServicePolicy\n        metadata: {{name: web}}\n        spec:\n          target: {{cluster: demo, service: web}}\n          placement: {{azBalanced: true}}\n  timeline:\n    - {{at: 1m, hostDrains: a-1}}\n"
    );
    run_report(scenario::from_text("drain.yaml", &text, Path::new(".")).unwrap())
}

#[test]
fn draining_follows_the_deployment_configuration() {
    // ECS's defaults (100% healthy, 200% maximum): replacements run before
    // the drained tasks stop, so the service is never short.
    // (A rebalancing move after it may take one task down, within budget.)
    let strict = draining_scenario(100);
    let web = service(&strict, "web");
    assert!(
        web.peak_unavailable <= u32::from(web.tasks_moved > 0),
        "{web:#?}"
    );
    assert_eq!(web.tasks_per_zone.values().sum::<u32>(), 4);
    check_invariants(&strict);
    // 50%: both drained tasks stop at once, and the service runs two short.
    let loose = draining_scenario(50);
    assert!(
        service(&loose, "web").peak_unavailable >= 2,
        "{:#?}",
        service(&loose, "web")
    );
}

/// The calls one event-driven read costs, after a full read, for a cluster
/// of the given size: a host joins, then one task is stopped and replaced.
/// Checks that each read ends with the same view a full read gives.
fn calls_after_events(hosts: u32, services: u32, tasks: u32) -> (u64, u64) {
    use stevedore::backend::Backend;
    use stevedore::controller::ClusterView;
    use stevedore::model::{Instance, Resources};
    use stevedore::sim::SimBackend;

    let g = scenario::GenerateSpec {
        hosts,
        services,
        tasks,
        zones: 3,
        skewed_share: 0.0,
    };
    let backend = SimBackend::new(scenario::generated(g, 7, 0).sim);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut view = ClusterView::default();
    let total = |b: &SimBackend| -> u64 { b.api_calls().values().sum() };
    // Sorted task records, hosts and services: the view's content, whatever its order.
    let content = |s: &stevedore::model::ClusterSnapshot| {
        let mut tasks: Vec<_> = s
            .tasks
            .iter()
            .map(|t| stevedore::backend::refresh::TaskRecord::of(s, t))
            .map(|r| format!("{r:?}"))
            .collect();
        tasks.sort();
        let mut hosts: Vec<String> = s.instances.iter().map(|i| format!("{i:?}")).collect();
        hosts.sort();
        let mut services: Vec<String> = s.services.iter().map(|x| format!("{x:?}")).collect();
        services.sort();
        (tasks, hosts, services)
    };
    let deliver = |view: &mut ClusterView| {
        for event in backend.lock().take_events() {
            let event = stevedore::backend::events::parse(&event.to_string()).unwrap();
            view.note(&event);
        }
    };
    runtime.block_on(async {
        view.read(&backend, "demo", true).await.unwrap();

        // One host joins.
        let size = Resources {
            cpu: 4096,
            memory: 8192,
        };
        backend.lock().add_instance(Instance::active(
            "joined",
            "us-east-1a",
            size,
            Default::default(),
        ));
        deliver(&mut view);
        let before = total(&backend);
        let snapshot = view.read(&backend, "demo", false).await.unwrap();
        let host_event = total(&backend) - before;
        assert_eq!(
            content(snapshot),
            content(&backend.lock().state()),
            "the joined host is in the view"
        );

        // One task stops and its replacement starts.
        let victim = backend.lock().state().tasks[0].id.clone();
        backend.stop_task("demo", &victim, "test").await.unwrap();
        let now = backend.lock().now;
        backend.lock().advance(now + 120_000);
        deliver(&mut view);
        let before = total(&backend);
        let snapshot = view.read(&backend, "demo", false).await.unwrap();
        let task_events = total(&backend) - before;
        assert!(snapshot.tasks.iter().all(|t| t.id != victim));
        assert_eq!(
            content(snapshot),
            content(&backend.lock().state()),
            "the stop and the replacement are in the view"
        );
        (host_event, task_events)
    })
}

#[test]
fn calls_after_one_event_do_not_grow_with_the_cluster() {
    let small = calls_after_events(30, 30, 600);
    let full = calls_after_events(5_000, 5_000, 100_000);
    // A host event: DescribeContainerInstances. A task stopped and replaced:
    // DescribeTasks, DescribeServices, DescribeContainerInstances.
    assert_eq!(small, (1, 3));
    assert_eq!(full, small);
}

/// Direction changes of a run's scaling steps, each with the seconds since
/// the step before it.
fn reversals(steps: &[run::ScalingStep]) -> Vec<f64> {
    steps
        .windows(2)
        .filter(|w| (w[0].to > w[0].from) != (w[1].to > w[1].from))
        .map(|w| w[1].at_s - w[0].at_s)
        .collect()
}

#[test]
fn a_load_ramp_is_followed_in_steps_within_the_bounds_and_stays_balanced() {
    let report = run_file("load-ramp");
    check_invariants(&report);
    let web = service(&report, "web");
    let steps = &web.scaling;
    assert!(steps.len() >= 4, "{steps:#?}");
    for s in steps {
        assert!((2..=12).contains(&s.to), "{s:#?}");
        if s.to > s.from {
            // 50% of the count, rounded up, capped at maxTasks.
            assert_eq!(s.to, (s.from + s.from.div_ceil(2)).min(12), "{s:#?}");
        } else {
            assert_eq!(s.to, s.from - 1, "{s:#?}");
        }
        assert_eq!(s.skew_excess_before, 0, "balanced before each step: {s:#?}");
    }
    // Out while the load rises (5m to 15m), in only after it fell (from 40m).
    let first_in = steps.iter().find(|s| s.to < s.from).expect("a scale-in");
    assert!(first_in.at_s >= 40.0 * 60.0, "{first_in:#?}");
    assert!(
        steps
            .iter()
            .filter(|s| s.to > s.from)
            .all(|s| s.at_s <= 15.0 * 60.0)
    );
    assert_eq!(reversals(steps).len(), 1, "up, then down: {steps:#?}");
    // Cooldowns: 1m between scale-outs, 2m after any step before a scale-in.
    for w in steps.windows(2) {
        let gap = w[1].at_s - w[0].at_s;
        let cooldown = if w[1].to > w[1].from { 60.0 } else { 120.0 };
        assert!(gap >= cooldown, "{gap}s between {w:#?}");
    }
    assert!(web.skew.values().all(|s| *s <= 1), "{web:#?}");
}

#[test]
fn a_noisy_metric_with_a_gap_never_flaps() {
    let report = run_file("noisy-metric");
    let api = service(&report, "api");
    let steps = &api.scaling;
    assert!(!steps.is_empty());
    // A scale-in needs five minutes since the last step, whichever way.
    for w in steps.windows(2).filter(|w| w[1].to < w[1].from) {
        let gap = w[1].at_s - w[0].at_s;
        assert!(gap >= 300.0, "scaled in {gap}s after a step: {steps:#?}");
    }
    // No data from 15m to 20m: the count holds.
    assert!(
        steps.iter().all(|s| !(900.0..1200.0).contains(&s.at_s)),
        "{steps:#?}"
    );
    for s in steps {
        assert!((3..=10).contains(&s.to), "{s:#?}");
    }

    // The same metric under a plain threshold rule (no window, no
    // cooldowns) goes up and down: the window is what keeps it calm.
    let text = std::fs::read_to_string(repo("examples/scenarios/noisy-metric.yaml")).unwrap();
    let text = text.replace(
        "            scaleInBelow: 40\n",
        "            scaleInBelow: 40\n            scaleInStabilization: 0s\n            scaleOutCooldown: 0s\n            scaleInCooldown: 0s\n            scaleOutAfter: 1\n            scaleInAfter: 1\n",
    );
    let plain =
        run_report(scenario::from_text("plain.yaml", &text, &repo("examples/scenarios")).unwrap());
    let plain_steps = service(&plain, "api").scaling.len();
    let plain = reversals(&service(&plain, "api").scaling);
    // Up with the load, down when it falls: one turn-around. A scale-out
    // waits for two periods above (scaleOutAfter's default), so a single
    // high reading just after a scale-in no longer turns the count around
    // (with one period it did, once: down at 24m, up a minute later).
    println!(
        "plain threshold rule: {plain_steps} changes, {} reversals; the policy: {} changes, {} reversals",
        plain.len(),
        steps.len(),
        reversals(steps).len()
    );
    assert!(
        plain.len() >= 5 && reversals(steps).len() <= 1 && steps.len() * 10 <= plain_steps,
        "plain threshold rule: {plain_steps} changes, {} reversals; the policy: {} changes, reversals {:?}",
        plain.len(),
        steps.len(),
        reversals(steps)
    );
}

/// What every shipped scenario ends with: per service, its moves, the
/// optimum, the peak unavailable, the final state and spread, and each
/// scaling step's counts. Times are left out (how long the API takes is
/// the simulator's to model); a change to any of the rest is a change of
/// behaviour, reviewed in `tests/it/snapshots/`.
#[test]
fn every_shipped_scenario_ends_as_pinned() {
    use std::fmt::Write;
    let mut names: Vec<String> = std::fs::read_dir(repo("examples/scenarios"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    let mut out = String::new();
    for name in names {
        let report = run_file(name.trim_end_matches(".yaml"));
        writeln!(out, "{name}: {} failed actions", report.failed_actions).unwrap();
        for s in &report.services {
            writeln!(
                out,
                "  {}/{}: {:?}, moved {} (optimal {}, mispredicted {}), peak unavailable {}, zones {:?}, skew {:?}",
                s.policy,
                s.service,
                s.state,
                s.tasks_moved,
                s.optimal_moves,
                s.mispredicted_moves,
                s.peak_unavailable,
                s.tasks_per_zone,
                s.skew
            )
            .unwrap();
            let steps: Vec<String> = s
                .scaling
                .iter()
                .map(|x| format!("{}->{}", x.from, x.to))
                .collect();
            if !steps.is_empty() {
                writeln!(out, "    scaling {}", steps.join(" ")).unwrap();
            }
        }
    }
    insta::assert_snapshot!(out);
}

/// A policy whose service does not exist is in the report as NotFound,
/// with the name it likely meant, not left out.
#[test]
fn a_policy_matching_nothing_is_in_the_report_as_not_found() {
    let report = crate::run_edited(
        "host-joins-after-scale-out",
        "service: web}",
        "service: webb}",
    );
    let idle: Vec<_> = report
        .services
        .iter()
        .filter(|s| s.state == stevedore::plan::State::NotFound)
        .collect();
    assert_eq!(idle.len(), 1, "{:#?}", report.services);
    assert_eq!(idle[0].policy, "web-balanced");
    assert!(
        idle[0].reason.ends_with("did you mean `web`?"),
        "{}",
        idle[0].reason
    );
}

/// Six tasks in zone a, none in b and c: four moves, one at a time.
fn four_moves(mode: &str) -> scenario::Scenario {
    let text = format!(
        "apiVersion: stevedore.io/v1alpha1\nkind: Scenario\nmetadata: {{name: four}}\nspec:\n  duration: 10m\n  hosts:\n    - {{name: a, zone: us-east-1a, cpu: 4096, memory: 8192}}\n    - {{name: b, zone: us-east-1b, cpu: 4096, memory: 8192}}\n    - {{name: c, zone: us-east-1c, cpu: 4096, memory: 8192}}\n  services:\n    - name: web\n      cpu: 256\n      memory: 512\n      tasks: {{a: 6}}\n  policies:\n    - inline: |\n        apiVersion: stevedore.io/v1alpha1\n        kind: ServicePolicy\n        metadata: {{name: web}}\n        spec:\n          target: {{cluster: demo, service: web}}\n          mode: {mode}\n          placement: {{azBalanced: true}}\n          disruption: {{maxUnavailable: 1}}\n"
    );
    scenario::from_text("four.yaml", &text, Path::new(".")).unwrap()
}

#[test]
fn moves_are_numbered_across_batches_and_counted_in_english() {
    let report = run_report(four_moves("Enforce"));
    let stops: Vec<&str> = report
        .actions
        .iter()
        .filter(|a| matches!(a.action.kind, stevedore::plan::ActionKind::StopTask { .. }))
        .map(|a| a.action.reason.as_str())
        .collect();
    assert_eq!(stops.len(), 4, "{stops:#?}");
    for (i, reason) in stops.iter().enumerate() {
        assert!(
            reason.starts_with(&format!("move {} of 4: ", i + 1)),
            "{stops:#?}"
        );
    }
    assert!(
        report
            .actions
            .iter()
            .all(|a| !a.action.dry_run && a.error.is_none())
    );
    let web = service(&report, "web");
    assert_eq!((web.state, web.tasks_moved), (State::Satisfied, 4));
    // One move left: "1 move needed", not "1 moves needed".
    let s = four_moves("Enforce");
    let mut state = s.sim.state();
    // Three tasks already moved (to b, c, b): one more is needed.
    let host = |name: &str| state.instances.iter().position(|i| i.id == name).unwrap();
    let moved = [host("b"), host("c"), host("b")];
    for (t, to) in moved.into_iter().enumerate() {
        state.tasks[t].instance = Some(to);
    }
    let plan = stevedore::plan::plan(&s.policies, &state, 0);
    assert!(
        plan.statuses[0].reason.starts_with("1 move needed, 1 now"),
        "{:#?}",
        plan.statuses[0]
    );
}

#[test]
fn a_dry_run_lists_every_move_it_would_make_and_says_it_is_one() {
    let s = four_moves("DryRun");
    let plan = stevedore::plan::plan(&s.policies, &s.sim.state(), 0);
    let web = &plan.statuses[0];
    assert!(web.dry_run);
    assert!(
        web.reason.contains("dry run: nothing is stopped"),
        "{web:#?}"
    );
    assert_eq!(plan.actions.len(), 1);
    assert!(plan.actions[0].reason.starts_with("move 1 of 4: "));
    let later: Vec<&str> = web.later_moves.iter().map(|m| &m[..11]).collect();
    assert_eq!(later, ["move 2 of 4", "move 3 of 4", "move 4 of 4"]);
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["statuses"][0]["dryRun"], true);
    assert_eq!(
        json["statuses"][0]["laterMoves"].as_array().unwrap().len(),
        3
    );

    // Over a run: nothing stopped, and the planned move reported once.
    let report = run_report(four_moves("DryRun"));
    assert_eq!(service(&report, "web").tasks_moved, 0);
    assert_eq!(report.actions.len(), 1, "{:#?}", report.actions);
    assert!(report.actions[0].action.dry_run);
}

#[test]
fn a_broken_scenario_is_reported_once_at_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: stevedore.io/v1alpha1\nkind: Scenario\nmetadata: {name: bad}\nspec:\n  hosts: [{name: a, zone: us-east-1a}]\n  services: [{name: web, tasks: {a: 1}}]\n  policies: [{file: web.yaml}]\n",
    )
    .unwrap();
    let out = stevedore(&["sim", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("error: error"), "{stderr}");
    assert!(
        stderr.contains("error[unknown-field]: unknown field `file`"),
        "{stderr}"
    );
    assert!(stderr.contains("bad.yaml:7:15"), "{stderr}");
    assert!(
        stderr.ends_with("error: the scenario is invalid\n"),
        "{stderr}"
    );
}

#[test]
fn one_task_per_host_moves_a_task_off_an_excluded_host_onto_an_uncovered_one() {
    let text = "apiVersion: stevedore.io/v1alpha1\nkind: Scenario\nmetadata: {name: cover}\nspec:\n  duration: 5m\n  hosts:\n    - {name: a1, zone: us-east-1a, attributes: {role: ingress}}\n    - {name: x1, zone: us-east-1a, attributes: {role: batch}}\n    - {name: b1, zone: us-east-1b, attributes: {role: ingress}}\n    - {name: c1, zone: us-east-1c, attributes: {role: ingress}}\n  services:\n    - name: agent\n      constraints: [distinctInstance]\n      cpu: 128\n      memory: 256\n      tasks: {a1: 1, x1: 1, b1: 1}\n  policies:\n    - inline: |\n        apiVersion: stevedore.io/v1alpha1\n        kind: ServicePolicy\n        metadata: {name: agent-per-host}\n        spec:\n          target: {cluster: demo, service: agent}\n          placement:\n            oneTaskPerHost: {hostSelector: {attributes: {role: ingress}}}\n";
    let report = run_report(scenario::from_text("cover.yaml", text, Path::new(".")).unwrap());
    let agent = service(&report, "agent");
    assert_eq!(
        (agent.state, agent.tasks_moved, agent.optimal_moves),
        (State::Satisfied, 1, 1),
        "{agent:#?}"
    );
    assert_eq!(
        agent.reason,
        "desiredCount 3 = 3 eligible hosts, each running one task"
    );
    let stops: Vec<_> = report
        .actions
        .iter()
        .filter_map(|a| match &a.action.kind {
            stevedore::plan::ActionKind::StopTask { instance, .. } => Some(instance.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(stops, ["x1"]);
    check_invariants(&report);
}

/// A scenario with two hosts and a service, and `rest` appended to its spec.
fn named(rest: &str) -> Result<scenario::Scenario, scenario::Error> {
    let text = format!(
        "apiVersion: stevedore.io/v1alpha1\nkind: Scenario\nmetadata: {{name: names}}\nspec:\n  duration: 5m\n  hosts:\n    - {{name: a, zone: us-east-1a, count: 2}}\n    - {{name: b1, zone: us-east-1b}}\n  services:\n    - {{name: web, tasks: {{a-1: 1, b1: 1}}}}\n{rest}"
    );
    scenario::from_text("names.yaml", &text, Path::new("."))
}

/// The rule, line, column and message of a scenario's name error.
fn name_error(rest: &str) -> (String, u64, u64, String, Option<String>) {
    match named(rest) {
        Err(scenario::Error::Name(d)) => (
            d.rule.id(),
            d.position.line,
            d.position.column,
            d.message.clone(),
            d.help.clone(),
        ),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("accepted: {rest}"),
    }
}

#[test]
fn a_scenario_naming_what_it_never_defines_is_an_error_at_its_line_and_column() {
    assert!(named("  timeline:\n    - {at: 1m, hostDrains: a-2}\n").is_ok());
    assert_eq!(
        name_error("  timeline:\n    - {at: 1m, hostDrains: a-3}\n"),
        (
            "unknown-reference".into(),
            12,
            28,
            "no host named `a-3` in the scenario".into(),
            Some("did you mean `a-2`?".into())
        )
    );
    // A host that joins later may be drained.
    assert!(
        named("  timeline:\n    - {at: 1m, hostJoins: {name: c1, zone: us-east-1c}}\n    - {at: 2m, hostTerminates: c1}\n")
            .is_ok()
    );
    let (rule, line, column, message, help) =
        name_error("  timeline:\n    - {at: 1m, zoneFails: us-east-1c}\n");
    assert_eq!((rule.as_str(), line, column), ("unknown-reference", 12, 27));
    assert_eq!(message, "no zone named `us-east-1c` in the scenario");
    assert_eq!(
        help.as_deref(),
        Some("the scenario's zones: us-east-1a, us-east-1b")
    );
    let (_, line, column, message, _) =
        name_error("  timeline:\n    - at: 1m\n      setDesiredCount: {service: api, count: 3}\n");
    assert_eq!((line, column), (13, 34));
    assert_eq!(message, "no service named `api` in the scenario");
    // A host joining with a name taken, and a service defined twice.
    let (rule, line, column, message, _) =
        name_error("  timeline:\n    - {at: 1m, hostJoins: {name: b1, zone: us-east-1c}}\n");
    assert_eq!((rule.as_str(), line, column), ("name-unique", 12, 34));
    assert_eq!(message, "host `b1` is defined twice");
    let (rule, line, _, message, _) = name_error("    - {name: web}\n");
    assert_eq!(
        (rule.as_str(), line, message.as_str()),
        ("name-unique", 11, "service `web` is defined twice")
    );
}

#[test]
fn sim_duration_and_seed_override_the_file() {
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec![
            "sim",
            "examples/scenarios/noisy-metric.yaml",
            "--output",
            "json",
        ];
        all.extend(args);
        crate::json_of_success(&stevedore(&all))
    };
    let short = json(&["--duration", "2m"]);
    assert_eq!(short["durationS"], 120.0);
    let steps = |r: &serde_json::Value| r["services"][0]["scaling"].clone();
    // The file's seed is 3: --seed 3 is the same run, --seed 1 another.
    let file = json(&[]);
    assert_eq!(file["durationS"], 3600.0);
    assert_eq!(steps(&json(&["--seed", "3"])), steps(&file));
    assert_ne!(steps(&json(&["--seed", "1"])), steps(&file));
}

#[test]
fn the_report_says_why_a_service_was_short_and_what_one_task_per_host_did() {
    // A zone fails: its tasks are lost, not stopped by stevedore.
    let report = run_file("zone-failure-and-recovery");
    let web = service(&report, "web");
    assert!(web.peak_unavailable_by.lost > 0, "{web:#?}");
    // The recovery's moves: stopped by stevedore, within its budget.
    assert!(web.peak_unavailable_by.stopped >= 1, "{web:#?}");
    assert!(
        web.peak_unavailable >= web.peak_unavailable_by.lost,
        "{web:#?}"
    );
    // A scale-out: new tasks starting, nothing lost or stopped.
    let ramp = run_file("load-ramp");
    let by = ramp.services[0].peak_unavailable_by;
    assert!(by.starting > 0 && by.lost == 0 && by.stopped == 0, "{by:?}");

    let agents = run_file("one-task-per-host");
    let agent = service(&agents, "log-agent");
    let changes: Vec<(u32, u32)> = agent.count_changes.iter().map(|c| (c.from, c.to)).collect();
    assert_eq!(changes, [(4, 6), (6, 5)], "{:#?}", agent.count_changes);
    assert!(
        agent.count_changes[1].reason.contains("excluded"),
        "{:#?}",
        agent.count_changes
    );
    // The planner's warnings reach the report.
    let text = std::fs::read_to_string(repo("examples/scenarios/one-task-per-host.yaml"))
        .unwrap()
        .replace("      constraints: [distinctInstance]\n", "");
    let s = scenario::from_text("no-distinct.yaml", &text, Path::new(".")).unwrap();
    let report = run_report(s);
    assert!(
        service(&report, "log-agent").warnings[0].contains("no distinctInstance"),
        "{:#?}",
        service(&report, "log-agent")
    );
}

/// ECS's own AZ rebalancing beside stevedore: on `web` (zones 4/2/0,
/// hosts a-1=4, b-1=2), ECS balances the zones and stevedore, only then,
/// the hosts, each replacement in its zone: together they make exactly
/// the moves the host constraint alone needs, nothing is undone, and
/// nothing is mispredicted. `batch` (binpack first) cannot be rebalanced
/// by ECS: stevedore says so and enforces its zones itself, as before.
#[test]
fn ecs_balances_the_zones_and_stevedore_the_hosts_and_neither_undoes_the_other() {
    let scenario =
        stevedore::sim::scenario::load(&repo("examples/scenarios/ecs-az-rebalancing.yaml"))
            .unwrap();
    let hosts_alone = stevedore::plan::plan(
        &crate::aws::policy("  placement:\n    spread: [{topologyKey: host, maxSkew: 1}]\n"),
        &scenario.sim.state(),
        0,
    );
    let needed = hosts_alone.statuses[0].moves_remaining;
    assert_eq!(needed, 4, "{:#?}", hosts_alone.statuses[0]);
    let report = run_file("ecs-az-rebalancing");
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    let web = service(&report, "web");
    assert_eq!(web.state, State::Satisfied, "{web:#?}");
    assert_eq!(web.mispredicted_moves, 0, "{web:#?}");
    assert_eq!(
        (web.ecs_rebalancing_stops, web.tasks_moved),
        (2, 2),
        "ECS moves the zones' two, stevedore the hosts' two: {web:#?}"
    );
    assert_eq!(web.ecs_rebalancing_stops + web.tasks_moved, needed);
    assert_eq!(web.skew.get("zone"), Some(&0));
    assert_eq!(web.skew.get("host"), Some(&0));
    // stevedore's stops came after ECS had balanced the zones.
    let first_stop = report
        .actions
        .iter()
        .find(|a| a.action.service == "web")
        .map(|a| a.at_s)
        .unwrap();
    assert!(
        first_stop >= 60.0,
        "stevedore stopped at {first_stop} s, before ECS was done"
    );
    let batch = service(&report, "batch");
    assert_eq!(batch.ecs_rebalancing_stops, 0);
    assert_eq!(batch.state, State::Unsatisfiable, "{batch:#?}");
    assert!(
        batch.warnings[0].contains("ECS's AZ rebalancing is ENABLED but cannot run (the first placement strategy is binpack(memory)"),
        "{batch:#?}"
    );
}

/// The simulator lists what was stopped on request as ECS does: each task
/// with the reason its StopTask gave and when, for an hour, with the calls
/// the AWS backend makes for it (ListTasks pages, DescribeTasks batches).
#[test]
fn the_simulator_lists_stopped_tasks_with_their_reason_for_an_hour() {
    use stevedore::backend::Backend;
    let g = scenario::GenerateSpec {
        hosts: 6,
        services: 2,
        tasks: 12,
        zones: 3,
        skewed_share: 0.0,
    };
    let backend = stevedore::sim::SimBackend::new(scenario::generated(g, 7, 0).sim);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let snapshot = runtime.block_on(backend.snapshot("demo")).unwrap();
    let stopped_at = backend.lock().now;
    for (task, reason) in snapshot
        .tasks
        .iter()
        .take(2)
        .zip(["stevedore: a (spread)", "by hand"])
    {
        runtime
            .block_on(backend.stop_task("demo", &task.id, reason))
            .unwrap();
    }
    let before = backend.api_calls();
    let listed = runtime.block_on(backend.recently_stopped("demo")).unwrap();
    let calls: Vec<(String, u64)> = backend
        .api_calls()
        .into_iter()
        .map(|(op, n)| (op.clone(), n - before.get(&op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(
        calls,
        [("DescribeTasks".into(), 1), ("ListTasks".into(), 1)]
    );
    let got: Vec<(&str, &str, Option<u64>)> = listed
        .iter()
        .map(|t| (t.id.as_str(), t.reason.as_str(), t.stopping_at))
        .collect();
    assert_eq!(
        got,
        [
            (
                snapshot.tasks[0].id.as_str(),
                "stevedore: a (spread)",
                Some(stopped_at)
            ),
            (snapshot.tasks[1].id.as_str(), "by hand", Some(stopped_at)),
        ]
    );
    for (t, s) in listed.iter().zip(&snapshot.tasks) {
        assert_eq!(t.service, snapshot.services[s.service].name);
        let host = &snapshot.instances[s.instance.unwrap()];
        assert_eq!(
            (t.zone.as_deref(), t.instance.as_deref()),
            (Some(host.zone.as_str()), Some(host.id.as_str()))
        );
    }
    // An hour later ECS lists them no more.
    backend.lock().advance(stopped_at + 3_600_001);
    let listed = runtime.block_on(backend.recently_stopped("demo")).unwrap();
    assert_eq!(listed, vec![]);
}
