//! Scale thresholds: the desired count a metric asks for, with steps,
//! bounds, cooldowns and a scale-in stabilization window, as in the
//! Kubernetes HPA `behavior` field.
//!
//! Pure: the metric's latest value comes in, and what the controller
//! remembers between passes ([`History`]) is passed in and updated. Rules,
//! in order:
//!
//! 1. A desired count outside `minTasks..=maxTasks` is brought back inside
//!    at once, with or without a metric.
//! 2. No data point is not zero: with no data, the count is held (and
//!    holding is what the window remembers for that time).
//! 3. Above `scaleOutAbove`, the recommendation is the count plus
//!    `scaleOutStep`; below `scaleInBelow`, minus `scaleInStep` (percentages
//!    of the count, rounded up, at least one task); within the bounds.
//!    Every recommendation is remembered for the stabilization window.
//! 4. Out: once the metric has been above `scaleOutAbove` for
//!    `scaleOutAfter` metric periods in a row, unless the last scale-out is
//!    within `scaleOutCooldown`.
//! 5. In: once it has been below `scaleInBelow` for `scaleInAfter` periods
//!    in a row, only to the highest recommendation of the stabilization
//!    window (so one low reading among high ones changes nothing), and not
//!    within `scaleInCooldown` of the last scaling either way.
//! 6. A schedule's window raises `minTasks` while it is open; once the data
//!    has been missing for `onMissingMetric.after`, the fallback applies
//!    (hold, or a fixed count).

use std::collections::VecDeque;
use std::fmt::Write;

use crate::model::Millis;
use crate::spec::policy::{Metric, Scaling};

/// What the controller remembers of one scaled service between passes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// When the service was last scaled out by stevedore.
    pub last_scale_out: Option<Millis>,
    /// When it was last scaled either way (bounds included).
    pub last_scaled: Option<Millis>,
    /// Recommendations within the stabilization window, oldest first.
    pub recommendations: VecDeque<(Millis, u32)>,
    /// Where each recent metric period's reading stood, by period number
    /// (time / period), oldest first.
    pub periods: VecDeque<(u64, Side)>,
    /// When the metric last had data, or when its absence was first seen.
    pub last_data: Option<Millis>,
}

/// Where a reading stands against the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Above,
    Within,
    Below,
    NoData,
}

/// Periods kept: the longest `scaleOutAfter`/`scaleInAfter` (60).
const PERIODS_KEPT: usize = 60;

impl History {
    /// Remembers a recommendation, and forgets those older than the window.
    fn remember(&mut self, now: Millis, recommendation: u32, window: Millis) {
        self.recommendations.push_back((now, recommendation));
        while self
            .recommendations
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > window)
        {
            self.recommendations.pop_front();
        }
    }

    /// Notes where this period's reading stands (the latest reading of a
    /// period is the one that counts).
    fn note_period(&mut self, period: u64, side: Side) {
        match self.periods.back_mut() {
            Some((p, s)) if *p == period => *s = side,
            _ => self.periods.push_back((period, side)),
        }
        while self.periods.len() > PERIODS_KEPT {
            self.periods.pop_front();
        }
    }

    /// How many periods in a row, up to the current one, stood on `side`.
    /// A period with no pass at all (a pass that ran long) does not break
    /// the run; two in a row do.
    fn run_of(&self, side: Side) -> u32 {
        let mut run = 0;
        let mut next: Option<u64> = None;
        for (period, s) in self.periods.iter().rev() {
            if *s != side || next.is_some_and(|n| n.saturating_sub(*period) > 2) {
                break;
            }
            run += 1;
            next = Some(*period);
        }
        run
    }

    /// Notes a scaling that was carried out.
    pub fn scaled(&mut self, from: u32, to: u32, at: Millis) {
        if to > from {
            self.last_scale_out = Some(at);
        }
        self.last_scaled = Some(at);
    }
}

/// What the metric says now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Change the desired count.
    Scale { to: u32 },
    /// Keep it.
    Hold,
}

