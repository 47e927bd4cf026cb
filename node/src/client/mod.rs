//! The client commands: they talk to the local peer's admin API and print what it says.

mod nodes;
mod services;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cli::Command;

/// How long the client waits for the peer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// An HTTP client for one peer's admin API.
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    api: String,
}

/// The API answered with an error status.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ApiRefusal {
    pub(crate) status: u16,
    pub(crate) message: String,
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

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T> {
        let body = self.send_raw(request).await?;
        serde_json::from_slice(&body).context("unexpected answer from the knit API")
    }

    async fn send_raw(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>> {
        let response = request.send().await.map_err(|e| {
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
            return Err(ApiRefusal {
                status: status.as_u16(),
                message,
            }
            .into());
        }
        Ok(body.to_vec())
    }

    /// GETs a plain-text answer.
    pub(crate) async fn get_text(&self, path: &str) -> Result<String> {
        let body = self
            .send_raw(self.http.get(format!("{}{path}", self.base)))
            .await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub(crate) async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }
}

/// Runs a client command against the API at `api`.
pub(crate) async fn run(api: &str, command: Command) -> Result<()> {
    let client = Client::new(api)?;
    match command {
        Command::Up(_) | Command::Lab(_) => {
            bail!("`up` and `lab` run peers; they are not client commands")
        }
        Command::Token => {
            let answer: serde_json::Value = client.get("/v1/token").await?;
            println!("{}", answer["token"].as_str().unwrap_or_default());
            Ok(())
        }
        Command::Node(command) => nodes::run(&client, command).await,
        Command::Service(command) => services::run(&client, command).await,
    }
}

/// A value's serde name (`"alive"`, `"on_failure"`), for tables.
pub(crate) fn word<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
