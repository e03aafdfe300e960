//! The controller's reconcile: read a complete snapshot, plan, act, report.
//! Triggers (events, resync timers, policy changes) only decide *when* this
//! runs; it always works from a fresh, complete snapshot, and a failed read
//! means no plan and no action.

use crate::backend::{self, Backend};
use crate::model::Millis;
use crate::plan::{self, Action, ActionKind, Plan};
use crate::spec::Policy;

/// What one reconcile did.
#[derive(Debug)]
pub struct Reconciled {
    pub plan: Plan,
    /// Each executable action with its outcome, in order.
    pub executed: Vec<(Action, backend::Result<()>)>,
}

/// One pass: snapshot, plan, execute the plan's executable actions.
/// DryRun policies' actions are planned and reported, never executed.
pub async fn reconcile<B: Backend>(
    backend: &B,
    cluster: &str,
    policies: &[Policy],
    now: Millis,
) -> backend::Result<Reconciled> {
    let snapshot = backend.snapshot(cluster).await?;
    let plan = plan::plan(policies, &snapshot, now);
    let mut executed = vec![];
    for action in plan.executable() {
        let result = match &action.kind {
            ActionKind::StopTask { task, .. } => {
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
    Ok(Reconciled { plan, executed })
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
fn load_policies(
    specs: &[std::path::PathBuf],
    log: &mut dyn std::io::Write,
) -> Option<Vec<Policy>> {
    match crate::spec::load_paths(specs) {
        Ok(loaded) if !loaded.has_errors() => Some(loaded.policies),
        Ok(loaded) => {
            let renderer = annotate_snippets::Renderer::plain();
            for d in loaded.diagnostics.iter().filter(|d| d.is_error()) {
                let _ = writeln!(log, "{}\n", d.render(&renderer));
            }
            let _ = writeln!(
                log,
                "policies: {} errors; keeping the last good policies",
                loaded.error_count()
            );
            None
        }
        Err(e) => {
            let _ = writeln!(log, "policies: {e}; keeping the last good policies");
            None
        }
    }
}

/// The controller: reconcile every cluster the policies name, then wait
/// for the next resync or for `shutdown`. The policies are read again
/// before each pass; an invalid change is reported and the last good
/// policies stay in force. Shutdown is honoured between passes, so a batch
/// of actions is never left half done.
pub async fn run<B: Backend>(
    backend: &B,
    specs: &[std::path::PathBuf],
    options: &RunOptions,
    events: Option<&crate::aws::SqsEvents>,
    shutdown: impl std::future::Future<Output = ()>,
    log: &mut dyn std::io::Write,
) -> Result<RunSummary, String> {
    let mut dedupe = crate::events::Dedupe::default();
    let mut policies =
        load_policies(specs, log).ok_or("the policies are invalid; nothing to run")?;
    let mut summary = RunSummary::default();
    tokio::pin!(shutdown);
    loop {
        if let Some(newer) = load_policies(specs, log) {
            policies = newer;
        }
        let mut effective = policies.clone();
        if options.dry_run {
            effective
                .iter_mut()
                .for_each(|p| p.mode = crate::spec::policy::Mode::DryRun);
        }
        for cluster in clusters(&effective, options.cluster.as_deref()) {
            summary.reconciles += 1;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as Millis);
            match reconcile(backend, &cluster, &effective, now).await {
                Err(e) => {
                    summary.failed_reconciles += 1;
                    let _ = writeln!(log, "{cluster}: no snapshot, nothing done: {e}");
                }
                Ok(outcome) => {
                    for status in &outcome.plan.statuses {
                        let _ = writeln!(
                            log,
                            "{cluster}/{}/{}: {:?}: {}",
                            status.policy, status.service, status.state, status.reason
                        );
                    }
                    for action in outcome.plan.actions.iter().filter(|a| a.dry_run) {
                        let _ = writeln!(
                            log,
                            "{cluster}/{}/{}: {action}",
                            action.policy, action.service
                        );
                    }
                    for (action, result) in &outcome.executed {
                        match result {
                            Ok(()) => {
                                summary.actions_done += 1;
                                let _ = writeln!(
                                    log,
                                    "{cluster}/{}/{}: done: {action}",
                                    action.policy, action.service
                                );
                            }
                            Err(e) => {
                                summary.actions_failed += 1;
                                let _ = writeln!(
                                    log,
                                    "{cluster}/{}/{}: FAILED: {action}: {e}",
                                    action.policy, action.service
                                );
                            }
                        }
                    }
                }
            }
        }
        if options.once {
            return Ok(summary);
        }
        // Wait for the resync, or for news from the event queue (debounced:
        // 2 s after the last event, at most 10 s after the first).
        let resync_at = tokio::time::Instant::now() + options.resync;
        let mut news: Option<(tokio::time::Instant, tokio::time::Instant)> = None;
        let managed = clusters(&policies, options.cluster.as_deref());
        loop {
            let now = tokio::time::Instant::now();
            let debounce_at =
                news.map(|(first, last)| (last + DEBOUNCE_QUIET).min(first + DEBOUNCE_MAX));
            let next = debounce_at.map_or(resync_at, |d| d.min(resync_at));
            if now >= next {
                if news.is_some() {
                    let _ = writeln!(log, "events: reconciling");
                }
                break;
            }
            let wait = next - now;
            let received = match events {
                Some(queue) if wait >= std::time::Duration::from_secs(1) => {
                    tokio::select! {
                        received = queue.receive(wait) => Some(received),
                        () = &mut shutdown => None,
                    }
                }
                _ => {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => Some(Ok(vec![])),
                        () = &mut shutdown => None,
                    }
                }
            };
            let Some(received) = received else {
                let _ = writeln!(log, "shutting down after {} reconciles", summary.reconciles);
                return Ok(summary);
            };
            let messages = match received {
                Ok(m) => m,
                Err(e) => {
                    let _ = writeln!(log, "events: {e}; retrying in 1s");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            for message in &messages {
                match crate::events::parse(&message.body) {
                    Err(why) => {
                        let _ = writeln!(
                            log,
                            "events: malformed message {}: {why}; deleted",
                            message.id
                        );
                    }
                    Ok(event) if !managed.contains(&event.cluster) => {}
                    Ok(event) => match dedupe.admit(&event) {
                        crate::events::Admission::New => {
                            let _ = writeln!(
                                log,
                                "events: {:?} {} (cluster {})",
                                event.kind, event.resource, event.cluster
                            );
                            let at = tokio::time::Instant::now();
                            news = Some(news.map_or((at, at), |(first, _)| (first, at)));
                        }
                        crate::events::Admission::Duplicate | crate::events::Admission::Stale => {}
                    },
                }
                // Deleted once handled: a crash before this means redelivery, not loss.
                if let Some(queue) = events
                    && let Err(e) = queue.delete(message).await
                {
                    let _ = writeln!(log, "events: {e}");
                }
            }
        }
    }
}

/// Events are collected until this long after the last one...
const DEBOUNCE_QUIET: std::time::Duration = std::time::Duration::from_secs(2);
/// ...or this long after the first, so ten hosts joining cause one reconcile.
const DEBOUNCE_MAX: std::time::Duration = std::time::Duration::from_secs(10);
