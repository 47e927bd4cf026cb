//! The QUIC transport: quinn connections with mutual TLS against the cluster CA, foca
//! packets as datagrams, anti-entropy and the join service on streams, and the task that
//! owns the membership core.

pub mod credentials;
pub mod frame;
pub mod join;
pub mod links;
pub mod mesh;
pub mod operator;
mod sync;
pub mod tls;

pub use credentials::Credentials;
pub use mesh::{Mesh, MeshConfig, MeshError, View, bind};
pub use quinn::Endpoint;
