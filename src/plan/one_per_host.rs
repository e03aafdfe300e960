//! `oneTaskPerHost`: the desired count follows the number of eligible hosts
//! (ACTIVE, agent connected, hence not DRAINING, matching `hostSelector`, and
//! admitted by the service's own placement constraints).

use super::{Action, ActionKind, Index, ServiceStatus, State};
use crate::spec::Policy;
use crate::spec::policy::OneTaskPerHost;

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
    let eligible = snapshot
        .instances
        .iter()
        .filter(|i| i.schedulable() && service.admits(i))
        .filter(|i| {
            rule.host_attributes
                .iter()
                .all(|(k, v)| i.attributes.get(k) == Some(v))
        })
        .count() as u32;
    let excluded = snapshot.instances.len() as u32 - eligible;

    if !service.distinct_instance() {
        status.warnings.push(format!(
            "service `{}` has no distinctInstance placement constraint: ECS may start two of its tasks on one host",
            service.name
        ));
    }
    if service.autoscaling_target {
        status.state = State::Paused;
        status.reason =
            "conflict: an Application Auto Scaling target also sets this service's desired count"
                .into();
        return;
    }
    if service.desired == eligible {
        status.reason = format!("desiredCount {eligible} = eligible hosts");
        return;
    }
    status.state = State::Converging;
    let excluded_note = if excluded > 0 {
        format!(
            " ({excluded} of {} instances excluded: draining, disconnected or not matching)",
            snapshot.instances.len()
        )
    } else {
        String::new()
    };
    status.reason = format!("desiredCount {} -> {eligible}", service.desired);
    actions.push(Action {
        policy: policy.name.clone(),
        service: service.name.clone(),
        rule: "oneTaskPerHost".into(),
        kind: ActionKind::SetDesiredCount {
            from: service.desired,
            to: eligible,
        },
        reason: format!(
            "{eligible} eligible hosts{excluded_note}, desiredCount is {}",
            service.desired
        ),
        dry_run: false,
    });
}
