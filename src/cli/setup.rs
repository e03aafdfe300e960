//! `stevedore install`, `uninstall` and `iam-policy`: what a cluster needs
//! before the controller runs.

use std::io::Write;

use clap::ValueEnum;

use super::{Endpoint, exit, write_json};

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    #[arg(long)]
    pub cluster: String,
    /// Default: stevedore-CLUSTER.
    #[arg(long)]
    pub queue_name: Option<String>,
    /// Say what would be created; create nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    #[arg(long)]
    pub cluster: String,
    #[arg(long)]
    pub queue_name: Option<String>,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Debug, clap::Args)]
pub struct IamArgs {
    #[arg(long)]
    pub cluster: String,
    /// Scope to one region (default: any).
    #[arg(long)]
    pub region: Option<String>,
    /// Scope to one account (default: any).
    #[arg(long)]
    pub account: Option<String>,
    /// The SQS queue of the cluster's ECS events (default: stevedore-CLUSTER).
    #[arg(long)]
    pub queue_name: Option<String>,
    /// With leader election (`run --lease-table`): the lease's table.
    #[arg(long)]
    pub lease_table: Option<String>,
    /// Whose policy: the controller's task role, or the operator who
    /// runs `install` and `uninstall`.
    #[arg(long = "for", value_enum, default_value_t = IamRole::Controller)]
    pub role: IamRole,
}

/// Whose IAM policy `iam-policy` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IamRole {
    /// The controller's task role: read the cluster, stop tasks, update
    /// services, read the event queue.
    Controller,
    /// Whoever runs `install` and `uninstall`: the queue and the rule.
    Installer,
}

pub fn install(args: InstallArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let InstallArgs {
        cluster,
        queue_name,
        dry_run,
        endpoint,
    } = args;
    installer(endpoint.endpoint_url.as_deref(), err, |clients, runtime| {
        let queue = queue_name.unwrap_or_else(|| crate::setup::iam::default_queue(&cluster));
        runtime
            .block_on(crate::setup::install::install(
                clients, &cluster, &queue, dry_run, out,
            ))
            .map(drop)
    })
}

pub fn uninstall(args: UninstallArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let UninstallArgs {
        cluster,
        queue_name,
        endpoint,
    } = args;
    installer(endpoint.endpoint_url.as_deref(), err, |clients, runtime| {
        let queue = queue_name.unwrap_or_else(|| crate::setup::iam::default_queue(&cluster));
        runtime.block_on(crate::setup::install::uninstall(
            clients, &cluster, &queue, out,
        ))
    })
}

pub fn iam_policy(args: IamArgs, out: &mut dyn Write) -> u8 {
    use crate::setup::iam;
    let queue = args
        .queue_name
        .unwrap_or_else(|| iam::default_queue(&args.cluster));
    let scope = iam::Scope {
        cluster: &args.cluster,
        region: args.region.as_deref(),
        account: args.account.as_deref(),
        queue: &queue,
    };
    let policy = match (args.role, args.lease_table) {
        (IamRole::Controller, Some(table)) => iam::with_lease(iam::policy(&scope), &scope, &table),
        (IamRole::Controller, None) => iam::policy(&scope),
        (IamRole::Installer, _) => iam::installer_policy(&scope),
    };
    write_json(&policy, out).map_or(exit::USAGE, |()| exit::OK)
}

/// Runs `install` or `uninstall` with connected clients, reporting failure.
fn installer(
    endpoint_url: Option<&str>,
    err: &mut dyn Write,
    work: impl FnOnce(
        &crate::setup::install::Clients,
        &tokio::runtime::Runtime,
    ) -> crate::setup::install::Result<()>,
) -> u8 {
    let runtime = super::runtime();
    let clients = runtime.block_on(crate::setup::install::Clients::connect(endpoint_url));
    match work(&clients, &runtime) {
        Ok(()) => exit::OK,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            exit::INVALID
        }
    }
}
