//! The command line: argument types (clap) apart from the work they start.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use annotate_snippets::Renderer;
use clap::{Parser, Subcommand, ValueEnum};

use crate::spec;

/// stevedore: a declarative placement and scaling controller for Amazon ECS.
#[derive(Debug, Parser)]
#[command(name = "stevedore", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check policy files (or directories of them) and report every problem.
    ///
    /// Exit status: 0 when all are valid, 1 when any is invalid, 2 when a
    /// path cannot be read.
    Validate {
        /// Files or directories (searched recursively for *.yaml and *.yml).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// `human` (rustc-style, with the offending line) or `json`.
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// Print a JSON Schema: of ServicePolicy files (default) or of scenario files.
    Schema {
        #[arg(value_enum, default_value_t = SchemaKind::Servicepolicy)]
        kind: SchemaKind,
    },
    /// Run the controller against the ECS simulator, in virtual time.
    ///
    /// Without a scenario, runs the embedded demo: a host joins a zone after
    /// a scale-out, the case that today forces a redeploy of every service.
    Sim {
        /// A scenario file (see examples/scenarios/).
        scenario: Option<PathBuf>,
        /// Instead of a file: generate HOSTS,SERVICES,TASKS (for example 5000,5000,100000).
        #[arg(long, value_name = "HOSTS,SERVICES,TASKS", conflicts_with = "scenario")]
        generate: Option<String>,
        /// How long to simulate a generated cluster.
        #[arg(long, default_value = "10m")]
        duration: String,
        /// `human` (a timeline and a summary) or `json` (the report).
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// Show what stevedore would do now, with the reason for every action.
    Plan {
        /// Policy files or directories, or one git repository URL (with
        /// --sim, default: the scenario's own).
        #[arg(long)]
        specs: Vec<PathBuf>,
        /// With a git repository: the branch or tag to plan.
        #[arg(long, default_value = "main")]
        git_ref: String,
        /// Plan against this scenario's initial state instead of live ECS.
        #[arg(long, value_name = "SCENARIO")]
        sim: Option<PathBuf>,
        /// Only this cluster (by default every cluster the policies name).
        #[arg(long)]
        cluster: Option<String>,
        /// Another ECS endpoint (also AWS_ENDPOINT_URL).
        #[arg(long)]
        endpoint_url: Option<String>,
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// Create or update, idempotently, the SQS queue and the EventBridge rule
    /// that bring a cluster's ECS events to the controller.
    Install {
        #[arg(long)]
        cluster: String,
        /// Default: stevedore-CLUSTER.
        #[arg(long)]
        queue_name: Option<String>,
        /// Say what would be created; create nothing.
        #[arg(long)]
        dry_run: bool,
        /// Another endpoint (also AWS_ENDPOINT_URL).
        #[arg(long)]
        endpoint_url: Option<String>,
    },
    /// Remove what `install` created.
    Uninstall {
        #[arg(long)]
        cluster: String,
        #[arg(long)]
        queue_name: Option<String>,
        #[arg(long)]
        endpoint_url: Option<String>,
    },
    /// Print a shell completion script (for example
    /// `stevedore completions bash > /etc/bash_completion.d/stevedore`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), for `man -l -` or packaging.
    Man,
    /// Print the least-privilege IAM policy the controller (or the
    /// installer, with `--for installer`) needs for a cluster.
    IamPolicy {
        #[arg(long)]
        cluster: String,
        /// Scope to one region (default: any).
        #[arg(long)]
        region: Option<String>,
        /// Scope to one account (default: any).
        #[arg(long)]
        account: Option<String>,
        /// The SQS queue of the cluster's ECS events (default: stevedore-CLUSTER).
        #[arg(long)]
        queue_name: Option<String>,
        /// With leader election (`run --lease-table`): the lease's table.
        #[arg(long)]
        lease_table: Option<String>,
        /// Whose policy: the controller's task role, or the operator who
        /// runs `install` and `uninstall`.
        #[arg(long = "for", value_enum, default_value_t = IamRole::Controller)]
        role: IamRole,
    },
    /// The controller: reconcile live ECS toward the policies, on a resync
    /// timer, until Ctrl-C or SIGTERM.
    ///
    /// Exit status with --once: 0 when every read and action succeeded, 1
    /// otherwise, 2 when the policies cannot be loaded.
    Run {
        /// Policy files or directories (watched for changes), or one git
        /// repository URL (`https://`, `ssh://`, `file://`, `git@host:path`),
        /// fetched every `--git-poll`. For a private https repository, the
        /// token may come from STEVEDORE_GIT_TOKEN (user name:
        /// STEVEDORE_GIT_USERNAME, default x-access-token).
        #[arg(long, required = true)]
        specs: Vec<PathBuf>,
        /// With a git repository: the branch or tag to follow.
        #[arg(long, default_value = "main")]
        git_ref: String,
        /// With a git repository: how often to fetch.
        #[arg(long, default_value = "30s")]
        git_poll: String,
        /// With a git repository: where to keep its clone (default: a
        /// directory under the system's temporary directory).
        #[arg(long)]
        git_cache: Option<PathBuf>,
        /// Only this cluster (by default every cluster the policies name).
        #[arg(long)]
        cluster: Option<String>,
        /// Another ECS endpoint (also AWS_ENDPOINT_URL).
        #[arg(long)]
        endpoint_url: Option<String>,
        /// One pass, then exit (for cron, a scheduled task or a first look).
        #[arg(long)]
        once: bool,
        /// The SQS queue of the cluster's ECS events (see `install`): the
        /// controller reconciles soon after an event, not only on resync.
        #[arg(long)]
        queue_url: Option<String>,
        /// Plan and report every action; execute none.
        #[arg(long)]
        dry_run: bool,
        /// Time between full resyncs.
        #[arg(long, default_value = "5m")]
        resync: String,
        /// Log lines for people (`human`), or one JSON object per line with
        /// each action's cluster, policy, service, rule and reason as fields.
        #[arg(long, value_enum, default_value_t = LogFormat::Human)]
        log_format: LogFormat,
        /// Leader election: the DynamoDB table (partition key `name`, a
        /// string) holding the lease. Replicas with the same table and
        /// lease name elect one to act; the others plan and report.
        #[arg(long)]
        lease_table: Option<String>,
        /// The lease's name in the table.
        #[arg(long, default_value = "stevedore")]
        lease_name: String,
        /// How long a write holds the lease; a stalled leader stops acting
        /// a third of it before another replica may start.
        #[arg(long, default_value = "15s")]
        lease_duration: String,
        /// Publish every action and status change to this EventBridge bus
        /// (`default` for the account's default bus), source `stevedore`.
        #[arg(long)]
        audit_bus: Option<String>,
        /// Serve /healthz, /readyz, /metrics and /status here (default
        /// 127.0.0.1:9464; `off` serves nothing). Port 0 picks a free port;
        /// the address is logged.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Print a running controller's /status as a table.
    Status {
        /// Where the controller serves its status.
        #[arg(long, default_value = "http://127.0.0.1:9464")]
        url: String,
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    Servicepolicy,
    Scenario,
}

/// The scenario `stevedore sim` runs by default.
pub const DEMO_SCENARIO: &str =
    include_str!("../examples/scenarios/host-joins-after-scale-out.yaml");

/// Whose IAM policy `iam-policy` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IamRole {
    /// The controller's task role: read the cluster, stop tasks, update
    /// services, read the event queue.
    Controller,
    /// Whoever runs `install` and `uninstall`: the queue and the rule.
    Installer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

/// Exit statuses shared by every command.
pub mod exit {
    pub const OK: u8 = 0;
    /// The input was read and is invalid (or the plan is unsatisfiable).
    pub const INVALID: u8 = 1;
    /// Usage or I/O error: nothing could be judged.
    pub const USAGE: u8 = 2;
}

/// Runs a parsed command line, writing to the given streams.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let status = match cli.command {
        Command::Validate { paths, output } => validate(&paths, output, out, err),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "stevedore", out);
            exit::OK
        }
        Command::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command())
                .render(out)
                .map(|()| exit::OK)
                .unwrap_or(exit::USAGE)
        }
        Command::Schema { kind } => {
            let text = match kind {
                SchemaKind::Servicepolicy => crate::schema::servicepolicy_json(),
                SchemaKind::Scenario => crate::schema::scenario_json(),
            };
            write!(out, "{text}")
                .map(|()| exit::OK)
                .unwrap_or(exit::USAGE)
        }
        Command::Sim {
            scenario,
            generate,
            duration,
            output,
        } => sim(
            scenario.as_deref(),
            generate.as_deref(),
            &duration,
            output,
            out,
            err,
        ),
        Command::Plan {
            specs,
            sim: Some(sim),
            output,
            ..
        } => plan(&specs, &sim, output, out, err),
        Command::Plan {
            specs,
            sim: None,
            cluster,
            endpoint_url,
            output,
            git_ref,
        } => plan_live(
            &specs,
            &git_ref,
            cluster.as_deref(),
            endpoint_url.as_deref(),
            output,
            out,
            err,
        ),
        Command::Install {
            cluster,
            queue_name,
            dry_run,
            endpoint_url,
        } => installer(endpoint_url.as_deref(), err, |clients, runtime| {
            let queue = queue_name.unwrap_or_else(|| crate::setup::iam::default_queue(&cluster));
            runtime
                .block_on(crate::setup::install::install(
                    clients, &cluster, &queue, dry_run, out,
                ))
                .map(drop)
        }),
        Command::Uninstall {
            cluster,
            queue_name,
            endpoint_url,
        } => installer(endpoint_url.as_deref(), err, |clients, runtime| {
            let queue = queue_name.unwrap_or_else(|| crate::setup::iam::default_queue(&cluster));
            runtime.block_on(crate::setup::install::uninstall(
                clients, &cluster, &queue, out,
            ))
        }),
        Command::IamPolicy {
            cluster,
            region,
            account,
            queue_name,
            role,
            lease_table,
        } => {
            let queue = queue_name.unwrap_or_else(|| crate::setup::iam::default_queue(&cluster));
            let scope = crate::setup::iam::Scope {
                cluster: &cluster,
                region: region.as_deref(),
                account: account.as_deref(),
                queue: &queue,
            };
            let policy = match (role, lease_table) {
                (IamRole::Controller, Some(table)) => {
                    crate::setup::iam::with_lease(crate::setup::iam::policy(&scope), &scope, &table)
                }
                (IamRole::Controller, None) => crate::setup::iam::policy(&scope),
                (IamRole::Installer, _) => crate::setup::iam::installer_policy(&scope),
            };
            serde_json::to_writer_pretty(&mut *out, &policy)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out))
                .map_or(exit::USAGE, |()| exit::OK)
        }
        Command::Run {
            specs,
            cluster,
            endpoint_url,
            once,
            queue_url,
            dry_run,
            resync,
            listen,
            audit_bus,
            log_format,
            lease_table,
            lease_name,
            lease_duration,
            git_ref,
            git_poll,
            git_cache,
        } => run_controller(
            &specs,
            cluster,
            endpoint_url.as_deref(),
            queue_url.as_deref(),
            RunFlags {
                once,
                dry_run,
                resync: &resync,
                listen: listen.as_deref(),
                audit_bus: audit_bus.as_deref(),
                log_format,
                lease: lease_table
                    .as_deref()
                    .map(|table| (table, lease_name.as_str(), lease_duration.as_str())),
                git: (&git_ref, &git_poll, git_cache.as_deref()),
            },
            err,
        ),
        Command::Status { url, output } => status(&url, output, out, err),
    };
    ExitCode::from(status)
}

