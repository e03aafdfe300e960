//! `stevedore install`, `uninstall` and `iam-policy`: what a cluster needs
//! before the controller runs.

use std::io::Write;

use clap::ValueEnum;

use super::{Endpoint, exit, write_json};

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The cluster, by name or ARN.
    #[arg(long, value_parser = super::cluster_name)]
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
    /// The cluster, by name or ARN.
    #[arg(long, value_parser = super::cluster_name)]
    pub cluster: String,
    #[arg(long)]
    pub queue_name: Option<String>,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Debug, clap::Args)]
pub struct IamArgs {
    /// The cluster in the controller's own account (with --specs: may be
    /// left out when every cluster is in another account).
    #[arg(long, required_unless_present = "specs", value_parser = super::cluster_name)]
    pub cluster: Option<String>,
    /// Policy files or directories: for each account their Cluster
    /// documents name a role in, print that role's permissions and trust
    /// policy, and add `sts:AssumeRole` to the controller's policy.
    #[arg(long)]
    pub specs: Vec<std::path::PathBuf>,
    /// With --specs: the controller's own role, which the roles in other
    /// accounts trust.
    #[arg(long, requires = "specs", value_name = "ARN")]
    pub controller_role: Option<String>,
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

pub fn iam_policy(args: IamArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    use crate::setup::iam;
    let own = args.cluster.as_deref().map(|cluster| {
        let queue = args
            .queue_name
            .clone()
            .unwrap_or_else(|| iam::default_queue(cluster));
        let scope = iam::Scope {
            cluster,
            region: args.region.as_deref(),
            account: args.account.as_deref(),
            queue: &queue,
        };
        match (args.role, &args.lease_table) {
            (IamRole::Controller, Some(table)) => {
                iam::with_lease(iam::policy(&scope), &scope, table)
            }
            (IamRole::Controller, None) => iam::policy(&scope),
            (IamRole::Installer, _) => iam::installer_policy(&scope),
        }
    });
    if args.specs.is_empty() {
        let policy = own.unwrap_or_default();
        return write_json(&policy, out).map_or(exit::USAGE, |()| exit::OK);
    }
    let specs = match super::policies_or_report(crate::spec::load_paths(&args.specs), err) {
        Ok(specs) => specs,
        Err(code) => return code,
    };
    let controller_role = args
        .controller_role
        .as_deref()
        .unwrap_or("arn:aws:iam::CONTROLLER_ACCOUNT:role/CONTROLLER_ROLE");
    write_json(
        &accounts_policies(own, &specs.clusters, controller_role),
        out,
    )
    .map_or(exit::USAGE, |()| exit::OK)
}

/// `iam-policy --specs`: the controller's policy (its own cluster's, if
/// any, with `sts:AssumeRole` on every role the Cluster documents name),
/// and for each such role its permissions and its trust policy.
fn accounts_policies(
    own: Option<serde_json::Value>,
    clusters: &[crate::spec::Cluster],
    controller_role: &str,
) -> serde_json::Value {
    use crate::setup::iam;
    use std::collections::BTreeMap;
    let mut roles: BTreeMap<&crate::spec::cluster::AssumedRole, Vec<(&str, &str)>> =
        BTreeMap::new();
    for c in clusters {
        if let Some(role) = &c.role {
            roles.entry(role).or_default().push((&c.name, &c.region));
        }
    }
    let arns: Vec<&str> = roles.keys().map(|r| r.arn.as_str()).collect();
    let targets: Vec<serde_json::Value> = roles
        .iter()
        .map(|(role, clusters)| {
            serde_json::json!({
                "account": role.account(),
                "roleArn": role.arn,
                "clusters": clusters.iter().map(|(c, r)| format!("{r}/{c}")).collect::<Vec<_>>(),
                "permissions": iam::target_role_policy(role.account(), clusters),
                "trustPolicy": iam::trust_policy(controller_role, role.external_id.as_deref()),
            })
        })
        .collect();
    serde_json::json!({
        "controller": iam::with_assume_role(own.unwrap_or_else(|| serde_json::json!({})), &arns),
        "targets": targets,
    })
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
