//! The AWS backend over the wire: the real SDK against moto's server,
//! started by the test itself on a free local port (installed into `.venv`
//! by `scripts/test.sh`). moto has no scheduler, so tasks are laid out with
//! `start_task`, exactly where each test wants them.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ecs::Client;
use aws_sdk_ecs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ecs::types::{Attribute, ContainerDefinition, ContainerInstanceStatus};
use stevedore::aws::AwsBackend;
use stevedore::backend::Backend;
use stevedore::plan::{ActionKind, State};

use crate::moto::Moto;
use crate::repo;

/// Registers an EC2 instance in `zone` with cluster `demo`; its container
/// instance ARN.
pub(crate) async fn register_host(client: &Client, instance_id: &str, zone: &str) -> String {
    let document = serde_json::json!({"instanceId": instance_id, "availabilityZone": zone, "region": "us-east-1", "instanceType": "m5.xlarge"}).to_string();
    client
        .register_container_instance()
        .cluster("demo")
        .instance_identity_document(document)
        .send()
        .await
        .unwrap()
        .container_instance()
        .unwrap()
        .container_instance_arn()
        .unwrap()
        .to_owned()
}

/// A cluster `demo` with two hosts per zone in three zones, service `web`
/// with `layout[h]` tasks on host `h` (hosts a1, a2, b1, b2, c1, c2).
pub(crate) async fn cluster(moto: &Moto, client: &Client, layout: [u32; 6]) -> Vec<String> {
    client
        .create_cluster()
        .cluster_name("demo")
        .send()
        .await
        .unwrap();
    let mut hosts = vec![];
    for zone in [
        "us-east-1a",
        "us-east-1a",
        "us-east-1b",
        "us-east-1b",
        "us-east-1c",
        "us-east-1c",
    ] {
        let arn = register_host(client, &moto.ec2_instance(zone), zone).await;
        client
            .put_attributes()
            .cluster("demo")
            .attributes(
                Attribute::builder()
                    .name("ecs.availability-zone")
                    .value(zone)
                    .target_id(&arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        hosts.push(arn);
    }
    client
        .register_task_definition()
        .family("web")
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image("nginx")
                .cpu(256)
                .memory(512)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let total: u32 = layout.iter().sum();
    client
        .create_service()
        .cluster("demo")
        .service_name("web")
        .task_definition("web")
        .desired_count(total as i32)
        .send()
        .await
        .unwrap();
    client
        .update_service()
        .cluster("demo")
        .service("web")
        .desired_count(total as i32)
        .send()
        .await
        .unwrap();
    for (host, n) in hosts.iter().zip(layout) {
        for _ in 0..n {
            client
                .start_task()
                .cluster("demo")
                .task_definition("web")
                .container_instances(host)
                .started_by("ecs-svc/web")
                .group("service:web")
                .send()
                .await
                .unwrap();
        }
    }
    hosts
}

pub(crate) fn policy(rest: &str) -> Vec<stevedore::spec::Policy> {
    let text = format!(
        "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata: {{name: web}}\nspec:\n  target: {{cluster: demo, service: web}}\n{rest}"
    );
    let loaded = stevedore::spec::load_sources(vec![("p.yaml".into(), text.into_bytes())]);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    loaded.policies
}

#[tokio::test]
async fn the_snapshot_reads_services_hosts_zones_and_tasks() {
    let moto = Moto::start();
    let client = moto.client();
    cluster(&moto, &client, [3, 2, 1, 0, 0, 0]).await;
    let backend = AwsBackend::new(client);
    let snapshot = backend.snapshot("demo").await.unwrap();
    assert_eq!(snapshot.cluster, "demo");
    assert_eq!(snapshot.instances.len(), 6);
    let mut zones: Vec<&str> = snapshot.instances.iter().map(|i| i.zone.as_str()).collect();
    zones.sort();
    assert_eq!(
        zones,
        [
            "us-east-1a",
            "us-east-1a",
            "us-east-1b",
            "us-east-1b",
            "us-east-1c",
            "us-east-1c"
        ]
    );
    assert!(
        snapshot
            .instances
            .iter()
            .all(|i| i.schedulable() && i.registered.cpu > 0 && i.registered.memory > 0),
        "{:#?}",
        snapshot.instances
    );
    assert_eq!(snapshot.services.len(), 1);
    let web = &snapshot.services[0];
    assert_eq!(
        (
            web.name.as_str(),
            web.desired,
            web.running,
            web.pending,
            web.deployment_in_progress
        ),
        ("web", 6, 6, 0, false)
    );
    assert_eq!((web.task_size.cpu, web.task_size.memory), (256, 512));
    assert_eq!(snapshot.tasks.len(), 6);
    let per_zone = |z: &str| {
        snapshot
            .tasks
            .iter()
            .filter(|t| t.instance.is_some_and(|i| snapshot.instances[i].zone == z))
            .count()
    };
    assert_eq!(
        (
            per_zone("us-east-1a"),
            per_zone("us-east-1b"),
            per_zone("us-east-1c")
        ),
        (5, 1, 0)
    );
    let calls = backend.api_calls();
    for op in [
        "ListServices",
        "DescribeServices",
        "ListContainerInstances",
        "DescribeContainerInstances",
        "ListTasks",
        "DescribeTasks",
    ] {
        assert_eq!(calls.get(op), Some(&1), "{op}: {calls:?}");
    }
}

#[tokio::test]
async fn describes_are_batched_by_100_and_none_is_lost_in_flight() {
    let moto = Moto::start();
    let client = moto.client();
    cluster(&moto, &client, [42, 42, 42, 42, 41, 41]).await;
    let backend = AwsBackend::new(client);
    let snapshot = backend.snapshot("demo").await.unwrap();
    assert_eq!(snapshot.tasks.len(), 250);
    let ids: std::collections::BTreeSet<&str> =
        snapshot.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids.len(), 250, "each task once");
    assert_eq!(backend.api_calls().get("DescribeTasks"), Some(&3));
}

#[tokio::test]
async fn one_reconcile_performs_exactly_the_optimal_stop_and_nothing_else() {
    let moto = Moto::start();
    let client = moto.client();
    let hosts = cluster(&moto, &client, [3, 2, 1, 0, 0, 0]).await;
    let backend = AwsBackend::new(client.clone());
    let policies = policy("  placement: {azBalanced: true}\n");

    // The plan: 3 moves in all (5/1/0 -> 2/2/2), one now (maxUnavailable 1),
    // the youngest task of the fullest host of the fullest zone.
    let snapshot = backend.snapshot("demo").await.unwrap();
    let plan = stevedore::plan::plan(&policies, &snapshot, snapshot.taken_at);
    assert_eq!(
        (
            plan.statuses[0].state,
            plan.statuses[0].moves_remaining,
            plan.actions.len()
        ),
        (State::Converging, 3, 1)
    );
    let ActionKind::StopTask {
        task,
        instance,
        zone,
    } = &plan.actions[0].kind
    else {
        panic!("{plan:#?}")
    };
    assert_eq!(
        (instance.as_str(), zone.as_str()),
        (hosts[0].as_str(), "us-east-1a")
    );

    let reconciled = stevedore::controller::reconcile_once(&backend, "demo", &policies, 0)
        .await
        .unwrap();
    assert_eq!(reconciled.executed.len(), 1);
    assert!(reconciled.executed[0].1.is_ok());
    // Everything the backend called is allowed by `stevedore iam-policy`.
    let iam = stevedore::setup::iam::policy(&stevedore::setup::iam::Scope {
        cluster: "demo",
        region: None,
        account: None,
        queue: "q",
    });
    for operation in backend.api_calls().keys() {
        assert!(
            stevedore::setup::iam::allows(&iam, &format!("ecs:{operation}")),
            "ecs:{operation} is not in the IAM policy"
        );
    }
    assert_eq!(backend.api_calls().get("StopTask"), Some(&1));
    let out = client
        .describe_tasks()
        .cluster("demo")
        .tasks(task.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.tasks()[0].desired_status(),
        Some("STOPPED"),
        "the planned task was stopped"
    );
}

#[tokio::test]
async fn a_protected_task_is_never_stopped() {
    let moto = Moto::start();
    let client = moto.client();
    cluster(&moto, &client, [3, 2, 1, 0, 0, 0]).await;
    let backend = AwsBackend::new(client.clone());
    let policies = policy("  placement: {azBalanced: true}\n");
    // What the plan would stop, were nothing protected.
    let snapshot = backend.snapshot("demo").await.unwrap();
    let plan = stevedore::plan::plan(&policies, &snapshot, snapshot.taken_at);
    let ActionKind::StopTask { task: first, .. } = &plan.actions[0].kind else {
        panic!("{plan:#?}")
    };
    moto.protect(first);

    let reconciled = stevedore::controller::reconcile_once(&backend, "demo", &policies, 0)
        .await
        .unwrap();
    assert!(moto.protection_asked() >= 1);
    assert_eq!(backend.api_calls().get("GetTaskProtection"), Some(&1));
    assert_eq!(reconciled.executed.len(), 1, "{reconciled:#?}");
    let ActionKind::StopTask { task: stopped, .. } = &reconciled.executed[0].0.kind else {
        panic!("{reconciled:#?}")
    };
    assert_ne!(stopped, first, "the protected task was chosen");
    let out = client
        .describe_tasks()
        .cluster("demo")
        .tasks(first.as_str())
        .tasks(stopped.as_str())
        .send()
        .await
        .unwrap();
    let status = |arn: &str| {
        out.tasks()
            .iter()
            .find(|t| t.task_arn() == Some(arn))
            .and_then(|t| t.desired_status())
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        (status(first).as_str(), status(stopped).as_str()),
        ("RUNNING", "STOPPED")
    );
}

#[tokio::test]
async fn a_refresh_reads_only_what_events_touched_and_matches_a_full_read() {
    let moto = Moto::start();
    let client = moto.client();
    let hosts = cluster(&moto, &client, [2, 1, 1, 0, 0, 0]).await;
    let backend = AwsBackend::new(client.clone());
    let before = backend.snapshot("demo").await.unwrap();
    let calls_before = backend.api_calls();

    // One task stops, one starts on another host.
    let old = before.tasks[0].id.clone();
    client
        .stop_task()
        .cluster("demo")
        .task(&old)
        .send()
        .await
        .unwrap();
    let started = client
        .start_task()
        .cluster("demo")
        .task_definition("web")
        .container_instances(&hosts[5])
        .started_by("ecs-svc/web")
        .group("service:web")
        .send()
        .await
        .unwrap();
    let new = started.tasks()[0].task_arn().unwrap().to_owned();
    let touched = stevedore::backend::refresh::Touched {
        tasks: [old.clone(), new.clone()].into(),
        ..Default::default()
    };
    let mut refreshed = before.clone();
    backend
        .refresh("demo", &mut refreshed, &touched)
        .await
        .unwrap();

    // Three calls: the two tasks, then their service, then their hosts.
    let calls = backend.api_calls();
    let delta: std::collections::BTreeMap<&str, u64> = calls
        .iter()
        .map(|(op, n)| (op.as_str(), n - calls_before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(
        delta,
        [
            ("DescribeContainerInstances", 1),
            ("DescribeServices", 1),
            ("DescribeTasks", 1)
        ]
        .into()
    );
    let ids = |s: &stevedore::model::ClusterSnapshot| -> std::collections::BTreeSet<String> {
        s.tasks.iter().map(|t| t.id.clone()).collect()
    };
    assert!(!ids(&refreshed).contains(&old));
    assert!(ids(&refreshed).contains(&new));
    let full = backend.snapshot("demo").await.unwrap();
    assert_eq!(ids(&refreshed), ids(&full));
    let host_of = |s: &stevedore::model::ClusterSnapshot, id: &str| {
        let t = s.tasks.iter().find(|t| t.id == id).unwrap();
        s.instances[t.instance.unwrap()].id.clone()
    };
    assert_eq!(host_of(&refreshed, &new), hosts[5]);
    // The hosts read again carry what a full read says of them.
    for host in [&hosts[0], &hosts[5]] {
        let find = |s: &stevedore::model::ClusterSnapshot| {
            s.instances.iter().find(|i| &i.id == host).cloned().unwrap()
        };
        assert_eq!(find(&refreshed), find(&full), "{host}");
    }
}

fn autoscaling(moto: &Moto) -> aws_sdk_applicationautoscaling::Client {
    let config = aws_sdk_applicationautoscaling::Config::builder()
        .behavior_version(aws_sdk_applicationautoscaling::config::BehaviorVersion::latest())
        .endpoint_url(moto.url())
        .region(aws_sdk_applicationautoscaling::config::Region::new(
            "us-east-1",
        ))
        .credentials_provider(aws_sdk_applicationautoscaling::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .build();
    aws_sdk_applicationautoscaling::Client::from_conf(config)
}

/// The backend with every client pointed at moto.
pub(crate) fn backend(moto: &Moto, ecs: Client) -> AwsBackend {
    AwsBackend::new(ecs)
        .with_cloudwatch(cloudwatch(moto))
        .with_autoscaling(autoscaling(moto))
}

pub(crate) fn cloudwatch(moto: &Moto) -> aws_sdk_cloudwatch::Client {
    let config = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
        .endpoint_url(moto.url())
        .region(aws_sdk_cloudwatch::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_cloudwatch::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .build();
    aws_sdk_cloudwatch::Client::from_conf(config)
}

#[tokio::test]
async fn cloudwatch_data_drives_a_scale_out_and_missing_data_holds() {
    let moto = Moto::start();
    let client = moto.client();
    cluster(&moto, &client, [1, 1, 1, 1, 0, 0]).await;
    let cw = cloudwatch(&moto);
    let backend = backend(&moto, client.clone());
    let policies = policy(
        "  scaling:\n    minTasks: 2\n    maxTasks: 10\n    metric: {cloudWatch: {namespace: AWS/ECS, name: CPUUtilization, dimensions: {ClusterName: \"{cluster}\", ServiceName: \"{service}\"}}}\n    scaleOutAbove: 70\n    scaleInBelow: 30\n    scaleOutStep: \"50%\"\n",
    );
    let desired = |client: Client| async move {
        client
            .describe_services()
            .cluster("demo")
            .services("web")
            .send()
            .await
            .unwrap()
            .services()[0]
            .desired_count()
    };

    // No data yet: the count holds, and the status says why.
    let now = stevedore::model::wall_clock();
    let held = stevedore::controller::reconcile_once(&backend, "demo", &policies, now)
        .await
        .unwrap();
    assert!(held.executed.is_empty(), "{held:#?}");
    let why = held.plan.statuses[0].scaling.clone().unwrap();
    assert!(why.contains("no data"), "{why}");
    assert_eq!(desired(client.clone()).await, 4);

    // 85% CPU for this service (another service's data must not count).
    for (service, value) in [("web", 85.0), ("api", 5.0)] {
        cw.put_metric_data()
            .namespace("AWS/ECS")
            .metric_data(
                aws_sdk_cloudwatch::types::MetricDatum::builder()
                    .metric_name("CPUUtilization")
                    .dimensions(
                        aws_sdk_cloudwatch::types::Dimension::builder()
                            .name("ClusterName")
                            .value("demo")
                            .build(),
                    )
                    .dimensions(
                        aws_sdk_cloudwatch::types::Dimension::builder()
                            .name("ServiceName")
                            .value(service)
                            .build(),
                    )
                    .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from_millis(
                        now as i64 - 30_000,
                    ))
                    .value(value)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let scaled = stevedore::controller::reconcile_once(&backend, "demo", &policies, now)
        .await
        .unwrap();
    assert_eq!(scaled.executed.len(), 1, "{scaled:#?}");
    let (action, result) = &scaled.executed[0];
    assert!(result.is_ok());
    assert_eq!(action.kind, ActionKind::SetDesiredCount { from: 4, to: 6 });
    assert!(
        action.reason.contains("85 > scaleOutAbove 70"),
        "{}",
        action.reason
    );
    assert_eq!(desired(client).await, 6);
    assert_eq!(backend.api_calls().get("GetMetricData"), Some(&2));
    let iam = stevedore::setup::iam::policy(&stevedore::setup::iam::Scope {
        cluster: "demo",
        region: None,
        account: None,
        queue: "q",
    });
    assert!(stevedore::setup::iam::allows(
        &iam,
        "cloudwatch:GetMetricData"
    ));
}

#[tokio::test]
async fn a_service_with_an_application_auto_scaling_target_is_not_scaled() {
    let moto = Moto::start();
    let client = moto.client();
    cluster(&moto, &client, [1, 1, 1, 1, 0, 0]).await;
    autoscaling(&moto)
        .register_scalable_target()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
        .scalable_dimension(
            aws_sdk_applicationautoscaling::types::ScalableDimension::EcsServiceDesiredCount,
        )
        .resource_id("service/demo/web")
        .min_capacity(1)
        .max_capacity(8)
        .send()
        .await
        .unwrap();
    let backend = backend(&moto, client);
    // maxTasks 3 < 4 tasks: without the conflict, the count would be set to 3.
    let policies = policy(
        "  scaling:\n    minTasks: 1\n    maxTasks: 3\n    metric: {cloudWatch: {namespace: AWS/ECS, name: CPUUtilization}}\n    scaleOutAbove: 70\n    scaleInBelow: 30\n",
    );
    let reconciled = stevedore::controller::reconcile_once(&backend, "demo", &policies, 0)
        .await
        .unwrap();
    let status = &reconciled.plan.statuses[0];
    assert_eq!(status.state, State::Paused, "{status:#?}");
    assert!(
        status.reason.contains("Application Auto Scaling"),
        "{}",
        status.reason
    );
    assert!(reconciled.executed.is_empty());
    assert_eq!(backend.api_calls().get("UpdateService"), None);
    assert_eq!(backend.api_calls().get("DescribeScalableTargets"), Some(&1));
    let iam = stevedore::setup::iam::policy(&stevedore::setup::iam::Scope {
        cluster: "demo",
        region: None,
        account: None,
        queue: "q",
    });
    assert!(stevedore::setup::iam::allows(
        &iam,
        "application-autoscaling:DescribeScalableTargets"
    ));
}

#[tokio::test]
async fn a_dry_run_policy_stops_nothing() {
    let moto = Moto::start();
    let client = moto.client();
    cluster(&moto, &client, [3, 2, 1, 0, 0, 0]).await;
    let backend = AwsBackend::new(client);
    let policies = policy("  placement: {azBalanced: true}\n  mode: DryRun\n");
    let reconciled = stevedore::controller::reconcile_once(&backend, "demo", &policies, 0)
        .await
        .unwrap();
    assert_eq!(reconciled.plan.actions.len(), 1);
    assert!(reconciled.executed.is_empty());
    assert_eq!(backend.api_calls().get("StopTask"), None);
}

#[tokio::test]
async fn one_task_per_host_does_not_count_a_draining_host() {
    let moto = Moto::start();
    let client = moto.client();
    let hosts = cluster(&moto, &client, [1, 1, 1, 1, 1, 1]).await;
    client
        .update_container_instances_state()
        .cluster("demo")
        .container_instances(&hosts[5])
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    let backend = backend(&moto, client.clone());
    let policies = policy("  placement: {oneTaskPerHost: {}}\n");
    let reconciled = stevedore::controller::reconcile_once(&backend, "demo", &policies, 0)
        .await
        .unwrap();
    assert_eq!(reconciled.plan.actions.len(), 1);
    assert_eq!(
        reconciled.plan.actions[0].kind,
        ActionKind::SetDesiredCount { from: 6, to: 5 }
    );
    let out = client
        .describe_services()
        .cluster("demo")
        .services("web")
        .send()
        .await
        .unwrap();
    assert_eq!(out.services()[0].desired_count(), 5);
}

#[tokio::test]
async fn an_unreachable_endpoint_gives_no_snapshot_and_no_action() {
    // Nothing listens on a closed port: the SDK retries, then reports.
    // (A read that fails half-way, after calls were answered: `reads.rs`.)
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = aws_sdk_ecs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .build();
    let backend = AwsBackend::new(Client::from_conf(config));
    let policies = policy("  placement: {azBalanced: true}\n");
    let error = stevedore::controller::reconcile_once(&backend, "demo", &policies, 0)
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_eq!(backend.api_calls().get("StopTask"), None);
}

/// The binary, configured for moto through the standard AWS variables.
pub(crate) fn stevedore(moto: &Moto, args: &[&str]) -> std::process::Output {
    stevedore_with_env(moto, args, &[])
}

/// The same, with more environment variables.
fn stevedore_with_env(moto: &Moto, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stevedore"))
        .args(args)
        .env("AWS_ENDPOINT_URL", moto.url())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

pub(crate) fn specs_dir(rest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata: {{name: web}}\nspec:\n  target: {{cluster: demo, service: web}}\n{rest}"
    );
    std::fs::write(dir.path().join("web.yaml"), text).unwrap();
    dir
}

pub(crate) async fn stopped(client: &Client) -> usize {
    let arns = client
        .list_tasks()
        .cluster("demo")
        .send()
        .await
        .unwrap()
        .task_arns()
        .to_vec();
    let out = client
        .describe_tasks()
        .cluster("demo")
        .set_tasks(Some(arns))
        .send()
        .await
        .unwrap();
    out.tasks()
        .iter()
        .filter(|t| t.desired_status() == Some("STOPPED"))
        .count()
}

#[tokio::test]
async fn plan_shows_the_stops_against_live_state() {
    let moto = Moto::start();
    let client = moto.client();
    let hosts = cluster(&moto, &client, [3, 2, 1, 0, 0, 0]).await;
    let specs = specs_dir("  placement: {azBalanced: true}\n");
    let out = stevedore(&moto, &["plan", "--specs", specs.path().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("cluster demo:")
            && text.contains("web/web: Converging (3 moves needed, 1 now"),
        "{text}"
    );
    assert!(
        text.contains(&format!(" on {} (us-east-1a)", hosts[0])),
        "the stop names the task's host and zone: {text}"
    );
    assert_eq!(stopped(&client).await, 0, "plan acts on nothing");

    let json = stevedore(
        &moto,
        &[
            "plan",
            "--specs",
            specs.path().to_str().unwrap(),
            "--output",
            "json",
        ],
    );
    let plans: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(plans[0]["actions"][0]["action"], "stopTask");
    assert!(
        plans[0]["actions"][0]["task"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:ecs:")
    );
}

#[tokio::test]
async fn run_once_acts_and_dry_run_does_not() {
    let moto = Moto::start();
    let client = moto.client();
    cluster(&moto, &client, [3, 2, 1, 0, 0, 0]).await;
    let specs = specs_dir("  placement: {azBalanced: true}\n");
    let dir = specs.path().to_str().unwrap();

    let dry = stevedore(&moto, &["run", "--specs", dir, "--once", "--dry-run"]);
    let text = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(dry.status.code(), Some(0), "{text}");
    assert!(text.contains("(dry run)"), "{text}");
    assert_eq!(stopped(&client).await, 0);

    let real = stevedore(&moto, &["run", "--specs", dir, "--once"]);
    let text = String::from_utf8_lossy(&real.stdout);
    assert_eq!(real.status.code(), Some(0), "{text}");
    assert!(
        text.contains("demo/web/web: done: stop task arn:aws:ecs:"),
        "{text}"
    );
    assert_eq!(stopped(&client).await, 1, "exactly the one planned stop");
}

#[tokio::test]
async fn run_refuses_invalid_policies_and_reports_unreachable_clusters() {
    let moto = Moto::start();
    let bad = specs_dir("  placement: {azBalanced: true, maxskew: 1}\n");
    let out = stevedore(
        &moto,
        &["run", "--specs", bad.path().to_str().unwrap(), "--once"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unknown field `maxskew`"));

    // A cluster that does not exist: no snapshot, nothing done, exit 1.
    let good = specs_dir("  placement: {azBalanced: true}\n");
    let out = stevedore(
        &moto,
        &["run", "--specs", good.path().to_str().unwrap(), "--once"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("demo: no snapshot, nothing done"));
}

pub(crate) fn clients(moto: &Moto) -> stevedore::setup::install::Clients {
    recording_clients(moto, &Calls::default())
}

/// The operations a client sent, as IAM actions (`sqs:CreateQueue`).
type Calls = std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>;

/// Records each operation a client sends, from the SDK's own metadata.
#[derive(Debug)]
struct Recorder {
    prefix: &'static str,
    calls: Calls,
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for Recorder {
    fn name(&self) -> &'static str {
        "Recorder"
    }

    fn read_before_serialization(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef<'_>,
        _components: &aws_sdk_ecs::config::RuntimeComponents,
        cfg: &mut aws_sdk_ecs::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(metadata) = cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
        {
            self.calls
                .lock()
                .unwrap()
                .insert(format!("{}:{}", self.prefix, metadata.name()));
        }
        Ok(())
    }
}

/// The installer's clients for moto, recording every operation into `calls`.
fn recording_clients(moto: &Moto, calls: &Calls) -> stevedore::setup::install::Clients {
    let region = Region::new("us-east-1");
    let credentials = Credentials::new("test", "test", None, None, "static");
    let recorder = |prefix| Recorder {
        prefix,
        calls: std::sync::Arc::clone(calls),
    };
    let ecs = aws_sdk_ecs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(moto.url())
        .region(region.clone())
        .credentials_provider(credentials.clone())
        .interceptor(recorder("ecs"))
        .build();
    let sqs = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(moto.url())
        .region(region.clone())
        .credentials_provider(credentials.clone())
        .interceptor(recorder("sqs"))
        .build();
    let events = aws_sdk_eventbridge::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(moto.url())
        .region(region)
        .credentials_provider(credentials)
        .interceptor(recorder("events"))
        .build();
    stevedore::setup::install::Clients {
        ecs: Client::from_conf(ecs),
        sqs: aws_sdk_sqs::Client::from_conf(sqs),
        events: aws_sdk_eventbridge::Client::from_conf(events),
    }
}

#[tokio::test]
async fn install_twice_makes_one_rule_and_one_queue_that_receive_the_clusters_events() {
    let moto = Moto::start();
    let c = clients(&moto);
    let cluster_arn = c
        .ecs
        .create_cluster()
        .cluster_name("demo")
        .send()
        .await
        .unwrap()
        .cluster()
        .unwrap()
        .cluster_arn()
        .unwrap()
        .to_owned();
    let mut log = vec![];
    // The installer's calls are recorded, to check them against its IAM policy.
    let calls = Calls::default();
    let installer = recording_clients(&moto, &calls);
    let first =
        stevedore::setup::install::install(&installer, "demo", "stevedore-demo", false, &mut log)
            .await
            .unwrap()
            .unwrap();
    let second =
        stevedore::setup::install::install(&installer, "demo", "stevedore-demo", false, &mut log)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(first, second, "install is idempotent");
    assert_eq!(
        c.events
            .list_rules()
            .name_prefix("stevedore-")
            .send()
            .await
            .unwrap()
            .rules()
            .len(),
        1
    );
    assert_eq!(
        c.sqs
            .list_queues()
            .queue_name_prefix("stevedore-")
            .send()
            .await
            .unwrap()
            .queue_urls()
            .len(),
        1
    );
    let targets = c
        .events
        .list_targets_by_rule()
        .rule("stevedore-demo")
        .send()
        .await
        .unwrap();
    assert_eq!(targets.targets().len(), 1);

    // An ECS-shaped event put on the bus arrives in the queue, and parses.
    let detail = serde_json::json!({
        "clusterArn": cluster_arn,
        "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/demo/abc",
        "lastStatus": "RUNNING", "desiredStatus": "RUNNING", "version": 4
    });
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .source("aws.ecs")
        .detail_type("ECS Task State Change")
        .detail(detail.to_string())
        .resources("arn:aws:ecs:us-east-1:123456789012:task/demo/abc")
        .build();
    c.events.put_events().entries(entry).send().await.unwrap();
    let received = c
        .sqs
        .receive_message()
        .queue_url(&first.queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    assert_eq!(received.messages().len(), 1, "{received:?}");
    let event = stevedore::backend::events::parse(received.messages()[0].body().unwrap()).unwrap();
    assert_eq!((event.cluster.as_str(), event.version), ("demo", Some(4)));

    // Events of another cluster do not match the rule.
    let other = serde_json::json!({"clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/other", "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/other/x", "version": 1});
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .source("aws.ecs")
        .detail_type("ECS Task State Change")
        .detail(other.to_string())
        .build();
    c.events.put_events().entries(entry).send().await.unwrap();
    let received = c
        .sqs
        .receive_message()
        .queue_url(&first.queue_url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(received.messages().is_empty(), "{received:?}");

    stevedore::setup::install::uninstall(&installer, "demo", "stevedore-demo", &mut log)
        .await
        .unwrap();
    // `iam-policy --for installer` allows every call install and uninstall made.
    let iam = stevedore::setup::iam::installer_policy(&stevedore::setup::iam::Scope {
        cluster: "demo",
        region: None,
        account: None,
        queue: "stevedore-demo",
    });
    let calls = calls.lock().unwrap().clone();
    assert!(
        calls.contains("sqs:CreateQueue") && calls.contains("events:DeleteRule"),
        "{calls:?}"
    );
    for call in &calls {
        assert!(
            stevedore::setup::iam::allows(&iam, call),
            "{call} is not in the installer's policy"
        );
    }
    assert!(
        c.events
            .list_rules()
            .name_prefix("stevedore-")
            .send()
            .await
            .unwrap()
            .rules()
            .is_empty()
    );
    assert!(
        c.sqs
            .list_queues()
            .queue_name_prefix("stevedore-")
            .send()
            .await
            .unwrap()
            .queue_urls()
            .is_empty()
    );
}

#[tokio::test]
async fn install_dry_run_creates_nothing() {
    let moto = Moto::start();
    moto.client()
        .create_cluster()
        .cluster_name("demo")
        .send()
        .await
        .unwrap();
    let out = stevedore(&moto, &["install", "--cluster", "demo", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("would create or update EventBridge rule stevedore-demo"),
        "{text}"
    );
    let c = clients(&moto);
    assert!(
        c.sqs
            .list_queues()
            .send()
            .await
            .unwrap()
            .queue_urls()
            .is_empty()
    );
    // And for real, through the binary, twice.
    for _ in 0..2 {
        assert_eq!(
            stevedore(&moto, &["install", "--cluster", "demo"])
                .status
                .code(),
            Some(0)
        );
    }
    assert_eq!(
        c.sqs.list_queues().send().await.unwrap().queue_urls().len(),
        1
    );
}

/// Lines a child process prints, as they come.
pub(crate) fn lines_of(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    receive
}

/// Waits for a line containing `text`, returning the lines seen.
pub(crate) fn wait_for(
    lines: &std::sync::mpsc::Receiver<String>,
    text: &str,
    seen: &mut Vec<String>,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            let found = line.contains(text);
            seen.push(line);
            if found {
                return;
            }
        }
    }
    panic!(
        "no line with `{text}` within 30 s; saw:\n{}",
        seen.join("\n")
    );
}

#[tokio::test]
async fn run_wakes_on_events_and_spec_changes_skips_malformed_messages_and_stops_on_sigterm() {
    let moto = Moto::start();
    let c = clients(&moto);
    cluster(&moto, &c.ecs, [1, 1, 1, 1, 1, 1]).await;
    let queue_url = installed_queue(&c).await;
    let specs = specs_dir("  placement: {azBalanced: true}\n");

    let mut child = run_on_events(
        &moto,
        specs.path().to_str().unwrap(),
        &queue_url,
        "127.0.0.1:0",
    );
    let lines = lines_of(&mut child);
    let mut seen = vec![];
    let address = status_address(&lines, &mut seen);
    wait_for(&lines, "demo/web/web: Satisfied", &mut seen);

    // A malformed message is reported and deleted, and wakes nothing.
    c.sqs
        .send_message()
        .queue_url(&queue_url)
        .message_body("not an event")
        .send()
        .await
        .unwrap();
    wait_for(&lines, "events: malformed message", &mut seen);

    // An ECS event through EventBridge and SQS: a reconcile follows, long
    // before the hourly resync.
    let cluster_arn = c
        .ecs
        .describe_clusters()
        .clusters("demo")
        .send()
        .await
        .unwrap()
        .clusters()[0]
        .cluster_arn()
        .unwrap()
        .to_owned();
    let instance = c
        .ecs
        .list_container_instances()
        .cluster("demo")
        .send()
        .await
        .unwrap()
        .container_instance_arns()[0]
        .clone();
    let detail = serde_json::json!({"clusterArn": cluster_arn, "containerInstanceArn": instance, "status": "ACTIVE", "version": 9});
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .source("aws.ecs")
        .detail_type("ECS Container Instance State Change")
        .detail(detail.to_string())
        .build();
    c.events.put_events().entries(entry).send().await.unwrap();
    wait_for(
        &lines,
        "events: reconciling what they touched: 1 new (ContainerInstanceStateChange 1), 1 malformed",
        &mut seen,
    );
    wait_for(&lines, "demo/web/web: Satisfied", &mut seen);

    // Straight into the queue: the same event twice (at-least-once
    // delivery), then an older version of the instance (out of order).
    let envelope = |id: &str, version: u64| {
        serde_json::json!({
            "version": "0", "id": id, "detail-type": "ECS Container Instance State Change",
            "source": "aws.ecs", "account": "123456789012", "region": "us-east-1",
            "resources": [instance],
            "detail": {"clusterArn": cluster_arn, "containerInstanceArn": instance, "status": "ACTIVE", "version": version}
        })
        .to_string()
    };
    for body in [
        envelope("twice", 10),
        envelope("twice", 10),
        envelope("older", 8),
    ] {
        c.sqs
            .send_message()
            .queue_url(&queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
        // One at a time, so the order is the one sent.
        std::thread::sleep(Duration::from_millis(300));
    }
    // The first is news and wakes a reconcile; the other two are dropped.
    wait_for(&lines, "events: reconciling", &mut seen);
    wait_for(&lines, "demo/web/web: Satisfied", &mut seen);

    // Every message was deleted once handled: nothing left in the queue,
    // visible or in flight (a message received and not deleted stays in
    // flight for the queue's visibility timeout, so an empty receive would
    // not show it), in batches, never one by one.
    let deadline = Instant::now() + Duration::from_secs(20);
    while queue_left(&c.sqs, &queue_url).await != (0, 0) {
        assert!(Instant::now() < deadline, "messages left in the queue");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(moto.calls("DeleteMessage"), 0);
    assert!((3..=5).contains(&moto.calls("DeleteMessageBatch")));
    // The events are counted by outcome, and their lag measured.
    let metrics = ureq::get(&format!("http://{address}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    for expected in [
        r#"stevedore_events_total{outcome="malformed"} 1"#,
        r#"stevedore_events_total{outcome="new"} 2"#,
        r#"stevedore_events_total{outcome="duplicate"} 1"#,
        r#"stevedore_events_total{outcome="stale"} 1"#,
        // Only the event through EventBridge has a time to measure from.
        "stevedore_event_lag_seconds_count 1",
    ] {
        assert!(metrics.contains(expected), "{expected} not in:\n{metrics}");
    }

    // The specs are watched: a broken edit is reported, with its position,
    // and the last good policies stay; a good one is applied at once.
    let file = specs.path().join("web.yaml");
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, good.replace("azBalanced", "azBalancd")).unwrap();
    wait_for(&lines, "web.yaml:6:", &mut seen);
    wait_for(&lines, "keeping the last good policies", &mut seen);
    std::fs::write(&file, format!("{good}  mode: DryRun\n")).unwrap();
    wait_for(&lines, "specs: changed; 1 policies loaded", &mut seen);
    wait_for(&lines, "demo/web/web: Satisfied", &mut seen);

    // SIGTERM: it finishes cleanly.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    wait_for(&lines, "shutting down after 4 reconciles", &mut seen);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// Messages in a queue: visible, and received but not deleted (in flight).
pub(crate) async fn queue_left(sqs: &aws_sdk_sqs::Client, url: &str) -> (u64, u64) {
    use aws_sdk_sqs::types::QueueAttributeName;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let count = |name: QueueAttributeName| -> u64 {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|n| n.parse().ok())
            .unwrap_or(u64::MAX)
    };
    (
        count(QueueAttributeName::ApproximateNumberOfMessages),
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

#[tokio::test]
async fn run_serves_health_readiness_metrics_and_status() {
    let moto = Moto::start();
    let client = moto.client();
    cluster(&moto, &client, [3, 2, 1, 0, 0, 0]).await;
    // ECS refuses the first two attempts for their rate, and DynamoDB the
    // first lease write; the SDK's next attempts succeed, so the pass goes
    // on, and the throttles are counted.
    lease_table(&dynamodb(&moto)).await;
    moto.throttle("DescribeServices", 2);
    moto.throttle("UpdateItem", 1);
    let specs = specs_dir("  placement: {azBalanced: true}\n");
    let mut child = run_controller(
        &moto,
        specs.path().to_str().unwrap(),
        &[
            "--resync",
            "1h",
            "--listen",
            "127.0.0.1:0",
            "--lease-table",
            "stevedore-leases",
        ],
    );
    let lines = lines_of(&mut child);
    let mut seen = vec![];
    let address = status_address(&lines, &mut seen);
    wait_for(&lines, "demo/web/web: done: stop task", &mut seen);

    let get = |path: &str| {
        let mut response = ureq::get(&format!("http://{address}{path}"))
            .call()
            .unwrap();
        (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap(),
        )
    };
    assert_eq!(get("/healthz").0, 200);
    assert_eq!(get("/readyz").0, 200, "ready after the first full read");
    let (code, metrics) = get("/metrics");
    assert_eq!(code, 200);
    for expected in [
        r#"stevedore_reconciles_total{cluster="demo",result="ok"} 1"#,
        r#"stevedore_actions_total{kind="stop_task",result="ok"} 1"#,
        r#"stevedore_api_calls_total{operation="StopTask"} 1"#,
        r#"stevedore_api_calls_total{operation="DescribeTasks"}"#,
        r#"stevedore_api_calls_total{operation="DescribeServices"} 1"#,
        // The lease's calls are counted too.
        r#"stevedore_api_calls_total{operation="UpdateItem"}"#,
        r#"stevedore_api_throttles_total{operation="DescribeServices"} 2"#,
        r#"stevedore_api_throttles_total{operation="UpdateItem"} 1"#,
        r#"stevedore_skew{policy="web",service="web",topology="zone"} 5"#,
        r#"stevedore_policies{state="Converging"} 1"#,
    ] {
        assert!(metrics.contains(expected), "{expected} not in:\n{metrics}");
    }
    let (code, status) = get("/status");
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let web = &status["policies"][0];
    assert_eq!(
        (web["policy"].as_str(), web["state"].as_str()),
        (Some("web"), Some("Converging"))
    );
    let conditions = web["conditions"].as_array().unwrap();
    let satisfied = conditions
        .iter()
        .find(|c| c["type"] == "Satisfied")
        .unwrap();
    assert_eq!(satisfied["status"], "False");
    assert!(
        satisfied["lastTransitionTime"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(status["lastActions"].as_array().unwrap().len(), 1);

    // `stevedore status` prints it as a table.
    let table = Command::new(env!("CARGO_BIN_EXE_stevedore"))
        .args(["status", "--url", &format!("http://{address}")])
        .output()
        .unwrap();
    assert_eq!(table.status.code(), Some(0));
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("POLICY/SERVICE"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("demo") && l.contains("web/web") && l.contains("Converging")),
        "{table}"
    );
    assert!(table.contains("stop task"), "{table}");

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    wait_for(&lines, "shutting down", &mut seen);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[tokio::test]
async fn actions_and_status_changes_are_published_to_eventbridge() {
    let moto = Moto::start();
    let c = clients(&moto);
    cluster(&moto, &c.ecs, [3, 2, 1, 0, 0, 0]).await;
    // An ordinary rule routes stevedore's events to a queue.
    let queue_url = c
        .sqs
        .create_queue()
        .queue_name("audit")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    c.events
        .put_rule()
        .name("stevedore-audit")
        .event_pattern(r#"{"source": ["stevedore"]}"#)
        .send()
        .await
        .unwrap();
    c.events
        .put_targets()
        .rule("stevedore-audit")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn("arn:aws:sqs:us-east-1:123456789012:audit")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let specs = specs_dir("  placement: {azBalanced: true}\n");
    let out = stevedore(
        &moto,
        &[
            "run",
            "--specs",
            specs.path().to_str().unwrap(),
            "--once",
            "--audit-bus",
            "default",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut events = vec![];
    for _ in 0..3 {
        let received = c
            .sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        events.extend(
            received
                .messages()
                .iter()
                .map(|m| serde_json::from_str::<serde_json::Value>(m.body().unwrap()).unwrap()),
        );
    }
    let of = |kind: &str| -> Vec<&serde_json::Value> {
        events.iter().filter(|e| e["detail-type"] == kind).collect()
    };
    let actions = of("stevedore Action");
    assert_eq!(actions.len(), 1, "{events:#?}");
    let action = &actions[0]["detail"];
    assert_eq!(
        (
            action["policy"].as_str(),
            action["service"].as_str(),
            action["result"].as_str()
        ),
        (Some("web"), Some("web"), Some("ok"))
    );
    assert_eq!(action["action"]["action"], "stopTask");
    let changes = of("stevedore Status Change");
    assert_eq!(changes.len(), 1, "{events:#?}");
    assert_eq!(changes[0]["detail"]["to"], "Converging");
    assert!(events.iter().all(|e| e["source"] == "stevedore"));
}

#[tokio::test]
async fn json_logs_carry_each_actions_policy_service_rule_and_reason() {
    let moto = Moto::start();
    let client = moto.client();
    cluster(&moto, &client, [3, 2, 1, 0, 0, 0]).await;
    let specs = specs_dir("  placement: {azBalanced: true}\n");
    let out = stevedore(
        &moto,
        &[
            "run",
            "--specs",
            specs.path().to_str().unwrap(),
            "--once",
            "--log-format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let done: Vec<&serde_json::Value> = lines.iter().filter(|l| l["result"] == "done").collect();
    assert_eq!(done.len(), 1, "{lines:#?}");
    let action = done[0];
    assert_eq!(
        (
            action["cluster"].as_str(),
            action["policy"].as_str(),
            action["service"].as_str(),
            action["rule"].as_str(),
            action["level"].as_str(),
        ),
        (
            Some("demo"),
            Some("web"),
            Some("web"),
            Some("spread(zone, maxSkew 1)"),
            Some("INFO")
        )
    );
    assert!(
        action["reason"].as_str().unwrap().contains("zone skew"),
        "{action}"
    );
}

pub(crate) fn dynamodb(moto: &Moto) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .endpoint_url(moto.url())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

pub(crate) async fn lease_table(client: &aws_sdk_dynamodb::Client) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    client
        .create_table()
        .table_name("stevedore-leases")
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("name")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("name")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn one_replica_leads_and_a_stalled_leader_stops_before_another_starts() {
    use stevedore::controller::lease::{Lease, Standing};
    let moto = Moto::start();
    let client = dynamodb(&moto);
    lease_table(&client).await;
    let duration = Duration::from_secs(3);
    let mut a = Lease::new(
        client.clone(),
        "stevedore-leases",
        "demo",
        "replica-a",
        duration,
    );
    let mut b = Lease::new(client, "stevedore-leases", "demo", "replica-b", duration);
    assert_eq!(a.margin, 1_000);

    // Times are passed in, so the test controls both clocks.
    assert_eq!(
        a.tick(0).await.unwrap(),
        &Standing::Leader {
            token: 1,
            until: 2_000
        }
    );
    assert_eq!(b.tick(0).await.unwrap(), &Standing::Follower);
    // A renews; its term (token) stays.
    assert_eq!(
        a.tick(1_000).await.unwrap(),
        &Standing::Leader {
            token: 1,
            until: 3_000
        }
    );
    // Then A stalls. It stops counting itself leader at 3,000 by its clock...
    assert!(a.leads(2_999) && !a.leads(3_000));
    // ...while B cannot take over before 4,000, a full margin later.
    assert_eq!(b.tick(3_500).await.unwrap(), &Standing::Follower);
    assert_eq!(
        b.tick(4_001).await.unwrap(),
        &Standing::Leader {
            token: 2,
            until: 6_001
        }
    );
    // A wakes up: it leads no more and cannot take the lease back.
    assert_eq!(a.tick(4_100).await.unwrap(), &Standing::Follower);
    assert!(!a.leads(4_100) && b.leads(4_100));
    assert_eq!(
        b.token(4_100),
        Some(2),
        "a new term, a higher fencing token"
    );
}

#[tokio::test]
async fn of_two_replicas_with_one_lease_only_the_leader_acts() {
    let moto = Moto::start();
    let client = moto.client();
    cluster(&moto, &client, [3, 2, 1, 0, 0, 0]).await;
    lease_table(&dynamodb(&moto)).await;
    let specs = specs_dir("  placement: {azBalanced: true}\n");
    let dir = specs.path().to_str().unwrap().to_owned();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "run",
            "--specs",
            &dir,
            "--lease-table",
            "stevedore-leases",
            "--listen",
            "off",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let mut leader = controller(
        &moto,
        &args(&["--resync", "1h"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &[("HOSTNAME", "replica-a")],
    );
    let lines = lines_of(&mut leader);
    let mut seen = vec![];
    wait_for(&lines, "leader: acting", &mut seen);
    wait_for(&lines, "done: stop task", &mut seen);

    // A second replica plans and reports, and acts on nothing.
    let extra = args(&["--once"]);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let follower = stevedore(&moto, &extra);
    let text = String::from_utf8_lossy(&follower.stdout);
    assert_eq!(follower.status.code(), Some(0), "{text}");
    assert!(text.contains("not the leader"), "{text}");
    assert!(!text.contains("done:"), "{text}");
    assert_eq!(stopped(&client).await, 1, "only the leader's stop");

    Command::new("kill")
        .args(["-TERM", &leader.id().to_string()])
        .status()
        .unwrap();
    wait_for(&lines, "shutting down", &mut seen);
    assert_eq!(leader.wait().unwrap().code(), Some(0));
}

/// The event queue `install` makes for cluster `demo`, by its URL.
pub(crate) async fn installed_queue(c: &stevedore::setup::install::Clients) -> String {
    stevedore::setup::install::install(c, "demo", "stevedore-demo", false, &mut vec![])
        .await
        .unwrap()
        .unwrap()
        .queue_url
}

/// `stevedore run --specs SPECS ARGS...` against moto, its output piped.
pub(crate) fn run_controller(moto: &Moto, specs: &str, args: &[&str]) -> Child {
    let mut all = vec!["run", "--specs", specs];
    all.extend_from_slice(args);
    controller(moto, &all, &[])
}

/// The binary running on the event queue with an hourly resync (so that
/// only events make passes), serving its status on `listen`.
pub(crate) fn run_on_events(moto: &Moto, specs: &str, queue_url: &str, listen: &str) -> Child {
    run_controller(
        moto,
        specs,
        &[
            "--queue-url",
            queue_url,
            "--resync",
            "1h",
            "--listen",
            listen,
        ],
    )
}

/// The binary running as a controller against moto, its output piped.
pub(crate) fn controller(moto: &Moto, args: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_stevedore"))
        .args(args)
        .env("AWS_ENDPOINT_URL", moto.url())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits for the controller to log where it serves its status, and returns
/// that address.
pub(crate) fn status_address(
    lines: &std::sync::mpsc::Receiver<String>,
    seen: &mut Vec<String>,
) -> String {
    wait_for(lines, "listening on ", seen);
    seen.last()
        .and_then(|l| l.split("listening on ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned()
}

/// A git repository in `dir` whose one commit holds `web.yaml`, a policy
/// balancing `demo/web` over zones.
fn policies_repository(dir: &std::path::Path) {
    use crate::cli::git;
    git(dir, &["init", "-q"]);
    std::fs::write(
        dir.join("web.yaml"),
        "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata: {name: web}\nspec:\n  target: {cluster: demo, service: web}\n  placement: {azBalanced: true}\n",
    )
    .unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "policies"]);
}

#[tokio::test]
async fn run_follows_a_git_repository_and_keeps_the_last_good_commit() {
    use crate::cli::git;
    let moto = Moto::start();
    let client = moto.client();
    cluster(&moto, &client, [1, 1, 1, 1, 1, 1]).await;
    let origin = tempfile::tempdir().unwrap();
    policies_repository(origin.path());
    let policy = std::fs::read_to_string(origin.path().join("web.yaml")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let url = format!("file://{}", origin.path().display());
    let cache_dir = cache.path().join("clone");

    // `plan` reads the same repository.
    let planned = stevedore(&moto, &["plan", "--specs", &url, "--git-ref", "main"]);
    assert_eq!(planned.status.code(), Some(0), "{planned:?}");
    assert!(String::from_utf8_lossy(&planned.stdout).contains("web/web: Satisfied"));
    assert!(String::from_utf8_lossy(&planned.stderr).contains("specs: commit "));

    let mut child = run_controller(
        &moto,
        &url,
        &[
            "--git-poll",
            "1s",
            "--git-cache",
            cache_dir.to_str().unwrap(),
            "--resync",
            "1h",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let lines = lines_of(&mut child);
    let mut seen = vec![];
    let address = status_address(&lines, &mut seen);
    wait_for(&lines, "demo/web/web: Satisfied", &mut seen);
    let commit = |seen: &[String]| -> String {
        seen.iter()
            .rev()
            .find_map(|l| l.split("specs: commit ").nth(1))
            .and_then(|l| l.split(':').next())
            .unwrap()
            .to_owned()
    };
    let first = commit(&seen);
    let status = || -> serde_json::Value {
        let body = ureq::get(&format!("http://{address}/status"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&body).unwrap()
    };
    assert_eq!(status()["commit"], first.as_str());

    // A broken commit is reported and the last good policies stay.
    std::fs::write(
        origin.path().join("web.yaml"),
        policy.replace("azBalanced", "azBalancd"),
    )
    .unwrap();
    git(origin.path(), &["commit", "-q", "-am", "broken"]);
    wait_for(&lines, "keeping the last good policies", &mut seen);
    assert_eq!(status()["commit"], first.as_str());

    // A good one is applied.
    std::fs::write(
        origin.path().join("web.yaml"),
        format!("{policy}  mode: DryRun\n"),
    )
    .unwrap();
    git(origin.path(), &["commit", "-q", "-am", "dry run"]);
    wait_for(&lines, "policies loaded, reconciling", &mut seen);
    let third = commit(&seen);
    assert_ne!(third, first);
    assert_eq!(status()["commit"], third.as_str());

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    wait_for(&lines, "shutting down", &mut seen);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// The text of the first `<tag>` element in `xml` after `after`.
fn xml_text<'a>(xml: &'a str, after: &str, tag: &str) -> &'a str {
    let from = xml
        .find(after)
        .unwrap_or_else(|| panic!("{after} not in {xml}"))
        + after.len();
    let open = format!("<{tag}>");
    let start = from + xml[from..].find(&open).unwrap() + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>")).unwrap();
    &xml[start..end]
}

#[tokio::test]
async fn the_cloudformation_template_deploys_and_its_command_runs() {
    let moto = Moto::start();
    let c = clients(&moto);
    cluster(&moto, &c.ecs, [3, 2, 1, 0, 0, 0]).await;
    let origin = tempfile::tempdir().unwrap();
    policies_repository(origin.path());
    let specs = format!("file://{}", origin.path().display());

    // Deployed on moto's CloudFormation as an operator would deploy it.
    let template = std::fs::read_to_string(repo("examples/deploy/cloudformation.yaml")).unwrap();
    let parameters = [
        ("ClusterName", "demo"),
        ("Image", "stevedore:test"),
        ("SpecsRepository", specs.as_str()),
        ("Subnets", "subnet-1,subnet-2"),
        ("SecurityGroup", "sg-1"),
    ];
    let mut create = vec![
        ("Action".to_owned(), "CreateStack".to_owned()),
        ("Version".to_owned(), "2010-05-15".to_owned()),
        ("StackName".to_owned(), "stevedore-demo".to_owned()),
        ("TemplateBody".to_owned(), template),
        (
            "Capabilities.member.1".to_owned(),
            "CAPABILITY_NAMED_IAM".to_owned(),
        ),
    ];
    for (i, (key, value)) in parameters.iter().enumerate() {
        let member = format!("Parameters.member.{}", i + 1);
        create.push((format!("{member}.ParameterKey"), key.to_string()));
        create.push((format!("{member}.ParameterValue"), value.to_string()));
    }
    let create: Vec<(&str, &str)> = create
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    moto.query("cloudformation", &create);
    let stack = moto.query(
        "cloudformation",
        &[
            ("Action", "DescribeStacks"),
            ("Version", "2010-05-15"),
            ("StackName", "stevedore-demo"),
        ],
    );
    assert_eq!(
        xml_text(&stack, "<StackName>", "StackStatus"),
        "CREATE_COMPLETE"
    );
    let queue_url = xml_text(&stack, "<OutputKey>QueueUrl</OutputKey>", "OutputValue");
    let lease_table = xml_text(&stack, "<OutputKey>LeaseTable</OutputKey>", "OutputValue");

    // The role CloudFormation made holds the policy `iam-policy` prints for
    // this account and region. (moto 5.2.5 returns the document as a Python
    // literal, with single quotes; the policy has no quote of its own.)
    let role = moto.query(
        "iam",
        &[
            ("Action", "GetRolePolicy"),
            ("Version", "2010-05-08"),
            ("RoleName", "stevedore-demo"),
            ("PolicyName", "stevedore"),
        ],
    );
    let document: serde_json::Value = serde_json::from_str(
        &xml_text(&role, "<GetRolePolicyResult>", "PolicyDocument").replace('\'', "\""),
    )
    .unwrap();
    let scope = stevedore::setup::iam::Scope {
        cluster: "demo",
        region: Some("us-east-1"),
        account: Some("123456789012"),
        queue: "stevedore-demo",
    };
    assert_eq!(
        document,
        stevedore::setup::iam::with_lease(
            stevedore::setup::iam::policy(&scope),
            &scope,
            lease_table
        )
    );

    // The rule sends the cluster's events to the queue, as `install`'s does.
    let rule = c
        .events
        .describe_rule()
        .name("stevedore-demo")
        .send()
        .await
        .unwrap();
    let pattern: serde_json::Value = serde_json::from_str(rule.event_pattern().unwrap()).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&stevedore::setup::install::event_pattern(
            "arn:aws:ecs:us-east-1:123456789012:cluster/demo",
        ))
        .unwrap();
    assert_eq!(pattern, expected);
    let targets = c
        .events
        .list_targets_by_rule()
        .rule("stevedore-demo")
        .send()
        .await
        .unwrap();
    assert_eq!(
        targets.targets()[0].arn(),
        "arn:aws:sqs:us-east-1:123456789012:stevedore-demo"
    );

    // The registered task definition's command, run as ECS would start the
    // container (with a free port, and once): it reads the policies from
    // git, takes the lease in the stack's table and acts.
    let definition = c
        .ecs
        .describe_task_definition()
        .task_definition("stevedore-demo")
        .send()
        .await
        .unwrap();
    let container = &definition
        .task_definition()
        .unwrap()
        .container_definitions()[0];
    let mut command: Vec<&str> = container.command().iter().map(String::as_str).collect();
    assert_eq!(command[0], "run");
    assert!(command.contains(&queue_url) && command.contains(&lease_table));
    for arg in command.iter_mut() {
        if *arg == "0.0.0.0:9464" {
            *arg = "127.0.0.1:0";
        }
    }
    command.push("--once");
    let out = stevedore(&moto, &command);
    let logs = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{logs}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One move within the budget (maxUnavailable 1), logged as JSON.
    assert_eq!(stopped(&c.ecs).await, 1, "{logs}");
    assert!(
        logs.contains(r#""rule":"spread(zone, maxSkew 1)""#),
        "{logs}"
    );
    let lease = dynamodb(&moto)
        .get_item()
        .table_name(lease_table)
        .key(
            "name",
            aws_sdk_dynamodb::types::AttributeValue::S("stevedore".into()),
        )
        .send()
        .await
        .unwrap();
    assert!(
        lease.item().is_some(),
        "the lease was taken in the stack's table"
    );
}

#[tokio::test]
async fn plan_reads_a_private_repository_over_https_with_a_token_in_its_url_or_the_environment() {
    let moto = Moto::start();
    let client = moto.client();
    cluster(&moto, &client, [1, 1, 1, 1, 1, 1]).await;
    let root = tempfile::tempdir().unwrap();
    let origin = root.path().join("policies.git");
    std::fs::create_dir_all(&origin).unwrap();
    policies_repository(&origin);
    let host = crate::githost::serve(root.path(), true, Some(("x-access-token", "s3cret")));
    let ca = root.path().join("ca.pem");
    std::fs::write(&ca, host.ca_pem.as_deref().unwrap()).unwrap();
    let trust = [
        ("SSL_CERT_FILE", ca.to_str().unwrap()),
        // Never ask on a terminal, as a controller must not.
        ("GIT_TERMINAL_PROMPT", "0"),
    ];
    let with_token = host
        .url
        .replace("https://", "https://x-access-token:s3cret@")
        + "/policies.git";
    let plan = |url: &str, env: &[(&str, &str)]| {
        let out = stevedore_with_env(&moto, &["plan", "--specs", url, "--git-ref", "main"], env);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !stdout.contains("s3cret") && !stderr.contains("s3cret"),
            "the token is shown: {stdout}{stderr}"
        );
        (out.status.code(), stdout, stderr)
    };

    // With the token in the URL, over TLS with the host's CA trusted.
    let (code, stdout, stderr) = plan(&with_token, &trust);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("web/web: Satisfied"), "{stdout}");
    assert!(stderr.contains("specs: commit "), "{stderr}");
    assert!(host.served.load(std::sync::atomic::Ordering::SeqCst) >= 2);

    // The token from the environment, as ECS injects a secret, with the
    // URL free of it.
    let (code, stdout, stderr) = plan(
        &format!("{}/policies.git", host.url),
        &[
            trust[0],
            trust[1],
            ("STEVEDORE_GIT_TOKEN", "s3cret"),
            ("STEVEDORE_GIT_USERNAME", "x-access-token"),
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("web/web: Satisfied"), "{stdout}");

    // Without it, the host refuses, and the error says so.
    let (code, _, stderr) = plan(&format!("{}/policies.git", host.url), &trust);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(host.refused.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(
        stderr.contains(&format!("error: git {}/policies.git: ", host.url))
            && stderr.contains("Failed to obtain credentials")
            && stderr.contains("set STEVEDORE_GIT_TOKEN"),
        "{stderr}"
    );

    // Without the CA, the certificate is not trusted, and nothing is sent.
    let served = host.served.load(std::sync::atomic::Ordering::SeqCst);
    let (code, _, stderr) = plan(&with_token, &[("GIT_TERMINAL_PROMPT", "0")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        host.served.load(std::sync::atomic::Ordering::SeqCst),
        served
    );
    assert!(
        stderr.contains("error: git https://x-access-token:***@")
            && stderr.contains("invalid peer certificate: UnknownIssuer")
            && stderr.contains("add its CA to SSL_CERT_FILE"),
        "{stderr}"
    );
}

#[tokio::test]
async fn plan_leaves_a_fargate_service_alone_and_says_why() {
    let moto = Moto::start();
    let client = moto.client();
    cluster(&moto, &client, [1, 1, 1, 1, 1, 1]).await;
    client
        .create_service()
        .cluster("demo")
        .service_name("web-fargate")
        .task_definition("web")
        .desired_count(2)
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .send()
        .await
        .unwrap();
    // One policy for every `web*` service: one task per host.
    let specs = tempfile::tempdir().unwrap();
    std::fs::write(
        specs.path().join("web.yaml"),
        "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata: {name: web}\nspec:\n  target: {cluster: demo, serviceSelector: {namePattern: \"web*\"}}\n  placement: {oneTaskPerHost: {}}\n",
    )
    .unwrap();
    let out = stevedore(&moto, &["plan", "--specs", specs.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("web/web-fargate: Unsatisfiable") && stdout.contains("runs on Fargate"),
        "{stdout}"
    );
    assert!(stdout.contains("web/web: Satisfied"), "{stdout}");
    assert!(!stdout.contains("desiredCount 2 ->"), "{stdout}");
}
