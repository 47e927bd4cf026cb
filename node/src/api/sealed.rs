//! What secrets and configs share: values sealed for the cluster
//! (`knit_mesh::quic::sealed`, AES-256-GCM under a key derived from the CA key every
//! member holds, one key per kind) before they are written to the replicated state, so
//! that `state.bin` and the gossip carry them sealed. Neither changes once created, as
//! Docker's: a new value is a new name, and a service moves to it with an update. One that
//! a service names (or its spec kept for rollback) cannot be removed.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use knit_mesh::quic::sealed;
use knit_scheduler::ServiceSpec;
use knit_scheduler::spec::secret_name_is_valid;

use super::{ApiError, ApiState};
use crate::cluster::Snapshot;
use crate::records::{SealedKind, SealedRecord};

/// The largest secret or config, as Docker's.
pub(crate) const VALUE_MAX_BYTES: usize = 500 * 1024;

/// Secrets, and configs, a cluster keeps (each).
const RECORDS_MAX: usize = 1_000;

pub(super) fn not_found(kind: SealedKind, name: &str) -> ApiError {
    let what = kind.word();
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such {what}: {name}; `knit {what} ls` lists them"),
    )
}

/// Every stored secret or config of `kind`, by name (the value still sealed).
pub(super) fn records(snapshot: &Snapshot, kind: SealedKind) -> BTreeMap<String, SealedRecord> {
    snapshot
        .store
        .scan(kind.prefix())
        .filter_map(|(_, bytes, _)| serde_json::from_slice::<SealedRecord>(bytes).ok())
        .map(|r| (r.name.clone(), r))
        .collect()
}

/// The names of `kind` that `spec` gives its replicas.
fn named(spec: &ServiceSpec, kind: SealedKind) -> Vec<&str> {
    match kind {
        SealedKind::Secret => spec.secrets.iter().map(|r| r.source.as_str()).collect(),
        SealedKind::Config => spec.configs.iter().map(|r| r.source.as_str()).collect(),
    }
}

/// The services that name `name` of `kind`, now or in the spec kept for rollback.
pub(super) fn users(
    specs: &BTreeMap<String, ServiceSpec>,
    kind: SealedKind,
    name: &str,
) -> Vec<String> {
    specs
        .values()
        .filter(|spec| {
            std::iter::once(*spec)
                .chain(spec.previous.as_deref())
                .any(|s| named(s, kind).contains(&name))
        })
        .map(|spec| spec.name.clone())
        .collect()
}

/// Refuses a spec that names a secret or a config the cluster does not have.
pub(crate) fn check_exist(snapshot: &Snapshot, spec: &ServiceSpec) -> Result<(), ApiError> {
    for kind in [SealedKind::Secret, SealedKind::Config] {
        let wanted = named(spec, kind);
        if wanted.is_empty() {
            continue;
        }
        let have = records(snapshot, kind);
        if let Some(missing) = wanted.iter().find(|name| !have.contains_key(**name)) {
            let what = kind.word();
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "service {} names {what} {missing}, which does not exist; create it first: `knit {what} create {missing} FILE`",
                    spec.name
                ),
            ));
        }
    }
    Ok(())
}

/// What `create` was asked for.
pub(super) struct Request<'a> {
    pub(super) name: &'a str,
    pub(super) data_hex: &'a str,
    pub(super) labels: &'a BTreeMap<String, String>,
    /// An existing one with the same value is an answer, not a conflict.
    pub(super) keep_same: bool,
}

