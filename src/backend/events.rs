//! ECS events as EventBridge delivers them (to SQS, or from the simulator):
//! parsing the envelope, and dropping duplicates (by event id) and stale
//! events (by `detail.version`, which ECS raises on every change of a task
//! or container instance). Events only say *when* to look; the controller
//! always reconciles from a fresh snapshot, so a lost event costs a delay
//! until the next resync, never a wrong action.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;

use serde_json::Value;

/// One message of an event source, as a queue delivers it.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    /// What deletes it (SQS's receipt handle).
    pub receipt: String,
    /// The EventBridge event, as JSON text.
    pub body: String,
}

/// Where the controller's ECS events come from: the SQS queue EventBridge
/// writes to ([`crate::aws::SqsEvents`]), or the simulator's
/// ([`crate::sim::SimEvents`]). The run loop only receives and deletes:
/// what an event means is [`parse`]'s and [`Dedupe`]'s.
pub trait EventSource {
    type Error: std::fmt::Display;
    /// Up to [`crate::backend::limits::SQS_BATCH`] messages, waiting at most
    /// `wait` for the first (zero: what is there now).
    fn receive(
        &self,
        wait: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<Message>, Self::Error>>;
    /// Deletes handled messages; those not deleted come back later and are
    /// dropped then as duplicates.
    fn delete(&self, messages: &[Message]) -> impl Future<Output = Result<(), Self::Error>>;
}

/// The ECS event types the controller listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    ContainerInstanceStateChange,
    TaskStateChange,
    ServiceAction,
    DeploymentStateChange,
}

impl EventKind {
    fn from_detail_type(detail_type: &str) -> Option<EventKind> {
        match detail_type {
            "ECS Container Instance State Change" => Some(EventKind::ContainerInstanceStateChange),
            "ECS Task State Change" => Some(EventKind::TaskStateChange),
            "ECS Service Action" => Some(EventKind::ServiceAction),
            "ECS Deployment State Change" => Some(EventKind::DeploymentStateChange),
            _ => None,
        }
    }
}

/// What the controller needs from one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsEvent {
    /// EventBridge's event id.
    pub id: String,
    pub kind: EventKind,
    /// The cluster's name.
    pub cluster: String,
    /// The ARN the event is about (task, container instance or service).
    pub resource: String,
    /// `detail.version`, where the event type has one.
    pub version: Option<u64>,
    /// When the event happened (the envelope's `time`), if it says so.
    pub time: Option<std::time::SystemTime>,
    /// The resource's last event: a task STOPPED, a container instance
    /// deregistered (INACTIVE). No later version can follow.
    pub last: bool,
}

/// Why a message is not an event the controller can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not from aws.ecs (source `{0}`)")]
    NotEcs(String),
    #[error("an ECS event type stevedore does not use: `{0}`")]
    UnknownType(String),
    #[error("missing `{0}`")]
    Missing(&'static str),
}

/// The cluster's name in a cluster ARN, or in a service ARN of the form
/// `service/CLUSTER/NAME`.
fn cluster_name(arn: &str) -> Option<String> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let mut parts = resource.split('/');
    match (parts.next()?, parts.next(), parts.next()) {
        ("cluster", Some(name), None) => Some(name.to_owned()),
        ("service", Some(cluster), Some(_)) => Some(cluster.to_owned()),
        _ => None,
    }
}

