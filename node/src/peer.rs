//! `knit up`: one peer. It creates a cluster or joins one, starts the mesh and the admin
//! API, publishes what it is in its node-owned record, persists the state it learns, and on
//! SIGTERM or SIGINT leaves the cluster and exits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use knit_mesh::quic::{Credentials, Mesh, MeshConfig, join};
use knit_mesh::token::JoinToken;
use knit_mesh::{NodeId, PeerId};
use rand::RngExt;

use crate::agent::Agent;
use crate::api::{self, AllowedHosts, ApiListener};
use crate::api_addr::ApiAddr;
use crate::cli::UpArgs;
use crate::cluster::{NodeInfo, host_capacity};
use crate::datadir::DataDir;
use crate::driver::{Drivers, docker::DockerDriver, process::ProcessDriver};
use crate::records::info_key;
use crate::tasks::Tasks;

fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>> {
    labels
        .iter()
        .filter(|l| !l.is_empty())
        .map(|label| match label.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("invalid label {label:?}: write it as key=value, e.g. --label zone=a"),
        })
        .collect()
}

fn advertise_addr(args: &UpArgs, bound: SocketAddr) -> Result<SocketAddr> {
    let addr = match args.advertise {
        Some(addr) => addr,
        None if bound.ip().is_unspecified() => match route_to(&args.join) {
            Some(ip) => {
                tracing::info!(%ip, "advertising the address this host reaches the seed from; set --advertise to choose another");
                SocketAddr::new(ip, bound.port())
            }
            None => bail!(
                "--listen {} listens on every interface: say which address peers should dial with --advertise <this host's IP>:{}",
                args.listen,
                bound.port()
            ),
        },
        None => bound,
    };
    if addr.ip().is_unspecified() || addr.port() == 0 {
        bail!("--advertise {addr} is not an address peers can dial: give a specific IP and port");
    }
    Ok(addr)
}

/// The local address this host's routing table uses to reach the first seed, found by
/// connecting a UDP socket (which sends nothing); `None` without a seed.
fn route_to(seeds: &[SocketAddr]) -> Option<std::net::IpAddr> {
    let seed = seeds.first()?;
    let any: SocketAddr = if seed.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(any).ok()?;
    socket.connect(seed).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "knit-node".to_owned())
}

