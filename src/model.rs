//! The cluster snapshot: plain data for container instances, services and
//! tasks, as read from ECS (or the simulator) at one moment. The planner
//! reads nothing else.
//!
//! Tasks refer to their service and instance by index into the snapshot's
//! vectors, so the planner's index is built without hashing strings.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Milliseconds since an epoch; virtual in the simulator, wall clock on AWS.
pub type Millis = u64;

/// Now, in milliseconds since the Unix epoch: the clock of the live
/// controller (the simulator keeps its own).
pub fn wall_clock() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// CPU units (1024 per vCPU) and MiB of memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    pub cpu: u32,
    pub memory: u32,
}

impl Resources {
    pub fn fits(self, need: Resources) -> bool {
        self.cpu >= need.cpu && self.memory >= need.memory
    }

    pub fn minus(self, used: Resources) -> Resources {
        Resources {
            cpu: self.cpu.saturating_sub(used.cpu),
            memory: self.memory.saturating_sub(used.memory),
        }
    }

    pub fn plus(self, freed: Resources) -> Resources {
        Resources {
            cpu: self.cpu.saturating_add(freed.cpu),
            memory: self.memory.saturating_add(freed.memory),
        }
    }

    /// How many tasks of this size fit (unbounded for a zero-size task).
    pub fn count_of(self, size: Resources) -> u32 {
        let by = |have: u32, need: u32| have.checked_div(need).unwrap_or(u32::MAX);
        by(self.cpu, size.cpu).min(by(self.memory, size.memory))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceStatus {
    Registering,
    Active,
    Draining,
    Inactive,
}

/// A container instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The container instance ARN (or the simulator's id).
    pub id: String,
    /// `ecs.availability-zone`.
    pub zone: String,
    pub status: InstanceStatus,
    pub agent_connected: bool,
    /// All attributes, `ecs.availability-zone` and `ecs.instance-type` included.
    pub attributes: BTreeMap<String, String>,
    pub registered: Resources,
    pub remaining: Resources,
    /// Host ports in use by any task.
    pub ports_in_use: Vec<u16>,
}

impl Instance {
    /// A new ACTIVE, connected instance with nothing running on it. The
    /// zone is also set as the `ecs.availability-zone` attribute.
    pub fn active(
        id: impl Into<String>,
        zone: impl Into<String>,
        size: Resources,
        mut attributes: BTreeMap<String, String>,
    ) -> Instance {
        let zone = zone.into();
        attributes.insert(ZONE_ATTRIBUTE.to_owned(), zone.clone());
        Instance {
            id: id.into(),
            zone,
            status: InstanceStatus::Active,
            agent_connected: true,
            attributes,
            registered: size,
            remaining: size,
            ports_in_use: vec![],
        }
    }

    /// ACTIVE with a connected agent: ECS places tasks only on these.
    pub fn schedulable(&self) -> bool {
        self.status == InstanceStatus::Active && self.agent_connected
    }

    /// The value of a placement field: `instanceId`/`host`, or an attribute.
    pub fn field(&self, field: &PlacementField) -> Option<&str> {
        match field {
            PlacementField::Instance => Some(&self.id),
            PlacementField::Attribute(name) if name == ZONE_ATTRIBUTE => Some(&self.zone),
            PlacementField::Attribute(name) => self.attributes.get(name).map(String::as_str),
        }
    }
}

/// The attribute ECS puts the availability zone in.
pub const ZONE_ATTRIBUTE: &str = "ecs.availability-zone";

/// What a `spread` strategy spreads over.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PlacementField {
    /// `instanceId` (or `host`).
    Instance,
    /// `attribute:NAME`.
    Attribute(String),
}

impl PlacementField {
    pub fn zone() -> PlacementField {
        PlacementField::Attribute(ZONE_ATTRIBUTE.to_owned())
    }
}

