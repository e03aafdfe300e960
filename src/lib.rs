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
//! Folders by role, each a layer that imports only those below it (no two
//! modules import each other):
//!
//! - [`spec`]: the policy format. [`spec::v1alpha1`] holds the wire types
//!   (what users write, also the source of the JSON Schema);
//!   [`spec::source`] decodes files (size, UTF-8 and YAML limits);
//!   [`spec::convert`] validates one document and applies defaults, giving a
//!   [`spec::Policy`] (or a [`spec::Budget`], the second kind, with its cron
//!   windows in [`spec::budget`], or a [`spec::Cluster`], the third: where a
//!   cluster lives and the role to reach it); [`spec::conflicts`] checks
//!   rules across documents;
//!   [`spec::diag`] the diagnostics (file, line, column, rule, help) and
//!   their rustc-style and JSON renderings. [`schema`]: the JSON Schemas
//!   generated from the wire types.
//! - [`model`]: the cluster snapshot, plain data.
//! - [`plan`]: the planner, pure: `(policies, snapshot, now) -> Plan`.
//!   [`plan::optimum`] the fewest moves, [`plan::placement`] how ECS places
//!   and scales in tasks, [`plan::spread`] which stops (one file per
//!   concern), [`plan::one_per_host`] and [`plan::scaling`] the desired
//!   count; [`plan::budget`] spends a cluster's DisruptionBudget across its
//!   services and keeps the ledger of stops, [`plan::backoff`] holds a
//!   service whose moves missed, [`plan::scale_in`] keeps the spread when
//!   the count goes down.
//! - [`backend`]: what the controller asks of ECS (the [`backend::Backend`]
//!   trait, ECS's batch limits), what ECS tells it ([`backend::events`]:
//!   parsing, dedupe, the [`backend::events::EventSource`] trait), reading
//!   again only what events touched ([`backend::refresh`]) and ECS's API
//!   rates ([`backend::pacing`]). Both backends implement these.
//! - [`aws`]: the AWS side: one SDK configuration for every client, the
//!   backend over ECS ([`aws::ecs`]), one per location, behind the backend
//!   that routes each cluster to its region and assumed role
//!   ([`aws::router`]), the SQS queue ([`aws::sqs`]), calls counted per
//!   operation ([`aws::api_counter`]).
//! - [`sim`]: the ECS simulator, a backend and an event source of its own,
//!   scenario files and the large-cluster generator ([`sim::scenario`]),
//!   and the run of a scenario on tokio's paused clock ([`sim::run`]); a
//!   live cluster captured as a scenario ([`sim::capture`], `stevedore
//!   snapshot`).
//! - [`status`]: what the controller tells the world: health, readiness,
//!   Prometheus metrics and `/status` (the server), audit events to
//!   EventBridge ([`status::audit`]), and [`status::outcome`], what one
//!   reconcile did.
//! - [`source`]: where policies come from: files watched ([`source::files`])
//!   or a git repository ([`source::git`]).
//! - [`controller`]: one reconcile (read, plan, verify, act) in `mod.rs`;
//!   the loop ([`controller::run`]) with its schedule
//!   ([`controller::schedule`]: when to look), its event intake (a receive
//!   always in flight), the policies in force (reloaded), metric readings
//!   for scaling ([`controller::readings`]) and leases
//!   ([`controller::lease`]: one leader, or clusters shared by replicas). The loop takes a backend, an event source and
//!   a clock, so `stevedore sim` runs this very loop.
//! - [`setup`]: the EventBridge rule and SQS queue, and the IAM policies.
//! - [`cli`]: one file per command; `main.rs` only calls it.
//!
//! To add a placement rule: its wire field in `spec/v1alpha1.rs`, its
//! checked form in `spec/policy.rs` and `spec/convert.rs`, its planning in
//! a new file under `plan/` called from `plan/mod.rs`, a case in the
//! simulator's scenarios (`examples/scenarios/`), then
//! `cargo run -- schema > schema/v1alpha1.json` (and `schema servicepolicy`).
//!
//! To add a trigger source: implement [`backend::events::EventSource`]
//! (receive and delete, as `aws/sqs.rs` and `sim/mod.rs` do) if it brings
//! events; if it only says when to look, add its wake-up to
//! `controller/schedule.rs` (pure, table-tested) and one `select!` arm in
//! `controller/run.rs`.
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
pub mod words;
