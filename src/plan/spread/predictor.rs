//! Where ECS puts a replacement, as far as the planner needs it: instance
//! by instance, or unit by unit when that is exact.

use super::*;

/// Where ECS may put a replacement: an instance, or (for the zone-level
/// model) a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dest {
    Instance(usize),
    Unit(usize),
}

/// ECS's placement of a replacement, as far as the planner needs it.
#[derive(Debug, Clone)]
pub(super) enum Predictor<'a> {
    /// Instance by instance: any strategy, constraints and ports.
    Hosts(PlacementView<'a>),
    /// Unit by unit, when that is exact: the strategy first spreads over
    /// the units' topology and nothing else restricts placement, so ECS
    /// picks a unit with room and the fewest of the service's tasks, and
    /// which instance in it does not change the optimum.
    Units(UnitView),
}

#[derive(Debug, Clone)]
pub(super) struct UnitView {
    /// Free task slots per unit (a task consumes one; a stop frees one).
    pub(super) slots: Vec<u64>,
    /// The service's running and pending tasks per unit, as ECS's spread
    /// strategy counts them.
    pub(super) spread: Vec<u64>,
    /// The strategy ranks instances after the first spread (so a tie
    /// between units is broken across them, not within one).
    pub(super) ranks_after: bool,
    /// Shared with the problem: cleared on such a tie.
    pub(super) exact: Rc<Cell<bool>>,
}

impl Predictor<'_> {
    /// Takes a task off a host (given by its instance and unit).
    pub(super) fn remove(&mut self, instance: usize, unit: usize) {
        match self {
            Predictor::Hosts(view) => view.stop(instance),
            Predictor::Units(units) => {
                units.spread[unit] -= 1;
                units.slots[unit] += 1;
            }
        }
    }

    pub(super) fn place(&mut self, dest: Dest) {
        match (self, dest) {
            (Predictor::Hosts(view), Dest::Instance(i)) => view.place(i),
            (Predictor::Units(units), Dest::Unit(u)) => {
                units.spread[u] += 1;
                units.slots[u] -= 1;
            }
            _ => unreachable!("a destination comes from the same predictor"),
        }
    }

    pub(super) fn destinations(&self) -> Vec<Dest> {
        match self {
            Predictor::Hosts(view) => view.candidates().into_iter().map(Dest::Instance).collect(),
            Predictor::Units(units) => {
                let open = || (0..units.slots.len()).filter(|u| units.slots[*u] > 0);
                let Some(fewest) = open().map(|u| units.spread[u]).min() else {
                    return vec![];
                };
                let tied: Vec<Dest> = open()
                    .filter(|u| units.spread[*u] == fewest)
                    .map(Dest::Unit)
                    .collect();
                if tied.len() > 1 && units.ranks_after {
                    units.exact.set(false);
                }
                tied
            }
        }
    }
}
