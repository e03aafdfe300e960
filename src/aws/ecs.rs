//! The AWS backend: the [`Backend`] over the ECS API (aws-sdk-ecs).
//!
//! A snapshot is read with paginated List calls (100 per page) and batched
//! Describe calls (10 services, 100 container instances, 100 tasks per call,
//! at most four in flight), and is all or nothing: if any call fails, there
//! is no snapshot, so the planner never works from a partial view. The SDK's standard retry
//! (exponential backoff with jitter) handles throttling and 5xx; what is
//! left is reported. Every call is counted per operation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_sdk_ecs::types::{DesiredStatus, ServiceField};

use super::AwsClients;
use super::api_counter::ApiCounter;
use crate::backend::MetricQuery;
use crate::backend::pacing::TokenBucket;
use crate::backend::refresh::{self, Delta, TaskRecord, Touched};
use crate::backend::{self, Backend, DESCRIBE_IN_FLIGHT, limits};
use crate::model::{
    BinpackField, ClusterSnapshot, Instance, InstanceStatus, MemberOf, PlacementConstraint,
    PlacementField, PlacementStrategy, Resources, Service, TaskStatus, ZONE_ATTRIBUTE,
};

/// ECS's page size, as the SDK takes it.
const PAGE: i32 = limits::LIST_PAGE as i32;

/// The ECS API as a [`Backend`].
#[derive(Debug)]
pub struct AwsBackend {
    ecs: Client,
    /// Client-side pacing of reads and writes (see [`crate::backend::pacing`]).
    reads: Mutex<TokenBucket>,
    writes: Mutex<TokenBucket>,
    started: std::time::Instant,
    /// Task definitions never change, so each is described once.
    task_definitions: Mutex<HashMap<String, (Resources, Vec<u16>)>>,
    /// Where scaling policies' metrics are read.
    cloudwatch: Option<aws_sdk_cloudwatch::Client>,
    /// Where other controllers of the desired count are found.
    autoscaling: Option<aws_sdk_applicationautoscaling::Client>,
    /// Calls and throttled attempts, counted by an interceptor on the
    /// backend's clients (and, made from [`AwsClients`], on every client of
    /// the process).
    counter: ApiCounter,
}

/// Turns an SDK error into a backend error, keeping the operation's name.
fn api_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    operation: &'static str,
    e: aws_sdk_ecs::error::SdkError<E, super::HttpResponse>,
) -> backend::Error {
    match e.code() {
        Some("ThrottlingException" | "Throttling" | "TooManyRequestsException") => {
            backend::Error::Throttled { operation }
        }
        Some("ClusterNotFoundException") => {
            backend::Error::ClusterNotFound(e.message().unwrap_or_default().to_owned())
        }
        _ => backend::Error::Api {
            operation,
            message: super::one_line(&e),
        },
    }
}

impl AwsBackend {
    /// Connects with the standard configuration chain, optionally to another endpoint.
    pub async fn connect(endpoint_url: Option<&str>) -> AwsBackend {
        AwsBackend::from_clients(&AwsClients::connect(endpoint_url).await)
    }

    /// ECS, CloudWatch and Application Auto Scaling clients from `clients`.
    /// The calls and throttles reported are those of every client made
    /// from it: the lease's, the audit's and the event queue's too.
    pub fn from_clients(clients: &AwsClients) -> AwsBackend {
        // The clients count into `clients.counter()` already.
        AwsBackend {
            cloudwatch: Some(clients.cloudwatch()),
            autoscaling: Some(clients.autoscaling()),
            ..AwsBackend::counted(clients.ecs(), clients.counter().clone())
        }
    }

    /// Looks for Application Auto Scaling targets with this client.
    pub fn with_autoscaling(
        mut self,
        autoscaling: aws_sdk_applicationautoscaling::Client,
    ) -> AwsBackend {
        let config = autoscaling.config().to_builder();
        self.autoscaling = Some(aws_sdk_applicationautoscaling::Client::from_conf(
            config.interceptor(self.counter.clone()).build(),
        ));
        self
    }

    /// Reads scaling metrics from this CloudWatch client.
    pub fn with_cloudwatch(mut self, cloudwatch: aws_sdk_cloudwatch::Client) -> AwsBackend {
        let config = cloudwatch.config().to_builder();
        self.cloudwatch = Some(aws_sdk_cloudwatch::Client::from_conf(
            config.interceptor(self.counter.clone()).build(),
        ));
        self
    }

