//! `stevedore.io/v1alpha1`: the wire format users write, exactly as decoded.
//!
//! These types only describe shape. They keep the position of every value
//! (`Spanned`) and deliberately loose scalar types (signed numbers, strings
//! for durations) so that semantic mistakes reach [`super::convert`], which
//! reports all of them with a precise message, instead of stopping at the
//! first type error. Enumerations are decoded as strings for the same
//! reason; their schema still lists the allowed values. The JSON Schema in `schema/` is generated from these
//! types: the doc comments are its descriptions.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::quantity::{DurationSchema, IntOrPercent};

/// The `apiVersion` this module decodes.
pub const API_VERSION: &str = "stevedore.io/v1alpha1";
/// The kind of a policy for services.
pub const KIND: &str = "ServicePolicy";
/// The kind of a cluster's disruption budget.
pub const BUDGET_KIND: &str = "DisruptionBudget";
/// The kind that says where a cluster lives and how to reach it.
pub const CLUSTER_KIND: &str = "Cluster";
/// Every kind this version defines.
pub const KINDS: [&str; 3] = [KIND, BUDGET_KIND, CLUSTER_KIND];

/// Only `apiVersion` and `kind`, read first so that a document of another
/// version or kind gets one clear error instead of a list of unknown fields.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeMeta {
    pub api_version: Option<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
}

/// A ServicePolicy declares how stevedore keeps one ECS service (or every
/// service a selector matches) placed and scaled.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "ServicePolicy (stevedore.io/v1alpha1)")]
pub struct ServicePolicy {
    /// The version of this format: `stevedore.io/v1alpha1`.
    #[schemars(with = "ApiVersionSchema")]
    pub api_version: Spanned<String>,
    /// The kind of object: `ServicePolicy`.
    #[schemars(with = "KindSchema")]
    pub kind: Spanned<String>,
    /// Name and labels of the policy.
    pub metadata: ObjectMeta,
    /// What the policy targets and what it enforces.
    #[schemars(with = "ServicePolicySpec")]
    pub spec: Spanned<ServicePolicySpec>,
}

#[derive(JsonSchema)]
#[schemars(inline)]
#[allow(dead_code)] // schema only
enum ApiVersionSchema {
    #[serde(rename = "stevedore.io/v1alpha1")]
    V1alpha1,
}

#[derive(JsonSchema)]
#[schemars(inline)]
#[allow(dead_code)] // schema only
enum KindSchema {
    ServicePolicy,
}

/// Identifies the policy.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Unique among all loaded policies; a DNS label: lowercase letters,
    /// digits and `-`, at most 63 characters, starting and ending with a
    /// letter or digit.
    #[schemars(
        with = "String",
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: Spanned<String>,
    /// Free-form labels, reported with the policy's status and metrics.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// What the policy targets and what it enforces.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("if" = {
    "required": ["placement"],
    "properties": { "placement": { "required": ["oneTaskPerHost"] } }
}, "then" = { "not": { "required": ["scaling"] } }))]
pub struct ServicePolicySpec {
    /// The ECS cluster and the service(s) the policy manages.
    #[schemars(with = "Target")]
    pub target: Spanned<Target>,
    /// Placement rules: one task per host, zone balance, spread constraints.
    #[serde(default)]
    pub placement: Option<Placement>,
    /// Scale thresholds: change the desired count when a metric crosses a
    /// threshold. Excludes `placement.oneTaskPerHost`, which sets the count itself.
    #[schemars(with = "Option<Scaling>")]
    pub scaling: Option<Spanned<Scaling>>,
    /// How many tasks stevedore may take down at once.
    pub disruption: Option<Disruption>,
    /// `Enforce` (default) acts; `DryRun` plans and reports but never acts.
    #[schemars(with = "Option<Mode>")]
    pub mode: Option<Spanned<String>>,
}

