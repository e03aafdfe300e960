//! A live cluster captured as a scenario file (`stevedore snapshot`), so
//! that `stevedore sim` replays it and a user can add a timeline ("zone
//! us-east-1a fails at 1m") or other policies: a what-if on a copy of the
//! real cluster. Pure: a [`ClusterSnapshot`] in, a scenario's text out.
//!
//! Names are kept (hosts by their container instance ARN, tasks by their
//! ARN), so a plan of the copy names the same tasks as a plan of the
//! cluster. What a scenario cannot say, or what ECS did not report, is
//! written in the file's header and description, never filled in silently.

use std::collections::BTreeMap;

use super::scenario::{
    HostSpec, PolicySource, RunningTask, ScenarioFile, ScenarioMeta, ScenarioSpec, ServiceSpec,
};
use crate::model::{ClusterSnapshot, InstanceStatus, Millis, TaskStatus, ZONE_ATTRIBUTE};

/// A captured cluster: the scenario, and what it could not hold.
#[derive(Debug)]
pub struct Captured {
    pub scenario: ScenarioFile,
    /// One line per value that could not be read or cannot be replayed.
    pub notes: Vec<String>,
}

/// `2026-12-02T19:20:00Z` for a time in milliseconds since the epoch.
fn rfc3339(at: Millis) -> String {
    jiff::Timestamp::from_millisecond(at as i64)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| at.to_string())
}

/// The scenario of `snapshot` at the moment it was taken, with the policy
/// files `policies` (paths as the scenario should name them).
pub fn capture(snapshot: &ClusterSnapshot, policies: &[String]) -> Captured {
    let mut notes = vec![];
    let mut hosts = vec![];
    for instance in &snapshot.instances {
        if instance.status == InstanceStatus::Inactive {
            continue;
        }
        if !instance.agent_connected {
            notes.push(format!(
                "host {}: its agent is disconnected; the copy's is connected",
                instance.id
            ));
        }
        let mut attributes = instance.attributes.clone();
        attributes.remove(ZONE_ATTRIBUTE);
        hosts.push(HostSpec {
            name: instance.id.clone(),
            zone: instance.zone.clone(),
            count: None,
            cpu: instance.registered.cpu,
            memory: instance.registered.memory,
            attributes,
            draining: instance.status == InstanceStatus::Draining,
        });
    }
    let mut services = vec![];
    for (s, service) in snapshot.services.iter().enumerate() {
        if service.fargate {
            notes.push(format!(
                "service {}: runs on Fargate, which the simulator does not model; left out",
                service.name
            ));
            continue;
        }
        if service.strategy.is_empty() {
            notes.push(format!(
                "service {}: DescribeServices reported no placement strategy, so ECS's default for services applies (spread over zones, then instances); moto never reports one",
                service.name
            ));
        }
        if service.deployment_in_progress {
            notes.push(format!(
                "service {}: a deployment was in progress; the copy starts steady",
                service.name
            ));
        }
        if service.autoscaling_target {
            notes.push(format!(
                "service {}: Application Auto Scaling manages its count; the copy has no such target",
                service.name
            ));
        }
        let mut tasks: Vec<&crate::model::Task> =
            snapshot.tasks.iter().filter(|t| t.service == s).collect();
        let not_running = tasks
            .iter()
            .filter(|t| t.status != TaskStatus::Running || t.instance.is_none())
            .count();
        if not_running > 0 {
            notes.push(format!(
                "service {}: {not_running} tasks not RUNNING on a host (pending, or stopping) are left out",
                service.name
            ));
        }
        tasks.retain(|t| t.status == TaskStatus::Running && t.instance.is_some());
        tasks.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        services.push(ServiceSpec {
            name: service.name.clone(),
            strategy: service.strategy.iter().map(|p| p.to_string()).collect(),
            constraints: service.constraints.iter().map(|c| c.to_string()).collect(),
            cpu: service.task_size.cpu,
            memory: service.task_size.memory,
            host_ports: service.host_ports.clone(),
            tags: service.tags.clone(),
            tasks: BTreeMap::new(),
            protected_tasks: BTreeMap::new(),
            desired: Some(service.desired),
            az_rebalancing: service.az_rebalancing,
            minimum_healthy_percent: service.minimum_healthy_percent,
            maximum_percent: service.maximum_percent,
            running_tasks: tasks
                .iter()
                .map(|t| RunningTask {
                    id: t.id.clone(),
                    host: t
                        .instance
                        .map(|i| snapshot.instances[i].id.clone())
                        .unwrap_or_default(),
                    started_at: Some(rfc3339(t.started_at)),
                    protected: t.protected,
                })
                .collect(),
        });
    }
    let taken_at = rfc3339(snapshot.taken_at);
    let mut description = format!(
        "Cluster {} as read at {taken_at}: {} hosts, {} services, {} running tasks.",
        snapshot.cluster,
        hosts.len(),
        services.len(),
        services
            .iter()
            .map(|s| s.running_tasks.len())
            .sum::<usize>()
    );
    if !notes.is_empty() {
        description.push_str("\nNot read, or not replayed:");
        for note in &notes {
            description.push_str(&format!("\n- {note}"));
        }
    }
    let scenario = ScenarioFile {
        api_version: crate::spec::v1alpha1::API_VERSION.into(),
        kind: "Scenario".into(),
        metadata: ScenarioMeta {
            name: format!("snapshot-of-{}", snapshot.cluster),
            description,
        },
        spec: ScenarioSpec {
            cluster: snapshot.cluster.clone(),
            seed: 0,
            duration: "10m".into(),
            start_at: Some(taken_at),
            resync: None,
            task_start_delay: None,
            task_stop_delay: None,
            api_latency: None,
            hosts,
            services,
            policies: policies
                .iter()
                .map(|p| PolicySource {
                    path: Some(p.clone()),
                    inline: None,
                })
                .collect(),
            timeline: vec![],
            faults: Default::default(),
            metrics: vec![],
            generate: None,
        },
    };
    Captured { scenario, notes }
}

