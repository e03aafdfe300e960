//! Reading policy files: size limit, UTF-8, YAML limits, and decoding every
//! document of a multi-document file into the wire types, each failure
//! turned into a positioned [`Diagnostic`].

use serde_saphyr::{Error as YamlError, MessageFormatter};

use super::v1alpha1::{self, API_VERSION, BUDGET_KIND, CLUSTER_KIND, KINDS, TypeMeta};
use crate::spec::diag::{Diagnostic, Position, Rule, closest};

/// Files larger than this are rejected unread: a policy file is a few KiB.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// A file's text, kept to quote the offending line in diagnostics.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as the user gave it (or as found under a directory they gave).
    pub name: String,
    pub text: String,
}

impl SourceFile {
    /// The position of a YAML location in this file, with its line's text.
    pub fn position(&self, location: serde_saphyr::Location) -> Position {
        self.position_at(location.line(), location.column())
    }

    pub fn position_at(&self, line: u64, column: u64) -> Position {
        let source_line = (line > 0)
            .then(|| self.text.lines().nth((line - 1) as usize))
            .flatten()
            .map(str::to_owned);
        Position {
            file: self.name.clone(),
            line,
            column,
            source_line,
        }
    }

    /// The whole file, for problems without a line.
    pub fn whole(&self) -> Position {
        Position {
            file: self.name.clone(),
            line: 0,
            column: 0,
            source_line: None,
        }
    }
}

/// Everything read from one file.
#[derive(Debug)]
pub struct DecodedFile {
    pub source: SourceFile,
    pub documents: Vec<Document>,
}

/// One decoded document, by its kind. (Documents are few and short-lived:
/// the size difference between the kinds costs nothing worth a box.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Document {
    Policy(v1alpha1::ServicePolicy),
    Budget(v1alpha1::DisruptionBudget),
    Cluster(v1alpha1::Cluster),
}

impl Document {
    /// The document's `metadata.name`.
    pub fn name(&self) -> &serde_saphyr::Spanned<String> {
        match self {
            Document::Policy(p) => &p.metadata.name,
            Document::Budget(b) => &b.metadata.name,
            Document::Cluster(c) => &c.metadata.name,
        }
    }
}

/// Decodes a file's bytes. Never panics, whatever the bytes (a property test
/// holds it to that); every problem becomes a diagnostic.
pub fn decode(name: &str, bytes: &[u8], diagnostics: &mut Vec<Diagnostic>) -> Option<DecodedFile> {
    let whole = Position {
        file: name.to_owned(),
        line: 0,
        column: 0,
        source_line: None,
    };
    if bytes.len() > MAX_FILE_BYTES {
        diagnostics.push(
            Diagnostic::error(
                Rule::FileTooLarge,
                whole,
                format!(
                    "file is {} bytes; policy files are limited to {MAX_FILE_BYTES} bytes",
                    bytes.len()
                ),
            )
            .with_help("split the policies into several files"),
        );
        return None;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text.strip_prefix('\u{feff}').unwrap_or(text).to_owned(),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let line = valid.iter().filter(|b| **b == b'\n').count() as u64 + 1;
            let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&valid[line_start..])
                .chars()
                .count() as u64
                + 1;
            diagnostics.push(
                Diagnostic::error(
                    Rule::InvalidUtf8,
                    Position {
                        line,
                        column,
                        ..whole
                    },
                    format!(
                        "invalid UTF-8 (byte 0x{:02x} at offset {})",
                        bytes[e.valid_up_to()],
                        e.valid_up_to()
                    ),
                )
                .with_help("policy files must be UTF-8 text"),
            );
            return None;
        }
    };
    let source = SourceFile {
        name: name.to_owned(),
        text,
    };

    // Pass 1 reads only apiVersion and kind, so a document of another version
    // or kind gets one clear error instead of a list of unknown fields, and
    // each document is then decoded as its kind.
    let metas: Vec<_> = read_documents::<TypeMeta>(&source.text);
    let policies: Vec<_> = read_documents::<v1alpha1::ServicePolicy>(&source.text);
    let budgets: Vec<_> = read_documents::<v1alpha1::DisruptionBudget>(&source.text);
    let clusters: Vec<_> = read_documents::<v1alpha1::Cluster>(&source.text);
    // Every pass sees the same documents; if they somehow disagree, the
    // ServicePolicy pass alone decides (`convert` checks apiVersion and
    // kind again).
    let agree = metas.len() == policies.len()
        && budgets.len() == policies.len()
        && clusters.len() == policies.len();
    let mut metas = metas.into_iter();
    let mut budgets = budgets.into_iter();
    let mut clusters = clusters.into_iter();

    let mut documents = vec![];
    for policy in policies {
        let (meta, budget, cluster) = if agree {
            (metas.next(), budgets.next(), clusters.next())
        } else {
            (None, None, None)
        };
        let meta = meta.and_then(Result::ok);
        if let Some(meta) = &meta
            && !check_type_meta(&source, meta, diagnostics)
        {
            continue;
        }
        let kind = meta
            .as_ref()
            .and_then(|m| m.kind.as_ref())
            .map(|k| k.value.as_str());
        let decoded = match (kind, budget, cluster) {
            (Some(BUDGET_KIND), Some(budget), _) => budget.map(Document::Budget),
            (Some(CLUSTER_KIND), _, Some(cluster)) => cluster.map(Document::Cluster),
            _ => policy.map(Document::Policy),
        };
        match decoded {
            Ok(document) => documents.push(document),
            Err(e) => diagnostics.push(decode_error(&source, &e)),
        }
    }
    let blank = |l: &str| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---" || l == "..."
    };
    if source.text.lines().all(blank) {
        diagnostics.push(Diagnostic::warning(
            Rule::EmptyFile,
            source.whole(),
            "no policy in this file",
        ));
    }
    Some(DecodedFile { source, documents })
}

