//! The state placement computes over — nodes, constraint groups, services and slots — and
//! the full computation: pinned and global slots first, then the pair-greedy matching of
//! replicated slots to nodes.

use std::collections::{BTreeMap, BinaryHeap};

use super::PlacementConfig;
use super::score::{Picks, node_hash, score, slot_hash, top_all, top_below};
use crate::node::{Availability, NodeId, NodeView};
use crate::replica::{SlotId, SlotKey};
use crate::spec::{Constraint, Mode, Resources, ServiceSpec};

/// No node: an unassigned slot's owner.
pub(super) const NONE: u32 = u32::MAX;

/// A node and what placement has put on it.
#[derive(Clone, Debug)]
pub(super) struct Node {
    pub(super) view: NodeView,
    pub(super) hash: u64,
    /// False once removed; the index is then free for reuse.
    pub(super) live: bool,
    /// Reservations of every slot on it: global, pinned and matched.
    pub(super) used: Resources,
    /// Matched replicated slots (the ones the load bound counts).
    pub(super) held: Vec<u32>,
}

impl Node {
    pub(super) fn is_active(&self) -> bool {
        self.live && self.view.availability == Availability::Active
    }

    /// Whether `need` fits beside what the node already has.
    pub(super) fn fits(&self, need: &Resources) -> bool {
        let room = self.view.capacity.minus(&self.used);
        need.fits(&room, &self.view.capacity)
    }

    /// Whether everything on the node fits its capacity.
    pub(super) fn within_capacity(&self) -> bool {
        let cap = &self.view.capacity;
        (cap.cpu_millis == 0 || self.used.cpu_millis <= cap.cpu_millis)
            && (cap.memory_bytes == 0 || self.used.memory_bytes <= cap.memory_bytes)
    }
}

/// The active nodes that meet one set of constraints; services with equal constraints
/// share a group, so a join or a loss updates one list per distinct constraint set.
#[derive(Clone, Debug)]
pub(super) struct Group {
    pub(super) constraints: Vec<Constraint>,
    pub(super) members: Vec<u32>,
    /// `hashes[i]` is the hash of `members[i]`, contiguous for the scan.
    pub(super) hashes: Vec<u64>,
    /// By node index.
    pub(super) is_member: Vec<bool>,
}

/// A global service's slot on one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct GlobalCell {
    pub(super) node: u32,
    /// False: its reservation did not fit.
    pub(super) placed: bool,
}

/// A service and its slots.
#[derive(Clone, Debug)]
pub(super) struct Service {
    pub(super) spec: ServiceSpec,
    pub(super) group: u32,
    /// Replicated: `slots[i]` is replica `i + 1`.
    pub(super) slots: Vec<u32>,
    /// Global: one cell per member node, plus pinned paused nodes.
    pub(super) global: Vec<GlobalCell>,
    /// Global: paused nodes that keep their slot.
    pub(super) global_pins: Vec<u32>,
}

/// A replicated slot.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    pub(super) hash: u64,
    pub(super) group: u32,
    pub(super) need: Resources,
    pub(super) owner: u32,
    /// The score at `owner`.
    pub(super) score: u64,
    /// Kept by a paused node; outside the matching and the load bound.
    pub(super) pinned: bool,
    pub(super) live: bool,
    /// Known to be on its top-ranked node, so it prefers no other node and need not be
    /// looked at when a node has room. False is always safe.
    pub(super) settled: bool,
    /// In `Model::unsettled`.
    pub(super) listed: bool,
    /// 1 for a slot of a service with constraints: nodes prefer it to any slot without,
    /// which has more places to go (else, at a node's load bound, an unconstrained slot
    /// that ranks higher there could leave it pending).
    pub(super) priority: u64,
}

impl Slot {
    /// The node's preference key for this slot, when scored `score` there: priority first,
    /// then the pair's score. Slots rank nodes by score alone; the priority is the same at
    /// every node, so both sides still rank pairs in one global order (priority, score),
    /// and the greedy matching over that order is the unique stable one.
    pub(super) fn key_at(&self, score: u64) -> (u64, u64, u64) {
        (self.priority, score, self.hash)
    }
}

