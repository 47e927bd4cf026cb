//! `/v1/registries`: `knit login`, `knit logout` and `knit registry ls`.
//!
//! A login is stored once for the whole cluster, its password sealed
//! ([`crate::registry`]): every host's docker driver pulls the registry's images with it.
//! Logging in again to a server replaces its credentials, as Docker's does. No answer of
//! this API carries a password.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::body::Strict;
use super::{ApiError, ApiState};
use crate::cluster::Snapshot;
use crate::registry::{self, PASSWORD_MAX_BYTES, RECORDS_MAX, RegistryRecord, USERNAME_MAX_BYTES};
use crate::wire::{ErrorBody, RegistryLogin, RegistrySummary, Removed};

fn summary(record: &RegistryRecord) -> RegistrySummary {
    RegistrySummary {
        server: record.server.clone(),
        username: record.username.clone(),
        created_at_ms: record.created_at_ms,
    }
}

fn bad(why: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, why)
}

/// Refuses an empty or oversized user name or password, and control characters in the
/// user name (it is shown in listings).
fn check(request: &RegistryLogin) -> Result<(), ApiError> {
    let user = &request.username;
    if user.is_empty() || user.len() > USERNAME_MAX_BYTES || user.chars().any(char::is_control) {
        return Err(bad(format!(
            "the user name must be 1 to {USERNAME_MAX_BYTES} bytes without control characters; give it with -u USER"
        )));
    }
    let password = &request.password;
    if password.is_empty() || password.len() > PASSWORD_MAX_BYTES {
        return Err(bad(format!(
            "the password must be 1 to {PASSWORD_MAX_BYTES} bytes; give it with --password-stdin"
        )));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/v1/registries",
    tag = "registries",
    request_body = RegistryLogin,
    responses(
        (status = 200, description = "Stored for the whole cluster, the password sealed; never the password", body = RegistrySummary),
        (status = 400, description = "A bad server, an empty or oversized user name or password, or an unknown field", body = ErrorBody),
        (status = 503, description = "Not applied or not saved in time", body = ErrorBody),
        (status = 507, description = "The cluster keeps credentials for 100 registries already, or this peer's disk is full", body = ErrorBody),
    )
)]
pub(super) async fn login(
    State(state): State<ApiState>,
    Strict(request): Strict<RegistryLogin>,
) -> Result<Json<RegistrySummary>, ApiError> {
    let server = registry::server_name(&request.server).map_err(|e| bad(e.to_string()))?;
    check(&request)?;
    let store = Snapshot::of(&state.mesh).store;
    let records = registry::records(&store);
    if records.len() >= RECORDS_MAX && !records.iter().any(|r| r.server == server) {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "the cluster keeps credentials for at most {RECORDS_MAX} registries; `knit logout SERVER` those no longer used"
            ),
        ));
    }
    let record = RegistryRecord::seal(
        &state.creds,
        &server,
        &request.username,
        &request.password,
        crate::clock::now_ms(),
    )
    .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let bytes = serde_json::to_vec(&record).map_err(|e| bad(e.to_string()))?;
    state.write(&registry::key(&server), Some(bytes)).await?;
    Ok(Json(summary(&record)))
}

#[utoipa::path(
    get,
    path = "/v1/registries",
    tag = "registries",
    responses((status = 200, description = "Every registry the cluster has credentials for, never a password", body = [RegistrySummary]))
)]
pub(super) async fn list(State(state): State<ApiState>) -> Json<Vec<RegistrySummary>> {
    let store = Snapshot::of(&state.mesh).store;
    Json(registry::records(&store).iter().map(summary).collect())
}

#[utoipa::path(
    delete,
    path = "/v1/registries/{server}",
    tag = "registries",
    params(("server" = String, Path, description = "The server, as `knit registry ls` shows it (`docker.io` for Docker Hub)")),
    responses(
        (status = 200, description = "Removed", body = Removed),
        (status = 400, description = "Not a server name", body = ErrorBody),
        (status = 404, description = "No credentials for this server", body = ErrorBody),
        (status = 503, description = "Not applied or not saved in time", body = ErrorBody),
    )
)]
pub(super) async fn logout(
    State(state): State<ApiState>,
    Path(server): Path<String>,
) -> Result<Json<Removed>, ApiError> {
    let server = registry::server_name(&server).map_err(|e| bad(e.to_string()))?;
    let key = registry::key(&server);
    if Snapshot::of(&state.mesh).store.get(&key).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("not logged in to {server}; `knit registry ls` lists the registries"),
        ));
    }
    state.write(&key, None).await?;
    Ok(Json(Removed { removed: server }))
}
