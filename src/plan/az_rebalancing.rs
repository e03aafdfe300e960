//! ECS's own Availability Zone rebalancing (`availabilityZoneRebalancing`,
//! on by default for new services since 2025), and what stevedore leaves
//! to it.
//!
//! | the service | zones | hosts, attributes |
//! | --- | --- | --- |
//! | rebalancing ENABLED and able to run | ECS | stevedore, never worsening the zones |
//! | ENABLED but unable to run (why is said) | stevedore | stevedore |
//! | DISABLED | stevedore | stevedore |
//!
//! ECS can run it (its documentation, and the SDKs' validation) only with
//! `maximumPercent` above 100 (it starts a task before stopping one), a
//! first placement strategy, if any, that spreads over zones, and no
//! `memberOf` on the zone attribute. It counts tasks per zone only, with
//! no `maxSkew`: we take a service as balanced by ECS when its zones
//! differ by at most one task, as its SERVICE_REBALANCING_COMPLETED
//! messages show them.
//!
//! Delegated, the zone constraint makes no stop: while it is beyond its
//! `maxSkew` the service is Converging with that said, and stevedore's
//! moves for the other constraints are planned with the zone skew held at
//! what it is (or ECS's one task), so that no move undoes ECS's work. While
//! ECS is rebalancing (its last rebalancing service event is STARTED),
//! stevedore makes no move on the service.

use crate::model::{PlacementConstraint, PlacementField, PlacementStrategy, Service};
use crate::spec::Policy;
use crate::spec::policy::TopologyKey;

/// The most tasks ECS leaves between two zones of a balanced service.
pub const ECS_BALANCED_SKEW: u32 = 1;

/// Who balances the service's zones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zones {
    /// stevedore: the feature is off, or the policy has no zone constraint.
    Stevedore,
    /// stevedore, as the feature is on but cannot run: why.
    StevedoreBecause(String),
    /// ECS's AZ rebalancing.
    Ecs,
}

/// Why ECS's AZ rebalancing cannot run on the service (empty: it can).
pub fn blockers(service: &Service) -> Vec<String> {
    let mut why = vec![];
    if service.maximum_percent <= 100 {
        why.push(format!(
            "maximumPercent is {} (ECS starts a task before stopping one, so it needs more than 100)",
            service.maximum_percent
        ));
    }
    if let Some(first) = service.strategy.first()
        && *first != PlacementStrategy::Spread(PlacementField::zone())
    {
        why.push(format!(
            "the first placement strategy is {first}, not a spread over zones"
        ));
    }
    let zone = match PlacementField::zone() {
        PlacementField::Attribute(name) => name,
        PlacementField::Instance => unreachable!("the zone is an attribute"),
    };
    if service
        .constraints
        .iter()
        .any(|c| matches!(c, PlacementConstraint::MemberOf(m) if m.attribute == zone))
    {
        why.push("a memberOf constraint restricts the zones".into());
    }
    why
}

/// Who balances the zones of `service` under `policy`.
pub fn zones(policy: &Policy, service: &Service) -> Zones {
    let has_zone_constraint = policy
        .placement
        .spread
        .iter()
        .any(|c| c.topology == TopologyKey::Zone);
    if !service.az_rebalancing || !has_zone_constraint {
        return Zones::Stevedore;
    }
    let why = blockers(service);
    if why.is_empty() {
        Zones::Ecs
    } else {
        Zones::StevedoreBecause(format!(
            "ECS's AZ rebalancing is ENABLED but cannot run ({}): stevedore balances the zones itself",
            why.join("; ")
        ))
    }
}

/// The policy stevedore plans with when ECS balances the zones: the zone
/// constraint's `maxSkew` set to the skew there is now, or ECS's one task
/// if less (ECS would undo more, whatever the policy allows), so that no
/// move is made for the zones and none makes them worse than ECS left
/// them.
pub fn with_zones_held(policy: &Policy, zone_skew: u32) -> Policy {
    let mut held = policy.clone();
    for c in &mut held.placement.spread {
        if c.topology == TopologyKey::Zone {
            c.max_skew = zone_skew.max(ECS_BALANCED_SKEW);
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BinpackField, MemberOf};

    fn service(strategy: Vec<PlacementStrategy>, maximum_percent: u32) -> Service {
        let mut c = crate::plan::tests::Cluster::new();
        let s = c.service("web", strategy);
        let mut service = c.snapshot.services[s].clone();
        service.az_rebalancing = true;
        service.maximum_percent = maximum_percent;
        service
    }

    #[test]
    fn ecs_can_rebalance_only_what_its_documentation_allows() {
        let zone_first = vec![
            PlacementStrategy::Spread(PlacementField::zone()),
            PlacementStrategy::Binpack(BinpackField::Memory),
        ];
        assert!(blockers(&service(zone_first.clone(), 200)).is_empty());
        assert!(blockers(&service(vec![], 200)).is_empty(), "no strategy");
        let why = blockers(&service(zone_first.clone(), 100));
        assert_eq!(why.len(), 1);
        assert!(why[0].starts_with("maximumPercent is 100"), "{why:?}");
        let why = blockers(&service(
            vec![PlacementStrategy::Binpack(BinpackField::Memory)],
            200,
        ));
        assert_eq!(
            why,
            ["the first placement strategy is binpack(memory), not a spread over zones"]
        );
        let mut restricted = service(zone_first, 200);
        restricted
            .constraints
            .push(PlacementConstraint::MemberOf(MemberOf {
                attribute: "ecs.availability-zone".into(),
                values: vec!["us-east-1a".into(), "us-east-1b".into()],
                negated: false,
            }));
        assert_eq!(
            blockers(&restricted),
            ["a memberOf constraint restricts the zones"]
        );
    }

    #[test]
    fn the_zones_are_held_as_ecs_left_them_and_nothing_else_changes() {
        let policies = crate::plan::tests::policies(&crate::plan::tests::policy(
            "web",
            "web",
            "  placement:\n    spread: [{topologyKey: zone, maxSkew: 3}, {topologyKey: host, maxSkew: 2}]\n",
        ));
        let skews =
            |p: &Policy| -> Vec<u32> { p.placement.spread.iter().map(|c| c.max_skew).collect() };
        // Balanced by ECS: held at its one task, not the policy's 3.
        assert_eq!(skews(&with_zones_held(&policies[0], 0)), [1, 2]);
        // Not yet: held where they are, no worse.
        assert_eq!(skews(&with_zones_held(&policies[0], 4)), [4, 2]);
    }
}
