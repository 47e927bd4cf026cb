//! [`Placement`]: the answer, slot by slot, in a compact form that compares, serializes and
//! iterates in a fixed order.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::matching::{Model, NONE};
use crate::node::NodeId;
use crate::replica::{SlotId, SlotKey};
use crate::spec::Mode;

/// Why a slot has no node. Each reason says what would place it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingReason {
    /// No node is active.
    NoActiveNode,
    /// Active nodes exist, but none meets the service's constraints.
    NoNodeMatchesConstraints,
    /// Nodes meet the constraints, but none has room for the reservation.
    InsufficientResources {
        /// The reservation that did not fit.
        cpu_millis: u64,
        /// The reservation that did not fit.
        memory_bytes: u64,
    },
    /// Every node that meets the constraints already holds as many slots as its load
    /// bound allows (`bound` or, on some nodes while the bound steps, one less).
    LoadBound {
        /// The largest load bound in force.
        bound: u32,
    },
    /// Every node that meets the constraints and is under its load bound already runs
    /// `max` replicas of the service (`--replicas-max-per-node`).
    MaxReplicasPerNode {
        /// The service's most replicas per node.
        max: u32,
    },
}

impl fmt::Display for PendingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoActiveNode => {
                f.write_str("no active node; start a node or set one active (knit node update --availability active)")
            }
            Self::NoNodeMatchesConstraints => {
                f.write_str("no active node meets the constraints; label a node or relax the constraints")
            }
            Self::InsufficientResources {
                cpu_millis,
                memory_bytes,
            } => write!(
                f,
                "no node meeting the constraints has room for {cpu_millis}m cpu and {memory_bytes} bytes of memory; add capacity or lower the reservation"
            ),
            Self::LoadBound { bound } => write!(
                f,
                "every node meeting the constraints is at its load bound ({bound} slots or one less); add nodes or raise load_factor"
            ),
            Self::MaxReplicasPerNode { max } => write!(
                f,
                "max replicas per node ({max}) reached on every node meeting the constraints that has room; add nodes or raise --replicas-max-per-node"
            ),
        }
    }
}

/// Where a slot stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assignment<'a> {
    /// This node runs it.
    Assigned(&'a NodeId),
    /// No node does, for this reason.
    Pending(PendingReason),
}

/// One slot's cell: a position in the node table or a reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Cell {
    On(u32),
    Pending(PendingReason),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ServiceCells {
    name: String,
    /// Replicated: `replicas[i]` is slot `i + 1`.
    replicas: Vec<Cell>,
    /// Global: (node table position, cell), by node id.
    global: Vec<(u32, Cell)>,
}

/// Every slot of every service, assigned to a node or pending with a reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Every node given, sorted by id; cells point into it.
    nodes: Vec<NodeId>,
    /// By service name.
    services: Vec<ServiceCells>,
    /// Each node's load bound, aligned with `nodes`.
    bounds: Vec<u32>,
    load_bound: u32,
}

impl Placement {
    pub(super) fn from_model(m: &Model) -> Self {
        let mut order: Vec<(&NodeId, u32)> = m.by_id.iter().map(|(id, &i)| (id, i)).collect();
        order.sort_unstable();
        let mut position = vec![NONE; m.nodes.len()];
        for (pos, (_, i)) in order.iter().enumerate() {
            position[*i as usize] = pos as u32;
        }
        let services = m
            .services
            .values()
            .map(|svc| {
                let mut why = None;
                let mut reason = || *why.get_or_insert_with(|| m.pending_reason(svc));
                let replicas = svc
                    .slots
                    .iter()
                    .map(|&s| match m.slots[s as usize].owner {
                        NONE => Cell::Pending(reason()),
                        n => Cell::On(position[n as usize]),
                    })
                    .collect();
                let mut global: Vec<(u32, Cell)> = svc
                    .global
                    .iter()
                    .map(|g| {
                        let pos = position[g.node as usize];
                        let cell = if g.placed {
                            Cell::On(pos)
                        } else {
                            Cell::Pending(reason())
                        };
                        (pos, cell)
                    })
                    .collect();
                global.sort_unstable_by_key(|g| g.0);
                ServiceCells {
                    name: svc.spec.name.clone(),
                    replicas,
                    global,
                }
            })
            .collect();
        Self {
            bounds: order.iter().map(|&(_, i)| m.caps[i as usize]).collect(),
            nodes: order.into_iter().map(|(id, _)| id.clone()).collect(),
            services,
            load_bound: m.bound(),
        }
    }

