//! What an operator sees of the running controller, served by `stevedore
//! run --listen ADDR`:
//!
//! - `/`: the same as a page for people ([`page`]): each policy's state,
//!   reason and tasks per domain as bars against `maxSkew`, and the last
//!   actions, refreshing itself;
//! - `/healthz`: the process is alive;
//! - `/readyz`: the policies are loaded and every cluster has been read in
//!   full once (503 until then);
//! - `/metrics`: Prometheus text (prometheus-client): reconciles, actions by
//!   kind and result, API calls by operation, events by outcome, policies by
//!   state, skew per policy and constraint;
//! - `/status`: JSON, per policy and service its conditions in the
//!   Kubernetes style (type, status, reason, message, lastTransitionTime)
//!   and the last actions. `stevedore status` prints it as a table.
//!
//! The run loop reports to an [`Observer`]; the server only reads it.

pub mod audit;
pub mod outcome;
pub mod page;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::plan::{ActionKind, State};
use crate::status::outcome::Reconciled;

/// How many recent actions `/status` lists.
const LAST_ACTIONS: usize = 50;

/// A condition of a policy on a service, as Kubernetes writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    /// `True` or `False`.
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
}

/// One policy on one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    pub cluster: String,
    pub policy: String,
    pub service: String,
    pub state: String,
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<String>,
    /// Each spread constraint: its skew and tasks per domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<crate::plan::ConstraintReport>,
    /// The fewest task moves still needed.
    #[serde(default)]
    pub moves_remaining: u32,
    /// The policy is DryRun: its actions are listed, never carried out.
    #[serde(default)]
    pub dry_run: bool,
    /// The actions the last pass planned for it (a DryRun policy's
    /// included), as sentences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<String>,
    /// Who balances the zones, when ECS's AZ rebalancing is ENABLED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones_balanced_by: Option<String>,
}

/// A policy's state on a service changed (or was first seen: `from` is None).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub cluster: String,
    pub policy: String,
    pub service: String,
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
}

/// An action carried out (or attempted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRecord {
    pub time: String,
    pub cluster: String,
    pub policy: String,
    pub service: String,
    pub rule: String,
    pub action: String,
    /// `ok`, or the error.
    pub result: String,
}

/// The document `/status` serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDoc {
    pub ready: bool,
    /// The commit the policies come from, with a git source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub policies: Vec<PolicyStatus>,
    pub last_actions: Vec<ActionRecord>,
    /// Every cluster the policies name, and whether this replica holds it.
    #[serde(default)]
    pub clusters: Vec<ClusterHeld>,
    /// The DisruptionBudget of each cluster that has one, as its last pass
    /// found it.
    #[serde(default)]
    pub budgets: Vec<ClusterBudget>,
}

/// A cluster's DisruptionBudget as `/status` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterBudget {
    pub cluster: String,
    #[serde(flatten)]
    pub usage: crate::plan::budget::BudgetUse,
}

