//! What `run` does when the world does not go its way, on moto behind the
//! tests' front: a stop refused, an audit bus that fails, a read that keeps
//! failing, a policy taken away, a leader that stalls. Each test counts
//! what reached the wire.

use std::time::{Duration, Instant};

use crate::aws::{
    cluster, controller, dynamodb, lease_table, lines_of, run_controller, specs_dir, stevedore,
    stopped, wait_for,
};
use crate::moto::{Failure, Moto};

const UNBALANCED: &str = "  placement: {azBalanced: true}\n";

#[tokio::test]
async fn run_once_exits_1_when_a_stop_fails_and_says_which() {
    let (moto, client) = crate::aws::demo([3, 2, 1, 0, 0, 0]).await;
    let specs = specs_dir(UNBALANCED);
    moto.fail(
        "StopTask",
        Failure {
            from: 1,
            times: 100,
            status: 400,
            code: "InvalidParameterException",
        },
    );
    let out = stevedore(
        &moto,
        &["run", "--specs", specs.path().to_str().unwrap(), "--once"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("demo/web/web: FAILED: stop task") && text.contains("StopTask"),
        "{text}"
    );
    assert!(!text.contains("done: stop task"), "{text}");
    // One attempt: a refused stop is not a transient error to retry.
    assert_eq!(moto.calls("StopTask"), 1);
    assert_eq!(stopped(&client).await, 0);
}

#[tokio::test]
async fn a_failing_audit_bus_never_holds_up_a_pass() {
    let (moto, client) = crate::aws::demo([3, 2, 1, 0, 0, 0]).await;
    let specs = specs_dir(UNBALANCED);
    moto.fail(
        "PutEvents",
        Failure {
            from: 1,
            times: 100,
            status: 500,
            code: "InternalException",
        },
    );
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
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("done: stop task"), "{text}");
    assert!(text.contains("events dropped"), "{text}");
    assert_eq!(stopped(&client).await, 1);
    assert!(moto.calls("PutEvents") >= 1, "the bus was tried");
}

