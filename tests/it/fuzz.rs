//! The invariants, fuzzed: random small clusters, policies of every rule
//! (spread over zones and hosts, one task per host, scaling, DryRun, a
//! cluster DisruptionBudget with or without a move rate) on services with
//! or without ECS's own AZ rebalancing, timelines (hosts joining, draining
//! and terminating, a zone failing and recovering, a desired count changed
//! by hand, the controller restarting with its memory lost) and fault mixes (API errors, throttles, events lost, duplicated
//! and reordered, until a moment), each run through the simulator with
//! the controller's real loop.
//!
//! After every pass the simulator itself checks what must never happen
//! (`Report::violations`: a protected task stopped, a stop beyond a
//! budget, a write after a failed read, a stop of a service that is not
//! converging, a DryRun action carried out, a policy missing from a plan),
//! and no move went otherwise than the planner predicted unless an event,
//! a lost event or ECS still at work explains it (`mispredictedMoves`).
//! At the end, thirty minutes after the faults stopped, every enforced
//! policy is satisfied, or says why it cannot be (Unsatisfiable, Paused,
//! NotFound), or backs off after moves that missed: none is left
//! converging.
//!
//! In CI: [`CI_CASES`] cases, the same ones every run. The longer run
//! (see the README), on cases never run before:
//! `STEVEDORE_FUZZ_CASES=2000 cargo test --release --test it fuzz -- --nocapture`.

use std::fmt::Write as _;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use stevedore::plan::State;
use stevedore::sim::run::{self, Display, Report};
use stevedore::sim::scenario;

/// Cases in CI (about ten seconds in a debug build).
const CI_CASES: u32 = 200;

#[derive(Debug, Clone)]
enum Rule {
    /// azBalanced, and maybe a host spread with this maxSkew.
    Spread { host_skew: Option<u32> },
    /// oneTaskPerHost (the service gets distinctInstance), maybe only on
    /// hosts with `role: edge`.
    OnePerHost { selector: bool },
    /// Scaling on a per-task load (with azBalanced).
    Scaling { load: u32 },
}

#[derive(Debug, Clone)]
struct ServiceCase {
    /// An index into [`STRATEGIES`].
    strategy: usize,
    /// Tasks per host (in host order; the extra entries are ignored).
    tasks: Vec<u32>,
    /// Of the first host's tasks, how many are protected.
    protected: u32,
    rule: Rule,
    max_unavailable: u32,
    dry_run: bool,
    /// ECS's own AZ rebalancing is ENABLED.
    az_rebalancing: bool,
}

#[derive(Debug, Clone)]
enum EventCase {
    Joins {
        zone: usize,
    },
    Drains {
        host: usize,
    },
    Terminates {
        host: usize,
    },
    /// The zone of this host fails, and recovers five minutes later.
    ZoneOutage {
        host: usize,
    },
    SetCount {
        service: usize,
        count: u32,
    },
    /// The controller restarts, its memory lost.
    Restarts,
}

/// A cluster DisruptionBudget.
#[derive(Debug, Clone)]
struct BudgetCase {
    max_unavailable: u32,
    one_zone_at_a_time: bool,
    /// A move rate: at most this many moves per this many minutes.
    rate: Option<(u32, u32)>,
}

#[derive(Debug, Clone)]
struct Case {
    zones: usize,
    /// Per host: its zone (modulo `zones`) and whether it is an edge host.
    hosts: Vec<(usize, bool)>,
    services: Vec<ServiceCase>,
    budget: Option<BudgetCase>,
    /// (minute, event)
    timeline: Vec<(u32, EventCase)>,
    faults: (f64, f64, f64, f64, bool),
    seed: u64,
}

const STRATEGIES: [&str; 4] = [
    r#"["spread(attribute:ecs.availability-zone)", "spread(instanceId)"]"#,
    r#"["spread(attribute:ecs.availability-zone)"]"#,
    r#"["spread(attribute:ecs.availability-zone)", "binpack(memory)"]"#,
    r#"["binpack(memory)"]"#,
];

fn rule() -> impl Strategy<Value = Rule> {
    prop_oneof![
        3 => proptest::option::of(1u32..=2).prop_map(|host_skew| Rule::Spread { host_skew }),
        1 => any::<bool>().prop_map(|selector| Rule::OnePerHost { selector }),
        1 => (50u32..=400).prop_map(|load| Rule::Scaling { load }),
    ]
}

fn service() -> impl Strategy<Value = ServiceCase> {
    (
        0..STRATEGIES.len(),
        proptest::collection::vec(0u32..=3, 9),
        0u32..=1,
        rule(),
        1u32..=2,
        proptest::bool::weighted(0.15),
        proptest::bool::weighted(0.3),
    )
        .prop_map(
            |(strategy, tasks, protected, rule, max_unavailable, dry_run, az_rebalancing)| {
                ServiceCase {
                    strategy,
                    tasks,
                    protected,
                    rule,
                    max_unavailable,
                    dry_run,
                    az_rebalancing,
                }
            },
        )
}

