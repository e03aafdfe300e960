//! The run loop: reconcile every cluster the policies name, then wait for
//! what says to look again (events, the resync timer, the scaling tick, a
//! change of the policies, the lease) and for shutdown. The same loop runs
//! in production and in the simulator; only the backend, the event source
//! and the clock differ.

use super::intake;
use super::reload::{GitSpecs, Reload, load_policies, poll_git, reload};
use super::schedule::Due;
use super::{ClusterView, Error, Reconciled, Result, Schedule, reconcile};
use crate::backend::events::EventSource;
use crate::backend::{self, Backend};
use crate::model::Millis;
use crate::plan::{Action, Memory};
use crate::spec::{Policy, Specs};

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
    /// With clusters shared by replicas ([`crate::controller::lease::keep_shared`]),
    /// a standing per cluster: a replica reads and acts on only the
    /// clusters it holds.
    pub leader: Option<tokio::sync::watch::Receiver<crate::controller::lease::Standings>>,
    /// Told the clusters the policies name, whenever they change (what
    /// the shared leases are kept over).
    pub clusters_named: Option<tokio::sync::watch::Sender<Vec<String>>>,
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
    Given(Specs),
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
    /// time); `epoch` is `start_at` on the wall clock (budget windows).
    Tokio {
        epoch: tokio::time::Instant,
        start_at: Millis,
    },
}

impl Clock {
    pub fn now(&self) -> Millis {
        match self {
            Clock::Wall => crate::model::wall_clock(),
            Clock::Tokio { epoch, .. } => epoch.elapsed().as_millis() as Millis,
        }
    }

