//! Reconcile rules on tiny clusters: nodes `a`, `b`, `c`; services `blog` and friends.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::node::NodeView;
use crate::placement::{PlacementConfig, place};
use crate::spec::Mode;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

/// `name` at `version`, each version with its own image (so its own template).
fn service(name: &str, replicas: u32, version: u64) -> ServiceSpec {
    let mut s = ServiceSpec::docker(name, &format!("img:v{version}"));
    s.mode = Mode::Replicated { replicas };
    s.version = version;
    s
}

fn specs(list: &[ServiceSpec]) -> BTreeMap<String, ServiceSpec> {
    list.iter().map(|s| (s.name.clone(), s.clone())).collect()
}

/// A placement of `services` on exactly `node` (the only active node).
fn all_on(node: &str, services: &[ServiceSpec]) -> Placement {
    place(
        &[NodeView::new(id(node))],
        services,
        &PlacementConfig::default(),
    )
}

fn report(slot: SlotId, version: u64, state: ReplicaState, health: Health) -> ReplicaReport {
    ReplicaReport {
        runtime_id: format!("rt-{slot}-{version}-{state:?}"),
        template: service(&slot.service, 1, version).template_id(),
        slot,
        spec_version: version,
        state,
        health,
        host_ports: BTreeMap::new(),
        error: None,
        started_at_ms: 0,
        restarts: 0,
        cpu_millis: None,
    }
}

fn running(slot: SlotId, version: u64) -> ReplicaReport {
    report(slot, version, ReplicaState::Running, Health::None)
}

fn alive(nodes: &[&str]) -> BTreeSet<NodeId> {
    nodes.iter().map(|n| id(n)).collect()
}

fn observed(list: Vec<(&str, Vec<ReplicaReport>)>) -> BTreeMap<NodeId, Vec<ReplicaReport>> {
    list.into_iter().map(|(n, r)| (id(n), r)).collect()
}

fn slot(i: u32) -> SlotId {
    SlotId::replica("blog", i)
}

#[test]
fn a_new_owner_starts_what_no_one_runs() {
    let s = [service("blog", 2, 1)];
    let p = all_on("a", &s);
    let acts = plan(
        &id("a"),
        &p,
        &specs(&s),
        &BTreeMap::new(),
        &alive(&["a"]),
        &ReconcileConfig::default(),
    );
    let expected: Vec<Action> = (1..=2)
        .map(|i| Action::Start {
            slot: slot(i),
            spec_version: 1,
            cause: StartCause::Placed,
        })
        .collect();
    assert_eq!(acts, expected);
}

#[test]
fn handoff_is_make_before_break() {
    let s = [service("blog", 1, 3)];
    let p = all_on("b", &s);
    let cfg = ReconcileConfig::default();
    let a_runs = ("a", vec![running(slot(1), 3)]);
    // b has not started it yet: a keeps it.
    let obs = observed(vec![a_runs.clone()]);
    assert!(plan(&id("a"), &p, &specs(&s), &obs, &alive(&["a", "b"]), &cfg).is_empty());
    // b is starting, or running but not yet healthy: a still keeps it.
    for (state, health) in [
        (ReplicaState::Starting, Health::Unknown),
        (ReplicaState::Running, Health::Starting),
    ] {
        let obs = observed(vec![
            a_runs.clone(),
            ("b", vec![report(slot(1), 3, state, health)]),
        ]);
        assert!(plan(&id("a"), &p, &specs(&s), &obs, &alive(&["a", "b"]), &cfg).is_empty());
    }
    // b serves an old version: not yet.
    let obs = observed(vec![a_runs.clone(), ("b", vec![running(slot(1), 2)])]);
    assert!(plan(&id("a"), &p, &specs(&s), &obs, &alive(&["a", "b"]), &cfg).is_empty());
    // b serves, healthy, at the current version: a stops.
    let healthy = report(slot(1), 3, ReplicaState::Running, Health::Healthy);
    let obs = observed(vec![a_runs.clone(), ("b", vec![healthy])]);
    let acts = plan(&id("a"), &p, &specs(&s), &obs, &alive(&["a", "b"]), &cfg);
    assert!(
        matches!(&acts[..], [Action::Stop { reason: StopReason::HandedOff { to }, .. }] if *to == id("b")),
        "{acts:?}"
    );
    // b serves but a sees it dead: a keeps it.
    let obs = observed(vec![a_runs, ("b", vec![running(slot(1), 3)])]);
    assert!(plan(&id("a"), &p, &specs(&s), &obs, &alive(&["a"]), &cfg).is_empty());
}

