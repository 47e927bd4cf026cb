//! The cluster as this peer knows it, read from the mesh's view and replicated store: the
//! keys knit writes, node records, service specs, and the placement every peer computes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use knit_mesh::membership::MemberRecord;
use knit_mesh::quic::reach::Reachability;
use knit_mesh::quic::{Mesh, View};
use knit_mesh::store::{Stamp, Store};
use knit_mesh::{MemberState, NodeId, PeerId};
use knit_scheduler::spec::Limits;
use knit_scheduler::spec::limits::{SPEC_RECORD_MAX_BYTES, over_slot_cap};
use knit_scheduler::{
    Availability, NodeView, Placement, PlacementConfig, ReplicaReport, Resources, ServiceSpec,
};
use serde::{Deserialize, Serialize};

use crate::records::{
    LIMITS_KEY, SERVICE_PREFIX, applied_key, condition_key, history_key, info_key, node_spec_key,
    reports_prefix, service_key, service_version_key,
};

/// A stored service spec that no peer acts on (written by an older or misbehaving peer,
/// or left past the cluster's limits), and why. Its replicas are left as they are: not
/// started, restarted, probed, routed to or stopped, until an operator updates or removes
/// the service.
#[derive(Debug, Clone)]
pub(crate) struct Invalid {
    /// The spec, when it decodes (an update can then start from it).
    pub(crate) spec: Option<Box<ServiceSpec>>,
    pub(crate) reason: String,
}

/// The stored services, split into those peers act on and those they ignore.
#[derive(Debug, Default)]
pub(crate) struct Services {
    pub(crate) valid: BTreeMap<String, ServiceSpec>,
    pub(crate) invalid: BTreeMap<String, Invalid>,
}

/// Records already logged as unreadable or invalid, with the reason, so that each is
/// logged once rather than every round.
static REPORTED: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());
/// Past this many, the memory of what was logged starts again.
const REPORTED_MAX: usize = 1024;

/// Logs `what` about `key` once per distinct `reason`.
pub(crate) fn warn_once(key: &str, what: &str, reason: &str) {
    let mut reported = REPORTED.lock().unwrap_or_else(PoisonError::into_inner);
    if reported.len() >= REPORTED_MAX {
        reported.clear();
    }
    if reported.insert((key.to_owned(), reason.to_owned())) {
        tracing::warn!(key, reason, "{what}");
    }
}

/// A node's acknowledgement of its node spec, written once its rounds read it, so that
/// `knit node update` can wait until the node itself has the change.
///
/// A pause takes effect with it: until the node has said which slots it keeps, every peer
/// places as if it were still active. Its kept slots come from the node itself, which
/// knows what it runs at once, where other peers learn it from reports that may lag; so
/// every peer pins the same slots, and none moves a slot that the paused node still runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Applied {
    /// The stamp of the node spec acknowledged.
    pub(crate) spec: Stamp,
    /// Under a pause: the slots the node ran when it took it, which it keeps.
    #[serde(default)]
    pub(crate) kept: Vec<knit_scheduler::SlotId>,
}

/// Every member with an `info` record in `store` that was not removed (`knit node rm`):
/// its id, record and the record's stamp.
pub(crate) fn known_members(store: &Store) -> impl Iterator<Item = (NodeId, NodeInfo, Stamp)> {
    static NONE: BTreeSet<NodeId> = BTreeSet::new();
    known_members_except(store, &NONE)
}

/// [`known_members`] but those in `except`, whose records are not decoded.
fn known_members_except<'a>(
    store: &'a Store,
    except: &'a BTreeSet<NodeId>,
) -> impl Iterator<Item = (NodeId, NodeInfo, Stamp)> + 'a {
    store
        .scan("owned/")
        .filter(|(key, _, _)| key.ends_with("/info"))
        .filter_map(|(key, value, stamp)| {
            let node = knit_mesh::store::key_owner(key)?;
            if except.contains(&node) || store.revoked_at(&node).is_some() {
                return None;
            }
            let info = crate::decoded::decode::<NodeInfo>(key, value).ok()?;
            Some((node, info, stamp))
        })
}

