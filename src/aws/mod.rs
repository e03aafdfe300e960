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
