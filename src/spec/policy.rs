//! The internal, validated and defaulted policy: what the planner and the
//! controller work with. Nothing here is optional by accident: every default
//! has been applied, every duration parsed, every name normalized.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::glob::Glob;
pub use super::quantity::TaskCount;
pub use super::v1alpha1::{Mode, Statistic};
use crate::spec::diag::Position;

/// A validated ServicePolicy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub target: Target,
    pub placement: Placement,
    pub scaling: Option<Scaling>,
    /// The disruption budget (default 1 task).
    pub max_unavailable: TaskCount,
    /// A task a stevedore move started is not moved again this soon.
    pub settle_time: Duration,
    pub mode: Mode,
    /// Where the policy was written, for status and conflict reports.
    #[serde(skip)]
    pub origin: Origin,
}

/// Where a policy's parts were written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    pub name: Position,
    pub target: Position,
}

/// A cluster or service given by name or ARN. Names compare equal to an
/// ARN with the same name: the controller resolves names in its own account
/// and region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    /// As written.
    pub written: String,
    /// The resource's name (the last part of an ARN).
    pub name: String,
    /// `(region, account)` when written as an ARN.
    #[serde(skip)]
    pub scope: Option<(String, String)>,
}

impl ResourceRef {
    /// Whether two references can denote the same resource.
    pub fn same_as(&self, other: &ResourceRef) -> bool {
        self.name == other.name
            && match (&self.scope, &other.scope) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub cluster: ResourceRef,
    pub services: ServiceMatch,
}

/// Which services of the cluster a policy manages.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ServiceMatch {
    /// Exactly one service.
    Named(ResourceRef),
    /// Every service whose name matches the pattern (if any) and which
    /// carries all the tags.
    Selector {
        #[serde(serialize_with = "serialize_glob")]
        name_pattern: Option<Glob>,
        tags: BTreeMap<String, String>,
    },
}

fn serialize_glob<S: serde::Serializer>(glob: &Option<Glob>, s: S) -> Result<S::Ok, S::Error> {
    match glob {
        Some(g) => s.serialize_some(g.as_str()),
        None => s.serialize_none(),
    }
}

impl ServiceMatch {
    /// Whether the service with this name and these tags is managed.
    pub fn matches(&self, name: &str, tags: &BTreeMap<String, String>) -> bool {
        match self {
            ServiceMatch::Named(r) => r.name == name,
            ServiceMatch::Selector {
                name_pattern,
                tags: wanted,
            } => {
                name_pattern.as_ref().is_none_or(|g| g.matches(name))
                    && wanted.iter().all(|(k, v)| tags.get(k) == Some(v))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    pub one_task_per_host: Option<OneTaskPerHost>,
    /// All spread constraints, `azBalanced` included as `zone` with skew 1.
    pub spread: Vec<SpreadConstraint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OneTaskPerHost {
    /// Container instance attributes a host must have to count.
    pub host_attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpreadConstraint {
    pub topology: TopologyKey,
    pub max_skew: u32,
    pub min_domains: Option<u32>,
}

/// What a topology domain is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TopologyKey {
    /// The availability zone (`ecs.availability-zone`).
    Zone,
    /// The container instance itself.
    Host,
    /// Any container instance attribute.
    Attribute(String),
}

impl TopologyKey {
    pub fn parse(text: &str) -> Option<TopologyKey> {
        match text {
            "zone" => Some(TopologyKey::Zone),
            "host" => Some(TopologyKey::Host),
            _ => text
                .strip_prefix("attribute:")
                .filter(|a| !a.is_empty() && !a.chars().any(char::is_whitespace))
                .map(|a| {
                    // `attribute:ecs.availability-zone` is the zone itself.
                    if a == "ecs.availability-zone" {
                        TopologyKey::Zone
                    } else {
                        TopologyKey::Attribute(a.to_owned())
                    }
                }),
        }
    }
}

impl fmt::Display for TopologyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopologyKey::Zone => f.write_str("zone"),
            TopologyKey::Host => f.write_str("host"),
            TopologyKey::Attribute(a) => write!(f, "attribute:{a}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scaling {
    pub min_tasks: u32,
    pub max_tasks: u32,
    pub metric: Metric,
    pub scale_out_above: f64,
    pub scale_in_below: f64,
    pub scale_out_step: TaskCount,
    pub scale_in_step: TaskCount,
    pub scale_out_cooldown: Duration,
    pub scale_in_cooldown: Duration,
    pub scale_in_stabilization: Duration,
    /// Consecutive metric periods beyond a threshold before acting.
    pub scale_out_after: u32,
    pub scale_in_after: u32,
    /// The fallback once the metric has had no data for a while.
    pub on_missing_metric: Option<OnMissingMetric>,
    /// Floors raised by schedules.
    pub schedules: Vec<ScheduledFloor>,
}

/// After `after` without data, hold or go to a fixed count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OnMissingMetric {
    pub after: Duration,
    /// `None`: hold.
    pub tasks: Option<u32>,
}

/// While `window` is open, at least `min_tasks`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledFloor {
    pub window: super::budget::Window,
    pub min_tasks: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Metric {
    CloudWatch {
        namespace: String,
        name: String,
        statistic: Statistic,
        dimensions: BTreeMap<String, String>,
        period: Duration,
    },
}

/// Defaults, in one place so the README and the schema descriptions can be
/// checked against them.
pub mod defaults {
    use std::time::Duration;

    use super::TaskCount;

    pub const MAX_UNAVAILABLE: TaskCount = TaskCount::Tasks(1);
    pub const SETTLE_TIME: Duration = Duration::from_secs(600);
    pub const SCALE_STEP: TaskCount = TaskCount::Tasks(1);
    pub const SCALE_OUT_COOLDOWN: Duration = Duration::from_secs(60);
    pub const SCALE_IN_COOLDOWN: Duration = Duration::from_secs(300);
    pub const SCALE_IN_STABILIZATION: Duration = Duration::from_secs(300);
    pub const METRIC_PERIOD: Duration = Duration::from_secs(60);
    /// Two periods in a row: a metric that alternates around a threshold
    /// never acts; a sustained breach acts at its second period.
    pub const SCALE_AFTER_PERIODS: u32 = 2;
}
