//! Planner tests on small clusters built by hand.

use super::*;
use crate::model::{
    Instance, InstanceStatus, PlacementField, PlacementStrategy, Resources, Service, Task,
};

/// A cluster under construction.
pub(crate) struct Cluster {
    pub snapshot: ClusterSnapshot,
    clock: Millis,
}

impl Cluster {
    pub fn new() -> Cluster {
        Cluster {
            snapshot: ClusterSnapshot {
                cluster: "demo".into(),
                ..ClusterSnapshot::default()
            },
            clock: 0,
        }
    }

    /// A host with room for 8 tasks of 512 CPU units / 1 GiB.
    pub fn host(&mut self, id: &str, zone: &str) -> usize {
        self.host_sized(
            id,
            zone,
            Resources {
                cpu: 4096,
                memory: 8192,
            },
        )
    }

    pub fn host_sized(&mut self, id: &str, zone: &str, size: Resources) -> usize {
        self.snapshot
            .instances
            .push(Instance::active(id, zone, size, Default::default()));
        self.snapshot.instances.len() - 1
    }

    pub fn service(&mut self, name: &str, strategy: Vec<PlacementStrategy>) -> usize {
        self.snapshot.services.push(Service {
            name: name.into(),
            arn: format!("arn:aws:ecs:us-east-1:123456789012:service/demo/{name}"),
            tags: Default::default(),
            desired: 0,
            running: 0,
            pending: 0,
            deployment_in_progress: false,
            strategy,
            constraints: vec![],
            task_size: Resources {
                cpu: 512,
                memory: 1024,
            },
            host_ports: vec![],
            az_rebalancing: false,
            az_rebalancing_in_progress: false,
            autoscaling_target: false,
            fargate: false,
            minimum_healthy_percent: 100,
            maximum_percent: 200,
        });
        self.snapshot.services.len() - 1
    }

    /// `n` running tasks of a service on a host, each started later than the last.
    pub fn tasks(&mut self, service: usize, host: usize, n: u32) {
        for _ in 0..n {
            self.clock += 1_000;
            let id = format!(
                "{}-t{}",
                self.snapshot.services[service].name,
                self.snapshot.tasks.len() + 1
            );
            self.snapshot.tasks.push(Task {
                id,
                service,
                instance: Some(host),
                status: TaskStatus::Running,
                started_at: self.clock,
                protected: false,
            });
            let size = self.snapshot.services[service].task_size;
            let inst = &mut self.snapshot.instances[host];
            inst.remaining = inst.remaining.minus(size);
            let svc = &mut self.snapshot.services[service];
            svc.desired += 1;
            svc.running += 1;
        }
    }
}

pub(crate) fn policies(yaml: &str) -> Vec<Policy> {
    let loaded = crate::spec::load_sources(vec![("test.yaml".into(), yaml.as_bytes().to_vec())]);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    loaded.policies
}

pub(crate) fn policy(name: &str, service: &str, rest: &str) -> String {
    format!(
        "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata: {{name: {name}}}\nspec:\n  target: {{cluster: demo, service: {service}}}\n{rest}"
    )
}

const AZ: &str = "  placement: {azBalanced: true}\n";

fn spread_zone() -> Vec<PlacementStrategy> {
    vec![PlacementStrategy::Spread(PlacementField::zone())]
}

/// Zones a/b/c with two hosts each; `web` has `counts[z]` tasks on the first host of zone z.
fn three_zones(counts: [u32; 3], strategy: Vec<PlacementStrategy>) -> Cluster {
    let mut c = Cluster::new();
    let hosts: Vec<usize> = ["a", "b", "c"]
        .iter()
        .flat_map(|z| [format!("{z}1"), format!("{z}2")].map(|id| (id, format!("us-east-1{z}"))))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|(id, zone)| c.host(&id, &zone))
        .collect();
    let web = c.service("web", strategy);
    for (z, n) in counts.iter().enumerate() {
        c.tasks(web, hosts[z * 2], *n);
    }
    c
}

