//! stevedore: a Kubernetes-style declarative controller for Amazon ECS.
//!
//! Users declare per-service policies (`ServicePolicy`, `stevedore.io/v1alpha1`)
//! in YAML: one task per host, zone balance, max skew over any topology
//! domain, scale thresholds. stevedore validates them and reconciles ECS
//! state toward them with the fewest task moves, against live ECS or its
//! simulator.
//!
//! # Layout
//!
//! - [`spec`]: the policy format. [`spec::v1alpha1`] holds the wire types
//!   (what users write, also the source of the JSON Schema);
//!   [`spec::source`] decodes files (size, UTF-8 and YAML limits);
//!   [`spec::convert`] validates one document and applies defaults, giving a
//!   [`spec::Policy`]; [`spec::conflicts`] checks rules across policies
//!   (unique names, one policy per service).
//! - [`diag`]: diagnostics as data (file, line, column, rule, help) and
//!   their rustc-style and JSON renderings.
//! - [`schema`]: the JSON Schema generated from the wire types; the copy in
//!   `schema/` is committed and checked by a test.
//! - [`model`]: the cluster snapshot, plain data (instances, services,
//!   tasks; tasks refer to the others by index).
//! - [`plan`]: the planner, pure: `(policies, snapshot, now) -> Plan`.
//!   [`plan::optimum`] computes the fewest moves, [`plan::placement`] models
//!   how ECS places and scales in tasks, [`plan::spread`] chooses the stops,
//!   [`plan::one_per_host`] the desired count, [`plan::scaling`] the
//!   desired count a metric asks for (steps, bounds, cooldowns, scale-in
//!   stabilization).
//! - [`backend`]: the narrow ECS interface the controller uses;
//!   [`aws`] implements it over the ECS API, paced by [`pacing`], with
//!   calls and throttled attempts counted by [`api_counter`];
//!   [`refresh`]: reading again only what events touched, merged into the
//!   last snapshot; [`readings`]: which metric each scaled service reads,
//!   read in one batch; [`controller`]: the cluster view, one reconcile (plan,
//!   verify, act) and the run loop, with its [`controller::schedule`] (when
//!   to look); the loop takes a backend, an [`events::EventSource`] and a
//!   clock, so `stevedore sim` runs this very loop; [`outcome`]: what one
//!   reconcile did, for the status server and the audit events; [`watch`]: watching the specs for
//!   changes, git-sync's symlink swap included; [`gitsource`]: the specs
//!   from a git repository;
//!   [`observe`]: what `run --listen` serves (health, readiness,
//!   Prometheus metrics, status); [`audit`]: actions and status changes
//!   published to EventBridge; [`lease`]: leader election through a
//!   DynamoDB lease, with writes fenced by it; [`iam`]: the IAM policies; [`install`]: the
//!   EventBridge rule and SQS queue; [`events`]: parsing and deduplicating
//!   the ECS events they deliver, and the event-source trait both the
//!   queue and the simulator implement.
//! - [`sim`]: the ECS simulator (a [`backend::Backend`]), scenario files
//!   and the large-cluster generator ([`sim::scenario`]), and the run of a
//!   scenario (the world beside the production loop, on tokio's paused
//!   clock) with its report ([`sim::run`]).
//! - [`cli`]: argument parsing and the commands; `main.rs` only calls it.
//!
//! Outside `src/`: `specs/` holds the demo cluster's policies as a GitOps
//! directory, `examples/` more policies and the simulator scenarios,
//! `schema/` the published schemas, `tests/` the integration tests (one
//! binary, `tests/it/`), `benches/` the planner benchmarks,
//! `scripts/test.sh` the whole test suite as CI runs it, and `Dockerfile`
//! and `examples/deploy/` the image and its deployment (CloudFormation, an
//! ECS task definition).

pub mod aws;
pub mod backend;
pub mod cli;
pub mod controller;
pub mod model;
pub mod plan;
pub mod schema;
pub mod setup;
pub mod sim;
pub mod source;
pub mod spec;
pub mod status;
