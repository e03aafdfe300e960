//! When the controller looks: the one schedule of the run loop, on any
//! clock. Times are milliseconds: the wall clock's since the loop started,
//! or the simulator's virtual time. Pure: the loop asks when to wake and
//! what is due, and tells the schedule what happened (an event came, a pass
//! ended and how). Triggers only decide *when* a pass runs; what it does
//! is the reconcile's business.
//!
//! - A full read at the start, then every `resync` after one succeeds.
//! - Events make a pass once debounced ([`Debounce`]).
//! - Scaling policies are evaluated at least every `scaling_every`: any
//!   pass evaluates them, so the tick counts from the last pass.
//! - A pass that fails makes the next one a full read, after a backoff that
//!   doubles from [`BACKOFF_MIN`] to [`BACKOFF_MAX`] while it keeps failing.

use crate::model::Millis;

/// The first wait after a failed pass.
pub const BACKOFF_MIN: Millis = 1_000;
/// The longest wait between failed passes.
pub const BACKOFF_MAX: Millis = 60_000;

/// When events make a pass: they are collected until [`Debounce::QUIET`]
/// after the last one, or [`Debounce::MAX`] after the first, so ten hosts
/// joining cause one reconcile. Times are milliseconds on any clock: the
/// simulator's virtual one, or the run loop's since it started.
#[derive(Debug, Clone, Copy, Default)]
pub struct Debounce {
    /// The first and the last event since the last pass.
    pending: Option<(Millis, Millis)>,
}

impl Debounce {
    pub const QUIET: Millis = 2_000;
    pub const MAX: Millis = 10_000;

    /// An event arrived.
    pub fn note(&mut self, at: Millis) {
        self.pending = Some(match self.pending {
            None => (at, at),
            Some((first, _)) => (first, at),
        });
    }

    /// When the pass for the events noted is due, if any were.
    pub fn due_at(&self) -> Option<Millis> {
        self.pending
            .map(|(first, last)| (last + Debounce::QUIET).min(first + Debounce::MAX))
    }

    pub fn is_due(&self, now: Millis) -> bool {
        self.due_at().is_some_and(|at| now >= at)
    }

    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// A pass was made.
    pub fn clear(&mut self) {
        self.pending = None;
    }
}

/// The kind of pass that is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// A resync, or the retry after a failure: read everything.
    Full,
    /// Events have been debounced: read what they touched.
    Events,
    /// Scaling policies' metrics are due.
    Scaling,
}

/// The run loop's timers.
#[derive(Debug, Clone)]
pub struct Schedule {
    resync: Millis,
    scaling_every: Option<Millis>,
    next_full: Millis,
    next_scaling: Option<Millis>,
    backoff: Millis,
    events: Debounce,
}

impl Schedule {
    /// A full read due at `now`, then every `resync`; scaling policies
    /// evaluated every `scaling_every` (none: no policy scales).
    pub fn new(now: Millis, resync: Millis, scaling_every: Option<Millis>) -> Schedule {
        Schedule {
            resync,
            scaling_every,
            next_full: now,
            next_scaling: scaling_every.map(|every| now.saturating_add(every)),
            backoff: 0,
            events: Debounce::default(),
        }
    }

    /// An event that may change the plan arrived at `now`.
    pub fn event(&mut self, now: Millis) {
        self.events.note(now);
    }

    /// Whether events are waiting for their pass.
    pub fn events_pending(&self) -> bool {
        self.events.is_pending()
    }

    /// When the next pass is due. While a failed read backs off, only its
    /// retry: it reads everything, so events and the scaling tick wait for
    /// it rather than call an API that is failing.
    pub fn next_wake(&self) -> Millis {
        if self.backoff > 0 {
            return self.next_full;
        }
        [self.events.due_at(), self.next_scaling]
            .into_iter()
            .flatten()
            .fold(self.next_full, Millis::min)
    }

    /// The pass due at `now`, if any; a full read comes before the others.
    pub fn due(&self, now: Millis) -> Option<Due> {
        if now >= self.next_full {
            Some(Due::Full)
        } else if self.backoff > 0 {
            None
        } else if self.events.is_due(now) {
            Some(Due::Events)
        } else if self.next_scaling.is_some_and(|at| now >= at) {
            Some(Due::Scaling)
        } else {
            None
        }
    }