fn stops(plan: &Plan) -> Vec<(String, String)> {
    plan.actions
        .iter()
        .filter_map(|a| match &a.kind {
            ActionKind::StopTask { task, instance, .. } => Some((task.clone(), instance.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_skewed_service_gets_one_stop_from_the_fullest_zone_with_its_reason() {
    let c = three_zones([5, 1, 0], spread_zone());
    let plan = plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    // Youngest task on the host with the most tasks in us-east-1a.
    assert_eq!(stops(&plan), [("web-t5".to_owned(), "a1".to_owned())]);
    let status = &plan.statuses[0];
    assert_eq!(
        (status.state, status.moves_remaining, status.moves_planned),
        (State::Converging, 3, 1)
    );
    assert_eq!(status.forced_redeploy_tasks, 6);
    let reason = &plan.actions[0].reason;
    assert!(
        reason.starts_with("move 1 of 3: zone skew 5 (max 1): us-east-1a has 5, us-east-1c has 0"),
        "{reason}"
    );
    assert!(
        reason.contains(
            "spread(attribute:ecs.availability-zone) places the replacement on zone us-east-1c"
        ),
        "{reason}"
    );
}

#[test]
fn a_reason_names_the_instance_when_ecs_has_one_choice() {
    // Zone c has one host and the fewest tasks: the replacement can only
    // land there. (A host constraint makes the planner look host by host.)
    let mut c = Cluster::new();
    let a = c.host("a1", "us-east-1a");
    let b = c.host("b1", "us-east-1b");
    c.host("c1", "us-east-1c");
    let web = c.service("web", spread_zone());
    c.tasks(web, a, 3);
    c.tasks(web, b, 1);
    let p = policies(&policy(
        "web-az",
        "web",
        "  placement:\n    spread: [{topologyKey: zone, maxSkew: 1}, {topologyKey: host, maxSkew: 3}]\n",
    ));
    let plan = plan(&p, &c.snapshot, 0);
    assert_eq!(
        plan.actions[0].reason,
        "move 1 of 1: zone skew 3 (max 1): us-east-1a has 3, us-east-1c has 0; host skew 3 (max 3): \
         a1 has 3, c1 has 0; youngest of 3 tasks on this host; \
         spread(attribute:ecs.availability-zone) places the replacement on c1"
    );
}

#[test]
fn a_balanced_service_is_satisfied_and_left_alone() {
    let c = three_zones([2, 2, 1], spread_zone());
    let plan = plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    assert!(plan.actions.is_empty());
    assert_eq!(plan.statuses[0].state, State::Satisfied);
    assert_eq!(plan.statuses[0].constraints[0].skew, 1);
    assert_eq!(plan.statuses[0].reason, "every spread constraint holds");
    // The same through the full check, which a placement constraint of the
    // service's own asks for (the quick one steps aside).
    let mut c = c;
    c.snapshot.services[0]
        .constraints
        .push(crate::model::PlacementConstraint::MemberOf(
            crate::model::MemberOf::parse("attribute:ecs.availability-zone != us-east-1d").unwrap(),
        ));
    let full = super::plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    assert!(full.actions.is_empty());
    assert_eq!(
        (full.statuses[0].state, full.statuses[0].reason.as_str()),
        (State::Satisfied, "every spread constraint holds")
    );
}

#[test]
fn the_budget_bounds_the_batch_and_ties_are_followed() {
    let c = three_zones([5, 1, 0], spread_zone());
    let p = policies(&policy(
        "web-az",
        "web",
        &format!("{AZ}  disruption: {{maxUnavailable: 3}}\n"),
    ));
    let plan = plan(&p, &c.snapshot, 0);
    // All three stops come from zone a; whatever ECS does with the ties
    // between b and c, the result is balanced.
    let planned = stops(&plan);
    assert_eq!(planned.len(), 3, "{plan:#?}");
    assert!(planned.iter().all(|(_, host)| host == "a1"));
    assert_eq!(plan.statuses[0].moves_remaining, 3);
    // Each reason counts the host's tasks as they are once the stops
    // before it are made.
    let counted: Vec<bool> = plan
        .actions
        .iter()
        .zip([5, 4, 3])
        .map(|(a, n)| {
            a.reason
                .contains(&format!("youngest of {n} tasks on this host"))
        })
        .collect();
    assert_eq!(counted, [true; 3], "{:#?}", plan.actions);
}

#[test]
fn a_percentage_budget_rounds_up() {
    let c = three_zones([5, 1, 0], spread_zone());
    let p = policies(&policy(
        "web-az",
        "web",
        &format!("{AZ}  disruption: {{maxUnavailable: \"20%\"}}\n"),
    ));
    // 20% of 6 = 1.2 -> 2.
    assert_eq!(stops(&plan(&p, &c.snapshot, 0)).len(), 2);
}

#[test]
fn no_room_in_the_deficit_zone_is_unsatisfiable_and_moves_nothing() {
    let mut c = Cluster::new();
    let a = c.host("a1", "us-east-1a");
    let b = c.host("b1", "us-east-1b");
    let full = c.host_sized(
        "c1",
        "us-east-1c",
        Resources {
            cpu: 256,
            memory: 8192,
        },
    );
    let web = c.service("web", spread_zone());
    c.tasks(web, a, 3);
    c.tasks(web, b, 3);
    let _ = full;
    let plan = plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    assert!(plan.actions.is_empty());
    let status = &plan.statuses[0];
    assert_eq!(status.state, State::Unsatisfiable);
    assert_eq!(
        status.reason,
        "no room in zone us-east-1c: it can hold 0 of the service's tasks (512 CPU units, 1024 MiB each), \
         but spreading 6 tasks over 3 zone domains with maxSkew 1 needs at least 2 there"
    );
    // With maxSkew 2, the emptiest zone needs (6 - 2 * 2) / 3 = 1, rounded up.
    let wide = policies(&policy(
        "web-az",
        "web",
        "  placement:\n    spread: [{topologyKey: zone, maxSkew: 2}]\n",
    ));
    let wide = super::plan(&wide, &c.snapshot, 0);
    assert!(
        wide.statuses[0].reason.ends_with(
            "spreading 6 tasks over 3 zone domains with maxSkew 2 needs at least 1 there"
        ),
        "{}",
        wide.statuses[0].reason
    );
}

#[test]
fn min_domains_beyond_the_zones_there_are_says_what_each_needs() {
    let mut c = three_zones([2, 2, 2], spread_zone());
    c.snapshot.services[0].desired = 6;
    let p = policies(&policy(
        "web",
        "web",
        "  placement:\n    spread: [{topologyKey: zone, maxSkew: 1, minDomains: 5}]\n",
    ));
    let plan = plan(&p, &c.snapshot, 0);
    assert!(plan.actions.is_empty());
    let status = &plan.statuses[0];
    assert_eq!(status.state, State::Unsatisfiable);
    // N <= x + (k-1)(x+s): 6 <= x + 4(x+1), so x >= 1 in each of the 5.
    assert_eq!(
        status.reason,
        "minDomains 5 but only 3 zone domains are eligible: with 6 tasks and maxSkew 1, each domain needs at least 1"
    );
}

#[test]
fn a_strategy_that_does_not_spread_on_the_topology_is_unsatisfiable() {
    // binpack(memory) puts the replacement back on the fullest host.
    let c = three_zones(
        [5, 1, 0],
        vec![PlacementStrategy::Binpack(
            crate::model::BinpackField::Memory,
        )],
    );
    let plan = plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    assert!(plan.actions.is_empty());
    let status = &plan.statuses[0];
    assert_eq!(status.state, State::Unsatisfiable);
    assert!(
        status.reason.starts_with(
            "the service's placement strategy (binpack(memory)) does not spread on zone"
        ),
        "{}",
        status.reason
    );
}

#[test]
fn no_strategy_means_ecs_default_spread_over_zones() {
    let c = three_zones([5, 1, 0], vec![]);
    let plan = plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    assert_eq!(stops(&plan).len(), 1);
}

#[test]
fn protected_tasks_are_never_stopped() {
    let mut c = three_zones([5, 1, 0], spread_zone());
    // Protect the two youngest tasks of zone a.
    for t in &mut c.snapshot.tasks[3..5] {
        t.protected = true;
    }
    let plan = plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    assert_eq!(stops(&plan), [("web-t3".to_owned(), "a1".to_owned())]);
}

#[test]
fn when_the_fullest_hosts_tasks_are_all_protected_the_reason_says_so() {
    let mut c = three_zones([5, 1, 0], spread_zone());
    for t in &mut c.snapshot.tasks[..5] {
        t.protected = true;
    }
    let plan = plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    assert!(plan.actions.is_empty());
    assert_eq!(plan.statuses[0].state, State::Unsatisfiable);
    assert_eq!(
        plan.statuses[0].reason,
        "the tasks on a1 in zone us-east-1a, where stops would start, are protected from scale-in; \
         elsewhere: ECS (spread(attribute:ecs.availability-zone)) could place the replacement of a \
         task from us-east-1b on zone us-east-1b, which does not reduce the skew"
    );
    // With one unprotected task in zone a, that one is stopped.
    c.snapshot.tasks[0].protected = false;
    let again = super::plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    assert_eq!(stops(&again), [("web-t1".to_owned(), "a1".to_owned())]);
}

#[test]
/// One task is within any `maxSkew >= 1`, even short of `minDomains`:
/// nothing to do. (That the budget never reaches a service's last running
/// task is `spread::tests::the_budget_never_reaches_the_last_running_task`.)
fn one_task_is_within_any_spread() {
    let mut c = Cluster::new();
    let a = c.host("a1", "us-east-1a");
    c.host("b1", "us-east-1b");
    let web = c.service("web", spread_zone());
    c.tasks(web, a, 1);
    let p = policies(&policy(
        "web-host",
        "web",
        "  placement:\n    spread: [{topologyKey: zone, maxSkew: 1, minDomains: 3}]\n",
    ));
    let plan = plan(&p, &c.snapshot, 0);
    assert!(plan.actions.is_empty());
}

#[test]
fn dry_run_plans_but_marks_every_action() {
    let c = three_zones([5, 1, 0], spread_zone());
    let plan = plan(
        &policies(&policy("web-az", "web", &format!("{AZ}  mode: DryRun\n"))),
        &c.snapshot,
        0,
    );
    assert_eq!(plan.actions.len(), 1);
    assert!(plan.actions[0].dry_run);
    assert_eq!(plan.executable().count(), 0);
}

#[test]
fn deployments_and_unsteady_services_are_paused() {
    let mut c = three_zones([5, 1, 0], spread_zone());
    c.snapshot.services[0].deployment_in_progress = true;
    let plan1 = plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    assert!(plan1.actions.is_empty());
    assert_eq!(plan1.statuses[0].state, State::Paused);
    assert!(
        plan1.statuses[0]
            .reason
            .starts_with("a deployment is in progress; 3 moves needed")
    );

    c.snapshot.services[0].deployment_in_progress = false;
    c.snapshot.services[0].pending = 1;
    let plan2 = plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    assert!(plan2.actions.is_empty());
    assert!(
        plan2.statuses[0].reason.starts_with("not at steady state"),
        "{}",
        plan2.statuses[0].reason
    );
}

/// ECS's `runningCount` lags the task list: after a pass stopped 4 of 9
/// tasks, the service may still say 9 running. The budget must not be
/// spent again on that word alone.
#[test]
fn the_budget_counts_the_lower_of_runningcount_and_the_running_tasks_listed() {
    let four = "  placement: {azBalanced: true}\n  disruption: {maxUnavailable: 4}\n";
    // 9 tasks in zone a, none elsewhere: 6 moves needed.
    let c = three_zones([9, 0, 0], spread_zone());
    let first = plan(&policies(&policy("web-az", "web", four)), &c.snapshot, 0);
    assert_eq!(stops(&first).len(), 4, "{:?}", first.statuses[0].reason);

    // Those 4 stopped (gone from the list); ECS still counts 9 running.
    let mut after = c.snapshot.clone();
    let stopped: Vec<String> = stops(&first).into_iter().map(|(t, _)| t).collect();
    after.tasks.retain(|t| !stopped.contains(&t.id));
    assert_eq!(after.services[0].running, 9);
    let second = plan(&policies(&policy("web-az", "web", four)), &after, 0);
    assert!(
        stops(&second).is_empty(),
        "no fifth stop: {:?}",
        second.actions
    );
    assert_eq!(second.statuses[0].state, State::Paused);
    assert!(
        second.statuses[0]
            .reason
            .contains("5 running (ECS counts 9, the task list holds 5)"),
        "{}",
        second.statuses[0].reason
    );

    // Or still listed, but stopping: not available either.
    let mut stopping = c.snapshot.clone();
    for t in &mut stopping.tasks {
        if stopped.contains(&t.id) {
            t.status = TaskStatus::Stopping;
        }
    }
    let third = plan(&policies(&policy("web-az", "web", four)), &stopping, 0);
    assert!(stops(&third).is_empty(), "{:?}", third.actions);

    // A replacement listed as PENDING while ECS counts none pending: paused.
    let mut pending = c.snapshot.clone();
    pending.tasks[0].status = TaskStatus::Pending;
    pending.services[0].running = 8;
    pending.services[0].desired = 9;
    let fourth = plan(&policies(&policy("web-az", "web", four)), &pending, 0);
    assert!(stops(&fourth).is_empty());
    assert!(
        fourth.statuses[0].reason.contains("1 pending"),
        "{}",
        fourth.statuses[0].reason
    );
}

#[test]
fn two_policies_on_one_service_pause_both() {
    let c = three_zones([5, 1, 0], spread_zone());
    // Validation rejects such a pair; the planner must not trust that it
    // never sees one (policies from two sources, a bug elsewhere).
    let by_tag = "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata: {name: by-tag}\nspec:\n  target: {cluster: demo, serviceSelector: {tags: {balance: az}}}\n  placement: {azBalanced: true}\n";
    let mut both = policies(&policy("web-az", "web", AZ));
    both.extend(policies(by_tag));
    let mut c = c;
    c.snapshot.services[0]
        .tags
        .insert("balance".into(), "az".into());
    let plan = plan(&both, &c.snapshot, 0);
    assert!(plan.actions.is_empty());
    assert_eq!(plan.statuses.len(), 2);
    assert!(
        plan.statuses
            .iter()
            .all(|s| s.state == State::Paused && s.reason.starts_with("conflict"))
    );
}

#[test]
fn zones_are_left_to_ecs_rebalancing_and_no_stop_is_made_for_them() {
    let mut c = three_zones([5, 1, 0], spread_zone());
    c.snapshot.services[0].az_rebalancing = true;
    let plan = super::plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    assert!(plan.actions.is_empty(), "{:#?}", plan.actions);
    let status = &plan.statuses[0];
    assert_eq!(status.state, State::Converging, "{status:#?}");
    assert!(
        status
            .reason
            .starts_with("zone skew 5 > maxSkew 1, zones delegated to ECS AZ rebalancing"),
        "{status:#?}"
    );
    // Reported against the policy's maxSkew.
    assert_eq!(
        (status.constraints[0].skew, status.constraints[0].max_skew),
        (5, 1)
    );
    // Balanced by ECS: satisfied, and said who balances.
    let mut c = three_zones([2, 2, 2], spread_zone());
    c.snapshot.services[0].az_rebalancing = true;
    let plan = super::plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    assert_eq!(plan.statuses[0].state, State::Satisfied);
    assert!(
        plan.statuses[0]
            .reason
            .ends_with("; zones delegated to ECS AZ rebalancing")
    );
}

#[test]
fn ecs_without_room_in_the_emptiest_zone_is_said_to_be_stuck() {
    let mut c = Cluster::new();
    let a1 = c.host("a1", "us-east-1a");
    let b1 = c.host("b1", "us-east-1b");
    // Too small for one task of 512 CPU units / 1 GiB.
    c.host_sized(
        "c1",
        "us-east-1c",
        Resources {
            cpu: 256,
            memory: 512,
        },
    );
    let web = c.service("web", spread_zone());
    c.tasks(web, a1, 3);
    c.tasks(web, b1, 1);
    c.snapshot.services[web].az_rebalancing = true;
    let plan = super::plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    assert!(plan.actions.is_empty());
    assert!(
        plan.statuses[0]
            .reason
            .ends_with("; ECS has no room for a task in us-east-1c now, so it cannot start until room appears there"),
        "{:#?}",
        plan.statuses[0]
    );
}

#[test]
fn while_ecs_rebalances_the_zones_no_move_is_made() {
    let mut c = three_zones([5, 1, 0], spread_zone());
    c.snapshot.services[0].az_rebalancing = true;
    c.snapshot.services[0].az_rebalancing_in_progress = true;
    let host =
        "  placement:\n    azBalanced: true\n    spread: [{topologyKey: host, maxSkew: 1}]\n";
    let plan = super::plan(&policies(&policy("web", "web", host)), &c.snapshot, 0);
    assert!(plan.actions.is_empty());
    assert_eq!(plan.statuses[0].state, State::Paused);
    assert!(
        plan.statuses[0].reason.contains("ECS is rebalancing"),
        "{:#?}",
        plan.statuses[0]
    );
}

#[test]
fn host_moves_beside_ecs_rebalancing_never_worsen_the_zones() {
    // Zones balanced (2/2/2), each zone's tasks on its first host: host
    // skew 2. Each move stays in its zone (zone spread first, then host).
    let strategy = vec![
        PlacementStrategy::Spread(PlacementField::zone()),
        PlacementStrategy::Spread(PlacementField::Instance),
    ];
    let mut c = three_zones([2, 2, 2], strategy.clone());
    c.snapshot.services[0].az_rebalancing = true;
    let host = "  placement:\n    azBalanced: true\n    spread: [{topologyKey: host, maxSkew: 1}]\n  disruption: {maxUnavailable: 3}\n";
    let p = policies(&policy("web", "web", host));
    let plan = super::plan(&p, &c.snapshot, 0);
    let status = &plan.statuses[0];
    assert_eq!(
        (status.state, status.moves_remaining),
        (State::Converging, 3),
        "{status:#?}"
    );
    let mut from: Vec<String> = stops(&plan).into_iter().map(|(_, host)| host).collect();
    from.sort();
    assert_eq!(from, ["a1", "b1", "c1"]);
    // Each replacement lands on the other host of its own zone.
    for (_, host) in stops(&plan) {
        let zone = &host[..1];
        let action = plan
            .actions
            .iter()
            .find(|a| a.to_string().contains(&format!(" on {host} ")))
            .unwrap();
        assert!(
            action
                .reason
                .ends_with(&format!("places the replacement on {zone}2")),
            "{action}"
        );
    }
    // Zones 3/2/1: ECS has zone work to do; nothing moves until it has
    // done it (a move now would race it).
    let mut c = three_zones([3, 2, 1], strategy);
    c.snapshot.services[0].az_rebalancing = true;
    let plan = super::plan(&p, &c.snapshot, 0);
    assert!(plan.actions.is_empty(), "{:#?}", plan.actions);
    assert!(
        plan.statuses[0].reason.starts_with(
            "zone skew 2 > maxSkew 1, zones delegated to ECS AZ rebalancing: ECS balances the zones, and stevedore's other moves wait until it has"
        ),
        "{:#?}",
        plan.statuses[0]
    );
}

#[test]
fn ecs_rebalancing_that_cannot_run_leaves_the_zones_to_stevedore_and_says_why() {
    // binpack first: ECS cannot rebalance; stevedore enforces the zones as
    // for any service (here: its strategy cannot spread them either).
    let mut c = three_zones(
        [5, 1, 0],
        vec![PlacementStrategy::Binpack(
            crate::model::BinpackField::Memory,
        )],
    );
    c.snapshot.services[0].az_rebalancing = true;
    let plan = super::plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    let status = &plan.statuses[0];
    assert_eq!(status.state, State::Unsatisfiable, "{status:#?}");
    assert_eq!(
        status.warnings,
        [
            "ECS's AZ rebalancing is ENABLED but cannot run (the first placement strategy is binpack(memory), not a spread over zones): stevedore balances the zones itself"
        ]
    );
    // maximumPercent 100: stevedore moves the zones itself.
    let mut c = three_zones([5, 1, 0], spread_zone());
    c.snapshot.services[0].az_rebalancing = true;
    c.snapshot.services[0].maximum_percent = 100;
    let plan = super::plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    assert_eq!(plan.statuses[0].state, State::Converging);
    assert_eq!(stops(&plan).len(), 1);
    assert!(plan.statuses[0].warnings[0].contains("maximumPercent is 100"));
}

#[test]
fn one_task_per_host_counts_only_eligible_hosts() {
    let mut c = Cluster::new();
    for (id, zone) in [
        ("a1", "us-east-1a"),
        ("b1", "us-east-1b"),
        ("c1", "us-east-1c"),
        ("c2", "us-east-1c"),
    ] {
        c.host(id, zone);
    }
    c.snapshot.instances[3].status = InstanceStatus::Draining;
    let agent = c.service("agent", vec![]);
    c.snapshot.services[agent]
        .constraints
        .push(crate::model::PlacementConstraint::DistinctInstance);
    for h in 0..2 {
        c.tasks(agent, h, 1);
    }
    let plan = plan(
        &policies(&policy(
            "agent-per-host",
            "agent",
            "  placement: {oneTaskPerHost: {}}\n",
        )),
        &c.snapshot,
        0,
    );
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(
        plan.actions[0].kind,
        ActionKind::SetDesiredCount { from: 2, to: 3 }
    );
    assert!(
        plan.actions[0].reason.contains("1 of 4 instances excluded"),
        "{}",
        plan.actions[0].reason
    );
    assert!(plan.statuses[0].warnings.is_empty());
}

#[test]
fn one_task_per_host_without_distinct_instance_is_reported() {
    let mut c = Cluster::new();
    c.host("a1", "us-east-1a");
    let agent = c.service("agent", vec![]);
    c.tasks(agent, 0, 1);
    let plan = plan(
        &policies(&policy(
            "agent-per-host",
            "agent",
            "  placement: {oneTaskPerHost: {}}\n",
        )),
        &c.snapshot,
        0,
    );
    assert!(plan.actions.is_empty());
    assert!(plan.statuses[0].warnings[0].contains("no distinctInstance"));
}

#[test]
fn zone_and_host_constraints_together() {
    // Zone a has 4 tasks on one host and an empty host; zones b, c have 2 each.
    let mut c = Cluster::new();
    let a1 = c.host("a1", "us-east-1a");
    c.host("a2", "us-east-1a");
    let b1 = c.host("b1", "us-east-1b");
    let c1 = c.host("c1", "us-east-1c");
    let web = c.service(
        "web",
        vec![
            PlacementStrategy::Spread(PlacementField::zone()),
            PlacementStrategy::Spread(PlacementField::Instance),
        ],
    );
    c.tasks(web, a1, 4);
    c.tasks(web, b1, 2);
    c.tasks(web, c1, 2);
    // Host skew 1 would force 2 tasks on every host, so 4 in zone a: infeasible.
    let tight = policies(&policy(
        "web",
        "web",
        "  placement:\n    azBalanced: true\n    spread: [{topologyKey: host, maxSkew: 1}]\n",
    ));
    assert_eq!(
        plan(&tight, &c.snapshot, 0).statuses[0].state,
        State::Unsatisfiable
    );
    // Host skew 2: zones 3/3/2 with hosts a1=2, a2=1, b1=3, c1=2: two moves
    // out of a1, one landing on a2 (zone then host spread), one in b.
    let p = policies(&policy(
        "web",
        "web",
        "  placement:\n    azBalanced: true\n    spread: [{topologyKey: host, maxSkew: 2}]\n",
    ));
    let plan = plan(&p, &c.snapshot, 0);
    let status = &plan.statuses[0];
    assert_eq!(
        (status.state, status.moves_remaining),
        (State::Converging, 2),
        "{status:#?}"
    );
    assert_eq!(stops(&plan)[0].1, "a1");
}

#[test]
fn the_same_input_gives_the_same_plan() {
    let c = three_zones([7, 0, 2], spread_zone());
    let p = policies(&policy(
        "web-az",
        "web",
        &format!("{AZ}  disruption: {{maxUnavailable: 2}}\n"),
    ));
    assert_eq!(plan(&p, &c.snapshot, 0), plan(&p, &c.snapshot, 0));
}

#[test]
fn placement_rules_leave_a_fargate_service_alone_and_say_why() {
    let mut c = three_zones([1, 1, 1], spread_zone());
    let controller = c.service("controller", vec![]);
    for i in 0..2 {
        c.snapshot.tasks.push(Task {
            id: format!("controller-t{i}"),
            service: controller,
            instance: None, // a Fargate task has no container instance
            status: TaskStatus::Running,
            started_at: 1_000,
            protected: false,
        });
    }
    let rules = [AZ, "  placement: {oneTaskPerHost: {}}\n"];
    // On hosts, one task per host sets the count to the number of hosts.
    let on_hosts = plan(
        &policies(&policy("p", "controller", rules[1])),
        &c.snapshot,
        100_000,
    );
    assert_eq!(on_hosts.actions.len(), 1);
    c.snapshot.services[controller].fargate = true;
    for rule in rules {
        let p = plan(
            &policies(&policy("p", "controller", rule)),
            &c.snapshot,
            100_000,
        );
        assert!(p.actions.is_empty(), "{rule}: {:?}", p.actions);
        assert_eq!(p.statuses[0].state, State::Unsatisfiable, "{rule}");
        assert!(p.statuses[0].reason.contains("Fargate"), "{rule}");
    }
}

#[test]
fn a_fargate_service_is_scaled() {
    let mut c = Cluster::new();
    let api = c.service("api", vec![]);
    c.snapshot.services[api].fargate = true;
    c.snapshot.services[api].desired = 3;
    c.snapshot.services[api].running = 3;
    let p = policies(&policy(
        "api",
        "api",
        "  scaling:\n    minTasks: 2\n    maxTasks: 10\n    metric: {cloudWatch: {namespace: AWS/ECS, name: CPUUtilization}}\n    scaleOutAbove: 70\n    scaleInBelow: 30\n    scaleOutAfter: 1\n",
    ));
    let mut input = Memory::default();
    input
        .readings
        .insert(("api".into(), "api".into()), Some(90.0));
    let plan = plan_with(&p, None, &c.snapshot, 0, &mut input);
    assert_eq!(
        plan.actions.iter().map(|a| &a.kind).collect::<Vec<_>>(),
        [&ActionKind::SetDesiredCount { from: 3, to: 4 }]
    );
    assert_eq!(plan.statuses[0].state, State::Converging);
}

#[test]
fn a_batch_too_large_to_check_is_cut_to_one_that_can_be() {
    // Four stops from h0, each replacement free to land on any of eleven
    // tied hosts: 11 * 10 * 9 * 8 outcomes is past what the batch check
    // explores, so the batch is cut to the three it can check in full.
    let mut c = Cluster::new();
    let hosts: Vec<usize> = (0..12)
        .map(|h| {
            c.host(
                &format!("h{h:02}"),
                ["us-east-1a", "us-east-1b", "us-east-1c"][h % 3],
            )
        })
        .collect();
    let web = c.service(
        "web",
        vec![PlacementStrategy::Spread(PlacementField::Instance)],
    );
    c.tasks(web, hosts[0], 6);
    for h in &hosts[1..] {
        c.tasks(web, *h, 1);
    }
    let p = policies(&policy(
        "web",
        "web",
        "  placement:\n    spread: [{topologyKey: host, maxSkew: 1}]\n  disruption: {maxUnavailable: 4}\n",
    ));
    let plan = plan(&p, &c.snapshot, 0);
    assert_eq!(
        plan.statuses[0].moves_remaining, 4,
        "{:?}",
        plan.statuses[0]
    );
    assert_eq!(stops(&plan).len(), 3, "{:#?}", plan.actions);
}

#[test]
fn the_zone_without_room_is_the_one_named() {
    // Zone b can hold exactly the 2 it needs; zone c, none.
    let mut c = Cluster::new();
    let a = c.host("a1", "us-east-1a");
    c.host_sized(
        "b1",
        "us-east-1b",
        Resources {
            cpu: 1024,
            memory: 2048,
        },
    );
    c.host_sized(
        "c1",
        "us-east-1c",
        Resources {
            cpu: 256,
            memory: 8192,
        },
    );
    let web = c.service("web", spread_zone());
    c.tasks(web, a, 6);
    let plan = plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    assert!(
        plan.statuses[0]
            .reason
            .starts_with("no room in zone us-east-1c: it can hold 0"),
        "{}",
        plan.statuses[0].reason
    );
}

#[test]
fn distinct_instance_with_more_tasks_than_hosts_is_unsatisfiable() {
    // distinctInstance: at most one task a host, so five tasks cannot be
    // spread over three hosts, and nothing is stopped trying.
    let mut c = Cluster::new();
    let hosts: Vec<usize> = (0..3)
        .map(|h| {
            c.host(
                &format!("h{h}"),
                ["us-east-1a", "us-east-1b", "us-east-1c"][h],
            )
        })
        .collect();
    let web = c.service("web", spread_zone());
    c.snapshot.services[web]
        .constraints
        .push(crate::model::PlacementConstraint::DistinctInstance);
    c.tasks(web, hosts[0], 3);
    c.tasks(web, hosts[1], 1);
    c.tasks(web, hosts[2], 1);
    let p = policies(&policy(
        "web",
        "web",
        "  placement:\n    spread: [{topologyKey: host, maxSkew: 1}]\n",
    ));
    let plan = plan(&p, &c.snapshot, 0);
    assert!(plan.actions.is_empty());
    assert_eq!(plan.statuses[0].state, State::Unsatisfiable);
    assert_eq!(
        plan.statuses[0].reason,
        "there is not enough free capacity to satisfy every spread constraint at once"
    );
}

#[test]
fn a_blocked_move_names_the_landing_that_would_not_help() {
    // Zone a is over-full; a replacement spread by zone alone may land on
    // c1, which already has a task: the host constraint (which holds now)
    // would break. The reason says so, not that the strategy ignores hosts.
    let mut c = Cluster::new();
    let mut zone_a = vec![];
    for h in ["a1", "a2", "a3"] {
        zone_a.push(c.host(h, "us-east-1a"));
    }
    let b1 = c.host("b1", "us-east-1b");
    let c1 = c.host("c1", "us-east-1c");
    c.host("c2", "us-east-1c");
    let web = c.service("web", spread_zone());
    for h in zone_a.iter().chain([&b1, &c1]) {
        c.tasks(web, *h, 1);
    }
    let p = policies(&policy(
        "web",
        "web",
        "  placement:\n    spread: [{topologyKey: zone, maxSkew: 1}, {topologyKey: host, maxSkew: 1}]\n",
    ));
    let plan = plan(&p, &c.snapshot, 0);
    assert!(plan.actions.is_empty());
    assert_eq!(plan.statuses[0].state, State::Unsatisfiable);
    assert!(
        plan.statuses[0].reason.starts_with("ECS (spread(attribute:ecs.availability-zone)) could place the replacement of a task from"),
        "{}",
        plan.statuses[0].reason
    );
}

#[test]
fn a_policy_that_matches_nothing_is_not_found_with_the_closest_name() {
    let c = three_zones([1, 1, 1], spread_zone());
    let typo = policies(&policy("web-az", "webb", AZ));
    let plan = plan(&typo, &c.snapshot, 0);
    assert!(plan.actions.is_empty());
    assert_eq!(plan.statuses.len(), 1, "{plan:#?}");
    let status = &plan.statuses[0];
    assert_eq!(
        (status.state, status.service.as_str()),
        (State::NotFound, "webb")
    );
    assert_eq!(
        status.reason,
        "no service `webb` in cluster `demo`; did you mean `web`?"
    );
    // A selector that matches no service says what it looked for.
    let selector = "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata: {name: by-tag}\nspec:\n  target: {cluster: demo, serviceSelector: {namePattern: 'api-*', tags: {tier: front}}}\n  placement: {azBalanced: true}\n";
    let plan = super::plan(&policies(selector), &c.snapshot, 0);
    assert_eq!(plan.statuses[0].state, State::NotFound);
    assert_eq!(
        plan.statuses[0].reason,
        "no service in cluster `demo` matches namePattern `api-*` and tags tier=front"
    );
    // A policy of another cluster is that cluster's to report, not this one's.
    let elsewhere = policy("web-az", "web", AZ).replace("cluster: demo", "cluster: prod");
    assert!(
        super::plan(&policies(&elsewhere), &c.snapshot, 0)
            .statuses
            .is_empty()
    );
    // A cluster that does not exist: each of its policies, none of the others'.
    let mut both = policies(&elsewhere);
    both.extend(typo);
    let absent = cluster_not_found(&both, "prod");
    assert_eq!(absent.statuses.len(), 1);
    assert_eq!(absent.statuses[0].state, State::NotFound);
    assert_eq!(
        absent.statuses[0].reason,
        "cluster `prod` not found: the policy matches nothing"
    );
}

#[test]
fn when_every_task_of_the_fullest_zone_is_protected_the_reason_names_the_zone() {
    let mut c = three_zones([3, 1, 0], spread_zone());
    // Two more tasks on a2: zone a has 5 on two hosts, all protected.
    c.tasks(0, 1, 2);
    for t in &mut c.snapshot.tasks {
        if t.instance.is_some_and(|i| i < 2) {
            t.protected = true;
        }
    }
    let plan = plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    assert!(plan.actions.is_empty());
    assert_eq!(plan.statuses[0].state, State::Unsatisfiable);
    let why = &plan.statuses[0].reason;
    assert!(
        why.starts_with(
            "all 5 tasks in zone us-east-1a (on a1, a2), where stops would start, are protected from scale-in; elsewhere: "
        ),
        "{why}"
    );
}

#[test]
fn a_host_port_taken_in_the_only_free_zone_is_named() {
    let mut c = Cluster::new();
    let a = c.host("a1", "us-east-1a");
    let b = c.host("b1", "us-east-1b");
    let taken = c.host("c1", "us-east-1c");
    // Another service's task holds port 8080 on c1: room for web's CPU
    // and memory, but not for its port.
    c.snapshot.instances[taken].ports_in_use = vec![8080];
    let web = c.service("web", spread_zone());
    c.snapshot.services[web].host_ports = vec![8080];
    c.tasks(web, a, 1);
    c.tasks(web, b, 1);
    let three = plan(&policies(&policy("web-az", "web", AZ)), &c.snapshot, 0);
    assert_eq!(
        three.statuses[0].state,
        State::Satisfied,
        "{:#?}",
        three.statuses
    );
    // A third task in zone a: c needs one, and its only host's port is taken.
    let mut c3 = c;
    c3.tasks(web, a, 1);
    let plan = plan(&policies(&policy("web-az", "web", AZ)), &c3.snapshot, 0);
    assert_eq!(plan.statuses[0].state, State::Unsatisfiable);
    assert_eq!(
        plan.statuses[0].reason,
        "no room in zone us-east-1c: it can hold 0 of the service's tasks (512 CPU units, 1024 MiB each; \
         host port 8080 on c1 is taken by another task), but spreading 3 tasks over 3 zone domains with maxSkew 1 needs at least 1 there"
    );
}

/// Hosts with a `role` attribute (zone, role), and an agent with
/// `distinctInstance` spread over zones, one task on each host named.
fn agents(hosts: &[(&str, &str, &str)], on: &[&str]) -> Cluster {
    let mut c = Cluster::new();
    for (id, zone, role) in hosts {
        let h = c.host(id, zone);
        c.snapshot.instances[h]
            .attributes
            .insert("role".into(), (*role).into());
    }
    let agent = c.service("agent", spread_zone());
    c.snapshot.services[agent]
        .constraints
        .push(crate::model::PlacementConstraint::DistinctInstance);
    for id in on {
        let h = c
            .snapshot
            .instances
            .iter()
            .position(|i| i.id == *id)
            .unwrap();
        c.tasks(agent, h, 1);
    }
    c.snapshot.services[agent].desired = on.len() as u32;
    c.snapshot.services[agent].running = on.len() as u32;
    c
}

const INGRESS_AGENT: &str =
    "  placement:\n    oneTaskPerHost: {hostSelector: {attributes: {role: ingress}}}\n";

#[test]
fn one_task_per_host_is_satisfied_only_when_every_eligible_host_runs_one() {
    // The count is right (3 ingress hosts, 3 tasks), but one task runs on
    // the batch host x1 and c1 has none: ECS, which knows no hostSelector,
    // put it there.
    let c = agents(
        &[
            ("a1", "us-east-1a", "ingress"),
            ("x1", "us-east-1a", "batch"),
            ("b1", "us-east-1b", "ingress"),
            ("c1", "us-east-1c", "ingress"),
        ],
        &["a1", "x1", "b1"],
    );
    let policies = policies(&policy("agent-per-host", "agent", INGRESS_AGENT));
    let plan = plan(&policies, &c.snapshot, 0);
    let status = &plan.statuses[0];
    assert_eq!(status.state, State::Converging, "{status:#?}");
    assert_eq!(
        status.reason,
        "desiredCount 3 = 3 eligible hosts; 1 eligible host without a task (c1); 1 move now"
    );
    assert_eq!(stops(&plan), [("agent-t2".to_owned(), "x1".to_owned())]);
    assert_eq!(
        plan.actions[0].reason,
        "x1 is not an eligible host, and c1 runs none: spread(attribute:ecs.availability-zone) places the replacement there"
    );
    assert_eq!(
        status.warnings,
        [
            "service `agent` has no placement constraint that keeps ECS to the hostSelector's hosts: ECS may place its tasks on 1 excluded host (x1); add memberOf(attribute:role == ingress) to the service"
        ]
    );
    // Covered: satisfied, and said so.
    let done = agents(
        &[
            ("a1", "us-east-1a", "ingress"),
            ("x1", "us-east-1a", "batch"),
            ("b1", "us-east-1b", "ingress"),
            ("c1", "us-east-1c", "ingress"),
        ],
        &["a1", "b1", "c1"],
    );
    let plan = super::plan(&policies, &done.snapshot, 0);
    assert_eq!(plan.statuses[0].state, State::Satisfied);
    assert_eq!(
        plan.statuses[0].reason,
        "desiredCount 3 = 3 eligible hosts, each running one task"
    );
    assert!(plan.actions.is_empty());
}

#[test]
fn a_misplaced_task_is_moved_only_when_ecs_would_cover_the_empty_host() {
    // The uncovered host a2 is in the same zone as x1: once x1's task
    // stops, ECS may as well start it on x1 again. stevedore says so and
    // stops nothing.
    let hosts = [
        ("a1", "us-east-1a", "ingress"),
        ("a2", "us-east-1a", "ingress"),
        ("x1", "us-east-1a", "batch"),
        ("b1", "us-east-1b", "ingress"),
    ];
    let c = agents(&hosts, &["a1", "x1", "b1"]);
    let policies = policies(&policy("agent-per-host", "agent", INGRESS_AGENT));
    let plan = plan(&policies, &c.snapshot, 0);
    assert!(plan.actions.is_empty());
    let status = &plan.statuses[0];
    assert_eq!(status.state, State::Unsatisfiable);
    assert!(
        status.reason.starts_with(
            "desiredCount 3 = 3 eligible hosts; 1 eligible host without a task (a2); not moved: ECS (spread(attribute:ecs.availability-zone)) could place the replacement of the task on x1 on a2 or x1"
        ),
        "{}",
        status.reason
    );
    // With memberOf(attribute:role == ingress) on the service, ECS keeps to
    // the ingress hosts: the move is made, and there is no warning.
    let mut constrained = c;
    constrained.snapshot.services[0]
        .constraints
        .push(crate::model::PlacementConstraint::MemberOf(
            crate::model::MemberOf::parse("attribute:role == ingress").unwrap(),
        ));
    let plan = super::plan(&policies, &constrained.snapshot, 0);
    assert_eq!(stops(&plan), [("agent-t2".to_owned(), "x1".to_owned())]);
    assert!(plan.statuses[0].warnings.is_empty());
}
