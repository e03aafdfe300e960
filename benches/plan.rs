//! The planner at scale: building the snapshot index and planning every
//! policy on generated clusters (3 zones, one azBalanced policy per
//! service). Run with `cargo bench --bench plan`; compare figures as ratios
//! within one run (the machine is shared).
//!
//! - `scale/*`: 1k, 10k and 100k tasks, with hosts and services growing
//!   alongside (50/500/5,000 of each), 1% of services skewed.
//! - `skew/*`: 100k tasks, 5,000 hosts and services, with 0%, 1% and 10% of
//!   the services skewed: a balanced service costs a pass over its tasks, a
//!   skewed one a pass over the hosts to predict where ECS puts replacements.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use stevedore::plan::{self, Index};
use stevedore::sim::scenario::{self, GenerateSpec};

fn cluster(
    tasks: u32,
    skewed_share: f64,
) -> (
    stevedore::model::ClusterSnapshot,
    Vec<stevedore::spec::Policy>,
) {
    let scale = tasks / 20;
    let g = GenerateSpec {
        hosts: scale,
        services: scale,
        tasks,
        zones: 3,
        skewed_share,
    };
    let s = scenario::generated(g, 42, 0);
    (s.sim.state(), s.policies)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale");
    group.sample_size(20);
    for tasks in [1_000u32, 10_000, 100_000] {
        let (snapshot, policies) = cluster(tasks, 0.01);
        group.bench_with_input(BenchmarkId::new("index", tasks), &snapshot, |b, s| {
            b.iter(|| black_box(Index::new(s)))
        });
        let index = Index::new(&snapshot);
        group.bench_with_input(BenchmarkId::new("plan", tasks), &index, |b, index| {
            b.iter(|| {
                black_box(plan::plan_with_index(
                    &policies,
                    None,
                    index,
                    0,
                    &mut Default::default(),
                ))
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("skew");
    group.sample_size(20);
    for share in [0.0, 0.01, 0.1] {
        let (snapshot, policies) = cluster(100_000, share);
        let index = Index::new(&snapshot);
        let skewed = plan::plan_with_index(&policies, None, &index, 0, &mut Default::default())
            .statuses
            .iter()
            .filter(|s| s.state != plan::State::Satisfied)
            .count();
        let name = format!("{}pct-{skewed}-services", (share * 100.0) as u32);
        group.bench_function(BenchmarkId::new("plan", name), |b| {
            b.iter(|| {
                black_box(plan::plan_with_index(
                    &policies,
                    None,
                    &index,
                    0,
                    &mut Default::default(),
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