fn event() -> impl Strategy<Value = EventCase> {
    prop_oneof![
        (0usize..3).prop_map(|zone| EventCase::Joins { zone }),
        (0usize..9).prop_map(|host| EventCase::Drains { host }),
        (0usize..9).prop_map(|host| EventCase::Terminates { host }),
        (0usize..9).prop_map(|host| EventCase::ZoneOutage { host }),
        (0usize..3, 1u32..=6).prop_map(|(service, count)| EventCase::SetCount { service, count }),
        Just(EventCase::Restarts),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        2usize..=3,
        proptest::collection::vec((0usize..3, proptest::bool::weighted(0.6)), 3..=7),
        proptest::collection::vec(service(), 1..=3),
        // A rate of at least one move in two minutes: thirty minutes
        // after the faults are enough to converge.
        proptest::option::of(
            (
                1u32..=3,
                any::<bool>(),
                proptest::option::of((1u32..=3, 1u32..=2)),
            )
                .prop_map(|(max_unavailable, one_zone_at_a_time, rate)| BudgetCase {
                    max_unavailable,
                    one_zone_at_a_time,
                    rate,
                }),
        ),
        proptest::collection::vec((1u32..=12, event()), 0..=3),
        (
            prop_oneof![Just(0.0), 0.0..0.3],
            prop_oneof![Just(0.0), 0.0..0.3],
            prop_oneof![Just(0.0), 0.0..0.3],
            prop_oneof![Just(0.0), 0.0..0.3],
            any::<bool>(),
        ),
        0u64..10_000,
    )
        .prop_map(
            |(zones, hosts, services, budget, timeline, faults, seed)| Case {
                zones,
                hosts,
                services,
                budget,
                timeline,
                faults,
                seed,
            },
        )
}

const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

impl Case {
    fn host_name(&self, h: usize) -> String {
        format!("h{}", h % self.hosts.len())
    }

