//! Cluster documents: where a cluster lives (its region) and how to reach
//! it (a role to assume), validated at the line and column; and over the
//! wire, one controller planning and acting on two clusters in two regions,
//! one of them in another account reached through STS AssumeRole (moto
//! keeps accounts apart by the assumed credentials, so reaching the
//! cluster proves the role was assumed).

use crate::aws::{cluster_in, stevedore, stopped_in};
use crate::moto::{Account, Moto};
use crate::{findings, load};

const FAR: &str = "apiVersion: stevedore.io/v1alpha1
kind: Cluster
metadata: {name: far}
spec:
  region: eu-west-1
  roleArn: arn:aws:iam::111111111111:role/stevedore
  externalId: prod-ext-1
";

#[test]
fn the_documented_cluster_is_valid_and_means_what_it_says() {
    let loaded = load(&[("c.yaml", FAR)]);
    assert!(findings(&loaded).is_empty(), "{:?}", findings(&loaded));
    let c = &loaded.clusters[0];
    assert_eq!((c.name.as_str(), c.region.as_str()), ("far", "eu-west-1"));
    let role = c.role.as_ref().unwrap();
    assert_eq!(role.arn, "arn:aws:iam::111111111111:role/stevedore");
    assert_eq!(role.external_id.as_deref(), Some("prod-ext-1"));
    // `name` sets the ECS name when it is not a DNS label.
    let named = FAR.replace("spec:\n", "spec:\n  name: Far_Away\n");
    let loaded = load(&[("c.yaml", &named)]);
    assert_eq!(loaded.clusters[0].name, "Far_Away");
}

#[test]
fn cluster_mistakes_are_reported_at_their_line_and_column() {
    let broken = FAR
        .replace("eu-west-1", "eu-west")
        .replace("111111111111:role", "1111:role")
        .replace("prod-ext-1", "x");
    let loaded = load(&[("c.yaml", &broken)]);
    assert!(loaded.clusters.is_empty());
    assert_eq!(
        findings(&loaded),
        [
            "region@5 'eu-west'",
            "role-arn@6 'arn:aws:iam::1'",
            "external-id@7 'x'",
        ]
    );
    assert_eq!(
        loaded.diagnostics[1].help.as_deref(),
        Some("the account is 12 digits")
    );
    let no_role = FAR.replace("  roleArn: arn:aws:iam::111111111111:role/stevedore\n", "");
    let loaded = load(&[("c.yaml", &no_role)]);
    assert_eq!(findings(&loaded), ["external-id@6 'prod-ext-1'"]);
    assert!(loaded.diagnostics[0].message.contains("never sent"));
    // A field of another kind is unknown here.
    let loaded = load(&[("c.yaml", &FAR.replace("region:", "regoin:"))]);
    assert_eq!(findings(&loaded)[0], "unknown-field@5 'regoin: eu-wes'");
}

#[test]
fn two_documents_for_one_cluster_are_an_error_naming_both() {
    let again = FAR
        .replace("name: far}", "name: far-too}")
        .replace("spec:\n", "spec:\n  name: far\n");
    let loaded = load(&[("a.yaml", FAR), ("b.yaml", &again)]);
    let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.is_error()).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].rule.id(), "cluster-conflict");
    assert_eq!(errors[0].position.file, "b.yaml");
    assert_eq!(errors[0].related[0].position.file, "a.yaml");
}

/// A ServicePolicy balancing service `web` of `cluster` over zones.
fn policy(cluster: &str) -> String {
    format!(
        "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata: {{name: {cluster}-web}}\nspec:\n  target: {{cluster: {cluster}, service: web}}\n  placement: {{azBalanced: true}}\n"
    )
}