impl fmt::Display for PlacementField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlacementField::Instance => f.write_str("instanceId"),
            PlacementField::Attribute(a) => write!(f, "attribute:{a}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BinpackField {
    Cpu,
    Memory,
}

/// An ECS placement strategy, applied in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PlacementStrategy {
    Spread(PlacementField),
    Binpack(BinpackField),
    Random,
}

impl fmt::Display for PlacementStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlacementStrategy::Spread(field) => write!(f, "spread({field})"),
            PlacementStrategy::Binpack(BinpackField::Cpu) => f.write_str("binpack(cpu)"),
            PlacementStrategy::Binpack(BinpackField::Memory) => f.write_str("binpack(memory)"),
            PlacementStrategy::Random => f.write_str("random"),
        }
    }
}

/// A strategy list as ECS writes it, such as
/// `spread(attribute:ecs.availability-zone), binpack(cpu)`.
pub fn strategy_text(strategy: &[PlacementStrategy]) -> String {
    strategy
        .iter()
        .map(PlacementStrategy::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// ECS's default for services created without a strategy (EC2 launch type):
/// spread over availability zones.
pub fn default_service_strategy() -> Vec<PlacementStrategy> {
    vec![PlacementStrategy::Spread(PlacementField::zone())]
}

/// An ECS placement constraint. `memberOf` supports the attribute
/// comparisons that matter for placement: `attribute:NAME == V`, `!=`,
/// `in [A, B]` and `not_in [A, B]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PlacementConstraint {
    DistinctInstance,
    MemberOf(MemberOf),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberOf {
    pub attribute: String,
    pub values: Vec<String>,
    pub negated: bool,
}

impl MemberOf {
    /// Parses the subset of the cluster query language stevedore models.
    pub fn parse(expression: &str) -> Option<MemberOf> {
        let e = expression.trim();
        let (lhs, op, rhs) = ["not_in", " in ", "!=", "=="].iter().find_map(|op| {
            e.split_once(op)
                .map(|(l, r)| (l.trim(), op.trim(), r.trim()))
        })?;
        let attribute = lhs.strip_prefix("attribute:")?.to_owned();
        let values = match op {
            "in" | "not_in" => rhs
                .strip_prefix('[')?
                .strip_suffix(']')?
                .split(',')
                .map(|v| v.trim().trim_matches('\'').trim_matches('"').to_owned())
                .collect(),
            _ => vec![rhs.trim_matches('\'').trim_matches('"').to_owned()],
        };
        Some(MemberOf {
            attribute,
            values,
            negated: matches!(op, "!=" | "not_in"),
        })
    }

    pub fn admits(&self, instance: &Instance) -> bool {
        let value = instance.field(&PlacementField::Attribute(self.attribute.clone()));
        let member = value.is_some_and(|v| self.values.iter().any(|x| x == v));
        member != self.negated
    }
}

impl fmt::Display for PlacementConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlacementConstraint::DistinctInstance => f.write_str("distinctInstance"),
            PlacementConstraint::MemberOf(m) => write!(
                f,
                "memberOf(attribute:{} {} [{}])",
                m.attribute,
                if m.negated { "not_in" } else { "in" },
                m.values.join(", ")
            ),
        }
    }
}