    /// The scenario file of this case.
    fn scenario(&self) -> String {
        let mut y = String::new();
        let faults = self.faults;
        writeln!(
            y,
            "apiVersion: stevedore.io/v1alpha1\nkind: Scenario\nmetadata: {{name: fuzz}}\nspec:\n  seed: {}\n  duration: 45m\n  resync: 2m\n  faults: {{apiErrorRate: {:.3}, throttleRate: {:.3}, eventLossRate: {:.3}, eventDuplicationRate: {:.3}, eventReordering: {}, until: 15m}}\n  hosts:",
            self.seed, faults.0, faults.1, faults.2, faults.3, faults.4
        )
        .unwrap();
        for (h, (zone, edge)) in self.hosts.iter().enumerate() {
            writeln!(
                y,
                "    - {{name: h{h}, zone: {}, cpu: 4096, memory: 8192, attributes: {{role: {}}}}}",
                ZONES[zone % self.zones],
                if *edge { "edge" } else { "core" }
            )
            .unwrap();
        }
        y.push_str("  services:\n");
        let mut metrics = String::new();
        let mut policies = String::new();
        for (k, s) in self.services.iter().enumerate() {
            let name = format!("s{k}");
            let one_per_host = matches!(s.rule, Rule::OnePerHost { .. });
            let tasks: Vec<String> = s
                .tasks
                .iter()
                .take(self.hosts.len())
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(h, n)| format!("h{h}: {}", if one_per_host { 1 } else { *n }))
                .collect();
            let first = s.tasks.iter().take(self.hosts.len()).position(|n| *n > 0);
            let protected = match (first, s.protected) {
                (Some(h), p) if p > 0 => format!(", protectedTasks: {{h{h}: {p}}}"),
                _ => String::new(),
            };
            writeln!(
                y,
                "    - {{name: {name}, strategy: {}, constraints: [{}], cpu: 256, memory: 512, azRebalancing: {}, tasks: {{{}}}{protected}}}",
                STRATEGIES[s.strategy],
                if one_per_host { "distinctInstance" } else { "" },
                s.az_rebalancing,
                tasks.join(", ")
            )
            .unwrap();
            let mode = if s.dry_run { "DryRun" } else { "Enforce" };
            let placement = match &s.rule {
                Rule::Spread { host_skew: None } | Rule::Scaling { .. } => {
                    "placement: {azBalanced: true}".to_owned()
                }
                Rule::Spread {
                    host_skew: Some(skew),
                } => format!(
                    "placement: {{azBalanced: true, spread: [{{topologyKey: host, maxSkew: {skew}}}]}}"
                ),
                Rule::OnePerHost { selector: true } => {
                    "placement: {oneTaskPerHost: {hostSelector: {attributes: {role: edge}}}}".into()
                }
                Rule::OnePerHost { selector: false } => "placement: {oneTaskPerHost: {}}".into(),
            };
            let scaling = match &s.rule {
                Rule::Scaling { load } => {
                    writeln!(
                        metrics,
                        "    - {{namespace: AWS/ECS, name: CPUUtilization, dimensions: {{ClusterName: demo, ServiceName: {name}}}, perTaskOf: {name}, load: [{{at: 0s, value: {load}}}]}}"
                    )
                    .unwrap();
                    "\n          scaling: {minTasks: 1, maxTasks: 8, metric: {cloudWatch: {namespace: AWS/ECS, name: CPUUtilization, dimensions: {ClusterName: \"{cluster}\", ServiceName: \"{service}\"}, period: 1m}}, scaleOutAbove: 70, scaleInBelow: 30, scaleInStabilization: 3m}".to_owned()
                }
                _ => String::new(),
            };
            writeln!(
                policies,
                "    - inline: |\n        apiVersion: stevedore.io/v1alpha1\n        kind: ServicePolicy\n        metadata: {{name: p{k}}}\n        spec:\n          target: {{cluster: demo, service: {name}}}\n          mode: {mode}\n          {placement}{scaling}\n          disruption: {{maxUnavailable: {}, settleTime: 1m}}",
                s.max_unavailable
            )
            .unwrap();
        }
        if let Some(BudgetCase {
            max_unavailable: max,
            one_zone_at_a_time: one_zone,
            rate,
        }) = self.budget
        {
            let rate = rate.map_or(String::new(), |(moves, per)| {
                format!(", moves: {{max: {moves}, per: {per}m}}")
            });
            writeln!(
                policies,
                "    - inline: |\n        apiVersion: stevedore.io/v1alpha1\n        kind: DisruptionBudget\n        metadata: {{name: cluster-budget}}\n        spec: {{cluster: demo, maxUnavailable: {max}, oneZoneAtATime: {one_zone}{rate}}}"
            )
            .unwrap();
        }
        if !metrics.is_empty() {
            y.push_str("  metrics:\n");
            y.push_str(&metrics);
        }
        y.push_str("  policies:\n");
        y.push_str(&policies);
        let mut timeline = String::new();
        let mut joined = 0;
        for (minute, e) in &self.timeline {
            let line = match e {
                EventCase::Joins { zone } => {
                    joined += 1;
                    format!(
                        "hostJoins: {{name: j{joined}, zone: {}, attributes: {{role: edge}}}}",
                        ZONES[zone % self.zones]
                    )
                }
                EventCase::Drains { host } => format!("hostDrains: {}", self.host_name(*host)),
                EventCase::Terminates { host } => {
                    format!("hostTerminates: {}", self.host_name(*host))
                }
                EventCase::ZoneOutage { host } => {
                    let zone = ZONES[self.hosts[host % self.hosts.len()].0 % self.zones];
                    writeln!(
                        timeline,
                        "    - {{at: {}m, zoneRecovers: {zone}}}",
                        minute + 5
                    )
                    .unwrap();
                    format!("zoneFails: {zone}")
                }
                EventCase::SetCount { service, count } => format!(
                    "setDesiredCount: {{service: s{}, count: {count}}}",
                    service % self.services.len()
                ),
                EventCase::Restarts => "controllerRestarts: true".to_owned(),
            };
            writeln!(timeline, "    - {{at: {minute}m, {line}}}").unwrap();
        }
        if !timeline.is_empty() {
            y.push_str("  timeline:\n");
            y.push_str(&timeline);
        }
        y
    }
}

/// What one case found.
#[derive(Debug, Default)]
struct Tally {
    cases: u64,
    passes: u64,
    stops: u64,
    converged: u64,
    unsatisfiable: u64,
    converging: u64,
    other: u64,
    /// Cases whose controller restarted at least once, and those whose
    /// budget has a move rate.
    restarted: u64,
    rated: u64,
}

