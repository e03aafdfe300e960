//! One service under one policy's spread constraints, and the search for
//! the next stop: from the most over-full domain, the fullest host, its
//! youngest unprotected task, and only a stop that every placement ECS
//! might choose brings one move nearer the optimum.

use super::*;

/// How many source hosts to try before declaring a service stuck.
pub(super) const MAX_SOURCES_TRIED: usize = 64;

/// A placement step that fails, and why.
pub(super) struct Blocked(pub(super) String);

pub(super) struct Move {
    /// Index into `hosts`.
    pub(super) from: usize,
    pub(super) task: usize,
    /// Where ECS may put the replacement (planning goes on as if it picked
    /// the first; the batch check follows every choice).
    pub(super) destinations: Vec<Dest>,
}

/// One service under one policy's spread constraints.
pub(super) struct Problem<'a> {
    pub(super) snapshot: &'a ClusterSnapshot,
    pub(super) service: &'a Service,
    pub(super) constraints: &'a [SpreadConstraint],
    pub(super) strategy: Vec<PlacementStrategy>,
    pub(super) predictor: Predictor<'a>,
    /// Instance index of each host that matters, in increasing order (a
    /// host's position is found by binary search): every eligible host for
    /// the instance-level model; the hosts with the service's tasks for the
    /// unit-level one.
    pub(super) hosts: Vec<usize>,
    /// The unit of each host. Units are the domains of the finest
    /// constraint (or the hosts themselves, with a `host` constraint):
    /// hosts enter the optimum only through their unit's sums, so a move's
    /// effect depends only on the units it leaves and reaches.
    pub(super) unit_of: Vec<u32>,
    /// The constraints over units.
    pub(super) partitions: Vec<Partition>,
    /// Domain names per constraint.
    pub(super) names: Vec<Vec<String>>,
    /// Tasks and capacity per unit.
    pub(super) layout: Layout,
    /// Running tasks per host.
    pub(super) host_count: Vec<u32>,
    /// Running, unprotected tasks per host, youngest first.
    pub(super) stoppable: Vec<Vec<usize>>,
    /// The finest constraint, for naming units.
    pub(super) finest: usize,
    /// Cleared when the unit-level model meets a tie between units that
    /// ECS's later strategies would break instance by instance.
    pub(super) exact: Rc<Cell<bool>>,
}

/// A constraint's partition of some units, with the empty domains that
/// `minDomains` adds (named, since reports list them).
pub(super) fn partition(
    c: &SpreadConstraint,
    domain_of: Vec<u32>,
    mut names: Vec<String>,
) -> (Partition, Vec<String>) {
    let real = names.len() as u32;
    let domains = real.max(c.min_domains.unwrap_or(0));
    for k in real..domains {
        names.push(format!("(missing domain {})", k + 1));
    }
    (
        Partition {
            domain_of,
            domains,
            max_skew: c.max_skew,
        },
        names,
    )
}

/// Running tasks per host and the stoppable ones (youngest first), over `hosts`.
pub(super) fn running_by_host(
    index: &Index<'_>,
    s: usize,
    hosts: usize,
    host_list: &[usize],
) -> (Vec<u32>, Vec<Vec<usize>>) {
    let snapshot = index.snapshot;
    let mut host_count = vec![0u32; hosts];
    let mut stoppable = vec![vec![]; hosts];
    for t in index.running(s) {
        let task = &snapshot.tasks[t];
        if let Some(p) = task.instance.and_then(|i| host_list.binary_search(&i).ok()) {
            host_count[p] += 1;
            if !task.protected {
                stoppable[p].push(t);
            }
        }
    }
    for list in &mut stoppable {
        list.sort_by(|a, b| {
            let (a, b) = (&snapshot.tasks[*a], &snapshot.tasks[*b]);
            b.started_at
                .cmp(&a.started_at)
                .then_with(|| a.id.cmp(&b.id))
        });
    }
    (host_count, stoppable)
}

impl<'a> Problem<'a> {
    /// The instance-level problem: works for any service.
    pub(super) fn new(
        policy: &'a Policy,
        index: &Index<'a>,
        topologies: &Topologies<'_>,
        s: usize,
    ) -> Problem<'a> {
        let snapshot = index.snapshot;
        let service = &snapshot.services[s];
        let constraints = &policy.placement.spread[..];

        let view = PlacementView::with_fields(
            &snapshot.instances,
            service,
            index.holding(s),
            &topologies.fields,
        );