/// A service, as far as placement is concerned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub arn: String,
    pub tags: BTreeMap<String, String>,
    pub desired: u32,
    pub running: u32,
    pub pending: u32,
    /// More than one deployment, or the primary one not COMPLETED.
    pub deployment_in_progress: bool,
    /// Empty means ECS's default ([`default_service_strategy`]).
    pub strategy: Vec<PlacementStrategy>,
    pub constraints: Vec<PlacementConstraint>,
    /// What one task reserves on its host.
    pub task_size: Resources,
    /// Static host ports of the task definition (none with awsvpc or dynamic ports).
    pub host_ports: Vec<u16>,
    /// ECS's own `availabilityZoneRebalancing` is ENABLED.
    pub az_rebalancing: bool,
    /// ECS is rebalancing the service over zones now: its last rebalancing
    /// service event is SERVICE_REBALANCING_STARTED.
    #[serde(default)]
    pub az_rebalancing_in_progress: bool,
    /// An Application Auto Scaling target manages `desiredCount`.
    pub autoscaling_target: bool,
    /// The service runs on Fargate (its launch type or capacity providers):
    /// its tasks have no container instance, so placement rules cannot
    /// apply to it; scaling can.
    #[serde(default)]
    pub fargate: bool,
    /// The deployment configuration, which also governs replacing tasks
    /// on a DRAINING instance (ECS's defaults: 100 and 200).
    pub minimum_healthy_percent: u32,
    pub maximum_percent: u32,
}

impl Service {
    /// The strategy ECS applies: the service's own, or the default.
    pub fn effective_strategy(&self) -> Vec<PlacementStrategy> {
        if self.strategy.is_empty() {
            default_service_strategy()
        } else {
            self.strategy.clone()
        }
    }

    pub fn distinct_instance(&self) -> bool {
        self.constraints
            .contains(&PlacementConstraint::DistinctInstance)
    }

    /// Whether ECS may place this service's tasks on the instance at all
    /// (memberOf constraints; capacity is checked separately).
    pub fn admits(&self, instance: &Instance) -> bool {
        self.constraints.iter().all(|c| match c {
            PlacementConstraint::DistinctInstance => true,
            PlacementConstraint::MemberOf(m) => m.admits(instance),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Waiting for capacity (no instance fits).
    Provisioning,
    Pending,
    Running,
    /// Stop requested, not yet stopped.
    Stopping,
}

/// A task of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The task ARN (or the simulator's id).
    pub id: String,
    /// Index into [`ClusterSnapshot::services`].
    pub service: usize,
    /// Index into [`ClusterSnapshot::instances`]; `None` while provisioning.
    pub instance: Option<usize>,
    pub status: TaskStatus,
    pub started_at: Millis,
    /// Scale-in protection (the task protection API).
    pub protected: bool,
}

/// Everything the planner knows about one cluster at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterSnapshot {
    pub cluster: String,
    pub taken_at: Millis,
    pub instances: Vec<Instance>,
    pub services: Vec<Service>,
    pub tasks: Vec<Task>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(zone: &str, attrs: &[(&str, &str)]) -> Instance {
        Instance {
            id: "i-1".into(),
            zone: zone.into(),
            status: InstanceStatus::Active,
            agent_connected: true,
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            registered: Resources {
                cpu: 2048,
                memory: 4096,
            },
            remaining: Resources {
                cpu: 2048,
                memory: 4096,
            },
            ports_in_use: vec![],
        }
    }

    #[test]
    fn member_of_parses_the_usual_expressions() {
        let h = host("us-east-1a", &[("ecs.instance-type", "m6i.large")]);
        let cases = [
            ("attribute:ecs.instance-type == m6i.large", true),
            ("attribute:ecs.instance-type != m6i.large", false),
            (
                "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]",
                true,
            ),
            ("attribute:ecs.availability-zone not_in [us-east-1a]", false),
            ("attribute:rack == r1", false),
        ];
        for (expression, admitted) in cases {
            let m = MemberOf::parse(expression).unwrap_or_else(|| panic!("{expression}"));
            assert_eq!(m.admits(&h), admitted, "{expression}");
        }
        assert_eq!(MemberOf::parse("task:group == x"), None);
    }

    #[test]
    fn resources_count_whole_tasks() {
        let free = Resources {
            cpu: 1000,
            memory: 3000,
        };
        assert_eq!(
            free.count_of(Resources {
                cpu: 256,
                memory: 1024
            }),
            2
        );
        assert_eq!(free.count_of(Resources { cpu: 0, memory: 0 }), u32::MAX);
    }
}
