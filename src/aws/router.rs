//! Clusters in other accounts and regions: the [`Router`] is the backend
//! over every cluster the controller manages, each reached where its
//! Cluster document says (a region, a role to assume), the others with the
//! controller's own credentials and region.
//!
//! One [`AwsBackend`] per location (region and role), made on first use:
//! its clients share the process's configuration (endpoint, retries) and
//! call counter, and its own pacing buckets, as ECS's API rate is per
//! account and region. A role is assumed through aws-config's STS
//! provider; the SDK's identity cache keeps the credentials and renews
//! them shortly before they expire.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use super::{AwsBackend, AwsClients};
use crate::backend::refresh::Touched;
use crate::backend::{self, Backend, MetricQuery};
use crate::model::{ClusterSnapshot, Millis};
use crate::spec::cluster::Location;

/// The backend over every cluster, wherever it lives.
#[derive(Debug)]
pub struct Router {
    clients: AwsClients,
    /// The controller's own account and region.
    home: Arc<AwsBackend>,
    /// Where each declared cluster is, by name.
    located: Mutex<BTreeMap<String, Location>>,
    /// One backend per location, made on first use.
    remote: Mutex<BTreeMap<Location, Arc<AwsBackend>>>,
}

impl Router {
    pub fn new(clients: &AwsClients) -> Router {
        Router {
            clients: clients.clone(),
            home: Arc::new(AwsBackend::from_clients(clients)),
            located: Mutex::default(),
            remote: Mutex::default(),
        }
    }

    /// The backend that reaches `cluster`.
    async fn at(&self, cluster: &str) -> Arc<AwsBackend> {
        let Some(location) = self
            .located
            .lock()
            .expect("not poisoned")
            .get(cluster)
            .cloned()
        else {
            return Arc::clone(&self.home);
        };
        if let Some(backend) = self.remote.lock().expect("not poisoned").get(&location) {
            return Arc::clone(backend);
        }
        // Made outside the lock (building the STS provider awaits); two
        // passes that race make two, and the first stored is kept.
        let made = Arc::new(AwsBackend::from_clients(&self.clients.at(&location).await));
        Arc::clone(
            self.remote
                .lock()
                .expect("not poisoned")
                .entry(location)
                .or_insert(made),
        )
    }
}

impl Backend for Router {
    async fn snapshot(&self, cluster: &str) -> backend::Result<ClusterSnapshot> {
        self.at(cluster).await.snapshot(cluster).await
    }

    async fn refresh(
        &self,
        cluster: &str,
        snapshot: &mut ClusterSnapshot,
        touched: &Touched,
    ) -> backend::Result<()> {
        self.at(cluster)
            .await
            .refresh(cluster, snapshot, touched)
            .await
    }

    async fn recently_stopped(&self, cluster: &str) -> backend::Result<Vec<backend::StoppedTask>> {
        self.at(cluster).await.recently_stopped(cluster).await
    }

    async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> backend::Result<()> {
        self.at(cluster)
            .await
            .stop_task(cluster, task, reason)
            .await
    }

    async fn set_desired_count(
        &self,
        cluster: &str,
        service: &str,
        desired: u32,
    ) -> backend::Result<()> {
        self.at(cluster)
            .await
            .set_desired_count(cluster, service, desired)
            .await
    }

    async fn update_task_protection(
        &self,
        cluster: &str,
        tasks: &[String],
        minutes: Option<u32>,
    ) -> backend::Result<()> {
        self.at(cluster)
            .await
            .update_task_protection(cluster, tasks, minutes)
            .await
    }

    async fn protected_tasks(
        &self,
        cluster: &str,
        tasks: &[String],
    ) -> backend::Result<BTreeSet<String>> {
        self.at(cluster).await.protected_tasks(cluster, tasks).await
    }

    async fn metric_data(
        &self,
        cluster: &str,
        queries: &[MetricQuery],
        now: Millis,
    ) -> backend::Result<Vec<Option<f64>>> {
        self.at(cluster)
            .await
            .metric_data(cluster, queries, now)
            .await
    }

    async fn scalable_targets(
        &self,
        cluster: &str,
        services: &[String],
    ) -> backend::Result<BTreeSet<String>> {
        self.at(cluster)
            .await
            .scalable_targets(cluster, services)
            .await
    }

    fn locate(&self, clusters: &[crate::spec::Cluster]) {
        let located: BTreeMap<String, Location> = clusters
            .iter()
            .map(|c| (c.name.clone(), c.location()))
            .collect();
        // Backends of locations no longer named are dropped (a role
        // changed: its credentials go with it).
        let wanted: BTreeSet<&Location> = located.values().collect();
        self.remote
            .lock()
            .expect("not poisoned")
            .retain(|l, _| wanted.contains(l));
        let mut current = self.located.lock().expect("not poisoned");
        if *current != located {
            for (cluster, l) in &located {
                match &l.role {
                    Some(role) => tracing::info!(
                        cluster,
                        "{cluster}: in {}, reached as {}",
                        l.region,
                        role.arn
                    ),
                    None => tracing::info!(cluster, "{cluster}: in {}", l.region),
                }
            }
            *current = located;
        }
    }

    // Every backend counts into the clients' one counter.
    fn api_calls(&self) -> BTreeMap<String, u64> {
        self.home.api_calls()
    }

    fn api_throttles(&self) -> BTreeMap<String, u64> {
        self.home.api_throttles()
    }
}
