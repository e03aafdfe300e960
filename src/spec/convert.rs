//! From the wire format to the internal [`Policy`]: validate every field
//! (collecting all problems, each at its position), then apply defaults.
//! Rules that span several policies (unique names, overlapping targets) are
//! in [`super::conflicts`].

use std::time::Duration;

use serde_saphyr::Spanned;

use super::budget::{self, Budget, MoveRate as BudgetMoveRate, Window, WindowError};
use super::cluster;
use super::glob::Glob;
use super::policy::{
    Metric, Mode, OnMissingMetric, OneTaskPerHost, Origin, Placement, Policy, ResourceRef, Scaling,
    ScheduledFloor, ServiceMatch, SpreadConstraint, Statistic, TaskCount, TopologyKey, defaults,
};
use super::quantity::{IntOrPercent, parse_duration, parse_percent};
use super::source::SourceFile;
use super::v1alpha1 as wire;
use crate::spec::diag::{Diagnostic, Rule, closest};

/// ECS's limit on tasks per service.
pub const MAX_TASKS_PER_SERVICE: i64 = 5_000;

/// Collects the diagnostics of one document.
struct Checker<'a> {
    source: &'a SourceFile,
    diagnostics: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error<T>(
        &mut self,
        rule: Rule,
        at: &Spanned<T>,
        message: impl Into<String>,
    ) -> Option<&mut Diagnostic> {
        self.diagnostics.push(Diagnostic::error(
            rule,
            self.source.position(at.referenced),
            message,
        ));
        self.diagnostics.last_mut()
    }

    fn help(&mut self, help: impl Into<String>) {
        if let Some(d) = self.diagnostics.last_mut() {
            d.help = Some(help.into());
        }
    }

    fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Validates one decoded Cluster document: its name, region and role.
pub fn convert_cluster(
    source: &SourceFile,
    doc: wire::Cluster,
) -> (Option<cluster::Cluster>, Vec<Diagnostic>) {
    let mut c = Checker {
        source,
        diagnostics: vec![],
    };
    check_name(&mut c, &doc.metadata.name);
    let spec = &doc.spec.value;
    let named = spec.name.as_ref().unwrap_or(&doc.metadata.name);
    if !is_ecs_name(&named.value) {
        c.error(
            Rule::TargetFormat,
            named,
            format!("`{}` is not a cluster name", named.value),
        );
        c.help("a cluster name has 1 to 255 letters, digits, `-` and `_` (a Cluster names its cluster by name, never by ARN: the ARN's region and account are `region` and `roleArn`)");
    }
    if let Some(why) = cluster::region_problem(&spec.region.value) {
        c.error(
            Rule::Region,
            &spec.region,
            format!("`{}` is not an AWS region", spec.region.value),
        );
        c.help(why);
    }
    if let Some(role) = &spec.role_arn
        && let Some(why) = cluster::role_arn_problem(&role.value)
    {
        c.error(
            Rule::RoleArn,
            role,
            format!("`{}` is not an IAM role ARN", role.value),
        );
        c.help(why);
    }
    if let Some(id) = &spec.external_id {
        if let Some(why) = cluster::external_id_problem(&id.value) {
            c.error(Rule::ExternalId, id, "not a valid external ID");
            c.help(why);
        }
        if spec.role_arn.is_none() {
            c.error(
                Rule::ExternalId,
                id,
                "an external ID without `roleArn` is never sent",
            );
            c.help("add the `roleArn` whose trust policy requires it, or remove `externalId`");
        }
    }
    if c.has_errors() {
        return (None, c.diagnostics);
    }
    let cluster = cluster::Cluster {
        document: doc.metadata.name.value.clone(),
        name: named.value.clone(),
        region: spec.region.value.clone(),
        role: spec.role_arn.as_ref().map(|arn| cluster::AssumedRole {
            arn: arn.value.clone(),
            external_id: spec.external_id.as_ref().map(|id| id.value.clone()),
        }),
        origin: source.position(named.referenced),
    };
    (Some(cluster), c.diagnostics)
}

