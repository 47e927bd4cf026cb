//! The records of rolling updates and autoscaling in the replicated state: where a
//! coordinator publishes a rollout's progress, how a new spec version is written, and
//! what the round's core reads of them (see [`knit_scheduler::agent::coordinate`]).

use knit_mesh::quic::Mesh;
use knit_mesh::store::owned_key;
use knit_scheduler::ServiceSpec;
use knit_scheduler::agent::Published;
use knit_scheduler::rollout::Progress;

use crate::cluster::{Snapshot, service_key, service_version_key};

/// The key under which a node publishes its progress of `service`'s rollout.
pub(crate) fn progress_key(node: &knit_mesh::NodeId, service: &str) -> String {
    owned_key(node, &format!("rollout/{service}"))
}

impl Published for Snapshot {
    /// Every member's published progress of `service`.
    fn progress(&self, service: &str) -> Vec<Progress> {
        self.view
            .members
            .iter()
            .filter_map(|m| self.store.get(&progress_key(&m.peer.node, service)))
            .filter_map(|bytes| serde_json::from_slice(bytes).ok())
            .collect()
    }

    fn spec_written_ms(&self, service: &str) -> u64 {
        self.store
            .stamp(&service_key(service))
            .map_or(0, |s| s.millis())
    }
}

/// Writes `next` and its version.
pub(crate) async fn write(mesh: &Mesh, next: &ServiceSpec) {
    let (Ok(version), Ok(bytes)) = (serde_json::to_vec(&next.version), serde_json::to_vec(&next))
    else {
        return;
    };
    let _ = mesh
        .put(&service_version_key(&next.name), Some(version))
        .await;
    let _ = mesh.put(&service_key(&next.name), Some(bytes)).await;
}
