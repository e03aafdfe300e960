//! A cluster's DisruptionBudget, spent while planning: how many placement
//! stops this pass may make across every service, in which zone, and
//! whether a window is open. Scaling and one-task-per-host counts are never
//! held: capacity must follow load.
//!
//! What stevedore stopped is remembered across passes in a [`Ledger`]
//! (kept by the controller, like the scaling history): a stop is *in
//! flight* until its service is back at its desired count with the stopped
//! task gone, and counts toward the rate budget for `moves.per` after it
//! was made. The ledger lives in memory; a controller that starts, or takes
//! a cluster over from another replica, first [`Ledger::recover`]s the
//! stops ECS still lists (stopped tasks whose reason is stevedore's, about
//! an hour of them), so that a restart does not refill the budget. Stops
//! older than ECS keeps are lost with a restart: a rate budget over more
//! than an hour is exact only while one process runs.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Index, ServiceStatus};
use crate::model::{Millis, TaskStatus};
use crate::spec::Budget;

/// One stop stevedore made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub task: String,
    pub service: String,
    pub zone: String,
    /// The planner's clock when it was made.
    pub at: Millis,
    /// Replaced: its service was seen back at its desired count without it.
    pub settled: bool,
    /// The service's tasks when the stop was made (hashes of their ids,
    /// sorted): a task not among them was started after it.
    pub known: Vec<u64>,
}

/// A task id's hash, for [`Stop::known`] (8 bytes a task, not its ARN).
pub fn id_hash(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// The stops stevedore made in one cluster, newest last.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub stops: Vec<Stop>,
}

/// How long settled stops are kept when no rate budget needs them longer.
const KEPT: Duration = Duration::from_secs(3600);

impl Ledger {
    /// Notes a stop that was made, knowing none of the service's tasks
    /// (then every task of the service counts as started after it).
    pub fn stopped(&mut self, task: &str, service: &str, zone: &str, at: Millis) {
        self.stopped_among(task, service, zone, at, vec![]);
    }

    /// Notes a stop that was made while the service had the tasks `known`
    /// (their [`id_hash`]es).
    pub fn stopped_among(
        &mut self,
        task: &str,
        service: &str,
        zone: &str,
        at: Millis,
        mut known: Vec<u64>,
    ) {
        known.sort_unstable();
        self.stops.push(Stop {
            task: task.to_owned(),
            service: service.to_owned(),
            zone: zone.to_owned(),
            at,
            settled: false,
            known,
        });
    }

    /// Adds stops made before this ledger was kept (by an earlier process
    /// or another replica), not already in it; returns how many were new.
    /// They count toward the rate budget from when they were made, and are
    /// in flight until [`Ledger::settle`] finds their service back.
    pub fn recover(&mut self, stops: impl IntoIterator<Item = Stop>) -> usize {
        let before = self.stops.len();
        for stop in stops {
            if !self.stops.iter().any(|s| s.task == stop.task) {
                self.stops.push(stop);
            }
        }
        let recovered = self.stops.len() - before;
        // Newest last, as the ledger is kept.
        self.stops.sort_by_key(|s| s.at);
        recovered
    }

    /// Settles the stops whose service is back at its desired count, with
    /// nothing pending and the stopped task no longer running; forgets
    /// settled stops older than the rate budget's period (or an hour).
    pub fn settle(&mut self, index: &Index<'_>, budget: Option<&Budget>, now: Millis) {
        let snapshot = index.snapshot;
        for stop in self.stops.iter_mut().filter(|s| !s.settled) {
            let Some(&s) = index.service_by_name.get(stop.service.as_str()) else {
                // The service is gone: nothing left to replace.
                stop.settled = true;
                continue;
            };
            let service = &snapshot.services[s];
            let still_running = index.tasks_of[s].iter().any(|t| {
                let t = &snapshot.tasks[*t];
                t.id == stop.task && t.status == TaskStatus::Running
            });
            let listed_running = index.running(s).count() as u32;
            let back =
                service.running.min(listed_running) >= service.desired && service.pending == 0;
            stop.settled = back && !still_running;
        }
        let kept = budget
            .and_then(|b| b.moves)
            .map_or(KEPT, |m| m.per.max(KEPT))
            .as_millis() as Millis;
        self.stops
            .retain(|s| !s.settled || now.saturating_sub(s.at) < kept);
    }

    /// The stops of each service, by name (one pass over the ledger, so
    /// that a plan over thousands of services reads it once).
    pub fn by_service(&self) -> HashMap<&str, Vec<&Stop>> {
        let mut map: HashMap<&str, Vec<&Stop>> = HashMap::new();
        for stop in &self.stops {
            map.entry(stop.service.as_str()).or_default().push(stop);
        }
        map
    }

    /// Stops not yet replaced.
    pub fn in_flight(&self) -> impl Iterator<Item = &Stop> {
        self.stops.iter().filter(|s| !s.settled)
    }