/// Validates one decoded DisruptionBudget and, when it has no errors,
/// returns it defaulted. Warnings are returned either way.
pub fn convert_budget(
    source: &SourceFile,
    doc: wire::DisruptionBudget,
) -> (Option<Budget>, Vec<Diagnostic>) {
    let mut c = Checker {
        source,
        diagnostics: vec![],
    };
    check_name(&mut c, &doc.metadata.name);
    let spec = &doc.spec.value;
    let cluster = match parse_cluster(&spec.cluster.value) {
        Ok(r) => Some(r),
        Err(why) => {
            c.error(
                Rule::TargetFormat,
                &spec.cluster,
                format!(
                    "`{}` is not a cluster name or ARN: {why}",
                    spec.cluster.value
                ),
            );
            None
        }
    };
    let max_unavailable = spec
        .max_unavailable
        .as_ref()
        .and_then(|m| check_count(&mut c, m, Rule::MaxUnavailable, "maxUnavailable", 100));
    let moves = spec.moves.as_ref().and_then(|m| {
        let rate = &m.value;
        let max = match u32::try_from(rate.max.value) {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                c.error(
                    Rule::MoveRate,
                    &rate.max,
                    format!("moves.max must be at least 1, got {}", rate.max.value),
                );
                c.help("to stop every move, use a window instead");
                None
            }
        };
        let per =
            check_duration(&mut c, Some(&rate.per), "moves.per", Duration::ZERO).filter(|per| {
                let ok = !per.is_zero();
                if !ok {
                    c.error(
                        Rule::MoveRate,
                        &rate.per,
                        "moves.per must be longer than zero",
                    );
                }
                ok
            });
        Some(BudgetMoveRate {
            max: max?,
            per: per?,
        })
    });
    let windows: Vec<Window> = spec
        .windows
        .iter()
        .flatten()
        .filter_map(|w| {
            let w = &w.value;
            check_window(&mut c, &w.schedule, &w.duration, w.time_zone.as_ref())
        })
        .collect();
    if c.has_errors() {
        return (None, c.diagnostics);
    }
    let Some(cluster) = cluster else {
        return (None, c.diagnostics);
    };
    let budget = Budget {
        name: doc.metadata.name.value.clone(),
        cluster,
        max_unavailable,
        one_zone_at_a_time: spec.one_zone_at_a_time.as_ref().is_some_and(|b| b.value),
        moves,
        windows,
        origin: source.position(doc.metadata.name.referenced),
    };
    (Some(budget), c.diagnostics)
}

