//! `/v1/cluster/limits`: the limits the cluster sets on service specs (replicas per
//! service, slots in all), stored under [`crate::records::LIMITS_KEY`] for every peer.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use knit_scheduler::spec::Limits;
use knit_scheduler::spec::limits::over_slot_cap;

use super::body::Strict;
use super::{ApiError, ApiState};
use crate::cluster::Snapshot;
use crate::records::LIMITS_KEY;
use crate::wire::ErrorBody;

/// The limits in force.
#[utoipa::path(
    get,
    path = "/v1/cluster/limits",
    tag = "cluster",
    responses((status = 200, description = "The limits in force", body = Limits))
)]
pub(super) async fn limits(State(state): State<ApiState>) -> Json<Limits> {
    Json(Snapshot::of(&state.mesh).limits())
}

/// Sets the limits. Refused when out of range, or when a service that peers act on now
/// would break them (it would be ignored from then on): scale it down first.
#[utoipa::path(
    post,
    path = "/v1/cluster/limits",
    tag = "cluster",
    request_body = Limits,
    responses(
        (status = 200, description = "The limits now in force", body = Limits),
        (status = 400, description = "Out of range, a service would break them, or not a limits body", body = ErrorBody),
        (status = 503, description = "Not applied or not saved in time", body = ErrorBody),
    )
)]
pub(super) async fn set_limits(
    State(state): State<ApiState>,
    Strict(limits): Strict<Limits>,
) -> Result<Json<Limits>, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    limits.validate().map_err(|e| bad(e.to_string()))?;
    let snapshot = Snapshot::of(&state.mesh);
    let services = snapshot.services();
    let mut broken: Vec<String> = services
        .valid
        .values()
        .filter_map(|spec| spec.validate(&limits).err())
        .map(|e| e.to_string())
        .collect();
    let over = over_slot_cap(services.valid.values(), snapshot.active_nodes(), &limits);
    broken.extend(over.into_values().map(|e| e.to_string()));
    if !broken.is_empty() {
        return Err(bad(format!(
            "these limits would make every peer ignore {} service(s); scale them down first: {}",
            broken.len(),
            broken.join("; ")
        )));
    }
    let bytes = serde_json::to_vec(&limits)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    state.write(LIMITS_KEY, Some(bytes)).await?;
    Ok(Json(limits))
}
