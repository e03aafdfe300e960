//! Runs the controller against a scenario in virtual time and reports what
//! happened: per service, where its tasks ended up, how many were moved
//! against the optimum, what a forced redeploy would have replaced, the
//! peak of unavailable tasks and the time to converge; and API calls.
//!
//! Triggers are production's own [`controller::Schedule`]: ECS events
//! (debounced: 2 s after the last, at most 10 s after the first), a periodic
//! resync, the scaling tick, and a failed pass retried as a full read with
//! the same backoff; a failed snapshot is never planned on.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use super::SimBackend;
use super::scenario::{Event, Scenario};
use crate::controller;
use crate::events::{Admission, Dedupe};
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
    /// When the policy was last found satisfied after being unsatisfied
    /// (virtual seconds from the start); `None` if it never converged.
    pub converged_at_s: Option<f64>,
    /// Each change of the desired count stevedore made for a scaling policy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scaling: Vec<ScalingStep>,
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
    pub services: Vec<ServiceReport>,
    pub api_calls: BTreeMap<String, u64>,
    /// Calls refused by an injected throttle, per operation.
    pub api_throttles: BTreeMap<String, u64>,
    /// Virtual time spent waiting for API rate tokens.
    pub api_pacing_s: f64,
}

#[derive(Debug, Default)]
struct Tracker {
    expected_remaining: Option<u32>,
    optimal: u32,
    mispredicted: u32,
    moved: u32,
    forced: Option<u32>,
    peak_unavailable: u32,
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
}