/// Parses one message body.
pub fn parse(body: &str) -> Result<EcsEvent, Malformed> {
    let v: Value = serde_json::from_str(body).map_err(|e| Malformed::NotJson(e.to_string()))?;
    let source = v["source"].as_str().ok_or(Malformed::Missing("source"))?;
    if source != "aws.ecs" {
        return Err(Malformed::NotEcs(source.to_owned()));
    }
    let detail_type = v["detail-type"]
        .as_str()
        .ok_or(Malformed::Missing("detail-type"))?;
    let kind = EventKind::from_detail_type(detail_type)
        .ok_or_else(|| Malformed::UnknownType(detail_type.to_owned()))?;
    let id = v["id"].as_str().ok_or(Malformed::Missing("id"))?.to_owned();
    let detail = v
        .get("detail")
        .filter(|d| d.is_object())
        .ok_or(Malformed::Missing("detail"))?;
    let first_resource = v["resources"]
        .as_array()
        .and_then(|r| r.first())
        .and_then(Value::as_str);
    let resource = match kind {
        EventKind::TaskStateChange => detail["taskArn"]
            .as_str()
            .ok_or(Malformed::Missing("detail.taskArn"))?,
        EventKind::ContainerInstanceStateChange => detail["containerInstanceArn"]
            .as_str()
            .ok_or(Malformed::Missing("detail.containerInstanceArn"))?,
        EventKind::ServiceAction | EventKind::DeploymentStateChange => {
            first_resource.ok_or(Malformed::Missing("resources"))?
        }
    }
    .to_owned();
    let cluster = detail["clusterArn"]
        .as_str()
        .and_then(cluster_name)
        .or_else(|| cluster_name(&resource))
        .ok_or(Malformed::Missing("detail.clusterArn"))?;
    let last = match kind {
        EventKind::TaskStateChange => detail["lastStatus"] == "STOPPED",
        EventKind::ContainerInstanceStateChange => detail["status"] == "INACTIVE",
        EventKind::ServiceAction | EventKind::DeploymentStateChange => false,
    };
    Ok(EcsEvent {
        id,
        kind,
        cluster,
        resource,
        last,
        version: detail["version"].as_u64(),
        time: v["time"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok()),
    })
}

/// What to do with a parsed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// News: it may change the plan.
    New,
    /// Seen before (EventBridge and SQS deliver at least once).
    Duplicate,
    /// Older than what was seen for the same resource (delivered out of order).
    Stale,
}

/// Remembers recent event ids and the highest version per resource, in
/// bounded memory, so a controller that runs for weeks over a cluster that
/// replaces thousands of tasks a day does not grow:
///
/// - ids: the last `REMEMBERED_IDS` (at-least-once delivery repeats
///   within minutes);
/// - versions: a resource is forgotten with its last event (a task
///   STOPPED, an instance deregistered), and the map is bounded besides
///   by two generations of at most [`REMEMBERED_VERSIONS`] resources each
///   (a resource not heard of for a whole generation is forgotten).
///
/// Forgetting is safe: a stale event of a forgotten resource is admitted
/// as news, which costs one needless re-read of what it names, never a
/// wrong action (events are hints; the plan comes from what is read).
#[derive(Debug, Default)]
pub struct Dedupe {
    ids: HashSet<String>,
    order: VecDeque<String>,
    /// Versions heard of in this generation...
    versions: HashMap<String, u64>,
    /// ...and in the one before (looked up, moved forward when heard of).
    older: HashMap<String, u64>,
}

/// How many event ids to remember; at least once delivery repeats within minutes.
const REMEMBERED_IDS: usize = 10_000;
/// How many resources' versions one generation holds.
pub const REMEMBERED_VERSIONS: usize = 50_000;

impl Dedupe {
    pub fn admit(&mut self, event: &EcsEvent) -> Admission {
        if self.ids.contains(&event.id) {
            return Admission::Duplicate;
        }
        self.ids.insert(event.id.clone());
        self.order.push_back(event.id.clone());
        if self.order.len() > REMEMBERED_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        let Some(version) = event.version else {
            return Admission::New;
        };
        let seen = self
            .versions
            .remove(&event.resource)
            .or_else(|| self.older.remove(&event.resource));
        if let Some(seen) = seen
            && version <= seen
        {
            if !event.last {
                self.remember(&event.resource, seen);
            }
            return Admission::Stale;
        }
        if !event.last {
            self.remember(&event.resource, version);
        }
        Admission::New
    }

    fn remember(&mut self, resource: &str, version: u64) {
        if self.versions.len() >= REMEMBERED_VERSIONS {
            self.older = std::mem::take(&mut self.versions);
        }
        self.versions.insert(resource.to_owned(), version);
    }

