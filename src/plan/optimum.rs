//! The fewest task moves that bring one service within all of its spread
//! constraints, given where its tasks are and how many each host can hold.
//!
//! A final layout keeps every domain of constraint `j` within `[L_j, L_j +
//! maxSkew_j]` for some level `L_j`; a layout's cost is the number of tasks
//! that must leave their host, `sum (count_h - final_h)+`, i.e. `N - kept`.
//! For a fixed choice of levels, maximizing `kept` is a resource allocation
//! on a tree (hosts under the domains of the finest constraint, under the
//! next coarser one, ...). The best `kept` as a function of a subtree's
//! task total is concave with slopes 0 or 1 (`min(count, m)` at a host), so
//! each subtree is summarized exactly by four numbers, sums and interval
//! restrictions stay in that form, and the optimum for one choice of levels
//! costs O(hosts + domains). The levels range over `maxSkew_j + 1` values per
//! constraint.
//!
//! This is exact when the constraints nest (each domain of a finer topology
//! lies inside one domain of every coarser one, as hosts lie in zones).
//! Crossing topologies (a rack that spans zones) are reported, not guessed.

/// One constraint, over the hosts of a [`Layout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The domain of each host, `0..domains`.
    pub domain_of: Vec<u32>,
    /// Domains, including those with no eligible host that `minDomains`
    /// adds (they hold zero tasks and can hold none).
    pub domains: u32,
    pub max_skew: u32,
}

/// Where a service's tasks are, over the hosts eligible for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Tasks of the service on each host.
    pub count: Vec<u32>,
    /// The most tasks of the service each host could hold (at least its count).
    pub capacity: Vec<u32>,
}

impl Layout {
    pub fn total(&self) -> u32 {
        self.count.iter().sum()
    }
}

/// Why no optimum was computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoOptimum {
    /// Two constraints cross: a domain of the finer one (index `finer`)
    /// spans several domains of the coarser one (index `coarser`).
    Crossing { coarser: usize, finer: usize },
    /// No layout within capacity satisfies every constraint.
    Infeasible,
}

/// The four numbers of a subtree: its total can be anything in
/// `lo..=lo+ones+zeros`, keeping `base` tasks at `lo`, one more per extra
/// task for the next `ones`, none for the `zeros` after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Kept {
    lo: u64,
    base: u64,
    ones: u64,
    zeros: u64,
}

impl Kept {
    fn host(count: u32, capacity: u32) -> Kept {
        Kept {
            lo: 0,
            base: 0,
            ones: u64::from(count),
            zeros: u64::from(capacity.saturating_sub(count)),
        }
    }

    fn add(self, other: Kept) -> Kept {
        Kept {
            lo: self.lo + other.lo,
            base: self.base + other.base,
            ones: self.ones + other.ones,
            zeros: self.zeros + other.zeros,
        }
    }

    fn hi(self) -> u64 {
        self.lo + self.ones + self.zeros
    }

    /// The same subtree with its total forced into `[min, max]`.
    fn restrict(self, min: u64, max: u64) -> Option<Kept> {
        if min > self.hi() || max < self.lo || min > max {
            return None;
        }
        let mut k = self;
        if min > k.lo {
            let raise = min - k.lo;
            let gained = raise.min(k.ones);
            k.base += gained;
            k.ones -= gained;
            k.zeros -= raise - gained;
            k.lo = min;
        }
        let room = max - k.lo;
        if k.ones + k.zeros > room {
            let cut = k.ones + k.zeros - room;
            let from_zeros = cut.min(k.zeros);
            k.zeros -= from_zeros;
            k.ones -= cut - from_zeros;
        }
        Some(k)
    }

    /// Tasks kept when the subtree holds exactly `total`.
    fn at(self, total: u64) -> Option<u64> {
        (self.lo..=self.hi())
            .contains(&total)
            .then(|| self.base + (total - self.lo).min(self.ones))
    }
}