    /// What to add to [`Clock::now`] to read the wall clock.
    pub fn wall_offset(&self) -> Millis {
        match self {
            Clock::Wall => 0,
            Clock::Tokio { start_at, .. } => *start_at,
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

/// Whether the clusters are shared by replicas: each reads only its own.
fn shared(options: &RunOptions) -> bool {
    options
        .leader
        .as_ref()
        .is_some_and(|standing| standing.borrow().shared())
}

/// The clusters among `clusters` this replica may act on now (all of
/// them without leases).
fn held(options: &RunOptions, clusters: &[String]) -> std::collections::BTreeSet<String> {
    match &options.leader {
        None => clusters.iter().cloned().collect(),
        Some(standing) => standing
            .borrow()
            .held(clusters, crate::model::wall_clock())
            .into_iter()
            .map(str::to_owned)
            .collect(),
    }
}

/// Resolves when the clusters among `clusters` this replica holds are no
/// longer `before`, with whether it gained one (the lease taken, or a
/// shared cluster's); never without leases.
async fn leases_changed(
    standing: Option<&mut tokio::sync::watch::Receiver<crate::controller::lease::Standings>>,
    clusters: &[String],
    before: &std::collections::BTreeSet<String>,
) -> bool {
    let Some(standing) = standing else {
        return std::future::pending().await;
    };
    loop {
        if standing.changed().await.is_err() {
            return std::future::pending().await;
        }
        let now = crate::model::wall_clock();
        let held = standing.borrow_and_update().held(clusters, now);
        if held.iter().any(|c| !before.contains(*c)) {
            return true;
        }
        if held.len() != before.len() {
            return false;
        }
    }
}

/// Tells the observer which of `clusters` (those the policies name) this
/// replica holds, `held`, and the lease keeper which clusters are named.
fn announce(
    options: &RunOptions,
    observer: &crate::status::Observer,
    clusters: &[String],
    held: &std::collections::BTreeSet<String>,
) {
    observer.clusters_held(
        &clusters
            .iter()
            .map(|c| (c.clone(), held.contains(c)))
            .collect(),
        shared(options),
    );
    if let Some(named) = &options.clusters_named {
        named.send_if_modified(|n| {
            let changed = n != clusters;
            if changed {
                *n = clusters.to_vec();
            }
            changed
        });
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
    let mut in_force = match &options.policies {
        PolicySource::Files(specs) => load_policies(specs).ok_or(Error::InvalidPolicies)?,
        PolicySource::Given(given) => given.clone(),
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
    backend.locate(&in_force.clusters);
    // Which clusters this replica holds is told at each pass (`announce`).
    observer.resync_period(options.resync);
    observer.policies_loaded(&clusters(&in_force.policies, options.cluster.as_deref()));
    let mut summary = RunSummary::default();
    let mut views: std::collections::BTreeMap<String, ClusterView> = Default::default();
    let mut memories: std::collections::BTreeMap<String, Memory> = Default::default();
    // The clusters held at the last look: one taken (back) over since had
    // stops made by another replica, which its ledger must read back.
    let mut held_before: std::collections::BTreeSet<String> = Default::default();
    // Per cluster: when a stop its last plan held back may be made (a rate
    // budget frees one, a backoff ends), on the planner's clock.
    let mut retries: std::collections::BTreeMap<String, Millis> = Default::default();
    let mut schedule = Schedule::new(
        0,
        options.resync.as_millis() as Millis,
        scaling_interval(&in_force.policies),
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
        // What the schedule says is due; a pass that something else started
        // (new policies, the lease taken) reads what events touched, if any.
        let due = schedule.due(since_epoch(tokio::time::Instant::now()));
        let full = due == Some(Due::Full);
        // At each resync too, in case the file system sends no notifications.
        if full
            && !std::mem::take(&mut first)
            && files(options).is_some()
            && let Reload::Changed(newer) = reload(specs, &in_force, observer).await
        {
            tracing::info!("specs: changed (read at resync); {}", specs_loaded(&newer));
            let now = since_epoch(tokio::time::Instant::now());
            adopt(
                backend,
                &mut in_force,
                newer,
                options,
                observer,
                (&mut schedule, now),
            );
        }
        let mut effective = in_force.clone();
        let named = clusters(&in_force.policies, options.cluster.as_deref());
        let mut held_now = held(options, &named);
        for taken in held_now.difference(&held_before) {
            if let Some(memory) = memories.get_mut(taken) {
                memory.ledger_recovered = false;
            }
        }
        held_before = held_now.clone();
        announce(options, observer, &named, &held_now);
        if shared(options) {
            tracing::info!(
                held = held_now.len(),
                "holding {} of {} clusters{}",
                held_now.len(),
                named.len(),
                if held_now.is_empty() {
                    String::new()
                } else {
                    format!(
                        ": {}",
                        held_now.iter().cloned().collect::<Vec<_>>().join(", ")
                    )
                }
            );
        } else if options.leader.is_some() {
            let leader = held_now.len() == named.len();
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
        effective
            .policies
            .iter_mut()
            .filter(|p| options.dry_run || !held_now.contains(&p.target.cluster.name))
            .for_each(|p| p.mode = crate::spec::policy::Mode::DryRun);
        // Shared clusters: a replica reads only those it holds.
        let to_read: Vec<String> = if shared(options) {
            named
                .iter()
                .filter(|c| held_now.contains(*c))
                .cloned()
                .collect()
        } else {
            named.clone()
        };
        let kind = match due {
            Some(Due::Full) => PassKind::Full,
            Some(Due::Events) => PassKind::Events,
            _ if schedule.events_pending() => PassKind::Events,
            Some(Due::Scaling) | None => PassKind::Other,
        };
        let mut failed = false;
        let mut passes = vec![];
        let mut received = vec![];
        // Only this pass's plans say what waits: a cluster that failed or
        // is not read any more wakes nobody.
        retries.clear();
        let pass = async {
            for cluster in to_read.iter().cloned() {
                summary.reconciles += 1;
                let started = tokio::time::Instant::now();
                let calls_before = total_calls(backend);
                let now = options.clock.now();
                let view = views.entry(cluster.clone()).or_default();
                // Scaled services' desired counts are read again every pass.
                view.touch_scaled(&effective.policies);
                let memory = memories.entry(cluster.clone()).or_insert_with(|| Memory {
                    wall_offset: options.clock.wall_offset(),
                    ..Memory::default()
                });
                let mut read = std::time::Duration::ZERO;
                let mut read_calls = 0;
                let outcome = match view.read(backend, &cluster, full).await {
                    Ok(snapshot) => {
                        read = started.elapsed();
                        read_calls = total_calls(backend) - calls_before;
                        // Planned as of now, the read done: the writes
                        // that follow are noted from here (the ledger).
                        let planned_at = options.clock.now();
                        reconcile(
                            backend, &cluster, snapshot, full, &effective, planned_at, memory,
                        )
                        .await
                    }
                    // A cluster that does not exist is an answer, not a
                    // failure: its policies are NotFound, the others go on.
                    Err(backend::Error::ClusterNotFound(_)) => Ok(Reconciled {
                        plan: crate::plan::cluster_not_found(&effective.policies, &cluster),
                        executed: vec![],
                        metric_error: None,
                    }),
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
                        match outcome.plan.retry_at {
                            Some(at) => retries.insert(cluster.clone(), at),
                            None => retries.remove(&cluster),
                        };
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
                tokio::select! {
                    biased;
                    () = &mut pass => break,
                    batch = intake::next_batch(&mut inbox) => received.extend(batch),
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
        let managed = clusters(&in_force.policies, options.cluster.as_deref());
        // A budget's window opening is a reason to look: a quiet cluster
        // would otherwise wait for its resync to notice.
        let window_opens = window_opening(&in_force, &options.clock);
        // So is a held stop becoming possible: a rate budget's next stop,
        // a backoff's end (a few milliseconds after, so the pass finds it).
        let retry = retries.values().min().map(|at| {
            let wait = at.saturating_sub(options.clock.now()) + 10;
            tokio::time::Instant::now() + std::time::Duration::from_millis(wait)
        });
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
                    match Reload::of(loaded, &in_force, observer) {
                        Reload::Changed(newer) => {
                            tracing::info!(commit = %commit, "specs: commit {commit}: {}, reconciling", specs_loaded(&newer));
                            observer.commit(&commit);
                            adopt(
                                backend,
                                &mut in_force,
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
            let next = next_poll.into_iter().chain(window_opens).chain(retry).fold(
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
                if schedule.due(since_epoch(now)) == Some(Due::Events) {
                    tracing::info!("events: reconciling what they touched: {tally}");
                } else if !tally.is_empty() {
                    tracing::info!("events: {tally}");
                }
                break;
            }
            let wait = next - now;
            let gained = leases_changed(standing.as_mut(), &managed, &held_now);
            let specs_changed = async {
                match watcher.as_mut() {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            };
            // Biased: in a fixed order when several are ready at once (the
            // simulator's paused clock makes that common), so that runs
            // with one seed are the same run. Nothing starves: a due pass
            // is taken at the top of the loop, before waiting again.
            let wake = tokio::select! {
                biased;
                received = intake::next_batch(&mut inbox) => Wake::Received(received),
                () = tokio::time::sleep(wait) => Wake::Due,
                () = specs_changed => Wake::SpecsChanged,
                gained = gained => Wake::Leases { gained },
                () = &mut shutdown => Wake::Shutdown,
            };
            let received = match wake {
                Wake::Received(received) => received,
                Wake::Due => continue,
                Wake::Leases { gained: true } => {
                    if shared(options) {
                        tracing::info!("leases: took a lease, reconciling");
                    } else {
                        tracing::info!("leader: took the lease, reconciling");
                    }
                    break;
                }
                Wake::Leases { gained: false } => {
                    let now_held = held(options, &managed);
                    if shared(options) {
                        tracing::info!(
                            "leases: now holding {} of {} clusters; acting on none of the others",
                            now_held.len(),
                            managed.len()
                        );
                    } else {
                        tracing::info!("leader: lost the lease; planning and reporting only");
                    }
                    announce(options, observer, &managed, &now_held);
                    held_before = now_held.clone();
                    held_now = now_held;
                    continue;
                }
                Wake::Shutdown => {
                    tracing::info!("shutting down after {} reconciles", summary.reconciles);
                    return Ok(summary);
                }
                Wake::SpecsChanged => {
                    // An invalid change was reported; the last good policies
                    // stay. The same policies again cost nothing more.
                    match reload(specs, &in_force, observer).await {
                        Reload::Changed(newer) => {
                            tracing::info!("specs: changed; {}, reconciling", specs_loaded(&newer));
                            adopt(
                                backend,
                                &mut in_force,
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
            admit(
                &received,
                &mut schedule,
                &mut tally,
                since_epoch(tokio::time::Instant::now()),
            );
        }
    }
}

/// Puts newly loaded policies in force, tells the observer which clusters
/// they name, and sets the scaling tick to their period.
fn adopt(
    backend: &impl Backend,
    in_force: &mut Specs,
    newer: Specs,
    options: &RunOptions,
    observer: &crate::status::Observer,
    schedule: (&mut Schedule, Millis),
) {
    *in_force = newer;
    backend.locate(&in_force.clusters);
    observer.policies_loaded(&clusters(&in_force.policies, options.cluster.as_deref()));
    let (schedule, now) = schedule;
    schedule.set_scaling_every(now, scaling_interval(&in_force.policies));
}

/// When the next window of any budget opens, on tokio's clock (a few
/// milliseconds after, so that the pass finds it open).
fn window_opening(specs: &Specs, clock: &Clock) -> Option<tokio::time::Instant> {
    let wall = clock.now() + clock.wall_offset();
    let at = specs
        .budgets
        .iter()
        .filter_map(|b| b.next_window(wall))
        .map(|(_, at)| at)
        .min()?;
    Some(tokio::time::Instant::now() + std::time::Duration::from_millis(at - wall + 10))
}

/// `3 policies and 1 budget loaded`, for the log.
fn specs_loaded(specs: &Specs) -> String {
    let budgets = match specs.budgets.len() {
        0 => String::new(),
        1 => " and 1 budget".into(),
        n => format!(" and {n} budgets"),
    };
    format!("{} policies{budgets} loaded", specs.policies.len())
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
enum Wake {
    Received(Vec<crate::backend::events::Message>),
    /// The next pass is due.
    Due,
    SpecsChanged,
    /// The clusters this replica holds changed.
    Leases {
        gained: bool,
    },
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
        if status.state == crate::plan::State::NotFound {
            tracing::warn!(
                cluster,
                policy,
                service,
                state = ?status.state,
                "{cluster}/{policy}/{service}: {:?}: {}",
                status.state,
                status.reason
            );
            continue;
        }
        tracing::info!(
            cluster,
            policy,
            service,
            state = ?status.state,
            dry_run = status.dry_run,
            "{cluster}/{policy}/{service}: {:?}{}: {}",
            status.state,
            if status.dry_run { " [dry run]" } else { "" },
            status.reason
        );
        for later in &status.later_moves {
            tracing::info!(
                cluster,
                policy,
                service,
                result = "dry run",
                "{cluster}/{policy}/{service}: later, after this pass's moves: {later} (dry run: not executed)"
            );
        }
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
