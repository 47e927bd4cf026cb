//! Checking a placement against its inputs: computed placements are checked in tests, and
//! a node checks the one it is about to apply.

use std::collections::{BTreeMap, BTreeSet};

use super::table::{Assignment, Placement};
use crate::node::{Availability, NodeId, NodeView};
use crate::replica::{SlotId, SlotKey};
use crate::spec::{Mode, Resources, ServiceSpec};

/// What the slots add up to, per node and per service.
#[derive(Default)]
struct Tally<'a> {
    load: BTreeMap<&'a NodeId, u32>,
    used: BTreeMap<&'a NodeId, Resources>,
    replicas: BTreeMap<String, u32>,
    global: BTreeSet<(String, NodeId)>,
    /// Replicas of each service on each active node.
    per_node: BTreeMap<(&'a str, &'a NodeId), u32>,
}

impl<'a> Tally<'a> {
    /// Counts one slot, checking the laws that concern it alone.
    fn add(
        &mut self,
        slot: &SlotId,
        a: Assignment<'_>,
        spec: &'a ServiceSpec,
        nodes: &BTreeMap<&'a NodeId, &'a NodeView>,
    ) -> Result<(), String> {
        match (&slot.key, spec.mode) {
            (SlotKey::Replica(i), Mode::Replicated { replicas }) if (1..=replicas).contains(i) => {
                *self.replicas.entry(spec.name.clone()).or_insert(0) += 1;
            }
            (SlotKey::Node(n), Mode::Global) => {
                self.global.insert((spec.name.clone(), n.clone()));
            }
            _ => return Err(format!("{slot}: the service asks for no such slot")),
        }
        let Assignment::Assigned(id) = a else {
            return Ok(());
        };
        let (&id, node) = nodes
            .get_key_value(id)
            .ok_or_else(|| format!("{slot}: on unknown node {id}"))?;
        if let SlotKey::Node(pinned) = &slot.key
            && pinned != id
        {
            return Err(format!("{slot}: global slot on another node {id}"));
        }
        if !spec.constraints.iter().all(|c| c.matches(node)) {
            return Err(format!("{slot}: node {id} does not meet the constraints"));
        }
        match node.availability {
            Availability::Active => {
                if matches!(slot.key, SlotKey::Replica(_)) {
                    *self.load.entry(id).or_insert(0) += 1;
                    let held = self.per_node.entry((&spec.name, id)).or_insert(0);
                    *held += 1;
                    let max = spec.replicas_max_per_node;
                    if max > 0 && *held > max {
                        return Err(format!(
                            "{slot}: node {id} holds more than the {max} replicas per node of {}",
                            spec.name
                        ));
                    }
                }
                let u = self.used.entry(id).or_default();
                *u = u.plus(&spec.reservations);
                Ok(())
            }
            Availability::Pause => Ok(()),
            Availability::Drain => Err(format!("{slot}: on drained node {id}")),
        }
    }

    /// Checks the laws about totals.
    fn totals(
        &self,
        placement: &Placement,
        nodes: &BTreeMap<&NodeId, &NodeView>,
        services: &[ServiceSpec],
    ) -> Result<(), String> {
        for spec in services {
            if self.replicas.get(&spec.name).copied().unwrap_or(0) != spec.replicas() {
                return Err(format!("{}: not every replica has a slot", spec.name));
            }
            let eligible = |n: &NodeView| {
                n.availability == Availability::Active
                    && spec.constraints.iter().all(|c| c.matches(n))
            };
            let missing = nodes
                .values()
                .find(|n| eligible(n) && !self.global.contains(&(spec.name.clone(), n.id.clone())));
            if let (Mode::Global, Some(n)) = (spec.mode, missing) {
                return Err(format!("{}: no global slot on {}", spec.name, n.id));
            }
        }
        let bound = placement.load_bound();
        if let Some((id, l)) = self
            .load
            .iter()
            .find(|(id, l)| **l > placement.bound_of(id))
        {
            return Err(format!(
                "node {id} holds {l} slots, above its bound {}",
                placement.bound_of(id)
            ));
        }
        if let Some(id) = nodes.keys().find(|id| placement.bound_of(id) > bound) {
            return Err(format!("node {id} has a bound above the largest {bound}"));
        }
        for (id, u) in &self.used {
            let cap = nodes[id].capacity;
            if !u.fits(&cap, &cap) {
                return Err(format!(
                    "node {id} reserves {u:?}, above its capacity {cap:?}"
                ));
            }
        }
        Ok(())
    }
}

impl Placement {
    /// Checks the laws every placement of `services` on `nodes` obeys: each slot the
    /// services ask for is present once (global slots on every active node meeting the
    /// constraints; paused nodes may keep more), assigned slots sit on active or paused
    /// nodes that meet the constraints, no active node holds more replicated slots than the
    /// load bound nor more replicas of a service than its `replicas_max_per_node`, and no
    /// active node's reservations exceed its known capacity. The error names the first
    /// broken law.
    pub fn check<'a>(
        &self,
        nodes: &'a [NodeView],
        services: &'a [ServiceSpec],
    ) -> Result<(), String> {
        let nodes: BTreeMap<&NodeId, &NodeView> = nodes.iter().map(|n| (&n.id, n)).collect();
        let specs: BTreeMap<&str, &ServiceSpec> =
            services.iter().map(|s| (s.name.as_str(), s)).collect();
        let mut tally = Tally::default();
        for (slot, a) in self.iter() {
            let spec = specs
                .get(slot.service.as_str())
                .ok_or_else(|| format!("{slot}: no such service"))?;
            tally.add(&slot, a, spec, &nodes)?;
        }
        tally.totals(self, &nodes, services)
    }
}
