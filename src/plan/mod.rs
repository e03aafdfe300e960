//! The planner: a pure function from (policies, cluster snapshot, now, and
//! for scaling policies their metric readings) to a [`Plan`]. No I/O, no
//! clock reads, no randomness: the same input gives the same plan. Actions
//! are data, each with its policy, rule and reason, and the disruption
//! budget is spent while planning.
//!
//! - [`optimum`]: the fewest moves that satisfy a service's spread constraints.
//! - [`placement`]: how ECS places and scales in tasks (shared with the simulator).
//! - [`spread`]: which tasks to stop now, so that each stop is a step of an
//!   optimal plan whatever instance ECS picks for the replacement.
//! - [`one_per_host`]: desiredCount = eligible hosts.
//! - [`scaling`]: desiredCount from a metric, with steps, bounds, cooldowns
//!   and a scale-in stabilization window.
//! - [`budget`]: the cluster's DisruptionBudget, spent across services
//!   after each has planned its own stops.
//!
//! Inputs beyond the policies and the snapshot (the metric readings, and
//! what earlier passes did: scalings, stops) come in a [`Memory`].

pub mod az_rebalancing;
pub mod backoff;
pub mod budget;
pub mod one_per_host;
pub mod optimum;
pub mod placement;
pub mod scale_in;
pub mod scaling;
pub mod spread;

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use crate::model::{ClusterSnapshot, Millis, TaskStatus};
use crate::spec::policy::{Mode, ServiceMatch, TopologyKey};
use crate::spec::{Budget, Policy};

/// What to do, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub policy: String,
    pub service: String,
    /// The rule that asks for it, such as `spread(zone)` or `oneTaskPerHost`.
    pub rule: String,
    #[serde(flatten)]
    pub kind: ActionKind,
    /// One line: why this action, and why this task.
    pub reason: String,
    /// Planned for a DryRun policy: reported, never executed.
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum ActionKind {
    /// Stop a task; ECS starts its replacement where its strategy says.
    #[serde(rename_all = "camelCase")]
    StopTask {
        task: String,
        instance: String,
        zone: String,
    },
    /// Change the service's desired count.
    #[serde(rename_all = "camelCase")]
    SetDesiredCount { from: u32, to: u32 },
    /// Turn on scale-in protection, expiring after `minutes`: the tasks a
    /// scale-in keeps, so that ECS stops the others.
    #[serde(rename_all = "camelCase")]
    ProtectTasks { tasks: Vec<String>, minutes: u32 },
    /// Turn off the protection stevedore turned on, once the scale-in is done.
    #[serde(rename_all = "camelCase")]
    UnprotectTasks { tasks: Vec<String> },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dry = if self.dry_run { " (dry run)" } else { "" };
        match &self.kind {
            ActionKind::StopTask {
                task,
                instance,
                zone,
            } => {
                write!(
                    f,
                    "stop task {task} on {instance} ({zone}){dry}: {}",
                    self.reason
                )
            }
            ActionKind::SetDesiredCount { from, to } => {
                write!(f, "set desiredCount {from} -> {to}{dry}: {}", self.reason)
            }
            ActionKind::ProtectTasks { tasks, minutes } => write!(
                f,
                "protect {} from scale-in for {minutes}m{dry}: {}",
                crate::words::count(tasks.len() as u64, "task"),
                self.reason
            ),
            ActionKind::UnprotectTasks { tasks } => write!(
                f,
                "release the scale-in protection of {}{dry}: {}",
                crate::words::count(tasks.len() as u64, "task"),
                self.reason
            ),
        }
    }
}

/// Where a policy stands for one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum State {
    /// Every rule holds.
    Satisfied,
    /// Actions are under way or planned; more may follow.
    Converging,
    /// No safe action can satisfy the policy; nothing is done (see the reason).
    Unsatisfiable,
    /// Not acted on for now (deployment, not steady, conflict; see the reason).
    Paused,
    /// The policy's target matches no service, or its cluster does not
    /// exist: nothing to do, and likely a typo (see the reason).
    NotFound,
}

/// How one spread constraint stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConstraintReport {
    pub topology: String,
    pub max_skew: u32,
    pub skew: u32,
    /// Tasks per domain (eligible domains only, empty ones included; for
    /// a host constraint only the hosts with tasks, as a cluster may have
    /// thousands: `skew` counts the empty ones).
    pub tasks_per_domain: Vec<(String, u32)>,
}

/// The status of one policy for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    pub policy: String,
    pub service: String,
    pub state: State,
    pub reason: String,
    pub constraints: Vec<ConstraintReport>,
    /// The fewest task moves that still satisfy the spread constraints.
    pub moves_remaining: u32,
    /// Moves planned now (within the disruption budget).
    pub moves_planned: u32,
    /// Tasks a forced redeploy of the service would replace.
    pub forced_redeploy_tasks: u32,
    /// Where scaling stands, when the policy scales: the metric, the
    /// thresholds and the decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaling: Option<String>,
    pub warnings: Vec<String>,
    /// The policy is DryRun: its actions are listed, never carried out.
    pub dry_run: bool,
    /// A DryRun policy's moves after the ones it would make now, as the
    /// model predicts them: every move it would make, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub later_moves: Vec<String>,
    /// Who balances the zones, said when ECS's AZ rebalancing is ENABLED:
    /// ECS, or stevedore as ECS's cannot run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zones_balanced_by: Option<String>,
}

