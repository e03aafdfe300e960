//! `stevedore install` / `uninstall`: the EventBridge rule that sends a
//! cluster's ECS events to an SQS queue, and the queue (with a policy that
//! lets only that rule send to it). Every step is idempotent, so running
//! `install` twice leaves one rule, one target and one queue.

use std::io::Write;

use aws_sdk_eventbridge::types::{RuleState, Target};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;

/// The AWS clients the installer uses.
#[derive(Debug, Clone)]
pub struct Clients {
    pub ecs: aws_sdk_ecs::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub events: aws_sdk_eventbridge::Client,
}

impl Clients {
    /// With the standard configuration chain, optionally another endpoint.
    pub async fn connect(endpoint_url: Option<&str>) -> Clients {
        let config = crate::aws::sdk_config(endpoint_url).await;
        Clients {
            ecs: aws_sdk_ecs::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            events: aws_sdk_eventbridge::Client::new(&config),
        }
    }
}

/// The rule's name for a cluster.
pub fn rule_name(cluster: &str) -> String {
    format!("stevedore-{cluster}")
}

/// The id of the rule's SQS target.
pub const TARGET_ID: &str = "stevedore-sqs";

/// The ECS events of one cluster.
pub fn event_pattern(cluster_arn: &str) -> String {
    json!({
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change", "ECS Container Instance State Change", "ECS Service Action", "ECS Deployment State Change"],
        "detail": {"clusterArn": [cluster_arn]}
    })
    .to_string()
}

/// Only the rule may send to the queue.
pub fn queue_policy(queue_arn: &str, rule_arn: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "EventBridgeRuleOnly",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}
        }]
    })
    .to_string()
}

/// What `install` created or found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub queue_url: String,
    pub queue_arn: String,
    pub rule_arn: String,
}

/// Why `install` or `uninstall` stopped (what it did before stays done:
/// both are idempotent, so running them again finishes the work).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An API call failed: the operation and the SDK's whole error.
    #[error("{operation}: {message}")]
    Api {
        operation: &'static str,
        message: String,
    },
    #[error("cluster `{0}` not found")]
    ClusterNotFound(String),
    #[error("PutTargets: {0}")]
    TargetNotPut(String),
    #[error("GetQueueAttributes: the queue has no ARN")]
    QueueWithoutArn,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn failed<E: aws_sdk_ecs::error::ProvideErrorMetadata + std::error::Error + 'static>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_ecs::error::SdkError<E, crate::aws::HttpResponse>) -> Error {
    move |e| Error::Api {
        operation,
        message: crate::aws::one_line(&e),
    }
}

/// The cluster's ARN (the rule matches on it).
async fn cluster_arn(clients: &Clients, cluster: &str) -> Result<String> {
    let out = clients
        .ecs
        .describe_clusters()
        .clusters(cluster)
        .send()
        .await
        .map_err(failed("DescribeClusters"))?;
    out.clusters()
        .first()
        .and_then(|c| c.cluster_arn())
        .map(str::to_owned)
        .ok_or_else(|| Error::ClusterNotFound(cluster.to_owned()))
}

/// Creates or updates the queue, its policy, the rule and its target.
/// With `dry_run`, only says what it would do.
pub async fn install(
    clients: &Clients,
    cluster: &str,
    queue_name: &str,
    dry_run: bool,
    log: &mut dyn Write,
) -> Result<Option<Installed>> {
    let arn = cluster_arn(clients, cluster).await?;
    let rule = rule_name(cluster);
    if dry_run {
        let _ = writeln!(log, "would create or update SQS queue {queue_name}");
        let _ = writeln!(
            log,
            "would create or update EventBridge rule {rule} with pattern {}",
            event_pattern(&arn)
        );
        let _ = writeln!(
            log,
            "would let only rule {rule} send to the queue, and target the queue from the rule"
        );
        return Ok(None);
    }
    let queue_url = clients
        .sqs
        .create_queue()
        .queue_name(queue_name)
        .send()
        .await
        .map_err(failed("CreateQueue"))?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let attributes = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(failed("GetQueueAttributes"))?;
    let queue_arn = attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or(Error::QueueWithoutArn)?;
    let _ = writeln!(log, "queue {queue_name}: {queue_url}");
    let rule_arn = clients
        .events
        .put_rule()
        .name(&rule)
        .description(format!("ECS events of cluster {cluster}, for stevedore"))
        .event_pattern(event_pattern(&arn))
        .state(RuleState::Enabled)
        .send()
        .await
        .map_err(failed("PutRule"))?
        .rule_arn()
        .unwrap_or_default()
        .to_owned();
    let _ = writeln!(log, "rule {rule}: {rule_arn}");
    clients
        .sqs
        .set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(
            QueueAttributeName::Policy,
            queue_policy(&queue_arn, &rule_arn),
        )
        .send()
        .await
        .map_err(failed("SetQueueAttributes"))?;
    let target = Target::builder()
        .id(TARGET_ID)
        .arn(&queue_arn)
        .build()
        .map_err(|e| Error::TargetNotPut(e.to_string()))?;
    let out = clients
        .events
        .put_targets()
        .rule(&rule)
        .targets(target)
        .send()
        .await
        .map_err(failed("PutTargets"))?;
    if out.failed_entry_count() > 0 {
        return Err(Error::TargetNotPut(format!("{:?}", out.failed_entries())));
    }
    let _ = writeln!(log, "rule {rule} sends to queue {queue_name}");
    Ok(Some(Installed {
        queue_url,
        queue_arn,
        rule_arn,
    }))
}

/// Removes the target, the rule and the queue. Missing pieces are fine.
pub async fn uninstall(
    clients: &Clients,
    cluster: &str,
    queue_name: &str,
    log: &mut dyn Write,
) -> Result<()> {
    let rule = rule_name(cluster);
    let rules = clients
        .events
        .list_rules()
        .name_prefix(&rule)
        .send()
        .await
        .map_err(failed("ListRules"))?;
    if rules
        .rules()
        .iter()
        .any(|r| r.name() == Some(rule.as_str()))
    {
        clients
            .events
            .remove_targets()
            .rule(&rule)
            .ids(TARGET_ID)
            .send()
            .await
            .map_err(failed("RemoveTargets"))?;
        clients
            .events
            .delete_rule()
            .name(&rule)
            .send()
            .await
            .map_err(failed("DeleteRule"))?;
        let _ = writeln!(log, "deleted rule {rule}");
    }
    let queues = clients
        .sqs
        .list_queues()
        .queue_name_prefix(queue_name)
        .send()
        .await
        .map_err(failed("ListQueues"))?;
    for url in queues
        .queue_urls()
        .iter()
        .filter(|u| u.rsplit('/').next() == Some(queue_name))
    {
        clients
            .sqs
            .delete_queue()
            .queue_url(url)
            .send()
            .await
            .map_err(failed("DeleteQueue"))?;
        let _ = writeln!(log, "deleted queue {queue_name}");
    }
    Ok(())
}
