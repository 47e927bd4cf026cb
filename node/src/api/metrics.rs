//! `/metrics`: Prometheus text, from the mesh's counters and the state's size.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use knit_mesh::MemberState;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::ApiState;

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
    registry.register(
        "state_deltas_pending",
        "State writes waiting for their writer's certificate now",
        gauge(usize::try_from(m.deltas_pending.load(Ordering::Relaxed)).unwrap_or(usize::MAX)),
    );
    let view = state.mesh.view().borrow().clone();
    for (name, wanted) in [
        ("members_alive", MemberState::Alive),
        ("members_suspect", MemberState::Suspect),
        ("members_down", MemberState::Down),
        ("members_left", MemberState::Left),
    ] {
        let count = view.members.iter().filter(|m| m.state == wanted).count();
        registry.register(
            name,
            "Members in this state, as this peer sees them",
            gauge(count),
        );
    }
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
    use prometheus_client::metrics::family::Family;
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

fn register_ingress(registry: &mut Registry, stats: &crate::ingress::IngressStats) {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    type Labels = Vec<(String, String)>;
    let families: [(&str, &str, Family<Labels, Counter>); 6] = [
        (
            "ingress_connections",
            "Client connections to published ports",
            Family::default(),
        ),
        (
            "ingress_bytes",
            "Bytes forwarded by the ingress, both ways",
            Family::default(),
        ),
        (
            "ingress_retries",
            "Connections retried on another replica",
            Family::default(),
        ),
        (
            "ingress_failures",
            "Client connections no replica could take",
            Family::default(),
        ),
        (
            "ingress_rejected",
            "Client connections refused: the port or the peer was at its connection cap",
            Family::default(),
        ),
        (
            "ingress_timeouts",
            "Client connections closed for silence (nothing said at first, or idle later)",
            Family::default(),
        ),
    ];
    let ports = stats
        .ports
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for (port, s) in ports {
        let service = s
            .service
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
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
        registry.register(name, help, family);
    }
}
