//! Reconcile plans: what ONE node should start, stop or replace so that what it runs
//! converges on the placement.
//!
//! [`plan`] compares the placement with what every node reports and returns actions for
//! the node it is asked about, in slot order. It decides; the runtime acts: it waits out
//! restart delays, counts restarts within the policy's window (reporting the count in
//! [`ReplicaReport::restarts`]), and applies the update order (stop-first or start-first)
//! when it carries out a [`Action::Replace`].
//!
//! Rules, for one slot at a time:
//! - **Start** what placement gives this node and it does not run. If a live peer already
//!   serves the slot, this is a handoff start, and at most `moves_in_flight_max` of those
//!   may be in flight (started here, not yet serving) — a joining node fills gradually.
//!   Slots no live node serves start at once, uncapped: healing comes first.
//! - **Restart** (a `Start` with [`StartCause::Restart`]) a replica of this node's slot
//!   that exited or failed, when the restart policy allows: condition `any`, or
//!   `on-failure` for a failure, and fewer than `max_attempts` restarts so far. A stopped
//!   replica of an outdated spec version starts afresh at the new one when the rollout
//!   gate allows the slot, whatever its restarts.
//! - **Replace** a running replica of an outdated template — started from another one than
//!   the spec's ([`ServiceSpec::template_id`]); scaling or a new policy outdates nothing —
//!   if the rollout gate allows the slot, or one that is unhealthy (if the restart policy
//!   allows).
//! - **Hand off, make-before-break**: a replica of a slot placement now gives to another
//!   node keeps running until that node reports the slot running and healthy (or without
//!   a health check) from the current template; then it stops. If the new owner is not
//!   alive, or the slot is pending, the replica keeps running (availability first).
//! - **Stop** replicas of removed services and slots (scaled down), replicas this node
//!   runs twice (it keeps the best one), and, for a pending slot served by several nodes,
//!   every copy but the one on the smallest node id.

#[cfg(test)]
mod tests;

/// How an agent paces its reconcile rounds; the peer's agent and the simulator share these.
pub mod pace {
    /// Rounds happen at least this often (ms)...
    pub const ROUND_EVERY_MS: u64 = 500;
    /// ...and, when membership or state changes call for one sooner, at most this often.
    pub const ROUND_MIN_MS: u64 = 100;
    /// After a member joins or returns, views differ between peers for a moment; an agent
    /// waits this long (ms) for them to agree before it moves anything. A departure needs
    /// no wait: every view loses the member.
    pub const SETTLE_MS: u64 = 1_500;
}

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::node::NodeId;
use crate::placement::{Assignment, Placement};
use crate::replica::{Health, ReplicaReport, ReplicaState, SlotId};
use crate::spec::{RestartCondition, ServiceSpec};

/// Limits and gates for a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReconcileConfig {
    /// Handoff starts this node may have in flight at once; 0 pauses rebalancing (healing
    /// starts are never limited).
    pub moves_in_flight_max: u32,
    /// The rollout gate: slots whose outdated replicas may be replaced now. `None` lets
    /// every slot update; the rollout layer narrows it wave by wave.
    pub update_allowed: Option<BTreeSet<SlotId>>,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            moves_in_flight_max: 2,
            update_allowed: None,
        }
    }
}

/// Why a replica starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartCause {
    /// The slot is this node's and no live node serves it.
    Placed,
    /// The slot moves here from a live node, which stops once this replica serves.
    Handoff {
        /// The node serving it now.
        from: NodeId,
    },
    /// The previous replica exited or failed; remove it and start anew after `delay_ms`.
    Restart {
        /// This restart's number (1 for the first).
        attempt: u32,
        /// The restart policy's delay, for the runtime to wait out.
        delay_ms: u64,
    },
}

/// Why a replica stops.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Its service no longer exists.
    ServiceRemoved,
    /// Its slot no longer exists (scaled down, or a global slot for a node not eligible).
    SlotRemoved,
    /// Its new owner serves the slot now.
    HandedOff {
        /// The new owner.
        to: NodeId,
    },
    /// Another replica of the same slot is kept.
    Duplicate,
    /// It is not running and the slot belongs elsewhere: clean it up.
    NotOwned,
}

/// Why a replica is replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplaceReason {
    /// It runs another template than the spec's.
    Outdated,
    /// Its health check fails.
    Unhealthy,
}

