//! Placement laws: unit tests on tiny clusters, and proptest properties over random ones.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::node::NodeView;
use crate::placement::score::{node_hash, score, slot_hash};
use crate::replica::SlotKey;
use crate::spec::{Constraint, Mode, Resources};

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn active(name: &str) -> NodeView {
    NodeView::new(id(name))
}

fn replicated(name: &str, replicas: u32) -> ServiceSpec {
    let mut s = ServiceSpec::docker(name, "img");
    s.mode = Mode::Replicated { replicas };
    s
}

fn nodes(n: usize) -> Vec<NodeView> {
    (0..n).map(|i| active(&format!("node-{i:03}"))).collect()
}

fn services(count: usize, replicas: u32) -> Vec<ServiceSpec> {
    (0..count)
        .map(|i| replicated(&format!("svc-{i:03}"), replicas))
        .collect()
}

/// A load factor so large no bound binds.
fn unbounded() -> PlacementConfig {
    PlacementConfig {
        load_factor: 1_000.0,
    }
}

#[test]
fn slots_go_to_active_nodes_only() {
    let mut ns = vec![active("a"), active("b"), active("c")];
    ns[1].availability = Availability::Drain;
    ns[2].availability = Availability::Pause;
    let p = place(&ns, &[replicated("blog", 4)], &PlacementConfig::default());
    assert_eq!(
        p.loads().into_iter().collect::<Vec<_>>(),
        vec![(id("a"), 4)]
    );
    p.check(&ns, &[replicated("blog", 4)]).unwrap();
}

#[test]
fn a_paused_node_keeps_its_slots_only_when_asked() {
    let mut ns = nodes(3);
    let svc = [replicated("blog", 6)];
    let before = place(&ns, &svc, &PlacementConfig::default());
    let held = before.slots_on(&ns[0].id);
    assert!(!held.is_empty());
    ns[0].availability = Availability::Pause;
    let kept = place_keeping(&ns, &svc, &before, &PlacementConfig::default());
    assert_eq!(kept.slots_on(&ns[0].id), held);
    kept.check(&ns, &svc).unwrap();
    let dropped = place(&ns, &svc, &PlacementConfig::default());
    assert!(dropped.slots_on(&ns[0].id).is_empty());
}

#[test]
fn global_services_get_one_slot_per_eligible_node() {
    let mut ns = nodes(4);
    ns[0].labels.insert("zone".into(), "a".into());
    ns[1].labels.insert("zone".into(), "a".into());
    let mut g = ServiceSpec::docker("agent", "img");
    g.mode = Mode::Global;
    g.constraints = vec!["node.labels.zone==a".parse().unwrap()];
    let p = place(&ns, std::slice::from_ref(&g), &PlacementConfig::default());
    let slots: Vec<(SlotId, Option<&NodeId>)> =
        p.iter().map(|(s, _)| (s.clone(), p.owner(&s))).collect();
    assert_eq!(slots.len(), 2);
    for (slot, owner) in slots {
        let SlotKey::Node(n) = &slot.key else {
            panic!()
        };
        assert_eq!(owner, Some(n));
    }
}