/// Everything placement knows and has decided.
#[derive(Clone, Debug)]
pub(super) struct Model {
    pub(super) load_factor_milli: u64,
    pub(super) nodes: Vec<Node>,
    pub(super) free_nodes: Vec<u32>,
    pub(super) by_id: BTreeMap<NodeId, u32>,
    pub(super) groups: Vec<Group>,
    pub(super) group_ids: BTreeMap<Vec<Constraint>, u32>,
    pub(super) services: BTreeMap<String, Service>,
    pub(super) slots: Vec<Slot>,
    pub(super) free_slots: Vec<u32>,
    /// Active nodes.
    pub(super) active: u32,
    /// Live, unpinned replicated slots.
    pub(super) matchable: u32,
    /// Each node's load bound, by node index (0 when not active); see `bound.rs`.
    pub(super) caps: Vec<u32>,
    /// Active nodes in bound-ranking order: (seat key, node hash, node index).
    pub(super) ranked: Vec<(u64, u64, u32)>,
    /// Some reservation did not fit somewhere: incremental repair would be unsound.
    pub(super) resource_bound: bool,
    /// Every matchable slot that is not settled (and maybe some stale entries): the only
    /// slots that can prefer another node to their own.
    pub(super) unsettled: Vec<u32>,
}

impl Model {
    fn empty(config: &PlacementConfig) -> Self {
        Self {
            load_factor_milli: config.load_factor_milli(),
            nodes: Vec::new(),
            free_nodes: Vec::new(),
            by_id: BTreeMap::new(),
            groups: Vec::new(),
            group_ids: BTreeMap::new(),
            services: BTreeMap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            active: 0,
            matchable: 0,
            caps: Vec::new(),
            ranked: Vec::new(),
            resource_bound: false,
            unsettled: Vec::new(),
        }
    }

