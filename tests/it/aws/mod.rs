//! The AWS backend over the wire: the real SDK against moto's server,
//! started by the test itself on a free local port (installed into `.venv`
//! by `scripts/test.sh`). moto has no scheduler, so tasks are laid out with
//! `start_task`, exactly where each test wants them.
//!
//! This file is the fixture: clusters laid out on moto, clients, the binary
//! started against moto, and what the tests read back (queues, logs,
//! status). The tests are by area: `ecs.rs` (the backend), `commands.rs`
//! (`plan`, `run --once`), `running.rs` (the controller running),
//! `setup.rs` (install, the CloudFormation template).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ecs::Client;
use aws_sdk_ecs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ecs::types::{Attribute, ContainerDefinition, ContainerInstanceStatus};
use stevedore::aws::AwsBackend;
use stevedore::backend::Backend;
use stevedore::plan::{ActionKind, State};

use crate::moto::Moto;
use crate::repo;

mod commands;
mod ecs;
mod running;
mod setup;
mod snapshot;

/// Registers an EC2 instance in `zone` with cluster `demo`; its container
/// instance ARN.
pub(crate) async fn register_host(client: &Client, instance_id: &str, zone: &str) -> String {
    register_host_in(client, "demo", "us-east-1", instance_id, zone).await
}

/// The same, with cluster `cluster` of region `region`.
pub(crate) async fn register_host_in(
    client: &Client,
    cluster: &str,
    region: &str,
    instance_id: &str,
    zone: &str,
) -> String {
    let document = serde_json::json!({"instanceId": instance_id, "availabilityZone": zone, "region": region, "instanceType": "m5.xlarge"}).to_string();
    client
        .register_container_instance()
        .cluster(cluster)
        .instance_identity_document(document)
        .send()
        .await
        .unwrap()
        .container_instance()
        .unwrap()
        .container_instance_arn()
        .unwrap()
        .to_owned()
}

/// moto started, with the cluster of [`cluster`] laid out as `layout`:
/// the set-up most tests start from.
pub(crate) async fn demo(layout: [u32; 6]) -> (Moto, Client) {
    let moto = Moto::start();
    let client = moto.client();
    cluster(&moto, layout).await;
    (moto, client)
}

/// Whether the controller's IAM policy for cluster `demo` allows `action`.
pub(crate) fn controller_role_allows(action: &str) -> bool {
    let policy = stevedore::setup::iam::policy(&stevedore::setup::iam::Scope {
        cluster: "demo",
        region: None,
        account: None,
        queue: "q",
    });
    stevedore::setup::iam::allows(&policy, action)
}

/// A cluster `demo` with two hosts per zone in three zones, service `web`
/// with `layout[h]` tasks on host `h` (hosts a1, a2, b1, b2, c1, c2).
pub(crate) async fn cluster(moto: &Moto, layout: [u32; 6]) -> Vec<String> {
    cluster_in(moto, &crate::moto::Account::home(), "demo", layout).await
}

