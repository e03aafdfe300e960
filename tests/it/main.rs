//! The integration tests: one binary (as ripgrep does), one module per area.

mod cli;
mod editor;
mod hostile;
mod rules;
mod schema;
mod sim;
mod snapshots;

use std::path::PathBuf;

/// A path under the repository root.
pub fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
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
