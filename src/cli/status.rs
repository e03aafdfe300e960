//! `stevedore status`: a running controller's /status, as a table or JSON.

use std::io::Write;

use super::{Output, exit, write_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the controller serves its status.
    #[arg(long, default_value = "http://127.0.0.1:9464")]
    pub url: String,
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// How long to wait for the whole answer (connecting included).
    #[arg(long, default_value = "10s", value_parser = super::duration)]
    pub timeout: std::time::Duration,
}

pub fn status(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let address = format!("{}/status", args.url.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(args.timeout))
        .build()
        .into();
    let doc: crate::status::StatusDoc = match agent
        .get(&address)
        .call()
        .and_then(|mut r| r.body_mut().read_json())
    {
        Ok(doc) => doc,
        Err(e) => {
            let _ = writeln!(err, "error: {address}: {e}");
            return exit::USAGE;
        }
    };
    let written = match args.output {
        Output::Json => write_json(&doc, out),
        Output::Human => write_status(&doc, out),
    };
    written.map_or(exit::USAGE, |()| exit::OK)
}

fn write_status(doc: &crate::status::StatusDoc, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "ready: {}", doc.ready)?;
    if doc.clusters.iter().any(|c| !c.held) {
        let names = |held: bool| -> String {
            let names: Vec<&str> = doc
                .clusters
                .iter()
                .filter(|c| c.held == held)
                .map(|c| c.name.as_str())
                .collect();
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        };
        writeln!(out, "holds: {}", names(true))?;
        writeln!(out, "held elsewhere: {}", names(false))?;
    }
    let rows: Vec<[String; 5]> = doc
        .policies
        .iter()
        .map(|p| {
            let since = p
                .conditions
                .iter()
                .find(|c| c.kind == "Satisfied")
                .map_or(String::new(), |c| c.last_transition_time.clone());
            let message = p
                .conditions
                .first()
                .map_or(String::new(), |c| c.message.clone());
            [
                p.cluster.clone(),
                format!("{}/{}", p.policy, p.service),
                p.state.clone(),
                since,
                message,
            ]
        })
        .collect();
    let header = ["CLUSTER", "POLICY/SERVICE", "STATE", "SINCE", "MESSAGE"];
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 5]| {
        format!(
            "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        )
    };
    writeln!(out, "{}", line(header))?;
    for r in &rows {
        writeln!(
            out,
            "{}",
            line([&r[0], &r[1], &r[2], &r[3], &r[4]]).trim_end()
        )?;
    }
    if !doc.budgets.is_empty() {
        writeln!(out, "\nbudgets:")?;
        for b in &doc.budgets {
            writeln!(
                out,
                "  {}/{}: {}",
                b.cluster,
                b.usage.budget,
                b.usage.summary()
            )?;
        }
    }
    if !doc.last_actions.is_empty() {
        writeln!(out, "\nlast actions:")?;
        for a in &doc.last_actions {
            writeln!(
                out,
                "  {} {}/{}/{}: {} [{}]",
                a.time, a.cluster, a.policy, a.service, a.action, a.result
            )?;
        }
    }
    Ok(())
}
