//! Ingress: every peer listens on every published port of every service and forwards each
//! connection to a replica that runs and is healthy, wherever it is — a local one first,
//! else a remote one, in turn. A connection that fails before any byte is answered (the
//! connect fails, or the replica closes or resets it: stopped by a rolling update, say) is
//! retried on another replica, with what the client sent so far replayed (up to 64 KiB;
//! past that, the connection stays with its replica); replicas on nodes that are suspect
//! or down are skipped at once. With `proxy_protocol` on a port, the client's address is passed on in a PROXY
//! protocol v2 header.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use knit_mesh::MemberState;
use knit_mesh::quic::Mesh;
use knit_scheduler::spec::Protocol;
use knit_scheduler::{Health, ReplicaState};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::Snapshot;
use crate::tasks::Tasks;

mod forward;

use forward::{SILENCE, forward};

/// Client connections open at once, per peer.
const CONNECTIONS_MAX: usize = 4096;
/// Client connections open at once on one published port: one client holding thousands of
/// idle sockets on one port leaves room for every other port.
const PORT_CONNECTIONS_MAX: usize = 1024;

/// Where one published port leads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Route {
    service: String,
    proxy_protocol: bool,
    /// Healthy replicas on this node, by host address.
    local: Vec<SocketAddr>,
    /// Healthy replicas on other live nodes.
    remote: Vec<SocketAddr>,
}

/// Counters per published port, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct PortStats {
    pub(crate) service: Mutex<String>,
    pub(crate) connections: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) failures: AtomicU64,
    /// Connections refused because the port or the peer was at its cap.
    pub(crate) rejected: AtomicU64,
    /// Connections closed for silence (nothing said at first, or idle later).
    pub(crate) timeouts: AtomicU64,
}

/// The ingress's counters and the ports it could not bind.
#[derive(Debug, Default)]
pub(crate) struct IngressStats {
    pub(crate) ports: Mutex<BTreeMap<u16, Arc<PortStats>>>,
    pub(crate) bind_errors: Mutex<BTreeMap<u16, String>>,
}

impl IngressStats {
    fn port(&self, port: u16) -> Arc<PortStats> {
        self.ports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(port)
            .or_default()
            .clone()
    }
}

fn healthy(state: ReplicaState, health: Health) -> bool {
    state == ReplicaState::Running && matches!(health, Health::Healthy | Health::None)
}

/// The routes every published TCP port takes, from the cluster as this peer sees it.
fn routes(snapshot: &Snapshot) -> BTreeMap<u16, Route> {
    let me = snapshot.view.me.node;
    let mut routes: BTreeMap<u16, Route> = BTreeMap::new();
    let specs = snapshot.specs();
    for spec in specs.values() {
        for port in spec.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
            routes.insert(
                port.published,
                Route {
                    service: spec.name.clone(),
                    proxy_protocol: port.proxy_protocol,
                    ..Route::default()
                },
            );
        }
    }
    for member in snapshot
        .view
        .members
        .iter()
        .filter(|m| m.state == MemberState::Alive)
    {
        let local = member.peer.node == me;
        for report in snapshot.reports(&member.peer.node) {
            let Some(spec) = specs.get(&report.slot.service) else {
                continue;
            };
            if report.spec_version == 0 || !healthy(report.state, report.health) {
                continue;
            }
            // Docker publishes replicas' ports on their host's mesh address only (not every
            // interface); a process replica binds what it binds, loopback included, so this
            // host reaches its own there.
            let ip: IpAddr = if local && spec.driver == knit_scheduler::spec::Driver::Process {
                IpAddr::from([127, 0, 0, 1])
            } else {
                member.peer.addr.ip()
            };
            for port in spec.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
                let (Some(route), Some(host_port)) = (
                    routes.get_mut(&port.published),
                    report.host_ports.get(&port.target),
                ) else {
                    continue;
                };
                let addr = SocketAddr::new(ip, *host_port);
                if local {
                    route.local.push(addr)
                } else {
                    route.remote.push(addr)
                }
            }
        }
    }
    routes
}

/// How long connections being forwarded may go on after the peer is told to stop.
const DRAIN: Duration = Duration::from_secs(1);

/// Runs the ingress on `addr` until the peer stops.
pub(crate) async fn run(mesh: Mesh, addr: IpAddr, stats: Arc<IngressStats>, tasks: Tasks) {
    let shutdown = tasks.shutdown().clone();
    let (table_tx, table) = watch::channel(Arc::new(BTreeMap::new()));
    let mut listeners: BTreeMap<u16, JoinHandle<()>> = BTreeMap::new();
    let mut store = mesh.store();
    let mut view = mesh.view();
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let next = Arc::new(routes(&Snapshot::of(&mesh)));
        for port in next
            .keys()
            .filter(|p| !listeners.contains_key(*p))
            .copied()
            .collect::<Vec<_>>()
        {
            match TcpListener::bind(SocketAddr::new(addr, port)).await {
                Ok(listener) => {
                    tracing::info!(port, "ingress listening");
                    stats
                        .bind_errors
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&port);
                    let task = serve(
                        listener,
                        port,
                        table.clone(),
                        stats.port(port),
                        open.clone(),
                        tasks.clone(),
                    );
                    listeners.insert(port, tasks.spawn("ingress listener", task));
                }
                Err(e) => {
                    let mut errors = stats
                        .bind_errors
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if errors.insert(port, e.to_string()).is_none() {
                        tracing::error!(port, error = %e, "ingress cannot listen on a published port");
                    }
                }
            }
        }
        listeners.retain(|port, task| {
            let keep = next.contains_key(port);
            if !keep {
                tracing::info!(port, "ingress closed");
                task.abort();
            }
            keep
        });
        table_tx.send_if_modified(|t| {
            let changed = **t != *next;
            if changed {
                *t = next.clone();
            }
            changed
        });
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = store.changed() => {}
            _ = view.changed() => {}
            // Retry ports that could not be bound.
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
    for task in listeners.values() {
        task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    port: u16,
    table: watch::Receiver<Arc<BTreeMap<u16, Route>>>,
    stats: Arc<PortStats>,
    open: Arc<AtomicUsize>,
    tasks: Tasks,
) {
    let shutdown = tasks.shutdown().clone();
    let turn = Arc::new(AtomicUsize::new(0));
    let port_open = Arc::new(AtomicUsize::new(0));
    loop {
        let (client, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait for some to close.
                    tracing::debug!(port, error = %e, "ingress accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if open.load(Ordering::Relaxed) >= CONNECTIONS_MAX
            || port_open.load(Ordering::Relaxed) >= PORT_CONNECTIONS_MAX
        {
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Some(route) = table.borrow().get(&port).cloned() else {
            continue;
        };
        *stats.service.lock().unwrap_or_else(PoisonError::into_inner) = route.service.clone();
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let (stats, turn) = (stats.clone(), turn.clone());
        let (open, port_open) = (open.clone(), port_open.clone());
        open.fetch_add(1, Ordering::Relaxed);
        port_open.fetch_add(1, Ordering::Relaxed);
        let stop = shutdown.clone();
        tasks.spawn("ingress connection", async move {
            let drained = async {
                stop.cancelled().await;
                tokio::time::sleep(DRAIN).await;
            };
            tokio::select! {
                () = forward(client, peer, port, &route, &stats, &turn, SILENCE) => {}
                () = drained => {}
            }
            open.fetch_sub(1, Ordering::Relaxed);
            port_open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}