/// A replica that ended, as `service ps` lists it under its slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ended {
    pub(crate) slot: knit_scheduler::SlotId,
    pub(crate) runtime_id: String,
    pub(crate) spec_version: u64,
    /// `shutdown` (stopped by knit), `complete` (exited 0) or `failed`.
    pub(crate) state: String,
    pub(crate) error: Option<String>,
    pub(crate) ended_at_ms: u64,
}

/// The label that marks nodes with a Docker engine; docker services are placed on them only.
pub(crate) const DOCKER_LABEL: &str = "knit.driver.docker";
/// How much of the cluster a peer sees. It reclaims the slots of members it cannot see
/// only while it sees a majority of the members it knows (`left` ones do not count; `down`
/// ones do until `knit node rm`); at exactly half, the side with the lowest node id is the
/// majority, so that two halves never both reclaim. While some member is down, a member
/// counts as seen only if it answered a dial since the set of down members last changed
/// ([`Reachability`]): failure detection marks members down one at a time, and a host cut
/// off from two others must not count the second as seen while it still looks alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Quorum {
    /// Members seen, this peer included.
    pub(crate) sees: usize,
    /// Members known and not left.
    pub(crate) known: usize,
    /// Whether this side reclaims.
    pub(crate) majority: bool,
    /// Whether the members seen were confirmed by a dial (false while a check of a new
    /// set of down members runs; nothing is reclaimed then).
    pub(crate) confirmed: bool,
}

impl Quorum {
    /// The quorum of peer `me` with members as (node id, state), itself among them, and
    /// the members that answered its last reachability check.
    ///
    /// `absent` are members this peer knows from the store but has not heard from since it
    /// started (they are among `members`, as down): known and not seen, but no dial is
    /// owed for them, as they are not in the failure detector's down set.
    pub(crate) fn of(
        me: NodeId,
        members: impl IntoIterator<Item = (NodeId, MemberState)>,
        reach: &Reachability,
        absent: &BTreeSet<NodeId>,
    ) -> Self {
        let known: BTreeMap<NodeId, MemberState> = members
            .into_iter()
            .filter(|(_, state)| *state != MemberState::Left)
            .collect();
        let down: std::collections::BTreeSet<NodeId> = known
            .iter()
            .filter(|(id, state)| **state == MemberState::Down && !absent.contains(id))
            .map(|(id, _)| *id)
            .collect();
        let answered = reach.answered_for(&down);
        let seen = |id: &NodeId, state: MemberState| {
            *id == me
                || (state.is_active()
                    && (down.is_empty() || answered.is_some_and(|a| a.reachable.contains(id))))
        };
        let counted = known.iter().filter(|(id, state)| seen(id, **state)).count();
        let lowest_seen = known
            .iter()
            .next()
            .is_some_and(|(id, state)| seen(id, *state));
        let majority = 2 * counted > known.len() || (2 * counted == known.len() && lowest_seen);
        // A check that stopped at a majority of the members it knew stands only while
        // they remain one; past that the mesh checks again.
        let confirmed = down.is_empty() || answered.is_some_and(|a| a.complete || majority);
        let (sees, majority) = if confirmed {
            (counted, majority)
        } else {
            (1, false)
        };
        Self {
            sees,
            known: known.len(),
            majority,
            confirmed,
        }
    }

    /// Why this side does not reclaim, if it does not.
    pub(crate) fn minority(&self) -> Option<String> {
        match (self.majority, self.confirmed) {
            (true, _) => None,
            (false, false) => Some(format!(
                "checking which of {} members answer before reclaiming any",
                self.known
            )),
            (false, true) => Some(format!(
                "minority: sees {} of {} members; keeps its replicas, reclaims none (`knit node rm` members gone for good)",
                self.sees, self.known
            )),
        }
    }
}

/// The label placement gives nodes that run `process` replicas
/// (`--enable-process-driver`).
pub(crate) const PROCESS_LABEL: &str = "knit.driver.process";

