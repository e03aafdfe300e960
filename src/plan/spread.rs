//! Spread constraints (`azBalanced`, `spread`): which tasks to stop now.
//!
//! A move is "stop this task; ECS places the replacement". The planner
//! computes the fewest moves that satisfy every constraint ([`optimum`]),
//! then picks stops one at a time: from the most over-full domain, the host
//! with the most tasks of the service, its youngest unprotected task, and
//! only if *every* instance ECS might pick for the replacement (its
//! strategy can leave ties) brings the optimum down by exactly one. So every
//! stop is a step of an optimal plan, and the moves made add up to the
//! optimum. When no stop qualifies, the policy is unsatisfiable and the
//! reason says why; nothing is stopped.
//!
//! The result of a move depends on the replacement's host only through its
//! domain in the finest constraint (hosts in one domain add up the same way
//! in [`optimum`]), so each candidate costs one optimum per distinct domain.

use std::collections::HashMap;

use super::optimum::{self, Layout, NoOptimum, Partition};
use super::placement::PlacementView;
use super::{Action, ActionKind, ConstraintReport, Index, ServiceStatus, State};
use crate::model::{ClusterSnapshot, PlacementField, PlacementStrategy, TaskStatus};
use crate::spec::Policy;
use crate::spec::policy::{SpreadConstraint, TopologyKey};

/// How many source hosts to try before declaring a service stuck.
const MAX_SOURCES_TRIED: usize = 64;

/// The placement field a topology corresponds to.
pub fn field_of(topology: &TopologyKey) -> PlacementField {
    match topology {
        TopologyKey::Zone => PlacementField::zone(),
        TopologyKey::Host => PlacementField::Instance,
        TopologyKey::Attribute(a) => PlacementField::Attribute(a.clone()),
    }
}

/// A placement step that fails, and why.
struct Blocked(String);

struct Move {
    /// Index into `hosts`.
    from: usize,
    task: usize,
    /// Instances ECS may pick for the replacement (planning goes on as if
    /// it picked the first; the batch check follows every choice).
    destinations: Vec<usize>,
}

/// One service under one policy's spread constraints.
struct Problem<'a> {
    snapshot: &'a ClusterSnapshot,
    constraints: &'a [SpreadConstraint],
    view: PlacementView<'a>,
    /// Instance index of each eligible host.
    hosts: Vec<usize>,
    /// Position in `hosts` of each instance.
    position: Vec<Option<usize>>,
    partitions: Vec<Partition>,
    /// Domain names per constraint.
    names: Vec<Vec<String>>,
    layout: Layout,
    /// Running, unprotected tasks per host, youngest first.
    stoppable: Vec<Vec<usize>>,
    /// The finest constraint (its domains decide a move's effect).
    finest: usize,
}

impl<'a> Problem<'a> {
    fn new(policy: &'a Policy, index: &Index<'a>, s: usize) -> Problem<'a> {
        let snapshot = index.snapshot;
        let service = &snapshot.services[s];
        let constraints = &policy.placement.spread[..];
        let fields: Vec<PlacementField> =
            constraints.iter().map(|c| field_of(&c.topology)).collect();

        // Tasks holding resources, per instance, for ECS's placement.
        let mut holding = vec![0u32; snapshot.instances.len()];
        for t in &index.tasks_of[s] {
            let task = &snapshot.tasks[*t];
            if let (Some(i), TaskStatus::Running | TaskStatus::Pending) =
                (task.instance, task.status)
            {
                holding[i] += 1;
            }
        }
        let view = PlacementView::new(&snapshot.instances, service, holding);