/// The service(s) a policy manages. Set exactly one of `service` and
/// `serviceSelector`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    { "required": ["service"] },
    { "required": ["serviceSelector"] }
]))]
pub struct Target {
    /// The cluster's name or ARN.
    #[schemars(with = "String", length(min = 1))]
    pub cluster: Spanned<String>,
    /// One service, by name or ARN.
    #[schemars(with = "Option<String>", length(min = 1))]
    pub service: Option<Spanned<String>>,
    /// Every service of the cluster that matches; each is managed on its own.
    #[schemars(with = "Option<ServiceSelector>")]
    pub service_selector: Option<Spanned<ServiceSelector>>,
}

/// Matches services by name pattern and tags; a service must match all given
/// conditions. At least one condition is required.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("minProperties" = 1))]
pub struct ServiceSelector {
    /// A service name pattern: `*` matches any run of characters, `?` one.
    #[schemars(with = "Option<String>", regex(pattern = r"^[A-Za-z0-9_*?-]+$"))]
    pub name_pattern: Option<Spanned<String>>,
    /// Tags the service must carry, with these exact values.
    pub tags: Option<BTreeMap<String, String>>,
}

/// Placement rules. All given rules must hold at once.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Placement {
    /// Run exactly one task on every eligible host: the desired count follows
    /// the number of ACTIVE, connected, non-draining container instances that
    /// match `hostSelector`.
    #[schemars(with = "Option<OneTaskPerHost>")]
    pub one_task_per_host: Option<Spanned<OneTaskPerHost>>,
    /// Shorthand for a spread constraint over availability zones with
    /// `maxSkew: 1`.
    #[schemars(with = "Option<bool>")]
    pub az_balanced: Option<Spanned<bool>>,
    /// Spread constraints over topology domains, like Kubernetes
    /// `topologySpreadConstraints`; all must hold.
    #[schemars(with = "Option<Vec<SpreadConstraint>>")]
    pub spread: Option<Vec<Spanned<SpreadConstraint>>>,
}

/// Options of `oneTaskPerHost`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OneTaskPerHost {
    /// Which hosts count; all hosts of the cluster when absent.
    pub host_selector: Option<HostSelector>,
}

/// Selects container instances by their ECS attributes.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostSelector {
    /// Container instance attributes (such as `ecs.instance-type`) that must
    /// have exactly these values.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// Keep the number of the service's tasks in every domain of a topology
/// within `maxSkew` of each other.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpreadConstraint {
    /// The topology: `zone` (availability zone), `host` (container instance),
    /// or `attribute:<name>` for any container instance attribute.
    #[schemars(with = "String", regex(pattern = r"^(zone|host|attribute:[^\s]+)$"))]
    pub topology_key: Spanned<String>,
    /// The largest allowed difference between the most and the least loaded
    /// domain. At least 1.
    #[schemars(with = "u32", range(min = 1))]
    pub max_skew: Spanned<i64>,
    /// With fewer eligible domains than this, the missing ones count as
    /// domains with zero tasks (as in Kubernetes).
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub min_domains: Option<Spanned<i64>>,
}

