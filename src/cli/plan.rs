//! `stevedore plan`: what the controller would do now, with the reason for
//! every action, against live ECS or a scenario's initial state.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Endpoint, Output, exit, policies_or_report, write_json};
use crate::spec;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy files or directories, or one git repository URL (with
    /// --sim, default: the scenario's own).
    #[arg(long)]
    pub specs: Vec<PathBuf>,
    /// With a git repository: the branch or tag to plan.
    #[arg(long, default_value = "main")]
    pub git_ref: String,
    /// Plan against this scenario's initial state instead of live ECS.
    #[arg(long, value_name = "SCENARIO")]
    pub sim: Option<PathBuf>,
    /// Only this cluster, by name or ARN (by default every cluster the
    /// policies name).
    #[arg(long, value_parser = super::cluster_name)]
    pub cluster: Option<String>,
    #[command(flatten)]
    pub endpoint: Endpoint,
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// Exit 1 when a policy matches nothing (its service or cluster does
    /// not exist: NotFound), for CI.
    #[arg(long)]
    pub fail_on_idle: bool,
}

pub fn plan(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let plans = match &args.sim {
        Some(scenario) => plan_scenario(&args.specs, scenario, err).map(|p| vec![p]),
        None => plan_live(args, err),
    };
    let plans = match plans {
        Ok(plans) => plans,
        Err(code) => return code,
    };
    let written = match (args.output, &args.sim) {
        (Output::Json, Some(_)) => write_json(&plans[0], out),
        (Output::Json, None) => write_json(&plans, out),
        (Output::Human, Some(_)) => write_plan(&plans[0], out),
        (Output::Human, None) => plans.iter().try_for_each(|p| {
            writeln!(out, "cluster {}:", p.cluster).and_then(|()| write_plan(p, out))
        }),
    };
    if written.is_err() {
        return exit::USAGE;
    }
    let idle: Vec<&str> = plans
        .iter()
        .flat_map(|p| &p.statuses)
        .filter(|s| s.state == crate::plan::State::NotFound)
        .map(|s| s.policy.as_str())
        .collect();
    if args.fail_on_idle && !idle.is_empty() {
        let _ = writeln!(
            err,
            "error: {} matching nothing: {}",
            if idle.len() == 1 {
                "1 policy"
            } else {
                "policies"
            },
            idle.join(", ")
        );
        return exit::INVALID;
    }
    exit::OK
}

/// `plan --sim`: the controller's own path (read, verify, metrics) on the
/// simulator, at the scenario's start.
fn plan_scenario(
    specs: &[PathBuf],
    scenario: &Path,
    err: &mut dyn Write,
) -> Result<crate::plan::Plan, u8> {
    let Some(scenario) = super::sim::load_scenario(Some(scenario), err) else {
        return Err(exit::USAGE);
    };
    let specs = if specs.is_empty() {
        spec::Specs {
            policies: scenario.policies,
            budgets: scenario.budgets,
            ..Default::default()
        }
    } else {
        policies_or_report(spec::load_paths(specs), err)?
    };
    let cluster = scenario.sim.cluster.clone();
    let backend = crate::sim::SimBackend::new(scenario.sim);
    let mut plan = match super::runtime().block_on(crate::controller::plan_once(
        &backend,
        &cluster,
        &specs,
        scenario.start_at,
    )) {
        Ok(plan) => plan,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return Err(exit::INVALID);
        }
    };
    // The simulated ECS has one cluster: policies of any other match nothing.
    for other in crate::controller::clusters(&specs.policies, None) {
        if other != cluster {
            let absent = crate::plan::cluster_not_found(&specs.policies, &other);
            plan.statuses.extend(absent.statuses);
        }
    }
    Ok(plan)
}

/// Loads policies for a live command, reporting problems.
fn live_policies(specs: &[PathBuf], git_ref: &str, err: &mut dyn Write) -> Result<spec::Specs, u8> {
    if specs.is_empty() {
        let _ = writeln!(err, "error: --specs is required (or --sim SCENARIO)");
        return Err(exit::USAGE);
    }
    let loaded = match specs {
        [url] if crate::source::git::is_url(url) => {
            let url = super::run::git_url(url, err)?;
            // A throwaway clone: `plan` runs once.
            let Ok(cache) = tempfile_dir() else {
                let _ = writeln!(err, "error: no temporary directory for the clone");
                return Err(exit::USAGE);
            };
            let source = crate::source::git::GitSource {
                url,
                reference: git_ref.to_owned(),
                cache: cache.join("clone"),
            };
            let fetched = source.fetch();
            let _ = std::fs::remove_dir_all(&cache);
            match fetched {
                Ok(commit) => {
                    let _ = writeln!(err, "specs: commit {}", commit.id);
                    Ok(spec::load_sources(commit.files))
                }
                Err(e) => {
                    let _ = writeln!(err, "error: {e}");
                    return Err(exit::USAGE);
                }
            }
        }
        _ => spec::load_paths(specs),
    };
    policies_or_report(loaded, err)
}

/// A new, empty directory under the system's temporary directory.
fn tempfile_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "stevedore-plan-{}-{}",
        std::process::id(),
        crate::model::wall_clock()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `plan` against live ECS: one snapshot per cluster, planned. A cluster
