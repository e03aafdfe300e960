//! What operators look at rather than read, checked as they would see it:
//! the status page of a running `stevedore run` on moto and the simulator's
//! HTML report, each loaded in a real headless Chromium (Debian's package;
//! `scripts/test.sh` installs it), its rendered DOM checked for each
//! policy's bars, and a screenshot written under `target/tmp/pictures/`
//! for a person to look at. And the Grafana dashboard and Prometheus alerts
//! of `examples/grafana/`: every expression parses as PromQL and every
//! metric it names is one the running controller's `/metrics` serves.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::aws::{lines_of, run_controller, specs_dir, status_address, wait_for};
use crate::longrun::sigterm;

/// The Chromium binary: `STEVEDORE_CHROMIUM`, else the first of Debian's
/// and others' names on the PATH. Missing, the test fails and says how to
/// get it: it never skips.
fn chromium() -> PathBuf {
    if let Ok(path) = std::env::var("STEVEDORE_CHROMIUM") {
        return PathBuf::from(path);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(name).output()
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!(
        "no Chromium found: `apt-get install chromium` (scripts/test.sh does it), or set STEVEDORE_CHROMIUM"
    );
}

/// Chromium headless, with nothing of its own fetched, in a fresh profile.
fn headless(args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-extensions",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("Chromium runs");
    assert!(
        out.status.success(),
        "chromium {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The DOM of `url` once Chromium has loaded and rendered it.
fn rendered_dom(url: &str) -> String {
    String::from_utf8(headless(&["--dump-dom", url]).stdout).unwrap()
}

/// A screenshot of `url`, `width` x `height`, under target/tmp/pictures/.
fn screenshot(url: &str, name: &str, width: u32, height: u32) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pictures");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    headless(&[
        &format!("--screenshot={}", path.display()),
        &format!("--window-size={width},{height}"),
        url,
    ]);
    let png = std::fs::read(&path).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{} is a PNG", path.display());
    // Not blank: a page of one colour compresses to almost nothing.
    assert!(
        png.len() > 10_000,
        "{} holds {} bytes",
        path.display(),
        png.len()
    );
    path
}

/// The `data-` attribute `name` of each element of `dom` whose opening
/// tag starts `<tag` and holds `having`.
fn attributes(dom: &str, tag: &str, having: &str, name: &str) -> Vec<String> {
    dom.split(&format!("<{tag} "))
        .skip(1)
        .filter_map(|rest| rest.split('>').next())
        .filter(|open| open.contains(having))
        .filter_map(|open| {
            let value = open.split(&format!("{name}=\"")).nth(1)?;
            Some(value.split('"').next()?.to_owned())
        })
        .collect()
}

