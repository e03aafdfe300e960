//! The binary's one-shot commands against moto: `plan` and `run --once`,
//! from files or a private git repository.

use super::*;

#[tokio::test]
async fn plan_shows_the_stops_against_live_state() {
    let moto = Moto::start();
    let client = moto.client();
    let hosts = cluster(&moto, [3, 2, 1, 0, 0, 0]).await;
    let specs = specs_dir("  placement: {azBalanced: true}\n");
    let out = stevedore(&moto, &["plan", "--specs", specs.path().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("cluster demo:")
            && text.contains("web/web: Converging (3 moves needed, 1 now"),
        "{text}"
    );
    assert!(
        text.contains(&format!(" on {} (us-east-1a)", hosts[0])),
        "the stop names the task's host and zone: {text}"
    );
    assert_eq!(stopped(&client).await, 0, "plan acts on nothing");

    let json = stevedore(
        &moto,
        &[
            "plan",
            "--specs",
            specs.path().to_str().unwrap(),
            "--output",
            "json",
        ],
    );
    let plans: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(plans[0]["actions"][0]["action"], "stopTask");
    assert!(
        plans[0]["actions"][0]["task"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:ecs:")
    );
}

#[tokio::test]
async fn run_once_acts_and_dry_run_does_not() {
    let (moto, client) = crate::aws::demo([3, 2, 1, 0, 0, 0]).await;
    let specs = specs_dir("  placement: {azBalanced: true}\n");
    let dir = specs.path().to_str().unwrap();

    let dry = stevedore(&moto, &["run", "--specs", dir, "--once", "--dry-run"]);
    let text = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(dry.status.code(), Some(0), "{text}");
    assert!(text.contains("(dry run)"), "{text}");
    assert_eq!(stopped(&client).await, 0);

    let real = stevedore(&moto, &["run", "--specs", dir, "--once"]);
    let text = String::from_utf8_lossy(&real.stdout);
    assert_eq!(real.status.code(), Some(0), "{text}");
    assert!(
        text.contains("demo/web/web: done: stop task arn:aws:ecs:"),
        "{text}"
    );
    assert_eq!(stopped(&client).await, 1, "exactly the one planned stop");
}

#[tokio::test]
async fn run_refuses_invalid_policies_and_reports_unreachable_clusters() {
    let moto = Moto::start();
    let bad = specs_dir("  placement: {azBalanced: true, maxskew: 1}\n");
    let out = stevedore(
        &moto,
        &["run", "--specs", bad.path().to_str().unwrap(), "--once"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unknown field `maxskew`"));

    // A cluster that does not exist is no failed read: its policy is
    // NotFound, named with its cluster, and the run goes on (exit 0).
    let good = specs_dir("  placement: {azBalanced: true}\n");
    let out = stevedore(
        &moto,
        &["run", "--specs", good.path().to_str().unwrap(), "--once"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("demo/web/web: NotFound: cluster `demo` not found"),
        "{text}"
    );
}

/// Every policy is accounted for: one whose cluster does not exist, or
/// whose service is misspelt, is listed as NotFound (with the closest
/// name), the others are planned as usual, and `--fail-on-idle` makes CI
/// fail on it.
#[tokio::test]
async fn plan_lists_policies_that_match_nothing_and_can_fail_on_them() {
    let (moto, _client) = crate::aws::demo([3, 2, 1, 0, 0, 0]).await;
    let specs = specs_dir("  placement: {azBalanced: true}\n");
    let policy = |name: &str, cluster: &str, service: &str| {
        format!(
            "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata: {{name: {name}}}\nspec:\n  target: {{cluster: {cluster}, service: {service}}}\n  placement: {{azBalanced: true}}\n"
        )
    };
    std::fs::write(
        specs.path().join("typo.yaml"),
        policy("typo", "demo", "webb"),
    )
    .unwrap();
    std::fs::write(
        specs.path().join("gone.yaml"),
        policy("gone", "nowhere", "web"),
    )
    .unwrap();
    let dir = specs.path().to_str().unwrap();
    let out = stevedore(&moto, &["plan", "--specs", dir]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("cluster demo:"), "{text}");
    assert!(
        text.contains("web/web: Converging"),
        "the others are planned: {text}"
    );
    assert!(
        text.contains(
            "typo/webb: NotFound (no service `webb` in cluster `demo`; did you mean `web`?)"
        ),
        "{text}"
    );
    assert!(text.contains("cluster nowhere:"), "{text}");
    assert!(
        text.contains(
            "gone/web: NotFound (cluster `nowhere` not found: the policy matches nothing)"
        ),
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cluster `nowhere` not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = stevedore(&moto, &["plan", "--specs", dir, "--fail-on-idle"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("matching nothing: gone, typo")
            || String::from_utf8_lossy(&out.stderr).contains("matching nothing: typo, gone"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn plan_reads_a_private_repository_over_https_with_a_token_in_its_url_or_the_environment() {
    let (moto, _client) = crate::aws::demo([1, 1, 1, 1, 1, 1]).await;
    let root = tempfile::tempdir().unwrap();
    let origin = root.path().join("policies.git");
    std::fs::create_dir_all(&origin).unwrap();
    policies_repository(&origin);
    let host = crate::githost::serve(root.path(), true, Some(("x-access-token", "s3cret")));
    let ca = root.path().join("ca.pem");
    std::fs::write(&ca, host.ca_pem.as_deref().unwrap()).unwrap();
    let trust = [
        ("SSL_CERT_FILE", ca.to_str().unwrap()),
        // Never ask on a terminal, as a controller must not.
        ("GIT_TERMINAL_PROMPT", "0"),
    ];
    let with_token = host
        .url
        .replace("https://", "https://x-access-token:s3cret@")
        + "/policies.git";
    let plan = |url: &str, env: &[(&str, &str)]| {
        let out = stevedore_with_env(&moto, &["plan", "--specs", url, "--git-ref", "main"], env);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !stdout.contains("s3cret") && !stderr.contains("s3cret"),
            "the token is shown: {stdout}{stderr}"
        );
        (out.status.code(), stdout, stderr)
    };

    // With the token in the URL, over TLS with the host's CA trusted.
    let (code, stdout, stderr) = plan(&with_token, &trust);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("web/web: Satisfied"), "{stdout}");
    assert!(stderr.contains("specs: commit "), "{stderr}");
    assert!(host.served.load(std::sync::atomic::Ordering::SeqCst) >= 2);

    // The token from the environment, as ECS injects a secret, with the
    // URL free of it.
    let (code, stdout, stderr) = plan(
        &format!("{}/policies.git", host.url),
        &[
            trust[0],
            trust[1],
            ("STEVEDORE_GIT_TOKEN", "s3cret"),
            ("STEVEDORE_GIT_USERNAME", "x-access-token"),
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("web/web: Satisfied"), "{stdout}");

    // Without it, the host refuses, and the error says so.
    let (code, _, stderr) = plan(&format!("{}/policies.git", host.url), &trust);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(host.refused.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(
        stderr.contains(&format!("error: git {}/policies.git: ", host.url))
            && stderr.contains("Failed to obtain credentials")
            && stderr.contains("set STEVEDORE_GIT_TOKEN"),
        "{stderr}"
    );

    // Without the CA, the certificate is not trusted, and nothing is sent.
    let served = host.served.load(std::sync::atomic::Ordering::SeqCst);
    let (code, _, stderr) = plan(&with_token, &[("GIT_TERMINAL_PROMPT", "0")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        host.served.load(std::sync::atomic::Ordering::SeqCst),
        served
    );
    assert!(
        stderr.contains("error: git https://x-access-token:***@")
            && stderr.contains("invalid peer certificate: UnknownIssuer")
            && stderr.contains("add its CA to SSL_CERT_FILE"),
        "{stderr}"
    );
}

#[tokio::test]
async fn plan_leaves_a_fargate_service_alone_and_says_why() {
    let (moto, client) = crate::aws::demo([1, 1, 1, 1, 1, 1]).await;
    client
        .create_service()
        .cluster("demo")
        .service_name("web-fargate")
        .task_definition("web")
        .desired_count(2)
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .send()
        .await
        .unwrap();
    // One policy for every `web*` service: one task per host.
    let specs = tempfile::tempdir().unwrap();
    std::fs::write(
        specs.path().join("web.yaml"),
        "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata: {name: web}\nspec:\n  target: {cluster: demo, serviceSelector: {namePattern: \"web*\"}}\n  placement: {oneTaskPerHost: {}}\n",
    )
    .unwrap();
    let out = stevedore(&moto, &["plan", "--specs", specs.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("web/web-fargate: Unsatisfiable") && stdout.contains("runs on Fargate"),
        "{stdout}"
    );
    assert!(stdout.contains("web/web: Satisfied"), "{stdout}");
    assert!(!stdout.contains("desiredCount 2 ->"), "{stdout}");
}

/// A restart does not refill the DisruptionBudget: a second process reads
/// back, from the tasks ECS lists as stopped with stevedore's reason, the
/// move the first one made, and waits for the rate budget as the first
/// would have.
#[tokio::test]
async fn a_restarted_controller_reads_back_the_moves_it_made_from_ecs() {
    let moto = Moto::start();
    let client = moto.client();
    let hosts = cluster(&moto, [3, 2, 1, 0, 0, 0]).await;
    let specs = specs_dir("  placement: {azBalanced: true}\n");
    std::fs::write(
        specs.path().join("budget.yaml"),
        "apiVersion: stevedore.io/v1alpha1\nkind: DisruptionBudget\nmetadata: {name: hourly}\nspec: {cluster: demo, moves: {max: 1, per: 1h}}\n",
    )
    .unwrap();
    let dir = specs.path().to_str().unwrap();

    let first = stevedore(&moto, &["run", "--specs", dir, "--once"]);
    let text = String::from_utf8_lossy(&first.stdout);
    assert_eq!(first.status.code(), Some(0), "{text}");
    assert!(text.contains("demo/web/web: done: stop task"), "{text}");
    assert!(
        !text.contains("read back"),
        "nothing to read back yet: {text}"
    );
    assert_eq!(stopped(&client).await, 1);
    // ECS replaces the task, in the emptiest zone: the service is steady
    // again, and zones 4/1/1 still want a move.
    crate::aws::start_web_task(&client, "demo", &hosts[4]).await;

    let second = stevedore(&moto, &["run", "--specs", dir, "--once"]);
    let text = String::from_utf8_lossy(&second.stdout);
    let logs = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(0), "{text}{logs}");
    assert_eq!(
        stopped(&client).await,
        1,
        "the budget held the second move: {text}"
    );
    assert!(
        format!("{text}{logs}").contains(
            "demo: 1 earlier stop by stevedore, read back from ECS's stopped tasks, count against budget hourly"
        ),
        "{text}{logs}"
    );
    assert!(
        text.contains("1 move in the last 1h (moves.max 1)"),
        "{text}"
    );
}
