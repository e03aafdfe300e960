//! `stevedore snapshot` of a cluster on moto: the copy, planned on the
//! simulator, stops the same tasks as the plan of the live cluster, and
//! replayed by `stevedore sim` it has the same tasks per zone.

use super::*;

#[tokio::test]
async fn a_snapshot_plans_the_same_stops_as_the_live_cluster() {
    let moto = Moto::start();
    let client = moto.client();
    let hosts = cluster(&moto, [4, 2, 1, 1, 0, 0]).await;
    // One task protected by its owner: neither plan may stop it.
    let tasks = client
        .list_tasks()
        .cluster("demo")
        .container_instance(&hosts[0])
        .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
        .send()
        .await
        .unwrap()
        .task_arns()
        .to_vec();
    moto.protect(&tasks[0]);
    // DryRun: `sim` then replays the copy without acting, so its report
    // shows the layout at time 0.
    let specs = specs_dir("  mode: DryRun\n  placement: {azBalanced: true}\n");
    let dir = specs.path().to_str().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("demo.yaml");

    let out = stevedore(
        &moto,
        &[
            "snapshot",
            "--cluster",
            "demo",
            "--specs",
            dir,
            "-o",
            file.to_str().unwrap(),
        ],
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("demo: 6 hosts, 1 services, 8 running tasks, 1 policy files"),
        "{said}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    // moto reports no strategy: the file says so rather than inventing one.
    assert!(
        text.contains("# note: service web: DescribeServices reported no placement strategy"),
        "{text}"
    );
    assert!(text.contains(&hosts[0]), "hosts keep their names: {text}");
    assert_eq!(text.matches("protected: true").count(), 1, "{text}");

    let plan_json =
        |args: &[&str]| -> serde_json::Value { crate::json_of_success(&stevedore(&moto, args)) };
    let live = plan_json(&[
        "plan",
        "--specs",
        dir,
        "--cluster",
        "demo",
        "--output",
        "json",
    ]);
    let copy = plan_json(&["plan", "--sim", file.to_str().unwrap(), "--output", "json"]);
    let stops = |plan: &serde_json::Value| -> Vec<String> {
        let mut ids: Vec<String> = plan["actions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["action"] == "stopTask")
            .map(|a| a["task"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let live_stops = stops(&live[0]);
    assert!(!live_stops.is_empty(), "{live:#}");
    assert_eq!(stops(&copy), live_stops, "task for task");
    assert!(
        !live_stops.contains(&tasks[0]),
        "the protected task {}: {live_stops:?}",
        tasks[0]
    );

    // Replayed, the copy has the live cluster's tasks per zone.
    let out = stevedore(&moto, &["sim", file.to_str().unwrap(), "--output", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let per_zone = &report["services"][0]["tasksPerZone"];
    let expected = serde_json::json!({"us-east-1a": 6, "us-east-1b": 2, "us-east-1c": 0});
    assert_eq!(per_zone, &expected, "{report:#}");
    // The plan lists domains as [name, count] pairs.
    let live_zones: serde_json::Map<String, serde_json::Value> =
        live[0]["statuses"][0]["constraints"][0]["tasksPerDomain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| (pair[0].as_str().unwrap().to_owned(), pair[1].clone()))
            .collect();
    assert_eq!(serde_json::Value::Object(live_zones), expected, "{live:#}");
}
