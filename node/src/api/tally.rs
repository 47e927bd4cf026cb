//! What this peer has seen happen to slots since it started, for `/metrics`: heals, with
//! how long each took, and restarts.
//!
//! A **heal** is a slot that had a running replica, lost it, and has one again: the
//! replica failed and was restarted, its host went down and another host took the slot
//! (counted from when this peer saw the host `down`), or a stop-first update replaced it.
//! A slot that never ran yet (a new service, a scale-up) is not healing. Only replicas on
//! members that are alive or suspect count as running.
//!
//! A **restart** is a replica started again by its service's restart policy: a new
//! replica of a slot on the node that ran it, with a restart count above zero, or another
//! failed attempt to start one (its record's count grows). A move to another node is not
//! a restart. A heal or restart shorter than the observer's batch (200 ms) may go unseen.
//!
//! Every peer counts what it sees of the whole cluster; graph one peer, or the maximum over
//! peers, rather than their sum.

use std::collections::{BTreeMap, BTreeSet};

use knit_scheduler::{Placement, ReplicaReport, ReplicaState, SlotId};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use crate::cluster::Snapshot;

/// The bounds of the heal duration histogram's buckets, in seconds: from a restart in
/// place (under a second) to a host lost under the `wan` profile (minutes).
const HEAL_BUCKETS_S: [f64; 11] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

type Labels = Vec<(String, String)>;
type Heals = Family<Labels, Histogram, fn() -> Histogram>;

fn heal_histogram() -> Histogram {
    Histogram::new(HEAL_BUCKETS_S)
}

fn service_label(service: &str) -> Labels {
    vec![("service".to_owned(), service.to_owned())]
}

/// The replicas of one slot on one node, as last seen.
#[derive(Debug, Default)]
struct Seen {
    /// Replicas that started, by runtime id, with their restart counts.
    replicas: BTreeMap<String, u32>,
    /// The restart count of the slot's record of a failed start (a start that never ran
    /// keeps one record, whose count grows with each attempt), or 0.
    failed: u32,
}

/// The running tally; its metric families are shared with every scrape.
pub(crate) struct Tally {
    /// Slots seen with a running replica, and since when (ms) each has had none; `None`
    /// while one runs.
    slots: BTreeMap<SlotId, Option<u64>>,
    /// What was last seen of each slot on each node (node id, slot).
    last: BTreeMap<(String, SlotId), Seen>,
    /// Heal durations in seconds, by service.
    heals: Heals,
    /// Restarts, by service.
    restarts: Family<Labels, Counter>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            slots: BTreeMap::new(),
            last: BTreeMap::new(),
            heals: Family::new_with_constructor(heal_histogram),
            restarts: Family::default(),
        }
    }
}

impl Tally {
    /// Reads `snapshot` (whose placement is `placement`) at `now_ms`.
    pub(crate) fn observe(&mut self, snapshot: &Snapshot, placement: &Placement, now_ms: u64) {
        let slots: BTreeSet<SlotId> = placement.iter().map(|(slot, _)| slot).collect();
        let reports: Vec<(String, ReplicaReport)> = snapshot
            .view
            .members
            .iter()
            .filter(|m| m.state.is_active())
            .flat_map(|m| {
                let node = m.peer.node.to_string();
                snapshot
                    .reports(&m.peer.node)
                    .into_iter()
                    .map(move |r| (node.clone(), r))
            })
            .collect();
        self.observe_reports(&slots, &reports, now_ms);
    }

    /// Counts heals and restarts from the slots that exist and the reports of active
    /// members, as (node id, report), at `now_ms`.
    fn observe_reports(
        &mut self,
        slots: &BTreeSet<SlotId>,
        reports: &[(String, ReplicaReport)],
        now_ms: u64,
    ) {
        let running: BTreeSet<&SlotId> = reports
            .iter()
            .filter(|(_, r)| r.state == ReplicaState::Running)
            .map(|(_, r)| &r.slot)
            .collect();
        // A slot that is gone (scaled down, service removed) ends without a heal.
        self.slots.retain(|slot, _| slots.contains(slot));
        for slot in slots {
            let runs = running.contains(slot);
            match self.slots.get_mut(slot) {
                None if runs => {
                    self.slots.insert(slot.clone(), None);
                }
                Some(down @ None) if !runs => *down = Some(now_ms),
                Some(down @ Some(_)) if runs => {
                    let since = down.take().unwrap_or(now_ms);
                    // Milliseconds far below 2^52: exact as a float.
                    #[allow(clippy::cast_precision_loss)]
                    let seconds = now_ms.saturating_sub(since) as f64 / 1000.0;
                    self.heals
                        .get_or_create(&service_label(&slot.service))
                        .observe(seconds);
                }
                _ => {}
            }
        }
        self.count_restarts(reports);
    }

    fn count_restarts(&mut self, reports: &[(String, ReplicaReport)]) {
        let mut now: BTreeMap<(String, SlotId), Seen> = BTreeMap::new();
        for (node, r) in reports {
            let seen = now.entry((node.clone(), r.slot.clone())).or_default();
            if r.started_at_ms == 0 {
                seen.failed = seen.failed.max(r.restarts);
            } else {
                seen.replicas.insert(r.runtime_id.clone(), r.restarts);
            }
        }
        for (key, seen) in &now {
            let Some(before) = self.last.get(key) else {
                continue;
            };
            let started = seen
                .replicas
                .iter()
                .filter(|(id, restarts)| **restarts > 0 && !before.replicas.contains_key(*id))
                .count();
            // A failed attempt's count continues the one of the replica before it.
            let counted = before
                .replicas
                .values()
                .copied()
                .fold(before.failed, u32::max);
            let failed = seen.failed.saturating_sub(counted);
            let more = u64::try_from(started).unwrap_or(u64::MAX) + u64::from(failed);
            if more > 0 {
                self.restarts
                    .get_or_create(&service_label(&key.1.service))
                    .inc_by(more);
            }
        }
        self.last = now;
    }

