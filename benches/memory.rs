//! Memory of the controller at the full scale (5,000 hosts, 5,000
//! services, 100,000 tasks), measured with a counting allocator rather than
//! RSS, so the simulated cluster's own memory can be told apart from the
//! controller's. Run with `cargo bench --bench memory`; it prints one line
//! per figure.
//!
//! - the simulated cluster alone (the baseline everything else is above);
//! - a full read into the cluster view, then one reconcile (plan, verify,
//!   act): peak and retained heap above the baseline;
//! - two virtual minutes later, a pass that reads only what the events
//!   touched: its peak above the baseline;
//! - the AWS backend's way of building a snapshot (every object read, as
//!   records, merged into an empty snapshot): its peak.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use stevedore::backend::Backend;
use stevedore::backend::refresh::{self, Delta, TaskRecord};
use stevedore::controller::{self, ClusterView};
use stevedore::sim::{SimBackend, scenario};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn current() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// Starts a new peak measurement from the current heap.
fn reset_peak() -> usize {
    let now = current();
    PEAK.store(now, Ordering::Relaxed);
    now
}

fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it too, with no argument.
    let full = std::env::args().any(|a| a == "--bench");
    let (hosts, services, tasks) = if full {
        (5_000, 5_000, 100_000)
    } else {
        (300, 300, 6_000)
    };
    let g = scenario::GenerateSpec {
        hosts,
        services,
        tasks,
        zones: 3,
        skewed_share: 0.01,
    };
    let generated = scenario::generated(g, 7, 0);
    let specs: stevedore::spec::Specs = generated.policies.into();
    let backend = SimBackend::new(generated.sim);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    println!("memory at {hosts} hosts, {services} services, {tasks} tasks:");
    let baseline = reset_peak();
    println!("  the simulated cluster alone: {}", mib(baseline));

    let mut view = ClusterView::default();
    runtime.block_on(async {
        reset_peak();
        let snapshot = view.read(&backend, "demo", true).await.expect("a full read");
        let outcome = controller::reconcile(&backend, "demo", snapshot, true, &specs, 0, &mut Default::default())
            .await
            .expect("a reconcile");
        view.note_executed(&outcome.executed);
        let stops = outcome.executed.len();
        drop(outcome);
        println!(
            "  full read + reconcile ({stops} stops): peak {} above the cluster, {} kept (the view)",
            mib(peak() - baseline),
            mib(current() - baseline)
        );

        let now = backend.lock().now;
        backend.lock().advance(now + 120_000);
        let events = backend.lock().take_events();
        for event in &events {
            if let Ok(event) = stevedore::backend::events::parse(&event.to_string()) {
                view.note(&event);
            }
        }
        drop(events);
        let before = reset_peak();
        let calls_before: u64 = backend.api_calls().values().sum();
        let snapshot = view.read(&backend, "demo", false).await.expect("a refresh");
        let outcome = controller::reconcile(&backend, "demo", snapshot, false, &specs, 0, &mut Default::default())
            .await
            .expect("a reconcile");
        let calls: u64 = backend.api_calls().values().sum::<u64>() - calls_before;
        drop(outcome);
        println!(
            "  a pass after events ({calls} calls): peak {} above the cluster and the view",
            mib(peak() - before)
        );
    });

    // The AWS backend reads records and merges them into an empty snapshot.
    drop(view);
    let state = backend.lock().state();
    let records: Vec<TaskRecord> = state
        .tasks
        .iter()
        .map(|t| TaskRecord::of(&state, t))
        .collect();
    let everything = Delta {
        taken_at: 0,
        services: state
            .services
            .iter()
            .map(|s| (s.name.clone(), Some(s.clone())))
            .collect(),
        instances: state
            .instances
            .iter()
            .map(|i| (i.id.clone(), Some(i.clone())))
            .collect(),
        tasks: records
            .into_iter()
            .map(|r| (r.id.clone(), Some(r)))
            .collect(),
    };
    let mut built = stevedore::model::ClusterSnapshot::default();
    let before = reset_peak();
    refresh::apply(&mut built, everything);
    println!(
        "  a snapshot built from records, as the AWS backend does: peak {} above its input",
        mib(peak() - before),
    );
    drop(built);
    let _ = backend.api_calls();
    dedupe_memory(if full { 300_000 } else { 30_000 });
    drop(backend);
    per_cluster(&runtime, full);
}

