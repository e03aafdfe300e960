//! The least-privilege IAM policy the controller needs for one cluster:
//! printed by `stevedore iam-policy`, for the controller's task role.

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
                "Action": ["ecs:StopTask", "ecs:UpdateService"],
                "Resource": [ecs(&format!("task/{cluster}/*")), ecs(&format!("service/{cluster}/*"))]
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
        let p = policy(&Scope {
            cluster: "prod",
            region: Some("eu-west-1"),
            account: Some("123456789012"),
            queue: "stevedore-prod",
        });
        for s in p["Statement"].as_array().unwrap() {
            let resources: Vec<String> = match &s["Resource"] {
                Value::String(r) => vec![r.clone()],
                Value::Array(rs) => rs.iter().map(|r| r.as_str().unwrap().to_owned()).collect(),
                _ => unreachable!(),
            };
            for r in resources {
                assert!(
                    r == "*" && s["Sid"] == "ReadTaskDefinitions"
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
    }
}
