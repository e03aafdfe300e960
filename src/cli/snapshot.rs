//! `stevedore snapshot`: a live cluster written as a scenario file, for
//! what-ifs on a copy (see [`crate::sim::capture`]).

use std::io::Write;
use std::path::PathBuf;

use super::{Endpoint, exit, policies_or_report};
use crate::backend::Backend;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster to copy, by name or ARN.
    #[arg(long, value_parser = super::cluster_name)]
    pub cluster: String,
    /// Policy files or directories: those holding a policy or budget for
    /// the cluster are named in the scenario (by absolute path), and
    /// Cluster documents say where the cluster is.
    #[arg(long)]
    pub specs: Vec<PathBuf>,
    /// Write the scenario here (default: standard output).
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

pub fn snapshot(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let specs = if args.specs.is_empty() {
        crate::spec::Specs::default()
    } else {
        match policies_or_report(crate::spec::load_paths(&args.specs), err) {
            Ok(specs) => specs,
            Err(code) => return code,
        }
    };
    let cluster = args
        .cluster
        .rsplit('/')
        .next()
        .unwrap_or(&args.cluster)
        .to_owned();
    // The files that say something about this cluster, by absolute path
    // (the scenario resolves paths from its own directory).
    let mut files: Vec<String> = specs
        .policies
        .iter()
        .filter(|p| p.target.cluster.name == cluster)
        .map(|p| p.origin.name.file.clone())
        .chain(
            specs
                .budgets
                .iter()
                .filter(|b| b.cluster.name == cluster)
                .map(|b| b.origin.file.clone()),
        )
        .map(|f| {
            std::fs::canonicalize(&f)
                .map(|p| p.display().to_string())
                .unwrap_or(f)
        })
        .collect();
    files.sort();
    files.dedup();

    let runtime = super::runtime();
    let clients = runtime.block_on(crate::aws::AwsClients::connect(
        args.endpoint.endpoint_url.as_deref(),
    ));
    let backend = crate::aws::Router::new(&clients);
    backend.locate(&specs.clusters);
    let read = runtime.block_on(async {
        let mut snapshot = backend.snapshot(&cluster).await?;
        // Scale-in protection is not in any Describe call: read it apart.
        let ids: Vec<String> = snapshot.tasks.iter().map(|t| t.id.clone()).collect();
        let protected = backend.protected_tasks(&cluster, &ids).await?;
        for t in &mut snapshot.tasks {
            t.protected = protected.contains(&t.id);
        }
        Ok::<_, crate::backend::Error>(snapshot)
    });
    let snapshot = match read {
        Ok(snapshot) => snapshot,
        Err(e) => {
            let _ = writeln!(err, "error: {cluster}: {e}");
            return exit::INVALID;
        }
    };
    let captured = crate::sim::capture::capture(&snapshot, &files);
    let text = match captured.to_yaml() {
        Ok(text) => text,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return exit::USAGE;
        }
    };
    let written = match &args.out {
        Some(path) => std::fs::write(path, &text),
        None => out.write_all(text.as_bytes()),
    };
    if let Err(e) = written {
        let _ = writeln!(err, "error: {e}");
        return exit::USAGE;
    }
    let spec = &captured.scenario.spec;
    let _ = writeln!(
        err,
        "{cluster}: {} hosts, {} services, {} running tasks, {} policy files{}",
        spec.hosts.len(),
        spec.services.len(),
        spec.services
            .iter()
            .map(|s| s.running_tasks.len())
            .sum::<usize>(),
        files.len(),
        match captured.notes.len() {
            0 => String::new(),
            n => format!("; {n} notes in the file's header"),
        }
    );
    exit::OK
}
