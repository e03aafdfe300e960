//! The AWS backend over the wire against moto: what a snapshot reads, how
//! Describe calls are batched, what one reconcile stops, protection,
//! partial refresh, CloudWatch metrics, and an unreachable endpoint.

use super::*;

#[tokio::test]
async fn the_snapshot_reads_services_hosts_zones_and_tasks() {
    let (_moto, client) = crate::aws::demo([3, 2, 1, 0, 0, 0]).await;
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
    let (_moto, client) = crate::aws::demo([42, 42, 42, 42, 41, 41]).await;
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
    let hosts = cluster(&moto, [3, 2, 1, 0, 0, 0]).await;
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

    let reconciled =
        stevedore::controller::reconcile_once(&backend, "demo", &policies.clone().into(), 0)
            .await
            .unwrap();
    assert_eq!(reconciled.executed.len(), 1);
    assert!(reconciled.executed[0].1.is_ok());
    // Everything the backend called is allowed by `stevedore iam-policy`.
    for operation in backend.api_calls().keys() {
        assert!(
            crate::aws::controller_role_allows(&format!("ecs:{operation}")),
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
    let (moto, client) = crate::aws::demo([3, 2, 1, 0, 0, 0]).await;
    let backend = AwsBackend::new(client.clone());
    let policies = policy("  placement: {azBalanced: true}\n");
    // What the plan would stop, were nothing protected.
    let snapshot = backend.snapshot("demo").await.unwrap();
    let plan = stevedore::plan::plan(&policies, &snapshot, snapshot.taken_at);
    let ActionKind::StopTask { task: first, .. } = &plan.actions[0].kind else {
        panic!("{plan:#?}")
    };
    moto.protect(first);

    let reconciled =
        stevedore::controller::reconcile_once(&backend, "demo", &policies.clone().into(), 0)
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
    let hosts = cluster(&moto, [2, 1, 1, 0, 0, 0]).await;
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
    let new = crate::aws::start_web_task(&client, "demo", &hosts[5]).await;
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

#[tokio::test]
async fn cloudwatch_data_drives_a_scale_out_and_missing_data_holds() {
    let (moto, client) = crate::aws::demo([1, 1, 1, 1, 0, 0]).await;
    let cw = cloudwatch(&moto);
    let backend = backend(&moto, client.clone());
    let policies = policy(
        "  scaling:\n    minTasks: 2\n    maxTasks: 10\n    metric: {cloudWatch: {namespace: AWS/ECS, name: CPUUtilization, dimensions: {ClusterName: \"{cluster}\", ServiceName: \"{service}\"}}}\n    scaleOutAbove: 70\n    scaleInBelow: 30\n    scaleOutStep: \"50%\"\n    scaleOutAfter: 1\n",
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
    let held =
        stevedore::controller::reconcile_once(&backend, "demo", &policies.clone().into(), now)
            .await
            .unwrap();
    assert!(held.executed.is_empty(), "{held:#?}");
    let why = held.plan.statuses[0].scaling.clone().unwrap();
    assert!(why.contains("no data"), "{why}");
    assert_eq!(desired(client.clone()).await, 4);

    // 85% CPU for this service (another service's data must not count).
    for (service, value) in [("web", 85.0), ("api", 5.0)] {
        put_cpu(&cw, service, value, now - 30_000).await;
    }
    let scaled =
        stevedore::controller::reconcile_once(&backend, "demo", &policies.clone().into(), now)
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
    assert!(crate::aws::controller_role_allows(
        "cloudwatch:GetMetricData"
    ));
}

#[tokio::test]
async fn a_service_with_an_application_auto_scaling_target_is_not_scaled() {
    let (moto, client) = crate::aws::demo([1, 1, 1, 1, 0, 0]).await;
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
    let reconciled =
        stevedore::controller::reconcile_once(&backend, "demo", &policies.clone().into(), 0)
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
    assert!(crate::aws::controller_role_allows(
        "application-autoscaling:DescribeScalableTargets"
    ));
}

#[tokio::test]
async fn a_dry_run_policy_stops_nothing() {
    let (_moto, client) = crate::aws::demo([3, 2, 1, 0, 0, 0]).await;
    let backend = AwsBackend::new(client);
    let policies = policy("  placement: {azBalanced: true}\n  mode: DryRun\n");
    let reconciled =
        stevedore::controller::reconcile_once(&backend, "demo", &policies.clone().into(), 0)
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
    let hosts = cluster(&moto, [1, 1, 1, 1, 1, 1]).await;
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
    let reconciled =
        stevedore::controller::reconcile_once(&backend, "demo", &policies.clone().into(), 0)
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
    let error =
        stevedore::controller::reconcile_once(&backend, "demo", &policies.clone().into(), 0)
            .await
            .unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_eq!(backend.api_calls().get("StopTask"), None);
}

/// An endpoint on 127.0.0.1:0 that answers every request with `status`,
/// `body` and a request id, as a proxy or a broken stand-in might.
fn endpoint_answering(status: &'static str, content_type: &'static str, body: String) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut request = vec![0; length];
            let _ = reader.read_exact(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\nx-amzn-requestid: req-42\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{address}")
}

/// What a failed call reports, whatever the endpoint answered: one line
/// with the operation, HTTP status, AWS error code, message and request id,
/// never the raw response (kept for the debug log).
#[tokio::test]
async fn a_failed_call_is_reported_in_one_short_line() {
    let backend_at = |url: String| {
        let config = aws_sdk_ecs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(url)
            .region(Region::new("us-east-1"))
            .retry_config(aws_sdk_ecs::config::retry::RetryConfig::disabled())
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .build();
        AwsBackend::new(Client::from_conf(config))
    };
    let html = format!(
        "<html><head><title>500 Internal Server Error</title></head><body>{}</body></html>",
        "<p>upstream failed</p>\n".repeat(400)
    );
    let cases = [
        (
            endpoint_answering("500 Internal Server Error", "text/html", html),
            "ListServices: HTTP 500: the response could not be read (",
        ),
        (
            endpoint_answering(
                "400 Bad Request",
                "application/x-amz-json-1.1",
                r#"{"__type":"InvalidParameterException","message":"The cluster is not valid."}"#
                    .into(),
            ),
            "ListServices: HTTP 400 InvalidParameterException: The cluster is not valid. (request id req-42)",
        ),
        (
            // A field of the wrong type: the SDK cannot read the answer.
            endpoint_answering(
                "200 OK",
                "application/x-amz-json-1.1",
                format!(r#"{{"serviceArns": 5, "padding": "{}"}}"#, "x".repeat(8000)),
            ),
            "ListServices: HTTP 200: the response could not be read (",
        ),
    ];
    for (url, expected) in cases {
        let error = backend_at(url)
            .snapshot("demo")
            .await
            .unwrap_err()
            .to_string();
        assert!(error.starts_with(expected), "{error}");
        assert!(error.ends_with("(request id req-42)"), "{error}");
        assert!(!error.contains('\n') && error.len() < 400, "{error}");
        assert!(
            !error.contains("<html") && !error.contains("xxxx"),
            "{error}"
        );
    }
}

/// The scale-in protection dance over the wire: protect the tasks to keep
/// (in calls of at most ten, expiring, as AWS requires), set the count,
/// and once ECS has stopped the chosen task, release what stevedore
/// protected; the task the user protected stays protected throughout.
#[tokio::test]
async fn a_scale_in_protects_the_kept_tasks_sets_the_count_and_releases_them() {
    // 14 tasks: 3, 3 on zone a's hosts, 2 on each other host.
    let (moto, client) = crate::aws::demo([3, 3, 2, 2, 2, 2]).await;
    let cw = cloudwatch(&moto);
    let backend = backend(&moto, client.clone());
    let specs: stevedore::spec::Specs = policy(
        "  placement:\n    azBalanced: true\n    spread: [{topologyKey: host, maxSkew: 1}]\n  scaling:\n    minTasks: 2\n    maxTasks: 20\n    metric: {cloudWatch: {namespace: AWS/ECS, name: CPUUtilization, dimensions: {ClusterName: \"{cluster}\", ServiceName: \"{service}\"}}}\n    scaleOutAbove: 70\n    scaleInBelow: 30\n    scaleInAfter: 1\n    scaleInStabilization: 0s\n",
    )
    .into();
    let now = stevedore::model::wall_clock();
    put_cpu(&cw, "web", 10.0, now - 30_000).await;
    let tasks = client
        .list_tasks()
        .cluster("demo")
        .service_name("web")
        .send()
        .await
        .unwrap()
        .task_arns()
        .to_vec();
    assert_eq!(tasks.len(), 14);
    // The user protected one task.
    let users = tasks[0].clone();
    moto.protect(&users);

    let mut memory = stevedore::plan::Memory::default();
    let mut snapshot = backend.snapshot("demo").await.unwrap();
    let scaled = stevedore::controller::reconcile(
        &backend,
        "demo",
        &mut snapshot,
        true,
        &specs,
        now,
        &mut memory,
    )
    .await
    .unwrap();
    let kinds: Vec<&ActionKind> = scaled.executed.iter().map(|(a, _)| &a.kind).collect();
    assert!(
        scaled.executed.iter().all(|(_, r)| r.is_ok()),
        "{scaled:#?}"
    );
    let ActionKind::ProtectTasks {
        tasks: kept,
        minutes,
    } = kinds[0]
    else {
        panic!("{kinds:?}");
    };
    assert_eq!(kinds[1], &ActionKind::SetDesiredCount { from: 14, to: 13 });
    assert_eq!(*minutes, stevedore::plan::scale_in::PROTECTION_MINUTES);
    // All but the user's task and the one to go: in two calls (10 + 2).
    assert_eq!(kept.len(), 12);
    assert!(!kept.contains(&users));
    assert_eq!(moto.calls("UpdateTaskProtection"), 2);
    let going: Vec<&String> = tasks
        .iter()
        .filter(|t| !kept.contains(t) && **t != users)
        .collect();
    assert_eq!(going.len(), 1);
    // The kept ones and the user's.
    assert_eq!(moto.protected().len(), 13);

    // ECS scales in: it stops the one task not protected.
    client
        .stop_task()
        .cluster("demo")
        .task(going[0].as_str())
        .send()
        .await
        .unwrap();
    let mut snapshot = backend.snapshot("demo").await.unwrap();
    let released = stevedore::controller::reconcile(
        &backend,
        "demo",
        &mut snapshot,
        true,
        &specs,
        now + 60_000,
        &mut memory,
    )
    .await
    .unwrap();
    let kinds: Vec<&ActionKind> = released.executed.iter().map(|(a, _)| &a.kind).collect();
    assert_eq!(
        kinds,
        [&ActionKind::UnprotectTasks {
            tasks: kept.clone()
        }],
        "{released:#?}"
    );
    assert!(released.executed[0].1.is_ok());
    // Only the user's protection is left.
    assert_eq!(
        moto.protected(),
        std::collections::BTreeSet::from([users.clone()])
    );
    assert_eq!(moto.calls("UpdateTaskProtection"), 4);
    assert!(crate::aws::controller_role_allows(
        "ecs:UpdateTaskProtection"
    ));
}

/// Puts one CPUUtilization data point for a service of cluster `demo`.
async fn put_cpu(cw: &aws_sdk_cloudwatch::Client, service: &str, value: f64, at: u64) {
    let dimension = |name: &str, value: &str| {
        aws_sdk_cloudwatch::types::Dimension::builder()
            .name(name)
            .value(value)
            .build()
    };
    cw.put_metric_data()
        .namespace("AWS/ECS")
        .metric_data(
            aws_sdk_cloudwatch::types::MetricDatum::builder()
                .metric_name("CPUUtilization")
                .dimensions(dimension("ClusterName", "demo"))
                .dimensions(dimension("ServiceName", service))
                .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from_millis(
                    at as i64,
                ))
                .value(value)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// ECS's own service events for an AZ rebalancing of `web` (4/2/0), as
/// DescribeServices lists them.
const REBALANCING_STARTED: &str = "service (web) is not AZ balanced with 4 tasks in us-east-1a, 2 tasks in us-east-1b, and 0 tasks in us-east-1c. AZ Rebalancing in progress.";
const REBALANCING_COMPLETED: &str = "service (web) is AZ balanced with 2 tasks in us-east-1a, 2 tasks in us-east-1b, and 2 tasks in us-east-1c.";

fn service_event(id: &str, message: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "createdAt": 1.7e9, "message": message})
}

/// Zones and hosts, the policy of the AZ rebalancing tests.
fn zones_and_hosts() -> Vec<stevedore::spec::Policy> {
    crate::aws::policy(
        "  placement:\n    azBalanced: true\n    spread: [{topologyKey: host, maxSkew: 1}]\n",
    )
}

/// ECS's AZ rebalancing, as DescribeServices tells it (moto knows neither
/// the field nor service events; the front answers them as ECS does),
/// drives the planner's decisions: ENABLED, the zones are delegated and
/// nothing is stopped for them; the last rebalancing event STARTED, no
/// move at all; COMPLETED after it, moves again; `maximumPercent` 100,
/// ECS cannot rebalance and stevedore moves the zones itself, saying why.
#[tokio::test]
async fn ecs_az_rebalancing_read_from_describe_services_drives_the_plan() {
    let (moto, client) = crate::aws::demo([4, 0, 2, 0, 0, 0]).await;
    let backend = AwsBackend::new(client);
    let policy = zones_and_hosts();
    let plan =
        |snapshot: &stevedore::model::ClusterSnapshot| stevedore::plan::plan(&policy, snapshot, 0);

    // Off (moto's answer as is): stevedore balances the zones.
    let snapshot = backend.snapshot("demo").await.unwrap();
    assert!(!snapshot.services[0].az_rebalancing);
    let off = plan(&snapshot);
    assert_eq!(off.statuses[0].state, State::Converging);
    assert!(!off.actions.is_empty());

    // ENABLED: the zones (4/2/0) are ECS's; stevedore waits for it.
    moto.service_fields(
        "web",
        serde_json::json!({"availabilityZoneRebalancing": "ENABLED"}),
    );
    let snapshot = backend.snapshot("demo").await.unwrap();
    let web = &snapshot.services[0];
    assert!(
        web.az_rebalancing && !web.az_rebalancing_in_progress,
        "{web:#?}"
    );
    let on = plan(&snapshot);
    assert!(on.actions.is_empty(), "{:#?}", on.actions);
    assert!(
        on.statuses[0]
            .reason
            .starts_with("zone skew 4 > maxSkew 1, zones delegated to ECS AZ rebalancing"),
        "{:#?}",
        on.statuses[0]
    );

    // Its service events, newest first: rebalancing under way, then done.
    let (started, completed, event) = (REBALANCING_STARTED, REBALANCING_COMPLETED, service_event);
    moto.service_fields(
        "web",
        serde_json::json!({"availabilityZoneRebalancing": "ENABLED", "events": [event("2", "service (web) has started 1 tasks: (task x)."), event("1", started)]}),
    );
    let snapshot = backend.snapshot("demo").await.unwrap();
    assert!(snapshot.services[0].az_rebalancing_in_progress);
    let during = plan(&snapshot);
    assert_eq!(
        during.statuses[0].state,
        State::Paused,
        "{:#?}",
        during.statuses[0]
    );
    assert!(during.statuses[0].reason.contains("ECS is rebalancing"));
    moto.service_fields(
        "web",
        serde_json::json!({"availabilityZoneRebalancing": "ENABLED", "events": [event("3", completed), event("1", started)]}),
    );
    let snapshot = backend.snapshot("demo").await.unwrap();
    assert!(!snapshot.services[0].az_rebalancing_in_progress);

    // maximumPercent 100: ECS cannot rebalance; stevedore moves the zones.
    moto.service_fields(
        "web",
        serde_json::json!({"availabilityZoneRebalancing": "ENABLED", "deploymentConfiguration": {"maximumPercent": 100, "minimumHealthyPercent": 50}}),
    );
    let snapshot = backend.snapshot("demo").await.unwrap();
    assert_eq!(snapshot.services[0].maximum_percent, 100);
    let blocked = plan(&snapshot);
    assert_eq!(blocked.actions, off.actions);
    assert!(
        blocked.statuses[0]
            .warnings
            .iter()
            .any(|w| w.contains("cannot run (maximumPercent is 100")),
        "{:#?}",
        blocked.statuses[0]
    );
}

/// The same decisions after an event, without a full read: ECS announces
/// its rebalancing as "ECS Service Action" events (SERVICE_REBALANCING_STARTED,
/// then COMPLETED); the partial refresh an event triggers describes the
/// service again, and its new events pause, then free, the service.
#[tokio::test]
async fn an_ecs_rebalancing_service_action_event_refreshes_the_service_and_pauses_it() {
    let (moto, client) = crate::aws::demo([4, 0, 2, 0, 0, 0]).await;
    let backend = AwsBackend::new(client);
    let policy = zones_and_hosts();
    moto.service_fields(
        "web",
        serde_json::json!({"availabilityZoneRebalancing": "ENABLED"}),
    );
    let mut snapshot = backend.snapshot("demo").await.unwrap();
    assert!(!snapshot.services[0].az_rebalancing_in_progress);
    let service_arn = snapshot.services[0].arn.clone();
    let cluster_arn = service_arn
        .replacen(":service/", ":cluster/", 1)
        .rsplit_once('/')
        .unwrap()
        .0
        .to_owned();

    let message =
        |id: &str, text: &str| serde_json::json!({"id": id, "createdAt": 1.7e9, "message": text});
    let started = "service (web) is not AZ balanced with 4 tasks in us-east-1a, 2 tasks in us-east-1b, and 0 tasks in us-east-1c. AZ Rebalancing in progress.";
    let completed = "service (web) is AZ balanced with 2 tasks in us-east-1a, 2 tasks in us-east-1b, and 2 tasks in us-east-1c.";
    // What EventBridge delivers to the queue when ECS starts or ends.
    let event = |id: &str, name: &str| {
        serde_json::json!({
            "version": "0", "id": id, "detail-type": "ECS Service Action", "source": "aws.ecs",
            "account": "123456789012", "time": "2026-12-07T03:00:00Z", "region": "us-east-1",
            "resources": [service_arn],
            "detail": {"eventType": "INFO", "eventName": name, "clusterArn": cluster_arn, "createdAt": "2026-12-07T03:00:00Z"}
        })
        .to_string()
    };
    let refresh_after = |body: String| {
        let parsed = stevedore::backend::events::parse(&body).unwrap();
        let mut touched = stevedore::backend::refresh::Touched::default();
        touched.note(&parsed);
        assert_eq!(touched.services, ["web".to_owned()].into(), "{parsed:?}");
        touched
    };

    moto.service_fields(
        "web",
        serde_json::json!({"availabilityZoneRebalancing": "ENABLED", "events": [message("1", started)]}),
    );
    let before = moto.calls("DescribeServices");
    let touched = refresh_after(event("e1", "SERVICE_REBALANCING_STARTED"));
    backend
        .refresh("demo", &mut snapshot, &touched)
        .await
        .unwrap();
    assert_eq!(moto.calls("DescribeServices"), before + 1);
    assert!(snapshot.services[0].az_rebalancing_in_progress);
    let during = stevedore::plan::plan(&policy, &snapshot, 0);
    assert_eq!(
        during.statuses[0].state,
        State::Paused,
        "{:#?}",
        during.statuses[0]
    );
    assert!(during.actions.is_empty(), "{:#?}", during.actions);
    assert!(during.statuses[0].reason.contains("ECS is rebalancing"));

    moto.service_fields(
        "web",
        serde_json::json!({"availabilityZoneRebalancing": "ENABLED", "events": [message("2", completed), message("1", started)]}),
    );
    let touched = refresh_after(event("e2", "SERVICE_REBALANCING_COMPLETED"));
    backend
        .refresh("demo", &mut snapshot, &touched)
        .await
        .unwrap();
    assert!(!snapshot.services[0].az_rebalancing_in_progress);
    let after = stevedore::plan::plan(&policy, &snapshot, 0);
    assert_ne!(
        after.statuses[0].state,
        State::Paused,
        "{:#?}",
        after.statuses[0]
    );
}

/// What ECS lists as stopped, read over the wire: each service task with
/// the reason its StopTask gave and when the stop was asked for; running
/// tasks and tasks of no service are not in it.
#[tokio::test]
async fn recently_stopped_reads_each_stopped_task_with_its_reason_and_time() {
    let (_moto, client) = crate::aws::demo([2, 1, 0, 0, 0, 0]).await;
    let backend = AwsBackend::new(client.clone());
    assert_eq!(backend.recently_stopped("demo").await.unwrap(), vec![]);
    let snapshot = backend.snapshot("demo").await.unwrap();
    let before = stevedore::model::wall_clock();
    let mut asked = vec![];
    for (task, reason) in snapshot
        .tasks
        .iter()
        .take(2)
        .zip(["stevedore: web (spread)", "by hand"])
    {
        backend.stop_task("demo", &task.id, reason).await.unwrap();
        let host = task.instance.map(|i| snapshot.instances[i].id.clone());
        asked.push((task.id.clone(), host, reason.to_owned()));
    }
    let after = stevedore::model::wall_clock();
    let mut read = backend.recently_stopped("demo").await.unwrap();
    read.sort_by_key(|t| asked.iter().position(|(id, ..)| *id == t.id));
    let got: Vec<(String, Option<String>, String)> = read
        .iter()
        .map(|t| (t.id.clone(), t.instance.clone(), t.reason.clone()))
        .collect();
    assert_eq!(got, asked);
    for t in &read {
        assert_eq!(t.service, "web");
        let at = t.stopping_at.expect("ECS says when");
        // ECS's timestamps are to the millisecond; the clock's to the second here.
        assert!(
            before - 1_000 <= at && at <= after + 1_000,
            "{at} not in {before}..{after}"
        );
    }
}
