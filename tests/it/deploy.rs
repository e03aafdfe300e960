//! The packaging under `examples/deploy/` and the `Dockerfile` agree with
//! the binary: the CloudFormation template's role is exactly what
//! `stevedore iam-policy` prints, its queue and rule are what `stevedore
//! install` makes, the task definition file is the template's, its command
//! line parses, and the binary needs nothing the runtime image lacks.
//! (`aws::the_cloudformation_template_deploys_and_its_command_runs`
//! deploys the template on moto's CloudFormation and runs the deployed
//! command line.)

use std::collections::BTreeMap;
use std::process::Command;

use clap::Parser;
use serde_json::{Value, json};

use crate::repo;

/// What the template's `Ref`, `Fn::GetAtt` (as `Resource.Attribute`) and
/// `${...}` resolve to in `examples/deploy/task-definition.json`'s example.
fn example_refs() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("AWS::Region", "us-east-1"),
        ("AWS::AccountId", "123456789012"),
        ("ClusterName", "prod"),
        (
            "Image",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/stevedore:0.1.0",
        ),
        (
            "SpecsRepository",
            "https://github.com/example/ecs-policies.git",
        ),
        ("SpecsRef", "main"),
        (
            "SpecsTokenSecretArn",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecs-policies-token-AbCdEf",
        ),
        (
            "EventQueue",
            "https://sqs.us-east-1.amazonaws.com/123456789012/stevedore-prod",
        ),
        (
            "EventQueue.Arn",
            "arn:aws:sqs:us-east-1:123456789012:stevedore-prod",
        ),
        (
            "EventRule.Arn",
            "arn:aws:events:us-east-1:123456789012:rule/stevedore-prod",
        ),
        ("LeaseTable", "stevedore-prod-lease"),
        ("Replicas", "2"),
        ("Subnets", "subnet-aaa"),
        ("SecurityGroup", "sg-ccc"),
        ("AssignPublicIp", "DISABLED"),
        (
            "TaskDefinition",
            "arn:aws:ecs:us-east-1:123456789012:task-definition/stevedore-prod:1",
        ),
        ("LogGroup", "/stevedore/prod"),
        (
            "TaskRole.Arn",
            "arn:aws:iam::123456789012:role/stevedore-prod",
        ),
        (
            "ExecutionRole.Arn",
            "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
        ),
    ])
}

/// The CloudFormation template, as data.
pub fn template() -> Value {
    let text = std::fs::read_to_string(repo("examples/deploy/cloudformation.yaml")).unwrap();
    serde_saphyr::from_str(&text).expect("the template is YAML")
}

/// The template with every intrinsic function it uses replaced by what
/// `refs` says it resolves to (a name `refs` lacks fails the test), and
/// its conditions evaluated.
fn resolve_template(template: &Value, refs: &BTreeMap<&str, &str>) -> Value {
    let mut conditions = BTreeMap::new();
    for (name, expression) in template["Conditions"].as_object().into_iter().flatten() {
        let value = resolve(expression, refs, &conditions).unwrap();
        conditions.insert(name.clone(), value.as_bool().unwrap());
    }
    resolve(template, refs, &conditions).unwrap()
}

/// `value` resolved; `None` for `AWS::NoValue`, which drops the property.
fn resolve(
    value: &Value,
    refs: &BTreeMap<&str, &str>,
    conditions: &BTreeMap<String, bool>,
) -> Option<Value> {
    let lookup = |name: &str| -> String {
        refs.get(name)
            .unwrap_or_else(|| {
                panic!("the template refers to `{name}`, which the test does not know")
            })
            .to_string()
    };
    let resolved = |v: &Value| resolve(v, refs, conditions);
    if let Value::Object(map) = value
        && let [(function, argument)] = map.iter().collect::<Vec<_>>()[..]
    {
        match (function.as_str(), argument) {
            ("Ref", Value::String(name)) if name == "AWS::NoValue" => return None,
            ("Ref", Value::String(name)) => return Some(Value::String(lookup(name))),
            ("Fn::GetAtt", Value::Array(parts)) => {
                let parts: Vec<&str> = parts.iter().filter_map(Value::as_str).collect();
                return Some(Value::String(lookup(&parts.join("."))));
            }
            ("Fn::Sub", Value::String(text)) => {
                let mut out = String::new();
                let mut rest = text.as_str();
                while let Some(start) = rest.find("${") {
                    let end = start + rest[start..].find('}').unwrap();
                    out.push_str(&rest[..start]);
                    out.push_str(&lookup(&rest[start + 2..end]));
                    rest = &rest[end + 1..];
                }
                out.push_str(rest);
                return Some(Value::String(out));
            }
            ("Fn::Equals", Value::Array(pair)) => {
                return Some(Value::Bool(resolved(&pair[0]) == resolved(&pair[1])));
            }
            ("Fn::Not", Value::Array(one)) => {
                return Some(Value::Bool(!resolved(&one[0])?.as_bool().unwrap()));
            }
            ("Fn::If", Value::Array(branches)) => {
                let name = branches[0].as_str().unwrap();
                let holds = conditions
                    .get(name)
                    .unwrap_or_else(|| panic!("no condition {name}"));
                return resolved(&branches[if *holds { 1 } else { 2 }]);
            }
            _ => {}
        }
    }
    Some(match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), resolved(v)?)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().filter_map(resolved).collect()),
        other => other.clone(),
    })
}

