//! The cluster as `/v1/events` and the dashboard show it: the members, the replicas each
//! reports, the services and their rollouts, each entry the JSON the rest of the API
//! serves for it (`/v1/nodes`, `/v1/services`), keyed so that two pictures compare entry
//! by entry. A change is an entry that appeared, changed or went away.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use knit_mesh::MemberState;
use knit_scheduler::{Placement, ReplicaReport, ReplicaState};
use serde::Serialize;

use crate::cluster::Snapshot;

/// What an entry describes; its name is the event's name on the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// A member, as `/v1/nodes` lists it (keyed by node id).
    Node,
    /// A replica report, with its node (keyed `<node id>/<runtime id>`).
    Replica,
    /// A service, as `/v1/services` lists it (keyed by name).
    Service,
    /// The newest progress of a service's rollout (keyed by service name).
    Rollout,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Replica => "replica",
            Self::Service => "service",
            Self::Rollout => "rollout",
        }
    }
}

/// One replica on the stream: its report as its node made it, with the slot written as
/// `service ps` writes it (`web.3`), and whether it runs the service's current spec.
#[derive(Serialize)]
struct ReplicaCard<'a> {
    node_id: String,
    slot: String,
    service: &'a str,
    runtime_id: &'a str,
    state: knit_scheduler::ReplicaState,
    health: knit_scheduler::Health,
    spec_version: u64,
    current: bool,
    host_ports: &'a BTreeMap<u16, u16>,
    error: Option<&'a str>,
    started_at_ms: u64,
    restarts: u32,
    cpu_millis: Option<u32>,
}

impl<'a> ReplicaCard<'a> {
    fn new(node_id: String, report: &'a ReplicaReport, current: bool) -> Self {
        Self {
            node_id,
            slot: report.slot.to_string(),
            service: &report.slot.service,
            runtime_id: &report.runtime_id,
            state: report.state,
            health: report.health,
            spec_version: report.spec_version,
            current,
            host_ports: &report.host_ports,
            error: report.error.as_deref(),
            started_at_ms: report.started_at_ms,
            restarts: report.restarts,
            cpu_millis: report.cpu_millis,
        }
    }
}

/// One entry that appeared or changed (`value` is its JSON) or went away (`None`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Change {
    pub(crate) kind: Kind,
    pub(crate) key: String,
    pub(crate) value: Option<Arc<serde_json::Value>>,
}

impl Change {
    /// The event's data: `{"key": ..., "value": ...}`, `value` null when the entry went away.
    pub(crate) fn data(&self) -> String {
        let value = self.value.as_deref().unwrap_or(&serde_json::Value::Null);
        serde_json::json!({ "key": self.key, "value": value }).to_string()
    }
}

/// Every entry, in a fixed order.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Picture {
    entries: BTreeMap<(Kind, String), Arc<serde_json::Value>>,
}

impl Picture {
    /// The picture of `snapshot`, whose placement is `placement`.
    pub(crate) fn of(snapshot: &Snapshot, placement: &Placement) -> Self {
        let mut picture = Self::default();
        for node in super::nodes::summaries(snapshot) {
            picture.insert(Kind::Node, node.id.clone(), &node);
        }
        let specs = snapshot.specs();
        for member in snapshot
            .view
            .members
            .iter()
            .filter(|m| m.state != MemberState::Left)
        {
            let node_id = member.peer.node.to_string();
            for report in snapshot.reports(&member.peer.node) {
                let current = specs
                    .get(&report.slot.service)
                    .is_some_and(|spec| report.template == spec.template_id());
                let card = ReplicaCard::new(node_id.clone(), &report, current);
                picture.insert(
                    Kind::Replica,
                    format!("{node_id}/{}", report.runtime_id),
                    &card,
                );
            }
        }
        for service in super::services::summaries(snapshot, placement) {
            picture.insert(Kind::Service, service.name.clone(), &service);
        }
        for spec in specs.values() {
            if let Some(progress) = snapshot.rollout(spec) {
                picture.insert(Kind::Rollout, spec.name.clone(), &progress);
            }
        }
        picture
    }

    fn insert(&mut self, kind: Kind, key: String, value: &impl Serialize) {
        // The API's own types always serialize; one that did not would be left out.
        if let Ok(value) = serde_json::to_value(value) {
            self.entries.insert((kind, key), Arc::new(value));
        }
    }

