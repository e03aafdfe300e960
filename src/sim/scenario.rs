//! Scenario files: a cluster (hosts, services and their initial task
//! layout), the policies (paths or inline), a timeline of events and a
//! duration. Also the generator of large clusters for benchmarks.
//!
//! ```yaml
//! apiVersion: stevedore.io/v1alpha1
//! kind: Scenario
//! metadata: {name: host-joins, description: "..."}
//! spec:
//!   cluster: demo
//!   duration: 20m
//!   hosts:
//!     - {name: a, zone: us-east-1a, count: 2}        # a-1, a-2
//!   services:
//!     - name: web
//!       strategy: ["spread(attribute:ecs.availability-zone)", "spread(instanceId)"]
//!       tasks: {a-1: 3, a-2: 3}
//!   policies:
//!     - path: ../../specs/payments/web.yaml
//!   timeline:
//!     - {at: 5m, hostJoins: {name: c, zone: us-east-1c}}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Delays, Faults, Simulator};
use crate::model::{
    BinpackField, Instance, MemberOf, Millis, PlacementConstraint, PlacementField,
    PlacementStrategy, Resources, Service,
};
use crate::spec::quantity::{DurationSchema, parse_duration};
use crate::spec::{self, Budget, Policy};

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a scenario: where and why (rendered like a
    /// policy's diagnostics).
    #[error("{}: {}", .0.position, .0.message)]
    Decode(Box<crate::spec::diag::Diagnostic>),
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    /// A name defined twice, or referred to and never defined, at its line
    /// and column.
    #[error("{}: {}", .0.position, .0.message)]
    Name(Box<crate::spec::diag::Diagnostic>),
    /// The scenario's policies are invalid; the diagnostics say why.
    #[error("the scenario's policies are invalid")]
    Policies(Vec<crate::spec::diag::Diagnostic>),
    #[error(transparent)]
    Spec(#[from] spec::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A simulation scenario.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "Scenario (stevedore.io/v1alpha1)")]
pub struct ScenarioFile {
    /// `stevedore.io/v1alpha1`.
    #[schemars(extend("const" = "stevedore.io/v1alpha1"))]
    pub api_version: String,
    /// `Scenario`.
    #[schemars(extend("const" = "Scenario"))]
    pub kind: String,
    pub metadata: ScenarioMeta,
    pub spec: ScenarioSpec,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScenarioMeta {
    pub name: String,
    /// What the scenario shows, printed before the run.
    #[serde(default)]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScenarioSpec {
    /// The cluster's name; policies must target it. Default `demo`.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// Seeds the scheduler's random choices among equally good instances.
    #[serde(default)]
    #[serde(skip_serializing_if = "is_zero")]
    pub seed: u64,
    /// How long to simulate.
    #[schemars(with = "DurationSchema")]
    pub duration: String,
    /// The wall-clock time at the scenario's start, an RFC 3339 timestamp
    /// such as `2026-01-01T00:00:00Z` (the default): DisruptionBudget
    /// windows are read on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
    /// The controller's periodic resync. Default `60s`.
    #[schemars(with = "Option<DurationSchema>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resync: Option<String>,
    /// From placement to RUNNING. Default `20s`.
    #[schemars(with = "Option<DurationSchema>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_start_delay: Option<String>,
    /// From a stop request to STOPPED. Default `10s`.
    #[schemars(with = "Option<DurationSchema>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_stop_delay: Option<String>,
    /// One API call's round trip once ECS's rate allows it (the token
    /// buckets are ECS's: reads 100 at once then 20 a second, writes 50
    /// then 5). Default `30ms`.
    #[schemars(with = "Option<DurationSchema>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_latency: Option<String>,
    #[serde(default)]
    #[serde(skip_serializing_if = "is_empty")]
    pub hosts: Vec<HostSpec>,
    #[serde(default)]
    #[serde(skip_serializing_if = "is_empty")]
    pub services: Vec<ServiceSpec>,
    /// Policy files or directories (relative to the scenario file), or
    /// inline documents: ServicePolicies and DisruptionBudgets.
    #[serde(default)]
    #[serde(skip_serializing_if = "is_empty")]
    pub policies: Vec<PolicySource>,
    #[serde(default)]
    #[serde(skip_serializing_if = "is_empty")]
    pub timeline: Vec<TimelineEntry>,
    #[serde(default)]
    #[serde(skip_serializing_if = "FaultSpec::is_none")]
    pub faults: FaultSpec,
    /// Metrics served to scaling policies, as CloudWatch would serve them.
    #[serde(default)]
    #[serde(skip_serializing_if = "is_empty")]
    pub metrics: Vec<MetricSpec>,
    /// Generate a large cluster instead of (or besides) listing it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generate: Option<GenerateSpec>,
}

fn default_cluster() -> String {
    "demo".into()
}

/// One host, or `count` alike (named `NAME-1` ... `NAME-count`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostSpec {
    pub name: String,
    pub zone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// CPU units. Default 4096.
    #[serde(default = "default_cpu")]
    pub cpu: u32,
    /// MiB. Default 8192.
    #[serde(default = "default_memory")]
    pub memory: u32,
    #[serde(default)]
    #[serde(skip_serializing_if = "is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// The host is DRAINING from the start (a snapshot of a live cluster).
    #[serde(default, skip_serializing_if = "is_false")]
    pub draining: bool,
}

fn default_cpu() -> u32 {
    4096
}
fn default_memory() -> u32 {
    8192
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    /// Placement strategies in order, as ECS writes them: `spread(FIELD)`,
    /// `binpack(cpu|memory)`, `random`. Empty: ECS's default for services.
    #[serde(default)]
    #[serde(skip_serializing_if = "is_empty")]
    pub strategy: Vec<String>,
    /// `distinctInstance` or `memberOf(EXPRESSION)`.
    #[serde(default)]
    #[serde(skip_serializing_if = "is_empty")]
    pub constraints: Vec<String>,
    /// CPU units per task. Default 256.
    #[serde(default = "default_task_cpu")]
    pub cpu: u32,
    /// MiB per task. Default 512.
    #[serde(default = "default_task_memory")]
    pub memory: u32,
    #[serde(default)]
    #[serde(skip_serializing_if = "is_empty")]
    pub host_ports: Vec<u16>,
    #[serde(default)]
    #[serde(skip_serializing_if = "is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Initial RUNNING tasks per host.
    #[serde(default)]
    #[serde(skip_serializing_if = "is_empty")]
    pub tasks: BTreeMap<String, u32>,
    /// Tasks with scale-in protection, per host (taken from `tasks`).
    #[serde(default)]
    #[serde(skip_serializing_if = "is_empty")]
    pub protected_tasks: BTreeMap<String, u32>,
    /// Default: the number of initial tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<u32>,
    /// ECS's own availabilityZoneRebalancing.
    #[serde(default)]
    #[serde(skip_serializing_if = "is_false")]
    pub az_rebalancing: bool,
    /// Deployment configuration; also how tasks on a DRAINING host are
    /// replaced. Default 100.
    #[serde(default = "default_min_healthy")]
    pub minimum_healthy_percent: u32,
    /// Default 200.
    #[serde(default = "default_max_percent")]
    pub maximum_percent: u32,
    /// Initial RUNNING tasks one by one, with their ids, instead of
    /// `tasks` counts (a snapshot of a live cluster, so that a plan names
    /// the same tasks): the youngest last.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub running_tasks: Vec<RunningTask>,
}

/// One RUNNING task of a service, as a snapshot of a live cluster lists it.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunningTask {
    /// The task's id (its ARN on ECS).
    pub id: String,
    /// The host it runs on, by name.
    pub host: String,
    /// When it started, RFC 3339 (informative: the simulator keeps only
    /// the order, which the planner reads to choose the youngest task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Scale-in protection is on.
    #[serde(default, skip_serializing_if = "is_false")]
    pub protected: bool,
}

fn is_empty<T>(c: &T) -> bool
where
    for<'a> &'a T: IntoIterator,
{
    c.into_iter().next().is_none()
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_min_healthy() -> u32 {
    100
}
fn default_max_percent() -> u32 {
    200
}

fn default_task_cpu() -> u32 {
    256
}
fn default_task_memory() -> u32 {
    512
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySource {
    /// A policy file or directory, relative to the scenario file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Policy documents, as YAML text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
}

/// Something that happens at a moment of the run. Set exactly one event.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimelineEntry {
    #[schemars(with = "DurationSchema")]
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_joins: Option<HostSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_drains: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_terminates: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_fails: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_recovers: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_desired_count: Option<SetDesiredCount>,
    /// `true`: the controller restarts here, losing everything it kept in
    /// memory (its ledger of stops, backoffs, scaling history, its view of
    /// the cluster), as a crashed or redeployed controller does. It stops
    /// after the pass under way, as on SIGTERM, and starts again at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub controller_restarts: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetDesiredCount {
    pub service: String,
    pub count: u32,
}

/// A metric: a load over time, optionally shared by a service's running
/// tasks (as CPU utilization is: the same load on more tasks reads lower),
/// with noise and gaps. A scaling policy reads it when its namespace, name
/// and dimensions are the same.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSpec {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    /// Divide the load by this service's running tasks.
    pub per_task_of: Option<String>,
    /// The load at points in time, joined by straight lines and held after
    /// the last one.
    pub load: Vec<LoadPoint>,
    /// Each data point is off by up to this much, either way (seeded).
    #[serde(default)]
    pub noise: f64,
    /// Spans with no data points.
    #[serde(default)]
    pub gaps: Vec<Gap>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadPoint {
    #[schemars(with = "DurationSchema")]
    pub at: String,
    pub value: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gap {
    #[schemars(with = "DurationSchema")]
    pub from: String,
    #[schemars(with = "DurationSchema")]
    pub to: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultSpec {
    #[serde(default)]
    pub api_error_rate: f64,
    #[serde(default)]
    pub throttle_rate: f64,
    #[serde(default)]
    pub event_loss_rate: f64,
    #[serde(default)]
    pub event_duplication_rate: f64,
    #[serde(default)]
    pub event_reordering: bool,
    /// The share of placements where ECS puts the task in the zone with the
    /// most of the service's tasks instead of where its strategy says: ECS
    /// choosing otherwise than stevedore's model predicts, at its worst.
    #[serde(default)]
    pub misplacement_rate: f64,
    /// When the faults stop (default: never): from then on the API, the
    /// events and the placements are faultless, and the controller is
    /// expected to converge.
    #[schemars(with = "Option<DurationSchema>")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

impl FaultSpec {
    /// No fault at all (the default).
    fn is_none(&self) -> bool {
        self.api_error_rate == 0.0
            && self.throttle_rate == 0.0
            && self.event_loss_rate == 0.0
            && self.event_duplication_rate == 0.0
            && !self.event_reordering
            && self.misplacement_rate == 0.0
    }
}

/// A generated cluster: hosts spread over zones, services with tasks laid
/// out with a skew, one azBalanced policy per service.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateSpec {
    pub hosts: u32,
    pub services: u32,
    pub tasks: u32,
    #[serde(default = "default_zones")]
    pub zones: u32,
    /// The share of services whose tasks start skewed (the rest balanced).
    #[serde(default = "default_skewed")]
    pub skewed_share: f64,
}

fn default_zones() -> u32 {
    3
}
fn default_skewed() -> f64 {
    0.1
}

/// An event of the timeline, resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    HostJoins(Instance),
    HostDrains(String),
    HostTerminates(String),
    ZoneFails(String),
    ZoneRecovers(String),
    SetDesiredCount {
        service: String,
        count: u32,
    },
    /// The faults stop (`faults.until`).
    FaultsEnd,
    /// The controller restarts, its memory lost.
    ControllerRestarts,
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::HostJoins(i) => write!(f, "host {} joins {}", i.id, i.zone),
            Event::HostDrains(h) => write!(f, "host {h} starts DRAINING"),
            Event::HostTerminates(h) => write!(f, "host {h} terminates"),
            Event::ZoneFails(z) => write!(f, "zone {z} fails"),
            Event::ZoneRecovers(z) => write!(f, "zone {z} recovers"),
            Event::FaultsEnd => write!(f, "faults stop"),
            Event::ControllerRestarts => write!(f, "the controller restarts, its memory lost"),
            Event::SetDesiredCount { service, count } => {
                write!(f, "desiredCount of {service} set to {count}")
            }
        }
    }
}

/// A scenario ready to run.
#[derive(Debug)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub sim: Simulator,
    pub policies: Vec<Policy>,
    pub budgets: Vec<Budget>,
    /// The wall clock at virtual 0, in milliseconds since the Unix epoch.
    pub start_at: Millis,
    pub duration: Millis,
    pub resync: Millis,
    pub timeline: Vec<(Millis, Event)>,
}

