//! Runs the controller against a scenario in virtual time and reports what
//! happened: per service, where its tasks ended up, how many were moved
//! against the optimum, what a forced redeploy would have replaced, the
//! peak of unavailable tasks and the time to converge; and API calls.
//!
//! The controller is production's own [`controller::run`], fed by
//! [`SimEvents`] and timed by tokio's paused clock: its triggers, backoff
//! and debounce are the ones that ship. This module adds only the world
//! (the timeline and ECS, a step a virtual second) and the report, which
//! listens to each pass through the loop's pass hook.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use super::scenario::{Event, Scenario};
use super::{SimBackend, SimEvents};
use crate::controller;
use crate::model::{Millis, TaskStatus};
use crate::plan::{ActionKind, State};

/// Per policy and service.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceReport {
    pub policy: String,
    pub service: String,
    pub state: State,
    pub reason: String,
    /// Tasks per availability zone at the end.
    pub tasks_per_zone: BTreeMap<String, u32>,
    /// Skew per constraint at the end (`topology` -> skew).
    pub skew: BTreeMap<String, u32>,
    /// Tasks stopped by stevedore.
    pub tasks_moved: u32,
    /// The fewest moves that could have satisfied the policy: the optimum at
    /// the start, plus each increase caused by a timeline event.
    pub optimal_moves: u32,
    /// Increases of the optimum that no timeline event explains: moves that
    /// did not go as predicted. Zero unless something is wrong.
    pub mispredicted_moves: u32,
    /// Tasks a forced redeploy at the start would have replaced.
    pub forced_redeploy_tasks: u32,
    /// The most of desired-minus-running seen at any second.
    pub peak_unavailable: u32,
    /// The same, by cause, each its own peak: tasks stevedore stopped and
    /// not yet replaced, tasks lost to an outage, and new tasks starting.
    pub peak_unavailable_by: UnavailableBy,
    /// Each change of the desired count oneTaskPerHost made.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub count_changes: Vec<CountChange>,
    /// Every distinct warning the planner gave about the service.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// When the policy was last found satisfied after being unsatisfied
    /// (virtual seconds from the start); `None` if it never converged.
    pub converged_at_s: Option<f64>,
    /// Each change of the desired count stevedore made for a scaling policy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scaling: Vec<ScalingStep>,
    /// Tasks ECS's own AZ rebalancing stopped (each for one it started in
    /// an emptier zone).
    #[serde(skip_serializing_if = "is_zero")]
    pub ecs_rebalancing_stops: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The most tasks a service was short of its desired count, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnavailableBy {
    pub stopped: u32,
    pub lost: u32,
    pub starting: u32,
}

/// A change of the desired count by `oneTaskPerHost`, carried out.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CountChange {
    pub at_s: f64,
    pub from: u32,
    pub to: u32,
    pub reason: String,
}

/// One scaling action carried out.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingStep {
    pub at_s: f64,
    pub from: u32,
    pub to: u32,
    pub reason: String,
    /// How far the policy's spread constraints were beyond their maxSkew
    /// when last seen before this step (0: within).
    pub skew_excess_before: u32,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub scenario: String,
    pub duration_s: f64,
    pub reconciles: u64,
    pub failed_snapshots: u64,
    pub failed_actions: u64,
    pub events_delivered: u64,
    /// Delivered again (at-least-once delivery) and dropped.
    pub events_duplicate: u64,
    /// Older than an event already seen for the same resource, and dropped.
    pub events_stale: u64,
    pub events_malformed: u64,
    /// The longest an event waited in the queue before the controller
    /// received it, in virtual seconds.
    pub event_wait_max_s: f64,
    pub services: Vec<ServiceReport>,
    pub api_calls: BTreeMap<String, u64>,
    /// Calls refused by an injected throttle, per operation.
    pub api_throttles: BTreeMap<String, u64>,
    /// Virtual seconds the controller spent waiting on the API: its
    /// passes' time, as planning takes none.
    pub api_wait_s: f64,
    /// Every pass of the controller, in order.
    pub passes: Vec<PassReport>,
    /// Each timeline event, and how soon the controller stopped a task
    /// after it.
    pub reactions: Vec<Reaction>,
    /// Per cluster, what the placement stops cost, as the simulated ECS
    /// lived it: what a DisruptionBudget bounds.
    pub disruption: BTreeMap<String, DisruptionReport>,
    /// Every action, in order: each one carried out (or failed), and each
    /// DryRun action when first planned (not again while it stays the same).
    pub actions: Vec<ActionReport>,
    /// What the controller must never do, seen from the simulated ECS: a
    /// protected task stopped, a stop beyond a service's `maxUnavailable`
    /// or the cluster's DisruptionBudget, a write in a pass whose read
    /// failed, a stop of a service that is not converging, a DryRun action
    /// carried out, a policy missing from a pass's plan. Empty unless
    /// something is wrong (`stevedore sim` then exits 1).
    pub violations: Vec<String>,
    /// ECS's own service events of AZ rebalancing, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ecs_events: Vec<EcsEvent>,
    /// Per policy and service, the world sampled over time (recorded only
    /// when asked: `sim --html` plots it).
    #[serde(skip)]
    pub series: Vec<Series>,
    /// The cluster's DisruptionBudget over time, if it has one (recorded
    /// with [`Report::series`]).
    #[serde(skip)]
    pub budget_series: Option<BudgetSeries>,
}