    /// Stops made in the sliding period `(now - per, now]`, oldest first.
    fn within(&self, per: Duration, now: Millis) -> impl Iterator<Item = &Stop> {
        let per = per.as_millis() as Millis;
        self.stops.iter().filter(move |s| s.at + per > now)
    }
}

/// Where a cluster's budget stands at a pass, for `/status` and the page:
/// what is spent against each limit, and what holds every stop, if anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetUse {
    /// The budget's name.
    pub budget: String,
    /// Stops stevedore made that are not yet replaced.
    pub in_flight: u32,
    /// `maxUnavailable`, resolved against the cluster's running tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<u32>,
    /// Stops in the last `moves.per`, with a move rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moves_in_period: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moves_max: Option<u32>,
    /// `moves.per`, as written (`1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per: Option<String>,
    /// Outside every window of a budget that has windows.
    pub window_closed: bool,
    /// Why no stop at all may be made now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

impl BudgetUse {
    /// One line: each limit as spent, then what holds every stop (or that
    /// stops are allowed): `0 of 1 unavailable, 2 of 2 moves in the last
    /// 1h; holding stops: ...`.
    pub fn summary(&self) -> String {
        let mut parts = vec![];
        if let Some(max) = self.max_unavailable {
            parts.push(format!("{} of {max} unavailable", self.in_flight));
        }
        if let (Some(used), Some(max), Some(per)) =
            (self.moves_in_period, self.moves_max, &self.per)
        {
            parts.push(format!("{used} of {max} moves in the last {per}"));
        }
        if self.window_closed {
            parts.push("outside its windows".into());
        }
        let limits = if parts.is_empty() {
            String::new()
        } else {
            format!("{}; ", parts.join(", "))
        };
        match &self.held {
            Some(why) => format!("{limits}holding stops: {why}"),
            None => format!("{limits}stops allowed"),
        }
    }

    /// The budget as `allowance` found it, with the ledger it was found from.
    pub fn of(
        budget: &Budget,
        allowance: &Allowance,
        ledger: &Ledger,
        running_tasks: u32,
        now: Millis,
        wall: Millis,
    ) -> BudgetUse {
        BudgetUse {
            budget: budget.name.clone(),
            in_flight: ledger.in_flight().count() as u32,
            max_unavailable: budget.max_unavailable.map(|m| m.resolve(running_tasks, 1)),
            moves_in_period: budget
                .moves
                .map(|rate| ledger.within(rate.per, now).count() as u32),
            moves_max: budget.moves.map(|rate| rate.max),
            per: budget
                .moves
                .map(|rate| span(rate.per.as_millis() as Millis)),
            window_closed: !budget.window_open(wall),
            held: allowance.held.clone(),
        }
    }
}

/// What the budget leaves for this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowance {
    /// The budget's name.
    pub budget: String,
    /// Stops left, across the cluster; `None`: no count limit.
    pub stops: Option<u32>,
    /// With `oneZoneAtATime`: the zone new stops must be in, once known.
    pub zone: Option<String>,
    pub one_zone: bool,
    /// Why no stop at all may be made now.
    pub held: Option<String>,
    /// When the rate budget frees its next stop, if it holds them all.
    pub frees_at: Option<Millis>,
}

/// What `budget` leaves at `now` (`wall`: the same instant on the wall
/// clock, for windows), given the ledger and the cluster's running tasks.
pub fn allowance(
    budget: &Budget,
    ledger: &Ledger,
    running_tasks: u32,
    now: Millis,
    wall: Millis,
) -> Allowance {
    let mut allowance = Allowance {
        budget: budget.name.clone(),
        stops: None,
        zone: None,
        one_zone: budget.one_zone_at_a_time,
        held: None,
        frees_at: None,
    };
    let in_flight = ledger.in_flight().count() as u32;
    if !budget.window_open(wall) {
        allowance.held = Some(match budget.next_window(wall) {
            Some((window, at)) => format!(
                "waiting for window {} (opens in {})",
                window.describe_from(at),
                span(at.saturating_sub(wall))
            ),
            None => "waiting for a window, and none opens again".into(),
        });
        return allowance;
    }
    if let Some(max) = budget.max_unavailable {
        let max = max.resolve(running_tasks, 1);
        allowance.stops = Some(max.saturating_sub(in_flight));
        if in_flight >= max {
            allowance.held = Some(format!(
                "{} stopped and not yet replaced (maxUnavailable {max})",
                crate::words::count(in_flight, "task")
            ));
            return allowance;
        }
    }
    if let Some(rate) = budget.moves {
        let recent: Vec<&Stop> = ledger.within(rate.per, now).collect();
        let left = rate.max.saturating_sub(recent.len() as u32);
        allowance.stops = Some(allowance.stops.map_or(left, |s| s.min(left)));
        if left == 0 {
            // The oldest stop in the period leaves it first.
            let frees_at =
                recent.iter().map(|s| s.at).min().unwrap_or(now) + rate.per.as_millis() as Millis;
            allowance.frees_at = Some(frees_at);
            allowance.held = Some(format!(
                "{} in the last {} (moves.max {}); the next in {}",
                crate::words::count(recent.len() as u64, "move"),
                span(rate.per.as_millis() as Millis),
                rate.max,
                span(frees_at.saturating_sub(now))
            ));
            return allowance;
        }
    }
    if budget.one_zone_at_a_time {
        let zones: BTreeSet<&str> = ledger.in_flight().map(|s| s.zone.as_str()).collect();
        match zones.len() {
            0 => {}
            1 => allowance.zone = zones.first().map(|z| (*z).to_owned()),
            _ => {
                allowance.held = Some(format!(
                    "stops in flight in {} zones ({}); oneZoneAtATime waits until one remains",
                    zones.len(),
                    zones.into_iter().collect::<Vec<_>>().join(", ")
                ));
                return allowance;
            }
        }
    }
    allowance
}

