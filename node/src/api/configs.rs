//! `/v1/configs`: `knit config create/ls/inspect/rm`.
//!
//! A config is a file a service's replicas get at a path of their choice, as Docker's.
//! Configs are not secret: `config inspect` shows the content. They are sealed in the
//! replicated state all the same (`sealed.rs`, a key of their own), so that `state.bin`
//! holds no file's content in clear text. They do not change: a new content is a new name,
//! and a service moves to it with `service update --config-rm OLD --config-add NEW`. A
//! config a service names cannot be removed.

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
use crate::wire::{ConfigCreate, ConfigDetail, ConfigSummary, ErrorBody, Removed};

const KIND: SealedKind = SealedKind::Config;

fn summary(record: &SealedRecord, specs: &BTreeMap<String, ServiceSpec>) -> ConfigSummary {
    ConfigSummary {
        name: record.name.clone(),
        size_bytes: record.size_bytes,
        created_at_ms: record.created_at_ms,
        services: sealed::users(specs, KIND, &record.name),
        labels: record.labels.clone(),
    }
}

#[utoipa::path(
    post,
    path = "/v1/configs",
    tag = "configs",
    request_body = ConfigCreate,
    responses(
        (status = 201, description = "Stored, sealed in the state", body = ConfigSummary),
        (status = 400, description = "A bad name, not hex, empty or over 500 KiB, or an unknown field", body = ErrorBody),
        (status = 200, description = "It exists with the same value (`keep_same`)", body = ConfigSummary),
        (status = 409, description = "A config of this name exists (configs do not change)", body = ErrorBody),
        (status = 503, description = "Not applied or not saved in time", body = ErrorBody),
        (status = 507, description = "The cluster keeps 1000 configs already, or this peer's disk is full", body = ErrorBody),
    )
)]
pub(super) async fn create(
    State(state): State<ApiState>,
    Strict(request): Strict<ConfigCreate>,
) -> Result<(StatusCode, Json<ConfigSummary>), ApiError> {
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
    let specs = Snapshot::of(&state.mesh).services().valid;
    Ok((status, Json(summary(&record, &specs))))
}

#[utoipa::path(
    get,
    path = "/v1/configs",
    tag = "configs",
    responses((status = 200, description = "Every config, without its content", body = [ConfigSummary]))
)]
pub(super) async fn list(State(state): State<ApiState>) -> Json<Vec<ConfigSummary>> {
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
    path = "/v1/configs/{name}",
    tag = "configs",
    params(("name" = String, Path, description = "The config's name")),
    responses(
        (status = 200, description = "The config and its content", body = ConfigDetail),
        (status = 404, description = "No such config", body = ErrorBody),
        (status = 422, description = "The stored config does not decrypt; remove it", body = ErrorBody),
    )
)]
pub(super) async fn inspect(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<ConfigDetail>, ApiError> {
    let snapshot = Snapshot::of(&state.mesh);
    let records = records(&snapshot, KIND);
    let record = records.get(&name).ok_or_else(|| not_found(KIND, &name))?;
    let data = sealed::open(&state, KIND, record)?;
    let summary = summary(record, &snapshot.services().valid);
    Ok(Json(ConfigDetail {
        name: summary.name,
        size_bytes: summary.size_bytes,
        created_at_ms: summary.created_at_ms,
        services: summary.services,
        labels: summary.labels,
        data_hex: hex::encode(data),
    }))
}

#[utoipa::path(
    delete,
    path = "/v1/configs/{name}",
    tag = "configs",
    params(("name" = String, Path, description = "The config's name")),
    responses(
        (status = 200, description = "Removed", body = Removed),
        (status = 404, description = "No such config", body = ErrorBody),
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
