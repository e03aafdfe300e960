//! The controller's reconcile: read the cluster, plan, verify, act, report.
//! Triggers (events, resync timers, policy changes) only decide *when* this
//! runs. A resync reads the whole cluster; after events, [`ClusterView`]
//! reads again only what they touched ([`crate::backend::refresh`]). A failed read
//! means no plan and no action, and the view is replaced only after a
//! complete read.
//!
//! Before stopping any task, the services it would act on are read again
//! with their tasks' scale-in protection (which no Describe call reports),
//! and the plan is made again from that: an action never rests on a missed
//! event or a protection the snapshot could not show.

use std::collections::BTreeSet;

use crate::backend::events::{EcsEvent, EventSource};
use crate::backend::refresh::Touched;
use crate::backend::{self, Backend};
use crate::model::{ClusterSnapshot, Millis};
use crate::plan::{self, Action, ActionKind, Plan, ScalingInput};

mod intake;
pub mod lease;
pub mod readings;
pub mod schedule;

pub use crate::status::outcome::Reconciled;

/// Why `run` could not start (once running, failures are retried and
/// reported, never returned).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the policies are invalid; nothing to run")]
    InvalidPolicies,
    #[error("the repository's policies cannot be read or are invalid; nothing to run")]
    UnreadableRepository,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

use crate::spec::Policy;
pub use schedule::{Debounce, Schedule};

/// The last complete view of one cluster, and what events said changed since.
#[derive(Debug, Default)]
pub struct ClusterView {
    snapshot: Option<ClusterSnapshot>,
    touched: Touched,
}

impl ClusterView {
    /// Notes an event: what it names is read again on the next read.
    pub fn note(&mut self, event: &EcsEvent) {
        self.touched.note(event);
    }

    /// Notes the tasks acted on and their services, so the next read sees
    /// the effect even when the events about it are lost.
    pub fn note_executed(&mut self, executed: &[(Action, backend::Result<()>)]) {
        for (action, _) in executed {
            self.touched.services.insert(action.service.clone());
            if let ActionKind::StopTask { task, .. } = &action.kind {
                self.touched.tasks.insert(task.clone());
            }
        }
    }

    /// Notes the services scaling policies act on, so their desired counts
    /// are read again on the next read (nothing if nothing was read yet).
    pub fn touch_scaled(&mut self, policies: &[Policy]) {
        if let Some(snapshot) = &self.snapshot {
            let scaled = crate::controller::readings::queries(policies, snapshot)
                .into_iter()
                .map(|((_, service), _)| service);
            self.touched.services.extend(scaled);
        }
    }

    /// Reads the cluster: all of it when `full` or when nothing was read
    /// yet, else only what was touched since the last read.
    pub async fn read<B: Backend>(
        &mut self,
        backend: &B,
        cluster: &str,
        full: bool,
    ) -> backend::Result<&mut ClusterSnapshot> {
        let snapshot = match self.snapshot.take() {
            Some(mut snapshot) if !full => {
                let read = backend.refresh(cluster, &mut snapshot, &self.touched).await;
                // Unchanged when the read failed: the view stays.
                let snapshot = self.snapshot.insert(snapshot);
                read?;
                snapshot
            }
            // The old view goes first: a full read replaces all of it, and
            // a failed one is followed by another full read anyway.
            _ => self.snapshot.insert(backend.snapshot(cluster).await?),
        };
        self.touched = Touched::default();
        Ok(snapshot)
    }
}

/// A plan whose stops were verified: made again after reading the
/// services they act on, with their tasks' protection.
#[derive(Debug)]
pub struct Verified {
    pub plan: Plan,
    /// The services read again (only their stops may be executed).
    pub services: BTreeSet<String>,
    /// Why scaling policies' metrics could not be read (they hold).
    pub metric_error: Option<String>,
}