impl ServiceStatus {
    /// A status with nothing measured yet: no constraint, no move.
    pub fn new(
        policy: &str,
        service: &str,
        state: State,
        reason: impl Into<String>,
    ) -> ServiceStatus {
        ServiceStatus {
            policy: policy.to_owned(),
            service: service.to_owned(),
            state,
            reason: reason.into(),
            constraints: vec![],
            moves_remaining: 0,
            moves_planned: 0,
            forced_redeploy_tasks: 0,
            scaling: None,
            warnings: vec![],
            dry_run: false,
            later_moves: vec![],
            zones_balanced_by: None,
        }
    }
}

/// The planner's output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub cluster: String,
    pub actions: Vec<Action>,
    pub statuses: Vec<ServiceStatus>,
    /// When a stop this plan holds back may be made (a rate budget frees
    /// one, a backoff ends), on the planner's clock: a pass then is worth
    /// making, though nothing else would wake the controller before its
    /// resync.
    #[serde(skip)]
    pub retry_at: Option<Millis>,
    /// The cluster's DisruptionBudget as this pass found it, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<budget::BudgetUse>,
}

impl Plan {
    /// The actions to execute (DryRun policies' actions are only reported).
    pub fn executable(&self) -> impl Iterator<Item = &Action> {
        self.actions.iter().filter(|a| !a.dry_run)
    }
}

/// Tasks of each service, indexed once per snapshot.
#[derive(Debug)]
pub struct Index<'a> {
    pub snapshot: &'a ClusterSnapshot,
    /// Task indices per service.
    pub tasks_of: Vec<Vec<usize>>,
    service_by_name: HashMap<&'a str, usize>,
}

impl<'a> Index<'a> {
    pub fn new(snapshot: &'a ClusterSnapshot) -> Index<'a> {
        let mut tasks_of = vec![vec![]; snapshot.services.len()];
        for (i, t) in snapshot.tasks.iter().enumerate() {
            if let Some(list) = tasks_of.get_mut(t.service) {
                list.push(i);
            }
        }
        let service_by_name = snapshot
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        Index {
            snapshot,
            tasks_of,
            service_by_name,
        }
    }

    /// The services a policy targets in this snapshot's cluster.
    /// Tasks of `service` holding resources, per instance (running or
    /// pending), as ECS's placement counts them.
    pub fn holding(&self, service: usize) -> Vec<u32> {
        let mut holding = vec![0u32; self.snapshot.instances.len()];
        for t in &self.tasks_of[service] {
            let task = &self.snapshot.tasks[*t];
            if let (Some(i), TaskStatus::Running | TaskStatus::Pending) =
                (task.instance, task.status)
            {
                holding[i] += 1;
            }
        }
        holding
    }

    pub fn services_of(&self, policy: &Policy) -> Vec<usize> {
        if policy.target.cluster.name != self.snapshot.cluster {
            return vec![];
        }
        match &policy.target.services {
            ServiceMatch::Named(r) => self
                .service_by_name
                .get(r.name.as_str())
                .copied()
                .into_iter()
                .collect(),
            selector => (0..self.snapshot.services.len())
                .filter(|i| {
                    let s = &self.snapshot.services[*i];
                    selector.matches(&s.name, &s.tags)
                })
                .collect(),
        }
    }

    /// Running tasks of a service.
    pub fn running(&self, service: usize) -> impl Iterator<Item = usize> + '_ {
        self.tasks_of[service]
            .iter()
            .copied()
            .filter(|t| self.snapshot.tasks[*t].status == TaskStatus::Running)
    }
}

/// What the planner needs beyond the policies and one cluster's snapshot:
/// this pass's metric readings, and what is remembered of earlier passes
/// (kept by the controller per cluster, updated by the planner and by
/// [`Memory::executed`]).
#[derive(Debug, Clone, Default)]
pub struct Memory {
    /// The latest value per (policy, service); absent or `None`: no data.
    pub readings: HashMap<(String, String), Option<f64>>,
    /// Scalings per (policy, service), for cooldowns and stabilization.
    pub history: HashMap<(String, String), scaling::History>,
    /// The stops stevedore made, for the cluster's DisruptionBudget.
    pub ledger: budget::Ledger,
    /// Whether the stops made before this memory was kept were read back
    /// into the ledger (see [`budget::Ledger::recover`]); read again when
    /// the cluster is taken over.
    pub ledger_recovered: bool,
    /// Per (policy, service): whether the last moves landed as planned.
    pub moves: HashMap<(String, String), backoff::MoveCheck>,
    /// Per (policy, service): a scale-in whose kept tasks stevedore protected.
    pub scale_ins: HashMap<(String, String), scale_in::ScaleIn>,
    /// Added to the planner's `now` to get the wall clock (budget windows):
    /// 0 when `now` is the wall clock; the scenario's start in the simulator.
    pub wall_offset: Millis,
}