        // Eligible hosts: ECS may place the service there, and every
        // constraint's attribute is set (hosts without it are ignored, as
        // Kubernetes ignores nodes without the topology key).
        let hosts: Vec<usize> = (0..snapshot.instances.len())
            .filter(|i| {
                let inst = &snapshot.instances[*i];
                inst.schedulable()
                    && service.admits(inst)
                    && fields.iter().all(|f| inst.field(f).is_some())
            })
            .collect();
        let mut position = vec![None; snapshot.instances.len()];
        for (p, i) in hosts.iter().enumerate() {
            position[*i] = Some(p);
        }
        let mut partitions = vec![];
        let mut names = vec![];
        for (c, field) in constraints.iter().zip(&fields) {
            let mut ids: HashMap<&str, u32> = HashMap::new();
            let mut domain_names = vec![];
            let domain_of = hosts
                .iter()
                .map(|i| {
                    let v = snapshot.instances[*i].field(field).unwrap_or_default();
                    *ids.entry(v).or_insert_with(|| {
                        domain_names.push(v.to_owned());
                        domain_names.len() as u32 - 1
                    })
                })
                .collect();
            let real = domain_names.len() as u32;
            let domains = real.max(c.min_domains.unwrap_or(0));
            for k in real..domains {
                domain_names.push(format!("(missing domain {})", k + 1));
            }
            partitions.push(Partition {
                domain_of,
                domains,
                max_skew: c.max_skew,
            });
            names.push(domain_names);
        }