        // Eligible hosts: ECS may place the service there, and every
        // constraint's attribute is set (hosts without it are ignored, as
        // Kubernetes ignores nodes without the topology key).
        let infos: Vec<Option<&TopologyInfo>> = constraints
            .iter()
            .map(|c| topologies.by_key.get(&c.topology))
            .collect();
        let hosts: Vec<usize> = (0..snapshot.instances.len())
            .filter(|i| {
                view.open[*i]
                    && infos
                        .iter()
                        .all(|info| info.is_none_or(|info| info.domain_of[*i].is_some()))
            })
            .collect();
        let mut partitions = vec![];
        let mut names = vec![];
        for c in constraints {
            let (domain_of, domain_names): (Vec<u32>, Vec<String>) =
                match topologies.by_key.get(&c.topology) {
                    // Hosts: each eligible host is its own domain.
                    None => (
                        (0..hosts.len() as u32).collect(),
                        hosts
                            .iter()
                            .map(|i| snapshot.instances[*i].id.clone())
                            .collect(),
                    ),
                    // Other topologies: the shared domains, renumbered over the eligible hosts.
                    Some(info) => {
                        let mut renumber = vec![u32::MAX; info.names.len()];
                        let mut domain_names = vec![];
                        let domain_of = hosts
                            .iter()
                            .map(|i| {
                                let d = info.domain_of[*i].unwrap_or_default() as usize;
                                if renumber[d] == u32::MAX {
                                    renumber[d] = domain_names.len() as u32;
                                    domain_names.push(info.names[d].clone());
                                }
                                renumber[d]
                            })
                            .collect();
                        (domain_of, domain_names)
                    }
                };
            let (partition, domain_names) = partition(c, domain_of, domain_names);
            partitions.push(partition);
            names.push(domain_names);
        }