/// Validates one decoded document and, when it has no errors, returns the
/// defaulted policy. Warnings are returned either way.
pub fn convert(source: &SourceFile, doc: wire::ServicePolicy) -> (Option<Policy>, Vec<Diagnostic>) {
    let mut c = Checker {
        source,
        diagnostics: vec![],
    };

    if doc.api_version.value != wire::API_VERSION {
        c.error(
            Rule::ApiVersion,
            &doc.api_version,
            format!("unsupported apiVersion `{}`", doc.api_version.value),
        );
        c.help(format!("supported: `{}`", wire::API_VERSION));
    }
    if doc.kind.value != wire::KIND {
        c.error(
            Rule::Kind,
            &doc.kind,
            format!("unsupported kind `{}`", doc.kind.value),
        );
        c.help(format!(
            "supported kinds in {}: `{}`",
            wire::API_VERSION,
            wire::KIND
        ));
    }
    check_name(&mut c, &doc.metadata.name);

    let spec = &doc.spec.value;
    let target = check_target(&mut c, &spec.target);
    let placement = check_placement(&mut c, spec.placement.as_ref());
    let scaling = spec.scaling.as_ref().and_then(|s| check_scaling(&mut c, s));

    if let (Some(otph), Some(scaling)) = (
        spec.placement
            .as_ref()
            .and_then(|p| p.one_task_per_host.as_ref()),
        spec.scaling.as_ref(),
    ) {
        let related = c.source.position(otph.referenced);
        if let Some(d) = c.error(
            Rule::OneTaskPerHostWithScaling,
            scaling,
            "`scaling` cannot be combined with `placement.oneTaskPerHost`",
        ) {
            d.related.push(crate::spec::diag::Related {
                position: related,
                message: "oneTaskPerHost sets the desired count to the number of eligible hosts"
                    .into(),
            });
            d.help = Some(
                "remove `scaling`, or drop `oneTaskPerHost` and use a `host` spread constraint"
                    .into(),
            );
        }
    }

    let max_unavailable = match spec
        .disruption
        .as_ref()
        .and_then(|d| d.max_unavailable.as_ref())
    {
        Some(m) => check_count(&mut c, m, Rule::MaxUnavailable, "maxUnavailable", 100),
        None => Some(defaults::MAX_UNAVAILABLE),
    };

    let settle_time = check_duration(
        &mut c,
        spec.disruption
            .as_ref()
            .and_then(|d| d.settle_time.as_ref()),
        "settleTime",
        defaults::SETTLE_TIME,
    );

    let mode = match &spec.mode {
        Some(m) => check_enum::<Mode>(&mut c, m, "mode"),
        None => Some(Mode::Enforce),
    };

    if !c.has_errors()
        && placement
            .as_ref()
            .is_some_and(|p| p.one_task_per_host.is_none() && p.spread.is_empty())
        && spec.scaling.is_none()
    {
        c.diagnostics.push(
            Diagnostic::warning(
                Rule::NothingToEnforce,
                source.position(doc.spec.referenced),
                format!(
                    "policy `{}` has no placement rule and no scaling: it will only report",
                    doc.metadata.name.value
                ),
            )
            .with_help("add `placement` (oneTaskPerHost, azBalanced, spread) or `scaling`"),
        );
    }

    if c.has_errors() {
        return (None, c.diagnostics);
    }
    let (Some(target), Some(placement), Some(max_unavailable), Some(settle_time), Some(mode)) =
        (target, placement, max_unavailable, settle_time, mode)
    else {
        return (None, c.diagnostics);
    };
    let policy = Policy {
        name: doc.metadata.name.value.clone(),
        labels: doc.metadata.labels.clone(),
        target,
        placement,
        scaling,
        max_unavailable,
        settle_time,
        mode,
        origin: Origin {
            name: source.position(doc.metadata.name.referenced),
            // The service or selector itself: what a conflict is about.
            target: match (
                &spec.target.value.service,
                &spec.target.value.service_selector,
            ) {
                (Some(service), _) => source.position(service.referenced),
                (None, Some(selector)) => match &selector.value.name_pattern {
                    Some(pattern) => source.position(pattern.referenced),
                    None => source.position(selector.referenced),
                },
                (None, None) => source.position(spec.target.referenced),
            },
        },
    };
    (Some(policy), c.diagnostics)
}

fn check_name(c: &mut Checker<'_>, name: &Spanned<String>) {
    let n = &name.value;
    let ok = !n.is_empty()
        && n.len() <= 63
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !n.starts_with('-')
        && !n.ends_with('-');
    if !ok {
        c.error(
            Rule::NameFormat,
            name,
            format!("`{n}` is not a valid policy name"),
        );
        let suggestion: String = n
            .to_ascii_lowercase()
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
            .collect::<String>()
            .trim_matches('-')
            .chars()
            .take(63)
            .collect();
        let mut help = "a name is a DNS label: lowercase letters, digits and `-`, at most 63 characters, starting and ending with a letter or digit".to_owned();
        if !suggestion.is_empty() && suggestion != *n {
            help.push_str(&format!(" (for example `{suggestion}`)"));
        }
        c.help(help);
    }
}

