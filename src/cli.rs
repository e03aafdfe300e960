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
    /// Print the JSON Schema of ServicePolicy (stevedore.io/v1alpha1).
    Schema,
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
        Command::Schema => write!(out, "{}", crate::schema::servicepolicy_json())
            .map(|()| exit::OK)
            .unwrap_or(exit::USAGE),
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
