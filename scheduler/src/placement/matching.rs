//! The state placement computes over — nodes, constraint groups, services and slots — and
//! the computation: pinned and global slots first, then the greedy matching of replicated
//! slots to nodes, in a spread pass and a fill pass (see the module doc of [`super`]).

use std::collections::{BTreeMap, BinaryHeap, HashMap};

use super::PlacementConfig;
use super::score::{Pick, Picks, node_hash, slot_hash, top_all, top_below};
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
    /// Reservations of every slot on it: global, pinned and matched.
    pub(super) used: Resources,
    /// Matched replicated slots (the ones the load bound counts).
    pub(super) load: u32,
}

impl Node {
    pub(super) fn is_active(&self) -> bool {
        self.view.availability == Availability::Active
    }

    /// Whether `need` fits beside what the node already has.
    pub(super) fn fits(&self, need: &Resources) -> bool {
        let room = self.view.capacity.minus(&self.used);
        need.fits(&room, &self.view.capacity)
    }
}

/// The active nodes that meet one set of constraints; services with equal constraints
/// share a group, so the scan over its members serves them all.
#[derive(Clone, Debug)]
pub(super) struct Group {
    pub(super) constraints: Vec<Constraint>,
    pub(super) members: Vec<u32>,
    /// `hashes[i]` is the hash of `members[i]`, contiguous for the scan.
    pub(super) hashes: Vec<u64>,
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
    /// The service's number, in name order (an index into `Model::quotas`).
    pub(super) service: u32,
    pub(super) need: Resources,
    pub(super) owner: u32,
    /// Kept by a paused node; outside the matching and the load bound.
    pub(super) pinned: bool,
    /// 1 for a slot of a service with constraints: it is matched before any slot without,
    /// which has more places to go (else, at a node's load bound, an unconstrained slot
    /// that ranks higher there could leave it pending).
    pub(super) priority: u64,
}

/// The two passes of one priority, in the order they run (a higher pass runs first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Pass {
    /// Up to the service's cap per node (`replicas_max_per_node`, or none).
    Fill = 0,
    /// At most one replica of a service per node.
    Spread = 1,
}

/// A slot's place in the matching: the candidates of its last scan, the one it is at,
/// and the pass it is in.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    slot: u32,
    picks: Picks,
    at: u8,
    pass: Pass,
}

/// Replicas of each service per node so far, keyed `(service << 32) | node`.
#[derive(Default)]
struct Held(HashMap<u64, u32>);

impl Held {
    fn key(service: u32, node: u32) -> u64 {
        (u64::from(service) << 32) | u64::from(node)
    }

    fn count(&self, service: u32, node: u32) -> u32 {
        self.0.get(&Self::key(service, node)).copied().unwrap_or(0)
    }

    fn add(&mut self, service: u32, node: u32) {
        *self.0.entry(Self::key(service, node)).or_insert(0) += 1;
    }
}

/// Everything placement knows and has decided.
#[derive(Clone, Debug)]
pub(super) struct Model {
    pub(super) load_factor_milli: u64,
    pub(super) nodes: Vec<Node>,
    pub(super) by_id: BTreeMap<NodeId, u32>,
    pub(super) groups: Vec<Group>,
    pub(super) group_ids: BTreeMap<Vec<Constraint>, u32>,
    pub(super) services: BTreeMap<String, Service>,
    pub(super) slots: Vec<Slot>,
    /// The most replicas per node of each service, by service number (`u32::MAX`: none).
    pub(super) quotas: Vec<u32>,
    /// Active nodes.
    pub(super) active: u32,
    /// Unpinned replicated slots.
    pub(super) matchable: u32,
    /// Each node's load bound, by node index (0 when not active); see `bound.rs`.
    pub(super) caps: Vec<u32>,
    /// Active nodes in bound-ranking order: (seat key, node hash, node index).
    pub(super) ranked: Vec<(u64, u64, u32)>,
}

