//! Slots (the places a service's replicas fill) and what nodes report about the replicas
//! they run.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::node::NodeId;

/// Which slot of its service: a number for a replicated service, a node for a global one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotKey {
    /// Slot `1..=replicas` of a replicated service.
    Replica(u32),
    /// The slot of a global service pinned to this node.
    Node(NodeId),
}

/// One slot of one service, written as Docker writes tasks: `blog.3`, `web.<node id>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SlotId {
    /// The service's name.
    pub service: String,
    /// Which of its slots.
    pub key: SlotKey,
}

impl SlotId {
    /// Slot `index` (1-based) of a replicated service.
    pub fn replica(service: &str, index: u32) -> Self {
        Self {
            service: service.to_owned(),
            key: SlotKey::Replica(index),
        }
    }

    /// The slot of global service `service` on `node`.
    pub fn global(service: &str, node: NodeId) -> Self {
        Self {
            service: service.to_owned(),
            key: SlotKey::Node(node),
        }
    }
}

impl fmt::Display for SlotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            SlotKey::Replica(i) => write!(f, "{}.{i}", self.service),
            SlotKey::Node(n) => write!(f, "{}.{n}", self.service),
        }
    }
}

/// Where a replica is in its life, as its node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// Being created: image pull, container create, process spawn.
    Starting,
    /// Running.
    Running,
    /// Being stopped on purpose.
    Stopping,
    /// Stopped by itself with exit code 0, or stopped on purpose.
    Exited,
    /// Stopped with a non-zero code, or could not start.
    Failed,
    /// Its driver does not answer (the Docker engine is down or restarting): it may still
    /// run. It keeps its slot and serves no traffic; it is neither restarted nor replaced
    /// until the driver answers again.
    Unknown,
}

impl ReplicaState {
    /// Starting, running, or unknown: the replica occupies its slot.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Starting | Self::Running | Self::Unknown)
    }
}

/// The result of a replica's health check.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// The service has no health check: running counts as healthy.
    #[default]
    None,
    /// Not probed yet.
    Unknown,
    /// In the start period, probes failing.
    Starting,
    /// Probes pass.
    Healthy,
    /// `retries` probes in a row failed (or were too slow).
    Unhealthy,
}

/// One replica a node runs, as it reports it in its node-owned state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaReport {
    /// The slot it fills (and so its service).
    pub slot: SlotId,
    /// The spec version it was started from, for people.
    #[serde(default)]
    pub spec_version: u64,
    /// The template it was started from ([`crate::spec::ServiceSpec::template_id`]): what
    /// tells whether it runs the current spec. 0: unknown (it is replaced).
    #[serde(default)]
    pub template: u64,
    /// Where it is in its life.
    pub state: ReplicaState,
    /// Its health.
    #[serde(default)]
    pub health: Health,
    /// Host port bound for each target port, for the forwarder.
    #[serde(default)]
    pub host_ports: BTreeMap<u16, u16>,
    /// Why it failed, in the driver's words.
    #[serde(default)]
    pub error: Option<String>,
    /// Container id or process id: what `Stop` acts on.
    #[serde(default)]
    pub runtime_id: String,
    /// When it started, in the reporting node's milliseconds since the epoch.
    #[serde(default)]
    pub started_at_ms: u64,
    /// Restarts counted by the runtime within the restart policy's window; the plan
    /// stops asking for restarts when it reaches `max_attempts`.
    #[serde(default)]
    pub restarts: u32,
    /// CPU it used over the last sample, in millicores (1000 = one core), when measured.
    #[serde(default)]
    pub cpu_millis: Option<u32>,
}

impl ReplicaReport {
    /// Running and healthy (or without a health check) from template `template` (see
    /// [`crate::spec::ServiceSpec::template_id`]): what a handoff waits for before the old
    /// replica stops.
    pub fn serves(&self, template: u64) -> bool {
        self.state == ReplicaState::Running
            && matches!(self.health, Health::Healthy | Health::None)
            && self.template == template
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_print_as_docker_tasks() {
        assert_eq!(SlotId::replica("blog", 3).to_string(), "blog.3");
        let n = NodeId::new("0af3").unwrap();
        assert_eq!(SlotId::global("web", n).to_string(), "web.0af3");
        assert!(SlotId::replica("a", 2) < SlotId::replica("a", 10));
    }
}