/// A read that keeps failing is tried again as a full read after 1 s,
/// then 2 s, then 4 s; once it succeeds the controller waits for the
/// resync (an hour) and reads no more.
#[tokio::test]
async fn a_failed_read_is_retried_backing_off_1_2_4_seconds() {
    let (moto, _client) = crate::aws::demo([1, 1, 1, 1, 1, 1]).await;
    let specs = specs_dir(UNBALANCED);
    // Refused outright (no SDK retry): one ListServices per pass.
    moto.fail(
        "ListServices",
        Failure {
            from: 1,
            times: 3,
            status: 400,
            code: "InvalidParameterException",
        },
    );
    let mut child = run_controller(
        &moto,
        specs.path().to_str().unwrap(),
        &["--resync", "1h", "--listen", "off"],
    );
    let lines = lines_of(&mut child);
    // When each pass began: its ListServices reaching the front.
    let mut begun = vec![];
    let deadline = Instant::now() + Duration::from_secs(30);
    while begun.len() < 4 {
        assert!(Instant::now() < deadline, "{} passes in 30 s", begun.len());
        if moto.calls("ListServices") > begun.len() {
            begun.push(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut seen = vec![];
    wait_for(&lines, "demo/web/web: Satisfied", &mut seen);
    let gaps: Vec<f64> = begun
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    for (gap, backoff) in gaps.iter().zip([1.0, 2.0, 4.0]) {
        // Never sooner than the backoff; later only by a pass's own time.
        assert!(
            *gap >= backoff - 0.05 && *gap < backoff + 1.5,
            "gaps {gaps:?}"
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(moto.calls("ListServices"), 4, "no read after the success");
    let failures = seen
        .iter()
        .filter(|l| l.contains("demo: no snapshot, nothing done: ListServices"))
        .count();
    assert_eq!(failures, 3, "{}", seen.join("\n"));
    crate::longrun::sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// A policy file removed while `run` runs: its service is managed no more,
/// and whatever it would have done is not done.
#[tokio::test]
async fn a_removed_policy_stops_managing_its_service_and_touches_nothing() {
    let (moto, client) = crate::aws::demo([1, 1, 1, 1, 1, 1]).await;
    let specs = specs_dir(UNBALANCED);
    // A second policy, on a service the cluster does not have, keeps the
    // specs valid once the first is gone.
    std::fs::write(
        specs.path().join("api.yaml"),
        "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata: {name: api}\nspec:\n  target: {cluster: demo, service: api}\n  placement: {azBalanced: true}\n",
    )
    .unwrap();
    let mut child = run_controller(
        &moto,
        specs.path().to_str().unwrap(),
        &["--resync", "2s", "--listen", "off"],
    );
    let lines = lines_of(&mut child);
    let mut seen = vec![];
    wait_for(&lines, "demo/web/web: Satisfied", &mut seen);
    std::fs::remove_file(specs.path().join("web.yaml")).unwrap();
    wait_for(&lines, "specs: changed; 1 policies loaded", &mut seen);
    let removed_at = seen.len();
    // Web now leans on zone a: a policy in force would stop two tasks.
    let hosts = client
        .list_container_instances()
        .cluster("demo")
        .send()
        .await
        .unwrap()
        .container_instance_arns()
        .to_vec();
    let mut a1 = None;
    for arn in &hosts {
        let described = client
            .describe_container_instances()
            .cluster("demo")
            .container_instances(arn)
            .send()
            .await
            .unwrap();
        let zone = described.container_instances()[0]
            .attributes()
            .iter()
            .find(|a| a.name() == "ecs.availability-zone")
            .and_then(|a| a.value())
            .map(str::to_owned);
        if zone.as_deref() == Some("us-east-1a") {
            a1 = Some(arn.clone());
            break;
        }
    }
    for _ in 0..4 {
        crate::aws::start_web_task(&client, "demo", a1.clone().unwrap()).await;
    }
    client
        .update_service()
        .cluster("demo")
        .service("web")
        .desired_count(10)
        .send()
        .await
        .unwrap();
    // Three resyncs later: nothing stopped, web not reported.
    let reads = moto.calls("ListServices");
    let deadline = Instant::now() + Duration::from_secs(30);
    while moto.calls("ListServices") < reads + 3 {
        assert!(Instant::now() < deadline, "no resync");
        std::thread::sleep(Duration::from_millis(50));
    }
    crate::longrun::sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    while let Ok(line) = lines.recv_timeout(Duration::from_millis(500)) {
        seen.push(line);
    }
    assert_eq!(moto.calls("StopTask"), 0, "{}", seen.join("\n"));
    let after = &seen[removed_at..];
    assert!(
        after.iter().all(|l| !l.contains("/web/web")),
        "{}",
        after.join("\n")
    );
    // The passes went on meanwhile, with the remaining policy.
    assert!(
        after
            .iter()
            .any(|l| l.contains("shutting down after") && !l.contains("after 1 reconciles")),
        "{}",
        after.join("\n")
    );
}

/// A replica's process, its output lines, and the lines read so far.
type Replica = (
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
    Vec<String>,
);

/// Two replicas of one lease: `replica-a` leading, then `replica-b`
/// following.
fn leader_and_follower(moto: &Moto, specs: &str) -> [Replica; 2] {
    [
        ("replica-a", "leader: acting"),
        ("replica-b", "not the leader"),
    ]
    .map(|(name, says)| {
        let mut child = leased_replica(moto, specs, name);
        let lines = lines_of(&mut child);
        let mut seen = vec![];
        wait_for(&lines, says, &mut seen);
        (child, lines, seen)
    })
}

/// `run` as one of the replicas that share one lease (3 s), resyncing
/// every 2 s.
fn leased_replica(moto: &Moto, specs: &str, name: &str) -> std::process::Child {
    controller(
        moto,
        &[
            "run",
            "--specs",
            specs,
            "--lease-table",
            "stevedore-leases",
            "--lease-duration",
            "3s",
            "--resync",
            "2s",
            "--listen",
            "off",
        ],
        &[("HOSTNAME", name)],
    )
}

/// Two processes, one lease: the leader stalls (SIGSTOP), the other takes
/// the lease once it has lapsed and leads; the old leader, resumed, knows
/// it follows. (That a write is checked against the lease at the moment it
/// is made: `lease::tests`.)
#[tokio::test]
async fn a_stalled_leader_is_taken_over_and_follows_once_resumed() {
    let moto = Moto::start();
    // Balanced: the leader's first pass needs no stop.
    cluster(&moto, [1, 1, 1, 1, 1, 1]).await;
    lease_table(&dynamodb(&moto)).await;
    let specs = specs_dir(UNBALANCED);
    let dir = specs.path().to_str().unwrap().to_owned();
    let [(mut a, a_lines, mut a_seen), (mut b, b_lines, mut b_seen)] =
        leader_and_follower(&moto, &dir);

    crate::aws::signal(&a, "-STOP");
    let stalled = Instant::now();
    wait_for(&b_lines, "leader: took the lease", &mut b_seen);
    let taken = stalled.elapsed();
    // Not before A's lease has run out: 3 s from its last renewal, which
    // was at most one tick (a third of the 1 s margin) before the stall.
    assert!(
        taken >= Duration::from_millis(3_000 - 334),
        "taken over after {taken:?}"
    );
    wait_for(&b_lines, "leader: acting", &mut b_seen);

    crate::aws::signal(&a, "-CONT");
    // A's next pass: it knows it leads no more.
    wait_for(
        &a_lines,
        "not the leader: planning and reporting only",
        &mut a_seen,
    );
    for child in [&a, &b] {
        crate::longrun::sigterm(child);
    }
    assert_eq!(a.wait().unwrap().code(), Some(0));
    assert_eq!(b.wait().unwrap().code(), Some(0));
}

/// A replica that takes a cluster over reads back the moves the old leader
/// made (from ECS's stopped tasks) before it acts: the rate budget the
/// leader spent stays spent, though the new leader's own memory of the
/// cluster is older than those moves.
#[tokio::test]
async fn a_replica_taking_over_reads_back_the_budget_the_old_leader_spent() {
    let moto = Moto::start();
    let client = moto.client();
    let hosts = cluster(&moto, [1, 1, 1, 1, 1, 1]).await;
    lease_table(&dynamodb(&moto)).await;
    let specs = specs_dir(UNBALANCED);
    std::fs::write(
        specs.path().join("budget.yaml"),
        "apiVersion: stevedore.io/v1alpha1\nkind: DisruptionBudget\nmetadata: {name: hourly}\nspec: {cluster: demo, moves: {max: 1, per: 1h}}\n",
    )
    .unwrap();
    let dir = specs.path().to_str().unwrap().to_owned();
    let [(mut a, a_lines, mut a_seen), (mut b, b_lines, mut b_seen)] =
        leader_and_follower(&moto, &dir);
    // B's first pass, as a follower: its memory of the cluster starts here.
    wait_for(&b_lines, "demo/web/web: Satisfied", &mut b_seen);

    // Three more tasks in zone a (5/2/2): the leader moves one, and the
    // budget holds the next.
    for _ in 0..3 {
        crate::aws::start_web_task(&client, "demo", &hosts[0]).await;
    }
    client
        .update_service()
        .cluster("demo")
        .service("web")
        .desired_count(9)
        .send()
        .await
        .unwrap();
    wait_for(&a_lines, "demo/web/web: done: stop task", &mut a_seen);
    // ECS replaces it in zone c (4/2/3): steady, and a move still wanted.
    crate::aws::start_web_task(&client, "demo", &hosts[4]).await;
    wait_for(&a_lines, "1 move in the last 1h (moves.max 1)", &mut a_seen);

    crate::aws::signal(&a, "-STOP");
    wait_for(&b_lines, "leader: took the lease", &mut b_seen);
    wait_for(
        &b_lines,
        "demo: 1 earlier stop by stevedore, read back from ECS's stopped tasks, count against budget hourly",
        &mut b_seen,
    );
    wait_for(&b_lines, "1 move in the last 1h (moves.max 1)", &mut b_seen);
    // Two more resyncs as the leader: still held.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(moto.calls("StopTask"), 1, "{}", b_seen.join("\n"));

    crate::aws::signal(&a, "-CONT");
    for child in [&a, &b] {
        crate::longrun::sigterm(child);
    }
    assert_eq!(a.wait().unwrap().code(), Some(0));
    assert_eq!(b.wait().unwrap().code(), Some(0));
}

/// On the event path (a partial read), the service about to be acted on is
/// read again with its tasks' scale-in protection before any stop: a
/// protection turned on since is honoured, and one turned off since is
/// seen too, so no stop rests on an old read.
#[tokio::test]
async fn after_events_protection_is_read_again_before_any_stop() {
    let moto = Moto::start();
    let c = crate::aws::clients(&moto);
    let hosts = cluster(&moto, [1, 1, 1, 1, 1, 1]).await;
    let queue_url = crate::aws::installed_queue(&c).await;
    let specs = specs_dir(UNBALANCED);
    let mut child =
        crate::aws::run_on_events(&moto, specs.path().to_str().unwrap(), &queue_url, "off");
    let lines = lines_of(&mut child);
    let mut seen = vec![];
    wait_for(&lines, "demo/web/web: Satisfied", &mut seen);

    // Two more tasks on a1 (zone a: 4, b: 2, c: 2), each announced by its
    // event, and every task in zone a protected meanwhile.
    let mut new_tasks = vec![];
    for _ in 0..2 {
        let out = c
            .ecs
            .start_task()
            .cluster("demo")
            .task_definition("web")
            .container_instances(&hosts[0])
            .started_by("ecs-svc/web")
            .group("service:web")
            .send()
            .await
            .unwrap();
        new_tasks.push(out.tasks()[0].task_arn().unwrap().to_owned());
    }
    c.ecs
        .update_service()
        .cluster("demo")
        .service("web")
        .desired_count(8)
        .send()
        .await
        .unwrap();
    let in_zone_a = c
        .ecs
        .list_tasks()
        .cluster("demo")
        .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
        .send()
        .await
        .unwrap()
        .task_arns()
        .to_vec();
    let described = c
        .ecs
        .describe_tasks()
        .cluster("demo")
        .set_tasks(Some(in_zone_a))
        .send()
        .await
        .unwrap();
    for task in described.tasks() {
        if [&hosts[0], &hosts[1]].contains(&&task.container_instance_arn().unwrap().to_owned()) {
            moto.protect(task.task_arn().unwrap());
        }
    }
    let announce = |task: &str, id: &str| {
        serde_json::json!({
            "version": "0", "id": id, "detail-type": "ECS Task State Change", "source": "aws.ecs",
            "resources": [task],
            "detail": {"clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/demo", "taskArn": task,
                       "lastStatus": "RUNNING", "desiredStatus": "RUNNING", "group": "service:web", "version": 2}
        })
        .to_string()
    };
    for (n, task) in new_tasks.iter().enumerate() {
        c.sqs
            .send_message()
            .queue_url(&queue_url)
            .message_body(announce(task, &format!("start-{n}")))
            .send()
            .await
            .unwrap();
    }
    wait_for(&lines, "events: reconciling", &mut seen);
    wait_for(&lines, "demo/web/web: ", &mut seen);
    assert!(moto.calls("GetTaskProtection") >= 1);
    assert_eq!(moto.calls("StopTask"), 0, "{}", seen.join("\n"));
    // Every task of zone a is protected: no stop can balance the zones.
    let status = seen.last().unwrap();
    assert!(
        status.contains("demo/web/web: Unsatisfiable: all 4 tasks in zone us-east-1a (on ")
            && status.contains("), where stops would start, are protected from scale-in"),
        "{status}"
    );

    // Protection lifted: the next event's pass reads it again, and stops.
    moto.unprotect_all();
    c.sqs
        .send_message()
        .queue_url(&queue_url)
        .message_body(announce(&new_tasks[0], "again").replace("\"version\":2", "\"version\":3"))
        .send()
        .await
        .unwrap();
    wait_for(&lines, "done: stop task", &mut seen);
    assert_eq!(moto.calls("StopTask"), 1);
    crate::longrun::sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// A deployment on a large cluster makes thousands of task events a
/// minute: 2,000 events in the queue are taken in ten at a time and
/// deleted ten to a call (at most 0.25 SQS calls an event), and they make
/// one pass per debounce window, not one per event.
#[tokio::test]
async fn two_thousand_events_are_drained_in_batches_with_one_pass_per_window() {
    let moto = Moto::start();
    let c = crate::aws::clients(&moto);
    cluster(&moto, [1, 1, 1, 1, 1, 1]).await;
    let queue_url = crate::aws::installed_queue(&c).await;
    let specs = specs_dir(UNBALANCED);
    let mut child = crate::aws::run_on_events(
        &moto,
        specs.path().to_str().unwrap(),
        &queue_url,
        "127.0.0.1:0",
    );
    let lines = lines_of(&mut child);
    let mut seen = vec![];
    let address = crate::aws::status_address(&lines, &mut seen);
    wait_for(&lines, "demo/web/web: Satisfied", &mut seen);
    let metric = |name: &str, labels: &str| crate::longrun::metric(&address, name, labels);
    let passes_before = metric("stevedore_reconciles_total", "");

    let started = Instant::now();
    for batch in 0..200 {
        let entries = (0..10).map(|k| {
            let n = batch * 10 + k;
            let task = format!("arn:aws:ecs:us-east-1:123456789012:task/demo/gone{n}");
            let body = serde_json::json!({
                "version": "0", "id": format!("flood-{n}"), "detail-type": "ECS Task State Change",
                "source": "aws.ecs", "resources": [task],
                "detail": {"clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/demo", "taskArn": task,
                           "lastStatus": "RUNNING", "group": "service:web", "version": 1}
            });
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(k.to_string())
                .message_body(body.to_string())
                .build()
                .unwrap()
        });
        c.sqs
            .send_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(entries.collect()))
            .send()
            .await
            .unwrap();
    }
    // moto takes about a quarter of a second a call on a busy machine.
    let deadline = Instant::now() + Duration::from_secs(300);
    while metric("stevedore_events_total", r#"outcome="new""#) < 2_000
        || crate::aws::queue_left(&c.sqs, &queue_url).await != (0, 0)
    {
        if Instant::now() >= deadline {
            while let Ok(line) = lines.try_recv() {
                seen.push(line);
            }
            panic!(
                "{} events taken in after 300 s, {} receives, {} batch deletes, {} passes:\n{}",
                metric("stevedore_events_total", r#"outcome="new""#),
                moto.calls("ReceiveMessage"),
                moto.calls("DeleteMessageBatch"),
                metric("stevedore_reconciles_total", "") - passes_before,
                seen[seen.len().saturating_sub(30)..].join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = started.elapsed().as_secs_f64();
    let sqs_calls = moto.calls("ReceiveMessage")
        + moto.calls("DeleteMessageBatch")
        + moto.calls("DeleteMessage");
    let per_event = sqs_calls as f64 / 2_000.0;
    let passes = metric("stevedore_reconciles_total", "") - passes_before;
    eprintln!(
        "2,000 events drained in {took:.1} s ({:.0} a second), {sqs_calls} SQS calls ({per_event:.3} an event), {passes} passes",
        2_000.0 / took
    );
    assert!(per_event <= 0.25, "{per_event} SQS calls an event");
    assert_eq!(moto.calls("DeleteMessage"), 0);
    // One pass per debounce window: 2 s of quiet or 10 s at most.
    assert!(
        passes as f64 <= took / 2.0 + 2.0,
        "{passes} passes in {took:.1} s"
    );
    crate::longrun::sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