        let mut count = vec![0u32; hosts.len()];
        let mut stoppable = vec![vec![]; hosts.len()];
        for t in index.running(s) {
            let task = &snapshot.tasks[t];
            if let Some(p) = task.instance.and_then(|i| position[i]) {
                count[p] += 1;
                if !task.protected {
                    stoppable[p].push(t);
                }
            }
        }
        for list in &mut stoppable {
            list.sort_by_key(|t| {
                (
                    std::cmp::Reverse(snapshot.tasks[*t].started_at),
                    snapshot.tasks[*t].id.clone(),
                )
            });
        }
        let capacity = hosts
            .iter()
            .zip(&count)
            .map(|(i, c)| c + view.free_slots(*i))
            .collect();
        let finest = (0..partitions.len())
            .max_by_key(|j| (partitions[*j].domains, *j))
            .unwrap_or(0);
        Problem {
            snapshot,
            constraints,
            view,
            hosts,
            position,
            partitions,
            names,
            layout: Layout { count, capacity },
            stoppable,
            finest,
        }
    }

    fn domain_counts(&self, j: usize) -> Vec<u32> {
        let p = &self.partitions[j];
        let mut per = vec![0u32; p.domains as usize];
        for (h, d) in p.domain_of.iter().enumerate() {
            per[*d as usize] += self.layout.count[h];
        }
        per
    }

    fn reports(&self) -> Vec<ConstraintReport> {
        (0..self.partitions.len())
            .map(|j| {
                let per = self.domain_counts(j);
                ConstraintReport {
                    topology: self.constraints[j].topology.to_string(),
                    max_skew: self.constraints[j].max_skew,
                    skew: optimum::skew(&self.layout.count, &self.partitions[j]),
                    tasks_per_domain: self.names[j].iter().cloned().zip(per).collect(),
                }
            })
            .collect()
    }

    /// The optimum after moving one task from host `from` to instance `to`.
    fn optimum_after(&mut self, from: usize, to: usize) -> Option<u32> {
        let to = self.position[to]?;
        self.layout.count[from] -= 1;
        self.layout.count[to] += 1;
        let result = optimum::min_moves(&self.layout, &self.partitions).ok();
        self.layout.count[to] -= 1;
        self.layout.count[from] += 1;
        result
    }

    /// Source hosts, most over-full first: by their domains' task counts
    /// from the coarsest constraint to the finest, then their own count.
    fn sources(&self) -> Vec<usize> {
        let per: Vec<Vec<u32>> = (0..self.partitions.len())
            .map(|j| self.domain_counts(j))
            .collect();
        let mut order: Vec<usize> = (0..self.hosts.len())
            .filter(|h| !self.stoppable[*h].is_empty())
            .collect();
        let key = |h: usize| -> (Vec<u32>, u32) {
            let mut by_domain: Vec<(u32, u32)> = (0..self.partitions.len())
                .map(|j| {
                    (
                        self.partitions[j].domains,
                        per[j][self.partitions[j].domain_of[h] as usize],
                    )
                })
                .collect();
            by_domain.sort();
            (
                by_domain.into_iter().map(|(_, c)| c).collect(),
                self.layout.count[h],
            )
        };
        order.sort_by(|a, b| key(*b).cmp(&key(*a)).then(a.cmp(b)));
        order
    }

    /// The next stop that is a step of an optimal plan whatever ECS does.
    fn find_move(&mut self, optimum_now: u32) -> Result<Move, Blocked> {
        let mut first_problem: Option<Blocked> = None;
        for from in self.sources().into_iter().take(MAX_SOURCES_TRIED) {
            let instance = self.hosts[from];
            self.view.remove(instance);
            let destinations = self.view.candidates();
            self.view.place(instance);
            if destinations.is_empty() {
                first_problem.get_or_insert(Blocked(self.no_room()));
                continue;
            }
            // One evaluation per domain of the finest constraint.
            let mut seen: HashMap<Option<u32>, bool> = HashMap::new();
            let mut bad = None;
            for d in &destinations {
                let domain = self.position[*d].map(|p| self.partitions[self.finest].domain_of[p]);
                let good = match seen.get(&domain) {
                    Some(g) => *g,
                    None => {
                        let g = self.optimum_after(from, *d) == Some(optimum_now - 1);
                        seen.insert(domain, g);
                        g
                    }
                };
                if !good {
                    bad = Some(*d);
                    break;
                }
            }
            match bad {
                None => {
                    return Ok(Move {
                        from,
                        task: self.stoppable[from][0],
                        destinations,
                    });
                }
                Some(d) => {
                    first_problem.get_or_insert_with(|| Blocked(self.unhelpful(from, d)));
                }
            }
        }
        Err(first_problem.unwrap_or_else(|| {
            Blocked("every running task of the service is protected from scale-in".into())
        }))
    }

    fn domain_name(&self, j: usize, instance: usize) -> String {
        match self.position[instance] {
            Some(p) => self.names[j][self.partitions[j].domain_of[p] as usize].clone(),
            None => format!("{} (not eligible)", self.snapshot.instances[instance].id),
        }
    }

    fn no_room(&self) -> String {
        let size = self.view.service.task_size;
        format!(
            "no instance can take a replacement task ({} CPU units, {} MiB{}): stopping one would leave it PROVISIONING",
            size.cpu,
            size.memory,
            if self.view.service.host_ports.is_empty() {
                String::new()
            } else {
                format!(", host ports {:?}", self.view.service.host_ports)
            }
        )
    }

    /// Why moving a task off host `from` would not help when ECS picks `to`.
    fn unhelpful(&self, from: usize, to: usize) -> String {
        let strategy: Vec<String> = self
            .view
            .strategy()
            .iter()
            .map(PlacementStrategy::to_string)
            .collect();
        let strategy = strategy.join(", ");
        for (j, c) in self.constraints.iter().enumerate() {
            let field = field_of(&c.topology);
            if optimum::skew(&self.layout.count, &self.partitions[j]) > c.max_skew
                && !self.view.spreads_over(&field)
            {
                return format!(
                    "the service's placement strategy ({strategy}) does not spread on {}, so ECS could put a replacement in any {} domain: stopping a task would not reliably reduce the skew",
                    c.topology, c.topology
                );
            }
        }
        let j = self.finest;
        format!(
            "ECS ({strategy}) could place the replacement of a task from {} on {} in {} {}, which does not reduce the skew",
            self.names[j][self.partitions[j].domain_of[from] as usize],
            self.snapshot.instances[to].id,
            self.constraints[j].topology,
            self.domain_name(j, to)
        )
    }

    /// Why no layout within capacity satisfies the constraints.
    fn infeasible(&self) -> String {
        let n = self.layout.total();
        let size = self.view.service.task_size;
        for (j, c) in self.constraints.iter().enumerate() {
            let p = &self.partitions[j];
            // The emptiest domain holds at least x with N <= x + (k-1)(x+s).
            let k = p.domains.max(1);
            let need = n.saturating_sub((k - 1) * c.max_skew).div_ceil(k);
            let mut capacity = vec![0u32; p.domains as usize];
            for (h, d) in p.domain_of.iter().enumerate() {
                capacity[*d as usize] += self.layout.capacity[h];
            }
            if let Some(d) = (0..p.domains as usize).find(|d| capacity[*d] < need) {
                let real = p.domain_of.iter().any(|x| *x as usize == d);
                return if real {
                    format!(
                        "no room in {} {}: it can hold {} of the service's tasks ({} CPU units, {} MiB each), but spreading {n} tasks over {k} {} domains with maxSkew {} needs at least {need} there",
                        c.topology,
                        self.names[j][d],
                        capacity[d],
                        size.cpu,
                        size.memory,
                        c.topology,
                        c.max_skew
                    )
                } else {
                    format!(
                        "minDomains {} but only {} {} domains are eligible: with {n} tasks and maxSkew {}, each domain needs at least {need}",
                        p.domains,
                        p.domain_of.iter().max().map_or(0, |m| m + 1),
                        c.topology,
                        c.max_skew
                    )
                };
            }
        }
        "there is not enough free capacity to satisfy every spread constraint at once".into()
    }

    fn reason(&self, mv: &Move, step: u32, total: u32) -> String {
        let to = mv.destinations[0];
        let mut parts = vec![];
        for (j, c) in self.constraints.iter().enumerate() {
            let from_domain = self.partitions[j].domain_of[mv.from] as usize;
            let to_domain = self.position[to].map(|p| self.partitions[j].domain_of[p] as usize);
            if Some(from_domain) != to_domain {
                let per = self.domain_counts(j);
                let skew = optimum::skew(&self.layout.count, &self.partitions[j]);
                parts.push(format!(
                    "{} skew {skew} (max {}): {} has {}, {} has {}",
                    c.topology,
                    c.max_skew,
                    self.names[j][from_domain],
                    per[from_domain],
                    self.domain_name(j, to),
                    to_domain.map_or(0, |d| per[d])
                ));
            }
        }
        let strategy: Vec<String> = self
            .view
            .strategy()
            .iter()
            .map(PlacementStrategy::to_string)
            .collect();
        let landing = if mv.destinations.len() == 1 {
            self.snapshot.instances[to].id.clone()
        } else {
            format!(
                "{} {}",
                self.constraints[self.finest].topology,
                self.domain_name(self.finest, to)
            )
        };
        format!(
            "move {step} of {total}: {}; youngest of {} tasks on this host; {} places the replacement on {landing}",
            parts.join("; "),
            self.layout.count[mv.from],
            strategy.join(", ")
        )
    }

    fn apply(&mut self, mv: &Move) {
        let to = mv.destinations[0];
        self.view.remove(self.hosts[mv.from]);
        self.view.place(to);
        self.layout.count[mv.from] -= 1;
        if let Some(p) = self.position[to] {
            self.layout.count[p] += 1;
        }
        self.stoppable[mv.from].retain(|t| *t != mv.task);
    }
}

