//! `stevedore sim`: the controller against the ECS simulator, in virtual
//! time, on a scenario file, the embedded demo or a generated cluster.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use super::{Output, exit, write_json};
use crate::sim::scenario::{self, GenerateSpec, Scenario};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A scenario file (see examples/scenarios/).
    pub scenario: Option<PathBuf>,
    /// Instead of a file: generate HOSTS,SERVICES,TASKS (for example 5000,5000,100000).
    #[arg(long, value_name = "HOSTS,SERVICES,TASKS", conflicts_with = "scenario", value_parser = generate)]
    pub generate: Option<GenerateSpec>,
    /// How long to simulate (default: the scenario's `duration`; 10m for
    /// a generated cluster).
    #[arg(long, value_parser = super::duration)]
    pub duration: Option<std::time::Duration>,
    /// Seeds ECS's random choices among equally good hosts, the faults and
    /// the metrics' noise (default: the scenario's `seed`; 1 for a
    /// generated cluster). Runs with one seed are the same run.
    #[arg(long)]
    pub seed: Option<u64>,
    /// `human` (a timeline and a summary) or `json` (the report).
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// Also write the run as one self-contained HTML page to FILE: per
    /// service, tasks per zone over time, the skew against maxSkew, the
    /// desired count against the metric, events and actions marked.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// How long a generated cluster is simulated unless `--duration` says.
const DEFAULT_GENERATED_DURATION: std::time::Duration = std::time::Duration::from_secs(600);

/// The scenario `stevedore sim` runs by default.
pub const DEMO_SCENARIO: &str =
    include_str!("../../examples/scenarios/host-joins-after-scale-out.yaml");

/// `--generate HOSTS,SERVICES,TASKS`: three zones, a tenth of the services
/// skewed.
fn generate(text: &str) -> Result<GenerateSpec, String> {
    let parts: Vec<Option<u32>> = text.split(',').map(|p| p.trim().parse().ok()).collect();
    match parts[..] {
        [Some(hosts), Some(services), Some(tasks)] => Ok(GenerateSpec {
            hosts,
            services,
            tasks,
            zones: 3,
            skewed_share: 0.1,
        }),
        _ => Err("takes HOSTS,SERVICES,TASKS, such as 5000,5000,100000".into()),
    }
}

/// A scenario file, or the embedded demo; `None` after saying why not.
pub(super) fn load_scenario(path: Option<&Path>, err: &mut dyn Write) -> Option<Scenario> {
    let loaded = match path {
        Some(path) => scenario::load(path),
        None => scenario::from_text(
            "examples/scenarios/host-joins-after-scale-out.yaml (embedded)",
            DEMO_SCENARIO,
            Path::new("."),
        ),
    };
    match loaded {
        Ok(s) => Some(s),
        Err(scenario::Error::Policies(diagnostics)) => {
            super::print_diagnostics(&diagnostics, err);
            let _ = writeln!(err, "error: the scenario's policies are invalid");
            None
        }
        Err(scenario::Error::Decode(diagnostic) | scenario::Error::Name(diagnostic)) => {
            super::print_diagnostics([diagnostic.as_ref()], err);
            let _ = writeln!(err, "error: the scenario is invalid");
            None
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            None
        }
    }
}

pub fn sim(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    use crate::sim::run;
    let mut scenario = match args.generate {
        Some(g) => scenario::generated(
            g,
            args.seed.unwrap_or(1),
            args.duration
                .unwrap_or(DEFAULT_GENERATED_DURATION)
                .as_millis() as u64,
        ),
        None => match load_scenario(args.scenario.as_deref(), err) {
            Some(s) => s,
            None => return exit::USAGE,
        },
    };
    if let Some(duration) = args.duration {
        scenario.duration = duration.as_millis() as u64;
    }
    if let Some(seed) = args.seed {
        scenario.sim.reseed(seed);
    }
    let human = args.output == Output::Human;
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
            series: args.html.is_some(),
        };
        run::run(scenario, display)
    };
    if let Some(path) = &args.html {
        if let Err(e) = std::fs::write(path, crate::sim::html::report(&report)) {
            let _ = writeln!(err, "error: cannot write {}: {e}", path.display());
            return exit::USAGE;
        }
        let _ = writeln!(err, "the report's page: {}", path.display());
    }
    let written = if human {
        run::write_summary(&report, out)
    } else {
        write_json(&report, out)
    };
    match written {
        Ok(())
            if report.services.iter().any(|s| s.mispredicted_moves > 0)
                || !report.violations.is_empty() =>
        {
            exit::INVALID
        }
        Ok(()) => exit::OK,
        Err(_) => exit::USAGE,
    }
}
