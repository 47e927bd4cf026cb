//! `knit stack ...`: stacks of services from Compose files, done client-side as Docker's
//! CLI does: the files are read here (`crate::compose`), and the stack is the services,
//! secrets and configs labelled `com.docker.stack.namespace=NAME` that the API already
//! serves. `deploy.rs` writes a stack; this file lists and removes them.

mod deploy;

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde::Serialize;

use super::Client;
use super::filter::{self, Filters};
use super::records::Task;
use crate::commands::StackCommand;
use crate::compose::NAMESPACE_LABEL;
use crate::format::output::{self, Record};
use crate::format::template::{Field, Row};
use crate::wire::{ConfigSummary, SecretSummary, ServiceSummary, TaskRow};

pub(in crate::client) async fn run(client: &Client, command: StackCommand) -> Result<()> {
    match command {
        StackCommand::Deploy {
            compose_files,
            prune,
            detach,
            name,
        } => {
            let options = deploy::Options {
                files: compose_files,
                prune,
                detach,
            };
            deploy::deploy(client, &name, &options).await
        }
        StackCommand::Ls { format } => {
            let services: Vec<ServiceSummary> = client.get("/v1/services").await?;
            let mut stacks: BTreeMap<String, usize> = BTreeMap::new();
            for stack in services.iter().filter_map(stack_of) {
                *stacks.entry(stack.to_owned()).or_default() += 1;
            }
            let rows: Vec<StackRow> = stacks
                .into_iter()
                .map(|(name, services)| StackRow { name, services })
                .collect();
            output::print(&rows, &format)
        }
        StackCommand::Services { name, list } => {
            let filters = Filters::parse(&list.filters, filter::SERVICE_KEYS)?;
            let services = members(client, &name).await?;
            let services: Vec<ServiceSummary> = services
                .into_iter()
                .filter(|s| filters.service(s))
                .collect();
            if list.quiet {
                services.iter().for_each(|s| println!("{}", s.name));
                return Ok(());
            }
            output::print(&services, &list.format)
        }
        StackCommand::Ps { name, list } => {
            let filters = Filters::parse(&list.filters, filter::TASK_KEYS)?;
            let mut tasks = Vec::new();
            for service in members(client, &name).await? {
                let rows: Vec<TaskRow> = client
                    .get(&format!("/v1/services/{}/ps", service.name))
                    .await?;
                tasks.extend(
                    rows.into_iter()
                        .filter(|t| filters.task(t))
                        .map(|row| Task {
                            row,
                            service: service.name.clone(),
                            image: service.image.clone(),
                        }),
                );
            }
            super::services::show_tasks(&tasks, &list)
        }
        StackCommand::Rm { names } => {
            let mut failed = 0;
            for name in &names {
                if let Err(e) = remove(client, name).await {
                    eprintln!("error: {e:#}");
                    failed += 1;
                }
            }
            if failed > 0 {
                bail!("{failed} stack(s) could not be removed");
            }
            Ok(())
        }
    }
}

/// The stack a service belongs to, by its label.
fn stack_of(service: &ServiceSummary) -> Option<&str> {
    service.labels.get(NAMESPACE_LABEL).map(String::as_str)
}

/// The services of stack `name`; an error when it has none.
async fn members(client: &Client, name: &str) -> Result<Vec<ServiceSummary>> {
    let services: Vec<ServiceSummary> = client.get("/v1/services").await?;
    let members: Vec<ServiceSummary> = services
        .into_iter()
        .filter(|s| stack_of(s) == Some(name))
        .collect();
    if members.is_empty() {
        bail!("nothing found in stack {name}; `knit stack ls` lists the stacks");
    }
    Ok(members)
}

/// Removes the services of stack `name`, then the secrets and configs deploy created for
/// it (named volumes stay, as Docker's: `docker volume rm` on each host removes them).
async fn remove(client: &Client, name: &str) -> Result<()> {
    let services = members(client, name).await?;
    for service in &services {
        client
            .delete::<serde_json::Value>(&format!("/v1/services/{}", service.name))
            .await?;
        println!("removed service {}", service.name);
    }
    let secrets: Vec<SecretSummary> = client.get("/v1/secrets").await?;
    for secret in secrets.iter().filter(|s| labelled(&s.labels, name)) {
        client
            .delete::<serde_json::Value>(&format!("/v1/secrets/{}", secret.name))
            .await?;
        println!("removed secret {}", secret.name);
    }
    let configs: Vec<ConfigSummary> = client.get("/v1/configs").await?;
    for config in configs.iter().filter(|c| labelled(&c.labels, name)) {
        client
            .delete::<serde_json::Value>(&format!("/v1/configs/{}", config.name))
            .await?;
        println!("removed config {}", config.name);
    }
    Ok(())
}

fn labelled(labels: &BTreeMap<String, String>, stack: &str) -> bool {
    labels.get(NAMESPACE_LABEL).is_some_and(|s| s == stack)
}

/// One stack as `stack ls` shows it.
#[derive(Debug, Clone, Serialize)]
struct StackRow {
    name: String,
    services: usize,
}

impl Row for StackRow {
    const COMMAND: &'static str = "stack ls";
    const FIELDS: &'static [Field] = &[
        Field::new("Name", "NAME"),
        Field::new("Services", "SERVICES"),
    ];

    fn field(&self, name: &str) -> String {
        match name {
            "Name" => self.name.clone(),
            "Services" => self.services.to_string(),
            _ => String::new(),
        }
    }

    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }
}

impl Record for StackRow {
    const TABLE: &'static str = r"table {{.Name}}\t{{.Services}}";
}