    /// One placement of the services of `self` and of `other`, which must be distinct
    /// (a service in both keeps `self`'s cells): two placements of disjoint services over
    /// different node sets (a partitioned side places `available` services over the
    /// members it sees, and the others over every member it knows). A node's bound is the
    /// larger of its two.
    pub fn combine(self, other: Placement) -> Placement {
        let mut nodes: Vec<NodeId> = self.nodes.iter().chain(&other.nodes).cloned().collect();
        nodes.sort_unstable();
        nodes.dedup();
        let at = |id: &NodeId| nodes.binary_search(id).map_or(NONE, |p| p as u32);
        let remap = |from: &Placement, cells: &ServiceCells| {
            let cell = |c: Cell| match c {
                Cell::On(pos) => Cell::On(at(&from.nodes[pos as usize])),
                pending => pending,
            };
            let mut global: Vec<(u32, Cell)> = cells
                .global
                .iter()
                .map(|&(pos, c)| (at(&from.nodes[pos as usize]), cell(c)))
                .collect();
            global.sort_unstable_by_key(|g| g.0);
            ServiceCells {
                name: cells.name.clone(),
                replicas: cells.replicas.iter().map(|&c| cell(c)).collect(),
                global,
            }
        };
        let mut services: Vec<ServiceCells> =
            self.services.iter().map(|c| remap(&self, c)).collect();
        for cells in &other.services {
            if self.service(&cells.name).is_none() {
                services.push(remap(&other, cells));
            }
        }
        services.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let bounds = nodes
            .iter()
            .map(|id| self.bound_of(id).max(other.bound_of(id)))
            .collect();
        Placement {
            bounds,
            services,
            load_bound: self.load_bound.max(other.load_bound),
            nodes,
        }
    }