fn renderer() -> Renderer {
    if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        Renderer::styled()
    } else {
        Renderer::plain()
    }
}

fn validate(paths: &[PathBuf], output: Output, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let loaded = match spec::load_paths(paths) {
        Ok(loaded) => loaded,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return exit::USAGE;
        }
    };
    let written = match output {
        Output::Json => {
            let report = serde_json::json!({
                "valid": !loaded.has_errors(),
                "files": loaded.files,
                "policies": loaded.policies.iter().map(|p| &p.name).collect::<Vec<_>>(),
                "errors": loaded.error_count(),
                "warnings": loaded.warning_count(),
                "diagnostics": loaded.diagnostics,
            });
            serde_json::to_writer_pretty(&mut *out, &report)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out))
        }
        Output::Human => write_human(&loaded, out),
    };
    match written {
        Err(_) => exit::USAGE,
        Ok(()) if loaded.has_errors() => exit::INVALID,
        Ok(()) => exit::OK,
    }
}

fn write_human(loaded: &spec::Loaded, out: &mut dyn Write) -> std::io::Result<()> {
    let renderer = renderer();
    for diagnostic in &loaded.diagnostics {
        writeln!(out, "{}\n", diagnostic.render(&renderer))?;
    }
    let files = plural(loaded.files.len(), "file");
    let policies = plural(loaded.policies.len(), "policy");
    if loaded.has_errors() {
        writeln!(
            out,
            "invalid: {}, {} in {files}",
            plural(loaded.error_count(), "error"),
            plural(loaded.warning_count(), "warning")
        )
    } else {
        let warnings = match loaded.warning_count() {
            0 => String::new(),
            n => format!(" ({})", plural(n, "warning")),
        };
        writeln!(out, "ok: {policies} in {files}{warnings}")
    }
}

