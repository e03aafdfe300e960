//! Replicas sharing the clusters (`run --share-clusters`), over the wire:
//! three processes, nine clusters on moto, one DynamoDB table. Each
//! cluster is held, read and acted on by exactly one replica; a stalled
//! replica's clusters are taken over once its leases lapse; resumed, it
//! acts on nothing until it holds a lease again. What each replica says it
//! holds (`/status`) is checked against the table itself.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::aws::{cluster_in, controller, dynamodb, lease_table};
use crate::moto::{Account, Moto};

const CLUSTERS: usize = 9;
const LEASE: Duration = Duration::from_secs(3);

fn names() -> Vec<String> {
    (1..=CLUSTERS).map(|i| format!("c{i}")).collect()
}

/// One replica: the process, every line it printed, its status address.
struct Replica {
    name: &'static str,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    address: String,
}

impl Replica {
    fn start(moto: &Moto, specs: &str, name: &'static str) -> Replica {
        use std::io::BufRead;
        let lease = format!("{}s", LEASE.as_secs());
        let mut child = controller(
            moto,
            &[
                "run",
                "--specs",
                specs,
                "--lease-table",
                "stevedore-leases",
                "--share-clusters",
                "--lease-duration",
                &lease,
                "--resync",
                "1s",
                "--listen",
                "127.0.0.1:0",
            ],
            &[("HOSTNAME", name)],
        );
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(vec![]));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let address = loop {
            let found = lines.lock().unwrap().iter().find_map(|l| {
                l.split("listening on ")
                    .nth(1)
                    .and_then(|a| a.split_whitespace().next())
                    .map(str::to_owned)
            });
            if let Some(address) = found {
                break address;
            }
            assert!(Instant::now() < deadline, "{name} did not listen");
            std::thread::sleep(Duration::from_millis(50));
        };
        Replica {
            name,
            child,
            lines,
            address,
        }
    }

    /// The clusters `/status` says this replica holds.
    fn holds(&self) -> BTreeSet<String> {
        let body = ureq::get(&format!("http://{}/status", self.address))
            .config()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        let clusters = status["clusters"].as_array().unwrap();
        assert_eq!(clusters.len(), CLUSTERS, "{status:#}");
        clusters
            .iter()
            .filter(|c| c["held"] == true)
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The clusters this replica stopped a task in, by its log, from line
    /// `from` on.
    fn stops(&self, from: usize) -> Vec<String> {
        self.lines.lock().unwrap()[from..]
            .iter()
            .filter(|l| l.contains(": done: stop task"))
            .filter_map(|l| l.split('/').next())
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
            .collect()
    }

    fn printed(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    fn signal(&self, signal: &str) {
        crate::aws::signal(&self.child, signal);
    }
}

/// The holder of each cluster's lease in the table, where it has not expired.
async fn table_holders(client: &aws_sdk_dynamodb::Client) -> BTreeMap<String, String> {
    let now = stevedore::model::wall_clock();
    let items = client
        .scan()
        .table_name("stevedore-leases")
        .send()
        .await
        .unwrap()
        .items()
        .to_vec();
    items
        .iter()
        .filter_map(|item| {
            let name = item.get("name")?.as_s().ok()?;
            let cluster = name.strip_prefix("stevedore/")?;
            let expires: u64 = item.get("expires_at")?.as_n().ok()?.parse().ok()?;
            let holder = item.get("holder")?.as_s().ok()?;
            (expires > now).then(|| (cluster.to_owned(), holder.clone()))
        })
        .collect()
}

/// Waits until `done` holds of the replicas' claims, polling `/status`.
fn wait_until(
    replicas: &[&Replica],
    within: Duration,
    what: &str,
    done: impl Fn(&[BTreeSet<String>]) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let held: Vec<BTreeSet<String>> = replicas.iter().map(|r| r.holds()).collect();
        if done(&held) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "not {what} within {within:?}: {:?}",
            replicas
                .iter()
                .map(|r| r.name)
                .zip(&held)
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the sets are disjoint and cover every cluster.
fn partition(held: &[BTreeSet<String>]) -> bool {
    let all: BTreeSet<&String> = held.iter().flatten().collect();
    all.len() == CLUSTERS && held.iter().map(BTreeSet::len).sum::<usize>() == CLUSTERS
}

/// Puts two more tasks of `web` on the cluster's first host (zone a), with
/// the desired count raised to match: 4/2/2 over the zones, one stop
/// needed; moto starts no replacement, so the service then waits short of
/// its count and needs nothing more.
async fn skew(moto: &Moto, cluster: &str) {
    let client = moto.client();
    let hosts = client
        .list_container_instances()
        .cluster(cluster)
        .send()
        .await
        .unwrap()
        .container_instance_arns()
        .to_vec();
    let described = client
        .describe_container_instances()
        .cluster(cluster)
        .set_container_instances(Some(hosts))
        .send()
        .await
        .unwrap();
    let in_a = described
        .container_instances()
        .iter()
        .find(|i| {
            i.attributes()
                .iter()
                .any(|a| a.name() == "ecs.availability-zone" && a.value() == Some("us-east-1a"))
        })
        .and_then(|i| i.container_instance_arn())
        .unwrap()
        .to_owned();
    let running = client
        .list_tasks()
        .cluster(cluster)
        .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
        .send()
        .await
        .unwrap()
        .task_arns()
        .len();
    for _ in 0..2 {
        crate::aws::start_web_task(&client, cluster, &in_a).await;
    }
    client
        .update_service()
        .cluster(cluster)
        .service("web")
        .desired_count(running as i32 + 2)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn three_replicas_share_nine_clusters_and_take_over_a_stalled_ones() {
    let moto = Moto::start();
    let table = dynamodb(&moto);
    lease_table(&table).await;
    let specs = tempfile::tempdir().unwrap();
    for cluster in names() {
        cluster_in(&moto, &Account::home(), &cluster, [1, 1, 1, 1, 1, 1]).await;
        std::fs::write(
            specs.path().join(format!("{cluster}.yaml")),
            format!("apiVersion: stevedore.io/v1alpha1\nkind: ServicePolicy\nmetadata: {{name: {cluster}-web}}\nspec:\n  target: {{cluster: {cluster}, service: web}}\n  placement: {{azBalanced: true}}\n"),
        )
        .unwrap();
    }
    let dir = specs.path().to_str().unwrap();
    let a = Replica::start(&moto, dir, "replica-a");
    let b = Replica::start(&moto, dir, "replica-b");
    let c = Replica::start(&moto, dir, "replica-c");
    let all = [&a, &b, &c];

    // Three each, none twice, every one held.
    let shared = wait_until(&all, Duration::from_secs(30), "shared 3/3/3", |held| {
        partition(held) && held.iter().all(|h| h.len() == 3)
    });
    eprintln!("shared 3/3/3 after {shared:?}");
    // The table agrees with what each replica says.
    let holders = table_holders(&table).await;
    for r in all {
        for cluster in r.holds() {
            assert!(
                holders[&cluster].starts_with(r.name),
                "{cluster}: {} says it holds it, the table says {}",
                r.name,
                holders[&cluster]
            );
        }
    }

    // `stevedore status` says which clusters a replica holds.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stevedore"))
        .args(["status", "--url", &format!("http://{}", a.address)])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let mine: Vec<String> = a.holds().into_iter().collect();
    assert!(
        table.contains(&format!("holds: {}", mine.join(", "))),
        "{table}"
    );
    assert!(table.contains("held elsewhere: "), "{table}");

    // Each cluster needs one stop: it is made once, by its holder.
    let claims: Vec<BTreeSet<String>> = all.iter().map(|r| r.holds()).collect();
    for cluster in names() {
        skew(&moto, &cluster).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while all.iter().map(|r| r.stops(0).len()).sum::<usize>() < CLUSTERS {
        assert!(Instant::now() < deadline, "not every cluster was acted on");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A few more passes: nothing more.
    std::thread::sleep(Duration::from_secs(3));
    let mut acted: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (r, claimed) in all.iter().zip(&claims) {
        for cluster in r.stops(0) {
            assert!(claimed.contains(&cluster), "{} acted on {cluster}", r.name);
            acted.entry(cluster).or_default().push(r.name);
        }
    }
    assert_eq!(acted.len(), CLUSTERS, "{acted:?}");
    assert!(acted.values().all(|by| by.len() == 1), "{acted:?}");

    // C stalls: its clusters are taken over once its leases have lapsed.
    let c_held = c.holds();
    c.signal("-STOP");
    let taken = wait_until(&[&a, &b], Duration::from_secs(30), "taken over", |held| {
        held[0].len() + held[1].len() == CLUSTERS && partition(&[held[0].clone(), held[1].clone()])
    });
    eprintln!("taken over after {taken:?}");
    assert!(
        taken <= LEASE + Duration::from_millis(1_500),
        "taken over after {taken:?}"
    );
    // One of C's clusters needs a stop again: its new holder makes it.
    let again = c_held.iter().next().unwrap().clone();
    let before: Vec<usize> = [&a, &b].iter().map(|r| r.stops(0).len()).collect();
    skew(&moto, &again).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while [&a, &b].iter().map(|r| r.stops(0).len()).sum::<usize>() == before.iter().sum::<usize>() {
        assert!(Instant::now() < deadline, "{again} was not acted on");
        std::thread::sleep(Duration::from_millis(200));
    }

    // C resumes: it acts on nothing until it holds a lease again, then
    // the three are back to three each.
    let c_from = c.printed();
    c.signal("-CONT");
    let back = wait_until(
        &all,
        Duration::from_secs(30),
        "shared 3/3/3 again",
        |held| partition(held) && held.iter().all(|h| h.len() == 3),
    );
    eprintln!("back to 3/3/3 {back:?} after the resume");
    std::thread::sleep(Duration::from_secs(2));
    let stalled_stops = c.stops(c_from);
    assert!(
        stalled_stops.is_empty(),
        "C acted after resuming, on {stalled_stops:?}"
    );
    let lines = c.lines.lock().unwrap()[c_from..].to_vec();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("leases: took a lease") || l.contains("holding 3 of 9")),
        "{}",
        lines.join("\n")
    );
    // Every cluster was stopped in exactly as often as it was skewed.
    let mut stops: BTreeMap<String, usize> = BTreeMap::new();
    for r in all {
        for cluster in r.stops(0) {
            *stops.entry(cluster).or_default() += 1;
        }
    }
    for cluster in names() {
        let expected = if cluster == again { 2 } else { 1 };
        assert_eq!(stops.get(&cluster), Some(&expected), "{cluster}: {stops:?}");
    }
    for r in [&a, &b, &c] {
        crate::longrun::sigterm(&r.child);
    }
    for r in [a, b, c] {
        let mut child = r.child;
        assert_eq!(child.wait().unwrap().code(), Some(0), "{}", r.name);
    }
}
