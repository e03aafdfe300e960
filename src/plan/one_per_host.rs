//! `oneTaskPerHost`: the desired count follows the number of eligible hosts
//! (ACTIVE, agent connected, hence not DRAINING, matching `hostSelector`, and
//! admitted by the service's own placement constraints), and, once it does,
//! every eligible host runs exactly one task of the service and no other
//! host runs one.
//!
//! The count alone is not coverage: a service whose own constraints do not
//! keep ECS to the selected hosts can have a task on an excluded host and
//! none on a selected one, with the right count. stevedore then moves the
//! misplaced task only when ECS's placement (its strategy, as the planner
//! models it) would start the replacement on an uncovered eligible host;
//! otherwise it says why not, and what constraint would let ECS do it.

use super::placement::PlacementView;
use super::{Action, ActionKind, Index, ServiceStatus, State};
use crate::model::{Instance, TaskStatus};
use crate::spec::Policy;
use crate::spec::policy::OneTaskPerHost;

/// The rule's name in actions.
const RULE: &str = "oneTaskPerHost";

pub fn plan(
    policy: &Policy,
    rule: &OneTaskPerHost,
    index: &Index<'_>,
    s: usize,
    status: &mut ServiceStatus,
    actions: &mut Vec<Action>,
) {
    let snapshot = index.snapshot;
    let service = &snapshot.services[s];
    let selected = |i: &Instance| {
        rule.host_attributes
            .iter()
            .all(|(k, v)| i.attributes.get(k) == Some(v))
    };
    let eligible: Vec<bool> = snapshot
        .instances
        .iter()
        .map(|i| i.schedulable() && service.admits(i) && selected(i))
        .collect();
    let eligible_count = eligible.iter().filter(|e| **e).count() as u32;
    let excluded = snapshot.instances.len() as u32 - eligible_count;

    if !service.distinct_instance() {
        status.warnings.push(format!(
            "service `{}` has no distinctInstance placement constraint: ECS may start two of its tasks on one host",
            service.name
        ));
    }
    // Hosts ECS may use for the service that the hostSelector leaves out:
    // ECS does not know the selector, only the service's constraints.
    let open_excluded: Vec<&str> = snapshot
        .instances
        .iter()
        .filter(|i| i.schedulable() && service.admits(i) && !selected(i))
        .map(|i| i.id.as_str())
        .collect();
    if !open_excluded.is_empty() {
        let wanted: Vec<String> = rule
            .host_attributes
            .iter()
            .map(|(k, v)| format!("memberOf(attribute:{k} == {v})"))
            .collect();
        status.warnings.push(format!(
            "service `{}` has no placement constraint that keeps ECS to the hostSelector's hosts: ECS may place its tasks on {} ({}); add {} to the service",
            service.name,
            crate::words::count(open_excluded.len() as u64, "excluded host"),
            open_excluded.join(", "),
            wanted.join(" and ")
        ));
    }
    if service.autoscaling_target {
        status.state = State::Paused;
        status.reason =
            "conflict: an Application Auto Scaling target also sets this service's desired count"
                .into();
        return;
    }
    if service.desired != eligible_count {
        status.state = State::Converging;
        let excluded_note = if excluded > 0 {
            format!(
                " ({excluded} of {} instances excluded: draining, disconnected or not matching)",
                snapshot.instances.len()
            )
        } else {
            String::new()
        };
        let why = format!(
            "{}{excluded_note}, desiredCount is {}",
            crate::words::count(eligible_count, "eligible host"),
            service.desired
        );
        status.reason = format!(
            "desiredCount {} -> {eligible_count}: {why}",
            service.desired
        );
        actions.push(Action {
            policy: policy.name.clone(),
            service: service.name.clone(),
            rule: RULE.into(),
            kind: ActionKind::SetDesiredCount {
                from: service.desired,
                to: eligible_count,
            },
            reason: why,
            dry_run: false,
        });
        return;
    }
    cover(policy, index, s, &eligible, status, actions);
}