    /// A pass ended at `now`: it read everything (`full`) or not, and it
    /// read and acted (`ok`) or failed.
    pub fn passed(&mut self, now: Millis, full: bool, ok: bool) {
        self.events.clear();
        self.next_scaling = self.scaling_every.map(|every| now.saturating_add(every));
        if ok {
            self.backoff = 0;
            if full {
                self.next_full = now.saturating_add(self.resync);
            }
        } else {
            self.backoff = (self.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
            self.next_full = now.saturating_add(self.backoff);
        }
    }

    /// How long the schedule waits after the last failed pass (0: the
    /// last pass succeeded).
    pub fn backoff(&self) -> Millis {
        self.backoff
    }

    /// The policies changed: scaling is evaluated at this new period.
    pub fn set_scaling_every(&mut self, now: Millis, every: Option<Millis>) {
        if every != self.scaling_every {
            self.scaling_every = every;
            self.next_scaling = every.map(|e| now.saturating_add(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_make_a_pass_after_a_quiet_spell_or_at_most_the_maximum_after_the_first() {
        let mut debounce = Debounce::default();
        assert_eq!(debounce.due_at(), None);
        debounce.note(1_000);
        debounce.note(2_500);
        assert_eq!(debounce.due_at(), Some(4_500), "2 s after the last");
        assert!(!debounce.is_due(4_499) && debounce.is_due(4_500));
        // An event every second never leaves 2 s of quiet: the pass comes
        // 10 s after the first.
        debounce.clear();
        for at in (0..20_000).step_by(1_000) {
            debounce.note(at);
        }
        assert_eq!(debounce.due_at(), Some(10_000));
        debounce.clear();
        assert!(!debounce.is_pending());
    }

    /// Drives a schedule through `steps` from time 0: at each pass due,
    /// `fails(n)` says whether the n-th pass fails. Returns when each pass
    /// started and what was due, up to `until`.
    fn passes(
        mut s: Schedule,
        events: &[Millis],
        fails: impl Fn(usize) -> bool,
        until: Millis,
    ) -> Vec<(Millis, Due)> {
        let mut out = vec![];
        let mut events = events.iter().peekable();
        let mut now = 0;
        while now <= until {
            while events.peek().is_some_and(|at| **at <= now) {
                s.event(*events.next().unwrap());
            }
            if let Some(due) = s.due(now) {
                let ok = !fails(out.len());
                out.push((now, due));
                s.passed(now, due == Due::Full, ok);
            }
            // The next thing to happen: a pass due, or an event.
            let next_event = events.peek().map_or(Millis::MAX, |at| **at);
            now = s.next_wake().min(next_event).max(now + 1);
        }
        out
    }

    #[test]
    fn a_read_that_keeps_failing_is_retried_backing_off_to_a_minute() {
        let s = Schedule::new(0, 300_000, None);
        let starts: Vec<Millis> = passes(s, &[], |_| true, 400_000)
            .into_iter()
            .map(|(at, due)| {
                assert_eq!(due, Due::Full, "every retry reads everything");
                at / 1000
            })
            .collect();
        assert_eq!(starts, [0, 1, 3, 7, 15, 31, 63, 123, 183, 243, 303, 363]);
    }

    #[test]
    fn a_success_resets_the_backoff_and_resyncs_on_the_period() {
        let s = Schedule::new(0, 300_000, None);
        // The first two passes fail, then all succeed.
        let got = passes(s, &[], |n| n < 2, 1_000_000);
        let starts: Vec<Millis> = got.iter().map(|(at, _)| at / 1000).collect();
        assert_eq!(starts, [0, 1, 3, 303, 603, 903]);
    }

    #[test]
    fn events_wait_for_quiet_and_a_resync_comes_first() {
        let s = Schedule::new(0, 60_000, None);
        // Two events close together, one alone, and one just before the resync.
        let got = passes(s, &[5_000, 6_000, 20_000, 59_000], |_| false, 61_000);
        assert_eq!(
            got,
            [
                (0, Due::Full),
                (8_000, Due::Events),
                (22_000, Due::Events),
                // Due at 61 s, but the resync at 60 s reads everything first.
                (60_000, Due::Full),
            ]
        );
    }

    #[test]
    fn scaling_is_evaluated_every_period_after_the_last_pass() {
        let s = Schedule::new(0, 300_000, Some(60_000));
        let got = passes(s, &[90_000], |_| false, 200_000);
        assert_eq!(
            got,
            [
                (0, Due::Full),
                (60_000, Due::Scaling),
                // An event's pass evaluates scaling too: the tick counts from it.
                (92_000, Due::Events),
                (152_000, Due::Scaling),
            ]
        );
    }

    #[test]
    fn a_failed_event_pass_is_retried_as_a_full_read() {
        let s = Schedule::new(0, 300_000, None);
        let got = passes(s, &[10_000], |n| n == 1, 20_000);
        assert_eq!(
            got,
            [(0, Due::Full), (12_000, Due::Events), (13_000, Due::Full)]
        );
    }

    #[test]
    fn events_and_scaling_wait_for_the_retry_of_a_failed_read() {
        let s = Schedule::new(0, 300_000, Some(10_000));
        // Every read fails; events at 20 s and 40 s: the retries stay at
        // 1, 3, 7, 15, 31, 63 s, and each reads everything.
        let got = passes(s, &[20_000, 40_000], |_| true, 70_000);
        assert_eq!(
            got,
            [0, 1_000, 3_000, 7_000, 15_000, 31_000, 63_000].map(|at| (at, Due::Full))
        );
    }

    #[test]
    fn a_new_scaling_period_applies_at_once() {
        let mut s = Schedule::new(0, 300_000, None);
        assert_eq!(s.next_wake(), 0);
        s.passed(0, true, true);
        assert_eq!(s.next_wake(), 300_000);
        s.set_scaling_every(1_000, Some(30_000));
        assert_eq!(s.next_wake(), 31_000);
        s.set_scaling_every(2_000, None);
        assert_eq!(s.next_wake(), 300_000);
    }
}
