//! knit's scheduler: the domain (service specs, node views, replica reports) and the pure
//! functions every peer runs over it — who runs which slot, and what one node should do.
//!
//! What it is: deterministic functions of their arguments. Every peer that sees the same
//! nodes and specs computes the same [`placement::Placement`], whatever order the inputs
//! came in and whichever peer computes it. Collections in results are `BTreeMap`s or
//! sorted `Vec`s; no `HashMap` order leaks out.
//!
//! What it is not: there is no IO, no clock, no async and no randomness here. Time enters
//! as numbers in reports and specs; the runtime that starts containers, waits out restart
//! delays and gossips state lives in `knit` (node) and `knit-sim` (simulator).
//!
//! Modules:
//! - [`spec`]: service specs in Docker Swarm's vocabulary, their parsers and `validate`.
//! - [`node`]: [`node::NodeId`], [`node::NodeView`], availability.
//! - [`replica`]: slots (`blog.3`) and replica reports.
//! - [`placement`]: who runs which slot ([`placement::place`]: rendezvous hashing with
//!   bounded loads, replicas of a service spread over nodes before they double up).
//! - [`reconcile`]: what one node should start, stop or replace ([`reconcile::plan`]).
//! - [`rollout`] and [`autoscale`]: rolling updates in waves, and replica counts from CPU.
//! - [`agent`]: one host's whole round ([`agent::Agent::round`]): settling after joins,
//!   coordinating rollouts, the plan, and the pace of operations — the peer's agent and
//!   the simulator's hosts both run it.
//!
//! Laws (tested with proptest beside the code):
//! - every slot of every service is either assigned to a node or pending with a reason;
//! - only active nodes receive slots (a paused node may keep the slots it holds);
//! - no node holds more than the load bound `ceil(load_factor * slots / active nodes)`;
//! - reservations never exceed a node's known capacity; constraints always hold;
//! - no node holds more replicas of a service than its `replicas_max_per_node`;
//! - spread: no node holds two replicas of a service while an active node that meets its
//!   constraints, is under its load bound and has room for its reservation holds none;
//! - the result is the one greedy answer over a total order of (slot, node, pass)
//!   candidates, so it does not depend on input order (see [`placement`]);
//! - when no load bound binds, losing a node moves slots only of services that had one
//!   on it, and a join moves slots only of services that get one on the new node; within
//!   a service whose slots rank distinct nodes first (spread not binding), a loss moves
//!   exactly the lost node's slots and a join moves slots only to the new node (with
//!   spread or bounds binding a few more move, see [`placement`]);
//! - a handoff is make-before-break: the old owner stops only once the new owner serves.

#![warn(missing_docs)]

pub mod agent;
pub mod autoscale;
pub mod error;
pub mod node;
pub mod placement;
pub mod reconcile;
pub mod replica;
mod resources;
pub mod rollout;
pub mod spec;

pub use error::SpecError;
pub use node::{Availability, NodeId, NodeView};
pub use placement::{Placement, PlacementConfig, place, place_keeping, place_running};
pub use reconcile::{Action, ReconcileConfig, StartCause, StopReason, plan};
pub use replica::{Health, ReplicaReport, ReplicaState, SlotId, SlotKey};
pub use spec::{Resources, ServiceSpec};
