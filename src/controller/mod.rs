//! The controller's reconcile: read the cluster, plan, verify, act, report.
//! Triggers (events, resync timers, policy changes) only decide *when* this
//! runs. A resync reads the whole cluster; after events, [`ClusterView`]
//! reads again only what they touched ([`crate::backend::refresh`]). A failed read
//! means no plan and no action, and the view is replaced only after a
//! complete read.
//!
//! Before stopping any task, the services it would act on are read again
//! with their tasks' scale-in protection (which no Describe call reports),
//! and the plan is made again from that: an action never rests on a missed
//! event or a protection the snapshot could not show.

use std::collections::BTreeSet;

use crate::backend::events::EcsEvent;
use crate::backend::refresh::Touched;
use crate::backend::{self, Backend};
use crate::model::{ClusterSnapshot, Millis};
use crate::plan::{self, Action, ActionKind, Plan, ScalingInput};

mod intake;
pub mod lease;
pub mod readings;
mod reload;
mod run;
pub mod schedule;

pub use crate::status::outcome::Reconciled;

/// Why `run` could not start (once running, failures are retried and
/// reported, never returned).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the policies are invalid; nothing to run")]
    InvalidPolicies,
    #[error("the repository's policies cannot be read or are invalid; nothing to run")]
    UnreadableRepository,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

use crate::spec::Policy;
pub use reload::GitSpecs;
pub use run::{
    Clock, Pass, PassKind, PolicySource, RunOptions, RunSummary, clusters, run, scaling_interval,
};
pub use schedule::{Debounce, Schedule};

/// The last complete view of one cluster, and what events said changed since.
#[derive(Debug, Default)]
pub struct ClusterView {
    snapshot: Option<ClusterSnapshot>,
    touched: Touched,
}

impl ClusterView {
    /// Notes an event: what it names is read again on the next read.
    pub fn note(&mut self, event: &EcsEvent) {
        self.touched.note(event);
    }

    /// Notes the tasks acted on and their services, so the next read sees
    /// the effect even when the events about it are lost.
    pub fn note_executed(&mut self, executed: &[(Action, backend::Result<()>)]) {
        for (action, _) in executed {
            self.touched.services.insert(action.service.clone());
            if let ActionKind::StopTask { task, .. } = &action.kind {
                self.touched.tasks.insert(task.clone());
            }
        }
    }

    /// Notes the services scaling policies act on, so their desired counts
    /// are read again on the next read (nothing if nothing was read yet).
    pub fn touch_scaled(&mut self, policies: &[Policy]) {
        if let Some(snapshot) = &self.snapshot {
            let scaled = crate::controller::readings::queries(policies, snapshot)
                .into_iter()
                .map(|((_, service), _)| service);
            self.touched.services.extend(scaled);
        }
    }

    /// Reads the cluster: all of it when `full` or when nothing was read
    /// yet, else only what was touched since the last read.
    pub async fn read<B: Backend>(
        &mut self,
        backend: &B,
        cluster: &str,
        full: bool,
    ) -> backend::Result<&mut ClusterSnapshot> {
        let snapshot = match self.snapshot.take() {
            Some(mut snapshot) if !full => {
                let read = backend.refresh(cluster, &mut snapshot, &self.touched).await;
                // Unchanged when the read failed: the view stays.
                let snapshot = self.snapshot.insert(snapshot);
                read?;
                snapshot
            }
            // The old view goes first: a full read replaces all of it, and
            // a failed one is followed by another full read anyway.
            _ => self.snapshot.insert(backend.snapshot(cluster).await?),
        };
        self.touched = Touched::default();
        Ok(snapshot)
    }
}

/// A plan whose stops were verified: made again after reading the
/// services they act on, with their tasks' protection.
#[derive(Debug)]
pub struct Verified {
    pub plan: Plan,
    /// The services read again (only their stops may be executed).
    pub services: BTreeSet<String>,
    /// Why scaling policies' metrics could not be read (they hold).
    pub metric_error: Option<String>,
}

/// How many services one pass verifies and stops tasks of: ECS's write
/// burst, so every stop follows its verification within seconds. On a
/// large cluster a rebalance may plan stops in thousands of services;
/// verifying them all first would take minutes of reads (about 2 minutes
/// for 5,000 services) before the first stop, and at 5 writes a second the
/// last stop would rest on a verification 17 minutes old, time enough for
/// a task to be protected. The others follow in the next passes, which
/// their own stops' events start.
pub const VERIFIED_PER_PASS: usize = crate::backend::pacing::WRITE_BURST;

