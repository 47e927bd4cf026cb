//! `/v1/services`: create, list, inspect, update, roll back, remove, and the tasks (`ps`).
//!
//! Writes are last-writer-wins in the replicated store. An update names the version it was
//! made from, so two clients racing on one peer get a clear conflict instead of a silent
//! overwrite; across peers, concurrent updates converge to the same winner everywhere.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use knit_scheduler::placement::Assignment;
use knit_scheduler::spec::limits::check_slot_cap;
use knit_scheduler::spec::{Limits, Mode};
use knit_scheduler::{Health, Placement, ReplicaReport, ReplicaState, ServiceSpec, SlotId};
use serde::{Deserialize, Serialize};

use super::body::Strict;
use super::{ApiError, ApiState};
use crate::cluster::{Invalid, Services, Snapshot};
use crate::records::service_key;
use crate::wire::{ErrorBody, Removed, ServiceSummary, TaskRow, UpdateRequest};

/// A replica that runs where its slot no longer is (handed off, or scaled away): on its way
/// out. A node that is down cannot say what became of its replicas: `lost`.
fn leaving(
    r: &ReplicaReport,
    template: u64,
    node: &str,
    names: &BTreeMap<String, String>,
    active: &BTreeSet<String>,
) -> TaskRow {
    TaskRow {
        slot: r.slot.to_string(),
        id: r.runtime_id.clone(),
        node: names.get(node).cloned().unwrap_or_default(),
        node_id: node.to_owned(),
        desired_state: "shutdown".into(),
        state: if active.contains(node) {
            lower(&r.state)
        } else {
            "lost".into()
        },
        health: lower(&r.health),
        spec_version: r.spec_version,
        current: r.template == template,
        host_port: r.host_ports.values().next().copied(),
        error: r.error.clone(),
        cpu_millis: r.cpu_millis,
    }
}

fn lower<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_lowercase))
        .unwrap_or_default()
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such service: {name}; `knit service ls` lists them"),
    )
}

fn invalid(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
}

/// Refuses a process service when no active member runs the process driver: it is off by
/// default, since a process replica runs straight on the host.
fn check_driver(snapshot: &Snapshot, spec: &ServiceSpec) -> Result<(), ApiError> {
    if spec.driver != knit_scheduler::spec::Driver::Process {
        return Ok(());
    }
    let offered = snapshot.node_views().iter().any(|n| {
        n.labels
            .get(crate::cluster::PROCESS_LABEL)
            .is_some_and(|v| v == "true")
    });
    if offered {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "no node runs the process driver (--driver process): it is off by default; start the peers that should run process replicas with --enable-process-driver (knit lab does), or use --driver docker",
    ))
}

/// A service every peer ignores: what to do about it.
fn ignored(name: &str, reason: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!(
            "service {name} is invalid and every peer ignores it ({reason}); fix it with `knit service update` or `knit service scale`, or remove it with `knit service rm {name}`"
        ),
    )
}

/// The service `name` as peers act on it.
fn current(services: &Services, name: &str) -> Result<ServiceSpec, ApiError> {
    if let Some(spec) = services.valid.get(name) {
        return Ok(spec.clone());
    }
    match services.invalid.get(name) {
        Some(bad) => Err(ignored(name, &bad.reason)),
        None => Err(not_found(name)),
    }
}

/// Checks `spec` against the cluster's limits, the slot cap included.
fn check_limits(
    snapshot: &Snapshot,
    services: &Services,
    limits: &Limits,
    spec: &ServiceSpec,
) -> Result<(), ApiError> {
    spec.validate(limits).map_err(invalid)?;
    let nodes = snapshot.active_nodes();
    check_slot_cap(spec, services.valid.values(), nodes, limits).map_err(invalid)
}

/// Writes `spec` as [`crate::records::put_spec`] does, waiting after each step until the
/// write is applied and on disk: a full disk answers 507 before the spec spreads.
async fn store_spec(state: &ApiState, spec: &ServiceSpec) -> Result<(), ApiError> {
    let unavailable = |_| ApiError::unavailable();
    let stamp = crate::records::put_spec_version(&state.mesh, spec)
        .await
        .map_err(unavailable)?;
    state
        .applied(&crate::records::service_version_key(&spec.name), stamp)
        .await?;
    let stamp = crate::records::put_spec_record(&state.mesh, spec)
        .await
        .map_err(unavailable)?;
    state.applied(&service_key(&spec.name), stamp).await
}

