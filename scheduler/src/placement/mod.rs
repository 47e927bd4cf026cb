//! Placement: which node runs which slot, computed alike by every peer.
//!
//! # The rule
//!
//! Only [`Availability::Active`] nodes receive slots. A global service has one slot on every
//! active node that meets its constraints, pinned there. A replicated service `blog` of R
//! replicas has slots `blog.1 … blog.R`; each (slot, node) pair gets a rendezvous score
//! (xxh3 of the ids once, then one multiply-fold per pair, see `score.rs`), and the slots
//! are matched to nodes by the **greedy rule**: go through the pairs from the highest rank
//! down and give the slot to the node if the slot has no node yet, the node meets the
//! constraints, holds fewer slots than its load bound, holds fewer replicas of the service
//! than the pass allows, and has room for the reservation. A pair's rank is the key
//! `(priority, pass, score, slot hash, node hash)`:
//!
//! - priority: slots of services with constraints first. They have fewer places to go,
//!   and an unconstrained slot that ranks higher at the only eligible node would otherwise
//!   use up its bound and leave them pending.
//! - pass: within a priority, the **spread** pass comes before the **fill** pass. In the
//!   spread pass a node takes at most one replica of a service; in the fill pass, up to the
//!   service's `replicas_max_per_node` (no limit when 0). So a service's replicas go one
//!   per node first, each to the best node that has none of them yet, and only the
//!   replicas left over (more replicas than nodes with room) double up, each on its best
//!   node under the cap.
//!
//! - Load bound: at most `ceil(c * S / N)` replicated slots per node, S the replicated
//!   slots (not counting those kept by paused nodes), N the active nodes, c = `load_factor`
//!   (1.25 by default). Global slots do not count. When x = c * S / N has just passed an
//!   integer, some nodes (ranked by a hash of their id) get one less, so that the bound
//!   steps a few nodes at a time as N changes instead of all at once (see `bound.rs`).
//! - Reservations: a node's reservations (global, kept and matched slots) never exceed its
//!   capacity. A capacity field of zero means "unknown" and that field is not checked, so a
//!   cluster that reports no capacity is placed by the load bound alone.
//! - A slot that no node takes is `Pending` with a [`PendingReason`]; nothing is dropped.
//!
//! # Laws
//!
//! - **One answer.** The order of pairs is total and depends only on the inputs as sets:
//!   nodes are sorted by id, services by name. (Node ids and service names are expected
//!   unique; of duplicates, the highest node view and the highest spec version win.) So
//!   neither input order nor the peer computing it matters. More: read each pass as its own
//!   candidate, (slot, node, pass). Every rule above is hereditary (a set of candidates that
//!   keeps them still keeps them with one candidate taken out), and for such rules the
//!   greedy result is the only set that keeps the rules and in which every candidate left
//!   out would break one together with the candidates chosen above it. (Of two such sets,
//!   take the highest candidate that one holds and the other does not: both hold the same
//!   candidates above it, so the other set's reason to leave it out would break a rule
//!   inside the first set.) Any other way of computing placement (a faster one, an
//!   incremental one) must find this same set.
//! - **Spread.** No active node holds two replicas of a service while an active node that
//!   meets its constraints, is under its load bound and has room for its reservation holds
//!   none. A replica reaches the fill pass only after the spread pass found every such
//!   node holding one of the service already, at its bound, or without room; loads and
//!   reservations only grow after that, and replicas never leave a node. So 3 replicas on
//!   3 nodes with room land one per node.
//! - **Cap.** No active node holds more than `replicas_max_per_node` replicas of a service.
//!   Replicas for which every eligible node under its bound is at the cap are pending with
//!   [`PendingReason::MaxReplicasPerNode`] (Docker's "max replicas per node limit exceed").
//! - With no load bound, cap or spread binding (a service's slots rank distinct nodes
//!   first), every slot is on its top-scored node: plain rendezvous hashing.
//!
//! # Paused nodes
//!
//! Placement is a pure function, so "a paused node keeps what it runs" comes in as an
//! argument: [`place_keeping`] takes the current placement, and a slot it assigns to a
//! node that is now [`Availability::Pause`] stays there (if the slot still exists and the
//! node still meets the constraints), outside the matching and the load bound. [`place`]
//! keeps nothing: paused nodes lose their slots, like drained ones.
//!
//! # Movement
//!
//! When no bound binds, services do not interact: a service none of whose slots sat on a
//! lost node keeps every slot where it was, and a service that gets no slot on a joined
//! node moves none. Within a service, when its slots rank distinct nodes first (among the
//! nodes after a loss, before a join), losing a node moves exactly that node's slots of
//! it, and a join moves its slots only to the new node. When spread binds (two slots of a
//! service rank one node first), a few more move: a slot that loses its node falls back to
//! its next node and may take it from another replica of the same service that ranks
//! lower there, which falls back in turn (a chain within the service); a slot that joins
//! the new node frees a node that another replica, deflected from it, returns to.
//!
//! When load bounds bind, a displaced slot can also bump another from a full node, and a
//! join frees seats that previously deflected slots return to. No pure function can keep
//! loss movement at exactly the lost node's slots under a binding bound: if nodes x and y
//! each hold one slot whose only open alternative is the same last seat on z, removing x
//! then y and removing y then x must end alike, so one of them moves a slot that was not
//! on the lost node. `cargo bench -p knit-scheduler --bench placement` measures the
//! ratios; `BENCHMARKS.md` has the figures, with and without spread binding.

