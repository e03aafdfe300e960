//! How ECS places a service's task, as a pure function of the cluster
//! state: keep the instances that have room and satisfy the service's
//! constraints, then apply its strategies in order, each keeping the best
//! instances for it. Several instances may remain: ECS then picks one (the
//! documentation does not say how), so callers get the whole set. The
//! planner only acts when every instance of that set is a good outcome; the
//! simulator picks one with its seeded random number generator.
//!
//! Also how ECS chooses tasks to stop when a service scales in.

use std::collections::HashMap;

use crate::model::{BinpackField, Instance, PlacementField, PlacementStrategy, Resources, Service};

/// One service's view of the cluster, updated as tasks are placed and removed.
#[derive(Debug, Clone)]
pub struct PlacementView<'a> {
    pub instances: &'a [Instance],
    pub service: &'a Service,
    strategy: Vec<PlacementStrategy>,
    /// Free resources per instance.
    pub remaining: Vec<Resources>,
    /// Whether the service's static host ports are free, per instance.
    pub ports_free: Vec<bool>,
    /// Tasks of the service per instance.
    pub count: Vec<u32>,
    /// For each `spread` strategy: the domain of each instance and the
    /// service's tasks per domain.
    spreads: Vec<SpreadIndex>,
}

#[derive(Debug, Clone)]
struct SpreadIndex {
    domain_of: Vec<Option<u32>>,
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
        let strategy = service.effective_strategy();
        let spreads = strategy
            .iter()
            .map(|s| match s {
                PlacementStrategy::Spread(field) => {
                    let mut ids: HashMap<&str, u32> = HashMap::new();
                    let domain_of: Vec<Option<u32>> = instances
                        .iter()
                        .map(|i| {
                            i.field(field).map(|v| {
                                let next = ids.len() as u32;
                                *ids.entry(v).or_insert(next)
                            })
                        })
                        .collect();
                    let mut tasks = vec![0; ids.len()];
                    for (i, d) in domain_of.iter().enumerate() {
                        if let Some(d) = d {
                            tasks[*d as usize] += count[i];
                        }
                    }
                    SpreadIndex { domain_of, tasks }
                }
                _ => SpreadIndex {
                    domain_of: vec![],
                    tasks: vec![],
                },
            })
            .collect();
        let ports_free = instances
            .iter()
            .map(|i| {
                !service
                    .host_ports
                    .iter()
                    .any(|p| i.ports_in_use.contains(p))
            })
            .collect();
        PlacementView {
            instances,
            service,
            strategy,
            remaining: instances.iter().map(|i| i.remaining).collect(),
            ports_free,
            count,
            spreads,
        }
    }

    /// Whether ECS could start one more task of the service on instance `i`.
    pub fn can_host(&self, i: usize) -> bool {
        let inst = &self.instances[i];
        inst.schedulable()
            && self.service.admits(inst)
            && self.remaining[i].fits(self.service.task_size)
            && self.ports_free[i]
            && !(self.service.distinct_instance() && self.count[i] > 0)
    }

    /// How many more tasks of the service instance `i` could hold.
    pub fn free_slots(&self, i: usize) -> u32 {
        let inst = &self.instances[i];
        if !inst.schedulable() || !self.service.admits(inst) {
            return 0;
        }
        let mut slots = self.remaining[i].count_of(self.service.task_size);
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
    pub fn candidates(&self) -> Vec<usize> {
        let mut candidates: Vec<usize> = (0..self.instances.len())
            .filter(|i| self.can_host(*i))
            .collect();
        for (strategy, spread) in self.strategy.iter().zip(&self.spreads) {
            if candidates.len() <= 1 {
                break;
            }
            let score = |i: usize| -> Option<u64> {
                match strategy {
                    // Fewest tasks of the service in the instance's domain;
                    // instances without the attribute come last.
                    PlacementStrategy::Spread(_) => Some(
                        spread.domain_of[i]
                            .map_or(u64::MAX, |d| u64::from(spread.tasks[d as usize])),
                    ),
                    // Least of the resource left after placing.
                    PlacementStrategy::Binpack(BinpackField::Cpu) => {
                        Some(u64::from(self.remaining[i].cpu))
                    }
                    PlacementStrategy::Binpack(BinpackField::Memory) => {
                        Some(u64::from(self.remaining[i].memory))
                    }
                    PlacementStrategy::Random => None,
                }
            };
            if let Some(best) = candidates.iter().filter_map(|i| score(*i)).min() {
                candidates.retain(|i| score(*i) == Some(best));
            }
        }
        candidates
    }

    pub fn place(&mut self, i: usize) {
        self.count[i] += 1;
        self.remaining[i] = self.remaining[i].minus(self.service.task_size);
        if !self.service.host_ports.is_empty() {
            self.ports_free[i] = false;
        }
        for s in &mut self.spreads {
            if let Some(Some(d)) = s.domain_of.get(i) {
                s.tasks[*d as usize] += 1;
            }
        }
    }

    pub fn remove(&mut self, i: usize) {
        self.count[i] = self.count[i].saturating_sub(1);
        self.remaining[i] = self.remaining[i].plus(self.service.task_size);
        if !self.service.host_ports.is_empty() {
            self.ports_free[i] = true;
        }
        for s in &mut self.spreads {
            if let Some(Some(d)) = s.domain_of.get(i) {
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
                    PlacementStrategy::Spread(_) => {
                        Some(spread.domain_of[i].map_or(0, |d| u64::from(spread.tasks[d as usize])))
                    }
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

    /// Whether the strategy spreads over this field (so the planner can
    /// predict in which of its domains a replacement lands).
    pub fn spreads_over(&self, field: &PlacementField) -> bool {
        self.strategy
            .iter()
            .any(|s| matches!(s, PlacementStrategy::Spread(f) if f == field))
    }

    pub fn strategy(&self) -> &[PlacementStrategy] {
        &self.strategy
    }
}
