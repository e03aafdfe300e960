//! The AWS side: one SDK configuration and call counter for every client
//! of the process ([`AwsClients`]); the [`crate::backend::Backend`] over
//! the ECS API ([`ecs`]); the SQS queue of ECS events ([`sqs`]); the
//! counting of calls and throttles ([`api_counter`]).
//!
//! Credentials and region come from the standard chain; an endpoint URL
//! (`--endpoint-url`, or `AWS_ENDPOINT_URL`) points it at any
//! ECS-compatible API, such as moto's server in the tests.

pub mod api_counter;
pub mod ecs;
pub mod router;
pub mod sqs;

pub use ecs::AwsBackend;
pub use router::Router;
pub use sqs::{QueueError, SqsEvents};

use api_counter::ApiCounter;

/// The SDK's configuration from the standard chain (environment, profile,
/// instance or task role), with another endpoint if given.
pub async fn sdk_config(endpoint_url: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// The SDK's configuration and one [`ApiCounter`], from which every client
/// of the process is made, so that calls and throttles are counted on each
/// API stevedore calls (ECS, CloudWatch, Application Auto Scaling, SQS,
/// EventBridge, DynamoDB).
#[derive(Debug, Clone)]
pub struct AwsClients {
    config: aws_config::SdkConfig,
    counter: ApiCounter,
}

impl AwsClients {
    /// With the standard configuration chain, optionally another endpoint.
    pub async fn connect(endpoint_url: Option<&str>) -> AwsClients {
        AwsClients {
            config: sdk_config(endpoint_url).await,
            counter: ApiCounter::default(),
        }
    }

    /// The clients for a cluster at `location`: its region, and the role
    /// assumed there (through STS, with the controller's own credentials;
    /// the SDK's identity cache renews them before they expire). Calls
    /// count into the same counter.
    pub async fn at(&self, location: &crate::spec::cluster::Location) -> AwsClients {
        let mut config = self
            .config
            .to_builder()
            .region(aws_config::Region::new(location.region.clone()));
        if let Some(role) = &location.role {
            let mut provider = aws_config::sts::AssumeRoleProvider::builder(&role.arn)
                .session_name("stevedore")
                .configure(&self.config);
            if let Some(id) = &role.external_id {
                provider = provider.external_id(id);
            }
            config = config.credentials_provider(
                aws_sdk_ecs::config::SharedCredentialsProvider::new(provider.build().await),
            );
        }
        AwsClients {
            config: config.build(),
            counter: self.counter.clone(),
        }
    }

    pub fn counter(&self) -> &ApiCounter {
        &self.counter
    }

    pub fn ecs(&self) -> aws_sdk_ecs::Client {
        let config = aws_sdk_ecs::config::Builder::from(&self.config);
        aws_sdk_ecs::Client::from_conf(config.interceptor(self.counter.clone()).build())
    }

    pub fn cloudwatch(&self) -> aws_sdk_cloudwatch::Client {
        let config = aws_sdk_cloudwatch::config::Builder::from(&self.config);
        aws_sdk_cloudwatch::Client::from_conf(config.interceptor(self.counter.clone()).build())
    }

    pub fn autoscaling(&self) -> aws_sdk_applicationautoscaling::Client {
        let config = aws_sdk_applicationautoscaling::config::Builder::from(&self.config);
        aws_sdk_applicationautoscaling::Client::from_conf(
            config.interceptor(self.counter.clone()).build(),
        )
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        let config = aws_sdk_sqs::config::Builder::from(&self.config);
        aws_sdk_sqs::Client::from_conf(config.interceptor(self.counter.clone()).build())
    }

    pub fn eventbridge(&self) -> aws_sdk_eventbridge::Client {
        let config = aws_sdk_eventbridge::config::Builder::from(&self.config);
        aws_sdk_eventbridge::Client::from_conf(config.interceptor(self.counter.clone()).build())
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::config::Builder::from(&self.config);
        aws_sdk_dynamodb::Client::from_conf(config.interceptor(self.counter.clone()).build())
    }
}

/// The most of a raw response body written to the debug log.
const RAW_BODY_LOGGED: usize = 1024;

/// An SDK error as one short line: HTTP status, AWS error code, message and
/// request id (`HTTP 400 ClusterNotFoundException: Cluster not found.
/// (request id 5c2f…)`). What the SDK would print whole (an HTML error
/// page, a response that did not parse, with its headers) is logged only at
/// debug level, truncated, so an error line stays readable and bounded
/// whatever the endpoint answers.
pub fn one_line<E>(e: &aws_smithy_runtime_api::client::result::SdkError<E, HttpResponse>) -> String
where
    E: aws_sdk_ecs::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata};
    use aws_sdk_ecs::operation::RequestId;
    use aws_smithy_runtime_api::client::result::SdkError;

    let raw = match e {
        SdkError::ServiceError(s) => Some(s.raw()),
        SdkError::ResponseError(r) => Some(r.raw()),
        _ => None,
    };
    let Some(raw) = raw else {
        // No response: a timeout, a connection refused, a request not built.
        return clip(&DisplayErrorContext(e).to_string(), 300);
    };
    let body = raw.body().bytes().unwrap_or_default();
    tracing::debug!(
        status = raw.status().as_u16(),
        body = %String::from_utf8_lossy(&body[..body.len().min(RAW_BODY_LOGGED)]),
        truncated = body.len() > RAW_BODY_LOGGED,
        "raw response of a failed call"
    );
    let mut line = format!("HTTP {}", raw.status().as_u16());
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => line += &format!(" {code}: {}", clip(message, 300)),
        (Some(code), None) => line += &format!(" {code}"),
        _ if matches!(e, SdkError::ResponseError(_)) => {
            line += ": the response could not be read";
            let mut causes = vec![];
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                causes.push(c.to_string());
                cause = c.source();
            }
            causes.dedup();
            if !causes.is_empty() {
                line += &format!(" ({})", clip(&causes.join(": "), 200));
            }
        }
        _ => line += ": no AWS error in the response",
    }
    if let Some(id) = e.request_id() {
        line += &format!(" (request id {})", clip(id, 100));
    }
    line
}

/// The SDK's raw HTTP response type, the same for every service's client.
pub(crate) type HttpResponse = aws_smithy_runtime_api::client::orchestrator::HttpResponse;

/// `text` on one line, at most `max` characters (with `…` when cut).
fn clip(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}