/// What one cluster costs a replica, for sizing replicas that share
/// clusters: per cluster size, the view kept between passes, the peak of a
/// full read and reconcile, the time of such a pass in this process
/// (controller and simulated ECS together, no API latency: the CPU a pass
/// costs, at most), and the API calls of a full read, which bound how
/// many clusters one account and region can serve (ECS's reads: 20 a
/// second sustained).
fn per_cluster(runtime: &tokio::runtime::Runtime, full: bool) {
    let sizes: &[(u32, u32, u32)] = if full {
        &[(20, 20, 200), (100, 100, 2_000), (500, 500, 10_000)]
    } else {
        &[(20, 20, 200)]
    };
    println!("per cluster (balanced, one azBalanced policy per service):");
    for &(hosts, services, tasks) in sizes {
        let g = scenario::GenerateSpec {
            hosts,
            services,
            tasks,
            zones: 3,
            skewed_share: 0.0,
        };
        let generated = scenario::generated(g, 7, 0);
        let specs: stevedore::spec::Specs = generated.policies.into();
        let backend = SimBackend::new(generated.sim);
        let baseline = reset_peak();
        let mut view = ClusterView::default();
        let mut took = vec![];
        let mut calls = 0;
        let mut kept = 0;
        let mut pass_peak = 0;
        for pass in 0..7 {
            let calls_before: u64 = backend.api_calls().values().sum();
            let before = reset_peak();
            let started = std::time::Instant::now();
            runtime.block_on(async {
                let snapshot = view
                    .read(&backend, "demo", true)
                    .await
                    .expect("a full read");
                let outcome = controller::reconcile(
                    &backend,
                    "demo",
                    snapshot,
                    true,
                    &specs,
                    0,
                    &mut Default::default(),
                )
                .await
                .expect("a reconcile");
                view.note_executed(&outcome.executed);
            });
            // The first pass also describes every task definition.
            if pass > 0 {
                took.push(started.elapsed());
                calls = backend.api_calls().values().sum::<u64>() - calls_before;
            }
            pass_peak = pass_peak.max(peak() - before);
            kept = current() - baseline;
        }
        took.sort();
        let median = took[took.len() / 2];
        // Reads a replica may spend in one 5-minute resync in one account
        // and region, over the calls of one full read.
        let per_resync = (20 * 300) as u64 / calls.max(1);
        println!(
            "  {hosts} hosts, {services} services, {tasks} tasks: view kept {}, peak of a full pass {}, a full pass {:.2} ms in process, {calls} read calls (at most {per_resync} such clusters per account and region at a 5 min resync)",
            mib(kept),
            mib(pass_peak),
            median.as_secs_f64() * 1000.0
        );
    }
}

/// The event dedupe's heap over a long life: tasks that start, run and
/// stop (three events each), and tasks that only run. Stopped tasks are
/// forgotten; the rest are bounded by two generations of versions.
fn dedupe_memory(tasks: usize) {
    let event = |task: usize, step: usize, status: &str| {
        let arn = format!("arn:aws:ecs:us-east-1:123456789012:task/prod/{task:032x}");
        serde_json::json!({
            "id": format!("{task}-{step}"), "detail-type": "ECS Task State Change", "source": "aws.ecs",
            "resources": [arn],
            "detail": {"clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/prod", "taskArn": arn, "lastStatus": status, "version": step}
        })
        .to_string()
    };
    for stop in [true, false] {
        let before = current();
        let mut dedupe = stevedore::backend::events::Dedupe::default();
        let mut at = vec![];
        for task in 0..tasks {
            for (step, status) in ["PENDING", "RUNNING", "STOPPED"].iter().enumerate() {
                if *status == "STOPPED" && !stop {
                    continue;
                }
                let parsed = stevedore::backend::events::parse(&event(task, step + 1, status))
                    .expect("an event");
                dedupe.admit(&parsed);
            }
            if (task + 1) % (tasks / 3) == 0 {
                at.push(format!("{} after {}", mib(current() - before), task + 1));
            }
        }
        println!(
            "  event dedupe, tasks that {}: {} ({} versions kept)",
            if stop { "run and stop" } else { "never stop" },
            at.join(", "),
            dedupe.resources()
        );
    }
}