fn plural(n: usize, noun: &str) -> String {
    match (n, noun) {
        (1, _) => format!("1 {noun}"),
        (_, "policy") => format!("{n} policies"),
        _ => format!("{n} {noun}s"),
    }
}

fn load_scenario(
    path: Option<&std::path::Path>,
    err: &mut dyn Write,
) -> Option<crate::sim::scenario::Scenario> {
    use crate::sim::scenario::{self, Error};
    let loaded = match path {
        Some(path) => scenario::load(path),
        None => scenario::from_text(
            "examples/scenarios/host-joins-after-scale-out.yaml (embedded)",
            DEMO_SCENARIO,
            std::path::Path::new("."),
        ),
    };
    match loaded {
        Ok(s) => Some(s),
        Err(Error::Policies(diagnostics)) => {
            let renderer = renderer();
            for d in diagnostics {
                let _ = writeln!(err, "{}\n", d.render(&renderer));
            }
            let _ = writeln!(err, "error: the scenario's policies are invalid");
            None
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            None
        }
    }
}

fn sim(
    path: Option<&std::path::Path>,
    generate: Option<&str>,
    duration: &str,
    output: Output,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    use crate::sim::{run, scenario};
    let scenario = match generate {
        Some(spec) => {
            let parts: Vec<Option<u32>> = spec.split(',').map(|p| p.trim().parse().ok()).collect();
            let (Some(Some(hosts)), Some(Some(services)), Some(Some(tasks)), 3) =
                (parts.first(), parts.get(1), parts.get(2), parts.len())
            else {
                let _ = writeln!(
                    err,
                    "error: --generate takes HOSTS,SERVICES,TASKS, such as 5000,5000,100000"
                );
                return exit::USAGE;
            };
            let Ok(duration) = crate::spec::quantity::parse_duration(duration) else {
                let _ = writeln!(
                    err,
                    "error: --duration: `{duration}` is not a duration such as 10m"
                );
                return exit::USAGE;
            };
            let g = scenario::GenerateSpec {
                hosts: *hosts,
                services: *services,
                tasks: *tasks,
                zones: 3,
                skewed_share: 0.1,
            };
            scenario::generated(g, 1, duration.as_millis() as u64)
        }
        None => match load_scenario(path, err) {
            Some(s) => s,
            None => return exit::USAGE,
        },
    };
    let human = output == Output::Human;
    if human {
        let _ = writeln!(
            out,
            "scenario {}: {}\n",
            scenario.name,
            scenario.description.trim()
        );
    }
    let report = {
        let display = run::Display {
            timeline: if human { Some(&mut *out) } else { None },
            progress: std::io::stderr().is_terminal(),
        };
        run::run(scenario, display)
    };
    let written = if human {
        run::write_summary(&report, out)
    } else {
        serde_json::to_writer_pretty(&mut *out, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    };
    match written {
        Ok(()) if report.services.iter().any(|s| s.mispredicted_moves > 0) => exit::INVALID,
        Ok(()) => exit::OK,
        Err(_) => exit::USAGE,
    }
}

fn plan(
    specs: &[PathBuf],
    scenario: &std::path::Path,
    output: Output,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let Some(scenario) = load_scenario(Some(scenario), err) else {
        return exit::USAGE;
    };
    let policies = if specs.is_empty() {
        scenario.policies
    } else {
        match spec::load_paths(specs) {
            Ok(loaded) if !loaded.has_errors() => loaded.policies,
            Ok(loaded) => {
                let renderer = renderer();
                for d in &loaded.diagnostics {
                    let _ = writeln!(err, "{}\n", d.render(&renderer));
                }
                let _ = writeln!(err, "error: the policies are invalid; nothing planned");
                return exit::INVALID;
            }
            Err(e) => {
                let _ = writeln!(err, "error: {e}");
                return exit::USAGE;
            }
        }
    };
    // The controller's own path (read, verify, metrics) on the simulator.
    let cluster = scenario.sim.cluster.clone();
    let backend = crate::sim::SimBackend::new(scenario.sim);
    let plan = match runtime().block_on(crate::controller::plan_once(&backend, &cluster, &policies))
    {
        Ok(plan) => plan,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return exit::INVALID;
        }
    };
    let written = match output {
        Output::Json => serde_json::to_writer_pretty(&mut *out, &plan)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
        Output::Human => write_plan(&plan, out),
    };
    match written {
        Ok(()) => exit::OK,
        Err(_) => exit::USAGE,
    }
}

