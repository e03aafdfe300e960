//! Setting a cluster up for the controller: the EventBridge rule and SQS
//! queue that bring its ECS events ([`install`]), and the least-privilege
//! IAM policies of the controller and the installer ([`iam`]).

pub mod iam;
pub mod install;