impl Model {
    fn empty(config: &PlacementConfig) -> Self {
        Self {
            load_factor_milli: config.load_factor_milli(),
            nodes: Vec::new(),
            by_id: BTreeMap::new(),
            groups: Vec::new(),
            group_ids: BTreeMap::new(),
            services: BTreeMap::new(),
            slots: Vec::new(),
            quotas: Vec::new(),
            active: 0,
            matchable: 0,
            caps: Vec::new(),
            ranked: Vec::new(),
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

    /// Adds a node to the tables; groups are made after every node is in.
    fn insert_node(&mut self, view: NodeView) {
        let node = Node {
            hash: node_hash(&view.id),
            view,
            used: Resources::default(),
            load: 0,
        };
        let idx = self.nodes.len() as u32;
        let active = node.is_active();
        self.by_id.insert(node.view.id.clone(), idx);
        self.nodes.push(node);
        self.caps.push(0);
        if active {
            self.active += 1;
            self.rank_node(idx);
        }
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
        };
        for (i, n) in self.nodes.iter().enumerate() {
            if n.is_active() && key.iter().all(|c| c.matches(&n.view)) {
                group.members.push(i as u32);
                group.hashes.push(n.hash);
            }
        }
        let g = self.groups.len() as u32;
        self.groups.push(group);
        self.group_ids.insert(key, g);
        g
    }

    /// Adds a service and its (unassigned) replicated slots.
    fn insert_service(&mut self, spec: ServiceSpec) {
        let group = self.group_for(&spec.constraints);
        let number = self.quotas.len() as u32;
        self.quotas.push(match spec.replicas_max_per_node {
            0 => u32::MAX,
            max => max,
        });
        let mut slots = Vec::new();
        if let Mode::Replicated { replicas } = spec.mode {
            let priority = u64::from(!self.groups[group as usize].constraints.is_empty());
            slots.reserve(replicas as usize);
            for index in 1..=replicas {
                slots.push(self.slots.len() as u32);
                self.slots.push(Slot {
                    hash: slot_hash(&spec.name, index),
                    group,
                    service: number,
                    need: spec.reservations,
                    owner: NONE,
                    pinned: false,
                    priority,
                });
            }
            self.matchable += replicas;
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
                        self.matchable -= 1;
                        let node = &mut self.nodes[n as usize];
                        node.used = node.used.plus(&s.need);
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

    /// Places the global slots, then matches the replicated ones.
    fn solve(&mut self) {
        self.place_globals();
        self.caps = self.caps_for(self.matchable);
        self.match_greedy();
    }

    fn place_globals(&mut self) {
        for svc in self.services.values_mut() {
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
                }
                svc.global.push(GlobalCell { node: n, placed });
            }
        }
    }

    /// Assigns `slot` to `node`, which has room.
    fn assign(&mut self, slot: u32, node: u32) {
        let s = &mut self.slots[slot as usize];
        debug_assert_eq!(s.owner, NONE);
        s.owner = node;
        let n = &mut self.nodes[node as usize];
        n.used = n.used.plus(&s.need);
        n.load += 1;
    }

    /// Every unpinned slot's best `TOP` nodes, four slots of one group per scan.
    fn first_picks(&self) -> Vec<Cursor> {
        let todo: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| !self.slots[i as usize].pinned)
            .collect();
        let cursor = |slot: u32, picks: Picks| Cursor {
            slot,
            picks,
            at: 0,
            pass: Pass::Spread,
        };
        let mut cursors = Vec::with_capacity(todo.len());
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
                cursors.extend(rest[..4].iter().zip(found).map(|(&s, p)| cursor(s, p)));
                4
            } else {
                let [found] = top_all([hash(0)], hashes);
                cursors.push(cursor(rest[0], found));
                1
            };
            rest = &rest[step..];
        }
        cursors
    }

    /// How many replicas of `service` a node may hold in `pass`.
    fn limit(&self, service: u32, pass: Pass) -> u32 {
        let quota = self.quotas[service as usize];
        match pass {
            Pass::Spread => quota.min(1),
            Pass::Fill => quota,
        }
    }

    /// The greedy matching: every (slot, node) pair in descending rank — priority, then
    /// pass (spread before fill), then score — a slot taking the node when the node is
    /// under its load bound, holds fewer of the service's replicas than the pass allows,
    /// and has room for the reservation. A heap holds each unassigned slot's best untried
    /// node; a slot's best `TOP` nodes come from one scan, and a rescan (skipping nodes
    /// at the bound or at the pass's limit, which never reopen) finds the next ones. A slot
    /// that the spread pass cannot place starts the fill pass from its top node.
    fn match_greedy(&mut self) {
        let mut cursors = self.first_picks();
        let mut heap = BinaryHeap::with_capacity(cursors.len());
        for (entry, c) in cursors.iter().enumerate() {
            if let Some(best) = c.picks.as_slice().first() {
                let s = &self.slots[c.slot as usize];
                heap.push((
                    s.priority,
                    c.pass,
                    best.score,
                    s.hash,
                    best.hash,
                    entry as u32,
                ));
            }
        }
        let mut full: Vec<bool> = self.caps.iter().map(|&c| c == 0).collect();
        let mut held = Held::default();
        while let Some((_, _, _, _, _, entry)) = heap.pop() {
            let c = cursors[entry as usize];
            let s = self.slots[c.slot as usize];
            let node =
                self.groups[s.group as usize].members[c.picks.best[usize::from(c.at)].pos as usize];
            if !full[node as usize]
                && held.count(s.service, node) < self.limit(s.service, c.pass)
                && self.nodes[node as usize].fits(&s.need)
            {
                self.assign(c.slot, node);
                held.add(s.service, node);
                full[node as usize] = self.nodes[node as usize].load >= self.caps[node as usize];
                continue;
            }
            let next = self.advance(&mut cursors[entry as usize], &full, &held);
            if let Some((pick, pass)) = next {
                heap.push((s.priority, pass, pick.score, s.hash, pick.hash, entry));
            }
        }
    }

    /// Moves a refused slot's cursor to its next candidate: the next of its picks, else a
    /// rescan below the last one, else (from the spread pass) the fill pass from the top;
    /// `None` when nothing is left (the slot stays pending).
    fn advance(&self, c: &mut Cursor, full: &[bool], held: &Held) -> Option<(Pick, Pass)> {
        let s = &self.slots[c.slot as usize];
        let group = &self.groups[s.group as usize];
        let at = usize::from(c.at);
        if at + 1 < usize::from(c.picks.len) {
            c.at += 1;
            return Some((c.picks.best[at + 1], c.pass));
        }
        let limit = self.limit(s.service, c.pass);
        let skip = |i: usize| {
            let node = group.members[i];
            full[node as usize] || held.count(s.service, node) >= limit
        };
        if usize::from(c.picks.len) == c.picks.best.len() {
            let ceiling = c.picks.best[at].key();
            c.picks = top_below(s.hash, &group.hashes, Some(ceiling), skip);
            c.at = 0;
            if let Some(&first) = c.picks.as_slice().first() {
                return Some((first, c.pass));
            }
        }
        if c.pass == Pass::Spread && self.limit(s.service, Pass::Fill) > 1 {
            let fill = self.limit(s.service, Pass::Fill);
            c.pass = Pass::Fill;
            c.picks = top_below(s.hash, &group.hashes, None, |i| {
                let node = group.members[i];
                full[node as usize] || held.count(s.service, node) >= fill
            });
            c.at = 0;
            return c.picks.as_slice().first().map(|&first| (first, Pass::Fill));
        }
        None
    }
}
