//! The client commands: they talk to the local peer's admin API and print what it says.

mod changes;
mod configs;
mod filter;
mod logs;
mod nodes;
mod progress;
mod records;
mod registries;
mod secrets;
mod services;
mod stack;
mod transport;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hyper::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api_addr::{ApiAddr, SOCKET_NAME};
use crate::cli::{Command, TokenCommand};
use transport::Transport;

/// How long the client waits for one answer of the peer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A client of one peer's admin API.
pub(crate) struct Client {
    transport: Transport,
    api: ApiAddr,
}

/// The API answered with an error status.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ApiRefusal {
    pub(crate) status: u16,
    pub(crate) message: String,
}

impl Client {
    fn new(api: ApiAddr, tls_dir: Option<&Path>, insecure: bool) -> Result<Self> {
        Ok(Self {
            transport: Transport::new(&api, tls_dir, insecure)?,
            api,
        })
    }

    /// What to tell the operator when the API cannot be reached.
    fn unreachable(&self, e: &anyhow::Error) -> anyhow::Error {
        let denied = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
        });
        if denied {
            return anyhow::anyhow!(
                "permission denied on the knit API at {}: it is for root and the `knit` group, as Docker's socket is; run the command as root (sudo), or add your user to the group `knit` and restart the peer",
                self.api
            );
        }
        anyhow::anyhow!(
            "cannot reach the knit API at {}: {e:#}; start a peer with `knit up`, or point --api / KNIT_API at one (a socket path, or HOST:PORT with --tls-dir)",
            self.api
        )
    }

    async fn send_raw(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Vec<u8>> {
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, self.transport.send(method, path, body))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "the knit API at {} did not answer within {REQUEST_TIMEOUT:?}; check the peer's log",
                    self.api
                )
            })?;
        let (status, body) = answer.map_err(|e| self.unreachable(&e))?;
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

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let body = self.send_raw(method, path, body).await?;
        serde_json::from_slice(&body).context("unexpected answer from the knit API")
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(Method::GET, path, None).await
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let body = serde_json::to_vec(body).context("cannot encode the request")?;
        self.send(Method::POST, path, Some(body)).await
    }

    pub(crate) async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(Method::DELETE, path, None).await
    }
}

/// Runs a client `command` against the API at `api` (default: the socket in the default
/// data dir), over TLS with the files in `tls_dir` when it is TCP, unless `insecure`.
pub(crate) async fn run(
    api: Option<&str>,
    tls_dir: Option<&Path>,
    insecure: bool,
    command: Command,
) -> Result<()> {
    let api = ApiAddr::or_default(api, &client_data_dir())?;
    let client = Client::new(api, tls_dir, insecure)?;
    match command {
        Command::Up(_)
        | Command::Lab(_)
        | Command::Version { .. }
        | Command::Completion { .. }
        | Command::Man { .. } => {
            bail!("`up`, `lab`, `version`, `completion` and `man` are not client commands")
        }
        Command::Token { command: None } => {
            let answer: serde_json::Value = client.get("/v1/token").await?;
            println!("{}", answer["token"].as_str().unwrap_or_default());
            Ok(())
        }
        Command::Token {
            command: Some(TokenCommand::Rotate),
        } => rotate_token(&client).await,
        Command::ClientCert(args) => client_cert(&client, &args).await,
        Command::Node(command) => nodes::run(&client, command).await,
        Command::Service(command) => services::run(&client, command).await,
        Command::Secret(command) => secrets::run(&client, command).await,
        Command::Config(command) => configs::run(&client, command).await,
        Command::Stack(command) => stack::run(&client, command).await,
        Command::Cluster(command) => cluster(&client, command).await,
        Command::Login(args) => registries::login(&client, args).await,
        Command::Logout(args) => registries::logout(&client, args).await,
        Command::Registry(command) => registries::run(&client, command).await,
    }
}

/// Removes each of `names` under `collection` (`/v1/services`), printing each name
/// removed and each refusal; fails, after trying them all, if any was refused.
async fn remove_each(
    client: &Client,
    collection: &str,
    names: &[String],
    what: &str,
) -> Result<()> {
    let mut failed = 0;
    for name in names {
        match client
            .delete::<serde_json::Value>(&format!("{collection}/{name}"))
            .await
        {
            Ok(_) => println!("{name}"),
            Err(e) => {
                eprintln!("error: {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} {what} could not be removed");
    }
    Ok(())
}

/// The data dir whose socket client commands use without `--api`: the default one
/// (`~/.knit`), or the system service's (`/var/lib/knit`) when only that one has a socket,
/// so that `knit node ls` works as it is on a host where knit was installed as a service.
fn client_data_dir() -> PathBuf {
    let default = crate::cli::default_data_dir();
    let system = Path::new(crate::cli::SYSTEM_DATA_DIR);
    // A socket we may not even look at still counts: using it says "permission denied".
    let present = |dir: &Path| dir.join(SOCKET_NAME).try_exists().unwrap_or(true);
    if !present(&default) && present(system) {
        system.to_path_buf()
    } else {
        default
    }
}

/// `knit cluster inspect|update`: the cluster's limits on services.
async fn cluster(client: &Client, command: crate::cli::ClusterCommand) -> Result<()> {
    use knit_scheduler::spec::Limits;
    let limits = match command {
        crate::cli::ClusterCommand::Inspect => client.get::<Limits>("/v1/cluster/limits").await?,
        crate::cli::ClusterCommand::Update {
            max_replicas,
            max_slots,
        } => {
            if max_replicas.is_none() && max_slots.is_none() {
                bail!("nothing to change: give --max-replicas N, --max-slots N or both");
            }
            let mut limits: Limits = client.get("/v1/cluster/limits").await?;
            limits.replicas_max = max_replicas.unwrap_or(limits.replicas_max);
            limits.slots_max = max_slots.unwrap_or(limits.slots_max);
            client.post("/v1/cluster/limits", &limits).await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&limits)?);
    Ok(())
}

/// Rotates the join token and prints the new one.
pub(crate) async fn rotate_token(client: &Client) -> Result<()> {
    let answer: serde_json::Value = client.post("/v1/token/rotate", &()).await?;
    eprintln!("join token rotated: the old one stops working on every member within seconds");
    println!("{}", answer["token"].as_str().unwrap_or_default());
    Ok(())
}

/// `knit client-cert`: a key made here, a certificate from the peer, written as Docker's
/// `DOCKER_CERT_PATH` holds them.
async fn client_cert(client: &Client, args: &crate::cli::ClientCertArgs) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

    if !knit_mesh::quic::operator::valid_client_name(&args.name) {
        bail!(
            "--name {:?}: use 1 to 63 letters, digits or '-', e.g. alice",
            args.name
        );
    }
    let (key_pem, public_key) = knit_mesh::quic::operator::new_client_key()?;
    let request = crate::wire::ClientCertRequest {
        name: args.name.clone(),
        public_key: hex::encode(public_key),
    };
    let answer: crate::wire::ClientCertResponse = client.post("/v1/client-certs", &request).await?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for (name, text, mode) in [
        ("key.pem", &key_pem, 0o600),
        ("cert.pem", &answer.cert_pem, 0o644),
        ("ca.pem", &answer.ca_pem, 0o644),
    ] {
        let path = args.out.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        std::io::Write::write_all(&mut file, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!(
        "wrote key.pem, cert.pem and ca.pem to {}; use them with:\n    knit --tls-dir {} --api HOST:PORT node ls",
        args.out.display(),
        args.out.display()
    );
    Ok(())
}
