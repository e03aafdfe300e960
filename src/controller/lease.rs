//! Leader election: several replicas may run, one acts. The leader holds a
//! lease, an item in a DynamoDB table written with conditional writes:
//!
//! - acquire: only when no one holds it or the holder's lease has expired
//!   (by the acquirer's clock); each acquisition raises the fencing token;
//! - renew: only while this replica still holds it, with the same token;
//! - a holder counts itself leader only until `duration - margin` after
//!   it *sent* its last successful write, while others may take over only
//!   after `duration` from that moment by their clocks: with clocks that
//!   disagree by less than `margin`, a replica that loses the lease (a
//!   stall, a partition) stops acting before another can start.
//!
//! The table has one string partition key, `name`. Times are milliseconds
//! since the Unix epoch, passed in (the controller passes the wall clock,
//! the tests their own).

use aws_sdk_dynamodb::types::AttributeValue;

/// Why the lease could not be read or written (losing a race is not an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lease {table}/{name}: {message}")]
pub struct Error {
    pub table: String,
    pub name: String,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// This replica's view of the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// This replica leads until `until` (its own clock), with this token.
    Leader { token: u64, until: u64 },
    /// Another replica holds it (as far as the last write attempt knows).
    Follower,
}

impl Standing {
    /// Whether this standing lets the replica act at `now`.
    pub fn leads(&self, now: u64) -> bool {
        matches!(self, Standing::Leader { until, .. } if now < *until)
    }
}

/// One replica's handle on the lease.
#[derive(Debug, Clone)]
pub struct Lease {
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    name: String,
    /// Who this replica is (host and process, or any unique string).
    pub holder: String,
    /// How long a write holds the lease, in ms.
    pub duration: u64,
    /// Clock disagreement tolerated, in ms.
    pub margin: u64,
    standing: Standing,
}

impl Lease {
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        table: &str,
        name: &str,
        holder: &str,
        duration: std::time::Duration,
    ) -> Lease {
        let duration = duration.as_millis() as u64;
        Lease {
            dynamodb,
            table: table.to_owned(),
            name: name.to_owned(),
            holder: holder.to_owned(),
            duration,
            margin: duration / 3,
            standing: Standing::Follower,
        }
    }

    fn error(&self, message: String) -> Error {
        Error {
            table: self.table.clone(),
            name: self.name.clone(),
            message,
        }
    }

    /// Whether this replica may act at `now`.
    pub fn leads(&self, now: u64) -> bool {
        self.standing.leads(now)
    }

    /// The fencing token of the current term, while leading.
    pub fn token(&self, now: u64) -> Option<u64> {
        match self.standing {
            Standing::Leader { token, until } if now < until => Some(token),
            _ => None,
        }
    }

    /// How often to call [`Lease::tick`]: a third of the margin, so a
    /// renewal has two more chances before the leader's own deadline.
    pub fn tick_every(&self) -> std::time::Duration {
        std::time::Duration::from_millis((self.margin / 3).max(100))
    }

    /// Renews the lease if this replica holds it, else tries to acquire it.
    /// `now` is the time the write is sent. A lost race is not an error; a
    /// failed call is, and leaves the standing as it was (it lapses by
    /// itself at its deadline).
    pub async fn tick(&mut self, now: u64) -> Result<&Standing> {
        let expires = now + self.duration;
        let until = now + self.duration - self.margin;
        let key = AttributeValue::S(self.name.clone());
        let me = AttributeValue::S(self.holder.clone());
        let attempt = match self.standing {
            Standing::Leader { token, until: held } if now < held => self
                .dynamodb
                .update_item()
                .table_name(&self.table)
                .key("name", key)
                .update_expression("SET expires_at = :exp")
                .condition_expression("holder = :me AND #t = :token")
                .expression_attribute_names("#t", "token")
                .expression_attribute_values(":exp", AttributeValue::N(expires.to_string()))
                .expression_attribute_values(":me", me)
                .expression_attribute_values(":token", AttributeValue::N(token.to_string()))
                .send()
                .await
                .map(|_| Some(token)),
            _ => self
                .dynamodb
                .update_item()
                .table_name(&self.table)
                .key("name", key)
                .update_expression("SET holder = :me, expires_at = :exp ADD #t :one")
                .condition_expression("attribute_not_exists(holder) OR expires_at < :now")
                .expression_attribute_names("#t", "token")
                .expression_attribute_values(":exp", AttributeValue::N(expires.to_string()))
                .expression_attribute_values(":me", me)
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
                .send()
                .await
                .map(|out| {
                    out.attributes()
                        .and_then(|a| a.get("token"))
                        .and_then(|t| t.as_n().ok())
                        .and_then(|t| t.parse().ok())
                }),
        };
        match attempt {
            Ok(Some(token)) => {
                self.standing = Standing::Leader { token, until };
            }
            Ok(None) => return Err(self.error("the lease item has no token".into())),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                self.standing = Standing::Follower;
            }
            Err(e) => {
                return Err(
                    self.error(aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())
                );
            }
        }
        Ok(&self.standing)
    }
}

/// A backend whose writes go through only while this replica holds the
/// lease, checked at the moment of each write: fencing at the edge, so a
/// pass that began as leader and outlived the lease acts on nothing more.
#[derive(Debug)]
pub struct Fenced<'a, B> {
    inner: &'a B,
    standing: tokio::sync::watch::Receiver<Standing>,
}