/// Creates a service (`knit service create`); `version` and `previous` are set by the peer.
#[utoipa::path(
    post,
    path = "/v1/services",
    tag = "services",
    request_body = ServiceSpec,
    responses(
        (status = 200, description = "The service as stored, with its version", body = ServiceSpec),
        (status = 400, description = "Not a valid spec: an unknown field, a wrong type, a value out of range or over the cluster's limits", body = ErrorBody),
        (status = 409, description = "A service of this name exists", body = ErrorBody),
        (status = 503, description = "Not applied or not saved in time", body = ErrorBody),
        (status = 507, description = "Applied, but this peer's disk is full", body = ErrorBody),
    )
)]
pub(super) async fn create(
    State(state): State<ApiState>,
    Strict(mut spec): Strict<ServiceSpec>,
) -> Result<Json<ServiceSpec>, ApiError> {
    spec.previous = None;
    let snapshot = Snapshot::of(&state.mesh);
    let limits = snapshot.limits();
    spec.validate(&limits).map_err(invalid)?;
    check_driver(&snapshot, &spec)?;
    super::sealed::check_exist(&snapshot, &spec)?;
    let services = snapshot.services();
    if services.valid.contains_key(&spec.name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "service {} already exists; change it with `knit service update`",
                spec.name
            ),
        ));
    }
    if let Some(bad) = services.invalid.get(&spec.name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "service {} already exists and is invalid ({}); remove it with `knit service rm {}` first",
                spec.name, bad.reason, spec.name
            ),
        ));
    }
    check_limits(&snapshot, &services, &limits, &spec)?;
    spec.version = snapshot.last_version(&spec.name) + 1;
    store_spec(&state, &spec).await?;
    Ok(Json(spec))
}

/// A service's spec as stored (`knit service inspect`), also when peers ignore it as
/// invalid, so that an update can start from it.
#[utoipa::path(
    get,
    path = "/v1/services/{name}",
    tag = "services",
    params(("name" = String, Path, description = "The service's name")),
    responses(
        (status = 200, description = "The spec", body = ServiceSpec),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 422, description = "The stored spec does not decode; remove it", body = ErrorBody),
    )
)]
pub(super) async fn inspect(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceSpec>, ApiError> {
    match Snapshot::of(&state.mesh).stored_spec(&name) {
        Some(Ok(spec)) => Ok(Json(spec)),
        // Shown as stored, so that an update can start from it; `service ls` says why
        // peers ignore it.
        Some(Err(Invalid {
            spec: Some(spec), ..
        })) => Ok(Json(*spec)),
        Some(Err(Invalid { spec: None, reason })) => Err(ignored(&name, &reason)),
        None => Err(not_found(&name)),
    }
}

/// Replaces a service's spec (`knit service update`, `scale`); the old one is kept for
/// rollback.
#[utoipa::path(
    post,
    path = "/v1/services/{name}",
    tag = "services",
    params(("name" = String, Path, description = "The service's name")),
    request_body = UpdateRequest,
    responses(
        (status = 200, description = "The service as stored, with its new version", body = ServiceSpec),
        (status = 400, description = "Not a valid update: an unknown field, a wrong type, a rename, a value out of range", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 409, description = "The service changed since `from_version`", body = ErrorBody),
        (status = 422, description = "The stored spec does not decode; remove it", body = ErrorBody),
        (status = 503, description = "Not applied or not saved in time", body = ErrorBody),
        (status = 507, description = "Applied, but this peer's disk is full", body = ErrorBody),
    )
)]
pub(super) async fn update(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Strict(request): Strict<UpdateRequest>,
) -> Result<Json<ServiceSpec>, ApiError> {
    let snapshot = Snapshot::of(&state.mesh);
    let services = snapshot.services();
    // An invalid spec that decodes may be fixed by an update; it is kept as no previous.
    let (current, fixing) = match services.invalid.get(&name) {
        Some(Invalid {
            spec: Some(spec), ..
        }) => ((**spec).clone(), true),
        Some(Invalid { spec: None, reason }) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "service {name} is invalid ({reason}) and cannot be updated; remove it with `knit service rm {name}` and create it again"
                ),
            ));
        }
        None => (current(&services, &name)?, false),
    };
    if request.from_version != current.version {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "service {name} changed meanwhile (version {} is now {}); run the command again",
                request.from_version, current.version
            ),
        ));
    }
    if request.spec.name != name {
        return Err(invalid(format!(
            "a service cannot be renamed ({name} -> {})",
            request.spec.name
        )));
    }
    let mut spec = request.spec;
    spec.previous = None;
    let limits = snapshot.limits();
    spec.validate(&limits).map_err(invalid)?;
    if spec.driver != current.driver {
        check_driver(&snapshot, &spec)?;
    }
    super::sealed::check_exist(&snapshot, &spec)?;
    let mut next = current.followed_by(spec, request.redeploy);
    if fixing {
        next.previous = None;
    }
    check_limits(&snapshot, &services, &limits, &next)?;
    store_spec(&state, &next).await?;
    Ok(Json(next))
}