impl Memory {
    /// Notes the scalings and stops of `plan` that were carried out (by
    /// `now`, the moment of the last write), for the cooldowns, the budget
    /// and the check of each service's moves. DryRun actions were never
    /// carried out.
    pub fn executed<E>(
        &mut self,
        plan: &Plan,
        snapshot: &ClusterSnapshot,
        executed: &[(Action, Result<(), E>)],
        now: Millis,
    ) {
        let mut stops: HashMap<(&str, &str), u32> = HashMap::new();
        for (action, result) in executed {
            if result.is_ok()
                && !action.dry_run
                && matches!(action.kind, ActionKind::StopTask { .. })
            {
                *stops.entry((&action.policy, &action.service)).or_default() += 1;
            }
        }
        for status in &plan.statuses {
            if let Some(n) = stops.get(&(status.policy.as_str(), status.service.as_str())) {
                self.moves
                    .entry((status.policy.clone(), status.service.clone()))
                    .or_default()
                    .moved(status.moves_remaining, *n);
            }
        }
        // Built on the first stop: each stop notes its service's tasks.
        let mut index: Option<Index<'_>> = None;
        for (action, result) in executed {
            if result.is_err() || action.dry_run {
                continue;
            }
            match &action.kind {
                ActionKind::SetDesiredCount { from, to } if action.rule == SCALING_RULE => {
                    self.history
                        .entry((action.policy.clone(), action.service.clone()))
                        .or_default()
                        .scaled(*from, *to, now);
                }
                ActionKind::StopTask { task, zone, .. } => {
                    let index = index.get_or_insert_with(|| Index::new(snapshot));
                    let known = index
                        .service_by_name
                        .get(action.service.as_str())
                        .map(|s| {
                            index.tasks_of[*s]
                                .iter()
                                .map(|t| budget::id_hash(&snapshot.tasks[*t].id))
                                .collect()
                        })
                        .unwrap_or_default();
                    self.ledger
                        .stopped_among(task, &action.service, zone, now, known);
                }
                ActionKind::SetDesiredCount { .. } => {}
                ActionKind::ProtectTasks { tasks, .. } => {
                    let to = executed.iter().find_map(|(a, r)| match a.kind {
                        ActionKind::SetDesiredCount { to, .. }
                            if r.is_ok() && a.service == action.service =>
                        {
                            Some(to)
                        }
                        _ => None,
                    });
                    self.scale_ins.insert(
                        (action.policy.clone(), action.service.clone()),
                        scale_in::ScaleIn {
                            to,
                            protected: tasks.clone(),
                            at: now,
                        },
                    );
                }
                ActionKind::UnprotectTasks { .. } => {
                    self.scale_ins
                        .remove(&(action.policy.clone(), action.service.clone()));
                }
            }
        }
    }
}

/// The rule name of scaling actions.
pub const SCALING_RULE: &str = "scaling";

/// Plans every policy against one cluster's snapshot, with no metric data
/// (scaling policies hold their count, within their bounds).
pub fn plan(policies: &[Policy], snapshot: &ClusterSnapshot, now: Millis) -> Plan {
    plan_with(policies, None, snapshot, now, &mut Memory::default())
}

/// Plans with the cluster's DisruptionBudget, if it has one, and what is
/// known beyond the snapshot.
pub fn plan_with(
    policies: &[Policy],
    budget: Option<&Budget>,
    snapshot: &ClusterSnapshot,
    now: Millis,
    memory: &mut Memory,
) -> Plan {
    plan_with_index(policies, budget, &Index::new(snapshot), now, memory)
}

