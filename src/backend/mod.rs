//! The narrow interface between the controller and ECS: read a consistent
//! snapshot of a cluster (or refresh part of one), check task protection,
//! stop a task, set a desired count. The simulator ([`crate::sim`]) and the
//! AWS backend ([`crate::aws`]) implement it, so the controller cannot tell
//! them apart.

pub mod events;
pub mod pacing;
pub mod refresh;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use crate::backend::refresh::Touched;
use crate::model::{ClusterSnapshot, Millis};

/// The AWS APIs' documented page and batch sizes, in one place for both
/// backends: the AWS backend sends no more in one call, and the simulator
/// counts calls by them. The tests' front holds every request on the wire
/// to the documentation (`tests/it/limits.rs`).
pub mod limits {
    /// ListServices, ListContainerInstances, ListTasks: `maxResults` 1 to 100.
    pub const LIST_PAGE: usize = 100;
    pub const DESCRIBE_SERVICES: usize = 10;
    pub const DESCRIBE_TASKS: usize = 100;
    pub const DESCRIBE_CONTAINER_INSTANCES: usize = 100;
    pub const GET_TASK_PROTECTION: usize = 100;
    /// UpdateTaskProtection: at most 10 tasks a call.
    pub const UPDATE_TASK_PROTECTION: usize = 10;
    /// UpdateTaskProtection's `expiresInMinutes`: 1 to 2,880 (48 hours).
    pub const PROTECTION_MINUTES_MAX: u32 = 2_880;
    pub const GET_METRIC_DATA: usize = 500;
    pub const DESCRIBE_SCALABLE_TARGETS: usize = 50;
    /// SQS ReceiveMessage and DeleteMessageBatch: 10 messages.
    pub const SQS_BATCH: usize = 10;
}

/// Describe and GetTaskProtection batches the AWS backend keeps in flight
/// at once (List pages and single calls go one at a time): enough to keep
/// the read bucket's 20 calls a second busy at 200 ms of latency, few
/// enough to be polite. The simulator times its calls the same way.
pub const DESCRIBE_IN_FLIGHT: usize = 4;

/// One metric as read for one service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricQuery {
    pub namespace: String,
    pub name: String,
    pub statistic: StatisticName,
    pub dimensions: BTreeMap<String, String>,
    /// Seconds per data point.
    pub period: u32,
}

/// A statistic by name (`Average`), so queries can be ordered and hashed.
pub type StatisticName = String;

/// A service task that ECS still lists as stopped (for at least an hour
/// after it stops), as [`Backend::recently_stopped`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoppedTask {
    pub id: String,
    /// The service's name.
    pub service: String,
    /// Its zone, where the API says so (ECS's `availabilityZone`).
    pub zone: Option<String>,
    /// Its container instance, to find the zone through otherwise.
    pub instance: Option<String>,
    /// The `reason` StopTask was given (stevedore's start with
    /// [`crate::controller::STOP_REASON_PREFIX`]).
    pub reason: String,
    /// When the stop was asked for (ECS's `stoppingAt`), on the planner's clock.
    pub stopping_at: Option<Millis>,
}

/// Why a backend call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The API refused the call for its rate; retry later.
    #[error("{operation}: throttled")]
    Throttled { operation: &'static str },
    /// Any other failure of a call.
    #[error("{operation}: {message}")]
    Api {
        operation: &'static str,
        message: String,
    },
    #[error("cluster `{0}` not found")]
    ClusterNotFound(String),
    #[error("task `{0}` not found")]
    TaskNotFound(String),
    #[error("service `{0}` not found")]
    ServiceNotFound(String),
    /// Another replica holds the lease: this one writes nothing.
    #[error("{operation}: not done, this replica does not hold the lease")]
    NotLeader { operation: &'static str },
}

impl Error {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Throttled { .. } | Error::Api { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The ECS operations the controller needs. A snapshot is complete or an
/// error: never a partial view.
pub trait Backend {
    fn snapshot(&self, cluster: &str) -> impl Future<Output = Result<ClusterSnapshot>>;
    fn stop_task(
        &self,
        cluster: &str,
        task: &str,
        reason: &str,
    ) -> impl Future<Output = Result<()>>;
    fn set_desired_count(
        &self,
        cluster: &str,
        service: &str,
        desired: u32,
    ) -> impl Future<Output = Result<()>>;
    /// Reads again the objects `touched` names, and the service and host of
    /// each touched task, into `snapshot` (see [`crate::backend::refresh`]). All or
    /// nothing: on an error, `snapshot` is as it was.
    fn refresh(
        &self,
        cluster: &str,
        snapshot: &mut ClusterSnapshot,
        touched: &Touched,
    ) -> impl Future<Output = Result<()>>;
    /// Turns scale-in protection on for `tasks`, expiring after
    /// `minutes` (1 to 2,880), or off when `minutes` is `None`
    /// (UpdateTaskProtection, 10 tasks a call). A task that could not be
    /// protected is an error; one that could not be unprotected (it is
    /// gone) is not.
    fn update_task_protection(
        &self,
        cluster: &str,
        tasks: &[String],
        minutes: Option<u32>,
    ) -> impl Future<Output = Result<()>>;
    /// The tasks among `tasks` whose scale-in protection is on now.
    fn protected_tasks(
        &self,
        cluster: &str,
        tasks: &[String],
    ) -> impl Future<Output = Result<BTreeSet<String>>>;
    /// The latest data point of each metric at `now` (within its last three
    /// periods), in order; `None` where there is none. `cluster` says
    /// whose account and region to read them in.
    fn metric_data(
        &self,
        cluster: &str,
        queries: &[MetricQuery],
        now: Millis,
    ) -> impl Future<Output = Result<Vec<Option<f64>>>>;
    /// The services among `services` (names) whose desired count an
    /// Application Auto Scaling scalable target also manages.
    fn scalable_targets(
        &self,
        cluster: &str,
        services: &[String],
    ) -> impl Future<Output = Result<BTreeSet<String>>>;
    /// The service tasks ECS lists as stopped in `cluster` (ListTasks with
    /// `desiredStatus` STOPPED): what was stopped within about the last
    /// hour, whoever stopped it. A controller that starts (or takes a
    /// cluster over) rebuilds its ledger of stops from it, so that a
    /// restart does not refill the DisruptionBudget.
    fn recently_stopped(&self, cluster: &str) -> impl Future<Output = Result<Vec<StoppedTask>>>;
    /// Where the clusters that are not in the controller's own account and
    /// region live (the specs' Cluster documents), given again whenever the
    /// specs change. A backend with one place (the simulator) ignores it.
    fn locate(&self, clusters: &[crate::spec::Cluster]) {
        let _ = clusters;
    }
    /// Calls made so far, per ECS operation.
    fn api_calls(&self) -> BTreeMap<String, u64>;
    /// Attempts the API refused for their rate so far, per operation,
    /// counting those retried within one call.
    fn api_throttles(&self) -> BTreeMap<String, u64>;
}
