//! knit's mesh: who is in the cluster, and how peers talk.
//!
//! - [`id`]: node ids and the identity foca gossips (node id, address, epoch).
//! - [`membership`]: the SWIM core (foca), sans-IO: inputs through `handle_*`, outputs
//!   through `poll_output`, time as an argument. The peer and the simulator drive it alike.
//! - [`codec`]: the bincode wire codec; every decoder returns an error on bad bytes.
//! - [`token`]: the join token, `KNIT-1-<CA digest>-<secret>`.
//! - [`store`]: the replicated store; [`trust`]: the gate every delta from a peer passes
//!   (signatures, certificates, clock skew).
//! - [`node_core`]: everything a peer decides, sans-IO: it owns the membership core, the
//!   store, the gate and revocation, and chooses rumor or push and the anti-entropy
//!   partner, with a seeded generator; the transport and the simulator drive it.
//! - `quic` (feature `quic`): the QUIC transport with mutual TLS against the cluster CA, the
//!   join handshake, and the task that drives the node core.
//!
//! It does not hold Docker, HTTP or CLI code, nor placement: it moves values it does not
//! interpret.
#![warn(missing_docs)]

pub mod codec;
pub mod id;
pub mod lifeguard;
pub mod membership;
pub mod node_core;
pub mod profile;
pub mod rumor;
pub mod store;
pub mod token;
pub mod traffic;
pub mod trust;

#[cfg(feature = "quic")]
pub mod quic;

pub use id::{NodeId, PeerId};
pub use membership::{Connection, MemberRecord, MemberState, Membership, MembershipTimer, Output};
pub use profile::Profile;

/// The membership core's timer type, which [`Output::Timer`] hands out and drivers hand
/// back.
pub type Timer = MembershipTimer;