/// [`plan_with`] on an index built beforehand (the benchmark times both apart).
pub fn plan_with_index(
    policies: &[Policy],
    budget: Option<&Budget>,
    index: &Index<'_>,
    now: Millis,
    memory: &mut Memory,
) -> Plan {
    let snapshot = index.snapshot;
    let mut plan = Plan {
        cluster: snapshot.cluster.clone(),
        ..Plan::default()
    };

    // Which policies claim each service: two are a conflict, acted on by neither.
    let mut claims: HashMap<usize, Vec<usize>> = HashMap::new();
    let targets: Vec<Vec<usize>> = policies.iter().map(|p| index.services_of(p)).collect();
    let topologies = spread::Topologies::new(snapshot, policies);
    for (p, services) in targets.iter().enumerate() {
        for s in services {
            claims.entry(*s).or_default().push(p);
        }
    }

    let stops_of = memory.ledger.by_service();
    for (p, services) in targets.iter().enumerate() {
        let policy = &policies[p];
        for &s in services {
            let service = &snapshot.services[s];
            let others: Vec<&str> = claims[&s]
                .iter()
                .filter(|q| **q != p)
                .map(|q| policies[*q].name.as_str())
                .collect();
            let mut status = ServiceStatus {
                forced_redeploy_tasks: index.running(s).count() as u32,
                ..ServiceStatus::new(&policy.name, &service.name, State::Satisfied, "")
            };
            if !others.is_empty() {
                status.state = State::Paused;
                status.reason = format!(
                    "conflict: service `{}` is also targeted by policy {}",
                    service.name,
                    others.join(", ")
                );
                plan.statuses.push(status);
                continue;
            }
            let mut actions = vec![];
            let key = (policy.name.clone(), service.name.clone());
            // Placement waits while a scale-in keeps tasks protected.
            let mut scale_in_under_way = false;
            if let Some(rule) = &policy.scaling {
                if service.autoscaling_target {
                    status.state = State::Paused;
                    status.reason = "conflict: an Application Auto Scaling target also sets this service's desired count; remove it or the policy's scaling".into();
                    plan.statuses.push(status);
                    continue;
                }
                let reading = memory.readings.get(&key).copied().flatten();
                if let Some(pending) = memory.scale_ins.get(&key) {
                    match scale_in::pending(pending, policy, index, s, now) {
                        scale_in::Pending::Release(action) => {
                            status.state = State::Converging;
                            status.reason = format!("scaling: {}", action.reason);
                            status.scaling = Some(action.reason.clone());
                            actions.push(action);
                        }
                        scale_in::Pending::Wait(why) => {
                            status.state = State::Converging;
                            status.reason = format!("scaling: {why}");
                            status.scaling = Some(why);
                            scale_in_under_way = true;
                        }
                    }
                }
                let history = memory.history.entry(key).or_default();
                let (decision, why) = if actions.is_empty() && !scale_in_under_way {
                    scaling::decide_at(
                        rule,
                        service.desired,
                        reading,
                        now,
                        now + memory.wall_offset,
                        history,
                    )
                } else {
                    (scaling::Decision::Hold, String::new())
                };
                // A scale-in while tasks are stopping or starting (a move in
                // flight, a replacement pending) would take the move's task
                // with it and leave the spread it was making: it waits for
                // steady state. A scale-out never waits.
                let (decision, why) = match decision {
                    scaling::Decision::Scale { to } if to < service.desired => {
                        match spread::steady_state_gap(index, s) {
                            Some(gap) => (
                                scaling::Decision::Hold,
                                format!("{why}; the scale-in waits for steady state ({gap})"),
                            ),
                            None => (decision, why),
                        }
                    }
                    _ => (decision, why),
                };
                if let scaling::Decision::Scale { to } = decision {
                    if to < service.desired
                        && !policy.placement.spread.is_empty()
                        && let Some(removed) = spread::scale_in_removals(
                            policy,
                            index,
                            &topologies,
                            s,
                            service.desired - to,
                        )
                        && let Some(protect) = scale_in::protect(policy, index, s, &removed, &why)
                    {
                        actions.push(protect);
                    }
                    actions.push(Action {
                        policy: policy.name.clone(),
                        service: service.name.clone(),
                        rule: SCALING_RULE.into(),
                        kind: ActionKind::SetDesiredCount {
                            from: service.desired,
                            to,
                        },
                        reason: why.clone(),
                        dry_run: false,
                    });
                    status.state = State::Converging;
                    status.reason = format!("scaling: {why}");
                }
                if !why.is_empty() {
                    status.scaling = Some(why);
                }
            }
            if actions.is_empty() && !scale_in_under_way {
                // Placement waits for a new count to take effect.
                let limit = budget::Limit {
                    settling: budget::settling(
                        index,
                        s,
                        stops_of
                            .get(service.name.as_str())
                            .map_or(&[][..], Vec::as_slice),
                        policy.settle_time,
                        now,
                    ),
                    moves_done: memory
                        .moves
                        .get(&(policy.name.clone(), service.name.clone()))
                        .map_or(0, |check| check.done),
                    ..budget::Limit::NONE
                };
                plan_service(
                    policy,
                    index,
                    &topologies,
                    s,
                    &mut status,
                    &mut actions,
                    &limit,
                );
                let until = hold_while_backing_off(
                    &mut memory.moves,
                    &policy.name,
                    &mut status,
                    &mut actions,
                    now,
                );
                plan.retry_at = earliest(plan.retry_at, until);
            }
            let dry_run = policy.mode == Mode::DryRun;
            status.dry_run = dry_run;
            if dry_run && !actions.is_empty() && !status.reason.contains("dry run") {
                status.reason += "; dry run: nothing is changed, the actions are listed";
            }
            if status.reason.is_empty() {
                // A policy of scaling alone says where its scaling stands.
                status.reason = match &status.scaling {
                    Some(scaling) => format!("scaling: {scaling}"),
                    None => "no rule applies".into(),
                };
            }
            for mut action in actions {
                action.dry_run = dry_run;
                plan.actions.push(action);
            }
            plan.statuses.push(status);
        }
    }
    // Every policy of this cluster is accounted for: one that matches no
    // service says so.
    for (policy, services) in policies.iter().zip(&targets) {
        if services.is_empty() && policy.target.cluster.name == snapshot.cluster {
            plan.statuses
                .push(not_found(policy, &snapshot.cluster, Some(snapshot)));
        }
    }
    hold_binpack_stops_behind_other_placements(index, &mut plan);
    memory.ledger.settle(index, budget, now);
    if let Some(budget) = budget {
        spend_budget(budget, policies, index, &topologies, now, memory, &mut plan);
    }
    plan
}