impl Captured {
    /// The scenario file's text: a header saying where it came from and
    /// what to change, then the YAML.
    pub fn to_yaml(&self) -> Result<String, String> {
        let body = serde_saphyr::to_string(&self.scenario).map_err(|e| e.to_string())?;
        let mut text = format!(
            "# A copy of cluster {} taken by `stevedore snapshot`: replay it with\n# `stevedore sim FILE`, add a timeline (- {{at: 1m, zoneFails: ZONE}}) or policies.\n",
            self.scenario.spec.cluster
        );
        for note in &self.notes {
            text.push_str(&format!("# note: {note}\n"));
        }
        text.push_str(&body);
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;

    /// A scenario's cluster, captured and loaded again, is the same
    /// cluster: hosts, services, the tasks by id, host and order.
    #[tokio::test]
    async fn a_captured_cluster_loads_back_as_the_same_cluster() {
        let text = r#"
apiVersion: stevedore.io/v1alpha1
kind: Scenario
metadata: {name: original}
spec:
  cluster: prod
  duration: 1m
  hosts:
    - {name: a, zone: us-east-1a, count: 2, attributes: {tier: front}}
    - {name: b, zone: us-east-1b, count: 1, cpu: 2048, memory: 4096}
  services:
    - name: web
      strategy: ["spread(attribute:ecs.availability-zone)", "binpack(memory)"]
      constraints: ["distinctInstance", "memberOf(attribute:tier == front)"]
      cpu: 512
      memory: 1024
      hostPorts: [8080]
      tasks: {a-1: 1, a-2: 1}
      protectedTasks: {a-2: 1}
      desired: 3
      azRebalancing: true
    - name: api
      tasks: {a-1: 2, b-1: 3}
"#;
        let original =
            crate::sim::scenario::from_text("o", text, std::path::Path::new(".")).unwrap();
        let backend = crate::sim::SimBackend::new(original.sim);
        let mut snapshot = backend.snapshot("prod").await.unwrap();
        snapshot.instances[2].status = InstanceStatus::Draining;
        // Protection is read apart, as `stevedore snapshot` does.
        let ids: Vec<String> = snapshot.tasks.iter().map(|t| t.id.clone()).collect();
        let protected = backend.protected_tasks("prod", &ids).await.unwrap();
        assert_eq!(protected.len(), 1);
        for t in &mut snapshot.tasks {
            t.protected = protected.contains(&t.id);
        }
        // A task still PENDING, and one with no host: left out, and said.
        let mut with_pending = snapshot.clone();
        let mut pending = snapshot.tasks[0].clone();
        pending.id = "pending".into();
        pending.status = crate::model::TaskStatus::Pending;
        let mut homeless = snapshot.tasks[0].clone();
        homeless.id = "homeless".into();
        homeless.instance = None;
        with_pending.tasks.extend([pending, homeless]);
        let noted = capture(&with_pending, &[]);
        let text = noted.to_yaml().unwrap();
        assert!(
            !text.contains("id: pending") && !text.contains("id: homeless"),
            "{text}"
        );
        assert!(
            noted
                .notes
                .iter()
                .any(|n| n.contains("web: 2 tasks not RUNNING")),
            "{:?}",
            noted.notes
        );
        assert!(
            noted
                .scenario
                .metadata
                .description
                .contains("Not read, or not replayed:\n- ")
        );
        let captured = capture(&snapshot, &[]);
        let yaml = captured.to_yaml().unwrap();
        let copy = crate::sim::scenario::from_text("copy", &yaml, std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let copy = crate::sim::SimBackend::new(copy.sim);
        let mut again = copy.snapshot("prod").await.unwrap();
        let protected_again = copy.protected_tasks("prod", &ids).await.unwrap();
        assert_eq!(protected_again, protected);
        for t in &mut again.tasks {
            t.protected = protected_again.contains(&t.id);
        }
        assert_eq!(again.instances, snapshot.instances, "{yaml}");
        let strip = |s: &ClusterSnapshot| {
            s.services
                .iter()
                .map(|x| crate::model::Service {
                    arn: String::new(),
                    ..x.clone()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&again), strip(&snapshot), "{yaml}");
        let tasks = |s: &ClusterSnapshot| {
            let mut t: Vec<(String, usize, Option<usize>, bool)> = s
                .tasks
                .iter()
                .map(|t| (t.id.clone(), t.service, t.instance, t.protected))
                .collect();
            t.sort();
            t
        };
        assert_eq!(tasks(&again), tasks(&snapshot), "{yaml}");
        // The youngest first, as the planner orders them, in both.
        let order = |s: &ClusterSnapshot| {
            let mut t: Vec<(Millis, String)> = s
                .tasks
                .iter()
                .map(|t| (t.started_at, t.id.clone()))
                .collect();
            t.sort();
            t.into_iter().map(|(_, id)| id).collect::<Vec<_>>()
        };
        assert_eq!(order(&again), order(&snapshot));
        // What could not be read is said: here, one service without a strategy.
        assert!(
            captured
                .notes
                .iter()
                .all(|n| n.contains("api: DescribeServices reported no placement strategy")),
            "{:?}",
            captured.notes
        );
        assert!(yaml.contains("draining: true"), "{yaml}");
    }
}
