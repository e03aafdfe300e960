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
//!
//! Replicas may instead share the clusters ([`Shares`]): one lease per
//! cluster (`NAME/CLUSTER`) in the same table, and a heartbeat per replica
//! (`NAME#replica/HOLDER`) from which each replica counts the live ones, N.
//! With C clusters, a replica takes a free lease only while it holds fewer
//! than ceil(C/N), and gives one up when it holds more: first it stops
//! counting itself the holder (its writes are fenced at once), and at its
//! next tick it clears the lease for another replica to take. A stalled
//! replica's leases and heartbeat lapse after the lease duration, and the
//! others take its clusters over.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_dynamodb::types::AttributeValue;

/// The clock disagreement a lease of `duration` ms tolerates: a third.
fn margin_of(duration: u64) -> u64 {
    duration / 3
}

/// How often to write a lease with this margin: a third of it (at least
/// 100 ms), so a renewal has two more chances before the holder's deadline.
fn tick_period(margin: u64) -> std::time::Duration {
    std::time::Duration::from_millis((margin / 3).max(100))
}

/// Why the lease could not be read or written (losing a race is not an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lease {table}/{name}: {message}")]
pub struct Error {
    pub table: String,
    pub name: String,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// This replica's standing on every lease it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standings {
    /// One lease for every cluster (leader election).
    All(Standing),
    /// One lease per cluster (clusters shared by replicas); a cluster not
    /// in the map is not held.
    PerCluster(BTreeMap<String, Standing>),
}

impl Standings {
    /// Whether this replica may act on `cluster` at `now`.
    pub fn leads(&self, cluster: &str, now: u64) -> bool {
        match self {
            Standings::All(standing) => standing.leads(now),
            Standings::PerCluster(leases) => leases.get(cluster).is_some_and(|s| s.leads(now)),
        }
    }

    /// Whether the clusters are shared: a replica then reads only those it
    /// holds (a follower of one lease plans and reports every cluster).
    pub fn shared(&self) -> bool {
        matches!(self, Standings::PerCluster(_))
    }

    /// The clusters among `clusters` this replica may act on at `now`.
    pub fn held<'a>(&self, clusters: &'a [String], now: u64) -> BTreeSet<&'a str> {
        clusters
            .iter()
            .filter(|c| self.leads(c, now))
            .map(String::as_str)
            .collect()
    }
}

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
            margin: margin_of(duration),
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
        tick_period(self.margin)
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
                return Err(self.error(crate::aws::one_line(&e)));
            }
        }
        Ok(&self.standing)
    }

    /// Stops counting itself the holder, at once: the first step of giving
    /// the lease up. Returns the token to [`Lease::release`] with.
    pub fn give_up(&mut self) -> Option<u64> {
        match std::mem::replace(&mut self.standing, Standing::Follower) {
            Standing::Leader { token, .. } => Some(token),
            Standing::Follower => None,
        }
    }

    /// Clears the lease this replica held with `token`, so another may take
    /// it now rather than when it expires. Someone else holding it already
    /// is not an error.
    pub async fn release(&self, token: u64) -> Result<()> {
        let sent = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .key("name", AttributeValue::S(self.name.clone()))
            .update_expression("SET expires_at = :zero")
            .condition_expression("holder = :me AND #t = :token")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":me", AttributeValue::S(self.holder.clone()))
            .expression_attribute_values(":token", AttributeValue::N(token.to_string()))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.error(crate::aws::one_line(&e))),
        }
    }
}

/// One replica's share of the clusters: a lease per cluster and a
/// heartbeat, in one table (see the module's documentation).
#[derive(Debug)]
pub struct Shares {
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    /// The lease name the replicas share; each cluster's lease is `NAME/CLUSTER`.
    name: String,
    holder: String,
    duration: std::time::Duration,
    leases: BTreeMap<String, Lease>,
    /// Leases given up at the last tick, to clear at this one (cluster, token).
    releasing: Vec<(String, u64)>,
    /// Live replicas counted at the last tick (this one included).
    pub replicas: usize,
}