/// Scale thresholds with steps, bounds, cooldowns and a scale-in
/// stabilization window (as in the Kubernetes HPA `behavior` field).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scaling {
    /// Never scale in below this many tasks.
    #[schemars(with = "u32")]
    pub min_tasks: Spanned<i64>,
    /// Never scale out above this many tasks (at most 5000, ECS's limit per service).
    #[schemars(with = "u32", range(min = 1, max = 5000))]
    pub max_tasks: Spanned<i64>,
    /// The metric compared with the thresholds.
    #[schemars(with = "MetricSource")]
    pub metric: Spanned<MetricSource>,
    /// Scale out when the metric is above this value.
    #[schemars(with = "f64")]
    pub scale_out_above: Spanned<f64>,
    /// Scale in when the metric is below this value; must be lower than
    /// `scaleOutAbove`.
    #[schemars(with = "f64")]
    pub scale_in_below: Spanned<f64>,
    /// Tasks to add per scale-out, or a percentage of the current count
    /// (rounded up, at least one). Default 1.
    #[schemars(with = "Option<IntOrPercent>")]
    pub scale_out_step: Option<Spanned<IntOrPercent>>,
    /// Tasks to remove per scale-in, or a percentage of the current count
    /// (rounded up, at least one). Default 1.
    #[schemars(with = "Option<IntOrPercent>")]
    pub scale_in_step: Option<Spanned<IntOrPercent>>,
    /// Minimum time between two scale-outs. Default `60s`.
    #[schemars(with = "Option<DurationSchema>")]
    pub scale_out_cooldown: Option<Spanned<String>>,
    /// Minimum time after any scaling before a scale-in. Default `300s`.
    #[schemars(with = "Option<DurationSchema>")]
    pub scale_in_cooldown: Option<Spanned<String>>,
    /// Scale in only to the highest count recommended during this window, so
    /// a noisy metric does not make the service go up and down. Default `300s`.
    #[schemars(with = "Option<DurationSchema>")]
    pub scale_in_stabilization: Option<Spanned<String>>,
    /// Consecutive metric periods above `scaleOutAbove` before a scale-out
    /// (as a CloudWatch alarm's datapoints to alarm, with M = N). Default
    /// 2: a metric alternating around the threshold never scales out, and a
    /// sustained breach scales out at its second period.
    #[schemars(with = "Option<u32>", range(min = 1, max = 60))]
    pub scale_out_after: Option<Spanned<i64>>,
    /// Consecutive metric periods below `scaleInBelow` before a scale-in
    /// (the stabilization window applies as well). Default 2.
    #[schemars(with = "Option<u32>", range(min = 1, max = 60))]
    pub scale_in_after: Option<Spanned<i64>>,
    /// What to do once the metric has had no data for a while. Default:
    /// hold the count for as long as the data is missing.
    #[schemars(with = "Option<OnMissingMetric>")]
    pub on_missing_metric: Option<Spanned<OnMissingMetric>>,
    /// Floors for known peaks: while a schedule's window is open, the count
    /// is at least its `minTasks`; the thresholds stay in charge above it.
    #[schemars(with = "Option<Vec<ScalingSchedule>>")]
    pub schedules: Option<Vec<Spanned<ScalingSchedule>>>,
}

/// What scaling does when the metric stops. Set `tasks` to move to a
/// fixed count, or leave it out (or say `action: Hold`) to keep the count.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OnMissingMetric {
    /// How long without data before the fallback, such as `5m`.
    #[schemars(with = "DurationSchema")]
    pub after: Spanned<String>,
    /// `Hold`: keep the count (the default when `tasks` is not set).
    #[schemars(with = "Option<MissingAction>")]
    pub action: Option<Spanned<String>>,
    /// Set the count to this many tasks (within `minTasks` and `maxTasks`).
    #[schemars(with = "Option<u32>")]
    pub tasks: Option<Spanned<i64>>,
}

/// What to do without data.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    JsonSchema,
    serde::Serialize,
    strum::EnumString,
    strum::VariantNames,
)]
pub enum MissingAction {
    /// Keep the count.
    Hold,
}

/// A recurring floor: from each time `schedule` names (in `timeZone`),
/// for `duration`, the count is at least `minTasks`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingSchedule {
    /// A five-field cron schedule, such as `0 8 * * MON-FRI`.
    #[schemars(with = "String", length(min = 1))]
    pub schedule: Spanned<String>,
    /// How long the floor holds, such as `10h`.
    #[schemars(with = "DurationSchema")]
    pub duration: Spanned<String>,
    /// The IANA time zone the schedule is read in. Default `UTC`.
    #[schemars(with = "Option<String>", length(min = 1))]
    pub time_zone: Option<Spanned<String>>,
    /// The floor while the window is open.
    #[schemars(with = "u32")]
    pub min_tasks: Spanned<i64>,
}

/// Where the metric comes from. Set exactly one source.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct MetricSource {
    /// A CloudWatch metric.
    pub cloud_watch: Option<CloudWatchMetric>,
}

