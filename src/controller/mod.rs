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
use crate::plan::{self, Action, ActionKind, Memory, Plan};

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

use crate::spec::{Policy, Specs};
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
            let scaled = readings::queries(policies, snapshot)
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

/// How many services are verified at a time before their stops. On a
/// large cluster a rebalance may plan stops in thousands of services:
/// verifying them all first took 125 s of reads at 5,000 services before
/// the first stop, and at ECS's 5 writes a second the last of 5,000 stops
/// would rest on a check 17 minutes old, time enough for a task to be
/// protected. In batches of ECS's write burst, each batch of stops follows
/// its own check within seconds, and the pass still stops at the write
/// rate.
pub const VERIFIED_AT_ONCE: usize = crate::backend::pacing::WRITE_BURST;

/// The plan before any verification: Application Auto Scaling targets
/// checked and scaling metrics read first, so that both hold in it.
async fn plan_first<B: Backend>(
    backend: &B,
    cluster: &str,
    snapshot: &mut ClusterSnapshot,
    specs: &Specs,
    now: Millis,
    memory: &mut Memory,
) -> backend::Result<(Plan, Option<String>)> {
    let policies = &specs.policies[..];
    // The budget spent before this memory was kept: by this controller
    // before a restart, or by the replica it took the cluster over from.
    // Without it the budget would refill; a failed read fails the pass.
    if !memory.ledger_recovered
        && let Some(budget) = specs.budget(&snapshot.cluster)
    {
        let stopped = backend.recently_stopped(cluster).await?;
        let recovered = memory
            .ledger
            .recover(recovered_stops(&stopped, snapshot, now));
        memory.ledger_recovered = true;
        if recovered > 0 {
            tracing::info!(
                "{cluster}: {} by stevedore, read back from ECS's stopped tasks, count against budget {}",
                crate::words::count(recovered as u64, "earlier stop"),
                budget.name
            );
        }
    }
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
        match readings::read(backend, policies, snapshot, now).await {
            Ok(readings) => memory.readings = readings,
            Err(e) => {
                memory.readings.clear();
                metric_error = Some(e.to_string());
            }
        }
    }
    Ok((plan_with(specs, snapshot, now, memory), metric_error))
}

/// The reason stevedore gives every StopTask, followed by the policy and
/// the rule: how its stops are told from others' among ECS's stopped tasks.
pub const STOP_REASON_PREFIX: &str = "stevedore: ";

/// The stops of `stopped` that stevedore made, as ledger entries: each
/// counts from when it was asked for (from `now` where ECS does not say,
/// which holds the budget longest), its zone from ECS or from its host in
/// `snapshot`, in flight until its service is seen back.
pub fn recovered_stops(
    stopped: &[crate::backend::StoppedTask],
    snapshot: &ClusterSnapshot,
    now: Millis,
) -> Vec<plan::budget::Stop> {
    stopped
        .iter()
        .filter(|t| t.reason.starts_with(STOP_REASON_PREFIX))
        .map(|t| plan::budget::Stop {
            task: t.id.clone(),
            service: t.service.clone(),
            zone: t
                .zone
                .clone()
                .or_else(|| {
                    let host = t.instance.as_deref()?;
                    let host = snapshot.instances.iter().find(|i| i.id == host)?;
                    Some(host.zone.clone())
                })
                .unwrap_or_default(),
            at: t.stopping_at.map_or(now, |at| at.min(now)),
            settled: false,
            known: vec![],
        })
        .collect()
}

/// Plans one cluster with its budget, if it has one.
fn plan_with(specs: &Specs, snapshot: &ClusterSnapshot, now: Millis, memory: &mut Memory) -> Plan {
    let budget = specs.budget(&snapshot.cluster);
    plan::plan_with(&specs.policies, budget, snapshot, now, memory)
}

/// The services whose tasks' protection must be read before acting, by
/// name: those a scale-in protects tasks of first (their count changes go
/// with the first batch), then those the plan stops tasks of. DryRun
/// policies' stops too: a dry run lists only stops the real run would make,
/// never a protected task.
fn stopping(plan: &Plan) -> Vec<String> {
    let of = |kind: fn(&ActionKind) -> bool| {
        plan.actions
            .iter()
            .filter(|a| kind(&a.kind))
            .map(|a| a.service.clone())
            .collect::<BTreeSet<_>>()
    };
    let protecting = of(|k| matches!(k, ActionKind::ProtectTasks { .. }));
    let stopping = of(|k| matches!(k, ActionKind::StopTask { .. }));
    let mut services: Vec<String> = protecting.iter().cloned().collect();
    services.extend(stopping.difference(&protecting).cloned());
    services
}