/// What a node says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeInfo {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) version: String,
    pub(crate) started_at_ms: u64,
    #[serde(default)]
    pub(crate) capacity: Resources,
    /// The drivers this node can run: `docker`, `process`.
    #[serde(default)]
    pub(crate) drivers: Vec<String>,
}

/// What `knit node update` sets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct NodeSpec {
    pub(crate) availability: Availability,
    /// The node's labels in full, replacing those given to `knit up --label`.
    pub(crate) labels: Option<BTreeMap<String, String>>,
    /// Set when the node drained itself (preventive healing), so that it alone undoes it;
    /// an operator's `node update` clears it.
    #[serde(default)]
    pub(crate) auto_drained: bool,
}

/// What a node says of its own condition (preventive healing), in its node-owned record
/// `condition`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Condition {
    /// Why it wants to drain itself, while it does.
    pub(crate) failing: Option<String>,
    /// What it did about it, for people.
    pub(crate) note: String,
    pub(crate) since_ms: u64,
}

/// This host's capacity: its CPUs and memory (0 = unknown, not checked by placement).
pub(crate) fn host_capacity() -> Resources {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get() as u64);
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    Resources {
        cpu_millis: cpus * 1000,
        memory_bytes: memory_kib * 1024,
    }
}

/// Whether `me` started less than [`RESTART_GRACE_MS`] ago, by its record in `store`.
fn started_in_grace(store: &Store, me: &NodeId) -> bool {
    store
        .get(&info_key(me))
        .and_then(|bytes| crate::decoded::decode::<NodeInfo>(&info_key(me), bytes).ok())
        .is_some_and(|info| {
            crate::clock::now_ms().saturating_sub(info.started_at_ms) < RESTART_GRACE_MS
        })
}

/// How long after its start a peer keeps the slots of members it knew (from its store) but
/// has not heard from yet as theirs, so that after a full-cluster restart the first peers
/// up do not start everything before the others had a chance to come back (ms).
pub(crate) const RESTART_GRACE_MS: u64 = 30_000;

/// One consistent reading of the view and the store.
#[derive(Clone)]
pub(crate) struct Snapshot {
    /// The membership, with the members this peer knows from the store but has not heard
    /// from since it started added as `down` (see [`Snapshot::absent`]).
    pub(crate) view: Arc<View>,
    pub(crate) store: Arc<Store>,
    /// Which members answered when the set of members seen down last changed.
    pub(crate) reach: Arc<Reachability>,
    /// Members with a record in the store (not removed) that the failure detector has not
    /// heard of since this peer started: after a restart, those not back yet.
    pub(crate) absent: Arc<BTreeSet<NodeId>>,
    /// The placement of this reading, computed on first use and shared by its clones.
    placed: Arc<OnceLock<Placement>>,
    /// The same, if the suspects were down (see [`Snapshot::placement_if_suspects_down`]).
    placed_if_down: Arc<OnceLock<Option<Placement>>>,
    /// Every member's reports (see [`Snapshot::observed`]).
    observed: Arc<OnceLock<BTreeMap<knit_scheduler::NodeId, Vec<ReplicaReport>>>>,
}

/// The last reading [`Snapshot::of`] made, with what it was made from: the mesh's
/// published view, store and reachability (held, so no other value can take their
/// addresses) and whether this peer was in its restart grace.
struct Reading {
    view: Arc<View>,
    store: Arc<Store>,
    reach: Arc<Reachability>,
    in_grace: bool,
    snapshot: Snapshot,
}

/// Readings are made far more often than the cluster changes: the agent twice a second,
/// discovery, the ingress, the event stream and the API on every change. Each reading
/// builds every member's scheduler view and places every service; at 100 members that was
/// a sixth of an idle peer's CPU. A reading of the same published values is the same.
static LAST_READING: Mutex<Option<Reading>> = Mutex::new(None);

