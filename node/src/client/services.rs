//! `knit service ...`.

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use knit_scheduler::ServiceSpec;
use knit_scheduler::spec::{Limits, Mode, Protocol};

use super::filter::{self, Filters};
use super::progress;
use super::records::Task;
use super::{ApiRefusal, Client};
use crate::cli::{Format, ServiceCommand};
use crate::format::output;
use crate::wire::{ServiceSummary, TaskRow, UpdateRequest};

/// Attempts at an update that keeps losing a race with another writer.
const UPDATE_ATTEMPTS: usize = 3;

pub(super) async fn run(client: &Client, command: ServiceCommand) -> Result<()> {
    match command {
        ServiceCommand::Create(args) => {
            let spec = args.to_spec(&limits(client).await)?;
            super::registries::check_auth(client, args.registry_auth, spec.image.as_deref()).await;
            let created: ServiceSpec = client.post("/v1/services", &spec).await?;
            println!("{}", created.name);
            warn_udp(&created);
            if args.detach.follows(std::io::stdout().is_terminal()) {
                progress::converge(client, &created).await?;
            }
        }
        ServiceCommand::Ls(args) => {
            let filters = Filters::parse(&args.filters, filter::SERVICE_KEYS)?;
            let mut services: Vec<ServiceSummary> = client.get("/v1/services").await?;
            services.retain(|s| filters.service(s));
            if args.quiet {
                services.iter().for_each(|s| println!("{}", s.name));
            } else {
                output::print(&services, &args.format)?;
            }
        }
        ServiceCommand::Ps {
            name,
            history,
            list,
        } => {
            let filters = Filters::parse(&list.filters, filter::TASK_KEYS)?;
            let mut tasks: Vec<TaskRow> = client
                .get(&format!("/v1/services/{name}/ps?history={history}"))
                .await?;
            tasks.retain(|t| filters.task(t));
            // Only a template can ask for the image, which the rows do not carry: it is
            // what `service ls` shows.
            let image = match list.format {
                Format::Template(_) => client
                    .get::<Vec<ServiceSummary>>("/v1/services")
                    .await?
                    .into_iter()
                    .find(|s| s.name == name)
                    .map(|s| s.image)
                    .unwrap_or_default(),
                Format::Table | Format::Json => String::new(),
            };
            let tasks: Vec<Task> = tasks
                .into_iter()
                .map(|row| Task {
                    row,
                    service: name.clone(),
                    image: image.clone(),
                })
                .collect();
            show_tasks(&tasks, &list)?;
        }
        ServiceCommand::Inspect { names } => {
            let mut specs = Vec::new();
            for name in names {
                specs.push(
                    client
                        .get::<ServiceSpec>(&format!("/v1/services/{name}"))
                        .await?,
                );
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&with_vips(client, specs).await?)?
            );
        }
        ServiceCommand::Scale { targets, detach } => {
            let scaled = scale(client, &targets).await?;
            if detach.follows(std::io::stdout().is_terminal()) {
                for spec in &scaled {
                    progress::converge(client, spec).await?;
                }
            }
        }
        ServiceCommand::Update(args) => {
            let limits = limits(client).await;
            let updated = update(client, &args.name, args.force, |current| {
                let next = args.apply(current, &limits)?;
                if !args.force && same(current, &next) {
                    Ok(None)
                } else {
                    Ok(Some(next))
                }
            })
            .await?;
            match updated {
                Some(spec) => {
                    println!("{}", spec.name);
                    super::registries::check_auth(
                        client,
                        args.registry_auth,
                        spec.image.as_deref(),
                    )
                    .await;
                    warn_udp(&spec);
                    if !args.detach {
                        progress::converge(client, &spec).await?;
                    }
                }
                None => println!("{}: nothing to change (use --force to redeploy)", args.name),
            }
        }
        ServiceCommand::Logs {
            name,
            follow,
            since,
            tail,
            timestamps,
        } => {
            let query = super::logs::LogsQuery {
                follow,
                since,
                tail,
                timestamps,
            };
            super::logs::run(client, &name, &query).await?;
        }
        ServiceCommand::Rollback { name, detach } => {
            let spec: ServiceSpec = client
                .post(&format!("/v1/services/{name}/rollback"), &())
                .await?;
            println!(
                "{} rolled back to the previous spec (now version {})",
                spec.name, spec.version
            );
            if detach.follows(std::io::stdout().is_terminal()) {
                progress::converge(client, &spec).await?;
            }
        }
        ServiceCommand::Rm { names } => {
            super::remove_each(client, "/v1/services", &names, "service(s)").await?;
        }
    }
    Ok(())
}