/// How many placement outcomes a batch check may explore before it gives
/// up (and the batch shrinks).
const MAX_OUTCOMES: usize = 4_096;

/// Checks the batch as ECS runs it: every stop first, then each replacement
/// placed in turn. Wherever ECS could choose between domains, every choice
/// is followed, and every path must end `expected` moves from optimal.
fn batch_holds(
    problem: &Problem<'_>,
    original: &PlacementView<'_>,
    original_count: &[u32],
    moves: &[Move],
    expected: u32,
) -> bool {
    let mut view = original.clone();
    let mut count = original_count.to_vec();
    for mv in moves {
        view.remove(problem.hosts[mv.from]);
        count[mv.from] -= 1;
    }
    let mut explored = 0;
    every_outcome_holds(
        problem,
        &mut view,
        &mut count,
        moves.len(),
        expected,
        &mut explored,
    )
}

fn every_outcome_holds(
    problem: &Problem<'_>,
    view: &mut PlacementView<'_>,
    count: &mut Vec<u32>,
    left: usize,
    expected: u32,
    explored: &mut usize,
) -> bool {
    *explored += 1;
    if *explored > MAX_OUTCOMES {
        return false;
    }
    if left == 0 {
        let layout = Layout {
            count: count.clone(),
            capacity: problem.layout.capacity.clone(),
        };
        return optimum::min_moves(&layout, &problem.partitions) == Ok(expected);
    }
    let destinations = view.candidates();
    if destinations.is_empty() {
        return false;
    }
    // One representative per domain of the finest constraint.
    let mut seen = std::collections::HashSet::new();
    for d in destinations {
        let Some(p) = problem.position[d] else {
            return false;
        };
        if !seen.insert(problem.partitions[problem.finest].domain_of[p]) {
            continue;
        }
        view.place(d);
        count[p] += 1;
        let holds = every_outcome_holds(problem, view, count, left - 1, expected, explored);
        count[p] -= 1;
        view.remove(d);
        if !holds {
            return false;
        }
    }
    true
}

