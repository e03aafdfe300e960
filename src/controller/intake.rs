//! Event intake: one receive is always in flight on the event queue, while
//! a pass runs as while the loop waits, so the queue is drained at the rate
//! ECS fills it however long a pass takes (at 5,000 services a full read
//! takes minutes; a deployment makes thousands of events a minute).
//!
//! A batch is deleted as soon as it is received, ten to a call: what it
//! says is kept in memory until the next pass, and a controller that
//! restarts reads every cluster in full, so a deleted event is never needed
//! again. Deleting at once also keeps a message received early in a long
//! pass from coming back after the queue's visibility timeout (30 s by
//! default) as a duplicate.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::backend::events::{Admission, Dedupe, EventSource, Message};
use crate::model::Millis;

use super::{ClusterView, Schedule};

/// The longest a receive waits for its first message: SQS's maximum long
/// poll. The receive answers as soon as a message comes, so this sets only
/// how often an idle queue is asked (three calls a minute).
pub const LONG_POLL: Duration = Duration::from_secs(20);

/// How long the next receive waits after one failed.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

type Receive<'a, E> =
    Pin<Box<dyn Future<Output = Result<Vec<Message>, <E as EventSource>::Error>> + 'a>>;

/// The receive in flight on one event source.
pub struct Intake<'a, E: EventSource> {
    queue: &'a E,
    in_flight: Option<Receive<'a, E>>,
    /// The last receive failed: the next one waits [`RETRY_AFTER`] first.
    failed: bool,
}

impl<'a, E: EventSource> Intake<'a, E> {
    pub fn new(queue: &'a E) -> Self {
        Intake {
            queue,
            in_flight: None,
            failed: false,
        }
    }

    /// The next batch of messages (already deleted from the queue), from
    /// the receive in flight or a new one. Cancel-safe: dropped before it
    /// answers, the receive stays in flight for the next call, so a batch
    /// SQS has handed over is never dropped with it.
    pub async fn next(&mut self) -> Result<Vec<Message>, E::Error> {
        let queue = self.queue;
        let pause = std::mem::take(&mut self.failed).then_some(RETRY_AFTER);
        let receive = self
            .in_flight
            .get_or_insert_with(|| Box::pin(receive_and_delete(queue, pause)));
        let received = receive.as_mut().await;
        self.in_flight = None;
        self.failed = received.is_err();
        received
    }
}

/// The next batch from `inbox`, with a failed receive logged (the next
/// one waits [`RETRY_AFTER`]) and answered as an empty batch; never
/// without an event source. Cancel-safe, as [`Intake::next`].
pub async fn next_batch<E: EventSource>(inbox: &mut Option<Intake<'_, E>>) -> Vec<Message> {
    let Some(inbox) = inbox.as_mut() else {
        return std::future::pending().await;
    };
    inbox.next().await.unwrap_or_else(|e| {
        tracing::warn!("events: {e}; retrying in {}s", RETRY_AFTER.as_secs());
        vec![]
    })
}

async fn receive_and_delete<E: EventSource>(
    queue: &E,
    pause: Option<Duration>,
) -> Result<Vec<Message>, E::Error> {
    if let Some(pause) = pause {
        tokio::time::sleep(pause).await;
    }
    let messages = queue.receive(LONG_POLL).await?;
    if !messages.is_empty()
        && let Err(e) = queue.delete(&messages).await
    {
        // Not lost: they come back after the visibility timeout and are
        // dropped then as duplicates.
        tracing::warn!("events: {e}");
    }
    Ok(messages)
}

/// What received messages change: each new event marks what it names to
/// be read again and starts (or extends) the debounce.
pub struct Admit<'a> {
    pub managed: &'a [String],
    pub dedupe: &'a mut Dedupe,
    pub views: &'a mut BTreeMap<String, ClusterView>,
    pub schedule: &'a mut Schedule,
    pub observer: &'a crate::status::Observer,
    pub tally: &'a mut Tally,
}

impl Admit<'_> {
    /// Takes in `messages` received by `now`.
    pub fn messages(&mut self, messages: &[Message], now: Millis) {
        for message in messages {
            match crate::backend::events::parse(&message.body) {
                Err(why) => {
                    self.observer.event("malformed");
                    self.tally.malformed += 1;
                    tracing::warn!("events: malformed message {}: {why}; deleted", message.id);
                }
                Ok(event) if !self.managed.contains(&event.cluster) => {}
                Ok(event) => match self.dedupe.admit(&event) {
                    Admission::New => {
                        self.observer.event("new");
                        if let Some(happened) = event.time {
                            self.observer.event_lag(happened);
                        }
                        tracing::debug!(
                            "events: {:?} {} (cluster {})",
                            event.kind,
                            event.resource,
                            event.cluster
                        );
                        *self
                            .tally
                            .new
                            .entry(format!("{:?}", event.kind))
                            .or_default() += 1;
                        self.views
                            .entry(event.cluster.clone())
                            .or_default()
                            .note(&event);
                        self.schedule.event(now);
                    }
                    Admission::Duplicate => {
                        self.observer.event("duplicate");
                        self.tally.duplicate += 1;
                    }
                    Admission::Stale => {
                        self.observer.event("stale");
                        self.tally.stale += 1;
                    }
                },
            }
        }
    }
}

/// The events taken in since the last pass, for one line when the next
/// pass starts (each event is logged at DEBUG only: a deployment on a
/// large cluster makes thousands a minute).
#[derive(Debug, Default)]
pub struct Tally {
    new: BTreeMap<String, u32>,
    duplicate: u32,
    stale: u32,
    malformed: u32,
}

impl Tally {
    pub fn is_empty(&self) -> bool {
        self.new.is_empty() && self.duplicate + self.stale + self.malformed == 0
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let new: u32 = self.new.values().sum();
        let kinds: Vec<String> = self.new.iter().map(|(k, n)| format!("{k} {n}")).collect();
        write!(f, "{new} new")?;
        if !kinds.is_empty() {
            write!(f, " ({})", kinds.join(", "))?;
        }
        for (n, what) in [
            (self.duplicate, "duplicate"),
            (self.stale, "stale"),
            (self.malformed, "malformed"),
        ] {
            if n > 0 {
                write!(f, ", {n} {what}")?;
            }
        }
        Ok(())
    }
}