/// Plans, then verifies the stops: the services with planned stops are read
/// again (unless `fresh`, a snapshot just read in full), their tasks'
/// protection is read, and the plan is made again from that. What was
/// read is kept in `snapshot`, which is newer for it.
pub async fn plan_verified<B: Backend>(
    backend: &B,
    cluster: &str,
    snapshot: &mut ClusterSnapshot,
    fresh: bool,
    policies: &[Policy],
    now: Millis,
    scaling: &mut ScalingInput,
) -> backend::Result<Verified> {
    // Two controllers writing one desired count is a bug: the services
    // whose count a policy sets are checked for Application Auto Scaling
    // targets (no Describe call reports them), and the planner pauses those.
    let owned = desired_count_owned(policies, snapshot);
    if !owned.is_empty() {
        let targets = backend.scalable_targets(cluster, &owned).await?;
        for service in &mut snapshot.services {
            if owned.contains(&service.name) {
                service.autoscaling_target = targets.contains(&service.name);
            }
        }
    }
    // Metrics first: missing data is not zero, so a failed read holds
    // every scaled service at its count (bounds still apply) and says why.
    let mut metric_error = None;
    if policies.iter().any(|p| p.scaling.is_some()) {
        match crate::controller::readings::read(backend, policies, snapshot, now).await {
            Ok(readings) => scaling.readings = readings,
            Err(e) => {
                scaling.readings.clear();
                metric_error = Some(e.to_string());
            }
        }
    }
    let first = plan::plan_with(policies, snapshot, now, scaling);
    let services: BTreeSet<String> = first
        .executable()
        .filter(|a| matches!(a.kind, ActionKind::StopTask { .. }))
        .map(|a| a.service.clone())
        .collect();
    if services.is_empty() {
        return Ok(Verified {
            plan: first,
            services,
            metric_error,
        });
    }
    let tasks_of = |s: &ClusterSnapshot| -> BTreeSet<String> {
        s.tasks
            .iter()
            .filter(|t| services.contains(&s.services[t.service].name))
            .map(|t| t.id.clone())
            .collect()
    };
    if !fresh {
        let touched = Touched {
            tasks: tasks_of(snapshot),
            services: services.clone(),
            ..Touched::default()
        };
        backend.refresh(cluster, snapshot, &touched).await?;
    }
    let ids: Vec<String> = tasks_of(snapshot).into_iter().collect();
    let protected = backend.protected_tasks(cluster, &ids).await?;
    for task in &mut snapshot.tasks {
        if services.contains(&snapshot.services[task.service].name) {
            task.protected = protected.contains(&task.id);
        }
    }
    Ok(Verified {
        plan: plan::plan_with(policies, snapshot, now, scaling),
        services,
        metric_error,
    })
}

/// The services whose desired count a policy sets (scaling, one task per host).
fn desired_count_owned(policies: &[Policy], snapshot: &ClusterSnapshot) -> Vec<String> {
    let index = plan::Index::new(snapshot);
    let mut names: Vec<String> = policies
        .iter()
        .filter(|p| p.scaling.is_some() || p.placement.one_task_per_host.is_some())
        .flat_map(|p| index.services_of(p))
        .map(|s| snapshot.services[s].name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// One pass over a snapshot: plan, verify, execute. DryRun policies'
/// actions are planned and reported, never executed; a stop is executed
/// only for a service that was verified.
pub async fn reconcile<B: Backend>(
    backend: &B,
    cluster: &str,
    snapshot: &mut ClusterSnapshot,
    fresh: bool,
    policies: &[Policy],
    now: Millis,
    scaling: &mut ScalingInput,
) -> backend::Result<Reconciled> {
    let Verified {
        plan,
        services,
        metric_error,
    } = plan_verified(backend, cluster, snapshot, fresh, policies, now, scaling).await?;
    let mut executed = vec![];
    for action in plan.executable() {
        let result = match &action.kind {
            ActionKind::StopTask { task, .. } => {
                if !services.contains(&action.service) {
                    // Appeared only after verifying: next pass.
                    continue;
                }
                let reason = format!("stevedore: {} ({})", action.policy, action.rule);
                backend.stop_task(cluster, task, &reason).await
            }
            ActionKind::SetDesiredCount { to, .. } => {
                backend
                    .set_desired_count(cluster, &action.service, *to)
                    .await
            }
        };
        executed.push((action.clone(), result));
    }
    scaling.executed(&executed, now);
    Ok(Reconciled {
        plan,
        executed,
        metric_error,
    })
}

/// Reads a whole cluster and plans it as `run --once` would, acting on
/// nothing: `stevedore plan`.
pub async fn plan_once<B: Backend>(
    backend: &B,
    cluster: &str,
    policies: &[Policy],
) -> backend::Result<Plan> {
    let mut snapshot = backend.snapshot(cluster).await?;
    let now = snapshot.taken_at;
    let verified = plan_verified(
        backend,
        cluster,
        &mut snapshot,
        true,
        policies,
        now,
        &mut ScalingInput::default(),
    )
    .await?;
    Ok(verified.plan)
}

/// Reads a whole cluster and reconciles it once: `plan --once` style use
/// and tests.
pub async fn reconcile_once<B: Backend>(
    backend: &B,
    cluster: &str,
    policies: &[Policy],
    now: Millis,
) -> backend::Result<Reconciled> {
    let mut snapshot = backend.snapshot(cluster).await?;
    let mut scaling = ScalingInput::default();
    reconcile(
        backend,
        cluster,
        &mut snapshot,
        true,
        policies,
        now,
        &mut scaling,
    )
    .await
}

/// How `stevedore run` behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Only this cluster (by default, every cluster the policies name).
    pub cluster: Option<String>,
    /// One reconcile of each cluster, then exit.
    pub once: bool,
    /// Plan and report; act on nothing.
    pub dry_run: bool,
    /// Time between full resyncs.
    pub resync: std::time::Duration,
    /// Where actions and status changes are published, if anywhere.
    pub audit: Option<crate::status::audit::Audit>,
    /// With leader election: this replica's standing, kept by
    /// [`crate::controller::lease::keep`]. A follower plans and reports, and acts on
    /// nothing (its backend is also [`crate::controller::lease::Fenced`]).
    pub leader: Option<tokio::sync::watch::Receiver<crate::controller::lease::Standing>>,
    /// Where the policies come from.
    pub policies: PolicySource,
    /// The time the planner sees (cooldowns, metric windows): the wall
    /// clock, or the simulator's.
    pub clock: Clock,
}

/// Where `run` takes its policies from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// Files and directories, watched and read again at each resync.
    Files(Vec<std::path::PathBuf>),
    /// A git repository, fetched every `poll`.
    Git(GitSpecs),
    /// Given once and never changed: the simulator's scenario.
    Given(Vec<Policy>),
}