impl Allowance {
    /// What one service may do: the stops left and the zone.
    pub fn limit(&self) -> Limit {
        Limit {
            stops: if self.held.is_some() {
                Some(0)
            } else {
                self.stops
            },
            zone: self.zone.clone(),
            settling: vec![],
            moves_done: 0,
        }
    }

    /// Spends the stops a service was given (in `zones`).
    pub fn spend(&mut self, stops: u32, zones: &BTreeSet<String>) {
        if let Some(left) = &mut self.stops {
            *left = left.saturating_sub(stops);
        }
        if self.one_zone && self.zone.is_none() {
            self.zone = zones.first().cloned();
        }
    }

    /// Why a service gets fewer stops than it could make, for its status.
    pub fn why_held(&self, limit: &Limit) -> String {
        let why = match (&self.held, limit.stops, &limit.zone) {
            (Some(why), _, _) => why.clone(),
            (None, Some(0), _) => {
                "the cluster's stops for this pass are spent on services further from their spread"
                    .into()
            }
            (None, _, Some(zone)) if self.one_zone => {
                format!("oneZoneAtATime: stops are in {zone} until they are replaced")
            }
            (None, Some(n), _) => format!(
                "{n} more {} in the cluster this pass",
                if n == 1 { "stop" } else { "stops" }
            ),
            (None, None, _) => "no limit".into(),
        };
        format!("DisruptionBudget {}: {why}", self.budget)
    }
}

/// What this pass leaves one service beyond its own `maxUnavailable`: the
/// cluster budget's stops and zone, and the tasks still settling after a
/// move.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limit {
    /// The most stops; `None`: only the service's own `maxUnavailable`.
    pub stops: Option<u32>,
    /// Stops only of tasks in this zone.
    pub zone: Option<String>,
    /// Tasks (snapshot indices) a stevedore move started less than the
    /// policy's `settleTime` ago: not stopped again (no ping-pong).
    pub settling: Vec<usize>,
    /// Stops stevedore already made toward this spread in earlier passes:
    /// this pass's moves are numbered after them ("move 3 of 4").
    pub moves_done: u32,
}

impl Limit {
    pub const NONE: Limit = Limit {
        stops: None,
        zone: None,
        settling: vec![],
        moves_done: 0,
    };
}

/// The tasks of service `s` that appeared after one of stevedore's stops
/// of that service and started less than `settle` ago: most likely the
/// replacements it caused (a scale-out's tasks in the same span are left
/// alone as well).
/// `stops`: the ledger's stops of that service ([`Ledger::by_service`]).
pub fn settling(
    index: &Index<'_>,
    s: usize,
    stops: &[&Stop],
    settle: Duration,
    now: Millis,
) -> Vec<usize> {
    let snapshot = index.snapshot;
    if stops.is_empty() {
        return vec![];
    }
    let settle = settle.as_millis() as Millis;
    index.tasks_of[s]
        .iter()
        .copied()
        .filter(|t| {
            let task = &snapshot.tasks[*t];
            let recent = now < task.started_at.saturating_add(settle);
            recent
                && stops
                    .iter()
                    .any(|stop| stop.known.binary_search(&id_hash(&task.id)).is_err())
        })
        .collect()
}

/// How far a service is from its spread, for the order budgets are spent
/// in: the most over its skew first.
pub fn excess(status: &ServiceStatus) -> u32 {
    status
        .constraints
        .iter()
        .map(|c| c.skew.saturating_sub(c.max_skew))
        .max()
        .unwrap_or(0)
}