/// The cluster's limits, to check a spec before sending it; the most permissive any
/// cluster may have if the peer does not say (the peer checks again).
async fn limits(client: &Client) -> Limits {
    client
        .get("/v1/cluster/limits")
        .await
        .unwrap_or(Limits::CEILING)
}

/// `specs` as JSON, each with `vip`: its virtual IP on the peer asked (`null` when that
/// peer serves no service names).
async fn with_vips(client: &Client, specs: Vec<ServiceSpec>) -> Result<Vec<serde_json::Value>> {
    let rows: Vec<crate::wire::ServiceSummary> = client.get("/v1/services").await?;
    specs
        .into_iter()
        .map(|spec| {
            let vip = rows
                .iter()
                .find(|r| r.name == spec.name)
                .and_then(|r| r.vip.clone());
            let mut value = serde_json::to_value(&spec)?;
            if let Some(object) = value.as_object_mut() {
                object.insert("vip".to_owned(), vip.into());
            }
            Ok(value)
        })
        .collect()
}

/// Says, on stderr, that published UDP ports are not routed by the ingress.
fn warn_udp(spec: &ServiceSpec) {
    let udp: Vec<String> = spec
        .ports
        .iter()
        .filter(|p| p.protocol == Protocol::Udp)
        .map(|p| format!("{}/udp", p.published_port().unwrap_or(p.target)))
        .collect();
    if !udp.is_empty() {
        eprintln!(
            "warning: {}: the ingress and the service's address route TCP only; {} reach each replica only on its own host port (`knit service ps {}` lists them)",
            spec.name,
            udp.join(", "),
            spec.name
        );
    }
}

/// Whether two specs differ only in their bookkeeping (versions, previous).
fn same(a: &ServiceSpec, b: &ServiceSpec) -> bool {
    let strip = |s: &ServiceSpec| ServiceSpec {
        version: 0,
        previous: None,
        ..s.clone()
    };
    strip(a) == strip(b)
}

/// Reads the spec, changes it with `change` (`None`: nothing to do), and writes it back
/// naming the version it read; retries when another writer got there first. `redeploy`
/// replaces the replicas even if what they run did not change.
async fn update(
    client: &Client,
    name: &str,
    redeploy: bool,
    change: impl Fn(&ServiceSpec) -> Result<Option<ServiceSpec>>,
) -> Result<Option<ServiceSpec>> {
    for attempt in 1..=UPDATE_ATTEMPTS {
        let current: ServiceSpec = client.get(&format!("/v1/services/{name}")).await?;
        let Some(next) = change(&current)? else {
            return Ok(None);
        };
        let request = UpdateRequest {
            spec: next,
            from_version: current.version,
            redeploy,
        };
        match client
            .post::<_, ServiceSpec>(&format!("/v1/services/{name}"), &request)
            .await
        {
            Ok(spec) => return Ok(Some(spec)),
            Err(e)
                if attempt < UPDATE_ATTEMPTS
                    && e.downcast_ref::<ApiRefusal>()
                        .is_some_and(|r| r.status == 409) => {}
            Err(e) => return Err(e),
        }
    }
    bail!("service {name} keeps changing under this update; try again")
}

/// Scales each target; returns the services' specs as they now are.
async fn scale(client: &Client, targets: &[String]) -> Result<Vec<ServiceSpec>> {
    let mut parsed = Vec::new();
    for target in targets {
        let (name, replicas) = target
            .split_once('=')
            .with_context(|| format!("{target:?}: write it as SERVICE=REPLICAS, e.g. blog=12"))?;
        let replicas: u32 = replicas.parse().with_context(|| {
            format!("{target:?}: the replica count must be a whole number from 0 up")
        })?;
        parsed.push((name.to_owned(), replicas));
    }
    let mut scaled = Vec::new();
    for (name, replicas) in parsed {
        let updated = update(client, &name, false, |current| {
            if current.mode == Mode::Global {
                bail!(
                    "{name} is a global service: it runs one replica per node and cannot be scaled"
                );
            }
            let mut next = current.clone();
            next.mode = Mode::Replicated { replicas };
            Ok((next != *current).then_some(next))
        })
        .await?;
        println!("{name} scaled to {replicas}");
        scaled.push(match updated {
            Some(spec) => spec,
            None => client.get(&format!("/v1/services/{name}")).await?,
        });
    }
    Ok(scaled)
}

/// Prints tasks as `list` asks: ids only, JSON, or a table.
pub(super) fn show_tasks(tasks: &[Task], list: &crate::cli::ListArgs) -> Result<()> {
    if list.quiet {
        tasks
            .iter()
            .filter(|t| !t.row.id.is_empty())
            .for_each(|t| println!("{}", t.row.id));
        return Ok(());
    }
    output::print(tasks, &list.format)
}