impl Shares {
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        table: &str,
        name: &str,
        holder: &str,
        duration: std::time::Duration,
    ) -> Shares {
        Shares {
            dynamodb,
            table: table.to_owned(),
            name: name.to_owned(),
            holder: holder.to_owned(),
            duration,
            leases: BTreeMap::new(),
            releasing: vec![],
            replicas: 1,
        }
    }

    fn error(&self, message: String) -> Error {
        Error {
            table: self.table.clone(),
            name: self.heartbeat_prefix(),
            message,
        }
    }

    fn heartbeat_prefix(&self) -> String {
        format!("{}#replica/", self.name)
    }

    /// How often to call [`Shares::tick`]: as each of its leases ticks.
    pub fn tick_every(&self) -> std::time::Duration {
        tick_period(margin_of(self.duration.as_millis() as u64))
    }

    /// This replica's standings.
    pub fn standings(&self) -> Standings {
        Standings::PerCluster(
            self.leases
                .iter()
                .map(|(c, l)| (c.clone(), l.standing.clone()))
                .collect(),
        )
    }

    /// Says this replica is alive until `now + duration` (with a `ttl` in
    /// seconds a day later, for DynamoDB's TTL to clear gone replicas).
    pub async fn heartbeat(&self, now: u64) -> Result<()> {
        let expires = now + self.duration.as_millis() as u64;
        self.dynamodb
            .update_item()
            .table_name(&self.table)
            .key(
                "name",
                AttributeValue::S(format!("{}{}", self.heartbeat_prefix(), self.holder)),
            )
            .update_expression("SET expires_at = :exp, #ttl = :ttl")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":exp", AttributeValue::N(expires.to_string()))
            .expression_attribute_values(
                ":ttl",
                AttributeValue::N((expires / 1000 + 86_400).to_string()),
            )
            .send()
            .await
            .map(drop)
            .map_err(|e| self.error(crate::aws::one_line(&e)))
    }

    /// The replicas whose heartbeat has not expired at `now` (a Scan of
    /// the table, which holds a few items per cluster and replica).
    pub async fn live_replicas(&self, now: u64) -> Result<usize> {
        let mut live = 0;
        let mut start = None;
        loop {
            let page = self
                .dynamodb
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(#n, :prefix) AND expires_at > :now")
                .expression_attribute_names("#n", "name")
                .expression_attribute_values(":prefix", AttributeValue::S(self.heartbeat_prefix()))
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.error(crate::aws::one_line(&e)))?;
            live += page.items().len();
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(live);
            }
        }
    }

    /// One round: heartbeat, count the live replicas, clear the leases
    /// given up last time, renew those held, give up one if holding more
    /// than ceil(C/N), or take free ones while holding fewer. `publish`
    /// is told the standings before any lease is cleared, so this
    /// replica's writes stop before another's can start. Failed lease
    /// writes leave their standings to lapse; the first error is returned
    /// after the round.
    pub async fn tick(
        &mut self,
        clusters: &[String],
        now: u64,
        publish: &(dyn Fn(&Standings) + Sync),
    ) -> Result<()> {
        let mut first_error = None;
        let mut keep = |r: Result<()>| {
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        };
        keep(self.heartbeat(now).await);
        if let Ok(n) = self.live_replicas(now).await.map_err(|e| keep(Err(e))) {
            self.replicas = n.max(1);
        }
        for (cluster, token) in std::mem::take(&mut self.releasing) {
            if let Some(lease) = self.leases.get(&cluster) {
                keep(lease.release(token).await);
            }
        }
        // A cluster no policy names any more: give it up.
        let named: BTreeSet<&String> = clusters.iter().collect();
        let gone: Vec<String> = self
            .leases
            .keys()
            .filter(|c| !named.contains(c))
            .cloned()
            .collect();
        for cluster in gone {
            if let Some(mut lease) = self.leases.remove(&cluster)
                && let Some(token) = lease.give_up()
            {
                publish(&self.standings());
                keep(lease.release(token).await);
            }
        }
        for lease in self.leases.values_mut() {
            if lease.leads(now) {
                keep(lease.tick(now).await.map(drop));
            }
        }
        let target = clusters.len().div_ceil(self.replicas);
        let held: Vec<String> = self
            .leases
            .iter()
            .filter(|(_, l)| l.leads(now))
            .map(|(c, _)| c.clone())
            .collect();
        if held.len() > target {
            // One at a time, so the fleet moves by small steps.
            let cluster = &held[held.len() - 1];
            if let Some(token) = self.leases.get_mut(cluster).and_then(Lease::give_up) {
                self.releasing.push((cluster.clone(), token));
            }
        } else if held.len() < target {
            let mut holding = held.len();
            for cluster in self.in_my_order(clusters) {
                if holding >= target {
                    break;
                }
                let lease = self.leases.entry(cluster.clone()).or_insert_with(|| {
                    Lease::new(
                        self.dynamodb.clone(),
                        &self.table,
                        &format!("{}/{cluster}", self.name),
                        &self.holder,
                        self.duration,
                    )
                });
                if lease.leads(now) {
                    continue;
                }
                keep(lease.tick(now).await.map(drop));
                if lease.leads(now) {
                    holding += 1;
                }
            }
        }
        publish(&self.standings());
        first_error.map_or(Ok(()), Err)
    }

    /// The clusters starting at a place of this replica's own (a hash of
    /// its name), so replicas starting together try different leases first.
    fn in_my_order<'a>(&self, clusters: &'a [String]) -> Vec<&'a String> {
        use std::hash::{Hash, Hasher};
        if clusters.is_empty() {
            return vec![];
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.holder.hash(&mut h);
        let start = (h.finish() % clusters.len() as u64) as usize;
        clusters[start..].iter().chain(&clusters[..start]).collect()
    }
}

