//! The least-privilege IAM policies for one cluster, printed by `stevedore
//! iam-policy`: the controller's (for its task role) and the installer's
//! (for whoever runs `stevedore install` and `uninstall`).

use serde_json::{Value, json};

/// What to scope the policy to. `None` region or account means any (`*`).
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    pub cluster: &'a str,
    pub region: Option<&'a str>,
    pub account: Option<&'a str>,
    /// The SQS queue the ECS events arrive in.
    pub queue: &'a str,
}

/// The ECS operations the controller calls, and on what.
pub const ECS_READS_ON_CLUSTER: [&str; 3] = [
    "ecs:ListServices",
    "ecs:ListTasks",
    "ecs:ListContainerInstances",
];

/// The policy document.
pub fn policy(scope: &Scope<'_>) -> Value {
    let region = scope.region.unwrap_or("*");
    let account = scope.account.unwrap_or("*");
    let ecs = |resource: &str| format!("arn:aws:ecs:{region}:{account}:{resource}");
    let cluster = scope.cluster;
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadCluster",
                "Effect": "Allow",
                "Action": ECS_READS_ON_CLUSTER,
                "Resource": ecs(&format!("cluster/{cluster}"))
            },
            {
                "Sid": "ReadServicesTasksInstances",
                "Effect": "Allow",
                "Action": ["ecs:DescribeServices", "ecs:DescribeTasks", "ecs:DescribeContainerInstances", "ecs:GetTaskProtection"],
                "Resource": [
                    ecs(&format!("service/{cluster}/*")),
                    ecs(&format!("task/{cluster}/*")),
                    ecs(&format!("container-instance/{cluster}/*"))
                ]
            },
            {
                "Sid": "ReadTaskDefinitions",
                "Effect": "Allow",
                "Action": ["ecs:DescribeTaskDefinition"],
                // DescribeTaskDefinition supports no resource-level permission.
                "Resource": "*"
            },
            {
                "Sid": "Act",
                "Effect": "Allow",
                "Action": ["ecs:StopTask", "ecs:UpdateService", "ecs:UpdateTaskProtection"],
                "Resource": [ecs(&format!("task/{cluster}/*")), ecs(&format!("service/{cluster}/*"))]
            },
            {
                "Sid": "ReadScalingMetrics",
                "Effect": "Allow",
                "Action": ["cloudwatch:GetMetricData"],
                // GetMetricData supports no resource-level permission.
                "Resource": "*"
            },
            {
                "Sid": "FindOtherScalers",
                "Effect": "Allow",
                "Action": ["application-autoscaling:DescribeScalableTargets"],
                // Describe calls of Application Auto Scaling support no resource-level permission.
                "Resource": "*"
            },
            {
                "Sid": "PublishAudit",
                "Effect": "Allow",
                "Action": ["events:PutEvents"],
                "Resource": format!("arn:aws:events:{region}:{account}:event-bus/*")
            },
            {
                "Sid": "ReadEvents",
                "Effect": "Allow",
                "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                "Resource": format!("arn:aws:sqs:{region}:{account}:{}", scope.queue)
            }
        ]
    })
}

/// The policy `stevedore install` and `uninstall` need: the cluster's ARN,
/// the queue and its policy, the rule and its target. Nothing else: the
/// controller's role is created by whoever deploys it, with [`policy`].
pub fn installer_policy(scope: &Scope<'_>) -> Value {
    let region = scope.region.unwrap_or("*");
    let account = scope.account.unwrap_or("*");
    let rule = crate::setup::install::rule_name(scope.cluster);
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "FindCluster",
                "Effect": "Allow",
                "Action": ["ecs:DescribeClusters"],
                "Resource": format!("arn:aws:ecs:{region}:{account}:cluster/{}", scope.cluster)
            },
            {
                "Sid": "Queue",
                "Effect": "Allow",
                "Action": ["sqs:CreateQueue", "sqs:GetQueueAttributes", "sqs:SetQueueAttributes", "sqs:DeleteQueue"],
                "Resource": format!("arn:aws:sqs:{region}:{account}:{}", scope.queue)
            },
            {
                "Sid": "FindQueues",
                "Effect": "Allow",
                "Action": ["sqs:ListQueues"],
                // ListQueues supports no resource-level permission.
                "Resource": "*"
            },
            {
                "Sid": "Rule",
                "Effect": "Allow",
                "Action": ["events:PutRule", "events:PutTargets", "events:RemoveTargets", "events:DeleteRule"],
                "Resource": format!("arn:aws:events:{region}:{account}:rule/{rule}")
            },
            {
                "Sid": "FindRules",
                "Effect": "Allow",
                "Action": ["events:ListRules"],
                // ListRules supports no resource-level permission.
                "Resource": "*"
            }
        ]
    })
}