/// A DisruptionBudget over time, for `sim --html`.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetSeries {
    pub budget: String,
    pub max_unavailable: Option<u32>,
    /// `moves.max`, and `moves.per` as written.
    pub moves: Option<(u32, String)>,
    pub samples: Vec<BudgetSample>,
}

/// The budget at one moment, as the simulated ECS counts it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetSample {
    pub at_s: f64,
    /// Tasks stevedore stopped that are not yet replaced, across the cluster.
    pub stopped: u32,
    /// StopTask calls answered in the last `moves.per` (with a move rate).
    pub moves_in_period: u32,
}

/// A service event of ECS's own (AZ rebalancing started or completed).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EcsEvent {
    pub at_s: f64,
    pub service: String,
    pub message: String,
}

/// One policy's service over the run, for the plots of `sim --html`.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub policy: String,
    pub service: String,
    /// The zone constraint's maxSkew (azBalanced is 1), if it has one.
    pub zone_max_skew: Option<u32>,
    /// The scaling rule, if it has one.
    pub scaling: Option<ScalingBounds>,
    pub samples: Vec<Sample>,
}

/// What a scaling rule keeps the count and the metric within.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalingBounds {
    pub min_tasks: u32,
    pub max_tasks: u32,
    pub scale_in_below: f64,
    pub scale_out_above: f64,
}

/// The service at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at_s: f64,
    /// Running tasks per zone (every zone with a host, failed ones too).
    pub per_zone: BTreeMap<String, u32>,
    /// The most less the fewest running tasks over the zones with a
    /// schedulable host, as a zone constraint counts them.
    pub zone_skew: u32,
    pub desired: u32,
    pub running: u32,
    /// The scaling metric as CloudWatch would report it now.
    pub metric: Option<f64>,
}

/// Seconds between two samples of [`Series`].
pub const SAMPLE_EVERY_S: u64 = 10;

/// One action of the run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionReport {
    /// Virtual seconds from the start of the pass that planned it.
    pub at_s: f64,
    #[serde(flatten)]
    pub action: crate::plan::Action,
    /// Why the call failed; `None`: carried out (or a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Stops and their replacements over the run, counted by the simulator.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DisruptionReport {
    /// The most tasks stopped by stevedore and not yet replaced at one
    /// moment, across the cluster.
    pub peak_stopped: u32,
    /// The most zones with such tasks at one moment.
    pub peak_zones_in_flight: u32,
    /// The most stops in any sliding period of the budget's `moves.per`
    /// (none without a rate budget).
    pub max_moves_in_window: Option<u32>,
    /// Stops made while none of the budget's windows was open (0 without
    /// windows).
    pub stops_outside_windows: u32,
}

impl DisruptionReport {
    fn new(
        sim: &super::Simulator,
        budget: Option<&crate::spec::Budget>,
        start_at: Millis,
    ) -> DisruptionReport {
        let stops = &sim.stop_requests;
        let max_moves_in_window = budget.and_then(|b| b.moves).map(|rate| {
            let per = rate.per.as_millis() as Millis;
            // The most stops in any (t - per, t]: each window ending at a stop.
            let mut first = 0;
            let mut most = 0;
            for (last, at) in stops.iter().enumerate() {
                while stops[first] + per <= *at {
                    first += 1;
                }
                most = most.max(last + 1 - first);
            }
            most as u32
        });
        let stops_outside_windows = budget.map_or(0, |b| {
            stops
                .iter()
                .filter(|at| !b.window_open(start_at + **at))
                .count() as u32
        });
        DisruptionReport {
            peak_stopped: sim.disruption.peak_stopped,
            peak_zones_in_flight: sim.disruption.peak_zones,
            max_moves_in_window,
            stops_outside_windows,
        }
    }
}

/// A timeline event and the controller's first stop after it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reaction {
    /// Virtual seconds from the start.
    pub at_s: f64,
    pub event: String,
    /// Virtual seconds from the event to the first StopTask answered after
    /// it (none: no task was stopped after it).
    pub first_stop_s: Option<f64>,
}

/// One pass of the controller.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassReport {
    /// Virtual seconds from the start when it began.
    pub at_s: f64,
    pub kind: controller::PassKind,
    /// Virtual seconds its read of the cluster took.
    pub read_s: f64,
    /// Virtual seconds the whole pass took: read, verify, act.
    pub took_s: f64,
    /// API calls it made.
    pub calls: u64,
    /// Of which reading the cluster.
    pub read_calls: u64,
    /// Tasks it stopped.
    pub stops: u64,
    /// Whether it read the cluster and acted (else it is retried).
    pub ok: bool,
}

#[derive(Debug, Default)]
struct Tracker {
    expected_remaining: Option<u32>,
    optimal: u32,
    mispredicted: u32,
    moved: u32,
    forced: Option<u32>,
    peak_unavailable: u32,
    peak_unavailable_by: UnavailableBy,
    count_changes: Vec<CountChange>,
    warnings: std::collections::BTreeSet<String>,
    converged_at: Option<Millis>,
    satisfied: bool,
    /// A timeline event happened since the optimum was last compared.
    disturbed: bool,
    scaling: Vec<ScalingStep>,
    /// The excess over maxSkew of the last status that had constraints.
    last_skew: u32,
}

/// What to show while running.
pub struct Display<'a> {
    /// A readable timeline, or nothing.
    pub timeline: Option<&'a mut dyn Write>,
    /// A progress bar on the terminal.
    pub progress: bool,
    /// Record [`Report::series`] (for `sim --html`).
    pub series: bool,
}

