//! The page `/` serves: the same document as `/status`, rendered on the
//! server as one HTML page (inline CSS and SVG, no script, nothing fetched)
//! that refreshes itself. Per policy and service: its state and reason, and
//! each spread constraint's tasks per domain as bars against the most a
//! domain may hold (the emptiest plus `maxSkew`); then the last actions.
//!
//! The elements carry `data-` attributes (policy, service, state, domain,
//! tasks) so that a test reading the rendered DOM finds what it shows.

use std::fmt::Write as _;

use super::{ActionRecord, ClusterBudget, PolicyStatus, StatusDoc};
use crate::plan::ConstraintReport;

/// Seconds between the page's refreshes.
pub const REFRESH_S: u32 = 10;

/// Domains drawn per constraint; the rest are summed up in a line.
const MAX_BARS: usize = 30;

/// Actions listed, newest first.
const ACTIONS_SHOWN: usize = 20;

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2330; background: #f6f7f9; }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
.meta { color: #5a6272; margin-bottom: 1em; }
.badge { display: inline-block; padding: 0 .5em; border-radius: .6em; color: #fff; font-weight: 600; }
.Satisfied { background: #2e7d32; } .Converging { background: #1565c0; }
.Unsatisfiable { background: #c62828; } .Paused { background: #8d6e00; }
.NotFound { background: #6a1b9a; } .ready { background: #2e7d32; } .not-ready { background: #c62828; }
.policy, .budget { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: .8em 1em; margin: 0 0 1em; }
.policy h2, .budget h2 { font-size: 1.1em; margin: 0 0 .3em; }
.limit { margin: .2em 0; }
.limit meter { width: 8em; height: 1em; vertical-align: middle; margin-right: .4em; }
.reason { margin: .3em 0 .6em; white-space: pre-wrap; }
.planned ul { margin: .2em 0; } .planned li { font-size: .92em; }
.constraint { margin: .4em 0 .8em; }
.constraint h3 { font-size: .95em; margin: 0 0 .2em; font-weight: 600; }
svg text { font: 12px system-ui, sans-serif; fill: #1d2330; }
rect.ok { fill: #64b5f6; } rect.over { fill: #e57373; }
line.allowed { stroke: #c62828; stroke-dasharray: 4 3; stroke-width: 1.5; }
table { border-collapse: collapse; background: #fff; width: 100%; }
td, th { border: 1px solid #dde1e7; padding: .25em .5em; text-align: left; vertical-align: top; }
td.failed { color: #c62828; }
.more { color: #5a6272; font-size: .9em; }
";

/// The whole page.
pub fn render(doc: &StatusDoc) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>stevedore</title><style>{STYLE}</style></head><body>\n"
    );
    let (class, word) = if doc.ready {
        ("ready", "ready")
    } else {
        ("not-ready", "not ready")
    };
    let _ = write!(
        html,
        "<h1>stevedore <span class=\"badge {class}\" id=\"ready\">{word}</span></h1>\n<div class=\"meta\">"
    );
    let clusters: Vec<String> = doc
        .clusters
        .iter()
        .map(|c| {
            let mut s = escape(&c.name);
            if !c.held {
                s.push_str(" (held by another replica)");
            } else if !c.read {
                s.push_str(" (not read yet)");
            }
            s
        })
        .collect();
    let _ = write!(
        html,
        "{} {}",
        crate::words::count(doc.clusters.len() as u64, "cluster"),
        if clusters.is_empty() {
            String::new()
        } else {
            format!("({})", clusters.join(", "))
        }
    );
    if let Some(commit) = &doc.commit {
        let _ = write!(html, " · policies from commit {}", escape(commit));
    }
    let _ = writeln!(
        html,
        " · refreshes every {REFRESH_S} s · <a href=\"/status\">/status</a> (JSON) · <a href=\"/metrics\">/metrics</a></div>"
    );
    if doc.policies.is_empty() {
        html.push_str("<p id=\"no-policies\">No policy has been planned yet.</p>\n");
    }
    for budget in &doc.budgets {
        budget_section(&mut html, budget);
    }
    for policy in &doc.policies {
        policy_section(&mut html, policy);
    }
    actions_table(&mut html, &doc.last_actions);
    html.push_str("</body></html>\n");
    html
}

/// A cluster's DisruptionBudget: each limit as spent against it, and what
/// holds every stop, if anything does.
fn budget_section(html: &mut String, b: &ClusterBudget) {
    let u = &b.usage;
    let _ = writeln!(
        html,
        "<section class=\"budget\" data-cluster=\"{}\" data-budget=\"{}\" data-held=\"{}\">\n<h2>{} / DisruptionBudget {} <span class=\"badge {}\">{}</span></h2>",
        escape(&b.cluster),
        escape(&u.budget),
        u.held.is_some(),
        escape(&b.cluster),
        escape(&u.budget),
        if u.held.is_some() {
            "Converging"
        } else {
            "Satisfied"
        },
        if u.held.is_some() {
            "holding stops"
        } else {
            "stops allowed"
        },
    );
    let mut limits = vec![];
    if let Some(max) = u.max_unavailable {
        limits.push((
            "in-flight",
            u.in_flight,
            max,
            format!(
                "{} stopped and not yet replaced (maxUnavailable {max})",
                crate::words::count(u.in_flight, "task")
            ),
        ));
    }
    if let (Some(used), Some(max), Some(per)) = (u.moves_in_period, u.moves_max, &u.per) {
        limits.push((
            "moves",
            used,
            max,
            format!(
                "{} in the last {per} (moves.max {max})",
                crate::words::count(used, "move")
            ),
        ));
    }
    for (kind, used, max, text) in limits {
        // A meter of what is spent; full (or beyond, after a restart that
        // read back more than the budget) reads as spent.
        let _ = writeln!(
            html,
            "<div class=\"limit\" data-limit=\"{kind}\" data-used=\"{used}\" data-max=\"{max}\"><meter min=\"0\" max=\"{max}\" value=\"{}\"></meter> {}</div>",
            used.min(max),
            escape(&text)
        );
    }
    if u.window_closed {
        html.push_str("<div class=\"limit\" data-limit=\"window\">outside its windows</div>\n");
    }
    if let Some(why) = &u.held {
        let _ = writeln!(html, "<p class=\"reason\">{}</p>", escape(why));
    }
    html.push_str("</section>\n");
}

fn policy_section(html: &mut String, p: &PolicyStatus) {
    let _ = write!(
        html,
        "<section class=\"policy\" data-cluster=\"{}\" data-policy=\"{}\" data-service=\"{}\" data-state=\"{}\">\n\
         <h2>{} / {} <span class=\"badge {}\">{}</span>{}</h2>\n",
        escape(&p.cluster),
        escape(&p.policy),
        escape(&p.service),
        escape(&p.state),
        escape(&p.policy),
        if p.service.is_empty() {
            "(no service)".to_owned()
        } else {
            escape(&p.service)
        },
        escape(&p.state),
        escape(&p.state),
        if p.dry_run { " <em>dry run</em>" } else { "" },
    );
    let reason = p.conditions.first().map_or("", |c| c.message.as_str());
    let _ = writeln!(html, "<div class=\"reason\">{}</div>", escape(reason));
    if let Some(by) = &p.zones_balanced_by {
        let _ = writeln!(
            html,
            "<div class=\"zones-by\">zones balanced by {}; hosts and attributes by stevedore</div>",
            escape(by)
        );
    }
    if let Some(scaling) = &p.scaling {
        let _ = writeln!(
            html,
            "<div class=\"scaling\">scaling: {}</div>",
            escape(scaling)
        );
    }
    for c in &p.constraints {
        constraint_bars(html, c);
    }
    if !p.planned.is_empty() {
        let _ = write!(
            html,
            "<div class=\"planned\">{}:<ul>",
            if p.dry_run {
                "would do now (dry run)"
            } else {
                "planned by the last pass"
            }
        );
        for action in &p.planned {
            let _ = write!(html, "<li class=\"planned-action\">{}</li>", escape(action));
        }
        html.push_str("</ul></div>\n");
    }
    html.push_str("</section>\n");
}

/// One constraint: a bar per domain, and a dashed line at the most a
/// domain may hold.
fn constraint_bars(html: &mut String, c: &ConstraintReport) {
    // The emptiest domain from the skew: a host constraint lists only the
    // hosts with tasks (thousands of empty ones would say nothing).
    let fullest = c
        .tasks_per_domain
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0);
    let least = fullest.saturating_sub(c.skew);
    let allowed = least + c.max_skew;
    let mut domains: Vec<&(String, u32)> = c.tasks_per_domain.iter().collect();
    let hidden = domains.len().saturating_sub(MAX_BARS);
    domains.sort_by(|a, b| a.0.cmp(&b.0));
    if hidden > 0 {
        // The fullest are the ones to look at.
        domains.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        domains.truncate(MAX_BARS);
    }
    let most = domains.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let scale = most.max(allowed).max(1) as f64;
    let (label_w, bar_w, row_h) = (150.0, 320.0, 20.0);
    let width = label_w + bar_w + 50.0;
    let height = row_h * domains.len() as f64 + 6.0;
    let _ = write!(
        html,
        "<div class=\"constraint\"><h3>{}: skew {} (maxSkew {}); a domain may hold up to {}</h3>\n\
         <svg class=\"bars\" data-topology=\"{}\" data-skew=\"{}\" data-max-skew=\"{}\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"tasks per {} domain\">\n",
        escape(&c.topology),
        c.skew,
        c.max_skew,
        crate::words::count(allowed, "task"),
        escape(&c.topology),
        c.skew,
        c.max_skew,
        escape(&c.topology),
    );
    for (row, (domain, tasks)) in domains.iter().enumerate() {
        let y = row as f64 * row_h + 3.0;
        let w = f64::from(*tasks) / scale * bar_w;
        let class = if *tasks > allowed { "over" } else { "ok" };
        let _ = writeln!(
            html,
            "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect class=\"bar {class}\" data-domain=\"{}\" data-tasks=\"{tasks}\" x=\"{label_w}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{:.1}\"><title>{}: {}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\">{tasks}</text>",
            label_w - 6.0,
            y + row_h * 0.7,
            escape(domain),
            escape(domain),
            row_h - 5.0,
            escape(domain),
            crate::words::count(*tasks, "task"),
            label_w + w + 4.0,
            y + row_h * 0.7,
        );
    }
    let x = label_w + f64::from(allowed) / scale * bar_w;
    let _ = write!(
        html,
        "<line class=\"allowed\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"0\" y2=\"{height}\"><title>at most {allowed} per domain (the emptiest holds {least}, maxSkew {})</title></line>\n</svg>",
        c.max_skew
    );
    if least == 0 && !c.tasks_per_domain.iter().any(|(_, n)| *n == 0) {
        html.push_str("<div class=\"more\">domains without tasks are not listed</div>");
    }
    if hidden > 0 {
        let rest: Vec<u32> = {
            let mut all: Vec<u32> = c.tasks_per_domain.iter().map(|(_, n)| *n).collect();
            all.sort_unstable_by(|a, b| b.cmp(a));
            all.split_off(MAX_BARS)
        };
        let _ = write!(
            html,
            "<div class=\"more\">and {} more with {} to {} tasks each</div>",
            hidden,
            rest.iter().min().unwrap_or(&0),
            rest.iter().max().unwrap_or(&0)
        );
    }
    html.push_str("</div>\n");
}

fn actions_table(html: &mut String, actions: &[ActionRecord]) {
    html.push_str("<h2>Last actions</h2>\n");
    if actions.is_empty() {
        html.push_str("<p id=\"no-actions\">No action yet.</p>\n");
        return;
    }
    html.push_str(
        "<table id=\"actions\"><tr><th>time</th><th>cluster</th><th>policy / service</th><th>action</th><th>result</th></tr>\n",
    );
    for a in actions.iter().rev().take(ACTIONS_SHOWN) {
        let failed = a.result != "ok";
        let _ = writeln!(
            html,
            "<tr class=\"action\"><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td{}>{}</td></tr>",
            escape(&a.time),
            escape(&a.cluster),
            escape(&a.policy),
            escape(&a.service),
            escape(&a.action),
            if failed { " class=\"failed\"" } else { "" },
            escape(&a.result)
        );
    }
    html.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Condition;

    fn policy(constraints: Vec<ConstraintReport>) -> PolicyStatus {
        PolicyStatus {
            cluster: "prod".into(),
            policy: "web-spread".into(),
            service: "web".into(),
            state: "Converging".into(),
            conditions: vec![Condition {
                kind: "Satisfied".into(),
                status: "False".into(),
                reason: "Converging".into(),
                message: "1 move needed, 1 now <maxUnavailable 1>".into(),
                last_transition_time: "2026-12-07T00:00:00Z".into(),
            }],
            scaling: None,
            constraints,
            moves_remaining: 1,
            dry_run: false,
            planned: vec![],
            zones_balanced_by: None,
        }
    }

    #[test]
    fn each_domain_is_a_bar_and_those_beyond_the_skew_are_marked() {
        let doc = StatusDoc {
            ready: true,
            policies: vec![policy(vec![ConstraintReport {
                topology: "zone".into(),
                max_skew: 1,
                skew: 3,
                tasks_per_domain: vec![
                    ("us-east-1a".into(), 4),
                    ("us-east-1b".into(), 1),
                    ("us-east-1c".into(), 2),
                ],
            }])],
            ..StatusDoc::default()
        };
        let html = render(&doc);
        assert!(
            html.contains(r#"data-policy="web-spread" data-service="web" data-state="Converging""#),
            "{html}"
        );
        // 1a holds 4 where at most 1 + 1 = 2 may be: over; the others fit.
        assert!(
            html.contains(r#"class="bar over" data-domain="us-east-1a" data-tasks="4""#),
            "{html}"
        );
        assert!(
            html.contains(r#"class="bar ok" data-domain="us-east-1b" data-tasks="1""#),
            "{html}"
        );
        assert!(
            html.contains(r#"class="bar ok" data-domain="us-east-1c" data-tasks="2""#),
            "{html}"
        );
        assert!(html.contains("a domain may hold up to 2 tasks"), "{html}");
        // The reason is escaped, and the page refreshes itself.
        assert!(
            html.contains("1 move needed, 1 now &lt;maxUnavailable 1&gt;"),
            "{html}"
        );
        assert!(html.contains(r#"http-equiv="refresh""#));
        assert!(!html.contains("<script"), "no script");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing fetched"
        );
    }

    #[test]
    fn many_hosts_show_the_fullest_and_sum_up_the_rest() {
        let tasks_per_domain: Vec<(String, u32)> =
            (0..100).map(|h| (format!("i-{h:03}"), h % 4)).collect();
        let html = render(&StatusDoc {
            policies: vec![policy(vec![ConstraintReport {
                topology: "host".into(),
                max_skew: 1,
                skew: 3,
                tasks_per_domain,
            }])],
            ..StatusDoc::default()
        });
        assert_eq!(html.matches("<rect class=\"bar").count(), MAX_BARS);
        assert!(
            html.contains("and 70 more with 0 to 2 tasks each"),
            "{html}"
        );
        assert!(html.contains("not ready"));
        assert!(html.contains("No action yet."));
    }

    #[test]
    fn a_service_whose_zones_ecs_balances_says_so() {
        let mut p = policy(vec![]);
        p.zones_balanced_by = Some("ECS (AZ rebalancing)".into());
        let html = render(&StatusDoc {
            policies: vec![p],
            ..StatusDoc::default()
        });
        assert!(
            html.contains(
                "zones balanced by ECS (AZ rebalancing); hosts and attributes by stevedore"
            ),
            "{html}"
        );
        assert!(
            !render(&StatusDoc {
                policies: vec![policy(vec![])],
                ..StatusDoc::default()
            })
            .contains("zones balanced by")
        );
    }

    #[test]
    fn a_budget_shows_each_limit_spent_and_what_holds_it() {
        let held = ClusterBudget {
            cluster: "demo".into(),
            usage: crate::plan::budget::BudgetUse {
                budget: "hourly".into(),
                in_flight: 1,
                max_unavailable: Some(2),
                moves_in_period: Some(4),
                moves_max: Some(3),
                per: Some("1h".into()),
                window_closed: true,
                held: Some("waiting for window 02:00-04:00 Europe/Berlin (opens in 3h12m)".into()),
            },
        };
        let html = render(&StatusDoc {
            budgets: vec![held.clone()],
            ..StatusDoc::default()
        });
        assert!(
            html.contains(r#"<section class="budget" data-cluster="demo" data-budget="hourly" data-held="true">"#),
            "{html}"
        );
        assert!(html.contains(r#"data-limit="in-flight" data-used="1" data-max="2"><meter min="0" max="2" value="1"></meter> 1 task stopped and not yet replaced (maxUnavailable 2)"#), "{html}");
        // Beyond the rate (stops read back after a restart): a full meter.
        assert!(html.contains(r#"data-limit="moves" data-used="4" data-max="3"><meter min="0" max="3" value="3"></meter> 4 moves in the last 1h (moves.max 3)"#), "{html}");
        assert!(html.contains(r#"data-limit="window""#), "{html}");
        assert!(
            html.contains(r#"<p class="reason">waiting for window 02:00-04:00 Europe/Berlin (opens in 3h12m)</p>"#),
            "{html}"
        );
        // Free, with a window and no rate: no moves meter, no reason.
        let free = ClusterBudget {
            cluster: "demo".into(),
            usage: crate::plan::budget::BudgetUse {
                budget: "nights".into(),
                max_unavailable: Some(2),
                ..Default::default()
            },
        };
        let html = render(&StatusDoc {
            budgets: vec![free],
            ..StatusDoc::default()
        });
        assert!(html.contains(r#"data-held="false""#), "{html}");
        assert!(html.contains("stops allowed"), "{html}");
        assert!(!html.contains(r#"data-limit="moves""#), "{html}");
        assert!(!html.contains(r#"data-limit="window""#), "{html}");
        assert!(!html.contains(r#"class="reason""#), "{html}");
        assert!(!render(&StatusDoc::default()).contains("class=\"budget\""));
    }

    #[test]
    fn the_last_actions_are_listed_newest_first_failures_marked() {
        let action = |n: usize, result: &str| ActionRecord {
            time: format!("t{n:02}"),
            cluster: "demo".into(),
            policy: "web".into(),
            service: "web".into(),
            rule: "spread zone".into(),
            action: format!("stop task {n} <x>"),
            result: result.into(),
        };
        let mut last_actions: Vec<ActionRecord> = (0..24).map(|n| action(n, "ok")).collect();
        last_actions.push(action(24, "StopTask: throttled"));
        let html = render(&StatusDoc {
            last_actions,
            ..StatusDoc::default()
        });
        let rows: Vec<&str> = html
            .lines()
            .filter(|l| l.starts_with("<tr class=\"action\">"))
            .collect();
        assert_eq!(rows.len(), ACTIONS_SHOWN);
        assert!(rows[0].contains("<td>t24</td>"), "{}", rows[0]);
        assert!(rows[ACTIONS_SHOWN - 1].contains("<td>t05</td>"));
        assert!(
            rows[0].ends_with("<td class=\"failed\">StopTask: throttled</td></tr>"),
            "{}",
            rows[0]
        );
        assert!(rows[1..].iter().all(|r| r.ends_with("<td>ok</td></tr>")));
        assert!(rows[1].contains("stop task 23 &lt;x&gt;"), "{}", rows[1]);
        assert!(!html.contains("no-actions"));
        assert!(render(&StatusDoc::default()).contains("No action yet."));
    }

    #[test]
    fn a_host_constraint_lists_hosts_with_tasks_and_counts_the_empty_ones() {
        // Skew 4 over hosts a-1=4, b-1=2 and empty ones: the emptiest
        // holds 0, so a host may hold 1.
        let html = render(&StatusDoc {
            policies: vec![policy(vec![ConstraintReport {
                topology: "host".into(),
                max_skew: 1,
                skew: 4,
                tasks_per_domain: vec![("a-1".into(), 4), ("b-1".into(), 2)],
            }])],
            ..StatusDoc::default()
        });
        assert!(html.contains("a domain may hold up to 1 task"), "{html}");
        assert!(
            html.contains(r#"class="bar over" data-domain="b-1" data-tasks="2""#),
            "{html}"
        );
        assert!(
            html.contains("domains without tasks are not listed"),
            "{html}"
        );
        // Every host listed, the emptiest among them: nothing left unsaid.
        let all_listed = render(&StatusDoc {
            policies: vec![policy(vec![ConstraintReport {
                topology: "host".into(),
                max_skew: 1,
                skew: 2,
                tasks_per_domain: vec![("a-1".into(), 3), ("b-1".into(), 1)],
            }])],
            ..StatusDoc::default()
        });
        assert!(
            all_listed.contains("a domain may hold up to 2 tasks"),
            "{all_listed}"
        );
        assert!(!all_listed.contains("not listed"), "{all_listed}");
        // An empty domain listed as such needs no note either.
        let empty_listed = render(&StatusDoc {
            policies: vec![policy(vec![ConstraintReport {
                topology: "zone".into(),
                max_skew: 1,
                skew: 2,
                tasks_per_domain: vec![("a".into(), 2), ("c".into(), 0)],
            }])],
            ..StatusDoc::default()
        });
        assert!(!empty_listed.contains("not listed"), "{empty_listed}");
    }

    #[test]
    fn bars_are_drawn_to_scale_with_the_limit_where_it_falls() {
        // 4, 1, 2 with maxSkew 1: a zone may hold 2; the scale is the
        // fullest (4) over 320 px, after 150 px of labels, 20 px a row.
        let html = render(&StatusDoc {
            policies: vec![policy(vec![ConstraintReport {
                topology: "zone".into(),
                max_skew: 1,
                skew: 3,
                tasks_per_domain: vec![("a".into(), 4), ("b".into(), 1), ("c".into(), 2)],
            }])],
            ..StatusDoc::default()
        });
        for bar in [
            r#"data-domain="a" data-tasks="4" x="150" y="3.0" width="320.0" height="15.0""#,
            r#"data-domain="b" data-tasks="1" x="150" y="23.0" width="80.0" height="15.0""#,
            r#"data-domain="c" data-tasks="2" x="150" y="43.0" width="160.0" height="15.0""#,
            // Labels end 6 px before the bars, counts start 4 px after.
            r#"<text x="144" y="17.0" text-anchor="end">a</text>"#,
            r#"<text x="474.0" y="17.0">4</text>"#,
            r#"<text x="234.0" y="37.0">1</text>"#,
            // The limit at 2 of 4: half way.
            r#"<line class="allowed" x1="310.0" x2="310.0" y1="0" y2="66""#,
            r#"width="520" height="66" viewBox="0 0 520 66""#,
        ] {
            assert!(html.contains(bar), "{bar}:\n{html}");
        }
        // A domain exactly at the limit is within it.
        assert!(html.contains(r#"class="bar ok" data-domain="c""#));
    }

    #[test]
    fn the_page_says_which_clusters_this_replica_holds_and_what_was_planned() {
        let mut p = policy(vec![]);
        p.planned = vec!["stop task t1 on a1 (us-east-1a): move 1 of 2".into()];
        let html = render(&StatusDoc {
            ready: true,
            policies: vec![p],
            clusters: vec![
                crate::status::ClusterHeld {
                    name: "prod".into(),
                    held: true,
                    read: true,
                },
                crate::status::ClusterHeld {
                    name: "eu".into(),
                    held: false,
                    read: false,
                },
                crate::status::ClusterHeld {
                    name: "new".into(),
                    held: true,
                    read: false,
                },
            ],
            ..StatusDoc::default()
        });
        assert!(
            html.contains("3 clusters (prod, eu (held by another replica), new (not read yet))"),
            "{html}"
        );
        assert!(html.contains("planned by the last pass:"), "{html}");
        assert!(html.contains(
            r#"<li class="planned-action">stop task t1 on a1 (us-east-1a): move 1 of 2</li>"#
        ));
        // Nothing planned, no list.
        assert!(
            !render(&StatusDoc {
                policies: vec![policy(vec![])],
                ..StatusDoc::default()
            })
            .contains("planned by the last pass")
        );
    }

    #[test]
    fn exactly_as_many_domains_as_bars_are_all_drawn() {
        let tasks_per_domain: Vec<(String, u32)> = (0..MAX_BARS)
            .map(|h| (format!("i-{h:03}"), 1 + (h % 2) as u32))
            .collect();
        let html = render(&StatusDoc {
            policies: vec![policy(vec![ConstraintReport {
                topology: "host".into(),
                max_skew: 1,
                skew: 1,
                tasks_per_domain,
            }])],
            ..StatusDoc::default()
        });
        assert_eq!(html.matches("<rect class=\"bar").count(), MAX_BARS);
        assert!(!html.contains("more with"), "{html}");
    }
}
