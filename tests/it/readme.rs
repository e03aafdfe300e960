//! The README's "What the tests prove" stays true: each promise listed
//! names at least one test, and each test it names exists.

use std::path::Path;

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
}

/// Whether a test function of this name is defined: `fn NAME(` after
/// `#[test]` or `#[tokio::test]`, or inside a `proptest!` block.
fn is_test(name: &str, files: &[(String, String)]) -> bool {
    let signature = format!("fn {name}(");
    files.iter().any(|(_, text)| {
        text.match_indices(&signature).any(|(at, _)| {
            let before = &text[..at];
            let attribute = before.rfind("#[test]").max(before.rfind("#[tokio::test]"));
            let previous_fn = before.rfind("fn ");
            let by_attribute = attribute.is_some_and(|a| previous_fn.is_none_or(|f| f < a));
            let in_proptest = before.rfind("proptest! {").is_some()
                && text[at..].split(')').next().unwrap_or("").contains(" in ");
            by_attribute || in_proptest
        })
    })
}

/// The test names on a line: backquoted snake_case words with at least two
/// underscores (`cargo test NAME` runs each).
fn named_tests(line: &str) -> Vec<&str> {
    line.split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| {
            w.matches('_').count() >= 2
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .collect()
}

#[test]
fn every_promise_names_a_test_that_exists() {
    let readme = std::fs::read_to_string(crate::repo("README.md")).unwrap();
    let start = readme
        .find("\n## What the tests prove\n")
        .expect("the README has a \"What the tests prove\" section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let mut files = vec![];
    sources(&crate::repo("src"), &mut files);
    sources(&crate::repo("tests"), &mut files);

    let promises: Vec<&str> = section.lines().filter(|l| l.starts_with("- ")).collect();
    assert!(promises.len() >= 30, "{} promises", promises.len());
    let mut problems = vec![];
    for promise in &promises {
        let names = named_tests(promise);
        if names.is_empty() {
            problems.push(format!("names no test: {promise}"));
        }
        for name in names {
            if !is_test(name, &files) {
                problems.push(format!("no test `{name}`: {promise}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_check_tells_a_test_from_a_function() {
    let files = vec![(
        "x.rs".to_owned(),
        "#[test]\nfn a_real_test_here() {}\nfn a_helper_fn_here() {}\nproptest! {\n    #[test]\n    fn a_property_test_here(x in 0..3) {}\n}\n".to_owned(),
    )];
    assert!(is_test("a_real_test_here", &files));
    assert!(!is_test("a_helper_fn_here", &files));
    assert!(is_test("a_property_test_here", &files));
    assert!(!is_test("not_there_at_all", &files));
    assert_eq!(
        named_tests("- x `maxUnavailable`, `a_b_c`, `--once`: `one_two_three`"),
        ["a_b_c", "one_two_three"]
    );
}
