//! DisruptionBudget: validated at the line and column, and kept over time
//! on the simulator. Each shipped scenario is checked from the report
//! alone (its `disruption` object, counted by the simulated ECS, not by
//! the controller), and run once more without the limit it shows, so that
//! each check is one the run without the budget fails.

use stevedore::plan::State;
use stevedore::sim::run::{self, Display, Report};
use stevedore::sim::scenario;

use crate::{findings, load, repo, run_edited};

fn run_shipped(name: &str) -> Report {
    run_edited(name, "kind: DisruptionBudget", "kind: DisruptionBudget")
}

/// Every service satisfied, with the optimal number of moves in all.
fn converged_optimally(report: &Report) -> u32 {
    for s in &report.services {
        assert_eq!(s.state, State::Satisfied, "{}: {s:#?}", report.scenario);
        assert_eq!(s.tasks_moved, s.optimal_moves, "{s:#?}");
        assert_eq!(s.mispredicted_moves, 0, "{s:#?}");
    }
    report.services.iter().map(|s| s.tasks_moved).sum()
}

fn disruption(report: &Report) -> &stevedore::sim::run::DisruptionReport {
    &report.disruption["demo"]
}

#[test]
fn a_cluster_max_unavailable_bounds_the_stops_in_flight_and_costs_no_extra_move() {
    let budgeted = run_shipped("budget-max-unavailable");
    assert_eq!(converged_optimally(&budgeted), 10);
    assert!(
        disruption(&budgeted).peak_stopped <= 2,
        "{:?}",
        disruption(&budgeted)
    );
    // Without the cluster's budget: the same ten moves, all at once.
    let unbounded = run_edited("budget-max-unavailable", "maxUnavailable: 2", "");
    assert_eq!(converged_optimally(&unbounded), 10);
    assert!(
        disruption(&unbounded).peak_stopped > 2,
        "{:?}",
        disruption(&unbounded)
    );
}

#[test]
fn one_zone_at_a_time_never_has_stops_in_flight_in_two_zones() {
    let budgeted = run_shipped("budget-one-zone-at-a-time");
    assert_eq!(converged_optimally(&budgeted), 10);
    assert_eq!(disruption(&budgeted).peak_zones_in_flight, 1);
    let unbounded = run_edited("budget-one-zone-at-a-time", "oneZoneAtATime: true", "");
    assert_eq!(converged_optimally(&unbounded), 10);
    assert_eq!(disruption(&unbounded).peak_zones_in_flight, 2);
}

#[test]
fn a_window_holds_every_stop_until_it_opens_and_the_cluster_converges_inside_it() {
    let report = run_shipped("budget-window");
    assert_eq!(converged_optimally(&report), 10);
    assert_eq!(disruption(&report).stops_outside_windows, 0);
    // The run starts at 01:30 Berlin time; the window opens at 02:00.
    let first_stop = report.reactions[0].first_stop_s.unwrap() + report.reactions[0].at_s;
    assert!(
        (1800.0..1800.0 + 61.0).contains(&first_stop),
        "first stop at {first_stop} s"
    );
    for s in &report.services {
        let at = s.converged_at_s.unwrap();
        assert!((1800.0..5400.0).contains(&at), "{}: {at}", s.service);
    }
    // The loop wakes when the window opens: with a resync of 20 minutes
    // (passes at 0 and 1,200 s), the first stop still comes at 1,800 s,
    // not at the next resync (2,400 s).
    let quiet = run_edited(
        "budget-window",
        "  duration: 45m\n",
        "  duration: 45m\n  resync: 20m\n",
    );
    let first = quiet.reactions[0].first_stop_s.unwrap() + quiet.reactions[0].at_s;
    assert!((1800.0..1805.0).contains(&first), "first stop at {first} s");
    assert_eq!(converged_optimally(&quiet), 10);
    // Started at 02:00 Berlin time instead (`startAt` is read), the
    // window is open: the first stop follows the host at once.
    let early = run_edited(
        "budget-window",
        "2026-01-01T01:30:00+01:00",
        "2026-01-01T02:00:00+01:00",
    );
    assert_eq!(converged_optimally(&early), 10);
    assert_eq!(disruption(&early).stops_outside_windows, 0);
    assert!(early.reactions[0].first_stop_s.unwrap() < 5.0);
}