/// The end state's checks: no violation, nothing mispredicted, every
/// enforced spread policy converged to its optimum or said why not.
fn check(
    text: &str,
    report: &Report,
    dry_run: impl Fn(&str) -> bool,
    tally: &mut Tally,
) -> Result<(), TestCaseError> {
    prop_assert!(
        report.violations.is_empty(),
        "{text}\n{:#?}",
        report.violations
    );
    for s in &report.services {
        prop_assert!(!s.reason.is_empty(), "{text}\n{s:#?}");
        prop_assert_eq!(s.mispredicted_moves, 0, "{}\n{:#?}", text, s);
        match s.state {
            State::Satisfied => tally.converged += 1,
            State::Unsatisfiable => tally.unsatisfiable += 1,
            State::Converging => {
                tally.converging += 1;
                // Thirty fault-free minutes: an enforced policy has done
                // what it can, unless it backs off after moves that missed.
                let dry_run = dry_run(&s.service);
                prop_assert!(
                    dry_run || s.reason.contains("backing off"),
                    "{}\n{}: still converging at the end: {}",
                    text,
                    s.service,
                    s.reason
                );
            }
            // Waiting on a DryRun, a conflict or ECS (a task that cannot
            // start): said, not acted on.
            _ => tally.other += 1,
        }
    }
    tally.passes += report.passes.len() as u64;
    tally.stops += report.passes.iter().map(|p| p.stops).sum::<u64>();
    Ok(())
}

/// Runs `cases` random cases; returns what they did. `fresh`: cases never
/// run before (a random seed); else the same cases every time, as CI wants.
fn fuzz(cases: u32, fresh: bool) -> Tally {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = if fresh {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(
            config,
            proptest::test_runner::TestRng::deterministic_rng(
                proptest::test_runner::RngAlgorithm::ChaCha,
            ),
        )
    };
    let tally = std::cell::RefCell::new(Tally::default());
    let result = runner.run(&case(), |case| {
        let text = case.scenario();
        let s = scenario::from_text("fuzz.yaml", &text, Path::new("."))
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let report = run::run(
            s,
            Display {
                timeline: None,
                progress: false,
                series: false,
            },
        );
        let mut tally = tally.borrow_mut();
        tally.cases += 1;
        tally.restarted += u64::from(
            case.timeline
                .iter()
                .any(|(_, e)| matches!(e, EventCase::Restarts)),
        );
        tally.rated += u64::from(case.budget.as_ref().is_some_and(|b| b.rate.is_some()));
        let dry_run = |service: &str| {
            service
                .strip_prefix('s')
                .and_then(|k| k.parse::<usize>().ok())
                .is_some_and(|k| case.services[k].dry_run)
        };
        check(&text, &report, dry_run, &mut tally)
    });
    if let Err(e) = result {
        panic!(
            "{e}\nThe scenario above is a file for `stevedore sim`: keep it under tests/fixtures/fuzz/, headed by a comment of what it found."
        );
    }
    tally.into_inner()
}

#[test]
fn fuzz_random_clusters_policies_timelines_and_faults_keep_every_invariant() {
    // The longer run asks for its count, and gets cases never run before.
    let asked: Option<u32> = std::env::var("STEVEDORE_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok());
    let cases = asked.unwrap_or(CI_CASES);
    let started = std::time::Instant::now();
    let tally = fuzz(cases, asked.is_some());
    eprintln!(
        "fuzz: {} cases in {:.1} s: {} passes, {} stops; at the end {} policies satisfied, {} unsatisfiable (with why), {} converging (DryRun or backing off), {} paused or not found; 0 violations, 0 mispredicted moves; {} cases restarted the controller, {} had a move rate",
        tally.cases,
        started.elapsed().as_secs_f64(),
        tally.passes,
        tally.stops,
        tally.converged,
        tally.unsatisfiable,
        tally.converging,
        tally.other,
        tally.restarted,
        tally.rated
    );
    assert!(tally.cases >= u64::from(cases));
    // Restarts and rates are in the mix.
    assert!(tally.restarted > 0 && tally.rated > 0, "{tally:?}");
    // The cases do something: the controller stopped tasks in them.
    assert!(tally.stops > 0, "{tally:?}");
}

/// The cases the fuzzer found, kept under `tests/fixtures/fuzz/` (each
/// file says what it found): each runs clean, and sixteen runs of one are
/// the same run (one of them once was not).
#[test]
fn the_cases_the_fuzzer_found_run_clean_and_the_same_every_time() {
    let mut files: Vec<_> = std::fs::read_dir("tests/fixtures/fuzz")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut first: Option<String> = None;
        for _ in 0..16 {
            let s = scenario::from_text(&file.display().to_string(), &text, Path::new("."))
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let report = run::run(
                s,
                Display {
                    timeline: None,
                    progress: false,
                    series: false,
                },
            );
            let dry_run = |service: &str| {
                text.contains(&format!("service: {service}}}\n          mode: DryRun"))
            };
            check(&text, &report, dry_run, &mut Tally::default())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let json = serde_json::to_string(&report).unwrap();
            match &first {
                None => first = Some(json),
                Some(first) => assert!(
                    *first == json,
                    "{}: a second run with the same seed differed",
                    file.display()
                ),
            }
        }
    }
}
