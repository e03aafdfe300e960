//! Scaling over time on the simulator: noise ignored, a missing metric's
//! fallback, and a schedule's floor. Each shipped scenario is checked from
//! its report and run once more without the setting it shows, so that each
//! check is one that run fails.

use stevedore::sim::run::{Report, ScalingStep};

use crate::run_edited;

fn steps(report: &Report) -> &[ScalingStep] {
    &report.services[0].scaling
}

#[test]
fn a_metric_alternating_around_the_threshold_moves_nothing_until_it_stays_above() {
    let report = run_edited(
        "metric-alternates",
        "scaleOutAbove: 70",
        "scaleOutAbove: 70",
    );
    let during: Vec<&ScalingStep> = steps(&report).iter().filter(|s| s.at_s < 1740.0).collect();
    // At most two changes would do; there are none.
    assert!(during.is_empty(), "{during:#?}");
    // 80 from minute 30 (72 at minute 29 already): out by its second
    // period, plus one.
    let first = &steps(&report)[0];
    assert!(
        (1740.0..=1800.0 + 2.0 * 60.0).contains(&first.at_s),
        "{first:#?}"
    );
    assert_eq!((first.from, first.to), (4, 5));
    // One period each, as a plain threshold rule: the alternation ratchets
    // the count up.
    let eager = run_edited(
        "metric-alternates",
        "scaleInBelow: 40",
        "scaleInBelow: 40\n            scaleOutAfter: 1",
    );
    let during = steps(&eager).iter().filter(|s| s.at_s < 1740.0).count();
    assert!(during > 2, "{:#?}", steps(&eager));
}

#[test]
fn a_metric_gap_past_on_missing_metric_after_takes_the_fallback() {
    let report = run_edited("metric-gap-fallback", "tasks: 6", "tasks: 6");
    let s = steps(&report);
    assert_eq!(s.len(), 1, "{s:#?}");
    // The gap starts at 10 m; the last data point is the one of minute 9.
    assert!((840.0..=900.0 + 60.0).contains(&s[0].at_s), "{s:#?}");
    assert_eq!((s[0].from, s[0].to), (3, 6));
    assert!(
        s[0].reason.contains("onMissingMetric.after 5m"),
        "{}",
        s[0].reason
    );
    // Without the fallback, the count holds through the gap.
    let held = run_edited(
        "metric-gap-fallback",
        "            onMissingMetric: {after: 5m, tasks: 6}\n",
        "",
    );
    assert!(steps(&held).is_empty(), "{:#?}", steps(&held));
}

#[test]
fn a_schedule_raises_the_floor_at_its_opening_and_the_count_follows_it_down() {
    let report = run_edited("scheduled-floor", "minTasks: 8", "minTasks: 8");
    let s = steps(&report);
    assert_eq!(s.len(), 2, "{s:#?}");
    // 08:00 Berlin is 30 minutes in.
    assert!((1800.0..1800.0 + 60.0).contains(&s[0].at_s), "{s:#?}");
    assert_eq!((s[0].from, s[0].to), (2, 8));
    assert!(
        s[0].reason
            .starts_with("schedule `0 8 * * MON-FRI` (08:00-08:30 Europe/Berlin)")
    );
    // At 08:30 the floor is gone; the low readings bring the count down
    // once the stabilization window (5 minutes) has none of the floor's.
    assert!(
        (3600.0..3600.0 + 300.0 + 120.0).contains(&s[1].at_s),
        "{s:#?}"
    );
    assert_eq!((s[1].from, s[1].to), (8, 2));
    // On a Saturday, nothing happens.
    let saturday = run_edited("scheduled-floor", "2026-01-05T07:30", "2026-01-10T07:30");
    assert!(steps(&saturday).is_empty(), "{:#?}", steps(&saturday));
}

