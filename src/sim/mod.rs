//! An in-memory model of the parts of ECS that matter to stevedore, driven
//! by a virtual clock: container instances joining, draining, terminating
//! and failing with their zone; services with desired counts, placement
//! strategies and constraints; the service scheduler that starts and stops
//! tasks as ECS does ([`crate::plan::placement`], ties broken by a seeded
//! random number generator); task lifecycle with delays; API calls counted
//! with ECS's batch limits and token-bucket pacing; injectable faults; and
//! events in EventBridge's shape with `detail.version`.
//!
//! - [`Simulator`]: the state and what ECS does to it.
//! - [`SimBackend`]: the [`Backend`] over it.
//! - [`scenario`]: the scenario file format and the large-cluster generator.
//! - [`run`]: runs the controller against a scenario and reports.

pub mod capture;
pub mod html;
pub mod run;
pub mod scenario;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::backend::MetricQuery;
use crate::backend::pacing::{TokenBucket, answered};
use crate::backend::refresh::{self, Delta, TaskRecord, Touched};
use crate::backend::{self, Backend};
use crate::model::{ClusterSnapshot, Instance, InstanceStatus, Millis, Service, Task, TaskStatus};
use crate::plan::placement::PlacementView;

/// How long things take, in virtual milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delays {
    /// From placement to RUNNING.
    pub task_start: Millis,
    /// From a stop request to STOPPED (the container's stop timeout).
    pub task_stop: Millis,
    /// One API call's round trip, once its rate token is granted.
    pub api_call: Millis,
}

impl Default for Delays {
    fn default() -> Self {
        Delays {
            task_start: 20_000,
            task_stop: 10_000,
            api_call: 30,
        }
    }
}

/// Faults to inject, as probabilities per call or per event.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    pub api_error_rate: f64,
    pub throttle_rate: f64,
    pub event_loss_rate: f64,
    pub event_duplication_rate: f64,
    /// Deliver each batch of events in a shuffled order.
    pub event_reordering: bool,
    /// Place this share of tasks where the service already has the most
    /// tasks, against its strategy.
    pub misplacement_rate: f64,
}

#[derive(Debug, Clone)]
struct SimTask {
    task: Task,
    /// When a PENDING task becomes RUNNING, or a STOPPING one STOPPED.
    due: Millis,
    version: u64,
    /// When protection set by UpdateTaskProtection expires (none: set
    /// by the scenario, for good).
    protected_until: Option<Millis>,
}

/// Attempts the AWS SDK's standard retry mode makes at one call.
const SDK_ATTEMPTS: usize = 3;

/// The simulated cluster.
#[derive(Debug)]
pub struct Simulator {
    pub cluster: String,
    pub now: Millis,
    pub instances: Vec<Instance>,
    instance_version: Vec<u64>,
    pub services: Vec<Service>,
    tasks: Vec<SimTask>,
    next_task: u64,
    next_event: u64,
    /// The earliest time a task changes state by itself.
    next_due: Millis,
    /// The earliest time a task's protection expires.
    next_expiry: Millis,
    pub delays: Delays,
    pub faults: Faults,
    rng: ChaCha8Rng,
    /// Events not yet delivered, each with the time it is due.
    events: VecDeque<(Millis, Value)>,
    api_calls: BTreeMap<String, u64>,
    /// Calls refused by an injected throttle, per operation.
    throttles: BTreeMap<String, u64>,
    reads: TokenBucket,
    writes: TokenBucket,
    /// Services whose task definition the controller has described (once
    /// each, as the AWS backend caches them; one family per service here).
    described: std::collections::HashSet<String>,
    /// The metrics served to scaling policies, as CloudWatch would.
    pub metrics: Vec<MetricModel>,
    /// Seeds the metrics' noise, per metric and period.
    seed: u64,
    /// When each StopTask call was answered, in order.
    pub stop_requests: Vec<Millis>,
    /// The tasks stopped on request, with the reason given, as ECS lists
    /// them (STOPPED) for an hour.
    stopped_on_request: Vec<backend::StoppedTask>,
    /// Tasks stopped on request while they had scale-in protection: what
    /// stevedore must never do (ECS itself would not refuse).
    pub stopped_protected: Vec<String>,
    /// Events dropped by the `eventLossRate` fault so far.
    pub events_lost: u64,
    /// ECS's AZ rebalancing: per service, the task it started in the
    /// emptiest zone, until it runs and one task of the fullest zone is
    /// stopped for it.
    rebalancing: BTreeMap<usize, String>,
    /// ECS's service events of AZ rebalancing, in order: (virtual time,
    /// service, message as ECS writes it).
    pub service_events: Vec<(Millis, String, String)>,
    /// Tasks ECS's AZ rebalancing stopped, per service.
    pub rebalancing_stops: BTreeMap<usize, u32>,
    /// Tasks stopped on request and not yet replaced, as ECS lives it.
    pub disruption: Disruption,
}

/// Tasks stopped by StopTask and not yet replaced, counted by the
/// simulator itself (not by what the controller believes): per service, the
/// zones of its stopped tasks, oldest first; a task of the service that
/// starts running replaces the oldest. Their peaks are what a
/// DisruptionBudget promises to bound.
#[derive(Debug, Clone, Default)]
pub struct Disruption {
    outstanding: BTreeMap<usize, VecDeque<String>>,
    /// Per service: tasks lost to an outage (a host terminated, a zone
    /// failed) and not yet replaced.
    lost: BTreeMap<usize, u32>,
    /// The most stopped-and-not-replaced tasks at one moment.
    pub peak_stopped: u32,
    /// The most zones with such tasks at one moment.
    pub peak_zones: u32,
}

impl Disruption {
    fn stopped(&mut self, service: usize, zone: String) {
        self.outstanding.entry(service).or_default().push_back(zone);
        let stopped = self.outstanding.values().map(VecDeque::len).sum::<usize>() as u32;
        let zones: BTreeSet<&String> = self.outstanding.values().flatten().collect();
        self.peak_stopped = self.peak_stopped.max(stopped);
        self.peak_zones = self.peak_zones.max(zones.len() as u32);
    }

    /// A task of `service` started: it replaces one stevedore stopped,
    /// else one lost to an outage, else it is new.
    fn started(&mut self, service: usize) {
        if let Some(q) = self.outstanding.get_mut(&service) {
            q.pop_front();
            if q.is_empty() {
                self.outstanding.remove(&service);
            }
        } else if let Some(n) = self.lost.get_mut(&service) {
            *n -= 1;
            if *n == 0 {
                self.lost.remove(&service);
            }
        }
    }