/// The same, named `name`, in the account and region of `account`
/// (zones `REGIONa`, `b`, `c`).
pub(crate) async fn cluster_in(
    moto: &Moto,
    account: &crate::moto::Account,
    name: &str,
    layout: [u32; 6],
) -> Vec<String> {
    let client = moto.client_as(account);
    let region = &account.region;
    client
        .create_cluster()
        .cluster_name(name)
        .send()
        .await
        .unwrap();
    let mut hosts = vec![];
    for zone in ["a", "a", "b", "b", "c", "c"].map(|z| format!("{region}{z}")) {
        let instance = moto.ec2_instances_as(account, &zone, 1).remove(0);
        let arn = register_host_in(&client, name, region, &instance, &zone).await;
        client
            .put_attributes()
            .cluster(name)
            .attributes(
                Attribute::builder()
                    .name("ecs.availability-zone")
                    .value(&zone)
                    .target_id(&arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        hosts.push(arn);
    }
    client
        .register_task_definition()
        .family("web")
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image("nginx")
                .cpu(256)
                .memory(512)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let total: u32 = layout.iter().sum();
    client
        .create_service()
        .cluster(name)
        .service_name("web")
        .task_definition("web")
        .desired_count(total as i32)
        .send()
        .await
        .unwrap();
    client
        .update_service()
        .cluster(name)
        .service("web")
        .desired_count(total as i32)
        .send()
        .await
        .unwrap();
    for (host, n) in hosts.iter().zip(layout) {
        for _ in 0..n {
            crate::aws::start_web_task(&client, name, host).await;
        }
    }
    hosts
}

/// Starts one task of `web` on `host` of `cluster` as ECS's scheduler
/// would (moto has none); returns its ARN.
pub(crate) async fn start_web_task(
    client: &Client,
    cluster: &str,
    host: impl Into<String>,
) -> String {
    let out = client
        .start_task()
        .cluster(cluster)
        .task_definition("web")
        .container_instances(host)
        .started_by("ecs-svc/web")
        .group("service:web")
        .send()
        .await
        .unwrap();
    out.tasks()[0].task_arn().unwrap().to_owned()
}

/// Sends `signal` (`-STOP`, `-CONT`) to a child process.
pub(crate) fn signal(child: &Child, signal: &str) {
    Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
}

pub(crate) fn policy(rest: &str) -> Vec<stevedore::spec::Policy> {
    let text = format!(
        "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata: {{name: web}}\nspec:\n  target: {{cluster: demo, service: web}}\n{rest}"
    );
    let loaded = stevedore::spec::load_sources(vec![("p.yaml".into(), text.into_bytes())]);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    loaded.policies
}

pub(crate) fn autoscaling(moto: &Moto) -> aws_sdk_applicationautoscaling::Client {
    let config = aws_sdk_applicationautoscaling::Config::builder()
        .behavior_version(aws_sdk_applicationautoscaling::config::BehaviorVersion::latest())
        .endpoint_url(moto.url())
        .region(aws_sdk_applicationautoscaling::config::Region::new(
            "us-east-1",
        ))
        .credentials_provider(aws_sdk_applicationautoscaling::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .build();
    aws_sdk_applicationautoscaling::Client::from_conf(config)
}

/// The backend with every client pointed at moto.
pub(crate) fn backend(moto: &Moto, ecs: Client) -> AwsBackend {
    AwsBackend::new(ecs)
        .with_cloudwatch(cloudwatch(moto))
        .with_autoscaling(autoscaling(moto))
}

pub(crate) fn cloudwatch(moto: &Moto) -> aws_sdk_cloudwatch::Client {
    let config = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
        .endpoint_url(moto.url())
        .region(aws_sdk_cloudwatch::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_cloudwatch::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .build();
    aws_sdk_cloudwatch::Client::from_conf(config)
}

/// The binary, configured for moto through the standard AWS variables.
pub(crate) fn stevedore(moto: &Moto, args: &[&str]) -> std::process::Output {
    stevedore_with_env(moto, args, &[])
}

/// The same, with more environment variables.
pub(crate) fn stevedore_with_env(
    moto: &Moto,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stevedore"))
        .args(args)
        .env("AWS_ENDPOINT_URL", moto.url())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

pub(crate) fn specs_dir(rest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata: {{name: web}}\nspec:\n  target: {{cluster: demo, service: web}}\n{rest}"
    );
    std::fs::write(dir.path().join("web.yaml"), text).unwrap();
    dir
}

pub(crate) async fn stopped(client: &Client) -> usize {
    stopped_in(client, "demo").await
}

/// Tasks of a cluster stopped so far.
pub(crate) async fn stopped_in(client: &Client, cluster: &str) -> usize {
    let arns = client
        .list_tasks()
        .cluster(cluster)
        .send()
        .await
        .unwrap()
        .task_arns()
        .to_vec();
    let out = client
        .describe_tasks()
        .cluster(cluster)
        .set_tasks(Some(arns))
        .send()
        .await
        .unwrap();
    out.tasks()
        .iter()
        .filter(|t| t.desired_status() == Some("STOPPED"))
        .count()
}

pub(crate) fn clients(moto: &Moto) -> stevedore::setup::install::Clients {
    recording_clients(moto, &Calls::default())
}

/// The operations a client sent, as IAM actions (`sqs:CreateQueue`).
pub(crate) type Calls = std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>;

/// Records each operation a client sends, from the SDK's own metadata.
#[derive(Debug)]
pub(crate) struct Recorder {
    prefix: &'static str,
    calls: Calls,
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for Recorder {
    fn name(&self) -> &'static str {
        "Recorder"
    }

    fn read_before_serialization(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef<'_>,
        _components: &aws_sdk_ecs::config::RuntimeComponents,
        cfg: &mut aws_sdk_ecs::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(metadata) = cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
        {
            self.calls
                .lock()
                .unwrap()
                .insert(format!("{}:{}", self.prefix, metadata.name()));
        }
        Ok(())
    }
}

/// The installer's clients for moto, recording every operation into `calls`.
pub(crate) fn recording_clients(moto: &Moto, calls: &Calls) -> stevedore::setup::install::Clients {
    let region = Region::new("us-east-1");
    let credentials = Credentials::new("test", "test", None, None, "static");
    let recorder = |prefix| Recorder {
        prefix,
        calls: std::sync::Arc::clone(calls),
    };
    let ecs = aws_sdk_ecs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(moto.url())
        .region(region.clone())
        .credentials_provider(credentials.clone())
        .interceptor(recorder("ecs"))
        .build();
    let sqs = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(moto.url())
        .region(region.clone())
        .credentials_provider(credentials.clone())
        .interceptor(recorder("sqs"))
        .build();
    let events = aws_sdk_eventbridge::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(moto.url())
        .region(region)
        .credentials_provider(credentials)
        .interceptor(recorder("events"))
        .build();
    stevedore::setup::install::Clients {
        ecs: Client::from_conf(ecs),
        sqs: aws_sdk_sqs::Client::from_conf(sqs),
        events: aws_sdk_eventbridge::Client::from_conf(events),
    }
}

/// Lines a child process prints, as they come.
pub(crate) fn lines_of(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    receive
}

/// Waits for a line containing `text`, returning the lines seen.
pub(crate) fn wait_for(
    lines: &std::sync::mpsc::Receiver<String>,
    text: &str,
    seen: &mut Vec<String>,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            let found = line.contains(text);
            seen.push(line);
            if found {
                return;
            }
        }
    }
    panic!(
        "no line with `{text}` within 30 s; saw:\n{}",
        seen.join("\n")
    );
}

/// Messages in a queue: visible, and received but not deleted (in flight).
pub(crate) async fn queue_left(sqs: &aws_sdk_sqs::Client, url: &str) -> (u64, u64) {
    use aws_sdk_sqs::types::QueueAttributeName;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let count = |name: QueueAttributeName| -> u64 {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|n| n.parse().ok())
            .unwrap_or(u64::MAX)
    };
    (
        count(QueueAttributeName::ApproximateNumberOfMessages),
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

pub(crate) fn dynamodb(moto: &Moto) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .endpoint_url(moto.url())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

pub(crate) async fn lease_table(client: &aws_sdk_dynamodb::Client) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    client
        .create_table()
        .table_name("stevedore-leases")
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("name")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("name")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

/// The event queue `install` makes for cluster `demo`, by its URL.
pub(crate) async fn installed_queue(c: &stevedore::setup::install::Clients) -> String {
    stevedore::setup::install::install(c, "demo", "stevedore-demo", false, &mut vec![])
        .await
        .unwrap()
        .unwrap()
        .queue_url
}

/// `stevedore run --specs SPECS ARGS...` against moto, its output piped.
pub(crate) fn run_controller(moto: &Moto, specs: &str, args: &[&str]) -> Child {
    let mut all = vec!["run", "--specs", specs];
    all.extend_from_slice(args);
    controller(moto, &all, &[])
}

/// The binary running on the event queue with an hourly resync (so that
/// only events make passes), serving its status on `listen`.
pub(crate) fn run_on_events(moto: &Moto, specs: &str, queue_url: &str, listen: &str) -> Child {
    run_controller(
        moto,
        specs,
        &[
            "--queue-url",
            queue_url,
            "--resync",
            "1h",
            "--listen",
            listen,
        ],
    )
}

/// The binary running as a controller against moto, its output piped.
pub(crate) fn controller(moto: &Moto, args: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_stevedore"))
        .args(args)
        .env("AWS_ENDPOINT_URL", moto.url())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The body of a GET of `url` (the controller's status server).
pub(crate) fn http_text(url: &str) -> String {
    ureq::get(url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

/// Waits for the controller to log where it serves its status, and returns
/// that address.
pub(crate) fn status_address(
    lines: &std::sync::mpsc::Receiver<String>,
    seen: &mut Vec<String>,
) -> String {
    wait_for(lines, "listening on ", seen);
    seen.last()
        .and_then(|l| l.split("listening on ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned()
}

/// A git repository in `dir` whose one commit holds `web.yaml`, a policy
/// balancing `demo/web` over zones.
pub(crate) fn policies_repository(dir: &std::path::Path) {
    use crate::cli::git;
    git(dir, &["init", "-q"]);
    std::fs::write(
        dir.join("web.yaml"),
        "apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata: {name: web}\nspec:\n  target: {cluster: demo, service: web}\n  placement: {azBalanced: true}\n",
    )
    .unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "policies"]);
}

/// The text of the first `<tag>` element in `xml` after `after`.
pub(crate) fn xml_text<'a>(xml: &'a str, after: &str, tag: &str) -> &'a str {
    let from = xml
        .find(after)
        .unwrap_or_else(|| panic!("{after} not in {xml}"))
        + after.len();
    let open = format!("<{tag}>");
    let start = from + xml[from..].find(&open).unwrap() + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>")).unwrap();
    &xml[start..end]
}