#[test]
fn handoff_starts_are_capped_but_healing_is_not() {
    let s = [service("blog", 5, 1)];
    let p = all_on("b", &s);
    let cfg = ReconcileConfig {
        moves_in_flight_max: 2,
        update_allowed: None,
    };
    // a serves 1..=3; 4 and 5 run nowhere.
    let obs = observed(vec![("a", (1..=3).map(|i| running(slot(i), 1)).collect())]);
    let acts = plan(&id("b"), &p, &specs(&s), &obs, &alive(&["a", "b"]), &cfg);
    let causes: Vec<(u32, bool)> = acts
        .iter()
        .map(|a| match a {
            Action::Start { slot, cause, .. } => {
                let crate::replica::SlotKey::Replica(i) = slot.key else {
                    panic!()
                };
                (i, matches!(cause, StartCause::Handoff { .. }))
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(causes, vec![(1, true), (2, true), (4, false), (5, false)]);
    // With slot 1 in flight on b (starting), only one more handoff may start.
    let mut obs = obs;
    obs.insert(
        id("b"),
        vec![report(slot(1), 1, ReplicaState::Starting, Health::Unknown)],
    );
    let acts = plan(&id("b"), &p, &specs(&s), &obs, &alive(&["a", "b"]), &cfg);
    let handoffs = acts
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Start {
                    cause: StartCause::Handoff { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(handoffs, 1, "{acts:?}");
    // A dead runner does not count: everything starts at once.
    let acts = plan(&id("b"), &p, &specs(&s), &obs, &alive(&["b"]), &cfg);
    assert_eq!(acts.len(), 4, "{acts:?}");
}

#[test]
fn outdated_replicas_are_replaced_when_the_gate_allows() {
    let s = [service("blog", 2, 5)];
    let p = all_on("a", &s);
    let obs = observed(vec![("a", vec![running(slot(1), 4), running(slot(2), 4)])]);
    let all = plan(
        &id("a"),
        &p,
        &specs(&s),
        &obs,
        &alive(&["a"]),
        &ReconcileConfig::default(),
    );
    assert_eq!(all.len(), 2);
    assert!(matches!(
        &all[0],
        Action::Replace {
            from_version: 4,
            to_version: 5,
            reason: ReplaceReason::Outdated,
            ..
        }
    ));
    let gated = ReconcileConfig {
        update_allowed: Some([slot(2)].into_iter().collect()),
        ..ReconcileConfig::default()
    };
    let acts = plan(&id("a"), &p, &specs(&s), &obs, &alive(&["a"]), &gated);
    assert_eq!(acts.len(), 1);
    assert_eq!(acts[0].slot(), &slot(2));
}

#[test]
fn scaling_or_a_new_policy_replaces_no_replica() {
    let v1 = service("blog", 2, 1);
    let mut scaled = v1.clone();
    scaled.mode = Mode::Replicated { replicas: 3 };
    scaled.restart.max_attempts = Some(2);
    let v2 = v1.followed_by(scaled, false);
    assert_eq!(v2.version, 2);
    assert_eq!(v2.template_id(), v1.template_id(), "same template");
    let p = all_on("a", std::slice::from_ref(&v2));
    let obs = observed(vec![("a", vec![running(slot(1), 1), running(slot(2), 1)])]);
    let acts = plan(
        &id("a"),
        &p,
        &specs(std::slice::from_ref(&v2)),
        &obs,
        &alive(&["a"]),
        &ReconcileConfig::default(),
    );
    let expected = vec![Action::Start {
        slot: slot(3),
        spec_version: 2,
        cause: StartCause::Placed,
    }];
    assert_eq!(acts, expected, "only the new slot starts");
    // A new image outdates both; so does a forced redeploy of the same template.
    let mut image = v2.clone();
    image.image = Some("img:2".into());
    for v3 in [
        v2.followed_by(image, false),
        v2.followed_by(v2.clone(), true),
    ] {
        assert_ne!(v3.template_id(), v2.template_id());
        let acts = plan(
            &id("a"),
            &p,
            &specs(std::slice::from_ref(&v3)),
            &obs,
            &alive(&["a"]),
            &ReconcileConfig::default(),
        );
        let replaced = acts
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::Replace {
                        reason: ReplaceReason::Outdated,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(replaced, 2, "{acts:?}");
    }
}

#[test]
fn restarts_follow_the_policy() {
    let mut spec = service("blog", 1, 1);
    let p = all_on("a", std::slice::from_ref(&spec));
    let exited = report(slot(1), 1, ReplicaState::Exited, Health::None);
    let failed = ReplicaReport {
        restarts: 2,
        cpu_millis: None,
        ..report(slot(1), 1, ReplicaState::Failed, Health::None)
    };
    let run = |spec: &ServiceSpec, r: &ReplicaReport| {
        let obs = observed(vec![("a", vec![r.clone()])]);
        let s = specs(std::slice::from_ref(spec));
        plan(
            &id("a"),
            &p,
            &s,
            &obs,
            &alive(&["a"]),
            &ReconcileConfig::default(),
        )
    };
    let acts = run(&spec, &failed);
    assert!(
        matches!(
            &acts[..],
            [Action::Start {
                cause: StartCause::Restart {
                    attempt: 3,
                    delay_ms: 5_000
                },
                ..
            }]
        ),
        "{acts:?}"
    );
    spec.restart.condition = RestartCondition::OnFailure;
    assert!(
        run(&spec, &exited).is_empty(),
        "a clean exit is not a failure"
    );
    assert_eq!(run(&spec, &failed).len(), 1);
    spec.restart.max_attempts = Some(2);
    assert!(run(&spec, &failed).is_empty(), "attempts used up");
    spec.restart.condition = RestartCondition::None;
    spec.restart.max_attempts = None;
    assert!(run(&spec, &failed).is_empty());
    let unhealthy = report(slot(1), 1, ReplicaState::Running, Health::Unhealthy);
    assert!(
        run(&spec, &unhealthy).is_empty(),
        "condition none: leave it"
    );
    spec.restart.condition = RestartCondition::Any;
    let acts = run(&spec, &unhealthy);
    assert!(
        matches!(
            &acts[..],
            [Action::Replace {
                reason: ReplaceReason::Unhealthy,
                ..
            }]
        ),
        "{acts:?}"
    );
}

#[test]
fn leftovers_and_duplicates_stop() {
    let s = [service("blog", 1, 1)];
    let p = all_on("a", &s);
    let obs = observed(vec![(
        "a",
        vec![
            running(slot(1), 1),
            report(slot(1), 1, ReplicaState::Starting, Health::Unknown),
            running(slot(2), 1),
            running(SlotId::replica("gone", 1), 1),
        ],
    )]);
    let acts = plan(
        &id("a"),
        &p,
        &specs(&s),
        &obs,
        &alive(&["a"]),
        &ReconcileConfig::default(),
    );
    let reasons: Vec<(String, StopReason)> = acts
        .iter()
        .map(|a| match a {
            Action::Stop { slot, reason, .. } => (slot.to_string(), reason.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("blog.1".into(), StopReason::Duplicate),
            ("blog.2".into(), StopReason::SlotRemoved),
            ("gone.1".into(), StopReason::ServiceRemoved),
        ]
    );
    let Action::Stop { runtime_id, .. } = &acts[0] else {
        unreachable!()
    };
    assert!(
        runtime_id.contains("Starting"),
        "the running replica is kept"
    );
}

#[test]
fn a_pending_slot_keeps_one_copy() {
    let s = [service("blog", 1, 1)];
    let p = place(&[], &s, &PlacementConfig::default());
    let obs = observed(vec![
        ("a", vec![running(slot(1), 1)]),
        ("b", vec![running(slot(1), 1)]),
    ]);
    let both = alive(&["a", "b"]);
    let cfg = ReconcileConfig::default();
    assert!(plan(&id("a"), &p, &specs(&s), &obs, &both, &cfg).is_empty());
    let acts = plan(&id("b"), &p, &specs(&s), &obs, &both, &cfg);
    assert!(
        matches!(
            &acts[..],
            [Action::Stop {
                reason: StopReason::Duplicate,
                ..
            }]
        ),
        "{acts:?}"
    );
}

#[test]
fn plans_do_not_depend_on_report_order() {
    let s = [service("blog", 4, 2), service("api", 3, 1)];
    let p = all_on("a", &s);
    let mut reports = vec![
        running(slot(3), 1),
        running(SlotId::replica("api", 2), 1),
        report(slot(1), 2, ReplicaState::Failed, Health::None),
        running(slot(9), 2),
    ];
    let first = plan(
        &id("a"),
        &p,
        &specs(&s),
        &observed(vec![("a", reports.clone())]),
        &alive(&["a"]),
        &ReconcileConfig::default(),
    );
    reports.reverse();
    let second = plan(
        &id("a"),
        &p,
        &specs(&s),
        &observed(vec![("a", reports)]),
        &alive(&["a"]),
        &ReconcileConfig::default(),
    );
    assert_eq!(first, second);
    let slots: Vec<String> = first.iter().map(|a| a.slot().to_string()).collect();
    let mut sorted = first.iter().map(|a| a.slot().clone()).collect::<Vec<_>>();
    sorted.sort();
    assert_eq!(
        slots,
        sorted.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
}

#[test]
fn a_spec_that_lost_a_concurrent_write_is_outdated_under_the_same_version() {
    // Two sides of a partition update version 1 each on their own: both write version 2.
    let v1 = service("blog", 2, 1);
    let side = |value: &str| {
        let mut next = v1.clone();
        next.env.insert("V".into(), value.into());
        v1.followed_by(next, false)
    };
    let (left, right) = (side("left"), side("right"));
    assert_eq!((left.version, right.version), (2, 2));
    assert_ne!(left.template_id(), right.template_id());
    // The store kept `left`; node a still runs both slots from `right`.
    let from_right = |i| ReplicaReport {
        template: right.template_id(),
        ..running(slot(i), 2)
    };
    let p = all_on("a", std::slice::from_ref(&left));
    let obs = observed(vec![("a", vec![from_right(1), from_right(2)])]);
    let acts = plan(
        &id("a"),
        &p,
        &specs(std::slice::from_ref(&left)),
        &obs,
        &alive(&["a"]),
        &ReconcileConfig::default(),
    );
    assert_eq!(acts.len(), 2, "{acts:?}");
    assert!(acts.iter().all(|a| matches!(
        a,
        Action::Replace {
            reason: ReplaceReason::Outdated,
            ..
        }
    )));
    // Once they run `left`, nothing is left to do.
    let from_left = |i| ReplicaReport {
        template: left.template_id(),
        ..running(slot(i), 2)
    };
    let obs = observed(vec![("a", vec![from_left(1), from_left(2)])]);
    let acts = plan(
        &id("a"),
        &p,
        &specs(std::slice::from_ref(&left)),
        &obs,
        &alive(&["a"]),
        &ReconcileConfig::default(),
    );
    assert!(acts.is_empty(), "{acts:?}");
}

#[test]
fn template_ids_are_stable_and_follow_only_what_replicas_run() {
    let spec = service("blog", 2, 1);
    // The same on every peer and build: a change of this number replaces every replica
    // of a cluster that upgrades knit, so it is pinned here.
    assert_eq!(format!("{:016x}", spec.template_id()), "c8dea2108be464aa");
    let mut policy = spec.clone();
    policy.mode = Mode::Replicated { replicas: 9 };
    policy.restart.delay_ms = 1234;
    policy.version = 7;
    assert_eq!(policy.template_id(), spec.template_id());
    let forced = spec.followed_by(spec.clone(), true);
    assert_ne!(forced.template_id(), spec.template_id());
    // A rollback returns to the previous template, so its replicas are current again.
    let back = forced.followed_by(*forced.previous.clone().unwrap(), false);
    assert_eq!(back.template_id(), spec.template_id());
}