/// Goes back to the spec before the last update (`knit service rollback`). Takes no body.
#[utoipa::path(
    post,
    path = "/v1/services/{name}/rollback",
    tag = "services",
    params(("name" = String, Path, description = "The service's name")),
    responses(
        (status = 200, description = "The service as stored, with its new version", body = ServiceSpec),
        (status = 400, description = "There is no previous spec", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 503, description = "Not applied or not saved in time", body = ErrorBody),
    )
)]
pub(super) async fn rollback(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceSpec>, ApiError> {
    let snapshot = Snapshot::of(&state.mesh);
    let services = snapshot.services();
    let current = current(&services, &name)?;
    let Some(previous) = current.previous.clone() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("service {name} has no previous spec to roll back to"),
        ));
    };
    let next = current.followed_by(*previous, false);
    check_limits(&snapshot, &services, &snapshot.limits(), &next)?;
    store_spec(&state, &next).await?;
    Ok(Json(next))
}

/// Removes a service (`knit service rm`); its replicas stop everywhere.
#[utoipa::path(
    delete,
    path = "/v1/services/{name}",
    tag = "services",
    params(("name" = String, Path, description = "The service's name")),
    responses(
        (status = 200, description = "Removed", body = Removed),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 503, description = "Not applied or not saved in time", body = ErrorBody),
    )
)]
pub(super) async fn remove(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Removed>, ApiError> {
    // Whatever the record holds: an invalid spec is removed as any other.
    if Snapshot::of(&state.mesh)
        .store
        .get(&service_key(&name))
        .is_none()
    {
        return Err(not_found(&name));
    }
    state.write(&service_key(&name), None).await?;
    Ok(Json(Removed { removed: name }))
}

/// Every service, as `knit service ls` shows them.
#[utoipa::path(
    get,
    path = "/v1/services",
    tag = "services",
    responses((status = 200, description = "Every stored service, by name", body = Vec<ServiceSummary>))
)]
pub(super) async fn list(State(state): State<ApiState>) -> Json<Vec<ServiceSummary>> {
    let snapshot = Snapshot::of(&state.mesh);
    let mut rows = summaries(&snapshot, &snapshot.placement());
    let directory = state.drivers.directory.borrow().clone();
    for row in &mut rows {
        row.vip = directory.vips.get(&row.name).map(ToString::to_string);
    }
    Json(rows)
}