    /// Every entry, as changes from an empty picture.
    pub(crate) fn all(&self) -> impl Iterator<Item = Change> + '_ {
        self.entries.iter().map(|((kind, key), value)| Change {
            kind: *kind,
            key: key.clone(),
            value: Some(value.clone()),
        })
    }

    /// What differs from `before`: entries new or changed, then entries gone.
    pub(crate) fn changes_since(&self, before: &Picture) -> Vec<Change> {
        let mut changes: Vec<Change> = self
            .entries
            .iter()
            .filter(|(id, value)| before.entries.get(id) != Some(value))
            .map(|((kind, key), value)| Change {
                kind: *kind,
                key: key.clone(),
                value: Some(value.clone()),
            })
            .collect();
        changes.extend(
            before
                .entries
                .keys()
                .filter(|id| !self.entries.contains_key(id))
                .map(|(kind, key)| Change {
                    kind: *kind,
                    key: key.clone(),
                    value: None,
                }),
        );
        changes
    }
}

/// How a service's slots stand, as an operator graphs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SlotCounts {
    /// Slots placement gives it (for a global service, one per eligible node).
    pub(crate) desired: usize,
    /// Slots with a running replica on a member that is alive or suspect.
    pub(crate) running: usize,
    /// Of those, slots with a replica that passes its health check (or has none).
    pub(crate) healthy: usize,
}

/// [`SlotCounts`] of every valid service, by name.
pub(crate) fn slot_counts(
    snapshot: &Snapshot,
    placement: &Placement,
) -> BTreeMap<String, SlotCounts> {
    let mut counts: BTreeMap<String, SlotCounts> = snapshot
        .specs()
        .into_keys()
        .map(|name| (name, SlotCounts::default()))
        .collect();
    for (slot, _) in placement.iter() {
        if let Some(c) = counts.get_mut(&slot.service) {
            c.desired += 1;
        }
    }
    let mut running = BTreeSet::new();
    let mut healthy = BTreeSet::new();
    for report in active_reports(snapshot) {
        if report.state != ReplicaState::Running {
            continue;
        }
        if matches!(
            report.health,
            knit_scheduler::Health::Healthy | knit_scheduler::Health::None
        ) {
            healthy.insert(report.slot.clone());
        }
        running.insert(report.slot);
    }
    for slot in &running {
        if let Some(c) = counts.get_mut(&slot.service) {
            c.running += 1;
            c.healthy += usize::from(healthy.contains(slot));
        }
    }
    counts
}

/// The reports of members that are alive or suspect: a down member's last reports say
/// nothing of what runs now.
pub(crate) fn active_reports(snapshot: &Snapshot) -> Vec<ReplicaReport> {
    snapshot
        .view
        .members
        .iter()
        .filter(|m| m.state.is_active())
        .flat_map(|m| snapshot.reports(&m.peer.node))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(entries: &[(Kind, &str, serde_json::Value)]) -> Picture {
        let mut p = Picture::default();
        for (kind, key, value) in entries {
            p.insert(*kind, (*key).to_owned(), value);
        }
        p
    }

    #[test]
    fn changes_are_new_or_changed_entries_then_entries_gone() {
        let before = picture(&[
            (Kind::Node, "a", serde_json::json!({"state": "alive"})),
            (Kind::Node, "b", serde_json::json!({"state": "alive"})),
            (
                Kind::Replica,
                "a/1",
                serde_json::json!({"state": "running"}),
            ),
        ]);
        let after = picture(&[
            (Kind::Node, "a", serde_json::json!({"state": "alive"})),
            (Kind::Node, "b", serde_json::json!({"state": "down"})),
            (
                Kind::Replica,
                "a/2",
                serde_json::json!({"state": "starting"}),
            ),
        ]);
        let changes = after.changes_since(&before);
        let seen: Vec<(&str, &str, bool)> = changes
            .iter()
            .map(|c| (c.kind.name(), c.key.as_str(), c.value.is_some()))
            .collect();
        assert_eq!(
            seen,
            [
                ("node", "b", true),
                ("replica", "a/2", true),
                ("replica", "a/1", false)
            ]
        );
        assert!(after.changes_since(&after).is_empty());
        assert_eq!(after.all().count(), 3);
        assert_eq!(
            changes[2].data(),
            r#"{"key":"a/1","value":null}"#,
            "a removal carries a null value"
        );
    }
}
