//! Diagnostics: what is wrong, where (file, line, column, the offending
//! line), which rule, and how to fix it. They are data; rendering to a
//! terminal (rustc style, via `annotate-snippets`) or to JSON is separate.

use std::fmt;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

/// How bad a diagnostic is. Only errors make a file invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// The rule a diagnostic reports, with a stable id for CI bots and editors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    // Reading and decoding.
    FileTooLarge,
    InvalidUtf8,
    YamlSyntax,
    YamlLimits,
    UnknownField,
    UnknownVariant,
    MissingField,
    InvalidType,
    EmptyFile,
    // Identity.
    ApiVersion,
    Kind,
    NameFormat,
    NameUnique,
    // Target.
    TargetExactlyOne,
    TargetFormat,
    SelectorEmpty,
    NamePattern,
    TargetConflict,
    // Placement.
    TopologyKey,
    MaxSkew,
    MinDomains,
    DuplicateTopology,
    OneTaskPerHostWithScaling,
    NothingToEnforce,
    // Scaling.
    TaskBounds,
    Thresholds,
    Step,
    Duration,
    MetricSource,
    MetricPeriod,
    ScaleAfter,
    OnMissingMetric,
    // Disruption.
    MaxUnavailable,
    // DisruptionBudget.
    BudgetConflict,
    MoveRate,
    Schedule,
    TimeZone,
    // Cluster.
    Region,
    RoleArn,
    ExternalId,
    ClusterConflict,
    // Scenario (the simulator's files).
    /// A name a scenario refers to (host, zone, service) that it never defines.
    UnknownReference,
}

impl Rule {
    /// The rule's id as printed and serialized, such as `max-skew`.
    pub fn id(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id())
    }
}

/// A place in a file, 1-based. `line == 0` means the whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Position {
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// The text of that line, for the snippet (not serialized: editors have the file).
    #[serde(skip)]
    pub source_line: Option<String>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// Another place that explains a diagnostic, such as the other policy of a conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Related {
    #[serde(flatten)]
    pub position: Position,
    pub message: String,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub rule: Rule,
    pub message: String,
    #[serde(flatten)]
    pub position: Position,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<Related>,
}

impl Diagnostic {
    pub fn error(rule: Rule, position: Position, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            rule,
            message: message.into(),
            position,
            help: None,
            related: vec![],
        }
    }

    pub fn warning(rule: Rule, position: Position, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(rule, position, message)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn with_related(mut self, position: Position, message: impl Into<String>) -> Diagnostic {
        self.related.push(Related {
            position,
            message: message.into(),
        });
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders rustc-style, with the offending line and a caret under the value.
    pub fn render(&self, renderer: &Renderer) -> String {
        let level = match self.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let rule = self.rule.id();
        let title = level.primary_title(self.message.as_str()).id(rule.as_str());
        let location_only = format!("{}", self.position);
        let main = match snippet(&self.position, "") {
            Some(s) => title.element(s),
            None => title.element(annotate_snippets::Origin::path(location_only.as_str())),
        };
        let mut report: Vec<Group<'_>> = vec![main];
        for related in &self.related {
            let note = Level::NOTE.secondary_title(related.message.as_str());
            report.push(match snippet(&related.position, "") {
                Some(s) => note.element(s),
                None => note.element(annotate_snippets::Origin::path(
                    related.position.file.as_str(),
                )),
            });
        }
        if let Some(help) = &self.help {
            report.push(Group::with_title(
                Level::HELP.secondary_title(help.as_str()),
            ));
        }
        renderer.render(&report)
    }
}

/// The snippet for one position: its line, with the value under the column
/// underlined up to the end of the token.
fn snippet<'a>(
    position: &'a Position,
    label: &'a str,
) -> Option<Snippet<'a, annotate_snippets::Annotation<'a>>> {
    let line = position.source_line.as_deref()?;
    if position.line == 0 {
        return None;
    }
    let start = char_to_byte(line, position.column.saturating_sub(1) as usize);
    let token_len = line[start..]
        .find(|c: char| c.is_whitespace() || c == ',' || c == '}' || c == ']')
        .unwrap_or(line.len() - start);
    // Long tokens (a minified line) are underlined only at their start.
    let token_len = line[start..]
        .char_indices()
        .nth(40)
        .map_or(token_len, |(i, _)| token_len.min(i));
    let end = start + token_len.max(usize::from(start < line.len()));
    Some(
        Snippet::source(line)
            .line_start(position.line as usize)
            .path(position.file.as_str())
            .annotation(AnnotationKind::Primary.span(start..end).label(label)),
    )
}

fn char_to_byte(line: &str, chars: usize) -> usize {
    line.char_indices()
        .nth(chars)
        .map_or(line.len(), |(i, _)| i)
}

/// Sorts diagnostics by file and position, so output is stable.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        (
            &a.position.file,
            a.position.line,
            a.position.column,
            a.severity,
            a.rule,
            &a.message,
        )
            .cmp(&(
                &b.position.file,
                b.position.line,
                b.position.column,
                b.severity,
                b.rule,
                &b.message,
            ))
    });
}

/// Chooses the closest known name to a misspelled one, if it is close enough
/// that suggesting it helps.
pub fn closest<'a>(
    unknown: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let unknown_lower = unknown.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&unknown_lower, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_case_and_typo_fixes_but_not_unrelated_names() {
        let known = ["topologyKey", "maxSkew", "minDomains"];
        assert_eq!(closest("maxskew", known), Some("maxSkew"));
        assert_eq!(closest("topologyKye", known), Some("topologyKey"));
        assert_eq!(closest("mindomain", known), Some("minDomains"));
        assert_eq!(closest("replicas", known), None);
    }

    #[test]
    fn rule_ids_are_kebab_case() {
        assert_eq!(
            Rule::OneTaskPerHostWithScaling.id(),
            "one-task-per-host-with-scaling"
        );
        assert_eq!(Rule::MaxSkew.to_string(), "max-skew");
    }

    #[test]
    fn render_underlines_the_token_at_the_column() {
        let d = Diagnostic::error(
            Rule::MaxSkew,
            Position {
                file: "specs/web.yaml".into(),
                line: 12,
                column: 18,
                source_line: Some("        maxSkew: 0".into()),
            },
            "maxSkew must be at least 1",
        )
        .with_help("use 1 for the tightest balance");
        let text = d.render(&Renderer::plain());
        assert!(
            text.contains("error[max-skew]: maxSkew must be at least 1"),
            "{text}"
        );
        assert!(text.contains("--> specs/web.yaml:12:18"), "{text}");
        assert!(text.contains("12 |         maxSkew: 0"), "{text}");
        assert!(
            text.contains("help: use 1 for the tightest balance"),
            "{text}"
        );
    }
}