    /// The heal duration histograms, to register in a scrape's registry.
    pub(crate) fn heals(&self) -> Heals {
        self.heals.clone()
    }

    /// The restart counters, to register in a scrape's registry.
    pub(crate) fn restarts(&self) -> Family<Labels, Counter> {
        self.restarts.clone()
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    use super::*;

    fn report(slot: &SlotId, id: &str, state: ReplicaState, restarts: u32) -> ReplicaReport {
        ReplicaReport {
            slot: slot.clone(),
            spec_version: 1,
            template: 1,
            state,
            health: knit_scheduler::Health::None,
            host_ports: BTreeMap::new(),
            error: None,
            runtime_id: id.to_owned(),
            started_at_ms: 0,
            restarts,
            cpu_millis: None,
        }
    }

    fn text(tally: &Tally) -> String {
        let mut registry = Registry::default();
        registry.register("heal_duration_seconds", "h", tally.heals());
        registry.register("service_restarts", "r", tally.restarts());
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn a_slot_that_ran_lost_its_replica_and_runs_again_healed_once() {
        let web1 = SlotId::replica("web", 1);
        let web2 = SlotId::replica("web", 2);
        let slots: BTreeSet<SlotId> = [web1.clone(), web2.clone()].into();
        let mut tally = Tally::default();
        // web.2 never ran yet: starting is not healing.
        tally.observe_reports(
            &slots,
            &[("a".into(), report(&web1, "r1", ReplicaState::Running, 0))],
            1_000,
        );
        // web.1's host is down (its report is gone from the active ones); web.2 starts.
        tally.observe_reports(
            &slots,
            &[("b".into(), report(&web2, "r2", ReplicaState::Running, 0))],
            2_000,
        );
        // web.1 runs again on b, 2.5 s later.
        tally.observe_reports(
            &slots,
            &[
                ("b".into(), report(&web1, "r3", ReplicaState::Running, 0)),
                ("b".into(), report(&web2, "r2", ReplicaState::Running, 0)),
            ],
            4_500,
        );
        let out = text(&tally);
        assert!(
            out.contains(r#"heal_duration_seconds_count{service="web"} 1"#),
            "{out}"
        );
        assert!(
            out.contains(r#"heal_duration_seconds_sum{service="web"} 2.5"#),
            "{out}"
        );
        assert!(
            out.contains(r#"heal_duration_seconds_bucket{le="5.0",service="web"} 1"#),
            "{out}"
        );
        assert!(
            out.contains(r#"heal_duration_seconds_bucket{le="2.0",service="web"} 0"#),
            "{out}"
        );
        // Scaled away while down: forgotten, never a heal.
        let web1_only: BTreeSet<SlotId> = [web1.clone()].into();
        tally.observe_reports(&slots, &[], 5_000);
        tally.observe_reports(&web1_only, &[], 6_000);
        tally.observe_reports(
            &slots,
            &[("b".into(), report(&web2, "r4", ReplicaState::Running, 0))],
            7_000,
        );
        assert!(text(&tally).contains(r#"heal_duration_seconds_count{service="web"} 1"#));
    }

    #[test]
    fn restarts_count_new_replicas_that_are_restarts_and_failed_attempts_not_moves() {
        let web1 = SlotId::replica("web", 1);
        let slots: BTreeSet<SlotId> = [web1.clone()].into();
        let mut tally = Tally::default();
        let mut at = |reports: &[(&str, &str, ReplicaState, u32)]| {
            let reports: Vec<(String, ReplicaReport)> = reports
                .iter()
                .map(|(node, id, state, restarts)| {
                    let mut r = report(&web1, id, *state, *restarts);
                    r.started_at_ms = u64::from(!id.starts_with("failed"));
                    ((*node).to_owned(), r)
                })
                .collect();
            tally.observe_reports(&slots, &reports, 0);
        };
        at(&[("a", "r1", ReplicaState::Running, 0)]);
        at(&[("a", "r1", ReplicaState::Failed, 0)]);
        // The restart: the dead replica's count grows too; one restart.
        at(&[
            ("a", "r1", ReplicaState::Failed, 1),
            ("a", "r2", ReplicaState::Starting, 1),
        ]);
        at(&[("a", "r2", ReplicaState::Running, 1)]);
        // Two failed attempts to start, then one that runs: three restarts.
        at(&[("a", "failed-web.1", ReplicaState::Failed, 2)]);
        at(&[("a", "failed-web.1", ReplicaState::Failed, 3)]);
        at(&[("a", "r3", ReplicaState::Running, 4)]);
        // The window passed: a new replica counts one again.
        at(&[("a", "r4", ReplicaState::Running, 1)]);
        // Moved to b: not a restart; nor is the same replica seen again.
        at(&[("b", "r5", ReplicaState::Running, 1)]);
        at(&[("b", "r5", ReplicaState::Running, 1)]);
        let out = text(&tally);
        assert!(
            out.contains(r#"service_restarts_total{service="web"} 5"#),
            "{out}"
        );
    }
}
