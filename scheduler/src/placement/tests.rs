//! Placement laws: unit tests on tiny clusters, and proptest properties over random ones.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::node::NodeView;
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
fn incremental_loss_and_join_take_the_fast_path() {
    // 40 nodes x 400 slots: the bound is 13 at 39, 40 and 41 nodes.
    let ns = nodes(40);
    let svc = services(40, 10);
    let cfg = PlacementConfig::default();
    let mut placer = Placer::new(&ns, &svc, &cfg);
    let before = placer.placement();
    placer.node_lost(&ns[7].id);
    let after = place_keeping(
        &ns[..7].iter().chain(&ns[8..]).cloned().collect::<Vec<_>>(),
        &svc,
        &before,
        &cfg,
    );
    assert_eq!(placer.placement(), after);
    placer.node_joined(ns[7].clone());
    assert_eq!(placer.placement(), before, "loss then join is the identity");
    placer.node_joined(active("newcomer"));
    let mut grown = ns.clone();
    grown.push(active("newcomer"));
    assert_eq!(placer.placement(), place(&grown, &svc, &cfg));
    assert_eq!(placer.full_recomputes(), 0);
}

#[test]
fn a_long_churn_stays_equal_to_full() {
    let mut ns = nodes(100);
    let mut ss = services(100, 10);
    let cfg = PlacementConfig::default();
    let mut placer = Placer::new(&ns, &ss, &cfg);
    for step in 0..60u32 {
        match step % 4 {
            0 | 2 => {
                let gone = ns.remove((step as usize * 37) % ns.len());
                placer.node_lost(&gone.id);
            }
            1 => {
                let v = active(&format!("joiner-{step}"));
                ns.push(v.clone());
                placer.node_joined(v);
            }
            _ => {
                let i = (step as usize * 13) % ss.len();
                ss[i].mode = Mode::Replicated {
                    replicas: 5 + step % 11,
                };
                placer.service_changed(ss[i].clone());
            }
        }
        assert_eq!(placer.placement(), place(&ns, &ss, &cfg), "step {step}");
    }
    assert!(
        placer.full_recomputes() < 30,
        "{}",
        placer.full_recomputes()
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
    )
        .prop_map(|(i, mode, constraints, cpu, mem, version)| {
            let mut s = ServiceSpec::docker(&format!("s{i}"), "img");
            s.mode = mode;
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

/// A change to the inputs.
#[derive(Clone, Debug)]
enum Change {
    Lose(u32),
    Join(NodeView),
    Update(Box<ServiceSpec>),
    Scale(u32, u32),
    Remove(u32),
}

fn change_strategy() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => (0..16u32).prop_map(Change::Lose),
        3 => node_strategy().prop_map(Change::Join),
        2 => service_strategy().prop_map(|s| Change::Update(Box::new(s))),
        2 => (0..8u32, 0..14u32).prop_map(|(s, r)| Change::Scale(s, r)),
        1 => (0..8u32).prop_map(Change::Remove),
    ]
}

/// The pending reason is true of the final state: load-bound pending slots have every
/// eligible node at the bound.
fn pending_reasons_hold(
    p: &Placement,
    nodes: &[NodeView],
    services: &[ServiceSpec],
) -> Result<(), String> {
    let loads = p.loads();
    for (slot, why) in p.pending() {
        let spec = services.iter().find(|s| s.name == slot.service).unwrap();
        let eligible: Vec<&NodeView> = nodes
            .iter()
            .filter(|n| {
                n.availability == Availability::Active
                    && spec.constraints.iter().all(|c| c.matches(n))
            })
            .collect();
        let ok = match why {
            PendingReason::NoActiveNode => {
                !nodes.iter().any(|n| n.availability == Availability::Active)
            }
            PendingReason::NoNodeMatchesConstraints => eligible.is_empty(),
            PendingReason::LoadBound { .. } => eligible
                .iter()
                .all(|n| loads.get(&n.id).copied().unwrap_or(0) == p.bound_of(&n.id)),
            PendingReason::InsufficientResources { .. } => !eligible.is_empty(),
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

    #[test]
    fn incremental_equals_full(
        ns in prop::collection::vec(node_strategy(), 0..14),
        ss in prop::collection::vec(service_strategy(), 0..7),
        cfg in config_strategy(),
        changes in prop::collection::vec(change_strategy(), 1..12),
    ) {
        let (ns, ss) = dedup(ns, ss);
        let mut nodes: BTreeMap<NodeId, NodeView> = ns.iter().map(|n| (n.id.clone(), n.clone())).collect();
        let mut specs: BTreeMap<String, ServiceSpec> = ss.iter().map(|s| (s.name.clone(), s.clone())).collect();
        let mut placer = Placer::new(&ns, &ss, &cfg);
        let mut previous = place(&ns, &ss, &cfg);
        prop_assert_eq!(&placer.placement(), &previous);
        for change in changes {
            apply(&mut placer, &mut nodes, &mut specs, change);
            let ns: Vec<NodeView> = nodes.values().cloned().collect();
            let ss: Vec<ServiceSpec> = specs.values().cloned().collect();
            let full = place_keeping(&ns, &ss, &previous, &cfg);
            prop_assert_eq!(&placer.placement(), &full);
            prop_assert_eq!(full.check(&ns, &ss), Ok(()));
            previous = full;
        }
    }

    /// Larger clusters without capacities or pauses, where the bound rarely moves: the
    /// local repairs (propose, intake, fill) run instead of the fallback.
    #[test]
    fn incremental_repairs_equal_full(
        n in 20..40usize,
        constrained in any::<bool>(),
        changes in prop::collection::vec((0..3u8, 0..60u32, 5..15u32), 1..10),
    ) {
        let mut ns = nodes(n);
        for (i, v) in ns.iter_mut().enumerate() {
            v.labels.insert("zone".into(), if i % 3 == 0 { "a" } else { "b" }.into());
        }
        let mut ss = services(n, 10);
        if constrained {
            ss[0].constraints = vec!["node.labels.zone==a".parse().unwrap()];
        }
        let cfg = PlacementConfig::default();
        let mut placer = Placer::new(&ns, &ss, &cfg);
        for (kind, k, replicas) in changes {
            match kind {
                0 if !ns.is_empty() => {
                    let gone = ns.remove(k as usize % ns.len());
                    placer.node_lost(&gone.id);
                }
                1 => {
                    let v = active(&format!("joiner-{k}"));
                    if !ns.iter().any(|x| x.id == v.id) {
                        ns.push(v.clone());
                        placer.node_joined(v);
                    }
                }
                _ => {
                    let i = k as usize % ss.len();
                    ss[i].mode = Mode::Replicated { replicas };
                    placer.service_changed(ss[i].clone());
                }
            }
            prop_assert_eq!(placer.placement(), place(&ns, &ss, &cfg));
        }
    }

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
        let moved: Vec<SlotId> = after
            .iter()
            .filter(|(s, _)| before.owner(s) != after.owner(s))
            .map(|(s, _)| s)
            .collect();
        prop_assert_eq!(moved, before.slots_on(gone));
    }

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
        for (slot, _) in after.iter() {
            if before.owner(&slot) != after.owner(&slot) {
                prop_assert_eq!(after.owner(&slot), Some(&id("newcomer")));
            }
        }
    }
}

/// Applies `change` to the placer and to the plain inputs alike.
fn apply(
    placer: &mut Placer,
    nodes: &mut BTreeMap<NodeId, NodeView>,
    specs: &mut BTreeMap<String, ServiceSpec>,
    change: Change,
) {
    match change {
        Change::Lose(i) => {
            let gone = id(&format!("n{i:02}"));
            nodes.remove(&gone);
            placer.node_lost(&gone);
        }
        Change::Join(view) => {
            nodes.insert(view.id.clone(), view.clone());
            placer.node_joined(view);
        }
        Change::Update(spec) => {
            specs.insert(spec.name.clone(), (*spec).clone());
            placer.service_changed(*spec);
        }
        Change::Scale(i, replicas) => {
            let Some(spec) = specs.get_mut(&format!("s{i}")) else {
                return;
            };
            if spec.mode == Mode::Global {
                return;
            }
            spec.mode = Mode::Replicated { replicas };
            placer.service_changed(spec.clone());
        }
        Change::Remove(i) => {
            let name = format!("s{i}");
            specs.remove(&name);
            placer.service_removed(&name);
        }
    }
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