#[test]
fn pending_slots_say_why() {
    let svc = replicated("blog", 2);
    let p = place(&[], std::slice::from_ref(&svc), &PlacementConfig::default());
    assert_eq!(p.pending().len(), 2);
    assert_eq!(p.pending()[0].1, PendingReason::NoActiveNode);
    assert!(p.pending()[0].1.to_string().contains("start a node"));

    let mut constrained = svc.clone();
    constrained.constraints = vec!["node.labels.gpu==yes".parse::<Constraint>().unwrap()];
    let p = place(
        &nodes(2),
        std::slice::from_ref(&constrained),
        &PlacementConfig::default(),
    );
    assert_eq!(p.pending()[0].1, PendingReason::NoNodeMatchesConstraints);

    let mut ns = nodes(2);
    for n in &mut ns {
        n.capacity = Resources {
            cpu_millis: 1_000,
            memory_bytes: 0,
        };
    }
    let mut heavy = svc.clone();
    heavy.reservations.cpu_millis = 600;
    let p = place(
        &ns,
        std::slice::from_ref(&heavy),
        &PlacementConfig::default(),
    );
    assert!(p.pending().is_empty(), "one per node fits");
    heavy.mode = Mode::Replicated { replicas: 3 };
    let p = place(
        &ns,
        std::slice::from_ref(&heavy),
        &PlacementConfig::default(),
    );
    let pending = p.pending();
    assert_eq!(pending.len(), 1);
    assert!(matches!(
        pending[0].1,
        PendingReason::InsufficientResources {
            cpu_millis: 600,
            ..
        }
    ));
    p.check(&ns, &[heavy]).unwrap();

    // 20 replicas that only node-000 takes, beside 30 that any node takes: node-000 fills
    // its bound (ceil(1.25 x 50 / 4) = 16) with constrained slots first, the rest wait.
    let mut zone = replicated("zoned", 20);
    zone.constraints = vec!["node.name==node-000".parse().unwrap()];
    let p = place(
        &nodes(4),
        &[zone, replicated("bulk", 30)],
        &PlacementConfig::default(),
    );
    let bound = p.load_bound();
    assert_eq!(bound, 16);
    let pending = p.pending();
    assert_eq!(pending.len(), 4, "{pending:?}");
    for (slot, why) in &pending {
        assert_eq!(slot.service, "zoned");
        assert_eq!(*why, PendingReason::LoadBound { bound });
    }
}

#[test]
fn constrained_slots_come_first_at_a_node() {
    // Before, bulk slots ranked high on node-000 took part of its bound and left zoned
    // replicas pending although bulk had room elsewhere.
    for seed in 0..20 {
        let mut zone = replicated(&format!("zoned{seed}"), 10);
        zone.constraints = vec!["node.name==node-000".parse().unwrap()];
        let services = [zone, replicated(&format!("bulk{seed}"), 30)];
        let p = place(&nodes(4), &services, &PlacementConfig::default());
        assert!(p.pending().is_empty(), "seed {seed}: {:?}", p.pending());
        p.check(&nodes(4), &services).unwrap();
    }
}

#[test]
fn loads_stay_within_the_bound() {
    let ns = nodes(100);
    let svc = services(100, 10);
    let p = place(&ns, &svc, &PlacementConfig::default());
    assert_eq!(p.load_bound(), 13);
    assert!(p.loads().values().all(|&l| l <= 13));
    assert!(p.pending().is_empty());
    p.check(&ns, &svc).unwrap();
}

#[test]
fn three_replicas_on_three_nodes_land_one_per_node() {
    // The load bound alone (ceil(1.25 x 3 / 3) = 2) let 7 services in 9 land 2-1-0.
    let ns = nodes(3);
    for i in 0..100 {
        let svc = [replicated(&format!("web-{i}"), 3)];
        let p = place(&ns, &svc, &PlacementConfig::default());
        let held: Vec<u32> = replicas_per_node(&p, &svc[0].name).into_values().collect();
        assert_eq!(held, vec![1, 1, 1], "web-{i}");
    }
    // More replicas than nodes: one each first, then the rest double up.
    let svc = [replicated("web", 4)];
    let p = place(&ns, &svc, &PlacementConfig::default());
    let mut held: Vec<u32> = replicas_per_node(&p, "web").into_values().collect();
    held.sort_unstable();
    assert_eq!(held, vec![1, 1, 2]);
}

