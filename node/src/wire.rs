//! The admin API's wire types: what the peer's API serves and the CLI reads, in one place
//! that both use (the API does not import the client, nor the client the API).

use std::collections::BTreeMap;

use knit_mesh::MemberState;
use knit_scheduler::{Availability, Resources, ServiceSpec};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One node as `node ls` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct NodeSummary {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) addr: String,
    #[schema(value_type = MemberStateName)]
    pub(crate) state: MemberState,
    pub(crate) availability: Availability,
    pub(crate) epoch: u64,
    pub(crate) labels: BTreeMap<String, String>,
    /// This is the node that answered.
    #[serde(rename = "self")]
    pub(crate) is_self: bool,
    /// When the state last changed, in ms since the Unix epoch, as the answering node saw it.
    pub(crate) since_ms: u64,
    pub(crate) version: Option<String>,
    pub(crate) capacity: Resources,
    /// Replicas the node reports.
    pub(crate) replicas: usize,
    /// Its last telemetry sample.
    pub(crate) telemetry: Option<crate::telemetry::Telemetry>,
    /// What it says of its own condition (preventive healing).
    pub(crate) condition: Option<crate::cluster::Condition>,
    /// The node acts on its availability and labels as the answering peer knows them
    /// (false for a moment after `node update`, until the node itself has the change).
    #[serde(default)]
    pub(crate) spec_applied: bool,
    /// Published ports this peer's ingress could not listen on (answering peer only).
    #[serde(default)]
    pub(crate) ingress_errors: Vec<String>,
    /// Why the answering peer reclaims no replicas of members it cannot see, when it is in
    /// a minority (answering peer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) minority: Option<String>,
}

/// One service as `service ls` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct ServiceSummary {
    pub(crate) name: String,
    pub(crate) mode: String,
    /// Desired replicas (for a global service, the number of eligible nodes).
    pub(crate) replicas: u32,
    /// Slots with a running replica.
    pub(crate) running: u32,
    pub(crate) image: String,
    pub(crate) ports: Vec<String>,
    pub(crate) version: u64,
    /// The service's labels (a stack's services carry `com.docker.stack.namespace`).
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    /// Why every peer ignores this service (its replicas are left as they are), or `None`
    /// for a service peers act on.
    #[serde(default)]
    pub(crate) invalid: Option<String>,
    /// The service's virtual IP on the answering peer (its name resolves to it there), or
    /// `None` when that peer serves no service names.
    #[serde(default)]
    pub(crate) vip: Option<String>,
}

/// One task (a slot, or a replica being handed off) as `service ps` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct TaskRow {
    pub(crate) slot: String,
    /// The replica's runtime id (its container's name, for Docker); empty before it starts.
    #[serde(default)]
    pub(crate) id: String,
    /// The node's name (its short id if it has not published one).
    pub(crate) node: String,
    pub(crate) node_id: String,
    /// `running` for the slot's owner, `shutdown` for a replica being moved away.
    pub(crate) desired_state: String,
    /// `pending` (no node can take it), `assigned` (its node has not reported it yet), or
    /// the replica's state as its node reports it.
    pub(crate) state: String,
    pub(crate) health: String,
    pub(crate) spec_version: u64,
    /// Whether it runs the service's current template (`ServiceSpec::template_id`): a
    /// replica of a spec that lost to a concurrent write may carry the same version number.
    #[serde(default)]
    pub(crate) current: bool,
    pub(crate) host_port: Option<u16>,
    pub(crate) error: Option<String>,
    /// CPU used over the last sample, in millicores (1000 = one core).
    #[serde(default)]
    pub(crate) cpu_millis: Option<u32>,
}

/// An update: the new spec and the version it was made from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct UpdateRequest {
    pub(crate) spec: ServiceSpec,
    pub(crate) from_version: u64,
    /// Replace the replicas even if what they run did not change (`--force`).
    #[serde(default)]
    pub(crate) redeploy: bool,
}

/// A request for an operator's certificate.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientCertRequest {
    /// The operator's name, a DNS label.
    pub(crate) name: String,
    /// The P-256 public key (uncompressed point), in hex.
    pub(crate) public_key: String,
}

/// The certificate, and the cluster CA to trust the peers with.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct ClientCertResponse {
    pub(crate) cert_pem: String,
    pub(crate) ca_pem: String,
}