fn clock(at: Millis) -> String {
    let s = at / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

pub async fn run(scenario: Scenario, mut display: Display<'_>) -> Report {
    let Scenario {
        name,
        sim,
        policies,
        duration,
        resync,
        timeline,
        ..
    } = scenario;
    let cluster = sim.cluster.clone();
    let backend = SimBackend::new(sim);
    let mut trackers: BTreeMap<(String, String), Tracker> = BTreeMap::new();
    let mut report = Report {
        scenario: name,
        duration_s: duration as f64 / 1000.0,
        reconciles: 0,
        failed_snapshots: 0,
        failed_actions: 0,
        events_delivered: 0,
        events_duplicate: 0,
        events_stale: 0,
        events_malformed: 0,
        services: vec![],
        api_calls: BTreeMap::new(),
        api_throttles: BTreeMap::new(),
        api_pacing_s: 0.0,
    };
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
    macro_rules! say {
        ($($arg:tt)*) => {
            if let Some(out) = display.timeline.as_mut() {
                let _ = writeln!(out, $($arg)*);
            }
        };
    }

    // The last line printed per policy and service, to print changes only.
    let mut last_said: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut dedupe = Dedupe::default();
    let mut view = controller::ClusterView::default();
    let mut scaling = crate::plan::ScalingInput::default();
    let scaling_every = controller::scaling_interval(&policies);
    let mut schedule = controller::Schedule::new(0, resync, scaling_every);
    let mut next_event = 0;
    let mut now: Millis = 0;
    loop {
        // The timeline, then ECS itself.
        while next_event < timeline.len() && timeline[next_event].0 <= now {
            let event = &timeline[next_event].1;
            say!("[{}] timeline: {event}", clock(now));
            apply(&backend, event);
            trackers.values_mut().for_each(|t| t.disturbed = true);
            next_event += 1;
        }
        backend.lock().advance(now);

        // Events only say when to look.
        // Parsed, deduplicated and filtered as the SQS consumer does.
        let events = backend.lock().take_events();
        let mut news = false;
        for event in events {
            report.events_delivered += 1;
            match crate::events::parse(&event.to_string()) {
                Err(_) => report.events_malformed += 1,
                Ok(e) if e.cluster != cluster => {}
                Ok(e) => match dedupe.admit(&e) {
                    Admission::New => {
                        view.note(&e);
                        news = true;
                    }
                    Admission::Duplicate => report.events_duplicate += 1,
                    Admission::Stale => report.events_stale += 1,
                },
            }
        }
        if news {
            schedule.event(now);
        }
        if let Some(due) = schedule.due(now) {
            // A resync or a retry reads everything; events, what they touched.
            let full = due == controller::schedule::Due::Full;
            report.reconciles += 1;
            view.touch_scaled(&policies);
            let outcome = match view.read(&backend, &cluster, full).await {
                Ok(snapshot) => {
                    controller::reconcile(
                        &backend,
                        &cluster,
                        snapshot,
                        full,
                        &policies,
                        now,
                        &mut scaling,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Err(e) => {
                    report.failed_snapshots += 1;
                    schedule.passed(now, full, false);
                    say!(
                        "[{}] reconcile failed: {e}; retrying in {}s",
                        clock(now),
                        schedule.backoff() / 1000
                    );
                }
                Ok(outcome) => {
                    schedule.passed(now, full, true);
                    view.note_executed(&outcome.executed);
                    let acted: std::collections::BTreeSet<(String, String)> = outcome
                        .executed
                        .iter()
                        .map(|(a, _)| (a.policy.clone(), a.service.clone()))
                        .collect();
                    for status in &outcome.plan.statuses {
                        let t = trackers.get(&(status.policy.clone(), status.service.clone()));
                        let changed =
                            t.is_none_or(|t| t.satisfied != (status.state == State::Satisfied));
                        if status.moves_planned > 0
                            || status.state == State::Unsatisfiable
                            || (status.state == State::Satisfied && changed && t.is_some())
                        {
                            let line = format!(
                                "{}/{}: {:?}: {}",
                                status.policy, status.service, status.state, status.reason
                            );
                            let key = (status.policy.clone(), status.service.clone());
                            // Say it once, unless it is a new batch of moves.
                            if acted.contains(&key) || last_said.get(&key) != Some(&line) {
                                say!("[{}] {line}", clock(now));
                                last_said.insert(key, line);
                            }
                        }
                    }
                    let mut moved: BTreeMap<(String, String), u32> = BTreeMap::new();
                    for (action, result) in &outcome.executed {
                        match result {
                            Ok(()) => {
                                say!(
                                    "[{}]   {}/{}: {action}",
                                    clock(now),
                                    action.policy,
                                    action.service
                                );
                                let key = (action.policy.clone(), action.service.clone());
                                match action.kind {
                                    ActionKind::StopTask { .. } => {
                                        *moved.entry(key).or_default() += 1;
                                    }
                                    ActionKind::SetDesiredCount { from, to }
                                        if action.rule == crate::plan::SCALING_RULE =>
                                    {
                                        let t = trackers.entry(key).or_default();
                                        let skew_excess_before = t.last_skew;
                                        t.scaling.push(ScalingStep {
                                            at_s: now as f64 / 1000.0,
                                            from,
                                            to,
                                            reason: action.reason.clone(),
                                            skew_excess_before,
                                        });
                                    }
                                    ActionKind::SetDesiredCount { .. } => {}
                                }
                            }
                            Err(e) => {
                                report.failed_actions += 1;
                                say!(
                                    "[{}]   {}/{}: FAILED {action}: {e}",
                                    clock(now),
                                    action.policy,
                                    action.service
                                );
                            }
                        }
                    }
                    for action in outcome.plan.actions.iter().filter(|a| a.dry_run) {
                        let line = format!("{}/{}: {action}", action.policy, action.service);
                        let key = (
                            action.policy.clone(),
                            format!("{} (dry run)", action.service),
                        );
                        if last_said.get(&key) != Some(&line) {
                            say!("[{}]   {line}", clock(now));
                            last_said.insert(key, line);
                        }
                    }
                    for status in &outcome.plan.statuses {
                        let key = (status.policy.clone(), status.service.clone());
                        let t = trackers.entry(key.clone()).or_default();
                        t.forced.get_or_insert(status.forced_redeploy_tasks);
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
                        // The optimum is only comparable at steady state:
                        // mid-move, stopped tasks are gone and their
                        // replacements not yet running.
                        if status.state == State::Unsatisfiable {
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
                            t.disturbed = false;
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
            }
        }

        // Unavailable tasks, every second.
        {
            let sim = backend.lock();
            let mut running = vec![0u32; sim.services.len()];
            for t in &sim.tasks {
                if t.task.status == TaskStatus::Running {
                    running[t.task.service] += 1;
                }
            }
            for ((_, service), t) in trackers.iter_mut() {
                if let Some(s) = sim.services.iter().position(|x| &x.name == service) {
                    t.peak_unavailable = t
                        .peak_unavailable
                        .max(sim.services[s].desired.saturating_sub(running[s]));
                }
            }
        }
        if let Some(bar) = &progress {
            bar.set_position(now / 1000);
        }
        if now >= duration {
            break;
        }
        now = (now + 1_000).min(duration);
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }

    // The final state, planned once more for its report.
    let final_state = backend.lock().state();
    let final_plan = crate::plan::plan(&policies, &final_state, now);
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
            converged_at_s: if status.state == State::Satisfied {
                t.converged_at.map(|c| c as f64 / 1000.0)
            } else {
                None
            },
            scaling: t.scaling,
        });
    }
    let sim = backend.lock();
    report.api_calls = sim.api_calls();
    report.api_throttles = sim.throttles.clone();
    report.api_pacing_s = sim.paced_ms as f64 / 1000.0;
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
        if s.mispredicted_moves > 0 {
            writeln!(out, "    MISPREDICTED moves: {}", s.mispredicted_moves)?;
        }
    }
    let per_operation = |counts: &BTreeMap<String, u64>| {
        let list: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        list.join(", ")
    };
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
