//! Client-side pacing: a token bucket per ECS action family, sized to ECS's
//! published rates, so the controller spreads its calls out instead of
//! being throttled. Pure (time is passed in), so the simulator drives it in
//! virtual time and the AWS backend with the wall clock.

use crate::model::Millis;

/// A token bucket, refilled continuously.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    at: Millis,
}

/// The writes ECS takes at once before its rate (5 a second) applies.
pub const WRITE_BURST: usize = 50;

impl TokenBucket {
    /// Full at the start: `capacity` calls at once, then `per_second`.
    pub fn new(capacity: f64, per_second: f64) -> TokenBucket {
        TokenBucket {
            capacity,
            per_second,
            tokens: capacity,
            at: 0,
        }
    }

    /// ECS's read actions (List*, Describe*): about 100 burst, 20 per second.
    pub fn ecs_reads() -> TokenBucket {
        TokenBucket::new(100.0, 20.0)
    }

    /// ECS's writes (UpdateService, StopTask): about 50 burst, 5 per second.
    pub fn ecs_writes() -> TokenBucket {
        TokenBucket::new(WRITE_BURST as f64, 5.0)
    }

    /// Takes `n` tokens at `now` and returns how long the caller must wait
    /// before its call: calls are delayed, never refused.
    pub fn take(&mut self, n: f64, now: Millis) -> Millis {
        let elapsed = now.saturating_sub(self.at) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.at = self.at.max(now);
        self.tokens -= n;
        if self.tokens >= 0.0 {
            0
        } else {
            (-self.tokens / self.per_second * 1000.0).ceil() as Millis
        }
    }
}

/// When `n` calls of one operation, started at `start`, have all answered:
/// at most `in_flight` at once; each takes a token from `bucket` when its
/// turn comes, waits for it, then takes `latency`. This is how the AWS
/// backend's calls spend time, so the simulator charges the same.
pub fn answered(
    bucket: &mut TokenBucket,
    start: Millis,
    n: u64,
    in_flight: usize,
    latency: Millis,
) -> Millis {
    // When each slot is next free.
    let mut free = vec![start; in_flight.max(1)];
    let mut end = start;
    for _ in 0..n {
        let (slot, at) = free
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|(_, at)| *at)
            .unwrap_or((0, start));
        let done = at + bucket.take(1.0, at) + latency;
        free[slot] = done;
        end = end.max(done);
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_answer_after_their_token_and_their_latency() {
        // A full bucket: four at once answer together, the fifth after them.
        let mut b = TokenBucket::new(100.0, 20.0);
        assert_eq!(answered(&mut b, 1_000, 4, 4, 30), 1_030);
        assert_eq!(answered(&mut b, 1_000, 5, 4, 30), 1_060);
        // One at a time: latencies add up.
        let mut b = TokenBucket::new(100.0, 20.0);
        assert_eq!(answered(&mut b, 0, 3, 1, 30), 90);
        // An empty bucket: the rate decides, latency hides behind it.
        let mut b = TokenBucket::new(1.0, 20.0);
        b.take(1.0, 0);
        assert_eq!(answered(&mut b, 0, 20, 1, 30), 20 * 50 + 30);
        assert_eq!(answered(&mut TokenBucket::new(1.0, 1.0), 7, 0, 4, 30), 7);
    }

    #[test]
    fn a_burst_is_free_then_calls_are_spaced_at_the_rate() {
        let mut b = TokenBucket::new(3.0, 2.0);
        assert_eq!([b.take(1.0, 0), b.take(1.0, 0), b.take(1.0, 0)], [0, 0, 0]);
        // Empty: the next token comes in 500 ms, the one after in 1 s.
        assert_eq!(b.take(1.0, 0), 500);
        assert_eq!(b.take(1.0, 0), 1_000);
    }

    #[test]
    fn the_bucket_refills_with_time_up_to_its_capacity() {
        let mut b = TokenBucket::new(2.0, 1.0);
        b.take(2.0, 0);
        assert_eq!(b.take(1.0, 1_000), 0);
        // Ten idle seconds refill to the capacity of 2, not 10.
        assert_eq!(
            [
                b.take(1.0, 11_000),
                b.take(1.0, 11_000),
                b.take(1.0, 11_000)
            ],
            [0, 0, 1_000]
        );
    }

    #[test]
    fn refill_is_continuous_at_the_rate() {
        let mut b = TokenBucket::new(4.0, 4.0);
        assert_eq!(b.take(4.0, 0), 0);
        // 250 ms at 4 per second is exactly one token...
        assert_eq!(b.take(1.0, 250), 0);
        // ...and the next one is 250 ms away, then 500 ms for two more.
        assert_eq!(b.take(1.0, 250), 250);
        assert_eq!(b.take(1.0, 250), 500);
        // A wait is rounded up to the millisecond, never down.
        let mut b = TokenBucket::new(1.0, 3.0);
        b.take(1.0, 0);
        assert_eq!(b.take(1.0, 0), 334);
    }

    #[test]
    fn a_clock_that_steps_back_refills_nothing_twice() {
        let mut b = TokenBucket::new(1.0, 1.0);
        assert_eq!(b.take(1.0, 5_000), 0);
        // An earlier time (two callers racing) refills nothing...
        assert_eq!(b.take(1.0, 4_000), 1_000);
        // ...and does not move the bucket's clock back: at 5 s again,
        // nothing has refilled since.
        assert_eq!(b.take(1.0, 5_000), 2_000);
    }

    #[test]
    fn ecs_rates_are_the_published_ones() {
        let mut reads = TokenBucket::ecs_reads();
        let mut writes = TokenBucket::ecs_writes();
        assert_eq!(reads.take(100.0, 0), 0);
        assert_eq!(reads.take(1.0, 0), 50, "20 per second");
        assert_eq!(writes.take(50.0, 0), 0);
        assert_eq!(writes.take(1.0, 0), 200, "5 per second");
    }
}