impl Snapshot {
    /// The mesh's view, store and reachability as published now; the same reading as the
    /// last one (and its placements, once computed) when none of them has changed since.
    pub(crate) fn of(mesh: &Mesh) -> Self {
        let view = mesh.view().borrow().clone();
        let store = mesh.store().borrow().clone();
        let reach = mesh.reachability().borrow().clone();
        let in_grace = started_in_grace(&store, &view.me.node);
        let mut last = LAST_READING.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(reading) = last.as_ref().filter(|r| {
            Arc::ptr_eq(&r.view, &view)
                && Arc::ptr_eq(&r.store, &store)
                && Arc::ptr_eq(&r.reach, &reach)
                && r.in_grace == in_grace
        }) {
            return reading.snapshot.clone();
        }
        let snapshot = Self::new(view.clone(), store.clone(), reach.clone());
        *last = Some(Reading {
            view,
            store,
            reach,
            in_grace,
            snapshot: snapshot.clone(),
        });
        snapshot
    }

    /// A reading of `view` and `store`, with the members the store knows and the view
    /// lacks added to the view as `down`.
    pub(crate) fn new(view: Arc<View>, store: Arc<Store>, reach: Arc<Reachability>) -> Self {
        let in_view: BTreeSet<NodeId> = view.members.iter().map(|m| m.peer.node).collect();
        let absent: Vec<MemberRecord> = known_members_except(&store, &in_view)
            .map(|(node, info, stamp)| MemberRecord {
                peer: PeerId {
                    node,
                    addr: info.addr,
                    epoch: 0,
                },
                state: MemberState::Down,
                since_ms: stamp.millis(),
            })
            .collect();
        if absent.is_empty() {
            return Self {
                view,
                store,
                reach,
                absent: Arc::default(),
                placed: Arc::default(),
                placed_if_down: Arc::default(),
                observed: Arc::default(),
            };
        }
        let ids = absent.iter().map(|m| m.peer.node).collect();
        let mut members = view.members.clone();
        members.extend(absent);
        members.sort_by_key(|m| m.peer.node);
        Self {
            view: Arc::new(View {
                members,
                ..(*view).clone()
            }),
            store,
            reach,
            absent: Arc::new(ids),
            placed: Arc::default(),
            placed_if_down: Arc::default(),
            observed: Arc::default(),
        }
    }

    /// Whether this peer started less than [`RESTART_GRACE_MS`] ago (by its own record).
    fn in_restart_grace(&self) -> bool {
        started_in_grace(&self.store, &self.view.me.node)
    }

    /// The scheduler's view of the absent members, while this peer is in its restart grace.
    fn absent_in_grace(&self) -> Vec<NodeView> {
        if self.absent.is_empty() || !self.in_restart_grace() {
            return Vec::new();
        }
        self.views_of(|_| true)
            .into_iter()
            .filter(|v| {
                v.id.as_str()
                    .parse::<NodeId>()
                    .is_ok_and(|id| self.absent.contains(&id))
            })
            .collect()
    }

