//! `stevedore run`: the controller against live ECS, with its status
//! server, leader election and audit events around the loop of
//! [`crate::controller::run`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::ValueEnum;

use super::{Endpoint, exit};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy files or directories (watched for changes), or one git
    /// repository URL (`https://`, `ssh://`, `file://`, `git@host:path`),
    /// fetched every `--git-poll`. For a private https repository, the
    /// token may come from STEVEDORE_GIT_TOKEN (user name:
    /// STEVEDORE_GIT_USERNAME, default x-access-token).
    #[arg(long, required = true)]
    pub specs: Vec<PathBuf>,
    #[command(flatten)]
    pub git: GitArgs,
    /// Only this cluster, by name or ARN (by default every cluster the
    /// policies name).
    #[arg(long, value_parser = super::cluster_name)]
    pub cluster: Option<String>,
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// One pass, then exit (for cron, a scheduled task or a first look).
    #[arg(long)]
    pub once: bool,
    /// The SQS queue of the cluster's ECS events (see `install`): the
    /// controller reconciles soon after an event, not only on resync.
    #[arg(long)]
    pub queue_url: Option<String>,
    /// Plan and report every action; execute none.
    #[arg(long)]
    pub dry_run: bool,
    /// Time between full resyncs.
    #[arg(long, default_value = "5m", value_parser = super::duration)]
    pub resync: std::time::Duration,
    /// Log lines for people (`human`), or one JSON object per line with
    /// each action's cluster, policy, service, rule and reason as fields.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub lease: LeaseArgs,
    /// Publish every action and status change to this EventBridge bus
    /// (`default` for the account's default bus), source `stevedore`.
    #[arg(long)]
    pub audit_bus: Option<String>,
    /// Serve /healthz, /readyz, /metrics and /status here (default
    /// 127.0.0.1:9464; `off` serves nothing). Port 0 picks a free port;
    /// the address is logged.
    #[arg(long)]
    pub listen: Option<String>,
}

/// With the specs in a git repository: which ref, how often, where.
#[derive(Debug, clap::Args)]
pub struct GitArgs {
    /// With a git repository: the branch or tag to follow.
    #[arg(long, default_value = "main")]
    pub git_ref: String,
    /// With a git repository: how often to fetch.
    #[arg(long, default_value = "30s", value_parser = super::duration)]
    pub git_poll: std::time::Duration,
    /// With a git repository: where to keep its clone (default: a
    /// directory under the system's temporary directory).
    #[arg(long)]
    pub git_cache: Option<PathBuf>,
}

/// Leader election among replicas.
#[derive(Debug, clap::Args)]
pub struct LeaseArgs {
    /// Leader election: the DynamoDB table (partition key `name`, a
    /// string) holding the lease. Replicas with the same table and
    /// lease name elect one to act; the others plan and report.
    #[arg(long)]
    pub lease_table: Option<String>,
    /// The lease's name in the table.
    #[arg(long, default_value = "stevedore")]
    pub lease_name: String,
    /// How long a write holds the lease; a stalled leader stops acting
    /// a third of it before another replica may start.
    #[arg(long, default_value = "15s", value_parser = super::duration)]
    pub lease_duration: std::time::Duration,
    /// Share the clusters among the replicas instead of electing one
    /// leader: a lease per cluster in the same table, each replica
    /// holding about C/N of them (N from the replicas' heartbeats), and
    /// reading and acting on only those.
    #[arg(long, requires = "lease_table")]
    pub share_clusters: bool,
}

/// How `run` logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Logs to standard output, in the chosen format.
fn init_logging(format: LogFormat) {
    // A second call (tests run commands in one process) keeps the first.
    match format {
        LogFormat::Human => {
            let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let _ = tracing::subscriber::set_global_default(human_logs(std::io::stdout, ansi));
        }
        LogFormat::Json => {
            let _ = tracing_subscriber::fmt()
                .with_writer(std::io::stdout)
                .with_target(false)
                .json()
                .flatten_event(true)
                .try_init();
        }
    }
}

/// The human log format, writing to `writer`. Every field value (the
/// message too) has its control characters escaped: an ARN or a message
/// from outside (an event, an API error, a policy file) may hold a newline
/// or a terminal escape, which would forge a log line or recolour the
/// terminal. (The JSON format escapes them already.)
fn human_logs<W>(writer: W, ansi: bool) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::field::MakeExt;
    let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = escape_controls(&format!("{value:?}"));
        if field.name() == "message" {
            write!(w, "{text}")
        } else {
            write!(w, "{field}={text}")
        }
    })
    .delimited(" ");
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_target(false)
        .with_ansi(ansi)
        .fmt_fields(fields)
        .finish()
}

