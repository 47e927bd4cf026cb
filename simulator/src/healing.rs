//! The healing model: every host runs the real scheduler's `place` over the members its
//! own membership core counts as active, and starts the slots it owns.
//!
//! Placement is a pure function, so the result for one set of active hosts is computed
//! once and shared by every host that sees that set (a cache, not a second copy of the
//! logic).

use std::collections::BTreeMap;
use std::rc::Rc;

use knit_scheduler::placement::Assignment;
use knit_scheduler::{NodeView, Placement, PlacementConfig, Resources, ServiceSpec, SlotId, place};

/// The set of hosts a placement was computed over, as a bitset of host indices.
pub type HostSet = Vec<u64>;

/// A bitset with room for `hosts` hosts, all absent.
pub fn empty_set(hosts: usize) -> HostSet {
    vec![0; hosts.div_ceil(64)]
}

/// Adds `host` to `set`.
pub fn insert(set: &mut HostSet, host: usize) {
    set[host / 64] |= 1 << (host % 64);
}

/// One placement and, for each host, the slot indices it owns.
#[derive(Debug)]
pub struct Computed {
    /// The scheduler's answer.
    pub placement: Placement,
    /// Slot indices (into [`Healing::slots`]) owned by each host.
    pub by_host: Vec<Vec<u32>>,
    /// The owner of each slot, if assigned.
    pub owner: Vec<Option<u32>>,
}

/// The slot table and the placement cache.
#[derive(Debug)]
pub struct Healing {
    /// Every slot of every service, in the scheduler's order.
    pub slots: Vec<SlotId>,
    /// The reservation of each slot.
    pub reservation: Vec<Resources>,
    index: BTreeMap<SlotId, u32>,
    services: Vec<ServiceSpec>,
    /// Scheduler node ids (`h0007`), by host index; placement hashes them.
    names: Vec<knit_scheduler::NodeId>,
    by_name: BTreeMap<knit_scheduler::NodeId, u32>,
    capacity: Resources,
    config: PlacementConfig,
    cache: BTreeMap<HostSet, Rc<Computed>>,
    /// Insertion order of the cache, oldest first, to bound it.
    cache_order: Vec<HostSet>,
    /// Full placements computed (cache misses).
    pub computed: u64,
}

const CACHE_MAX: usize = 64;

impl Healing {
    /// The slot table for `services` on `hosts` hosts of `capacity`.
    pub fn new(services: Vec<ServiceSpec>, hosts: usize, capacity: Resources) -> Self {
        let names: Vec<knit_scheduler::NodeId> = (0..hosts)
            .map(|h| knit_scheduler::NodeId::new(host_name(h)).expect("non-empty name"))
            .collect();
        let by_name = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        let mut healing = Self {
            slots: Vec::new(),
            reservation: Vec::new(),
            index: BTreeMap::new(),
            services,
            names,
            by_name,
            capacity,
            config: PlacementConfig::default(),
            cache: BTreeMap::new(),
            cache_order: Vec::new(),
            computed: 0,
        };
        let placement = place(&[], &healing.services, &healing.config);
        let reservations: BTreeMap<&str, Resources> = healing
            .services
            .iter()
            .map(|s| (s.name.as_str(), s.reservations))
            .collect();
        for (i, (slot, _)) in placement.iter().enumerate() {
            healing
                .reservation
                .push(reservations[slot.service.as_str()]);
            healing
                .index
                .insert(slot.clone(), u32::try_from(i).unwrap_or(u32::MAX));
            healing.slots.push(slot);
        }
        healing
    }

    /// The scheduler's node id of host `h`.
    pub fn name(&self, host: usize) -> &knit_scheduler::NodeId {
        &self.names[host]
    }

    /// The placement over exactly the hosts in `set`, from the cache or computed now.
    pub fn placement_for(&mut self, set: &HostSet) -> Rc<Computed> {
        if let Some(hit) = self.cache.get(set) {
            return Rc::clone(hit);
        }
        let nodes: Vec<NodeView> = (0..self.names.len())
            .filter(|h| set[h / 64] & (1 << (h % 64)) != 0)
            .map(|h| NodeView {
                capacity: self.capacity,
                ..NodeView::new(self.names[h].clone())
            })
            .collect();
        let placement = place(&nodes, &self.services, &self.config);
        let computed = Rc::new(self.index_placement(placement));
        self.computed += 1;
        if self.cache_order.len() >= CACHE_MAX {
            let oldest = self.cache_order.remove(0);
            self.cache.remove(&oldest);
        }
        self.cache_order.push(set.clone());
        self.cache.insert(set.clone(), Rc::clone(&computed));
        computed
    }

    fn index_placement(&self, placement: Placement) -> Computed {
        let mut by_host = vec![Vec::new(); self.names.len()];
        let mut owner = vec![None; self.slots.len()];
        for (slot, assignment) in placement.iter() {
            let Assignment::Assigned(node) = assignment else {
                continue;
            };
            let (Some(&s), Some(&h)) = (self.index.get(&slot), self.by_name.get(node)) else {
                continue;
            };
            by_host[h as usize].push(s);
            owner[s as usize] = Some(h);
        }
        Computed {
            placement,
            by_host,
            owner,
        }
    }
}

/// The name a host has in placement and reports: `h0007`.
pub fn host_name(host: usize) -> String {
    format!("h{host:04}")
}