#[test]
fn spread_gives_way_to_constraints_bounds_and_capacity() {
    // Only two nodes meet the constraint: three replicas there, 2-1.
    let mut ns = nodes(3);
    ns[0].labels.insert("zone".into(), "a".into());
    ns[1].labels.insert("zone".into(), "a".into());
    let mut zoned = replicated("zoned", 3);
    zoned.constraints = vec!["node.labels.zone==a".parse().unwrap()];
    let p = place(&ns, std::slice::from_ref(&zoned), &unbounded());
    assert!(p.pending().is_empty());
    assert_eq!(replicas_per_node(&p, "zoned").len(), 2);
    p.check(&ns, &[zoned]).unwrap();
    // A node without room for a second reservation: the replicas double up elsewhere.
    let mut ns = nodes(3);
    ns[2].capacity.cpu_millis = 1_000;
    let mut heavy = replicated("heavy", 3);
    heavy.reservations.cpu_millis = 800;
    let busy = {
        let mut g = ServiceSpec::docker("busy", "img");
        g.mode = Mode::Global;
        g.reservations.cpu_millis = 500;
        g
    };
    let services = [heavy, busy];
    let p = place(&ns, &services, &PlacementConfig::default());
    assert!(p.pending().is_empty(), "{:?}", p.pending());
    let held = replicas_per_node(&p, "heavy");
    assert_eq!(held.get(&ns[2].id), None, "no room on node-002");
    assert_eq!(held.values().sum::<u32>(), 3);
    assert_eq!(spread_holds(&p, &ns, &services), Ok(()));
}

#[test]
fn the_cap_leaves_the_rest_pending_and_says_why() {
    let ns = nodes(3);
    let mut db = replicated("db", 4);
    db.replicas_max_per_node = 1;
    let p = place(&ns, std::slice::from_ref(&db), &PlacementConfig::default());
    let pending = p.pending();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].1, PendingReason::MaxReplicasPerNode { max: 1 });
    assert!(
        pending[0]
            .1
            .to_string()
            .contains("max replicas per node (1)"),
        "{}",
        pending[0].1
    );
    assert_eq!(
        replicas_per_node(&p, "db")
            .into_values()
            .collect::<Vec<_>>(),
        vec![1, 1, 1]
    );
    p.check(&ns, std::slice::from_ref(&db)).unwrap();
    // A cap of 2: seven replicas, six placed 2-2-2 (the bound, ceil(1.25 x 7 / 3) = 3, is
    // not what stops the seventh).
    db.mode = Mode::Replicated { replicas: 7 };
    db.replicas_max_per_node = 2;
    let p = place(&ns, std::slice::from_ref(&db), &PlacementConfig::default());
    assert_eq!(p.load_bound(), 3);
    let pending = p.pending();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].1, PendingReason::MaxReplicasPerNode { max: 2 });
    assert_eq!(
        replicas_per_node(&p, "db")
            .into_values()
            .collect::<Vec<_>>(),
        vec![2, 2, 2]
    );
    // The check names a placement above the cap.
    db.replicas_max_per_node = 1;
    let e = p.check(&ns, &[db]).unwrap_err();
    assert!(e.contains("more than the 1 replicas per node"), "{e}");
}

#[test]
fn spread_binding_moves_a_few_more_within_the_service() {
    // 10 services of 10 replicas on 10 nodes: spread puts one replica of each service on
    // every node. Losing a node moves its 10 slots; the chains that follow stay within
    // their services and cost a few more moves, not a reshuffle.
    let ns = nodes(10);
    let svc = services(10, 10);
    let cfg = PlacementConfig::default();
    let before = place(&ns, &svc, &cfg);
    for spec in &svc {
        assert_eq!(replicas_per_node(&before, &spec.name).len(), 10);
    }
    let (mut lost, mut moved) = (0, 0);
    for gone in &ns {
        let fewer: Vec<NodeView> = ns.iter().filter(|n| n.id != gone.id).cloned().collect();
        let after = place(&fewer, &svc, &cfg);
        lost += before.slots_on(&gone.id).len();
        moved += after.moves_from(&before);
        assert_eq!(spread_holds(&after, &fewer, &svc), Ok(()));
    }
    assert!(
        moved >= lost && moved as f64 <= 2.5 * lost as f64,
        "{moved} vs {lost}"
    );
}

