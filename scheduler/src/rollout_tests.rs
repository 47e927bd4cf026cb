//! Rollout waves, failures and coordinators, with tiny identities.

use super::*;
use crate::spec::Mode;

fn node(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn spec(replicas: u32, parallelism: u32) -> ServiceSpec {
    let mut spec = ServiceSpec::docker("web", "web:v2");
    spec.mode = Mode::Replicated { replicas };
    spec.version = 2;
    spec.update.parallelism = parallelism;
    spec.update.monitor_ms = 1000;
    spec.update.delay_ms = 500;
    spec.previous = Some(Box::new(ServiceSpec::docker("web", "web:v1")));
    spec
}

fn slots(n: u32) -> Vec<SlotId> {
    (1..=n).map(|i| SlotId::replica("web", i)).collect()
}

/// The image each version runs: `web:v1` at 1, `web:v2` from 2 on (3 only scales).
fn image_at(version: u64) -> &'static str {
    if version == 1 { "web:v1" } else { "web:v2" }
}

fn report(slot: &SlotId, version: u64, state: ReplicaState, health: Health) -> ReplicaReport {
    ReplicaReport {
        slot: slot.clone(),
        spec_version: version,
        template: ServiceSpec::docker("web", image_at(version)).template_id(),
        state,
        health,
        host_ports: BTreeMap::new(),
        error: None,
        runtime_id: format!("{slot}-{version}"),
        started_at_ms: 0,
        restarts: 0,
        cpu_millis: None,
    }
}

/// Every slot on node "a": opened ones at `new`, the others at 1.
fn observed(
    slots: &[SlotId],
    upgraded: &BTreeSet<SlotId>,
    outcome: (ReplicaState, Health),
) -> BTreeMap<NodeId, Vec<ReplicaReport>> {
    let reports = slots
        .iter()
        .map(|s| {
            if upgraded.contains(s) {
                report(s, 2, outcome.0, outcome.1)
            } else {
                report(s, 1, ReplicaState::Running, Health::Healthy)
            }
        })
        .collect();
    BTreeMap::from([(node("a"), reports)])
}

#[test]
fn waves_open_by_parallelism_after_monitor_and_delay() {
    let spec = spec(5, 2);
    let slots = slots(5);
    let alive = BTreeSet::from([node("a")]);
    let healthy = (ReplicaState::Running, Health::Healthy);
    let p = step(
        &spec,
        &slots,
        &BTreeSet::new(),
        &observed(&slots, &BTreeSet::new(), healthy),
        &alive,
        None,
        0,
    );
    assert_eq!(
        (p.wave, p.opened.len()),
        (1, 2),
        "the first wave opens at once"
    );
    // While the wave is not served, nothing more opens.
    let same = step(
        &spec,
        &slots,
        &BTreeSet::new(),
        &observed(&slots, &BTreeSet::new(), healthy),
        &alive,
        Some(&p),
        10_000,
    );
    assert_eq!(same.opened, p.opened);
    // Served at t=100: monitor 1 s + delay 0.5 s before wave 2.
    let served = step(
        &spec,
        &slots,
        &BTreeSet::new(),
        &observed(&slots, &p.opened, healthy),
        &alive,
        Some(&p),
        100,
    );
    assert_eq!(served.wave, 1);
    let early = step(
        &spec,
        &slots,
        &BTreeSet::new(),
        &observed(&slots, &p.opened, healthy),
        &alive,
        Some(&served),
        1_500,
    );
    assert_eq!(early.wave, 1);
    let next = step(
        &spec,
        &slots,
        &BTreeSet::new(),
        &observed(&slots, &p.opened, healthy),
        &alive,
        Some(&early),
        1_600,
    );
    assert_eq!((next.wave, next.opened.len()), (2, 4));
    assert_eq!(allowed(&spec, &slots, Some(&next)).len(), 4);
    let all: BTreeSet<SlotId> = slots.iter().cloned().collect();
    let done = step(
        &spec,
        &slots,
        &BTreeSet::new(),
        &observed(&slots, &all, healthy),
        &alive,
        Some(&next),
        5_000,
    );
    assert_eq!(done.state, RolloutState::Completed);
    assert_eq!(allowed(&spec, &slots, Some(&done)).len(), 5);
}