/// CloudFormation's property names (`ContainerPort`) as the ECS API's JSON
/// spells them (`containerPort`).
fn camel_case(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let mut chars = k.chars();
                    let key = chars
                        .next()
                        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
                        .unwrap_or_default();
                    (key, camel_case(v))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(camel_case).collect()),
        other => other.clone(),
    }
}

fn properties<'a>(template: &'a Value, resource: &str) -> &'a Value {
    let properties = &template["Resources"][resource]["Properties"];
    assert!(properties.is_object(), "no resource {resource}");
    properties
}

#[test]
fn the_templates_role_is_exactly_what_iam_policy_prints() {
    let refs = example_refs();
    let template = resolve_template(&template(), &refs);
    let printed = Command::new(env!("CARGO_BIN_EXE_stevedore"))
        .args([
            "iam-policy",
            "--cluster",
            "prod",
            "--region",
            "us-east-1",
            "--account",
            "123456789012",
            "--lease-table",
            "stevedore-prod-lease",
        ])
        .output()
        .unwrap();
    assert!(printed.status.success());
    let printed: Value = serde_json::from_slice(&printed.stdout).unwrap();
    let policies = properties(&template, "TaskRole")["Policies"]
        .as_array()
        .unwrap();
    assert_eq!(policies.len(), 1, "the role has one policy: stevedore's");
    assert_eq!(policies[0]["PolicyDocument"], printed);
    // The names the policy is scoped to are the resources' names.
    assert_eq!(
        properties(&template, "EventQueue")["QueueName"],
        stevedore::setup::iam::default_queue("prod")
    );
    assert_eq!(
        properties(&template, "LeaseTable")["TableName"],
        "stevedore-prod-lease"
    );
}

#[test]
fn the_templates_queue_and_rule_are_what_install_makes() {
    let refs = example_refs();
    let template = resolve_template(&template(), &refs);
    let rule = properties(&template, "EventRule");
    assert_eq!(rule["Name"], stevedore::setup::install::rule_name("prod"));
    let pattern: Value = serde_json::from_str(&stevedore::setup::install::event_pattern(
        "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
    ))
    .unwrap();
    assert_eq!(rule["EventPattern"], pattern);
    assert_eq!(
        rule["Targets"],
        json!([{"Id": stevedore::setup::install::TARGET_ID, "Arn": refs["EventQueue.Arn"]}])
    );
    let queue_policy: Value = serde_json::from_str(&stevedore::setup::install::queue_policy(
        refs["EventQueue.Arn"],
        refs["EventRule.Arn"],
    ))
    .unwrap();
    assert_eq!(
        properties(&template, "EventQueuePolicy")["PolicyDocument"],
        queue_policy
    );
}

