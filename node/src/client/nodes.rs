//! `knit node ...`.

use anyhow::{Result, bail};
use knit_scheduler::Availability;

use super::{Client, word};
use crate::api::NodeSummary;
use crate::cli::{Format, NodeCommand};
use crate::cluster::NodeSpec;
use crate::flags::pairs;

pub(super) async fn run(client: &Client, command: NodeCommand) -> Result<()> {
    match command {
        NodeCommand::Ls(args) => {
            let nodes: Vec<NodeSummary> = client.get("/v1/nodes").await?;
            match args.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&nodes)?),
                Format::Table => print(&nodes),
            }
        }
        NodeCommand::Inspect { node } => {
            let node: NodeSummary = client.get(&format!("/v1/nodes/{node}")).await?;
            println!("{}", serde_json::to_string_pretty(&node)?);
        }
        NodeCommand::Update {
            availability,
            label_add,
            label_rm,
            node,
        } => {
            let current: NodeSummary = client.get(&format!("/v1/nodes/{node}")).await?;
            let availability = match availability.as_deref() {
                None => current.availability,
                Some("active") => Availability::Active,
                Some("pause") => Availability::Pause,
                Some("drain") => Availability::Drain,
                Some(other) => {
                    bail!("--availability {other:?} is not valid: use active, pause or drain")
                }
            };
            let mut labels = current.labels.clone();
            for key in &label_rm {
                labels.remove(key);
            }
            labels.extend(pairs("label-add", &label_add)?);
            let spec = NodeSpec {
                availability,
                labels: Some(labels),
                auto_drained: false,
            };
            let updated: NodeSummary = client
                .post(&format!("/v1/nodes/{}/spec", current.id), &spec)
                .await?;
            println!("{}", updated.id);
        }
    }
    Ok(())
}

fn pct(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}%"))
}

fn print(nodes: &[NodeSummary]) {
    println!(
        "{:<14} {:<16} {:<22} {:<8} {:<12} {:>6} {:>8} {:>5} {:>5} {:>5}  LABELS",
        "ID", "NAME", "ADDR", "STATE", "AVAILABILITY", "EPOCH", "REPLICAS", "CPU", "MEM", "DISK"
    );
    for n in nodes {
        let id = format!(
            "{}{}",
            &n.id[..12.min(n.id.len())],
            if n.is_self { " *" } else { "" }
        );
        let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let t = n.telemetry.as_ref();
        println!(
            "{:<14} {:<16} {:<22} {:<8} {:<12} {:>6} {:>8} {:>5} {:>5} {:>5}  {}",
            id,
            n.name,
            n.addr,
            word(&n.state),
            word(&n.availability),
            n.epoch,
            n.replicas,
            pct(t.map(|t| f64::from(t.cpu_percent))),
            pct(t.and_then(crate::telemetry::Telemetry::memory_percent)),
            pct(t.and_then(crate::telemetry::Telemetry::disk_percent)),
            labels.join(",")
        );
        if let Some(note) = n
            .condition
            .as_ref()
            .map(|c| c.note.as_str())
            .filter(|n| !n.is_empty())
        {
            println!("{:<14} ^ {note}", "");
        }
    }
}
