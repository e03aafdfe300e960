//! The integration tests: one binary (as ripgrep does), one module per area.

mod acting;
mod aws;
mod budgets;
mod cli;
mod clusters;
mod deploy;
mod editor;
mod fuzz;
mod githost;
mod hostile;
mod limits;
mod longrun;
mod moto;
mod pictures;
mod readme;
mod reads;
mod replicas;
mod rules;
mod scaling;
mod schema;
mod sim;
mod snapshots;

use std::path::PathBuf;

/// What a command that exited 0 printed as JSON (else fails with its
/// standard error).
pub fn json_of_success(out: &std::process::Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A path under the repository root.
pub fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs a shipped scenario (`examples/scenarios/NAME.yaml`) after
/// replacing `from` with `to` in its text (which must hold `from`): a run
/// with and without a setting, from one file.
pub fn run_edited(name: &str, from: &str, to: &str) -> stevedore::sim::run::Report {
    let text = std::fs::read_to_string(repo(&format!("examples/scenarios/{name}.yaml"))).unwrap();
    assert!(text.contains(from), "{name} has no `{from}`");
    let text = text.replace(from, to);
    let scenario =
        stevedore::sim::scenario::from_text(name, &text, &repo("examples/scenarios")).unwrap();
    stevedore::sim::run::run(
        scenario,
        stevedore::sim::run::Display {
            timeline: None,
            progress: false,
            series: false,
        },
    )
}

/// Loads in-memory files as `stevedore validate` would.
pub fn load(files: &[(&str, &str)]) -> stevedore::spec::Loaded {
    stevedore::spec::load_sources(
        files
            .iter()
            .map(|(name, text)| (name.to_string(), text.as_bytes().to_vec()))
            .collect(),
    )
}

/// Every diagnostic, in order, as `rule@line 'text'`, where `text` is what
/// its line holds from the reported column on (up to 14 characters): a
/// table reads which token each error points at.
pub fn findings(loaded: &stevedore::spec::Loaded) -> Vec<String> {
    loaded
        .diagnostics
        .iter()
        .map(|d| {
            let p = &d.position;
            let tail: String = p
                .source_line
                .as_deref()
                .unwrap_or("")
                .chars()
                .skip(p.column.saturating_sub(1) as usize)
                .take(14)
                .collect();
            if p.line == 0 {
                format!("{}@file", d.rule)
            } else {
                format!("{}@{} '{}'", d.rule, p.line, tail.trim_end())
            }
        })
        .collect()
}

/// Runs a helper program that prints one JSON object per line (the schema
/// and editor checkers), failing the test on a non-zero exit.
pub fn json_lines(command: &mut std::process::Command) -> Vec<serde_json::Value> {
    let out = command.output().expect("the helper program runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}
