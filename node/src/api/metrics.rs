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
    ];
    for (name, help, counter) in counters {
        registry.register(
            name,
            help,
            ConstCounter::new(counter.load(Ordering::Relaxed)),
        );
    }
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
    let store = state.mesh.store().borrow().clone();
    registry.register(
        "state_entries",
        "Entries in the replicated state, tombstones included",
        gauge(store.len()),
    );
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