/// A CloudWatch metric, read with GetMetricData.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudWatchMetric {
    /// The metric's namespace, such as `AWS/ECS`.
    #[schemars(with = "String", length(min = 1))]
    pub namespace: Spanned<String>,
    /// The metric's name, such as `CPUUtilization`.
    #[schemars(with = "String", length(min = 1))]
    pub name: Spanned<String>,
    /// The statistic; default `Average`.
    #[schemars(with = "Option<Statistic>")]
    pub statistic: Option<Spanned<String>>,
    /// The metric's dimensions. In a value, `{service}` and `{cluster}`
    /// stand for the name of the service and cluster the metric is read
    /// for, so a policy with a service selector reads each service's own.
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    /// The period of each data point: 1s, 5s, 10s, 30s or a multiple of 60s.
    /// Default `60s`.
    #[schemars(with = "Option<DurationSchema>")]
    pub period: Option<Spanned<String>>,
}

/// A CloudWatch statistic.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    JsonSchema,
    serde::Serialize,
    strum::EnumString,
    strum::VariantNames,
)]
pub enum Statistic {
    Average,
    Sum,
    Minimum,
    Maximum,
    SampleCount,
}

/// The disruption budget.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Disruption {
    /// The most tasks of the service stevedore takes down at once: a number
    /// or a percentage of the desired count (rounded up, at least one).
    /// Default 1.
    #[schemars(with = "Option<IntOrPercent>")]
    pub max_unavailable: Option<Spanned<IntOrPercent>>,
    /// How long a task that a stevedore move started is left alone before
    /// it may be moved again (no ping-pong). Default `10m`.
    #[schemars(with = "Option<DurationSchema>")]
    pub settle_time: Option<Spanned<String>>,
}

/// Whether stevedore acts on the policy.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    JsonSchema,
    serde::Serialize,
    strum::EnumString,
    strum::VariantNames,
)]
pub enum Mode {
    /// Plan and act.
    Enforce,
    /// Plan and report; never act.
    DryRun,
}

/// A DisruptionBudget limits the placement moves stevedore makes across
/// every service of one cluster: how many tasks may be down at once, in how
/// many zones, how many moves in a sliding period, and when. It never holds
/// scaling or one-task-per-host counts: capacity must follow load.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "DisruptionBudget (stevedore.io/v1alpha1)")]
pub struct DisruptionBudget {
    /// The version of this format: `stevedore.io/v1alpha1`.
    #[schemars(with = "ApiVersionSchema")]
    pub api_version: Spanned<String>,
    /// The kind of object: `DisruptionBudget`.
    #[schemars(with = "BudgetKindSchema")]
    pub kind: Spanned<String>,
    /// Name and labels of the budget.
    pub metadata: ObjectMeta,
    /// The cluster and its limits.
    #[schemars(with = "DisruptionBudgetSpec")]
    pub spec: Spanned<DisruptionBudgetSpec>,
}

#[derive(JsonSchema)]
#[schemars(inline)]
#[allow(dead_code)] // schema only
enum BudgetKindSchema {
    DisruptionBudget,
}

/// The cluster a budget holds and its limits. Every limit is optional; a
/// budget with none only names the cluster.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisruptionBudgetSpec {
    /// The cluster's name or ARN. At most one budget per cluster.
    #[schemars(with = "String", length(min = 1))]
    pub cluster: Spanned<String>,
    /// The most tasks stopped by stevedore and not yet replaced, across
    /// every service of the cluster: a number, or a percentage of the
    /// cluster's running tasks (rounded up, at least one).
    #[schemars(with = "Option<IntOrPercent>")]
    pub max_unavailable: Option<Spanned<IntOrPercent>>,
    /// All stops in flight are in one availability zone: a zone's stops
    /// are replaced before another zone's begin.
    #[schemars(with = "Option<bool>")]
    pub one_zone_at_a_time: Option<Spanned<bool>>,
    /// At most `max` stops in any sliding period of `per`.
    #[schemars(with = "Option<MoveRate>")]
    pub moves: Option<Spanned<MoveRate>>,
    /// Placement moves happen only inside one of these windows; none means
    /// always.
    #[schemars(with = "Option<Vec<Window>>")]
    pub windows: Option<Vec<Spanned<Window>>>,
}