    /// Keeps at most `short` of `service`'s stopped and lost tasks waiting
    /// for a replacement (stevedore's first), the rest will have none.
    fn no_replacement_beyond(&mut self, service: usize, short: u32) {
        if let Some(q) = self.outstanding.get_mut(&service) {
            q.truncate(short as usize);
            if q.is_empty() {
                self.outstanding.remove(&service);
            }
        }
        let left = short.saturating_sub(self.stopped_now(service));
        if let Some(n) = self.lost.get_mut(&service) {
            *n = (*n).min(left);
            if *n == 0 {
                self.lost.remove(&service);
            }
        }
    }

    /// Tasks of `service` stevedore stopped that are not yet replaced.
    pub fn stopped_now(&self, service: usize) -> u32 {
        self.outstanding.get(&service).map_or(0, |q| q.len() as u32)
    }

    /// Tasks of `service` lost to an outage and not yet replaced.
    pub fn lost_now(&self, service: usize) -> u32 {
        self.lost.get(&service).copied().unwrap_or(0)
    }
}

/// A metric in the simulator: a load over time, optionally divided among a
/// service's running tasks (as CPU utilization is), with noise and gaps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricModel {
    pub namespace: String,
    pub name: String,
    pub dimensions: BTreeMap<String, String>,
    /// The service whose running tasks share the load, if any.
    pub per_task_of: Option<String>,
    /// The load at points in time, joined by straight lines, held after the last.
    pub load: Vec<(Millis, f64)>,
    /// Each data point is off by up to this much, either way.
    pub noise: f64,
    /// Spans with no data points.
    pub gaps: Vec<(Millis, Millis)>,
}

impl MetricModel {
    /// The load at `at`, without noise.
    pub fn load_at(&self, at: Millis) -> f64 {
        let Some(first) = self.load.first() else {
            return 0.0;
        };
        if at <= first.0 {
            return first.1;
        }
        for pair in self.load.windows(2) {
            let ((t0, v0), (t1, v1)) = (pair[0], pair[1]);
            if at <= t1 {
                let f = (at - t0) as f64 / (t1 - t0).max(1) as f64;
                return v0 + (v1 - v0) * f;
            }
        }
        self.load.last().map_or(0.0, |l| l.1)
    }
}

/// ECS's page and batch sizes, the same the AWS backend uses.
pub use crate::backend::limits;

