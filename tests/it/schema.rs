//! The published JSON Schema: committed copy up to date, well-formed, and
//! judged by an independent validator (Python's `jsonschema`) to accept
//! every shipped policy and reject the structurally invalid ones that
//! `stevedore validate` rejects.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{json_lines, repo};

fn committed() -> String {
    std::fs::read_to_string(repo(stevedore::schema::SCHEMA_PATH)).unwrap()
}

#[test]
fn committed_schema_matches_the_generated_one() {
    assert!(
        committed() == stevedore::schema::specs_json(),
        "{} is out of date: run `cargo run -- schema > {}` and commit it",
        stevedore::schema::SCHEMA_PATH,
        stevedore::schema::SCHEMA_PATH
    );
    let path = stevedore::schema::SERVICEPOLICY_SCHEMA_PATH;
    assert!(
        std::fs::read_to_string(repo(path)).unwrap() == stevedore::schema::servicepolicy_json(),
        "{path} is out of date: run `cargo run -- schema servicepolicy > {path}` and commit it",
    );
}

/// Visits every subschema.
fn walk<'a>(
    value: &'a Value,
    path: String,
    visit: &mut dyn FnMut(&str, &'a serde_json::Map<String, Value>),
) {
    match value {
        Value::Object(map) => {
            visit(&path, map);
            for (k, v) in map {
                walk(v, format!("{path}/{k}"), visit);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, format!("{path}/{i}"), visit);
            }
        }
        _ => {}
    }
}

#[test]
fn schema_is_draft_2020_12_closed_and_documented() {
    let schema: Value = serde_json::from_str(&committed()).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let mut objects = 0;
    let mut problems = vec![];
    walk(&schema, String::new(), &mut |path, map| {
        if map.get("type").and_then(Value::as_str) == Some("object")
            && map.contains_key("properties")
        {
            objects += 1;
            if map.get("additionalProperties") != Some(&Value::Bool(false)) {
                problems.push(format!("{path}: additionalProperties is not false"));
            }
            for (name, property) in map["properties"].as_object().unwrap() {
                if property.get("description").is_none() {
                    problems.push(format!("{path}/properties/{name}: no description"));
                }
            }
        }
    });
    assert!(objects >= 12, "only {objects} object schemas");
    assert!(problems.is_empty(), "{problems:#?}");
    // The patterns the issue promises: durations, percentages, names.
    let text = committed();
    for pattern in [
        stevedore::spec::quantity::DURATION_PATTERN,
        stevedore::spec::quantity::PERCENT_PATTERN,
    ] {
        assert!(
            text.contains(&serde_json::to_string(pattern).unwrap()),
            "{pattern} missing"
        );
    }
}

/// The Python of the virtualenv that `scripts/test.sh` prepares.
fn python() -> PathBuf {
    let python = std::env::var_os("STEVEDORE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} not found: run `scripts/test.sh`, which creates the virtualenv with jsonschema, or set STEVEDORE_PYTHON",
        python.display()
    );
    python
}

/// `(file, document index, valid, errors)` for every document of the files.
pub fn python_verdicts(schema: &str, files: &[PathBuf]) -> Vec<(String, u64, bool, Vec<String>)> {
    let mut command = Command::new(python());
    command
        .arg(repo("scripts/schema_check.py"))
        .arg(repo(schema))
        .args(files);
    json_lines(&mut command)
        .into_iter()
        .map(|v| {
            let errors = v["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap().to_owned())
                .collect();
            (
                v["file"].as_str().unwrap().to_owned(),
                v["document"].as_u64().unwrap(),
                v["valid"].as_bool().unwrap(),
                errors,
            )
        })
        .collect()
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    stevedore::spec::policy_files(&repo(dir)).unwrap()
}

#[test]
fn every_shipped_policy_is_valid_for_the_independent_validator() {
    let mut files = yaml_files("specs");
    files.extend(yaml_files("examples/policies"));
    let verdicts = python_verdicts(stevedore::schema::SCHEMA_PATH, &files);
    // Every document was seen, and every one is valid.
    let documents: usize = files
        .iter()
        .map(|f| {
            let loaded = stevedore::spec::load_paths(std::slice::from_ref(f)).unwrap();
            loaded.policies.len() + loaded.budgets.len() + loaded.clusters.len()
        })
        .sum();
    assert_eq!(verdicts.len(), documents);
    for (file, doc, valid, errors) in &verdicts {
        assert!(valid, "{file} document {doc}: {errors:?}");
    }
}

#[test]
fn structurally_invalid_documents_are_rejected_by_both_validators() {
    let files = yaml_files("tests/fixtures/structural");
    assert!(files.len() >= 15, "only {} fixtures", files.len());
    let verdicts = python_verdicts(stevedore::schema::SCHEMA_PATH, &files);
    assert_eq!(verdicts.len(), files.len(), "one document per fixture");
    for (file, _, valid, _) in &verdicts {
        assert!(!valid, "the schema accepts {file}");
        let loaded = stevedore::spec::load_paths(&[Path::new(file).to_owned()]).unwrap();
        assert!(loaded.has_errors(), "stevedore validate accepts {file}");
    }
}
