//! `sim --html FILE`: the run as one self-contained HTML page (inline CSS
//! and SVG, no script, nothing fetched). Per policy and service: tasks per
//! zone over time, the zone skew against `maxSkew`, and, for a scaling
//! policy, the desired count against the metric and its thresholds; the
//! timeline's events and stevedore's actions marked on each. Then the
//! summary the terminal prints.
//!
//! The charts come from a small SVG writer of our own ([`Chart`]): three
//! kinds of line chart did not justify a plotting crate and its fonts.
//! Elements carry `data-` attributes so that a test reading the rendered
//! DOM finds what each shows.

use std::fmt::Write as _;

use super::run::{BudgetSeries, Report, Series};
use crate::plan::ActionKind;
use crate::status::page::escape;

const STYLE: &str = "
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2330; background: #f6f7f9; }
h1 { font-size: 1.4em; margin: 0 0 .2em; } h2 { font-size: 1.15em; margin: 0 0 .3em; }
.meta, .note { color: #5a6272; }
.service { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: .8em 1em; margin: 1em 0; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } figcaption { font-weight: 600; font-size: .95em; }
svg text { font: 11px system-ui, sans-serif; fill: #1d2330; }
.axis { stroke: #8a93a3; stroke-width: 1; } .grid { stroke: #eceef2; stroke-width: 1; }
.series { fill: none; stroke-width: 2; }
.limit { stroke: #c62828; stroke-dasharray: 5 4; stroke-width: 1.5; }
.threshold { stroke: #8d6e00; stroke-dasharray: 5 4; stroke-width: 1.2; }
.event { stroke: #9aa3b2; stroke-dasharray: 2 3; stroke-width: 1; }
.ecs-event { stroke: #2e7d32; stroke-dasharray: 2 3; stroke-width: 1.5; }
.action-stop { fill: #c62828; } .action-count { fill: #1565c0; } .action-protect { fill: #8d6e00; }
.legend span { display: inline-block; margin-right: 1em; font-size: .9em; }
.swatch { display: inline-block; width: 1.2em; height: .35em; vertical-align: middle; margin-right: .3em; }
table { border-collapse: collapse; background: #fff; margin: .5em 0; }
td, th { border: 1px solid #dde1e7; padding: .25em .5em; text-align: left; }
.violation { color: #c62828; font-weight: 600; }
pre { white-space: pre-wrap; background: #fff; border: 1px solid #dde1e7; padding: .6em; }
.series { stroke-opacity: .85; }
";

/// Colours of the series, in order (zones, then the next lines).
const COLOURS: [&str; 8] = [
    "#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#5d4037", "#546e7a",
];

/// A line chart: the plot area and its axes' ranges.
struct Chart {
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    x_max: f64,
    y_max: f64,
    /// A second axis on the right, if any: its maximum.
    y2_max: Option<f64>,
    svg: String,
}

impl Chart {
    fn new(kind: &str, service: &str, x_max: f64, y_max: f64, y2_max: Option<f64>) -> Chart {
        let (width, height) = (520.0, 220.0);
        let mut chart = Chart {
            width,
            height,
            left: 42.0,
            right: if y2_max.is_some() { 48.0 } else { 12.0 },
            top: 12.0,
            bottom: 26.0,
            x_max: x_max.max(1.0),
            y_max: nice(y_max),
            y2_max: y2_max.map(nice),
            svg: String::new(),
        };
        let _ = write!(
            chart.svg,
            "<svg class=\"chart\" data-chart=\"{kind}\" data-service=\"{}\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\">",
            escape(service)
        );
        chart.axes();
        chart
    }

    fn x(&self, at: f64) -> f64 {
        self.left + at / self.x_max * (self.width - self.left - self.right)
    }

    fn y(&self, value: f64) -> f64 {
        let h = self.height - self.top - self.bottom;
        self.height - self.bottom - value / self.y_max * h
    }

    fn y2(&self, value: f64) -> f64 {
        let h = self.height - self.top - self.bottom;
        self.height - self.bottom - value / self.y2_max.unwrap_or(1.0) * h
    }

    fn axes(&mut self) {
        let (x0, x1) = (self.left, self.width - self.right);
        let (y0, y1) = (self.height - self.bottom, self.top);
        // Ticks a round step apart: whole tasks on a count's axis.
        let step = nice(self.y_max / 5.0);
        let ticks = (self.y_max / step).round() as u32;
        for k in 0..=ticks {
            let v = step * f64::from(k);
            let y = self.y(v);
            let _ = write!(
                self.svg,
                "<line class=\"grid\" x1=\"{x0}\" x2=\"{x1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                x0 - 4.0,
                y + 4.0,
                label(v)
            );
            if let Some(max) = self.y2_max {
                let v2 = max * f64::from(k) / f64::from(ticks.max(1));
                let _ = write!(
                    self.svg,
                    "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    x1 + 4.0,
                    self.y2(v2) + 4.0,
                    label(v2)
                );
            }
        }
        for k in 0..=5 {
            let at = self.x_max * f64::from(k) / 5.0;
            let x = self.x(at);
            let _ = write!(
                self.svg,
                "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                y0 + 16.0,
                clock(at)
            );
        }
        let _ = write!(
            self.svg,
            "<line class=\"axis\" x1=\"{x0}\" x2=\"{x0}\" y1=\"{y0}\" y2=\"{y1}\"/><line class=\"axis\" x1=\"{x0}\" x2=\"{x1}\" y1=\"{y0}\" y2=\"{y0}\"/>"
        );
    }

    /// A step line (values hold until the next sample), on the right axis
    /// with `right`.
    fn line(&mut self, name: &str, colour: &str, points: &[(f64, f64)], right: bool) {
        if points.is_empty() {
            return;
        }
        let y = |v: f64| if right { self.y2(v) } else { self.y(v) };
        let mut path = String::new();
        for (k, (at, v)) in points.iter().enumerate() {
            if k == 0 {
                let _ = write!(path, "{:.1},{:.1}", self.x(*at), y(*v));
            } else {
                let _ = write!(
                    path,
                    " {:.1},{:.1} {:.1},{:.1}",
                    self.x(*at),
                    y(points[k - 1].1),
                    self.x(*at),
                    y(*v)
                );
            }
        }
        let _ = write!(
            self.svg,
            "<polyline class=\"series\" data-name=\"{}\" data-last=\"{}\" data-peak=\"{}\" stroke=\"{colour}\" points=\"{path}\"><title>{}</title></polyline>",
            escape(name),
            label(points.last().map_or(0.0, |p| p.1)),
            label(points.iter().map(|p| p.1).fold(f64::MIN, f64::max)),
            escape(name)
        );
    }

    /// A horizontal dashed line across the plot at `value`.
    fn limit(&mut self, class: &str, name: &str, value: f64, right: bool) {
        let y = if right { self.y2(value) } else { self.y(value) };
        let _ = write!(
            self.svg,
            "<line class=\"{class}\" data-name=\"{}\" data-value=\"{}\" x1=\"{}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"><title>{}: {}</title></line>",
            escape(name),
            label(value),
            self.left,
            self.width - self.right,
            escape(name),
            label(value)
        );
    }

    /// The timeline's events and ECS's own (dotted verticals: `event`,
    /// `ecs-event`) and the service's actions (marks along the bottom).
    fn marks(
        &mut self,
        events: &[(f64, &'static str, String)],
        actions: &[(f64, &'static str, String)],
    ) {
        let (y0, y1) = (self.height - self.bottom, self.top);
        for (at, class, what) in events {
            let x = self.x(*at);
            let _ = write!(
                self.svg,
                "<line class=\"{class}\" data-at=\"{at}\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{y0}\" y2=\"{y1}\"><title>{} {}</title></line>",
                clock(*at),
                escape(what)
            );
        }
        for (at, kind, what) in actions {
            let x = self.x(*at);
            let _ = write!(
                self.svg,
                "<path class=\"action action-{kind}\" data-kind=\"{kind}\" data-at=\"{at}\" d=\"M{x:.1},{:.1} l-4,7 h8 z\"><title>{} {}</title></path>",
                y0 - 7.0,
                clock(*at),
                escape(what)
            );
        }
    }

    fn finish(mut self) -> String {
        self.svg.push_str("</svg>");
        self.svg
    }
}

/// A round maximum for an axis: 1, 2 or 5 times a power of ten, at least
/// `value` (and 1).
fn nice(value: f64) -> f64 {
    let value = value.max(1.0);
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|m| *m >= value)
        .unwrap_or(value)
}

/// A number as an axis shows it.
fn label(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        format!("{}", value.round() as i64)
    } else {
        format!("{value:.1}")
    }
}

/// Seconds as mm:ss, or h:mm:ss past an hour.
fn clock(at: f64) -> String {
    let s = at.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{:02}:{:02}", s / 60, s % 60)
    }
}

/// The whole report.
pub fn report(report: &Report) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>stevedore sim: {}</title><style>{STYLE}</style></head><body>\n\
         <h1>stevedore sim: {}</h1><div class=\"meta\">{} of virtual time · {} · {} · {}</div>\n",
        escape(&report.scenario),
        escape(&report.scenario),
        clock(report.duration_s),
        crate::words::count(report.reconciles, "pass"),
        crate::words::count(report.actions.len() as u64, "action"),
        crate::words::count(report.events_delivered, "event"),
    );
    if !report.violations.is_empty() {
        html.push_str("<ul id=\"violations\">");
        for v in &report.violations {
            let _ = write!(
                html,
                "<li class=\"violation\">VIOLATION: {}</li>",
                escape(v)
            );
        }
        html.push_str("</ul>\n");
    }
    let events: Vec<(f64, &'static str, String)> = report
        .reactions
        .iter()
        .map(|r| (r.at_s, "event", r.event.clone()))
        .collect();
    if let Some(budget) = &report.budget_series {
        budget_section(&mut html, report, budget, &events);
    }
    if report.series.is_empty() {
        html.push_str("<p class=\"note\">No policy matched a service: nothing to plot.</p>\n");
    }
    for series in &report.series {
        service_section(&mut html, report, series, &events);
    }
    html.push_str("<h2>Summary</h2><pre id=\"summary\">");
    let mut summary = vec![];
    let _ = super::run::write_summary(report, &mut summary);
    html.push_str(&escape(&String::from_utf8_lossy(&summary)));
    html.push_str("</pre>\n</body></html>\n");
    html
}

/// The cluster's DisruptionBudget over the run, as the simulated ECS
/// counted it: tasks stopped and not yet replaced against `maxUnavailable`,
/// stops in the last `moves.per` against `moves.max`, every stop marked.
fn budget_section(
    html: &mut String,
    report: &Report,
    budget: &BudgetSeries,
    events: &[(f64, &'static str, String)],
) {
    let _ = write!(
        html,
        "<section class=\"service budget\" data-budget=\"{}\"><h2>DisruptionBudget {}</h2><div class=\"charts\">",
        escape(&budget.budget),
        escape(&budget.budget)
    );
    let stops: Vec<(f64, &'static str, String)> = report
        .actions
        .iter()
        .filter(|a| matches!(a.action.kind, ActionKind::StopTask { .. }))
        .map(|a| (a.at_s, "stop", a.action.to_string()))
        .collect();
    let x_max = report.duration_s;
    let mut figure = |kind: &str,
                      caption: String,
                      values: Vec<(f64, f64)>,
                      limit: Option<(&str, u32)>| {
        let top = values.iter().map(|(_, v)| *v).fold(0.0, f64::max);
        let top = top.max(limit.map_or(0.0, |(_, max)| f64::from(max) + 1.0));
        let mut chart = Chart::new(kind, &budget.budget, x_max, top, None);
        chart.line(kind, COLOURS[0], &values, false);
        let mut legend = format!(
            "<span><i class=\"swatch\" style=\"background:{}\"></i>{}</span>",
            COLOURS[0],
            escape(&caption)
        );
        if let Some((name, max)) = limit {
            chart.limit("limit", name, f64::from(max), false);
            let _ = write!(
                legend,
                "<span><i class=\"swatch\" style=\"background:#c62828\"></i>{name} {max}</span>"
            );
        }
        chart.marks(events, &stops);
        let _ = write!(
            html,
            "<figure><figcaption>{}</figcaption>{}<div class=\"legend\">{legend}</div></figure>",
            escape(&caption),
            chart.finish()
        );
    };
    let stopped = budget
        .samples
        .iter()
        .map(|s| (s.at_s, f64::from(s.stopped)))
        .collect();
    figure(
        "budget-stopped",
        "Tasks stopped and not yet replaced".into(),
        stopped,
        budget.max_unavailable.map(|max| ("maxUnavailable", max)),
    );
    if let Some((max, per)) = &budget.moves {
        let moves = budget
            .samples
            .iter()
            .map(|s| (s.at_s, f64::from(s.moves_in_period)))
            .collect();
        figure(
            "budget-moves",
            format!("Stops in the last {per}"),
            moves,
            Some(("moves.max", *max)),
        );
    }
    html.push_str("</div></section>\n");
}

fn service_section(
    html: &mut String,
    report: &Report,
    series: &Series,
    timeline: &[(f64, &'static str, String)],
) {
    // The timeline's events, and ECS's own for this service.
    let mut events = timeline.to_vec();
    events.extend(
        report
            .ecs_events
            .iter()
            .filter(|e| e.service == series.service)
            .map(|e| (e.at_s, "ecs-event", format!("ECS: {}", e.message))),
    );
    let events = &events[..];
    let end = report
        .services
        .iter()
        .find(|s| s.policy == series.policy && s.service == series.service);
    let _ = write!(
        html,
        "<section class=\"service\" data-policy=\"{}\" data-service=\"{}\" data-state=\"{}\"><h2>{} / {}</h2>",
        escape(&series.policy),
        escape(&series.service),
        end.map_or(String::new(), |s| format!("{:?}", s.state)),
        escape(&series.policy),
        escape(&series.service),
    );
    if let Some(end) = end {
        let _ = write!(
            html,
            "<div class=\"note\">At the end: {:?}: {}. Moved {}{} (the optimum {}; a forced redeploy would replace {}), peak unavailable {}.</div>",
            end.state,
            escape(&end.reason),
            end.tasks_moved,
            if end.ecs_rebalancing_stops > 0 {
                format!(", and ECS's AZ rebalancing {}", end.ecs_rebalancing_stops)
            } else {
                String::new()
            },
            end.optimal_moves,
            end.forced_redeploy_tasks,
            end.peak_unavailable
        );
    }
    let actions: Vec<(f64, &'static str, String)> = report
        .actions
        .iter()
        .filter(|a| a.action.policy == series.policy && a.action.service == series.service)
        .map(|a| {
            let kind = match a.action.kind {
                ActionKind::StopTask { .. } => "stop",
                ActionKind::SetDesiredCount { .. } => "count",
                ActionKind::ProtectTasks { .. } | ActionKind::UnprotectTasks { .. } => "protect",
            };
            (a.at_s, kind, a.action.to_string())
        })
        .collect();
    let x_max = report.duration_s;
    let zones: Vec<String> = series
        .samples
        .iter()
        .flat_map(|s| s.per_zone.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    html.push_str("<div class=\"charts\">");

    // Tasks per zone.
    let most = series
        .samples
        .iter()
        .flat_map(|s| s.per_zone.values())
        .copied()
        .max()
        .unwrap_or(0);
    let mut chart = Chart::new("zones", &series.service, x_max, f64::from(most), None);
    let mut legend = String::new();
    for (k, zone) in zones.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let points: Vec<(f64, f64)> = series
            .samples
            .iter()
            .map(|s| {
                (
                    s.at_s,
                    f64::from(s.per_zone.get(zone).copied().unwrap_or(0)),
                )
            })
            .collect();
        chart.line(zone, colour, &points, false);
        let _ = write!(
            legend,
            "<span><i class=\"swatch\" style=\"background:{colour}\"></i>{}</span>",
            escape(zone)
        );
    }
    chart.marks(events, &actions);
    let _ = write!(
        html,
        "<figure><figcaption>Running tasks per zone</figcaption>{}<div class=\"legend\">{legend}</div></figure>",
        chart.finish()
    );

    // Zone skew against maxSkew.
    if let Some(max_skew) = series.zone_max_skew {
        let top = series
            .samples
            .iter()
            .map(|s| s.zone_skew)
            .max()
            .unwrap_or(0);
        let mut chart = Chart::new(
            "skew",
            &series.service,
            x_max,
            f64::from(top.max(max_skew + 1)),
            None,
        );
        let points: Vec<(f64, f64)> = series
            .samples
            .iter()
            .map(|s| (s.at_s, f64::from(s.zone_skew)))
            .collect();
        chart.line("zone skew", COLOURS[0], &points, false);
        chart.limit("limit", "maxSkew", f64::from(max_skew), false);
        chart.marks(events, &actions);
        let _ = write!(
            html,
            "<figure><figcaption>Zone skew against maxSkew {max_skew}</figcaption>{}<div class=\"legend\"><span><i class=\"swatch\" style=\"background:{}\"></i>skew</span><span><i class=\"swatch\" style=\"background:#c62828\"></i>maxSkew</span></div></figure>",
            chart.finish(),
            COLOURS[0]
        );
    }

    // Desired count against the metric and its thresholds.
    if let Some(bounds) = series.scaling {
        let most = series
            .samples
            .iter()
            .map(|s| s.desired.max(s.running))
            .max()
            .unwrap_or(0)
            .max(bounds.max_tasks);
        let metric_top = series
            .samples
            .iter()
            .filter_map(|s| s.metric)
            .fold(bounds.scale_out_above * 1.2, f64::max);
        let mut chart = Chart::new(
            "scaling",
            &series.service,
            x_max,
            f64::from(most),
            Some(metric_top),
        );
        let desired: Vec<(f64, f64)> = series
            .samples
            .iter()
            .map(|s| (s.at_s, f64::from(s.desired)))
            .collect();
        chart.line("desired count", COLOURS[0], &desired, false);
        let metric: Vec<(f64, f64)> = series
            .samples
            .iter()
            .filter_map(|s| Some((s.at_s, s.metric?)))
            .collect();
        chart.line("metric", COLOURS[2], &metric, true);
        chart.limit("threshold", "scaleOutAbove", bounds.scale_out_above, true);
        chart.limit("threshold", "scaleInBelow", bounds.scale_in_below, true);
        chart.marks(events, &actions);
        let _ = write!(
            html,
            "<figure><figcaption>Desired count (left, {}..{} tasks) against the metric (right)</figcaption>{}<div class=\"legend\"><span><i class=\"swatch\" style=\"background:{}\"></i>desired count</span><span><i class=\"swatch\" style=\"background:{}\"></i>metric</span><span><i class=\"swatch\" style=\"background:#8d6e00\"></i>scaleOutAbove {}, scaleInBelow {}</span></div></figure>",
            bounds.min_tasks,
            bounds.max_tasks,
            chart.finish(),
            COLOURS[0],
            COLOURS[2],
            label(bounds.scale_out_above),
            label(bounds.scale_in_below)
        );
    }
    html.push_str("</div><div class=\"legend note\"><span>grey dotted lines: the timeline's events</span><span>green dotted lines: ECS's AZ rebalancing</span><span><i class=\"swatch action-stop\" style=\"background:#c62828\"></i>task stopped</span><span><i class=\"swatch\" style=\"background:#1565c0\"></i>count set</span><span><i class=\"swatch\" style=\"background:#8d6e00\"></i>scale-in protection</span></div></section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers_and_times_read_as_clocks() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(3.0), 5.0);
        assert_eq!(nice(7.0), 10.0);
        assert_eq!(nice(12.0), 20.0);
        assert_eq!(nice(250.0), 500.0);
        assert_eq!(clock(65.0), "01:05");
        assert_eq!(clock(3725.0), "1:02:05");
        assert_eq!(label(2.0), "2");
        assert_eq!(label(2.25), "2.2");
    }

    #[test]
    fn a_step_line_holds_each_value_until_the_next_sample() {
        let mut chart = Chart::new("zones", "web", 100.0, 4.0, None);
        chart.line("a", "#000", &[(0.0, 1.0), (50.0, 3.0)], false);
        let svg = chart.finish();
        // x: 42 + t/100 * (520 - 42 - 12); y: 194 - v/5 * 182.
        assert!(
            svg.contains(r#"points="42.0,157.6 275.0,157.6 275.0,84.8""#),
            "{svg}"
        );
        assert!(svg.contains(r#"data-name="a" data-last="3""#), "{svg}");
    }
}