/// Seals the value as `name` of `kind` and writes it; refuses a bad name, size or label,
/// an existing name (unless `keep_same` and the value is the same: then the existing
/// record, and `false`), and a full cluster. `true` when it was created.
pub(super) async fn create(
    state: &ApiState,
    kind: SealedKind,
    request: &Request<'_>,
) -> Result<(SealedRecord, bool), ApiError> {
    let (what, name) = (kind.word(), request.name);
    let bad = |why: String| ApiError::new(StatusCode::BAD_REQUEST, why);
    if !secret_name_is_valid(name) {
        return Err(bad(format!(
            "{what} name {name:?} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )));
    }
    check_labels(request.labels).map_err(bad)?;
    let data = hex::decode(request.data_hex)
        .map_err(|_| bad(format!("data_hex must be the {what}'s bytes in hex")))?;
    if data.is_empty() || data.len() > VALUE_MAX_BYTES {
        return Err(bad(format!(
            "a {what} holds 1 to {VALUE_MAX_BYTES} bytes; this one has {}",
            data.len()
        )));
    }
    let snapshot = Snapshot::of(&state.mesh);
    let existing = records(&snapshot, kind);
    if let Some(record) = existing.get(name) {
        if request.keep_same && open(state, kind, record)? == data {
            return Ok((record.clone(), false));
        }
        let why = if request.keep_same {
            format!(
                "{what} {name} already exists with another value; {what}s do not change: give the new value a new name (in a Compose file, a new key or `name:`) and deploy again"
            )
        } else {
            format!(
                "{what} {name} already exists; {what}s do not change: create one under a new name and move services to it with `knit service update --{what}-rm {name} --{what}-add NEW`"
            )
        };
        return Err(ApiError::new(StatusCode::CONFLICT, why));
    }
    if existing.len() >= RECORDS_MAX {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            format!("the cluster keeps at most {RECORDS_MAX} {what}s; remove unused ones first"),
        ));
    }
    let sealed = sealed::seal(&state.creds, kind.purpose(), name, &data)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let record = SealedRecord {
        name: name.to_owned(),
        sealed_hex: hex::encode(sealed),
        size_bytes: data.len(),
        created_at_ms: crate::clock::now_ms(),
        labels: request.labels.clone(),
    };
    let bytes = serde_json::to_vec(&record).map_err(|e| bad(e.to_string()))?;
    state.write(&kind.key(name), Some(bytes)).await?;
    Ok((record, true))
}

/// Labels within a service's bounds.
fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    use knit_scheduler::spec::limits::{LABEL_KEY_MAX_BYTES, LABEL_VALUE_MAX_BYTES, LABELS_MAX};
    if labels.len() > LABELS_MAX {
        return Err(format!("at most {LABELS_MAX} labels"));
    }
    match labels.iter().find(|(k, v)| {
        k.is_empty() || k.len() > LABEL_KEY_MAX_BYTES || v.len() > LABEL_VALUE_MAX_BYTES
    }) {
        Some((k, _)) => Err(format!(
            "label {k:?}: keys are 1-{LABEL_KEY_MAX_BYTES} bytes, values at most {LABEL_VALUE_MAX_BYTES}"
        )),
        None => Ok(()),
    }
}

/// The clear value of `record` of `kind` (configs only are shown).
pub(super) fn open(
    state: &ApiState,
    kind: SealedKind,
    record: &SealedRecord,
) -> Result<Vec<u8>, ApiError> {
    hex::decode(&record.sealed_hex)
        .ok()
        .and_then(|bytes| sealed::open(&state.creds, kind.purpose(), &record.name, &bytes))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "{} {} does not decrypt with this cluster's key; remove it and create it again",
                    kind.word(),
                    record.name
                ),
            )
        })
}

/// Removes `name` of `kind`, unless a service names it.
pub(super) async fn remove(state: &ApiState, kind: SealedKind, name: &str) -> Result<(), ApiError> {
    let what = kind.word();
    let snapshot = Snapshot::of(&state.mesh);
    if !records(&snapshot, kind).contains_key(name) {
        return Err(not_found(kind, name));
    }
    let users = users(&snapshot.services().valid, kind, name);
    if let Some(first) = users.first() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "{what} {name} is in use by {}; remove it from them first (`knit service update --{what}-rm {name} {first}`)",
                users.join(", ")
            ),
        ));
    }
    state.write(&kind.key(name), None).await
}