/// Parses `arn:<partition>:ecs:<region>:<account>:<resource>` into its scope
/// and resource part.
fn parse_ecs_arn(text: &str) -> Option<((String, String), &str)> {
    let mut parts = text.splitn(6, ':');
    let (arn, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (arn == "arn"
        && partition.starts_with("aws")
        && service == "ecs"
        && !region.is_empty()
        && !account.is_empty())
    .then(|| ((region.to_owned(), account.to_owned()), resource))
}

fn is_ecs_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 255
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn parse_cluster(text: &str) -> Result<ResourceRef, String> {
    if text.starts_with("arn:") {
        let (scope, resource) = parse_ecs_arn(text).ok_or("not an ECS ARN")?;
        let name = resource
            .strip_prefix("cluster/")
            .ok_or("an ECS ARN, but not of a cluster (expected `cluster/NAME`)")?;
        if !is_ecs_name(name) {
            return Err(format!("`{name}` is not a valid cluster name"));
        }
        return Ok(ResourceRef {
            written: text.to_owned(),
            name: name.to_owned(),
            scope: Some(scope),
        });
    }
    if !is_ecs_name(text) {
        return Err("a cluster name has 1 to 255 letters, digits, `-` and `_`".into());
    }
    Ok(ResourceRef {
        written: text.to_owned(),
        name: text.to_owned(),
        scope: None,
    })
}

/// A service ARN may name its cluster (`service/CLUSTER/NAME`, the current
/// format) or not (`service/NAME`, the old one).
fn parse_service(text: &str) -> Result<(ResourceRef, Option<String>), String> {
    if text.starts_with("arn:") {
        let (scope, resource) = parse_ecs_arn(text).ok_or("not an ECS ARN")?;
        let rest = resource
            .strip_prefix("service/")
            .ok_or("an ECS ARN, but not of a service (expected `service/CLUSTER/NAME`)")?;
        let (cluster, name) = match rest.split_once('/') {
            Some((cluster, name)) => (Some(cluster.to_owned()), name),
            None => (None, rest),
        };
        if !is_ecs_name(name) {
            return Err(format!("`{name}` is not a valid service name"));
        }
        return Ok((
            ResourceRef {
                written: text.to_owned(),
                name: name.to_owned(),
                scope: Some(scope),
            },
            cluster,
        ));
    }
    if !is_ecs_name(text) {
        return Err("a service name has 1 to 255 letters, digits, `-` and `_`".into());
    }
    Ok((
        ResourceRef {
            written: text.to_owned(),
            name: text.to_owned(),
            scope: None,
        },
        None,
    ))
}

fn check_target(
    c: &mut Checker<'_>,
    target: &Spanned<wire::Target>,
) -> Option<super::policy::Target> {
    let t = &target.value;
    let cluster = match parse_cluster(&t.cluster.value) {
        Ok(r) => Some(r),
        Err(why) => {
            c.error(
                Rule::TargetFormat,
                &t.cluster,
                format!("`{}` is not a cluster name or ARN: {why}", t.cluster.value),
            );
            None
        }
    };
    let services = match (&t.service, &t.service_selector) {
        (Some(_), Some(selector)) => {
            c.error(
                Rule::TargetExactlyOne,
                selector,
                "set either `service` or `serviceSelector`, not both",
            );
            None
        }
        (None, None) => {
            c.error(
                Rule::TargetExactlyOne,
                target,
                "`target` needs a `service` or a `serviceSelector`",
            );
            c.help("name one service with `service: NAME`, or match several with `serviceSelector: {namePattern: \"api-*\"}`");
            None
        }
        (Some(service), None) => match parse_service(&service.value) {
            Ok((r, arn_cluster)) => {
                if let (Some(arn_cluster), Some(cluster)) = (arn_cluster, &cluster)
                    && arn_cluster != cluster.name
                {
                    c.error(
                        Rule::TargetFormat,
                        service,
                        format!("the service ARN is in cluster `{arn_cluster}`, but `target.cluster` is `{}`", cluster.name),
                    );
                    return None;
                }
                Some(ServiceMatch::Named(r))
            }
            Err(why) => {
                c.error(
                    Rule::TargetFormat,
                    service,
                    format!("`{}` is not a service name or ARN: {why}", service.value),
                );
                None
            }
        },
        (None, Some(selector)) => check_selector(c, selector),
    };
    Some(super::policy::Target {
        cluster: cluster?,
        services: services?,
    })
}

fn check_selector(
    c: &mut Checker<'_>,
    selector: &Spanned<wire::ServiceSelector>,
) -> Option<ServiceMatch> {
    let s = &selector.value;
    let tags = s.tags.clone().unwrap_or_default();
    if s.name_pattern.is_none() && tags.is_empty() {
        c.error(
            Rule::SelectorEmpty,
            selector,
            "`serviceSelector` matches every service of the cluster",
        );
        c.help("give a `namePattern`, `tags`, or both; to manage every service, say so with `namePattern: \"*\"`");
        return None;
    }
    let name_pattern = match &s.name_pattern {
        None => None,
        Some(p) => match Glob::new(&p.value) {
            Ok(g) => Some(g),
            Err(why) => {
                c.error(
                    Rule::NamePattern,
                    p,
                    format!("invalid name pattern `{}`: {why}", p.value),
                );
                return None;
            }
        },
    };
    Some(ServiceMatch::Selector { name_pattern, tags })
}

fn check_placement(c: &mut Checker<'_>, placement: Option<&wire::Placement>) -> Option<Placement> {
    let Some(p) = placement else {
        return Some(Placement::default());
    };
    let mut ok = true;
    let mut spread: Vec<(SpreadConstraint, Option<&Spanned<String>>)> = vec![];
    if p.az_balanced.as_ref().is_some_and(|b| b.value) {
        spread.push((
            SpreadConstraint {
                topology: TopologyKey::Zone,
                max_skew: 1,
                min_domains: None,
            },
            None,
        ));
    }
    for constraint in p.spread.iter().flatten() {
        let sc = &constraint.value;
        let topology = TopologyKey::parse(&sc.topology_key.value);
        if topology.is_none() {
            ok = false;
            c.error(
                Rule::TopologyKey,
                &sc.topology_key,
                format!("unknown topologyKey `{}`", sc.topology_key.value),
            );
            let suggestion = match sc.topology_key.value.to_ascii_lowercase().as_str() {
                "az"
                | "zones"
                | "availability-zone"
                | "availabilityzone"
                | "ecs.availability-zone" => Some("zone"),
                "instance" | "hosts" | "node" | "containerinstance" | "container-instance" => {
                    Some("host")
                }
                other => closest(other, ["zone", "host"]),
            };
            c.help(match suggestion {
                Some(s) => format!("did you mean `{s}`? topologyKey is `zone`, `host` or `attribute:<ECS attribute name>`"),
                None => "topologyKey is `zone`, `host` or `attribute:<ECS attribute name>`".to_owned(),
            });
        }
        let max_skew = positive(
            c,
            &sc.max_skew,
            Rule::MaxSkew,
            "maxSkew",
            "1 allows a difference of one task between domains, the tightest balance",
        );
        let min_domains = match &sc.min_domains {
            None => Some(None),
            Some(m) => positive(
                c,
                m,
                Rule::MinDomains,
                "minDomains",
                "minDomains is the number of domains the tasks must spread over",
            )
            .map(Some),
        };
        match (topology, max_skew, min_domains) {
            (Some(topology), Some(max_skew), Some(min_domains)) => {
                spread.push((
                    SpreadConstraint {
                        topology,
                        max_skew,
                        min_domains,
                    },
                    Some(&sc.topology_key),
                ));
            }
            _ => ok = false,
        }
    }
    // Two constraints over one topology would contradict or repeat each other.
    for i in 0..spread.len() {
        if let Some(earlier) = spread[..i]
            .iter()
            .position(|(s, _)| s.topology == spread[i].0.topology)
            && let Some(at) = spread[i].1
        {
            ok = false;
            let what = match spread[earlier].1 {
                None => "`azBalanced: true` already constrains `zone`".to_owned(),
                Some(_) => format!(
                    "an earlier constraint already uses `{}`",
                    spread[i].0.topology
                ),
            };
            c.error(
                Rule::DuplicateTopology,
                at,
                format!(
                    "second spread constraint over `{}`: {what}",
                    spread[i].0.topology
                ),
            );
            c.help("keep one constraint per topologyKey");
        }
    }
    let one_task_per_host = p.one_task_per_host.as_ref().map(|o| OneTaskPerHost {
        host_attributes: o
            .value
            .host_selector
            .as_ref()
            .map(|h| h.attributes.clone())
            .unwrap_or_default(),
    });
    ok.then(|| Placement {
        one_task_per_host,
        spread: spread.into_iter().map(|(s, _)| s).collect(),
    })
}

fn positive(
    c: &mut Checker<'_>,
    value: &Spanned<i64>,
    rule: Rule,
    field: &str,
    help: &str,
) -> Option<u32> {
    match u32::try_from(value.value) {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            c.error(
                rule,
                value,
                format!("{field} must be at least 1, got {}", value.value),
            );
            c.help(help);
            None
        }
    }
}