#[test]
fn a_failing_wave_pauses_or_rolls_back() {
    let slots = slots(4);
    let alive = BTreeSet::from([node("a")]);
    let mut spec = spec(4, 1);
    let p = step(
        &spec,
        &slots,
        &BTreeSet::new(),
        &observed(
            &slots,
            &BTreeSet::new(),
            (ReplicaState::Running, Health::Healthy),
        ),
        &alive,
        None,
        0,
    );
    let broken = observed(&slots, &p.opened, (ReplicaState::Failed, Health::None));
    let paused = step(
        &spec,
        &slots,
        &BTreeSet::new(),
        &broken,
        &alive,
        Some(&p),
        10,
    );
    assert_eq!(paused.state, RolloutState::Paused);
    assert_eq!(
        step(
            &spec,
            &slots,
            &BTreeSet::new(),
            &broken,
            &alive,
            Some(&paused),
            99_999
        )
        .opened,
        paused.opened,
        "a pause holds"
    );
    spec.update.failure_action = FailureAction::Rollback;
    assert_eq!(
        step(
            &spec,
            &slots,
            &BTreeSet::new(),
            &broken,
            &alive,
            Some(&p),
            10
        )
        .state,
        RolloutState::RollingBack
    );
    spec.update.failure_action = FailureAction::Continue;
    let on = step(
        &spec,
        &slots,
        &BTreeSet::new(),
        &broken,
        &alive,
        Some(&p),
        10,
    );
    assert_eq!(on.state, RolloutState::Updating);
    assert_eq!(
        on.wave, 1,
        "monitor and delay still apply after a failed wave"
    );
    assert_eq!(
        step(
            &spec,
            &slots,
            &BTreeSet::new(),
            &broken,
            &alive,
            Some(&on),
            2_000
        )
        .wave,
        2
    );
}

#[test]
fn the_coordinator_is_the_first_live_node_on_the_hash() {
    let nodes: Vec<NodeId> = ["a", "b", "c", "d"].iter().map(|s| node(s)).collect();
    let first = coordinator("web", &nodes).unwrap().clone();
    let mut reversed = nodes.clone();
    reversed.reverse();
    assert_eq!(
        coordinator("web", &reversed),
        Some(&first),
        "order does not matter"
    );
    let survivors: Vec<NodeId> = nodes.iter().filter(|n| **n != first).cloned().collect();
    let next = coordinator("web", &survivors).unwrap();
    assert_ne!(next, &first);
    assert!(coordinator("web", &[]).is_none());
}

#[test]
fn the_newest_progress_wins() {
    let spec = spec(3, 1);
    let mut a = Progress::new(&spec);
    a.wave = 1;
    let mut b = a.clone();
    b.wave = 2;
    let mut old = a.clone();
    old.template = ServiceSpec::docker("web", image_at(1)).template_id();
    old.wave = 9;
    assert_eq!(newest(&spec, [&a, &b, &old]), Some(&b));
}

#[test]
fn a_successor_resumes_a_wave_its_dead_coordinator_had_not_seen_served() {
    let spec = spec(3, 1);
    let slots = slots(3);
    let alive = BTreeSet::from([node("a")]);
    let healthy = (ReplicaState::Running, Health::Healthy);
    // The dead coordinator opened wave 1 and died before the wave served.
    let dead = step(
        &spec,
        &slots,
        &BTreeSet::new(),
        &observed(&slots, &BTreeSet::new(), healthy),
        &alive,
        None,
        0,
    );
    assert_eq!((dead.wave, dead.wave_served_at_ms), (1, None));
    let served = observed(&slots, &dead.opened, healthy);
    // The successor steps every 100 ms from the newest of what is published: the dead
    // one's progress and its own, in either order.
    for dead_first in [true, false] {
        let mut mine: Option<Progress> = None;
        let mut opened_at = None;
        for now in (10_000..20_000).step_by(100) {
            let published: Vec<&Progress> = match (&mine, dead_first) {
                (Some(m), true) => vec![&dead, m],
                (Some(m), false) => vec![m, &dead],
                (None, _) => vec![&dead],
            };
            let next = step(
                &spec,
                &slots,
                &BTreeSet::new(),
                &served,
                &alive,
                newest(&spec, published),
                now,
            );
            if next.wave == 2 {
                opened_at = Some(now);
                break;
            }
            mine = Some(next);
        }
        assert_eq!(
            opened_at,
            Some(10_000 + spec.update.monitor_ms + spec.update.delay_ms),
            "wave 2 opens after monitor + delay (dead progress first: {dead_first})"
        );
    }
}

