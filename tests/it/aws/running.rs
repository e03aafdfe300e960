//! The controller running against moto: events from the queue, spec
//! changes, the status server, audit events, JSON logs, leader election
//! and a git repository followed.

use super::*;

#[tokio::test]
async fn run_wakes_on_events_and_spec_changes_skips_malformed_messages_and_stops_on_sigterm() {
    let moto = Moto::start();
    let c = clients(&moto);
    cluster(&moto, [1, 1, 1, 1, 1, 1]).await;
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
    let metrics = crate::aws::http_text(&format!("http://{address}/metrics"));
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

#[tokio::test]
async fn run_serves_health_readiness_metrics_and_status() {
    let (moto, _client) = crate::aws::demo([3, 2, 1, 0, 0, 0]).await;
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
    cluster(&moto, [3, 2, 1, 0, 0, 0]).await;
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
    let (moto, _client) = crate::aws::demo([3, 2, 1, 0, 0, 0]).await;
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
    let (moto, client) = crate::aws::demo([3, 2, 1, 0, 0, 0]).await;
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

#[tokio::test]
async fn run_follows_a_git_repository_and_keeps_the_last_good_commit() {
    use crate::cli::git;
    let (moto, _client) = crate::aws::demo([1, 1, 1, 1, 1, 1]).await;
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
