//! The audit trail: every action and every status change, published as an
//! EventBridge event (source `stevedore`), so users can route it to Slack, a
//! log archive or another bus with an ordinary rule. Publishing never holds
//! up a reconcile: a failure is reported and the events are dropped.

use serde_json::{Value, json};

use crate::status::Transition;
use crate::status::outcome::Reconciled;

/// The events' `source`.
pub const SOURCE: &str = "stevedore";
/// `detail-type` of an action carried out (or attempted).
pub const ACTION: &str = "stevedore Action";
/// `detail-type` of a change of a policy's state on a service.
pub const STATUS_CHANGE: &str = "stevedore Status Change";

/// Entries per PutEvents call.
const BATCH: usize = 10;

/// One audit event: its detail-type and detail.
pub type Entry = (&'static str, Value);

/// The audit events of one reconcile: its actions, then its status changes.
pub fn entries(cluster: &str, outcome: &Reconciled, changes: &[Transition]) -> Vec<Entry> {
    let mut out: Vec<Entry> = outcome
        .executed
        .iter()
        .map(|(action, result)| {
            (
                ACTION,
                json!({
                    "cluster": cluster,
                    "policy": action.policy,
                    "service": action.service,
                    "rule": action.rule,
                    "action": action.kind,
                    "reason": action.reason,
                    "result": match result {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => e.to_string(),
                    },
                }),
            )
        })
        .collect();
    out.extend(changes.iter().map(|c| {
        (
            STATUS_CHANGE,
            json!({
                "cluster": c.cluster,
                "policy": c.policy,
                "service": c.service,
                "from": c.from,
                "to": c.to,
                "reason": c.reason,
            }),
        )
    }));
    out
}

/// Publishes audit events to one event bus.
#[derive(Debug, Clone)]
pub struct Audit {
    events: aws_sdk_eventbridge::Client,
    bus: String,
}

/// Why events were not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("PutEvents: {0}")]
    Call(String),
    #[error("PutEvents: {failed} of {sent} entries failed")]
    Entries { failed: i32, sent: usize },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Audit {
    pub fn new(events: aws_sdk_eventbridge::Client, bus: &str) -> Audit {
        Audit {
            events,
            bus: bus.to_owned(),
        }
    }

    /// Sends the entries, 10 per call; the first failure is returned.
    pub async fn publish(&self, entries: &[Entry]) -> Result<()> {
        for chunk in entries.chunks(BATCH) {
            let batch: Vec<_> = chunk
                .iter()
                .map(|(detail_type, detail)| {
                    aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                        .source(SOURCE)
                        .detail_type(*detail_type)
                        .detail(detail.to_string())
                        .event_bus_name(&self.bus)
                        .build()
                })
                .collect();
            let out = self
                .events
                .put_events()
                .set_entries(Some(batch))
                .send()
                .await
                .map_err(|e| Error::Call(crate::aws::one_line(&e)))?;
            if out.failed_entry_count() > 0 {
                return Err(Error::Entries {
                    failed: out.failed_entry_count(),
                    sent: chunk.len(),
                });
            }
        }
        Ok(())
    }
}