/// What `now` is for the planner. Timers (debounce, resync, backoff) run
/// on tokio's clock in both cases: in the simulator that clock is paused
/// and jumps to the next timer when every task waits, so virtual time
/// passes exactly as the loop and the simulated API make it pass.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// Milliseconds since the Unix epoch.
    Wall,
    /// Milliseconds of tokio's clock since `epoch` (virtual under paused
    /// time).
    Tokio { epoch: tokio::time::Instant },
}

impl Clock {
    pub fn now(&self) -> Millis {
        match self {
            Clock::Wall => crate::model::wall_clock(),
            Clock::Tokio { epoch } => epoch.elapsed().as_millis() as Millis,
        }
    }
}

/// What started a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PassKind {
    /// A resync, or the retry after a failure: everything is read.
    Full,
    /// Debounced events: what they touched is read.
    Events,
    /// Scaling policies' metric period, new policies, or the lease taken.
    Other,
}

/// One pass over one cluster, as it ended, for whoever watches the loop
/// (the simulator's report).
#[derive(Debug)]
pub struct Pass {
    pub cluster: String,
    /// The planner's clock when the pass started.
    pub at: Millis,
    pub kind: PassKind,
    /// How long reading the cluster took (tokio's clock).
    pub read: std::time::Duration,
    /// How long the whole pass took: read, verify, act.
    pub took: std::time::Duration,
    /// API calls made during the pass.
    pub calls: u64,
    /// Of which reading the cluster.
    pub read_calls: u64,
    pub outcome: backend::Result<Reconciled>,
    /// When the loop reads again after a failure (the backoff), known once
    /// every cluster's pass has ended.
    pub retry_in: Option<std::time::Duration>,
}

/// Whether this replica may act now (always, without leader election).
fn leading(options: &RunOptions) -> bool {
    options
        .leader
        .as_ref()
        .is_none_or(|standing| standing.borrow().leads(crate::model::wall_clock()))
}

/// Resolves when this replica becomes leader; never without leader election.
async fn leadership_gained(
    standing: Option<&mut tokio::sync::watch::Receiver<crate::controller::lease::Standing>>,
) {
    let Some(standing) = standing else {
        return std::future::pending().await;
    };
    loop {
        if standing.changed().await.is_err() {
            return std::future::pending().await;
        }
        let now = crate::model::wall_clock();
        if standing.borrow_and_update().leads(now) {
            return;
        }
    }
}

