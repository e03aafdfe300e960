//! How ECS places a service's task, as a pure function of the cluster
//! state: keep the instances that have room and satisfy the service's
//! constraints, then apply its strategies in order, each keeping the best
//! instances for it. Several instances may remain: ECS then picks one (the
//! documentation does not say how), so callers get the whole set. The
//! planner only acts when every instance of that set is a good outcome; the
//! simulator picks one with its seeded random number generator.
//!
//! Also how ECS chooses tasks to stop when a service scales in.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::model::{BinpackField, Instance, PlacementField, PlacementStrategy, Resources, Service};

/// The domain of every instance for one placement field.
#[derive(Debug)]
pub struct FieldDomains {
    pub domain_of: Vec<Option<u32>>,
    pub domains: usize,
}

/// Field domains computed once and shared by every service's view (the
/// planner builds views for many services over the same instances).
#[derive(Debug)]
pub struct FieldCache<'a> {
    instances: &'a [Instance],
    cache: RefCell<HashMap<PlacementField, Rc<FieldDomains>>>,
    /// Whether each instance is ACTIVE with its agent connected, kept
    /// compact: scanning the instances themselves touches far more memory.
    schedulable: Vec<bool>,
    /// Free resources per instance, likewise compact.
    remaining: Vec<Resources>,
}

impl<'a> FieldCache<'a> {
    pub fn new(instances: &'a [Instance]) -> FieldCache<'a> {
        FieldCache {
            instances,
            cache: RefCell::new(HashMap::new()),
            schedulable: instances.iter().map(Instance::schedulable).collect(),
            remaining: instances.iter().map(|i| i.remaining).collect(),
        }
    }

    pub fn get(&self, field: &PlacementField) -> Rc<FieldDomains> {
        if let Some(d) = self.cache.borrow().get(field) {
            return Rc::clone(d);
        }
        let domains = Rc::new(match field {
            // Each instance is its own domain: no lookup needed.
            PlacementField::Instance => FieldDomains {
                domain_of: (0..self.instances.len() as u32).map(Some).collect(),
                domains: self.instances.len(),
            },
            _ => {
                let mut ids: HashMap<&str, u32> = HashMap::new();
                let domain_of = self
                    .instances
                    .iter()
                    .map(|i| {
                        i.field(field).map(|v| {
                            let next = ids.len() as u32;
                            *ids.entry(v).or_insert(next)
                        })
                    })
                    .collect();
                FieldDomains {
                    domain_of,
                    domains: ids.len(),
                }
            }
        });
        self.cache
            .borrow_mut()
            .insert(field.clone(), Rc::clone(&domains));
        domains
    }
}

/// One service's view of the cluster, updated as tasks are placed and removed.
#[derive(Debug, Clone)]
pub struct PlacementView<'a> {
    pub instances: &'a [Instance],
    pub service: &'a Service,
    strategy: Vec<PlacementStrategy>,
    /// Instances where ECS may place the service at all (schedulable, and
    /// admitted by its memberOf constraints).
    pub open: Vec<bool>,
    /// Free resources per instance.
    pub remaining: Vec<Resources>,
    /// Whether the service's static host ports are free, per instance.
    pub ports_free: Vec<bool>,
    /// Tasks of the service per instance.
    pub count: Vec<u32>,
    /// Tasks of the service stopped in the plan, per instance: no longer
    /// counted, their resources and ports held until they have stopped.
    stopping: Vec<u32>,
    /// The sum of `stopping`: with none, [`PlacementView::candidates`]
    /// costs one pass as before (it is on the planner's hot path).
    stopped: u32,
    /// For each `spread` strategy: the domain of each instance and the
    /// service's tasks per domain.
    spreads: Vec<SpreadIndex>,
}

#[derive(Debug, Clone)]
struct SpreadIndex {
    domains: Rc<FieldDomains>,
    tasks: Vec<u32>,
}

