//! The topologies the policies name: each host's domain per constraint,
//! shared by every service of one plan.

use super::*;

/// The placement field a topology corresponds to.
pub fn field_of(topology: &TopologyKey) -> PlacementField {
    match topology {
        TopologyKey::Zone => PlacementField::zone(),
        TopologyKey::Host => PlacementField::Instance,
        TopologyKey::Attribute(a) => PlacementField::Attribute(a.clone()),
    }
}

/// Each topology's domains over the schedulable instances, computed once
/// per plan so that a balanced service costs only a pass over its tasks.
#[derive(Debug)]
pub struct Topologies<'a> {
    pub(super) by_key: HashMap<TopologyKey, TopologyInfo>,
    pub(super) schedulable: u32,
    /// Placement fields' domains, shared by every service's placement view.
    pub(super) fields: FieldCache<'a>,
    pub(super) instances: &'a [crate::model::Instance],
    /// Free task slots per domain of a topology, for a task size.
    pub(super) slots: RefCell<HashMap<(TopologyKey, Resources), SlotTable>>,
    /// For a pair (finer, coarser): the coarser domain of each finer one,
    /// or `None` if they cross.
    pub(super) nesting: RefCell<HashMap<(TopologyKey, TopologyKey), Option<NestingMap>>>,
}

/// Free task slots per domain.
pub(super) type SlotTable = Rc<Vec<u64>>;
/// The coarser domain of each finer domain.
pub(super) type NestingMap = Rc<Vec<u32>>;

#[derive(Debug)]
pub(super) struct TopologyInfo {
    /// Domain ids by name.
    pub(super) ids: HashMap<String, u32>,
    /// The domain of each instance (`None`: not schedulable, or no attribute).
    pub(super) domain_of: Vec<Option<u32>>,
    pub(super) names: Vec<String>,
    /// Every schedulable instance has the attribute.
    pub(super) complete: bool,
}

