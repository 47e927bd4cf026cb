//! Service discovery: a replica reaches another service by its name (`http://api:8080/`)
//! from any host, load-balanced over that service's healthy replicas wherever they run,
//! with no overlay network and no manager.
//!
//! Every peer does it alone, for its own host:
//! - it makes its service range local (`route.rs`: one AnyIP route on `lo`);
//! - it gives every service a virtual IP from the range, derived from the name
//!   (`range.rs`), and listens on `VIP:target` for every TCP target port of the service,
//!   published or not, forwarding each connection with the ingress's forwarder (local
//!   healthy replicas first, else remote ones, retried; its caps, silence limits and drain);
//! - it answers the services' names with their VIPs from a DNS server on the range's
//!   first address (`dns/`), and forwards every other name to the host's resolvers;
//! - Docker replicas get that server as their resolver (and a stack's replicas their
//!   stack's search domain), process replicas `KNIT_SERVICE_<NAME>_ADDR` variables
//!   (`directory.rs`, read by the drivers when they start a replica).
//!
//! Nothing is agreed between peers: a replica only ever talks to its own host's peer,
//! which answers with its own addresses and serves them itself. Every service may reach
//! every other (there is no network policy). Without `CAP_NET_ADMIN` (or with
//! `--service-range none`) discovery is off, with one warning, and the rest of the peer
//! works as before.

pub(crate) mod directory;
mod dns;
pub(crate) mod range;
mod route;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use knit_mesh::quic::Mesh;
use tokio::sync::watch;

pub(crate) use self::directory::Directory;
pub(crate) use self::dns::DnsStats;
use self::range::{RangeSetting, ServiceRange, Vips};
use crate::cluster::Snapshot;
use crate::ingress::{ListenerStats, Listeners, Target};
use crate::tasks::Tasks;

/// Where the host's resolvers are listed.
pub(crate) const RESOLV_CONF: &str = "/etc/resolv.conf";
/// The DNS port.
const DNS_PORT: u16 = 53;
/// The least time between two readings of the cluster: a burst of changes to the store (a
/// round's reports, say) costs one.
const READ_INTERVAL_MIN: Duration = Duration::from_millis(100);

/// The counters of discovery, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct DiscoveryStats {
    /// Per service and target port: connections forwarded from its VIP; and the service
    /// addresses that could not be listened on.
    pub(crate) forwarding: Arc<ListenerStats<Target>>,
    pub(crate) dns: DnsStats,
}

/// What discovery needs from the peer.
pub(crate) struct Discovery {
    pub(crate) mesh: Mesh,
    pub(crate) setting: RangeSetting,
    /// Where the directory is published, for the drivers, the API and the DNS server.
    pub(crate) directory: watch::Sender<Arc<Directory>>,
    pub(crate) stats: Arc<DiscoveryStats>,
    /// The host's resolvers (`/etc/resolv.conf`).
    pub(crate) resolv_conf: PathBuf,
}

/// Runs service discovery until the peer stops.
pub(crate) async fn run(discovery: Discovery, tasks: Tasks) {
    let range = match discovery.setting {
        RangeSetting::Off => {
            tracing::info!("service discovery is off (--service-range none)");
            return;
        }
        RangeSetting::On(range) => range,
    };
    let route = match route::LocalRoute::add(range).await {
        Ok(route) => route,
        Err(e) => {
            tracing::warn!(
                "service discovery is off: {e}. Replicas cannot reach services by name; everything else works"
            );
            return;
        }
    };
    let dns = start_dns(range, &discovery, &tasks).await;
    tracing::info!(range = %range, dns = ?dns, "service discovery on");
    serve(range, dns, &discovery, &tasks).await;
    route.remove().await;
}

/// Starts the DNS server on the range's first address, over UDP and TCP; its address,
/// or `None` (with an error logged) when it cannot listen there.
async fn start_dns(range: ServiceRange, discovery: &Discovery, tasks: &Tasks) -> Option<Ipv4Addr> {
    let addr = SocketAddr::from((range.dns(), DNS_PORT));
    let udp = match tokio::net::UdpSocket::bind(addr).await {
        Ok(udp) => udp,
        Err(e) => {
            tracing::error!(%addr, error = %e, "the DNS server cannot listen: service names do not resolve (their addresses still work)");
            return None;
        }
    };
    let server = dns::Server::new(
        discovery.directory.subscribe(),
        dns::upstream::Upstreams::new(discovery.resolv_conf.clone(), range),
        discovery.stats.clone(),
        tasks.clone(),
    );
    match tokio::net::TcpListener::bind(addr).await {
        Ok(tcp) => {
            tasks.spawn("dns tcp", server.clone().serve_tcp(tcp));
        }
        Err(e) => {
            tracing::warn!(%addr, error = %e, "the DNS server takes no TCP: answers too long for UDP cannot be had");
        }
    }
    tasks.spawn("dns udp", server.serve_udp(udp));
    Some(range.dns())
}

/// Keeps the VIPs, the directory and the service addresses' listeners in line with the
/// cluster until the peer stops.
async fn serve(range: ServiceRange, dns: Option<Ipv4Addr>, discovery: &Discovery, tasks: &Tasks) {
    let shutdown = tasks.shutdown().clone();
    let mut vips = Vips::new(range);
    let mut listeners = Listeners::new(
        "service address",
        discovery.stats.forwarding.clone(),
        tasks.clone(),
    );
    let mut store = discovery.mesh.store();
    let mut view = discovery.mesh.view();
    let mut left_out = 0;
    loop {
        let read_at = tokio::time::Instant::now();
        let snapshot = Snapshot::of(&discovery.mesh);
        let specs = snapshot.specs();
        let missing = vips.sync(specs.keys().map(String::as_str));
        if missing != left_out {
            left_out = missing;
            if missing > 0 {
                tracing::warn!(range = %range, services = missing, "the service range is full: some services have no address; give a wider --service-range");
            }
        }
        let directory = Arc::new(Directory::new(dns, vips.all(), &specs));
        discovery.directory.send_if_modified(|current| {
            let changed = **current != *directory;
            if changed {
                *current = directory;
            }
            changed
        });
        listeners.sync(wanted(&snapshot, vips.all()));
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = store.changed() => {}
            _ = view.changed() => {}
            // Retry addresses that could not be bound.
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(read_at + READ_INTERVAL_MIN) => {}
        }
    }
    listeners.close();
}

/// Every service address to listen on (`VIP:target` of each TCP target port of each
/// service with a VIP) and where it leads.
fn wanted(
    snapshot: &Snapshot,
    vips: &BTreeMap<String, Ipv4Addr>,
) -> BTreeMap<Target, (SocketAddr, crate::ingress::Route)> {
    crate::ingress::targets(snapshot)
        .into_iter()
        .filter_map(|(target, route)| {
            let vip = *vips.get(&target.service)?;
            let addr = SocketAddr::from((vip, target.port));
            Some((target, (addr, route)))
        })
        .collect()
}