#[test]
fn no_sliding_period_holds_more_stops_than_the_rate_budget_allows() {
    let budgeted = run_shipped("budget-rate");
    assert_eq!(converged_optimally(&budgeted), 10);
    assert_eq!(disruption(&budgeted).max_moves_in_window, Some(3));
    // Ten moves at three per ten minutes: the last waits three periods.
    let last = budgeted
        .services
        .iter()
        .filter_map(|s| s.converged_at_s)
        .fold(0.0, f64::max);
    assert!(last > 1800.0, "converged at {last} s");
    let faster = run_edited("budget-rate", "max: 3, per: 10m", "max: 10, per: 10m");
    assert_eq!(converged_optimally(&faster), 10);
    assert!(disruption(&faster).max_moves_in_window.unwrap() > 3);
}

/// The loop wakes when the rate budget frees a stop: with a resync of 20
/// minutes, the held moves still come every 10 minutes (at 1, 11, 21 and
/// 31 minutes), not at the resyncs (20 and 40 minutes).
#[test]
fn a_rate_budget_that_frees_a_stop_wakes_the_loop() {
    let quiet = run_edited(
        "budget-rate",
        "  duration: 45m\n",
        "  duration: 45m\n  resync: 20m\n",
    );
    assert_eq!(converged_optimally(&quiet), 10);
    assert_eq!(disruption(&quiet).max_moves_in_window, Some(3));
    let mut stops_at: Vec<u64> = quiet
        .actions
        .iter()
        .filter(|a| matches!(a.action.kind, stevedore::plan::ActionKind::StopTask { .. }))
        .map(|a| a.at_s as u64 / 60)
        .collect();
    stops_at.dedup();
    assert_eq!(stops_at, [1, 11, 21, 31], "minutes of the stops");
}

/// Restarts do not refill the rate budget: each new controller reads back
/// what the last one stopped (from the tasks the simulated ECS lists as
/// stopped) and the run is budget-rate's, restarted twice inside the first
/// period. (Forgetting, the second restart alone makes nine stops in ten
/// minutes: checked by hand with the read-back disabled, and the report
/// calls that a violation.)
#[test]
fn restarts_inside_a_period_do_not_refill_the_rate_budget() {
    let restarted = run_shipped("budget-restarts");
    assert!(
        restarted.violations.is_empty(),
        "{:#?}",
        restarted.violations
    );
    assert_eq!(converged_optimally(&restarted), 10);
    assert_eq!(disruption(&restarted).max_moves_in_window, Some(3));
    let restarts: Vec<f64> = restarted
        .reactions
        .iter()
        .filter(|r| r.event.starts_with("the controller restarts"))
        .map(|r| r.at_s)
        .collect();
    assert_eq!(restarts, [120.0, 300.0]);
    // Each new process read the cluster again in full, and what was
    // stopped (a ListTasks more than the full reads' own).
    let calls = &restarted.api_calls;
    assert_eq!(calls["ListTasks"], calls["ListServices"] + 3, "{calls:?}");
    // The moves are budget-rate's, at the same pace.
    let plain = run_shipped("budget-rate");
    let stops_by_period = |r: &Report| -> Vec<usize> {
        (0..5)
            .map(|k| {
                r.actions
                    .iter()
                    .filter(|a| {
                        matches!(a.action.kind, stevedore::plan::ActionKind::StopTask { .. })
                            && (a.at_s / 600.0).floor() as usize == k
                    })
                    .count()
            })
            .collect()
    };
    assert_eq!(stops_by_period(&restarted), stops_by_period(&plain));
}

