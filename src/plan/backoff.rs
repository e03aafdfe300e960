//! Anti-thrash: a service whose moves did not bring it as near its spread
//! as planned (ECS put a replacement elsewhere than its strategy and the
//! model said, so the skew did not fall) backs off, exponentially, with
//! the reason, instead of stopping tasks in a loop.
//!
//! After stevedore's stops of a service, the optimum it should need next
//! is known (the optimum then, less the stops). Once the service is back
//! at steady state, the optimum is read again: no worse than expected, the
//! service goes on; worse, it waits 1, 2, 4, ... minutes (at most an hour)
//! before its next stop. Anything else that raises the optimum in between
//! (a host leaving, a scale-out) counts too: a wait is the safe mistake.

use super::budget::span;
use super::{ServiceStatus, State};
use crate::model::Millis;

/// The first wait after moves that missed.
pub const FIRST_WAIT: Millis = 60_000;
/// The longest wait.
pub const MAX_WAIT: Millis = 3_600_000;

/// What is remembered of one service's moves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MoveCheck {
    /// The optimum expected once the last stops are replaced.
    pub expected: Option<u32>,
    /// Checks in a row that found the optimum worse than expected.
    pub misses: u32,
    /// No stop before this time.
    pub until: Millis,
    /// The last miss: (expected, found).
    pub last_miss: Option<(u32, u32)>,
    /// Stops made since the service last needed none.
    pub done: u32,
}

impl MoveCheck {
    /// Notes stops made: `remaining` moves were needed, `stops` made.
    pub fn moved(&mut self, remaining: u32, stops: u32) {
        self.expected = Some(remaining.saturating_sub(stops));
        self.done += stops;
    }

    /// Checks the last moves once the service is steady again (not
    /// paused), and says why it must wait, if it must.
    pub fn check(&mut self, status: &ServiceStatus, now: Millis) -> Option<String> {
        if let Some(expected) = self.expected
            && status.state != State::Paused
        {
            self.expected = None;
            if status.moves_remaining > expected {
                self.misses += 1;
                let wait = FIRST_WAIT
                    .saturating_mul(1 << (self.misses - 1).min(16))
                    .min(MAX_WAIT);
                self.until = now + wait;
                self.last_miss = Some((expected, status.moves_remaining));
            } else {
                self.misses = 0;
                self.last_miss = None;
            }
        }
        let (expected, found) = self.last_miss?;
        (now < self.until).then(|| {
            format!(
                "backing off: after stevedore's last moves {} {} needed where {expected} {} expected (ECS placed a replacement otherwise than predicted, {} in a row); next try in {}",
                crate::words::count(found, "move"),
                if found == 1 { "was" } else { "were" },
                if expected == 1 { "was" } else { "were" },
                self.misses,
                span(self.until - now)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: State, remaining: u32) -> ServiceStatus {
        ServiceStatus {
            moves_remaining: remaining,
            ..ServiceStatus::new("p", "s", state, "")
        }
    }

    #[test]
    fn moves_that_miss_make_the_service_wait_twice_as_long_each_time() {
        let mut c = MoveCheck::default();
        let mut now = 0;
        let mut waits = vec![];
        for _ in 0..8 {
            c.moved(3, 1);
            // In flight: nothing is judged yet.
            assert_eq!(c.check(&status(State::Paused, 3), now), None);
            // Replaced, and still 3 needed where 2 were expected.
            let why = c.check(&status(State::Converging, 3), now).unwrap();
            assert!(why.starts_with("backing off: after stevedore's last moves 3 moves were needed where 2 were expected"), "{why}");
            waits.push(c.until - now);
            now = c.until;
            assert_eq!(c.check(&status(State::Converging, 3), now), None);
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60].map(|m| m * 60_000));
        // Waiting up to `until`, not past it.
        assert!(c.check(&status(State::Converging, 3), now - 1).is_some());
    }

    #[test]
    fn a_move_that_lands_as_planned_clears_the_misses() {
        let mut c = MoveCheck::default();
        c.moved(3, 1);
        assert!(c.check(&status(State::Converging, 3), 0).is_some());
        c.moved(3, 1);
        assert_eq!(c.check(&status(State::Converging, 2), 60_000), None);
        assert_eq!((c.misses, c.last_miss), (0, None));
        // Satisfied counts as landed.
        c.moved(1, 1);
        assert_eq!(c.check(&status(State::Satisfied, 0), 70_000), None);
    }
}