#[test]
fn scaling_mistakes_are_reported_at_their_line_and_column() {
    let policy = |extra: &str| {
        format!(
            "apiVersion: stevedore.io/v1alpha1
kind: ServicePolicy
metadata: {{name: api}}
spec:
  target: {{cluster: demo, service: api}}
  scaling:
    minTasks: 2
    maxTasks: 10
    metric: {{cloudWatch: {{namespace: AWS/ECS, name: CPUUtilization}}}}
    scaleOutAbove: 70
    scaleInBelow: 30
{extra}"
        )
    };
    let good = policy(
        "    scaleOutAfter: 3
    onMissingMetric: {after: 5m, tasks: 6}
    schedules:
      - {schedule: \"0 8 * * MON-FRI\", duration: 10h, timeZone: Europe/Berlin, minTasks: 8}
",
    );
    let loaded = crate::load(&[("p.yaml", &good)]);
    assert!(!loaded.has_errors(), "{:?}", crate::findings(&loaded));
    let s = loaded.policies[0].scaling.as_ref().unwrap();
    assert_eq!((s.scale_out_after, s.scale_in_after), (3, 2));
    assert_eq!(s.on_missing_metric.unwrap().tasks, Some(6));
    assert_eq!(s.schedules[0].min_tasks, 8);

    let bad = policy(
        "    scaleOutAfter: 0
    scaleInAfter: 61
    onMissingMetric: {after: 0s, action: Hold, tasks: 6}
    schedules:
      - {schedule: \"0 8 * *\", duration: 10h, timeZone: Europe/Berln, minTasks: 11}
",
    );
    let loaded = crate::load(&[("p.yaml", &bad)]);
    assert_eq!(
        crate::findings(&loaded),
        [
            "scale-after@12 '0'",
            "scale-after@13 '61'",
            "duration@14 '0s, action: Ho'",
            "on-missing-metric@14 'Hold, tasks: 6'",
            "schedule@16 '\"0 8 * *\", dur'",
            "time-zone@16 'Europe/Berln,'",
            "task-bounds@16 '11}'",
        ]
    );
    let loaded = crate::load(&[(
        "p.yaml",
        &policy("    onMissingMetric: {after: 5m, tasks: 20}\n"),
    )]);
    assert_eq!(crate::findings(&loaded), ["on-missing-metric@12 '20}'"]);
    let loaded = crate::load(&[(
        "p.yaml",
        &policy("    onMissingMetric: {after: 5m, action: Hld}\n"),
    )]);
    assert_eq!(crate::findings(&loaded), ["unknown-variant@12 'Hld}'"]);
    assert_eq!(
        loaded.diagnostics[0].help.as_deref(),
        Some("did you mean `Hold`?")
    );
}

/// Every scale-in step of a run leaves every spread constraint holding:
/// the step after it finds no excess, and no task was moved.
fn every_scale_in_kept_the_spread(report: &Report) {
    let web = &report.services[0];
    let ins: Vec<&ScalingStep> = web.scaling.iter().filter(|s| s.to < s.from).collect();
    assert!(!ins.is_empty(), "{:#?}", web.scaling);
    for step in &web.scaling {
        assert_eq!(step.skew_excess_before, 0, "{:#?}", web.scaling);
    }
    assert_eq!(web.tasks_moved, 0, "{web:#?}");
    assert_eq!(web.state, stevedore::plan::State::Satisfied, "{web:#?}");
    assert!(web.skew.values().all(|s| *s <= 1), "{web:#?}");
}

#[test]
fn a_scale_in_protects_the_tasks_to_keep_so_the_spread_holds_without_a_move() {
    let report = run_edited("scale-in-keeps-the-spread", "maxTasks: 12", "maxTasks: 12");
    every_scale_in_kept_the_spread(&report);
    assert_eq!(report.services[0].scaling.len(), 7);
    // Protected and released at each of the seven steps, in calls of at
    // most ten tasks (11 + 10 + 9 + ... tasks kept).
    assert_eq!(report.api_calls.get("UpdateTaskProtection"), Some(&16));
    // The load-ramp scenario's scale-ins, the same.
    every_scale_in_kept_the_spread(&run_edited("load-ramp", "maxTasks: 12", "maxTasks: 12"));
}