impl Simulator {
    /// Seeds the scheduler's choices among equal instances, the faults and
    /// the metrics' noise again, as if the simulator had been made with
    /// `seed` (`sim --seed`). Call before the run starts.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
        self.seed = seed;
    }

    pub fn new(cluster: &str, seed: u64) -> Simulator {
        Simulator {
            cluster: cluster.to_owned(),
            now: 0,
            instances: vec![],
            instance_version: vec![],
            services: vec![],
            tasks: vec![],
            next_task: 0,
            next_event: 0,
            next_due: Millis::MAX,
            next_expiry: Millis::MAX,
            delays: Delays::default(),
            faults: Faults::default(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            events: VecDeque::new(),
            api_calls: BTreeMap::new(),
            throttles: BTreeMap::new(),
            // Reads: about 100 burst / 20 per second; writes (UpdateService,
            // StopTask): about 50 burst / 5 per second.
            reads: TokenBucket::ecs_reads(),
            writes: TokenBucket::ecs_writes(),
            described: Default::default(),
            metrics: vec![],
            seed,
            stop_requests: vec![],
            stopped_on_request: vec![],
            stopped_protected: vec![],
            events_lost: 0,
            rebalancing: BTreeMap::new(),
            service_events: vec![],
            rebalancing_stops: BTreeMap::new(),
            disruption: Disruption::default(),
        }
    }

    // ---- building the initial state -------------------------------------

    pub fn add_instance(&mut self, instance: Instance) -> usize {
        self.instances.push(instance);
        self.instance_version.push(1);
        let i = self.instances.len() - 1;
        self.instance_event(i);
        i
    }

    pub fn add_service(&mut self, service: Service) -> usize {
        self.services.push(service);
        self.services.len() - 1
    }

    /// A RUNNING task placed by hand (the scenario's initial layout).
    pub fn add_running_task(
        &mut self,
        service: usize,
        instance: usize,
        started_at: Millis,
    ) -> Result<(), String> {
        let id = self.task_id();
        self.add_task_as(service, instance, started_at, id)
    }

    /// The same, with the task's id given (a snapshot of a live cluster
    /// keeps its tasks' ARNs).
    pub fn add_task_as(
        &mut self,
        service: usize,
        instance: usize,
        started_at: Millis,
        id: String,
    ) -> Result<(), String> {
        let size = self.services[service].task_size;
        let inst = &mut self.instances[instance];
        if !inst.remaining.fits(size) {
            return Err(format!(
                "instance {} has no room for a task of {}",
                inst.id, self.services[service].name
            ));
        }
        inst.remaining = inst.remaining.minus(size);
        inst.ports_in_use
            .extend(self.services[service].host_ports.iter().copied());
        self.tasks.push(SimTask {
            task: Task {
                id,
                service,
                instance: Some(instance),
                status: TaskStatus::Running,
                started_at,
                protected: false,
            },
            due: 0,
            version: 1,
            protected_until: None,
        });
        Ok(())
    }

    pub fn protect_task(&mut self, id: &str) {
        if let Some(t) = self.tasks.iter_mut().find(|t| t.task.id == id) {
            t.task.protected = true;
        }
    }

    fn task_id(&mut self) -> String {
        self.next_task += 1;
        format!(
            "arn:aws:ecs:us-east-1:123456789012:task/{}/{:08x}",
            self.cluster, self.next_task
        )
    }

    // ---- what ECS does -------------------------------------------------

    /// Advances virtual time to `to`, running the scheduler once a second.
    pub fn advance(&mut self, to: Millis) {
        while self.now < to {
            self.now = (self.now + 1_000).min(to);
            self.lifecycle();
            self.schedule();
            self.rebalance_zones();
        }
    }

    fn lifecycle(&mut self) {
        let now = self.now;
        // Protection set through the API lapses when it expires, as on ECS.
        if now >= self.next_expiry {
            self.next_expiry = Millis::MAX;
            for t in &mut self.tasks {
                match t.protected_until {
                    Some(until) if until <= now => {
                        t.task.protected = false;
                        t.protected_until = None;
                    }
                    Some(until) => self.next_expiry = self.next_expiry.min(until),
                    None => {}
                }
            }
        }
        if now < self.next_due {
            return;
        }
        self.next_due = Millis::MAX;
        let mut i = 0;
        while i < self.tasks.len() {
            let t = &mut self.tasks[i];
            match t.task.status {
                TaskStatus::Pending if t.due <= now => {
                    t.task.status = TaskStatus::Running;
                    t.task.started_at = now;
                    t.version += 1;
                    let service = t.task.service;
                    self.disruption.started(service);
                    self.task_event(i);
                }
                TaskStatus::Stopping if t.due <= now => {
                    self.release(i);
                    let t = &mut self.tasks[i];
                    t.version += 1;
                    self.task_event_stopped(i);
                    self.tasks.swap_remove(i);
                    continue;
                }
                TaskStatus::Pending | TaskStatus::Stopping => {
                    self.next_due = self.next_due.min(t.due)
                }
                _ => {}
            }
            i += 1;
        }
    }

    /// Frees the resources a task holds on its instance.
    fn release(&mut self, i: usize) {
        let t = &self.tasks[i].task;
        if let Some(inst) = t.instance {
            let service = &self.services[t.service];
            let instance = &mut self.instances[inst];
            instance.remaining = instance.remaining.plus(service.task_size);
            instance
                .ports_in_use
                .retain(|p| !service.host_ports.contains(p));
        }
    }

    /// The service scheduler: place what is missing, stop what is extra.
    /// One pass over the tasks, then work only for services that need it.
    fn schedule(&mut self) {
        let mut active = vec![0usize; self.services.len()];
        let mut unsettled = vec![false; self.services.len()];
        for t in &self.tasks {
            let on_draining = t
                .task
                .instance
                .is_some_and(|i| self.instances[i].status == InstanceStatus::Draining);
            match t.task.status {
                TaskStatus::Stopping => {}
                _ if on_draining => unsettled[t.task.service] = true,
                TaskStatus::Provisioning => {
                    active[t.task.service] += 1;
                    unsettled[t.task.service] = true;
                }
                _ => active[t.task.service] += 1,
            }
        }
        for s in 0..self.services.len() {
            let desired = self.services[s].desired as usize;
            if active[s] == desired && !unsettled[s] {
                continue;
            }
            // An AZ rebalancing step's extra task is not scaled in: the
            // step stops one of the fullest zone once it runs.
            if self.rebalancing.contains_key(&s) && active[s] == desired + 1 {
                continue;
            }
            let draining = |sim: &Simulator, i: usize| {
                sim.tasks[i]
                    .task
                    .instance
                    .is_some_and(|x| sim.instances[x].status == InstanceStatus::Draining)
            };
            let tasks: Vec<usize> = (0..self.tasks.len())
                .filter(|i| {
                    self.tasks[*i].task.service == s
                        && self.tasks[*i].task.status != TaskStatus::Stopping
                })
                .collect();
            let (drained, kept): (Vec<usize>, Vec<usize>) =
                tasks.into_iter().partition(|i| draining(self, *i));
            if kept.len() > desired {
                self.scale_in(s, kept.len() - desired, &kept);
                continue;
            }
            for &i in &kept {
                if self.tasks[i].task.status == TaskStatus::Provisioning {
                    self.try_place(s, Some(i));
                }
            }
            // Replacements for tasks on DRAINING instances start first, up to
            // maximumPercent of the desired count in all.
            let max_total =
                (desired * self.services[s].maximum_percent as usize / 100).max(desired);
            let (mut placed, mut total) = (kept.len(), kept.len() + drained.len());
            while placed < desired && (drained.is_empty() || total < max_total) {
                self.try_place(s, None);
                placed += 1;
                total += 1;
            }
            // Drained tasks stop while at least minimumHealthyPercent keeps running.
            let min_healthy =
                (desired * self.services[s].minimum_healthy_percent as usize).div_ceil(100);
            let mut running = kept
                .iter()
                .chain(&drained)
                .filter(|i| self.tasks[**i].task.status == TaskStatus::Running)
                .count();
            for i in drained {
                if self.tasks[i].task.status != TaskStatus::Running {
                    self.begin_stop(i);
                } else if running > min_healthy {
                    self.begin_stop(i);
                    running -= 1;
                }
            }
        }
    }

    fn view(&self, s: usize) -> PlacementView<'_> {
        let mut count = vec![0u32; self.instances.len()];
        for t in &self.tasks {
            if t.task.service == s
                && let Some(i) = t.task.instance
                && matches!(t.task.status, TaskStatus::Running | TaskStatus::Pending)
            {
                count[i] += 1;
            }
        }
        PlacementView::new(&self.instances, &self.services[s], count)
    }

    /// Places a new task (or a PROVISIONING one); stays PROVISIONING if nothing fits.
    fn try_place(&mut self, s: usize, existing: Option<usize>) {
        self.try_place_in(s, existing, None);
    }

    /// [`Simulator::try_place`], in `zone` only if given (AZ rebalancing);
    /// returns the task's index.
    fn try_place_in(&mut self, s: usize, existing: Option<usize>, zone: Option<&str>) -> usize {
        // The random draw only with the fault on, so that every other run
        // keeps its sequence of choices.
        let misplaced = zone.is_none()
            && self.faults.misplacement_rate > 0.0
            && self.rng.random_bool(self.faults.misplacement_rate.min(1.0));
        let mut view = self.view(s);
        if let Some(zone) = zone {
            for (i, instance) in self.instances.iter().enumerate() {
                if instance.zone != zone {
                    view.open[i] = false;
                }
            }
        }
        let candidates: Vec<usize> = if misplaced {
            // The instance that can take it in the zone with the most of
            // the service's tasks: the opposite of a spread.
            let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
            for t in &self.tasks {
                if t.task.service == s
                    && t.task.status != TaskStatus::Stopping
                    && let Some(i) = t.task.instance
                {
                    *per_zone.entry(self.instances[i].zone.as_str()).or_default() += 1;
                }
            }
            (0..self.instances.len())
                .filter(|i| view.can_host(*i))
                .max_by_key(|i| {
                    (
                        per_zone
                            .get(self.instances[*i].zone.as_str())
                            .copied()
                            .unwrap_or(0),
                        std::cmp::Reverse(*i),
                    )
                })
                .into_iter()
                .collect()
        } else {
            view.candidates()
        };
        drop(view);
        let chosen = (!candidates.is_empty())
            .then(|| candidates[self.rng.random_range(0..candidates.len())]);
        let i = match existing {
            Some(i) => i,
            None => {
                let id = self.task_id();
                self.tasks.push(SimTask {
                    task: Task {
                        id,
                        service: s,
                        instance: None,
                        status: TaskStatus::Provisioning,
                        started_at: self.now,
                        protected: false,
                    },
                    due: 0,
                    version: 1,
                    protected_until: None,
                });
                self.tasks.len() - 1
            }
        };
        if let Some(inst) = chosen {
            let service = &self.services[s];
            let instance = &mut self.instances[inst];
            instance.remaining = instance.remaining.minus(service.task_size);
            instance
                .ports_in_use
                .extend(service.host_ports.iter().copied());
            let t = &mut self.tasks[i];
            t.task.instance = Some(inst);
            t.task.status = TaskStatus::Pending;
            t.due = self.now + self.delays.task_start;
            t.version += 1;
            self.next_due = self.next_due.min(self.now + self.delays.task_start);
            self.task_event(i);
        } else if existing.is_none() {
            self.task_event(i);
        }
        i
    }

    /// ECS's AZ rebalancing, for each service that has it on and can run
    /// it: a step that is under way goes on (once the task it started
    /// runs, one task of the fullest zone stops, as ECS's scale-in by the
    /// zone spread picks it); a service at steady state whose zones differ
    /// by more than one task gets a new task in its emptiest zone (with
    /// SERVICE_REBALANCING_STARTED), and one balanced again says
    /// SERVICE_REBALANCING_COMPLETED.
    fn rebalance_zones(&mut self) {
        for s in 0..self.services.len() {
            if !self.services[s].az_rebalancing
                || !crate::plan::az_rebalancing::blockers(&self.services[s]).is_empty()
            {
                continue;
            }
            if let Some(started) = self.rebalancing.get(&s).cloned() {
                let new = self.tasks.iter().position(|t| t.task.id == started);
                match new.map(|i| self.tasks[i].task.status) {
                    Some(TaskStatus::Running) => {
                        self.rebalancing.remove(&s);
                        self.stop_for_rebalancing(s, &started);
                    }
                    Some(TaskStatus::Pending | TaskStatus::Provisioning) => {}
                    // Stopped meanwhile: the step is over.
                    _ => {
                        self.rebalancing.remove(&s);
                    }
                }
                continue;
            }
            let mine = || self.tasks.iter().filter(move |t| t.task.service == s);
            let steady = mine().all(|t| {
                t.task.status == TaskStatus::Running
                    && t.task
                        .instance
                        .is_some_and(|i| self.instances[i].status == InstanceStatus::Active)
            }) && mine().count() as u32 == self.services[s].desired;
            if !steady {
                continue;
            }
            let view = self.view(s);
            let mut per_zone: BTreeMap<String, u32> = BTreeMap::new();
            for (i, instance) in self.instances.iter().enumerate() {
                if view.open[i] {
                    per_zone.entry(instance.zone.clone()).or_insert(0);
                }
            }
            drop(view);
            for t in mine() {
                if let Some(i) = t.task.instance
                    && let Some(n) = per_zone.get_mut(&self.instances[i].zone)
                {
                    *n += 1;
                }
            }
            let (Some(most), Some((emptiest, least))) = (
                per_zone.values().max().copied(),
                per_zone
                    .iter()
                    .min_by_key(|(zone, n)| (**n, (*zone).clone()))
                    .map(|(z, n)| (z.clone(), *n)),
            ) else {
                continue;
            };
            let name = self.services[s].name.clone();
            let counts = per_zone
                .iter()
                .map(|(z, n)| format!("{n} tasks in {z}"))
                .collect::<Vec<_>>()
                .join(", ");
            if most - least <= crate::plan::az_rebalancing::ECS_BALANCED_SKEW {
                if self.services[s].az_rebalancing_in_progress {
                    self.services[s].az_rebalancing_in_progress = false;
                    self.service_events.push((
                        self.now,
                        name.clone(),
                        format!("service ({name}) is AZ balanced with {counts}."),
                    ));
                }
                continue;
            }
            // No room in that zone: ECS cannot start the step.
            let view = self.view(s);
            let room = (0..self.instances.len())
                .any(|i| self.instances[i].zone == emptiest && view.can_host(i));
            drop(view);
            if !room {
                continue;
            }
            let i = self.try_place_in(s, None, Some(&emptiest));
            self.rebalancing.insert(s, self.tasks[i].task.id.clone());
            if !self.services[s].az_rebalancing_in_progress {
                self.services[s].az_rebalancing_in_progress = true;
                self.service_events.push((
                    self.now,
                    name.clone(),
                    format!(
                        "service ({name}) is not AZ balanced with {counts}. AZ Rebalancing in progress."
                    ),
                ));
            }
        }
    }

    /// The stop of an AZ rebalancing step: a running task of the fullest
    /// zone (not the one the step started), chosen as ECS's scale-in does.
    fn stop_for_rebalancing(&mut self, s: usize, started: &str) {
        let active: Vec<usize> = (0..self.tasks.len())
            .filter(|i| {
                let t = &self.tasks[*i].task;
                t.service == s && t.status == TaskStatus::Running && t.id != started
            })
            .collect();
        let before = self.stop_count(s);
        self.scale_in(s, 1, &active);
        if self.stop_count(s) > before {
            *self.rebalancing_stops.entry(s).or_default() += 1;
        }
    }

    /// Tasks of service `s` stopping now.
    fn stop_count(&self, s: usize) -> usize {
        self.tasks
            .iter()
            .filter(|t| t.task.service == s && t.task.status == TaskStatus::Stopping)
            .count()
    }

    /// Scale-in as ECS does it: tasks not yet running first, then by the
    /// service's strategy; never a protected task.
    fn scale_in(&mut self, s: usize, mut extra: usize, active: &[usize]) {
        for &i in active {
            if extra == 0 {
                return;
            }
            if matches!(
                self.tasks[i].task.status,
                TaskStatus::Provisioning | TaskStatus::Pending
            ) {
                self.begin_stop(i);
                extra -= 1;
            }
        }
        while extra > 0 {
            let view = self.view(s);
            let stoppable: Vec<usize> = active
                .iter()
                .filter(|i| {
                    self.tasks[**i].task.status == TaskStatus::Running
                        && !self.tasks[**i].task.protected
                })
                .filter_map(|i| self.tasks[*i].task.instance)
                .collect();
            let hosts = view.scale_in_candidates(&stoppable);
            if hosts.is_empty() {
                return;
            }
            let host = hosts[self.rng.random_range(0..hosts.len())];
            let Some(&i) = active.iter().find(|i| {
                let t = &self.tasks[**i].task;
                t.instance == Some(host) && t.status == TaskStatus::Running && !t.protected
            }) else {
                return;
            };
            self.begin_stop(i);
            extra -= 1;
        }
    }

    fn begin_stop(&mut self, i: usize) {
        let t = &mut self.tasks[i];
        if t.task.status == TaskStatus::Provisioning {
            t.task.status = TaskStatus::Stopping;
            t.due = self.now;
        } else {
            t.task.status = TaskStatus::Stopping;
            t.due = self.now + self.delays.task_stop;
        }
        t.version += 1;
        self.next_due = self.next_due.min(self.tasks[i].due);
        self.task_event(i);
    }

    // ---- the timeline ----------------------------------------------------

    pub fn instance_index(&self, id: &str) -> Option<usize> {
        self.instances.iter().position(|i| i.id == id)
    }

    /// DRAINING: the scheduler replaces the instance's service tasks
    /// elsewhere, within the service's deployment configuration
    /// (replacements first, up to maximumPercent; drained tasks stop while
    /// minimumHealthyPercent keeps running).
    pub fn drain(&mut self, instance: usize) {
        self.instances[instance].status = InstanceStatus::Draining;
        self.bump_instance(instance);
    }

    /// The EC2 instance is gone: its tasks stop at once.
    pub fn terminate(&mut self, instance: usize) {
        self.lose_tasks(|t| t.instance == Some(instance));
        let inst = &mut self.instances[instance];
        inst.status = InstanceStatus::Inactive;
        inst.agent_connected = false;
        self.bump_instance(instance);
    }

    /// A zone fails: its instances disconnect and their tasks are lost.
    pub fn fail_zone(&mut self, zone: &str) {
        let failed: Vec<usize> = (0..self.instances.len())
            .filter(|i| self.instances[*i].zone == zone && self.instances[*i].agent_connected)
            .collect();
        self.lose_tasks(|t| t.instance.is_some_and(|i| failed.contains(&i)));
        for i in failed {
            self.instances[i].agent_connected = false;
            self.bump_instance(i);
        }
    }

    /// The zone is back: ACTIVE instances reconnect, empty.
    pub fn recover_zone(&mut self, zone: &str) {
        for i in 0..self.instances.len() {
            if self.instances[i].zone == zone
                && self.instances[i].status == InstanceStatus::Active
                && !self.instances[i].agent_connected
            {
                self.instances[i].agent_connected = true;
                self.bump_instance(i);
            }
        }
    }

    fn lose_tasks(&mut self, which: impl Fn(&Task) -> bool) {
        let mut i = 0;
        while i < self.tasks.len() {
            if which(&self.tasks[i].task) {
                if self.tasks[i].task.status == TaskStatus::Running {
                    *self
                        .disruption
                        .lost
                        .entry(self.tasks[i].task.service)
                        .or_default() += 1;
                }
                self.release(i);
                self.tasks[i].version += 1;
                self.task_event_stopped(i);
                self.tasks.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    fn bump_instance(&mut self, i: usize) {
        self.instance_version[i] += 1;
        self.instance_event(i);
    }

    pub fn set_desired(&mut self, service: usize, desired: u32) {
        self.services[service].desired = desired;
        // A lower count may leave stopped tasks without a replacement:
        // they are no longer waiting for one.
        let alive = self
            .tasks
            .iter()
            .filter(|t| {
                t.task.service == service
                    && matches!(
                        t.task.status,
                        TaskStatus::Running | TaskStatus::Pending | TaskStatus::Provisioning
                    )
            })
            .count() as u32;
        self.disruption
            .no_replacement_beyond(service, desired.saturating_sub(alive));
    }

    /// Whether events emitted are still held back (delivered later).
    pub fn events_held(&self) -> bool {
        !self.events.is_empty()
    }

    // ---- reading -----------------------------------------------------------

    /// The state as a snapshot, with the service counts ECS reports.
    pub fn state(&self) -> ClusterSnapshot {
        let services = self
            .services
            .iter()
            .zip(self.task_counts())
            .map(|(s, (running, pending))| Service {
                running,
                pending,
                ..s.clone()
            })
            .collect();
        ClusterSnapshot {
            cluster: self.cluster.clone(),
            taken_at: self.now,
            instances: self.instances.clone(),
            services,
            tasks: self.tasks.iter().map(|t| t.task.clone()).collect(),
        }
    }

    /// A metric's latest value now, as CloudWatch would report it.
    pub fn metric_value(&self, query: &MetricQuery) -> Option<f64> {
        let m = self.metrics.iter().position(|m| {
            m.namespace == query.namespace
                && m.name == query.name
                && m.dimensions == query.dimensions
        })?;
        let model = &self.metrics[m];
        // The data point of the current period: reads within one period
        // see the same value, as from CloudWatch.
        let period = Millis::from(query.period.max(1)) * 1000;
        let at = self.now - self.now % period;
        if model
            .gaps
            .iter()
            .any(|(from, to)| (*from..*to).contains(&at))
        {
            return None;
        }
        let mut value = model.load_at(at);
        if let Some(service) = &model.per_task_of {
            let s = self.services.iter().position(|x| &x.name == service)?;
            let running = self
                .tasks
                .iter()
                .filter(|t| t.task.service == s && t.task.status == TaskStatus::Running)
                .count();
            value /= running.max(1) as f64;
        }
        let noise = model.noise;
        if noise > 0.0 {
            let mut dice =
                ChaCha8Rng::seed_from_u64(self.seed ^ (at / period).rotate_left(17) ^ m as u64);
            value += dice.random_range(-noise..=noise);
        }
        Some(value)
    }

    /// Calls one full read of the cluster costs now, per operation, with
    /// ECS's page and batch sizes: the first read also describes each
    /// service's task definition (there is no batch call for that), later
    /// ones only those of services new since.
    pub fn snapshot_calls(&self) -> Vec<(&'static str, u64)> {
        let pages = |n: usize, size: usize| n.div_ceil(size).max(1) as u64;
        let s = self.services.len();
        let i = self.instances.len();
        let t = self.tasks.len();
        vec![
            ("ListServices", pages(s, limits::LIST_PAGE)),
            (
                "DescribeServices",
                s.div_ceil(limits::DESCRIBE_SERVICES) as u64,
            ),
            // Once the services are described, as the AWS backend does.
            (
                "DescribeTaskDefinition",
                self.undescribed(self.services.iter().map(|s| s.name.as_str())),
            ),
            ("ListContainerInstances", pages(i, limits::LIST_PAGE)),
            (
                "DescribeContainerInstances",
                i.div_ceil(limits::DESCRIBE_CONTAINER_INSTANCES) as u64,
            ),
            ("ListTasks", pages(t, limits::LIST_PAGE)),
            ("DescribeTasks", t.div_ceil(limits::DESCRIBE_TASKS) as u64),
        ]
    }

    /// How many of these services' task definitions were never described.
    fn undescribed<'a>(&self, services: impl Iterator<Item = &'a str>) -> u64 {
        services.filter(|s| !self.described.contains(*s)).count() as u64
    }

    /// Notes these services' task definitions as described.
    fn describe_task_definitions<'a>(&mut self, services: impl Iterator<Item = &'a str>) {
        for s in services {
            self.described.insert(s.to_owned());
        }
    }

    /// What Describe calls of `touched`, and of the services and hosts of
    /// its tasks, return now; without copying the whole state.
    fn read_touched(&self, previous: &ClusterSnapshot, touched: &Touched) -> (Touched, Delta) {
        let read: Vec<TaskRecord> = self
            .tasks
            .iter()
            .filter(|t| touched.tasks.contains(&t.task.id))
            .map(|t| TaskRecord {
                id: t.task.id.clone(),
                service: self.services[t.task.service].name.clone(),
                instance: t.task.instance.map(|i| self.instances[i].id.clone()),
                status: t.task.status,
                started_at: t.task.started_at,
                protected: false,
            })
            .collect();
        let touched = touched.clone().with_owners(&read, previous);
        let services = self
            .services
            .iter()
            .zip(self.task_counts())
            .filter(|(s, _)| touched.services.contains(&s.name))
            .map(|(s, (running, pending))| Service {
                running,
                pending,
                ..s.clone()
            })
            .collect();
        let instances = self
            .instances
            .iter()
            .filter(|i| touched.instances.contains(&i.id))
            .cloned()
            .collect();
        let delta = Delta::from_reads(&touched, self.now, services, instances, read);
        (touched, delta)
    }

    /// Running and pending tasks per service, as ECS counts them.
    fn task_counts(&self) -> Vec<(u32, u32)> {
        let mut counts = vec![(0, 0); self.services.len()];
        for t in &self.tasks {
            let (running, pending) = &mut counts[t.task.service];
            match t.task.status {
                TaskStatus::Running => *running += 1,
                TaskStatus::Pending | TaskStatus::Provisioning => *pending += 1,
                TaskStatus::Stopping => {}
            }
        }
        counts
    }

    /// The state as the Describe calls report it: scale-in protection is
    /// only known through GetTaskProtection.
    fn described(&self) -> ClusterSnapshot {
        let mut state = self.state();
        state.tasks.iter_mut().for_each(|t| t.protected = false);
        state
    }

    /// Counts and times calls, with injected faults, in order; a failed
    /// call fails the whole read: never a partial view. `at` is when the
    /// calls start, moved to when the last answered (`None`: untimed).
    fn read_calls(
        &mut self,
        calls: &[(&'static str, u64)],
        at: &mut Option<Millis>,
    ) -> backend::Result<()> {
        for &(operation, n) in calls {
            self.make_calls(operation, n, at)?;
        }
        Ok(())
    }

    /// `n` calls of one operation made at `*at`: counted, timed as the AWS
    /// backend makes them (each waits for a token of its family's bucket,
    /// then takes [`Delays::api_call`]; Describe batches
    /// [`backend::DESCRIBE_IN_FLIGHT`] at a time, anything else one after
    /// another), then an injected fault, if any, for the operation.
    fn make_calls(
        &mut self,
        operation: &'static str,
        n: u64,
        at: &mut Option<Millis>,
    ) -> backend::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.count_call(operation, n);
        if let Some(start) = at.as_mut() {
            let (bucket, in_flight) = match operation {
                "StopTask" | "UpdateService" | "UpdateTaskProtection" => (&mut self.writes, 1),
                "DescribeServices"
                | "DescribeTasks"
                | "DescribeContainerInstances"
                | "GetTaskProtection" => (&mut self.reads, backend::DESCRIBE_IN_FLIGHT),
                _ => (&mut self.reads, 1),
            };
            *start = answered(bucket, *start, n, in_flight, self.delays.api_call);
        }
        match self.fault(operation) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn count_call(&mut self, operation: &'static str, n: u64) {
        *self.api_calls.entry(operation.to_owned()).or_default() += n;
    }

    /// An injected fault for one call, if the dice say so for every
    /// attempt: the AWS SDK's standard retry makes up to
    /// [`SDK_ATTEMPTS`] attempts at a throttled or failed call, so only a
    /// fault that lasts through all of them reaches the controller. Each
    /// throttled attempt is counted, as the AWS backend's interceptor does.
    fn fault(&mut self, operation: &'static str) -> Option<backend::Error> {
        let mut last = None;
        for _ in 0..SDK_ATTEMPTS {
            last = if self.faults.throttle_rate > 0.0
                && self.rng.random_bool(self.faults.throttle_rate.min(1.0))
            {
                *self.throttles.entry(operation.to_owned()).or_default() += 1;
                Some(backend::Error::Throttled { operation })
            } else if self.faults.api_error_rate > 0.0
                && self.rng.random_bool(self.faults.api_error_rate.min(1.0))
            {
                Some(backend::Error::Api {
                    operation,
                    message: "injected fault: InternalServerError".into(),
                })
            } else {
                return None;
            };
        }
        last
    }

    pub fn api_calls(&self) -> BTreeMap<String, u64> {
        self.api_calls.clone()
    }

    /// Calls name the simulated cluster, or find nothing.
    fn ours(&self, cluster: &str) -> backend::Result<()> {
        if self.cluster == cluster {
            Ok(())
        } else {
            Err(backend::Error::ClusterNotFound(cluster.to_owned()))
        }
    }

    // ---- events ------------------------------------------------------------

    fn envelope(&mut self, detail_type: &str, resources: Vec<String>, detail: Value) -> Value {
        self.next_event += 1;
        json!({
            "version": "0",
            "id": format!("00000000-0000-4000-8000-{:012x}", self.next_event),
            "detail-type": detail_type,
            "source": "aws.ecs",
            "account": "123456789012",
            "time": self.now,
            "region": "us-east-1",
            "resources": resources,
            "detail": detail,
        })
    }

    fn task_event(&mut self, i: usize) {
        let status = match self.tasks[i].task.status {
            TaskStatus::Provisioning => "PROVISIONING",
            TaskStatus::Pending => "PENDING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Stopping => "STOPPING",
        };
        self.push_task_event(i, status);
    }

    fn task_event_stopped(&mut self, i: usize) {
        self.push_task_event(i, "STOPPED");
    }

    fn push_task_event(&mut self, i: usize, status: &str) {
        let t = &self.tasks[i];
        let instance = t.task.instance.map(|x| self.instances[x].id.clone());
        let detail = json!({
            "clusterArn": format!("arn:aws:ecs:us-east-1:123456789012:cluster/{}", self.cluster),
            "taskArn": t.task.id,
            "group": format!("service:{}", self.services[t.task.service].name),
            "lastStatus": status,
            "desiredStatus": if status == "STOPPING" || status == "STOPPED" { "STOPPED" } else { "RUNNING" },
            "containerInstanceArn": instance,
            "version": t.version,
        });
        let resources = vec![t.task.id.clone()];
        let event = self.envelope("ECS Task State Change", resources, detail);
        self.emit(event);
    }

    fn instance_event(&mut self, i: usize) {
        let inst = &self.instances[i];
        let detail = json!({
            "clusterArn": format!("arn:aws:ecs:us-east-1:123456789012:cluster/{}", self.cluster),
            "containerInstanceArn": inst.id,
            "status": format!("{:?}", inst.status).to_uppercase(),
            "agentConnected": inst.agent_connected,
            "attributes": inst.attributes.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
            "version": self.instance_version[i],
        });
        let resources = vec![inst.id.clone()];
        let event = self.envelope("ECS Container Instance State Change", resources, detail);
        self.emit(event);
    }

    /// Queues an event, subject to loss and duplication.
    fn emit(&mut self, event: Value) {
        if self.faults.event_loss_rate > 0.0
            && self.rng.random_bool(self.faults.event_loss_rate.min(1.0))
        {
            self.events_lost += 1;
            return;
        }
        if self.faults.event_duplication_rate > 0.0
            && self
                .rng
                .random_bool(self.faults.event_duplication_rate.min(1.0))
        {
            let at = self.due();
            self.events.push_back((at, event.clone()));
        }
        let at = self.due();
        self.events.push_back((at, event));
    }

    /// When an event emitted now is delivered: out of order, some events
    /// are held back for up to 5 s, so a later change of the same task can
    /// arrive first.
    fn due(&mut self) -> Millis {
        let hold = if self.faults.event_reordering && self.rng.random_bool(0.3) {
            self.rng.random_range(1..=5) * 1_000
        } else {
            0
        };
        self.now + hold
    }

    /// Delivers the events that are due (shuffled when reordering is on).
    pub fn take_events(&mut self) -> Vec<Value> {
        let now = self.now;
        let (due, held): (Vec<_>, Vec<_>) = self.events.drain(..).partition(|(at, _)| *at <= now);
        self.events.extend(held);
        let mut events: Vec<Value> = due.into_iter().map(|(_, e)| e).collect();
        if self.faults.event_reordering {
            for i in (1..events.len()).rev() {
                let j = self.rng.random_range(0..=i);
                events.swap(i, j);
            }
        }
        events
    }
}

/// The simulated EventBridge rule and SQS queue: the simulator's world
/// hands it the events ECS emitted each second, and the controller's run
/// loop receives them ten at a time, as from SQS.
#[derive(Debug, Default)]
pub struct SimEvents {
    /// Each message with the (tokio) instant it was queued.
    queue: std::cell::RefCell<VecDeque<(tokio::time::Instant, crate::backend::events::Message)>>,
    arrived: tokio::sync::Notify,
    delivered: std::cell::Cell<u64>,
    longest_wait: std::cell::Cell<std::time::Duration>,
}

impl SimEvents {
    /// Events emitted, now in the queue.
    pub fn push(&self, events: Vec<Value>) {
        if events.is_empty() {
            return;
        }
        let mut queue = self.queue.borrow_mut();
        let now = tokio::time::Instant::now();
        for event in events {
            let id = event["id"].as_str().unwrap_or_default().to_owned();
            queue.push_back((
                now,
                crate::backend::events::Message {
                    receipt: id.clone(),
                    id,
                    body: event.to_string(),
                },
            ));
        }
        self.arrived.notify_one();
    }

    /// Whether messages wait in the queue for the controller.
    pub fn is_empty(&self) -> bool {
        self.queue.borrow().is_empty()
    }

    /// Messages received by the controller so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.get()
    }

    /// The longest a message waited in the queue before the controller
    /// received it.
    pub fn longest_wait(&self) -> std::time::Duration {
        self.longest_wait.get()
    }

    fn take_batch(&self) -> Vec<crate::backend::events::Message> {
        let mut queue = self.queue.borrow_mut();
        let n = queue.len().min(limits::SQS_BATCH);
        self.delivered.set(self.delivered.get() + n as u64);
        if let Some((queued, _)) = queue.front() {
            let waited = queued.elapsed();
            self.longest_wait.set(self.longest_wait.get().max(waited));
        }
        queue.drain(..n).map(|(_, message)| message).collect()
    }
}

impl crate::backend::events::EventSource for SimEvents {
    type Error = std::convert::Infallible;

    async fn receive(
        &self,
        wait: std::time::Duration,
    ) -> Result<Vec<crate::backend::events::Message>, Self::Error> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let batch = self.take_batch();
            if !batch.is_empty() || wait.is_zero() {
                return Ok(batch);
            }
            tokio::select! {
                biased;
                () = self.arrived.notified() => {}
                // What came at the deadline is taken too: the outcome does
                // not depend on which of the two tokio saw first.
                () = tokio::time::sleep_until(deadline) => return Ok(self.take_batch()),
            }
        }
    }

    async fn delete(
        &self,
        _messages: &[crate::backend::events::Message],
    ) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// The simulator as a [`Backend`]: every call is counted, subject to