/// Every stored service as `service ls` shows it, by name, under `placement` (the one
/// `snapshot` gives).
pub(super) fn summaries(snapshot: &Snapshot, placement: &Placement) -> Vec<ServiceSummary> {
    let observed = snapshot.observed();
    let services = snapshot.services();
    let mut rows: Vec<ServiceSummary> = services
        .valid
        .into_values()
        .map(|spec| {
            let slots: Vec<SlotId> = placement
                .iter()
                .filter(|(s, _)| s.service == spec.name)
                .map(|(s, _)| s)
                .collect();
            let running: BTreeSet<&SlotId> = observed
                .values()
                .flatten()
                .filter(|r| r.slot.service == spec.name && r.state == ReplicaState::Running)
                .map(|r| &r.slot)
                .collect();
            ServiceSummary {
                mode: match spec.mode {
                    Mode::Replicated { .. } => "replicated".into(),
                    Mode::Global => "global".into(),
                },
                replicas: u32::try_from(slots.len()).unwrap_or(u32::MAX),
                running: u32::try_from(running.len()).unwrap_or(u32::MAX),
                image: spec.image.clone().unwrap_or_else(|| spec.command.join(" ")),
                ports: spec
                    .ports
                    .iter()
                    .map(|p| match p.published_port() {
                        Some(published) => format!("*:{published}->{}/{}", p.target, p.protocol),
                        None => format!("{}/{}", p.target, p.protocol),
                    })
                    .collect(),
                version: spec.version,
                labels: spec.labels.clone(),
                name: spec.name,
                invalid: None,
                vip: None,
            }
        })
        .collect();
    for (name, bad) in services.invalid {
        rows.push(invalid_summary(name, bad, &observed));
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// A service every peer ignores, as `service ls` shows it: what it asks for, and how many
/// of its replicas still run (left as they were).
fn invalid_summary(
    name: String,
    bad: Invalid,
    observed: &BTreeMap<knit_scheduler::NodeId, Vec<ReplicaReport>>,
) -> ServiceSummary {
    let running: BTreeSet<&SlotId> = observed
        .values()
        .flatten()
        .filter(|r| r.slot.service == name && r.state == ReplicaState::Running)
        .map(|r| &r.slot)
        .collect();
    let spec = bad.spec.map(|s| *s).unwrap_or_default();
    ServiceSummary {
        mode: match spec.mode {
            Mode::Replicated { .. } => "replicated".into(),
            Mode::Global => "global".into(),
        },
        replicas: spec.replicas(),
        running: u32::try_from(running.len()).unwrap_or(u32::MAX),
        image: spec.image.clone().unwrap_or_else(|| spec.command.join(" ")),
        ports: Vec::new(),
        version: spec.version,
        labels: spec.labels.clone(),
        name,
        invalid: Some(bad.reason),
        vip: None,
    }
}

/// `?history=true` adds the replicas each slot had before.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PsQuery {
    /// Add the replicas each slot had before, newest first.
    #[serde(default)]
    history: bool,
}

/// The service's tasks (`knit service ps`): each slot, where it runs and how it is, and the
/// replicas on their way out.
#[utoipa::path(
    get,
    path = "/v1/services/{name}/ps",
    tag = "services",
    params(("name" = String, Path, description = "The service's name"), PsQuery),
    responses(
        (status = 200, description = "The tasks", body = Vec<TaskRow>),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 422, description = "Every peer ignores the service as invalid", body = ErrorBody),
    )
)]
pub(super) async fn ps(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(query): Query<PsQuery>,
) -> Result<Json<Vec<TaskRow>>, ApiError> {
    let snapshot = Snapshot::of(&state.mesh);
    let template = current(&snapshot.services(), &name)?.template_id();
    let placement = snapshot.placement();
    let observed = snapshot.observed();
    let names = snapshot.names();
    let minority = snapshot.quorum().minority();
    let active: BTreeSet<String> = snapshot
        .view
        .members
        .iter()
        .filter(|m| m.state.is_active())
        .map(|m| m.peer.node.to_string())
        .collect();
    let mut rows = Vec::new();
    for (slot, assignment) in placement.iter().filter(|(s, _)| s.service == name) {
        let (node_id, pending) = match assignment {
            Assignment::Assigned(node) => (node.to_string(), None),
            Assignment::Pending(reason) => (String::new(), Some(reason.to_string())),
        };
        let owner = node_id.clone();
        let report = observed
            .iter()
            .find(|(n, _)| n.as_str() == node_id)
            .and_then(|(_, reports)| reports.iter().find(|r| r.slot == slot));
        rows.push(TaskRow {
            slot: slot.to_string(),
            id: report.map(|r| r.runtime_id.clone()).unwrap_or_default(),
            node: names.get(&node_id).cloned().unwrap_or_default(),
            desired_state: "running".into(),
            state: match (&pending, report) {
                (Some(_), _) => "pending".into(),
                (None, Some(r)) => lower(&r.state),
                (None, None) => "assigned".into(),
            },
            health: report.map_or_else(|| lower(&Health::None), |r| lower(&r.health)),
            spec_version: report.map_or(0, |r| r.spec_version),
            current: report.is_some_and(|r| r.template == template),
            host_port: report.and_then(|r| r.host_ports.values().next().copied()),
            error: pending
                .or_else(|| {
                    // A slot on a member this minority cannot see: not reclaimed, and why.
                    minority.clone().filter(|_| !active.contains(&node_id))
                })
                .or_else(|| report.and_then(|r| r.error.clone())),
            cpu_millis: report.and_then(|r| r.cpu_millis),
            node_id,
        });
        for (other, reports) in observed.iter().filter(|(n, _)| n.as_str() != owner) {
            for r in reports.iter().filter(|r| r.slot == slot) {
                rows.push(leaving(r, template, other.as_str(), &names, &active));
            }
        }
    }
    // Replicas of slots that no longer exist (scaled down), still stopping.
    let slots: BTreeSet<SlotId> = placement
        .iter()
        .filter(|(s, _)| s.service == name)
        .map(|(s, _)| s)
        .collect();
    for (node, reports) in &observed {
        for r in reports
            .iter()
            .filter(|r| r.slot.service == name && !slots.contains(&r.slot))
        {
            rows.push(leaving(r, template, node.as_str(), &names, &active));
        }
    }
    // What each slot ran before, on every node, newest first.
    for member in snapshot.view.members.iter().filter(|_| query.history) {
        let node_id = member.peer.node.to_string();
        for ended in snapshot.history(&member.peer.node, &name) {
            rows.push(TaskRow {
                slot: format!("\\_ {}", ended.slot),
                id: ended.runtime_id,
                node: names.get(&node_id).cloned().unwrap_or_default(),
                node_id: node_id.clone(),
                desired_state: "shutdown".into(),
                state: ended.state,
                health: lower(&Health::None),
                spec_version: ended.spec_version,
                current: false,
                host_port: None,
                error: ended.error,
                cpu_millis: None,
            });
        }
    }
    Ok(Json(rows))
}
