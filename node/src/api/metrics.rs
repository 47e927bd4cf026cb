//! `/metrics`: Prometheus text, from the mesh's counters and the state's size, and the
//! cluster as this peer sees it: members by state, each service's slots, restarts,
//! rollouts and heals, each node's telemetry.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use knit_mesh::MemberState;
use knit_scheduler::rollout::RolloutState;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use super::ApiState;
use super::picture::slot_counts;
use crate::cluster::Snapshot;

type Labels = Vec<(String, String)>;

fn labels<const N: usize>(pairs: [(&str, &str); N]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn gauge(value: usize) -> ConstGauge {
    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
}

pub(super) async fn metrics(State(state): State<ApiState>) -> Response {
    let mut registry = Registry::with_prefix("knit");
    let m = state.mesh.metrics();
    let counters = [
        ("gossip_packets_sent", "Gossip packets sent", &m.packets_out),
        ("gossip_bytes_sent", "Gossip bytes sent", &m.bytes_out),
        (
            "gossip_packets_received",
            "Gossip packets received",
            &m.packets_in,
        ),
        (
            "gossip_bytes_received",
            "Gossip bytes received",
            &m.bytes_in,
        ),
        (
            "gossip_packets_dropped",
            "Gossip packets dropped (queue full or no connection)",
            &m.packets_dropped,
        ),
        (
            "gossip_packets_rejected",
            "Gossip packets whose sender did not match its certificate",
            &m.packets_rejected,
        ),
        (
            "member_dials",
            "Connections to members dialed (a QUIC handshake each)",
            &m.dials,
        ),
        (
            "member_connections_kept_across_epoch",
            "Connections kept when their member came back at a new epoch",
            &m.kept_across_epoch,
        ),
        (
            "member_connections_kept_but_gone",
            "Connections kept across a new epoch that led to a process gone",
            &m.kept_but_gone,
        ),
        (
            "state_sync_rounds",
            "Anti-entropy rounds completed",
            &m.sync_rounds,
        ),
        (
            "state_sync_deltas_received",
            "State deltas received by anti-entropy",
            &m.sync_deltas_in,
        ),
        (
            "state_sync_deltas_sent",
            "State deltas sent by anti-entropy",
            &m.sync_deltas_out,
        ),
        (
            "state_sync_bytes",
            "State bytes moved by anti-entropy",
            &m.sync_bytes,
        ),
        (
            "state_sync_summary_bytes",
            "Anti-entropy bytes spent on bucket summaries and lists (the exchange's opening)",
            &m.sync_summary_bytes,
        ),
        (
            "state_sync_digest_bytes",
            "Anti-entropy bytes spent on digests of the buckets that differed",
            &m.sync_digest_bytes,
        ),
        (
            "state_sync_delta_bytes",
            "Anti-entropy bytes spent on the deltas themselves",
            &m.sync_delta_bytes,
        ),
        (
            "state_deltas_parked",
            "State writes held until their writer's certificate is known",
            &m.deltas_parked,
        ),
    ];
    for (name, help, counter) in counters {
        registry.register(
            name,
            help,
            ConstCounter::new(counter.load(Ordering::Relaxed)),
        );
    }
    register_refusals(&mut registry, m);
    register_traffic(&mut registry, state.mesh.traffic());
    registry.register(
        "state_deltas_pending",
        "State writes waiting for their writer's certificate now",
        gauge(usize::try_from(m.deltas_pending.load(Ordering::Relaxed)).unwrap_or(usize::MAX)),
    );
    let load = |counter: &std::sync::atomic::AtomicU64| {
        usize::try_from(counter.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    };
    registry.register(
        "local_health",
        "Failure detection's local health score (0 healthy, up to 8): how far this peer stretches its own probes because it misses acks, fires timers late or has to refute suspicions of itself",
        gauge(load(&m.local_health)),
    );
    registry.register(
        "members_suspected",
        "Members this peer holds under suspicion now",
        gauge(load(&m.suspicions)),
    );
    register_cluster(&mut registry, &state);
    let (entries, tombstones) = {
        let store = state.mesh.store();
        let store = store.borrow();
        (store.len(), store.tombstones())
    };
    registry.register(
        "state_entries",
        "Entries in the replicated state, tombstones included",
        gauge(entries),
    );
    registry.register(
        "state_tombstones",
        "Deleted keys kept in the replicated state until collected (24 h)",
        gauge(tombstones),
    );
    register_ingress(&mut registry, &state.ingress);
    register_discovery(&mut registry, &state);
    let mut body = String::new();
    if encode(&mut body, &registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// `knit_state_deltas_refused_total{reason}`: writes from other members this peer refused,
/// by reason: `signature` (forged, or not its writer's to make), `future` (stamped too far
/// ahead of this peer's clock), `collected` (a deleted key coming back from a member away
/// longer than the tombstone TTL), `unverified` (dropped while waiting for a certificate).
fn register_refusals(registry: &mut Registry, m: &knit_mesh::quic::links::MeshMetrics) {
    use prometheus_client::metrics::counter::Counter;
    let refused = Family::<Vec<(String, String)>, Counter>::default();
    for (reason, counter) in [
        ("signature", &m.deltas_refused_signature),
        ("future", &m.deltas_refused_future),
        ("collected", &m.deltas_refused_collected),
        ("unverified", &m.deltas_dropped_unverified),
    ] {
        refused
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc_by(counter.load(Ordering::Relaxed));
    }
    registry.register(
        "state_deltas_refused",
        "State writes from other members refused, by reason",
        refused,
    );
}

/// The membership traffic by kind: `knit_gossip_messages_total{kind,direction}` and
/// `knit_gossip_message_bytes_total{kind,direction}` (ping, ack, ..., feed, gossip), and
/// the rumors by record: `knit_rumors_total{record,direction}`,
/// `knit_rumor_bytes_total{record,direction}`, `knit_rumors_news_total{record}` (heard and
/// new here: relayed and merged).
fn register_traffic(registry: &mut Registry, traffic: &knit_mesh::traffic::Traffic) {
    use prometheus_client::metrics::counter::Counter;
    let (messages, message_bytes) = (
        Family::<Labels, Counter>::default(),
        Family::<Labels, Counter>::default(),
    );
    for (kind, direction, packets, bytes) in traffic.packets() {
        let at = labels([("kind", kind), ("direction", direction.name())]);
        messages.get_or_create(&at).inc_by(packets);
        message_bytes.get_or_create(&at).inc_by(bytes);
    }
    let (rumors, rumor_bytes, news) = (
        Family::<Labels, Counter>::default(),
        Family::<Labels, Counter>::default(),
        Family::<Labels, Counter>::default(),
    );
    for (record, direction, count) in traffic.rumors() {
        let at = labels([("record", &record), ("direction", direction.name())]);
        rumors.get_or_create(&at).inc_by(count.rumors);
        rumor_bytes.get_or_create(&at).inc_by(count.bytes);
        if direction == knit_mesh::traffic::Direction::In {
            news.get_or_create(&labels([("record", &record)]))
                .inc_by(count.news);
        }
    }
    registry.register(
        "gossip_messages",
        "Membership packets by the SWIM message they carry, sent (out) and received (in)",
        messages,
    );
    registry.register(
        "gossip_message_bytes",
        "Membership packet bytes by the SWIM message they carry",
        message_bytes,
    );
    registry.register(
        "rumors",
        "Store writes riding on membership packets, by record: started here (out), heard (in)",
        rumors,
    );
    registry.register("rumor_bytes", "Encoded size of those rumors", rumor_bytes);
    registry.register(
        "rumors_news",
        "Rumors heard that were new here (relayed on and merged), by record",
        news,
    );
}

fn register_ingress(registry: &mut Registry, stats: &crate::ingress::IngressStats) {
    let ports = stats
        .ports
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let rows = ports.into_iter().map(|(port, s)| {
        let service = s
            .service
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        (service, port, s)
    });
    register_forwarding(registry, "ingress", "published ports", rows);
}

/// Service discovery: `knit_service_vip{service,vip}` (this peer's address of each
/// service), the forwarding counters of the service addresses
/// (`knit_service_address_*{service,port}`, `port` the target) and the DNS server's
/// answers (`knit_dns_queries_total{answer}`).
fn register_discovery(registry: &mut Registry, state: &ApiState) {
    use prometheus_client::metrics::counter::Counter;
    let vips = Family::<Labels, Gauge>::default();
    let directory = state.drivers.directory.borrow().clone();
    for (service, vip) in &directory.vips {
        vips.get_or_create(&labels([("service", service), ("vip", &vip.to_string())]))
            .set(1);
    }
    registry.register(
        "service_vip",
        "This peer's virtual IP of each service",
        vips,
    );
    let ports = state
        .discovery
        .forwarding
        .ports
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let rows = ports
        .into_iter()
        .map(|(target, s)| (target.service, target.port, s));
    register_forwarding(registry, "service_address", "service addresses", rows);
    let queries = Family::<Labels, Counter>::default();
    for (answer, count) in state.discovery.dns.all() {
        queries
            .get_or_create(&labels([("answer", answer)]))
            .inc_by(count);
    }
    registry.register(
        "dns_queries",
        "Questions to this peer's DNS server, by answer: found, nodata, nxdomain, refused (service names), forwarded, failed (the host's resolvers), dropped (too many in flight)",
        queries,
    );
}

/// The counters of a set of forwarding listeners, `<prefix>_connections_total` and the
/// others, labelled by service and port.
fn register_forwarding(
    registry: &mut Registry,
    prefix: &str,
    what: &str,
    rows: impl Iterator<Item = (String, u16, std::sync::Arc<crate::ingress::PortStats>)>,
) {
    use prometheus_client::metrics::counter::Counter;
    let families: [(&str, String, Family<Labels, Counter>); 6] = [
        (
            "connections",
            format!("Client connections to {what}"),
            Family::default(),
        ),
        (
            "bytes",
            format!("Bytes forwarded from {what}, both ways"),
            Family::default(),
        ),
        (
            "retries",
            "Connections retried on another replica".to_owned(),
            Family::default(),
        ),
        (
            "failures",
            "Client connections no replica could take".to_owned(),
            Family::default(),
        ),
        (
            "rejected",
            "Client connections refused: the port or the peer was at its connection cap".to_owned(),
            Family::default(),
        ),
        (
            "timeouts",
            "Client connections closed for silence (nothing said at first, or idle later)"
                .to_owned(),
            Family::default(),
        ),
    ];
    for (service, port, s) in rows {
        let labels = vec![
            ("service".to_owned(), service),
            ("port".to_owned(), port.to_string()),
        ];
        let values = [
            &s.connections,
            &s.bytes,
            &s.retries,
            &s.failures,
            &s.rejected,
            &s.timeouts,
        ];
        for ((_, _, family), value) in families.iter().zip(values) {
            family
                .get_or_create(&labels)
                .inc_by(value.load(Ordering::Relaxed));
        }
    }
    for (name, help, family) in families {
        registry.register(format!("{prefix}_{name}"), help, family);
    }
}

/// `knit_build_info{version}`, `knit_members{state}`, the per-service families and the
/// per-node telemetry, from one reading of the cluster.
fn register_cluster(registry: &mut Registry, state: &ApiState) {
    use prometheus_client::metrics::info::Info;
    registry.register(
        "build",
        "The knit build this peer runs",
        Info::new(labels([("version", env!("CARGO_PKG_VERSION"))])),
    );
    let snapshot = Snapshot::of(&state.mesh);
    let members = Family::<Labels, Gauge>::default();
    for (word, wanted) in [
        ("alive", MemberState::Alive),
        ("suspect", MemberState::Suspect),
        ("down", MemberState::Down),
        ("left", MemberState::Left),
    ] {
        let count = snapshot
            .view
            .members
            .iter()
            .filter(|m| m.state == wanted)
            .count();
        members
            .get_or_create(&labels([("state", word)]))
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    registry.register(
        "members",
        "Members in each state, as this peer sees them (a member it knew before a restart and has not heard from since counts as down)",
        members,
    );
    register_services(registry, &snapshot);
    state.events.with_tally(|tally| {
        registry.register(
            "service_restarts",
            "Replicas started again by their restart policy, seen since this peer started",
            tally.restarts(),
        );
        registry.register(
            "heal_duration_seconds",
            "Heals seen since this peer started (a slot that had a running replica lost it and has one again), by how long the slot had none",
            tally.heals(),
        );
    });
    register_telemetry(registry, &snapshot);
}

/// Each valid service's slots (desired, running, healthy) and whether it rolls out.
fn register_services(registry: &mut Registry, snapshot: &Snapshot) {
    let placement = snapshot.placement();
    let families: [(&str, &str, Family<Labels, Gauge>); 4] = [
        (
            "service_replicas_desired",
            "Slots the service has (for a global service, its eligible nodes)",
            Family::default(),
        ),
        (
            "service_replicas_running",
            "Slots with a running replica on a member that is alive or suspect",
            Family::default(),
        ),
        (
            "service_replicas_healthy",
            "Slots with a running replica that passes its health check (or has none)",
            Family::default(),
        ),
        (
            "service_rollout_in_progress",
            "1 while the service's rollout is updating or rolling back, else 0",
            Family::default(),
        ),
    ];
    let specs = snapshot.specs();
    for (name, counts) in slot_counts(snapshot, &placement) {
        let rolling = specs
            .get(&name)
            .and_then(|spec| snapshot.rollout(spec))
            .is_some_and(|p| matches!(p.state, RolloutState::Updating | RolloutState::RollingBack));
        let service = labels([("service", &name)]);
        let values = [
            counts.desired,
            counts.running,
            counts.healthy,
            usize::from(rolling),
        ];
        for ((_, _, family), value) in families.iter().zip(values) {
            family
                .get_or_create(&service)
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }
    for (name, help, family) in families {
        registry.register(name, help, family);
    }
}

/// Each member's last telemetry sample (members that left excluded), by node id and name.
fn register_telemetry(registry: &mut Registry, snapshot: &Snapshot) {
    use std::sync::atomic::AtomicU64;
    type Float = Gauge<f64, AtomicU64>;
    let families: [(&str, &str, Family<Labels, Float>); 7] = [
        (
            "node_cpu_percent",
            "Busy CPU over the last sample, 0-100 (all cores)",
            Family::default(),
        ),
        ("node_load1", "One-minute load average", Family::default()),
        ("node_memory_used_bytes", "Memory in use", Family::default()),
        (
            "node_memory_total_bytes",
            "Memory in all",
            Family::default(),
        ),
        (
            "node_disk_used_bytes",
            "Disk in use on the data dir's file system",
            Family::default(),
        ),
        (
            "node_disk_total_bytes",
            "Size of the data dir's file system",
            Family::default(),
        ),
        (
            "node_temperature_celsius",
            "The hottest sensor, where the host has sensors",
            Family::default(),
        ),
    ];
    let names = snapshot.names();
    for member in snapshot
        .view
        .members
        .iter()
        .filter(|m| m.state != MemberState::Left)
    {
        let Some(t) = snapshot.telemetry(&member.peer.node) else {
            continue;
        };
        let id = member.peer.node.to_string();
        let node = labels([
            ("node", &id),
            ("name", names.get(&id).map_or("", String::as_str)),
        ]);
        // Byte counts far below 2^52: exact as floats.
        #[allow(clippy::cast_precision_loss)]
        let values = [
            Some(f64::from(t.cpu_percent)),
            Some(t.load1),
            Some(t.memory_used_bytes as f64),
            Some(t.memory_total_bytes as f64),
            Some(t.disk_used_bytes as f64),
            Some(t.disk_total_bytes as f64),
            t.temperature_max_c.map(f64::from),
        ];
        for ((_, _, family), value) in families.iter().zip(values) {
            if let Some(value) = value {
                family.get_or_create(&node).set(value);
            }
        }
    }
    for (name, help, family) in families {
        registry.register(name, help, family);
    }
}