/// `text` with each control character written as an escape (`\n`, `\u{1b}`).
fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Where `run` serves its status by default.
const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// The repository URL `--specs` names, with the token of
/// `STEVEDORE_GIT_TOKEN` if set (see [`crate::source::git::with_token`]).
pub(super) fn git_url(url: &std::path::Path, err: &mut dyn Write) -> Result<String, u8> {
    use crate::source::git::{TOKEN_USERNAME, TOKEN_VARIABLE, USERNAME_VARIABLE};
    let url = url.to_string_lossy().into_owned();
    let Some(token) = std::env::var_os(TOKEN_VARIABLE) else {
        return Ok(url);
    };
    let username = std::env::var(USERNAME_VARIABLE).unwrap_or_else(|_| TOKEN_USERNAME.to_owned());
    crate::source::git::with_token(&url, &username, &token.to_string_lossy()).map_err(|e| {
        let _ = writeln!(err, "error: {e}");
        exit::USAGE
    })
}

pub fn run(args: Args, err: &mut dyn Write) -> u8 {
    let Args {
        specs,
        git,
        cluster,
        endpoint,
        once,
        queue_url,
        dry_run,
        resync,
        log_format,
        lease,
        audit_bus,
        listen,
    } = args;
    let git = match &specs[..] {
        [url] if crate::source::git::is_url(url) => {
            let cache = git.git_cache.unwrap_or_else(|| {
                // One clone per URL and ref.
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (url, &git.git_ref).hash(&mut h);
                std::env::temp_dir().join(format!("stevedore-git-{:016x}", h.finish()))
            });
            let url = match git_url(url, err) {
                Ok(url) => url,
                Err(code) => return code,
            };
            Some(crate::controller::GitSpecs {
                source: crate::source::git::GitSource {
                    url,
                    reference: git.git_ref,
                    cache,
                },
                poll: git.git_poll,
            })
        }
        _ => None,
    };
    init_logging(log_format);
    let runtime = super::runtime();
    // One configuration, and one throttle count, for every client.
    let clients = runtime.block_on(crate::aws::AwsClients::connect(
        endpoint.endpoint_url.as_deref(),
    ));
    let audit = audit_bus.map(|bus| crate::status::audit::Audit::new(clients.eventbridge(), &bus));
    let backend = crate::aws::Router::new(&clients);
    let observer = std::sync::Arc::new(crate::status::Observer::new());
    // Leader election: the lease is kept by a task of its own, so a long
    // pass does not let it lapse; writes are fenced by it.
    let (clusters_named, named) = tokio::sync::watch::channel(Vec::<String>::new());
    let holder = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "stevedore".into()),
        std::process::id()
    );
    let (leader, stop_keeping) = match lease.lease_table {
        None => (None, None),
        Some(table) if lease.share_clusters => {
            let shares = crate::controller::lease::Shares::new(
                clients.dynamodb(),
                &table,
                &lease.lease_name,
                &holder,
                lease.lease_duration,
            );
            // As for one lease: a table that cannot be written is an error now.
            if let Err(e) = runtime.block_on(shares.heartbeat(crate::model::wall_clock())) {
                let _ = writeln!(
                    err,
                    "error: {e}\n(the table must exist, with the string partition key `name`, and the role must allow dynamodb:UpdateItem and dynamodb:Scan on it: see `stevedore iam-policy --lease-table`)"
                );
                return exit::USAGE;
            }
            let (send, receive) = tokio::sync::watch::channel(
                crate::controller::lease::Standings::PerCluster(Default::default()),
            );
            let (stop, stopped) = tokio::sync::oneshot::channel();
            let observer = std::sync::Arc::clone(&observer);
            runtime.spawn(crate::controller::lease::keep_shared(
                shares,
                named,
                send,
                move |answered| observer.lease_answered(answered),
                stopped,
            ));
            (Some(receive), Some(stop))
        }
        Some(table) => {
            let duration = lease.lease_duration;
            let mut lease = crate::controller::lease::Lease::new(
                clients.dynamodb(),
                &table,
                &lease.lease_name,
                &holder,
                duration,
            );
            // The first pass knows its standing. A lease that cannot be
            // written at all (no such table, access denied) is an error
            // now: a replica that can neither lead nor follow would
            // otherwise sit idle forever looking healthy.
            let first = match runtime.block_on(lease.tick(crate::model::wall_clock())) {
                Ok(standing) => standing.clone(),
                Err(e) => {
                    let _ = writeln!(
                        err,
                        "error: {e}\n(the table must exist, with the string partition key `name`, and the role must allow dynamodb:UpdateItem on it: see `stevedore iam-policy --lease-table`)"
                    );
                    return exit::USAGE;
                }
            };
            let (send, receive) =
                tokio::sync::watch::channel(crate::controller::lease::Standings::All(first));
            let (stop, stopped) = tokio::sync::oneshot::channel();
            let observer = std::sync::Arc::clone(&observer);
            runtime.spawn(crate::controller::lease::keep(
                lease,
                send,
                move |answered| observer.lease_answered(answered),
                stopped,
            ));
            (Some(receive), Some(stop))
        }
    };
    let options = crate::controller::RunOptions {
        cluster,
        once,
        dry_run,
        resync,
        audit,
        leader: leader.clone(),
        clusters_named: Some(clusters_named),
        policies: match git {
            Some(git) => crate::controller::PolicySource::Git(git),
            None => crate::controller::PolicySource::Files(specs),
        },
        clock: crate::controller::Clock::Wall,
    };
    let events = queue_url
        .as_deref()
        .map(|url| crate::aws::SqsEvents::new(clients.sqs(), url));
    // The handlers are installed now, before the first pass: a signal that
    // comes while it stops tasks waits for the batch instead of ending the
    // process with it half done (a handler installed only when the loop
    // first waits would leave the default action, death, until then).
    #[cfg(unix)]
    let shutdown = {
        let _context = runtime.enter();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM can be watched");
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .expect("SIGINT can be watched");
        async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = term.recv() => {}
            }
        }
    };
    #[cfg(not(unix))]
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    // The status server runs with the controller and stops with it.
    let (stop_serving, stopped) = tokio::sync::oneshot::channel::<()>();
    match listen.as_deref() {
        _ if once => {}
        Some("off") => {}
        address => {
            let explicit = address.is_some();
            let address = address.unwrap_or(DEFAULT_LISTEN);
            match runtime.block_on(tokio::net::TcpListener::bind(address)) {
                Ok(listener) => {
                    let bound = listener
                        .local_addr()
                        .map_or(address.to_owned(), |a| a.to_string());
                    tracing::info!(address = %bound, "listening on {bound} (/ for people; /healthz /readyz /metrics /status)");
                    runtime.spawn(crate::status::serve(
                        listener,
                        std::sync::Arc::clone(&observer),
                        async {
                            let _ = stopped.await;
                        },
                    ));
                }
                Err(e) if explicit => {
                    let _ = writeln!(err, "error: --listen {address}: {e}");
                    return exit::USAGE;
                }
                Err(e) => {
                    tracing::warn!(
                        "status: cannot listen on {address} ({e}); serving no status (set --listen)"
                    );
                }
            }
        }
    }
    let result = match leader {
        Some(standing) => {
            let fenced = crate::controller::lease::Fenced::new(&backend, standing);
            runtime.block_on(crate::controller::run(
                &fenced,
                events.as_ref(),
                &options,
                &observer,
                &mut |_| {},
                shutdown,
            ))
        }
        None => runtime.block_on(crate::controller::run(
            &backend,
            events.as_ref(),
            &options,
            &observer,
            &mut |_| {},
            shutdown,
        )),
    };
    let _ = stop_serving.send(());
    if let Some(stop) = stop_keeping {
        let _ = stop.send(());
    }
    match result {
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            exit::USAGE
        }
        // A run that is not `--once` ends only when asked to: a clean
        // shutdown, whatever earlier passes met.
        Ok(summary) if once && summary.failed_reconciles + summary.actions_failed > 0 => {
            exit::INVALID
        }
        Ok(_) => exit::OK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the human format wrote for one event logged with `log`.
    fn logged(log: impl FnOnce()) -> String {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let writer = move || Sink(sink.clone());
        tracing::subscriber::with_default(human_logs(writer, false), log);
        String::from_utf8(buffer.lock().unwrap().clone()).unwrap()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn outside_text_cannot_forge_a_human_log_line() {
        let arn = "arn:aws:ecs:us-east-1:1:task/x\nINFO forged line \u{1b}[31m";
        let line = logged(|| {
            tracing::warn!(
                task = %arn,
                why = ?"tab\there",
                "events: malformed message {arn}: deleted"
            )
        });
        // One line, ending in the one newline the formatter writes.
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(!line.contains('\u{1b}'), "{line}");
        assert!(
            line.contains(r"events: malformed message arn:aws:ecs:us-east-1:1:task/x\nINFO forged line \u{1b}[31m: deleted"),
            "{line}"
        );
        assert!(
            line.contains(r"task=arn:aws:ecs:us-east-1:1:task/x\nINFO"),
            "{line}"
        );
        assert!(line.contains(r#"why="tab\there""#), "{line}");
        assert!(line.contains(" WARN "), "{line}");
    }
}