/// Returns false (with a diagnostic) when the document is not of a v1alpha1 kind.
fn check_type_meta(
    source: &SourceFile,
    meta: &TypeMeta,
    diagnostics: &mut Vec<Diagnostic>,
) -> bool {
    let mut ok = true;
    if let Some(v) = &meta.api_version
        && v.value != API_VERSION
    {
        ok = false;
        diagnostics.push(
            Diagnostic::error(
                Rule::ApiVersion,
                source.position(v.referenced),
                format!("unsupported apiVersion `{}`", v.value),
            )
            .with_help(format!("supported: `{API_VERSION}`")),
        );
    }
    if let Some(k) = &meta.kind
        && !KINDS.contains(&k.value.as_str())
    {
        ok = false;
        diagnostics.push(
            Diagnostic::error(
                Rule::Kind,
                source.position(k.referenced),
                format!("unsupported kind `{}`", k.value),
            )
            .with_help(format!(
                "supported kinds in {API_VERSION}: {}",
                KINDS.map(|k| format!("`{k}`")).join(", ")
            )),
        );
    }
    ok
}

/// Limits that no legitimate policy file comes near, so hostile input
/// (alias bombs, deep nesting, millions of nodes) fails fast.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 1_000,
            max_nodes: 100_000,
            max_depth: 64,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_total_scalar_bytes: MAX_FILE_BYTES,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 100_000,
            max_replay_stack_depth: 16,
        },
    }
}

fn read_documents<T: serde::de::DeserializeOwned>(text: &str) -> Vec<Result<T, YamlError>> {
    let mut reader = std::io::Cursor::new(text.as_bytes());
    serde_saphyr::read_with_options::<_, T>(&mut reader, options()).collect()
}

/// Strips the wrappers the YAML crate puts around an error.
fn innermost(mut e: &YamlError) -> &YamlError {
    loop {
        match e {
            YamlError::WithSnippet { error, .. } | YamlError::AliasError { error, .. } => e = error,
            other => return other,
        }
    }
}

pub(crate) fn decode_error(source: &SourceFile, error: &YamlError) -> Diagnostic {
    let position = error
        .location()
        .filter(|l| l.line() > 0)
        .map_or_else(|| source.whole(), |l| source.position(l));
    let message = serde_saphyr::DefaultMessageFormatter
        .format_message(innermost(error))
        .into_owned();
    let diagnostic = decoded(position.clone(), message.clone(), error);
    // Inside a `{` or `[` never closed, a plain value runs on into the next
    // line (`true` becomes `true disruption: ...`), and the decoder blames
    // the value: the bracket is the mistake. (The parser's own errors name
    // the bracket already.)
    if !matches!(diagnostic.rule, Rule::YamlSyntax | Rule::YamlLimits)
        && position.line > 0
        && let Some((line, column, bracket)) =
            unclosed_bracket_around(&source.text, position.line, position.column)
    {
        return Diagnostic::error(
            Rule::YamlSyntax,
            source.position_at(line, column),
            format!("unclosed bracket '{bracket}'"),
        )
        .with_help(format!(
            "close it with '{}' on its line; the parser read on into the following lines and reported: {message} at {}:{}",
            if bracket == '{' { '}' } else { ']' },
            position.line,
            position.column
        ));
    }
    diagnostic
}

