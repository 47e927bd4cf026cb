//! Rolling updates: which slots may move to a new template now.
//!
//! A rollout follows the spec's template ([`ServiceSpec::template_id`]), not its version
//! number: scaling a service or changing its policies starts none, and two specs written
//! under the same version on two sides of a partition are two rollouts.
//!
//! Each service has a coordinator: the live node that ranks first for the service on the
//! same rendezvous hash as placement ([`coordinator`]). It alone calls [`step`], and
//! publishes the [`Progress`] it returns in its node-owned state; every node reads that
//! progress to gate its replacements ([`allowed`]), through
//! [`crate::ReconcileConfig::update_allowed`]. If the coordinator dies, the next one on the
//! hash resumes from the newest published progress, so a rollout is neither lost nor run
//! twice.
//!
//! Waves follow Docker's update config: `parallelism` slots at a time (0: all), the next
//! wave only after the last one serves the new version and has been watched for `monitor`,
//! then `delay`. A slot of an opened wave that fails at the new version (exits, turns
//! unhealthy, or restarts) counts as a failure; past `max_failure_ratio` the failure action
//! applies: `pause` stops opening waves, `continue` goes on, `rollback` asks for the
//! previous spec.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::node::NodeId;
use crate::placement::score::{node_hash, score, slot_hash};
use crate::replica::{Health, ReplicaReport, ReplicaState, SlotId};
use crate::spec::{FailureAction, ServiceSpec};

/// Where a rollout stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Opening waves.
    Updating,
    /// Stopped by failures; a new spec version starts a new rollout.
    Paused,
    /// Failures asked for the previous spec; the coordinator writes it as a new version.
    RollingBack,
    /// Every slot serves the new version.
    Completed,
}

/// A rollout's progress, as its coordinator publishes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The service.
    pub service: String,
    /// The template being rolled out ([`ServiceSpec::template_id`]).
    #[serde(default)]
    pub template: u64,
    /// The spec version that wrote it, for people.
    pub to_version: u64,
    /// Where it stands.
    pub state: RolloutState,
    /// Slots allowed to move to `to_version`.
    pub opened: BTreeSet<SlotId>,
    /// Waves opened so far.
    pub wave: u32,
    /// When the last opened wave came to serve the new version (ms), for monitor + delay.
    pub wave_served_at_ms: Option<u64>,
    /// Slots that failed at the new version.
    pub failed: BTreeSet<SlotId>,
    /// For people: what happened last.
    pub message: String,
}

impl Progress {
    fn new(spec: &ServiceSpec) -> Self {
        Self {
            service: spec.name.clone(),
            template: spec.template_id(),
            to_version: spec.version,
            state: RolloutState::Updating,
            opened: BTreeSet::new(),
            wave: 0,
            wave_served_at_ms: None,
            failed: BTreeSet::new(),
            message: String::new(),
        }
    }
}

/// The hash key of a service for choosing its coordinator (not a slot's).
const COORDINATOR_INDEX: u32 = u32::MAX;

/// The node that coordinates `service`'s rollouts among `alive`: the first on the hash.
pub fn coordinator<'a>(
    service: &str,
    alive: impl IntoIterator<Item = &'a NodeId>,
) -> Option<&'a NodeId> {
    Coordinators::among(alive).of(service)
}

/// The nodes' hashes, computed once for choosing the coordinators of many services.
pub struct Coordinators<'a> {
    hashes: Vec<(u64, &'a NodeId)>,
}

impl<'a> Coordinators<'a> {
    /// The coordinators among `alive`.
    pub fn among(alive: impl IntoIterator<Item = &'a NodeId>) -> Self {
        Self {
            hashes: alive.into_iter().map(|n| (node_hash(n), n)).collect(),
        }
    }

    /// The coordinator of `service` (see [`coordinator`]).
    pub fn of(&self, service: &str) -> Option<&'a NodeId> {
        let key = slot_hash(service, COORDINATOR_INDEX);
        self.hashes
            .iter()
            .map(|&(hash, n)| (score(key, hash), n))
            .max_by(|a, b| (a.0, a.1.as_str()).cmp(&(b.0, b.1.as_str())))
            .map(|(_, n)| n)
    }
}