    /// The full computation. Pins name slots that paused nodes keep.
    pub(super) fn build(
        nodes: &[NodeView],
        services: &[ServiceSpec],
        pins: &[(SlotId, NodeId)],
        config: &PlacementConfig,
    ) -> Self {
        let mut m = Self::empty(config);
        let mut views: Vec<&NodeView> = nodes.iter().collect();
        views.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| b.cmp(a)));
        views.dedup_by(|a, b| a.id == b.id);
        for view in views {
            m.insert_node(view.clone());
        }
        let mut specs: Vec<&ServiceSpec> = services.iter().collect();
        specs.sort_by(|a, b| {
            (a.name.as_str(), b.version, b.replicas()).cmp(&(
                b.name.as_str(),
                a.version,
                a.replicas(),
            ))
        });
        specs.dedup_by(|a, b| a.name == b.name);
        for spec in specs {
            m.insert_service(spec.clone());
        }
        m.apply_pins(pins);
        m.solve();
        m
    }

    /// Adds a node to the tables and to the groups it belongs to; places nothing.
    pub(super) fn insert_node(&mut self, view: NodeView) -> u32 {
        let node = Node {
            hash: node_hash(&view.id),
            view,
            live: true,
            used: Resources::default(),
            held: Vec::new(),
        };
        let active = node.is_active();
        let idx = match self.free_nodes.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                self.caps.push(0);
                for g in &mut self.groups {
                    g.is_member.push(false);
                }
                (self.nodes.len() - 1) as u32
            }
        };
        self.by_id
            .insert(self.nodes[idx as usize].view.id.clone(), idx);
        if active {
            self.active += 1;
            self.rank_node(idx);
            let node = &self.nodes[idx as usize];
            for g in &mut self.groups {
                if g.constraints.iter().all(|c| c.matches(&node.view)) {
                    g.members.push(idx);
                    g.hashes.push(node.hash);
                    g.is_member[idx as usize] = true;
                }
            }
        }
        idx
    }

    /// The group of nodes meeting `constraints`, made on first use.
    fn group_for(&mut self, constraints: &[Constraint]) -> u32 {
        let mut key = constraints.to_vec();
        key.sort();
        key.dedup();
        if let Some(&g) = self.group_ids.get(&key) {
            return g;
        }
        let mut group = Group {
            constraints: key.clone(),
            members: Vec::new(),
            hashes: Vec::new(),
            is_member: vec![false; self.nodes.len()],
        };
        for (i, n) in self.nodes.iter().enumerate() {
            if n.is_active() && key.iter().all(|c| c.matches(&n.view)) {
                group.members.push(i as u32);
                group.hashes.push(n.hash);
                group.is_member[i] = true;
            }
        }
        let g = self.groups.len() as u32;
        self.groups.push(group);
        self.group_ids.insert(key, g);
        g
    }

    /// Adds a replicated slot, unassigned.
    pub(super) fn new_slot(
        &mut self,
        service: &str,
        index: u32,
        group: u32,
        need: Resources,
    ) -> u32 {
        let slot = Slot {
            hash: slot_hash(service, index),
            group,
            need,
            owner: NONE,
            score: 0,
            pinned: false,
            live: true,
            settled: false,
            listed: false,
            priority: u64::from(!self.groups[group as usize].constraints.is_empty()),
        };
        self.matchable += 1;
        match self.free_slots.pop() {
            Some(i) => {
                // Keep `listed`: the index may still sit in `unsettled`.
                let listed = self.slots[i as usize].listed;
                self.slots[i as usize] = Slot { listed, ..slot };
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// Adds a service and its (unassigned) replicated slots.
    pub(super) fn insert_service(&mut self, spec: ServiceSpec) {
        let group = self.group_for(&spec.constraints);
        let mut slots = Vec::new();
        if let Mode::Replicated { replicas } = spec.mode {
            slots.reserve(replicas as usize);
            for index in 1..=replicas {
                slots.push(self.new_slot(&spec.name, index, group, spec.reservations));
            }
        }
        let service = Service {
            spec,
            group,
            slots,
            global: Vec::new(),
            global_pins: Vec::new(),
        };
        self.services.insert(service.spec.name.clone(), service);
    }

    /// Marks the slots paused nodes keep. A pin holds only if its slot exists and its node
    /// is paused and still meets the service's constraints.
    fn apply_pins(&mut self, pins: &[(SlotId, NodeId)]) {
        for (slot, node) in pins {
            let Some(&n) = self.by_id.get(node) else {
                continue;
            };
            let view = &self.nodes[n as usize].view;
            let Some(svc) = self.services.get_mut(&slot.service) else {
                continue;
            };
            if view.availability != Availability::Pause
                || !svc.spec.constraints.iter().all(|c| c.matches(view))
            {
                continue;
            }
            match (&slot.key, svc.spec.mode) {
                (SlotKey::Replica(i), Mode::Replicated { replicas })
                    if (1..=replicas).contains(i) =>
                {
                    let s = &mut self.slots[svc.slots[*i as usize - 1] as usize];
                    if !s.pinned {
                        s.pinned = true;
                        s.owner = n;
                        s.score = score(s.hash, self.nodes[n as usize].hash);
                        self.matchable -= 1;
                    }
                }
                (SlotKey::Node(id), Mode::Global)
                    if id == node && !svc.global_pins.contains(&n) =>
                {
                    svc.global_pins.push(n);
                }
                _ => {}
            }
        }
    }

    /// Places everything anew from the tables: pins, then global slots, then the
    /// pair-greedy matching.
    pub(super) fn solve(&mut self) {
        self.resource_bound = false;
        self.unsettled.clear();
        for n in &mut self.nodes {
            n.used = Resources::default();
            n.held.clear();
        }
        for s in &mut self.slots {
            (s.settled, s.listed) = (false, false);
        }
        for s in self.slots.iter_mut().filter(|s| s.live) {
            if s.pinned {
                let node = &mut self.nodes[s.owner as usize];
                node.used = node.used.plus(&s.need);
            } else {
                s.owner = NONE;
            }
        }
        self.place_globals();
        self.caps = self.caps_for(self.matchable);
        self.match_greedy();
    }

    fn place_globals(&mut self) {
        for svc in self.services.values_mut() {
            svc.global.clear();
            if svc.spec.mode != Mode::Global {
                continue;
            }
            let need = svc.spec.reservations;
            for &n in &svc.global_pins {
                let node = &mut self.nodes[n as usize];
                node.used = node.used.plus(&need);
                svc.global.push(GlobalCell {
                    node: n,
                    placed: true,
                });
            }
            for &n in &self.groups[svc.group as usize].members {
                let node = &mut self.nodes[n as usize];
                let placed = node.fits(&need);
                if placed {
                    node.used = node.used.plus(&need);
                } else {
                    self.resource_bound = true;
                }
                svc.global.push(GlobalCell { node: n, placed });
            }
        }
    }

    /// Assigns `slot` to `node` (which must have room), scored `score`.
    pub(super) fn assign(&mut self, slot: u32, node: u32, score: u64) {
        let s = &mut self.slots[slot as usize];
        debug_assert_eq!(s.owner, NONE);
        s.owner = node;
        s.score = score;
        let n = &mut self.nodes[node as usize];
        n.used = n.used.plus(&s.need);
        n.held.push(slot);
    }

    /// Every unpinned slot's best `TOP` nodes, four slots of one group per scan.
    fn first_picks(&self) -> Vec<(u32, Picks, u8)> {
        let todo: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| self.slots[i as usize].live && !self.slots[i as usize].pinned)
            .collect();
        let mut picks = Vec::with_capacity(todo.len());
        let mut rest = &todo[..];
        while !rest.is_empty() {
            let group = self.slots[rest[0] as usize].group;
            let hashes = &self.groups[group as usize].hashes;
            let hash = |i: usize| self.slots[rest[i] as usize].hash;
            let step = if rest.len() >= 4
                && rest[..4]
                    .iter()
                    .all(|&s| self.slots[s as usize].group == group)
            {
                let found = top_all([hash(0), hash(1), hash(2), hash(3)], hashes);
                picks.extend(rest[..4].iter().zip(found).map(|(&s, p)| (s, p, 0)));
                4
            } else {
                let [found] = top_all([hash(0)], hashes);
                picks.push((rest[0], found, 0));
                1
            };
            rest = &rest[step..];
        }
        picks
    }

    /// The pair-greedy matching: every (slot, node) pair in descending rank (priority, then
    /// score), a slot taking the node when the node is under the bound and the reservation
    /// fits. A heap holds each
    /// unassigned slot's best untried node; a slot's best `TOP` nodes come from one scan,
    /// and a rescan (skipping nodes at the bound, which never reopen) finds the next ones.
    fn match_greedy(&mut self) {
        let mut picks = self.first_picks();
        let mut heap = BinaryHeap::with_capacity(picks.len());
        for (entry, (slot, p, _)) in picks.iter().enumerate() {
            if let Some(best) = p.as_slice().first() {
                let s = &self.slots[*slot as usize];
                heap.push((s.priority, best.score, s.hash, best.hash, entry as u32));
            }
        }
        let mut full: Vec<bool> = self.caps.iter().map(|&c| c == 0).collect();
        let mut moved = vec![false; picks.len()];
        while let Some((_, score, _, _, entry)) = heap.pop() {
            let (slot, p, at) = picks[entry as usize];
            let s = self.slots[slot as usize];
            let group = &self.groups[s.group as usize];
            let pick = p.best[usize::from(at)];
            let node = group.members[pick.pos as usize];
            if full[node as usize] {
                // The bound binds here: try the slot's next node.
            } else if !self.nodes[node as usize].fits(&s.need) {
                self.resource_bound = true;
            } else {
                self.assign(slot, node, score);
                self.slots[slot as usize].settled = !moved[entry as usize];
                full[node as usize] =
                    self.nodes[node as usize].held.len() >= self.caps[node as usize] as usize;
                continue;
            }
            moved[entry as usize] = true;
            let next = if usize::from(at) + 1 < usize::from(p.len) {
                picks[entry as usize].2 = at + 1;
                Some(p.best[usize::from(at) + 1])
            } else if usize::from(p.len) == p.best.len() {
                let members = &group.members;
                let more = top_below(s.hash, &group.hashes, pick.key(), |i| {
                    full[members[i] as usize]
                });
                picks[entry as usize].1 = more;
                picks[entry as usize].2 = 0;
                more.as_slice().first().copied()
            } else {
                None
            };
            if let Some(n) = next {
                heap.push((s.priority, n.score, s.hash, n.hash, entry));
            }
        }
        for (slot, _, _) in picks {
            if !self.slots[slot as usize].settled {
                self.mark_unsettled(slot);
            }
        }
    }

    /// Notes that `slot` may prefer another node to its own (or has none).
    pub(super) fn mark_unsettled(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        s.settled = false;
        if !s.listed {
            s.listed = true;
            self.unsettled.push(slot);
        }
    }

    /// Records whether `slot`, just placed, is known to be on its top node.
    pub(super) fn set_settled(&mut self, slot: u32, settled: bool) {
        if settled {
            self.slots[slot as usize].settled = true;
        } else {
            self.mark_unsettled(slot);
        }
    }
}
