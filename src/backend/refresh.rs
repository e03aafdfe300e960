//! Partial refresh: after an event, read again only what it touched, and
//! merge what was read into the last complete snapshot.
//!
//! This is the informer pattern of Kubernetes controllers: a full read (the
//! resync) fills the cache, events say which objects changed, and only those
//! are read again. Events are hints: the merged snapshot is as fresh as the
//! events that reached the controller, so the periodic full resync still
//! runs, and before stopping a task the controller re-reads the service it
//! acts on (see [`crate::controller`]).
//!
//! The merge is pure: [`apply`] takes the previous snapshot and a [`Delta`]
//! and returns the new snapshot, with the index references of tasks
//! rebuilt.

use std::collections::{BTreeSet, HashMap};

use crate::backend::events::{EcsEvent, EventKind};
use crate::model::{ClusterSnapshot, Instance, Millis, Service, Task, TaskStatus};

/// What events said changed since the last read, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Task ARNs (or simulator ids).
    pub tasks: BTreeSet<String>,
    /// Container instance ARNs.
    pub instances: BTreeSet<String>,
    /// Service names.
    pub services: BTreeSet<String>,
}

impl Touched {
    /// Notes what one event is about.
    pub fn note(&mut self, event: &EcsEvent) {
        match event.kind {
            EventKind::TaskStateChange => {
                self.tasks.insert(event.resource.clone());
            }
            EventKind::ContainerInstanceStateChange => {
                self.instances.insert(event.resource.clone());
            }
            EventKind::ServiceAction | EventKind::DeploymentStateChange => {
                self.services
                    .insert(service_name(&event.resource).to_owned());
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.instances.is_empty() && self.services.is_empty()
    }

    /// Everything in `other` too.
    pub fn extend(&mut self, other: Touched) {
        self.tasks.extend(other.tasks);
        self.instances.extend(other.instances);
        self.services.extend(other.services);
    }

    /// Adds the service and the instance of each touched task: a task that
    /// starts or stops changes its service's counts and its host's free
    /// room. `read` are the touched tasks as just read; `previous` tells
    /// where the ones that are gone were.
    pub fn with_owners(mut self, read: &[TaskRecord], previous: &ClusterSnapshot) -> Touched {
        let forgotten = previous
            .tasks
            .iter()
            .filter(|t| self.tasks.contains(&t.id))
            .map(|t| TaskRecord::of(previous, t));
        let owners: Vec<(String, Option<String>)> = read
            .iter()
            .cloned()
            .chain(forgotten)
            .map(|r| (r.service, r.instance))
            .collect();
        for (service, instance) in owners {
            self.services.insert(service);
            self.instances.extend(instance);
        }
        self
    }
}

/// A service's name from its ARN (`arn:...:service/CLUSTER/NAME` or the
/// older `arn:...:service/NAME`), or the name itself.
pub fn service_name(arn_or_name: &str) -> &str {
    arn_or_name.rsplit('/').next().unwrap_or(arn_or_name)
}

/// A task as read on its own: its service and host by name and ARN, since
/// indices only mean something inside one snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub id: String,
    /// The service's name.
    pub service: String,
    /// The container instance's ARN; `None` while provisioning.
    pub instance: Option<String>,
    pub status: TaskStatus,
    pub started_at: Millis,
    pub protected: bool,
}

impl TaskRecord {
    /// The record of a task of a snapshot.
    pub fn of(snapshot: &ClusterSnapshot, task: &Task) -> TaskRecord {
        TaskRecord {
            id: task.id.clone(),
            service: snapshot.services[task.service].name.clone(),
            instance: task.instance.map(|i| snapshot.instances[i].id.clone()),
            status: task.status,
            started_at: task.started_at,
            protected: task.protected,
        }
    }
}

/// Objects read again: each id with what was read, or `None` when it is
/// gone (stopped, deregistered, deleted).
#[derive(Debug, Clone, Default)]
pub struct Delta {
    pub taken_at: Millis,
    pub services: Vec<(String, Option<Service>)>,
    pub instances: Vec<(String, Option<Instance>)>,
    pub tasks: Vec<(String, Option<TaskRecord>)>,
}

impl Delta {
    /// The delta of a read of `touched`: each id with the object read, or
    /// `None` when the read did not return it (it is gone).
    pub fn from_reads(
        touched: &Touched,
        taken_at: Millis,
        services: Vec<Service>,
        instances: Vec<Instance>,
        tasks: Vec<TaskRecord>,
    ) -> Delta {
        fn pair<T>(
            ids: &BTreeSet<String>,
            read: Vec<T>,
            key: impl Fn(&T) -> &String,
        ) -> Vec<(String, Option<T>)> {
            let mut read: HashMap<String, T> =
                read.into_iter().map(|x| (key(&x).clone(), x)).collect();
            ids.iter().map(|id| (id.clone(), read.remove(id))).collect()
        }
        Delta {
            taken_at,
            services: pair(&touched.services, services, |s| &s.name),
            instances: pair(&touched.instances, instances, |i| &i.id),
            tasks: pair(&touched.tasks, tasks, |t| &t.id),
        }
    }