#[test]
fn movement_is_near_the_optimum_when_bounds_bind() {
    let ns = nodes(200);
    let svc = services(200, 10);
    let cfg = PlacementConfig::default();
    let before = place(&ns, &svc, &cfg);
    let lost = before.slots_on(&ns[3].id).len();
    let mut fewer = ns.clone();
    fewer.remove(3);
    let moved = place(&fewer, &svc, &cfg).moves_from(&before);
    assert!(
        moved >= lost && (moved as f64) <= 1.5 * lost as f64,
        "{moved} vs {lost}"
    );
    // Averaged over a few joins (one join's movement varies).
    let mut moved = 0;
    for i in 0..5 {
        let mut more = ns.clone();
        more.push(active(&format!("newcomer-{i}")));
        moved += place(&more, &svc, &cfg).moves_from(&before);
    }
    let optimum = 5.0 * 2_000.0 / 201.0;
    assert!(moved as f64 <= 1.4 * optimum, "{moved} vs {optimum}");
}

// ---- properties ----

fn node_strategy() -> impl Strategy<Value = NodeView> {
    (
        0..16u32,
        prop_oneof![6 => Just(Availability::Active), 1 => Just(Availability::Pause), 1 => Just(Availability::Drain)],
        prop::option::of(prop_oneof![Just("a"), Just("b")]),
        prop_oneof![3 => Just(0u64), 1 => Just(1_000u64), 1 => Just(4_000u64)],
        prop_oneof![3 => Just(0u64), 1 => Just(1u64 << 30)],
    )
        .prop_map(|(i, availability, zone, cpu, mem)| {
            let mut n = active(&format!("n{i:02}"));
            n.availability = availability;
            if let Some(z) = zone {
                n.labels.insert("zone".into(), z.into());
            }
            n.capacity = Resources {
                cpu_millis: cpu,
                memory_bytes: mem,
            };
            n
        })
}

fn service_strategy() -> impl Strategy<Value = ServiceSpec> {
    (
        0..8u32,
        prop_oneof![5 => (0..12u32).prop_map(|r| Mode::Replicated { replicas: r }), 1 => Just(Mode::Global)],
        prop_oneof![
            4 => Just(vec![]),
            1 => Just(vec!["node.labels.zone==a"]),
            1 => Just(vec!["node.labels.zone!=b"])
        ],
        prop_oneof![3 => Just(0u64), 1 => Just(300u64), 1 => Just(900u64)],
        prop_oneof![3 => Just(0u64), 1 => Just(300u64 << 20)],
        0..3u64,
        prop_oneof![4 => Just(0u32), 1 => Just(1u32), 1 => Just(2u32)],
    )
        .prop_map(|(i, mode, constraints, cpu, mem, version, max)| {
            let mut s = ServiceSpec::docker(&format!("s{i}"), "img");
            s.mode = mode;
            if mode != Mode::Global {
                s.replicas_max_per_node = max;
            }
            s.constraints = constraints.into_iter().map(|c| c.parse().unwrap()).collect();
            s.reservations = Resources {
                cpu_millis: cpu,
                memory_bytes: mem,
            };
            s.version = version;
            s
        })
}

fn config_strategy() -> impl Strategy<Value = PlacementConfig> {
    prop_oneof![Just(1.0), Just(1.25), Just(2.0)]
        .prop_map(|load_factor| PlacementConfig { load_factor })
}

/// Unique ids and names, as callers pass them.
fn dedup(nodes: Vec<NodeView>, services: Vec<ServiceSpec>) -> (Vec<NodeView>, Vec<ServiceSpec>) {
    let nodes: BTreeMap<NodeId, NodeView> = nodes.into_iter().map(|n| (n.id.clone(), n)).collect();
    let services: BTreeMap<String, ServiceSpec> =
        services.into_iter().map(|s| (s.name.clone(), s)).collect();
    (
        nodes.into_values().collect(),
        services.into_values().collect(),
    )
}

