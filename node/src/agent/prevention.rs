//! Preventive healing: a node whose own telemetry says it is about to fail (disk nearly
//! full, memory pressure, heat, repeated start failures) drains itself, so its replicas
//! move by handoff before it fails; it returns to active once it has been healthy for a
//! while. It never drains when that would leave slots without a node: it says so instead.
//!
//! Several nodes may fail together. To keep them from all draining at once, a node counts
//! as drained, when it checks the fit, every node that already drained itself and every
//! node that wants to and has a smaller id.

use std::collections::BTreeSet;
use std::time::Duration;

use knit_mesh::quic::Mesh;
use knit_scheduler::Availability;
use knit_scheduler::placement::Assignment;

use crate::cluster::{Condition, NodeSpec, Snapshot};
use crate::records::{condition_key, node_spec_key};
use crate::telemetry::Telemetry;

/// When a node drains itself; from `knit up` flags.
#[derive(Debug, Clone)]
pub(crate) struct Thresholds {
    pub(crate) disk_percent: f64,
    pub(crate) memory_percent: f64,
    pub(crate) temperature_c: f32,
    /// Failed starts within `start_failure_window` that count as a failing host.
    pub(crate) start_failures: u32,
    pub(crate) start_failure_window: Duration,
    /// Healthy this long before an automatic drain is undone.
    pub(crate) recover_after: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            disk_percent: 95.0,
            memory_percent: 95.0,
            temperature_c: 90.0,
            start_failures: 5,
            start_failure_window: Duration::from_secs(600),
            recover_after: Duration::from_secs(300),
        }
    }
}

/// Why this host looks about to fail, if it does.
pub(crate) fn failing(
    t: Option<&Telemetry>,
    start_failures: u32,
    limits: &Thresholds,
) -> Option<String> {
    if let Some(t) = t {
        if let Some(p) = t.disk_percent().filter(|p| *p >= limits.disk_percent) {
            return Some(format!(
                "disk {p:.0}% full (threshold {:.0}%)",
                limits.disk_percent
            ));
        }
        if let Some(p) = t.memory_percent().filter(|p| *p >= limits.memory_percent) {
            return Some(format!(
                "memory {p:.0}% used (threshold {:.0}%)",
                limits.memory_percent
            ));
        }
        if let Some(c) = t.temperature_max_c.filter(|c| *c >= limits.temperature_c) {
            return Some(format!(
                "temperature {c:.0}°C (threshold {:.0}°C)",
                limits.temperature_c
            ));
        }
    }
    (start_failures >= limits.start_failures).then(|| {
        format!(
            "{start_failures} failed starts in {} s (threshold {})",
            limits.start_failure_window.as_secs(),
            limits.start_failures
        )
    })
}

/// Whether draining `drained` leaves some slot that has a node now without one.
fn fits_without(snapshot: &Snapshot, drained: &BTreeSet<String>) -> bool {
    let now = snapshot.placement();
    let after = snapshot.placement_without(drained);
    after.iter().all(|(slot, a)| match a {
        Assignment::Assigned(_) => true,
        Assignment::Pending(_) => !matches!(now.get(&slot), Some(Assignment::Assigned(_))),
    })
}

/// One check: publishes this node's condition, and drains or restores it as due.
pub(crate) async fn check(
    mesh: &Mesh,
    snapshot: &Snapshot,
    reason: Option<String>,
    limits: &Thresholds,
) {
    let me = snapshot.view.me.node;
    let spec = snapshot.node_spec(&me);
    let previous = snapshot.condition(&me).unwrap_or_default();
    let now_ms = crate::clock::now_ms();
    let mut condition = Condition {
        failing: reason.clone(),
        note: String::new(),
        since_ms: if previous.failing.is_some() == reason.is_some() {
            previous.since_ms
        } else {
            now_ms
        },
    };
    match (&reason, spec.availability, spec.auto_drained) {
        (Some(why), Availability::Active, _) => {
            // Nodes that drained themselves, and failing nodes ranked before this one.
            let mut drained: BTreeSet<String> = BTreeSet::new();
            for m in snapshot.view.members.iter().filter(|m| m.state.is_active()) {
                let other = snapshot.node_spec(&m.peer.node);
                let wants = snapshot
                    .condition(&m.peer.node)
                    .is_some_and(|c| c.failing.is_some());
                if other.auto_drained || (wants && m.peer.node < me) || m.peer.node == me {
                    drained.insert(m.peer.node.to_string());
                }
            }
            if fits_without(snapshot, &drained) {
                tracing::warn!(reason = %why, "this host looks about to fail: draining it");
                condition.note = format!("drained itself: {why}");
                let next = NodeSpec {
                    availability: Availability::Drain,
                    labels: spec.labels.clone(),
                    auto_drained: true,
                };
                put(mesh, &node_spec_key(&me), &next).await;
            } else {
                condition.note = format!(
                    "{why}; not drained: the services would no longer fit on the other nodes"
                );
            }
        }
        (None, Availability::Drain, true) => {
            let healthy_for = Duration::from_millis(now_ms.saturating_sub(condition.since_ms));
            if healthy_for >= limits.recover_after {
                tracing::info!("healthy again: back to active");
                let next = NodeSpec {
                    availability: Availability::Active,
                    labels: spec.labels.clone(),
                    auto_drained: false,
                };
                put(mesh, &node_spec_key(&me), &next).await;
            } else {
                condition.note = format!(
                    "healthy for {} s; active again after {} s",
                    healthy_for.as_secs(),
                    limits.recover_after.as_secs()
                );
            }
        }
        (Some(why), _, true) => condition.note = format!("drained itself: {why}"),
        _ => {}
    }
    if condition != previous {
        put(mesh, &condition_key(&me), &condition).await;
    }
}

async fn put<T: serde::Serialize>(mesh: &Mesh, key: &str, value: &T) {
    if let Ok(bytes) = serde_json::to_vec(value) {
        let _ = mesh.put(key, Some(bytes)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_name_what_crossed_them() {
        let limits = Thresholds::default();
        let mut t = Telemetry {
            disk_used_bytes: 96,
            disk_total_bytes: 100,
            memory_used_bytes: 1,
            memory_total_bytes: 100,
            ..Telemetry::default()
        };
        assert!(failing(Some(&t), 0, &limits).unwrap().contains("disk 96%"));
        t.disk_used_bytes = 10;
        assert_eq!(failing(Some(&t), 0, &limits), None);
        t.temperature_max_c = Some(95.0);
        assert!(
            failing(Some(&t), 0, &limits)
                .unwrap()
                .contains("temperature")
        );
        assert!(failing(None, 5, &limits).unwrap().contains("failed starts"));
        assert_eq!(failing(None, 4, &limits), None);
    }
}