/// Loads a scenario file.
pub fn load(path: &Path) -> Result<Scenario> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    from_text(&path.display().to_string(), &text, base)
}

/// Builds a scenario from its text; `base` resolves policy paths.
pub fn from_text(name: &str, text: &str, base: &Path) -> Result<Scenario> {
    let file: ScenarioFile = serde_saphyr::from_str(text).map_err(|e| {
        let source = crate::spec::source::SourceFile {
            name: name.to_owned(),
            text: text.to_owned(),
        };
        Error::Decode(Box::new(crate::spec::source::decode_error(&source, &e)))
    })?;
    let invalid = |message: String| Error::Invalid {
        path: name.to_owned(),
        message,
    };
    if file.api_version != spec::v1alpha1::API_VERSION || file.kind != "Scenario" {
        return Err(invalid(format!(
            "expected apiVersion {} and kind Scenario",
            spec::v1alpha1::API_VERSION
        )));
    }
    check_names(name, text, &file.spec)?;
    let s = file.spec;
    let duration = |field: &str, text: Option<&str>, default: Millis| -> Result<Millis> {
        match text {
            None => Ok(default),
            Some(t) => parse_duration(t)
                .map(|d| d.as_millis() as Millis)
                .map_err(|e| invalid(format!("{field}: {e}"))),
        }
    };
    let mut sim = Simulator::new(&s.cluster, s.seed);
    sim.delays = Delays {
        task_start: duration(
            "taskStartDelay",
            s.task_start_delay.as_deref(),
            Delays::default().task_start,
        )?,
        task_stop: duration(
            "taskStopDelay",
            s.task_stop_delay.as_deref(),
            Delays::default().task_stop,
        )?,
        api_call: duration(
            "apiLatency",
            s.api_latency.as_deref(),
            Delays::default().api_call,
        )?,
    };
    for host in &s.hosts {
        for instance in instances(host) {
            if sim.instance_index(&instance.id).is_some() {
                return Err(invalid(format!("host `{}` is defined twice", instance.id)));
            }
            sim.add_instance(instance);
            if host.draining {
                sim.drain(sim.instances.len() - 1);
            }
        }
    }
    let mut clock = 0;
    for spec in &s.services {
        let service =
            service(spec).map_err(|e| invalid(format!("service `{}`: {e}", spec.name)))?;
        let sv = sim.add_service(service);
        let mut placed = 0;
        for (host, n) in &spec.tasks {
            let i = sim.instance_index(host).ok_or_else(|| {
                invalid(format!("service `{}`: no host named `{host}`", spec.name))
            })?;
            let protected = spec.protected_tasks.get(host).copied().unwrap_or(0);
            for k in 0..*n {
                clock += 1_000;
                sim.add_running_task(sv, i, clock)
                    .map_err(|e| invalid(format!("service `{}`: {e}", spec.name)))?;
                if k < protected {
                    let id = sim
                        .tasks
                        .last()
                        .map(|t| t.task.id.clone())
                        .unwrap_or_default();
                    sim.protect_task(&id);
                }
                placed += 1;
            }
        }
        if !spec.running_tasks.is_empty() && !spec.tasks.is_empty() {
            return Err(invalid(format!(
                "service `{}`: set `tasks` (counts per host) or `runningTasks` (one by one), not both",
                spec.name
            )));
        }
        // One by one, in the order written; tasks started at the same
        // moment keep one start time, so the planner's order is the live one.
        let mut last_start: Option<&str> = None;
        for task in &spec.running_tasks {
            let i = sim.instance_index(&task.host).ok_or_else(|| {
                invalid(format!(
                    "service `{}`: task {}: no host named `{}`",
                    spec.name, task.id, task.host
                ))
            })?;
            if last_start.is_none() || last_start != task.started_at.as_deref() {
                clock += 1_000;
            }
            last_start = task.started_at.as_deref();
            sim.add_task_as(sv, i, clock, task.id.clone())
                .map_err(|e| invalid(format!("service `{}`: {e}", spec.name)))?;
            if task.protected {
                sim.protect_task(&task.id);
            }
            placed += 1;
        }
        sim.services[sv].desired = spec.desired.unwrap_or(placed);
    }
    if let Some(g) = s.generate {
        generate_into(&mut sim, g, s.seed);
    }
    sim.faults = Faults {
        api_error_rate: s.faults.api_error_rate,
        throttle_rate: s.faults.throttle_rate,
        event_loss_rate: s.faults.event_loss_rate,
        event_duplication_rate: s.faults.event_duplication_rate,
        event_reordering: s.faults.event_reordering,
        misplacement_rate: s.faults.misplacement_rate,
    };
    for m in &s.metrics {
        if let Some(service) = &m.per_task_of
            && !sim.services.iter().any(|x| &x.name == service)
        {
            return Err(invalid(format!(
                "metric {}: no service named `{service}`",
                m.name
            )));
        }
        let mut load = vec![];
        for p in &m.load {
            load.push((duration("metrics.load.at", Some(&p.at), 0)?, p.value));
        }
        if load.is_empty() || load.windows(2).any(|w| w[0].0 > w[1].0) {
            return Err(invalid(format!(
                "metric {}: `load` needs points in time order",
                m.name
            )));
        }
        let mut gaps = vec![];
        for g in &m.gaps {
            gaps.push((
                duration("metrics.gaps.from", Some(&g.from), 0)?,
                duration("metrics.gaps.to", Some(&g.to), 0)?,
            ));
        }
        sim.metrics.push(super::MetricModel {
            namespace: m.namespace.clone(),
            name: m.name.clone(),
            dimensions: m.dimensions.clone(),
            per_task_of: m.per_task_of.clone(),
            load,
            noise: m.noise,
            gaps,
        });
    }

    let (mut policies, budgets) = load_policies(name, &s.policies, base)?;
    if let Some(g) = s.generate {
        policies.extend(generated_policies(&sim, g));
    }

    let mut timeline = vec![];
    for entry in &s.timeline {
        let at = duration("timeline.at", Some(&entry.at), 0)?;
        let mut events = vec![];
        if let Some(h) = &entry.host_joins {
            events.extend(instances(h).into_iter().map(Event::HostJoins));
        }
        events.extend(entry.host_drains.clone().map(Event::HostDrains));
        events.extend(entry.host_terminates.clone().map(Event::HostTerminates));
        events.extend(entry.zone_fails.clone().map(Event::ZoneFails));
        events.extend(entry.zone_recovers.clone().map(Event::ZoneRecovers));
        events.extend(
            entry
                .set_desired_count
                .clone()
                .map(|d| Event::SetDesiredCount {
                    service: d.service,
                    count: d.count,
                }),
        );
        if entry.controller_restarts {
            events.push(Event::ControllerRestarts);
        }
        let kinds = [
            entry.host_joins.is_some(),
            entry.host_drains.is_some(),
            entry.host_terminates.is_some(),
            entry.zone_fails.is_some(),
            entry.zone_recovers.is_some(),
            entry.set_desired_count.is_some(),
            entry.controller_restarts,
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(invalid(format!(
                "timeline entry at {}: set exactly one event",
                entry.at
            )));
        }
        timeline.extend(events.into_iter().map(|e| (at, e)));
    }
    if let Some(until) = &s.faults.until {
        timeline.push((duration("faults.until", Some(until), 0)?, Event::FaultsEnd));
    }
    timeline.sort_by_key(|(at, _)| *at);

    Ok(Scenario {
        name: file.metadata.name,
        description: file.metadata.description,
        sim,
        policies,
        budgets,
        start_at: match &s.start_at {
            None => DEFAULT_START_AT,
            Some(text) => text
                .parse::<jiff::Timestamp>()
                .ok()
                .and_then(|t| Millis::try_from(t.as_millisecond()).ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "startAt: `{text}` is not an RFC 3339 timestamp after 1970, such as `2026-01-01T02:00:00+01:00`"
                    ))
                })?,
        },
        duration: duration("duration", Some(&s.duration), 0)?,
        resync: duration("resync", s.resync.as_deref(), 60_000)?,
        timeline,
    })
}