    fn resolve(&self, cell: Cell) -> Assignment<'_> {
        match cell {
            Cell::On(pos) => Assignment::Assigned(&self.nodes[pos as usize]),
            Cell::Pending(why) => Assignment::Pending(why),
        }
    }

    fn service(&self, name: &str) -> Option<&ServiceCells> {
        let i = self
            .services
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()?;
        Some(&self.services[i])
    }

    /// Every slot of `service` and where it stands, in placement order (as [`Placement::iter`]
    /// gives them), without walking the other services' slots.
    pub fn service_slots(
        &self,
        service: &str,
    ) -> impl Iterator<Item = (SlotId, Assignment<'_>)> + '_ {
        self.service(service)
            .into_iter()
            .flat_map(move |svc| self.slots_of(svc))
    }

    /// The slots of one service's cells, with where each stands.
    fn slots_of<'a>(
        &'a self,
        svc: &'a ServiceCells,
    ) -> impl Iterator<Item = (SlotId, Assignment<'a>)> + 'a {
        let replicas =
            svc.replicas.iter().enumerate().map(move |(i, &cell)| {
                (SlotId::replica(&svc.name, i as u32 + 1), self.resolve(cell))
            });
        let global = svc.global.iter().map(move |&(pos, cell)| {
            let node = self.nodes[pos as usize].clone();
            (SlotId::global(&svc.name, node), self.resolve(cell))
        });
        replicas.chain(global)
    }

    /// The slots assigned to `node`, in placement order, without building the others'.
    pub fn assigned_to<'a>(&'a self, node: &NodeId) -> impl Iterator<Item = SlotId> + 'a {
        let pos = self.nodes.binary_search(node).ok().map(|p| p as u32);
        let mine = move |cell: Cell| pos.is_some_and(|p| cell == Cell::On(p));
        self.services.iter().flat_map(move |svc| {
            let replicas = svc
                .replicas
                .iter()
                .enumerate()
                .filter(move |(_, cell)| mine(**cell))
                .map(move |(i, _)| SlotId::replica(&svc.name, i as u32 + 1));
            let global = svc
                .global
                .iter()
                .filter(move |(_, cell)| mine(*cell))
                .map(move |&(p, _)| SlotId::global(&svc.name, self.nodes[p as usize].clone()));
            replicas.chain(global)
        })
    }

    /// Where `slot` stands; `None` if no service asks for such a slot.
    pub fn get(&self, slot: &SlotId) -> Option<Assignment<'_>> {
        let svc = self.service(&slot.service)?;
        let cell = match &slot.key {
            SlotKey::Replica(i) => *svc.replicas.get((*i as usize).checked_sub(1)?)?,
            SlotKey::Node(id) => {
                let pos = self.nodes.binary_search(id).ok()? as u32;
                let i = svc.global.binary_search_by_key(&pos, |g| g.0).ok()?;
                svc.global[i].1
            }
        };
        Some(self.resolve(cell))
    }

    /// The node that runs `slot`, if it is assigned.
    pub fn owner(&self, slot: &SlotId) -> Option<&NodeId> {
        match self.get(slot)? {
            Assignment::Assigned(node) => Some(node),
            Assignment::Pending(_) => None,
        }
    }

    /// Every slot in order (service name, then slot), with where it stands.
    pub fn iter(&self) -> impl Iterator<Item = (SlotId, Assignment<'_>)> + '_ {
        self.services.iter().flat_map(move |svc| self.slots_of(svc))
    }

    /// The number of slots.
    pub fn len(&self) -> usize {
        self.services
            .iter()
            .map(|s| s.replicas.len() + s.global.len())
            .sum()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slots `node` runs, in order.
    pub fn slots_on(&self, node: &NodeId) -> Vec<SlotId> {
        self.iter()
            .filter(|(_, a)| *a == Assignment::Assigned(node))
            .map(|(slot, _)| slot)
            .collect()
    }

    /// The slots no node runs, with why.
    pub fn pending(&self) -> Vec<(SlotId, PendingReason)> {
        self.iter()
            .filter_map(|(slot, a)| match a {
                Assignment::Pending(why) => Some((slot, why)),
                Assignment::Assigned(_) => None,
            })
            .collect()
    }

    /// Replicated slots per node (the count the load bound limits), for every node that
    /// holds one; global slots are not counted.
    pub fn loads(&self) -> BTreeMap<NodeId, u32> {
        let mut loads = BTreeMap::new();
        for svc in &self.services {
            for cell in &svc.replicas {
                if let Cell::On(pos) = cell {
                    *loads.entry(self.nodes[*pos as usize].clone()).or_insert(0) += 1;
                }
            }
        }
        loads
    }

    /// The largest load bound of any node: at most `ceil(load_factor * S / N)`.
    pub fn load_bound(&self) -> u32 {
        self.load_bound
    }

    /// The load bound of `node` (0 for a node that is not active or not known): the
    /// largest bound, or one less on some nodes while the bound steps (see `bound.rs`).
    pub fn bound_of(&self, node: &NodeId) -> u32 {
        self.nodes
            .binary_search(node)
            .map_or(0, |pos| self.bounds[pos])
    }

    /// How many slots assigned in both `before` and `self` have a different node: the
    /// movement a change caused.
    pub fn moves_from(&self, before: &Placement) -> usize {
        self.iter()
            .filter(|(slot, a)| match (a, before.get(slot)) {
                (Assignment::Assigned(now), Some(Assignment::Assigned(then))) => *now != then,
                _ => false,
            })
            .count()
    }
}

impl Model {
    /// Why a slot of `svc` is pending, from the final state: a node under its load bound
    /// and under the service's cap that still did not take it has no room; failing that,
    /// one under its bound is at the cap; failing that, all are at their bounds.
    pub(super) fn pending_reason(&self, svc: &super::matching::Service) -> PendingReason {
        let group = &self.groups[svc.group as usize];
        let need = svc.spec.reservations;
        let max = svc.spec.replicas_max_per_node;
        let mut held: BTreeMap<u32, u32> = BTreeMap::new();
        if max > 0 {
            for &s in &svc.slots {
                let slot = &self.slots[s as usize];
                if slot.owner != NONE && !slot.pinned {
                    *held.entry(slot.owner).or_insert(0) += 1;
                }
            }
        }
        let under_bound = |n: &&u32| self.nodes[**n as usize].load < self.caps[**n as usize];
        let under_cap = |n: &&u32| max == 0 || held.get(*n).copied().unwrap_or(0) < max;
        if self.active == 0 {
            PendingReason::NoActiveNode
        } else if group.members.is_empty() {
            PendingReason::NoNodeMatchesConstraints
        } else if svc.spec.mode == Mode::Global
            || group
                .members
                .iter()
                .filter(under_bound)
                .any(|n| under_cap(&n))
        {
            PendingReason::InsufficientResources {
                cpu_millis: need.cpu_millis,
                memory_bytes: need.memory_bytes,
            }
        } else if group.members.iter().any(|n| under_bound(&n)) {
            PendingReason::MaxReplicasPerNode { max }
        } else {
            PendingReason::LoadBound {
                bound: self.bound(),
            }
        }
    }
}