/// The status of a policy that matches nothing: its target names a service
/// the cluster does not have (with the closest name it has), or its
/// selector matches none, or (`snapshot` None) the cluster does not exist.
pub fn not_found(
    policy: &Policy,
    cluster: &str,
    snapshot: Option<&ClusterSnapshot>,
) -> ServiceStatus {
    let (service, reason) = match (snapshot, &policy.target.services) {
        (None, ServiceMatch::Named(r)) => (
            r.name.clone(),
            format!("cluster `{cluster}` not found: the policy matches nothing"),
        ),
        (None, _) => (
            String::new(),
            format!("cluster `{cluster}` not found: the policy matches nothing"),
        ),
        (Some(snapshot), ServiceMatch::Named(r)) => {
            let names = snapshot.services.iter().map(|s| s.name.as_str());
            let mut reason = format!("no service `{}` in cluster `{cluster}`", r.name);
            if let Some(close) = crate::spec::diag::closest(&r.name, names) {
                reason.push_str(&format!("; did you mean `{close}`?"));
            }
            (r.name.clone(), reason)
        }
        (Some(_), ServiceMatch::Selector { name_pattern, tags }) => {
            let mut what = vec![];
            if let Some(g) = name_pattern {
                what.push(format!("namePattern `{}`", g.as_str()));
            }
            if !tags.is_empty() {
                let tags: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                what.push(format!("tags {}", tags.join(", ")));
            }
            (
                String::new(),
                format!(
                    "no service in cluster `{cluster}` matches {}",
                    what.join(" and ")
                ),
            )
        }
    };
    ServiceStatus::new(&policy.name, &service, State::NotFound, reason)
}

/// The plan of a cluster that does not exist: each of its policies NotFound.
pub fn cluster_not_found(policies: &[Policy], cluster: &str) -> Plan {
    Plan {
        cluster: cluster.to_owned(),
        actions: vec![],
        statuses: policies
            .iter()
            .filter(|p| p.target.cluster.name == cluster)
            .map(|p| not_found(p, cluster, None))
            .collect(),
        retry_at: None,
        budget: None,
    }
}

/// "3 moves needed", "1 move needed".
pub(crate) fn needed(moves: u32) -> String {
    format!("{} needed", crate::words::count(moves, "move"))
}

/// Holds for one pass the stops of a binpack service while another service
/// places tasks in the same pass (a scale-out, or stops whose replacements
/// ECS will place): a binpack strategy puts a replacement on the fullest
/// host, which those tasks change. Planned against today's hosts, such a
/// move could land where it started and be wasted; the next pass plans it
/// against the hosts as they become. Other strategies place by the
/// service's own tasks and never wait; of several binpack services, the
/// first planned goes ahead, so they never hold each other for good.
fn hold_binpack_stops_behind_other_placements(index: &Index<'_>, plan: &mut Plan) {
    let binpacks = |service: &str| {
        index.service_by_name.get(service).is_some_and(|s| {
            index.snapshot.services[*s]
                .strategy
                .iter()
                .any(|p| matches!(p, crate::model::PlacementStrategy::Binpack(_)))
        })
    };
    let stop = |a: &Action| matches!(a.kind, ActionKind::StopTask { .. });
    // Most plans have no binpack stop: they pay nothing more.
    if !plan.actions.iter().any(|a| stop(a) && binpacks(&a.service)) {
        return;
    }
    // Services placing tasks in this pass whatever happens: each with what
    // it does.
    let mut placing: Vec<(String, String)> = vec![];
    // Services with tasks ECS has yet to place (a replacement of an earlier
    // pass, a count raised), and how many: were a binpack stop to free
    // room, they could take it before the replacement.
    let mut unplaced: Vec<(usize, u32)> = vec![];
    for (o, service) in index.snapshot.services.iter().enumerate() {
        let placed = index.tasks_of[o]
            .iter()
            .map(|t| &index.snapshot.tasks[*t])
            .filter(|t| t.instance.is_some() && t.status != TaskStatus::Stopping)
            .count() as u32;
        if service.desired > placed {
            unplaced.push((o, service.desired - placed));
        }
    }
    for a in plan.actions.iter().filter(|a| !a.dry_run) {
        let what = match a.kind {
            ActionKind::SetDesiredCount { from, to } if to > from => {
                format!("scales out ({from} -> {to}) in this pass")
            }
            ActionKind::StopTask { .. } if !binpacks(&a.service) => {
                "has tasks replaced in this pass".to_owned()
            }
            _ => continue,
        };
        if !placing.iter().any(|(s, _)| *s == a.service) {
            placing.push((a.service.clone(), what));
        }
    }
    for status in &mut plan.statuses {
        let mine = |a: &Action| a.policy == status.policy && a.service == status.service;
        if !binpacks(&status.service) || !plan.actions.iter().any(|a| mine(a) && stop(a)) {
            continue;
        }
        // Where its stops free room.
        let freed: Vec<usize> = plan
            .actions
            .iter()
            .filter(|a| mine(a))
            .filter_map(|a| match &a.kind {
                ActionKind::StopTask { instance, .. } => index
                    .snapshot
                    .instances
                    .iter()
                    .position(|i| i.id == *instance),
                _ => None,
            })
            .collect();
        let me = index.service_by_name.get(status.service.as_str()).copied();
        // A service waiting for room it could take from under the
        // replacement; one its constraints keep off every host waits for
        // ever and holds nothing.
        let waiting = unplaced
            .iter()
            .filter(|(o, _)| Some(*o) != me)
            .find(|(o, _)| could_place(index, *o, &freed, me))
            .map(|(o, n)| {
                (
                    index.snapshot.services[*o].name.clone(),
                    format!(
                        "has {} ECS has yet to place",
                        crate::words::count(*n, "task")
                    ),
                )
            });
        match placing
            .iter()
            .find(|(s, _)| *s != status.service)
            .or(waiting.as_ref())
        {
            Some((other, what)) => {
                status.reason = format!(
                    "{}, 0 now: service `{other}` {what}, and where its new tasks land changes where binpack places replacements",
                    needed(status.moves_remaining)
                );
                plan.actions.retain(|a| !(mine(a) && stop(a)));
                status.moves_planned = 0;
            }
            // This one goes ahead; binpack services after it wait for it.
            None if !status.dry_run => {
                placing.push((
                    status.service.clone(),
                    "has tasks replaced in this pass".to_owned(),
                ));
            }
            None => {}
        }
    }
}

