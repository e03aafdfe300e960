//! Hostile input: no bytes make the loader panic, hang or blow up memory;
//! each is reported as a diagnostic.

use proptest::prelude::*;

use crate::{findings, load};
use stevedore::spec::load_sources;

fn load_bytes(bytes: &[u8]) -> stevedore::spec::Loaded {
    load_sources(vec![("h.yaml".to_owned(), bytes.to_vec())])
}

/// Pieces of the policy format, so generated input gets past the YAML
/// parser and into decoding and validation, where the interesting code is.
fn yamlish() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("apiVersion: stevedore.io/v1alpha1\n"),
        Just("kind: ServicePolicy\n"),
        Just("metadata:\n  name: web\n"),
        Just("spec:\n"),
        Just("  target: {cluster: demo, service: web}\n"),
        Just("  target: {cluster: demo, serviceSelector: {namePattern: 'a*?'}}\n"),
        Just("  placement:\n    spread:\n      - {topologyKey: zone, maxSkew: 1}\n"),
        Just(
            "  scaling: {minTasks: 1, maxTasks: 2, metric: {cloudWatch: {namespace: a, name: b}}, scaleOutAbove: 2, scaleInBelow: 1}\n"
        ),
        Just("  disruption: {maxUnavailable: \"10%\"}\n"),
        Just("---\n"),
        Just("&a "),
        Just("*a\n"),
        Just("[\n"),
        Just("}\n"),
        Just("  "),
        Just("- "),
        Just(": "),
        Just("\"\\u00e9\"\n"),
        Just("\t"),
        Just("99999999999999999999999\n"),
        Just("-1\n"),
        Just("~\n"),
        Just("!!binary aGk=\n"),
        Just("? x\n"),
        Just("<<: *a\n"),
    ];
    proptest::collection::vec(pieces, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let loaded = load_bytes(&bytes);
        // Whatever it is, every diagnostic names the file.
        prop_assert!(loaded.diagnostics.iter().all(|d| d.position.file == "h.yaml"));
    }

    #[test]
    fn arbitrary_yaml_like_text_never_panics(text in yamlish()) {
        let loaded = load_bytes(text.as_bytes());
        for d in &loaded.diagnostics {
            // A positioned diagnostic quotes a line that exists.
            if d.position.line > 0 {
                prop_assert!(d.position.line as usize <= text.lines().count().max(1) + 1, "{d:?}");
            }
        }
    }
}

#[test]
fn alias_bomb_is_stopped_by_the_budget() {
    // "Billion laughs": nine levels of nine-fold aliases would expand to
    // 9^9 (387 million) nodes.
    let mut text = String::from(
        "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata:\n  name: bomb\n  labels:\n    l0: &l0 lol\n",
    );
    for level in 1..=9 {
        let refs = vec![format!("*l{}", level - 1); 9].join(", ");
        text.push_str(&format!("    l{level}: &l{level} [{refs}]\n"));
    }
    text.push_str("spec:\n  target: {cluster: demo, service: web}\n");
    // The typed format rejects the first alias, before any expansion: a
    // label is a string, not a list. (The budget itself is tested on input
    // of any shape in `spec::source`.)
    let loaded = load(&[("bomb.yaml", &text)]);
    assert_eq!(findings(&loaded), ["invalid-type@7 '[*l0, *l0, *l0'"]);
}

#[test]
fn alias_bomb_outside_any_policy_is_rejected_unexpanded() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..=8 {
        let refs = vec![format!("*a{}", level - 1); 10].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    // Not a policy at all: rejected at its first key, nothing expanded.
    assert_eq!(
        findings(&load(&[("bomb.yaml", &text)])),
        ["unknown-field@1 'a0: &a0 [x, x,'"]
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let loaded = load(&[("deep.yaml", &text)]);
    assert_eq!(findings(&loaded), ["yaml-limits@1 '[[[[[[[[[[[[[['"]);
}

#[test]
fn oversized_content_is_a_file_too_large_finding() {
    let mut bytes = b"# padding\n".repeat(stevedore::spec::source::MAX_FILE_BYTES / 10 + 1);
    bytes.extend_from_slice(b"apiVersion: x\n");
    let loaded = load_bytes(&bytes);
    assert_eq!(findings(&loaded), ["file-too-large@file"]);
}

#[test]
fn non_utf8_is_reported_at_its_line_and_column() {
    let loaded = load_bytes(b"apiVersion: stevedore.io/v1alpha1\nkind: Service\xffPolicy\n");
    assert_eq!(loaded.diagnostics.len(), 1);
    let d = &loaded.diagnostics[0];
    assert_eq!(
        (d.rule.id().as_str(), d.position.line, d.position.column),
        ("invalid-utf8", 2, 14)
    );
    assert!(d.message.contains("0xff"), "{}", d.message);
}

#[test]
fn a_utf8_byte_order_mark_is_accepted() {
    let text = std::fs::read_to_string(crate::repo("specs/payments/web.yaml")).unwrap();
    let loaded = load_bytes(format!("\u{feff}{text}").as_bytes());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
}

#[test]
fn a_broken_document_does_not_hide_the_next_ones() {
    let good = std::fs::read_to_string(crate::repo("specs/payments/web.yaml")).unwrap();
    let text = format!(
        "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata: {{name: x, nmae: y}}\nspec: {{}}\n---\n{good}"
    );
    let loaded = load(&[("multi.yaml", &text)]);
    assert_eq!(loaded.error_count(), 1, "{:#?}", loaded.diagnostics);
    assert_eq!(loaded.policies.len(), 1);
    assert_eq!(loaded.policies[0].name, "web-balanced");
}

/// A policy file is read no further than the limit: a sparse file of
/// 64 GiB (no disk behind it) is reported at once, where reading it whole
/// would exhaust memory; a file of exactly 1 MiB is read, one byte more is not.
#[test]
fn files_over_1_mib_are_rejected_unread_and_1_mib_is_read() {
    let limit = stevedore::spec::source::MAX_FILE_BYTES;
    assert_eq!(limit, 1 << 20, "the README says 1 MiB");
    let dir = tempfile::tempdir().unwrap();
    let validate = |name: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stevedore"))
            .args(["validate", "--output", "json"])
            .arg(dir.path().join(name))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), stdout)
    };
    let huge = std::fs::File::create(dir.path().join("huge.yaml")).unwrap();
    huge.set_len(64 << 30).unwrap();
    let (code, stdout) = validate("huge.yaml");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("\"rule\": \"file-too-large\""), "{stdout}");

    std::fs::write(dir.path().join("exact.yaml"), "#".repeat(limit)).unwrap();
    let (code, stdout) = validate("exact.yaml");
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("\"rule\": \"empty-file\""), "{stdout}");

    std::fs::write(dir.path().join("over.yaml"), "#".repeat(limit + 1)).unwrap();
    let (code, stdout) = validate("over.yaml");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("\"rule\": \"file-too-large\""), "{stdout}");
}