fn clock(at: Millis) -> String {
    let s = at / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Runs a scenario: the world (the timeline and ECS's scheduler, a step a
/// second) beside the controller's own [`controller::run`] loop, on
/// tokio's paused clock, until the scenario's duration.
pub fn run(scenario: Scenario, display: Display<'_>) -> Report {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime starts");
    runtime.block_on(simulate(scenario, display))
}

/// What the report keeps while the scenario runs.
struct Watch<'a> {
    display: Display<'a>,
    trackers: BTreeMap<(String, String), Tracker>,
    /// The last line printed per policy and service, to print changes only.
    last_said: BTreeMap<(String, String), String>,
    passes: Vec<PassReport>,
    failed_actions: u64,
    actions: Vec<ActionReport>,
    /// The policies of the cluster, each with its `maxUnavailable`.
    policies: BTreeMap<String, crate::spec::policy::TaskCount>,
    /// Write calls the simulated ECS had answered at the end of the last pass.
    writes_seen: u64,
    /// Events the simulated queue had lost when the last full read ended:
    /// any lost since, the controller's view may be stale until the next.
    lost_before_full_read: u64,
    /// Tasks ECS's AZ rebalancing had stopped at the last pass.
    ecs_moves_seen: u32,
    violations: Vec<String>,
    /// Services already reported beyond their maxUnavailable (once each).
    over_budget: std::collections::BTreeSet<String>,
    /// With `Display::series`: what is sampled, and the samples.
    series: Vec<(Series, usize, Option<crate::backend::MetricQuery>)>,
    /// With `Display::series` and a budget: the budget's samples, and its
    /// `moves.per` in milliseconds.
    budget_series: Option<(BudgetSeries, Option<Millis>)>,
}

/// Every service runs its desired count, each task running on an active
/// host: ECS has nothing left to do.
fn world_steady(sim: &crate::sim::Simulator) -> bool {
    let mut running = vec![0u32; sim.services.len()];
    for t in &sim.tasks {
        let on_active = t
            .task
            .instance
            .is_some_and(|i| sim.instances[i].status == crate::model::InstanceStatus::Active);
        if t.task.status != TaskStatus::Running || !on_active {
            return false;
        }
        running[t.task.service] += 1;
    }
    sim.services
        .iter()
        .zip(running)
        .all(|(s, n)| s.desired == n)
}

/// The write calls (StopTask, UpdateService, UpdateTaskProtection) the
/// simulated ECS has answered.
fn writes(sim: &crate::sim::Simulator) -> u64 {
    ["StopTask", "UpdateService", "UpdateTaskProtection"]
        .iter()
        .map(|op| sim.api_calls.get(*op).copied().unwrap_or(0))
        .sum()
}

impl Watch<'_> {
    fn say(&mut self, line: std::fmt::Arguments<'_>) {
        if let Some(out) = self.display.timeline.as_mut() {
            let _ = writeln!(out, "{line}");
        }
    }

    /// One pass of the controller, as it ended.
    fn pass(&mut self, pass: &controller::Pass, backend: &SimBackend, source: &SimEvents) {
        let now = pass.at;
        let written = writes(&backend.lock());
        if pass.outcome.is_err() && written > self.writes_seen {
            self.violations.push(format!(
                "[{}] a pass whose read failed made {} write calls",
                clock(now),
                written - self.writes_seen
            ));
        }
        self.writes_seen = written;
        // Planned on a view that lost events since its last full read: the
        // controller may not know of a host gone or a task moved, and a
        // prediction from it may miss; the fault, not the model, is to
        // blame, as for a timeline event.
        // ECS's own AZ rebalancing moved tasks since the last pass: a
        // change of the cluster the planner did not make, as an event.
        let ecs_moved: u32 = backend.lock().rebalancing_stops.values().sum();
        if ecs_moved > self.ecs_moves_seen {
            self.ecs_moves_seen = ecs_moved;
            self.trackers.values_mut().for_each(|t| t.disturbed = true);
        }
        // The full read that ends such a time judges moves planned in it.
        let lost = backend.lock().events_lost;
        if lost > self.lost_before_full_read {
            self.trackers.values_mut().for_each(|t| t.disturbed = true);
        }
        if pass.outcome.is_ok() && pass.kind == controller::PassKind::Full {
            self.lost_before_full_read = lost;
        }
        // ECS still at work on an event (a drained host's tasks replaced, a
        // zone's tasks restarted): its effect on the optimum is not all
        // seen yet, so an event's disturbance lasts until the world is
        // steady and the controller has been told all of it.
        // Events still on their way: the controller's view is behind the
        // world, and an event's effect may not be in it yet.
        let steady = {
            let sim = backend.lock();
            world_steady(&sim) && !sim.events_held() && source.is_empty()
        };
        if let Ok(outcome) = &pass.outcome {
            self.check(now, outcome);
        }
        self.passes.push(PassReport {
            at_s: now as f64 / 1000.0,
            kind: pass.kind,
            read_s: pass.read.as_secs_f64(),
            took_s: pass.took.as_secs_f64(),
            calls: pass.calls,
            read_calls: pass.read_calls,
            stops: pass.outcome.as_ref().map_or(0, |o| {
                o.executed
                    .iter()
                    .filter(|(a, r)| r.is_ok() && matches!(a.kind, ActionKind::StopTask { .. }))
                    .count() as u64
            }),
            ok: pass.outcome.is_ok(),
        });
        let outcome = match &pass.outcome {
            Err(e) => {
                let retry = pass.retry_in.unwrap_or_default().as_secs();
                self.say(format_args!(
                    "[{}] reconcile failed: {e}; retrying in {retry}s",
                    clock(now)
                ));
                return;
            }
            Ok(outcome) => outcome,
        };
        let acted: std::collections::BTreeSet<(String, String)> = outcome
            .executed
            .iter()
            .map(|(a, _)| (a.policy.clone(), a.service.clone()))
            .collect();
        for status in &outcome.plan.statuses {
            let t = self
                .trackers
                .get(&(status.policy.clone(), status.service.clone()));
            let changed = t.is_none_or(|t| t.satisfied != (status.state == State::Satisfied));
            // Held back (a budget, a backoff, tasks settling): why nothing moves.
            let held = status.state == State::Converging
                && status.moves_planned == 0
                && status.moves_remaining > 0;
            if status.moves_planned > 0
                || held
                || status.state == State::Unsatisfiable
                || (status.state == State::Satisfied && changed && t.is_some())
            {
                let line = format!(
                    "{}/{}: {:?}: {}",
                    status.policy, status.service, status.state, status.reason
                );
                let key = (status.policy.clone(), status.service.clone());
                // Said once, unless it is a new batch of moves; a wait's
                // countdown alone is no news.
                let news = |line: &str| {
                    line.split(" (opens in ")
                        .next()
                        .and_then(|l| l.split("; next try in ").next())
                        .and_then(|l| l.split("; the next in ").next())
                        .unwrap_or(line)
                        .to_owned()
                };
                let last = self.last_said.get(&key).map(|l| news(l));
                if acted.contains(&key) || last.as_deref() != Some(news(&line).as_str()) {
                    self.say(format_args!("[{}] {line}", clock(now)));
                    self.last_said.insert(key, line);
                }
            }
        }
        let mut moved: BTreeMap<(String, String), u32> = BTreeMap::new();
        for (action, result) in &outcome.executed {
            self.actions.push(ActionReport {
                at_s: now as f64 / 1000.0,
                action: action.clone(),
                error: result.as_ref().err().map(ToString::to_string),
            });
            match result {
                Ok(()) => {
                    self.say(format_args!(
                        "[{}]   {}/{}: {action}",
                        clock(now),
                        action.policy,
                        action.service
                    ));
                    let key = (action.policy.clone(), action.service.clone());
                    match &action.kind {
                        ActionKind::StopTask { .. } => {
                            *moved.entry(key).or_default() += 1;
                        }
                        ActionKind::SetDesiredCount { from, to }
                            if action.rule == "oneTaskPerHost" =>
                        {
                            self.trackers
                                .entry(key)
                                .or_default()
                                .count_changes
                                .push(CountChange {
                                    at_s: now as f64 / 1000.0,
                                    from: *from,
                                    to: *to,
                                    reason: action.reason.clone(),
                                });
                        }
                        ActionKind::SetDesiredCount { from, to }
                            if action.rule == crate::plan::SCALING_RULE =>
                        {
                            let t = self.trackers.entry(key).or_default();
                            let skew_excess_before = t.last_skew;
                            t.scaling.push(ScalingStep {
                                at_s: now as f64 / 1000.0,
                                from: *from,
                                to: *to,
                                reason: action.reason.clone(),
                                skew_excess_before,
                            });
                        }
                        _ => {}
                    }
                }
                Err(e) => {
                    self.failed_actions += 1;
                    self.say(format_args!(
                        "[{}]   {}/{}: FAILED {action}: {e}",
                        clock(now),
                        action.policy,
                        action.service
                    ));
                }
            }
        }
        // A service's dry-run actions, said (and reported) when they change.
        let mut dry: BTreeMap<(String, String), Vec<&crate::plan::Action>> = BTreeMap::new();
        for action in outcome.plan.actions.iter().filter(|a| a.dry_run) {
            dry.entry((
                action.policy.clone(),
                format!("{} (dry run)", action.service),
            ))
            .or_default()
            .push(action);
        }
        for (key, actions) in dry {
            let lines: Vec<String> = actions
                .iter()
                .map(|a| format!("{}/{}: {a}", a.policy, a.service))
                .collect();
            let said = lines.join("\n");
            if self.last_said.get(&key) == Some(&said) {
                continue;
            }
            for (line, action) in lines.iter().zip(actions) {
                self.say(format_args!("[{}]   {line}", clock(now)));
                self.actions.push(ActionReport {
                    at_s: now as f64 / 1000.0,
                    action: action.clone(),
                    error: None,
                });
            }
            self.last_said.insert(key, said);
        }
        for status in &outcome.plan.statuses {
            let key = (status.policy.clone(), status.service.clone());
            let t = self.trackers.entry(key.clone()).or_default();
            t.forced.get_or_insert(status.forced_redeploy_tasks);
            t.warnings.extend(status.warnings.iter().cloned());
            let n = moved.get(&key).copied().unwrap_or(0);
            t.moved += n;
            if let Some(skew) = status
                .constraints
                .iter()
                .map(|c| c.skew.saturating_sub(c.max_skew))
                .max()
            {
                // Stored as the excess over maxSkew: 0 means within bounds.
                t.last_skew = skew;
            }
            // The optimum is only comparable at steady state: mid-move,
            // stopped tasks are gone and their replacements not yet running.
            // A pass that changed the count (scaling, its protection) did
            // not plan placement, and changes the optimum as an event would.
            let counted = outcome.plan.actions.iter().any(|a| {
                a.policy == status.policy
                    && a.service == status.service
                    && !matches!(a.kind, ActionKind::StopTask { .. })
            });
            if status.state == State::Unsatisfiable || counted {
                // Whatever makes it satisfiable later is a change of the cluster.
                t.disturbed = true;
            } else if status.state != State::Paused {
                let observed = status.moves_remaining;
                match t.expected_remaining {
                    None => t.optimal += observed,
                    Some(expected) if observed > expected => {
                        if t.disturbed {
                            t.optimal += observed - expected;
                        } else {
                            t.mispredicted += observed - expected;
                        }
                    }
                    _ => {}
                }
                t.expected_remaining = Some(observed.saturating_sub(n));
                t.disturbed = t.disturbed && !steady;
            } else if let Some(expected) = t.expected_remaining.as_mut() {
                *expected = expected.saturating_sub(n);
            }
            let satisfied = status.state == State::Satisfied;
            if satisfied && !t.satisfied {
                t.converged_at = Some(now);
            }
            if !satisfied {
                t.converged_at = None;
            }
            t.satisfied = satisfied;
        }
    }

    /// What must hold of every pass that read the cluster.
    fn check(&mut self, now: Millis, outcome: &controller::Reconciled) {
        for (action, _) in &outcome.executed {
            let who = format!("{}/{}", action.policy, action.service);
            if action.dry_run {
                self.violations.push(format!(
                    "[{}] {who}: a DryRun action was carried out: {action}",
                    clock(now)
                ));
            }
            if matches!(action.kind, ActionKind::StopTask { .. }) {
                let state = outcome
                    .plan
                    .statuses
                    .iter()
                    .find(|s| s.policy == action.policy && s.service == action.service)
                    .map(|s| s.state);
                if state != Some(State::Converging) {
                    self.violations.push(format!(
                        "[{}] {who}: a task stopped while the service is {state:?}",
                        clock(now)
                    ));
                }
            }
        }
        for policy in self.policies.keys() {
            if !outcome.plan.statuses.iter().any(|s| &s.policy == policy) {
                self.violations.push(format!(
                    "[{}] policy {policy} is missing from the pass's plan",
                    clock(now)
                ));
            }
        }
    }

    /// One sample of each series: one pass over the tasks for all of
    /// them (a generated cluster has 100,000 tasks and 5,000 services).
    fn sample_series(&mut self, now: Millis, backend: &SimBackend) {
        if self.series.is_empty() {
            return;
        }
        let sim = backend.lock();
        if let Some((budget, per)) = &mut self.budget_series {
            budget.samples.push(BudgetSample {
                at_s: now as f64 / 1000.0,
                stopped: (0..sim.services.len())
                    .map(|s| sim.disruption.stopped_now(s))
                    .sum(),
                moves_in_period: per.map_or(0, |per| {
                    sim.stop_requests
                        .iter()
                        .filter(|at| **at + per > now && **at <= now)
                        .count() as u32
                }),
            });
        }
        let mut zones: BTreeMap<&str, usize> = BTreeMap::new();
        let mut open = vec![];
        for i in &sim.instances {
            let next = zones.len();
            let z = *zones.entry(i.zone.as_str()).or_insert(next);
            if z == open.len() {
                open.push(false);
            }
            open[z] |= i.schedulable();
        }
        let zone_of: Vec<usize> = sim
            .instances
            .iter()
            .map(|i| zones[i.zone.as_str()])
            .collect();
        // Running tasks per service and zone.
        let mut counts = vec![vec![0u32; zones.len()]; sim.services.len()];
        for t in &sim.tasks {
            if t.task.status == TaskStatus::Running
                && let Some(i) = t.task.instance
            {
                counts[t.task.service][zone_of[i]] += 1;
            }
        }
        for (series, s, query) in &mut self.series {
            let per = &counts[*s];
            let counted = (0..per.len()).filter(|z| open[*z]).map(|z| per[z]);
            let zone_skew = counted.clone().max().unwrap_or(0) - counted.min().unwrap_or(0);
            series.samples.push(Sample {
                at_s: now as f64 / 1000.0,
                per_zone: zones
                    .iter()
                    .map(|(name, z)| ((*name).to_owned(), per[*z]))
                    .collect(),
                zone_skew,
                desired: sim.services[*s].desired,
                running: per.iter().sum(),
                metric: query.as_ref().and_then(|q| sim.metric_value(q)),
            });
        }
    }

    /// The most of desired-minus-running per service, sampled each second.
    fn sample_unavailable(&mut self, backend: &SimBackend) {
        let sim = backend.lock();
        let mut running = vec![0u32; sim.services.len()];
        for t in &sim.tasks {
            if t.task.status == TaskStatus::Running {
                running[t.task.service] += 1;
            }
        }
        for ((policy, service), t) in self.trackers.iter_mut() {
            if let Some(s) = sim.services.iter().position(|x| &x.name == service) {
                let stopped_now = sim.disruption.stopped_now(s);
                if let Some(max) = self.policies.get(policy)
                    && stopped_now > max.resolve(sim.services[s].desired, 1)
                    && self.over_budget.insert(service.clone())
                {
                    self.violations.push(format!(
                        "[{}] {policy}/{service}: {stopped_now} tasks stopped by stevedore and not yet replaced, beyond maxUnavailable",
                        clock(sim.now)
                    ));
                }
                let short = sim.services[s].desired.saturating_sub(running[s]);
                t.peak_unavailable = t.peak_unavailable.max(short);
                // Why short: stevedore's stops first, then an outage's
                // losses, and the rest are new tasks starting (a scale-out).
                let stopped = sim.disruption.stopped_now(s).min(short);
                let lost = sim.disruption.lost_now(s).min(short - stopped);
                let by = &mut t.peak_unavailable_by;
                by.stopped = by.stopped.max(stopped);
                by.lost = by.lost.max(lost);
                by.starting = by.starting.max(short - stopped - lost);
            }
        }
    }
}