/// What a run did, for the exit status.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub reconciles: u64,
    pub failed_reconciles: u64,
    pub actions_done: u64,
    pub actions_failed: u64,
}

/// The clusters the policies name, by name, optionally only one.
pub fn clusters(policies: &[Policy], only: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = policies
        .iter()
        .map(|p| p.target.cluster.name.clone())
        .collect();
    names.sort();
    names.dedup();
    if let Some(only) = only {
        let only = only.rsplit('/').next().unwrap_or(only);
        names.retain(|n| n == only);
    }
    names
}

/// Loads the policies; on errors, reports them and returns `None` (the
/// caller keeps the last good set).
fn load_policies(specs: &[std::path::PathBuf]) -> Option<Vec<Policy>> {
    checked(crate::spec::load_paths(specs))
}

/// The specs' files, when the policies come from files.
fn files(options: &RunOptions) -> Option<&[std::path::PathBuf]> {
    match &options.policies {
        PolicySource::Files(paths) => Some(paths),
        _ => None,
    }
}

fn git(options: &RunOptions) -> Option<&GitSpecs> {
    match &options.policies {
        PolicySource::Git(git) => Some(git),
        _ => None,
    }
}

/// Puts newly loaded policies in force, tells the observer which clusters
/// they name, and sets the scaling tick to their period.
fn adopt(
    policies: &mut Vec<Policy>,
    newer: Vec<Policy>,
    options: &RunOptions,
    observer: &crate::status::Observer,
    schedule: (&mut Schedule, Millis),
) {
    *policies = newer;
    observer.policies_loaded(&clusters(policies, options.cluster.as_deref()));
    let (schedule, now) = schedule;
    schedule.set_scaling_every(now, scaling_interval(policies));
}

/// What a reload of the policies found, compared with those in force.
#[derive(Debug, Clone, PartialEq)]
enum Reload {
    /// Valid and different: these replace the policies in force.
    Changed(Vec<Policy>),
    /// Valid and equal to what is in force (an event that changed nothing,
    /// or a resync's re-read): nothing to do.
    Unchanged,
    /// Reported; the last good policies stay.
    Invalid,
    /// The files were still changing after [`SETTLE_READS`] reads: the
    /// last good policies stay until the next change or resync.
    Unsettled,
}

impl Reload {
    /// Compares what was loaded with what is in force (not whether
    /// something happened to the files), and counts the outcome.
    fn of(
        loaded: Option<Vec<Policy>>,
        current: &[Policy],
        observer: &crate::status::Observer,
    ) -> Reload {
        let reload = match loaded {
            None => Reload::Invalid,
            Some(loaded) if loaded == current => Reload::Unchanged,
            Some(loaded) => Reload::Changed(loaded),
        };
        reload.count(observer);
        reload
    }

    fn count(&self, observer: &crate::status::Observer) {
        observer.spec_reload(match self {
            Reload::Changed(_) => "changed",
            Reload::Unchanged => "unchanged",
            Reload::Invalid => "invalid",
            Reload::Unsettled => "unsettled",
        });
    }
}

/// How long a reload waits before reading the files again. An editor's
/// save, `cp` or `echo >` truncates a file and then writes it: a read in
/// between finds it empty or cut short, which must never replace the
/// policies in force (an empty file is valid: zero policies).
const SETTLE: std::time::Duration = std::time::Duration::from_millis(100);
/// Reads before a reload leaves files that keep changing for later.
const SETTLE_READS: usize = 5;

/// Reads the policy files again and compares them with those in force. A
/// read that differs is trusted only once a second read, [`SETTLE`] later,
/// finds the very same bytes; a read that matches costs no wait.
async fn reload(
    specs: &[std::path::PathBuf],
    current: &[Policy],
    observer: &crate::status::Observer,
) -> Reload {
    let read = || crate::spec::read_paths(specs);
    let first = read();
    let unchanged = first.as_ref().is_ok_and(|sources| {
        let loaded = crate::spec::load_sources(sources.clone());
        !loaded.has_errors() && loaded.policies == current
    });
    if unchanged {
        Reload::Unchanged.count(observer);
        return Reload::Unchanged;
    }
    match settle(first, read, same_files, SETTLE, SETTLE_READS).await {
        Some(settled) => Reload::of(
            checked(settled.map(crate::spec::load_sources)),
            current,
            observer,
        ),
        None => {
            tracing::info!(
                "specs: still being written after {SETTLE_READS} reads; \
                 keeping the last good policies until the next change or resync"
            );
            Reload::Unsettled.count(observer);
            Reload::Unsettled
        }
    }
}

