//! `/v1/nodes`: the members, their records, and operators' overrides.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use knit_mesh::{MemberState, NodeId};
use knit_scheduler::{Availability, Resources};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::cluster::{NodeSpec, Snapshot};
use crate::records::node_spec_key;

/// One node as `node ls` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeSummary {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) addr: String,
    pub(crate) state: MemberState,
    pub(crate) availability: Availability,
    pub(crate) epoch: u64,
    pub(crate) labels: BTreeMap<String, String>,
    /// This is the node that answered.
    #[serde(rename = "self")]
    pub(crate) is_self: bool,
    /// When the state last changed, in ms since the Unix epoch, as the answering node saw it.
    pub(crate) since_ms: u64,
    pub(crate) version: Option<String>,
    pub(crate) capacity: Resources,
    /// Replicas the node reports.
    pub(crate) replicas: usize,
    /// Its last telemetry sample.
    pub(crate) telemetry: Option<crate::telemetry::Telemetry>,
    /// What it says of its own condition (preventive healing).
    pub(crate) condition: Option<crate::cluster::Condition>,
    /// The node acts on its availability and labels as the answering peer knows them
    /// (false for a moment after `node update`, until the node itself has the change).
    #[serde(default)]
    pub(crate) spec_applied: bool,
    /// Published ports this peer's ingress could not listen on (answering peer only).
    #[serde(default)]
    pub(crate) ingress_errors: Vec<String>,
    /// Why the answering peer reclaims no replicas of members it cannot see, when it is in
    /// a minority (answering peer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) minority: Option<String>,
}

/// Every member as `node ls` shows it (without this peer's ingress errors).
pub(super) fn summaries(snapshot: &Snapshot) -> Vec<NodeSummary> {
    let minority = snapshot.quorum().minority();
    snapshot
        .view
        .members
        .iter()
        .map(|m| {
            let info = snapshot.info(&m.peer.node);
            NodeSummary {
                id: m.peer.node.to_string(),
                name: info.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
                addr: m.peer.addr.to_string(),
                state: m.state,
                availability: snapshot.node_spec(&m.peer.node).availability,
                epoch: m.peer.epoch,
                labels: snapshot.labels(&m.peer.node),
                is_self: m.peer.node == snapshot.view.me.node,
                since_ms: m.since_ms,
                version: info.as_ref().map(|i| i.version.clone()),
                capacity: info.map(|i| i.capacity).unwrap_or_default(),
                replicas: snapshot.reports(&m.peer.node).len(),
                telemetry: snapshot.telemetry(&m.peer.node),
                condition: snapshot.condition(&m.peer.node),
                spec_applied: snapshot.spec_applied(&m.peer.node),
                ingress_errors: Vec::new(),
                minority: minority
                    .clone()
                    .filter(|_| m.peer.node == snapshot.view.me.node),
            }
        })
        .collect()
}

pub(super) async fn list(State(state): State<ApiState>) -> Json<Vec<NodeSummary>> {
    let mut nodes = summaries(&Snapshot::of(&state.mesh));
    // This peer's ingress problems (a published port taken by something else).
    let errors = state
        .ingress
        .bind_errors
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for n in nodes.iter_mut().filter(|n| n.is_self) {
        n.ingress_errors = errors
            .iter()
            .map(|(p, e)| format!("port {p}: {e}"))
            .collect();
    }
    Json(nodes)
}

/// Finds a node by full id, unique id prefix, or name.
fn find<'a>(nodes: &'a [NodeSummary], key: &str) -> Result<&'a NodeSummary, ApiError> {
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
        [] => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no such node: {key}; `knit node ls` lists them"),
        )),
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{key} matches {} nodes; give more of the id", matches.len()),
        )),
    }
}

/// The mesh id of a node `summaries` listed (it came from the view, so it parses).
fn mesh_id(node: &NodeSummary) -> Result<NodeId, ApiError> {
    node.id
        .parse()
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "bad node id"))
}

pub(super) async fn inspect(
    State(state): State<ApiState>,
    Path(node): Path<String>,
) -> Result<Json<NodeSummary>, ApiError> {
    let nodes = summaries(&Snapshot::of(&state.mesh));
    find(&nodes, &node).map(|n| Json(n.clone()))
}

/// Replaces a node's availability and labels (the client merges `--label-add/--label-rm`).
pub(super) async fn update(
    State(state): State<ApiState>,
    Path(node): Path<String>,
    Json(spec): Json<NodeSpec>,
) -> Result<Json<NodeSummary>, ApiError> {
    let nodes = summaries(&Snapshot::of(&state.mesh));
    let id = mesh_id(find(&nodes, &node)?)?;
    let bytes = serde_json::to_vec(&spec)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    state.write(&node_spec_key(&id), Some(bytes)).await?;
    let nodes = summaries(&Snapshot::of(&state.mesh));
    find(&nodes, &id.to_string()).map(|n| Json(n.clone()))
}

/// `DELETE /v1/nodes/{node}?force=true`'s options.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RemoveOptions {
    #[serde(default)]
    force: bool,
}

/// Removes a node from the cluster for good (`knit node rm`): every member forgets it and
/// its records, and refuses it from then on, in any epoch, so its data dir can never bring
/// it back. A member that is still alive or suspect is refused without `force`.
pub(super) async fn remove(
    State(state): State<ApiState>,
    Path(node): Path<String>,
    Query(options): Query<RemoveOptions>,
) -> Result<Json<NodeSummary>, ApiError> {
    let nodes = summaries(&Snapshot::of(&state.mesh));
    let found = find(&nodes, &node)?.clone();
    let label = if found.name.is_empty() {
        found.id.clone()
    } else {
        found.name.clone()
    };
    if found.is_self {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "{label} is the node answering this request; remove it through another peer's API (--api ADDR)"
            ),
        ));
    }
    if found.state.is_active() && !options.force {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "{label} is {}: drain it (knit node update --availability drain {label}), stop knit on it, then remove it; or give --force to cut it off now (its replicas there are left running, outside knit)",
                crate::client::word(&found.state)
            ),
        ));
    }
    let id = mesh_id(&found)?;
    let record = serde_json::json!({
        "name": found.name,
        "state": found.state,
        "removed_at_ms": crate::clock::now_ms(),
    });
    let bytes = serde_json::to_vec(&record)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    state
        .write(&knit_mesh::store::revoked_key(&id), Some(bytes))
        .await?;
    state.write(&node_spec_key(&id), None).await?;
    Ok(Json(found))
}