/// Adds what leader election needs: conditional writes to the lease item's
/// table.
pub fn with_lease(mut policy: Value, scope: &Scope<'_>, table: &str) -> Value {
    let region = scope.region.unwrap_or("*");
    let account = scope.account.unwrap_or("*");
    if let Some(statements) = policy["Statement"].as_array_mut() {
        statements.push(json!({
            "Sid": "LeaderLease",
            "Effect": "Allow",
            // Scan: with shared clusters, each replica counts the live heartbeats.
            "Action": ["dynamodb:UpdateItem", "dynamodb:Scan"],
            "Resource": format!("arn:aws:dynamodb:{region}:{account}:table/{table}")
        }));
    }
    policy
}

/// The statements of [`policy`] for what lives in the controller's own
/// account only: the event queue and the audit bus.
const HOME_ONLY: [&str; 2] = ["PublishAudit", "ReadEvents"];

/// The permissions of the role stevedore assumes in another account: read
/// and act on the clusters it manages there, `(cluster, region)`, and read
/// their scaling metrics: [`policy`]'s statements for each cluster, merged,
/// without those of the event queue and audit bus (they stay in the
/// controller's own account, under its own role).
pub fn target_role_policy(account: &str, clusters: &[(&str, &str)]) -> Value {
    let mut merged: Vec<Value> = vec![];
    for (cluster, region) in clusters {
        let one = policy(&Scope {
            cluster,
            region: Some(region),
            account: Some(account),
            queue: "",
        });
        for statement in one["Statement"].as_array().into_iter().flatten() {
            let sid = statement["Sid"].as_str().unwrap_or_default();
            if HOME_ONLY.contains(&sid) {
                continue;
            }
            match merged.iter_mut().find(|m| m["Sid"] == sid) {
                Some(m) if m["Resource"] != "*" => {
                    let mut resources = resource_list(&m["Resource"]);
                    resources.extend(resource_list(&statement["Resource"]));
                    resources.dedup();
                    m["Resource"] = json!(resources);
                }
                Some(_) => {}
                None => merged.push(statement.clone()),
            }
        }
    }
    json!({"Version": "2012-10-17", "Statement": merged})
}

/// A statement's resources as a list.
fn resource_list(resource: &Value) -> Vec<Value> {
    match resource {
        Value::Array(list) => list.clone(),
        one => vec![one.clone()],
    }
}

/// The trust policy of a role in another account: the controller's role
/// may assume it, with the external ID when one is set.
pub fn trust_policy(controller_role: &str, external_id: Option<&str>) -> Value {
    let mut statement = json!({
        "Sid": "StevedoreController",
        "Effect": "Allow",
        "Principal": {"AWS": controller_role},
        "Action": "sts:AssumeRole"
    });
    if let Some(id) = external_id {
        statement["Condition"] = json!({"StringEquals": {"sts:ExternalId": id}});
    }
    json!({"Version": "2012-10-17", "Statement": [statement]})
}

/// Adds what reaching clusters in other accounts needs: assuming their
/// roles. `policy` may be empty (`{}`): the controller manages no cluster
/// of its own account.
pub fn with_assume_role(mut policy: Value, roles: &[&str]) -> Value {
    if roles.is_empty() {
        return policy;
    }
    if policy.get("Statement").is_none() {
        policy = json!({"Version": "2012-10-17", "Statement": []});
    }
    if let Some(statements) = policy["Statement"].as_array_mut() {
        statements.push(json!({
            "Sid": "AssumeClusterRoles",
            "Effect": "Allow",
            "Action": ["sts:AssumeRole"],
            "Resource": roles
        }));
    }
    policy
}