/// A task count or percentage; `max_percent` bounds the percentage.
fn check_count(
    c: &mut Checker<'_>,
    value: &Spanned<IntOrPercent>,
    rule: Rule,
    field: &str,
    max_percent: u32,
) -> Option<TaskCount> {
    match &value.value {
        IntOrPercent::Int(n) => match u32::try_from(*n) {
            Ok(n) if n >= 1 => Some(TaskCount::Tasks(n)),
            _ => {
                c.error(
                    rule,
                    value,
                    format!("{field} must be at least 1 task, got {n}"),
                );
                None
            }
        },
        IntOrPercent::Text(text) => match parse_percent(text) {
            Some(p) if (1..=max_percent).contains(&p) => Some(TaskCount::Percent(p)),
            Some(p) => {
                c.error(
                    rule,
                    value,
                    format!("{field} must be between 1% and {max_percent}%, got {p}%"),
                );
                None
            }
            None => {
                c.error(rule, value, format!("{field} must be a number of tasks or a percentage such as \"10%\", got `{text}`"));
                None
            }
        },
    }
}

/// One of an enumeration's names, exactly as written in the schema.
fn check_enum<T: std::str::FromStr + strum::VariantNames>(
    c: &mut Checker<'_>,
    value: &Spanned<String>,
    field: &str,
) -> Option<T> {
    match value.value.parse() {
        Ok(v) => Some(v),
        Err(_) => {
            c.error(
                Rule::UnknownVariant,
                value,
                format!("unknown {field} `{}`", value.value),
            );
            match closest(&value.value, T::VARIANTS.iter().copied()) {
                Some(s) => c.help(format!("did you mean `{s}`?")),
                None => c.help(format!("{field} is one of: {}", T::VARIANTS.join(", "))),
            }
            None
        }
    }
}

