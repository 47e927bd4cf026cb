//! The records knit keeps in the replicated state: every key, and the one way a service
//! spec is written. Keys under `owned/<node id>/` are node-owned: only that node may
//! write them (the mesh's trust gate refuses anyone else's); the others are written by
//! any peer, and the last writer wins. Values are JSON.
//!
//! | key | written by | value |
//! |---|---|---|
//! | `svc/<name>` | any peer (API, autoscaler, rollback) | `ServiceSpec` |
//! | `svc-version/<name>` | with every spec | the last version the name used |
//! | `cluster/limits` | any peer | `Limits` |
//! | `secret/<name>` | any peer (`secret create/rm`) | `SealedRecord`: the value sealed |
//! | `config/<name>` | any peer (`config create/rm`) | `SealedRecord`: the content sealed |
//! | `registry/<server>` | any peer (`login`, `logout`) | `RegistryRecord`: the password sealed |
//! | `node/<id>/spec` | any peer (`node update`) | `NodeSpec` |
//! | `owned/<id>/info` | the node | `NodeInfo` |
//! | `owned/<id>/applied` | the node | `Applied` |
//! | `owned/<id>/condition` | the node | `Condition` |
//! | `owned/<id>/r/<runtime id>` | the node | `ReplicaReport` |
//! | `owned/<id>/history/<service>` | the node | `Vec<Ended>` |
//! | `owned/<id>/rollout/<service>` | the service's coordinator | rollout `Progress` |

use knit_mesh::NodeId;
use knit_mesh::quic::Mesh;
use knit_mesh::store::{Stamp, owned_key};
use knit_scheduler::ServiceSpec;

/// Service specs live under `svc/<name>`; last writer wins.
pub(crate) fn service_key(name: &str) -> String {
    format!("svc/{name}")
}

pub(crate) const SERVICE_PREFIX: &str = "svc/";

/// What the cluster keeps sealed under a name: secrets and configs. Both are written
/// once (they do not change), named by services, and delivered to replicas as files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SealedKind {
    /// `knit secret`: under `secret/<name>`, sealed with purpose `Secret`.
    Secret,
    /// `knit config`: under `config/<name>`, sealed with purpose `Config`.
    Config,
}

impl SealedKind {
    /// The prefix of every record of this kind.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Self::Secret => "secret/",
            Self::Config => "config/",
        }
    }

    /// The key of the record named `name`.
    pub(crate) fn key(self, name: &str) -> String {
        format!("{}{name}", self.prefix())
    }

    /// The key the value is sealed under (each kind its own).
    pub(crate) fn purpose(self) -> knit_mesh::quic::sealed::Purpose {
        match self {
            Self::Secret => knit_mesh::quic::sealed::Purpose::Secret,
            Self::Config => knit_mesh::quic::sealed::Purpose::Config,
        }
    }

    /// The word for it, as the CLI says it (`secret`, `config`).
    pub(crate) fn word(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Config => "config",
        }
    }
}

/// A secret or a config as stored: its value sealed (`knit_mesh::quic::sealed`, with its
/// kind's purpose, named by its name), never in clear text.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct SealedRecord {
    pub(crate) name: String,
    /// Nonce, ciphertext and tag, in hex.
    pub(crate) sealed_hex: String,
    pub(crate) size_bytes: usize,
    pub(crate) created_at_ms: u64,
    /// Labels given at creation (a stack's name).
    #[serde(default)]
    pub(crate) labels: std::collections::BTreeMap<String, String>,
}

/// The cluster's limits (`knit cluster update`), written by any peer; last writer wins,
/// and the defaults hold while it is absent.
pub(crate) const LIMITS_KEY: &str = "cluster/limits";

/// The last spec version a service name used, kept after `service rm` so that a service
/// created again under the same name never reuses a version its old replicas carry.
pub(crate) fn service_version_key(name: &str) -> String {
    format!("svc-version/{name}")
}

/// An operator's override of a node's availability and labels (`knit node update`),
/// written by any peer; last writer wins.
pub(crate) fn node_spec_key(node: &NodeId) -> String {
    format!("node/{node}/spec")
}

/// The key of a node's `Applied` record, written by that node alone.
pub(crate) fn applied_key(node: &NodeId) -> String {
    owned_key(node, "applied")
}

/// The key of a node's `info` record, written by that node alone.
pub(crate) fn info_key(node: &NodeId) -> String {
    owned_key(node, "info")
}

/// The key of one replica's report, written by its node alone. One key per replica keeps
/// each write small enough to spread as a rumor.
pub(crate) fn report_key(node: &NodeId, runtime_id: &str) -> String {
    owned_key(node, &format!("r/{runtime_id}"))
}

/// The prefix of every report key of `node`.
pub(crate) fn reports_prefix(node: &NodeId) -> String {
    owned_key(node, "r/")
}

/// The key of a node's recent history of `service`'s replicas, written by that node alone.
pub(crate) fn history_key(node: &NodeId, service: &str) -> String {
    owned_key(node, &format!("history/{service}"))
}

/// The key of a node's condition record.
pub(crate) fn condition_key(node: &NodeId) -> String {
    owned_key(node, "condition")
}

/// The key under which a node publishes its progress of `service`'s rollout.
pub(crate) fn progress_key(node: &NodeId, service: &str) -> String {
    owned_key(node, &format!("rollout/{service}"))
}

/// Why a spec could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// The spec does not encode (it cannot happen for a spec that validated).
    #[error("cannot encode the spec: {0}")]
    Encode(#[from] serde_json::Error),
    /// The mesh refused the write (it is shutting down, or the value is too large).
    #[error(transparent)]
    Mesh(#[from] knit_mesh::quic::PutError),
}

/// Writes `spec`: its version record first ([`put_spec_version`]), then the spec
/// ([`put_spec_record`]), so that a peer that sees the spec also knows its version is
/// taken. The way specs are written, by the API and by the agent (autoscaling, rollbacks)
/// alike; returns the spec's stamp. The API waits between the two steps until the version
/// is on disk, so a full disk refuses the write before the spec spreads.
pub(crate) async fn put_spec(mesh: &Mesh, spec: &ServiceSpec) -> Result<Stamp, WriteError> {
    put_spec_version(mesh, spec).await?;
    put_spec_record(mesh, spec).await
}

/// The first step of [`put_spec`]: the version record.
pub(crate) async fn put_spec_version(mesh: &Mesh, spec: &ServiceSpec) -> Result<Stamp, WriteError> {
    let version = serde_json::to_vec(&spec.version)?;
    Ok(mesh
        .put(&service_version_key(&spec.name), Some(version))
        .await?)
}

/// The second step of [`put_spec`]: the spec itself.
pub(crate) async fn put_spec_record(mesh: &Mesh, spec: &ServiceSpec) -> Result<Stamp, WriteError> {
    let bytes = serde_json::to_vec(spec)?;
    Ok(mesh.put(&service_key(&spec.name), Some(bytes)).await?)
}