impl<'a, B: crate::backend::Backend> Fenced<'a, B> {
    pub fn new(inner: &'a B, standing: tokio::sync::watch::Receiver<Standing>) -> Fenced<'a, B> {
        Fenced { inner, standing }
    }

    /// Whether this replica leads now.
    pub fn leads(&self) -> bool {
        let now = crate::model::wall_clock();
        self.standing.borrow().leads(now)
    }

    fn check(&self, operation: &'static str) -> crate::backend::Result<()> {
        if self.leads() {
            Ok(())
        } else {
            Err(crate::backend::Error::NotLeader { operation })
        }
    }
}

impl<B: crate::backend::Backend> crate::backend::Backend for Fenced<'_, B> {
    async fn snapshot(
        &self,
        cluster: &str,
    ) -> crate::backend::Result<crate::model::ClusterSnapshot> {
        self.inner.snapshot(cluster).await
    }

    async fn refresh(
        &self,
        cluster: &str,
        snapshot: &mut crate::model::ClusterSnapshot,
        touched: &crate::backend::refresh::Touched,
    ) -> crate::backend::Result<()> {
        self.inner.refresh(cluster, snapshot, touched).await
    }

    async fn protected_tasks(
        &self,
        cluster: &str,
        tasks: &[String],
    ) -> crate::backend::Result<std::collections::BTreeSet<String>> {
        self.inner.protected_tasks(cluster, tasks).await
    }

    async fn update_task_protection(
        &self,
        cluster: &str,
        tasks: &[String],
        minutes: Option<u32>,
    ) -> crate::backend::Result<()> {
        self.check("UpdateTaskProtection")?;
        self.inner
            .update_task_protection(cluster, tasks, minutes)
            .await
    }

    async fn stop_task(
        &self,
        cluster: &str,
        task: &str,
        reason: &str,
    ) -> crate::backend::Result<()> {
        self.check("StopTask")?;
        self.inner.stop_task(cluster, task, reason).await
    }

    async fn set_desired_count(
        &self,
        cluster: &str,
        service: &str,
        desired: u32,
    ) -> crate::backend::Result<()> {
        self.check("UpdateService")?;
        self.inner
            .set_desired_count(cluster, service, desired)
            .await
    }

    async fn metric_data(
        &self,
        cluster: &str,
        queries: &[crate::backend::MetricQuery],
        now: u64,
    ) -> crate::backend::Result<Vec<Option<f64>>> {
        self.inner.metric_data(cluster, queries, now).await
    }

    fn locate(&self, clusters: &[crate::spec::Cluster]) {
        self.inner.locate(clusters);
    }

    async fn scalable_targets(
        &self,
        cluster: &str,
        services: &[String],
    ) -> crate::backend::Result<std::collections::BTreeSet<String>> {
        self.inner.scalable_targets(cluster, services).await
    }

    fn api_calls(&self) -> std::collections::BTreeMap<String, u64> {
        self.inner.api_calls()
    }

    fn api_throttles(&self) -> std::collections::BTreeMap<String, u64> {
        self.inner.api_throttles()
    }
}

/// Keeps the lease: ticks every [`Lease::tick_every`] until `stop`,
/// publishing this replica's standing, and telling `answered` whether each
/// write went through (won or lost; the status server's readiness). A
/// failed write is logged; the standing then lapses by itself at its
/// deadline.
pub async fn keep(
    mut lease: Lease,
    standing: tokio::sync::watch::Sender<Standing>,
    answered: impl Fn(bool),
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        match lease.tick(crate::model::wall_clock()).await {
            Ok(now) => {
                answered(true);
                let now = now.clone();
                standing.send_if_modified(|s| {
                    let changed = *s != now;
                    *s = now;
                    changed
                });
            }
            Err(e) => {
                answered(false);
                tracing::warn!("{e}");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(lease.tick_every()) => {}
            _ = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, Error};
    use crate::sim::SimBackend;
    use crate::sim::scenario::{GenerateSpec, generated};

    /// Every write is checked against the standing at the moment it is
    /// made: a pass that began as leader and outlived the lease writes no
    /// more, and what it asked for never reaches the backend behind.
    #[tokio::test]
    async fn each_write_is_checked_against_the_lease_when_it_is_made() {
        let g = GenerateSpec {
            hosts: 3,
            services: 1,
            tasks: 3,
            zones: 3,
            skewed_share: 0.0,
        };
        let sim = SimBackend::new(generated(g, 1, 0).sim);
        let snapshot = sim.snapshot("demo").await.unwrap();
        let (task, service) = (
            snapshot.tasks[0].id.clone(),
            snapshot.services[0].name.clone(),
        );
        let now = crate::model::wall_clock();
        let (send, standing) = tokio::sync::watch::channel(Standing::Leader {
            token: 1,
            until: now + 60_000,
        });
        let fenced = Fenced::new(&sim, standing);
        assert!(fenced.leads());
        fenced.set_desired_count("demo", &service, 4).await.unwrap();

        // The lease lapses mid-pass: the next writes are refused here.
        send.send_replace(Standing::Leader {
            token: 1,
            until: now.saturating_sub(1),
        });
        assert_eq!(
            fenced.stop_task("demo", &task, "test").await,
            Err(Error::NotLeader {
                operation: "StopTask"
            })
        );
        send.send_replace(Standing::Follower);
        assert_eq!(
            fenced.set_desired_count("demo", &service, 5).await,
            Err(Error::NotLeader {
                operation: "UpdateService"
            })
        );
        // Reads still go through, so a follower plans and reports.
        assert!(fenced.snapshot("demo").await.is_ok());
        let calls = sim.api_calls();
        assert_eq!(calls.get("UpdateService"), Some(&1));
        assert_eq!(calls.get("StopTask"), None);
    }
}