/// Whether ECS could place a task of service `o` now, or once the tasks of
/// service `stopping` on the hosts `freed` have stopped.
fn could_place(index: &Index<'_>, o: usize, freed: &[usize], stopping: Option<usize>) -> bool {
    let snapshot = index.snapshot;
    let mut view = placement_now(index, o);
    if !view.candidates().is_empty() {
        return true;
    }
    let Some(stopping) = stopping else {
        return false;
    };
    let size = snapshot.services[stopping].task_size;
    for i in freed {
        view.remaining[*i] = view.remaining[*i].plus(size);
    }
    !view.candidates().is_empty()
}

/// The earlier of two moments, either of which may be unknown.
fn earliest(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    a.into_iter().chain(b).min()
}

/// Holds a service's stops while it backs off after moves that missed;
/// returns when the backoff ends, if it held any.
fn hold_while_backing_off(
    moves: &mut HashMap<(String, String), backoff::MoveCheck>,
    policy: &str,
    status: &mut ServiceStatus,
    actions: &mut Vec<Action>,
    now: Millis,
) -> Option<Millis> {
    let key = (policy.to_owned(), status.service.clone());
    let check = moves.get_mut(&key)?;
    let waiting = check.check(status, now);
    let until = check.until;
    // Kept while the service converges: its moves are numbered across passes.
    if check.expected.is_none() && check.misses == 0 && status.moves_remaining == 0 {
        moves.remove(&key);
    }
    let stops = |a: &Action| matches!(a.kind, ActionKind::StopTask { .. });
    if let Some(why) = waiting
        && actions.iter().any(stops)
    {
        actions.retain(|a| !stops(a));
        status.state = State::Converging;
        status.moves_planned = 0;
        status.reason = format!("{}, 0 now: {why}", needed(status.moves_remaining));
        return Some(until);
    }
    None
}