/// The diagnostic of a decoding error, by its kind.
fn decoded(position: Position, message: String, error: &YamlError) -> Diagnostic {
    match innermost(error) {
        YamlError::SerdeUnknownField { field, expected, .. } => {
            let diagnostic = Diagnostic::error(Rule::UnknownField, position, format!("unknown field `{field}`"));
            match closest(field, expected.iter().copied()) {
                Some(suggestion) => diagnostic.with_help(format!("did you mean `{suggestion}`?")),
                None => diagnostic.with_help(format!("expected one of: {}", expected.join(", "))),
            }
        }
        YamlError::SerdeUnknownVariant { variant, expected, .. } => {
            let diagnostic = Diagnostic::error(Rule::UnknownVariant, position, format!("unknown value `{variant}`"));
            match closest(variant, expected.iter().copied()) {
                Some(suggestion) => diagnostic.with_help(format!("did you mean `{suggestion}`?")),
                None => diagnostic.with_help(format!("expected one of: {}", expected.join(", "))),
            }
        }
        YamlError::SerdeMissingField { field, .. } => {
            Diagnostic::error(Rule::MissingField, position, format!("missing field `{field}`"))
        }
        YamlError::Budget { .. }
        | YamlError::AliasReplayCounterOverflow { .. }
        | YamlError::AliasReplayLimitExceeded { .. }
        | YamlError::AliasExpansionLimitExceeded { .. }
        | YamlError::AliasReplayStackDepthExceeded { .. } => Diagnostic::error(Rule::YamlLimits, position, message)
            .with_help("policy files are small; this input exceeds the parser's safety limits (aliases, nesting or size)"),
        YamlError::SerdeInvalidType { .. }
        | YamlError::SerdeInvalidValue { .. }
        | YamlError::SerdeInvalidLength { .. }
        | YamlError::InvalidScalar { .. }
        | YamlError::InvalidBooleanStrict { .. }
        | YamlError::NullIntoString { .. }
        | YamlError::NonFiniteFloat { .. }
        | YamlError::Unexpected { .. }
        | YamlError::Message { .. } => Diagnostic::error(Rule::InvalidType, position, message),
        // The parser's own nesting guard reports itself only in words.
        _ if message.contains("limit exceeded") => Diagnostic::error(Rule::YamlLimits, position, message)
            .with_help("policy files are small; this input exceeds the parser's safety limits (aliases, nesting or size)"),
        _ => Diagnostic::error(Rule::YamlSyntax, position, message),
    }
}

/// The innermost flow bracket (`{` or `[`) open at 1-based (`line`,
/// `column`) that is still open at the end of the text, with its place.
/// Quoted strings and comments are skipped; block scalars are rare in
/// policy files and are read as plain text (at worst, no bracket is found).
fn unclosed_bracket_around(text: &str, line: u64, column: u64) -> Option<(u64, u64, char)> {
    let mut open: Vec<(u64, u64, char)> = vec![];
    let mut enclosing: Option<usize> = None;
    for (l, text_line) in (1u64..).zip(text.lines()) {
        let mut quote: Option<char> = None;
        let mut previous = ' ';
        for (c, ch) in (1u64..).zip(text_line.chars()) {
            if enclosing.is_none() && (l, c) >= (line, column) {
                enclosing = Some(open.len());
            }
            match (quote, ch) {
                (Some(q), _) if ch == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(ch),
                (None, '#') if previous.is_whitespace() => break,
                (None, '{' | '[') => open.push((l, c, ch)),
                (None, '}' | ']') => {
                    open.pop();
                    if enclosing.is_some_and(|depth| open.len() < depth) {
                        // The bracket around the error was closed.
                        return None;
                    }
                }
                _ => {}
            }
            previous = ch;
        }
    }
    let depth = enclosing?;
    (depth > 0).then(|| open.get(depth - 1).copied()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bracket_left_open_is_named_not_the_value_it_swallowed() {
        let text = "spec:\n  placement: {azBalanced: true\n  disruption: {maxUnavailable: 1}\n";
        assert_eq!(unclosed_bracket_around(text, 2, 27), Some((2, 14, '{')));
        // Closed, even over several lines: the value is the mistake.
        let text = "spec:\n  placement: {azBalanced: yes,\n    x: 1}\n";
        assert_eq!(unclosed_bracket_around(text, 2, 27), None);
        // Brackets in quotes and comments do not count.
        let text = "a: '{' # [\nb: {c: \"}\", d: x\n";
        assert_eq!(unclosed_bracket_around(text, 2, 16), Some((2, 4, '{')));
        // Outside any bracket.
        assert_eq!(unclosed_bracket_around("a: {b: 1}\nc: x\n", 2, 4), None);
    }

    /// An alias bomb where any shape is accepted (`IgnoredAny`), so only
    /// the replay budget in [`options`] can stop it: 10^9 nodes otherwise.
    #[test]
    fn the_alias_budget_stops_a_billion_laughs() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..=8 {
            let refs = vec![format!("*a{}", level - 1); 10].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
        }
        let results = read_documents::<serde::de::IgnoredAny>(&text);
        let error = results
            .into_iter()
            .find_map(Result::err)
            .expect("the bomb is rejected");
        let diagnostic = decode_error(
            &SourceFile {
                name: "b.yaml".into(),
                text,
            },
            &error,
        );
        assert_eq!(diagnostic.rule, Rule::YamlLimits, "{}", diagnostic.message);
    }

    #[test]
    fn deep_nesting_is_a_limits_error() {
        let text = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let error = read_documents::<serde::de::IgnoredAny>(&text)
            .into_iter()
            .find_map(Result::err)
            .unwrap();
        let diagnostic = decode_error(
            &SourceFile {
                name: "d.yaml".into(),
                text,
            },
            &error,
        );
        assert_eq!(diagnostic.rule, Rule::YamlLimits, "{}", diagnostic.message);
    }
}