        let (host_count, stoppable) = running_by_host(index, s, hosts.len(), &hosts);
        let finest = (0..partitions.len())
            .max_by_key(|j| (partitions[*j].domains, *j))
            .unwrap_or(0);
        let (unit_of, partitions) = units(&partitions, finest, constraints, hosts.len());
        let units = partitions
            .first()
            .map_or(0, |_| unit_of.iter().max().map_or(0, |m| *m as usize + 1));
        let mut count = vec![0u32; units];
        for (h, n) in host_count.iter().enumerate() {
            count[unit_of[h] as usize] += n;
        }
        // No unit ever needs to hold more than all the service's tasks, so
        // capacity is counted up to that.
        let total: u32 = host_count.iter().sum();
        let mut capacity = count.clone();
        for (h, i) in hosts.iter().enumerate() {
            let u = unit_of[h] as usize;
            if capacity[u] < total {
                capacity[u] =
                    (capacity[u] + view.free_slots_up_to(*i, total)).min(total.max(count[u]));
            }
        }
        Problem {
            snapshot,
            service,
            constraints,
            strategy: service.effective_strategy(),
            predictor: Predictor::Hosts(view),
            hosts,
            unit_of,
            partitions,
            names,
            layout: Layout { count, capacity },
            host_count,
            stoppable,
            finest,
            exact: Rc::new(Cell::new(true)),
        }
    }

    /// The unit-level problem, when it is exact (see [`Predictor::Units`]):
    /// built from the plan's shared tables in O(the service's tasks + units),
    /// with no pass over the hosts.
    pub(super) fn by_units(
        policy: &'a Policy,
        index: &Index<'a>,
        topologies: &Topologies<'_>,
        s: usize,
    ) -> Option<Problem<'a>> {
        let snapshot = index.snapshot;
        let service = &snapshot.services[s];
        let constraints = &policy.placement.spread[..];
        if constraints.is_empty()
            || !service.constraints.is_empty()
            || !service.host_ports.is_empty()
        {
            return None;
        }
        let infos: Vec<&TopologyInfo> = constraints
            .iter()
            .map(|c| topologies.by_key.get(&c.topology).filter(|i| i.complete))
            .collect::<Option<_>>()?;
        let finest = (0..constraints.len()).max_by_key(|j| (infos[*j].names.len(), *j))?;
        let strategy = service.effective_strategy();
        if strategy.first()
            != Some(&PlacementStrategy::Spread(field_of(
                &constraints[finest].topology,
            )))
        {
            return None;
        }
        let info = infos[finest];
        let units = info.names.len();
        let mut partitions = vec![];
        let mut names = vec![];
        for (j, c) in constraints.iter().enumerate() {
            let domain_of: Vec<u32> = if j == finest {
                (0..units as u32).collect()
            } else {
                topologies
                    .nesting(&constraints[finest].topology, &c.topology)?
                    .to_vec()
            };
            let domain_names = infos[j].names.clone();
            let (partition, domain_names) = partition(c, domain_of, domain_names);
            partitions.push(partition);
            names.push(domain_names);
        }

        // The hosts that matter: those with the service's running tasks.
        let mut hosts: Vec<usize> = index
            .running(s)
            .filter_map(|t| snapshot.tasks[t].instance)
            .filter(|i| info.domain_of[*i].is_some())
            .collect();
        hosts.sort_unstable();
        hosts.dedup();
        let (host_count, stoppable) = running_by_host(index, s, hosts.len(), &hosts);
        let unit_of: Vec<u32> = hosts
            .iter()
            .map(|i| info.domain_of[*i].unwrap_or_default())
            .collect();
        let mut count = vec![0u32; units];
        for (h, n) in host_count.iter().enumerate() {
            count[unit_of[h] as usize] += n;
        }
        let total: u32 = host_count.iter().sum();
        let slots = topologies.slots(&constraints[finest].topology, service.task_size)?;
        let capacity = (0..units)
            .map(|u| (u64::from(count[u]) + slots[u]).min(u64::from(total.max(count[u]))) as u32)
            .collect();

        // What ECS's spread strategy counts: running and pending tasks on
        // any instance of the unit, schedulable or not.
        let field = field_of(&constraints[finest].topology);
        let mut spread = vec![0u64; units];
        for t in &index.tasks_of[s] {
            let task = &snapshot.tasks[*t];
            if let (Some(i), TaskStatus::Running | TaskStatus::Pending) =
                (task.instance, task.status)
            {
                let unit = info.domain_of[i].or_else(|| {
                    snapshot.instances[i]
                        .field(&field)
                        .and_then(|v| info.ids.get(v).copied())
                });
                if let Some(u) = unit {
                    spread[u as usize] += 1;
                }
            }
        }
        let exact = Rc::new(Cell::new(true));
        let ranks_after = strategy[1..]
            .iter()
            .any(|s| *s != PlacementStrategy::Random);
        Some(Problem {
            snapshot,
            service,
            constraints,
            strategy,
            predictor: Predictor::Units(UnitView {
                slots: slots.to_vec(),
                spread,
                ranks_after,
                exact: Rc::clone(&exact),
            }),
            hosts,
            unit_of,
            partitions,
            names,
            layout: Layout { count, capacity },
            host_count,
            stoppable,
            finest,
            exact,
        })
    }

    pub(super) fn domain_counts(&self, j: usize) -> Vec<u32> {
        let p = &self.partitions[j];
        let mut per = vec![0u32; p.domains as usize];
        for (u, d) in p.domain_of.iter().enumerate() {
            per[*d as usize] += self.layout.count[u];
        }
        per
    }

    pub(super) fn reports(&self) -> Vec<ConstraintReport> {
        (0..self.partitions.len())
            .map(|j| {
                let per = self.domain_counts(j);
                let host = self.constraints[j].topology == TopologyKey::Host;
                let mut tasks_per_domain: Vec<(String, u32)> = self.names[j]
                    .iter()
                    .cloned()
                    .zip(per)
                    .filter(|(_, n)| !host || *n > 0)
                    .collect();
                if host {
                    tasks_per_domain.sort();
                }
                ConstraintReport {
                    topology: self.constraints[j].topology.to_string(),
                    max_skew: self.constraints[j].max_skew,
                    skew: optimum::skew(&self.layout.count, &self.partitions[j]),
                    tasks_per_domain,
                }
            })
            .collect()
    }

    /// The position of an instance in `hosts`.
    pub(super) fn position(&self, instance: usize) -> Option<usize> {
        self.hosts.binary_search(&instance).ok()
    }

    /// The unit of an instance, if it is one of `hosts`.
    pub(super) fn unit(&self, instance: usize) -> Option<usize> {
        self.position(instance).map(|p| self.unit_of[p] as usize)
    }

    /// The unit a destination lies in, if it counts for the constraints.
    pub(super) fn dest_unit(&self, dest: Dest) -> Option<usize> {
        match dest {
            Dest::Unit(u) => Some(u),
            Dest::Instance(i) => self.unit(i),
        }
    }

    /// The optimum after moving one task from host `from` to unit `to`.
    pub(super) fn optimum_after(&mut self, from: usize, to: usize) -> Option<u32> {
        let from = self.unit_of[from] as usize;
        self.layout.count[from] -= 1;
        self.layout.count[to] += 1;
        let result = optimum::min_moves(&self.layout, &self.partitions).ok();
        self.layout.count[to] -= 1;
        self.layout.count[from] += 1;
        result
    }

    /// Source hosts, most over-full first: by their domains' task counts
    /// from the coarsest constraint to the finest, then their own count.
    pub(super) fn sources(&self) -> Vec<usize> {
        let key = self.fullness();
        let mut order: Vec<usize> = (0..self.hosts.len())
            .filter(|h| !self.stoppable[*h].is_empty())
            .collect();
        order.sort_by(|a, b| {
            key(*b)
                .cmp(&key(*a))
                .then(self.hosts[*a].cmp(&self.hosts[*b]))
        });
        order
    }

    /// How full a host is, for choosing where stops start: the tasks of
    /// its domains, coarsest constraint first, then its own.
    pub(super) fn fullness(&self) -> impl Fn(usize) -> (Vec<u32>, u32) + '_ {
        let per: Vec<Vec<u32>> = (0..self.partitions.len())
            .map(|j| self.domain_counts(j))
            .collect();
        move |h: usize| {
            let mut by_domain: Vec<(u32, u32)> = (0..self.partitions.len())
                .map(|j| {
                    (
                        self.partitions[j].domains,
                        per[j][self.partitions[j].domain_of[self.unit_of[h] as usize] as usize],
                    )
                })
                .collect();
            by_domain.sort();
            (
                by_domain.into_iter().map(|(_, c)| c).collect(),
                self.host_count[h],
            )
        }
    }

    /// When no stop qualifies: the fullest host, if every task on it is
    /// protected from scale-in and it is fuller than every host that has
    /// a task to stop (where stops would have started, but may not).
    pub(super) fn protected_fullest(&self) -> Option<usize> {
        let key = self.fullness();
        let fullest = (0..self.hosts.len())
            .filter(|h| self.host_count[*h] > 0)
            .max_by(|a, b| {
                key(*a)
                    .cmp(&key(*b))
                    .then(self.hosts[*b].cmp(&self.hosts[*a]))
            })?;
        // The fullest host itself counts here when it has a task to stop.
        let stoppable_fuller_or_equal =
            (0..self.hosts.len()).any(|h| !self.stoppable[h].is_empty() && key(h) >= key(fullest));
        (!stoppable_fuller_or_equal).then_some(fullest)
    }

    /// The protected tasks around host `h` in words, with their verb:
    /// every task of the widest over-skewed domain of `h` when none of
    /// them may be stopped ("all 5 tasks in zone us-east-1a (on a1, a2),
    /// where stops would start, are"), else those on `h`.
    fn protected_around(&self, h: usize) -> String {
        let unit = self.unit_of[h] as usize;
        // Coarsest first: the fewest domains.
        let mut order: Vec<usize> = (0..self.partitions.len()).collect();
        order.sort_by_key(|j| self.partitions[*j].domains);
        for j in order {
            let p = &self.partitions[j];
            if optimum::skew(&self.layout.count, p) <= self.constraints[j].max_skew {
                continue;
            }
            let domain = p.domain_of[unit];
            let hosts: Vec<usize> = (0..self.hosts.len())
                .filter(|x| {
                    p.domain_of[self.unit_of[*x] as usize] == domain && self.host_count[*x] > 0
                })
                .collect();
            if hosts.len() > 1 && hosts.iter().all(|x| self.stoppable[*x].is_empty()) {
                let tasks: u32 = hosts.iter().map(|x| self.host_count[*x]).sum();
                let names: Vec<&str> = hosts
                    .iter()
                    .map(|x| self.snapshot.instances[self.hosts[*x]].id.as_str())
                    .collect();
                return format!(
                    "all {tasks} tasks in {} {} (on {}), where stops would start, are",
                    self.constraints[j].topology,
                    self.names[j][domain as usize],
                    names.join(", ")
                );
            }
        }
        format!(
            "the {} on {}, where stops would start, {}",
            if self.host_count[h] == 1 {
                "task"
            } else {
                "tasks"
            },
            self.describe(Dest::Instance(self.hosts[h])),
            if self.host_count[h] == 1 { "is" } else { "are" }
        )
    }

    /// Keeps only the tasks in `zone` stoppable (a DisruptionBudget's
    /// `oneZoneAtATime`).
    pub(super) fn stop_only_in(&mut self, zone: &str) {
        for (h, stoppable) in self.stoppable.iter_mut().enumerate() {
            if self.snapshot.instances[self.hosts[h]].zone != zone {
                stoppable.clear();
            }
        }
    }

    /// Leaves these tasks where they are (settling after a move).
    pub(super) fn keep_in_place(&mut self, tasks: &[usize]) {
        if tasks.is_empty() {
            return;
        }
        for stoppable in &mut self.stoppable {
            stoppable.retain(|t| !tasks.contains(t));
        }
    }

    /// The next stop that is a step of an optimal plan whatever ECS does.
    pub(super) fn find_move(&mut self, optimum_now: u32) -> Result<Move, Blocked> {
        let mut first_problem: Option<Blocked> = None;
        for from in self.sources().into_iter().take(MAX_SOURCES_TRIED) {
            let (instance, unit) = (self.hosts[from], self.unit_of[from] as usize);
            let mut predictor = self.predictor.clone();
            predictor.remove(instance, unit);
            let destinations = predictor.destinations();
            if destinations.is_empty() {
                // Not reached while the capacity check runs first: a layout
                // that needs a domain to grow needs a free slot there, and
                // an instance with a free slot can host the replacement.
                // Kept so that a change to either check fails safe.
                first_problem.get_or_insert(Blocked(
                    "no instance can take a replacement task: stopping one would leave it PROVISIONING".into(),
                ));
                continue;
            }
            // One evaluation per unit reached.
            let mut seen: Vec<Option<bool>> = vec![None; self.layout.count.len()];
            let mut bad = None;
            for d in &destinations {
                let good = match self.dest_unit(*d) {
                    // A replacement outside the eligible hosts helps no constraint.
                    None => false,
                    Some(u) => match seen[u] {
                        Some(g) => g,
                        None => {
                            let g = self.optimum_after(from, u) == Some(optimum_now - 1);
                            seen[u] = Some(g);
                            g
                        }
                    },
                };
                if !good {
                    bad = Some(*d);
                    break;
                }
            }
            match bad {
                None => {
                    return Ok(Move {
                        from,
                        task: self.stoppable[from][0],
                        destinations,
                    });
                }
                Some(d) => {
                    first_problem.get_or_insert_with(|| Blocked(self.unhelpful(from, d)));
                }
            }
        }
        Err(match (first_problem, self.protected_fullest()) {
            (None, _) => {
                Blocked("every running task of the service is protected from scale-in".into())
            }
            (Some(Blocked(why)), Some(h)) => Blocked(format!(
                "{} protected from scale-in; elsewhere: {why}",
                self.protected_around(h),
            )),
            (Some(blocked), None) => blocked,
        })
    }

    pub(super) fn apply(&mut self, mv: &Move) {
        let to = mv.destinations[0];
        self.predictor
            .remove(self.hosts[mv.from], self.unit_of[mv.from] as usize);
        self.predictor.place(to);
        self.host_count[mv.from] -= 1;
        self.layout.count[self.unit_of[mv.from] as usize] -= 1;
        if let Some(u) = self.dest_unit(to) {
            self.layout.count[u] += 1;
        }
        if let Dest::Instance(i) = to
            && let Some(p) = self.position(i)
        {
            self.host_count[p] += 1;
        }
        self.stoppable[mv.from].retain(|t| *t != mv.task);
    }
}

