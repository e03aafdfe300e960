//! The rendered diagnostics of a few broken inputs, reviewed as snapshots
//! (`tests/it/snapshots/`): wording, positions and snippets together.

use std::path::PathBuf;

fn render(paths: &[&str]) -> String {
    // Relative names, as a user in the repository would see them.
    let root = env!("CARGO_MANIFEST_DIR");
    std::env::set_current_dir(root).unwrap();
    let loaded =
        stevedore::spec::load_paths(&paths.iter().map(PathBuf::from).collect::<Vec<_>>()).unwrap();
    let renderer = annotate_snippets::Renderer::plain();
    loaded
        .diagnostics
        .iter()
        .map(|d| d.render(&renderer))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[test]
fn typos_get_suggestions() {
    insta::assert_snapshot!(render(&["tests/fixtures/invalid/typos.yaml"]));
}

#[test]
fn every_semantic_rule_of_a_document_is_reported() {
    insta::assert_snapshot!(render(&["tests/fixtures/invalid/semantics.yaml"]));
}

#[test]
fn other_versions_and_kinds_name_the_supported_ones() {
    insta::assert_snapshot!(render(&["tests/fixtures/invalid/other-version.yaml"]));
}

#[test]
fn conflicts_point_at_both_files() {
    insta::assert_snapshot!(render(&["tests/fixtures/invalid/conflicts"]));
}