/// Spends the cluster's DisruptionBudget over the stops each service
/// planned on its own: services most over their skew first, then by name.
/// A service that fits keeps its stops; one that does not is planned again
/// within what is left (its zone, its count), or holds with the reason.
/// DryRun policies spend a copy: they show what the budget would let them
/// do, and take nothing from the policies that act.
fn spend_budget(
    budget: &Budget,
    policies: &[Policy],
    index: &Index<'_>,
    topologies: &spread::Topologies<'_>,
    now: Millis,
    memory: &Memory,
    plan: &mut Plan,
) {
    let snapshot = index.snapshot;
    let running = snapshot
        .tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Running)
        .count() as u32;
    let mut acting = budget::allowance(
        budget,
        &memory.ledger,
        running,
        now,
        now + memory.wall_offset,
    );
    plan.budget = Some(budget::BudgetUse::of(
        budget,
        &acting,
        &memory.ledger,
        running,
        now,
        now + memory.wall_offset,
    ));
    let mut dry = acting.clone();
    let stops_of = memory.ledger.by_service();
    // Each service's stops (indices into the actions, which stay as they
    // are until the end), found in one pass: thousands of services may
    // have some.
    let mut stops_by_service: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, a) in plan.actions.iter().enumerate() {
        if matches!(a.kind, ActionKind::StopTask { .. }) {
            stops_by_service
                .entry((a.policy.as_str(), a.service.as_str()))
                .or_default()
                .push(i);
        }
    }
    let stops = |status: &ServiceStatus| -> Vec<usize> {
        stops_by_service
            .get(&(status.policy.as_str(), status.service.as_str()))
            .cloned()
            .unwrap_or_default()
    };
    let mut order: Vec<usize> = (0..plan.statuses.len())
        .filter(|i| !stops(&plan.statuses[*i]).is_empty())
        .collect();
    order.sort_by(|a, b| {
        let (a, b) = (&plan.statuses[*a], &plan.statuses[*b]);
        budget::excess(b)
            .cmp(&budget::excess(a))
            .then_with(|| a.service.cmp(&b.service))
            .then_with(|| a.policy.cmp(&b.policy))
    });
    // The stops, in the order they were given: the first to execute are
    // those of the services furthest from their spread.
    let mut spent: Vec<Action> = vec![];
    for i in order {
        let planned = stops(&plan.statuses[i]);
        let zones_of =
            |actions: &mut dyn Iterator<Item = &Action>| -> std::collections::BTreeSet<String> {
                actions
                    .filter_map(|a| match &a.kind {
                        ActionKind::StopTask { zone, .. } => Some(zone.clone()),
                        _ => None,
                    })
                    .collect()
            };
        let zones = zones_of(&mut planned.iter().map(|a| &plan.actions[*a]));
        let is_dry = plan.actions[planned[0]].dry_run;
        let allowance = if is_dry { &mut dry } else { &mut acting };
        let mut limit = allowance.limit();
        let n = planned.len() as u32;
        let fits = limit.stops.is_none_or(|m| n <= m)
            && match &limit.zone {
                Some(zone) => zones.iter().all(|z| z == zone),
                None => !allowance.one_zone || zones.len() <= 1,
            };
        if fits {
            allowance.spend(n, &zones);
            spent.extend(planned.iter().map(|a| plan.actions[*a].clone()));
            continue;
        }
        // Planned again within what is left, or held.
        let first_zone = match &plan.actions[planned[0]].kind {
            ActionKind::StopTask { zone, .. } => Some(zone.clone()),
            _ => None,
        };
        let status = &mut plan.statuses[i];
        if allowance.one_zone && limit.zone.is_none() {
            limit.zone = first_zone;
        }
        let mut replanned = vec![];
        let p = policies
            .iter()
            .position(|p| p.name == status.policy)
            .expect("a status names a planned policy");
        // Spread stops are planned again within what is left; oneTaskPerHost
        // moves (a task off a host it should not be on) wait whole.
        if limit.stops != Some(0) && !policies[p].placement.spread.is_empty() {
            let s = index.service_by_name[status.service.as_str()];
            limit.moves_done = memory
                .moves
                .get(&(status.policy.clone(), status.service.clone()))
                .map_or(0, |check| check.done);
            limit.settling = budget::settling(
                index,
                s,
                stops_of
                    .get(status.service.as_str())
                    .map_or(&[][..], Vec::as_slice),
                policies[p].settle_time,
                now,
            );
            let mut again = ServiceStatus {
                state: State::Satisfied,
                reason: String::new(),
                constraints: vec![],
                moves_remaining: 0,
                moves_planned: 0,
                ..status.clone()
            };
            spread::plan(
                &policies[p],
                index,
                topologies,
                s,
                &mut again,
                &mut replanned,
                &limit,
            );
            if !replanned.is_empty() {
                again.reason = format!("{}; {}", again.reason, allowance.why_held(&limit));
                *status = again;
            }
        }
        if replanned.is_empty() {
            plan.retry_at = earliest(plan.retry_at, allowance.frees_at);
            status.state = State::Converging;
            status.moves_planned = 0;
            status.reason = format!(
                "{}, 0 now: {}",
                needed(status.moves_remaining),
                allowance.why_held(&limit)
            );
            continue;
        }
        let zones = zones_of(&mut replanned.iter());
        allowance.spend(replanned.len() as u32, &zones);
        for mut action in replanned {
            action.dry_run = is_dry;
            spent.push(action);
        }
    }
    plan.actions
        .retain(|a| !matches!(a.kind, ActionKind::StopTask { .. }));
    plan.actions.extend(spent);
}

