//! Rules across policies: names are unique, and no service is managed by two
//! policies. Two controllers (or two policies) writing the same service's
//! tasks would undo each other's work forever, so an overlap is an error
//! even when only a hypothetical service would fall under both.

use std::collections::{BTreeMap, HashMap};

use super::budget::Budget;
use super::policy::{Policy, ServiceMatch};
use crate::spec::diag::{Diagnostic, Position, Rule};

/// Checks that every name of one kind is used once (as in Kubernetes, a
/// policy and a budget may share a name). Takes the names of all decoded
/// documents, valid or not, so a duplicate is reported even beside other errors.
pub fn unique_names(kind: &str, names: &[(String, Position)]) -> Vec<Diagnostic> {
    let what = if kind == super::v1alpha1::KIND {
        "policy"
    } else {
        kind
    };
    let mut first: HashMap<&str, &Position> = HashMap::new();
    let mut diagnostics = vec![];
    for (name, position) in names {
        match first.get(name.as_str()) {
            Some(earlier) => diagnostics.push(
                Diagnostic::error(
                    Rule::NameUnique,
                    position.clone(),
                    format!("a {what} named `{name}` is already defined"),
                )
                .with_related((*earlier).clone(), "first defined here")
                .with_help(format!(
                    "{what} names must be unique across all loaded files"
                )),
            ),
            None => {
                first.insert(name, position);
            }
        }
    }
    diagnostics
}

/// At most one Cluster document per cluster name: two would leave it
/// unclear where the cluster is. (Policies name clusters by name, so two
/// clusters of one name in two accounts cannot both be managed.)
pub fn one_location_per_cluster(clusters: &[super::cluster::Cluster]) -> Vec<Diagnostic> {
    let mut diagnostics = vec![];
    for (i, later) in clusters.iter().enumerate() {
        if let Some(earlier) = clusters[..i].iter().find(|c| c.name == later.name) {
            diagnostics.push(
                Diagnostic::error(
                    Rule::ClusterConflict,
                    later.origin.clone(),
                    format!(
                        "Cluster `{}` also says where cluster `{}` is",
                        later.document, later.name
                    ),
                )
                .with_related(earlier.origin.clone(), format!("Cluster `{}` first", earlier.document))
                .with_help("one Cluster document per cluster name: policies name clusters by name, so two clusters of one name (in two accounts or regions) cannot both be managed by one controller"),
            );
        }
    }
    diagnostics
}

/// At most one DisruptionBudget per cluster: two would leave it unclear
/// which limit holds.
pub fn one_budget_per_cluster(budgets: &[Budget]) -> Vec<Diagnostic> {
    let mut diagnostics = vec![];
    for (i, later) in budgets.iter().enumerate() {
        if let Some(earlier) = budgets[..i]
            .iter()
            .find(|b| b.cluster.same_as(&later.cluster))
        {
            diagnostics.push(
                Diagnostic::error(
                    Rule::BudgetConflict,
                    later.origin.clone(),
                    format!(
                        "budgets `{}` ({}) and `{}` ({}) both hold cluster `{}`",
                        earlier.name,
                        earlier.origin.file,
                        later.name,
                        later.origin.file,
                        later.cluster.name
                    ),
                )
                .with_related(
                    earlier.origin.clone(),
                    format!("`{}` holds it here", earlier.name),
                )
                .with_help(
                    "a cluster has at most one DisruptionBudget: merge their limits into one",
                ),
            );
        }
    }
    diagnostics
}

/// Checks every pair of valid policies for targets that overlap.
pub fn overlapping_targets(policies: &[Policy]) -> Vec<Diagnostic> {
    let mut diagnostics = vec![];
    for (i, later) in policies.iter().enumerate() {
        for earlier in &policies[..i] {
            if !earlier.target.cluster.same_as(&later.target.cluster) {
                continue;
            }
            if let Some(witness) = overlap(&earlier.target.services, &later.target.services) {
                diagnostics.push(
                    Diagnostic::error(
                        Rule::TargetConflict,
                        later.origin.target.clone(),
                        format!(
                            "policies `{}` and `{}` both target {witness} in cluster `{}`",
                            earlier.name, later.name, later.target.cluster.name
                        ),
                    )
                    .with_related(
                        earlier.origin.target.clone(),
                        format!(
                            "`{}` ({}) targets it here",
                            earlier.name, earlier.origin.target.file
                        ),
                    )
                    .with_help(
                        "a service is managed by one policy: merge the two, or narrow a selector",
                    ),
                );
            }
        }
    }
    diagnostics
}

/// A description of a service both matches would select, if one can exist.
fn overlap(a: &ServiceMatch, b: &ServiceMatch) -> Option<String> {
    match (a, b) {
        (ServiceMatch::Named(x), ServiceMatch::Named(y)) => {
            x.same_as(y).then(|| format!("service `{}`", x.name))
        }
        (ServiceMatch::Named(named), selector @ ServiceMatch::Selector { tags, .. })
        | (selector @ ServiceMatch::Selector { tags, .. }, ServiceMatch::Named(named)) => {
            selector.matches(&named.name, tags).then(|| {
                if tags.is_empty() {
                    format!("service `{}`", named.name)
                } else {
                    format!(
                        "service `{}` (if it is tagged {})",
                        named.name,
                        describe_tags(tags)
                    )
                }
            })
        }
        (
            ServiceMatch::Selector {
                name_pattern: pa,
                tags: ta,
            },
            ServiceMatch::Selector {
                name_pattern: pb,
                tags: tb,
            },
        ) => {
            // A service can carry both tag sets unless they disagree on a key.
            if ta.iter().any(|(k, v)| tb.get(k).is_some_and(|w| w != v)) {
                return None;
            }
            let name = match (pa, pb) {
                (Some(a), Some(b)) => a.common_match(b)?,
                (Some(g), None) | (None, Some(g)) => g.common_match(g)?,
                (None, None) => "any-name".to_owned(),
            };
            let mut tags: BTreeMap<String, String> = ta.clone();
            tags.extend(tb.clone());
            Some(if tags.is_empty() {
                format!("a service named `{name}`")
            } else {
                format!("a service named `{name}` tagged {}", describe_tags(&tags))
            })
        }
    }
}

fn describe_tags(tags: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", parts.join(", "))
}
