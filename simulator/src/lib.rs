//! knit-sim: knit's simulator. It drives the real membership core (`knit-mesh`, foca) and
//! the real placement (`knit-scheduler`) in virtual time, for capacity planning.
//!
//! What it is: a discrete-event engine ([`engine`]) over a network model ([`network`]),
//! hosts that heal by running the scheduler's `place` over the members they see
//! ([`healing`]), measurements ([`metrics`], and [`traffic`]: gossip by kind of message from
//! the cores' own counters) and reports ([`report`], [`html`]), scenarios from TOML
//! ([`scenario`]) and capacity planning ([`plan`]). Same scenario and seed, same report.
//!
//! With `store = true` in a scenario, every host runs the whole node core of the peer
//! (`knit_mesh::node_core`: membership, the replicated store, the trust gate, rumors, pushes
//! and anti-entropy) with simulated keys ([`keys`], not secure), and `write` faults spread
//! through it; the report says when the stores converged.
//!
//! What it is not: a second copy of protocol or placement logic. Not simulated (yet): the
//! agent's records in the store — specs are known to every host from the start and replica
//! reports are published by the engine, not written to the store (make-before-break with
//! reports one latency later); container crashes and health checks; rollouts.
#![warn(missing_docs)]

pub mod calibrate;
pub mod engine;
pub mod flags;
pub mod healing;
pub mod html;
pub mod keys;
pub mod metrics;
pub mod model;
pub mod network;
pub mod plan;
pub mod progress;
pub mod queue;
pub mod report;
pub mod scenario;
pub mod traffic;

pub use engine::{SimError, run};
pub use report::Report;
pub use scenario::Scenario;
