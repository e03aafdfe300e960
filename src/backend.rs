//! The narrow interface between the controller and ECS: read a consistent
//! snapshot of a cluster, stop a task, set a desired count. The simulator
//! ([`crate::sim`]) implements it, and so will the AWS backend, so the
//! controller cannot tell them apart.

use std::collections::BTreeMap;
use std::future::Future;

use crate::model::ClusterSnapshot;

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
    /// Calls made so far, per ECS operation.
    fn api_calls(&self) -> BTreeMap<String, u64>;
}