/// A DryRun policy on a cluster out of balance (4 tasks in zone a, 1 in
/// b, 1 in c): the page shows zone a beyond what maxSkew allows, and the
/// moves it would make; nothing is stopped.
#[tokio::test]
async fn the_status_page_shows_each_policys_bars_in_a_real_browser() {
    let (moto, _client) = crate::aws::demo([3, 1, 1, 0, 1, 0]).await;
    let serving = Serving::start(
        &moto,
        "  mode: DryRun\n  placement: {azBalanced: true}\n",
        "demo/web/web: Converging",
    );
    let url = format!("http://{}/", serving.address);

    let dom = rendered_dom(&url);
    assert!(
        dom.contains(r#"data-policy="web" data-service="web" data-state="Converging""#),
        "{dom}"
    );
    // A bar per zone with its tasks, zone a beyond the 1 + 1 a zone may
    // hold.
    let zones = attributes(&dom, "svg", r#"data-topology="zone""#, "data-skew");
    assert_eq!(zones, ["3"], "{dom}");
    let bars = |class: &str| attributes(&dom, "rect", class, "data-domain");
    let over = bars("bar over");
    assert!(over.contains(&"us-east-1a".to_owned()), "{over:?}\n{dom}");
    let tasks: Vec<String> = attributes(&dom, "rect", "us-east-1", "data-tasks");
    assert_eq!(tasks.len(), 3, "{dom}");
    let mut sorted = tasks.clone();
    sorted.sort();
    assert_eq!(sorted, ["1", "1", "4"], "{dom}");
    assert_eq!(
        attributes(&dom, "svg", r#"data-topology="zone""#, "data-max-skew"),
        ["1"]
    );
    assert_eq!(bars("bar ").len(), 3, "{dom}");
    assert_eq!(over, ["us-east-1a"], "{dom}");
    assert!(dom.contains("dry run"), "{dom}");
    // The move it would make now, listed.
    let planned = dom.matches(r#"class="planned-action""#).count();
    assert_eq!(planned, 1, "{dom}");
    assert!(dom.contains("stop task"), "{dom}");
    assert!(dom.contains(r#"id="ready">ready"#), "{dom}");
    // The cluster's budget: nothing spent (a DryRun spends nothing).
    assert!(
        dom.contains(
            r#"<section class="budget" data-cluster="demo" data-budget="hourly" data-held="false">"#
        ),
        "{dom}"
    );
    assert_eq!(
        attributes(&dom, "div", r#"class="limit""#, "data-limit"),
        ["in-flight", "moves"],
        "{dom}"
    );
    assert_eq!(
        attributes(&dom, "div", r#"data-limit="moves""#, "data-max"),
        ["2"]
    );
    assert_eq!(
        attributes(&dom, "div", r#"data-limit="moves""#, "data-used"),
        ["0"]
    );
    let status: serde_json::Value = serde_json::from_str(&crate::aws::http_text(&format!(
        "http://{}/status",
        serving.address
    )))
    .unwrap();
    assert_eq!(
        status["budgets"],
        serde_json::json!([{"cluster": "demo", "budget": "hourly", "inFlight": 0, "maxUnavailable": 1, "movesInPeriod": 0, "movesMax": 2, "per": "1h", "windowClosed": false}])
    );
    // And `stevedore status` says the same in a line.
    let table = std::process::Command::new(env!("CARGO_BIN_EXE_stevedore"))
        .args(["status", "--url", &format!("http://{}", serving.address)])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(
            "budgets:\n  demo/hourly: 0 of 1 unavailable, 0 of 2 moves in the last 1h; stops allowed\n"
        ),
        "{table}"
    );
    let shot = screenshot(&url, "status-page.png", 1100, 900);
    eprintln!("status page: {}", shot.display());
    serving.stop();
}

/// `stevedore run` on moto with one policy (`web.yaml`, the lines after
/// its target) and the cluster's DisruptionBudget (at most 1 task
/// unavailable, 2 moves an hour), serving its status on a free port, once
/// it has logged `ready_line`.
struct Serving {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    address: String,
    _specs: tempfile::TempDir,
}

impl Serving {
    fn start(moto: &crate::moto::Moto, policy: &str, ready_line: &str) -> Serving {
        let specs = specs_dir(policy);
        std::fs::write(
            specs.path().join("budget.yaml"),
            "apiVersion: stevedore.io/v1alpha1\nkind: DisruptionBudget\nmetadata: {name: hourly}\nspec: {cluster: demo, maxUnavailable: 1, moves: {max: 2, per: 1h}}\n",
        )
        .unwrap();
        let mut child = run_controller(
            moto,
            specs.path().to_str().unwrap(),
            &["--resync", "2s", "--listen", "127.0.0.1:0"],
        );
        let lines = lines_of(&mut child);
        let mut seen = vec![];
        let address = status_address(&lines, &mut seen);
        wait_for(&lines, ready_line, &mut seen);
        Serving {
            child,
            lines,
            seen,
            address,
            _specs: specs,
        }
    }

    /// SIGTERM, and the process exits 0.
    fn stop(mut self) {
        sigterm(&self.child);
        wait_for(&self.lines, "shutting down", &mut self.seen);
        assert_eq!(self.child.wait().unwrap().code(), Some(0));
    }
}

/// Every series name a `/metrics` text serves: a counter's with `_total`,
/// a histogram's buckets, sum and count, a gauge's as it is.
fn served(metrics: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// The metric names in a PromQL expression (after it parsed).
fn metrics_named(expr: &str) -> Vec<String> {
    let mut names = vec![];
    let mut rest = expr;
    while let Some(at) = rest.find("stevedore_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

/// Each PromQL expression of the dashboard (its panels' targets, its
/// variables' `label_values`) with Grafana's variables given values.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<String> {
    let grafana = |expr: &str| {
        expr.replace("$__rate_interval", "5m")
            .replace("$cluster", ".*")
    };
    let mut queries = vec![];
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push(grafana(target["expr"].as_str().unwrap()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = variable["query"].as_str()
            && let Some(inner) = q.strip_prefix("label_values(")
        {
            queries.push(inner.split(',').next().unwrap().trim().to_owned());
        }
    }
    queries
}

#[tokio::test]
async fn the_dashboard_and_the_alerts_query_only_metrics_the_controller_serves() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("examples/grafana/stevedore-dashboard.json").unwrap(),
    )
    .unwrap();
    let alerts: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string("examples/grafana/stevedore-alerts.yaml").unwrap(),
    )
    .unwrap();
    let rules: Vec<&serde_json::Value> = alerts["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    // What the issue asks to be alerted on, each a rule.
    let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    for wanted in [
        "StevedorePolicyUnsatisfiable",
        "StevedorePolicyNotFound",
        "StevedoreThrottlesRising",
        "StevedoreLeaseFailing",
        "StevedoreClusterNotHeld",
        "StevedoreNoSuccessfulPass",
    ] {
        assert!(names.contains(&wanted), "{wanted} in {names:?}");
    }
    let mut queries = dashboard_queries(&dashboard);
    queries.extend(rules.iter().map(|r| r["expr"].as_str().unwrap().to_owned()));
    for rule in &rules {
        assert!(rule["for"].is_string(), "{rule}");
        assert!(rule["annotations"]["summary"].is_string(), "{rule}");
    }

    // The controller's own /metrics, after a pass.
    let (moto, _client) = crate::aws::demo([1, 1, 1, 1, 1, 1]).await;
    let serving = Serving::start(
        &moto,
        "  placement: {azBalanced: true}\n",
        "demo/web/web: Satisfied",
    );
    let metrics = crate::aws::http_text(&format!("http://{}/metrics", serving.address));
    serving.stop();

    let served = served(&metrics);
    let mut checked = 0;
    for query in &queries {
        promql_parser::parser::parse(query)
            .unwrap_or_else(|e| panic!("`{query}` is not PromQL: {e}"));
        let named = metrics_named(query);
        assert!(!named.is_empty(), "`{query}` names no stevedore metric");
        for name in named {
            assert!(
                served.contains(&name),
                "`{query}` queries {name}, which /metrics does not serve:\n{metrics}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} metric references checked");
    // The series the alerts need carry values after one pass.
    for sample in [
        r#"stevedore_policy_state{cluster="demo",policy="web",service="web",state="Satisfied"} 1"#,
        "stevedore_resync_period_seconds 2",
        r#"stevedore_cluster_held{cluster="demo"} 1"#,
        "stevedore_last_success_timestamp_seconds{cluster=\"demo\"} ",
    ] {
        assert!(metrics.contains(sample), "{sample} in\n{metrics}");
    }
}

/// `stevedore sim SCENARIO --output json --html` into `dir`: the JSON
/// report, the page's URL, and its DOM as Chromium renders it.
fn rendered_sim_report(
    dir: &std::path::Path,
    scenario: &str,
) -> (serde_json::Value, String, String) {
    let page = dir.join(format!("{scenario}.html"));
    let out = Command::new(env!("CARGO_BIN_EXE_stevedore"))
        .args(["sim", &format!("examples/scenarios/{scenario}.yaml")])
        .args(["--output", "json", "--html"])
        .arg(&page)
        .output()
        .unwrap();
    let report = crate::json_of_success(&out);
    let url = format!("file://{}", page.display());
    let dom = rendered_dom(&url);
    (report, url, dom)
}

/// The SVG chart of `kind` in a section of a rendered page.
fn chart_in<'a>(section: &'a str, kind: &str) -> Option<&'a str> {
    section
        .split("<svg ")
        .find(|s| s.starts_with(&format!("class=\"chart\" data-chart=\"{kind}\"")))
}

/// The page of a budgeted run with restarts (`budget-restarts`), rendered
/// by Chromium: the budget's charts show the stops in the last 10 minutes
/// reaching moves.max and never beyond it, as the report counts them, and
/// the tasks stopped and not yet replaced, with a mark per stop.
#[test]
fn the_simulator_report_plots_the_budget_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let (report, url, dom) = rendered_sim_report(dir.path(), "budget-restarts");
    let section = dom
        .split("<section ")
        .find(|s| s.starts_with(r#"class="service budget" data-budget="slow-and-steady""#))
        .unwrap_or_else(|| panic!("no budget section:\n{dom}"));
    let chart = |kind: &str| {
        chart_in(section, kind).unwrap_or_else(|| panic!("no {kind} chart:\n{section}"))
    };
    let moves = chart("budget-moves");
    let disruption = &report["disruption"]["demo"];
    let most = disruption["maxMovesInWindow"].as_u64().unwrap();
    assert_eq!(most, 3);
    assert!(
        moves.contains(&format!(
            r#"data-name="budget-moves" data-last="0" data-peak="{most}""#
        )),
        "{moves}"
    );
    assert!(
        moves.contains(r#"data-name="moves.max" data-value="3""#),
        "{moves}"
    );
    let stops = report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "stopTask")
        .count();
    assert_eq!(stops, 10);
    assert_eq!(moves.matches(r#"class="action "#).count(), stops, "{moves}");
    // The restarts are on it, as timeline events.
    assert_eq!(moves.matches(r#"class="event""#).count(), 3, "{moves}");
    let stopped = chart("budget-stopped");
    let peak: u64 = attributes(
        stopped,
        "polyline",
        r#"data-name="budget-stopped""#,
        "data-peak",
    )[0]
    .parse()
    .unwrap();
    assert!(
        (1..=disruption["peakStopped"].as_u64().unwrap()).contains(&peak),
        "{peak}: {disruption}"
    );
    let shot = screenshot(&url, "sim-report-budget.png", 1150, 700);
    eprintln!("budget report: {}", shot.display());
}

/// `stevedore sim --html`: the page of a scaling scenario and of a zone's
/// failure, rendered by Chromium, shows per service a line per zone, the
/// skew against maxSkew, the count against the metric and its thresholds,
/// a mark per action of the JSON report and a line per timeline event.
#[test]
fn the_simulator_report_plots_each_service_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    for (scenario, picture) in [
        ("load-ramp", "sim-report-load-ramp.png"),
        ("zone-failure-and-recovery", "sim-report-zone-failure.png"),
        ("ecs-az-rebalancing", "sim-report-ecs-az-rebalancing.png"),
    ] {
        let (report, url, dom) = rendered_sim_report(dir.path(), scenario);
        let events = report["reactions"].as_array().unwrap().len();
        assert!(
            events > 0 || scenario != "zone-failure-and-recovery",
            "{scenario} has events"
        );
        for service in report["services"].as_array().unwrap() {
            let name = service["service"].as_str().unwrap();
            let section = dom
                .split("<section ")
                .find(|s| s.contains(&format!("data-service=\"{name}\"")))
                .unwrap_or_else(|| panic!("{scenario}: no section for {name}:\n{dom}"));
            let zones = service["tasksPerZone"].as_object().unwrap();
            let chart = |kind: &str| {
                chart_in(section, kind)
                    .unwrap_or_else(|| panic!("{scenario}/{name}: no {kind} chart:\n{section}"))
            };
            // A line per zone, each ending at the report's final count.
            let lines = chart("zones");
            for (zone, tasks) in zones {
                assert!(
                    lines.contains(&format!("data-name=\"{zone}\" data-last=\"{tasks}\"")),
                    "{scenario}/{name}: zone {zone} ends at {tasks}:\n{lines}"
                );
            }
            // A mark per action of the service, a line per event.
            let actions = report["actions"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["service"] == service["service"])
                .count();
            assert_eq!(lines.matches("class=\"action ").count(), actions, "{lines}");
            assert_eq!(lines.matches("class=\"event\"").count(), events, "{lines}");
            // ECS's own rebalancing events, on its service's charts.
            let ecs = report["ecsEvents"].as_array().map_or(0, |e| {
                e.iter()
                    .filter(|e| e["service"] == service["service"])
                    .count()
            });
            assert_eq!(lines.matches("class=\"ecs-event\"").count(), ecs, "{lines}");
            if scenario == "ecs-az-rebalancing" && name == "web" {
                assert_eq!(ecs, 2, "started and completed:\n{report:#}");
            }
            let skew = chart("skew");
            assert!(
                skew.contains(r#"data-name="maxSkew" data-value="1""#),
                "{skew}"
            );
            if scenario == "load-ramp" {
                let scaling = chart("scaling");
                for wanted in [
                    r#"data-name="scaleOutAbove" data-value="70""#,
                    r#"data-name="scaleInBelow" data-value="30""#,
                    r#"data-name="metric""#,
                    r#"data-name="desired count""#,
                ] {
                    assert!(scaling.contains(wanted), "{wanted}:\n{scaling}");
                }
                assert!(actions > 0, "load-ramp scales");
            }
        }
        let shot = screenshot(&url, picture, 1200, 900);
        eprintln!("sim report: {}", shot.display());
    }
}
