//! The agent's part in rolling updates: gate this node's replacements by the rollouts'
//! published progress, and coordinate the services whose coordinator this node is.

use std::collections::{BTreeMap, BTreeSet};

use knit_mesh::quic::Mesh;
use knit_mesh::store::owned_key;
use knit_scheduler::placement::Assignment;
use knit_scheduler::rollout::{self, Progress, RolloutState};
use knit_scheduler::spec::limits::check_slot_cap;
use knit_scheduler::{NodeId, Placement, ReplicaReport, ServiceSpec, SlotId};

use crate::cluster::{Snapshot, service_key, service_version_key};

/// The key under which a node publishes its progress of `service`'s rollout.
pub(crate) fn progress_key(node: &knit_mesh::NodeId, service: &str) -> String {
    owned_key(node, &format!("rollout/{service}"))
}

/// Every published progress of `service`, from every node.
fn published(snapshot: &Snapshot, service: &str) -> Vec<Progress> {
    snapshot
        .view
        .members
        .iter()
        .filter_map(|m| snapshot.store.get(&progress_key(&m.peer.node, service)))
        .filter_map(|bytes| serde_json::from_slice(bytes).ok())
        .collect()
}

fn slots_of(placement: &Placement, service: &str) -> Vec<SlotId> {
    placement
        .iter()
        .filter(|(s, _)| s.service == service)
        .map(|(s, _)| s)
        .collect()
}

/// The slots whose outdated replicas may be replaced now, over all services.
pub(crate) fn gate(
    snapshot: &Snapshot,
    placement: &Placement,
    specs: &BTreeMap<String, ServiceSpec>,
) -> BTreeSet<SlotId> {
    let mut open = BTreeSet::new();
    for spec in specs.values() {
        let progress = published(snapshot, &spec.name);
        let newest = rollout::newest(spec, &progress);
        open.extend(rollout::allowed(
            spec,
            &slots_of(placement, &spec.name),
            newest,
        ));
    }
    open
}

/// What coordinating needs from the round.
pub(crate) struct Round<'a> {
    pub(crate) mesh: &'a Mesh,
    pub(crate) snapshot: &'a Snapshot,
    pub(crate) placement: &'a Placement,
    pub(crate) specs: &'a BTreeMap<String, ServiceSpec>,
    pub(crate) observed: &'a BTreeMap<NodeId, Vec<ReplicaReport>>,
    pub(crate) alive: &'a BTreeSet<NodeId>,
    pub(crate) me: &'a NodeId,
    pub(crate) me_mesh: knit_mesh::NodeId,
}

/// Applies the autoscaling policy of `spec`, as its coordinator.
async fn autoscale(round: &Round<'_>, spec: &ServiceSpec) {
    let reports: Vec<&ReplicaReport> = round
        .observed
        .iter()
        .filter(|(n, _)| round.alive.contains(*n))
        .flat_map(|(_, reports)| reports)
        .collect();
    let last_change_ms = round
        .snapshot
        .store
        .stamp(&service_key(&spec.name))
        .map_or(0, |s| s.millis());
    let Some(replicas) =
        knit_scheduler::autoscale::desired(spec, &reports, last_change_ms, crate::clock::now_ms())
    else {
        return;
    };
    let mut next = spec.clone();
    next.mode = knit_scheduler::spec::Mode::Replicated { replicas };
    let mut next = spec.followed_by(next, false);
    // A rollback still goes back to the spec before the operator's last change.
    next.previous.clone_from(&spec.previous);
    let limits = round.snapshot.limits();
    let fits = next.validate(&limits).and_then(|()| {
        let nodes = round.snapshot.active_nodes();
        check_slot_cap(&next, round.specs.values(), nodes, &limits)
    });
    if let Err(e) = fits {
        // Scaling past a limit would make every peer ignore the service: stay put.
        let what = "not autoscaling past the cluster's limits";
        crate::cluster::warn_once(&service_key(&spec.name), what, &e.to_string());
        return;
    }
    tracing::info!(service = %spec.name, from = spec.replicas(), to = replicas, "autoscaling");
    write(round.mesh, &next).await;
}

/// Steps the rollouts this node coordinates and publishes their progress; writes the
/// previous spec of a rollout that failed into a rollback; applies autoscaling policies.
pub(crate) async fn coordinate(round: Round<'_>, mine: &mut BTreeMap<String, Progress>) {
    for spec in round.specs.values() {
        if rollout::coordinator(&spec.name, round.alive) != Some(round.me) {
            continue;
        }
        autoscale(&round, spec).await;
        let progress = published(round.snapshot, &spec.name);
        let newest = rollout::newest(spec, &progress);
        let slots = slots_of(round.placement, &spec.name);
        let waiting: BTreeSet<SlotId> = slots
            .iter()
            .filter(|slot| {
                !matches!(round.placement.get(slot),
                    Some(Assignment::Assigned(owner)) if round.alive.contains(owner))
            })
            .cloned()
            .collect();
        let next = rollout::step(
            spec,
            &slots,
            &waiting,
            round.observed,
            round.alive,
            newest,
            crate::clock::now_ms(),
        );
        if mine.get(&spec.name) == Some(&next) {
            continue;
        }
        if next.message != newest.map(|p| p.message.clone()).unwrap_or_default()
            && !next.message.is_empty()
        {
            tracing::info!(service = %spec.name, version = next.to_version, state = ?next.state, "{}", next.message);
        }
        if next.state == RolloutState::RollingBack
            && newest.is_none_or(|p| p.state != RolloutState::RollingBack)
        {
            roll_back(round.mesh, spec).await;
        }
        let Ok(bytes) = serde_json::to_vec(&next) else {
            continue;
        };
        if round
            .mesh
            .put(&progress_key(&round.me_mesh, &spec.name), Some(bytes))
            .await
            .is_ok()
        {
            mine.insert(spec.name.clone(), next);
        }
    }
    // Progress of services that are gone.
    let gone: Vec<String> = mine
        .keys()
        .filter(|s| !round.specs.contains_key(*s))
        .cloned()
        .collect();
    for service in gone {
        if round
            .mesh
            .put(&progress_key(&round.me_mesh, &service), None)
            .await
            .is_ok()
        {
            mine.remove(&service);
        }
    }
}

/// Writes `spec`'s previous spec as its next version.
async fn roll_back(mesh: &Mesh, spec: &ServiceSpec) {
    let Some(previous) = spec.previous.as_deref() else {
        return;
    };
    tracing::warn!(service = %spec.name, from = spec.version, "update failed: rolling back to the previous spec");
    write(mesh, &spec.followed_by(previous.clone(), false)).await;
}

/// Writes `next` and its version.
async fn write(mesh: &Mesh, next: &ServiceSpec) {
    let (Ok(version), Ok(bytes)) = (serde_json::to_vec(&next.version), serde_json::to_vec(&next))
    else {
        return;
    };
    let _ = mesh
        .put(&service_version_key(&next.name), Some(version))
        .await;
    let _ = mesh.put(&service_key(&next.name), Some(bytes)).await;
}
