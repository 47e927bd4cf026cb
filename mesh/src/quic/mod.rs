//! The QUIC transport, a driver of the node core: quinn connections with mutual TLS
//! against the cluster CA, foca packets as datagrams, anti-entropy and the join service on
//! streams, application streams for the node layer (see [`app`]), and the task that feeds the node core and carries out what it asks.

pub mod app;
mod command;
pub mod credentials;
pub mod frame;
pub mod join;
pub mod join_secret;
pub mod keys;
pub mod links;
pub mod mesh;
pub mod metrics;
pub mod operator;
pub mod port_check;
pub mod reach;
pub mod sealed;
pub mod sync;
pub mod tls;

pub use crate::node_core::View;
pub use credentials::Credentials;
pub use mesh::{
    CLOCK_SKEW_MAX_MS_DEFAULT, Mesh, MeshConfig, MeshError, PutError, ResetKey, RotateError,
    Stopped, WRITE_MAX_BYTES, bind,
};
pub use quinn::Endpoint;