mod bound;
mod check;
mod matching;
pub(crate) mod score;
mod table;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use table::{Assignment, PendingReason, Placement};

use crate::node::{Availability, NodeId, NodeView};
use crate::replica::SlotId;
use crate::spec::ServiceSpec;
use matching::Model;

/// Placement's one knob.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlacementConfig {
    /// The load bound's factor c in `ceil(c * slots / nodes)`; values below 1 (or not a
    /// number) count as 1, and it is used to a thousandth.
    pub load_factor: f64,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        Self { load_factor: 1.25 }
    }
}

impl PlacementConfig {
    /// The factor in thousandths, clamped to `[1, 1000]`.
    fn load_factor_milli(&self) -> u64 {
        if self.load_factor.is_finite() && self.load_factor > 1.0 {
            (self.load_factor.min(1_000.0) * 1_000.0).round() as u64
        } else {
            1_000
        }
    }
}

/// Places every slot of `services` on `nodes`. Paused nodes keep nothing; see
/// [`place_keeping`].
pub fn place(nodes: &[NodeView], services: &[ServiceSpec], config: &PlacementConfig) -> Placement {
    place_keeping(nodes, services, &Placement::default(), config)
}

/// Places every slot of `services` on `nodes`; paused nodes keep the slots `current` gives
/// them (when the slot still exists and the node still meets the constraints).
pub fn place_keeping(
    nodes: &[NodeView],
    services: &[ServiceSpec],
    current: &Placement,
    config: &PlacementConfig,
) -> Placement {
    let pins = paused_pins(nodes, current);
    Placement::from_model(&Model::build(nodes, services, &pins, config))
}

/// Places every slot of `services` on `nodes`; a paused node keeps the slots `running`
/// gives it (knit passes the slots each paused node said it ran when it took the pause),
/// so that pause stops new placements only.
pub fn place_running(
    nodes: &[NodeView],
    services: &[ServiceSpec],
    running: &std::collections::BTreeMap<SlotId, NodeId>,
    config: &PlacementConfig,
) -> Placement {
    let paused: std::collections::BTreeSet<&NodeId> = nodes
        .iter()
        .filter(|n| n.availability == Availability::Pause)
        .map(|n| &n.id)
        .collect();
    let pins: Vec<(SlotId, NodeId)> = running
        .iter()
        .filter(|(_, node)| paused.contains(node))
        .map(|(slot, node)| (slot.clone(), node.clone()))
        .collect();
    Placement::from_model(&Model::build(nodes, services, &pins, config))
}

/// The slots `current` gives to nodes that are paused in `nodes`.
fn paused_pins(nodes: &[NodeView], current: &Placement) -> Vec<(SlotId, NodeId)> {
    let paused: std::collections::BTreeSet<&NodeId> = nodes
        .iter()
        .filter(|n| n.availability == Availability::Pause)
        .map(|n| &n.id)
        .collect();
    if paused.is_empty() {
        return Vec::new();
    }
    current
        .iter()
        .filter_map(|(slot, a)| match a {
            Assignment::Assigned(node) if paused.contains(node) => Some((slot, node.clone())),
            _ => None,
        })
        .collect()
}