/// Every service's coordinator (see [`coordinator`]), kept up to date as live nodes come
/// and go: a node that leaves costs a fresh choice for the services it coordinated only,
/// and one that joins a comparison per service, where choosing anew costs every service
/// times every node.
#[derive(Clone, Debug, Default)]
pub struct CoordinatorTable {
    /// The live nodes and their hashes.
    alive: BTreeMap<NodeId, u64>,
    /// By service: its hash key, and its coordinator's score and id.
    best: BTreeMap<String, (u64, u64, NodeId)>,
}

impl CoordinatorTable {
    /// Brings the table to `alive` and `services`; false when they are the ones it had.
    pub fn update<'a>(
        &mut self,
        alive: &BTreeSet<NodeId>,
        services: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        let services: BTreeSet<&str> = services.into_iter().collect();
        let same_nodes = self.alive.len() == alive.len() && self.alive.keys().eq(alive.iter());
        let same_services = self.best.len() == services.len()
            && self
                .best
                .keys()
                .map(String::as_str)
                .eq(services.iter().copied());
        if same_nodes && same_services {
            return false;
        }
        let removed: BTreeSet<NodeId> = self
            .alive
            .keys()
            .filter(|n| !alive.contains(*n))
            .cloned()
            .collect();
        let added: Vec<(NodeId, u64)> = alive
            .iter()
            .filter(|n| !self.alive.contains_key(*n))
            .map(|n| (n.clone(), node_hash(n)))
            .collect();
        self.alive.retain(|n, _| !removed.contains(n));
        self.alive.extend(added.iter().cloned());
        self.best.retain(|s, _| services.contains(s.as_str()));
        let fresh = |table: &Self, service: &str| {
            let key = slot_hash(service, COORDINATOR_INDEX);
            table
                .alive
                .iter()
                .map(|(n, &hash)| (score(key, hash), n))
                .max_by(|a, b| (a.0, a.1.as_str()).cmp(&(b.0, b.1.as_str())))
                .map(|(score, n)| (key, score, n.clone()))
        };
        for service in &services {
            let stale = self
                .best
                .get(*service)
                .is_none_or(|(_, _, n)| removed.contains(n));
            if stale {
                match fresh(self, service) {
                    Some(best) => self.best.insert((*service).to_owned(), best),
                    None => self.best.remove(*service),
                };
                continue;
            }
            if let Some((key, best_score, best)) = self.best.get_mut(*service) {
                for (n, hash) in &added {
                    let s = score(*key, *hash);
                    if (s, n.as_str()) > (*best_score, best.as_str()) {
                        *best_score = s;
                        best.clone_from(n);
                    }
                }
            }
        }
        true
    }

    /// The coordinator of `service`, as of the last [`CoordinatorTable::update`].
    pub fn of(&self, service: &str) -> Option<&NodeId> {
        self.best.get(service).map(|(_, _, n)| n)
    }
}

/// The newest of several published progresses for `spec`'s current template. A
/// progress that knows when its last wave came to serve is newer than the same one that
/// does not: a successor resuming from a coordinator that died before it saw the wave
/// served starts the wave's clock itself, and must then read its own progress back, not
/// the dead one's, or the clock would start again every round and the next wave never open.
pub fn newest<'a>(
    spec: &ServiceSpec,
    published: impl IntoIterator<Item = &'a Progress>,
) -> Option<&'a Progress> {
    let template = spec.template_id();
    published
        .into_iter()
        .filter(|p| p.service == spec.name && p.template == template)
        .max_by_key(|p| {
            (
                p.state != RolloutState::Updating,
                p.wave,
                p.opened.len(),
                p.failed.len(),
                p.wave_served_at_ms.is_some(),
            )
        })
}

/// The slots of `spec` that may be replaced now, given its newest progress.
pub fn allowed(
    spec: &ServiceSpec,
    slots: &[SlotId],
    progress: Option<&Progress>,
) -> BTreeSet<SlotId> {
    let template = spec.template_id();
    match progress {
        Some(p) if p.template == template && p.state == RolloutState::Completed => {
            slots.iter().cloned().collect()
        }
        Some(p) if p.template == template => p.opened.clone(),
        _ => BTreeSet::new(),
    }
}

/// The reports of `slot` on live nodes.
fn live_reports<'a>(
    slot: &'a SlotId,
    observed: &'a BTreeMap<NodeId, Vec<ReplicaReport>>,
    alive: &'a BTreeSet<NodeId>,
) -> impl Iterator<Item = &'a ReplicaReport> {
    observed
        .iter()
        .filter(|(n, _)| alive.contains(*n))
        .flat_map(|(_, reports)| reports)
        .filter(move |r| &r.slot == slot)
}

