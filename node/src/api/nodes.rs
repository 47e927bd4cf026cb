//! `/v1/nodes`: the members, their records, and operators' overrides.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use knit_mesh::NodeId;
use serde::Deserialize;

use super::body::Strict;
use super::{ApiError, ApiState};
use crate::cluster::{NodeSpec, Snapshot};
use crate::records::node_spec_key;
use crate::wire::{ErrorBody, NodeSummary};

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

/// Every member, as `knit node ls` shows them.
#[utoipa::path(
    get,
    path = "/v1/nodes",
    tag = "nodes",
    responses((status = 200, description = "Every member, as this peer sees it", body = Vec<NodeSummary>))
)]
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

/// One member (`knit node inspect`).
#[utoipa::path(
    get,
    path = "/v1/nodes/{node}",
    tag = "nodes",
    params(("node" = String, Path, description = "The node's id, a unique prefix of it, or its name")),
    responses(
        (status = 200, description = "The node", body = NodeSummary),
        (status = 404, description = "No such node", body = ErrorBody),
        (status = 409, description = "The key matches several nodes", body = ErrorBody),
    )
)]
pub(super) async fn inspect(
    State(state): State<ApiState>,
    Path(node): Path<String>,
) -> Result<Json<NodeSummary>, ApiError> {
    let nodes = summaries(&Snapshot::of(&state.mesh));
    find(&nodes, &node).map(|n| Json(n.clone()))
}

/// Replaces a node's availability and labels (the client merges `--label-add/--label-rm`).
#[utoipa::path(
    post,
    path = "/v1/nodes/{node}/spec",
    tag = "nodes",
    params(("node" = String, Path, description = "The node's id, a unique prefix of it, or its name")),
    request_body = NodeSpec,
    responses(
        (status = 200, description = "The node, with the new spec", body = NodeSummary),
        (status = 400, description = "The body is not a node spec (an unknown field, a wrong type)", body = ErrorBody),
        (status = 404, description = "No such node", body = ErrorBody),
        (status = 409, description = "The key matches several nodes", body = ErrorBody),
        (status = 503, description = "Not applied or not saved in time", body = ErrorBody),
    )
)]
pub(super) async fn update(
    State(state): State<ApiState>,
    Path(node): Path<String>,
    Strict(spec): Strict<NodeSpec>,
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
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RemoveOptions {
    /// Remove a member that is still alive or suspect.
    #[serde(default)]
    force: bool,
}

/// Removes a node from the cluster for good (`knit node rm`): every member forgets it and
/// its records, and refuses it from then on, in any epoch, so its data dir can never bring
/// it back. A member that is still alive or suspect is refused without `force`.
#[utoipa::path(
    delete,
    path = "/v1/nodes/{node}",
    tag = "nodes",
    params(
        ("node" = String, Path, description = "The node's id, a unique prefix of it, or its name"),
        RemoveOptions,
    ),
    responses(
        (status = 200, description = "The node as it was", body = NodeSummary),
        (status = 404, description = "No such node", body = ErrorBody),
        (status = 409, description = "The node answers this request, or is active and `force` is not set", body = ErrorBody),
        (status = 503, description = "Not applied or not saved in time", body = ErrorBody),
    )
)]
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
                crate::wire::word(&found.state)
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
