//! [`Placer`]: placement that follows changes one at a time, equal at every step to a full
//! [`super::place_keeping`] over the same inputs.

use super::PlacementConfig;
use super::matching::{Model, NONE};
use super::repair::Proposal;
use super::table::Placement;
use crate::node::{Availability, NodeId, NodeView};
use crate::replica::SlotId;
use crate::spec::{Mode, ServiceSpec};

/// Incremental placement: holds the inputs and the matching, and repairs the matching
/// locally when a node comes or goes or a service changes.
///
/// Law: after any sequence of calls, [`Placer::placement`] equals
/// `place_keeping(nodes, services, previous, config)` where `previous` is the placement
/// before the last call (which is what lets paused nodes keep their slots).
#[derive(Clone, Debug)]
pub struct Placer {
    config: PlacementConfig,
    model: Model,
    /// Changes that needed a full recomputation, for tests and metrics.
    full_recomputes: u64,
}

impl Placer {
    /// Places `services` on `nodes` from scratch.
    pub fn new(nodes: &[NodeView], services: &[ServiceSpec], config: &PlacementConfig) -> Self {
        Self::with_current(nodes, services, &Placement::default(), config)
    }

    /// Places `services` on `nodes` from scratch; paused nodes keep what `current` gives them.
    pub fn with_current(
        nodes: &[NodeView],
        services: &[ServiceSpec],
        current: &Placement,
        config: &PlacementConfig,
    ) -> Self {
        let pins = super::paused_pins(nodes, current);
        Self {
            config: config.clone(),
            model: Model::build(nodes, services, &pins, config),
            full_recomputes: 0,
        }
    }

    /// The placement now.
    pub fn placement(&self) -> Placement {
        Placement::from_model(&self.model)
    }

    /// How many changes fell back to a full recomputation (a bound moved, or a reservation
    /// binds somewhere).
    pub fn full_recomputes(&self) -> u64 {
        self.full_recomputes
    }

    /// The node left the cluster (declared down, or removed).
    pub fn node_lost(&mut self, id: &NodeId) {
        let Some(&n) = self.model.by_id.get(id) else {
            return;
        };
        if !self.model.lose_node(n) {
            self.rebuild();
        }
    }

    /// A node joined, or an existing node's view changed (availability, labels,
    /// capacity, name). A changed view is recomputed in full.
    pub fn node_joined(&mut self, view: NodeView) {
        if !self.model.join_node(view) {
            self.rebuild();
        }
    }

    /// A service was created or its spec changed. Changes that leave placement's fields
    /// alone cost nothing; a change of replica count is repaired locally; other changes
    /// of mode, constraints or reservations are recomputed in full.
    pub fn service_changed(&mut self, spec: ServiceSpec) {
        if !self.model.change_service(spec) {
            self.rebuild();
        }
    }

    /// A service was removed.
    pub fn service_removed(&mut self, name: &str) {
        if self.model.services.contains_key(name) && !self.model.remove_service(name) {
            self.rebuild();
        }
    }

    /// Recomputes from the inputs the model holds; paused nodes keep what they hold now.
    fn rebuild(&mut self) {
        self.full_recomputes += 1;
        let views: Vec<NodeView> = self
            .model
            .nodes
            .iter()
            .filter(|n| n.live)
            .map(|n| n.view.clone())
            .collect();
        let specs: Vec<ServiceSpec> = self
            .model
            .services
            .values()
            .map(|s| s.spec.clone())
            .collect();
        let pins = self.model.paused_assignments();
        self.model = Model::build(&views, &specs, &pins, &self.config);
    }
}

impl Model {
    /// What paused nodes hold now, as pins for a rebuild.
    fn paused_assignments(&self) -> Vec<(SlotId, NodeId)> {
        let paused =
            |n: u32| n != NONE && self.nodes[n as usize].view.availability == Availability::Pause;
        let mut pins = Vec::new();
        for svc in self.services.values() {
            for (i, &s) in svc.slots.iter().enumerate() {
                let owner = self.slots[s as usize].owner;
                if paused(owner) {
                    let id = self.nodes[owner as usize].view.id.clone();
                    pins.push((SlotId::replica(&svc.spec.name, i as u32 + 1), id));
                }
            }
            for g in svc.global.iter().filter(|g| g.placed && paused(g.node)) {
                let id = self.nodes[g.node as usize].view.id.clone();
                pins.push((SlotId::global(&svc.spec.name, id.clone()), id));
            }
        }
        pins
    }