/// `3h12m`, `12m`, `45s`: a wait, to the minute when over an hour.
pub fn span(ms: Millis) -> String {
    let s = ms.div_ceil(1000);
    let (h, m) = (s / 3600, (s % 3600) / 60);
    match (h, m, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::budget::{MoveRate, Window};
    use crate::spec::policy::TaskCount;

    const NEW_YEAR: Millis = 1_767_225_600_000;

    fn budget() -> Budget {
        Budget::unlimited("prod-nights", "prod")
    }

    fn ledger(stops: &[(&str, Millis, bool)]) -> Ledger {
        Ledger {
            stops: stops
                .iter()
                .enumerate()
                .map(|(i, (zone, at, settled))| Stop {
                    task: format!("t{i}"),
                    service: format!("s{i}"),
                    zone: (*zone).into(),
                    at: *at,
                    settled: *settled,
                    known: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn max_unavailable_counts_the_stops_in_flight_across_the_cluster() {
        let mut b = budget();
        b.max_unavailable = Some(TaskCount::Tasks(2));
        let l = ledger(&[("a", 0, true), ("a", 1, false)]);
        let a = allowance(&b, &l, 40, 10, NEW_YEAR);
        assert_eq!((a.stops, a.held.as_deref()), (Some(1), None));
        let l = ledger(&[("a", 0, false), ("b", 1, false)]);
        let a = allowance(&b, &l, 40, 10, NEW_YEAR);
        assert_eq!(a.limit().stops, Some(0));
        assert_eq!(
            a.held.as_deref(),
            Some("2 tasks stopped and not yet replaced (maxUnavailable 2)")
        );
        // A percentage of the cluster's running tasks, rounded up.
        b.max_unavailable = Some(TaskCount::Percent(5));
        let a = allowance(&b, &Ledger::default(), 41, 10, NEW_YEAR);
        assert_eq!(a.stops, Some(3));
    }

    #[test]
    fn the_rate_budget_counts_stops_in_the_sliding_period_settled_or_not() {
        let mut b = budget();
        b.moves = Some(MoveRate {
            max: 2,
            per: Duration::from_secs(3600),
        });
        let hour = 3_600_000;
        let l = ledger(&[("a", 1_000, true), ("a", 2_000, true)]);
        let a = allowance(&b, &l, 40, 1_000 + hour - 1, NEW_YEAR);
        assert_eq!(
            a.held.as_deref(),
            Some("2 moves in the last 1h (moves.max 2); the next in 1s")
        );
        // The first stop has left the period.
        let a = allowance(&b, &l, 40, 1_000 + hour, NEW_YEAR);
        assert_eq!((a.stops, a.held), (Some(1), None));
    }

    #[test]
    fn a_budgets_use_reads_as_one_line() {
        let mut b = budget();
        b.max_unavailable = Some(TaskCount::Tasks(2));
        b.moves = Some(MoveRate {
            max: 2,
            per: Duration::from_secs(3600),
        });
        let l = ledger(&[("a", 1_000, true), ("a", 2_000, false)]);
        let a = allowance(&b, &l, 40, 3_000, NEW_YEAR);
        let u = BudgetUse::of(&b, &a, &l, 40, 3_000, NEW_YEAR);
        assert_eq!(
            (
                u.in_flight,
                u.max_unavailable,
                u.moves_in_period,
                u.moves_max
            ),
            (1, Some(2), Some(2), Some(2))
        );
        assert_eq!(
            u.summary(),
            "1 of 2 unavailable, 2 of 2 moves in the last 1h; holding stops: 2 moves in the last 1h (moves.max 2); the next in 59m58s"
        );
        let empty = Ledger::default();
        let a = allowance(&b, &empty, 40, 3_000, NEW_YEAR);
        let free = BudgetUse::of(&b, &a, &empty, 40, 3_000, NEW_YEAR);
        assert_eq!(
            free.summary(),
            "0 of 2 unavailable, 0 of 2 moves in the last 1h; stops allowed"
        );
        let nothing = BudgetUse {
            budget: "b".into(),
            ..BudgetUse::default()
        };
        assert_eq!(nothing.summary(), "stops allowed");
    }

    #[test]
    fn recovered_stops_spend_the_rate_budget_once_and_keep_the_ledger_in_order() {
        let mut b = budget();
        b.moves = Some(MoveRate {
            max: 2,
            per: Duration::from_secs(3600),
        });
        // This process stopped t0 at 5 s; ECS lists t0 and two older stops.
        let mut l = ledger(&[("a", 5_000, false)]);
        let mut listed = ledger(&[("a", 5_000, false), ("b", 1_000, true), ("c", 3_000, false)]);
        listed.stops[1].settled = false;
        assert_eq!(l.recover(listed.stops.clone()), 2);
        let order: Vec<(&str, Millis)> = l.stops.iter().map(|s| (s.task.as_str(), s.at)).collect();
        assert_eq!(order, [("t1", 1_000), ("t2", 3_000), ("t0", 5_000)]);
        // Recovered twice (a second takeover): nothing counted twice.
        assert_eq!(l.recover(listed.stops), 0);
        assert_eq!(l.stops.len(), 3);
        let a = allowance(&b, &l, 40, 10_000, NEW_YEAR);
        assert_eq!(a.stops, Some(0), "{a:?}");
        assert!(
            a.held
                .as_deref()
                .unwrap()
                .starts_with("3 moves in the last 1h"),
            "{a:?}"
        );
    }

    #[test]
    fn one_zone_at_a_time_follows_the_zone_in_flight() {
        let mut b = budget();
        b.one_zone_at_a_time = true;
        let a = allowance(&b, &ledger(&[("a", 0, true)]), 40, 10, NEW_YEAR);
        assert_eq!((a.zone, a.held), (None, None));
        let a = allowance(&b, &ledger(&[("b", 0, false)]), 40, 10, NEW_YEAR);
        assert_eq!(a.zone.as_deref(), Some("b"));
        let l = ledger(&[("b", 0, false), ("a", 0, false)]);
        let a = allowance(&b, &l, 40, 10, NEW_YEAR);
        assert_eq!(a.limit().stops, Some(0));
        // The first service's stops choose the zone for the rest.
        let mut a = allowance(&b, &Ledger::default(), 40, 10, NEW_YEAR);
        a.spend(1, &["c".to_owned()].into());
        assert_eq!(a.limit().zone.as_deref(), Some("c"));
    }

    #[test]
    fn a_closed_window_holds_everything_and_says_when_it_opens() {
        let mut b = budget();
        b.max_unavailable = Some(TaskCount::Tasks(2));
        b.windows =
            vec![Window::new("0 2 * * *", Duration::from_secs(7200), "Europe/Berlin").unwrap()];
        // 2025-12-31T21:48:00Z is 22:48 in Berlin: 3h12m before 02:00.
        let wall = NEW_YEAR - 2 * 3_600_000 - 12 * 60_000;
        let a = allowance(&b, &Ledger::default(), 40, 0, wall);
        assert_eq!(
            a.held.as_deref(),
            Some("waiting for window 02:00-04:00 Europe/Berlin (opens in 3h12m)")
        );
        assert_eq!(a.limit().stops, Some(0));
        let a = allowance(&b, &Ledger::default(), 40, 0, NEW_YEAR + 3_600_000);
        assert_eq!((a.stops, a.held), (Some(2), None));
    }

    #[test]
    fn spans_read_as_an_operator_writes_them() {
        assert_eq!(span(45_000), "45s");
        assert_eq!(span(720_000), "12m");
        assert_eq!(span(725_000), "12m5s");
        assert_eq!(span(3_600_000), "1h");
        assert_eq!(span(11_520_000), "3h12m");
        assert_eq!(span(1), "1s");
    }

    /// Plans on small clusters built by hand, with a budget.
    mod planned {
        use super::*;
        use crate::model::TaskStatus;
        use crate::model::{PlacementField, PlacementStrategy};
        use crate::plan::tests::{Cluster, policies, policy};
        use crate::plan::{ActionKind, Index, Memory, Plan, State, plan_with};

        /// Zones a, b, c with two hosts each; each service has the given
        /// tasks per zone, on the zone's first host.
        fn cluster(services: &[(&str, [u32; 3])]) -> Cluster {
            let mut c = Cluster::new();
            let hosts: Vec<usize> = ["a", "b", "c"]
                .iter()
                .flat_map(|z| [1, 2].map(|i| (format!("{z}{i}"), format!("us-east-1{z}"))))
                .map(|(id, zone)| c.host(&id, &zone))
                .collect();
            for (name, counts) in services {
                let s = c.service(
                    name,
                    vec![PlacementStrategy::Spread(PlacementField::zone())],
                );
                for (z, n) in counts.iter().enumerate() {
                    c.tasks(s, hosts[z * 2], *n);
                }
            }
            c
        }

        fn balanced(mode: &str) -> Vec<crate::spec::Policy> {
            policies(&format!(
                "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata: {{name: balanced}}\nspec:\n  target: {{cluster: demo, serviceSelector: {{namePattern: \"s*\"}}}}\n  placement: {{azBalanced: true}}\n  disruption: {{maxUnavailable: 2}}\n{mode}"
            ))
        }

        fn demo_budget() -> Budget {
            let mut b = budget();
            b.cluster.name = "demo".into();
            b
        }

        fn stops_of(plan: &Plan) -> Vec<(String, String)> {
            plan.actions
                .iter()
                .filter_map(|a| match &a.kind {
                    ActionKind::StopTask { zone, .. } => Some((a.service.clone(), zone.clone())),
                    _ => None,
                })
                .collect()
        }

        fn reason<'a>(plan: &'a Plan, service: &str) -> (State, &'a str) {
            let s = plan.statuses.iter().find(|s| s.service == service).unwrap();
            (s.state, s.reason.as_str())
        }

        #[test]
        fn the_stops_go_to_the_services_furthest_from_their_spread_first() {
            // Skews 5, 3, 2 and 2: s2 needs the most, then s1, then s3 and
            // s4 (by name).
            let c = cluster(&[
                ("s1", [3, 1, 0]),
                ("s2", [5, 1, 0]),
                ("s3", [2, 1, 0]),
                ("s4", [2, 1, 0]),
            ]);
            let p = balanced("");
            let without = plan_with(&p, None, &c.snapshot, 0, &mut Memory::default());
            assert_eq!(stops_of(&without).len(), 2 + 1 + 1 + 1);
            let mut b = demo_budget();
            b.max_unavailable = Some(TaskCount::Tasks(3));
            let plan = plan_with(&p, Some(&b), &c.snapshot, 0, &mut Memory::default());
            let services: Vec<String> = stops_of(&plan).into_iter().map(|(s, _)| s).collect();
            assert_eq!(services, ["s2", "s2", "s1"]);
            assert_eq!(
                reason(&plan, "s3"),
                (
                    State::Converging,
                    "1 move needed, 0 now: DisruptionBudget prod-nights: the cluster's stops for this pass are spent on services further from their spread"
                )
            );
            // With room for four, s3 comes before s4.
            b.max_unavailable = Some(TaskCount::Tasks(4));
            let plan = plan_with(&p, Some(&b), &c.snapshot, 0, &mut Memory::default());
            let services: Vec<String> = stops_of(&plan).into_iter().map(|(s, _)| s).collect();
            assert_eq!(services, ["s2", "s2", "s1", "s3"]);
        }

        #[test]
        fn a_service_given_fewer_stops_is_planned_again_within_them() {
            let c = cluster(&[("s1", [5, 1, 0])]);
            let mut b = demo_budget();
            b.moves = Some(MoveRate {
                max: 3,
                per: Duration::from_secs(3600),
            });
            let mut memory = Memory::default();
            memory.ledger.stopped("gone", "s9", "us-east-1a", 0);
            memory.ledger.stopped("gone", "s9", "us-east-1a", 0);
            let plan = plan_with(&balanced(""), Some(&b), &c.snapshot, 1_000, &mut memory);
            assert_eq!(
                stops_of(&plan),
                [("s1".to_owned(), "us-east-1a".to_owned())]
            );
            let (state, why) = reason(&plan, "s1");
            assert_eq!(state, State::Converging);
            assert_eq!(
                why,
                "3 moves needed, 1 now (maxUnavailable 2); DisruptionBudget prod-nights: 1 more stop in the cluster this pass"
            );
            // The stops of a service that is gone are settled, but count
            // toward the rate for the period.
            assert_eq!(memory.ledger.in_flight().count(), 0);
            assert_eq!(memory.ledger.stops.len(), 2);
        }

        #[test]
        fn a_held_service_says_which_limit_holds_it_and_until_when() {
            let c = cluster(&[("s1", [3, 1, 0]), ("s2", [1, 1, 1])]);
            let p = balanced("");
            // In flight: a stop of s2 whose task still runs.
            let mut b = demo_budget();
            b.max_unavailable = Some(TaskCount::Tasks(1));
            let mut memory = Memory::default();
            memory.ledger.stopped("s2-t5", "s2", "us-east-1b", 0);
            let plan = plan_with(&p, Some(&b), &c.snapshot, 1_000, &mut memory);
            assert!(stops_of(&plan).is_empty());
            assert_eq!(
                reason(&plan, "s1"),
                (
                    State::Converging,
                    "1 move needed, 0 now: DisruptionBudget prod-nights: 1 task stopped and not yet replaced (maxUnavailable 1)"
                )
            );
            // A replacement's arrival, not a moment, frees it: an event says so.
            assert_eq!(plan.retry_at, None);
            // A window: 22:48 in Berlin, 3h12m before it opens.
            let mut b = demo_budget();
            b.windows =
                vec![Window::new("0 2 * * *", Duration::from_secs(7200), "Europe/Berlin").unwrap()];
            let mut memory = Memory {
                wall_offset: NEW_YEAR - 2 * 3_600_000 - 12 * 60_000,
                ..Memory::default()
            };
            let plan = plan_with(&p, Some(&b), &c.snapshot, 0, &mut memory);
            assert!(stops_of(&plan).is_empty());
            assert_eq!(
                reason(&plan, "s1").1,
                "1 move needed, 0 now: DisruptionBudget prod-nights: waiting for window 02:00-04:00 Europe/Berlin (opens in 3h12m)"
            );
            // Inside it, the stop is made.
            memory.wall_offset = NEW_YEAR + 3_600_000;
            let plan = plan_with(&p, Some(&b), &c.snapshot, 0, &mut memory);
            assert_eq!(stops_of(&plan).len(), 1);
            // The rate: two stops in the last hour, at most two.
            let mut b = demo_budget();
            b.moves = Some(MoveRate {
                max: 2,
                per: Duration::from_secs(3600),
            });
            let mut memory = Memory::default();
            memory.ledger.stopped("x", "s9", "us-east-1a", 0);
            memory.ledger.stopped("y", "s9", "us-east-1a", 48 * 60_000);
            let plan = plan_with(&p, Some(&b), &c.snapshot, 50 * 60_000, &mut memory);
            assert_eq!(
                reason(&plan, "s1").1,
                "1 move needed, 0 now: DisruptionBudget prod-nights: 2 moves in the last 1h (moves.max 2); the next in 10m"
            );
            // The loop wakes when the first leaves the hour.
            assert_eq!(plan.retry_at, Some(60 * 60_000));
            // Not held: nothing to wake for.
            let plan = plan_with(&p, Some(&b), &c.snapshot, 60 * 60_000, &mut memory);
            assert_eq!(stops_of(&plan).len(), 1);
            assert_eq!(plan.retry_at, None);
        }

        #[test]
        fn one_zone_at_a_time_plans_the_second_service_in_the_first_ones_zone() {
            // s1 is over-full in zone a, s2 in zone b; s3 has tasks to
            // move from zones a and b both.
            let c = cluster(&[("s1", [3, 1, 0]), ("s2", [1, 3, 0]), ("s3", [3, 3, 0])]);
            let p = balanced("");
            let without = plan_with(&p, None, &c.snapshot, 0, &mut Memory::default());
            let zones: BTreeSet<String> = stops_of(&without).into_iter().map(|(_, z)| z).collect();
            assert_eq!(zones.len(), 2);
            let mut b = demo_budget();
            b.one_zone_at_a_time = true;
            let plan = plan_with(&p, Some(&b), &c.snapshot, 0, &mut Memory::default());
            // s1 and s3 are as far from their spread (skew 3); s1 goes
            // first by name, and its stop in zone a sets the zone. s3, with
            // stops in zones a and b, is planned again in zone a alone; s2,
            // over-full in zone b only, waits.
            let stops = stops_of(&plan);
            assert!(stops.iter().all(|(_, z)| z == "us-east-1a"), "{stops:?}");
            // A second stop of s3 in zone a would not be a step of an
            // optimal plan ((1, 3, 2) is no nearer than (2, 3, 1)).
            assert_eq!(
                stops.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
                ["s1", "s3"]
            );
            assert_eq!(
                reason(&plan, "s2").1,
                "1 move needed, 0 now: DisruptionBudget prod-nights: oneZoneAtATime: stops are in us-east-1a until they are replaced"
            );
        }

        fn stopped_tasks(plan: &Plan) -> Vec<String> {
            plan.actions
                .iter()
                .filter_map(|a| match &a.kind {
                    ActionKind::StopTask { task, .. } => Some(task.clone()),
                    _ => None,
                })
                .collect()
        }

        #[test]
        fn a_task_a_move_started_is_left_to_settle_before_it_moves_again() {
            // s1-t1..t3 in zone a (t3 the youngest), s1-t4 in zone b.
            let c = cluster(&[("s1", [3, 1, 0])]);
            let p = policies(&policy("p", "s1", "  placement: {azBalanced: true}\n"));
            let plan = plan_with(&p, None, &c.snapshot, 10_000, &mut Memory::default());
            assert_eq!(stopped_tasks(&plan), ["s1-t3"]);
            // t3 came after a stop of s1 (the stop knew t1, t2 and t4).
            let mut memory = Memory::default();
            let known = ["s1-t1", "s1-t2", "s1-t4"].map(id_hash).to_vec();
            memory
                .ledger
                .stopped_among("s1-t0", "s1", "us-east-1a", 0, known);
            let plan = plan_with(&p, None, &c.snapshot, 10_000, &mut memory);
            assert_eq!(stopped_tasks(&plan), ["s1-t2"]);
            // Ten minutes after it started (at 3 s), it may move again.
            let plan = plan_with(&p, None, &c.snapshot, 603_000, &mut memory);
            assert_eq!(stopped_tasks(&plan), ["s1-t3"]);
            // When every task that could move is settling, the service
            // waits, and says why.
            let mut memory = Memory::default();
            memory
                .ledger
                .stopped_among("s1-t0", "s1", "us-east-1a", 0, vec![id_hash("s1-t4")]);
            let plan = plan_with(&p, None, &c.snapshot, 10_000, &mut memory);
            assert!(stopped_tasks(&plan).is_empty());
            let (state, why) = reason(&plan, "s1");
            assert_eq!(state, State::Converging);
            assert!(
                why.starts_with("1 move needed, 0 now: 3 of its tasks were started by stevedore's moves less than 10m ago and are left to settle (settleTime)"),
                "{why}"
            );
        }

        #[test]
        fn a_closed_window_holds_placement_but_never_scaling() {
            let c = cluster(&[("s1", [3, 1, 0])]);
            let p = policies(&policy(
                "p",
                "s1",
                "  placement: {azBalanced: true}\n  scaling:\n    minTasks: 1\n    maxTasks: 10\n    metric: {cloudWatch: {namespace: AWS/ECS, name: CPUUtilization}}\n    scaleOutAbove: 70\n    scaleInBelow: 30\n    scaleOutAfter: 1\n",
            ));
            let mut b = demo_budget();
            b.max_unavailable = Some(TaskCount::Tasks(1));
            b.windows = vec![Window::new("0 2 * * *", Duration::from_secs(3600), "UTC").unwrap()];
            // Midnight: the window is closed.
            let mut memory = Memory {
                wall_offset: NEW_YEAR,
                ..Memory::default()
            };
            memory
                .readings
                .insert(("p".into(), "s1".into()), Some(90.0));
            let plan = plan_with(&p, Some(&b), &c.snapshot, 0, &mut memory);
            assert_eq!(
                plan.actions.iter().map(|a| &a.kind).collect::<Vec<_>>(),
                [&ActionKind::SetDesiredCount { from: 4, to: 5 }]
            );
            // With the count settled, the stop waits for the window.
            memory
                .readings
                .insert(("p".into(), "s1".into()), Some(50.0));
            let plan = plan_with(&p, Some(&b), &c.snapshot, 120_000, &mut memory);
            assert!(plan.actions.is_empty(), "{:?}", plan.actions);
            assert!(
                reason(&plan, "s1")
                    .1
                    .contains("waiting for window 02:00-03:00 UTC")
            );
        }

        #[test]
        fn a_stop_is_in_flight_until_its_service_runs_its_count_again_without_it() {
            // s1: t1, t2, t3 on zone a's first host, t4 in zone b.
            let mut c = cluster(&[("s1", [3, 1, 0])]);
            let in_flight = |c: &Cluster, ledger: &mut Ledger, now| {
                ledger.settle(&Index::new(&c.snapshot), None, now);
                ledger.in_flight().count()
            };
            let mut ledger = Ledger::default();
            ledger.stopped("s1-t3", "s1", "us-east-1a", 0);
            // The stopped task still runs.
            assert_eq!(in_flight(&c, &mut ledger, 1_000), 1);
            // Gone, but the service runs 3 of 4.
            c.snapshot.tasks[2].status = TaskStatus::Stopping;
            c.snapshot.services[0].running = 3;
            assert_eq!(in_flight(&c, &mut ledger, 2_000), 1);
            // The replacement is pending.
            c.snapshot.services[0].running = 4;
            c.snapshot.services[0].pending = 1;
            assert_eq!(in_flight(&c, &mut ledger, 3_000), 1);
            // ECS counts 4 running, the task list only 3.
            c.snapshot.services[0].pending = 0;
            assert_eq!(in_flight(&c, &mut ledger, 4_000), 1);
            // Replaced: 4 running, the stopped one not among them.
            let h = c.snapshot.tasks[3].instance.unwrap();
            c.tasks(0, h, 1);
            c.snapshot.services[0].desired = 4;
            c.snapshot.services[0].running = 4;
            assert_eq!(in_flight(&c, &mut ledger, 5_000), 0);
            // Kept for the rate for an hour after it was made, then forgotten.
            assert_eq!(ledger.stops.len(), 1);
            in_flight(&c, &mut ledger, 3_600_000 - 1);
            assert_eq!(ledger.stops.len(), 1);
            in_flight(&c, &mut ledger, 3_600_000);
            assert!(ledger.stops.is_empty());
            // An unsettled stop is never forgotten; a longer rate period
            // keeps settled ones longer.
            ledger.stopped("s1-t1", "s1", "us-east-1a", 0);
            in_flight(&c, &mut ledger, 10 * 3_600_000);
            assert_eq!(ledger.stops.len(), 1);
            let mut b = demo_budget();
            b.moves = Some(MoveRate {
                max: 5,
                per: Duration::from_secs(2 * 3600),
            });
            let mut ledger = Ledger::default();
            ledger.stopped("gone", "s1", "us-east-1a", 0);
            ledger.settle(&Index::new(&c.snapshot), Some(&b), 3_600_000);
            assert_eq!(ledger.stops.len(), 1);
            ledger.settle(&Index::new(&c.snapshot), Some(&b), 7_200_000);
            assert!(ledger.stops.is_empty());
        }

        #[test]
        fn without_one_zone_at_a_time_spending_sets_no_zone() {
            let mut a = allowance(&demo_budget(), &Ledger::default(), 40, 0, NEW_YEAR);
            a.spend(
                2,
                &["us-east-1a".to_owned(), "us-east-1b".to_owned()].into(),
            );
            assert_eq!(a.limit().zone, None);
        }

        #[test]
        fn dry_run_policies_spend_a_copy_of_the_budget() {
            let c = cluster(&[("s1", [5, 1, 0]), ("t1", [3, 1, 0])]);
            let mut p = balanced("  mode: DryRun\n");
            p.extend(policies(&policy(
                "t",
                "t1",
                "  placement: {azBalanced: true}\n",
            )));
            let mut b = demo_budget();
            b.max_unavailable = Some(TaskCount::Tasks(1));
            let plan = plan_with(&p, Some(&b), &c.snapshot, 0, &mut Memory::default());
            // s1 (DryRun, the most skewed) shows its one stop; t1 still gets
            // the one stop the acting policies may make.
            let shown: Vec<(String, bool)> = plan
                .actions
                .iter()
                .map(|a| (a.service.clone(), a.dry_run))
                .collect();
            assert_eq!(shown, [("s1".to_owned(), true), ("t1".to_owned(), false)]);
        }
    }
}