/// The plan as a readable diff: per policy and service, its state, then
/// each action (`-` a task stopped, `~` a count changed) with its reason.
fn write_plan(plan: &crate::plan::Plan, out: &mut dyn Write) -> std::io::Result<()> {
    use crate::plan::ActionKind;
    for status in &plan.statuses {
        writeln!(
            out,
            "{}/{}: {:?}{}",
            status.policy,
            status.service,
            status.state,
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
            writeln!(
                out,
                "    {} skew {} (max {}): {}",
                c.topology,
                c.skew,
                c.max_skew,
                domains.join(" ")
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
            }
        }
    }
    let executable = plan.executable().count();
    writeln!(
        out,
        "\n{} actions ({} executable, {} dry run)",
        plan.actions.len(),
        executable,
        plan.actions.len() - executable
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

/// The repository URL `--specs` names, with the token of
/// `STEVEDORE_GIT_TOKEN` if set (see [`crate::source::git::with_token`]).
fn git_url(url: &std::path::Path, err: &mut dyn Write) -> Result<String, u8> {
    use crate::source::git::{TOKEN_USERNAME, TOKEN_VARIABLE, USERNAME_VARIABLE};
    let url = url.to_string_lossy().into_owned();
    let Some(token) = std::env::var_os(TOKEN_VARIABLE) else {
        return Ok(url);
    };
    let username = std::env::var(USERNAME_VARIABLE).unwrap_or_else(|_| TOKEN_USERNAME.to_owned());
    crate::source::git::with_token(&url, &username, &token.to_string_lossy()).map_err(|e| {
        let _ = writeln!(err, "error: {e}");
        exit::USAGE
    })
}

/// Loads policies for a live command, reporting problems.
fn live_policies(
    specs: &[PathBuf],
    git_ref: &str,
    err: &mut dyn Write,
) -> Result<Vec<spec::Policy>, u8> {
    if specs.is_empty() {
        let _ = writeln!(err, "error: --specs is required (or --sim SCENARIO)");
        return Err(exit::USAGE);
    }
    let loaded = match specs {
        [url] if crate::source::git::is_url(url) => {
            let url = git_url(url, err)?;
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
    match loaded {
        Ok(loaded) if !loaded.has_errors() => Ok(loaded.policies),
        Ok(loaded) => {
            let renderer = renderer();
            for d in &loaded.diagnostics {
                let _ = writeln!(err, "{}\n", d.render(&renderer));
            }
            let _ = writeln!(err, "error: the policies are invalid; nothing planned");
            Err(exit::INVALID)
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            Err(exit::USAGE)
        }
    }
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

/// `plan` against live ECS: one snapshot per cluster, planned and shown.
fn plan_live(
    specs: &[PathBuf],
    git_ref: &str,
    cluster: Option<&str>,
    endpoint_url: Option<&str>,
    output: Output,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let policies = match live_policies(specs, git_ref, err) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let runtime = runtime();
    let backend = runtime.block_on(crate::aws::AwsBackend::connect(endpoint_url));
    let mut plans = vec![];
    for name in crate::controller::clusters(&policies, cluster) {
        // The plan `run --once` would carry out, its stops verified the same way.
        match runtime.block_on(crate::controller::plan_once(&backend, &name, &policies)) {
            Ok(plan) => plans.push(plan),
            Err(e) => {
                let _ = writeln!(err, "error: {name}: {e}");
                return exit::INVALID;
            }
        }
    }
    let written = match output {
        Output::Json => serde_json::to_writer_pretty(&mut *out, &plans)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
        Output::Human => plans.iter().try_for_each(|p| {
            writeln!(out, "cluster {}:", p.cluster).and_then(|()| write_plan(p, out))
        }),
    };
    if written.is_err() {
        exit::USAGE
    } else {
        exit::OK
    }
}

#[allow(clippy::too_many_arguments)]
/// `run`'s flags beyond where to connect.
struct RunFlags<'a> {
    once: bool,
    dry_run: bool,
    resync: &'a str,
    listen: Option<&'a str>,
    audit_bus: Option<&'a str>,
    log_format: LogFormat,
    /// Table, name and duration of the lease, with leader election.
    lease: Option<(&'a str, &'a str, &'a str)>,
    /// Ref, poll interval and cache directory, when the specs are a git URL.
    git: (&'a str, &'a str, Option<&'a std::path::Path>),
}

/// How `run` logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Logs to standard output, in the chosen format.
fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_target(false);
    // A second call (tests run commands in one process) keeps the first.
    let _ = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Where `run` serves its status by default.
const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

fn run_controller(
    specs: &[PathBuf],
    cluster: Option<String>,
    endpoint_url: Option<&str>,
    queue_url: Option<&str>,
    flags: RunFlags<'_>,
    err: &mut dyn Write,
) -> u8 {
    let RunFlags {
        once,
        dry_run,
        resync,
        listen,
        audit_bus,
        log_format,
        lease,
        git,
    } = flags;
    let git = match specs {
        [url] if crate::source::git::is_url(url) => {
            let (reference, poll, cache) = git;
            let Ok(poll) = crate::spec::quantity::parse_duration(poll) else {
                let _ = writeln!(
                    err,
                    "error: --git-poll: `{poll}` is not a duration such as 30s"
                );
                return exit::USAGE;
            };
            let cache = cache.map(std::path::Path::to_path_buf).unwrap_or_else(|| {
                // One clone per URL and ref.
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (url, reference).hash(&mut h);
                std::env::temp_dir().join(format!("stevedore-git-{:016x}", h.finish()))
            });
            let url = match git_url(url, err) {
                Ok(url) => url,
                Err(code) => return code,
            };
            Some(crate::controller::GitSpecs {
                source: crate::source::git::GitSource {
                    url,
                    reference: reference.to_owned(),
                    cache,
                },
                poll,
            })
        }
        _ => None,
    };
    init_logging(log_format);
    let Ok(resync) = crate::spec::quantity::parse_duration(resync) else {
        let _ = writeln!(
            err,
            "error: --resync: `{resync}` is not a duration such as 5m"
        );
        return exit::USAGE;
    };
    let runtime = runtime();
    // One configuration, and one throttle count, for every client.
    let clients = runtime.block_on(crate::aws::AwsClients::connect(endpoint_url));
    let audit = audit_bus.map(|bus| crate::status::audit::Audit::new(clients.eventbridge(), bus));
    let backend = crate::aws::AwsBackend::from_clients(&clients);
    let observer = std::sync::Arc::new(crate::status::Observer::new());
    // Leader election: the lease is kept by a task of its own, so a long
    // pass does not let it lapse; writes are fenced by it.
    let (leader, stop_keeping) = match lease {
        None => (None, None),
        Some((table, name, duration)) => {
            let Ok(duration) = crate::spec::quantity::parse_duration(duration) else {
                let _ = writeln!(
                    err,
                    "error: --lease-duration: `{duration}` is not a duration such as 15s"
                );
                return exit::USAGE;
            };
            let holder = format!(
                "{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "stevedore".into()),
                std::process::id()
            );
            let mut lease = crate::controller::lease::Lease::new(
                clients.dynamodb(),
                table,
                name,
                &holder,
                duration,
            );
            // The first pass knows its standing. A lease that cannot be
            // written at all (no such table, access denied) is an error
            // now: a replica that can neither lead nor follow would
            // otherwise sit idle forever looking healthy.
            let first = match runtime.block_on(lease.tick(crate::model::wall_clock())) {
                Ok(standing) => standing.clone(),
                Err(e) => {
                    let _ = writeln!(
                        err,
                        "error: {e}\n(the table must exist, with the string partition key `name`, and the role must allow dynamodb:UpdateItem on it: see `stevedore iam-policy --lease-table`)"
                    );
                    return exit::USAGE;
                }
            };
            let (send, receive) = tokio::sync::watch::channel(first);
            let (stop, stopped) = tokio::sync::oneshot::channel();
            let observer = std::sync::Arc::clone(&observer);
            runtime.spawn(crate::controller::lease::keep(
                lease,
                send,
                move |answered| observer.lease_answered(answered),
                stopped,
            ));
            (Some(receive), Some(stop))
        }
    };
    let options = crate::controller::RunOptions {
        cluster,
        once,
        dry_run,
        resync,
        audit,
        leader: leader.clone(),
        policies: match git {
            Some(git) => crate::controller::PolicySource::Git(git),
            None => crate::controller::PolicySource::Files(specs.to_vec()),
        },
        clock: crate::controller::Clock::Wall,
    };
    let events = queue_url.map(|url| crate::aws::SqsEvents::new(clients.sqs(), url));
    // The handlers are installed now, before the first pass: a signal that
    // comes while it stops tasks waits for the batch instead of ending the
    // process with it half done (a handler installed only when the loop
    // first waits would leave the default action, death, until then).
    #[cfg(unix)]
    let shutdown = {
        let _context = runtime.enter();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM can be watched");
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .expect("SIGINT can be watched");
        async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = term.recv() => {}
            }
        }
    };
    #[cfg(not(unix))]
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    // The status server runs with the controller and stops with it.
    let (stop_serving, stopped) = tokio::sync::oneshot::channel::<()>();
    match listen {
        _ if once => {}
        Some("off") => {}
        address => {
            let explicit = address.is_some();
            let address = address.unwrap_or(DEFAULT_LISTEN);
            match runtime.block_on(tokio::net::TcpListener::bind(address)) {
                Ok(listener) => {
                    let bound = listener
                        .local_addr()
                        .map_or(address.to_owned(), |a| a.to_string());
                    tracing::info!(address = %bound, "listening on {bound} (/healthz /readyz /metrics /status)");
                    runtime.spawn(crate::status::serve(
                        listener,
                        std::sync::Arc::clone(&observer),
                        async {
                            let _ = stopped.await;
                        },
                    ));
                }
                Err(e) if explicit => {
                    let _ = writeln!(err, "error: --listen {address}: {e}");
                    return exit::USAGE;
                }
                Err(e) => {
                    tracing::warn!(
                        "status: cannot listen on {address} ({e}); serving no status (set --listen)"
                    );
                }
            }
        }
    }
    let result = match leader {
        Some(standing) => {
            let fenced = crate::controller::lease::Fenced::new(&backend, standing);
            runtime.block_on(crate::controller::run(
                &fenced,
                events.as_ref(),
                &options,
                &observer,
                &mut |_| {},
                shutdown,
            ))
        }
        None => runtime.block_on(crate::controller::run(
            &backend,
            events.as_ref(),
            &options,
            &observer,
            &mut |_| {},
            shutdown,
        )),
    };
    let _ = stop_serving.send(());
    if let Some(stop) = stop_keeping {
        let _ = stop.send(());
    }
    match result {
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            exit::USAGE
        }
        // A run that is not `--once` ends only when asked to: a clean
        // shutdown, whatever earlier passes met.
        Ok(summary) if once && summary.failed_reconciles + summary.actions_failed > 0 => {
            exit::INVALID
        }
        Ok(_) => exit::OK,
    }
}

/// `stevedore status`: a running controller's /status as a table.
fn status(url: &str, output: Output, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let address = format!("{}/status", url.trim_end_matches('/'));
    let doc: crate::status::StatusDoc = match ureq::get(&address)
        .call()
        .and_then(|mut r| r.body_mut().read_json())
    {
        Ok(doc) => doc,
        Err(e) => {
            let _ = writeln!(err, "error: {address}: {e}");
            return exit::USAGE;
        }
    };
    let written = match output {
        Output::Json => serde_json::to_writer_pretty(&mut *out, &doc)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
        Output::Human => write_status(&doc, out),
    };
    written.map_or(exit::USAGE, |()| exit::OK)
}

fn write_status(doc: &crate::status::StatusDoc, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "ready: {}", doc.ready)?;
    let rows: Vec<[String; 5]> = doc
        .policies
        .iter()
        .map(|p| {
            let since = p
                .conditions
                .iter()
                .find(|c| c.kind == "Satisfied")
                .map_or(String::new(), |c| c.last_transition_time.clone());
            let message = p
                .conditions
                .first()
                .map_or(String::new(), |c| c.message.clone());
            [
                p.cluster.clone(),
                format!("{}/{}", p.policy, p.service),
                p.state.clone(),
                since,
                message,
            ]
        })
        .collect();
    let header = ["CLUSTER", "POLICY/SERVICE", "STATE", "SINCE", "MESSAGE"];
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 5]| {
        format!(
            "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        )
    };
    writeln!(out, "{}", line(header))?;
    for r in &rows {
        writeln!(
            out,
            "{}",
            line([&r[0], &r[1], &r[2], &r[3], &r[4]]).trim_end()
        )?;
    }
    if !doc.last_actions.is_empty() {
        writeln!(out, "\nlast actions:")?;
        for a in &doc.last_actions {
            writeln!(
                out,
                "  {} {}/{}/{}: {} [{}]",
                a.time, a.cluster, a.policy, a.service, a.action, a.result
            )?;
        }
    }
    Ok(())
}

/// Runs `install` or `uninstall` with connected clients, reporting failure.
fn installer(
    endpoint_url: Option<&str>,
    err: &mut dyn Write,
    work: impl FnOnce(&crate::setup::install::Clients, &tokio::runtime::Runtime) -> Result<(), String>,
) -> u8 {
    let runtime = runtime();
    let clients = runtime.block_on(crate::setup::install::Clients::connect(endpoint_url));
    match work(&clients, &runtime) {
        Ok(()) => exit::OK,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            exit::INVALID
        }
    }
}
