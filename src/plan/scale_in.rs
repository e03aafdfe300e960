//! Scale-in that keeps the spread. When ECS lowers a desired count it
//! chooses which tasks stop by the service's strategy, which can undo the
//! spread stevedore just made. So when a scaling policy lowers the count of
//! a service under spread constraints, stevedore chooses the tasks to go
//! (those whose removal leaves the fewest moves to satisfy every
//! constraint, [`super::spread::scale_in_removals`]), protects every other
//! running task (UpdateTaskProtection, with an expiry, so that a crash
//! never leaves tasks protected for long), sets the count, and releases
//! the protection once the scale-in is done. Tasks the user protected stay
//! protected: stevedore releases only what it turned on.

use std::collections::BTreeSet;

use super::{Action, ActionKind, Index, SCALING_RULE};
use crate::model::{Millis, TaskStatus};
use crate::spec::Policy;

/// How long the protection of the kept tasks lasts: enough for ECS to
/// finish the scale-in (seconds) and stevedore to see it, short enough that
/// a controller that died meanwhile leaves nothing protected for long.
pub const PROTECTION_MINUTES: u32 = 10;

/// A scale-in under way: the count it sets and the tasks stevedore protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleIn {
    /// The count set, if setting it succeeded.
    pub to: Option<u32>,
    pub protected: Vec<String>,
    /// When the protection was turned on.
    pub at: Millis,
}

/// What a pending scale-in asks for this pass.
pub enum Pending {
    /// Done (or given up): release the protection, with the reason.
    Release(Action),
    /// Still under way: no other scaling meanwhile.
    Wait(String),
}

/// The pass's step for a pending scale-in: release once the service runs
/// the new count with nothing pending (or the protection has expired
/// anyway), wait otherwise.
pub fn pending(
    scale_in: &ScaleIn,
    policy: &Policy,
    index: &Index<'_>,
    s: usize,
    now: Millis,
) -> Pending {
    let service = &index.snapshot.services[s];
    let running = index.running(s).count() as u32;
    let done = scale_in
        .to
        .is_none_or(|to| service.desired == to && running == to && service.pending == 0);
    let expired = now >= scale_in.at + Millis::from(PROTECTION_MINUTES) * 60_000;
    if !done && !expired {
        return Pending::Wait(format!(
            "scale-in to {} under way; {} kept protected until it is done",
            scale_in.to.unwrap_or(service.desired),
            crate::words::count(scale_in.protected.len() as u64, "task")
        ));
    }
    // Only the tasks that still exist; those ECS stopped need nothing.
    let existing: BTreeSet<&str> = index.tasks_of[s]
        .iter()
        .map(|t| index.snapshot.tasks[*t].id.as_str())
        .collect();
    let tasks: Vec<String> = scale_in
        .protected
        .iter()
        .filter(|t| existing.contains(t.as_str()))
        .cloned()
        .collect();
    let reason = if done {
        format!(
            "the scale-in to {} is done: release the protection stevedore turned on",
            service.desired
        )
    } else {
        format!(
            "the scale-in did not finish within {PROTECTION_MINUTES}m: release the protection (it has expired)"
        )
    };
    Pending::Release(Action {
        policy: policy.name.clone(),
        service: service.name.clone(),
        rule: SCALING_RULE.into(),
        kind: ActionKind::UnprotectTasks { tasks },
        reason,
        dry_run: false,
    })
}

/// The protection that makes ECS's scale-in stop `removed`: every other
/// running, unprotected task of the service. `None` when the service is not
/// at rest (ECS stops pending tasks first) or nothing needs protecting.
pub fn protect(
    policy: &Policy,
    index: &Index<'_>,
    s: usize,
    removed: &[usize],
    why: &str,
) -> Option<Action> {
    let snapshot = index.snapshot;
    let service = &snapshot.services[s];
    let at_rest = index.tasks_of[s]
        .iter()
        .all(|t| snapshot.tasks[*t].status == TaskStatus::Running);
    if !at_rest {
        return None;
    }
    let keep: Vec<String> = index
        .running(s)
        .filter(|t| !removed.contains(t) && !snapshot.tasks[*t].protected)
        .map(|t| snapshot.tasks[t].id.clone())
        .collect();
    if keep.is_empty() {
        return None;
    }
    let going: Vec<String> = removed
        .iter()
        .map(|t| {
            let task = &snapshot.tasks[*t];
            let host = task
                .instance
                .map_or("?", |i| snapshot.instances[i].id.as_str());
            format!("{} on {host}", short(&task.id))
        })
        .collect();
    Some(Action {
        policy: policy.name.clone(),
        service: service.name.clone(),
        rule: SCALING_RULE.into(),
        kind: ActionKind::ProtectTasks {
            tasks: keep,
            minutes: PROTECTION_MINUTES,
        },
        reason: format!(
            "{why}; keeping the spread: the others are protected so that ECS stops {}",
            going.join(", ")
        ),
        dry_run: false,
    })
}