/// Whether some live node serves `slot` from `template`.
fn served(
    slot: &SlotId,
    template: u64,
    observed: &BTreeMap<NodeId, Vec<ReplicaReport>>,
    alive: &BTreeSet<NodeId>,
) -> bool {
    live_reports(slot, observed, alive).any(|r| r.serves(template))
}

/// Whether `slot` failed at `template`, on a live node.
fn failed(
    slot: &SlotId,
    template: u64,
    observed: &BTreeMap<NodeId, Vec<ReplicaReport>>,
    alive: &BTreeSet<NodeId>,
) -> bool {
    live_reports(slot, observed, alive)
        .filter(|r| r.template == template)
        .any(|r| r.state == ReplicaState::Failed || r.health == Health::Unhealthy || r.restarts > 0)
}

/// One step of the coordinator: the progress to publish for `spec` now. `slots` are the
/// service's slots in placement order; `waiting` those of them no live node can update now
/// (pending, or placed on a member that is down, as on the minority side of a partition):
/// they are opened once a live node owns them, and the rollout completes only when they
/// serve too. `now_ms` is the coordinator's clock.
pub fn step(
    spec: &ServiceSpec,
    slots: &[SlotId],
    waiting: &BTreeSet<SlotId>,
    observed: &BTreeMap<NodeId, Vec<ReplicaReport>>,
    alive: &BTreeSet<NodeId>,
    progress: Option<&Progress>,
    now_ms: u64,
) -> Progress {
    let template = spec.template_id();
    let mut p = match progress {
        Some(p) if p.template == template => p.clone(),
        _ => Progress::new(spec),
    };
    if p.state != RolloutState::Updating {
        return p;
    }
    let version = p.to_version;
    for slot in p
        .opened
        .iter()
        .filter(|s| failed(s, template, observed, alive))
    {
        p.failed.insert(slot.clone());
    }
    // Docker's ratio: failed replicas over all replicas.
    #[allow(clippy::cast_precision_loss)]
    let ratio = p.failed.len() as f64 / slots.len().max(1) as f64;
    if !p.failed.is_empty() && ratio > spec.update.max_failure_ratio {
        match spec.update.failure_action {
            FailureAction::Pause => {
                p.state = RolloutState::Paused;
                p.message = format!(
                    "paused: {} replica(s) failed at version {version}",
                    p.failed.len()
                );
                return p;
            }
            FailureAction::Rollback if spec.previous.is_some() => {
                p.state = RolloutState::RollingBack;
                p.message = format!(
                    "rolling back: {} replica(s) failed at version {version}",
                    p.failed.len()
                );
                return p;
            }
            FailureAction::Rollback | FailureAction::Continue => {}
        }
    }
    let outdated: Vec<&SlotId> = slots
        .iter()
        .filter(|s| !served(s, template, observed, alive))
        .collect();
    if outdated.is_empty() {
        p.state = RolloutState::Completed;
        p.message = format!("version {version} serves on all {} slot(s)", slots.len());
        return p;
    }
    let in_flight = outdated
        .iter()
        .any(|s| p.opened.contains(*s) && !p.failed.contains(*s) && !waiting.contains(*s));
    if in_flight {
        return p;
    }
    if p.wave > 0 {
        let served_at = *p.wave_served_at_ms.get_or_insert(now_ms);
        if now_ms.saturating_sub(served_at) < spec.update.monitor_ms + spec.update.delay_ms {
            return p;
        }
    }
    let width = match spec.update.parallelism {
        0 => usize::MAX,
        n => n as usize,
    };
    let wave: Vec<SlotId> = outdated
        .iter()
        .filter(|s| !p.opened.contains(**s) && !waiting.contains(**s))
        .take(width)
        .map(|s| (*s).clone())
        .collect();
    if wave.is_empty() {
        let unreachable = outdated.iter().filter(|s| waiting.contains(**s)).count();
        if unreachable > 0 {
            p.message = format!(
                "waiting for {unreachable} slot(s) that no live node can update (pending, or on members that are down)"
            );
        }
        return p;
    }
    p.wave += 1;
    p.wave_served_at_ms = None;
    p.message = format!(
        "wave {}: updating {}",
        p.wave,
        wave.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    p.opened.extend(wave);
    p
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