/// With the count right: checks that each eligible host runs one task and
/// no other host runs one, and moves a misplaced task where ECS would put
/// its replacement on an uncovered eligible host.
fn cover(
    policy: &Policy,
    index: &Index<'_>,
    s: usize,
    eligible: &[bool],
    status: &mut ServiceStatus,
    actions: &mut Vec<Action>,
) {
    let snapshot = index.snapshot;
    let service = &snapshot.services[s];
    let instances = &snapshot.instances;
    let n = eligible.len();
    // Running tasks per host, youngest last; resources held per host.
    let mut running: Vec<Vec<usize>> = vec![vec![]; n];
    let mut holding = vec![0u32; n];
    for t in &index.tasks_of[s] {
        let task = &snapshot.tasks[*t];
        let Some(i) = task.instance else { continue };
        match task.status {
            TaskStatus::Running => {
                running[i].push(*t);
                holding[i] += 1;
            }
            TaskStatus::Pending => holding[i] += 1,
            _ => {}
        }
    }
    for tasks in &mut running {
        tasks.sort_by_key(|t| {
            (
                !snapshot.tasks[*t].protected,
                snapshot.tasks[*t].started_at,
                *t,
            )
        });
    }
    let desired = service.desired;
    let total_running: u32 = running.iter().map(|r| r.len() as u32).sum();
    let hosts = crate::words::count(desired, "eligible host");
    if let Some(gap) = super::spread::steady_state_gap(index, s) {
        // Tasks are starting or stopping: coverage is judged at steady state.
        status.state = State::Paused;
        status.reason = format!("desiredCount {desired} = {hosts}; {gap}");
        return;
    }
    let uncovered: Vec<usize> = (0..n)
        .filter(|i| eligible[*i] && running[*i].is_empty())
        .collect();
    // Tasks to move: each on a host that is not eligible, and all but the
    // oldest on an eligible host that runs several (the protected ones
    // kept first, so that an unprotected one is the one to move).
    let mut misplaced: Vec<(usize, usize)> = vec![];
    let mut draining = vec![];
    for i in 0..n {
        if eligible[i] {
            misplaced.extend(running[i].iter().skip(1).map(|t| (i, *t)));
        } else if !running[i].is_empty() {
            if instances[i].schedulable() {
                misplaced.extend(running[i].iter().map(|t| (i, *t)));
            } else {
                // ECS moves the tasks of a draining host itself.
                draining.push(instances[i].id.as_str());
            }
        }
    }
    if uncovered.is_empty() && misplaced.is_empty() && draining.is_empty() {
        status.reason = format!("desiredCount {desired} = {hosts}, each running one task");
        return;
    }
    // Each task not on an eligible host of its own is a move (ECS makes
    // those of draining hosts).
    status.moves_remaining = misplaced.len() as u32 + draining.len() as u32;
    if !draining.is_empty() {
        status.state = State::Paused;
        status.reason = format!(
            "desiredCount {desired} = {hosts}; ECS is moving the tasks off {} ({})",
            crate::words::count(draining.len() as u64, "draining host"),
            draining.join(", ")
        );
        return;
    }
    status.state = State::Converging;
    let budget = policy
        .max_unavailable
        .resolve(desired, 1)
        .min(total_running.saturating_sub(1));
    if budget == 0 {
        status.state = State::Unsatisfiable;
        status.reason = format!(
            "desiredCount {desired} = {hosts}; its one task runs elsewhere than on an eligible host, and stevedore never stops a service's last running task"
        );
        return;
    }
    let mut view = PlacementView::new(instances, service, holding);
    let mut uncovered_now = uncovered.clone();
    let mut why_not = vec![];
    let mut stops = 0;
    for (from, task) in misplaced {
        if stops >= budget {
            break;
        }
        if snapshot.tasks[task].protected {
            why_not.push(format!(
                "the task on {} is protected from scale-in",
                instances[from].id
            ));
            continue;
        }
        view.stop(from);
        let candidates = view.candidates();
        let lands_uncovered =
            !candidates.is_empty() && candidates.iter().all(|c| uncovered_now.contains(c));
        if !lands_uncovered {
            view.keep(from);
            let landing: Vec<&str> = candidates
                .iter()
                .map(|c| instances[*c].id.as_str())
                .collect();
            why_not.push(format!(
                "ECS ({}) could place the replacement of the task on {} on {}, not only on an uncovered eligible host (a memberOf constraint on the service would keep ECS to the eligible hosts)",
                crate::model::strategy_text(&service.effective_strategy()),
                instances[from].id,
                if landing.is_empty() {
                    "no host at all".to_owned()
                } else {
                    landing.join(" or ")
                }
            ));
            continue;
        }
        let to = candidates[0];
        view.place(to);
        uncovered_now.retain(|u| *u != to);
        stops += 1;
        let place = if eligible[from] {
            format!("{} runs more than one task", instances[from].id)
        } else {
            format!("{} is not an eligible host", instances[from].id)
        };
        let landing: Vec<&str> = candidates
            .iter()
            .map(|c| instances[*c].id.as_str())
            .collect();
        actions.push(Action {
            policy: policy.name.clone(),
            service: service.name.clone(),
            rule: RULE.into(),
            kind: ActionKind::StopTask {
                task: snapshot.tasks[task].id.clone(),
                instance: instances[from].id.clone(),
                zone: instances[from].zone.clone(),
            },
            reason: format!(
                "{place}, and {} {} none: {} places the replacement there",
                landing.join(" or "),
                if landing.len() == 1 { "runs" } else { "run" },
                crate::model::strategy_text(&service.effective_strategy()),
            ),
            dry_run: false,
        });
    }
    let uncovered_names: Vec<&str> = uncovered
        .iter()
        .map(|i| instances[*i].id.as_str())
        .collect();
    let missing = if uncovered.is_empty() {
        String::new()
    } else {
        format!(
            "; {} without a task ({})",
            crate::words::count(uncovered.len() as u64, "eligible host"),
            uncovered_names.join(", ")
        )
    };
    status.moves_planned = stops;
    status.reason = format!("desiredCount {desired} = {hosts}{missing}");
    if stops > 0 {
        status.reason += &format!("; {} now", crate::words::count(stops, "move"));
    } else if !why_not.is_empty() {
        // Nothing stevedore can do: stopping would not cover the host.
        status.state = State::Unsatisfiable;
        status.reason += &format!("; not moved: {}", why_not.join("; "));
    }
}
