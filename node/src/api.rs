//! The admin API: JSON over HTTP on loopback, used by the client commands; `/metrics` for
//! Prometheus.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use knit_mesh::quic::Mesh;
use knit_mesh::{MemberState, NodeId};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::peer::{NodeInfo, info_key};

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct ApiState {
    mesh: Mesh,
    token: Arc<str>,
}

impl ApiState {
    pub(crate) fn new(mesh: Mesh, token: String) -> Self {
        Self {
            mesh,
            token: token.into(),
        }
    }
}

/// One node as `node ls` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeSummary {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) addr: String,
    pub(crate) state: MemberState,
    pub(crate) epoch: u64,
    pub(crate) labels: std::collections::BTreeMap<String, String>,
    /// This is the node that answered.
    #[serde(rename = "self")]
    pub(crate) is_self: bool,
    /// When the state last changed, in ms since the Unix epoch, as the answering node saw it.
    pub(crate) since_ms: u64,
    pub(crate) version: Option<String>,
}

/// An error as JSON, with the status that fits it.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

pub(crate) fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/nodes/{node}", get(inspect_node))
        .route("/v1/token", get(token))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves until `shutdown`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) {
    let app = router(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "admin API stopped");
    }
}

fn summaries(mesh: &Mesh) -> Vec<NodeSummary> {
    let view = mesh.view().borrow().clone();
    let store = mesh.store().borrow().clone();
    view.members
        .iter()
        .map(|m| {
            let info: Option<NodeInfo> = store
                .get(&info_key(&m.peer.node))
                .and_then(|bytes| serde_json::from_slice(bytes).ok());
            NodeSummary {
                id: m.peer.node.to_string(),
                name: info.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
                addr: m.peer.addr.to_string(),
                state: m.state,
                epoch: m.peer.epoch,
                labels: info.as_ref().map(|i| i.labels.clone()).unwrap_or_default(),
                is_self: m.peer.node == view.me.node,
                since_ms: m.since_ms,
                version: info.map(|i| i.version),
            }
        })
        .collect()
}

async fn list_nodes(State(state): State<ApiState>) -> Json<Vec<NodeSummary>> {
    Json(summaries(&state.mesh))
}

/// Finds a node by full id, unique id prefix, or name.
pub(crate) fn find_node<'a>(
    nodes: &'a [NodeSummary],
    key: &str,
) -> Result<&'a NodeSummary, ApiError> {
    if let Some(n) = key
        .parse::<NodeId>()
        .ok()
        .and_then(|id| nodes.iter().find(|n| n.id == id.to_string()))
    {
        return Ok(n);
    }
    let matches: Vec<&NodeSummary> = nodes
        .iter()
        .filter(|n| n.name == key || (!key.is_empty() && n.id.starts_with(key)))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no such node: {key}; `knit node ls` lists them"),
        )),
        _ => Err(ApiError(
            StatusCode::CONFLICT,
            format!("{key} matches {} nodes; give more of the id", matches.len()),
        )),
    }
}

async fn inspect_node(
    State(state): State<ApiState>,
    Path(node): Path<String>,
) -> Result<Json<NodeSummary>, ApiError> {
    let nodes = summaries(&state.mesh);
    find_node(&nodes, &node).map(|n| Json(n.clone()))
}

async fn token(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "token": &*state.token }))
}

async fn metrics(State(state): State<ApiState>) -> Response {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;
    use prometheus_client::registry::Registry;

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
    ];
    for (name, help, counter) in counters {
        registry.register(
            name,
            help,
            ConstCounter::new(counter.load(Ordering::Relaxed)),
        );
    }
    let view = state.mesh.view().borrow().clone();
    for wanted in [
        MemberState::Alive,
        MemberState::Suspect,
        MemberState::Down,
        MemberState::Left,
    ] {
        let count = view.members.iter().filter(|m| m.state == wanted).count();
        let name = format!("members_{}", format!("{wanted:?}").to_lowercase());
        registry.register(
            name,
            "Members in this state",
            ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX)),
        );
    }
    let entries = state.mesh.store().borrow().len();
    registry.register(
        "state_entries",
        "Entries in the replicated state",
        ConstGauge::new(i64::try_from(entries).unwrap_or(i64::MAX)),
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