fn check_duration(
    c: &mut Checker<'_>,
    value: Option<&Spanned<String>>,
    field: &str,
    default: Duration,
) -> Option<Duration> {
    let Some(value) = value else {
        return Some(default);
    };
    match parse_duration(&value.value) {
        Ok(d) => Some(d),
        Err(e) => {
            c.error(Rule::Duration, value, format!("{field}: {e}"));
            None
        }
    }
}

fn check_scaling(c: &mut Checker<'_>, scaling: &Spanned<wire::Scaling>) -> Option<Scaling> {
    let s = &scaling.value;
    let errors_before = c.diagnostics.len();
    if s.min_tasks.value < 0 {
        c.error(
            Rule::TaskBounds,
            &s.min_tasks,
            format!("minTasks cannot be negative, got {}", s.min_tasks.value),
        );
    }
    if s.max_tasks.value < 1 || s.max_tasks.value > MAX_TASKS_PER_SERVICE {
        c.error(
            Rule::TaskBounds,
            &s.max_tasks,
            format!("maxTasks must be between 1 and {MAX_TASKS_PER_SERVICE} (ECS's limit per service), got {}", s.max_tasks.value),
        );
    }
    if s.min_tasks.value > s.max_tasks.value {
        c.error(
            Rule::TaskBounds,
            &s.min_tasks,
            format!(
                "minTasks ({}) is greater than maxTasks ({})",
                s.min_tasks.value, s.max_tasks.value
            ),
        );
    }
    if s.scale_in_below.value >= s.scale_out_above.value {
        c.error(
            Rule::Thresholds,
            &s.scale_in_below,
            format!(
                "scaleInBelow ({}) must be lower than scaleOutAbove ({})",
                s.scale_in_below.value, s.scale_out_above.value
            ),
        );
        c.help("between the two thresholds the service keeps its count; without that gap it would flap");
    }
    // A scale-out step may exceed 100% (double the service); a scale-in step may not.
    let out_step = s
        .scale_out_step
        .as_ref()
        .map_or(Some(defaults::SCALE_STEP), |v| {
            check_count(c, v, Rule::Step, "scaleOutStep", 1000)
        });
    let in_step = s
        .scale_in_step
        .as_ref()
        .map_or(Some(defaults::SCALE_STEP), |v| {
            check_count(c, v, Rule::Step, "scaleInStep", 100)
        });
    let out_cooldown = check_duration(
        c,
        s.scale_out_cooldown.as_ref(),
        "scaleOutCooldown",
        defaults::SCALE_OUT_COOLDOWN,
    );
    let in_cooldown = check_duration(
        c,
        s.scale_in_cooldown.as_ref(),
        "scaleInCooldown",
        defaults::SCALE_IN_COOLDOWN,
    );
    let stabilization = check_duration(
        c,
        s.scale_in_stabilization.as_ref(),
        "scaleInStabilization",
        defaults::SCALE_IN_STABILIZATION,
    );
    let metric = check_metric(c, &s.metric);
    let mut periods = |value: &Option<Spanned<i64>>, field: &str| match value {
        None => Some(defaults::SCALE_AFTER_PERIODS),
        Some(v) => match u32::try_from(v.value) {
            Ok(n) if (1..=60).contains(&n) => Some(n),
            _ => {
                c.error(
                    Rule::ScaleAfter,
                    v,
                    format!(
                        "{field} must be between 1 and 60 metric periods, got {}",
                        v.value
                    ),
                );
                None
            }
        },
    };
    let out_after = periods(&s.scale_out_after, "scaleOutAfter");
    let in_after = periods(&s.scale_in_after, "scaleInAfter");
    let on_missing = s
        .on_missing_metric
        .as_ref()
        .map(|m| check_on_missing(c, m, s.min_tasks.value, s.max_tasks.value));
    let mut schedules = vec![];
    for schedule in s.schedules.iter().flatten() {
        let w = &schedule.value;
        let window = check_window(c, &w.schedule, &w.duration, w.time_zone.as_ref());
        let floor = match u32::try_from(w.min_tasks.value) {
            Ok(n) if i64::from(n) <= s.max_tasks.value => Some(n),
            _ => {
                c.error(
                    Rule::TaskBounds,
                    &w.min_tasks,
                    format!(
                        "a schedule's minTasks must be between 0 and maxTasks ({}), got {}",
                        s.max_tasks.value, w.min_tasks.value
                    ),
                );
                None
            }
        };
        if let (Some(window), Some(min_tasks)) = (window, floor) {
            schedules.push(ScheduledFloor { window, min_tasks });
        }
    }
    if c.diagnostics.len() > errors_before {
        return None;
    }
    Some(Scaling {
        min_tasks: u32::try_from(s.min_tasks.value).ok()?,
        max_tasks: u32::try_from(s.max_tasks.value).ok()?,
        metric: metric?,
        scale_out_above: s.scale_out_above.value,
        scale_in_below: s.scale_in_below.value,
        scale_out_step: out_step?,
        scale_in_step: in_step?,
        scale_out_cooldown: out_cooldown?,
        scale_in_cooldown: in_cooldown?,
        scale_in_stabilization: stabilization?,
        scale_out_after: out_after?,
        scale_in_after: in_after?,
        on_missing_metric: match on_missing {
            None => None,
            Some(checked) => Some(checked?),
        },
        schedules,
    })
}