/// Where the names of a scenario are written: the same document read a
/// second time, keeping only the names and their places.
mod located {
    use serde::Deserialize;
    use serde_saphyr::Spanned;

    #[derive(Deserialize)]
    pub struct File {
        pub spec: Spec,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Spec {
        #[serde(default)]
        pub hosts: Vec<Host>,
        #[serde(default)]
        pub services: Vec<Service>,
        #[serde(default)]
        pub timeline: Vec<Entry>,
    }

    #[derive(Deserialize)]
    pub struct Host {
        pub name: Spanned<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Service {
        pub name: Spanned<String>,
        #[serde(default)]
        pub running_tasks: Vec<Task>,
    }

    #[derive(Deserialize)]
    pub struct Task {
        pub host: Spanned<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Entry {
        pub host_joins: Option<Host>,
        pub host_drains: Option<Spanned<String>>,
        pub host_terminates: Option<Spanned<String>>,
        pub zone_fails: Option<Spanned<String>>,
        pub zone_recovers: Option<Spanned<String>>,
        pub set_desired_count: Option<SetDesiredCount>,
    }

    #[derive(Deserialize)]
    pub struct SetDesiredCount {
        pub service: Spanned<String>,
    }
}

/// Checks every name of the scenario, as `validate` checks a policy: a
/// host (initial or joining) or service defined twice, and a timeline
/// entry or task naming a host, zone or service that the scenario never
/// defines, are errors at their line and column (with the closest name).
fn check_names(name: &str, text: &str, spec: &ScenarioSpec) -> Result<()> {
    use crate::spec::diag::{Diagnostic, Related, Rule, closest};
    let Ok(located) = serde_saphyr::from_str::<located::File>(text) else {
        // Decoded once already; a second reading cannot fail differently.
        return Ok(());
    };
    let source = crate::spec::source::SourceFile {
        name: name.to_owned(),
        text: text.to_owned(),
    };
    let at = |s: &serde_saphyr::Spanned<String>| source.position(s.referenced);
    // Hosts, initial then joining, each with the place its name is written.
    let mut hosts: BTreeMap<String, &serde_saphyr::Spanned<String>> = BTreeMap::new();
    let mut zones: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    let joining = spec
        .timeline
        .iter()
        .zip(&located.spec.timeline)
        .filter_map(|(e, l)| e.host_joins.as_ref().zip(l.host_joins.as_ref()));
    for (host, place) in spec.hosts.iter().zip(&located.spec.hosts).chain(joining) {
        zones.insert(&host.zone);
        for instance in instances(host) {
            if let Some(first) = hosts.get(&instance.id) {
                let mut d = Diagnostic::error(
                    Rule::NameUnique,
                    at(&place.name),
                    format!("host `{}` is defined twice", instance.id),
                );
                d.related.push(Related {
                    message: "first defined here".into(),
                    position: at(first),
                });
                return Err(Error::Name(Box::new(d)));
            }
            hosts.insert(instance.id, &place.name);
        }
    }
    let mut services: BTreeMap<&str, &serde_saphyr::Spanned<String>> = BTreeMap::new();
    for service in &located.spec.services {
        if let Some(first) = services.insert(&service.name.value, &service.name) {
            let mut d = Diagnostic::error(
                Rule::NameUnique,
                at(&service.name),
                format!("service `{}` is defined twice", service.name.value),
            );
            d.related.push(Related {
                message: "first defined here".into(),
                position: at(first),
            });
            return Err(Error::Name(Box::new(d)));
        }
    }
    let unknown = |what: &str, named: &serde_saphyr::Spanned<String>, known: Vec<&str>| {
        let mut d = Diagnostic::error(
            Rule::UnknownReference,
            at(named),
            format!("no {what} named `{}` in the scenario", named.value),
        );
        // Zone names differ by one letter by design: list them instead.
        let close = (what != "zone")
            .then(|| closest(&named.value, known.iter().copied()))
            .flatten();
        d.help = Some(match close {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!("the scenario's {what}s: {}", known.join(", ")),
        });
        Error::Name(Box::new(d))
    };
    if spec.generate.is_some() {
        // Generated hosts and services are named only when generated.
        return Ok(());
    }
    let host_names = || hosts.keys().map(String::as_str).collect::<Vec<_>>();
    for service in &located.spec.services {
        for task in &service.running_tasks {
            if !hosts.contains_key(&task.host.value) {
                return Err(unknown("host", &task.host, host_names()));
            }
        }
    }
    for entry in &located.spec.timeline {
        for host in [&entry.host_drains, &entry.host_terminates]
            .into_iter()
            .flatten()
        {
            if !hosts.contains_key(&host.value) {
                return Err(unknown("host", host, host_names()));
            }
        }
        for zone in [&entry.zone_fails, &entry.zone_recovers]
            .into_iter()
            .flatten()
        {
            if !zones.contains(zone.value.as_str()) {
                return Err(unknown("zone", zone, zones.iter().copied().collect()));
            }
        }
        if let Some(set) = &entry.set_desired_count
            && !services.contains_key(set.service.value.as_str())
        {
            return Err(unknown(
                "service",
                &set.service,
                services.keys().copied().collect(),
            ));
        }
    }
    Ok(())
}

/// 2026-01-01T00:00:00Z, the default `startAt`.
pub const DEFAULT_START_AT: Millis = 1_767_225_600_000;

fn load_policies(
    name: &str,
    sources: &[PolicySource],
    base: &Path,
) -> Result<(Vec<Policy>, Vec<Budget>)> {
    let mut files: Vec<(String, Vec<u8>)> = vec![];
    for (i, source) in sources.iter().enumerate() {
        match (&source.path, &source.inline) {
            (Some(path), None) => {
                for file in spec::policy_files(&base.join(path))? {
                    let bytes = std::fs::read(&file).map_err(|e| Error::Io {
                        path: file.clone(),
                        source: e,
                    })?;
                    files.push((file.display().to_string(), bytes));
                }
            }
            (None, Some(text)) => {
                files.push((format!("{name}#policies[{i}]"), text.as_bytes().to_vec()))
            }
            _ => {
                return Err(Error::Invalid {
                    path: name.to_owned(),
                    message: format!("policies[{i}]: set either `path` or `inline`"),
                });
            }
        }
    }
    let loaded = spec::load_sources(files);
    if loaded.has_errors() {
        return Err(Error::Policies(loaded.diagnostics));
    }
    Ok((loaded.policies, loaded.budgets))
}

fn instances(spec: &HostSpec) -> Vec<Instance> {
    let names: Vec<String> = match spec.count {
        None => vec![spec.name.clone()],
        Some(n) => (1..=n).map(|k| format!("{}-{k}", spec.name)).collect(),
    };
    names
        .into_iter()
        .map(|id| {
            let mut attributes = spec.attributes.clone();
            attributes
                .entry("ecs.instance-type".to_owned())
                .or_insert_with(|| "m6i.xlarge".to_owned());
            Instance::active(
                id,
                spec.zone.clone(),
                Resources {
                    cpu: spec.cpu,
                    memory: spec.memory,
                },
                attributes,
            )
        })
        .collect()
}

/// Parses `spread(attribute:ecs.availability-zone)`, `spread(instanceId)`,
/// `binpack(memory)`, `random`.
pub fn parse_strategy(text: &str) -> Option<PlacementStrategy> {
    let t = text.trim();
    if t == "random" {
        return Some(PlacementStrategy::Random);
    }
    let (kind, field) = t.strip_suffix(')')?.split_once('(')?;
    match (kind.trim(), field.trim()) {
        ("spread", "instanceId" | "host") => {
            Some(PlacementStrategy::Spread(PlacementField::Instance))
        }
        ("spread", f) => f
            .strip_prefix("attribute:")
            .map(|a| PlacementStrategy::Spread(PlacementField::Attribute(a.to_owned()))),
        ("binpack", "cpu") => Some(PlacementStrategy::Binpack(BinpackField::Cpu)),
        ("binpack", "memory") => Some(PlacementStrategy::Binpack(BinpackField::Memory)),
        _ => None,
    }
}

fn service(spec: &ServiceSpec) -> Result<Service, String> {
    let strategy = spec
        .strategy
        .iter()
        .map(|s| {
            parse_strategy(s).ok_or_else(|| {
                format!("unknown strategy `{s}` (spread(FIELD), binpack(cpu|memory), random)")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let constraints = spec
        .constraints
        .iter()
        .map(|c| {
            if c == "distinctInstance" {
                return Ok(PlacementConstraint::DistinctInstance);
            }
            c.strip_prefix("memberOf(")
                .and_then(|e| e.strip_suffix(')'))
                .and_then(MemberOf::parse)
                .map(PlacementConstraint::MemberOf)
                .ok_or_else(|| format!("unknown constraint `{c}` (distinctInstance, memberOf(attribute:NAME == VALUE))"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Service {
        name: spec.name.clone(),
        arn: format!(
            "arn:aws:ecs:us-east-1:123456789012:service/demo/{}",
            spec.name
        ),
        tags: spec.tags.clone(),
        desired: 0,
        running: 0,
        pending: 0,
        deployment_in_progress: false,
        strategy,
        constraints,
        task_size: Resources {
            cpu: spec.cpu,
            memory: spec.memory,
        },
        host_ports: spec.host_ports.clone(),
        az_rebalancing: spec.az_rebalancing,
        az_rebalancing_in_progress: false,
        autoscaling_target: false,
        fargate: false,
        minimum_healthy_percent: spec.minimum_healthy_percent,
        maximum_percent: spec.maximum_percent,
    })
}

/// Adds a generated cluster to the simulator: `hosts` over `zones`, sized
/// so that tasks use about half of the capacity; `services` with `tasks`
/// in total; a share of them skewed towards the first zone.
pub fn generate_into(sim: &mut Simulator, g: GenerateSpec, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let zones: Vec<String> = (0..g.zones.max(1))
        .map(|z| format!("us-east-1{}", (b'a' + (z % 26) as u8) as char))
        .collect();
    let per_host_tasks = (2 * g.tasks).div_ceil(g.hosts.max(1)).max(2);
    let size = Resources {
        cpu: 128 * per_host_tasks,
        memory: 256 * per_host_tasks,
    };
    let first_host = sim.instances.len();
    for h in 0..g.hosts {
        let zone = &zones[h as usize % zones.len()];
        let spec = HostSpec {
            name: format!("gen-{h:05}"),
            zone: zone.clone(),
            count: None,
            cpu: size.cpu,
            memory: size.memory,
            attributes: BTreeMap::new(),
            draining: false,
        };
        for instance in instances(&spec) {
            sim.instances.push(instance);
            sim.instance_version.push(1);
        }
    }
    let hosts_per_zone: Vec<Vec<usize>> = (0..zones.len())
        .map(|z| {
            (first_host..sim.instances.len())
                .filter(|i| (i - first_host) % zones.len() == z)
                .collect()
        })
        .collect();
    let mut clock = 0;
    for s in 0..g.services {
        let name = format!("gen-svc-{s:05}");
        let spec = ServiceSpec {
            name: name.clone(),
            strategy: vec![
                format!("spread(attribute:{})", crate::model::ZONE_ATTRIBUTE),
                "spread(instanceId)".into(),
            ],
            constraints: vec![],
            cpu: 128,
            memory: 256,
            host_ports: vec![],
            running_tasks: vec![],
            tags: BTreeMap::new(),
            tasks: BTreeMap::new(),
            protected_tasks: BTreeMap::new(),
            desired: None,
            az_rebalancing: false,
            minimum_healthy_percent: 100,
            maximum_percent: 200,
        };
        let sv = sim.add_service(service(&spec).expect("generated services are valid"));
        let n = g.tasks / g.services.max(1) + u32::from(s < g.tasks % g.services.max(1));
        let skewed = rng.random_bool(g.skewed_share.clamp(0.0, 1.0));
        let mut placed_count = 0;
        for k in 0..n {
            // Skewed services put half their tasks in the first zone.
            let z = if skewed && k % 2 == 0 {
                0
            } else {
                k as usize % zones.len()
            };
            let candidates = &hosts_per_zone[z];
            let mut placed = false;
            for _ in 0..8 {
                let host = candidates[rng.random_range(0..candidates.len())];
                clock += 1;
                if sim.add_running_task(sv, host, clock).is_ok() {
                    placed = true;
                    placed_count += 1;
                    break;
                }
            }
            if !placed {
                // Fall back to any host with room.
                if let Some(host) = (first_host..sim.instances.len()).find(|h| {
                    sim.instances[*h].remaining.fits(Resources {
                        cpu: 128,
                        memory: 256,
                    })
                }) && sim.add_running_task(sv, host, clock).is_ok()
                {
                    placed_count += 1;
                }
            }
        }
        sim.services[sv].desired = placed_count;
    }
}

/// One azBalanced policy per generated service.
pub fn generated_policies(sim: &Simulator, g: GenerateSpec) -> Vec<Policy> {
    let _ = g;
    let template = spec::load_sources(vec![(
        "generated".into(),
        format!(
            "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata: {{name: generated}}\nspec:\n  target: {{cluster: {}, service: generated}}\n  placement: {{azBalanced: true}}\n",
            sim.cluster
        )
        .into_bytes(),
    )]);
    let template = template
        .policies
        .into_iter()
        .next()
        .expect("the template policy is valid");
    sim.services
        .iter()
        .filter(|s| s.name.starts_with("gen-svc-"))
        .map(|s| {
            let mut p = template.clone();
            p.name = format!("{}-az", s.name);
            p.target.services =
                crate::spec::policy::ServiceMatch::Named(crate::spec::policy::ResourceRef {
                    written: s.name.clone(),
                    name: s.name.clone(),
                    scope: None,
                });
            p
        })
        .collect()
}

/// A generated scenario without a file, for `--generate` and the benchmarks.
pub fn generated(g: GenerateSpec, seed: u64, duration: Millis) -> Scenario {
    let mut sim = Simulator::new("demo", seed);
    generate_into(&mut sim, g, seed);
    let policies = generated_policies(&sim, g);
    Scenario {
        name: format!("generated-{}h-{}s-{}t", g.hosts, g.services, g.tasks),
        description: format!(
            "{} hosts over {} zones, {} services, {} tasks; {:.0}% of services start skewed",
            g.hosts,
            g.zones,
            g.services,
            g.tasks,
            g.skewed_share * 100.0
        ),
        sim,
        policies,
        budgets: vec![],
        start_at: DEFAULT_START_AT,
        duration,
        resync: 60_000,
        timeline: vec![],
    }
}
