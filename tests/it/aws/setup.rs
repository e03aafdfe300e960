//! `install`, `uninstall` and the CloudFormation template against moto.

use super::*;

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
    // By name, or by the ARN the console prints: the same install.
    let arn = moto
        .client()
        .describe_clusters()
        .clusters("demo")
        .send()
        .await
        .unwrap()
        .clusters()[0]
        .cluster_arn()
        .unwrap()
        .to_owned();
    for cluster in ["demo", arn.as_str()] {
        let out = stevedore(&moto, &["install", "--cluster", cluster, "--dry-run"]);
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
        assert!(text.contains("queue stevedore-demo"), "{text}");
        let policy = stevedore(&moto, &["iam-policy", "--cluster", cluster]);
        let policy = String::from_utf8_lossy(&policy.stdout);
        assert!(
            policy.contains("\"arn:aws:ecs:*:*:cluster/demo\""),
            "{policy}"
        );
        assert!(!policy.contains("cluster/arn:"), "{policy}");
    }
    let out = stevedore(
        &moto,
        &[
            "install",
            "--cluster",
            "arn:aws:sqs:us-east-1:1:q",
            "--dry-run",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not an ECS cluster ARN"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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

#[tokio::test]
async fn the_cloudformation_template_deploys_and_its_command_runs() {
    let moto = Moto::start();
    let c = clients(&moto);
    cluster(&moto, [3, 2, 1, 0, 0, 0]).await;
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