/// Orders the partitions from coarsest to finest and checks that each
/// refines the one before. Returns the order and, for each partition after
/// the first, the parent (in the previous partition) of each of its domains.
fn chain(partitions: &[Partition]) -> Result<(Vec<usize>, Vec<Vec<u32>>), NoOptimum> {
    let mut order: Vec<usize> = (0..partitions.len()).collect();
    // Fewer real domains first; phantom domains do not make a partition finer.
    let real = |p: &Partition| {
        let mut seen = vec![false; p.domains as usize];
        p.domain_of.iter().for_each(|d| seen[*d as usize] = true);
        seen.iter().filter(|s| **s).count()
    };
    order.sort_by_key(|i| (real(&partitions[*i]), *i));
    let mut parents = vec![];
    for pair in order.windows(2) {
        let (coarse, fine) = (&partitions[pair[0]], &partitions[pair[1]]);
        let mut parent = vec![u32::MAX; fine.domains as usize];
        for (host, d) in fine.domain_of.iter().enumerate() {
            let p = coarse.domain_of[host];
            match parent[*d as usize] {
                u32::MAX => parent[*d as usize] = p,
                q if q == p => {}
                _ => {
                    return Err(NoOptimum::Crossing {
                        coarser: pair[0],
                        finer: pair[1],
                    });
                }
            }
        }
        parents.push(parent);
    }
    Ok((order, parents))
}

/// The fewest moves, or why there is none.
pub fn min_moves(layout: &Layout, partitions: &[Partition]) -> Result<u32, NoOptimum> {
    let n = u64::from(layout.total());
    if partitions.is_empty() {
        return Ok(0);
    }
    let (order, parents) = chain(partitions)?;
    // Candidate levels for each partition, in chain order.
    let levels: Vec<(u64, u64)> = order
        .iter()
        .map(|i| {
            let p = &partitions[*i];
            let k = u64::from(p.domains.max(1));
            let high = n / k;
            (
                n.div_ceil(k)
                    .saturating_sub(u64::from(p.max_skew))
                    .min(high),
                high,
            )
        })
        .collect();
    let hosts: Vec<Kept> = layout
        .count
        .iter()
        .zip(&layout.capacity)
        .map(|(c, cap)| Kept::host(*c, *cap))
        .collect();

    let mut best: Option<u64> = None;
    let mut level: Vec<u64> = levels.iter().map(|(lo, _)| *lo).collect();
    loop {
        if let Some(kept) = kept_with_levels(&hosts, partitions, &order, &parents, &level, n) {
            best = Some(best.map_or(kept, |b| b.max(kept)));
        }
        // Next combination of levels (odometer).
        let mut i = 0;
        loop {
            if i == level.len() {
                return best
                    .map(|kept| (n - kept) as u32)
                    .ok_or(NoOptimum::Infeasible);
            }
            if level[i] < levels[i].1 {
                level[i] += 1;
                break;
            }
            level[i] = levels[i].0;
            i += 1;
        }
    }
}

fn kept_with_levels(
    hosts: &[Kept],
    partitions: &[Partition],
    order: &[usize],
    parents: &[Vec<u32>],
    level: &[u64],
    n: u64,
) -> Option<u64> {
    // Finest partition: its domains gather hosts.
    let finest = &partitions[*order.last()?];
    let mut domains = vec![Kept::default(); finest.domains as usize];
    for (host, d) in finest.domain_of.iter().enumerate() {
        domains[*d as usize] = domains[*d as usize].add(hosts[host]);
    }
    for depth in (0..order.len()).rev() {
        let p = &partitions[order[depth]];
        let (min, max) = (level[depth], level[depth] + u64::from(p.max_skew));
        for d in domains.iter_mut() {
            *d = d.restrict(min, max)?;
        }
        if depth == 0 {
            break;
        }
        // Gather into the next coarser partition.
        let coarser = &partitions[order[depth - 1]];
        let mut gathered = vec![Kept::default(); coarser.domains as usize];
        for (d, kept) in domains.iter().enumerate() {
            let parent = parents[depth - 1][d];
            // A phantom domain (no host) has no parent and holds nothing.
            if parent != u32::MAX {
                gathered[parent as usize] = gathered[parent as usize].add(*kept);
            }
        }
        domains = gathered;
    }
    domains.into_iter().fold(Kept::default(), Kept::add).at(n)
}

/// Whether the layout already satisfies every constraint.
pub fn satisfied(layout: &Layout, partitions: &[Partition]) -> bool {
    partitions
        .iter()
        .all(|p| skew(&layout.count, p) <= p.max_skew)
}