/// A backend whose writes go through only while this replica holds the
/// lease, checked at the moment of each write: fencing at the edge, so a
/// pass that began as leader and outlived the lease acts on nothing more.
#[derive(Debug)]
pub struct Fenced<'a, B> {
    inner: &'a B,
    standing: tokio::sync::watch::Receiver<Standings>,
}

impl<'a, B: crate::backend::Backend> Fenced<'a, B> {
    pub fn new(inner: &'a B, standing: tokio::sync::watch::Receiver<Standings>) -> Fenced<'a, B> {
        Fenced { inner, standing }
    }

    /// Whether this replica may act on `cluster` now.
    pub fn leads(&self, cluster: &str) -> bool {
        let now = crate::model::wall_clock();
        self.standing.borrow().leads(cluster, now)
    }

    fn check(&self, cluster: &str, operation: &'static str) -> crate::backend::Result<()> {
        if self.leads(cluster) {
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

    async fn recently_stopped(
        &self,
        cluster: &str,
    ) -> crate::backend::Result<Vec<crate::backend::StoppedTask>> {
        self.inner.recently_stopped(cluster).await
    }

    async fn update_task_protection(
        &self,
        cluster: &str,
        tasks: &[String],
        minutes: Option<u32>,
    ) -> crate::backend::Result<()> {
        self.check(cluster, "UpdateTaskProtection")?;
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
        self.check(cluster, "StopTask")?;
        self.inner.stop_task(cluster, task, reason).await
    }

    async fn set_desired_count(
        &self,
        cluster: &str,
        service: &str,
        desired: u32,
    ) -> crate::backend::Result<()> {
        self.check(cluster, "UpdateService")?;
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
    standing: tokio::sync::watch::Sender<Standings>,
    answered: impl Fn(bool),
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        match lease.tick(crate::model::wall_clock()).await {
            Ok(now) => {
                answered(true);
                let now = Standings::All(now.clone());
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

/// Keeps this replica's share of the clusters: ticks every
/// [`Shares::tick_every`] until `stop`, over the clusters the policies
/// name now (`clusters`), publishing the standings, and telling
/// `answered` whether the round's writes went through.
pub async fn keep_shared(
    mut shares: Shares,
    clusters: tokio::sync::watch::Receiver<Vec<String>>,
    standings: tokio::sync::watch::Sender<Standings>,
    answered: impl Fn(bool),
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let publish = |now: &Standings| {
        standings.send_if_modified(|s| {
            let changed = s != now;
            *s = now.clone();
            changed
        });
    };
    loop {
        let named = clusters.borrow().clone();
        match shares
            .tick(&named, crate::model::wall_clock(), &publish)
            .await
        {
            Ok(()) => answered(true),
            Err(e) => {
                answered(false);
                tracing::warn!("{e}");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(shares.tick_every()) => {}
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

    /// A simulated cluster `demo`: one service of three tasks on three hosts.
    fn one_service() -> SimBackend {
        let g = GenerateSpec {
            hosts: 3,
            services: 1,
            tasks: 3,
            zones: 3,
            skewed_share: 0.0,
        };
        SimBackend::new(generated(g, 1, 0).sim)
    }

    /// Every write is checked against the standing at the moment it is
    /// made: a pass that began as leader and outlived the lease writes no
    /// more, and what it asked for never reaches the backend behind.
    #[tokio::test]
    async fn each_write_is_checked_against_the_lease_when_it_is_made() {
        let sim = one_service();
        let snapshot = sim.snapshot("demo").await.unwrap();
        let (task, service) = (
            snapshot.tasks[0].id.clone(),
            snapshot.services[0].name.clone(),
        );
        let now = crate::model::wall_clock();
        let (send, standing) = tokio::sync::watch::channel(Standings::All(Standing::Leader {
            token: 1,
            until: now + 60_000,
        }));
        let fenced = Fenced::new(&sim, standing);
        assert!(fenced.leads("demo"));
        fenced.set_desired_count("demo", &service, 4).await.unwrap();

        // The lease lapses mid-pass: the next writes are refused here.
        send.send_replace(Standings::All(Standing::Leader {
            token: 1,
            until: now.saturating_sub(1),
        }));
        assert_eq!(
            fenced.stop_task("demo", &task, "test").await,
            Err(Error::NotLeader {
                operation: "StopTask"
            })
        );
        send.send_replace(Standings::All(Standing::Follower));
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

    /// Shared clusters are fenced one by one: a write to a cluster this
    /// replica does not hold (or holds no longer) is refused, while one to
    /// a cluster it holds goes through.
    #[tokio::test]
    async fn shared_clusters_are_fenced_each_by_its_own_lease() {
        let now = crate::model::wall_clock();
        let leader = Standing::Leader {
            token: 3,
            until: now + 60_000,
        };
        let lapsed = Standing::Leader {
            token: 2,
            until: now.saturating_sub(1),
        };
        let standings = Standings::PerCluster(BTreeMap::from([
            ("mine".to_owned(), leader.clone()),
            ("lapsed".to_owned(), lapsed),
            ("theirs".to_owned(), Standing::Follower),
        ]));
        assert!(standings.shared() && !Standings::All(leader.clone()).shared());
        let named = ["lapsed", "mine", "theirs", "unknown"].map(String::from);
        assert_eq!(
            standings.held(&named, now),
            BTreeSet::from(["mine"]),
            "a lapsed lease, another's and one never taken are not held"
        );
        // One lease for all: every cluster, or none.
        assert_eq!(Standings::All(leader).held(&named, now).len(), 4);
        assert!(
            Standings::All(Standing::Follower)
                .held(&named, now)
                .is_empty()
        );

        let sim = one_service();
        let snapshot = sim.snapshot("demo").await.unwrap();
        let service = snapshot.services[0].name.clone();
        let (_send, receive) = tokio::sync::watch::channel(standings);
        let fenced = Fenced::new(&sim, receive);
        assert_eq!(
            fenced.set_desired_count("demo", &service, 4).await,
            Err(Error::NotLeader {
                operation: "UpdateService"
            }),
            "`demo` is not among the clusters held"
        );
        assert_eq!(sim.api_calls().get("UpdateService"), None);
    }
}