#[test]
fn the_task_definition_file_is_the_templates_and_its_command_parses() {
    let template = resolve_template(&template(), &example_refs());
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("examples/deploy/task-definition.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(camel_case(properties(&template, "TaskDefinition")), file);

    let container = &file["containerDefinitions"][0];
    // The token reaches stevedore under the name it reads, and only ECS
    // (the execution role) may read the secret.
    let refs = example_refs();
    assert_eq!(
        container["secrets"],
        json!([{"name": stevedore::source::git::TOKEN_VARIABLE, "valueFrom": refs["SpecsTokenSecretArn"]}])
    );
    let execution = &properties(&template, "ExecutionRole")["Policies"][0]["PolicyDocument"];
    assert_eq!(
        execution["Statement"],
        json!([{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": refs["SpecsTokenSecretArn"]}])
    );
    assert!(
        properties(&template, "TaskRole")["Policies"][0]["PolicyDocument"]["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| !s.to_string().contains("secretsmanager"))
    );
    let command: Vec<&str> = container["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let parsed = stevedore::cli::Cli::try_parse_from(std::iter::once("stevedore").chain(command))
        .unwrap_or_else(|e| panic!("{e}"));
    // What the command runs: the controller on the cluster's queue, with
    // leader election, serving on the container's port, logging JSON.
    let stevedore::cli::Command::Run(stevedore::cli::run::Args {
        specs,
        git,
        cluster,
        queue_url,
        lease,
        listen,
        log_format,
        once,
        dry_run,
        endpoint,
        ..
    }) = parsed.command
    else {
        panic!("not `run`: {:?}", parsed.command);
    };
    let (git_ref, lease_table, endpoint_url) =
        (git.git_ref, lease.lease_table, endpoint.endpoint_url);
    assert_eq!(
        specs,
        [std::path::PathBuf::from(
            "https://github.com/example/ecs-policies.git"
        )]
    );
    assert_eq!(git_ref, "main");
    assert_eq!(cluster.as_deref(), Some("prod"));
    assert_eq!(
        queue_url.as_deref(),
        Some("https://sqs.us-east-1.amazonaws.com/123456789012/stevedore-prod")
    );
    assert_eq!(lease_table.as_deref(), Some("stevedore-prod-lease"));
    assert_eq!(log_format, stevedore::cli::LogFormat::Json);
    assert_eq!((once, dry_run, endpoint_url), (false, false, None));
    // The health check runs the binary where the image puts it, against
    // the address the controller serves on, which the container exposes.
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let health = &container["healthCheck"]["command"];
    let entrypoint = health[1].as_str().unwrap();
    assert!(
        dockerfile.contains(&format!("ENTRYPOINT [\"{entrypoint}\"]")),
        "the Dockerfile's entry point is not {entrypoint}"
    );
    let port = container["portMappings"][0]["containerPort"]
        .as_u64()
        .unwrap();
    assert_eq!(listen, Some(format!("0.0.0.0:{port}")));
    assert_eq!(
        health.as_array().unwrap()[2..],
        [
            json!("status"),
            json!("--url"),
            json!(format!("http://127.0.0.1:{port}"))
        ]
    );
    assert!(dockerfile.contains(&format!("EXPOSE {port}")));
}

/// The libraries the runtime image (`gcr.io/distroless/cc-debian12`)
/// provides, and its glibc's version (Debian 12's).
const RUNTIME_LIBRARIES: [&str; 5] = [
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
];
const RUNTIME_GLIBC: (u32, u32) = (2, 36);

#[test]
fn the_binary_needs_only_what_the_runtime_image_has() {
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    assert!(stages[0].contains("-bookworm"), "built on Debian 12");
    assert_eq!(stages[1], "FROM gcr.io/distroless/cc-debian12:nonroot");
    let runtime = dockerfile.split(stages[1]).nth(1).unwrap();
    assert!(
        runtime.contains("\nUSER nonroot:nonroot\n"),
        "runs as non-root"
    );

    let binary = env!("CARGO_BIN_EXE_stevedore");
    let readelf = |flag: &str| {
        let out = Command::new("readelf")
            .args([flag, "--wide", binary])
            .output()
            .expect("readelf (binutils) runs");
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let needed: Vec<String> = readelf("-d")
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next().map(str::to_owned))
        .collect();
    assert!(needed.iter().any(|l| l == "libc.so.6"), "{needed:?}");
    for library in &needed {
        assert!(
            RUNTIME_LIBRARIES.contains(&library.as_str()),
            "the binary needs {library}, which the runtime image does not have"
        );
    }
    let newest = readelf("-V")
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .unwrap();
    assert!(
        newest <= RUNTIME_GLIBC,
        "the binary needs glibc {newest:?}; the runtime image has {RUNTIME_GLIBC:?}"
    );
}

/// Runs cfn-lint (from `.venv`, see `scripts/requirements-test.txt`) on a
/// template; its findings if any.
fn cfn_lint(template: &std::path::Path) -> Result<(), String> {
    let cfn_lint = repo(".venv/bin/cfn-lint");
    assert!(
        cfn_lint.exists(),
        "{} not found: run `scripts/test.sh`, which installs it into .venv",
        cfn_lint.display()
    );
    let out = Command::new(cfn_lint).arg(template).output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[test]
fn the_template_and_every_iam_action_pass_cfn_lint() {
    cfn_lint(&repo("examples/deploy/cloudformation.yaml")).unwrap_or_else(|e| panic!("{e}"));

    // Every action of every policy `iam-policy` prints exists (cfn-lint
    // knows each service's actions), the installer's included.
    let scope = stevedore::setup::iam::Scope {
        cluster: "prod",
        region: Some("us-east-1"),
        account: Some("123456789012"),
        queue: "stevedore-prod",
    };
    let policies = [
        stevedore::setup::iam::with_lease(stevedore::setup::iam::policy(&scope), &scope, "leases"),
        stevedore::setup::iam::installer_policy(&scope),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policies.json");
    let write = |documents: &[Value]| {
        let resources: serde_json::Map<String, Value> = documents
            .iter()
            .enumerate()
            .map(|(i, document)| {
                (
                    format!("Policy{i}"),
                    json!({"Type": "AWS::IAM::ManagedPolicy", "Properties": {"PolicyDocument": document}}),
                )
            })
            .collect();
        let template = json!({"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources});
        std::fs::write(&path, template.to_string()).unwrap();
    };
    write(&policies);
    cfn_lint(&path).unwrap_or_else(|e| panic!("{e}"));

    // And cfn-lint does find an action that does not exist.
    let mut wrong = policies[0].clone();
    wrong["Statement"][0]["Action"][0] = json!("ecs:ListServicez");
    write(&[wrong]);
    assert!(cfn_lint(&path).unwrap_err().contains("listservicez"));
}