/// The series to record: each policy's services, with its zone maxSkew,
/// its scaling bounds and its metric's query.
fn series_of(
    policies: &[crate::spec::Policy],
    sim: &crate::sim::Simulator,
) -> Vec<(Series, usize, Option<crate::backend::MetricQuery>)> {
    let snapshot = sim.state();
    let queries = crate::controller::readings::queries(policies, &snapshot);
    let index = crate::plan::Index::new(&snapshot);
    let mut out = vec![];
    for policy in policies
        .iter()
        .filter(|p| p.target.cluster.name == snapshot.cluster)
    {
        for s in index.services_of(policy) {
            let service = snapshot.services[s].name.clone();
            let query = queries
                .iter()
                .find(|((p, sv), _)| *p == policy.name && *sv == service)
                .map(|(_, q)| q.clone());
            out.push((
                Series {
                    policy: policy.name.clone(),
                    service,
                    zone_max_skew: policy
                        .placement
                        .spread
                        .iter()
                        .find(|c| c.topology == crate::spec::policy::TopologyKey::Zone)
                        .map(|c| c.max_skew),
                    scaling: policy.scaling.as_ref().map(|r| ScalingBounds {
                        min_tasks: r.min_tasks,
                        max_tasks: r.max_tasks,
                        scale_in_below: r.scale_in_below,
                        scale_out_above: r.scale_out_above,
                    }),
                    samples: vec![],
                },
                s,
                query,
            ));
        }
    }
    out
}