fn check_on_missing(
    c: &mut Checker<'_>,
    missing: &Spanned<wire::OnMissingMetric>,
    min: i64,
    max: i64,
) -> Option<OnMissingMetric> {
    let m = &missing.value;
    let after = check_duration(c, Some(&m.after), "onMissingMetric.after", Duration::ZERO);
    if after.is_some_and(|a| a.is_zero()) {
        c.error(
            Rule::Duration,
            &m.after,
            "onMissingMetric.after must be longer than zero",
        );
    }
    let hold = match &m.action {
        Some(a) => check_enum::<wire::MissingAction>(c, a, "onMissingMetric.action").map(|_| ()),
        None => Some(()),
    };
    let tasks = match (&m.action, &m.tasks) {
        (Some(action), Some(_)) => {
            c.error(
                Rule::OnMissingMetric,
                action,
                "set either `action: Hold` or `tasks`, not both",
            );
            None
        }
        (_, Some(t)) if t.value < min || t.value > max => {
            c.error(
                Rule::OnMissingMetric,
                t,
                format!(
                    "onMissingMetric.tasks must be within minTasks ({min}) and maxTasks ({max}), got {}",
                    t.value
                ),
            );
            None
        }
        (_, Some(t)) => Some(u32::try_from(t.value).ok()),
        (_, None) => Some(None),
    };
    hold?;
    let after = after.filter(|a| !a.is_zero())?;
    Some(OnMissingMetric {
        after,
        tasks: tasks?,
    })
}