    /// Repairs the matching after a structural change, in two phases (see the module
    /// doc): first everything that only takes capacity away or adds proposers — bounds
    /// that shrink, `queue` (slots without a node, with the key of the node they left) —
    /// by deferred acceptance; then everything that only adds room — slots in `gone`
    /// dropped, bounds that grow, the `joined` node — by pulls. `slots` is the number of
    /// matchable slots once `gone` is dropped. False: rebuild instead.
    fn rebalance(
        &mut self,
        mut queue: Vec<Proposal>,
        gone: Vec<u32>,
        joined: Option<u32>,
        slots: u32,
    ) -> bool {
        let new = self.caps_for(slots);
        let changed = new.iter().zip(&self.caps).filter(|(a, b)| a != b).count();
        if self.resource_bound || changed > 64 + self.nodes.len() / 8 {
            return false;
        }
        let old = std::mem::take(&mut self.caps);
        self.caps = old.iter().zip(&new).map(|(&o, &n)| o.min(n)).collect();
        for n in (0..new.len() as u32).filter(|&n| new[n as usize] < old[n as usize]) {
            while self.nodes[n as usize].held.len() > self.caps[n as usize] as usize {
                let (worst, key) = self.worst_held(n).expect("holds more than its bound");
                self.unassign(worst);
                queue.push((worst, Some((key.1, self.nodes[n as usize].hash)), false));
            }
        }
        let mut touched = Vec::new();
        self.propose(queue, &mut touched);
        let mut work = self.drop_slots(&gone);
        work.extend((0..new.len() as u32).filter(|&n| new[n as usize] > old[n as usize]));
        self.caps = new;
        if let Some(n) = joined {
            self.intake(n, &mut touched);
        }
        self.fill(work, &mut touched);
        self.all_fit(&touched)
    }

