//! The command line: argument types (clap) apart from the work they start,
//! one file per command (`setup.rs` holds install, uninstall and
//! iam-policy). Flags shared by several commands are `flatten` groups
//! ([`Endpoint`], [`run::GitArgs`], [`run::LeaseArgs`]); durations and
//! `--generate` are parsed by clap's value parsers, so a bad value is a
//! usage error naming its flag before any work starts.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use annotate_snippets::Renderer;
use clap::{Parser, Subcommand, ValueEnum};

use crate::spec;

pub mod plan;
pub mod run;
pub mod setup;
pub mod sim;
pub mod snapshot;
pub mod status;
pub mod validate;

pub use run::LogFormat;

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
    Validate(validate::Args),
    /// Print a JSON Schema: of spec files (default: ServicePolicy and
    /// DisruptionBudget), of ServicePolicy alone, or of scenario files.
    Schema {
        #[arg(value_enum, default_value_t = SchemaKind::Specs)]
        kind: SchemaKind,
    },
    /// Run the controller against the ECS simulator, in virtual time.
    ///
    /// Without a scenario, runs the embedded demo: a host joins a zone after
    /// a scale-out, the case that today forces a redeploy of every service.
    Sim(sim::Args),
    /// Show what stevedore would do now, with the reason for every action.
    Plan(plan::Args),
    /// Create or update, idempotently, the SQS queue and the EventBridge rule
    /// that bring a cluster's ECS events to the controller.
    Install(setup::InstallArgs),
    /// Remove what `install` created.
    Uninstall(setup::UninstallArgs),
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
    IamPolicy(setup::IamArgs),
    /// The controller: reconcile live ECS toward the policies, on a resync
    /// timer, until Ctrl-C or SIGTERM.
    ///
    /// Exit status with --once: 0 when every read and action succeeded, 1
    /// otherwise, 2 when the policies cannot be loaded.
    Run(run::Args),
    /// Print a running controller's /status as a table.
    Status(status::Args),
    /// Write a live cluster as a scenario file, for `stevedore sim`: hosts,
    /// services, their tasks by host, and the policy files that target it.
    Snapshot(snapshot::Args),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    Specs,
    Servicepolicy,
    Scenario,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

/// Where to reach AWS: the flags of every command that calls it.
#[derive(Debug, Clone, clap::Args)]
pub struct Endpoint {
    /// Another endpoint for every AWS API (also AWS_ENDPOINT_URL).
    #[arg(long)]
    pub endpoint_url: Option<String>,
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
        Command::Validate(args) => validate::validate(&args, out, err),
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
                SchemaKind::Specs => crate::schema::specs_json(),
                SchemaKind::Servicepolicy => crate::schema::servicepolicy_json(),
                SchemaKind::Scenario => crate::schema::scenario_json(),
            };
            write!(out, "{text}")
                .map(|()| exit::OK)
                .unwrap_or(exit::USAGE)
        }
        Command::Sim(args) => sim::sim(&args, out, err),
        Command::Plan(args) => plan::plan(&args, out, err),
        Command::Install(args) => setup::install(args, out, err),
        Command::Uninstall(args) => setup::uninstall(args, out, err),
        Command::IamPolicy(args) => setup::iam_policy(args, out, err),
        Command::Run(args) => run::run(args, err),
        Command::Snapshot(args) => snapshot::snapshot(&args, out, err),
        Command::Status(args) => status::status(&args, out, err),
    };
    ExitCode::from(status)
}

/// A duration flag such as `30s`, `5m` or `1h`, for clap.
pub fn duration(text: &str) -> Result<std::time::Duration, String> {
    spec::quantity::parse_duration(text)
        .map_err(|_| format!("`{text}` is not a duration such as 30s, 5m or 1h"))
}

/// Diagnostics styled for a terminal, plain otherwise.
/// A cluster given on the command line: its name, or its ARN
/// (`arn:aws:ecs:REGION:ACCOUNT:cluster/NAME`, as the console and
/// `aws ecs list-clusters` print it), taken as the name.
pub fn cluster_name(text: &str) -> Result<String, String> {
    let name = match text.strip_prefix("arn:") {
        Some(rest) => {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            match parts.as_slice() {
                [_partition, "ecs", _region, _account, resource] => {
                    resource.strip_prefix("cluster/").ok_or_else(|| {
                        format!("`{text}` is not a cluster ARN (its resource is not cluster/NAME)")
                    })?
                }
                _ => {
                    return Err(format!(
                        "`{text}` is not an ECS cluster ARN (arn:aws:ecs:REGION:ACCOUNT:cluster/NAME)"
                    ));
                }
            }
        }
        None => text,
    };
    // ECS's rule for cluster names: up to 255 letters, digits, hyphens and underscores.
    if name.is_empty()
        || name.len() > 255
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "`{name}` is not a cluster name (1-255 letters, digits, hyphens and underscores)"
        ));
    }
    Ok(name.to_owned())
}

fn renderer() -> Renderer {
    if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        Renderer::styled()
    } else {
        Renderer::plain()
    }
}

/// Prints each diagnostic, rustc-style.
fn print_diagnostics<'a>(
    diagnostics: impl IntoIterator<Item = &'a spec::diag::Diagnostic>,
    err: &mut dyn Write,
) {
    let renderer = renderer();
    for d in diagnostics {
        let _ = writeln!(err, "{}\n", d.render(&renderer));
    }
}

/// The policies of a load for a command that uses them (`plan`): on any
/// error, prints every diagnostic and says nothing was planned.
fn policies_or_report(
    loaded: Result<spec::Loaded, spec::Error>,
    err: &mut dyn Write,
) -> Result<spec::Specs, u8> {
    match loaded {
        Ok(loaded) if !loaded.has_errors() => Ok(loaded.specs()),
        Ok(loaded) => {
            print_diagnostics(&loaded.diagnostics, err);
            let _ = writeln!(err, "error: the policies are invalid; nothing planned");
            Err(exit::INVALID)
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            Err(exit::USAGE)
        }
    }
}

/// Writes `value` as pretty JSON and a newline.
fn write_json(value: &impl serde::Serialize, out: &mut dyn Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}