/// The last part of a task ARN.
fn short(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use crate::model::{PlacementField, PlacementStrategy};
    use crate::plan::tests::{Cluster, policies, policy};
    use crate::plan::{ActionKind, Memory, plan_with};

    /// `web` on hosts a1, a2 (zone a) and b1, b2 (zone b): 2, 1, 1, 1 tasks
    /// (a1's are web-t1, web-t2), a binpack strategy, a zone and a host
    /// constraint, and a reading that asks for one task less.
    fn cluster() -> (Cluster, Vec<crate::spec::Policy>, Memory) {
        let mut c = Cluster::new();
        let hosts: Vec<usize> = [("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")]
            .iter()
            .map(|(h, z)| c.host(h, &format!("us-east-1{z}")))
            .collect();
        let web = c.service(
            "web",
            vec![
                PlacementStrategy::Spread(PlacementField::zone()),
                PlacementStrategy::Binpack(crate::model::BinpackField::Memory),
            ],
        );
        for (h, n) in hosts.iter().zip([2, 1, 1, 1]) {
            c.tasks(web, *h, n);
        }
        let p = policies(&policy(
            "web",
            "web",
            "  placement:\n    azBalanced: true\n    spread: [{topologyKey: host, maxSkew: 1}]\n  scaling:\n    minTasks: 2\n    maxTasks: 10\n    metric: {cloudWatch: {namespace: AWS/ECS, name: CPUUtilization}}\n    scaleOutAbove: 70\n    scaleInBelow: 30\n    scaleInAfter: 1\n    scaleInStabilization: 0s\n",
        ));
        let mut memory = Memory::default();
        memory
            .readings
            .insert(("web".into(), "web".into()), Some(10.0));
        (c, p, memory)
    }

    /// Every action of the plan done, noted as the controller notes it.
    fn carried_out(
        plan: &crate::plan::Plan,
        snapshot: &crate::model::ClusterSnapshot,
        memory: &mut Memory,
    ) {
        let executed: Vec<_> = plan
            .actions
            .iter()
            .map(|a| (a.clone(), Ok::<(), ()>(())))
            .collect();
        memory.executed(plan, snapshot, &executed, 0);
    }

    #[test]
    fn a_scale_in_protects_every_task_but_the_one_whose_loss_keeps_the_spread() {
        let (c, p, mut memory) = cluster();
        let plan = plan_with(&p, None, &c.snapshot, 0, &mut memory);
        let kinds: Vec<&ActionKind> = plan.actions.iter().map(|a| &a.kind).collect();
        // a1 holds two: losing one of them keeps both constraints; web-t2
        // is the younger.
        assert_eq!(
            kinds,
            [
                &ActionKind::ProtectTasks {
                    tasks: ["web-t1", "web-t3", "web-t4", "web-t5"]
                        .map(String::from)
                        .to_vec(),
                    minutes: super::PROTECTION_MINUTES
                },
                &ActionKind::SetDesiredCount { from: 5, to: 4 },
            ]
        );
        assert!(
            plan.actions[0]
                .reason
                .ends_with("so that ECS stops web-t2 on a1"),
            "{}",
            plan.actions[0].reason
        );
    }

    #[test]
    fn a_task_the_user_protected_is_neither_protected_again_nor_released() {
        let (mut c, p, mut memory) = cluster();
        let t3 = c
            .snapshot
            .tasks
            .iter()
            .position(|t| t.id == "web-t3")
            .unwrap();
        c.snapshot.tasks[t3].protected = true;
        let plan = plan_with(&p, None, &c.snapshot, 0, &mut memory);
        let ActionKind::ProtectTasks { tasks, .. } = &plan.actions[0].kind else {
            panic!("{:?}", plan.actions);
        };
        assert_eq!(tasks, &["web-t1", "web-t4", "web-t5"]);
        // Carried out: protected, and the count set.
        carried_out(&plan, &c.snapshot, &mut memory);
        // While ECS scales in, nothing else: no scaling, no placement;
        // the count set is not enough, the task must have stopped.
        let plan = plan_with(&p, None, &c.snapshot, 1_000, &mut memory);
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        c.snapshot.services[0].desired = 4;
        let plan = plan_with(&p, None, &c.snapshot, 1_500, &mut memory);
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert!(
            plan.statuses[0].reason.contains("scale-in to 4 under way"),
            "{}",
            plan.statuses[0].reason
        );
        // ECS stopped web-t2: released, the user's t3 left alone.
        let t2 = c
            .snapshot
            .tasks
            .iter()
            .position(|t| t.id == "web-t2")
            .unwrap();
        c.snapshot.tasks.remove(t2);
        let web = &mut c.snapshot.services[0];
        (web.desired, web.running) = (4, 4);
        let plan = plan_with(&p, None, &c.snapshot, 2_000, &mut memory);
        assert_eq!(
            plan.actions.iter().map(|a| &a.kind).collect::<Vec<_>>(),
            [&ActionKind::UnprotectTasks {
                tasks: ["web-t1", "web-t4", "web-t5"].map(String::from).to_vec()
            }]
        );
    }

    #[test]
    fn a_scale_in_that_never_finishes_is_released_when_the_protection_expires() {
        let (c, p, mut memory) = cluster();
        let plan = plan_with(&p, None, &c.snapshot, 0, &mut memory);
        carried_out(&plan, &c.snapshot, &mut memory);
        // ECS never scaled in (the count still 5 running).
        let expiry = u64::from(super::PROTECTION_MINUTES) * 60_000;
        let plan = plan_with(&p, None, &c.snapshot, expiry - 1, &mut memory);
        assert!(plan.actions.is_empty());
        let plan = plan_with(&p, None, &c.snapshot, expiry, &mut memory);
        assert!(matches!(
            plan.actions[0].kind,
            ActionKind::UnprotectTasks { .. }
        ));
        assert!(plan.actions[0].reason.contains("did not finish"));
    }
}