/// The active nodes that meet `spec`'s constraints.
fn eligible<'a>(nodes: &'a [NodeView], spec: &ServiceSpec) -> Vec<&'a NodeView> {
    nodes
        .iter()
        .filter(|n| {
            n.availability == Availability::Active && spec.constraints.iter().all(|c| c.matches(n))
        })
        .collect()
}

/// How many replicas of `service` each node holds.
fn replicas_per_node(p: &Placement, service: &str) -> BTreeMap<NodeId, u32> {
    let mut held = BTreeMap::new();
    for (_, a) in p.service_slots(service) {
        if let Assignment::Assigned(n) = a {
            *held.entry(n.clone()).or_insert(0) += 1;
        }
    }
    held
}

/// The pending reason is true of the final state: load-bound pending slots have every
/// eligible node at the bound; cap-pending ones have every eligible node at the cap or
/// at the bound, and some at the cap only; resource-pending ones have an eligible node
/// under both.
fn pending_reasons_hold(
    p: &Placement,
    nodes: &[NodeView],
    services: &[ServiceSpec],
) -> Result<(), String> {
    let loads = p.loads();
    for (slot, why) in p.pending() {
        let spec = services.iter().find(|s| s.name == slot.service).unwrap();
        let eligible = eligible(nodes, spec);
        let held = replicas_per_node(p, &spec.name);
        let at_bound = |n: &NodeView| loads.get(&n.id).copied().unwrap_or(0) == p.bound_of(&n.id);
        let at_cap = |n: &NodeView| {
            spec.replicas_max_per_node > 0
                && held.get(&n.id).copied().unwrap_or(0) >= spec.replicas_max_per_node
        };
        let ok = match why {
            PendingReason::NoActiveNode => {
                !nodes.iter().any(|n| n.availability == Availability::Active)
            }
            PendingReason::NoNodeMatchesConstraints => eligible.is_empty(),
            PendingReason::LoadBound { .. } => eligible.iter().all(|n| at_bound(n)),
            PendingReason::MaxReplicasPerNode { max } => {
                max == spec.replicas_max_per_node
                    && eligible.iter().all(|n| at_bound(n) || at_cap(n))
                    && eligible.iter().any(|n| !at_bound(n))
            }
            PendingReason::InsufficientResources { .. } => {
                spec.mode == Mode::Global || eligible.iter().any(|n| !at_bound(n) && !at_cap(n))
            }
        };
        if !ok {
            return Err(format!("{slot}: reason {why:?} does not hold"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_placement_obeys_the_laws(
        ns in prop::collection::vec(node_strategy(), 0..14),
        ss in prop::collection::vec(service_strategy(), 0..7),
        cfg in config_strategy(),
    ) {
        let (ns, ss) = dedup(ns, ss);
        let p = place(&ns, &ss, &cfg);
        prop_assert_eq!(p.check(&ns, &ss), Ok(()));
        prop_assert_eq!(pending_reasons_hold(&p, &ns, &ss), Ok(()));
        prop_assert_eq!(spread_holds(&p, &ns, &ss), Ok(()));
    }

    #[test]
    fn input_order_does_not_matter(
        ns in prop::collection::vec(node_strategy(), 0..14),
        ss in prop::collection::vec(service_strategy(), 0..7),
        cfg in config_strategy(),
        seed in any::<u64>(),
    ) {
        let (mut ns, mut ss) = dedup(ns, ss);
        let p = place(&ns, &ss, &cfg);
        let k = (seed as usize) % (ns.len().max(1));
        ns.rotate_left(k);
        ns.reverse();
        ss.reverse();
        prop_assert_eq!(place(&ns, &ss, &cfg), p);
    }

    // With spread, "no bound binds" is not enough for a loss to move only the lost
    // node's slots: two replicas of one service that rank one node first cannot both
    // have it, and the chain that follows a loss stays within that service. So the law is
    // checked service by service: strict where the service's slots rank distinct nodes
    // first (spread does not bind), and "nothing moves" for services without a slot on
    // the lost node (services interact only through bounds).
    #[test]
    fn without_binding_bounds_a_loss_moves_only_the_lost_slots(
        n in 2..30usize,
        count in 1..20usize,
        replicas in 1..10u32,
        lost in any::<prop::sample::Index>(),
    ) {
        let ns = nodes(n);
        let svc = services(count, replicas);
        let before = place(&ns, &svc, &unbounded());
        let gone = &ns[lost.index(n)].id;
        let mut fewer = ns.clone();
        fewer.retain(|v| &v.id != gone);
        let after = place(&fewer, &svc, &unbounded());
        for spec in &svc {
            let moved: Vec<SlotId> = after
                .service_slots(&spec.name)
                .filter(|(s, _)| before.owner(s) != after.owner(s))
                .map(|(s, _)| s)
                .collect();
            let lost_here: Vec<SlotId> = before
                .service_slots(&spec.name)
                .filter(|(_, a)| *a == Assignment::Assigned(gone))
                .map(|(s, _)| s)
                .collect();
            if lost_here.is_empty() {
                prop_assert!(moved.is_empty(), "{}: {:?}", spec.name, moved);
            } else if tops_distinct(spec, &fewer) {
                prop_assert_eq!(moved, lost_here);
            } else {
                // Spread binds: the lost slots move, and may bump replicas of the same
                // service from the nodes they fall back to.
                prop_assert!(lost_here.iter().all(|s| moved.contains(s)));
            }
        }
    }

    // As for a loss, checked service by service: a replica that moves to the new node can
    // free a node that another replica of its service was deflected from, and that one
    // returns (a move not to the new node) only when spread binds.
    #[test]
    fn without_binding_bounds_a_join_moves_slots_only_to_the_new_node(
        n in 1..30usize,
        count in 1..20usize,
        replicas in 1..10u32,
    ) {
        let ns = nodes(n);
        let svc = services(count, replicas);
        let before = place(&ns, &svc, &unbounded());
        let mut more = ns.clone();
        more.push(active("newcomer"));
        let after = place(&more, &svc, &unbounded());
        let newcomer = id("newcomer");
        for spec in &svc {
            let moved: Vec<SlotId> = after
                .service_slots(&spec.name)
                .filter(|(s, _)| before.owner(s) != after.owner(s))
                .map(|(s, _)| s)
                .collect();
            let joined = after
                .service_slots(&spec.name)
                .any(|(_, a)| a == Assignment::Assigned(&newcomer));
            if !joined {
                prop_assert!(moved.is_empty(), "{}: {:?}", spec.name, moved);
            } else if tops_distinct(spec, &ns) {
                for slot in &moved {
                    prop_assert_eq!(after.owner(slot), Some(&newcomer));
                }
            }
        }
    }

    #[test]
    fn replicas_spread_before_they_double(
        ns in prop::collection::vec(node_strategy(), 1..8),
        ss in prop::collection::vec(service_strategy(), 1..5),
        cfg in config_strategy(),
    ) {
        let (ns, ss) = dedup(ns, ss);
        let p = place(&ns, &ss, &cfg);
        prop_assert_eq!(spread_holds(&p, &ns, &ss), Ok(()));
    }

    #[test]
    fn no_node_holds_more_than_the_cap(
        ns in prop::collection::vec(node_strategy(), 1..8),
        ss in prop::collection::vec(service_strategy(), 1..5),
        max in 1..4u32,
        cfg in config_strategy(),
    ) {
        let (ns, mut ss) = dedup(ns, ss);
        for s in ss.iter_mut().filter(|s| s.mode != Mode::Global) {
            s.replicas_max_per_node = max;
        }
        let p = place(&ns, &ss, &cfg);
        for spec in &ss {
            let most = replicas_per_node(&p, &spec.name).into_values().max().unwrap_or(0);
            prop_assert!(spec.mode == Mode::Global || most <= max, "{}: {} on one node", spec.name, most);
        }
        prop_assert_eq!(p.check(&ns, &ss), Ok(()));
        prop_assert_eq!(spread_holds(&p, &ns, &ss), Ok(()));
        prop_assert_eq!(pending_reasons_hold(&p, &ns, &ss), Ok(()));
    }
}

/// Whether the slots of `spec` rank distinct nodes of `nodes` first, by the scores
/// placement uses: then spread does not bind for it.
fn tops_distinct(spec: &ServiceSpec, nodes: &[NodeView]) -> bool {
    let mut tops = std::collections::BTreeSet::new();
    (1..=spec.replicas()).all(|i| {
        let slot = slot_hash(&spec.name, i);
        nodes
            .iter()
            .map(|n| {
                let node = node_hash(&n.id);
                (score(slot, node), node)
            })
            .max()
            .is_some_and(|(_, node)| tops.insert(node))
    })
}

/// The spread law: no active node holds two replicas of a service while an active node
/// that meets its constraints, is under its load bound and has room for its reservation
/// holds none.
fn spread_holds(p: &Placement, nodes: &[NodeView], services: &[ServiceSpec]) -> Result<(), String> {
    let spec_of = |name: &str| services.iter().find(|s| s.name == name).unwrap();
    let loads = p.loads();
    let mut used: BTreeMap<&NodeId, Resources> = BTreeMap::new();
    for (slot, a) in p.iter() {
        if let Assignment::Assigned(n) = a {
            let u = used.entry(n).or_default();
            *u = u.plus(&spec_of(&slot.service).reservations);
        }
    }
    let active = |id: &NodeId| {
        nodes
            .iter()
            .any(|n| &n.id == id && n.availability == Availability::Active)
    };
    for spec in services.iter().filter(|s| s.mode != Mode::Global) {
        let held = replicas_per_node(p, &spec.name);
        let Some((doubled, _)) = held.iter().find(|&(n, &c)| c >= 2 && active(n)) else {
            continue;
        };
        for n in eligible(nodes, spec) {
            let room = n
                .capacity
                .minus(&used.get(&n.id).copied().unwrap_or_default());
            if !held.contains_key(&n.id)
                && loads.get(&n.id).copied().unwrap_or(0) < p.bound_of(&n.id)
                && spec.reservations.fits(&room, &n.capacity)
            {
                return Err(format!(
                    "{}: two replicas on {doubled} while {} holds none and has room",
                    spec.name, n.id
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn combined_placements_keep_each_services_cells_on_their_own_nodes() {
    let all = nodes(3);
    let reachable = vec![all[2].clone()];
    let mut global = ServiceSpec::docker("agent", "img");
    global.mode = Mode::Global;
    let wide = place(
        &all,
        &[replicated("db", 6), global.clone()],
        &PlacementConfig::default(),
    );
    let narrow = place(&reachable, &[replicated("web", 6)], &unbounded());
    let both = wide.clone().combine(narrow.clone());
    assert_eq!(both.len(), wide.len() + narrow.len());
    for (slot, assignment) in wide.iter().chain(narrow.iter()) {
        assert_eq!(both.get(&slot), Some(assignment), "{slot}");
    }
    // Every slot of web sits on the one reachable node, past the wide bound of 3.
    assert_eq!(
        both.slots_on(&all[2].id)
            .iter()
            .filter(|s| s.service == "web")
            .count(),
        6
    );
    assert_eq!(both.bound_of(&all[2].id), narrow.bound_of(&all[2].id));
    // Names stay sorted, so lookups by name still work whichever side a service came from.
    let names: Vec<String> = both.iter().map(|(s, _)| s.service).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}