impl<'a> Topologies<'a> {
    pub fn new(snapshot: &'a ClusterSnapshot, policies: &[Policy]) -> Topologies<'a> {
        let mut t = Topologies {
            instances: &snapshot.instances,
            slots: RefCell::new(HashMap::new()),
            nesting: RefCell::new(HashMap::new()),
            by_key: HashMap::new(),
            schedulable: snapshot
                .instances
                .iter()
                .filter(|i| i.schedulable())
                .count() as u32,
            fields: FieldCache::new(&snapshot.instances),
        };
        for c in policies.iter().flat_map(|p| &p.placement.spread) {
            if c.topology == TopologyKey::Host || t.by_key.contains_key(&c.topology) {
                continue;
            }
            let field = field_of(&c.topology);
            let mut ids: HashMap<&str, u32> = HashMap::new();
            let mut names = vec![];
            let mut complete = true;
            let domain_of = snapshot
                .instances
                .iter()
                .map(|i| {
                    if !i.schedulable() {
                        return None;
                    }
                    let Some(v) = i.field(&field) else {
                        complete = false;
                        return None;
                    };
                    Some(*ids.entry(v).or_insert_with(|| {
                        names.push(v.to_owned());
                        names.len() as u32 - 1
                    }))
                })
                .collect();
            let ids = names
                .iter()
                .enumerate()
                .map(|(d, n)| (n.clone(), d as u32))
                .collect();
            t.by_key.insert(
                c.topology.clone(),
                TopologyInfo {
                    ids,
                    domain_of,
                    names,
                    complete,
                },
            );
        }
        t
    }

    /// Free slots for tasks of `size` in each domain of a topology, over the
    /// schedulable instances; computed once per plan and size.
    pub(super) fn slots(&self, topology: &TopologyKey, size: Resources) -> Option<Rc<Vec<u64>>> {
        let key = (topology.clone(), size);
        if let Some(s) = self.slots.borrow().get(&key) {
            return Some(Rc::clone(s));
        }
        let info = self.by_key.get(topology)?;
        let mut slots = vec![0u64; info.names.len()];
        for (i, d) in info.domain_of.iter().enumerate() {
            if let Some(d) = d {
                slots[*d as usize] = slots[*d as usize]
                    .saturating_add(u64::from(self.instances[i].remaining.count_of(size)));
            }
        }
        let slots = Rc::new(slots);
        self.slots.borrow_mut().insert(key, Rc::clone(&slots));
        Some(slots)
    }

    /// The `coarser` domain of each `finer` domain, if every finer domain
    /// lies within one coarser domain.
    pub(super) fn nesting(
        &self,
        finer: &TopologyKey,
        coarser: &TopologyKey,
    ) -> Option<Rc<Vec<u32>>> {
        let key = (finer.clone(), coarser.clone());
        if let Some(n) = self.nesting.borrow().get(&key) {
            return n.clone();
        }
        let (f, c) = (self.by_key.get(finer)?, self.by_key.get(coarser)?);
        let mut map = vec![u32::MAX; f.names.len()];
        let mut nested = true;
        for (fd, cd) in f.domain_of.iter().zip(&c.domain_of) {
            if let (Some(fd), Some(cd)) = (fd, cd) {
                match map[*fd as usize] {
                    u32::MAX => map[*fd as usize] = *cd,
                    x if x == *cd => {}
                    _ => nested = false,
                }
            }
        }
        let result = (nested && !map.contains(&u32::MAX)).then(|| Rc::new(map));
        self.nesting.borrow_mut().insert(key, result.clone());
        result
    }

    /// The constraint reports when the service certainly satisfies every
    /// constraint, computed from its running tasks alone; `None` when the
    /// full check is needed (a violation, or eligibility that depends on
    /// the service's own placement constraints).
    pub(super) fn satisfied(
        &self,
        policy: &Policy,
        index: &Index<'_>,
        s: usize,
    ) -> Option<Vec<ConstraintReport>> {
        let snapshot = index.snapshot;
        if snapshot.services[s]
            .constraints
            .iter()
            .any(|c| !matches!(c, crate::model::PlacementConstraint::DistinctInstance))
        {
            return None;
        }
        let mut reports = vec![];
        for c in &policy.placement.spread {
            let (skew, tasks_per_domain) = if c.topology == TopologyKey::Host {
                let mut per_host: HashMap<usize, u32> = HashMap::new();
                for t in index.running(s) {
                    if let Some(i) = snapshot.tasks[t]
                        .instance
                        .filter(|i| snapshot.instances[*i].schedulable())
                    {
                        *per_host.entry(i).or_default() += 1;
                    }
                }
                let domains = self.schedulable.max(c.min_domains.unwrap_or(0));
                let max = per_host.values().copied().max().unwrap_or(0);
                let min = if (per_host.len() as u32) < domains {
                    0
                } else {
                    per_host.values().copied().min().unwrap_or(0)
                };
                let mut listed: Vec<(String, u32)> = per_host
                    .into_iter()
                    .map(|(i, n)| (snapshot.instances[i].id.clone(), n))
                    .collect();
                listed.sort();
                (max - min, listed)
            } else {
                let info = self.by_key.get(&c.topology)?;
                if !info.complete {
                    return None;
                }
                let domains = (info.names.len() as u32).max(c.min_domains.unwrap_or(0)) as usize;
                let mut per = vec![0u32; domains];
                for t in index.running(s) {
                    if let Some(d) = snapshot.tasks[t].instance.and_then(|i| info.domain_of[i]) {
                        per[d as usize] += 1;
                    }
                }
                let max = per.iter().copied().max().unwrap_or(0);
                let min = per.iter().copied().min().unwrap_or(0);
                let names = info.names.iter().cloned().chain(
                    (info.names.len()..domains).map(|k| format!("(missing domain {})", k + 1)),
                );
                (max - min, names.zip(per).collect())
            };
            if skew > c.max_skew {
                return None;
            }
            reports.push(ConstraintReport {
                topology: c.topology.to_string(),
                max_skew: c.max_skew,
                skew,
                tasks_per_domain,
            });
        }
        Some(reports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{Cluster, policies, policy};

    /// Racks inside zones nest; a rack spanning two zones does not; a
    /// host without the attribute leaves it out.
    #[test]
    fn nesting_maps_each_finer_domain_to_its_coarser_one_or_says_they_cross() {
        let mut c = Cluster::new();
        for (host, zone, rack) in [
            ("a1", "a", "r1"),
            ("a2", "a", "r2"),
            ("b1", "b", "r3"),
            ("b2", "b", "r3"),
        ] {
            let i = c.host(host, &format!("us-east-1{zone}"));
            c.snapshot.instances[i]
                .attributes
                .insert("rack".into(), rack.into());
        }
        let p = policies(&policy(
            "p",
            "web",
            "  placement:\n    spread: [{topologyKey: zone, maxSkew: 1}, {topologyKey: \"attribute:rack\", maxSkew: 1}]\n",
        ));
        let rack = TopologyKey::Attribute("rack".into());
        let t = Topologies::new(&c.snapshot, &p);
        let nesting = t
            .nesting(&rack, &TopologyKey::Zone)
            .expect("racks nest in zones");
        // Racks r1, r2, r3 (in order of first sight) lie in zones 0, 0, 1.
        assert_eq!(*nesting, vec![0, 0, 1]);
        // Asked again: the same answer (cached).
        assert_eq!(t.nesting(&rack, &TopologyKey::Zone), Some(nesting));
        // Zones do not nest in racks: zone a holds two racks.
        assert_eq!(t.nesting(&TopologyKey::Zone, &rack), None);

        // r3 spans zones a and b: no nesting.
        c.snapshot.instances[1]
            .attributes
            .insert("rack".into(), "r3".into());
        let t = Topologies::new(&c.snapshot, &p);
        assert_eq!(t.nesting(&rack, &TopologyKey::Zone), None);
    }
}
