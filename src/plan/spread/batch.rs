//! The batch check: stops made together, replacements placed in turn,
//! every choice ECS could make followed.

use super::*;

/// How many placement outcomes a batch check may explore before it gives
/// up (and the batch shrinks).
pub(super) const MAX_OUTCOMES: usize = 4_096;

/// Checks the batch as ECS runs it: every stop first, then each replacement
/// placed in turn. Wherever ECS could choose between units, every choice
/// is followed, and every path must end `expected` moves from optimal.
pub(super) fn batch_holds(
    problem: &Problem<'_>,
    original: &Predictor<'_>,
    original_count: &[u32],
    moves: &[Move],
    expected: u32,
) -> bool {
    let mut predictor = original.clone();
    let mut count = original_count.to_vec();
    for mv in moves {
        let unit = problem.unit_of[mv.from] as usize;
        predictor.remove(problem.hosts[mv.from], unit);
        count[unit] -= 1;
    }
    let mut explored = 0;
    every_outcome_holds(
        problem,
        &mut predictor,
        &mut count,
        moves.len(),
        expected,
        &mut explored,
    )
}

pub(super) fn every_outcome_holds(
    problem: &Problem<'_>,
    predictor: &mut Predictor<'_>,
    count: &mut Vec<u32>,
    left: usize,
    expected: u32,
    explored: &mut usize,
) -> bool {
    *explored += 1;
    if *explored > MAX_OUTCOMES {
        return false;
    }
    if left == 0 {
        let layout = Layout {
            count: count.clone(),
            capacity: problem.layout.capacity.clone(),
        };
        return optimum::min_moves(&layout, &problem.partitions) == Ok(expected);
    }
    let destinations = predictor.destinations();
    if destinations.is_empty() {
        return false;
    }
    // One representative per unit.
    let mut seen = std::collections::HashSet::new();
    for d in destinations {
        let Some(u) = problem.dest_unit(d) else {
            return false;
        };
        if !seen.insert(u) {
            continue;
        }
        let mut next = predictor.clone();
        next.place(d);
        count[u] += 1;
        let holds = every_outcome_holds(problem, &mut next, count, left - 1, expected, explored);
        count[u] -= 1;
        if !holds {
            return false;
        }
    }
    true
}