    fn decode<T>(&self, key: &str) -> Option<T>
    where
        T: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let bytes = self.store.get(key)?;
        match crate::decoded::decode(key, bytes) {
            Ok(value) => Some(value),
            Err(e) => {
                warn_once(
                    key,
                    "unreadable record in the replicated state",
                    &e.to_string(),
                );
                None
            }
        }
    }

    /// The cluster's limits: the stored ones if they are in range, else the defaults.
    pub(crate) fn limits(&self) -> Limits {
        let Some(limits) = self.decode::<Limits>(LIMITS_KEY) else {
            return Limits::default();
        };
        match limits.validate() {
            Ok(()) => limits,
            Err(e) => {
                warn_once(
                    LIMITS_KEY,
                    "invalid cluster limits; using the defaults",
                    &e.to_string(),
                );
                Limits::default()
            }
        }
    }

    /// The number of active members, which global services count as slots.
    pub(crate) fn active_nodes(&self) -> usize {
        self.view
            .members
            .iter()
            .filter(|m| m.state.is_active())
            .count()
    }

    /// Every stored service, valid or not. A record is invalid when it is too large, does
    /// not decode, names another service than its key, breaks a rule of `validate` under
    /// the cluster's limits, or would take the cluster past its slot cap (the largest
    /// services are left out first, the same on every peer). Each is logged once.
    pub(crate) fn services(&self) -> Services {
        let limits = self.limits();
        let mut services = Services::default();
        for (key, bytes, _) in self.store.scan(SERVICE_PREFIX) {
            let name = key.strip_prefix(SERVICE_PREFIX).unwrap_or(key).to_owned();
            match read_spec(key, &name, bytes, &limits) {
                Ok(spec) => {
                    services.valid.insert(name, spec);
                }
                Err(invalid) => {
                    services.invalid.insert(name, invalid);
                }
            }
        }
        let over = over_slot_cap(services.valid.values(), self.active_nodes(), &limits);
        for (name, error) in over {
            if let Some(spec) = services.valid.remove(&name) {
                let invalid = Invalid {
                    spec: Some(Box::new(spec)),
                    reason: error.to_string(),
                };
                services.invalid.insert(name, invalid);
            }
        }
        for (name, invalid) in &services.invalid {
            let what = "invalid service spec: every action on it is skipped";
            warn_once(&service_key(name), what, &invalid.reason);
        }
        services
    }

    /// Every valid service spec, by name: what peers act on.
    pub(crate) fn specs(&self) -> BTreeMap<String, ServiceSpec> {
        self.services().valid
    }

    /// One stored service, valid or not.
    pub(crate) fn stored_spec(&self, name: &str) -> Option<Result<ServiceSpec, Invalid>> {
        let mut services = self.services();
        if let Some(spec) = services.valid.remove(name) {
            return Some(Ok(spec));
        }
        services.invalid.remove(name).map(Err)
    }

    /// The last spec version used under `name`, removed or not.
    pub(crate) fn last_version(&self, name: &str) -> u64 {
        self.decode(&service_version_key(name)).unwrap_or(0)
    }

    pub(crate) fn info(&self, node: &NodeId) -> Option<NodeInfo> {
        self.decode(&info_key(node))
    }

    /// The replicas of `service` that ended on `node`, newest first.
    pub(crate) fn history(&self, node: &NodeId, service: &str) -> Vec<Ended> {
        self.decode(&history_key(node, service)).unwrap_or_default()
    }

    pub(crate) fn telemetry(&self, node: &NodeId) -> Option<crate::telemetry::Telemetry> {
        self.decode(&crate::telemetry::telemetry_key(node))
    }

    pub(crate) fn condition(&self, node: &NodeId) -> Option<Condition> {
        self.decode(&condition_key(node))
    }

    pub(crate) fn node_spec(&self, node: &NodeId) -> NodeSpec {
        self.decode(&node_spec_key(node)).unwrap_or_default()
    }

    /// What `node` last acknowledged of its node spec.
    pub(crate) fn applied(&self, node: &NodeId) -> Option<Applied> {
        self.decode(&applied_key(node))
    }

    /// Whether `node` acts on its node spec as this peer knows it (see [`Applied`]).
    pub(crate) fn spec_applied(&self, node: &NodeId) -> bool {
        self.store
            .stamp(&node_spec_key(node))
            .is_none_or(|written| {
                self.applied(node)
                    .is_some_and(|applied| applied.spec >= written)
            })
    }

    /// The availability placement gives `node`: its node spec's, but a pause only once the
    /// node has acknowledged it (see [`Applied`]).
    pub(crate) fn availability(&self, node: &NodeId) -> Availability {
        match self.node_spec(node).availability {
            Availability::Pause if !self.spec_applied(node) => Availability::Active,
            other => other,
        }
    }

    /// The newest progress of `spec`'s rollout that any member published (coordinators
    /// change with membership; each publishes under its own node), if one is under way or
    /// done for its current template.
    pub(crate) fn rollout(&self, spec: &ServiceSpec) -> Option<knit_scheduler::rollout::Progress> {
        let published = self.progress_of(&spec.name);
        knit_scheduler::rollout::newest(spec, &published).cloned()
    }

    /// Every member's published progress of `service`'s rollouts.
    pub(crate) fn progress_of(&self, service: &str) -> Vec<knit_scheduler::rollout::Progress> {
        self.view
            .members
            .iter()
            .filter_map(|m| self.decode(&crate::records::progress_key(&m.peer.node, service)))
            .collect()
    }

    /// The replicas a node reports (empty when it has not reported).
    pub(crate) fn reports(&self, node: &NodeId) -> Vec<ReplicaReport> {
        let prefix = reports_prefix(node);
        self.store
            .scan(&prefix)
            .filter_map(|(key, _, _)| self.decode::<ReplicaReport>(key))
            .collect()
    }

    /// A node's labels: the override if an operator set one, else what it started with.
    pub(crate) fn labels(&self, node: &NodeId) -> BTreeMap<String, String> {
        self.node_spec(node)
            .labels
            .or_else(|| self.info(node).map(|i| i.labels))
            .unwrap_or_default()
    }

    /// The placement if the members now under suspicion were declared down: where their
    /// replicas would start. `None` when no member is suspect.
    pub(crate) fn placement_if_suspects_down(&self) -> Option<Placement> {
        self.placed_if_down
            .get_or_init(|| self.place_if_suspects_down())
            .clone()
    }

    fn place_if_suspects_down(&self) -> Option<Placement> {
        if !self
            .view
            .members
            .iter()
            .any(|m| m.state == MemberState::Suspect)
        {
            return None;
        }
        let specs: Vec<ServiceSpec> = self.specs().into_values().map(placeable).collect();
        if specs.is_empty() {
            return Some(Placement::default());
        }
        let alive = self.views_of(|state| state == MemberState::Alive);
        Some(self.place(&alive, &specs))
    }

    /// The placement if the nodes in `drained` were drained too.
    pub(crate) fn placement_without(
        &self,
        drained: &std::collections::BTreeSet<String>,
    ) -> Placement {
        let mut nodes = self.node_views();
        for n in &mut nodes {
            if drained.contains(n.id.as_str()) {
                n.availability = Availability::Drain;
            }
        }
        let specs: Vec<ServiceSpec> = self.specs().into_values().map(placeable).collect();
        knit_scheduler::place(&nodes, &specs, &PlacementConfig::default())
    }

    /// How much of the cluster this peer sees.
    pub(crate) fn quorum(&self) -> Quorum {
        Quorum::of(
            self.view.me.node,
            self.view.members.iter().map(|m| (m.peer.node, m.state)),
            &self.reach,
            &self.absent,
        )
    }

    /// The scheduler's view of every active member (alive or suspect).
    pub(crate) fn node_views(&self) -> Vec<NodeView> {
        self.views_of(|state| state.is_active())
    }

    /// The scheduler's view of the members whose state passes `keep`.
    fn views_of(&self, keep: impl Fn(MemberState) -> bool) -> Vec<NodeView> {
        self.view
            .members
            .iter()
            .filter(|m| keep(m.state))
            .filter_map(|m| crate::node_views::view_of(self, &m.peer.node))
            .collect()
    }

    /// The placement every peer with this reading computes. Docker services go to nodes
    /// with a Docker engine only; a paused node keeps the slots it said it kept. A peer in
    /// a minority ([`Quorum`]) places over every member it knows, reachable or not, so the
    /// slots of those it cannot see stay theirs; only `available` services are placed on
    /// the members it sees, as every side does with them. For [`RESTART_GRACE_MS`] after
    /// this peer starts, members it knew and has not heard from yet keep their slots.
    pub(crate) fn placement(&self) -> Placement {
        self.placed.get_or_init(|| self.place_all()).clone()
    }

    fn place_all(&self) -> Placement {
        let specs: Vec<ServiceSpec> = self.specs().into_values().map(placeable).collect();
        if specs.is_empty() {
            // Nothing to place: no member's view is needed.
            return Placement::default();
        }
        let mut seen = self.node_views();
        seen.extend(self.absent_in_grace());
        if self.quorum().majority {
            return self.place(&seen, &specs);
        }
        let (available, majority): (Vec<ServiceSpec>, Vec<ServiceSpec>) =
            specs.into_iter().partition(|spec| {
                spec.partition_policy == knit_scheduler::spec::PartitionPolicy::Available
            });
        let known = self.views_of(|state| state != MemberState::Left);
        self.place(&known, &majority)
            .combine(self.place(&seen, &available))
    }

    /// Places `specs` on `nodes`; a paused node keeps the slots it said it kept.
    fn place(&self, nodes: &[NodeView], specs: &[ServiceSpec]) -> Placement {
        let mut kept: BTreeMap<knit_scheduler::SlotId, knit_scheduler::NodeId> = BTreeMap::new();
        for node in nodes
            .iter()
            .filter(|n| n.availability == Availability::Pause)
        {
            let Ok(id) = node.id.as_str().parse::<NodeId>() else {
                continue;
            };
            for slot in self.applied(&id).map(|a| a.kept).unwrap_or_default() {
                kept.insert(slot, node.id.clone());
            }
        }
        knit_scheduler::place_running(nodes, specs, &kept, &PlacementConfig::default())
    }

    /// Names of members by node id, for display.
    pub(crate) fn names(&self) -> BTreeMap<String, String> {
        self.view
            .members
            .iter()
            .map(|m| {
                let name = self
                    .info(&m.peer.node)
                    .map(|i| i.name)
                    .unwrap_or_else(|| m.peer.node.short());
                (m.peer.node.to_string(), name)
            })
            .collect()
    }

    /// Each active member's replica reports, by scheduler node id.
    pub(crate) fn observed(&self) -> BTreeMap<knit_scheduler::NodeId, Vec<ReplicaReport>> {
        self.observed.get_or_init(|| self.observe()).clone()
    }

    fn observe(&self) -> BTreeMap<knit_scheduler::NodeId, Vec<ReplicaReport>> {
        self.view
            .members
            .iter()
            .filter(|m| m.state != MemberState::Left)
            .filter_map(|m| {
                let id = knit_scheduler::NodeId::new(m.peer.node.to_string()).ok()?;
                Some((id, self.reports(&m.peer.node)))
            })
            .collect()
    }
}