pub fn plan(
    policy: &Policy,
    index: &Index<'_>,
    s: usize,
    status: &mut ServiceStatus,
    actions: &mut Vec<Action>,
) {
    let snapshot = index.snapshot;
    let service = &snapshot.services[s];
    let mut problem = Problem::new(policy, index, s);
    status.constraints = problem.reports();
    if optimum::satisfied(&problem.layout, &problem.partitions) {
        if status.state == State::Satisfied {
            status.reason = "every spread constraint holds".into();
        }
        return;
    }
    let optimum_now = match optimum::min_moves(&problem.layout, &problem.partitions) {
        Ok(m) => m,
        Err(NoOptimum::Infeasible) => {
            status.state = State::Unsatisfiable;
            status.reason = problem.infeasible();
            return;
        }
        Err(NoOptimum::Crossing { coarser, finer }) => {
            status.state = State::Unsatisfiable;
            status.reason = format!(
                "spread constraints over {} and {} cross (a {} domain spans several {} domains); stevedore plans constraints that nest, such as zone and host",
                problem.constraints[coarser].topology,
                problem.constraints[finer].topology,
                problem.constraints[finer].topology,
                problem.constraints[coarser].topology
            );
            return;
        }
    };
    status.moves_remaining = optimum_now;

    // Safety gates: never move tasks of a service that is changing anyway.
    let pause = if service.deployment_in_progress {
        Some("a deployment is in progress".to_owned())
    } else if service.running != service.desired || service.pending > 0 {
        Some(format!(
            "not at steady state: {} running, {} pending, {} desired",
            service.running, service.pending, service.desired
        ))
    } else {
        None
    };
    if let Some(why) = pause {
        status.state = State::Paused;
        status.reason = format!("{why}; {optimum_now} moves needed");
        return;
    }

    // The disruption budget, spent while planning; never the last task.
    let running = problem.layout.total();
    let budget = policy
        .max_unavailable
        .resolve(service.desired, 1)
        .min(running.saturating_sub(1));
    if budget == 0 {
        status.state = State::Unsatisfiable;
        status.reason =
            "the service has a single running task; stevedore never stops the last one".into();
        return;
    }

    let original_view = problem.view.clone();
    let original_count = problem.layout.count.clone();
    let mut moves: Vec<Move> = vec![];
    let mut reasons = vec![];
    let mut remaining = optimum_now;
    while (moves.len() as u32) < budget && remaining > 0 {
        match problem.find_move(remaining) {
            Ok(mv) => {
                reasons.push(problem.reason(&mv, optimum_now - remaining + 1, optimum_now));
                problem.apply(&mv);
                moves.push(mv);
                remaining -= 1;
            }
            Err(Blocked(why)) => {
                if moves.is_empty() {
                    status.state = State::Unsatisfiable;
                    status.reason = why;
                    return;
                }
                break;
            }
        }
    }
    // Stops go out together: keep the longest prefix that still holds when
    // ECS places the replacements only after all of them have stopped.
    while moves.len() > 1
        && !batch_holds(
            &problem,
            &original_view,
            &original_count,
            &moves,
            optimum_now - moves.len() as u32,
        )
    {
        moves.pop();
        reasons.pop();
    }

    status.state = State::Converging;
    status.moves_planned = moves.len() as u32;
    status.reason = format!(
        "{optimum_now} moves needed, {} now (maxUnavailable {})",
        moves.len(),
        policy.max_unavailable
    );
    let rule = policy
        .placement
        .spread
        .iter()
        .map(|c| format!("spread({}, maxSkew {})", c.topology, c.max_skew))
        .collect::<Vec<_>>()
        .join(" + ");
    for (mv, reason) in moves.iter().zip(reasons) {
        let task = &snapshot.tasks[mv.task];
        let instance = &snapshot.instances[problem.hosts[mv.from]];
        actions.push(Action {
            policy: policy.name.clone(),
            service: service.name.clone(),
            rule: rule.clone(),
            kind: ActionKind::StopTask {
                task: task.id.clone(),
                instance: instance.id.clone(),
                zone: instance.zone.clone(),
            },
            reason,
            dry_run: false,
        });
    }
}