/// Applies the policy's rules to one service, in order: the desired count
/// first (it decides how many tasks there are), then placement.
fn plan_service(
    policy: &Policy,
    index: &Index<'_>,
    topologies: &spread::Topologies<'_>,
    s: usize,
    status: &mut ServiceStatus,
    actions: &mut Vec<Action>,
    limit: &budget::Limit,
) {
    let service = &index.snapshot.services[s];
    let places =
        policy.placement.one_task_per_host.is_some() || !policy.placement.spread.is_empty();
    if service.fargate && places {
        // Without this, one task per host would set a Fargate service's
        // count to the number of hosts, and a spread would count none of
        // its tasks and call itself satisfied.
        status.state = State::Unsatisfiable;
        status.reason = "the service runs on Fargate: its tasks have no container instance, so placement rules do not apply to it (scaling does)".into();
        return;
    }
    if let Some(rule) = &policy.placement.one_task_per_host {
        one_per_host::plan(policy, rule, index, s, status, actions);
        if !actions.is_empty() {
            // Placement waits for the new count to take effect.
            return;
        }
    }
    if policy.placement.spread.is_empty() {
        return;
    }
    match az_rebalancing::zones(policy, service) {
        az_rebalancing::Zones::Stevedore => {
            spread::plan(policy, index, topologies, s, status, actions, limit);
        }
        az_rebalancing::Zones::StevedoreBecause(why) => {
            spread::plan(policy, index, topologies, s, status, actions, limit);
            status.warnings.push(why);
            status.zones_balanced_by = Some("stevedore (ECS's AZ rebalancing cannot run)".into());
        }
        az_rebalancing::Zones::Ecs => {
            plan_beside_ecs_rebalancing(policy, index, topologies, s, status, actions, limit);
            status.zones_balanced_by = Some("ECS (AZ rebalancing)".into());
        }
    }
}

/// Whether ECS could start a task of service `s` in `zone` now.
fn ecs_has_room(index: &Index<'_>, s: usize, zone: &str) -> bool {
    let instances = &index.snapshot.instances;
    let view = placement_now(index, s);
    (0..instances.len()).any(|i| instances[i].zone == zone && view.can_host(i))
}

/// ECS's placement of service `s` as the cluster stands: its running and
/// pending tasks hold their hosts.
fn placement_now<'a>(index: &Index<'a>, s: usize) -> placement::PlacementView<'a> {
    let snapshot = index.snapshot;
    placement::PlacementView::new(&snapshot.instances, &snapshot.services[s], index.holding(s))
}

/// A service whose zones ECS's AZ rebalancing balances: no stop for the
/// zones, and the other constraints' moves planned with the zone skew
/// held (see [`az_rebalancing`]); nothing while ECS is rebalancing.
fn plan_beside_ecs_rebalancing(
    policy: &Policy,
    index: &Index<'_>,
    topologies: &spread::Topologies<'_>,
    s: usize,
    status: &mut ServiceStatus,
    actions: &mut Vec<Action>,
    limit: &budget::Limit,
) {
    let service = &index.snapshot.services[s];
    const DELEGATED: &str = "zones delegated to ECS AZ rebalancing";
    if service.az_rebalancing_in_progress {
        status.state = State::Paused;
        status.reason = format!(
            "{DELEGATED}: ECS is rebalancing the service over zones (SERVICE_REBALANCING_STARTED), and stevedore makes no move until it completes"
        );
        return;
    }
    // The zone skew now: measured by a plan with the zones held as they
    // are whatever they are (its actions are not kept).
    let mut measured = status.clone();
    spread::plan(
        &az_rebalancing::with_zones_held(policy, 1_000_000),
        index,
        topologies,
        s,
        &mut measured,
        &mut vec![],
        limit,
    );
    let zone = |st: &ServiceStatus| st.constraints.iter().position(|c| c.topology == "zone");
    let Some(z) = zone(&measured) else {
        // Not measured (a paused or unsteady service): as planned.
        *status = measured;
        return;
    };
    let zone_skew = measured.constraints[z].skew;
    let max_skew = policy
        .placement
        .spread
        .iter()
        .find(|c| c.topology == TopologyKey::Zone)
        .map_or(1, |c| c.max_skew);
    if zone_skew > az_rebalancing::ECS_BALANCED_SKEW {
        // ECS has zone work to do: it starts within seconds, and a move of
        // ours meanwhile would race it. Everything waits for it.
        // ECS starts a task in the emptiest zone first: without room
        // there, it cannot, and the operator should know.
        let emptiest = measured.constraints[z]
            .tasks_per_domain
            .iter()
            .min_by_key(|(zone, n)| (*n, zone.clone()))
            .map(|(zone, _)| zone.clone());
        let stuck = emptiest.filter(|zone| !ecs_has_room(index, s, zone));
        *status = measured;
        status.constraints[z].max_skew = max_skew;
        status.moves_planned = 0;
        status.state = State::Converging;
        status.reason = format!(
            "zone skew {zone_skew}{}, {DELEGATED}: ECS balances the zones, and stevedore's other moves wait until it has{}",
            if zone_skew > max_skew {
                format!(" > maxSkew {max_skew}")
            } else {
                String::new()
            },
            match stuck {
                Some(zone) => format!(
                    "; ECS has no room for a task in {zone} now, so it cannot start until room appears there"
                ),
                None => String::new(),
            }
        );
        return;
    }
    // Zones as ECS leaves them: moves for the other constraints keep them so.
    let held = az_rebalancing::with_zones_held(policy, zone_skew);
    spread::plan(&held, index, topologies, s, status, actions, limit);
    if let Some(z) = zone(status) {
        // Reported against the policy's maxSkew, not the held one.
        status.constraints[z].max_skew = max_skew;
    }
    if !status.reason.contains(DELEGATED) {
        status.reason = format!("{}; {DELEGATED}", status.reason);
    }
}

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;