/// `knit secret create`: the name and the value, in hex.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretCreate {
    /// The secret's name.
    pub(crate) name: String,
    /// The value's bytes, in hex (at most 500 KiB).
    pub(crate) data_hex: String,
    /// Labels, such as the stack that brought it (`com.docker.stack.namespace`).
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    /// When a secret of this name exists with the same value, answer 200 with it instead
    /// of 409 (a stack deployed again); with another value, 409 still.
    #[serde(default)]
    pub(crate) keep_same: bool,
}

/// A secret as `secret ls` and `secret inspect` show it: never its value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct SecretSummary {
    /// The secret's name.
    pub(crate) name: String,
    /// The value's size.
    pub(crate) size_bytes: usize,
    /// When it was created, in ms since the Unix epoch.
    pub(crate) created_at_ms: u64,
    /// The services that name it.
    pub(crate) services: Vec<String>,
    /// Its labels.
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
}

/// `knit config create`: the name and the content, in hex.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigCreate {
    /// The config's name.
    pub(crate) name: String,
    /// The content's bytes, in hex (at most 500 KiB).
    pub(crate) data_hex: String,
    /// Labels, such as the stack that brought it (`com.docker.stack.namespace`).
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    /// When a config of this name exists with the same value, answer 200 with it instead
    /// of 409 (a stack deployed again); with another value, 409 still.
    #[serde(default)]
    pub(crate) keep_same: bool,
}

/// A config as `config ls` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct ConfigSummary {
    /// The config's name.
    pub(crate) name: String,
    /// The content's size.
    pub(crate) size_bytes: usize,
    /// When it was created, in ms since the Unix epoch.
    pub(crate) created_at_ms: u64,
    /// The services that name it.
    pub(crate) services: Vec<String>,
    /// Its labels.
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
}

/// A config as `config inspect` shows it: with its content (configs are not secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct ConfigDetail {
    /// The config's name.
    pub(crate) name: String,
    /// The content's size.
    pub(crate) size_bytes: usize,
    /// When it was created, in ms since the Unix epoch.
    pub(crate) created_at_ms: u64,
    /// The services that name it.
    pub(crate) services: Vec<String>,
    /// Its labels.
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    /// The content's bytes, in hex.
    pub(crate) data_hex: String,
}

/// `knit login`: a registry server and the credentials to pull from it with.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegistryLogin {
    /// The server: a host with an optional port (`registry.example.com:5000`), or
    /// `docker.io` (also `https://index.docker.io/v1/`) for Docker Hub.
    pub(crate) server: String,
    /// The user name.
    pub(crate) username: String,
    /// The password or access token; stored sealed, never shown again.
    pub(crate) password: String,
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("server", &self.server)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A registry as `knit registry ls` shows it: never its password.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct RegistrySummary {
    /// The server (`docker.io` for Docker Hub).
    pub(crate) server: String,
    /// The user name pulls use.
    pub(crate) username: String,
    /// When `knit login` stored the credentials, in ms since the Unix epoch.
    pub(crate) created_at_ms: u64,
}

/// What the API answers with an error status (4xx, 5xx).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong, and what to do about it.
    pub(crate) error: String,
}

/// The answer to a removal.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct Removed {
    /// The name of what was removed.
    pub(crate) removed: String,
}

/// The cluster's join token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct TokenAnswer {
    /// What `knit up --join ... --token` takes.
    pub(crate) token: String,
}

/// [`MemberState`] as the API writes it, for the API's document (the mesh crate knows
/// nothing of OpenAPI); a test holds the two to the same words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = MemberState)]
pub(crate) enum MemberStateName {
    /// Answers probes.
    Alive,
    /// Missed a probe; declared down unless it refutes in time.
    Suspect,
    /// Declared dead by the failure detector.
    Down,
    /// Left on purpose (SIGTERM, `knit down`).
    Left,
}

impl From<MemberState> for MemberStateName {
    fn from(state: MemberState) -> Self {
        match state {
            MemberState::Alive => Self::Alive,
            MemberState::Suspect => Self::Suspect,
            MemberState::Down => Self::Down,
            MemberState::Left => Self::Left,
        }
    }
}

/// A value's serde name (`"alive"`, `"on_failure"`), for tables.
pub(crate) fn word<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_states_are_documented_with_their_words() {
        for state in [
            MemberState::Alive,
            MemberState::Suspect,
            MemberState::Down,
            MemberState::Left,
        ] {
            assert_eq!(word(&state), word(&MemberStateName::from(state)));
        }
    }
}
