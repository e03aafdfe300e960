//! The SQS queue EventBridge delivers a cluster's ECS events to, as the
//! controller's [`EventSource`]: received ten at a time, deleted ten to a
//! DeleteMessageBatch call.

use crate::backend::events::EventSource;
use crate::backend::limits;

pub use crate::backend::events::Message;

/// Why the event queue could not be read or emptied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("ReceiveMessage: {0}")]
    Receive(String),
    #[error("DeleteMessageBatch: {0}")]
    Delete(String),
    /// Some messages of a batch were not deleted; they come back after the
    /// queue's visibility timeout and are dropped then as duplicates.
    #[error("DeleteMessageBatch: {} not deleted ({})", .0.len(), .0.join("; "))]
    NotDeleted(Vec<String>),
}

/// The SQS queue EventBridge delivers the cluster's ECS events to.
#[derive(Debug, Clone)]
pub struct SqsEvents {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsEvents {
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: &str) -> SqsEvents {
        SqsEvents {
            sqs,
            queue_url: queue_url.to_owned(),
        }
    }
}

impl EventSource for SqsEvents {
    type Error = QueueError;

    /// Long-polls for up to [`limits::SQS_BATCH`] messages, waiting at most
    /// `wait` in whole seconds (SQS allows 20 s; 0 answers at once).
    async fn receive(&self, wait: std::time::Duration) -> Result<Vec<Message>, QueueError> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(limits::SQS_BATCH as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .send()
            .await
            .map_err(|e| QueueError::Receive(super::one_line(&e)))?;
        Ok(out
            .messages()
            .iter()
            .map(|m| Message {
                id: m.message_id().unwrap_or_default().to_owned(),
                receipt: m.receipt_handle().unwrap_or_default().to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    /// Deletes handled messages, ten to a DeleteMessageBatch call (SQS's
    /// limit). A message not deleted comes back after the queue's
    /// visibility timeout, and is dropped then as a duplicate.
    async fn delete(&self, messages: &[Message]) -> Result<(), QueueError> {
        use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
        let mut failed = vec![];
        for chunk in messages.chunks(limits::SQS_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(n, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(n.to_string())
                        .receipt_handle(&m.receipt)
                        .build()
                        .map_err(|e| QueueError::Delete(e.to_string()))
                })
                .collect::<Result<Vec<_>, QueueError>>()?;
            let out = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| QueueError::Delete(super::one_line(&e)))?;
            failed.extend(
                out.failed()
                    .iter()
                    .map(|f| format!("{}: {}", f.code(), f.message().unwrap_or_default())),
            );
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(QueueError::NotDeleted(failed))
        }
    }
}