/// Collapses hosts into units: the domains of the finest constraint when
/// every other constraint is coarser (each unit lies in one domain of each),
/// else the hosts themselves (with a `host` constraint, or constraints that
/// cross, which the optimum then reports). Returns each host's unit and the
/// partitions over units.
pub(super) fn units(
    host_partitions: &[Partition],
    finest: usize,
    constraints: &[SpreadConstraint],
    hosts: usize,
) -> (Vec<u32>, Vec<Partition>) {
    let identity = || ((0..hosts as u32).collect(), host_partitions.to_vec());
    if host_partitions.is_empty() || constraints.iter().any(|c| c.topology == TopologyKey::Host) {
        return identity();
    }
    let unit_of: Vec<u32> = host_partitions[finest].domain_of.clone();
    let units = unit_of.iter().max().map_or(0, |m| *m as usize + 1);
    let mut partitions = vec![];
    for p in host_partitions {
        let mut domain_of = vec![u32::MAX; units];
        for (h, u) in unit_of.iter().enumerate() {
            let d = p.domain_of[h];
            match domain_of[*u as usize] {
                u32::MAX => domain_of[*u as usize] = d,
                x if x == d => {}
                _ => return identity(),
            }
        }
        partitions.push(Partition {
            domain_of,
            domains: p.domains,
            max_skew: p.max_skew,
        });
    }
    (unit_of, partitions)
}