const BUDGET: &str = "apiVersion: stevedore.io/v1alpha1
kind: DisruptionBudget
metadata: {name: prod-nights}
spec:
  cluster: prod
  maxUnavailable: 2
  oneZoneAtATime: true
  moves: {max: 20, per: 1h}
  windows:
    - {schedule: \"0 2 * * *\", duration: 2h, timeZone: Europe/Berlin}
";

#[test]
fn the_documented_budget_is_valid_and_means_what_it_says() {
    let loaded = load(&[("b.yaml", BUDGET)]);
    assert!(findings(&loaded).is_empty(), "{:?}", findings(&loaded));
    let b = &loaded.budgets[0];
    assert_eq!(b.cluster.name, "prod");
    assert_eq!(
        b.max_unavailable,
        Some(stevedore::spec::policy::TaskCount::Tasks(2))
    );
    assert!(b.one_zone_at_a_time);
    let moves = b.moves.unwrap();
    assert_eq!((moves.max, moves.per.as_secs()), (20, 3600));
    assert_eq!(b.windows[0].time_zone, "Europe/Berlin");
    assert_eq!(b.windows[0].duration.as_secs(), 7200);
}

#[test]
fn budget_mistakes_are_reported_at_their_line_and_column() {
    let broken = BUDGET
        .replace("\"0 2 * * *\"", "\"0 25 * * *\"")
        .replace("Europe/Berlin", "Europe/Berln")
        .replace("duration: 2h", "duration: 0s")
        .replace("max: 20, per: 1h", "max: 0, per: 0m")
        .replace("maxUnavailable: 2", "maxUnavailable: \"0%\"");
    let loaded = load(&[("b.yaml", &broken)]);
    assert!(loaded.budgets.is_empty());
    assert_eq!(
        findings(&loaded),
        [
            "max-unavailable@6 '\"0%\"'",
            "move-rate@8 '0, per: 0m}'",
            "move-rate@8 '0m}'",
            "schedule@10 '\"0 25 * * *\",'",
            "duration@10 '0s, timeZone:'",
            "time-zone@10 'Europe/Berln}'",
        ],
    );
    // The zone with the name it was likely meant to be.
    assert_eq!(
        loaded.diagnostics[5].help.as_deref(),
        Some("did you mean `Europe/Berlin`?")
    );
    // A field of the other kind is unknown here.
    let loaded = load(&[("b.yaml", &BUDGET.replace("oneZoneAtATime", "oneZoneAtATme"))]);
    assert_eq!(findings(&loaded), ["unknown-field@7 'oneZoneAtATme:'"]);
}

#[test]
fn a_second_budget_for_a_cluster_is_an_error_naming_both_files() {
    let other = BUDGET.replace("prod-nights", "prod-days");
    let loaded = load(&[("a.yaml", BUDGET), ("b.yaml", &other)]);
    let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.is_error()).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].message.contains("a.yaml") && errors[0].message.contains("b.yaml"),
        "{}",
        errors[0].message
    );
    assert_eq!(errors[0].position.file, "b.yaml");
    assert_eq!(errors[0].related[0].position.file, "a.yaml");
    // A policy may share a budget's name; another cluster may have its own.
    let policy = "apiVersion: stevedore.io/v1alpha1
kind: ServicePolicy
metadata: {name: prod-nights}
spec:
  target: {cluster: prod, service: web}
  placement: {azBalanced: true}
";
    let staging = BUDGET
        .replace("prod-nights", "staging")
        .replace("cluster: prod", "cluster: staging");
    let loaded = load(&[("a.yaml", BUDGET), ("p.yaml", policy), ("s.yaml", &staging)]);
    assert!(!loaded.has_errors(), "{:?}", findings(&loaded));
    assert_eq!((loaded.policies.len(), loaded.budgets.len()), (1, 2));
}

/// The time between passes that stopped tasks, in seconds.
fn stop_gaps(report: &Report) -> Vec<f64> {
    let stops: Vec<f64> = report
        .passes
        .iter()
        .filter(|p| p.stops > 0)
        .map(|p| p.at_s)
        .collect();
    stops.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn a_service_whose_moves_miss_backs_off_exponentially_and_never_loops() {
    let scenario = scenario::load(&repo("examples/scenarios/model-disagrees.yaml")).unwrap();
    let mut timeline = vec![];
    let report = run::run(
        scenario,
        Display {
            timeline: Some(&mut timeline),
            progress: false,
            series: false,
        },
    );
    let timeline = String::from_utf8(timeline).unwrap();
    let web = &report.services[0];
    // ECS put every replacement back: nothing converges, and in an hour
    // six stops are made (24 with the backoff taken out, the settle time
    // alone spacing them; one every 23 s with neither).
    assert_eq!(web.state, State::Converging);
    assert!(
        web.tasks_moved <= 7,
        "{} stops:\n{timeline}",
        web.tasks_moved
    );
    // The waits between stops double: 1, 2, 4, 8, 16 minutes and more.
    let gaps = stop_gaps(&report);
    for (k, gap) in gaps.iter().enumerate() {
        let wait = 60.0 * f64::from(1u32 << k);
        assert!(*gap >= wait, "gap {k} is {gap} s < {wait} s: {gaps:?}");
    }
    // And it says so.
    assert!(
        timeline.contains("backing off: after stevedore's last moves 2 moves were needed where 1 was expected (ECS placed a replacement otherwise than predicted, 3 in a row); next try in 4m"),
        "{timeline}"
    );

    // The loop wakes when a backoff ends: with a resync of 20 minutes the
    // stops still follow each wait within seconds, not at the resyncs.
    let quiet = run_edited("model-disagrees", "resync: 1m", "resync: 20m");
    let gaps = stop_gaps(&quiet);
    assert!(gaps.len() >= 3, "{gaps:?}");
    for (k, gap) in gaps.iter().take(3).enumerate() {
        let wait = 60.0 * f64::from(1u32 << k);
        assert!(
            (wait..wait + 60.0).contains(gap),
            "gap {k} is {gap} s, the wait {wait} s: {gaps:?}"
        );
    }
}
