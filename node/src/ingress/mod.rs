//! Ingress: every peer listens on every published port of every service and forwards each
//! connection to a replica that runs and is healthy, wherever it is — a local one first,
//! else a remote one, in turn. A connection that fails before any byte is answered (the
//! connect fails, or the replica closes or resets it: stopped by a rolling update, say) is
//! retried on another replica, with what the client sent so far replayed (up to 64 KiB;
//! past that, the connection stays with its replica); replicas on nodes that are suspect
//! or down are skipped at once. With `proxy_protocol` on a port, the client's address is
//! passed on in a PROXY protocol v2 header.
//!
//! [`targets`] (where each target port of each service leads) and [`Listeners`] (a set of
//! forwarding listeners with the caps) serve service discovery's addresses too.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use knit_mesh::MemberState;
use knit_mesh::quic::Mesh;
use knit_scheduler::spec::Protocol;
use knit_scheduler::{Health, ReplicaState};

use crate::cluster::Snapshot;
use crate::tasks::Tasks;

mod forward;
mod listeners;

pub(crate) use listeners::{ListenerStats, Listeners};

/// Where one listener leads: the healthy replicas of one target port of one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) service: String,
    pub(crate) proxy_protocol: bool,
    /// Healthy replicas on this node, by host address.
    pub(crate) local: Vec<SocketAddr>,
    /// Healthy replicas on other live nodes.
    pub(crate) remote: Vec<SocketAddr>,
}

/// One target port of one service: what a service address forwards.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Target {
    pub(crate) service: String,
    pub(crate) port: u16,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.service, self.port)
    }
}

/// Counters per listener, for `/metrics`.
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

/// The ingress's counters and the ports it could not bind, by published port.
pub(crate) type IngressStats = ListenerStats<u16>;

fn healthy(state: ReplicaState, health: Health) -> bool {
    state == ReplicaState::Running && matches!(health, Health::Healthy | Health::None)
}

/// Where every TCP target port of every service leads, from the cluster as this peer sees
/// it: a route (maybe with no replica yet) for every TCP port of every spec, published or
/// not.
pub(crate) fn targets(snapshot: &Snapshot) -> BTreeMap<Target, Route> {
    let me = snapshot.view.me.node;
    let mut routes: BTreeMap<Target, Route> = BTreeMap::new();
    let specs = snapshot.specs();
    for spec in specs.values() {
        for port in spec.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
            let route = routes
                .entry(Target {
                    service: spec.name.clone(),
                    port: port.target,
                })
                .or_insert_with(|| Route {
                    service: spec.name.clone(),
                    ..Route::default()
                });
            // A replica that reads a PROXY header on its port expects one from every
            // client: the ingress's and the service address's alike.
            route.proxy_protocol |= port.proxy_protocol;
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
            for (target, host_port) in &report.host_ports {
                let key = Target {
                    service: spec.name.clone(),
                    port: *target,
                };
                let Some(route) = routes.get_mut(&key) else {
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

/// The routes every published TCP port takes.
fn routes(snapshot: &Snapshot) -> BTreeMap<u16, Route> {
    let targets = targets(snapshot);
    let mut routes = BTreeMap::new();
    for spec in snapshot.specs().values() {
        for port in spec.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
            let Some(published) = port.published_port() else {
                continue;
            };
            let key = Target {
                service: spec.name.clone(),
                port: port.target,
            };
            let Some(target) = targets.get(&key) else {
                continue;
            };
            let route = Route {
                proxy_protocol: port.proxy_protocol,
                ..target.clone()
            };
            routes.insert(published, route);
        }
    }
    routes
}

/// Runs the ingress on `addr` until the peer stops.
pub(crate) async fn run(mesh: Mesh, addr: IpAddr, stats: Arc<IngressStats>, tasks: Tasks) {
    let shutdown = tasks.shutdown().clone();
    let mut listeners = Listeners::new("ingress", stats, tasks.clone());
    let mut store = mesh.store();
    let mut view = mesh.view();
    loop {
        let wanted = routes(&Snapshot::of(&mesh))
            .into_iter()
            .map(|(port, route)| (port, (SocketAddr::new(addr, port), route)))
            .collect();
        listeners.sync(wanted);
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = store.changed() => {}
            _ = view.changed() => {}
            // Retry ports that could not be bound.
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
    listeners.close();
}
