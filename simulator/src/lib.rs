//! knit-sim: knit's simulator. It drives the real membership core (`knit-mesh`, foca) and
//! the real placement (`knit-scheduler`) in virtual time, for capacity planning.
//!
//! What it is: a discrete-event engine ([`engine`]) over a network model ([`network`]),
//! hosts that heal by running the scheduler's `place` over the members they see
//! ([`healing`]), measurements ([`metrics`]) and reports ([`report`], [`html`]), scenarios from TOML
//! ([`scenario`]) and capacity planning ([`plan`]). Same scenario and seed, same report.
//!
//! What it is not: a second copy of protocol or placement logic. Not simulated (yet): the
//! replicated store (service specs, node-owned state) — every host knows the specs and the
//! capacities, and a host that runs a slot it no longer owns learns at once when the new
//! owner runs it (make-before-break with instant replica reports); container crashes and
//! health checks; rollouts.
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

pub use engine::{SimError, run};
pub use report::Report;
pub use scenario::Scenario;