/// Reads `services` again (unless `fresh`, a snapshot just read in full)
/// and their tasks' scale-in protection, into `snapshot`.
async fn verify<B: Backend>(
    backend: &B,
    cluster: &str,
    snapshot: &mut ClusterSnapshot,
    fresh: bool,
    services: &BTreeSet<String>,
) -> backend::Result<()> {
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
    Ok(())
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

/// One pass over a snapshot: plan, then verify and act in batches of
/// [`VERIFIED_AT_ONCE`] services: each batch's services are read again with
/// their tasks' protection, the plan is made again from that, and only that
/// batch's stops are executed (count changes with the first batch). DryRun
/// policies' actions are planned and reported, never executed.
///
/// A failed read before any action fails the pass; one after some stops
/// ends it with what was done (reported), and the rest waits for the next
/// pass.
pub async fn reconcile<B: Backend>(
    backend: &B,
    cluster: &str,
    snapshot: &mut ClusterSnapshot,
    fresh: bool,
    specs: &Specs,
    now: Millis,
    memory: &mut Memory,
) -> backend::Result<Reconciled> {
    // How long the reads and writes take (on tokio's clock: the API's time
    // in the simulator), so that the stops are noted when they were made.
    let began = tokio::time::Instant::now();
    let (mut plan, metric_error) =
        plan_first(backend, cluster, snapshot, specs, now, memory).await?;
    let services = stopping(&plan);
    let batches: Vec<BTreeSet<String>> = if services.is_empty() {
        // Count changes only.
        vec![BTreeSet::new()]
    } else {
        services
            .chunks(VERIFIED_AT_ONCE)
            .map(|c| c.iter().cloned().collect())
            .collect()
    };
    let mut executed = vec![];
    // A scale-in whose protection failed does not set its count: ECS would
    // choose the tasks to stop by the strategy, undoing the spread.
    let mut unprotected: BTreeSet<String> = BTreeSet::new();
    for (k, batch) in batches.iter().enumerate() {
        if !batch.is_empty() {
            // Only the first batch may trust a full read made just before.
            match verify(backend, cluster, snapshot, fresh && k == 0, batch).await {
                Ok(()) => plan = plan_with(specs, snapshot, now, memory),
                Err(e) if executed.is_empty() => return Err(e),
                Err(e) => {
                    tracing::warn!(
                        "{cluster}: verifying {} more services failed ({e}); their stops wait for the next pass",
                        services.len() - k * VERIFIED_AT_ONCE
                    );
                    break;
                }
            }
        }
        for action in plan.executable() {
            let result = match &action.kind {
                ActionKind::StopTask { task, .. } => {
                    if !batch.contains(&action.service) {
                        // Another batch's, or new since the first plan
                        // (then the next pass's).
                        continue;
                    }
                    let reason = format!("{STOP_REASON_PREFIX}{} ({})", action.policy, action.rule);
                    backend.stop_task(cluster, task, &reason).await
                }
                ActionKind::SetDesiredCount { .. }
                | ActionKind::ProtectTasks { .. }
                | ActionKind::UnprotectTasks { .. }
                    if k > 0 =>
                {
                    continue;
                }
                ActionKind::SetDesiredCount { .. } if unprotected.contains(&action.service) => {
                    tracing::warn!(
                        "{cluster}/{}: not scaling in: the tasks to keep could not be protected",
                        action.service
                    );
                    continue;
                }
                ActionKind::SetDesiredCount { to, .. } => {
                    backend
                        .set_desired_count(cluster, &action.service, *to)
                        .await
                }
                ActionKind::ProtectTasks { tasks, minutes } => {
                    let result = backend
                        .update_task_protection(cluster, tasks, Some(*minutes))
                        .await;
                    if result.is_err() {
                        unprotected.insert(action.service.clone());
                    }
                    result
                }
                ActionKind::UnprotectTasks { tasks } => {
                    backend.update_task_protection(cluster, tasks, None).await
                }
            };
            executed.push((action.clone(), result));
        }
    }
    // Noted as of the last write: a stop counts toward the rate budget from
    // when ECS took it, not from when the pass began (seconds earlier on a
    // large cluster), or a pass woken as the budget frees a stop would
    // make it before one has really left the period.
    let written = now + began.elapsed().as_millis() as Millis;
    memory.executed(&plan, snapshot, &executed, written);
    Ok(Reconciled {
        plan,
        executed,
        metric_error,
    })
}

/// Reads a whole cluster and plans it as `run --once` would, acting on
/// nothing: `stevedore plan`. The snapshot's time is `now`; `wall_offset`
/// turns it into the wall clock (0 on AWS, the scenario's start in the
/// simulator).
pub async fn plan_once<B: Backend>(
    backend: &B,
    cluster: &str,
    specs: &Specs,
    wall_offset: Millis,
) -> backend::Result<Plan> {
    let mut snapshot = backend.snapshot(cluster).await?;
    let now = snapshot.taken_at;
    let mut memory = Memory {
        wall_offset,
        ..Memory::default()
    };
    let (first, _) = plan_first(backend, cluster, &mut snapshot, specs, now, &mut memory).await?;
    // Every stop verified at once (the snapshot was just read in full).
    let services: BTreeSet<String> = stopping(&first).into_iter().collect();
    if services.is_empty() {
        return Ok(first);
    }
    verify(backend, cluster, &mut snapshot, true, &services).await?;
    Ok(plan_with(specs, &snapshot, now, &mut memory))
}

/// Reads a whole cluster and reconciles it once: `plan --once` style use
/// and tests.
pub async fn reconcile_once<B: Backend>(
    backend: &B,
    cluster: &str,
    specs: &Specs,
    now: Millis,
) -> backend::Result<Reconciled> {
    let mut snapshot = backend.snapshot(cluster).await?;
    let mut memory = Memory::default();
    reconcile(
        backend,
        cluster,
        &mut snapshot,
        true,
        specs,
        now,
        &mut memory,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::StoppedTask;
    use crate::model::{Instance, Resources};

    fn stopped(id: &str, reason: &str, zone: Option<&str>, at: Option<Millis>) -> StoppedTask {
        StoppedTask {
            id: id.into(),
            service: "web".into(),
            zone: zone.map(str::to_owned),
            instance: Some("i-b".into()),
            reason: reason.into(),
            stopping_at: at,
        }
    }

    #[test]
    fn only_stevedores_stops_are_read_back_with_their_zone_and_time() {
        let size = Resources {
            cpu: 1024,
            memory: 1024,
        };
        let snapshot = ClusterSnapshot {
            cluster: "demo".into(),
            instances: vec![
                Instance::active("i-a", "us-east-1a", size, Default::default()),
                Instance::active("i-b", "us-east-1b", size, Default::default()),
            ],
            ..ClusterSnapshot::default()
        };
        let now = 10_000;
        let listed = [
            stopped(
                "t1",
                "stevedore: web (spread zone)",
                Some("us-east-1c"),
                Some(4_000),
            ),
            // Another tool's stop, a deployment's, a scale-in by ECS.
            stopped("t2", "by hand", Some("us-east-1c"), Some(5_000)),
            stopped(
                "t3",
                "Scaling activity initiated by (deployment ecs-svc/1)",
                None,
                None,
            ),
            // No zone from ECS: its host's. No time: now, the longest hold.
            stopped("t4", "stevedore: web (oneTaskPerHost)", None, None),
            // A clock ahead of ours counts as now.
            stopped("t5", "stevedore: web (spread host)", None, Some(20_000)),
        ];
        let stops = recovered_stops(&listed, &snapshot, now);
        let got: Vec<(&str, &str, Millis, bool)> = stops
            .iter()
            .map(|s| (s.task.as_str(), s.zone.as_str(), s.at, s.settled))
            .collect();
        assert_eq!(
            got,
            [
                ("t1", "us-east-1c", 4_000, false),
                ("t4", "us-east-1b", now, false),
                ("t5", "us-east-1b", now, false),
            ]
        );
        assert!(
            stops
                .iter()
                .all(|s| s.service == "web" && s.known.is_empty())
        );
    }
}