/// injected faults and, when timed, takes virtual time as the AWS
/// backend's would (its token bucket, its latency, its concurrency).
#[derive(Debug, Clone)]
pub struct SimBackend {
    pub sim: Arc<Mutex<Simulator>>,
    /// Timed calls: tokio's clock at virtual time 0. Untimed calls
    /// (`plan --sim`, tests of one read) answer at once.
    epoch: Option<tokio::time::Instant>,
}

impl SimBackend {
    /// Calls answer at once.
    pub fn new(sim: Simulator) -> SimBackend {
        SimBackend {
            sim: Arc::new(Mutex::new(sim)),
            epoch: None,
        }
    }

    /// Calls take virtual time on tokio's clock (paused, in the
    /// simulator), counted from `epoch`.
    pub fn timed(sim: Simulator, epoch: tokio::time::Instant) -> SimBackend {
        SimBackend {
            sim: Arc::new(Mutex::new(sim)),
            epoch: Some(epoch),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Simulator> {
        self.sim
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs one backend call on the simulator as it is when the call
    /// starts, then waits until the API calls it made have answered.
    async fn call<T>(&self, f: impl FnOnce(&mut Simulator, &mut Option<Millis>) -> T) -> T {
        let mut at = self
            .epoch
            .map(|epoch| epoch.elapsed().as_millis() as Millis);
        let out = f(&mut self.lock(), &mut at);
        if let (Some(epoch), Some(done)) = (self.epoch, at) {
            tokio::time::sleep_until(epoch + std::time::Duration::from_millis(done)).await;
        }
        out
    }
}

/// How long ECS lists a stopped task (at least an hour, says its
/// documentation; the simulator keeps it that long).
const LISTED_STOPPED: Millis = 3_600_000;

impl Backend for SimBackend {
    async fn snapshot(&self, cluster: &str) -> backend::Result<ClusterSnapshot> {
        self.call(|sim, at| {
            sim.ours(cluster)?;
            let calls = sim.snapshot_calls();
            sim.read_calls(&calls, at)?;
            let names: Vec<String> = sim.services.iter().map(|s| s.name.clone()).collect();
            sim.describe_task_definitions(names.iter().map(String::as_str));
            Ok(sim.described())
        })
        .await
    }

    async fn refresh(
        &self,
        cluster: &str,
        snapshot: &mut ClusterSnapshot,
        touched: &Touched,
    ) -> backend::Result<()> {
        let delta = self
            .call(|sim, at| {
                sim.ours(cluster)?;
                let (read, delta) = sim.read_touched(snapshot, touched);
                let new_services = sim.undescribed(read.services.iter().map(String::as_str));
                // Tasks first (their owners are learnt from them), then
                // services (and the task definitions of new ones) and hosts,
                // in ECS's batch sizes.
                let calls = [
                    (
                        "DescribeTasks",
                        read.tasks.len().div_ceil(limits::DESCRIBE_TASKS) as u64,
                    ),
                    (
                        "DescribeServices",
                        read.services.len().div_ceil(limits::DESCRIBE_SERVICES) as u64,
                    ),
                    ("DescribeTaskDefinition", new_services),
                    (
                        "DescribeContainerInstances",
                        read.instances
                            .len()
                            .div_ceil(limits::DESCRIBE_CONTAINER_INSTANCES)
                            as u64,
                    ),
                ];
                sim.read_calls(&calls, at)?;
                sim.describe_task_definitions(read.services.iter().map(String::as_str));
                Ok(delta)
            })
            .await?;
        refresh::apply(snapshot, delta);
        Ok(())
    }

    async fn protected_tasks(
        &self,
        cluster: &str,
        tasks: &[String],
    ) -> backend::Result<BTreeSet<String>> {
        self.call(|sim, at| {
            sim.ours(cluster)?;
            let batches = tasks.len().div_ceil(limits::GET_TASK_PROTECTION) as u64;
            sim.make_calls("GetTaskProtection", batches, at)?;
            let asked: BTreeSet<&String> = tasks.iter().collect();
            Ok(sim
                .tasks
                .iter()
                .filter(|t| t.task.protected && asked.contains(&t.task.id))
                .map(|t| t.task.id.clone())
                .collect())
        })
        .await
    }

    async fn update_task_protection(
        &self,
        cluster: &str,
        tasks: &[String],
        minutes: Option<u32>,
    ) -> backend::Result<()> {
        self.call(|sim, at| {
            sim.ours(cluster)?;
            let calls = tasks.len().div_ceil(limits::UPDATE_TASK_PROTECTION) as u64;
            sim.make_calls("UpdateTaskProtection", calls, at)?;
            let now = at.unwrap_or(sim.now);
            let asked: BTreeSet<&String> = tasks.iter().collect();
            let mut found = 0;
            for t in sim.tasks.iter_mut().filter(|t| asked.contains(&t.task.id)) {
                found += 1;
                t.task.protected = minutes.is_some();
                t.protected_until = minutes.map(|m| now + Millis::from(m) * 60_000);
                if let Some(until) = t.protected_until {
                    sim.next_expiry = sim.next_expiry.min(until);
                }
            }
            if minutes.is_some() && found < asked.len() {
                return Err(backend::Error::Api {
                    operation: "UpdateTaskProtection",
                    message: format!("{} of {} tasks not found", asked.len() - found, asked.len()),
                });
            }
            Ok(())
        })
        .await
    }

    async fn recently_stopped(&self, cluster: &str) -> backend::Result<Vec<backend::StoppedTask>> {
        self.call(|sim, at| {
            sim.ours(cluster)?;
            // ECS lists a stopped task for at least an hour: the simulator, for one.
            let since = sim.now.saturating_sub(LISTED_STOPPED);
            sim.stopped_on_request
                .retain(|t| t.stopping_at.is_some_and(|stop| stop >= since));
            let n = sim.stopped_on_request.len();
            sim.make_calls("ListTasks", n.div_ceil(limits::LIST_PAGE).max(1) as u64, at)?;
            sim.make_calls(
                "DescribeTasks",
                n.div_ceil(limits::DESCRIBE_TASKS) as u64,
                at,
            )?;
            Ok(sim.stopped_on_request.clone())
        })
        .await
    }

    async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> backend::Result<()> {
        self.call(|sim, at| {
            sim.ours(cluster)?;
            sim.make_calls("StopTask", 1, at)?;
            let answered = at.unwrap_or(sim.now);
            sim.stop_requests.push(answered);
            let i = sim
                .tasks
                .iter()
                .position(|t| t.task.id == task && t.task.status != TaskStatus::Stopping)
                .ok_or_else(|| backend::Error::TaskNotFound(task.to_owned()))?;
            if sim.tasks[i].task.protected {
                sim.stopped_protected.push(task.to_owned());
            }
            let t = &sim.tasks[i].task;
            let zone = t.instance.map(|h| sim.instances[h].zone.clone());
            sim.stopped_on_request.push(backend::StoppedTask {
                id: t.id.clone(),
                service: sim.services[t.service].name.clone(),
                zone: zone.clone(),
                instance: t.instance.map(|h| sim.instances[h].id.clone()),
                reason: reason.to_owned(),
                stopping_at: Some(answered),
            });
            if t.status == TaskStatus::Running {
                sim.disruption.stopped(t.service, zone.unwrap_or_default());
            }
            sim.begin_stop(i);
            Ok(())
        })
        .await
    }

    async fn set_desired_count(
        &self,
        cluster: &str,
        service: &str,
        desired: u32,
    ) -> backend::Result<()> {
        self.call(|sim, at| {
            sim.ours(cluster)?;
            sim.make_calls("UpdateService", 1, at)?;
            let s = sim
                .services
                .iter()
                .position(|x| x.name == service)
                .ok_or_else(|| backend::Error::ServiceNotFound(service.to_owned()))?;
            sim.set_desired(s, desired);
            Ok(())
        })
        .await
    }

    async fn metric_data(
        &self,
        _cluster: &str,
        queries: &[MetricQuery],
        _now: Millis,
    ) -> backend::Result<Vec<Option<f64>>> {
        self.call(|sim, at| {
            let calls = queries.len().div_ceil(limits::GET_METRIC_DATA) as u64;
            sim.make_calls("GetMetricData", calls, at)?;
            Ok(queries.iter().map(|q| sim.metric_value(q)).collect())
        })
        .await
    }

    async fn scalable_targets(
        &self,
        _cluster: &str,
        services: &[String],
    ) -> backend::Result<BTreeSet<String>> {
        self.call(|sim, at| {
            let calls = services.len().div_ceil(limits::DESCRIBE_SCALABLE_TARGETS) as u64;
            sim.make_calls("DescribeScalableTargets", calls, at)?;
            Ok(sim
                .services
                .iter()
                .filter(|s| s.autoscaling_target && services.contains(&s.name))
                .map(|s| s.name.clone())
                .collect())
        })
        .await
    }

    fn api_calls(&self) -> BTreeMap<String, u64> {
        self.lock().api_calls()
    }

    fn api_throttles(&self) -> BTreeMap<String, u64> {
        self.lock().throttles.clone()
    }
}