/// Loads this node's identity and credentials, or creates a cluster, or joins one.
/// Returns the node id, credentials, and whether a new cluster was created.
async fn credentials(
    dir: &DataDir,
    args: &UpArgs,
    endpoint: &knit_mesh::quic::Endpoint,
) -> Result<(NodeId, Credentials, bool)> {
    let stored_id = dir.node_id()?;
    if let Some(creds) = Credentials::load(dir.path())? {
        let Some(node) = stored_id else {
            bail!(
                "{} has credentials but no node-id; the data dir is damaged",
                dir.path().display()
            );
        };
        if args.token.is_some() {
            tracing::info!("this node is already a member; --token is not needed and was ignored");
        }
        return Ok((node, creds, false));
    }
    let node = stored_id.unwrap_or_else(|| NodeId::random(&mut rand::rng()));
    if args.join.is_empty() {
        let creds = Credentials::create_cluster(&node, rand::rng().random())?;
        dir.store_node_id(&node)?;
        creds.store(dir.path())?;
        return Ok((node, creds, true));
    }
    let token: JoinToken = join_token(args)?.parse()?;
    let began = std::time::Instant::now();
    let mut pause = JOIN_RETRY_FIRST;
    loop {
        let (mut errors, mut busy) = (Vec::new(), false);
        for seed in &args.join {
            match join::join(endpoint, *seed, &token).await {
                Ok((node, creds, seed_peer)) => {
                    tracing::info!(seed = ?seed_peer, "admitted to the cluster");
                    dir.store_node_id(&node)?;
                    creds.store(dir.path())?;
                    return Ok((node, creds, false));
                }
                Err(e @ join::JoinError::Refused { .. }) => bail!(e),
                Err(e) => {
                    busy |= matches!(
                        e,
                        join::JoinError::Unreachable { .. } | join::JoinError::Exchange { .. }
                    );
                    errors.push(e.to_string());
                }
            }
        }
        // A seed that did not answer, or broke off, may be busy (many hosts joining at
        // once) or restarting: try again for a while. A failed handshake will fail again.
        if !busy || began.elapsed() + pause >= JOIN_PATIENCE {
            bail!("could not join: {}", errors.join("; "));
        }
        tracing::warn!(error = %errors.join("; "), retry_in = ?pause, "no seed admitted this node yet; trying again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(JOIN_RETRY_MAX);
    }
}

/// How long `knit up --join` keeps trying seeds that do not answer before it gives up.
const JOIN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(15);
/// The pause before the first retry; it doubles up to [`JOIN_RETRY_MAX`].
const JOIN_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(500);
const JOIN_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(4);

/// The join token from `--token` or `--token-file`.
fn join_token(args: &UpArgs) -> Result<String> {
    if let Some(token) = &args.token {
        return Ok(token.clone());
    }
    if let Some(path) = &args.token_file {
        return std::fs::read_to_string(path)
            .map(|t| t.trim().to_owned())
            .with_context(|| format!("cannot read the join token from {}", path.display()));
    }
    bail!(
        "joining a cluster needs its token: run `knit token` on a member, save it in a file readable by root only, then pass --token-file FILE (or --token TOKEN)"
    )
}

/// File descriptors a peer asks for: every ingress connection takes two.
const OPEN_FILES_WANTED: u64 = 65_536;

/// How long a stopping peer waits for its tasks: the last save of the state and the
/// operations on replicas in flight. Well under systemd's default stop timeout (90 s).
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// Raises the soft limit on open files towards [`OPEN_FILES_WANTED`] (within the hard
/// limit): the common default of 1,024 would cap the ingress at a few hundred clients.
fn raise_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let wanted = OPEN_FILES_WANTED.min(hard);
    if soft < wanted {
        match setrlimit(Resource::RLIMIT_NOFILE, wanted, hard) {
            Ok(()) => tracing::debug!(from = soft, to = wanted, "raised the open files limit"),
            Err(e) => {
                tracing::warn!(limit = soft, error = %e, "cannot raise the open files limit; the ingress takes fewer clients")
            }
        }
    }
}