    /// How many objects were read.
    pub fn len(&self) -> usize {
        self.services.len() + self.instances.len() + self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Merges the delta into the snapshot, in place: objects read again replace
/// (or remove) their previous versions, new ones are appended, and tasks
/// whose service or host is gone are dropped with it. In place, because a
/// copy of a 100,000-task snapshot per event would cost more than the read.
pub fn apply(snapshot: &mut ClusterSnapshot, delta: Delta) {
    snapshot.taken_at = snapshot.taken_at.max(delta.taken_at);
    let services = merge(&mut snapshot.services, delta.services, |s| &s.name);
    let instances = merge(&mut snapshot.instances, delta.instances, |i| &i.id);

    let service_index: HashMap<&str, usize> = snapshot
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let instance_index: HashMap<&str, usize> = snapshot
        .instances
        .iter()
        .enumerate()
        .map(|(i, x)| (x.id.as_str(), i))
        .collect();
    let resolve = |record: TaskRecord| -> Option<Task> {
        let service = *service_index.get(record.service.as_str())?;
        let instance = match &record.instance {
            Some(arn) => Some(*instance_index.get(arn.as_str())?),
            None => None,
        };
        Some(Task {
            id: record.id,
            service,
            instance,
            status: record.status,
            started_at: record.started_at,
            protected: record.protected,
        })
    };

    let mut updates: HashMap<String, Option<TaskRecord>> = delta.tasks.into_iter().collect();
    let mut kept = Vec::with_capacity(snapshot.tasks.len());
    for task in std::mem::take(&mut snapshot.tasks) {
        let update = if updates.is_empty() {
            None
        } else {
            updates.remove(&task.id)
        };
        let task = match update {
            Some(None) => None,
            Some(Some(record)) => resolve(record),
            None => (|| {
                Some(Task {
                    service: services[task.service]?,
                    instance: match task.instance {
                        Some(i) => Some(instances[i]?),
                        None => None,
                    },
                    ..task
                })
            })(),
        };
        kept.extend(task);
    }
    // New tasks, in a stable order.
    let mut added: Vec<TaskRecord> = updates.into_values().flatten().collect();
    added.sort_by(|a, b| a.id.cmp(&b.id));
    kept.extend(added.into_iter().filter_map(resolve));
    snapshot.tasks = kept;
}

/// Replaces, removes and appends objects by key, in place; returns where
/// each old position went (`None`: removed).
fn merge<T>(
    items: &mut Vec<T>,
    updates: Vec<(String, Option<T>)>,
    key: impl Fn(&T) -> &String,
) -> Vec<Option<usize>> {
    let mut updates: HashMap<String, Option<T>> = updates.into_iter().collect();
    let mut moved = Vec::with_capacity(items.len());
    let mut next = 0;
    let mut kept = Vec::with_capacity(items.len());
    for item in std::mem::take(items) {
        let item = match updates.remove(key(&item)) {
            Some(update) => update,
            None => Some(item),
        };
        match item {
            Some(item) => {
                moved.push(Some(next));
                next += 1;
                kept.push(item);
            }
            None => moved.push(None),
        }
    }
    let mut added: Vec<T> = updates.into_values().flatten().collect();
    added.sort_by(|a, b| key(a).cmp(key(b)));
    kept.extend(added);
    *items = kept;
    moved
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::Resources;

    fn service(name: &str, desired: u32) -> Service {
        Service {
            name: name.into(),
            arn: format!("arn:aws:ecs:us-east-1:1:service/prod/{name}"),
            tags: BTreeMap::new(),
            desired,
            running: desired,
            pending: 0,
            deployment_in_progress: false,
            strategy: vec![],
            constraints: vec![],
            task_size: Resources::default(),
            host_ports: vec![],
            az_rebalancing: false,
            az_rebalancing_in_progress: false,
            autoscaling_target: false,
            fargate: false,
            minimum_healthy_percent: 100,
            maximum_percent: 200,
        }
    }

    fn host(id: &str, zone: &str) -> Instance {
        Instance::active(id, zone, Resources::default(), BTreeMap::new())
    }

    fn record(id: &str, service: &str, instance: &str) -> TaskRecord {
        TaskRecord {
            id: id.into(),
            service: service.into(),
            instance: Some(instance.into()),
            status: TaskStatus::Running,
            started_at: 0,
            protected: false,
        }
    }

    fn snapshot() -> ClusterSnapshot {
        let mut s = ClusterSnapshot {
            cluster: "prod".into(),
            taken_at: 10,
            instances: vec![host("h1", "a"), host("h2", "b")],
            services: vec![service("web", 2), service("api", 1)],
            tasks: vec![],
        };
        for (id, svc, inst) in [("t1", 0, 0), ("t2", 0, 1), ("t3", 1, 1)] {
            s.tasks.push(Task {
                id: id.into(),
                service: svc,
                instance: Some(inst),
                status: TaskStatus::Running,
                started_at: 0,
                protected: false,
            });
        }
        s
    }

    fn records(s: &ClusterSnapshot) -> Vec<TaskRecord> {
        let mut r: Vec<TaskRecord> = s.tasks.iter().map(|t| TaskRecord::of(s, t)).collect();
        r.sort_by(|a, b| a.id.cmp(&b.id));
        r
    }

    #[test]
    fn an_empty_delta_changes_nothing_but_the_time() {
        let before = snapshot();
        let mut after = before.clone();
        apply(
            &mut after,
            Delta {
                taken_at: 20,
                ..Delta::default()
            },
        );
        assert_eq!(after.taken_at, 20);
        assert_eq!(
            ClusterSnapshot {
                taken_at: 10,
                ..after
            },
            before
        );
    }

    #[test]
    fn new_objects_are_added_and_tasks_point_at_them() {
        let before = snapshot();
        let mut after = before.clone();
        apply(
            &mut after,
            Delta {
                taken_at: 20,
                services: vec![("batch".into(), Some(service("batch", 1)))],
                instances: vec![("h3".into(), Some(host("h3", "c")))],
                tasks: vec![("t4".into(), Some(record("t4", "batch", "h3")))],
            },
        );
        assert_eq!(after.instances.len(), 3);
        let mut expected = records(&before);
        expected.push(record("t4", "batch", "h3"));
        assert_eq!(records(&after), expected);
    }

    #[test]
    fn gone_objects_are_removed_with_their_tasks() {
        let before = snapshot();
        // h1 deregistered: t1 goes with it; the api service deleted: t3 goes too.
        let mut after = before.clone();
        apply(
            &mut after,
            Delta {
                taken_at: 20,
                services: vec![("api".into(), None)],
                instances: vec![("h1".into(), None)],
                tasks: vec![],
            },
        );
        assert_eq!(after.services.len(), 1);
        assert_eq!(records(&after), vec![record("t2", "web", "h2")]);
    }

    #[test]
    fn a_task_read_again_replaces_its_old_version() {
        let before = snapshot();
        let mut moved = record("t1", "web", "h2");
        moved.status = TaskStatus::Stopping;
        let mut after = before.clone();
        apply(
            &mut after,
            Delta {
                taken_at: 20,
                tasks: vec![("t1".into(), Some(moved.clone())), ("t3".into(), None)],
                ..Delta::default()
            },
        );
        assert_eq!(records(&after), vec![moved, record("t2", "web", "h2")]);
    }

    #[test]
    fn touched_notes_each_event_kind_and_the_owners_of_tasks() {
        let event = |kind, resource: &str| EcsEvent {
            id: "e".into(),
            kind,
            cluster: "prod".into(),
            resource: resource.into(),
            version: None,
            time: None,
            last: false,
        };
        let mut touched = Touched::default();
        touched.note(&event(EventKind::TaskStateChange, "t1"));
        touched.note(&event(EventKind::ContainerInstanceStateChange, "h9"));
        touched.note(&event(
            EventKind::ServiceAction,
            "arn:aws:ecs:us-east-1:1:service/prod/api",
        ));
        // t1 was on h1 (web); it is on h2 now (read again).
        let touched = touched.with_owners(&[record("t1", "web", "h2")], &snapshot());
        assert_eq!(
            touched,
            Touched {
                tasks: ["t1".to_owned()].into(),
                instances: ["h1".to_owned(), "h2".to_owned(), "h9".to_owned()].into(),
                services: ["api".to_owned(), "web".to_owned()].into(),
            }
        );
    }
}