impl<'a> PlacementView<'a> {
    /// `count[i]`: the service's tasks on instance `i` (those that hold
    /// resources: running, pending or stopping).
    pub fn new(
        instances: &'a [Instance],
        service: &'a Service,
        count: Vec<u32>,
    ) -> PlacementView<'a> {
        PlacementView::with_fields(instances, service, count, &FieldCache::new(instances))
    }

    /// As [`PlacementView::new`], reusing field domains computed before.
    pub fn with_fields(
        instances: &'a [Instance],
        service: &'a Service,
        count: Vec<u32>,
        fields: &FieldCache<'_>,
    ) -> PlacementView<'a> {
        let strategy = service.effective_strategy();
        let empty = || {
            Rc::new(FieldDomains {
                domain_of: vec![],
                domains: 0,
            })
        };
        let spreads = strategy
            .iter()
            .map(|s| match s {
                PlacementStrategy::Spread(field) => {
                    let domains = fields.get(field);
                    let mut tasks = vec![0; domains.domains];
                    for (i, d) in domains.domain_of.iter().enumerate() {
                        if let Some(d) = d {
                            tasks[*d as usize] += count[i];
                        }
                    }
                    SpreadIndex { domains, tasks }
                }
                _ => SpreadIndex {
                    domains: empty(),
                    tasks: vec![],
                },
            })
            .collect();
        let unconstrained = service
            .constraints
            .iter()
            .all(|c| matches!(c, crate::model::PlacementConstraint::DistinctInstance));
        let open = if unconstrained {
            fields.schedulable.clone()
        } else {
            instances
                .iter()
                .zip(&fields.schedulable)
                .map(|(i, s)| *s && service.admits(i))
                .collect()
        };
        let ports_free = if service.host_ports.is_empty() {
            vec![true; instances.len()]
        } else {
            instances
                .iter()
                .map(|i| {
                    !service
                        .host_ports
                        .iter()
                        .any(|p| i.ports_in_use.contains(p))
                })
                .collect()
        };
        PlacementView {
            instances,
            service,
            strategy,
            open,
            remaining: fields.remaining.clone(),
            ports_free,
            stopping: vec![0; count.len()],
            stopped: 0,
            count,
            spreads,
        }
    }

    /// Whether ECS could start one more task of the service on instance `i`.
    pub fn can_host(&self, i: usize) -> bool {
        self.open[i]
            && self.remaining[i].fits(self.service.task_size)
            && self.ports_free[i]
            && !(self.service.distinct_instance() && self.count[i] > 0)
    }

    /// How many more tasks of the service instance `i` could hold, up to
    /// `cap` (a host with room for `cap` tasks needs no division).
    pub fn free_slots_up_to(&self, i: usize, cap: u32) -> u32 {
        if !self.open[i] {
            return 0;
        }
        let size = self.service.task_size;
        let room = self.remaining[i];
        let mut slots = if u64::from(room.cpu) >= u64::from(size.cpu) * u64::from(cap)
            && u64::from(room.memory) >= u64::from(size.memory) * u64::from(cap)
        {
            cap
        } else {
            room.count_of(size).min(cap)
        };
        if !self.service.host_ports.is_empty() {
            slots = slots.min(u32::from(self.ports_free[i]));
        }
        if self.service.distinct_instance() {
            slots = slots.min(u32::from(self.count[i] == 0));
        }
        slots
    }

    /// The instances ECS may choose for the next task, best first by the
    /// strategies (all of them tie on every strategy). Empty when nothing
    /// fits: the task would wait in PROVISIONING.
    ///
    /// With tasks stopped in the plan, ECS may place before or after they
    /// free their resources and ports (the simulator, like the service
    /// scheduler, places a replacement as soon as the task stops running):
    /// the instances either way, those with the room freed first.
    pub fn candidates(&self) -> Vec<usize> {
        let mut best = self.candidates_in(&self.remaining, &self.ports_free);
        if self.stopped == 0 {
            return best;
        }
        let size = self.service.task_size;
        let held: Vec<Resources> = self
            .remaining
            .iter()
            .zip(&self.stopping)
            .map(|(r, n)| (0..*n).fold(*r, |r, _| r.minus(size)))
            .collect();
        let ports = self.service.host_ports.is_empty();
        let ports_held: Vec<bool> = self
            .ports_free
            .iter()
            .zip(&self.stopping)
            .map(|(free, n)| *free && (ports || *n == 0))
            .collect();
        for i in self.candidates_in(&held, &ports_held) {
            if !best.contains(&i) {
                best.push(i);
            }
        }
        best
    }

    /// [`PlacementView::candidates`] with these free resources and ports.
    fn candidates_in(&self, remaining: &[Resources], ports_free: &[bool]) -> Vec<usize> {
        /// One strategy's score of an instance, resolved to plain slices.
        enum Score<'s> {
            Spread {
                domain_of: &'s [Option<u32>],
                tasks: &'s [u32],
            },
            Cpu,
            Memory,
        }
        // Applying the strategies in order, each keeping its best instances,
        // is the same as keeping the instances whose scores are smallest in
        // lexicographic order: one pass, no intermediate lists. `random`
        // ranks nothing.
        let scores: Vec<Score<'_>> = self
            .strategy
            .iter()
            .zip(&self.spreads)
            .filter_map(|(strategy, spread)| match strategy {
                PlacementStrategy::Spread(_) => Some(Score::Spread {
                    domain_of: &spread.domains.domain_of,
                    tasks: &spread.tasks,
                }),
                PlacementStrategy::Binpack(BinpackField::Cpu) => Some(Score::Cpu),
                PlacementStrategy::Binpack(BinpackField::Memory) => Some(Score::Memory),
                PlacementStrategy::Random => None,
            })
            .collect();
        const MAX: usize = 8;
        let n = scores.len().min(MAX);
        let size = self.service.task_size;
        let distinct = self.service.distinct_instance();
        let ports = !self.service.host_ports.is_empty();
        let mut best: Vec<usize> = vec![];
        let mut best_key = [u64::MAX; MAX];
        for i in 0..self.instances.len() {
            if !self.open[i]
                || !remaining[i].fits(size)
                || (ports && !ports_free[i])
                || (distinct && self.count[i] > 0)
            {
                continue;
            }
            // Compare with the best so far, strategy by strategy (plain
            // loops: these arrays are tiny).
            let mut order = std::cmp::Ordering::Equal;
            let mut key = [0u64; MAX];
            for (k, score) in scores.iter().take(n).enumerate() {
                key[k] = match score {
                    // Fewest tasks of the service in the instance's domain;
                    // instances without the attribute come last.
                    Score::Spread { domain_of, tasks } => {
                        domain_of[i].map_or(u64::MAX, |d| u64::from(tasks[d as usize]))
                    }
                    // Least of the resource left.
                    Score::Cpu => u64::from(remaining[i].cpu),
                    Score::Memory => u64::from(remaining[i].memory),
                };
                if order == std::cmp::Ordering::Equal {
                    order = key[k].cmp(&best_key[k]);
                    // Worse on this strategy: the rest cannot matter. (Better:
                    // the rest of the key is still needed, as the new best.)
                    if order == std::cmp::Ordering::Greater {
                        break;
                    }
                }
            }
            match order {
                std::cmp::Ordering::Less => {
                    best.clear();
                    best.push(i);
                    best_key = key;
                }
                std::cmp::Ordering::Equal => best.push(i),
                std::cmp::Ordering::Greater => {}
            }
        }
        best
    }

    pub fn place(&mut self, i: usize) {
        self.count[i] += 1;
        self.remaining[i] = self.remaining[i].minus(self.service.task_size);
        if !self.service.host_ports.is_empty() {
            self.ports_free[i] = false;
        }
        for s in &mut self.spreads {
            if let Some(Some(d)) = s.domains.domain_of.get(i) {
                s.tasks[*d as usize] += 1;
            }
        }
    }

    /// A task of the service on `i` is stopped: it no longer counts for the
    /// strategies or distinctInstance, and frees its room once it has
    /// stopped (see [`PlacementView::candidates`]).
    pub fn stop(&mut self, i: usize) {
        self.remove(i);
        self.stopping[i] += 1;
        self.stopped += 1;
    }

    /// Undoes [`PlacementView::stop`]: the task is kept.
    pub fn keep(&mut self, i: usize) {
        if self.stopping[i] > 0 {
            self.stopping[i] -= 1;
            self.stopped -= 1;
        }
        self.place(i);
    }

    pub fn remove(&mut self, i: usize) {
        self.count[i] = self.count[i].saturating_sub(1);
        self.remaining[i] = self.remaining[i].plus(self.service.task_size);
        if !self.service.host_ports.is_empty() {
            self.ports_free[i] = true;
        }
        for s in &mut self.spreads {
            if let Some(Some(d)) = s.domains.domain_of.get(i) {
                s.tasks[*d as usize] = s.tasks[*d as usize].saturating_sub(1);
            }
        }
    }

    /// The instances ECS may stop a task on when the service scales in by
    /// one, following its strategies: `spread` takes from the domains with
    /// the most tasks (to keep them balanced), `binpack` from the instance
    /// that would have the most of the resource left. Only instances in
    /// `eligible` (those with a stoppable task) are considered.
    pub fn scale_in_candidates(&self, eligible: &[usize]) -> Vec<usize> {
        let mut candidates: Vec<usize> = eligible
            .iter()
            .copied()
            .filter(|i| self.count[*i] > 0)
            .collect();
        for (strategy, spread) in self.strategy.iter().zip(&self.spreads) {
            if candidates.len() <= 1 {
                break;
            }
            let score = |i: usize| -> Option<u64> {
                match strategy {
                    PlacementStrategy::Spread(_) => Some(
                        spread.domains.domain_of[i]
                            .map_or(0, |d| u64::from(spread.tasks[d as usize])),
                    ),
                    PlacementStrategy::Binpack(BinpackField::Cpu) => {
                        Some(u64::from(self.remaining[i].cpu))
                    }
                    PlacementStrategy::Binpack(BinpackField::Memory) => {
                        Some(u64::from(self.remaining[i].memory))
                    }
                    PlacementStrategy::Random => None,
                }
            };
            if let Some(best) = candidates.iter().filter_map(|i| score(*i)).max() {
                candidates.retain(|i| score(*i) == Some(best));
            }
        }
        candidates
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::{InstanceStatus, PlacementConstraint};

    /// A strategy's score of an instance, from the instances alone (no
    /// view): spread counts the service's tasks in the instance's domain
    /// (`missing` without the attribute), binpack the resource left.
    fn plain_score(
        strategy: &PlacementStrategy,
        instances: &[Instance],
        count: &[u32],
        i: usize,
        missing: u64,
    ) -> Option<u64> {
        match strategy {
            PlacementStrategy::Spread(field) => {
                let Some(value) = instances[i].field(field) else {
                    return Some(missing);
                };
                let tasks: u32 = (0..instances.len())
                    .filter(|j| instances[*j].field(field) == Some(value))
                    .map(|j| count[j])
                    .sum();
                Some(u64::from(tasks))
            }
            PlacementStrategy::Binpack(BinpackField::Cpu) => {
                Some(u64::from(instances[i].remaining.cpu))
            }
            PlacementStrategy::Binpack(BinpackField::Memory) => {
                Some(u64::from(instances[i].remaining.memory))
            }
            PlacementStrategy::Random => None,
        }
    }

    /// The strategies ECS applies: the service's, or spread over zones.
    fn strategies_of(service: &Service) -> Vec<PlacementStrategy> {
        if service.strategy.is_empty() {
            vec![PlacementStrategy::Spread(PlacementField::zone())]
        } else {
            service.strategy.clone()
        }
    }

    /// ECS's documented procedure, written plainly: keep the instances that
    /// are active and connected, have the room and (with distinctInstance)
    /// none of the service's tasks, then apply each strategy in turn,
    /// keeping its best (least).
    fn reference(instances: &[Instance], service: &Service, count: &[u32]) -> Vec<usize> {
        let distinct = service
            .constraints
            .contains(&PlacementConstraint::DistinctInstance);
        let mut candidates: Vec<usize> = (0..instances.len())
            .filter(|i| {
                let host = &instances[*i];
                host.status == InstanceStatus::Active
                    && host.agent_connected
                    && host.remaining.cpu >= service.task_size.cpu
                    && host.remaining.memory >= service.task_size.memory
                    && !(distinct && count[*i] > 0)
            })
            .collect();
        for strategy in strategies_of(service) {
            let score = |i: usize| plain_score(&strategy, instances, count, i, u64::MAX);
            if let Some(best) = candidates.iter().filter_map(|i| score(*i)).min() {
                candidates.retain(|i| score(*i) == Some(best));
            }
        }
        candidates
    }

    /// Scale-in, written plainly: the eligible instances with a task of the
    /// service, then each strategy in turn keeping its worst (most tasks in
    /// the domain, most of the resource left); instances without a spread
    /// attribute count as an empty domain.
    fn scale_in_reference(
        instances: &[Instance],
        service: &Service,
        count: &[u32],
        eligible: &[usize],
    ) -> Vec<usize> {
        let mut candidates: Vec<usize> =
            eligible.iter().copied().filter(|i| count[*i] > 0).collect();
        for strategy in strategies_of(service) {
            let score = |i: usize| plain_score(&strategy, instances, count, i, 0);
            if let Some(best) = candidates.iter().filter_map(|i| score(*i)).max() {
                candidates.retain(|i| score(*i) == Some(best));
            }
        }
        candidates
    }

    fn strategy() -> impl Strategy<Value = PlacementStrategy> {
        prop_oneof![
            Just(PlacementStrategy::Spread(PlacementField::zone())),
            Just(PlacementStrategy::Spread(PlacementField::Instance)),
            Just(PlacementStrategy::Spread(PlacementField::Attribute(
                "rack".into()
            ))),
            Just(PlacementStrategy::Binpack(BinpackField::Cpu)),
            Just(PlacementStrategy::Binpack(BinpackField::Memory)),
            Just(PlacementStrategy::Random),
        ]
    }

    /// A stopped task holds its memory until it has stopped, and ECS may
    /// place its replacement before: binpack then ranks its host fuller.
    /// The candidates are the hosts either way.
    #[test]
    fn a_replacement_may_land_before_or_after_the_stopped_task_frees_its_room() {
        let size = Resources {
            cpu: 256,
            memory: 512,
        };
        let host = |name: &str, tasks: u32| {
            let mut i = Instance::active(
                name,
                "z",
                Resources {
                    cpu: 4096,
                    memory: 8192,
                },
                Default::default(),
            );
            i.remaining = Resources {
                cpu: 4096 - 256 * tasks,
                memory: 8192 - 512 * tasks,
            };
            i
        };
        // h0 holds 3 tasks (one of the service's), h1 holds 3 others.
        let instances = vec![host("h0", 3), host("h1", 3)];
        let mut cluster = crate::plan::tests::Cluster::new();
        let s = cluster.service(
            "web",
            vec![PlacementStrategy::Binpack(BinpackField::Memory)],
        );
        let mut svc = cluster.snapshot.services[s].clone();
        svc.task_size = size;
        let mut view = PlacementView::new(&instances, &svc, vec![1, 0]);
        // Freed at once, h0 would hold 2 and h1 3: h1 alone. Held, they
        // tie at 3: either.
        view.remove(0);
        assert_eq!(view.candidates(), [1]);
        view.place(0);
        view.stop(0);
        assert_eq!(view.candidates(), [1, 0]);
        // Kept after all: as before.
        view.keep(0);
        assert_eq!(view.count, [1, 0]);
        assert_eq!(
            view.remaining,
            [instances[0].remaining, instances[1].remaining]
        );
        assert_eq!(
            (view.stopping.as_slice(), view.stopped),
            ([0, 0].as_slice(), 0)
        );
    }

    proptest! {
        #[test]
        fn candidates_follow_the_strategies_in_order(
            hosts in proptest::collection::vec((0u32..3, 0u32..3, 0u32..5, 0u32..6, any::<bool>(), any::<bool>()), 1..12),
            strategies in proptest::collection::vec(strategy(), 0..4),
            distinct in any::<bool>(),
            eligible in any::<u16>(),
        ) {
            let instances: Vec<Instance> = hosts
                .iter()
                .enumerate()
                .map(|(h, (zone, rack, cpu, mem, draining, has_rack))| {
                    let mut attributes = std::collections::BTreeMap::new();
                    if *has_rack {
                        attributes.insert("rack".to_owned(), format!("r{rack}"));
                    }
                    let mut i = Instance::active(format!("h{h}"), format!("z{zone}"), Resources { cpu: 256 * cpu, memory: 512 * mem }, attributes);
                    if *draining {
                        i.status = InstanceStatus::Draining;
                    }
                    i
                })
                .collect();
            let mut service = crate::plan::tests::Cluster::new();
            let s = service.service("web", strategies);
            let mut svc = service.snapshot.services[s].clone();
            if distinct {
                svc.constraints.push(PlacementConstraint::DistinctInstance);
            }
            let count: Vec<u32> = hosts.iter().map(|(_, _, cpu, _, _, _)| cpu % 3).collect();
            let view = PlacementView::new(&instances, &svc, count.clone());
            prop_assert_eq!(view.candidates(), reference(&instances, &svc, &count));
            // Scale-in from any subset of the instances.
            let eligible: Vec<usize> = (0..instances.len()).filter(|i| (eligible >> i) & 1 == 1).collect();
            let mut chosen = view.scale_in_candidates(&eligible);
            chosen.sort();
            prop_assert_eq!(chosen, scale_in_reference(&instances, &svc, &count, &eligible));
        }
    }
}