    /// Removes node `n`; true if the matching was repaired, false if it must be rebuilt.
    fn lose_node(&mut self, n: u32) -> bool {
        let (was_active, hash) = (
            self.nodes[n as usize].is_active(),
            self.nodes[n as usize].hash,
        );
        let pinned: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&s| {
                let s = &self.slots[s as usize];
                s.live && s.pinned && s.owner == n
            })
            .collect();
        for g in &mut self.groups {
            if let Some(i) = g.members.iter().position(|&m| m == n) {
                g.members.swap_remove(i);
                g.hashes.swap_remove(i);
            }
            g.is_member[n as usize] = false;
        }
        for svc in self.services.values_mut() {
            svc.global.retain(|g| g.node != n);
            svc.global_pins.retain(|&p| p != n);
        }
        let held = std::mem::take(&mut self.nodes[n as usize].held);
        let mut queue = Vec::with_capacity(held.len() + pinned.len());
        for s in held {
            let slot = &mut self.slots[s as usize];
            slot.owner = NONE;
            queue.push((s, Some((slot.score, hash)), slot.settled));
        }
        for s in pinned {
            let slot = &mut self.slots[s as usize];
            (slot.owner, slot.pinned) = (NONE, false);
            self.matchable += 1;
            queue.push((s, None, true));
        }
        if was_active {
            self.active -= 1;
            self.unrank_node(n);
        }
        let node = &mut self.nodes[n as usize];
        node.live = false;
        self.by_id.remove(&node.view.id);
        self.free_nodes.push(n);
        self.rebalance(queue, Vec::new(), None, self.matchable)
    }

    /// Adds or updates a node; true if the matching was repaired.
    fn join_node(&mut self, view: NodeView) -> bool {
        if let Some(&n) = self.by_id.get(&view.id) {
            let same = self.nodes[n as usize].view == view;
            self.nodes[n as usize].view = view;
            return same;
        }
        let active = view.availability == Availability::Active;
        let n = self.insert_node(view);
        if !active {
            return true;
        }
        self.add_globals_on(n);
        self.all_fit(&[n]) && self.rebalance(Vec::new(), Vec::new(), Some(n), self.matchable)
    }

    /// Creates or changes a service; true if the matching was repaired.
    fn change_service(&mut self, spec: ServiceSpec) -> bool {
        let Some(old) = self.services.get_mut(&spec.name) else {
            return self.add_service(spec);
        };
        if old.spec.same_placement(&spec) {
            old.spec = spec;
            return true;
        }
        let only_scaled = matches!(
            (old.spec.mode, spec.mode),
            (Mode::Replicated { .. }, Mode::Replicated { .. })
        ) && old.spec.constraints == spec.constraints
            && old.spec.reservations == spec.reservations;
        if !only_scaled {
            old.spec = spec;
            return false;
        }
        self.scale(spec)
    }

    fn add_service(&mut self, spec: ServiceSpec) -> bool {
        let name = spec.name.clone();
        self.insert_service(spec);
        let svc = &self.services[&name];
        if svc.spec.mode != Mode::Global {
            let queue = svc.slots.iter().map(|&s| (s, None, true)).collect();
            return self.rebalance(queue, Vec::new(), None, self.matchable);
        }
        let members = self.groups[svc.group as usize].members.clone();
        let need = svc.spec.reservations;
        for &n in &members {
            let node = &mut self.nodes[n as usize];
            node.used = node.used.plus(&need);
        }
        let svc = self.services.get_mut(&name).expect("just inserted");
        svc.global = members
            .iter()
            .map(|&node| super::matching::GlobalCell { node, placed: true })
            .collect();
        !self.resource_bound && self.all_fit(&members)
    }

    /// Changes a replicated service's replica count; true if repaired.
    fn scale(&mut self, spec: ServiceSpec) -> bool {
        let svc = &self.services[&spec.name];
        let (old, new) = (svc.slots.len() as u32, spec.replicas());
        let (group, need, name) = (svc.group, spec.reservations, spec.name.clone());
        let mut queue = Vec::new();
        for index in old + 1..=new {
            queue.push((self.new_slot(&name, index, group, need), None, true));
        }
        let svc = self.services.get_mut(&name).expect("service exists");
        let gone = svc.slots.split_off((new as usize).min(svc.slots.len()));
        svc.slots.extend(queue.iter().map(|&(s, _, _)| s));
        svc.spec = spec;
        let gone_matchable = gone
            .iter()
            .filter(|&&s| !self.slots[s as usize].pinned)
            .count() as u32;
        self.rebalance(queue, gone, None, self.matchable - gone_matchable)
    }

    /// Removes replicated slots; returns the nodes they leave, to be filled.
    fn drop_slots(&mut self, gone: &[u32]) -> Vec<u32> {
        let mut work = Vec::new();
        for &s in gone {
            let slot = self.slots[s as usize];
            if slot.owner != NONE {
                self.unassign(s);
                if !slot.pinned {
                    work.push(slot.owner);
                }
            }
            if !slot.pinned {
                self.matchable -= 1;
            }
            self.slots[s as usize].live = false;
            self.slots[s as usize].pinned = false;
            self.free_slots.push(s);
        }
        work
    }

    /// Removes a service; true if the matching was repaired.
    fn remove_service(&mut self, name: &str) -> bool {
        let Some(svc) = self.services.remove(name) else {
            return true;
        };
        for g in svc.global.iter().filter(|g| g.placed) {
            let node = &mut self.nodes[g.node as usize];
            node.used = node.used.minus(&svc.spec.reservations);
        }
        let gone_matchable = svc
            .slots
            .iter()
            .filter(|&&s| !self.slots[s as usize].pinned)
            .count() as u32;
        self.rebalance(Vec::new(), svc.slots, None, self.matchable - gone_matchable)
    }
}
