//! The healing model: every host runs the real scheduler's `place` over the members its
//! own membership core counts as active, and starts the slots it owns.
//!
//! Placement is a pure function, so the result for one set of active hosts is computed
//! once and shared by every host that sees that set (a cache, not a second copy of the
//! logic). A set not seen before is reached from the nearest cached one by the
//! scheduler's incremental [`Placer`] (hosts lost and joined), whose result equals a full
//! `place` over the same hosts by its law; far from every cached set, `place` runs in full.

use std::collections::BTreeMap;
use std::rc::Rc;

use knit_scheduler::placement::Assignment;
use knit_scheduler::{
    NodeView, Placement, PlacementConfig, Placer, Resources, ServiceSpec, SlotId, place,
};

use crate::scenario::HostView;

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

fn contains(set: &HostSet, host: usize) -> bool {
    set[host / 64] & (1 << (host % 64)) != 0
}

/// The number of hosts in one set and not the other.
fn distance(a: &HostSet, b: &HostSet) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
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
    hosts: Vec<HostView>,
    config: PlacementConfig,
    cache: BTreeMap<HostSet, Rc<Computed>>,
    /// Insertion order of the cache, oldest first, to bound it.
    cache_order: Vec<HostSet>,
    /// Incremental placers of recent sets, newest last, to start repairs from.
    placers: Vec<(HostSet, Placer)>,
    /// Placements computed (cache misses), in full or by repair.
    pub computed: u64,
}

/// Placements kept, by host set.
const CACHE_MAX: usize = 64;
/// Placers kept to repair from (each holds a full matching).
const PLACERS_MAX: usize = 4;
/// Past this many hosts of difference, a repair is no cheaper than a full placement.
const REPAIR_MAX: u32 = 32;

impl Healing {
    /// The slot table for `services` on `hosts` hosts of `capacity`, without labels.
    pub fn new(services: Vec<ServiceSpec>, hosts: usize, capacity: Resources) -> Self {
        let view = HostView {
            capacity,
            labels: BTreeMap::new(),
        };
        Self::with_hosts(services, vec![view; hosts])
    }

    /// The slot table for `services` on hosts as `hosts` describes them, by index.
    pub fn with_hosts(services: Vec<ServiceSpec>, hosts: Vec<HostView>) -> Self {
        let names: Vec<knit_scheduler::NodeId> = (0..hosts.len())
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
            hosts,
            config: PlacementConfig::default(),
            cache: BTreeMap::new(),
            cache_order: Vec::new(),
            placers: Vec::new(),
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

    /// The host whose scheduler node id is `name`.
    pub fn index_of(&self, name: &knit_scheduler::NodeId) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    /// The index of `slot` in [`Healing::slots`].
    pub fn index_of_slot(&self, slot: &SlotId) -> Option<u32> {
        self.index.get(slot).copied()
    }

    /// The slot indices of `service`.
    pub fn slots_of_service<'a>(&'a self, service: &'a str) -> impl Iterator<Item = u32> + 'a {
        let from = SlotId::replica(service, 0);
        self.index
            .range(from..)
            .take_while(move |(slot, _)| slot.service == service)
            .map(|(_, &i)| i)
    }

    /// The services, as the scenario gives them.
    pub fn services(&self) -> &[ServiceSpec] {
        &self.services
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
        let placer = self.placer_for(set);
        let computed = Rc::new(self.index_placement(placer.placement()));
        if self.placers.len() >= PLACERS_MAX {
            self.placers.remove(0);
        }
        self.placers.push((set.clone(), placer));
        self.computed += 1;
        if self.cache_order.len() >= CACHE_MAX {
            let oldest = self.cache_order.remove(0);
            self.cache.remove(&oldest);
        }
        self.cache_order.push(set.clone());
        self.cache.insert(set.clone(), Rc::clone(&computed));
        computed
    }

    /// A placer over exactly the hosts in `set`: the nearest kept one, repaired, or new.
    fn placer_for(&self, set: &HostSet) -> Placer {
        let nearest = self
            .placers
            .iter()
            .rev()
            .map(|(base, placer)| (distance(base, set), base, placer))
            .min_by_key(|(d, _, _)| *d);
        let Some((d, base, placer)) = nearest.filter(|(d, _, _)| *d <= REPAIR_MAX) else {
            let nodes: Vec<NodeView> = (0..self.names.len())
                .filter(|&h| contains(set, h))
                .map(|h| self.view(h))
                .collect();
            return Placer::new(&nodes, &self.services, &self.config);
        };
        let mut placer = placer.clone();
        if d > 0 {
            for h in (0..self.names.len()).filter(|&h| contains(base, h) && !contains(set, h)) {
                placer.node_lost(&self.names[h]);
            }
            for h in (0..self.names.len()).filter(|&h| !contains(base, h) && contains(set, h)) {
                placer.node_joined(self.view(h));
            }
        }
        placer
    }

    fn view(&self, host: usize) -> NodeView {
        NodeView {
            capacity: self.hosts[host].capacity,
            labels: self.hosts[host].labels.clone(),
            ..NodeView::new(self.names[host].clone())
        }
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

#[cfg(test)]
mod tests {
    use knit_scheduler::spec::Mode;

    use super::*;

    fn healing(hosts: usize) -> Healing {
        let services = (0..6)
            .map(|i| {
                let mut spec = ServiceSpec::docker(&format!("svc{i}"), "sim");
                spec.mode = Mode::Replicated { replicas: 25 };
                spec
            })
            .collect();
        let capacity = Resources {
            cpu_millis: 8_000,
            memory_bytes: 32 << 30,
        };
        Healing::new(services, hosts, capacity)
    }

    fn set(hosts: usize, without: &[usize]) -> HostSet {
        let mut set = empty_set(hosts);
        (0..hosts)
            .filter(|h| !without.contains(h))
            .for_each(|h| insert(&mut set, h));
        set
    }

    #[test]
    fn a_repaired_placement_equals_a_full_one() {
        let mut repaired = healing(70);
        let all = repaired.placement_for(&set(70, &[]));
        // Reached from the full set by the incremental placer: hosts lost, then one back.
        for without in [&[3, 64][..], &[3, 64, 65, 9], &[3, 9]] {
            let target = set(70, without);
            let from_repair = repaired.placement_for(&target);
            let from_scratch = healing(70).placement_for(&target);
            assert_eq!(from_repair.placement, from_scratch.placement, "{without:?}");
            assert_eq!(from_repair.by_host, from_scratch.by_host);
            assert!(from_repair.by_host[3].is_empty());
        }
        assert_eq!(repaired.computed, 4);
        assert!(Rc::ptr_eq(&all, &repaired.placement_for(&set(70, &[]))));
    }
}