/// The decision for one service, and why, in one line, where the planner's
/// clock is the wall clock (no offset).
pub fn decide(
    scaling: &Scaling,
    current: u32,
    reading: Option<f64>,
    now: Millis,
    history: &mut History,
) -> (Decision, String) {
    decide_at(scaling, current, reading, now, now, history)
}

/// The decision at `now` (the planner's clock), `wall` being the same
/// instant on the wall clock (schedules).
pub fn decide_at(
    scaling: &Scaling,
    current: u32,
    reading: Option<f64>,
    now: Millis,
    wall: Millis,
    history: &mut History,
) -> (Decision, String) {
    let max = scaling.max_tasks;
    // The floor: minTasks, or a schedule's while its window is open.
    let (min, floor_why) = scaling
        .schedules
        .iter()
        .filter(|f| f.min_tasks > scaling.min_tasks)
        .filter_map(|f| f.window.open_until(wall).map(|until| (f, until)))
        .max_by_key(|(f, _)| f.min_tasks)
        .map_or((scaling.min_tasks, None), |(f, until)| {
            let opened = until - f.window.duration.as_millis() as Millis;
            (
                f.min_tasks,
                Some(format!(
                    "schedule `{}` ({}) raises minTasks to {}",
                    f.window.schedule,
                    f.window.describe_from(opened),
                    f.min_tasks
                )),
            )
        });
    if current < min {
        let why = match &floor_why {
            Some(why) => format!("{why}: {current} -> {min}"),
            None => format!("desiredCount {current} is below minTasks {min}"),
        };
        return (Decision::Scale { to: min }, why);
    }
    if current > max {
        return (
            Decision::Scale { to: max },
            format!("desiredCount {current} is above maxTasks {max}"),
        );
    }
    let metric = metric_name(&scaling.metric);
    let window = scaling.scale_in_stabilization.as_millis() as Millis;
    let Metric::CloudWatch { period, .. } = &scaling.metric;
    let period_number = now / (period.as_millis() as Millis).max(1);
    let (out_above, in_below) = (scaling.scale_out_above, scaling.scale_in_below);
    let side = match reading {
        None => Side::NoData,
        Some(v) if v > out_above => Side::Above,
        Some(v) if v < in_below => Side::Below,
        Some(_) => Side::Within,
    };
    history.note_period(period_number, side);
    let Some(value) = reading else {
        // No data recommends holding: after a gap, scaling in again needs
        // a whole window of low readings, not the first one.
        history.remember(now, current, window);
        let since = *history.last_data.get_or_insert(now);
        let missing = now.saturating_sub(since);
        if let Some(fallback) = &scaling.on_missing_metric
            && missing >= fallback.after.as_millis() as Millis
        {
            let gone = format!(
                "no data for {metric} for {} (onMissingMetric.after {})",
                super::budget::span(missing),
                super::budget::span(fallback.after.as_millis() as Millis)
            );
            return match fallback.tasks {
                Some(tasks) if tasks.clamp(min, max) != current => {
                    let to = tasks.clamp(min, max);
                    (Decision::Scale { to }, format!("{gone}: {current} -> {to}"))
                }
                Some(_) => (Decision::Hold, format!("{gone}: holding {current}")),
                None => (
                    Decision::Hold,
                    format!("{gone}: holding {current} (onMissingMetric: Hold)"),
                ),
            };
        }
        return (
            Decision::Hold,
            format!("no data for {metric}: holding {current} (missing data is not zero)"),
        );
    };
    history.last_data = Some(now);
    let recommendation = if value > out_above {
        current
            .saturating_add(scaling.scale_out_step.resolve(current, 1))
            .min(max)
    } else if value < in_below {
        current
            .saturating_sub(scaling.scale_in_step.resolve(current, 1))
            .max(min)
    } else {
        current
    };
    history.remember(now, recommendation, window);
    let seen = format!("{metric} = {}", number(value));
    if recommendation > current {
        let run = history.run_of(Side::Above);
        if run < scaling.scale_out_after {
            return (
                Decision::Hold,
                format!(
                    "{seen} > scaleOutAbove {} for {run} of {} periods (scaleOutAfter): holding {current}",
                    number(out_above),
                    scaling.scale_out_after
                ),
            );
        }
        let cooldown = scaling.scale_out_cooldown.as_millis() as Millis;
        if let Some(last) = history.last_scale_out
            && now.saturating_sub(last) < cooldown
        {
            return (
                Decision::Hold,
                format!(
                    "{seen} > {}, but the last scale-out was {}s ago (scaleOutCooldown {}s): holding {current}",
                    number(out_above),
                    now.saturating_sub(last) / 1000,
                    cooldown / 1000
                ),
            );
        }
        let mut reason = format!(
            "{seen} > scaleOutAbove {}: {current} -> {recommendation}",
            number(out_above)
        );
        if recommendation == max {
            let _ = write!(reason, " (maxTasks)");
        }
        return (Decision::Scale { to: recommendation }, reason);
    }
    if recommendation < current {
        let run = history.run_of(Side::Below);
        if run < scaling.scale_in_after {
            return (
                Decision::Hold,
                format!(
                    "{seen} < scaleInBelow {} for {run} of {} periods (scaleInAfter): holding {current}",
                    number(in_below),
                    scaling.scale_in_after
                ),
            );
        }
        // The highest recommendation of the window: one high reading in it
        // keeps the count, so a noisy metric cannot make it go up and down.
        let stabilized = history
            .recommendations
            .iter()
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(recommendation);
        if stabilized >= current {
            return (
                Decision::Hold,
                format!(
                    "{seen} < scaleInBelow {}, but the highest recommendation of the last {}s is {stabilized}: holding {current}",
                    number(in_below),
                    window / 1000
                ),
            );
        }
        let cooldown = scaling.scale_in_cooldown.as_millis() as Millis;
        if let Some(last) = history.last_scaled
            && now.saturating_sub(last) < cooldown
        {
            return (
                Decision::Hold,
                format!(
                    "{seen} < {}, but the last scaling was {}s ago (scaleInCooldown {}s): holding {current}",
                    number(in_below),
                    now.saturating_sub(last) / 1000,
                    cooldown / 1000
                ),
            );
        }
        return (
            Decision::Scale { to: stabilized },
            format!(
                "{seen} < scaleInBelow {}, the highest recommendation of the last {}s: {current} -> {stabilized}",
                number(in_below),
                window / 1000
            ),
        );
    }
    // The reading asks for more (or fewer) but the count is at its bound.
    let why = if value > out_above {
        format!(
            "{seen} > scaleOutAbove {}, but {current} is maxTasks: holding {current}",
            number(out_above)
        )
    } else if value < in_below {
        format!(
            "{seen} < scaleInBelow {}, but {current} is minTasks: holding {current}",
            number(in_below)
        )
    } else {
        format!(
            "{seen} within [{}, {}]: holding {current}",
            number(in_below),
            number(out_above)
        )
    };
    (Decision::Hold, why)
}