/// Plans, then verifies the stops: the services with planned stops (the
/// first [`VERIFIED_PER_PASS`] by name) are read again (unless `fresh`, a
/// snapshot just read in full), their tasks' protection is read, and the
/// plan is made again from that. What was read is kept in `snapshot`, which
/// is newer for it.
pub async fn plan_verified<B: Backend>(
    backend: &B,
    cluster: &str,
    snapshot: &mut ClusterSnapshot,
    fresh: bool,
    policies: &[Policy],
    now: Millis,
    scaling: &mut ScalingInput,
) -> backend::Result<Verified> {
    // Two controllers writing one desired count is a bug: the services
    // whose count a policy sets are checked for Application Auto Scaling
    // targets (no Describe call reports them), and the planner pauses those.
    let owned = desired_count_owned(policies, snapshot);
    if !owned.is_empty() {
        let targets = backend.scalable_targets(cluster, &owned).await?;
        for service in &mut snapshot.services {
            if owned.contains(&service.name) {
                service.autoscaling_target = targets.contains(&service.name);
            }
        }
    }
    // Metrics first: missing data is not zero, so a failed read holds
    // every scaled service at its count (bounds still apply) and says why.
    let mut metric_error = None;
    if policies.iter().any(|p| p.scaling.is_some()) {
        match crate::controller::readings::read(backend, policies, snapshot, now).await {
            Ok(readings) => scaling.readings = readings,
            Err(e) => {
                scaling.readings.clear();
                metric_error = Some(e.to_string());
            }
        }
    }
    let first = plan::plan_with(policies, snapshot, now, scaling);
    let services: BTreeSet<String> = first
        .executable()
        .filter(|a| matches!(a.kind, ActionKind::StopTask { .. }))
        .map(|a| a.service.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(VERIFIED_PER_PASS)
        .collect();
    if services.is_empty() {
        return Ok(Verified {
            plan: first,
            services,
            metric_error,
        });
    }
    let tasks_of = |s: &ClusterSnapshot| -> BTreeSet<String> {
        s.tasks
            .iter()
            .filter(|t| services.contains(&s.services[t.service].name))
            .map(|t| t.id.clone())
            .collect()
    };
    if !fresh {
        let touched = Touched {
            tasks: tasks_of(snapshot),
            services: services.clone(),
            ..Touched::default()
        };
        backend.refresh(cluster, snapshot, &touched).await?;
    }
    let ids: Vec<String> = tasks_of(snapshot).into_iter().collect();
    let protected = backend.protected_tasks(cluster, &ids).await?;
    for task in &mut snapshot.tasks {
        if services.contains(&snapshot.services[task.service].name) {
            task.protected = protected.contains(&task.id);
        }
    }
    let mut plan = plan::plan_with(policies, snapshot, now, scaling);
    // Stops planned beyond this pass's share wait, and say so.
    let waiting: BTreeSet<String> = plan
        .executable()
        .filter(|a| matches!(a.kind, ActionKind::StopTask { .. }))
        .filter(|a| !services.contains(&a.service))
        .map(|a| a.service.clone())
        .collect();
    for status in &mut plan.statuses {
        if waiting.contains(&status.service) {
            status.reason.push_str(&format!(
                "; its stops wait for a later pass (at most {VERIFIED_PER_PASS} services are verified and stopped a pass)"
            ));
        }
    }
    Ok(Verified {
        plan,
        services,
        metric_error,
    })
}

/// The services whose desired count a policy sets (scaling, one task per host).
fn desired_count_owned(policies: &[Policy], snapshot: &ClusterSnapshot) -> Vec<String> {
    let index = plan::Index::new(snapshot);
    let mut names: Vec<String> = policies
        .iter()
        .filter(|p| p.scaling.is_some() || p.placement.one_task_per_host.is_some())
        .flat_map(|p| index.services_of(p))
        .map(|s| snapshot.services[s].name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// One pass over a snapshot: plan, verify, execute. DryRun policies'
/// actions are planned and reported, never executed; a stop is executed
/// only for a service that was verified.
pub async fn reconcile<B: Backend>(
    backend: &B,
    cluster: &str,
    snapshot: &mut ClusterSnapshot,
    fresh: bool,
    policies: &[Policy],
    now: Millis,
    scaling: &mut ScalingInput,
) -> backend::Result<Reconciled> {
    let Verified {
        plan,
        services,
        metric_error,
    } = plan_verified(backend, cluster, snapshot, fresh, policies, now, scaling).await?;
    let mut executed = vec![];
    for action in plan.executable() {
        let result = match &action.kind {
            ActionKind::StopTask { task, .. } => {
                if !services.contains(&action.service) {
                    // Appeared only after verifying: next pass.
                    continue;
                }
                let reason = format!("stevedore: {} ({})", action.policy, action.rule);
                backend.stop_task(cluster, task, &reason).await
            }
            ActionKind::SetDesiredCount { to, .. } => {
                backend
                    .set_desired_count(cluster, &action.service, *to)
                    .await
            }
        };
        executed.push((action.clone(), result));
    }
    scaling.executed(&executed, now);
    Ok(Reconciled {
        plan,
        executed,
        metric_error,
    })
}

/// Reads a whole cluster and plans it as `run --once` would, acting on
/// nothing: `stevedore plan`.
pub async fn plan_once<B: Backend>(
    backend: &B,
    cluster: &str,
    policies: &[Policy],
) -> backend::Result<Plan> {
    let mut snapshot = backend.snapshot(cluster).await?;
    let now = snapshot.taken_at;
    let verified = plan_verified(
        backend,
        cluster,
        &mut snapshot,
        true,
        policies,
        now,
        &mut ScalingInput::default(),
    )
    .await?;
    Ok(verified.plan)
}

/// Reads a whole cluster and reconciles it once: `plan --once` style use
/// and tests.
pub async fn reconcile_once<B: Backend>(
    backend: &B,
    cluster: &str,
    policies: &[Policy],
    now: Millis,
) -> backend::Result<Reconciled> {
    let mut snapshot = backend.snapshot(cluster).await?;
    let mut scaling = ScalingInput::default();
    reconcile(
        backend,
        cluster,
        &mut snapshot,
        true,
        policies,
        now,
        &mut scaling,
    )
    .await
}