/// A cron schedule, a duration and a time zone: each checked on its own,
/// so that every mistake is reported.
fn check_window(
    c: &mut Checker<'_>,
    schedule: &Spanned<String>,
    duration: &Spanned<String>,
    time_zone: Option<&Spanned<String>>,
) -> Option<Window> {
    let errors_before = c.diagnostics.len();
    if let Err(e) = budget::schedule(&schedule.value) {
        c.error(Rule::Schedule, schedule, e.to_string());
        c.help("five fields: minute hour day-of-month month day-of-week, such as `0 2 * * *` (02:00 daily) or `0 22 * * MON-FRI`");
    }
    let zone = time_zone.map_or("UTC", |z| z.value.as_str());
    if let (Err(e), Some(at)) = (budget::time_zone(zone), time_zone) {
        c.error(Rule::TimeZone, at, e.to_string());
        let names: Vec<String> = jiff::tz::db()
            .available()
            .map(|n| n.as_str().to_owned())
            .collect();
        if let Some(suggestion) = closest(&at.value, names.iter().map(String::as_str)) {
            c.help(format!("did you mean `{suggestion}`?"));
        }
    }
    let length = check_duration(c, Some(duration), "duration", Duration::ZERO);
    if length.is_some_and(|d| d.is_zero()) {
        c.error(
            Rule::Duration,
            duration,
            WindowError::ZeroDuration.to_string(),
        );
    }
    if c.diagnostics.len() > errors_before {
        return None;
    }
    Window::new(&schedule.value, length?, zone).ok()
}

fn check_metric(c: &mut Checker<'_>, metric: &Spanned<wire::MetricSource>) -> Option<Metric> {
    let Some(cw) = &metric.value.cloud_watch else {
        c.error(Rule::MetricSource, metric, "`metric` needs a source");
        c.help("for example `cloudWatch: {namespace: AWS/ECS, name: CPUUtilization, dimensions: {...}}`");
        return None;
    };
    let mut ok = true;
    for (field, value) in [("namespace", &cw.namespace), ("name", &cw.name)] {
        if value.value.trim().is_empty() {
            ok = false;
            c.error(
                Rule::MetricSource,
                value,
                format!("cloudWatch.{field} is empty"),
            );
        }
    }
    let statistic = match &cw.statistic {
        Some(s) => check_enum::<Statistic>(c, s, "statistic"),
        None => Some(Statistic::Average),
    };
    let period = check_duration(c, cw.period.as_ref(), "period", defaults::METRIC_PERIOD)?;
    let secs = period.as_secs();
    let valid_period = period.subsec_nanos() == 0
        && (matches!(secs, 1 | 5 | 10 | 30) || (secs > 0 && secs % 60 == 0));
    if !valid_period && let Some(p) = &cw.period {
        ok = false;
        c.error(
            Rule::MetricPeriod,
            p,
            format!(
                "CloudWatch periods are 1s, 5s, 10s, 30s or a multiple of 60s, got `{}`",
                p.value
            ),
        );
    }
    if !ok {
        return None;
    }
    Some(Metric::CloudWatch {
        namespace: cw.namespace.value.clone(),
        name: cw.name.value.clone(),
        statistic: statistic?,
        dimensions: cw.dimensions.clone(),
        period,
    })
}