/// A rate budget: at most `max` stops in any sliding `per`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MoveRate {
    /// The most stops in any period of `per`. At least 1.
    #[schemars(with = "u32", range(min = 1))]
    pub max: Spanned<i64>,
    /// The length of the sliding period, such as `1h`.
    #[schemars(with = "DurationSchema")]
    pub per: Spanned<String>,
}

/// A recurring window: it opens at every time the cron schedule names, in
/// its time zone, and stays open for `duration`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Window {
    /// A cron schedule of five fields (minute, hour, day of month, month,
    /// day of week), such as `0 2 * * *` (02:00 every day) or
    /// `30 22 * * MON-FRI`.
    #[schemars(with = "String", length(min = 1))]
    pub schedule: Spanned<String>,
    /// How long the window stays open, such as `2h`.
    #[schemars(with = "DurationSchema")]
    pub duration: Spanned<String>,
    /// The IANA time zone the schedule is read in, such as `Europe/Berlin`.
    /// Default `UTC`.
    #[schemars(with = "Option<String>", length(min = 1))]
    pub time_zone: Option<Spanned<String>>,
}

/// A Cluster says where an ECS cluster lives, when it is not in the
/// controller's own account and region, and how to reach it: the region,
/// and the IAM role to assume there. Policies and budgets name the cluster
/// as before; a cluster without a Cluster document is reached with the
/// controller's own credentials and region.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "Cluster (stevedore.io/v1alpha1)")]
pub struct Cluster {
    /// The version of this format: `stevedore.io/v1alpha1`.
    #[schemars(with = "ApiVersionSchema")]
    pub api_version: Spanned<String>,
    /// The kind of object: `Cluster`.
    #[schemars(with = "ClusterKindSchema")]
    pub kind: Spanned<String>,
    /// Name and labels of the document.
    pub metadata: ObjectMeta,
    /// Where the cluster is and how to reach it.
    #[schemars(with = "ClusterSpec")]
    pub spec: Spanned<ClusterSpec>,
}

#[derive(JsonSchema)]
#[schemars(inline)]
#[allow(dead_code)] // schema only
enum ClusterKindSchema {
    Cluster,
}

/// Where a cluster lives and how to reach it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSpec {
    /// The ECS cluster's name, as policies and budgets write it. Default:
    /// `metadata.name`. At most one Cluster document per name.
    #[schemars(with = "Option<String>", length(min = 1, max = 255))]
    pub name: Option<Spanned<String>>,
    /// The AWS region the cluster is in, such as `eu-west-1`.
    #[schemars(with = "String", regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"))]
    pub region: Spanned<String>,
    /// The IAM role stevedore assumes to read and act on the cluster (a
    /// role in the cluster's account that trusts the controller's role).
    /// None: the controller's own credentials.
    #[schemars(
        with = "Option<String>",
        regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$")
    )]
    pub role_arn: Option<Spanned<String>>,
    /// The external ID the role's trust policy requires, if any (2 to
    /// 1,224 characters). Only with `roleArn`.
    #[schemars(with = "Option<String>", length(min = 2, max = 1224))]
    pub external_id: Option<Spanned<String>>,
}

/// Any document of `stevedore.io/v1alpha1`, for the schema that editors
/// read: a ServicePolicy, a DisruptionBudget or a Cluster, told apart by
/// `kind`.
#[derive(JsonSchema)]
#[serde(untagged)]
#[schemars(title = "stevedore.io/v1alpha1: ServicePolicy, DisruptionBudget or Cluster")]
#[allow(dead_code, clippy::large_enum_variant)] // schema only: never built
pub enum AnyDocument {
    ServicePolicy(ServicePolicy),
    DisruptionBudget(DisruptionBudget),
    Cluster(Cluster),
}