/// The largest difference in tasks between two domains of a partition.
pub fn skew(count: &[u32], partition: &Partition) -> u32 {
    let mut per_domain = vec![0u32; partition.domains as usize];
    for (host, d) in partition.domain_of.iter().enumerate() {
        per_domain[*d as usize] += count[host];
    }
    let max = per_domain.iter().max().copied().unwrap_or(0);
    let min = per_domain.iter().min().copied().unwrap_or(0);
    max - min
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The design notes' closed form for one constraint over equal domains.
    fn closed_form(counts: &[u32], s: u32) -> u32 {
        let n: u32 = counts.iter().sum();
        let k = counts.len() as u32;
        let lo = n.div_ceil(k).saturating_sub(s);
        (lo..=n / k)
            .map(|l| {
                let over: u32 = counts.iter().map(|c| c.saturating_sub(l + s)).sum();
                let under: u32 = counts.iter().map(|c| l.saturating_sub(*c)).sum();
                over.max(under)
            })
            .min()
            .unwrap()
    }

    /// Exhaustive search over every final layout within capacity.
    fn brute_force(layout: &Layout, partitions: &[Partition]) -> Option<u32> {
        let n = layout.total();
        let hosts = layout.count.len();
        let mut best = None;
        let mut x = vec![0u32; hosts];
        fn rec(
            h: usize,
            left: u32,
            x: &mut Vec<u32>,
            layout: &Layout,
            partitions: &[Partition],
            best: &mut Option<u32>,
        ) {
            if h == x.len() {
                if left == 0
                    && satisfied(
                        &Layout {
                            count: x.clone(),
                            capacity: layout.capacity.clone(),
                        },
                        partitions,
                    )
                {
                    let moves = layout
                        .count
                        .iter()
                        .zip(x.iter())
                        .map(|(c, f)| c.saturating_sub(*f))
                        .sum();
                    *best = Some(best.map_or(moves, |b: u32| b.min(moves)));
                }
                return;
            }
            for v in 0..=layout.capacity[h].min(left) {
                x[h] = v;
                rec(h + 1, left - v, x, layout, partitions, best);
            }
            x[h] = 0;
        }
        rec(0, n, &mut x, layout, partitions, &mut best);
        best
    }

    #[test]
    fn the_design_notes_examples() {
        // 6 tasks in 5/1/0 over three zones: three moves to 2/2/2.
        let layout = Layout {
            count: vec![5, 1, 0],
            capacity: vec![9, 9, 9],
        };
        let zones = Partition {
            domain_of: vec![0, 1, 2],
            domains: 3,
            max_skew: 1,
        };
        assert_eq!(min_moves(&layout, &[zones]), Ok(3));
        // A forced redeploy would move all 6.
    }

    #[test]
    fn a_full_zone_makes_balance_infeasible() {
        // Zone c has no room: 2/2/0 cannot reach skew 1.
        let layout = Layout {
            count: vec![3, 3, 0],
            capacity: vec![9, 9, 0],
        };
        let zones = Partition {
            domain_of: vec![0, 1, 2],
            domains: 3,
            max_skew: 1,
        };
        assert_eq!(min_moves(&layout, &[zones]), Err(NoOptimum::Infeasible));
    }

    #[test]
    fn min_domains_counts_missing_domains_as_empty() {
        // Two zones exist, minDomains 3: the global minimum is 0, so skew 1
        // allows at most 1 task per zone.
        let layout = Layout {
            count: vec![2, 1],
            capacity: vec![5, 5],
        };
        let zones = Partition {
            domain_of: vec![0, 1],
            domains: 3,
            max_skew: 1,
        };
        assert_eq!(min_moves(&layout, &[zones]), Err(NoOptimum::Infeasible));
        let layout = Layout {
            count: vec![1, 1],
            capacity: vec![5, 5],
        };
        let zones = Partition {
            domain_of: vec![0, 1],
            domains: 3,
            max_skew: 1,
        };
        assert_eq!(min_moves(&layout, &[zones]), Ok(0));
    }

    #[test]
    fn crossing_constraints_are_reported() {
        let layout = Layout {
            count: vec![1, 1, 1, 1],
            capacity: vec![2, 2, 2, 2],
        };
        let zones = Partition {
            domain_of: vec![0, 0, 1, 1],
            domains: 2,
            max_skew: 1,
        };
        let racks = Partition {
            domain_of: vec![0, 1, 0, 1],
            domains: 2,
            max_skew: 1,
        };
        assert!(matches!(
            min_moves(&layout, &[zones, racks]),
            Err(NoOptimum::Crossing { .. })
        ));
    }

    /// Random small clusters: up to 6 hosts in up to 3 zones (hosts nest in
    /// zones; racks nest in zones and group hosts), random counts and
    /// capacities, one to three constraints.
    fn cluster() -> impl Strategy<Value = (Layout, Vec<Partition>)> {
        (1usize..=6, 1u32..=3)
            .prop_flat_map(|(hosts, zones)| {
                (
                    proptest::collection::vec(0u32..zones, hosts),
                    proptest::collection::vec(0u32..4, hosts),
                    proptest::collection::vec(0u32..4, hosts),
                    proptest::collection::vec(any::<bool>(), 3),
                    proptest::collection::vec(1u32..=3, 3),
                    0u32..=4,
                    Just(zones),
                )
            })
            .prop_map(
                |(zone_of, count, extra, use_constraint, skews, min_domains, zones)| {
                    let hosts = zone_of.len();
                    let capacity = count.iter().zip(&extra).map(|(c, e)| c + e).collect();
                    // Zones that have a host.
                    let mut zone_ids: Vec<u32> = zone_of.clone();
                    zone_ids.sort();
                    zone_ids.dedup();
                    let zone_index = |z: u32| zone_ids.iter().position(|x| *x == z).unwrap() as u32;
                    let zone_domain: Vec<u32> = zone_of.iter().map(|z| zone_index(*z)).collect();
                    let real_zones = zone_ids.len() as u32;
                    let _ = zones;
                    // Racks: pairs of consecutive hosts of the same zone.
                    let mut rack_of = vec![0u32; hosts];
                    let mut racks = 0;
                    for h in 0..hosts {
                        rack_of[h] = match (0..h).find(|p| {
                            zone_domain[*p] == zone_domain[h]
                                && rack_of[*p] == rack_of[h.saturating_sub(1)]
                                && p % 2 == 0
                                && h == p + 1
                        }) {
                            Some(p) => rack_of[p],
                            None => {
                                racks += 1;
                                racks - 1
                            }
                        };
                    }
                    let mut partitions = vec![];
                    if use_constraint[0] || !(use_constraint[1] || use_constraint[2]) {
                        partitions.push(Partition {
                            domain_of: zone_domain.clone(),
                            domains: real_zones.max(min_domains),
                            max_skew: skews[0],
                        });
                    }
                    if use_constraint[1] {
                        partitions.push(Partition {
                            domain_of: (0..hosts as u32).collect(),
                            domains: hosts as u32,
                            max_skew: skews[1],
                        });
                    }
                    if use_constraint[2] {
                        partitions.push(Partition {
                            domain_of: rack_of,
                            domains: racks,
                            max_skew: skews[2],
                        });
                    }
                    (Layout { count, capacity }, partitions)
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn equals_brute_force_on_small_clusters((layout, partitions) in cluster()) {
            let fast = min_moves(&layout, &partitions);
            let slow = brute_force(&layout, &partitions);
            match (fast, slow) {
                (Ok(a), Some(b)) => prop_assert_eq!(a, b),
                (Err(NoOptimum::Infeasible), None) => {}
                (fast, slow) => prop_assert!(false, "fast {:?}, brute force {:?}", fast, slow),
            }
        }

        #[test]
        fn equals_the_closed_form_for_one_constraint_over_equal_domains(
            counts in proptest::collection::vec(0u32..12, 1..7),
            s in 1u32..4,
        ) {
            let k = counts.len();
            let layout = Layout { count: counts.clone(), capacity: vec![1000; k] };
            let p = Partition { domain_of: (0..k as u32).collect(), domains: k as u32, max_skew: s };
            prop_assert_eq!(min_moves(&layout, &[p]), Ok(closed_form(&counts, s)));
        }
    }
}