/// One thing the node should do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Start a replica of `slot` from spec `spec_version`.
    Start {
        /// The slot.
        slot: SlotId,
        /// The spec version to start.
        spec_version: u64,
        /// Why.
        cause: StartCause,
    },
    /// Stop (and remove) the replica `runtime_id` of `slot`.
    Stop {
        /// The slot.
        slot: SlotId,
        /// The container or process.
        runtime_id: String,
        /// Why.
        reason: StopReason,
    },
    /// Replace the replica `runtime_id` of `slot` by one from `to_version`, in the
    /// service's update order.
    Replace {
        /// The slot.
        slot: SlotId,
        /// The container or process.
        runtime_id: String,
        /// The version it runs.
        from_version: u64,
        /// The version to run.
        to_version: u64,
        /// Why.
        reason: ReplaceReason,
    },
}

impl Action {
    /// The slot acted on.
    pub fn slot(&self) -> &SlotId {
        match self {
            Self::Start { slot, .. } | Self::Stop { slot, .. } | Self::Replace { slot, .. } => slot,
        }
    }
}

/// What the cluster reports, indexed for one plan.
struct View<'a> {
    me: &'a NodeId,
    /// Live replicas (starting or running) per slot on alive nodes other than `me`.
    elsewhere: BTreeMap<&'a SlotId, Vec<(&'a NodeId, &'a ReplicaReport)>>,
}

impl View<'_> {
    /// A live peer serving `slot` (running, healthy or unchecked), at any version.
    fn server(&self, slot: &SlotId) -> Option<&NodeId> {
        let reps = self.elsewhere.get(slot)?;
        reps.iter()
            .find(|(_, r)| {
                r.state == ReplicaState::Running
                    && matches!(r.health, Health::Healthy | Health::None)
            })
            .map(|(n, _)| *n)
    }

    /// Whether `node` serves `slot` from `template`.
    fn serves(&self, node: &NodeId, slot: &SlotId, template: u64) -> bool {
        self.elsewhere
            .get(slot)
            .is_some_and(|reps| reps.iter().any(|(n, r)| *n == node && r.serves(template)))
    }
}

/// The actions `node` should take now, in slot order. See the module doc for the rules.
pub fn plan(
    node: &NodeId,
    placement: &Placement,
    specs: &BTreeMap<String, ServiceSpec>,
    observed: &BTreeMap<NodeId, Vec<ReplicaReport>>,
    alive: &BTreeSet<NodeId>,
    config: &ReconcileConfig,
) -> Vec<Action> {
    let mut mine: BTreeMap<&SlotId, Vec<&ReplicaReport>> = BTreeMap::new();
    for r in observed.get(node).into_iter().flatten() {
        mine.entry(&r.slot).or_default().push(r);
    }
    // Only the slots this node runs or owns are looked up elsewhere.
    let owned: Vec<SlotId> = placement
        .assigned_to(node)
        .filter(|slot| !mine.contains_key(slot))
        .collect();
    let mut elsewhere: BTreeMap<&SlotId, Vec<(&NodeId, &ReplicaReport)>> = BTreeMap::new();
    for s in mine.keys().copied().chain(&owned) {
        elsewhere.insert(s, Vec::new());
    }
    for (n, reports) in observed
        .iter()
        .filter(|(n, _)| *n != node && alive.contains(*n))
    {
        for r in reports.iter().filter(|r| r.state.is_live()) {
            if let Some(list) = elsewhere.get_mut(&r.slot) {
                list.push((n, r));
            }
        }
    }
    let view = View {
        me: node,
        elsewhere,
    };
    let mut actions = Vec::new();
    let mut in_flight = 0u32;
    // Each service's template, hashed once per plan rather than once per replica.
    let mut templates: BTreeMap<&str, u64> = BTreeMap::new();
    for (slot, reports) in &mine {
        let keeper = keep_best(slot, reports, &mut actions);
        let spec = specs.get(&slot.service).map(|spec| {
            let template = *templates
                .entry(slot.service.as_str())
                .or_insert_with(|| spec.template_id());
            Current { spec, template }
        });
        in_flight += u32::from(is_move_in_flight(&view, placement, spec, keeper));
        plan_running(&view, placement, spec, keeper, config, &mut actions);
    }
    let mut budget = config.moves_in_flight_max.saturating_sub(in_flight);
    for slot in &owned {
        let Some(spec) = specs.get(&slot.service) else {
            continue;
        };
        let cause = match view.server(slot) {
            None => StartCause::Placed,
            Some(_) if budget == 0 => continue,
            Some(from) => {
                budget -= 1;
                StartCause::Handoff { from: from.clone() }
            }
        };
        actions.push(Action::Start {
            slot: slot.clone(),
            spec_version: spec.version,
            cause,
        });
    }
    actions.sort_by(|a, b| a.slot().cmp(b.slot()));
    actions
}

