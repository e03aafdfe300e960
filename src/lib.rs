//! stevedore: a Kubernetes-style declarative controller for Amazon ECS.
//!
//! Users declare per-service policies (`ServicePolicy`, `stevedore.io/v1alpha1`)
//! in YAML: one task per host, zone balance, max skew over any topology
//! domain, scale thresholds. stevedore validates them, and (in later parts)
//! reconciles live ECS state toward them with the fewest task moves.
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
//! - [`cli`]: argument parsing and the commands; `main.rs` only calls it.
//!
//! Outside `src/`: `specs/` holds the demo cluster's policies as a GitOps
//! directory, `examples/` more policies, `schema/` the published schema,
//! `tests/` the integration tests (one binary, `tests/it/`), and
//! `scripts/test.sh` the whole test suite as CI runs it.

pub mod backend;
pub mod cli;
pub mod controller;
pub mod diag;
pub mod model;
pub mod plan;
pub mod schema;
pub mod sim;
pub mod spec;
