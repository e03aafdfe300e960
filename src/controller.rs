//! The controller's reconcile: read a complete snapshot, plan, act, report.
//! Triggers (events, resync timers, policy changes) only decide *when* this
//! runs; it always works from a fresh, complete snapshot, and a failed read
//! means no plan and no action.

use crate::backend::{self, Backend};
use crate::model::Millis;
use crate::plan::{self, Action, ActionKind, Plan};
use crate::spec::Policy;

/// What one reconcile did.
#[derive(Debug)]
pub struct Reconciled {
    pub plan: Plan,
    /// Each executable action with its outcome, in order.
    pub executed: Vec<(Action, backend::Result<()>)>,
}

/// One pass: snapshot, plan, execute the plan's executable actions.
/// DryRun policies' actions are planned and reported, never executed.
pub async fn reconcile<B: Backend>(
    backend: &B,
    cluster: &str,
    policies: &[Policy],
    now: Millis,
) -> backend::Result<Reconciled> {
    let snapshot = backend.snapshot(cluster).await?;
    let plan = plan::plan(policies, &snapshot, now);
    let mut executed = vec![];
    for action in plan.executable() {
        let result = match &action.kind {
            ActionKind::StopTask { task, .. } => {
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
    Ok(Reconciled { plan, executed })
}