    /// Over this ECS client, its calls counted by a counter of the backend's own.
    pub fn new(ecs: Client) -> AwsBackend {
        let counter = ApiCounter::default();
        let config = ecs.config().to_builder().interceptor(counter.clone());
        AwsBackend::counted(Client::from_conf(config.build()), counter)
    }

    /// Over an ECS client that already counts into `counter`.
    fn counted(ecs: Client, counter: ApiCounter) -> AwsBackend {
        AwsBackend {
            ecs,
            reads: Mutex::new(TokenBucket::ecs_reads()),
            writes: Mutex::new(TokenBucket::ecs_writes()),
            started: std::time::Instant::now(),
            task_definitions: Mutex::new(HashMap::new()),
            cloudwatch: None,
            autoscaling: None,
            counter,
        }
    }

    /// Waits for an ECS call's turn in its action family's bucket (the call
    /// is counted by the client's interceptor).
    async fn call(&self, operation: &str) {
        let bucket = if matches!(
            operation,
            "StopTask" | "UpdateService" | "UpdateTaskProtection"
        ) {
            &self.writes
        } else {
            &self.reads
        };
        let now = self.started.elapsed().as_millis() as u64;
        let wait = bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take(1.0, now);
        if wait > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        }
    }

    /// One call per batch of `ids`, at most [`DESCRIBE_IN_FLIGHT`] in
    /// flight, each counted and paced; the outputs in order, or the first
    /// error.
    async fn batched<O, E, F, Fut>(
        &self,
        operation: &'static str,
        ids: &[String],
        size: usize,
        send: F,
    ) -> backend::Result<Vec<O>>
    where
        F: Fn(Vec<String>) -> Fut,
        Fut: std::future::Future<
                Output = Result<O, aws_sdk_ecs::error::SdkError<E, super::HttpResponse>>,
            >,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        use futures_util::{StreamExt, TryStreamExt};
        futures_util::stream::iter(ids.chunks(size))
            .map(|chunk| {
                let call = send(chunk.to_vec());
                async move {
                    self.call(operation).await;
                    call.await.map_err(|e| api_error(operation, e))
                }
            })
            .buffered(DESCRIBE_IN_FLIGHT)
            .try_collect()
            .await
    }

    /// Every page of a List call: `page(token)` fetches one page and
    /// returns its ARNs and the next token.
    async fn list_all<F, Fut>(
        &self,
        operation: &'static str,
        mut page: F,
    ) -> backend::Result<Vec<String>>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: std::future::Future<Output = backend::Result<(Vec<String>, Option<String>)>>,
    {
        let mut arns = vec![];
        let mut token = None;
        loop {
            self.call(operation).await;
            let (items, next) = page(token).await?;
            arns.extend(items);
            token = next;
            if token.is_none() {
                return Ok(arns);
            }
        }
    }

    async fn service_arns(&self, cluster: &str) -> backend::Result<Vec<String>> {
        self.list_all("ListServices", |token| async move {
            let out = self
                .ecs
                .list_services()
                .cluster(cluster)
                .max_results(PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| api_error("ListServices", e))?;
            Ok((
                out.service_arns().to_vec(),
                out.next_token().map(str::to_owned),
            ))
        })
        .await
    }

    async fn instance_arns(&self, cluster: &str) -> backend::Result<Vec<String>> {
        self.list_all("ListContainerInstances", |token| async move {
            let out = self
                .ecs
                .list_container_instances()
                .cluster(cluster)
                .max_results(PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| api_error("ListContainerInstances", e))?;
            Ok((
                out.container_instance_arns().to_vec(),
                out.next_token().map(str::to_owned),
            ))
        })
        .await
    }

    async fn task_arns(&self, cluster: &str) -> backend::Result<Vec<String>> {
        // Only tasks meant to run: STOPPED ones are history.
        self.task_arns_of(cluster, DesiredStatus::Running).await
    }

    async fn task_arns_of(
        &self,
        cluster: &str,
        desired: DesiredStatus,
    ) -> backend::Result<Vec<String>> {
        self.list_all("ListTasks", |token| {
            let desired = desired.clone();
            async move {
                let out = self
                    .ecs
                    .list_tasks()
                    .cluster(cluster)
                    .desired_status(desired)
                    .max_results(PAGE)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| api_error("ListTasks", e))?;
                Ok((
                    out.task_arns().to_vec(),
                    out.next_token().map(str::to_owned),
                ))
            }
        })
        .await
    }

    /// What one task reserves on its host, and its static host ports.
    async fn task_size(&self, arn: &str) -> backend::Result<(Resources, Vec<u16>)> {
        if let Some(known) = self
            .task_definitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(arn)
        {
            return Ok(known.clone());
        }
        self.call("DescribeTaskDefinition").await;
        let out = self
            .ecs
            .describe_task_definition()
            .task_definition(arn)
            .send()
            .await
            .map_err(|e| api_error("DescribeTaskDefinition", e))?;
        let def = out.task_definition().ok_or_else(|| backend::Error::Api {
            operation: "DescribeTaskDefinition",
            message: format!("{arn}: no task definition"),
        })?;
        let containers = def.container_definitions();
        // Task-level sizes win; else the containers' sum (memory: hard limit, else reservation).
        let cpu = def
            .cpu()
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| containers.iter().map(|c| c.cpu().max(0) as u32).sum());
        let memory = def
            .memory()
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| {
                containers
                    .iter()
                    .map(|c| c.memory().or(c.memory_reservation()).unwrap_or(0).max(0) as u32)
                    .sum()
            });
        let awsvpc = def.network_mode().is_some_and(|m| m.as_str() == "awsvpc");
        let ports = if awsvpc {
            vec![]
        } else {
            containers
                .iter()
                .flat_map(|c| c.port_mappings())
                .filter_map(|p| p.host_port())
                .filter(|p| *p > 0)
                .map(|p| p as u16)
                .collect()
        };
        let size = (Resources { cpu, memory }, ports);
        self.task_definitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(arn.to_owned(), size.clone());
        Ok(size)
    }

    /// Services by name or ARN; deleted ones (INACTIVE) are left out.
    async fn describe_services(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> backend::Result<Vec<Service>> {
        let mut services = vec![];
        let pages = self
            .batched(
                "DescribeServices",
                arns,
                limits::DESCRIBE_SERVICES,
                |chunk| {
                    self.ecs
                        .describe_services()
                        .cluster(cluster)
                        .set_services(Some(chunk))
                        .include(ServiceField::Tags)
                        .send()
                },
            )
            .await?;
        for out in pages {
            for s in out
                .services()
                .iter()
                .filter(|s| s.status() != Some("INACTIVE"))
            {
                let (task_size, host_ports) = match s.task_definition() {
                    Some(arn) => self.task_size(arn).await?,
                    None => (Resources::default(), vec![]),
                };
                let deployments = s.deployments();
                let deployment_in_progress = deployments.len() > 1
                    || deployments
                        .iter()
                        .any(|d| d.rollout_state().is_some_and(|r| r.as_str() != "COMPLETED"));
                services.push(Service {
                    name: s.service_name().unwrap_or_default().to_owned(),
                    arn: s.service_arn().unwrap_or_default().to_owned(),
                    tags: s
                        .tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
                        .collect(),
                    desired: s.desired_count().max(0) as u32,
                    running: s.running_count().max(0) as u32,
                    pending: s.pending_count().max(0) as u32,
                    deployment_in_progress,
                    strategy: s.placement_strategy().iter().filter_map(strategy).collect(),
                    constraints: s
                        .placement_constraints()
                        .iter()
                        .filter_map(constraint)
                        .collect(),
                    task_size,
                    host_ports,
                    az_rebalancing: s
                        .availability_zone_rebalancing()
                        .is_some_and(|r| r.as_str() == "ENABLED"),
                    az_rebalancing_in_progress: rebalancing_in_progress(
                        s.events().iter().filter_map(|e| e.message()),
                    ),
                    autoscaling_target: false,
                    fargate: s.launch_type().is_some_and(|l| l.as_str() == "FARGATE")
                        || s.capacity_provider_strategy()
                            .iter()
                            .any(|p| p.capacity_provider().starts_with("FARGATE")),
                    minimum_healthy_percent: s
                        .deployment_configuration()
                        .and_then(|d| d.minimum_healthy_percent())
                        .unwrap_or(100)
                        .max(0) as u32,
                    maximum_percent: s
                        .deployment_configuration()
                        .and_then(|d| d.maximum_percent())
                        .unwrap_or(200)
                        .max(0) as u32,
                });
            }
        }
        Ok(services)
    }

    /// Container instances by ARN; deregistered ones (INACTIVE) are left out.
    async fn describe_instances(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> backend::Result<Vec<Instance>> {
        let mut instances = vec![];
        let pages = self
            .batched(
                "DescribeContainerInstances",
                arns,
                limits::DESCRIBE_CONTAINER_INSTANCES,
                |chunk| {
                    self.ecs
                        .describe_container_instances()
                        .cluster(cluster)
                        .set_container_instances(Some(chunk))
                        .send()
                },
            )
            .await?;
        for out in pages {
            for ci in out
                .container_instances()
                .iter()
                .filter(|ci| ci.status() != Some("INACTIVE"))
            {
                let attributes: BTreeMap<String, String> = ci
                    .attributes()
                    .iter()
                    .filter_map(|a| Some((a.name().to_owned(), a.value()?.to_owned())))
                    .collect();
                let resources = |list: &[aws_sdk_ecs::types::Resource]| {
                    let get = |name: &str| {
                        list.iter()
                            .find(|r| r.name() == Some(name))
                            .map_or(0, |r| r.integer_value().max(0) as u32)
                    };
                    Resources {
                        cpu: get("CPU"),
                        memory: get("MEMORY"),
                    }
                };
                let ports_in_use = ci
                    .remaining_resources()
                    .iter()
                    .filter(|r| r.name() == Some("PORTS"))
                    .flat_map(|r| r.string_set_value())
                    .filter_map(|p| p.parse().ok())
                    .collect();
                instances.push(Instance {
                    id: ci.container_instance_arn().unwrap_or_default().to_owned(),
                    zone: attributes.get(ZONE_ATTRIBUTE).cloned().unwrap_or_default(),
                    status: match ci.status() {
                        Some("ACTIVE") => InstanceStatus::Active,
                        Some("DRAINING") => InstanceStatus::Draining,
                        Some("REGISTERING") => InstanceStatus::Registering,
                        _ => InstanceStatus::Inactive,
                    },
                    agent_connected: ci.agent_connected(),
                    attributes,
                    registered: resources(ci.registered_resources()),
                    remaining: resources(ci.remaining_resources()),
                    ports_in_use,
                });
            }
        }
        Ok(instances)
    }

    /// Service tasks by ARN, each with whether it is meant to run (a task
    /// stopped or being stopped is history, but its service and host are
    /// still worth reading again).
    async fn describe_tasks(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> backend::Result<Vec<(TaskRecord, bool)>> {
        let mut tasks = vec![];
        let pages = self
            .batched("DescribeTasks", arns, limits::DESCRIBE_TASKS, |chunk| {
                self.ecs
                    .describe_tasks()
                    .cluster(cluster)
                    .set_tasks(Some(chunk))
                    .send()
            })
            .await?;
        for out in pages {
            for t in out.tasks() {
                // Only service tasks matter; a service's tasks are in the group `service:NAME`.
                let Some(service) = t.group().and_then(|g| g.strip_prefix("service:")) else {
                    continue;
                };
                let status = match t.last_status() {
                    Some("RUNNING") => TaskStatus::Running,
                    Some("PROVISIONING") => TaskStatus::Provisioning,
                    Some("PENDING" | "ACTIVATING") => TaskStatus::Pending,
                    Some("STOPPED" | "DEPROVISIONING" | "STOPPING" | "DEACTIVATING") => {
                        TaskStatus::Stopping
                    }
                    _ => TaskStatus::Pending,
                };
                let record = TaskRecord {
                    id: t.task_arn().unwrap_or_default().to_owned(),
                    service: service.to_owned(),
                    instance: t.container_instance_arn().map(str::to_owned),
                    status,
                    started_at: t.started_at().map_or(0, |d| d.secs().max(0) as u64 * 1000),
                    // Read just before acting, through GetTaskProtection.
                    protected: false,
                };
                tasks.push((record, t.desired_status() == Some("RUNNING")));
            }
        }
        Ok(tasks)
    }
}

fn strategy(s: &aws_sdk_ecs::types::PlacementStrategy) -> Option<PlacementStrategy> {
    match (s.r#type().map(|t| t.as_str()), s.field()) {
        (Some("random"), _) => Some(PlacementStrategy::Random),
        (Some("binpack"), Some(f)) if f.eq_ignore_ascii_case("cpu") => {
            Some(PlacementStrategy::Binpack(BinpackField::Cpu))
        }
        (Some("binpack"), Some(f)) if f.eq_ignore_ascii_case("memory") => {
            Some(PlacementStrategy::Binpack(BinpackField::Memory))
        }
        (Some("spread"), Some("instanceId" | "host")) => {
            Some(PlacementStrategy::Spread(PlacementField::Instance))
        }
        (Some("spread"), Some(f)) => f
            .strip_prefix("attribute:")
            .map(|a| PlacementStrategy::Spread(PlacementField::Attribute(a.to_owned()))),
        _ => None,
    }
}

fn constraint(c: &aws_sdk_ecs::types::PlacementConstraint) -> Option<PlacementConstraint> {
    match c.r#type().map(|t| t.as_str()) {
        Some("distinctInstance") => Some(PlacementConstraint::DistinctInstance),
        Some("memberOf") => c
            .expression()
            .and_then(MemberOf::parse)
            .map(PlacementConstraint::MemberOf),
        _ => None,
    }
}

impl AwsBackend {
    /// Every service, instance and task of the cluster, as one snapshot.
    async fn read_all(&self, cluster: &str) -> backend::Result<ClusterSnapshot> {
        let taken_at = crate::model::wall_clock();
        let arns = self.service_arns(cluster).await?;
        let services = self.describe_services(cluster, &arns).await?;
        let arns = self.instance_arns(cluster).await?;
        let instances = self.describe_instances(cluster, &arns).await?;
        let arns = self.task_arns(cluster).await?;
        let tasks = self.describe_tasks(cluster, &arns).await?;
        // Everything read, merged into nothing: one way to build a snapshot.
        let everything = Delta {
            taken_at,
            services: services
                .into_iter()
                .map(|s| (s.name.clone(), Some(s)))
                .collect(),
            instances: instances
                .into_iter()
                .map(|i| (i.id.clone(), Some(i)))
                .collect(),
            tasks: tasks
                .into_iter()
                .filter(|(_, live)| *live)
                .map(|(t, _)| (t.id.clone(), Some(t)))
                .collect(),
        };
        let mut snapshot = ClusterSnapshot {
            // Names, not ARNs, identify a cluster in policies.
            cluster: cluster.rsplit('/').next().unwrap_or(cluster).to_owned(),
            ..ClusterSnapshot::default()
        };
        refresh::apply(&mut snapshot, everything);
        Ok(snapshot)
    }
}

impl Backend for AwsBackend {
    async fn snapshot(&self, cluster: &str) -> backend::Result<ClusterSnapshot> {
        // ECS's message ("Cluster not found.") does not name the cluster.
        let name = cluster.rsplit('/').next().unwrap_or(cluster);
        self.read_all(cluster).await.map_err(|e| match e {
            backend::Error::ClusterNotFound(_) => backend::Error::ClusterNotFound(name.to_owned()),
            e => e,
        })
    }

    async fn refresh(
        &self,
        cluster: &str,
        snapshot: &mut ClusterSnapshot,
        touched: &Touched,
    ) -> backend::Result<()> {
        let taken_at = crate::model::wall_clock();
        let ids: Vec<String> = touched.tasks.iter().cloned().collect();
        let read = self.describe_tasks(cluster, &ids).await?;
        // Their services and hosts changed too: read those, as of now.
        let owners: Vec<TaskRecord> = read.iter().map(|(t, _)| t.clone()).collect();
        let touched = touched.clone().with_owners(&owners, snapshot);
        let names: Vec<String> = touched.services.iter().cloned().collect();
        let services = self.describe_services(cluster, &names).await?;
        let arns: Vec<String> = touched.instances.iter().cloned().collect();
        let instances = self.describe_instances(cluster, &arns).await?;
        let live = read
            .into_iter()
            .filter(|(_, live)| *live)
            .map(|(t, _)| t)
            .collect();
        let delta = Delta::from_reads(&touched, taken_at, services, instances, live);
        refresh::apply(snapshot, delta);
        Ok(())
    }

    async fn recently_stopped(&self, cluster: &str) -> backend::Result<Vec<backend::StoppedTask>> {
        let arns = self.task_arns_of(cluster, DesiredStatus::Stopped).await?;
        let pages = self
            .batched("DescribeTasks", &arns, limits::DESCRIBE_TASKS, |chunk| {
                self.ecs
                    .describe_tasks()
                    .cluster(cluster)
                    .set_tasks(Some(chunk))
                    .send()
            })
            .await?;
        let millis = |d: &aws_sdk_ecs::primitives::DateTime| {
            u64::try_from(d.to_millis().unwrap_or(0)).unwrap_or(0)
        };
        Ok(pages
            .iter()
            .flat_map(|out| out.tasks())
            .filter_map(|t| {
                Some(backend::StoppedTask {
                    id: t.task_arn()?.to_owned(),
                    service: t.group()?.strip_prefix("service:")?.to_owned(),
                    zone: t.availability_zone().map(str::to_owned),
                    instance: t.container_instance_arn().map(str::to_owned),
                    reason: t.stopped_reason().unwrap_or_default().to_owned(),
                    stopping_at: t.stopping_at().map(millis),
                })
            })
            .collect())
    }

    async fn protected_tasks(
        &self,
        cluster: &str,
        tasks: &[String],
    ) -> backend::Result<BTreeSet<String>> {
        let mut protected = BTreeSet::new();
        let pages = self
            .batched(
                "GetTaskProtection",
                tasks,
                limits::GET_TASK_PROTECTION,
                |chunk| {
                    self.ecs
                        .get_task_protection()
                        .cluster(cluster)
                        .set_tasks(Some(chunk))
                        .send()
                },
            )
            .await?;
        for out in pages {
            protected.extend(
                out.protected_tasks()
                    .iter()
                    .filter(|t| t.protection_enabled())
                    .filter_map(|t| t.task_arn().map(str::to_owned)),
            );
        }
        Ok(protected)
    }

    async fn update_task_protection(
        &self,
        cluster: &str,
        tasks: &[String],
        minutes: Option<u32>,
    ) -> backend::Result<()> {
        // One call at a time: these are writes.
        for chunk in tasks.chunks(limits::UPDATE_TASK_PROTECTION) {
            self.call("UpdateTaskProtection").await;
            let mut request = self
                .ecs
                .update_task_protection()
                .cluster(cluster)
                .set_tasks(Some(chunk.to_vec()))
                .protection_enabled(minutes.is_some());
            if let Some(m) = minutes {
                request =
                    request.expires_in_minutes(m.clamp(1, limits::PROTECTION_MINUTES_MAX) as i32);
            }
            let out = request
                .send()
                .await
                .map_err(|e| api_error("UpdateTaskProtection", e))?;
            if minutes.is_some()
                && let Some(failure) = out.failures().first()
            {
                return Err(backend::Error::Api {
                    operation: "UpdateTaskProtection",
                    message: format!(
                        "{}: {}",
                        failure.arn().unwrap_or("a task"),
                        failure.reason().unwrap_or("not protected")
                    ),
                });
            }
        }
        Ok(())
    }

    async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> backend::Result<()> {
        self.call("StopTask").await;
        self.ecs
            .stop_task()
            .cluster(cluster)
            .task(task)
            .reason(reason)
            .send()
            .await
            .map_err(|e| api_error("StopTask", e))?;
        Ok(())
    }

    async fn set_desired_count(
        &self,
        cluster: &str,
        service: &str,
        desired: u32,
    ) -> backend::Result<()> {
        self.call("UpdateService").await;
        self.ecs
            .update_service()
            .cluster(cluster)
            .service(service)
            .desired_count(desired as i32)
            .send()
            .await
            .map_err(|e| api_error("UpdateService", e))?;
        Ok(())
    }

    async fn metric_data(
        &self,
        _cluster: &str,
        queries: &[MetricQuery],
        now: u64,
    ) -> backend::Result<Vec<Option<f64>>> {
        use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
        let Some(cloudwatch) = &self.cloudwatch else {
            return Err(backend::Error::Api {
                operation: "GetMetricData",
                message: "no CloudWatch client".into(),
            });
        };
        let mut values = vec![None; queries.len()];
        for (c, chunk) in queries.chunks(limits::GET_METRIC_DATA).enumerate() {
            let longest = chunk.iter().map(|q| q.period).max().unwrap_or(60) as u64;
            let to = aws_sdk_cloudwatch::primitives::DateTime::from_millis(now as i64);
            let from = aws_sdk_cloudwatch::primitives::DateTime::from_millis(
                now.saturating_sub(3 * longest * 1000) as i64,
            );
            let data_queries: Vec<MetricDataQuery> = chunk
                .iter()
                .enumerate()
                .map(|(i, q)| {
                    let metric = Metric::builder()
                        .namespace(&q.namespace)
                        .metric_name(&q.name)
                        .set_dimensions(Some(
                            q.dimensions
                                .iter()
                                .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                                .collect(),
                        ))
                        .build();
                    MetricDataQuery::builder()
                        .id(format!("m{i}"))
                        .metric_stat(
                            MetricStat::builder()
                                .metric(metric)
                                .period(q.period as i32)
                                .stat(&q.statistic)
                                .build(),
                        )
                        .return_data(true)
                        .build()
                })
                .collect();
            let mut token = None;
            loop {
                let out = cloudwatch
                    .get_metric_data()
                    .set_metric_data_queries(Some(data_queries.clone()))
                    .start_time(from)
                    .end_time(to)
                    .scan_by(ScanBy::TimestampDescending)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| backend::Error::Api {
                        operation: "GetMetricData",
                        message: super::one_line(&e),
                    })?;
                for result in out.metric_data_results() {
                    let i = result
                        .id()
                        .and_then(|id| id.strip_prefix('m'))
                        .and_then(|i| i.parse::<usize>().ok());
                    // Newest first: the first value seen for a query is its latest.
                    if let (Some(i), Some(value)) = (i, result.values().first())
                        && let Some(slot) = values.get_mut(c * limits::GET_METRIC_DATA + i)
                    {
                        slot.get_or_insert(*value);
                    }
                }
                token = out.next_token().map(str::to_owned);
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(values)
    }

    async fn scalable_targets(
        &self,
        cluster: &str,
        services: &[String],
    ) -> backend::Result<BTreeSet<String>> {
        use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
        let Some(autoscaling) = &self.autoscaling else {
            return Err(backend::Error::Api {
                operation: "DescribeScalableTargets",
                message: "no Application Auto Scaling client".into(),
            });
        };
        let cluster = cluster.rsplit('/').next().unwrap_or(cluster);
        let mut found = BTreeSet::new();
        for chunk in services.chunks(limits::DESCRIBE_SCALABLE_TARGETS) {
            let ids: Vec<String> = chunk
                .iter()
                .map(|s| format!("service/{cluster}/{s}"))
                .collect();
            let mut token = None;
            loop {
                let out = autoscaling
                    .describe_scalable_targets()
                    .service_namespace(ServiceNamespace::Ecs)
                    .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                    .set_resource_ids(Some(ids.clone()))
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| backend::Error::Api {
                        operation: "DescribeScalableTargets",
                        message: super::one_line(&e),
                    })?;
                found.extend(
                    out.scalable_targets()
                        .iter()
                        .filter_map(|t| t.resource_id().rsplit('/').next().map(str::to_owned)),
                );
                token = out.next_token().map(str::to_owned);
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(found)
    }

    fn api_calls(&self) -> BTreeMap<String, u64> {
        self.counter.calls()
    }

    fn api_throttles(&self) -> BTreeMap<String, u64> {
        self.counter.throttles()
    }
}

/// Whether ECS is rebalancing a service over zones, from its service
/// events (newest first, as DescribeServices lists them): the last
/// rebalancing message says "AZ Rebalancing in progress"
/// (SERVICE_REBALANCING_STARTED) rather than "is AZ balanced"
/// (SERVICE_REBALANCING_COMPLETED).
pub(crate) fn rebalancing_in_progress<'a>(messages: impl Iterator<Item = &'a str>) -> bool {
    for message in messages {
        if message.contains("AZ Rebalancing in progress") {
            return true;
        }
        if message.contains("is AZ balanced") {
            return false;
        }
    }
    false
}