/// Of several replicas of one slot on this node, keeps the best (live before not, serving
/// before not, newer version, then smallest runtime id) and stops the others.
fn keep_best<'a>(
    slot: &SlotId,
    reports: &[&'a ReplicaReport],
    actions: &mut Vec<Action>,
) -> &'a ReplicaReport {
    let rank = |r: &ReplicaReport| {
        (
            !r.state.is_live(),
            !(r.state == ReplicaState::Running && r.health != Health::Unhealthy),
            std::cmp::Reverse(r.spec_version),
            r.runtime_id.clone(),
        )
    };
    let mut sorted = reports.to_vec();
    sorted.sort_by_key(|r| rank(r));
    for extra in &sorted[1..] {
        actions.push(Action::Stop {
            slot: slot.clone(),
            runtime_id: extra.runtime_id.clone(),
            reason: StopReason::Duplicate,
        });
    }
    sorted[0]
}

/// A service's spec with its template ([`ServiceSpec::template_id`]), computed once.
#[derive(Clone, Copy)]
struct Current<'a> {
    spec: &'a ServiceSpec,
    template: u64,
}

/// Whether `r` is a handoff this node started that is not serving yet.
fn is_move_in_flight(
    view: &View<'_>,
    placement: &Placement,
    spec: Option<Current<'_>>,
    r: &ReplicaReport,
) -> bool {
    let Some(Current { template, .. }) = spec else {
        return false;
    };
    r.state.is_live()
        && !r.serves(template)
        && placement.owner(&r.slot) == Some(view.me)
        && view.server(&r.slot).is_some()
}

/// The plan for a replica this node runs (or ran).
fn plan_running(
    view: &View<'_>,
    placement: &Placement,
    spec: Option<Current<'_>>,
    r: &ReplicaReport,
    config: &ReconcileConfig,
    actions: &mut Vec<Action>,
) {
    let stop = |reason| Action::Stop {
        slot: r.slot.clone(),
        runtime_id: r.runtime_id.clone(),
        reason,
    };
    let Some(current) = spec else {
        actions.push(stop(StopReason::ServiceRemoved));
        return;
    };
    let template = current.template;
    match placement.get(&r.slot) {
        None => actions.push(stop(StopReason::SlotRemoved)),
        Some(Assignment::Assigned(owner)) if owner == view.me => {
            plan_owned(current, r, config, actions)
        }
        Some(Assignment::Assigned(owner)) => {
            if !r.state.is_live() {
                actions.push(stop(StopReason::NotOwned));
            } else if view.serves(owner, &r.slot, template) {
                actions.push(stop(StopReason::HandedOff { to: owner.clone() }));
            }
        }
        Some(Assignment::Pending(_)) => {
            let smaller_serves = view.elsewhere.get(&r.slot).is_some_and(|reps| {
                reps.iter()
                    .any(|(n, other)| *n < view.me && other.serves(template))
            });
            if r.state.is_live() && smaller_serves {
                actions.push(stop(StopReason::Duplicate));
            }
        }
    }
}

/// The plan for a replica of a slot this node owns.
fn plan_owned(
    current: Current<'_>,
    r: &ReplicaReport,
    config: &ReconcileConfig,
    actions: &mut Vec<Action>,
) {
    let Current { spec, template } = current;
    let runs_current = r.template == template;
    let policy = &spec.restart;
    let attempts_left = policy.max_attempts.is_none_or(|m| r.restarts < m);
    let replace = |reason| Action::Replace {
        slot: r.slot.clone(),
        runtime_id: r.runtime_id.clone(),
        from_version: r.spec_version,
        to_version: spec.version,
        reason,
    };
    let may_update = config
        .update_allowed
        .as_ref()
        .is_none_or(|allowed| allowed.contains(&r.slot));
    match r.state {
        ReplicaState::Starting | ReplicaState::Stopping | ReplicaState::Unknown => {}
        ReplicaState::Running => {
            if r.health == Health::Unhealthy
                && policy.condition != RestartCondition::None
                && attempts_left
            {
                actions.push(replace(ReplaceReason::Unhealthy));
            } else if !runs_current && may_update {
                actions.push(replace(ReplaceReason::Outdated));
            }
        }
        ReplicaState::Exited | ReplicaState::Failed => {
            let condition_holds = match policy.condition {
                RestartCondition::Any => true,
                RestartCondition::OnFailure => r.state == ReplicaState::Failed,
                RestartCondition::None => false,
            };
            if !runs_current && may_update {
                // A new template gets a fresh start, whatever the old one's restarts.
                actions.push(Action::Start {
                    slot: r.slot.clone(),
                    spec_version: spec.version,
                    cause: StartCause::Restart {
                        attempt: 1,
                        delay_ms: 0,
                    },
                });
            } else if condition_holds && attempts_left {
                actions.push(Action::Start {
                    slot: r.slot.clone(),
                    spec_version: spec.version,
                    cause: StartCause::Restart {
                        attempt: r.restarts + 1,
                        delay_ms: policy.delay_ms,
                    },
                });
            }
        }
    }
}
