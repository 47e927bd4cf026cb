//! `/v1/secrets`: `knit secret create/ls/inspect/rm`.
//!
//! A secret's value is sealed for the cluster before it is written to the replicated
//! state (`sealed.rs`): `state.bin`, the gossip and every answer of this API carry it
//! sealed or not at all. Secrets do not change, as Docker's: a new value is a new name,
//! and a service moves to it with `service update --secret-rm OLD --secret-add NEW`. A
//! secret a service names cannot be removed.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use knit_scheduler::ServiceSpec;

use super::body::Strict;
use super::sealed::{self, not_found, records};
use super::{ApiError, ApiState};
use crate::cluster::Snapshot;
use crate::records::{SealedKind, SealedRecord};
use crate::wire::{ErrorBody, Removed, SecretCreate, SecretSummary};

const KIND: SealedKind = SealedKind::Secret;

fn summary(record: &SealedRecord, specs: &BTreeMap<String, ServiceSpec>) -> SecretSummary {
    SecretSummary {
        name: record.name.clone(),
        size_bytes: record.size_bytes,
        created_at_ms: record.created_at_ms,
        services: sealed::users(specs, KIND, &record.name),
        labels: record.labels.clone(),
    }
}

#[utoipa::path(
    post,
    path = "/v1/secrets",
    tag = "secrets",
    request_body = SecretCreate,
    responses(
        (status = 201, description = "Stored, sealed; never its value", body = SecretSummary),
        (status = 400, description = "A bad name, not hex, empty or over 500 KiB, or an unknown field", body = ErrorBody),
        (status = 200, description = "It exists with the same value (`keep_same`)", body = SecretSummary),
        (status = 409, description = "A secret of this name exists (secrets do not change)", body = ErrorBody),
        (status = 503, description = "Not applied or not saved in time", body = ErrorBody),
        (status = 507, description = "The cluster keeps 1000 secrets already, or this peer's disk is full", body = ErrorBody),
    )
)]
pub(super) async fn create(
    State(state): State<ApiState>,
    Strict(request): Strict<SecretCreate>,
) -> Result<(StatusCode, Json<SecretSummary>), ApiError> {
    let asked = sealed::Request {
        name: &request.name,
        data_hex: &request.data_hex,
        labels: &request.labels,
        keep_same: request.keep_same,
    };
    let (record, created) = sealed::create(&state, KIND, &asked).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let snapshot = Snapshot::of(&state.mesh);
    let specs = snapshot.services().valid;
    Ok((status, Json(summary(&record, &specs))))
}

#[utoipa::path(
    get,
    path = "/v1/secrets",
    tag = "secrets",
    responses((status = 200, description = "Every secret, never its value", body = [SecretSummary]))
)]
pub(super) async fn list(State(state): State<ApiState>) -> Json<Vec<SecretSummary>> {
    let snapshot = Snapshot::of(&state.mesh);
    let specs = snapshot.services().valid;
    Json(
        records(&snapshot, KIND)
            .values()
            .map(|r| summary(r, &specs))
            .collect(),
    )
}

#[utoipa::path(
    get,
    path = "/v1/secrets/{name}",
    tag = "secrets",
    params(("name" = String, Path, description = "The secret's name")),
    responses(
        (status = 200, description = "The secret, never its value", body = SecretSummary),
        (status = 404, description = "No such secret", body = ErrorBody),
    )
)]
pub(super) async fn inspect(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<SecretSummary>, ApiError> {
    let snapshot = Snapshot::of(&state.mesh);
    let records = records(&snapshot, KIND);
    let record = records.get(&name).ok_or_else(|| not_found(KIND, &name))?;
    Ok(Json(summary(record, &snapshot.services().valid)))
}

#[utoipa::path(
    delete,
    path = "/v1/secrets/{name}",
    tag = "secrets",
    params(("name" = String, Path, description = "The secret's name")),
    responses(
        (status = 200, description = "Removed", body = Removed),
        (status = 404, description = "No such secret", body = ErrorBody),
        (status = 409, description = "A service names it", body = ErrorBody),
        (status = 503, description = "Not applied or not saved in time", body = ErrorBody),
    )
)]
pub(super) async fn remove(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Removed>, ApiError> {
    sealed::remove(&state, KIND, &name).await?;
    Ok(Json(Removed { removed: name }))
}