    /// How many resources' versions are remembered.
    pub fn resources(&self) -> usize {
        self.versions.len() + self.older.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn task_event(id: &str, version: u64) -> String {
        serde_json::json!({
            "version": "0", "id": id, "detail-type": "ECS Task State Change", "source": "aws.ecs",
            "account": "123456789012", "time": "2026-11-23T10:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:ecs:us-east-1:123456789012:task/prod/abc"],
            "detail": {
                "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
                "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/prod/abc",
                "group": "service:web", "lastStatus": "RUNNING", "desiredStatus": "RUNNING",
                "version": version
            }
        })
        .to_string()
    }

    #[test]
    fn parses_the_four_event_types() {
        let task = parse(&task_event("e1", 3)).unwrap();
        assert_eq!(
            (task.kind, task.cluster.as_str(), task.version),
            (EventKind::TaskStateChange, "prod", Some(3))
        );
        assert_eq!(
            task.time,
            humantime::parse_rfc3339("2026-11-23T10:00:00Z").ok()
        );

        let instance = serde_json::json!({
            "id": "e2", "detail-type": "ECS Container Instance State Change", "source": "aws.ecs", "resources": [],
            "detail": {"clusterArn": "arn:aws:ecs:us-east-1:1:cluster/prod", "containerInstanceArn": "arn:aws:ecs:us-east-1:1:container-instance/prod/x", "status": "DRAINING", "version": 7}
        });
        let instance = parse(&instance.to_string()).unwrap();
        assert_eq!(
            (instance.kind, instance.resource.as_str(), instance.version),
            (
                EventKind::ContainerInstanceStateChange,
                "arn:aws:ecs:us-east-1:1:container-instance/prod/x",
                Some(7)
            )
        );

        let action = serde_json::json!({
            "id": "e3", "detail-type": "ECS Service Action", "source": "aws.ecs",
            "resources": ["arn:aws:ecs:us-east-1:1:service/prod/web"],
            "detail": {"clusterArn": "arn:aws:ecs:us-east-1:1:cluster/prod", "eventName": "SERVICE_STEADY_STATE"}
        });
        assert_eq!(
            parse(&action.to_string()).unwrap().kind,
            EventKind::ServiceAction
        );

        // No clusterArn: the cluster comes from the service ARN.
        let deployment = serde_json::json!({
            "id": "e4", "detail-type": "ECS Deployment State Change", "source": "aws.ecs",
            "resources": ["arn:aws:ecs:us-east-1:1:service/prod/web"], "detail": {"eventName": "SERVICE_DEPLOYMENT_COMPLETED"}
        });
        let deployment = parse(&deployment.to_string()).unwrap();
        assert_eq!(
            (deployment.cluster.as_str(), deployment.version),
            ("prod", None)
        );
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        assert!(matches!(parse("{not json"), Err(Malformed::NotJson(_))));
        assert_eq!(
            parse(r#"{"source": "aws.ec2"}"#),
            Err(Malformed::NotEcs("aws.ec2".into()))
        );
        assert_eq!(
            parse(r#"{"source": "aws.ecs", "detail-type": "ECS Something"}"#),
            Err(Malformed::UnknownType("ECS Something".into()))
        );
        assert_eq!(
            parse(r#"{"source": "aws.ecs", "detail-type": "ECS Task State Change", "id": "x"}"#),
            Err(Malformed::Missing("detail"))
        );
        assert_eq!(
            parse(
                r#"{"source": "aws.ecs", "detail-type": "ECS Task State Change", "id": "x", "detail": {}}"#
            ),
            Err(Malformed::Missing("detail.taskArn"))
        );
    }

    /// A task event for task `task` with event id `id`.
    fn event_of(task: &str, id: &str, version: u64, status: &str) -> EcsEvent {
        let arn = format!("arn:aws:ecs:us-east-1:123456789012:task/prod/{task}");
        parse(
            &serde_json::json!({
                "id": id, "detail-type": "ECS Task State Change", "source": "aws.ecs",
                "resources": [arn],
                "detail": {
                    "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
                    "taskArn": arn, "lastStatus": status, "version": version
                }
            })
            .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn versions_are_compared_per_resource() {
        let mut d = Dedupe::default();
        assert_eq!(d.admit(&event_of("a", "1", 5, "RUNNING")), Admission::New);
        // A lower version of another task is news: not one global maximum.
        assert_eq!(d.admit(&event_of("b", "2", 2, "RUNNING")), Admission::New);
        assert_eq!(
            d.admit(&event_of("a", "3", 5, "RUNNING")),
            Admission::Stale,
            "equal is not newer"
        );
        assert_eq!(d.admit(&event_of("a", "4", 4, "RUNNING")), Admission::Stale);
        assert_eq!(d.admit(&event_of("a", "5", 6, "RUNNING")), Admission::New);
        assert_eq!(d.admit(&event_of("b", "6", 2, "RUNNING")), Admission::Stale);
        assert_eq!(d.admit(&event_of("b", "7", 3, "RUNNING")), Admission::New);
        assert_eq!(d.resources(), 2);
        // A STOPPED task is forgotten with its last event.
        assert_eq!(d.admit(&event_of("a", "8", 7, "STOPPED")), Admission::New);
        assert_eq!(d.resources(), 1);
    }

    #[test]
    fn memory_stays_flat_over_100000_tasks_that_ran_and_stopped() {
        let mut d = Dedupe::default();
        for n in 0..100_000 {
            let task = format!("t{n}");
            assert_eq!(
                d.admit(&event_of(&task, &format!("{n}-1"), 1, "PENDING")),
                Admission::New
            );
            assert_eq!(
                d.admit(&event_of(&task, &format!("{n}-2"), 2, "RUNNING")),
                Admission::New
            );
            assert_eq!(
                d.admit(&event_of(&task, &format!("{n}-3"), 3, "STOPPED")),
                Admission::New
            );
        }
        assert_eq!(d.resources(), 0, "a stopped task's version is forgotten");
        assert!(d.ids.len() <= REMEMBERED_IDS && d.order.len() <= REMEMBERED_IDS);

        // After the prune: a stale event of a stopped task, delivered late,
        // is news again, which costs one re-read and nothing more; its
        // version is remembered, and the one after it is stale again.
        assert_eq!(
            d.admit(&event_of("t7", "late-1", 2, "RUNNING")),
            Admission::New
        );
        assert_eq!(
            d.admit(&event_of("t7", "late-2", 1, "PENDING")),
            Admission::Stale
        );
        // A late duplicate of the last event is still dropped by its id while remembered.
        assert_eq!(
            d.admit(&event_of("t99999", "99999-3", 3, "STOPPED")),
            Admission::Duplicate
        );
    }

    #[test]
    fn exactly_the_last_10000_ids_are_remembered() {
        let mut d = Dedupe::default();
        let event = |n: usize| EcsEvent {
            id: format!("id-{n}"),
            kind: EventKind::ServiceAction,
            cluster: "prod".into(),
            resource: "arn:aws:ecs:us-east-1:1:service/prod/web".into(),
            version: None,
            time: None,
            last: false,
        };
        for n in 0..REMEMBERED_IDS + 5 {
            assert_eq!(d.admit(&event(n)), Admission::New);
        }
        assert_eq!(d.ids.len(), REMEMBERED_IDS);
        // The oldest of the last 10,000 is still known; the one before is not.
        assert_eq!(d.admit(&event(5)), Admission::Duplicate);
        assert_eq!(d.admit(&event(4)), Admission::New);
    }

    #[test]
    fn resources_never_stopped_are_bounded_by_two_generations() {
        let mut d = Dedupe::default();
        let total = 3 * REMEMBERED_VERSIONS + 7;
        for n in 0..total {
            d.admit(&event_of(&format!("t{n}"), &format!("e{n}"), 1, "RUNNING"));
            assert!(d.resources() <= 2 * REMEMBERED_VERSIONS);
        }
        // The latest generation is still known.
        let recent = total - 1;
        assert_eq!(
            d.admit(&event_of(&format!("t{recent}"), "again", 1, "RUNNING")),
            Admission::Stale
        );
        // One heard of in the older generation moves forward and stays known.
        let older = total - REMEMBERED_VERSIONS - 1;
        assert_eq!(
            d.admit(&event_of(&format!("t{older}"), "again-older", 1, "RUNNING")),
            Admission::Stale
        );
    }

    #[test]
    fn duplicates_and_stale_versions_are_dropped() {
        let mut d = Dedupe::default();
        let v2 = parse(&task_event("a", 2)).unwrap();
        let v3 = parse(&task_event("b", 3)).unwrap();
        let v1 = parse(&task_event("c", 1)).unwrap();
        assert_eq!(d.admit(&v2), Admission::New);
        assert_eq!(d.admit(&v2), Admission::Duplicate);
        assert_eq!(d.admit(&v3), Admission::New);
        assert_eq!(
            d.admit(&v1),
            Admission::Stale,
            "an older version, delivered late"
        );
    }

    /// One generated envelope: each field present and right, absent, or
    /// of the wrong JSON type, so most cases are JSON objects near a real
    /// event and every rule of the parser is reached.
    #[derive(Debug, Clone)]
    struct Envelope {
        source: Field<&'static str>,
        kind: Field<&'static str>,
        id: Field<String>,
        detail: bool,
        cluster_in_detail: bool,
        /// Whether the resource the kind needs is there.
        resource: bool,
        version: Option<u64>,
        status: &'static str,
        noise: Vec<(String, i64)>,
    }

    #[derive(Debug, Clone)]
    enum Field<T> {
        Right(T),
        Absent,
        Number,
    }

    fn field<T: std::fmt::Debug + Clone + 'static>(
        right: impl Strategy<Value = T> + 'static,
    ) -> impl Strategy<Value = Field<T>> {
        prop_oneof![
            6 => right.prop_map(Field::Right),
            1 => Just(Field::Absent),
            1 => Just(Field::Number),
        ]
    }

    const TYPES: [&str; 5] = [
        "ECS Task State Change",
        "ECS Container Instance State Change",
        "ECS Service Action",
        "ECS Deployment State Change",
        "ECS Something Else",
    ];

    fn envelope() -> impl Strategy<Value = Envelope> {
        (
            field(prop_oneof![4 => Just("aws.ecs"), 1 => Just("aws.ec2")]),
            field(prop::sample::select(&TYPES[..])),
            field("[a-z0-9-]{1,12}"),
            prop::bool::weighted(0.9),
            any::<bool>(),
            prop::bool::weighted(0.9),
            prop::option::of(any::<u64>()),
            prop::sample::select(&["RUNNING", "STOPPED", "ACTIVE", "INACTIVE"][..]),
            prop::collection::vec(("[a-z]{1,6}", any::<i64>()), 0..3),
        )
            .prop_map(
                |(
                    source,
                    kind,
                    id,
                    detail,
                    cluster_in_detail,
                    resource,
                    version,
                    status,
                    noise,
                )| {
                    Envelope {
                        source,
                        kind,
                        id,
                        detail,
                        cluster_in_detail,
                        resource,
                        version,
                        status,
                        noise,
                    }
                },
            )
    }

    const CLUSTER: &str = "arn:aws:ecs:eu-west-1:123456789012:cluster/blue";
    const TASK: &str = "arn:aws:ecs:eu-west-1:123456789012:task/blue/0a1b";
    const INSTANCE: &str = "arn:aws:ecs:eu-west-1:123456789012:container-instance/blue/9z";
    const SERVICE: &str = "arn:aws:ecs:eu-west-1:123456789012:service/blue/web";

    impl Envelope {
        fn json(&self) -> String {
            fn put<T: serde::Serialize>(
                m: &mut serde_json::Map<String, Value>,
                k: &str,
                f: &Field<T>,
            ) {
                match f {
                    Field::Right(v) => {
                        m.insert(k.into(), serde_json::to_value(v).unwrap());
                    }
                    Field::Absent => {}
                    Field::Number => {
                        m.insert(k.into(), 7.into());
                    }
                }
            }
            let mut m = serde_json::Map::new();
            for (k, v) in &self.noise {
                m.insert(format!("x-{k}"), (*v).into());
            }
            put(&mut m, "source", &self.source);
            put(&mut m, "detail-type", &self.kind);
            put(&mut m, "id", &self.id);
            let kind = match &self.kind {
                Field::Right(k) => *k,
                _ => "",
            };
            let mut detail = serde_json::Map::new();
            if self.cluster_in_detail {
                detail.insert("clusterArn".into(), CLUSTER.into());
            }
            if let Some(v) = self.version {
                detail.insert("version".into(), v.into());
            }
            detail.insert("lastStatus".into(), self.status.into());
            detail.insert("status".into(), self.status.into());
            let mut resources = vec![];
            if self.resource {
                match kind {
                    "ECS Task State Change" => {
                        detail.insert("taskArn".into(), TASK.into());
                    }
                    "ECS Container Instance State Change" => {
                        detail.insert("containerInstanceArn".into(), INSTANCE.into());
                    }
                    _ => resources.push(Value::from(SERVICE)),
                }
            }
            m.insert("resources".into(), resources.into());
            if self.detail {
                m.insert("detail".into(), detail.into());
            }
            Value::Object(m).to_string()
        }

        /// What the parser must answer, from the choices alone.
        fn expected(&self) -> Result<EcsEvent, Malformed> {
            let source = match &self.source {
                Field::Right(s) => *s,
                _ => return Err(Malformed::Missing("source")),
            };
            if source != "aws.ecs" {
                return Err(Malformed::NotEcs(source.into()));
            }
            let kind = match &self.kind {
                Field::Right(k) => *k,
                _ => return Err(Malformed::Missing("detail-type")),
            };
            let (kind, resource, last) = match kind {
                "ECS Task State Change" => {
                    (EventKind::TaskStateChange, TASK, self.status == "STOPPED")
                }
                "ECS Container Instance State Change" => (
                    EventKind::ContainerInstanceStateChange,
                    INSTANCE,
                    self.status == "INACTIVE",
                ),
                "ECS Service Action" => (EventKind::ServiceAction, SERVICE, false),
                "ECS Deployment State Change" => (EventKind::DeploymentStateChange, SERVICE, false),
                other => return Err(Malformed::UnknownType(other.into())),
            };
            let Field::Right(id) = &self.id else {
                return Err(Malformed::Missing("id"));
            };
            if !self.detail {
                return Err(Malformed::Missing("detail"));
            }
            if !self.resource {
                return Err(Malformed::Missing(match kind {
                    EventKind::TaskStateChange => "detail.taskArn",
                    EventKind::ContainerInstanceStateChange => "detail.containerInstanceArn",
                    _ => "resources",
                }));
            }
            // Task and instance ARNs do not name the cluster; a service ARN does.
            if !self.cluster_in_detail && resource != SERVICE {
                return Err(Malformed::Missing("detail.clusterArn"));
            }
            Ok(EcsEvent {
                id: id.clone(),
                kind,
                cluster: "blue".into(),
                resource: resource.into(),
                version: self.version,
                time: None,
                last,
            })
        }
    }

    proptest! {
        #[test]
        fn no_body_makes_the_parser_panic(body in ".{0,300}") {
            let _ = parse(&body);
        }

        /// Envelopes near real events: the parser answers exactly what the
        /// generator's choices call for, event or reason.
        #[test]
        fn envelopes_parse_to_what_they_say(e in envelope()) {
            prop_assert_eq!(parse(&e.json()), e.expected());
        }

        /// A well-formed event cut anywhere is not JSON, and says so.
        #[test]
        fn a_cut_message_is_not_json(cut in 1usize..400) {
            let body = task_event("e1", 3);
            let cut = cut.min(body.len() - 1);
            prop_assert!(matches!(parse(&body[..cut]), Err(Malformed::NotJson(_))));
        }
    }
}