async fn simulate(scenario: Scenario, display: Display<'_>) -> Report {
    let Scenario {
        name,
        sim,
        policies,
        budgets,
        start_at,
        duration,
        resync,
        timeline,
        ..
    } = scenario;
    let cluster = sim.cluster.clone();
    let specs = crate::spec::Specs {
        policies,
        budgets,
        ..Default::default()
    };
    let epoch = tokio::time::Instant::now();
    let backend = SimBackend::timed(sim, epoch);
    let source = SimEvents::default();
    let observer = crate::status::Observer::new();
    let progress = if display.progress {
        let bar = indicatif::ProgressBar::new(duration / 1000);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} virtual s  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let watch = std::cell::RefCell::new(Watch {
        display,
        trackers: BTreeMap::new(),
        last_said: BTreeMap::new(),
        passes: vec![],
        failed_actions: 0,
        actions: vec![],
        policies: specs
            .policies
            .iter()
            .filter(|p| p.target.cluster.name == cluster)
            .map(|p| (p.name.clone(), p.max_unavailable))
            .collect(),
        writes_seen: 0,
        lost_before_full_read: 0,
        ecs_moves_seen: 0,
        violations: vec![],
        over_budget: Default::default(),
        series: vec![],
        budget_series: None,
    });
    if watch.borrow().display.series {
        watch.borrow_mut().series = series_of(&specs.policies, &backend.lock());
        watch.borrow_mut().budget_series = specs.budget(&cluster).map(|b| {
            let per = b.moves.map(|m| m.per.as_millis() as Millis);
            (
                BudgetSeries {
                    budget: b.name.clone(),
                    max_unavailable: b
                        .max_unavailable
                        .map(|m| m.resolve(backend.lock().state().tasks.len() as u32, 1)),
                    moves: b.moves.map(|m| {
                        (
                            m.max,
                            crate::plan::budget::span(m.per.as_millis() as Millis),
                        )
                    }),
                    samples: vec![],
                },
                per,
            )
        });
    }
    let at = |ms: Millis| epoch + std::time::Duration::from_millis(ms);
    let options = controller::RunOptions {
        clusters_named: None,
        cluster: None,
        once: false,
        dry_run: false,
        resync: std::time::Duration::from_millis(resync),
        audit: None,
        leader: None,
        policies: controller::PolicySource::Given(specs.clone()),
        clock: controller::Clock::Tokio { epoch, start_at },
    };

    // The world: at each second, the timeline's events, then what ECS
    // does (the scheduler, task lifecycles), then its events to the queue.
    // Polled before the controller at the same instant, so a pass at a
    // second sees that second's world. Past the duration it goes on until
    // the controller has stopped: a pass still running then finishes
    // against a world that moves, and its stops take effect.
    let stopped = std::cell::Cell::new(false);
    let world = async {
        let mut next_event = 0;
        let mut ecs_said = 0;
        let mut now: Millis = 0;
        loop {
            while next_event < timeline.len() && timeline[next_event].0 <= now {
                let event = &timeline[next_event].1;
                let mut watch = watch.borrow_mut();
                watch.say(format_args!("[{}] timeline: {event}", clock(now)));
                apply(&backend, event);
                // A restart changes nothing in the world: no move it makes
                // is excused by it.
                if !matches!(event, Event::ControllerRestarts) {
                    watch.trackers.values_mut().for_each(|t| t.disturbed = true);
                }
                next_event += 1;
            }
            let (events, said) = {
                let mut sim = backend.lock();
                sim.advance(now);
                let said: Vec<String> = sim.service_events[ecs_said..]
                    .iter()
                    .map(|(_, _, message)| message.clone())
                    .collect();
                ecs_said = sim.service_events.len();
                (sim.take_events(), said)
            };
            for message in said {
                watch
                    .borrow_mut()
                    .say(format_args!("[{}] ECS: {message}", clock(now)));
            }
            source.push(events);
            watch.borrow_mut().sample_unavailable(&backend);
            if now.is_multiple_of(SAMPLE_EVERY_S * 1000) || now >= duration {
                watch
                    .borrow_mut()
                    .sample_series(now.min(duration), &backend);
            }
            if let Some(bar) = &progress {
                bar.set_position(now / 1000);
            }
            if now >= duration && stopped.get() {
                break now;
            }
            now = if now < duration {
                (now + 1_000).min(duration)
            } else {
                now + 1_000
            };
            tokio::time::sleep_until(at(now)).await;
        }
    };
    // The controller, until just after the last second (a pass due at the
    // last second still runs); at each restart of the timeline it is shut
    // down (after the pass under way) and started again with nothing kept.
    let restarts: Vec<Millis> = timeline
        .iter()
        .filter(|(_, e)| matches!(e, Event::ControllerRestarts))
        .map(|(at, _)| *at)
        .collect();
    let controller = async {
        let mut on_pass =
            |pass: &controller::Pass| watch.borrow_mut().pass(pass, &backend, &source);
        let mut ran = Ok(Default::default());
        for until in restarts.iter().copied().chain([duration + 1]) {
            ran = controller::run(
                &backend,
                Some(&source),
                &options,
                &observer,
                &mut on_pass,
                tokio::time::sleep_until(at(until)),
            )
            .await;
            if ran.is_err() {
                break;
            }
        }
        stopped.set(true);
        ran
    };
    let (now, ran) = futures_util::future::join(world, controller).await;
    if let Err(e) = ran {
        watch
            .borrow_mut()
            .say(format_args!("the controller did not start: {e}"));
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let mut watch = watch.into_inner();

    // Read before the report's statement, which holds the simulator's lock
    // to its end (the disruption's): a second lock there would deadlock.
    let ecs_events = backend
        .lock()
        .service_events
        .iter()
        .map(|(at, service, message)| EcsEvent {
            at_s: *at as f64 / 1000.0,
            service: service.clone(),
            message: message.clone(),
        })
        .collect();
    let mut report = Report {
        scenario: name,
        duration_s: duration as f64 / 1000.0,
        reconciles: watch.passes.len() as u64,
        failed_snapshots: watch.passes.iter().filter(|p| !p.ok).count() as u64,
        failed_actions: watch.failed_actions,
        events_delivered: source.delivered(),
        events_duplicate: observer.events_counted("duplicate"),
        events_stale: observer.events_counted("stale"),
        events_malformed: observer.events_counted("malformed"),
        event_wait_max_s: source.longest_wait().as_secs_f64(),
        services: vec![],
        api_calls: BTreeMap::new(),
        api_throttles: BTreeMap::new(),
        api_wait_s: watch.passes.iter().map(|p| p.took_s).sum(),
        passes: std::mem::take(&mut watch.passes),
        actions: std::mem::take(&mut watch.actions),
        reactions: {
            let stops = &backend.lock().stop_requests;
            timeline
                .iter()
                .map(|(at, event)| Reaction {
                    at_s: *at as f64 / 1000.0,
                    event: event.to_string(),
                    first_stop_s: stops
                        .iter()
                        .find(|s| *s >= at)
                        .map(|s| (s - at) as f64 / 1000.0),
                })
                .collect()
        },
        disruption: BTreeMap::from([(
            cluster.clone(),
            DisruptionReport::new(&backend.lock(), specs.budget(&cluster), start_at),
        )]),
        violations: std::mem::take(&mut watch.violations),
        ecs_events,
        series: std::mem::take(&mut watch.series)
            .into_iter()
            .map(|(series, _, _)| series)
            .collect(),
        budget_series: watch.budget_series.take().map(|(series, _)| series),
    };
    // Checked once at the end: the simulated ECS kept what it saw.
    for task in &backend.lock().stopped_protected {
        report.violations.push(format!(
            "task {task} was stopped while protected from scale-in"
        ));
    }
    if let Some(budget) = specs.budget(&cluster)
        && let Some(crate::spec::policy::TaskCount::Tasks(max)) = budget.max_unavailable
        && report.disruption[&cluster].peak_stopped > max
    {
        report.violations.push(format!(
            "DisruptionBudget {}: {} tasks stopped and not yet replaced at once, beyond maxUnavailable {max}",
            budget.name, report.disruption[&cluster].peak_stopped
        ));
    }
    if let Some(budget) = specs.budget(&cluster)
        && let Some(rate) = budget.moves
        && let Some(most) = report.disruption[&cluster].max_moves_in_window
        && most > rate.max
    {
        report.violations.push(format!(
            "DisruptionBudget {}: {most} stops within {}, beyond moves.max {}",
            budget.name,
            humantime::format_duration(rate.per),
            rate.max
        ));
    }
    let trackers = &mut watch.trackers;

    // The final state, planned once more for its report (with the budget,
    // so a service a closed window holds says so).
    let final_state = backend.lock().state();
    let final_plan = crate::plan::plan_with(
        &specs.policies,
        specs.budget(&cluster),
        &final_state,
        now,
        &mut crate::plan::Memory {
            wall_offset: start_at,
            ..Default::default()
        },
    );
    for status in &final_plan.statuses {
        let t = trackers
            .remove(&(status.policy.clone(), status.service.clone()))
            .unwrap_or_default();
        let s = final_state
            .services
            .iter()
            .position(|x| x.name == status.service);
        let mut tasks_per_zone = BTreeMap::new();
        for z in final_state
            .instances
            .iter()
            .filter(|i| i.schedulable())
            .map(|i| i.zone.clone())
        {
            tasks_per_zone.entry(z).or_insert(0);
        }
        for task in &final_state.tasks {
            if Some(task.service) == s
                && task.status == TaskStatus::Running
                && let Some(i) = task.instance
            {
                *tasks_per_zone
                    .entry(final_state.instances[i].zone.clone())
                    .or_insert(0) += 1;
            }
        }
        report.services.push(ServiceReport {
            policy: status.policy.clone(),
            service: status.service.clone(),
            state: status.state,
            reason: status.reason.clone(),
            tasks_per_zone,
            skew: status
                .constraints
                .iter()
                .map(|c| (c.topology.clone(), c.skew))
                .collect(),
            tasks_moved: t.moved,
            optimal_moves: t.optimal,
            mispredicted_moves: t.mispredicted,
            forced_redeploy_tasks: t.forced.unwrap_or(status.forced_redeploy_tasks),
            peak_unavailable: t.peak_unavailable,
            peak_unavailable_by: t.peak_unavailable_by,
            count_changes: t.count_changes,
            warnings: t.warnings.into_iter().collect(),
            converged_at_s: if status.state == State::Satisfied {
                t.converged_at.map(|c| c as f64 / 1000.0)
            } else {
                None
            },
            scaling: t.scaling,
            ecs_rebalancing_stops: s
                .and_then(|s| backend.lock().rebalancing_stops.get(&s).copied())
                .unwrap_or(0),
        });
    }
    let sim = backend.lock();
    report.api_calls = sim.api_calls();
    report.api_throttles = sim.throttles.clone();
    report
}

fn apply(backend: &SimBackend, event: &Event) {
    let mut sim = backend.lock();
    match event {
        Event::HostJoins(instance) => {
            sim.add_instance(instance.clone());
        }
        Event::HostDrains(id) => {
            if let Some(i) = sim.instance_index(id) {
                sim.drain(i);
            }
        }
        Event::HostTerminates(id) => {
            if let Some(i) = sim.instance_index(id) {
                sim.terminate(i);
            }
        }
        Event::ZoneFails(zone) => sim.fail_zone(zone),
        Event::ZoneRecovers(zone) => sim.recover_zone(zone),
        Event::FaultsEnd => sim.faults = crate::sim::Faults::default(),
        // Not the world's: the controller's loop restarts (see `run`).
        Event::ControllerRestarts => {}
        Event::SetDesiredCount { service, count } => {
            if let Some(s) = sim.services.iter().position(|x| &x.name == service) {
                sim.set_desired(s, *count);
            }
        }
    }
}

/// The report as text: one block per service, then the API calls.
pub fn write_summary(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "\n{} after {}s (virtual): {} reconciles, {} events",
        report.scenario, report.duration_s, report.reconciles, report.events_delivered
    )?;
    for v in &report.violations {
        writeln!(out, "  VIOLATION: {v}")?;
    }
    for s in &report.services {
        let zones: Vec<String> = s
            .tasks_per_zone
            .iter()
            .map(|(z, n)| format!("{z}={n}"))
            .collect();
        let skew: Vec<String> = s.skew.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(out, "  {}/{}: {:?}", s.policy, s.service, s.state)?;
        if !s.reason.is_empty() {
            writeln!(out, "    {}", s.reason)?;
        }
        writeln!(
            out,
            "    tasks per zone: {}   skew: {}",
            zones.join(" "),
            if skew.is_empty() {
                "-".into()
            } else {
                skew.join(", ")
            }
        )?;
        writeln!(
            out,
            "    moved {} (optimal {}, a forced redeploy: {}), peak unavailable {}, converged {}",
            s.tasks_moved,
            s.optimal_moves,
            s.forced_redeploy_tasks,
            s.peak_unavailable,
            s.converged_at_s
                .map_or("-".to_owned(), |c| format!("at {c}s"))
        )?;
        if s.ecs_rebalancing_stops > 0 {
            writeln!(
                out,
                "    ECS's AZ rebalancing moved {} (the optimum counts them)",
                s.ecs_rebalancing_stops
            )?;
        }
        if s.mispredicted_moves > 0 {
            writeln!(out, "    MISPREDICTED moves: {}", s.mispredicted_moves)?;
        }
    }
    let per_operation = |counts: &BTreeMap<String, u64>| {
        let list: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        list.join(", ")
    };
    for (cluster, d) in &report.disruption {
        if d.peak_stopped == 0 {
            continue;
        }
        let mut line = format!(
            "  disruption in {cluster}: at most {} tasks stopped and not yet replaced at once, in {} zones",
            d.peak_stopped, d.peak_zones_in_flight
        );
        if let Some(most) = d.max_moves_in_window {
            line.push_str(&format!("; at most {most} stops in the budget's period"));
        }
        if d.stops_outside_windows > 0 {
            line.push_str(&format!(
                "; {} stops outside its windows",
                d.stops_outside_windows
            ));
        }
        writeln!(out, "{line}")?;
    }
    writeln!(out, "  API calls: {}", per_operation(&report.api_calls))?;
    if !report.api_throttles.is_empty() {
        writeln!(out, "  throttled: {}", per_operation(&report.api_throttles))?;
    }
    if report.failed_snapshots + report.failed_actions > 0 {
        writeln!(
            out,
            "  failed: {} snapshots, {} actions (retried)",
            report.failed_snapshots, report.failed_actions
        )?;
    }
    Ok(())
}