#[tokio::test]
async fn one_controller_reaches_clusters_in_two_regions_and_another_account() {
    let moto = Moto::start();
    let far = moto.assume("arn:aws:iam::111111111111:role/stevedore", "eu-west-1");
    let west = Account::home_in("us-west-2");
    cluster_in(&moto, &far, "far", [3, 2, 1, 0, 0, 0]).await;
    cluster_in(&moto, &west, "west", [2, 2, 2, 0, 0, 0]).await;
    let specs = tempfile::tempdir().unwrap();
    for (file, text) in [
        ("far.yaml", policy("far")),
        ("west.yaml", policy("west")),
        ("far-cluster.yaml", FAR.to_owned()),
        (
            "west-cluster.yaml",
            "apiVersion: stevedore.io/v1alpha1\nkind: Cluster\nmetadata: {name: west}\nspec: {region: us-west-2}\n".to_owned(),
        ),
    ] {
        std::fs::write(specs.path().join(file), text).unwrap();
    }
    let dir = specs.path().to_str().unwrap();

    // Without the Cluster documents, neither is where the controller looks.
    let alone = tempfile::tempdir().unwrap();
    std::fs::write(alone.path().join("far.yaml"), policy("far")).unwrap();
    let out = stevedore(
        &moto,
        &[
            "plan",
            "--specs",
            alone.path().to_str().unwrap(),
            "--fail-on-idle",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("far-web/web: NotFound (cluster `far` not found"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(moto.calls("AssumeRole"), 0);

    let out = stevedore(&moto, &["plan", "--specs", dir, "--output", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plans: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tasks = |i: usize| -> Vec<String> {
        plans[i]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["task"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(plans[0]["cluster"], "far");
    assert_eq!(plans[1]["cluster"], "west");
    // Each stop names a task of its own account and region.
    assert!(!tasks(0).is_empty() && !tasks(1).is_empty(), "{plans:#}");
    assert!(
        tasks(0)
            .iter()
            .all(|t| t.starts_with("arn:aws:ecs:eu-west-1:111111111111:task/far/"))
    );
    assert!(
        tasks(1)
            .iter()
            .all(|t| t.starts_with("arn:aws:ecs:us-west-2:123456789012:task/west/"))
    );
    // One AssumeRole for the whole command: the credentials are cached.
    assert_eq!(moto.calls("AssumeRole"), 1);

    let out = stevedore(&moto, &["run", "--specs", dir, "--once"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("far/far-web/web: done: stop task"), "{text}");
    assert!(
        text.contains("west/west-web/web: done: stop task"),
        "{text}"
    );
    assert_eq!(stopped_in(&moto.client_as(&far), "far").await, 1);
    assert_eq!(stopped_in(&moto.client_as(&west), "west").await, 1);
    assert_eq!(moto.calls("AssumeRole"), 2);
}

#[test]
fn iam_policy_prints_each_accounts_role_and_its_trust() {
    let specs = tempfile::tempdir().unwrap();
    std::fs::write(specs.path().join("far.yaml"), FAR).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stevedore"))
        .args([
            "iam-policy",
            "--cluster",
            "home",
            "--specs",
            specs.path().to_str().unwrap(),
            "--controller-role",
            "arn:aws:iam::123456789012:role/stevedore-controller",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let controller = &printed["controller"];
    assert!(stevedore::setup::iam::allows(controller, "sts:AssumeRole"));
    assert!(stevedore::setup::iam::allows(
        controller,
        "sqs:ReceiveMessage"
    ));
    let target = &printed["targets"][0];
    assert_eq!(target["account"], "111111111111");
    assert_eq!(target["clusters"][0], "eu-west-1/far");
    assert!(stevedore::setup::iam::allows(
        &target["permissions"],
        "ecs:StopTask"
    ));
    assert!(!stevedore::setup::iam::allows(
        &target["permissions"],
        "sqs:ReceiveMessage"
    ));
    let trust = &target["trustPolicy"]["Statement"][0];
    assert_eq!(
        trust["Principal"]["AWS"],
        "arn:aws:iam::123456789012:role/stevedore-controller"
    );
    assert_eq!(
        trust["Condition"]["StringEquals"]["sts:ExternalId"],
        "prod-ext-1"
    );
}