type Read = Result<Vec<(String, Vec<u8>)>, crate::spec::Error>;

/// Two reads found the same files with the same bytes, or failed alike.
fn same_files(a: &Read, b: &Read) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a.to_string() == b.to_string(),
        _ => false,
    }
}

/// Reads again, `pause` apart, until two reads in a row are `same`; at
/// most `reads` reads in all (counting `first`). `None` when they never
/// agreed.
async fn settle<T>(
    first: T,
    mut read: impl FnMut() -> T,
    same: impl Fn(&T, &T) -> bool,
    pause: std::time::Duration,
    reads: usize,
) -> Option<T> {
    let mut last = first;
    for _ in 1..reads {
        tokio::time::sleep(pause).await;
        let next = read();
        if same(&last, &next) {
            return Some(next);
        }
        last = next;
    }
    None
}

/// The policies of a load, or `None` after reporting why not.
fn checked(loaded: Result<crate::spec::Loaded, crate::spec::Error>) -> Option<Vec<Policy>> {
    match loaded {
        Ok(loaded) if !loaded.has_errors() => Some(loaded.policies),
        Ok(loaded) => {
            let renderer = annotate_snippets::Renderer::plain();
            for d in loaded.diagnostics.iter().filter(|d| d.is_error()) {
                tracing::warn!("{}", d.render(&renderer));
            }
            tracing::warn!(
                "policies: {} errors; keeping the last good policies",
                loaded.error_count()
            );
            None
        }
        Err(e) => {
            tracing::warn!("policies: {e}; keeping the last good policies");
            None
        }
    }
}

/// Where the policies come from when they come from git.
#[derive(Debug, Clone)]
pub struct GitSpecs {
    pub source: crate::source::git::GitSource,
    /// How often to fetch.
    pub poll: std::time::Duration,
}

/// Fetches the repository; returns a new commit with its policies (`None`
/// when any of it is invalid, reported once: the last good policies stay).
async fn poll_git(
    git: &GitSpecs,
    seen: &mut Option<String>,
) -> Option<(String, Option<Vec<Policy>>)> {
    let source = git.source.clone();
    let fetched = tokio::task::spawn_blocking(move || source.fetch()).await;
    let commit = match fetched {
        Ok(Ok(commit)) => commit,
        Ok(Err(e)) => {
            tracing::warn!("specs: {e}; keeping the last good policies");
            return None;
        }
        Err(e) => {
            tracing::warn!("specs: fetch failed: {e}");
            return None;
        }
    };
    if seen.as_deref() == Some(commit.id.as_str()) {
        return None;
    }
    *seen = Some(commit.id.clone());
    tracing::info!(commit = %commit.id, "specs: commit {}: {} files", commit.id, commit.files.len());
    Some((
        commit.id,
        checked(Ok(crate::spec::load_sources(commit.files))),
    ))
}