/// The spec stored under `svc/<name>`, if it is one peers may act on.
fn read_spec(key: &str, name: &str, bytes: &[u8], limits: &Limits) -> Result<ServiceSpec, Invalid> {
    if bytes.len() > SPEC_RECORD_MAX_BYTES {
        return Err(Invalid {
            spec: None,
            reason: format!(
                "its record takes {} bytes, above the {SPEC_RECORD_MAX_BYTES} a spec and its previous spec may take",
                bytes.len()
            ),
        });
    }
    let spec: ServiceSpec = crate::decoded::decode(key, bytes).map_err(|e| Invalid {
        spec: None,
        reason: format!("its record does not decode as a service spec: {e}"),
    })?;
    if spec.name != name {
        return Err(Invalid {
            reason: format!("the spec stored as {name:?} names {:?}", spec.name),
            spec: Some(Box::new(spec)),
        });
    }
    match spec.validate(limits) {
        Ok(()) => Ok(spec),
        Err(e) => Err(Invalid {
            reason: e.to_string(),
            spec: Some(Box::new(spec)),
        }),
    }
}

/// `spec` with the constraints placement adds: a docker service needs a Docker engine.
fn placeable(mut spec: ServiceSpec) -> ServiceSpec {
    let label = match spec.driver {
        knit_scheduler::spec::Driver::Docker => DOCKER_LABEL,
        knit_scheduler::spec::Driver::Process => PROCESS_LABEL,
    };
    if let Ok(c) = format!("node.labels.{label}==true").parse() {
        spec.constraints.push(c);
    }
    spec
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