#[test]
fn scaling_during_a_rollout_keeps_its_progress() {
    let spec = spec(4, 1);
    let slots = slots(4);
    let alive = BTreeSet::from([node("a")]);
    let healthy = (ReplicaState::Running, Health::Healthy);
    let p = step(
        &spec,
        &slots,
        &BTreeSet::new(),
        &observed(&slots, &BTreeSet::new(), healthy),
        &alive,
        None,
        0,
    );
    assert_eq!(p.opened.len(), 1);
    let mut bigger = spec.clone();
    bigger.mode = Mode::Replicated { replicas: 6 };
    let scaled = spec.followed_by(bigger, false);
    assert_eq!(scaled.version, 3);
    assert_eq!(newest(&scaled, [&p]), Some(&p), "still the same rollout");
    assert_eq!(allowed(&scaled, &slots, Some(&p)), p.opened);
    // A replica started at version 3 serves the rollout of version 2.
    let mut obs = observed(&slots, &BTreeSet::new(), healthy);
    obs.get_mut(&node("a")).unwrap()[0] =
        report(&slots[0], 3, ReplicaState::Running, Health::Healthy);
    let next = step(
        &scaled,
        &slots,
        &BTreeSet::new(),
        &obs,
        &alive,
        Some(&p),
        100,
    );
    assert_eq!((next.to_version, next.wave), (2, 1));
    assert!(next.failed.is_empty());
    // A new image is a new rollout.
    let mut image = scaled.clone();
    image.image = Some("web:v3".into());
    let v4 = scaled.followed_by(image, false);
    assert_eq!(newest(&v4, [&p]), None);
    assert!(allowed(&v4, &slots, Some(&p)).is_empty());
}

#[test]
fn slots_no_live_node_can_update_wait_without_stalling_the_others() {
    // A minority side: slots 1 and 2 are placed on members it sees down.
    let spec = spec(4, 1);
    let slots = slots(4);
    let waiting = BTreeSet::from([slots[0].clone(), slots[1].clone()]);
    let alive = BTreeSet::from([node("a")]);
    let healthy = (ReplicaState::Running, Health::Healthy);
    let mut upgraded = BTreeSet::new();
    let mut p: Option<Progress> = None;
    for now in (0..60_000).step_by(100) {
        let obs = observed(&slots, &upgraded, healthy);
        let next = step(&spec, &slots, &waiting, &obs, &alive, p.as_ref(), now);
        assert!(next.opened.is_disjoint(&waiting), "{next:?}");
        // Node a carries out what is opened at once.
        upgraded.extend(next.opened.iter().cloned());
        p = Some(next);
    }
    let p = p.unwrap();
    assert_eq!(
        upgraded,
        BTreeSet::from([slots[2].clone(), slots[3].clone()])
    );
    assert_eq!(
        p.state,
        RolloutState::Updating,
        "not complete while 1 and 2 wait"
    );
    assert!(p.message.contains("waiting for 2 slot(s)"), "{}", p.message);
    // The members come back: the waiting slots open one wave at a time, then it completes.
    let mut p = Some(p);
    for now in (60_000..120_000).step_by(100) {
        let obs = observed(&slots, &upgraded, healthy);
        let next = step(
            &spec,
            &slots,
            &BTreeSet::new(),
            &obs,
            &alive,
            p.as_ref(),
            now,
        );
        let newly: Vec<&SlotId> = next.opened.difference(&upgraded).collect();
        assert!(newly.len() <= 1, "parallelism 1: {newly:?}");
        upgraded.extend(next.opened.iter().cloned());
        p = Some(next);
    }
    assert_eq!(p.unwrap().state, RolloutState::Completed);
}

#[test]
fn the_coordinator_table_follows_nodes_as_choosing_anew_would() {
    let all: Vec<NodeId> = (0..12).map(|i| node(&format!("n{i}"))).collect();
    let services: Vec<String> = (0..30).map(|i| format!("s{i}")).collect();
    let mut table = CoordinatorTable::default();
    // Joins, losses, both at once, everyone gone, and back.
    let steps: [&[usize]; 7] = [
        &[0, 1, 2],
        &[0, 1, 2, 3, 4, 5, 6],
        &[1, 2, 4, 5, 6, 7],
        &[7, 8, 9, 10, 11],
        &[],
        &[3, 11],
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    ];
    for (i, step) in steps.iter().enumerate() {
        let alive: BTreeSet<NodeId> = step.iter().map(|&n| all[n].clone()).collect();
        let names = services.iter().take(20 + i).map(String::as_str);
        table.update(&alive, names);
        for service in services.iter().take(20 + i) {
            assert_eq!(
                table.of(service),
                coordinator(service, &alive),
                "{service} at step {i}"
            );
        }
        assert_eq!(
            table.of("s29"),
            None,
            "a service not given has no coordinator"
        );
    }
}