/// A metric's name for reasons, such as `AWS/ECS CPUUtilization (Average)`.
pub fn metric_name(metric: &Metric) -> String {
    match metric {
        Metric::CloudWatch {
            namespace,
            name,
            statistic,
            ..
        } => format!("{namespace} {name} ({statistic:?})"),
    }
}

/// A value without needless decimals: `70`, `72.5`.
fn number(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::spec::policy::{Statistic, TaskCount};

    fn scaling() -> Scaling {
        Scaling {
            min_tasks: 2,
            max_tasks: 10,
            metric: Metric::CloudWatch {
                namespace: "AWS/ECS".into(),
                name: "CPUUtilization".into(),
                statistic: Statistic::Average,
                dimensions: BTreeMap::new(),
                period: Duration::from_secs(60),
            },
            scale_out_above: 70.0,
            scale_in_below: 30.0,
            scale_out_step: TaskCount::Tasks(2),
            scale_in_step: TaskCount::Tasks(1),
            scale_out_cooldown: Duration::from_secs(60),
            scale_in_cooldown: Duration::from_secs(300),
            scale_in_stabilization: Duration::from_secs(300),
            // One period: these tests are about the cooldowns and the
            // window; the runs of periods have their own.
            scale_out_after: 1,
            scale_in_after: 1,
            on_missing_metric: None,
            schedules: vec![],
        }
    }

    const S: Millis = 1000;

    #[test]
    fn bounds_are_restored_without_a_metric() {
        let s = scaling();
        let mut h = History::default();
        assert_eq!(decide(&s, 1, None, 0, &mut h).0, Decision::Scale { to: 2 });
        assert_eq!(
            decide(&s, 12, None, 0, &mut h).0,
            Decision::Scale { to: 10 }
        );
    }

    #[test]
    fn no_data_holds_and_says_so() {
        let (d, why) = decide(&scaling(), 4, None, 0, &mut History::default());
        assert_eq!(d, Decision::Hold);
        assert!(why.contains("no data"), "{why}");
    }

    #[test]
    fn scale_out_steps_are_capped_and_cooled_down() {
        let s = scaling();
        let mut h = History::default();
        let (d, why) = decide(&s, 9, Some(90.0), 0, &mut h);
        assert_eq!(d, Decision::Scale { to: 10 }, "9 + 2 capped at maxTasks");
        assert!(why.contains("90 > scaleOutAbove 70"), "{why}");
        h.scaled(9, 10, 0);
        let mut s = s;
        s.max_tasks = 20;
        assert_eq!(decide(&s, 10, Some(90.0), 30 * S, &mut h).0, Decision::Hold);
        assert_eq!(
            decide(&s, 10, Some(90.0), 61 * S, &mut h).0,
            Decision::Scale { to: 12 }
        );
    }

    #[test]
    fn percentage_steps_round_up() {
        let mut s = scaling();
        s.max_tasks = 100;
        s.scale_out_step = TaskCount::Percent(10);
        let (d, _) = decide(&s, 15, Some(80.0), 0, &mut History::default());
        assert_eq!(
            d,
            Decision::Scale { to: 17 },
            "10% of 15 is 1.5, rounded up"
        );
    }

    #[test]
    fn scale_in_waits_for_the_window_and_the_cooldown() {
        let s = scaling();
        let mut h = History::default();
        // A scale-out at 0; the metric falls.
        h.scaled(4, 6, 0);
        h.recommendations.push_back((0, 6));
        assert_eq!(decide(&s, 6, Some(10.0), 100 * S, &mut h).0, Decision::Hold);
        // After the window, the recommendations are all 5; the cooldown (300 s) is over too.
        for t in [200, 250, 301] {
            let _ = decide(&s, 6, Some(10.0), t * S, &mut h);
        }
        let (d, why) = decide(&s, 6, Some(10.0), 310 * S, &mut h);
        assert_eq!(d, Decision::Scale { to: 5 }, "{why}");
    }

    #[test]
    fn one_high_reading_in_the_window_blocks_scale_in() {
        let s = scaling();
        let mut h = History::default();
        let _ = decide(&s, 5, Some(50.0), 0, &mut h);
        let (d, why) = decide(&s, 5, Some(10.0), 60 * S, &mut h);
        assert_eq!(d, Decision::Hold);
        assert!(why.contains("highest recommendation"), "{why}");
    }

    #[test]
    fn a_reading_exactly_at_a_threshold_holds() {
        // "Above" and "below" are strict, as the README says.
        let s = scaling();
        let mut h = History::default();
        let (d, why) = decide(&s, 4, Some(70.0), 0, &mut h);
        assert_eq!(d, Decision::Hold);
        assert_eq!(
            why,
            "AWS/ECS CPUUtilization (Average) = 70 within [30, 70]: holding 4"
        );
        let (d, why) = decide(&s, 4, Some(30.0), 1, &mut h);
        assert_eq!(
            (d, why.as_str()),
            (
                Decision::Hold,
                "AWS/ECS CPUUtilization (Average) = 30 within [30, 70]: holding 4"
            )
        );
        let (d, why) = decide(&s, 4, Some(70.25), 2, &mut h);
        assert_eq!(d, Decision::Scale { to: 6 });
        assert_eq!(
            why,
            "AWS/ECS CPUUtilization (Average) = 70.25 > scaleOutAbove 70: 4 -> 6"
        );
    }

    #[test]
    fn a_reading_just_below_the_scale_in_threshold_scales_in() {
        let s = scaling();
        let (d, why) = decide(&s, 4, Some(29.5), 0, &mut History::default());
        assert_eq!(d, Decision::Scale { to: 3 });
        assert_eq!(
            why,
            "AWS/ECS CPUUtilization (Average) = 29.5 < scaleInBelow 30, the highest recommendation of the last 300s: 4 -> 3"
        );
    }

    #[test]
    fn scale_in_stops_at_min_tasks_and_scale_out_says_max_tasks() {
        let mut s = scaling();
        s.scale_in_step = TaskCount::Tasks(5);
        let (d, _) = decide(&s, 4, Some(1.0), 0, &mut History::default());
        assert_eq!(d, Decision::Scale { to: 2 }, "4 - 5 stops at minTasks 2");
        let (_, why) = decide(&s, 9, Some(99.0), 0, &mut History::default());
        assert!(why.ends_with("9 -> 10 (maxTasks)"), "{why}");
        let (_, why) = decide(&s, 7, Some(99.0), 0, &mut History::default());
        assert!(why.ends_with("7 -> 9"), "{why}");
    }

    #[test]
    fn at_a_bound_the_count_holds_and_says_why() {
        let s = scaling();
        let (d, why) = decide(&s, 10, Some(90.0), 0, &mut History::default());
        assert_eq!(d, Decision::Hold);
        assert_eq!(
            why,
            "AWS/ECS CPUUtilization (Average) = 90 > scaleOutAbove 70, but 10 is maxTasks: holding 10"
        );
        let (d, why) = decide(&s, 2, Some(10.0), 0, &mut History::default());
        assert_eq!(d, Decision::Hold);
        assert_eq!(
            why,
            "AWS/ECS CPUUtilization (Average) = 10 < scaleInBelow 30, but 2 is minTasks: holding 2"
        );
    }

    #[test]
    fn a_scale_out_cooldown_that_has_exactly_elapsed_lets_it_scale() {
        let mut s = scaling();
        s.max_tasks = 20;
        let mut h = History::default();
        h.scaled(4, 6, 0);
        let (d, why) = decide(&s, 6, Some(90.0), 60 * S - 1, &mut h);
        assert_eq!(d, Decision::Hold);
        assert_eq!(
            why,
            "AWS/ECS CPUUtilization (Average) = 90 > 70, but the last scale-out was 59s ago (scaleOutCooldown 60s): holding 6"
        );
        assert_eq!(
            decide(&s, 6, Some(90.0), 60 * S, &mut h).0,
            Decision::Scale { to: 8 }
        );
    }

    #[test]
    fn a_scale_in_cooldown_that_has_exactly_elapsed_lets_it_scale() {
        let mut s = scaling();
        // A short window, so the cooldown alone decides.
        s.scale_in_stabilization = Duration::from_secs(10);
        let mut h = History::default();
        h.scaled(6, 5, 0);
        let (d, why) = decide(&s, 5, Some(10.0), 300 * S - 1, &mut h);
        assert_eq!(d, Decision::Hold);
        assert_eq!(
            why,
            "AWS/ECS CPUUtilization (Average) = 10 < 30, but the last scaling was 299s ago (scaleInCooldown 300s): holding 5"
        );
        assert_eq!(
            decide(&s, 5, Some(10.0), 300 * S, &mut h).0,
            Decision::Scale { to: 4 }
        );
    }

    #[test]
    fn a_recommendation_exactly_one_window_old_still_counts() {
        let s = scaling();
        let mut h = History::default();
        let _ = decide(&s, 5, Some(50.0), 0, &mut h);
        let (d, why) = decide(&s, 5, Some(10.0), 300 * S, &mut h);
        assert_eq!(d, Decision::Hold);
        assert_eq!(
            why,
            "AWS/ECS CPUUtilization (Average) = 10 < scaleInBelow 30, but the highest recommendation of the last 300s is 5: holding 5"
        );
        // One millisecond later the reading of 0 s has left the window.
        let (d, _) = decide(&s, 5, Some(10.0), 300 * S + 1, &mut h);
        assert_eq!(d, Decision::Scale { to: 4 });
        assert_eq!(h.recommendations.len(), 2, "{:?}", h.recommendations);
    }

    #[test]
    fn after_a_gap_a_scale_in_needs_a_whole_window_of_low_readings_again() {
        let s = scaling();
        let mut h = History::default();
        // Low for a whole window: ready to scale in...
        for t in [0, 100, 200, 300] {
            let _ = decide(&s, 5, Some(10.0), t * S, &mut h);
        }
        // ...then no data at 310 s: holding, and the window remembers it.
        let (d, why) = decide(&s, 5, None, 310 * S, &mut h);
        assert_eq!(d, Decision::Hold);
        assert_eq!(
            why,
            "no data for AWS/ECS CPUUtilization (Average): holding 5 (missing data is not zero)"
        );
        // Low again: held until the gap's "hold" has left the window.
        for t in [320, 500, 610] {
            let (d, why) = decide(&s, 5, Some(10.0), t * S, &mut h);
            assert_eq!(d, Decision::Hold, "at {t} s: {why}");
        }
        let (d, _) = decide(&s, 5, Some(10.0), 611 * S, &mut h);
        assert_eq!(d, Decision::Scale { to: 4 });
    }

    #[test]
    fn history_tells_a_scale_out_from_other_scalings() {
        let mut h = History::default();
        h.scaled(5, 5, 7);
        assert_eq!((h.last_scale_out, h.last_scaled), (None, Some(7)));
        h.scaled(5, 4, 8);
        assert_eq!((h.last_scale_out, h.last_scaled), (None, Some(8)));
        h.scaled(4, 6, 9);
        assert_eq!((h.last_scale_out, h.last_scaled), (Some(9), Some(9)));
    }

    #[test]
    fn numbers_in_reasons_drop_needless_decimals() {
        assert_eq!(number(70.0), "70");
        assert_eq!(number(100.0), "100");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(72.5), "72.5");
        assert_eq!(number(72.456), "72.46");
        assert_eq!(number(0.05), "0.05");
    }

    proptest! {
        /// A metric that never leaves the band never scales; and whatever
        /// the metric does, the count never leaves the bounds and never
        /// goes down within the stabilization window of going up. The
        /// scale-in cooldown is 0 here, so the window alone must hold it.
        #[test]
        fn noisy_metrics_never_flap(values in prop::collection::vec(0.0f64..100.0, 1..200)) {
            let mut s = scaling();
            s.scale_in_cooldown = Duration::ZERO;
            let mut h = History::default();
            let mut current = 4u32;
            let mut last_up: Option<Millis> = None;
            for (i, v) in values.iter().enumerate() {
                let now = i as Millis * 15 * S;
                if let (Decision::Scale { to }, _) = decide(&s, current, Some(*v), now, &mut h) {
                    prop_assert!((s.min_tasks..=s.max_tasks).contains(&to));
                    if to < current {
                        prop_assert!(last_up.is_none_or(|t| now - t > 300 * S), "down {}s after up", now - last_up.unwrap_or(0));
                    } else {
                        last_up = Some(now);
                    }
                    h.scaled(current, to, now);
                    current = to;
                }
            }
        }

        #[test]
        fn a_metric_inside_the_band_never_scales(values in prop::collection::vec(30.0f64..=70.0, 1..100)) {
            let s = scaling();
            let mut h = History::default();
            for (i, v) in values.iter().enumerate() {
                prop_assert_eq!(decide(&s, 4, Some(*v), i as Millis * 15 * S, &mut h).0, Decision::Hold);
            }
        }
    }

    /// Runs a series of readings, one a minute (the metric's period),
    /// carrying out every decision; returns the counts scaled to, with the
    /// minute.
    fn series(s: &Scaling, start: u32, readings: &[Option<f64>]) -> Vec<(usize, u32)> {
        let mut h = History::default();
        let mut current = start;
        let mut steps = vec![];
        for (minute, r) in readings.iter().enumerate() {
            let now = minute as Millis * 60 * S;
            if let (Decision::Scale { to }, _) = decide(s, current, *r, now, &mut h) {
                h.scaled(current, to, now);
                current = to;
                steps.push((minute, to));
            }
        }
        steps
    }

    fn defaults() -> Scaling {
        Scaling {
            scale_out_after: crate::spec::policy::defaults::SCALE_AFTER_PERIODS,
            scale_in_after: crate::spec::policy::defaults::SCALE_AFTER_PERIODS,
            ..scaling()
        }
    }

    #[test]
    fn a_metric_alternating_around_a_threshold_never_scales_and_a_sustained_breach_does() {
        let s = defaults();
        let zigzag: Vec<Option<f64>> = (0..30)
            .map(|m| Some(if m % 2 == 0 { 68.0 } else { 72.0 }))
            .collect();
        assert_eq!(series(&s, 4, &zigzag), []);
        // The same with one period each: a scale-out every other minute,
        // as far as the cooldown lets it.
        let eager = Scaling {
            scale_out_after: 1,
            ..defaults()
        };
        assert!(series(&eager, 4, &zigzag).len() >= 3);
        // Above from minute 3 on: out at minute 4, its second period.
        let breach: Vec<Option<f64>> = (0..8)
            .map(|m| Some(if m >= 3 { 80.0 } else { 50.0 }))
            .collect();
        assert_eq!(series(&s, 4, &breach)[0], (4, 6));
        // Below in a row as well, for a scale-in (after the window too).
        let low: Vec<Option<f64>> = (0..8)
            .map(|m| Some(if m % 2 == 0 { 20.0 } else { 40.0 }))
            .collect();
        assert_eq!(series(&s, 4, &low), []);
    }

    #[test]
    fn the_reason_says_how_many_periods_of_the_run_have_passed() {
        let s = defaults();
        let mut h = History::default();
        let (d, why) = decide(&s, 4, Some(80.0), 0, &mut h);
        assert_eq!(d, Decision::Hold);
        assert_eq!(
            why,
            "AWS/ECS CPUUtilization (Average) = 80 > scaleOutAbove 70 for 1 of 2 periods (scaleOutAfter): holding 4"
        );
        // A second reading in the same period is not a second period.
        assert_eq!(decide(&s, 4, Some(80.0), 30 * S, &mut h).0, Decision::Hold);
        assert_eq!(
            decide(&s, 4, Some(80.0), 60 * S, &mut h).0,
            Decision::Scale { to: 6 }
        );
    }

    #[test]
    fn a_reading_inside_the_band_breaks_a_run_below() {
        let s = Scaling {
            scale_in_cooldown: Duration::ZERO,
            scale_in_stabilization: Duration::ZERO,
            ..defaults()
        };
        // Within, then below: one period below, not two; a reading at a
        // threshold is within.
        assert_eq!(series(&s, 4, &[Some(50.0), Some(10.0)]), []);
        assert_eq!(series(&s, 4, &[Some(30.0), Some(10.0)]), []);
        assert_eq!(series(&s, 4, &[Some(70.0), Some(90.0)]), []);
        assert_eq!(series(&s, 4, &[Some(90.0), Some(90.0)]), [(1, 6)]);
        assert_eq!(series(&s, 4, &[Some(10.0), Some(10.0)]), [(1, 3)]);
    }

    #[test]
    fn a_schedule_no_higher_than_min_tasks_is_not_named_as_the_floor() {
        let mut s = defaults();
        s.schedules = vec![crate::spec::policy::ScheduledFloor {
            window: crate::spec::budget::Window::new("* * * * *", Duration::from_secs(60), "UTC")
                .unwrap(),
            min_tasks: s.min_tasks,
        }];
        let (d, why) = decide(&s, 1, Some(50.0), 0, &mut History::default());
        assert_eq!(d, Decision::Scale { to: 2 });
        assert_eq!(why, "desiredCount 1 is below minTasks 2");
    }

    #[test]
    fn the_longest_run_allowed_is_remembered_whole() {
        let s = Scaling {
            scale_out_after: 60,
            ..defaults()
        };
        let above = vec![Some(90.0); 61];
        // Out at the 60th minute above (minute 59), not before.
        assert_eq!(series(&s, 4, &above).first(), Some(&(59, 6)));
    }

    #[test]
    fn one_period_without_a_pass_does_not_break_a_run_two_do() {
        let mut h = History::default();
        for p in [0, 1, 3] {
            h.note_period(p, Side::Above);
        }
        assert_eq!(h.run_of(Side::Above), 3);
        h.note_period(6, Side::Above);
        assert_eq!(h.run_of(Side::Above), 1);
        h.note_period(7, Side::Within);
        assert_eq!(h.run_of(Side::Above), 0);
    }

    #[test]
    fn a_missing_metric_takes_the_fallback_once_it_has_been_missing_long_enough() {
        let mut s = defaults();
        s.on_missing_metric = Some(crate::spec::policy::OnMissingMetric {
            after: Duration::from_secs(300),
            tasks: Some(8),
        });
        // Data for two minutes, then none.
        let mut readings = vec![Some(50.0), Some(50.0)];
        readings.extend(std::iter::repeat_n(None, 10));
        // The last data at minute 1; five minutes later, at minute 6: 8.
        assert_eq!(series(&s, 4, &readings), [(6, 8)]);
        let mut h = History::default();
        decide(&s, 4, Some(50.0), 0, &mut h);
        let (_, why) = decide(&s, 4, None, 300 * S, &mut h);
        assert_eq!(
            why,
            "no data for AWS/ECS CPUUtilization (Average) for 5m (onMissingMetric.after 5m): 4 -> 8"
        );
        // Hold: the count stays, and the reason says why.
        s.on_missing_metric = Some(crate::spec::policy::OnMissingMetric {
            after: Duration::from_secs(300),
            tasks: None,
        });
        assert_eq!(series(&s, 4, &readings), []);
        let (_, why) = decide(&s, 4, None, 400 * S, &mut h);
        assert!(why.ends_with("holding 4 (onMissingMetric: Hold)"), "{why}");
        // A fallback count within the bounds.
        s.on_missing_metric = Some(crate::spec::policy::OnMissingMetric {
            after: Duration::from_secs(60),
            tasks: Some(50),
        });
        assert_eq!(series(&s, 4, &readings)[0].1, s.max_tasks);
    }

    #[test]
    fn a_schedule_raises_the_floor_while_its_window_is_open() {
        let mut s = defaults();
        s.schedules = vec![crate::spec::policy::ScheduledFloor {
            window: crate::spec::budget::Window::new(
                "0 8 * * MON-FRI",
                Duration::from_secs(10 * 3600),
                "Europe/Berlin",
            )
            .unwrap(),
            min_tasks: 8,
        }];
        // Monday 2026-01-05, 06:59:00 UTC is 07:59 in Berlin.
        let monday = 1_767_596_340_000;
        let mut h = History::default();
        assert_eq!(
            decide_at(&s, 4, Some(50.0), 0, monday, &mut h).0,
            Decision::Hold
        );
        let (d, why) = decide_at(&s, 4, Some(50.0), 60 * S, monday + 60 * S, &mut h);
        assert_eq!(d, Decision::Scale { to: 8 });
        assert_eq!(
            why,
            "schedule `0 8 * * MON-FRI` (08:00-18:00 Europe/Berlin) raises minTasks to 8: 4 -> 8"
        );
        // The thresholds stay in charge above the floor.
        assert_eq!(
            decide_at(&s, 8, Some(90.0), 120 * S, monday + 120 * S, &mut h).0,
            Decision::Hold
        );
        assert_eq!(
            decide_at(&s, 8, Some(90.0), 180 * S, monday + 180 * S, &mut h).0,
            Decision::Scale { to: 10 }
        );
        // At 18:00 the floor is minTasks again: low readings scale in.
        let evening = monday + 10 * 3600 * S + 60 * S;
        let mut h = History::default();
        let mut last = Decision::Hold;
        for m in 0..8 {
            last = decide_at(&s, 8, Some(10.0), m * 60 * S, evening + m * 60 * S, &mut h).0;
            if last != Decision::Hold {
                break;
            }
        }
        assert_eq!(last, Decision::Scale { to: 7 });
        // Saturday: no floor.
        let saturday = monday + 5 * 86_400 * S + 3600 * S;
        assert_eq!(
            decide_at(&s, 4, Some(50.0), 0, saturday, &mut History::default()).0,
            Decision::Hold
        );
    }
}
