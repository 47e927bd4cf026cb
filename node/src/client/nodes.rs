//! `knit node ...`.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use knit_scheduler::Availability;

use super::filter::{self, Filters};
use super::records::Task;
use super::{Client, word};
use crate::api::NodeSummary;
use crate::cli::NodeCommand;
use crate::cluster::NodeSpec;
use crate::flags::pairs;

pub(super) async fn run(client: &Client, command: NodeCommand) -> Result<()> {
    match command {
        NodeCommand::Ls(args) => {
            let filters = Filters::parse(&args.filters, filter::NODE_KEYS)?;
            let mut nodes: Vec<NodeSummary> = client.get("/v1/nodes").await?;
            nodes.retain(|n| filters.node(n));
            if args.quiet {
                nodes.iter().for_each(|n| println!("{}", n.id));
            } else {
                super::output::print(&nodes, &args.format)?;
            }
        }
        NodeCommand::Ps { node, list } => {
            let filters = Filters::parse(&list.filters, filter::TASK_KEYS)?;
            let node: NodeSummary = client.get(&format!("/v1/nodes/{node}")).await?;
            let services: Vec<crate::api::ServiceSummary> = client.get("/v1/services").await?;
            let mut tasks = Vec::new();
            for service in services.iter().filter(|s| s.invalid.is_none()) {
                let rows: Vec<crate::api::TaskRow> = client
                    .get(&format!("/v1/services/{}/ps", service.name))
                    .await?;
                tasks.extend(
                    rows.into_iter()
                        .filter(|t| t.node_id == node.id && filters.task(t))
                        .map(|row| Task {
                            row,
                            service: service.name.clone(),
                            image: service.image.clone(),
                        }),
                );
            }
            super::services::show_tasks(&tasks, &list)?;
        }
        NodeCommand::Rm {
            force,
            rotate_token,
            nodes,
        } => {
            let mut failed = 0;
            for node in &nodes {
                let path = format!("/v1/nodes/{node}?force={force}");
                match client.delete::<NodeSummary>(&path).await {
                    Ok(removed) => println!("{}", removed.id),
                    Err(e) => {
                        eprintln!("error: {node}: {e:#}");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} of {} node(s) not removed", nodes.len());
            }
            if rotate_token {
                super::rotate_token(client).await?;
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
            applied(client, &updated).await?;
            println!("{}", updated.id);
        }
    }
    Ok(())
}

/// How long `node update` waits for the node itself to have the change.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until the node acts on its new spec, so that what the operator does next (a
/// `service scale` through another peer, say) comes after the change on that node. A node
/// that is down gets it when it returns; one that does not answer in time gets a warning.
async fn applied(client: &Client, updated: &NodeSummary) -> Result<()> {
    let started = Instant::now();
    let mut node = updated.clone();
    loop {
        if node.spec_applied {
            return Ok(());
        }
        if !node.state.is_active() {
            eprintln!(
                "note: {} is {}; it takes the change when it returns",
                node.name,
                word(&node.state)
            );
            return Ok(());
        }
        if started.elapsed() > APPLY_TIMEOUT {
            eprintln!(
                "warning: {} has not confirmed the change within {APPLY_TIMEOUT:?}; it takes it when the state reaches it (see `knit node inspect {}`)",
                node.name, node.name
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        node = client.get(&format!("/v1/nodes/{}", updated.id)).await?;
    }
}
