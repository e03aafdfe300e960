//! Every validation rule, good and bad, as a table: a document, and the
//! findings (`rule@line:column`) it must produce, no more and no fewer.

use crate::{findings, load};

/// A valid policy whose `spec` is given; `metadata.name` is on line 4.
fn policy(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

const TARGET: &str = "  target: {cluster: demo, service: web}\n";

fn check(cases: &[(&str, String, &[&str])]) {
    let mismatches: Vec<String> = cases
        .iter()
        .filter_map(|(what, text, expected)| {
            let found = findings(&load(&[("p.yaml", text)]));
            (found != *expected)
                .then(|| format!("case `{what}`: found {found:?}, expected {expected:?}"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    for (what, text, expected) in cases {
        let loaded = load(&[("p.yaml", text)]);
        let valid = expected
            .iter()
            .all(|f| f.starts_with("nothing-to-enforce") || f.starts_with("empty-file"));
        assert_eq!(!loaded.has_errors(), valid, "case `{what}`");
    }
}

#[test]
fn valid_policies_have_no_findings() {
    check(&[
        (
            "az balanced",
            policy(
                "web",
                &format!("{TARGET}  placement: {{azBalanced: true}}\n"),
            ),
            &[],
        ),
        (
            "spread over every kind of key",
            policy(
                "web",
                &format!(
                    "{TARGET}  placement:\n    spread:\n      - {{topologyKey: zone, maxSkew: 1}}\n      - {{topologyKey: host, maxSkew: 3}}\n      - {{topologyKey: 'attribute:rack', maxSkew: 1, minDomains: 2}}\n"
                ),
            ),
            &[],
        ),
        (
            "one task per host with a host selector",
            policy(
                "agent",
                "  target: {cluster: demo, service: agent}\n  placement:\n    oneTaskPerHost:\n      hostSelector: {attributes: {ecs.instance-type: m6i.large}}\n",
            ),
            &[],
        ),
        (
            "selector by tags only",
            policy(
                "tagged",
                "  target: {cluster: demo, serviceSelector: {tags: {balance: az}}}\n  placement: {azBalanced: true}\n",
            ),
            &[],
        ),
        (
            "cluster and service ARNs",
            policy(
                "arns",
                "  target:\n    cluster: arn:aws:ecs:eu-west-1:123456789012:cluster/prod\n    service: arn:aws:ecs:eu-west-1:123456789012:service/prod/web\n  placement: {azBalanced: true}\n",
            ),
            &[],
        ),
        (
            "old-format service ARN",
            policy(
                "old-arn",
                "  target:\n    cluster: prod\n    service: arn:aws:ecs:eu-west-1:123456789012:service/web\n  placement: {azBalanced: true}\n",
            ),
            &[],
        ),
        (
            "percent budget and DryRun",
            policy(
                "web",
                &format!(
                    "{TARGET}  placement: {{azBalanced: true}}\n  disruption: {{maxUnavailable: \"25%\"}}\n  mode: DryRun\n"
                ),
            ),
            &[],
        ),
        (
            "a policy without rules is valid but warned about",
            policy("web", TARGET),
            &["nothing-to-enforce@6 'target: {clust'"],
        ),
        (
            "an empty file is a warning",
            "# nothing yet\n---\n".to_owned(),
            &["empty-file@file"],
        ),
    ]);
}

#[test]
fn identity_rules() {
    check(&[
        (
            "wrong apiVersion",
            format!(
                "apiVersion: stevedore.io/v1\nkind: ServicePolicy\nmetadata: {{name: web}}\nspec:\n{TARGET}"
            ),
            &["api-version@1 'stevedore.io/v'"],
        ),
        (
            "wrong kind",
            format!(
                "apiVersion: stevedore.io/v1alpha1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n{TARGET}"
            ),
            &["kind@2 'Deployment'"],
        ),
        (
            "uppercase name",
            policy(
                "Web",
                &format!("{TARGET}  placement: {{azBalanced: true}}\n"),
            ),
            &["name-format@4 'Web'"],
        ),
        (
            "name with underscore",
            policy(
                "web_1",
                &format!("{TARGET}  placement: {{azBalanced: true}}\n"),
            ),
            &["name-format@4 'web_1'"],
        ),
        (
            "name ending in a dash",
            policy(
                "web-",
                &format!("{TARGET}  placement: {{azBalanced: true}}\n"),
            ),
            &["name-format@4 'web-'"],
        ),
        (
            "name too long",
            policy(
                &"a".repeat(64),
                &format!("{TARGET}  placement: {{azBalanced: true}}\n"),
            ),
            &["name-format@4 'aaaaaaaaaaaaaa'"],
        ),
    ]);
}

#[test]
fn decoding_rules() {
    check(&[
        (
            "unknown field",
            policy(
                "web",
                &format!("{TARGET}  placement: {{azbalanced: true}}\n"),
            ),
            &["unknown-field@7 'azbalanced: tr'"],
        ),
        (
            "missing target",
            policy("web", "  placement: {azBalanced: true}\n"),
            &["missing-field@6 'placement: {az'"],
        ),
        (
            "wrong type",
            policy(
                "web",
                &format!("{TARGET}  placement: {{azBalanced: maybe}}\n"),
            ),
            &["invalid-type@7 'maybe}'"],
        ),
        (
            "syntax error",
            policy("web", "  target: {cluster: demo\n"),
            &["yaml-syntax@6 '{cluster: demo'"],
        ),
        (
            // The parser reads on into the next line ("true disruption:
            // ..."), and blamed the boolean: the open bracket is the mistake.
            "unclosed bracket before more lines",
            policy(
                "web",
                &format!(
                    "{TARGET}  placement: {{azBalanced: true\n  disruption: {{maxUnavailable: 1}}\n"
                ),
            ),
            &["yaml-syntax@7 '{azBalanced: t'"],
        ),
        (
            "unknown mode",
            policy(
                "web",
                &format!("{TARGET}  placement: {{azBalanced: true}}\n  mode: Audit\n"),
            ),
            &["unknown-variant@8 'Audit'"],
        ),
    ]);
}

#[test]
fn target_rules() {
    check(&[
        (
            "neither service nor selector",
            policy(
                "web",
                "  target: {cluster: demo}\n  placement: {azBalanced: true}\n",
            ),
            &["target-exactly-one@6 '{cluster: demo'"],
        ),
        (
            "both service and selector",
            policy(
                "web",
                "  target: {cluster: demo, service: web, serviceSelector: {namePattern: w*}}\n  placement: {azBalanced: true}\n",
            ),
            &["target-exactly-one@6 '{namePattern:'"],
        ),
        (
            "empty selector",
            policy(
                "web",
                "  target: {cluster: demo, serviceSelector: {}}\n  placement: {azBalanced: true}\n",
            ),
            &["selector-empty@6 '{}}'"],
        ),
        (
            "bad pattern",
            policy(
                "web",
                "  target: {cluster: demo, serviceSelector: {namePattern: 'api-[0-9]'}}\n  placement: {azBalanced: true}\n",
            ),
            &["name-pattern@6 ''api-[0-9]'}}'"],
        ),
        (
            "bad cluster name",
            policy(
                "web",
                "  target: {cluster: 'my cluster', service: web}\n  placement: {azBalanced: true}\n",
            ),
            &["target-format@6 ''my cluster','"],
        ),
        (
            "ARN of another resource",
            policy(
                "web",
                "  target: {cluster: 'arn:aws:ecs:us-east-1:1:task/x', service: web}\n  placement: {azBalanced: true}\n",
            ),
            &["target-format@6 ''arn:aws:ecs:u'"],
        ),
        (
            "service ARN in another cluster",
            policy(
                "web",
                "  target:\n    cluster: prod\n    service: arn:aws:ecs:us-east-1:1:service/staging/web\n  placement: {azBalanced: true}\n",
            ),
            &["target-format@8 'arn:aws:ecs:us'"],
        ),
    ]);
}

#[test]
fn placement_rules() {
    let spread = |items: &str| {
        policy(
            "web",
            &format!("{TARGET}  placement:\n    spread:\n{items}"),
        )
    };
    check(&[
        (
            "maxSkew 0",
            spread("      - {topologyKey: zone, maxSkew: 0}\n"),
            &["max-skew@9 '0}'"],
        ),
        (
            "negative maxSkew",
            spread("      - {topologyKey: zone, maxSkew: -2}\n"),
            &["max-skew@9 '-2}'"],
        ),
        (
            "minDomains 0",
            spread("      - {topologyKey: zone, maxSkew: 1, minDomains: 0}\n"),
            &["min-domains@9 '0}'"],
        ),
        (
            "unknown topology",
            spread("      - {topologyKey: az, maxSkew: 1}\n"),
            &["topology-key@9 'az, maxSkew: 1'"],
        ),
        (
            "attribute without a name",
            spread("      - {topologyKey: 'attribute:', maxSkew: 1}\n"),
            &["topology-key@9 ''attribute:','"],
        ),
        (
            "two constraints on one key",
            spread(
                "      - {topologyKey: host, maxSkew: 1}\n      - {topologyKey: host, maxSkew: 2}\n",
            ),
            &["duplicate-topology@10 'host, maxSkew:'"],
        ),
        (
            "azBalanced and a zone constraint",
            policy(
                "web",
                &format!(
                    "{TARGET}  placement:\n    azBalanced: true\n    spread: [{{topologyKey: zone, maxSkew: 2}}]\n"
                ),
            ),
            &["duplicate-topology@9 'zone, maxSkew:'"],
        ),
        (
            "the zone attribute is the zone",
            spread(
                "      - {topologyKey: zone, maxSkew: 1}\n      - {topologyKey: 'attribute:ecs.availability-zone', maxSkew: 1}\n",
            ),
            &["duplicate-topology@10 ''attribute:ecs'"],
        ),
        (
            "oneTaskPerHost with scaling",
            policy(
                "web",
                &format!(
                    "{TARGET}  placement: {{oneTaskPerHost: {{}}}}\n  scaling:\n    minTasks: 1\n    maxTasks: 3\n    metric: {{cloudWatch: {{namespace: AWS/ECS, name: CPUUtilization}}}}\n    scaleOutAbove: 70\n    scaleInBelow: 30\n"
                ),
            ),
            &["one-task-per-host-with-scaling@9 'minTasks: 1'"],
        ),
    ]);
}

/// A scaling section with one field replaced.
fn scaling(replace: &str, with: &str) -> String {
    let base = "    minTasks: 2\n    maxTasks: 10\n    metric: {cloudWatch: {namespace: AWS/ECS, name: CPUUtilization}}\n    scaleOutAbove: 70\n    scaleInBelow: 30\n";
    let lines: Vec<String> = base
        .lines()
        .map(|l| {
            if !replace.is_empty() && l.trim_start().starts_with(replace) {
                with.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    let mut body = lines.join("\n") + "\n";
    if (replace.is_empty() || !base.contains(replace)) && !with.is_empty() {
        body.push_str(with);
        body.push('\n');
    }
    policy("worker", &format!("{TARGET}  scaling:\n{body}"))
}

#[test]
fn scaling_rules() {
    check(&[
        (
            "valid scaling",
            scaling("", "    scaleOutStep: \"50%\""),
            &[],
        ),
        (
            "min above max",
            scaling("minTasks", "    minTasks: 11"),
            &["task-bounds@8 '11'"],
        ),
        (
            "negative min",
            scaling("minTasks", "    minTasks: -1"),
            &["task-bounds@8 '-1'"],
        ),
        (
            "max above ECS's limit",
            scaling("maxTasks", "    maxTasks: 5001"),
            &["task-bounds@9 '5001'"],
        ),
        (
            "max zero",
            scaling("maxTasks", "    maxTasks: 0"),
            &["task-bounds@8 '2'", "task-bounds@9 '0'"],
        ),
        (
            "thresholds inverted",
            scaling("scaleInBelow", "    scaleInBelow: 80"),
            &["thresholds@12 '80'"],
        ),
        (
            "thresholds equal",
            scaling("scaleInBelow", "    scaleInBelow: 70"),
            &["thresholds@12 '70'"],
        ),
        (
            "step zero",
            scaling("", "    scaleOutStep: 0"),
            &["step@13 '0'"],
        ),
        (
            "scale-in step over 100%",
            scaling("", "    scaleInStep: \"150%\""),
            &["step@13 '\"150%\"'"],
        ),
        (
            "step not a percentage",
            scaling("", "    scaleInStep: \"two\""),
            &["step@13 '\"two\"'"],
        ),
        (
            "bare number duration",
            scaling("", "    scaleInCooldown: \"300\""),
            &["duration@13 '\"300\"'"],
        ),
        (
            "unknown unit",
            scaling("", "    scaleOutCooldown: 5min"),
            &["duration@13 '5min'"],
        ),
        (
            "metric without a source",
            scaling("metric", "    metric: {}"),
            &["metric-source@10 '{}'"],
        ),
        (
            "odd CloudWatch period",
            scaling(
                "metric",
                "    metric: {cloudWatch: {namespace: AWS/ECS, name: CPUUtilization, period: 90s}}",
            ),
            &["metric-period@10 '90s}}'"],
        ),
        (
            "unknown statistic",
            scaling(
                "metric",
                "    metric: {cloudWatch: {namespace: AWS/ECS, name: CPUUtilization, statistic: Avg}}",
            ),
            &["unknown-variant@10 'Avg}}'"],
        ),
    ]);
}

#[test]
fn disruption_rules() {
    let budget = |v: &str| {
        policy(
            "web",
            &format!(
                "{TARGET}  placement: {{azBalanced: true}}\n  disruption: {{maxUnavailable: {v}}}\n"
            ),
        )
    };
    check(&[
        ("zero tasks", budget("0"), &["max-unavailable@8 '0}'"]),
        (
            "zero percent",
            budget("\"0%\""),
            &["max-unavailable@8 '\"0%\"}'"],
        ),
        (
            "over 100%",
            budget("\"101%\""),
            &["max-unavailable@8 '\"101%\"}'"],
        ),
        (
            "not a percentage",
            budget("\"ten\""),
            &["max-unavailable@8 '\"ten\"}'"],
        ),
        ("100% is allowed", budget("\"100%\""), &[]),
    ]);
}

#[test]
fn several_errors_in_one_document_are_all_reported() {
    let text = policy(
        "Bad_Name",
        "  target: {cluster: demo, service: web}\n  placement:\n    spread:\n      - {topologyKey: az, maxSkew: 0}\n  disruption: {maxUnavailable: 0}\n  mode: Dryrun\n",
    );
    let loaded = load(&[("p.yaml", &text)]);
    assert_eq!(
        findings(&loaded),
        [
            "name-format@4 'Bad_Name'",
            "topology-key@9 'az, maxSkew: 0'",
            "max-skew@9 '0}'",
            "max-unavailable@10 '0}'",
            "unknown-variant@11 'Dryrun'"
        ]
    );
}

#[test]
fn cross_file_names_must_be_unique() {
    let a = policy(
        "web",
        &format!("{TARGET}  placement: {{azBalanced: true}}\n"),
    );
    let b = policy(
        "web",
        "  target: {cluster: demo, service: other}\n  placement: {azBalanced: true}\n",
    );
    let loaded = load(&[("a.yaml", &a), ("b.yaml", &b)]);
    assert_eq!(findings(&loaded), ["name-unique@4 'web'"]);
    let d = &loaded.diagnostics[0];
    assert_eq!(d.position.file, "b.yaml");
    assert_eq!(d.related[0].position.file, "a.yaml");
}

#[test]
fn target_conflicts_name_both_policies_and_files() {
    let exact = |name: &str, cluster: &str, service: &str| {
        policy(
            name,
            &format!(
                "  target: {{cluster: {cluster}, service: {service}}}\n  placement: {{azBalanced: true}}\n"
            ),
        )
    };
    let selector = |name: &str, sel: &str| {
        policy(
            name,
            &format!(
                "  target: {{cluster: demo, serviceSelector: {sel}}}\n  placement: {{azBalanced: true}}\n"
            ),
        )
    };
    let cases: &[(&str, String, String, bool)] = &[
        (
            "same service",
            exact("a", "demo", "web"),
            exact("b", "demo", "web"),
            true,
        ),
        (
            "same service, other cluster",
            exact("a", "demo", "web"),
            exact("b", "prod", "web"),
            false,
        ),
        (
            "name and ARN of one service",
            exact("a", "demo", "web"),
            exact(
                "b",
                "arn:aws:ecs:us-east-1:123456789012:cluster/demo",
                "arn:aws:ecs:us-east-1:123456789012:service/demo/web",
            ),
            true,
        ),
        (
            "ARNs in two regions",
            exact(
                "a",
                "arn:aws:ecs:us-east-1:123456789012:cluster/demo",
                "web",
            ),
            exact(
                "b",
                "arn:aws:ecs:eu-west-1:123456789012:cluster/demo",
                "web",
            ),
            false,
        ),
        (
            "different services",
            exact("a", "demo", "web"),
            exact("b", "demo", "api"),
            false,
        ),
        (
            "pattern matches the service",
            exact("a", "demo", "api-orders"),
            selector("b", "{namePattern: 'api-*'}"),
            true,
        ),
        (
            "pattern misses the service",
            exact("a", "demo", "web"),
            selector("b", "{namePattern: 'api-*'}"),
            false,
        ),
        (
            "tags could match the service",
            exact("a", "demo", "web"),
            selector("b", "{tags: {balance: az}}"),
            true,
        ),
        (
            "overlapping patterns",
            selector("a", "{namePattern: 'api-*'}"),
            selector("b", "{namePattern: '*-orders'}"),
            true,
        ),
        (
            "disjoint patterns",
            selector("a", "{namePattern: 'api-*'}"),
            selector("b", "{namePattern: 'web-*'}"),
            false,
        ),
        (
            "contradicting tags",
            selector("a", "{namePattern: 'api-*', tags: {tier: web}}"),
            selector("b", "{namePattern: 'api-*', tags: {tier: batch}}"),
            false,
        ),
        (
            "compatible tags",
            selector("a", "{tags: {balance: az}}"),
            selector("b", "{tags: {scale: cpu}}"),
            true,
        ),
    ];
    for (what, a, b, conflict) in cases {
        let loaded = load(&[("team-a/a.yaml", a), ("team-b/b.yaml", b)]);
        let found = findings(&loaded);
        if *conflict {
            assert_eq!(found.len(), 1, "{what}: {found:?}");
            assert!(
                found[0].starts_with("target-conflict@6 '"),
                "{what}: {found:?}"
            );
            let d = &loaded.diagnostics[0];
            assert!(
                d.message.contains("`a`") && d.message.contains("`b`"),
                "{what}: {}",
                d.message
            );
            assert_eq!(d.position.file, "team-b/b.yaml", "{what}");
            assert_eq!(d.related[0].position.file, "team-a/a.yaml", "{what}");
        } else {
            assert!(found.is_empty(), "{what}: {found:?}");
        }
    }
}

#[test]
fn conflict_messages_show_a_service_both_would_match() {
    let a = policy(
        "a",
        "  target: {cluster: demo, serviceSelector: {namePattern: 'api-*', tags: {balance: az}}}\n  placement: {azBalanced: true}\n",
    );
    let b = policy(
        "b",
        "  target: {cluster: demo, serviceSelector: {namePattern: '*-orders', tags: {team: pay}}}\n  placement: {azBalanced: true}\n",
    );
    let loaded = load(&[("a.yaml", &a), ("b.yaml", &b)]);
    assert_eq!(
        loaded.diagnostics[0].message,
        "policies `a` and `b` both target a service named `api-orders` tagged {balance=az, team=pay} in cluster `demo`"
    );
}

#[test]
fn defaults_are_applied_once_valid() {
    use std::time::Duration;
    use stevedore::spec::policy::{Metric, Mode, Statistic, TaskCount, TopologyKey};
    let loaded = load(&[("w.yaml", &scaling("", ""))]);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let p = &loaded.policies[0];
    assert_eq!(p.mode, Mode::Enforce);
    assert_eq!(p.max_unavailable, TaskCount::Tasks(1));
    let s = p.scaling.as_ref().unwrap();
    assert_eq!(
        (s.scale_out_step, s.scale_in_step),
        (TaskCount::Tasks(1), TaskCount::Tasks(1))
    );
    assert_eq!(s.scale_out_cooldown, Duration::from_secs(60));
    assert_eq!(s.scale_in_cooldown, Duration::from_secs(300));
    assert_eq!(s.scale_in_stabilization, Duration::from_secs(300));
    let Metric::CloudWatch {
        statistic, period, ..
    } = &s.metric;
    assert_eq!(
        (*statistic, *period),
        (Statistic::Average, Duration::from_secs(60))
    );

    let az = load(&[(
        "a.yaml",
        &policy(
            "web",
            &format!("{TARGET}  placement: {{azBalanced: true}}\n"),
        ),
    )]);
    let spread = &az.policies[0].placement.spread;
    assert_eq!(spread.len(), 1);
    assert_eq!(
        (&spread[0].topology, spread[0].max_skew),
        (&TopologyKey::Zone, 1)
    );
}

/// The edges the README gives are accepted, and read as written:
/// `minTasks` 0, `maxTasks` 5000, a budget of 1%, every short CloudWatch
/// period and a multiple of a minute.
#[test]
fn the_edges_of_each_range_are_accepted_as_written() {
    use std::time::Duration;
    use stevedore::spec::policy::{Metric, TaskCount};
    let bounds = scaling("minTasks", "    minTasks: 0").replace("maxTasks: 10", "maxTasks: 5000");
    let loaded = load(&[("w.yaml", &bounds)]);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let s = loaded.policies[0].scaling.as_ref().unwrap();
    assert_eq!((s.min_tasks, s.max_tasks), (0, 5000));

    for (written, seconds) in [("1s", 1), ("5s", 5), ("10s", 10), ("30s", 30), ("2m", 120)] {
        let text = scaling(
            "metric",
            &format!(
                "    metric: {{cloudWatch: {{namespace: AWS/ECS, name: CPUUtilization, period: {written}}}}}"
            ),
        );
        let loaded = load(&[("w.yaml", &text)]);
        assert!(!loaded.has_errors(), "{written}: {:#?}", loaded.diagnostics);
        let Metric::CloudWatch { period, .. } =
            &loaded.policies[0].scaling.as_ref().unwrap().metric;
        assert_eq!(*period, Duration::from_secs(seconds), "{written}");
    }
    for refused in ["2s", "15s", "59s", "61s"] {
        let text = scaling(
            "metric",
            &format!(
                "    metric: {{cloudWatch: {{namespace: AWS/ECS, name: CPUUtilization, period: {refused}}}}}"
            ),
        );
        assert!(
            load(&[("w.yaml", &text)]).has_errors(),
            "{refused} is accepted"
        );
    }

    let one_percent = policy(
        "web",
        &format!(
            "{TARGET}  placement: {{azBalanced: true}}\n  disruption: {{maxUnavailable: \"1%\"}}\n"
        ),
    );
    let loaded = load(&[("p.yaml", &one_percent)]);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    assert_eq!(loaded.policies[0].max_unavailable, TaskCount::Percent(1));
}
