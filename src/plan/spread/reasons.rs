//! Why: the text of each stop's reason and of each blocked service.

use super::*;

impl Problem<'_> {
    pub(super) fn strategy_text(&self) -> String {
        crate::model::strategy_text(&self.strategy)
    }

    /// A destination in words: the instance, or the unit's domain.
    pub(super) fn describe(&self, dest: Dest) -> String {
        match dest {
            Dest::Instance(i) => match self.unit(i) {
                Some(u) => format!(
                    "{} in {} {}",
                    self.snapshot.instances[i].id,
                    self.constraints[self.finest].topology,
                    self.names[self.finest][self.partitions[self.finest].domain_of[u] as usize]
                ),
                None => format!("{} (not eligible)", self.snapshot.instances[i].id),
            },
            Dest::Unit(u) => format!(
                "{} {}",
                self.constraints[self.finest].topology,
                self.names[self.finest][self.partitions[self.finest].domain_of[u] as usize]
            ),
        }
    }

    pub(super) fn domain_name(&self, j: usize, dest: Dest) -> String {
        match self.dest_unit(dest) {
            Some(u) => self.names[j][self.partitions[j].domain_of[u] as usize].clone(),
            None => self.describe(dest),
        }
    }

    /// Why moving a task off host `from` would not help when ECS picks `to`.
    pub(super) fn unhelpful(&self, from: usize, to: Dest) -> String {
        let strategy = self.strategy_text();
        for (j, c) in self.constraints.iter().enumerate() {
            let field = field_of(&c.topology);
            let spreads = self
                .strategy
                .iter()
                .any(|s| matches!(s, PlacementStrategy::Spread(f) if *f == field));
            if optimum::skew(&self.layout.count, &self.partitions[j]) > c.max_skew && !spreads {
                return format!(
                    "the service's placement strategy ({strategy}) does not spread on {}, so ECS could put a replacement in any {} domain: stopping a task would not reliably reduce the skew",
                    c.topology, c.topology
                );
            }
        }
        let j = self.finest;
        format!(
            "ECS ({strategy}) could place the replacement of a task from {} on {}, which does not reduce the skew",
            self.names[j][self.partitions[j].domain_of[self.unit_of[from] as usize] as usize],
            self.describe(to)
        )
    }

    /// Why no layout within capacity satisfies the constraints.
    pub(super) fn infeasible(&self) -> String {
        let n = self.layout.total();
        for (j, c) in self.constraints.iter().enumerate() {
            let p = &self.partitions[j];
            // The emptiest domain holds at least x with N <= x + (k-1)(x+s).
            let k = p.domains.max(1);
            let need = n.saturating_sub((k - 1) * c.max_skew).div_ceil(k);
            let mut capacity = vec![0u32; p.domains as usize];
            for (h, d) in p.domain_of.iter().enumerate() {
                capacity[*d as usize] += self.layout.capacity[h];
            }
            if let Some(d) = (0..p.domains as usize).find(|d| capacity[*d] < need) {
                let real = p.domain_of.iter().any(|x| *x as usize == d);
                return if real {
                    format!(
                        "no room in {} {}: it can hold {} of the service's tasks ({}), but spreading {n} tasks over {k} {} domains with maxSkew {} needs at least {need} there",
                        c.topology,
                        self.names[j][d],
                        capacity[d],
                        self.what_limits(j, d),
                        c.topology,
                        c.max_skew
                    )
                } else {
                    format!(
                        "minDomains {} but only {} {} domains are eligible: with {n} tasks and maxSkew {}, each domain needs at least {need}",
                        p.domains,
                        p.domain_of.iter().max().map_or(0, |m| m + 1),
                        c.topology,
                        c.max_skew
                    )
                };
            }
        }
        "there is not enough free capacity to satisfy every spread constraint at once".into()
    }

    /// What keeps more of the service's tasks out of domain `d` of
    /// constraint `j`: its static host ports, taken by other tasks, when
    /// they are; else the task size.
    fn what_limits(&self, j: usize, d: usize) -> String {
        let size = self.service.task_size;
        let by_size = format!("{} CPU units, {} MiB each", size.cpu, size.memory);
        let ports = &self.service.host_ports;
        if ports.is_empty() {
            return by_size;
        }
        // Hosts of the domain without a task of the service whose ports are
        // taken: by another service's task.
        let taken: Vec<String> = self
            .hosts
            .iter()
            .enumerate()
            .filter(|(h, _)| {
                self.partitions[j].domain_of[self.unit_of[*h] as usize] as usize == d
                    && self.host_count[*h] == 0
            })
            .filter_map(|(_, i)| {
                let instance = &self.snapshot.instances[*i];
                let port = ports.iter().find(|p| instance.ports_in_use.contains(p))?;
                Some(format!("{port} on {}", instance.id))
            })
            .collect();
        if taken.is_empty() {
            return by_size;
        }
        format!(
            "{}; host port {} by another task",
            by_size,
            if taken.len() == 1 {
                format!("{} is taken", taken[0])
            } else {
                format!("{} are taken", taken.join(", "))
            }
        )
    }

    pub(super) fn reason(&self, mv: &Move, step: u32, total: u32) -> String {
        let to = mv.destinations[0];
        let mut parts = vec![];
        for (j, c) in self.constraints.iter().enumerate() {
            let from_domain = self.partitions[j].domain_of[self.unit_of[mv.from] as usize] as usize;
            let to_domain = self
                .dest_unit(to)
                .map(|u| self.partitions[j].domain_of[u] as usize);
            if Some(from_domain) != to_domain {
                let per = self.domain_counts(j);
                let skew = optimum::skew(&self.layout.count, &self.partitions[j]);
                parts.push(format!(
                    "{} skew {skew} (max {}): {} has {}, {} has {}",
                    c.topology,
                    c.max_skew,
                    self.names[j][from_domain],
                    per[from_domain],
                    self.domain_name(j, to),
                    to_domain.map_or(0, |d| per[d])
                ));
            }
        }
        // Name the instance when ECS has one choice; else the domain.
        let landing = match (mv.destinations.len(), to) {
            (1, Dest::Instance(i)) => self.snapshot.instances[i].id.clone(),
            _ => format!(
                "{} {}",
                self.constraints[self.finest].topology,
                self.domain_name(self.finest, to)
            ),
        };
        format!(
            "move {step} of {total}: {}; {}; {} places the replacement on {landing}",
            parts.join("; "),
            match self.host_count[mv.from] {
                1 => "the only task on this host".to_owned(),
                n => format!("youngest of {n} tasks on this host"),
            },
            self.strategy_text()
        )
    }
}
