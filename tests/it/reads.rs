//! How the AWS backend reads, counted on the wire: moto behind the tests'
//! front, which counts each operation's requests and the most in flight at
//! once, fails the Nth call, and refuses what AWS's documented limits
//! refuse (`limits.rs`). What the README says of a read, a test here holds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::ContainerDefinition;
use stevedore::aws::AwsBackend;
use stevedore::backend::{self, Backend};

use crate::aws::{backend, cloudwatch, cluster, policy, register_host};
use crate::moto::{Failure, Moto};

/// A cluster `demo` of `hosts` hosts (in three zones) and `services`
/// services `s0`, `s1`, ... of `per_service` tasks each, laid out ten
/// hosts per StartTask call.
async fn wide_cluster(
    moto: &Moto,
    client: &Client,
    hosts: usize,
    services: usize,
    per_service: usize,
) {
    client
        .create_cluster()
        .cluster_name("demo")
        .send()
        .await
        .unwrap();
    let mut arns = vec![];
    for (z, zone) in ["us-east-1a", "us-east-1b", "us-east-1c"]
        .iter()
        .enumerate()
    {
        let count = hosts / 3 + usize::from(z < hosts % 3);
        for instance_id in moto.ec2_instances(zone, count) {
            arns.push(register_host(client, &instance_id, zone).await);
        }
    }
    let mut next_host = 0;
    for s in 0..services {
        let name = format!("s{s}");
        // A task definition of its own, as services usually have.
        client
            .register_task_definition()
            .family(&name)
            .container_definitions(
                ContainerDefinition::builder()
                    .name("web")
                    .image("nginx")
                    .cpu(8)
                    .memory(16)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        client
            .create_service()
            .cluster("demo")
            .service_name(&name)
            .task_definition(&name)
            .desired_count(per_service as i32)
            .send()
            .await
            .unwrap();
        let mut left = per_service;
        while left > 0 {
            let batch: Vec<String> = (0..left.min(10))
                .map(|k| arns[(next_host + k) % arns.len()].clone())
                .collect();
            next_host += batch.len();
            left -= batch.len();
            client
                .start_task()
                .cluster("demo")
                .task_definition(&name)
                .set_container_instances(Some(batch))
                .started_by(format!("ecs-svc/{name}"))
                .group(format!("service:{name}"))
                .send()
                .await
                .unwrap();
        }
    }
}

/// The ECS calls the front received since `before`, by operation (lower case).
fn calls_since(moto: &Moto, before: &BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    moto.all_calls()
        .into_iter()
        .map(|(op, n)| (op.clone(), n - before.get(&op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[tokio::test]
async fn a_full_read_costs_exactly_the_floor_on_the_wire_and_the_simulator_counts_the_same() {
    let moto = Moto::start();
    let client = moto.client();
    // Two pages of hosts, three DescribeServices batches of 10, three
    // pages and batches of tasks.
    let (hosts, services, per_service) = (101, 21, 10);
    wide_cluster(&moto, &client, hosts, services, per_service).await;
    let before = moto.all_calls();
    let backend = AwsBackend::new(client);
    let snapshot = backend.snapshot("demo").await.unwrap();
    assert_eq!(
        (
            snapshot.instances.len(),
            snapshot.services.len(),
            snapshot.tasks.len()
        ),
        (hosts, services, services * per_service)
    );
    let made = calls_since(&moto, &before);

    // The floor, written out: ceil(S/100) + ceil(S/10) + 2 ceil(I/100) + 2 ceil(T/100).
    let expected: BTreeMap<String, usize> = [
        ("listservices", 1),
        ("describeservices", 3),
        ("listcontainerinstances", 2),
        ("describecontainerinstances", 2),
        ("listtasks", 3),
        ("describetasks", 3),
        // Once per task definition (one per service here), then remembered.
        ("describetaskdefinition", 21),
    ]
    .into_iter()
    .map(|(op, n)| (op.to_owned(), n))
    .collect();
    assert_eq!(made, expected);

    // The simulator's accounting of a full read of the same size is the same.
    let g = stevedore::sim::scenario::GenerateSpec {
        hosts: hosts as u32,
        services: services as u32,
        tasks: (services * per_service) as u32,
        zones: 3,
        skewed_share: 0.0,
    };
    let sim = stevedore::sim::scenario::generated(g, 7, 0).sim;
    let simulated: BTreeMap<String, usize> = sim
        .snapshot_calls()
        .into_iter()
        .map(|(op, n)| (op.to_ascii_lowercase(), n as usize))
        .collect();
    assert_eq!(simulated, made);
    // And the backend's own count (its metrics) is the wire's.
    let counted: BTreeMap<String, usize> = backend
        .api_calls()
        .into_iter()
        .map(|(op, n)| (op.to_ascii_lowercase(), n as usize))
        .collect();
    assert_eq!(counted, made);

    // A second full read: the task definitions are remembered, here as in
    // the simulator.
    let before = moto.all_calls();
    backend.snapshot("demo").await.unwrap();
    let again = calls_since(&moto, &before);
    assert_eq!(again.get("describetaskdefinition"), None);
    assert_eq!(again.values().sum::<usize>(), 14);
}

#[tokio::test]
async fn at_most_four_describe_calls_are_in_flight_and_protection_is_read_past_100_tasks() {
    let moto = Moto::start();
    // The front answers GetTaskProtection itself, slowly enough that
    // every batch the backend sends at once is seen at once.
    moto.delay("GetTaskProtection", Duration::from_millis(300));
    let ids: Vec<String> = (0..650)
        .map(|n| format!("arn:aws:ecs:us-east-1:123456789012:task/demo/t{n}"))
        .collect();
    for n in [5, 150, 649] {
        moto.protect(&ids[n]);
    }
    let backend = AwsBackend::new(moto.client());
    let protected = backend.protected_tasks("demo", &ids).await.unwrap();
    let want: BTreeSet<String> = [5, 150, 649].iter().map(|n| ids[*n].clone()).collect();
    assert_eq!(protected, want);
    assert_eq!(moto.calls("GetTaskProtection"), 7, "100 tasks per call");
    assert_eq!(moto.most_in_flight("GetTaskProtection"), 4);
}

#[tokio::test]
async fn a_5xx_is_retried_and_the_read_completes() {
    let (moto, client) = crate::aws::demo([2, 1, 1, 1, 1, 0]).await;
    let backend = AwsBackend::new(client);
    let clean = backend.snapshot("demo").await.unwrap();
    let before = moto.calls("DescribeTasks");
    // The next two DescribeTasks calls fail with ECS's 500; the third attempt is answered.
    moto.fail(
        "DescribeTasks",
        Failure {
            from: before + 1,
            times: 2,
            status: 500,
            code: "ServerException",
        },
    );
    let read = backend.snapshot("demo").await.unwrap();
    assert_eq!(moto.calls("DescribeTasks") - before, 3);
    let ids = |s: &stevedore::model::ClusterSnapshot| -> BTreeSet<String> {
        s.tasks.iter().map(|t| t.id.clone()).collect()
    };
    assert_eq!(ids(&read), ids(&clean));
    assert_eq!(read.tasks.len(), 6);
}

/// A reconcile whose read fails after five operations have answered: no
/// snapshot, no action, and the error names the call that failed.
async fn reconcile_failing_half_way(fail: impl Fn(&Moto)) -> (backend::Error, Moto) {
    let moto = Moto::start();
    let client = moto.client();
    // Five tasks in one zone: a plan would stop some.
    cluster(&moto, [3, 2, 0, 0, 0, 1]).await;
    fail(&moto);
    let backend = AwsBackend::new(client);
    let policies = policy("  placement: {azBalanced: true}\n");
    let error =
        stevedore::controller::reconcile_once(&backend, "demo", &policies.clone().into(), 0)
            .await
            .unwrap_err();
    for op in [
        "ListServices",
        "DescribeServices",
        "ListContainerInstances",
        "DescribeContainerInstances",
        "ListTasks",
    ] {
        assert_eq!(moto.calls(op), 1, "{op} was answered before the failure");
    }
    assert_eq!(moto.calls("StopTask"), 0);
    assert_eq!(moto.calls("GetTaskProtection"), 0);
    (error, moto)
}

#[tokio::test]
async fn a_read_failing_half_way_on_5xx_gives_no_snapshot_and_no_action() {
    let (error, moto) = reconcile_failing_half_way(|moto| {
        moto.fail(
            "DescribeTasks",
            Failure {
                from: 1,
                times: 100,
                status: 500,
                code: "ServerException",
            },
        )
    })
    .await;
    assert!(
        matches!(&error, backend::Error::Api { operation: "DescribeTasks", message } if message.contains("ServerException")),
        "{error}"
    );
    assert!(error.is_retryable());
    // The SDK's standard retry: three attempts.
    assert_eq!(moto.calls("DescribeTasks"), 3);
}

#[tokio::test]
async fn a_read_throttled_half_way_is_retried_then_reported_and_nothing_is_done() {
    let (error, moto) =
        reconcile_failing_half_way(|moto| moto.throttle("DescribeTasks", 100)).await;
    assert_eq!(
        error,
        backend::Error::Throttled {
            operation: "DescribeTasks"
        }
    );
    assert!(error.is_retryable());
    assert_eq!(moto.calls("DescribeTasks"), 3);
}

/// ECS's read rate (a burst of 100, then 20 a second) is kept by the
/// backend itself: 130 GetTaskProtection calls take at least the 1.5 s the
/// 30 beyond the burst need, however fast the endpoint answers.
#[tokio::test]
async fn the_backend_paces_its_calls_at_ecs_rates() {
    let moto = Moto::start();
    let ids: Vec<String> = (0..13_000)
        .map(|n| format!("arn:aws:ecs:us-east-1:123456789012:task/demo/t{n}"))
        .collect();
    let backend = AwsBackend::new(moto.client());
    let start = std::time::Instant::now();
    backend.protected_tasks("demo", &ids).await.unwrap();
    let took = start.elapsed();
    assert_eq!(moto.calls("GetTaskProtection"), 130);
    assert!(
        took >= Duration::from_millis(1_450),
        "130 calls in {took:?}"
    );
}

/// Up to 500 metrics per GetMetricData call (the front refuses more), and
/// each value comes back to the query that asked for it.
#[tokio::test]
async fn metrics_are_read_500_to_a_call_each_value_to_its_query() {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    use stevedore::backend::MetricQuery;
    let moto = Moto::start();
    let cw = cloudwatch(&moto);
    let query = |n: usize| MetricQuery {
        namespace: "AWS/ECS".into(),
        name: "CPUUtilization".into(),
        statistic: "Average".into(),
        dimensions: [("ServiceName".to_owned(), format!("s{n}"))].into(),
        period: 60,
    };
    let now = stevedore::model::wall_clock();
    for (n, value) in [(0, 11.0), (499, 22.0), (500, 33.0), (1_100, 44.0)] {
        cw.put_metric_data()
            .namespace("AWS/ECS")
            .metric_data(
                MetricDatum::builder()
                    .metric_name("CPUUtilization")
                    .dimensions(
                        Dimension::builder()
                            .name("ServiceName")
                            .value(format!("s{n}"))
                            .build(),
                    )
                    .value(value)
                    .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from_millis(
                        now as i64 - 30_000,
                    ))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let queries: Vec<MetricQuery> = (0..1_101).map(query).collect();
    let values = backend(&moto, moto.client())
        .metric_data("demo", &queries, now)
        .await
        .unwrap();
    assert_eq!(
        moto.calls("GetMetricData"),
        3,
        "1,101 queries: 500 + 500 + 101"
    );
    let found: Vec<(usize, f64)> = values
        .iter()
        .enumerate()
        .filter_map(|(n, v)| Some((n, (*v)?)))
        .collect();
    assert_eq!(found, [(0, 11.0), (499, 22.0), (500, 33.0), (1_100, 44.0)]);
}
