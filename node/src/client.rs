//! The client commands: they talk to the local peer's admin API and print what it says.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;

use crate::api::NodeSummary;
use crate::cli::{Command, Format, NodeCommand};

/// How long the client waits for the peer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

struct Client {
    http: reqwest::Client,
    base: String,
    api: String,
}

impl Client {
    fn new(api: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .build()
            .context("cannot build the HTTP client")?;
        let base = if api.starts_with("http://") || api.starts_with("https://") {
            api.trim_end_matches('/').to_owned()
        } else {
            format!("http://{api}")
        };
        Ok(Self {
            http,
            base,
            api: api.to_owned(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let response = self.http.get(&url).send().await.map_err(|e| {
            let why = if e.is_connect() || e.is_timeout() { "no knit peer answers there" } else { "request failed" };
            anyhow::anyhow!(
                "cannot reach the knit API at {}: {why} ({e}); start a peer with `knit up`, or point --api / KNIT_API at one",
                self.api
            )
        })?;
        let status = response.status();
        let body = response.bytes().await.context("reading the answer")?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            bail!("{message}");
        }
        serde_json::from_slice(&body).with_context(|| format!("unexpected answer from {url}"))
    }
}

/// Runs a client command against the API at `api`.
pub(crate) async fn run(api: &str, command: Command) -> Result<()> {
    let client = Client::new(api)?;
    match command {
        Command::Up(_) | Command::Lab(_) => bail!("`up` and `lab` run peers; they are not client commands"),
        Command::Token => {
            let answer: serde_json::Value = client.get("/v1/token").await?;
            println!("{}", answer["token"].as_str().unwrap_or_default());
        }
        Command::Node(NodeCommand::Ls(args)) => {
            let nodes: Vec<NodeSummary> = client.get("/v1/nodes").await?;
            match args.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&nodes)?),
                Format::Table => print_nodes(&nodes),
            }
        }
        Command::Node(NodeCommand::Inspect { node }) => {
            let node: NodeSummary = client.get(&format!("/v1/nodes/{node}")).await?;
            println!("{}", serde_json::to_string_pretty(&node)?);
        }
    }
    Ok(())
}

fn print_nodes(nodes: &[NodeSummary]) {
    println!(
        "{:<14} {:<16} {:<22} {:<8} {:>6}  LABELS",
        "ID", "NAME", "ADDR", "STATE", "EPOCH"
    );
    for n in nodes {
        let id = format!(
            "{}{}",
            &n.id[..12.min(n.id.len())],
            if n.is_self { " *" } else { "" }
        );
        let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let state = serde_json::to_value(n.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        println!(
            "{:<14} {:<16} {:<22} {:<8} {:>6}  {}",
            id,
            n.name,
            n.addr,
            state,
            n.epoch,
            labels.join(",")
        );
    }
}