/// A cluster as `/status` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterHeld {
    pub name: String,
    /// This replica may act on it: always without leases; with leader
    /// election while it leads; with shared clusters while it holds the
    /// cluster's lease.
    pub held: bool,
    /// Read in full at least once.
    pub read: bool,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterResult {
    cluster: String,
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    kind: String,
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SkewLabels {
    policy: String,
    service: String,
    topology: String,
}

#[derive(Debug, Default)]
struct Board {
    policies_loaded: bool,
    /// The last lease write failed (leader election only).
    lease_failing: bool,
    commit: Option<String>,
    /// Clusters to read, and whether each was read in full once.
    clusters: BTreeMap<String, bool>,
    /// Whether this replica holds each cluster (absent: held).
    held: BTreeMap<String, bool>,
    /// Clusters are shared by replicas: one not held is never read.
    shared: bool,
    statuses: BTreeMap<(String, String, String), PolicyStatus>,
    /// Per cluster with a budget: where it stood at the last pass.
    budgets: BTreeMap<String, crate::plan::budget::BudgetUse>,
    last_actions: VecDeque<ActionRecord>,
    /// API calls already counted, per operation (the backend's are totals).
    api_seen: BTreeMap<String, u64>,
    throttles_seen: BTreeMap<String, u64>,
}

/// The run loop's reports, for the HTTP server.
#[derive(Debug)]
pub struct Observer {
    board: Mutex<Board>,
    registry: Registry,
    reconciles: Family<ClusterResult, Counter>,
    actions: Family<ActionLabels, Counter>,
    api_calls: Family<Operation, Counter>,
    api_throttles: Family<Operation, Counter>,
    events: Family<EventLabels, Counter>,
    spec_reloads: Family<EventLabels, Counter>,
    policies: Family<StateLabels, Gauge>,
    skew: Family<SkewLabels, Gauge>,
    event_lag: prometheus_client::metrics::histogram::Histogram,
    last_success: Family<ClusterLabel, Gauge>,
    resync_period: Gauge,
    cluster_held: Family<ClusterLabel, Gauge>,
    lease_failing: Gauge,
    policy_state: Family<PolicyStateLabels, Gauge>,
    budget_used: Family<BudgetLimitLabels, Gauge>,
    budget_max: Family<BudgetLimitLabels, Gauge>,
    budget_holding: Family<BudgetLabels, Gauge>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    cluster: String,
    budget: String,
}

/// A limit of a budget: `unavailable` (maxUnavailable) or `moves` (moves.max).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLimitLabels {
    cluster: String,
    budget: String,
    limit: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyStateLabels {
    cluster: String,
    policy: String,
    service: String,
    state: String,
}

/// Every kind of action, as the metrics name them.
const ACTION_KINDS: [&str; 4] = [
    "stop_task",
    "set_desired_count",
    "protect_tasks",
    "unprotect_tasks",
];

/// Every state a policy can be in, as the metrics name them.
const STATES: [&str; 5] = [
    "Satisfied",
    "Converging",
    "Unsatisfiable",
    "Paused",
    "NotFound",
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabel {
    cluster: String,
}

impl Default for Observer {
    fn default() -> Observer {
        Observer::new()
    }
}

/// Adds to each operation's counter what its running total grew by since
/// `seen`, the total last added.
fn add_new(
    family: &Family<Operation, Counter>,
    seen: &mut BTreeMap<String, u64>,
    totals: &BTreeMap<String, u64>,
) {
    for (operation, total) in totals {
        let last = seen.entry(operation.clone()).or_default();
        let new = total.saturating_sub(*last);
        *last = *total;
        if new > 0 {
            family
                .get_or_create(&Operation {
                    operation: operation.clone(),
                })
                .inc_by(new);
        }
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl Observer {
    pub fn new() -> Observer {
        let mut registry = Registry::with_prefix("stevedore");
        let reconciles = Family::<ClusterResult, Counter>::default();
        let actions = Family::<ActionLabels, Counter>::default();
        let api_calls = Family::<Operation, Counter>::default();
        let api_throttles = Family::<Operation, Counter>::default();
        let events = Family::<EventLabels, Counter>::default();
        let spec_reloads = Family::<EventLabels, Counter>::default();
        let policies = Family::<StateLabels, Gauge>::default();
        let skew = Family::<SkewLabels, Gauge>::default();
        let event_lag = prometheus_client::metrics::histogram::Histogram::new([
            0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0,
        ]);
        registry.register(
            "reconciles",
            "Reconcile passes, per cluster and result",
            reconciles.clone(),
        );
        registry.register(
            "actions",
            "Actions carried out, per kind and result",
            actions.clone(),
        );
        registry.register(
            "api_calls",
            "AWS API calls, per operation",
            api_calls.clone(),
        );
        registry.register(
            "api_throttles",
            "AWS API attempts refused for their rate, per operation, counting those the SDK retried",
            api_throttles.clone(),
        );
        registry.register(
            "events",
            "ECS events received, per outcome (new, duplicate, stale, malformed)",
            events.clone(),
        );
        registry.register(
            "spec_reloads",
            "Re-reads of the policies (a change seen, a resync, a git commit), per outcome (changed, unchanged, invalid)",
            spec_reloads.clone(),
        );
        registry.register(
            "policies",
            "Policy-service pairs, per state",
            policies.clone(),
        );
        registry.register(
            "skew",
            "Skew of each spread constraint, per policy and service",
            skew.clone(),
        );
        registry.register(
            "event_lag_seconds",
            "Time from an ECS event to its receipt by stevedore",
            event_lag.clone(),
        );
        let last_success = Family::<ClusterLabel, Gauge>::default();
        let resync_period = Gauge::default();
        let cluster_held = Family::<ClusterLabel, Gauge>::default();
        let lease_failing = Gauge::default();
        let policy_state = Family::<PolicyStateLabels, Gauge>::default();
        let budget_used = Family::<BudgetLimitLabels, Gauge>::default();
        let budget_max = Family::<BudgetLimitLabels, Gauge>::default();
        let budget_holding = Family::<BudgetLabels, Gauge>::default();
        registry.register(
            "budget_used",
            "What a cluster's DisruptionBudget has spent, per limit: tasks stopped and not yet replaced (unavailable), stops in the last moves.per (moves)",
            budget_used.clone(),
        );
        registry.register(
            "budget_max",
            "A cluster's DisruptionBudget limit: maxUnavailable (unavailable), moves.max (moves)",
            budget_max.clone(),
        );
        registry.register(
            "budget_holding",
            "1 while a cluster's DisruptionBudget holds every stop (a limit spent, or outside its windows), else 0",
            budget_holding.clone(),
        );
        registry.register(
            "policy_state",
            "1 for each policy-service pair's current state, 0 for the others",
            policy_state.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "When a pass last read the cluster and acted (Unix time), per cluster",
            last_success.clone(),
        );
        registry.register(
            "resync_period_seconds",
            "The period of full reads (--resync)",
            resync_period.clone(),
        );
        registry.register(
            "cluster_held",
            "1 while this replica may act on the cluster (its lease held, or no leases), else 0",
            cluster_held.clone(),
        );
        registry.register(
            "lease_failing",
            "1 while the last write of this replica's lease failed (leader election), else 0",
            lease_failing.clone(),
        );
        // Every series an alert or a dashboard may rate is there from the
        // start, at 0: a rate over a series that appears only on its first
        // increment misses that increment, and `absent` cannot tell a
        // quiet controller from a missing one.
        for kind in ACTION_KINDS {
            for result in ["ok", "failed"] {
                let _ = actions.get_or_create(&ActionLabels {
                    kind: kind.into(),
                    result: result.into(),
                });
            }
        }
        for outcome in ["new", "duplicate", "stale", "malformed"] {
            let _ = events.get_or_create(&EventLabels {
                outcome: outcome.into(),
            });
        }
        for outcome in ["changed", "unchanged", "invalid"] {
            let _ = spec_reloads.get_or_create(&EventLabels {
                outcome: outcome.into(),
            });
        }
        Observer {
            policy_state,
            budget_used,
            budget_max,
            budget_holding,
            last_success,
            resync_period,
            cluster_held,
            lease_failing,
            event_lag,
            board: Mutex::new(Board::default()),
            registry,
            reconciles,
            actions,
            api_calls,
            api_throttles,
            events,
            spec_reloads,
            policies,
            skew,
        }
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A policy-service pair no longer reported: its state series go.
    fn forget_policy_state(&self, (cluster, policy, service): &(String, String, String)) {
        for state in STATES {
            self.policy_state.remove(&PolicyStateLabels {
                cluster: cluster.clone(),
                policy: policy.clone(),
                service: service.clone(),
                state: state.into(),
            });
        }
    }

    /// The policies were loaded, naming these clusters.
    pub fn policies_loaded(&self, clusters: &[String]) {
        let mut board = self.board();
        board.policies_loaded = true;
        let read: BTreeMap<String, bool> = clusters
            .iter()
            .map(|c| (c.clone(), board.clusters.get(c).copied().unwrap_or(false)))
            .collect();
        // A cluster no policy names any more is no longer reported.
        let gone: Vec<(String, String, String)> = board
            .statuses
            .keys()
            .filter(|(c, _, _)| !read.contains_key(c))
            .cloned()
            .collect();
        for key in gone {
            board.statuses.remove(&key);
            self.forget_policy_state(&key);
        }
        let gone: Vec<(String, crate::plan::budget::BudgetUse)> = board
            .budgets
            .iter()
            .filter(|(c, _)| !read.contains_key(*c))
            .map(|(c, u)| (c.clone(), u.clone()))
            .collect();
        for (cluster, usage) in gone {
            board.budgets.remove(&cluster);
            self.budget_metrics(&cluster, Some(&usage), None);
        }
        board.clusters = read;
    }

    /// The budget series of a cluster: `before`'s removed (a budget
    /// renamed or deleted leaves no stale series), `now`'s set.
    fn budget_metrics(
        &self,
        cluster: &str,
        before: Option<&crate::plan::budget::BudgetUse>,
        now: Option<&crate::plan::budget::BudgetUse>,
    ) {
        let labels = |u: &crate::plan::budget::BudgetUse, limit: &str| BudgetLimitLabels {
            cluster: cluster.to_owned(),
            budget: u.budget.clone(),
            limit: limit.to_owned(),
        };
        if let Some(u) = before {
            for limit in ["unavailable", "moves"] {
                self.budget_used.remove(&labels(u, limit));
                self.budget_max.remove(&labels(u, limit));
            }
            self.budget_holding.remove(&BudgetLabels {
                cluster: cluster.to_owned(),
                budget: u.budget.clone(),
            });
        }
        let Some(u) = now else { return };
        let limits = [
            ("unavailable", Some(u.in_flight), u.max_unavailable),
            ("moves", u.moves_in_period, u.moves_max),
        ];
        for (limit, used, max) in limits {
            if let (Some(used), Some(max)) = (used, max) {
                self.budget_used
                    .get_or_create(&labels(u, limit))
                    .set(i64::from(used));
                self.budget_max
                    .get_or_create(&labels(u, limit))
                    .set(i64::from(max));
            }
        }
        self.budget_holding
            .get_or_create(&BudgetLabels {
                cluster: cluster.to_owned(),
                budget: u.budget.clone(),
            })
            .set(i64::from(u.held.is_some()));
    }

    /// Which of the clusters this replica holds; `shared`: clusters are
    /// shared by replicas, so one not held is not read (nor waited for).
    pub fn clusters_held(&self, held: &BTreeMap<String, bool>, shared: bool) {
        for (cluster, held) in held {
            self.cluster_held
                .get_or_create(&ClusterLabel {
                    cluster: cluster.clone(),
                })
                .set(i64::from(*held));
        }
        let mut board = self.board();
        board.held = held.clone();
        board.shared = shared;
    }

    /// The policies now come from this commit.
    pub fn commit(&self, id: &str) {
        self.board().commit = Some(id.to_owned());
    }

    /// An ECS event was received, with what became of it.
    pub fn event(&self, outcome: &str) {
        self.events
            .get_or_create(&EventLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// ECS events received so far with this outcome.
    pub fn events_counted(&self, outcome: &str) -> u64 {
        self.events
            .get_or_create(&EventLabels {
                outcome: outcome.to_owned(),
            })
            .get()
    }

    /// The policies were read again, with what that found.
    pub fn spec_reload(&self, outcome: &str) {
        self.spec_reloads
            .get_or_create(&EventLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Whether the last write of the leader-election lease went through
    /// (won or lost). While it fails, this replica can neither lead nor
    /// know that another does, and is not ready.
    pub fn lease_answered(&self, answered: bool) {
        self.board().lease_failing = !answered;
        self.lease_failing.set(i64::from(!answered));
    }

    /// The period of full reads, for alerts that count in resyncs.
    pub fn resync_period(&self, period: std::time::Duration) {
        self.resync_period.set(period.as_secs() as i64);
    }

    /// How long an event took to arrive (from its envelope's time).
    pub fn event_lag(&self, happened: SystemTime) {
        if let Ok(lag) = SystemTime::now().duration_since(happened) {
            self.event_lag.observe(lag.as_secs_f64());
        }
    }

    /// The backend's totals of calls and of throttled attempts, per
    /// operation.
    pub fn api_calls(&self, calls: &BTreeMap<String, u64>, throttles: &BTreeMap<String, u64>) {
        let mut board = self.board();
        let board = &mut *board;
        add_new(&self.api_calls, &mut board.api_seen, calls);
        add_new(&self.api_throttles, &mut board.throttles_seen, throttles);
        // An operation called is one that may be throttled: its series
        // starts at 0.
        for operation in calls.keys() {
            let _ = self.api_throttles.get_or_create(&Operation {
                operation: operation.clone(),
            });
        }
    }

    /// A reconcile could not read its cluster.
    pub fn failed(&self, cluster: &str) {
        self.reconciles
            .get_or_create(&ClusterResult {
                cluster: cluster.to_owned(),
                result: "failed".into(),
            })
            .inc();
    }

    /// A reconcile's outcome; `full` when the cluster was read in full.
    /// Returns the state changes it brought.
    pub fn reconciled(&self, cluster: &str, full: bool, outcome: &Reconciled) -> Vec<Transition> {
        let mut transitions = vec![];
        self.reconciles
            .get_or_create(&ClusterResult {
                cluster: cluster.to_owned(),
                result: "ok".into(),
            })
            .inc();
        let now = now_rfc3339();
        if let Ok(since) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            self.last_success
                .get_or_create(&ClusterLabel {
                    cluster: cluster.to_owned(),
                })
                .set(since.as_secs() as i64);
        }
        let mut board = self.board();
        if full {
            board.clusters.insert(cluster.to_owned(), true);
        }
        for (action, result) in &outcome.executed {
            let kind = match action.kind {
                ActionKind::StopTask { .. } => "stop_task",
                ActionKind::SetDesiredCount { .. } => "set_desired_count",
                ActionKind::ProtectTasks { .. } => "protect_tasks",
                ActionKind::UnprotectTasks { .. } => "unprotect_tasks",
            };
            self.actions
                .get_or_create(&ActionLabels {
                    kind: kind.into(),
                    result: if result.is_ok() { "ok" } else { "failed" }.into(),
                })
                .inc();
            board.last_actions.push_back(ActionRecord {
                time: now.clone(),
                cluster: cluster.to_owned(),
                policy: action.policy.clone(),
                service: action.service.clone(),
                rule: action.rule.clone(),
                action: action.to_string(),
                result: match result {
                    Ok(()) => "ok".into(),
                    Err(e) => e.to_string(),
                },
            });
            while board.last_actions.len() > LAST_ACTIONS {
                board.last_actions.pop_front();
            }
        }
        let before = match &outcome.plan.budget {
            Some(usage) => board.budgets.insert(cluster.to_owned(), usage.clone()),
            None => board.budgets.remove(cluster),
        };
        self.budget_metrics(cluster, before.as_ref(), outcome.plan.budget.as_ref());
        // Policies removed since are no longer reported.
        let present: std::collections::BTreeSet<(&str, &str)> = outcome
            .plan
            .statuses
            .iter()
            .map(|s| (s.policy.as_str(), s.service.as_str()))
            .collect();
        let gone: Vec<(String, String, String)> = board
            .statuses
            .keys()
            .filter(|(c, p, s)| c == cluster && !present.contains(&(p.as_str(), s.as_str())))
            .cloned()
            .collect();
        for key in gone {
            board.statuses.remove(&key);
            self.forget_policy_state(&key);
        }
        for status in &outcome.plan.statuses {
            let key = (
                cluster.to_owned(),
                status.policy.clone(),
                status.service.clone(),
            );
            let previous = board.statuses.get(&key);
            let state = format!("{:?}", status.state);
            if previous.is_none_or(|p| p.state != state) {
                transitions.push(Transition {
                    cluster: cluster.to_owned(),
                    policy: status.policy.clone(),
                    service: status.service.clone(),
                    from: previous.map(|p| p.state.clone()),
                    to: state.clone(),
                    reason: status.reason.clone(),
                });
            }
            let condition = |kind: &str, holds: bool| {
                let status_text = if holds { "True" } else { "False" };
                let reason = format!("{:?}", status.state);
                // The transition time moves only when the status changes.
                let since = previous
                    .and_then(|p| p.conditions.iter().find(|c| c.kind == kind))
                    .filter(|c| c.status == status_text)
                    .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
                Condition {
                    kind: kind.into(),
                    status: status_text.into(),
                    reason,
                    message: status.reason.clone(),
                    last_transition_time: since,
                }
            };
            let conditions = vec![
                condition("Satisfied", status.state == State::Satisfied),
                condition("Progressing", status.state == State::Converging),
            ];
            for state in STATES {
                self.policy_state
                    .get_or_create(&PolicyStateLabels {
                        cluster: cluster.to_owned(),
                        policy: status.policy.clone(),
                        service: status.service.clone(),
                        state: state.into(),
                    })
                    .set(i64::from(format!("{:?}", status.state) == state));
            }
            for c in &status.constraints {
                self.skew
                    .get_or_create(&SkewLabels {
                        policy: status.policy.clone(),
                        service: status.service.clone(),
                        topology: c.topology.clone(),
                    })
                    .set(i64::from(c.skew));
            }
            board.statuses.insert(
                key,
                PolicyStatus {
                    cluster: cluster.to_owned(),
                    policy: status.policy.clone(),
                    service: status.service.clone(),
                    state: format!("{:?}", status.state),
                    conditions,
                    scaling: status.scaling.clone(),
                    constraints: status.constraints.clone(),
                    moves_remaining: status.moves_remaining,
                    dry_run: status.dry_run,
                    planned: outcome
                        .plan
                        .actions
                        .iter()
                        .filter(|a| a.policy == status.policy && a.service == status.service)
                        .map(|a| a.to_string())
                        .collect(),
                    zones_balanced_by: status.zones_balanced_by.clone(),
                },
            );
        }
        let mut by_state: BTreeMap<String, i64> =
            STATES.iter().map(|s| ((*s).to_owned(), 0)).collect();
        for s in board.statuses.values() {
            *by_state.entry(s.state.clone()).or_default() += 1;
        }
        for (state, n) in by_state {
            self.policies.get_or_create(&StateLabels { state }).set(n);
        }
        transitions
    }

    /// Policies loaded, every cluster read in full once, and (with leader
    /// election) the lease answering.
    pub fn ready(&self) -> bool {
        let board = self.board();
        let waits_for = |cluster: &str| !board.shared || board.held.get(cluster) == Some(&true);
        board.policies_loaded
            && !board.lease_failing
            && !board.clusters.is_empty()
            && board
                .clusters
                .iter()
                .all(|(cluster, read)| *read || !waits_for(cluster))
    }

    pub fn status(&self) -> StatusDoc {
        let ready = self.ready();
        let board = self.board();
        StatusDoc {
            ready,
            commit: board.commit.clone(),
            policies: board.statuses.values().cloned().collect(),
            last_actions: board.last_actions.iter().cloned().collect(),
            clusters: board
                .clusters
                .iter()
                .map(|(name, read)| ClusterHeld {
                    name: name.clone(),
                    held: board.held.get(name).copied().unwrap_or(true),
                    read: *read,
                })
                .collect(),
            budgets: board
                .budgets
                .iter()
                .map(|(cluster, usage)| ClusterBudget {
                    cluster: cluster.clone(),
                    usage: usage.clone(),
                })
                .collect(),
        }
    }

    /// The Prometheus text exposition.
    pub fn metrics(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Serves `/`, `/healthz`, `/readyz`, `/metrics` and `/status` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    observer: Arc<Observer>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let ready = Arc::clone(&observer);
    let metrics = Arc::clone(&observer);
    let status = Arc::clone(&observer);
    let page = Arc::clone(&observer);
    let app = axum::Router::new()
        .route(
            "/",
            get(move || async move { axum::response::Html(page::render(&page.status())) }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || async move {
                if ready.ready() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
        )
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.metrics(),
                )
            }),
        )
        .route(
            "/status",
            get(move || async move { axum::Json(status.status()) }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Plan, ServiceStatus};

    fn outcome(state: State) -> Reconciled {
        Reconciled {
            plan: Plan {
                cluster: "prod".into(),
                actions: vec![],
                statuses: vec![ServiceStatus::new(
                    "web",
                    "web",
                    state,
                    format!("{state:?}"),
                )],
                ..Plan::default()
            },
            executed: vec![],
            metric_error: None,
        }
    }

    #[test]
    fn status_lists_each_clusters_budget_as_its_last_pass_found_it() {
        let o = Observer::new();
        o.policies_loaded(&["prod".into(), "staging".into()]);
        let mut budgeted = outcome(State::Converging);
        budgeted.plan.budget = Some(crate::plan::budget::BudgetUse {
            budget: "nights".into(),
            in_flight: 1,
            max_unavailable: Some(2),
            ..Default::default()
        });
        o.reconciled("prod", true, &budgeted);
        o.reconciled("staging", true, &budgeted);
        let budgets = o.status().budgets;
        let named: Vec<(&str, &str, u32)> = budgets
            .iter()
            .map(|b| {
                (
                    b.cluster.as_str(),
                    b.usage.budget.as_str(),
                    b.usage.in_flight,
                )
            })
            .collect();
        assert_eq!(named, [("prod", "nights", 1), ("staging", "nights", 1)]);
        let metrics = o.metrics();
        for line in [
            r#"stevedore_budget_used{cluster="prod",budget="nights",limit="unavailable"} 1"#,
            r#"stevedore_budget_max{cluster="prod",budget="nights",limit="unavailable"} 2"#,
            r#"stevedore_budget_holding{cluster="staging",budget="nights"} 0"#,
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
        }
        // No move rate: no moves series.
        assert!(!metrics.contains(r#"limit="moves""#), "{metrics}");
        // Its budget deleted: the next pass has none, and neither has /status.
        o.reconciled("staging", false, &outcome(State::Satisfied));
        assert_eq!(o.status().budgets.len(), 1);
        assert!(!o.metrics().contains(r#"cluster="staging",budget"#));
        // Its cluster no longer named by any policy: gone too.
        o.policies_loaded(&["staging".into()]);
        assert_eq!(o.status().budgets, vec![]);
        assert!(!o.metrics().contains("cluster=\"prod\",budget"));
    }

    #[test]
    fn status_keeps_the_last_50_actions_newest_last() {
        use crate::plan::{Action, ActionKind};
        let o = Observer::new();
        o.policies_loaded(&["prod".into()]);
        for n in 0..60u32 {
            let mut o_n = outcome(State::Converging);
            let action = Action {
                policy: "web".into(),
                service: "web".into(),
                rule: "spread(zone, maxSkew 1)".into(),
                kind: ActionKind::SetDesiredCount { from: n, to: n + 1 },
                reason: format!("step {n}"),
                dry_run: false,
            };
            let result = if n % 2 == 0 {
                Ok(())
            } else {
                Err(crate::backend::Error::Throttled {
                    operation: "UpdateService",
                })
            };
            o_n.executed.push((action, result));
            o.reconciled("prod", false, &o_n);
        }
        let last = o.status().last_actions;
        assert_eq!(last.len(), 50);
        // The ten oldest went first; the newest is last, with its result.
        assert_eq!(last[0].action, "set desiredCount 10 -> 11: step 10");
        assert_eq!(last[49].action, "set desiredCount 59 -> 60: step 59");
        assert_eq!(last[49].result, "UpdateService: throttled");
        assert_eq!(last[48].result, "ok");
    }

    #[test]
    fn ready_only_after_every_cluster_was_read_in_full() {
        let o = Observer::new();
        assert!(!o.ready(), "no policies yet");
        o.policies_loaded(&["prod".into(), "staging".into()]);
        o.reconciled("prod", true, &outcome(State::Satisfied));
        assert!(!o.ready(), "staging not read yet");
        o.reconciled("staging", false, &outcome(State::Satisfied));
        assert!(!o.ready(), "a partial read does not count");
        o.reconciled("staging", true, &outcome(State::Satisfied));
        assert!(o.ready());
    }

    #[test]
    fn a_condition_keeps_its_transition_time_until_its_status_changes() {
        let o = Observer::new();
        o.policies_loaded(&["prod".into()]);
        o.reconciled("prod", true, &outcome(State::Converging));
        let time = |o: &Observer, kind: &str| {
            o.status().policies[0]
                .conditions
                .iter()
                .find(|c| c.kind == kind)
                .map(|c| (c.status.clone(), c.last_transition_time.clone()))
                .unwrap()
        };
        let first = time(&o, "Satisfied");
        // Marked so a later write with the same status is seen to keep it.
        o.board().statuses.values_mut().for_each(|p| {
            p.conditions
                .iter_mut()
                .for_each(|c| c.last_transition_time = "then".into())
        });
        o.reconciled("prod", false, &outcome(State::Converging));
        assert_eq!(time(&o, "Satisfied"), (first.0.clone(), "then".into()));
        o.reconciled("prod", false, &outcome(State::Satisfied));
        let (status, at) = time(&o, "Satisfied");
        assert_eq!(status, "True");
        assert_ne!(at, "then");
        // A policy that is gone is no longer reported.
        let mut gone = outcome(State::Satisfied);
        gone.plan.statuses.clear();
        o.reconciled("prod", false, &gone);
        assert!(o.status().policies.is_empty());
    }
}
