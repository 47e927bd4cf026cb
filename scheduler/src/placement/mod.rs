//! Placement: which node runs which slot, computed alike by every peer.
//!
//! # The rule
//!
//! Only [`Availability::Active`] nodes receive slots. A global service has one slot on every
//! active node that meets its constraints, pinned there. A replicated service `blog` of R
//! replicas has slots `blog.1 … blog.R`; each (slot, node) pair gets a rendezvous score
//! (xxh3 of the ids once, then one multiply-fold per pair, see `score.rs`), and the slots
//! are matched to nodes by the **pair-greedy rule**: go through all pairs from the highest
//! rank down — slots of services with constraints first, then by score — and give the slot
//! to the node if the slot has no node yet, the node meets the constraints, holds fewer
//! slots than its load bound, and has room for the reservation. (Constrained slots first:
//! they have fewer places to go, and an unconstrained slot that ranks higher at the only
//! eligible node would otherwise use up its bound and leave them pending.)
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
//! - With no bound binding, every slot is on its top-scored node: plain rendezvous hashing.
//!
//! The result depends only on the inputs as sets: nodes are sorted by id, services by
//! name, and pairs are ranked by `(priority, score, slot hash, node hash)`, so neither input order
//! nor the peer computing it matters. (Node ids and service names are expected unique; of
//! duplicates, the highest node view and the highest spec version win.)
//!
//! # Paused nodes
//!
//! Placement is a pure function, so "a paused node keeps what it runs" comes in as an
//! argument: [`place_keeping`] takes the current placement, and a slot it assigns to a
//! node that is now [`Availability::Pause`] stays there (if the slot still exists and the
//! node still meets the constraints), outside the matching and the load bound. [`place`]
//! keeps nothing: paused nodes lose their slots, like drained ones.
//!
//! # Why pair-greedy: one answer, reachable locally
//!
//! With bounds alone, each slot ranks nodes by score and each node ranks slots by
//! (priority, score), the priority being the same for a slot at every node: the preferences
//! of both sides follow one order of the pairs. Such a many-to-one matching
//! problem has exactly one stable matching (no slot and node that both prefer each other
//! to what they have), and the pair-greedy rule computes it. Because it is *unique*, any
//! procedure that ends in a stable matching finds the same one, in whatever order it works.
//! [`Placer`] repairs the matching after a change in two phases:
//!
//! 1. Changes that only take room away or add slots — a lost node, bounds that shrink, new
//!    slots: the homeless slots propose to the nodes they rank next (deferred acceptance);
//!    a node at its bound keeps its best slots and bumps the lowest, which proposes on.
//!    Every earlier refusal is still justified, so this ends in the unique stable matching
//!    of that intermediate problem. Cost: one scan of N nodes per proposal.
//! 2. Changes that only add room — a joined node, bounds that grow, removed slots: a node
//!    with room pulls the slot it ranks highest among those that rank it above their own
//!    node, and the node that slot left pulls in turn (a chain, usually short). Slots only
//!    move up their lists, so this ends in the stable matching. Cost: one scan of S slots
//!    per pull; a join first takes its whole share in one scan.
//!
//! The placer recomputes in full instead when many bounds change at once, or when any
//! reservation binds: with reservations a node's choice is a knapsack and the answer is no
//! longer the unique stable matching. The repaired result is kept only if every node it
//! touched is within capacity; then the pair-greedy run with reservations takes exactly the
//! same steps (every prefix of a node's final set fits), so the answers agree.
//! [`Placer::full_recomputes`] counts the fallbacks; proptests check incremental == full.
//!
//! # Movement
//!
//! When no bound binds, losing a node moves exactly its slots, and a join moves only the
//! slots that now score highest on the new node (about S/(N+1)). When bounds bind, a few
//! more move: a displaced slot can bump another from a full node, and a join frees seats
//! that previously deflected slots return to. No pure function can keep loss movement at
//! exactly the lost node's slots under a binding bound: if nodes x and y each hold one slot
//! whose only open alternative is the same last seat on z, removing x then y and removing
//! y then x must end alike, so one of them moves a slot that was not on the lost node.
//! `cargo bench -p knit-scheduler --bench placement` measures the ratios.

mod bound;
mod check;
mod matching;
mod placer;
mod repair;
pub(crate) mod score;
mod table;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use placer::Placer;
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
