//! `/v1/secrets`: `knit secret create/ls/inspect/rm`.
//!
//! A secret's value is sealed for the cluster (`knit_mesh::quic::sealed`, AES-256-GCM
//! under a key derived from the CA key every member holds) before it is written to the
//! replicated state: `state.bin`, the gossip and every answer of this API carry it sealed
//! or not at all. Secrets do not change, as Docker's: a new value is a new name, and a
//! service moves to it with `service update --secret-rm OLD --secret-add NEW`. A secret a
//! service names cannot be removed.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use knit_mesh::quic::sealed::{self, Purpose};
use knit_scheduler::ServiceSpec;
use knit_scheduler::spec::secret_name_is_valid;

use super::body::Strict;
use super::{ApiError, ApiState};
use crate::cluster::Snapshot;
use crate::records::{SECRET_PREFIX, SecretRecord, secret_key};
use crate::wire::{ErrorBody, Removed, SecretCreate, SecretSummary};

/// The largest secret, as Docker's.
pub(crate) const SECRET_MAX_BYTES: usize = 500 * 1024;

/// Secrets a cluster keeps.
const SECRETS_MAX: usize = 1_000;

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such secret: {name}; `knit secret ls` lists them"),
    )
}

/// Every stored secret, by name (the value still sealed).
pub(crate) fn records(snapshot: &Snapshot) -> BTreeMap<String, SecretRecord> {
    snapshot
        .store
        .scan(SECRET_PREFIX)
        .filter_map(|(_, bytes, _)| serde_json::from_slice::<SecretRecord>(bytes).ok())
        .map(|r| (r.name.clone(), r))
        .collect()
}

/// The services that name `secret`, now or in the spec kept for rollback.
fn users(specs: &BTreeMap<String, ServiceSpec>, secret: &str) -> Vec<String> {
    specs
        .values()
        .filter(|spec| {
            std::iter::once(*spec)
                .chain(spec.previous.as_deref())
                .any(|s| s.secrets.iter().any(|r| r.source == secret))
        })
        .map(|spec| spec.name.clone())
        .collect()
}

/// Refuses a spec that names a secret the cluster does not have.
pub(crate) fn check_exist(snapshot: &Snapshot, spec: &ServiceSpec) -> Result<(), ApiError> {
    if spec.secrets.is_empty() {
        return Ok(());
    }
    let have = records(snapshot);
    match spec.secrets.iter().find(|r| !have.contains_key(&r.source)) {
        Some(missing) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "service {} names secret {}, which does not exist; create it first: `knit secret create {} FILE`",
                spec.name, missing.source, missing.source
            ),
        )),
        None => Ok(()),
    }
}

fn summary(record: &SecretRecord, specs: &BTreeMap<String, ServiceSpec>) -> SecretSummary {
    SecretSummary {
        name: record.name.clone(),
        size_bytes: record.size_bytes,
        created_at_ms: record.created_at_ms,
        services: users(specs, &record.name),
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
        (status = 409, description = "A secret of this name exists (secrets do not change)", body = ErrorBody),
        (status = 503, description = "Not applied or not saved in time", body = ErrorBody),
        (status = 507, description = "The cluster keeps 1000 secrets already, or this peer's disk is full", body = ErrorBody),
    )
)]
pub(super) async fn create(
    State(state): State<ApiState>,
    Strict(request): Strict<SecretCreate>,
) -> Result<(StatusCode, Json<SecretSummary>), ApiError> {
    let bad = |why: String| ApiError::new(StatusCode::BAD_REQUEST, why);
    if !secret_name_is_valid(&request.name) {
        return Err(bad(format!(
            "secret name {:?} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
            request.name
        )));
    }
    let data = hex::decode(&request.data_hex)
        .map_err(|_| bad("data_hex must be the secret's bytes in hex".to_owned()))?;
    if data.is_empty() || data.len() > SECRET_MAX_BYTES {
        return Err(bad(format!(
            "a secret holds 1 to {SECRET_MAX_BYTES} bytes; this one has {}",
            data.len()
        )));
    }
    let snapshot = Snapshot::of(&state.mesh);
    let existing = records(&snapshot);
    if existing.contains_key(&request.name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "secret {} already exists; secrets do not change: create one under a new name and move services to it with `knit service update --secret-rm {} --secret-add NEW`",
                request.name, request.name
            ),
        ));
    }
    if existing.len() >= SECRETS_MAX {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            format!("the cluster keeps at most {SECRETS_MAX} secrets; remove unused ones first"),
        ));
    }
    let sealed = sealed::seal(&state.creds, Purpose::Secret, &request.name, &data)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let record = SecretRecord {
        name: request.name.clone(),
        sealed_hex: hex::encode(sealed),
        size_bytes: data.len(),
        created_at_ms: crate::clock::now_ms(),
    };
    let bytes = serde_json::to_vec(&record).map_err(|e| bad(e.to_string()))?;
    state.write(&secret_key(&request.name), Some(bytes)).await?;
    let specs = snapshot.services().valid;
    Ok((StatusCode::CREATED, Json(summary(&record, &specs))))
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
        records(&snapshot)
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
    let records = records(&snapshot);
    let record = records.get(&name).ok_or_else(|| not_found(&name))?;
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
    let snapshot = Snapshot::of(&state.mesh);
    if !records(&snapshot).contains_key(&name) {
        return Err(not_found(&name));
    }
    let users = users(&snapshot.services().valid, &name);
    if let Some(first) = users.first() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "secret {name} is in use by {}; remove it from them first (`knit service update --secret-rm {name} {first}`)",
                users.join(", ")
            ),
        ));
    }
    state.write(&secret_key(&name), None).await?;
    Ok(Json(Removed { removed: name }))
}