/// that does not exist has its policies NotFound; the others are planned.
fn plan_live(args: &Args, err: &mut dyn Write) -> Result<Vec<crate::plan::Plan>, u8> {
    let specs = live_policies(&args.specs, &args.git_ref, err)?;
    let runtime = super::runtime();
    let clients = runtime.block_on(crate::aws::AwsClients::connect(
        args.endpoint.endpoint_url.as_deref(),
    ));
    let backend = crate::aws::Router::new(&clients);
    crate::backend::Backend::locate(&backend, &specs.clusters);
    let mut plans = vec![];
    for name in crate::controller::clusters(&specs.policies, args.cluster.as_deref()) {
        // The plan `run --once` would carry out, its stops verified the same
        // way (on the wall clock: the snapshot's time is AWS's).
        match runtime.block_on(crate::controller::plan_once(&backend, &name, &specs, 0)) {
            Ok(plan) => plans.push(plan),
            Err(crate::backend::Error::ClusterNotFound(_)) => {
                let _ = writeln!(err, "warning: cluster `{name}` not found");
                plans.push(crate::plan::cluster_not_found(&specs.policies, &name));
            }
            Err(e) => {
                let _ = writeln!(err, "error: {name}: {e}");
                return Err(exit::INVALID);
            }
        }
    }
    Ok(plans)
}

/// The plan as a readable diff: per policy and service, its state, then
/// each action (`-` a task stopped, `~` a count changed) with its reason.
fn write_plan(plan: &crate::plan::Plan, out: &mut dyn Write) -> std::io::Result<()> {
    use crate::plan::ActionKind;
    if let Some(budget) = &plan.budget {
        writeln!(
            out,
            "DisruptionBudget {}: {}",
            budget.budget,
            budget.summary()
        )?;
    }
    for status in &plan.statuses {
        let who = if status.service.is_empty() {
            status.policy.clone()
        } else {
            format!("{}/{}", status.policy, status.service)
        };
        writeln!(
            out,
            "{who}: {:?}{}{}",
            status.state,
            if status.dry_run { " [dry run]" } else { "" },
            if status.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", status.reason)
            }
        )?;
        for c in &status.constraints {
            let domains: Vec<String> = c
                .tasks_per_domain
                .iter()
                .map(|(d, n)| format!("{d}={n}"))
                .collect();
            // A host constraint lists only the hosts with tasks.
            let counts = c.tasks_per_domain.iter().map(|(_, n)| *n);
            let unlisted = counts.clone().max().unwrap_or(0) - counts.min().unwrap_or(0) < c.skew;
            writeln!(
                out,
                "    {} skew {} (max {}): {}{}",
                c.topology,
                c.skew,
                c.max_skew,
                domains.join(" "),
                if unlisted {
                    " (and hosts without tasks)"
                } else {
                    ""
                }
            )?;
        }
        if let Some(scaling) = &status.scaling
            && !status.reason.contains(scaling.as_str())
        {
            writeln!(out, "    scaling: {scaling}")?;
        }
        for w in &status.warnings {
            writeln!(out, "    warning: {w}")?;
        }
        for a in plan
            .actions
            .iter()
            .filter(|a| a.policy == status.policy && a.service == status.service)
        {
            let dry = if a.dry_run {
                " (dry run: not executed)"
            } else {
                ""
            };
            match &a.kind {
                ActionKind::StopTask {
                    task,
                    instance,
                    zone,
                } => writeln!(
                    out,
                    "  - stop {task} on {instance} ({zone}){dry}\n      {}",
                    a.reason
                )?,
                ActionKind::SetDesiredCount { from, to } => writeln!(
                    out,
                    "  ~ desiredCount {from} -> {to}{dry}\n      {}",
                    a.reason
                )?,
                ActionKind::ProtectTasks { tasks, minutes } => writeln!(
                    out,
                    "  + protect {} from scale-in for {minutes}m{dry}\n      {}",
                    crate::words::count(tasks.len() as u64, "task"),
                    a.reason
                )?,
                ActionKind::UnprotectTasks { tasks } => writeln!(
                    out,
                    "  - release the protection of {}{dry}\n      {}",
                    crate::words::count(tasks.len() as u64, "task"),
                    a.reason
                )?,
            }
        }
        for later in &status.later_moves {
            writeln!(
                out,
                "  - later, after the moves above: {later} (dry run: not executed)"
            )?;
        }
    }
    // Who does what, where ECS's own AZ rebalancing is on.
    let shared: Vec<&crate::plan::ServiceStatus> = plan
        .statuses
        .iter()
        .filter(|s| s.zones_balanced_by.is_some())
        .collect();
    if !shared.is_empty() {
        writeln!(out, "\nwho balances what (ECS's AZ rebalancing ENABLED):")?;
        let rows: Vec<(String, &str)> = shared
            .iter()
            .map(|s| {
                (
                    format!("{}/{}", s.policy, s.service),
                    s.zones_balanced_by.as_deref().unwrap_or_default(),
                )
            })
            .collect();
        let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(14);
        let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(5);
        writeln!(
            out,
            "  {:w0$}  {:w1$}  HOSTS AND ATTRIBUTES",
            "POLICY/SERVICE", "ZONES"
        )?;
        for (who, zones) in rows {
            writeln!(out, "  {who:w0$}  {zones:w1$}  stevedore")?;
        }
    }
    let executable = plan.executable().count();
    writeln!(
        out,
        "\n{} ({} executable, {} dry run)",
        crate::words::count(plan.actions.len() as u64, "action"),
        executable,
        plan.actions.len() - executable
    )
}