/// The controller: reconcile every cluster the policies name, then wait
/// for events, the next resync, a change of the specs or `shutdown`. A
/// resync reads each cluster in full; events (debounced) make a pass that
/// reads again only what they touched. The specs are watched
/// ([`crate::source::files`]) and read again at each resync; an invalid change is
/// reported and the last good policies stay in force. Shutdown is honoured
/// between passes, so a batch of actions is never left half done: the
/// caller installs its signal handlers before calling, so that a signal
/// during the first pass waits for it too.
pub async fn run<B: Backend, E: EventSource>(
    backend: &B,
    events: Option<&E>,
    options: &RunOptions,
    observer: &crate::status::Observer,
    on_pass: &mut dyn FnMut(&Pass),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<RunSummary> {
    let specs = files(options).unwrap_or_default();
    let mut dedupe = crate::backend::events::Dedupe::default();
    // The debounce's clock: milliseconds since the loop started.
    let epoch = tokio::time::Instant::now();
    let since_epoch = |at: tokio::time::Instant| at.duration_since(epoch).as_millis() as Millis;
    let mut seen_commit = None;
    let mut policies = match &options.policies {
        PolicySource::Files(specs) => load_policies(specs).ok_or(Error::InvalidPolicies)?,
        PolicySource::Given(policies) => policies.clone(),
        PolicySource::Git(git) => {
            let (commit, policies) = poll_git(git, &mut seen_commit)
                .await
                .and_then(|(commit, policies)| Some((commit, policies?)))
                .ok_or(Error::UnreadableRepository)?;
            observer.commit(&commit);
            policies
        }
    };
    let mut next_poll = git(options).map(|g| tokio::time::Instant::now() + g.poll);
    observer.policies_loaded(&clusters(&policies, options.cluster.as_deref()));
    let mut summary = RunSummary::default();
    let mut views: std::collections::BTreeMap<String, ClusterView> = Default::default();
    let mut scalings: std::collections::BTreeMap<String, ScalingInput> = Default::default();
    let mut schedule = Schedule::new(
        0,
        options.resync.as_millis() as Millis,
        scaling_interval(&policies),
    );
    let mut inbox = events.filter(|_| !options.once).map(intake::Intake::new);
    let mut watcher = if options.once || files(options).is_none() {
        None
    } else {
        // Registering watches blocks on notify's thread: not on this one.
        let paths = specs.to_vec();
        match tokio::task::spawn_blocking(move || crate::source::files::SpecWatcher::new(&paths))
            .await
        {
            Ok(Ok(w)) => Some(w),
            Ok(Err(e)) => {
                tracing::info!("specs: cannot watch ({e}); reading them again at each resync");
                None
            }
            // The blocking thread panicked.
            Err(e) => {
                tracing::warn!("specs: cannot watch ({e}); reading them again at each resync");
                None
            }
        }
    };
    let mut first = true;
    let mut standing = options.leader.clone();
    tokio::pin!(shutdown);
    loop {
        let full = schedule.full_due(since_epoch(tokio::time::Instant::now()));
        // At each resync too, in case the file system sends no notifications.
        if full
            && !std::mem::take(&mut first)
            && files(options).is_some()
            && let Reload::Changed(newer) = reload(specs, &policies, observer).await
        {
            tracing::info!(
                "specs: changed (read at resync); {} policies loaded",
                newer.len()
            );
            let now = since_epoch(tokio::time::Instant::now());
            adopt(
                &mut policies,
                newer,
                options,
                observer,
                (&mut schedule, now),
            );
        }
        let mut effective = policies.clone();
        let leader = leading(options);
        if options.leader.is_some() {
            tracing::info!(
                leader,
                "{}",
                if leader {
                    "leader: acting"
                } else {
                    "not the leader: planning and reporting only"
                }
            );
        }
        if options.dry_run || !leader {
            effective
                .iter_mut()
                .for_each(|p| p.mode = crate::spec::policy::Mode::DryRun);
        }
        let kind = if full {
            PassKind::Full
        } else if schedule.events_pending() {
            PassKind::Events
        } else {
            PassKind::Other
        };
        let mut failed = false;
        let mut passes = vec![];
        let mut received = vec![];
        let pass = async {
            for cluster in clusters(&effective, options.cluster.as_deref()) {
                summary.reconciles += 1;
                let started = tokio::time::Instant::now();
                let calls_before = total_calls(backend);
                let now = options.clock.now();
                let view = views.entry(cluster.clone()).or_default();
                // Scaled services' desired counts are read again every pass.
                view.touch_scaled(&effective);
                let scaling = scalings.entry(cluster.clone()).or_default();
                let mut read = std::time::Duration::ZERO;
                let mut read_calls = 0;
                let outcome = match view.read(backend, &cluster, full).await {
                    Ok(snapshot) => {
                        read = started.elapsed();
                        read_calls = total_calls(backend) - calls_before;
                        reconcile(backend, &cluster, snapshot, full, &effective, now, scaling).await
                    }
                    Err(e) => Err(e),
                };
                match &outcome {
                    Err(e) => {
                        failed = true;
                        summary.failed_reconciles += 1;
                        observer.failed(&cluster);
                        tracing::warn!("{cluster}: no snapshot, nothing done: {e}");
                    }
                    Ok(outcome) => {
                        view.note_executed(&outcome.executed);
                        let changes = observer.reconciled(&cluster, full, outcome);
                        report(&cluster, outcome, &mut summary);
                        if let Some(audit) = &options.audit {
                            let entries =
                                crate::status::audit::entries(&cluster, outcome, &changes);
                            if !entries.is_empty()
                                && let Err(e) = audit.publish(&entries).await
                            {
                                tracing::warn!("audit: {e}; {} events dropped", entries.len());
                            }
                        }
                    }
                }
                let calls = backend.api_calls();
                observer.api_calls(&calls, &backend.api_throttles());
                passes.push(Pass {
                    cluster,
                    at: now,
                    kind,
                    read,
                    took: started.elapsed(),
                    calls: calls.values().sum::<u64>() - calls_before,
                    read_calls,
                    outcome,
                    retry_in: None,
                });
            }
        };
        // Events that come while the pass runs are taken in (and deleted)
        // now, and admitted after it.
        {
            tokio::pin!(pass);
            loop {
                let receive = async {
                    match inbox.as_mut() {
                        Some(inbox) => inbox.next().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    () = &mut pass => break,
                    batch = receive => match batch {
                        Ok(batch) => received.extend(batch),
                        Err(e) => tracing::warn!("events: {e}; retrying in {}s", intake::RETRY_AFTER.as_secs()),
                    },
                }
            }
        }
        if options.once {
            return Ok(summary);
        }
        // A failure makes the next pass a full read, backing off while it
        // keeps failing.
        schedule.passed(since_epoch(tokio::time::Instant::now()), full, !failed);
        let retry_in = failed.then(|| std::time::Duration::from_millis(schedule.backoff()));
        for pass in &mut passes {
            pass.retry_in = retry_in;
            on_pass(pass);
        }
        // Wait for the resync, the next metric period of scaling policies,
        // or news from the event queue (debounced).
        let mut tally = intake::Tally::default();
        let managed = clusters(&policies, options.cluster.as_deref());
        let mut admit = |messages: &[crate::backend::events::Message],
                         schedule: &mut Schedule,
                         tally: &mut intake::Tally,
                         now| {
            intake::Admit {
                managed: &managed,
                dedupe: &mut dedupe,
                views: &mut views,
                schedule,
                observer,
                tally,
            }
            .messages(messages, now)
        };
        admit(
            &std::mem::take(&mut received),
            &mut schedule,
            &mut tally,
            since_epoch(tokio::time::Instant::now()),
        );
        loop {
            let now = tokio::time::Instant::now();
            if let (Some(git), Some(at)) = (git(options), next_poll)
                && now >= at
            {
                next_poll = Some(now + git.poll);
                if let Some((commit, loaded)) = poll_git(git, &mut seen_commit).await {
                    match Reload::of(loaded, &policies, observer) {
                        Reload::Changed(newer) => {
                            tracing::info!(commit = %commit, "specs: commit {commit}: {} policies loaded, reconciling", newer.len());
                            observer.commit(&commit);
                            adopt(
                                &mut policies,
                                newer,
                                options,
                                observer,
                                (&mut schedule, since_epoch(now)),
                            );
                            break;
                        }
                        Reload::Unchanged => {
                            tracing::info!(commit = %commit, "specs: commit {commit}: the same policies");
                            observer.commit(&commit);
                        }
                        Reload::Invalid | Reload::Unsettled => {}
                    }
                }
                continue;
            }
            let next = next_poll.into_iter().fold(
                epoch + std::time::Duration::from_millis(schedule.next_wake()),
                |a, b| a.min(b),
            );
            if now >= next {
                // A signal that came during the pass is honoured before
                // the next one starts.
                if futures_util::FutureExt::now_or_never(&mut shutdown).is_some() {
                    tracing::info!("shutting down after {} reconciles", summary.reconciles);
                    return Ok(summary);
                }
                if schedule.events_pending() && !schedule.full_due(since_epoch(now)) {
                    tracing::info!("events: reconciling what they touched: {tally}");
                } else if !tally.is_empty() {
                    tracing::info!("events: {tally}");
                }
                break;
            }
            let wait = next - now;
            let gained = leadership_gained(if leading(options) {
                None
            } else {
                standing.as_mut()
            });
            let specs_changed = async {
                match watcher.as_mut() {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            };
            let receive = async {
                match inbox.as_mut() {
                    Some(inbox) => inbox.next().await,
                    None => std::future::pending().await,
                }
            };
            let wake = tokio::select! {
                received = receive => Wake::Received(received),
                () = tokio::time::sleep(wait) => Wake::Due,
                () = specs_changed => Wake::SpecsChanged,
                () = gained => Wake::Leader,
                () = &mut shutdown => Wake::Shutdown,
            };
            let received = match wake {
                Wake::Received(received) => received,
                Wake::Due => continue,
                Wake::Leader => {
                    tracing::info!("leader: took the lease, reconciling");
                    break;
                }
                Wake::Shutdown => {
                    tracing::info!("shutting down after {} reconciles", summary.reconciles);
                    return Ok(summary);
                }
                Wake::SpecsChanged => {
                    // An invalid change was reported; the last good policies
                    // stay. The same policies again cost nothing more.
                    match reload(specs, &policies, observer).await {
                        Reload::Changed(newer) => {
                            tracing::info!(
                                "specs: changed; {} policies loaded, reconciling",
                                newer.len()
                            );
                            adopt(
                                &mut policies,
                                newer,
                                options,
                                observer,
                                (&mut schedule, since_epoch(tokio::time::Instant::now())),
                            );
                            break;
                        }
                        Reload::Unchanged => {
                            tracing::debug!("specs: touched, the same policies");
                            continue;
                        }
                        Reload::Invalid | Reload::Unsettled => continue,
                    }
                }
            };
            match received {
                Ok(messages) => admit(
                    &messages,
                    &mut schedule,
                    &mut tally,
                    since_epoch(tokio::time::Instant::now()),
                ),
                Err(e) => tracing::warn!(
                    "events: {e}; retrying in {}s",
                    intake::RETRY_AFTER.as_secs()
                ),
            }
        }
    }
}

/// API calls made so far, all operations together.
fn total_calls<B: Backend>(backend: &B) -> u64 {
    backend.api_calls().values().sum()
}

/// How often scaling policies are evaluated, in milliseconds (the
/// schedule's unit): their shortest metric period (at least 10 s), or never
/// when no policy scales.
pub fn scaling_interval(policies: &[Policy]) -> Option<Millis> {
    policies
        .iter()
        .filter_map(|p| p.scaling.as_ref())
        .map(|s| match &s.metric {
            crate::spec::policy::Metric::CloudWatch { period, .. } => *period,
        })
        .min()
        .map(|d| d.max(std::time::Duration::from_secs(10)).as_millis() as Millis)
}

/// What ended a wait.
enum Wake<E> {
    Received(Result<Vec<crate::backend::events::Message>, E>),
    /// The next pass is due.
    Due,
    SpecsChanged,
    Leader,
    Shutdown,
}

/// Logs a reconcile's statuses and actions, and counts its actions. Each
/// line carries its cluster, policy and service as fields (and an action's
/// rule, reason and result), for `--log-format json`.
fn report(cluster: &str, outcome: &Reconciled, summary: &mut RunSummary) {
    if let Some(e) = &outcome.metric_error {
        tracing::warn!(
            cluster,
            "{cluster}: metrics: {e}; scaled services hold their count"
        );
    }
    for status in &outcome.plan.statuses {
        let (policy, service) = (status.policy.as_str(), status.service.as_str());
        tracing::info!(
            cluster,
            policy,
            service,
            state = ?status.state,
            "{cluster}/{policy}/{service}: {:?}: {}",
            status.state,
            status.reason
        );
        if let Some(scaling) = &status.scaling {
            tracing::info!(
                cluster,
                policy,
                service,
                "{cluster}/{policy}/{service}: scaling: {scaling}"
            );
        }
    }

    for action in outcome.plan.actions.iter().filter(|a| a.dry_run) {
        let (policy, service, rule, reason) = action_fields(action);
        tracing::info!(
            cluster,
            policy,
            service,
            rule,
            reason,
            result = "dry run",
            "{cluster}/{policy}/{service}: {action}"
        );
    }
    for (action, result) in &outcome.executed {
        let (policy, service, rule, reason) = action_fields(action);
        match result {
            Ok(()) => {
                summary.actions_done += 1;
                tracing::info!(
                    cluster,
                    policy,
                    service,
                    rule,
                    reason,
                    result = "done",
                    "{cluster}/{policy}/{service}: done: {action}"
                );
            }
            Err(e) => {
                summary.actions_failed += 1;
                tracing::warn!(cluster, policy, service, rule, reason, result = %e, "{cluster}/{policy}/{service}: FAILED: {action}: {e}");
            }
        }
    }
}

/// An action's policy, service, rule and reason, as log fields.
fn action_fields(a: &Action) -> (&str, &str, &str, &str) {
    (&a.policy, &a.service, &a.rule, &a.reason)
}

#[cfg(test)]
mod tests;
