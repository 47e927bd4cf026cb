//! The healing model: every host runs the real scheduler's `place` over the members its
//! own membership core counts as active, and starts the slots it owns.
//!
//! Placement is a pure function, so the result for one set of active hosts is computed
//! once and shared by every host that sees that set (a cache, not a second copy of the
//! logic). Each set is placed in full, by `place`, as the peer places, so a run does not
//! depend on the order its sets were met in.

use std::collections::BTreeMap;
use std::rc::Rc;

use knit_scheduler::placement::Assignment;
use knit_scheduler::{NodeView, Placement, PlacementConfig, Resources, ServiceSpec, SlotId, place};

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
    /// Placements by host set, each with the last time (a use count) it was asked for.
    cache: BTreeMap<HostSet, (Rc<Computed>, u64)>,
    /// Placements the cache keeps (see [`CACHE_CELLS_MAX`]).
    cache_max: usize,
    /// Uses of the cache so far, to stamp each use.
    uses: u64,
    /// Placements computed (cache misses), in full or by repair.
    pub computed: u64,
}

/// Slot cells the placement cache holds at most, all placements together (about 40 bytes
/// each with their indexes): at 250 hosts of 10 slots, 800 placements. Hosts whose views
/// differ by one member each (a join or a loss not yet seen everywhere) ask for hundreds of
/// sets in turn; a cache smaller than that computes each one again and again (4,332
/// placements for 386 sets in a 250-host run with room for 64).
const CACHE_CELLS_MAX: usize = 2_000_000;
/// Placements kept at least, and at most, whatever their size.
const CACHE_MIN: usize = 64;
const CACHE_MAX: usize = 4_096;

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
        Self::with_table(services.clone(), &services, hosts)
    }

    /// As [`Healing::with_hosts`], with the slots of `table` (the services at their most
    /// replicas over the run, see [`crate::scenario::Scenario::table_specs`]) and the
    /// placement of `services`.
    pub fn with_table(
        services: Vec<ServiceSpec>,
        table: &[ServiceSpec],
        hosts: Vec<HostView>,
    ) -> Self {
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
            cache_max: CACHE_MIN,
            uses: 0,
            computed: 0,
        };
        let placement = place(&[], table, &healing.config);
        let reservations: BTreeMap<&str, Resources> = table
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
        healing.cache_max =
            (CACHE_CELLS_MAX / healing.slots.len().max(1)).clamp(CACHE_MIN, CACHE_MAX);
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

    /// Replaces the spec of `spec.name` (a spec change): placements are computed anew.
    /// Its slots must be in the table (at most its replicas there).
    pub fn set_service(&mut self, spec: ServiceSpec) {
        if let Some(old) = self.services.iter_mut().find(|s| s.name == spec.name) {
            *old = spec;
            self.cache.clear();
        }
    }

    /// The services, as they are now.
    pub fn services(&self) -> &[ServiceSpec] {
        &self.services
    }

    /// The scheduler's node id of host `h`.
    pub fn name(&self, host: usize) -> &knit_scheduler::NodeId {
        &self.names[host]
    }

    /// The placement over exactly the hosts in `set`, from the cache or computed now.
    pub fn placement_for(&mut self, set: &HostSet) -> Rc<Computed> {
        self.uses += 1;
        if let Some((hit, used)) = self.cache.get_mut(set) {
            *used = self.uses;
            return Rc::clone(hit);
        }
        let nodes: Vec<NodeView> = (0..self.names.len())
            .filter(|&h| contains(set, h))
            .map(|h| self.view(h))
            .collect();
        let placement = place(&nodes, &self.services, &self.config);
        let computed = Rc::new(self.index_placement(placement));
        self.computed += 1;
        if self.cache.len() >= self.cache_max {
            // The one used least lately goes.
            let oldest = self
                .cache
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(set, _)| set.clone());
            if let Some(oldest) = oldest {
                self.cache.remove(&oldest);
            }
        }
        self.cache
            .insert(set.clone(), (Rc::clone(&computed), self.uses));
        computed
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
    fn a_placement_does_not_depend_on_the_sets_asked_before() {
        let sets = [&[][..], &[3, 64], &[3, 64, 65, 9], &[3, 9]];
        let mut forward = healing(70);
        let mut backward = healing(70);
        let ahead: Vec<_> = sets
            .iter()
            .map(|w| forward.placement_for(&set(70, w)))
            .collect();
        for (i, without) in sets.iter().enumerate().rev() {
            let back = backward.placement_for(&set(70, without));
            assert_eq!(ahead[i].placement, back.placement, "{without:?}");
            assert_eq!(ahead[i].by_host, back.by_host);
            for &h in *without {
                assert!(back.by_host[h].is_empty(), "h{h} is not in the set");
            }
        }
        assert_eq!(forward.computed, 4);
        assert!(Rc::ptr_eq(&ahead[0], &forward.placement_for(&set(70, &[]))));
    }

    #[test]
    fn the_cache_drops_the_set_used_least_lately() {
        let mut h = healing(70);
        h.cache_max = 8;
        let kept = h.placement_for(&set(70, &[]));
        for i in 0..20 {
            h.placement_for(&set(70, &[i]));
            // The full set is asked for between the others, as the hosts that agree do.
            assert!(Rc::ptr_eq(&kept, &h.placement_for(&set(70, &[]))));
        }
        assert_eq!(h.cache.len(), 8);
        assert_eq!(h.computed, 21);
    }
}
