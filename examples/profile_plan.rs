//! Plans a generated 100k-task cluster a few times (for profilers).
use stevedore::sim::scenario::{self, GenerateSpec};
fn main() {
    let g = GenerateSpec {
        hosts: 5_000,
        services: 5_000,
        tasks: 100_000,
        zones: 3,
        skewed_share: 0.1,
    };
    let s = scenario::generated(g, 42, 0);
    let snapshot = s.sim.state();
    let index = stevedore::plan::Index::new(&snapshot);
    for _ in 0..30 {
        let plan = stevedore::plan::plan_with_index(&s.policies, &index, 0);
        std::hint::black_box(plan);
    }
}