/// Runs a peer until SIGTERM or SIGINT.
pub(crate) async fn up(args: UpArgs, api: Option<&str>, api_insecure: bool) -> Result<()> {
    let mut stop_signals = StopSignals::install()?;
    raise_open_files();
    // The socket is always served (at --api when that is a path); a TCP --api is served
    // besides it, so an operator on the host can still issue client certificates.
    let api_addrs = match ApiAddr::or_default(api, &args.data_dir)? {
        tcp @ ApiAddr::Tcp(_) => vec![ApiAddr::or_default(None, &args.data_dir)?, tcp],
        unix => vec![unix],
    };
    let metrics_addr = args
        .metrics_addr
        .as_deref()
        .map(api::metrics_addr)
        .transpose()?;
    let labels = parse_labels(&args.labels)?;
    let process_user = crate::driver::process::RunAs::choose(
        args.enable_process_driver,
        args.process_user.as_deref(),
    )?;
    let dir = DataDir::open(&args.data_dir)?;
    let endpoint = knit_mesh::quic::bind(args.listen, &dir.reset_key()?)?;
    let bound = endpoint
        .local_addr()
        .context("cannot read the bound address")?;
    let advertise = advertise_addr(&args, bound)?;
    let metrics_listener = match metrics_addr {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen for /metrics on {addr}; pick another with --metrics-addr")
        })?),
        None => None,
    };
    let (node, creds, created) = credentials(&dir, &args, &endpoint).await?;
    let tasks = Tasks::new();
    let mut api_listeners = Vec::new();
    for addr in &api_addrs {
        api_listeners.push(ApiListener::bind(addr, api_insecure, &creds, &tasks).await?);
    }
    let api_described: Vec<String> = api_listeners.iter().map(ApiListener::describe).collect();
    let epoch = dir.next_epoch()?;
    let store = dir.load_store(node)?;
    let mut seeds = args.join.clone();
    seeds.extend(
        known_addrs(&store, &node)
            .into_iter()
            .filter(|a| !args.join.contains(a)),
    );
    let identity = PeerId {
        node,
        addr: advertise,
        epoch,
    };
    let config = MeshConfig {
        identity,
        profile: args.profile,
        seeds,
        store,
        sync_period: Duration::from_millis(args.profile.anti_entropy_period_ms()),
        clock_skew_max_ms: knit_scheduler::spec::parse_duration_ms(&args.clock_skew_max)
            .context("--clock-skew-max")?,
    };
    let mesh = Mesh::start(endpoint, creds.clone(), config, tasks.shutdown().clone())?;
    let (directory_tx, directory) =
        tokio::sync::watch::channel(Arc::new(crate::discovery::Directory::default()));
    let drivers = Arc::new(
        drivers(
            dir.path(),
            process_user,
            advertise.ip(),
            &tasks,
            &node.to_string(),
            directory,
        )
        .await?,
    );
    tasks.spawn(
        "peer requests",
        api::serve_peers(
            mesh.serve_requests(),
            drivers.clone(),
            node.to_string(),
            tasks.clone(),
        ),
    );
    let driver_names = drivers.names();
    let info = NodeInfo {
        name: args.name.clone().unwrap_or_else(host_name),
        addr: advertise,
        labels,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at_ms: crate::clock::now_ms(),
        capacity: host_capacity(),
        drivers: driver_names,
    };
    mesh.put(&info_key(&node), Some(serde_json::to_vec(&info)?))
        .await?;
    tracing::info!(node = %node, name = %info.name, addr = %advertise, epoch, api = %api_described.join(", "), profile = %args.profile, "peer up");
    if created {
        let token_file = dir.path().join("join-token");
        println!("Cluster created. This node is {node}.");
        println!(
            "The join token is in {} (root only); `knit token` prints it. To add a peer, copy it to the other host and run there:\n    knit up --join {advertise} --token-file FILE",
            token_file.display()
        );
    }
    let hosts = AllowedHosts::new(
        [
            info.name.clone(),
            host_name(),
            knit_mesh::quic::operator::API_SERVER_NAME.to_owned(),
        ]
        .into_iter()
        .chain(args.api_hosts.iter().cloned()),
    );
    let dir = Arc::new(dir);
    let thresholds = crate::agent::prevention::Thresholds {
        disk_percent: args.drain_disk_percent,
        memory_percent: args.drain_memory_percent,
        temperature_c: args.drain_temperature,
        start_failures: args.drain_start_failures,
        start_failure_window: Duration::from_secs(600),
        recover_after: Duration::from_millis(
            knit_scheduler::spec::parse_duration_ms(&args.recover_after)
                .context("--recover-after")?,
        ),
    };
    tasks.spawn(
        "telemetry",
        crate::telemetry::run(
            mesh.clone(),
            node,
            dir.path().to_path_buf(),
            thresholds.clone(),
            tasks.shutdown().clone(),
        ),
    );
    let secrets = crate::secrets::SecretSource::new(mesh.clone(), Arc::new(creds.clone()));
    let (agent, events) = Agent::new(
        mesh.clone(),
        drivers.clone(),
        node,
        thresholds,
        &tasks,
        secrets,
    )?;
    tasks.spawn("agent", agent.run(events));
    let ingress = Arc::new(crate::ingress::IngressStats::default());
    tasks.spawn(
        "ingress",
        crate::ingress::run(
            mesh.clone(),
            args.ingress_addr,
            ingress.clone(),
            tasks.clone(),
        ),
    );
    let discovery = Arc::new(crate::discovery::DiscoveryStats::default());
    tasks.spawn(
        "discovery",
        crate::discovery::run(
            crate::discovery::Discovery {
                mesh: mesh.clone(),
                setting: args.service_range,
                directory: directory_tx,
                stats: discovery.clone(),
                resolv_conf: crate::discovery::RESOLV_CONF.into(),
            },
            tasks.clone(),
        ),
    );
    let (saved_tx, saved) = tokio::sync::watch::channel(crate::persist::Saved::default());
    tasks.spawn(
        "persist",
        crate::persist::persist(
            mesh.clone(),
            dir.clone(),
            saved_tx,
            tasks.shutdown().clone(),
        ),
    );
    let state = api::ApiState::new(
        mesh.clone(),
        creds,
        saved,
        drivers,
        ingress,
        discovery,
        &tasks,
    );
    if let Some(listener) = metrics_listener {
        let app = api::metrics_router(state.clone(), hosts.clone());
        tasks.spawn(
            "metrics server",
            api::serve_metrics(listener, app, tasks.shutdown().clone()),
        );
    }
    let app = api::router(state, hosts);
    for listener in api_listeners {
        tasks.spawn(
            "API server",
            api::serve(listener, app.clone(), tasks.shutdown().clone()),
        );
    }
    crate::notify::ready();

    stop_signals.wait().await;
    crate::notify::stopping();
    tracing::info!("leaving the cluster");
    mesh.leave().await;
    // One way out: every task sees the signal and ends. The persister saves once more, and
    // an operation on a replica finishes (its driver calls have their own timeouts).
    let late = tasks.stop(STOP_WITHIN).await;
    if !late.is_empty() {
        tracing::error!(tasks = ?late, within_s = STOP_WITHIN.as_secs(), "tasks still running at the stop deadline");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The drivers this host has: `docker` when an engine answers, `process` when enabled.
async fn drivers(
    data_dir: &std::path::Path,
    process_user: Option<crate::driver::process::RunAs>,
    publish_ip: std::net::IpAddr,
    tasks: &Tasks,
    node: &str,
    directory: tokio::sync::watch::Receiver<Arc<crate::discovery::Directory>>,
) -> Result<Drivers> {
    let process = ProcessDriver::new(&data_dir.join("processes"), process_user, tasks)?;
    let docker = match DockerDriver::connect(publish_ip, tasks).await {
        Ok(docker) => Some(docker),
        Err(e) => {
            tracing::info!(reason = %e, "no Docker engine: docker services will not be placed on this node");
            None
        }
    };
    Ok(Drivers {
        docker,
        process,
        secrets: crate::driver::sealed_files::SealedFiles::secrets_of(node),
        configs: crate::driver::sealed_files::SealedFiles::configs_of(node),
        directory,
    })
}

/// Addresses of members this node knew before, to find the cluster again after a restart.
fn known_addrs(store: &knit_mesh::store::Store, me: &NodeId) -> Vec<SocketAddr> {
    crate::cluster::known_members(store)
        .filter(|(node, _, _)| node != me)
        .map(|(_, info, _)| info.addr)
        .collect()
}

/// The signals that stop a peer: SIGTERM, SIGINT and SIGQUIT. They are registered when
/// the peer starts, before any replica does: a signal with a handler is reset to its
/// default in the programs the peer runs, where one the peer inherited as ignored (a
/// background job's SIGINT and SIGQUIT, say) would stay ignored in its replicas, and a
/// `--stop-signal SIGQUIT` would never reach them.
pub(crate) struct StopSignals {
    signals: Vec<tokio::signal::unix::Signal>,
}

impl StopSignals {
    pub(crate) fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let signals = [
            SignalKind::terminate(),
            SignalKind::interrupt(),
            SignalKind::quit(),
        ]
        .into_iter()
        .map(signal)
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot handle SIGTERM, SIGINT and SIGQUIT")?;
        Ok(Self { signals })
    }

    /// Returns when one of the signals arrives.
    pub(crate) async fn wait(&mut self) {
        let arrivals = self.signals.iter_mut().map(|s| Box::pin(s.recv()));
        let _ = futures_util::future::select_all(arrivals).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_toward_a_seed_is_the_one_its_route_uses() {
        let seed: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(route_to(&[seed]), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(route_to(&[]), None);
    }
}