/// Whether the policy allows an action (such as `ecs:StopTask`).
pub fn allows(policy: &Value, action: &str) -> bool {
    policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| {
            s["Effect"] == "Allow"
                && match &s["Action"] {
                    Value::String(a) => a == action,
                    Value::Array(list) => list.iter().any(|a| a == action),
                    _ => false,
                }
        })
}

/// The default queue name for a cluster's events.
pub fn default_queue(cluster: &str) -> String {
    format!("stevedore-{cluster}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_is_scoped_to_the_cluster_or_says_why_not() {
        let scope = Scope {
            cluster: "prod",
            region: Some("eu-west-1"),
            account: Some("123456789012"),
            queue: "stevedore-prod",
        };
        let p = policy(&scope);
        let installer = installer_policy(&scope);
        let statements = p["Statement"].as_array().unwrap();
        for s in statements
            .iter()
            .chain(installer["Statement"].as_array().unwrap())
        {
            let resources: Vec<String> = match &s["Resource"] {
                Value::String(r) => vec![r.clone()],
                Value::Array(rs) => rs.iter().map(|r| r.as_str().unwrap().to_owned()).collect(),
                _ => unreachable!(),
            };
            for r in resources {
                assert!(
                    r == "*"
                        && [
                            "ReadTaskDefinitions",
                            "ReadScalingMetrics",
                            "FindOtherScalers",
                            "FindQueues",
                            "FindRules"
                        ]
                        .contains(&s["Sid"].as_str().unwrap())
                        || r.contains("event-bus/*") && s["Sid"] == "PublishAudit"
                        || r.contains("prod")
                            && r.contains("eu-west-1")
                            && r.contains("123456789012"),
                    "{r} in {s}"
                );
            }
        }
        assert!(allows(&p, "ecs:StopTask"));
        assert!(!allows(&p, "ecs:DeleteService"));
        assert!(!allows(&p, "ecs:RunTask"));
        assert!(
            !allows(&p, "sqs:CreateQueue"),
            "the controller creates nothing"
        );
        assert!(allows(&installer, "events:PutRule"));
        let leased = with_lease(p.clone(), &scope, "leases");
        assert!(allows(&leased, "dynamodb:UpdateItem") && !allows(&p, "dynamodb:UpdateItem"));
        assert!(
            !allows(&installer, "ecs:StopTask"),
            "the installer acts on no task"
        );
    }

    #[test]
    fn a_target_role_reads_and_acts_on_its_clusters_only_and_trusts_the_controller() {
        let p = target_role_policy(
            "111111111111",
            &[("east", "us-east-1"), ("west", "eu-west-1")],
        );
        let text = p.to_string();
        assert!(text.contains("arn:aws:ecs:eu-west-1:111111111111:cluster/west"));
        assert!(text.contains("arn:aws:ecs:us-east-1:111111111111:task/east/*"));
        assert!(allows(&p, "ecs:StopTask") && allows(&p, "ecs:ListTasks"));
        for home_only in [
            "sqs:ReceiveMessage",
            "events:PutEvents",
            "dynamodb:UpdateItem",
        ] {
            assert!(!allows(&p, home_only), "{home_only}");
        }
        let trust = trust_policy("arn:aws:iam::123456789012:role/stevedore", Some("xyz"));
        assert_eq!(
            trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
            "xyz"
        );
        assert!(
            trust_policy("r", None)["Statement"][0]
                .get("Condition")
                .is_none()
        );
        // Unscoped reads stay `*`, merged or not.
        for s in p["Statement"].as_array().unwrap() {
            if s["Sid"] == "ReadTaskDefinitions" {
                assert_eq!(s["Resource"], "*");
            }
        }
        assert_eq!(default_queue("prod"), "stevedore-prod");
        let one = json!({"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole"}]});
        assert!(allows(&one, "sts:AssumeRole") && !allows(&one, "ecs:StopTask"));
        let controller = with_assume_role(json!({}), &["arn:aws:iam::111111111111:role/x"]);
        assert!(allows(&controller, "sts:AssumeRole"));
        assert_eq!(with_assume_role(json!({}), &[]), json!({}));
    }
}
