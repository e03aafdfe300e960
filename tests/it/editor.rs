//! What a user sees in their editor: the YAML language server (behind the
//! YAML support of VS Code, Neovim, Helix) opens policy files, follows the
//! `# yaml-language-server: $schema=...` modeline to the committed schema,
//! and flags mistakes. Runs the real server (installed by `scripts/test.sh`).

use std::path::PathBuf;
use std::process::Command;

use crate::{json_lines, repo};

fn language_server() -> PathBuf {
    let server = std::env::var_os("STEVEDORE_YAML_LS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            repo("scripts/editor/node_modules/yaml-language-server/bin/yaml-language-server")
        });
    assert!(
        server.exists(),
        "{} not found: run `scripts/test.sh`, which installs it with npm, or set STEVEDORE_YAML_LS",
        server.display()
    );
    server
}

/// `(line, column, message)`, 1-based, as the editor shows it.
type EditorDiagnostic = (u64, u64, String);

/// Each file with what the editor shows for it.
fn editor_diagnostics(files: &[PathBuf]) -> Vec<(String, Vec<EditorDiagnostic>)> {
    let mut command = Command::new("node");
    command
        .arg(repo("scripts/editor/check.js"))
        .arg(language_server())
        .args(files)
        .current_dir(repo(""));
    json_lines(&mut command)
        .into_iter()
        .map(|v| {
            let diagnostics = v["diagnostics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        d["line"].as_u64().unwrap(),
                        d["column"].as_u64().unwrap(),
                        d["message"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            (v["file"].as_str().unwrap().to_owned(), diagnostics)
        })
        .collect()
}

#[test]
fn the_modeline_makes_editors_flag_mistakes_and_accept_good_policies() {
    let mut files = vec![
        repo("tests/fixtures/editor/typo.yaml"),
        repo("tests/fixtures/editor/budget-typo.yaml"),
        repo("tests/fixtures/editor/cluster-typo.yaml"),
    ];
    files.extend(stevedore::spec::policy_files(&repo("specs")).unwrap());
    files.extend(stevedore::spec::policy_files(&repo("examples/policies")).unwrap());
    let results = editor_diagnostics(&files);
    assert_eq!(results.len(), files.len());

    let (_, typo) = &results[0];
    assert!(
        typo.iter()
            .any(|(line, column, message)| (*line, *column) == (13, 9)
                && message.contains("maxskew")),
        "the editor does not flag `maxskew` at 13:9: {typo:?}"
    );
    // The other kind, by the same modeline: its own fields are known.
    let (_, budget_typo) = &results[1];
    assert!(
        budget_typo
            .iter()
            .any(|(line, column, message)| (*line, *column) == (8, 3)
                && message.contains("oneZoneAtATme")),
        "the editor does not flag `oneZoneAtATme` at 8:3: {budget_typo:?}"
    );
    let (_, cluster_typo) = &results[2];
    assert!(
        cluster_typo
            .iter()
            .any(|(line, column, message)| (*line, *column) == (9, 3)
                && message.contains("externalID")),
        "the editor does not flag `externalID` at 9:3: {cluster_typo:?}"
    );
    for (file, diagnostics) in &results[3..] {
        assert!(diagnostics.is_empty(), "{file}: {diagnostics:?}");
    }
}

/// Every shipped policy file starts with the modeline, pointing at the
/// committed schema by a relative path that exists.
#[test]
fn every_shipped_policy_file_has_a_working_modeline() {
    let mut files = stevedore::spec::policy_files(&repo("specs")).unwrap();
    files.extend(stevedore::spec::policy_files(&repo("examples/policies")).unwrap());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let first = text.lines().next().unwrap_or("");
        let target = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{} does not start with the modeline", file.display()));
        let schema = file.parent().unwrap().join(target);
        assert_eq!(
            std::fs::canonicalize(&schema).unwrap(),
            std::fs::canonicalize(repo(stevedore::schema::SCHEMA_PATH)).unwrap(),
            "{}",
            file.display()
        );
    }
}

/// The editor completes each kind's own fields through the one modeline:
/// under a DisruptionBudget's `spec` its limits, under a ServicePolicy's
/// its rules (what is already written is not offered again).
#[test]
fn the_editor_completes_the_fields_of_each_kind() {
    let files = [
        repo("tests/fixtures/editor/complete/budget.yaml"),
        repo("tests/fixtures/editor/complete/policy.yaml"),
    ];
    let mut command = Command::new("node");
    command
        .arg(repo("scripts/editor/check.js"))
        .arg(language_server())
        .args(&files)
        .current_dir(repo(""));
    let completions: Vec<Vec<String>> = json_lines(&mut command)
        .into_iter()
        .map(|v| {
            let mut labels: Vec<String> = v["completions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_owned())
                .collect();
            labels.sort();
            labels
        })
        .collect();
    assert_eq!(
        completions,
        [
            vec!["maxUnavailable", "moves", "oneZoneAtATime", "windows"],
            vec!["disruption", "mode", "placement", "scaling"],
        ]
    );
}
