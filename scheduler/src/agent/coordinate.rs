//! The agent's part in rolling updates and autoscaling: gate this host's replacements by
//! the rollouts' published progress, and coordinate the services whose coordinator this
//! host is (see [`crate::rollout`] and [`crate::autoscale`]).

use std::collections::{BTreeMap, BTreeSet};

use super::{Agent, Input, Note, Plan, Write};
use crate::node::NodeId;
use crate::placement::{Assignment, Placement};
use crate::replica::{ReplicaReport, SlotId};
use crate::rollout::{self, Progress, RolloutState};
use crate::spec::limits::check_slot_cap;
use crate::spec::{Mode, ServiceSpec};

/// What other hosts published that a round reads.
pub trait Published {
    /// Every host's published progress of `service`'s rollouts.
    fn progress(&self, service: &str) -> Vec<Progress>;
    /// When `service`'s spec was last written (ms), for the autoscaler's cooldown.
    fn spec_written_ms(&self, service: &str) -> u64;
}

fn slots_of(placement: &Placement, service: &str) -> Vec<SlotId> {
    placement.service_slots(service).map(|(s, _)| s).collect()
}

/// The slots of `me`'s replicas whose outdated replicas may be replaced now (the gate
/// matters only for the replicas a node runs; see [`crate::ReconcileConfig`]).
pub fn gate(input: &Input<'_>, me: &NodeId) -> BTreeSet<SlotId> {
    let mut mine: BTreeMap<&str, Vec<SlotId>> = BTreeMap::new();
    for r in input.observed.get(me).into_iter().flatten() {
        mine.entry(r.slot.service.as_str())
            .or_default()
            .push(r.slot.clone());
    }
    let mut open = BTreeSet::new();
    for (service, slots) in mine {
        let Some(spec) = input.specs.get(service) else {
            continue;
        };
        let progress = input.published.progress(service);
        let newest = rollout::newest(spec, &progress);
        open.extend(rollout::allowed(spec, &slots, newest));
    }
    open
}

/// Steps the rollouts `agent` coordinates and publishes their progress; writes the previous
/// spec of a rollout that failed into a rollback; applies autoscaling policies.
pub(super) fn coordinate(
    agent: &mut Agent,
    input: &Input<'_>,
    alive: &std::sync::Arc<BTreeSet<NodeId>>,
    now_ms: u64,
    plan: &mut Plan,
) {
    let mine: Vec<String> = agent
        .coordinated_among(alive, input.specs)
        .iter()
        .cloned()
        .collect();
    for spec in mine.iter().filter_map(|name| input.specs.get(name)) {
        autoscale(input, alive, spec, now_ms, plan);
        let progress = input.published.progress(&spec.name);
        let newest = rollout::newest(spec, &progress);
        let slots = slots_of(input.placement, &spec.name);
        let waiting: BTreeSet<SlotId> = slots
            .iter()
            .filter(|slot| {
                !matches!(input.placement.get(slot),
                    Some(Assignment::Assigned(owner)) if alive.contains(owner))
            })
            .cloned()
            .collect();
        let next = rollout::step(
            spec,
            &slots,
            &waiting,
            input.observed,
            alive,
            newest,
            now_ms,
        );
        if agent.rollouts.get(&spec.name) == Some(&next) {
            continue;
        }
        if next.message != newest.map(|p| p.message.clone()).unwrap_or_default()
            && !next.message.is_empty()
        {
            plan.notes.push(Note::Rollout {
                service: spec.name.clone(),
                version: next.to_version,
                message: next.message.clone(),
            });
        }
        if next.state == RolloutState::RollingBack
            && newest.is_none_or(|p| p.state != RolloutState::RollingBack)
            && let Some(previous) = spec.previous.as_deref()
        {
            plan.notes.push(Note::RollingBack {
                service: spec.name.clone(),
                from: spec.version,
            });
            plan.writes.push(Write::Spec(Box::new(
                spec.followed_by(previous.clone(), false),
            )));
        }
        plan.writes.push(Write::Progress {
            service: spec.name.clone(),
            progress: Some(next.clone()),
        });
        agent.rollouts.insert(spec.name.clone(), next);
    }
    // Progress of services that are gone.
    let gone: Vec<String> = agent
        .rollouts
        .keys()
        .filter(|s| !input.specs.contains_key(*s))
        .cloned()
        .collect();
    for service in gone {
        agent.rollouts.remove(&service);
        plan.writes.push(Write::Progress {
            service,
            progress: None,
        });
    }
}

/// Applies the autoscaling policy of `spec`, as its coordinator.
fn autoscale(
    input: &Input<'_>,
    alive: &BTreeSet<NodeId>,
    spec: &ServiceSpec,
    now_ms: u64,
    plan: &mut Plan,
) {
    if spec.autoscale.is_none() {
        return;
    }
    let reports: Vec<&ReplicaReport> = input
        .observed
        .iter()
        .filter(|(n, _)| alive.contains(*n))
        .flat_map(|(_, reports)| reports)
        .collect();
    let last_change_ms = input.published.spec_written_ms(&spec.name);
    let Some(replicas) = crate::autoscale::desired(spec, &reports, last_change_ms, now_ms) else {
        return;
    };
    let mut next = spec.clone();
    next.mode = Mode::Replicated { replicas };
    let mut next = spec.followed_by(next, false);
    // A rollback still goes back to the spec before the operator's last change.
    next.previous.clone_from(&spec.previous);
    let fits = next.validate(&input.limits).and_then(|()| {
        check_slot_cap(
            &next,
            input.specs.values(),
            input.active_nodes,
            &input.limits,
        )
    });
    if let Err(e) = fits {
        // Scaling past a limit would make every peer ignore the service: stay put.
        plan.notes.push(Note::AutoscaleCapped {
            service: spec.name.clone(),
            reason: e.to_string(),
        });
        return;
    }
    plan.notes.push(Note::Autoscaling {
        service: spec.name.clone(),
        from: spec.replicas(),
        to: replicas,
    });
    plan.writes.push(Write::Spec(Box::new(next)));
}
