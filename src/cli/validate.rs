//! `stevedore validate`: every problem of the policy files, with its file,
//! line and column.

use std::io::Write;
use std::path::PathBuf;

use super::{Output, exit, write_json};
use crate::spec;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories (searched recursively for *.yaml and *.yml).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// `human` (rustc-style, with the offending line) or `json`.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
}

pub fn validate(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let loaded = match spec::load_paths(&args.paths) {
        Ok(loaded) => loaded,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return exit::USAGE;
        }
    };
    let written = match args.output {
        Output::Json => write_json(
            &serde_json::json!({
                "valid": !loaded.has_errors(),
                "files": loaded.files,
                "policies": loaded.policies.iter().map(|p| &p.name).collect::<Vec<_>>(),
                "budgets": loaded.budgets.iter().map(|b| &b.name).collect::<Vec<_>>(),
                "clusters": loaded.clusters.iter().map(|c| &c.document).collect::<Vec<_>>(),
                "errors": loaded.error_count(),
                "warnings": loaded.warning_count(),
                "diagnostics": loaded.diagnostics,
            }),
            out,
        ),
        Output::Human => write_human(&loaded, out),
    };
    match written {
        Err(_) => exit::USAGE,
        Ok(()) if loaded.has_errors() => exit::INVALID,
        Ok(()) => exit::OK,
    }
}

fn write_human(loaded: &spec::Loaded, out: &mut dyn Write) -> std::io::Result<()> {
    // Here the diagnostics are the output, not an error beside it.
    super::print_diagnostics(&loaded.diagnostics, out);
    let files = plural(loaded.files.len(), "file");
    let mut kinds = vec![plural(loaded.policies.len(), "policy")];
    if !loaded.budgets.is_empty() {
        kinds.push(plural(loaded.budgets.len(), "budget"));
    }
    if !loaded.clusters.is_empty() {
        kinds.push(plural(loaded.clusters.len(), "cluster"));
    }
    let policies = match kinds.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    };
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
    crate::words::count(n as u64, noun)
}
