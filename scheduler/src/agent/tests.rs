//! The agent round on tiny clusters, with no driver: each host's replicas are reports that
//! operations turn over when the test says they end. Hosts `a`, `b`, `c`; service `blog`.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::node::{Availability, NodeView};
use crate::placement::{PlacementConfig, place_running};
use crate::reconcile::StopReason;
use crate::rollout::RolloutState;
use crate::spec::{Mode, RestartCondition};

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn blog(replicas: u32, image: &str) -> ServiceSpec {
    let mut s = ServiceSpec::docker("blog", image);
    s.mode = Mode::Replicated { replicas };
    s.version = 1;
    s
}

/// What every host published: rollout progress by host and service.
#[derive(Default)]
struct Board {
    progress: BTreeMap<(NodeId, String), Progress>,
    written_ms: BTreeMap<String, u64>,
}

impl Published for Board {
    fn progress(&self, service: &str) -> Vec<Progress> {
        self.progress
            .iter()
            .filter(|((_, s), _)| s == service)
            .map(|(_, p)| p.clone())
            .collect()
    }
    fn spec_written_ms(&self, service: &str) -> u64 {
        self.written_ms.get(service).copied().unwrap_or(0)
    }
}

/// One simulated host: its agent, its replicas (as its driver would list them), and the
/// operations it is carrying out.
struct Host {
    agent: Agent,
    up: bool,
    availability: Availability,
    replicas: Vec<ReplicaReport>,
    ops: Vec<Op>,
    /// The slots it said it kept when paused.
    kept: Vec<SlotId>,
}

/// A cluster of hosts that all see the same members (the ones up) and the same state.
struct World {
    now_ms: u64,
    hosts: BTreeMap<NodeId, Host>,
    specs: BTreeMap<String, ServiceSpec>,
    board: Board,
    next_runtime: u64,
    /// Every operation carried out, by host.
    log: Vec<(NodeId, Action)>,
}

impl World {
    fn new(hosts: &[&str], spec: ServiceSpec) -> Self {
        let hosts = hosts
            .iter()
            .map(|h| {
                let host = Host {
                    agent: Agent::new(id(h), 0),
                    up: true,
                    availability: Availability::Active,
                    replicas: Vec::new(),
                    ops: Vec::new(),
                    kept: Vec::new(),
                };
                (id(h), host)
            })
            .collect();
        Self {
            now_ms: 0,
            hosts,
            specs: BTreeMap::from([(spec.name.clone(), spec)]),
            board: Board::default(),
            next_runtime: 0,
            log: Vec::new(),
        }
    }

    fn members(&self) -> Members {
        Members {
            active: self
                .hosts
                .iter()
                .filter(|(_, h)| h.up)
                .map(|(n, _)| (n.clone(), 1))
                .collect(),
            knows_others: self.hosts.len() > 1,
            connected: true,
        }
    }

    fn placement(&self) -> Placement {
        let views: Vec<NodeView> = self
            .hosts
            .iter()
            .filter(|(_, h)| h.up)
            .map(|(n, h)| NodeView {
                availability: h.availability,
                ..NodeView::new(n.clone())
            })
            .collect();
        let kept: BTreeMap<SlotId, NodeId> = self
            .hosts
            .iter()
            .flat_map(|(n, h)| h.kept.iter().map(move |s| (s.clone(), n.clone())))
            .collect();
        let specs: Vec<ServiceSpec> = self.specs.values().cloned().collect();
        place_running(&views, &specs, &kept, &PlacementConfig::default())
    }

    /// Every host's reports as the others see them.
    fn observed(&self) -> BTreeMap<NodeId, Vec<ReplicaReport>> {
        self.hosts
            .iter()
            .filter(|(_, h)| h.up)
            .map(|(n, h)| {
                (
                    n.clone(),
                    h.agent
                        .reports(h.replicas.clone(), &self.specs, self.now_ms),
                )
            })
            .collect()
    }

    /// One round on every live host; their operations are queued, not yet done.
    fn round(&mut self) -> Vec<(NodeId, Plan)> {
        let members = self.members();
        let placement = self.placement();
        let observed = self.observed();
        let mut plans = Vec::new();
        let names: Vec<NodeId> = self.hosts.keys().cloned().collect();
        for n in names {
            let host = self.hosts.get_mut(&n).unwrap();
            if !host.up {
                continue;
            }
            let input = Input {
                members: &members,
                specs: &self.specs,
                placement: &placement,
                observed: &observed,
                published: &self.board,
                limits: Limits::default(),
                active_nodes: members.active.len(),
            };
            let plan = host.agent.round(&input, self.now_ms);
            host.ops.extend(plan.ops.iter().cloned());
            for write in &plan.writes {
                match write {
                    Write::Progress { service, progress } => match progress {
                        Some(p) => {
                            self.board
                                .progress
                                .insert((n.clone(), service.clone()), p.clone());
                        }
                        None => {
                            self.board.progress.remove(&(n.clone(), service.clone()));
                        }
                    },
                    Write::Spec(spec) => {
                        self.board.written_ms.insert(spec.name.clone(), self.now_ms);
                        self.specs.insert(spec.name.clone(), (**spec).clone());
                    }
                }
            }
            plans.push((n, plan));
        }
        plans
    }

    /// Carries out every queued operation (starts run at once, healthy).
    fn finish_ops(&mut self) {
        let now = self.now_ms;
        for (n, host) in &mut self.hosts {
            for op in std::mem::take(&mut host.ops) {
                let slot = op.action.slot().clone();
                let start = |version: u64, rt: &mut u64, specs: &BTreeMap<String, ServiceSpec>| {
                    *rt += 1;
                    ReplicaReport {
                        slot: slot.clone(),
                        spec_version: version,
                        template: specs[&slot.service].template_id(),
                        state: ReplicaState::Running,
                        health: Health::None,
                        host_ports: BTreeMap::new(),
                        error: None,
                        runtime_id: format!("{n}-{rt}"),
                        started_at_ms: now,
                        restarts: 0,
                        cpu_millis: None,
                    }
                };
                match &op.action {
                    Action::Start {
                        spec_version,
                        cause,
                        ..
                    } => {
                        if matches!(cause, StartCause::Restart { .. }) {
                            host.replicas.retain(|r| r.slot != slot);
                        }
                        let r = start(*spec_version, &mut self.next_runtime, &self.specs);
                        host.replicas.push(r);
                    }
                    Action::Stop { runtime_id, .. } => {
                        host.replicas.retain(|r| &r.runtime_id != runtime_id);
                    }
                    Action::Replace {
                        runtime_id,
                        to_version,
                        ..
                    } => {
                        host.replicas.retain(|r| &r.runtime_id != runtime_id);
                        let r = start(*to_version, &mut self.next_runtime, &self.specs);
                        host.replicas.push(r);
                    }
                }
                host.agent.done(&slot, Done::Ok, now);
                self.log.push((n.clone(), op.action));
            }
        }
    }

    /// Rounds every `step_ms` until nothing more happens (or `max_ms` passes).
    fn settle(&mut self, step_ms: u64, max_ms: u64) {
        let end = self.now_ms + max_ms;
        let mut quiet = 0;
        while self.now_ms < end && quiet < 10 {
            let plans = self.round();
            let acted = plans
                .iter()
                .any(|(_, p)| !p.settled || !p.ops.is_empty() || !p.writes.is_empty());
            self.finish_ops();
            quiet = if acted { 0 } else { quiet + 1 };
            self.now_ms += step_ms;
        }
    }

    /// A first round, in which every host sees its members join, then the settle time.
    fn ready(&mut self) {
        assert!(
            self.round()
                .iter()
                .all(|(_, p)| !p.settled && p.ops.is_empty())
        );
        self.now_ms += SETTLE_MS;
    }

    /// Where each slot runs (live replicas on live hosts).
    fn runs(&self) -> BTreeMap<SlotId, Vec<NodeId>> {
        let mut runs: BTreeMap<SlotId, Vec<NodeId>> = BTreeMap::new();
        for (n, h) in self.hosts.iter().filter(|(_, h)| h.up) {
            for r in h.replicas.iter().filter(|r| r.state.is_live()) {
                runs.entry(r.slot.clone()).or_default().push(n.clone());
            }
        }
        runs
    }

    /// Asserts that every slot of `blog` runs exactly once, where placement says.
    fn assert_converged(&self) {
        let placement = self.placement();
        let runs = self.runs();
        let replicas = self.specs["blog"].replicas();
        assert_eq!(runs.len(), replicas as usize, "slots running: {runs:?}");
        for (slot, nodes) in &runs {
            assert_eq!(nodes.len(), 1, "{slot} runs on {nodes:?}");
            assert_eq!(placement.owner(slot), Some(&nodes[0]), "{slot}");
        }
    }
}

#[test]
fn a_new_cluster_waits_for_views_to_settle_then_starts_every_slot_once() {
    let mut w = World::new(&["a", "b", "c"], blog(6, "img:1"));
    w.ready();
    w.settle(100, 10_000);
    w.assert_converged();
}

#[test]
fn a_lost_host_s_slots_restart_on_the_others() {
    let mut w = World::new(&["a", "b", "c"], blog(6, "img:1"));
    w.ready();
    w.settle(100, 10_000);
    let on_c = w.runs().values().filter(|n| n[0] == id("c")).count();
    assert!(on_c > 0, "c runs some slot of six");
    w.hosts.get_mut(&id("c")).unwrap().up = false;
    // A departure needs no settling: the very next round starts the lost slots.
    let plans = w.round();
    let starts = plans
        .iter()
        .flat_map(|(_, p)| &p.ops)
        .filter(|op| {
            matches!(
                op.action,
                Action::Start {
                    cause: StartCause::Placed,
                    ..
                }
            )
        })
        .count();
    assert_eq!(starts, on_c);
    w.finish_ops();
    w.settle(100, 10_000);
    w.assert_converged();
}

#[test]
fn a_joining_host_takes_its_share_make_before_break() {
    let mut w = World::new(&["a", "b", "c"], blog(6, "img:1"));
    w.hosts.get_mut(&id("c")).unwrap().up = false;
    w.ready();
    w.settle(100, 10_000);
    w.assert_converged();
    w.hosts.get_mut(&id("c")).unwrap().up = true;
    w.hosts.get_mut(&id("c")).unwrap().agent = Agent::new(id("c"), w.now_ms);
    let joined = w.now_ms;
    // Nothing moves while views settle.
    while w.now_ms < joined + SETTLE_MS {
        assert!(w.round().iter().all(|(_, p)| p.ops.is_empty()));
        w.now_ms += 100;
    }
    // Every round from here: every slot keeps running somewhere.
    let end = w.now_ms + 10_000;
    while w.now_ms < end {
        w.round();
        // Handoff starts are paced: at most two in flight on the joiner.
        let handoffs = w.hosts[&id("c")]
            .ops
            .iter()
            .filter(|op| {
                matches!(
                    op.action,
                    Action::Start {
                        cause: StartCause::Handoff { .. },
                        ..
                    }
                )
            })
            .count();
        assert!(handoffs <= 2, "{handoffs} handoffs at once");
        w.finish_ops();
        assert_eq!(w.runs().len(), 6, "a slot went unserved");
        w.now_ms += 100;
    }
    w.assert_converged();
    let stopped = w
        .log
        .iter()
        .filter(|(_, a)| {
            matches!(
                a,
                Action::Stop {
                    reason: StopReason::HandedOff { .. },
                    ..
                }
            )
        })
        .count();
    let on_c = w.runs().values().filter(|n| n[0] == id("c")).count();
    assert_eq!(
        stopped, on_c,
        "each slot c took was stopped once where it ran"
    );
}

#[test]
fn an_exited_replica_restarts_within_its_policy_and_counts_its_restarts() {
    let mut spec = blog(1, "img:1");
    spec.restart.condition = RestartCondition::OnFailure;
    spec.restart.max_attempts = Some(2);
    spec.restart.delay_ms = 1_000;
    let mut w = World::new(&["a"], spec);
    w.ready();
    w.settle(100, 5_000);
    for attempt in 1..=2 {
        let a = w.hosts.get_mut(&id("a")).unwrap();
        a.replicas[0].state = ReplicaState::Failed;
        let plans = w.round();
        let op = &plans[0].1.ops[0];
        assert_eq!(
            op.action,
            Action::Start {
                slot: SlotId::replica("blog", 1),
                spec_version: 1,
                cause: StartCause::Restart {
                    attempt,
                    delay_ms: 1_000
                }
            }
        );
        // One operation per slot: the next round leaves the slot alone until it ends.
        assert!(w.round()[0].1.ops.is_empty());
        w.finish_ops();
        let reports = w.observed();
        assert_eq!(reports[&id("a")][0].restarts, attempt);
        w.now_ms += 100;
    }
    // Out of attempts: a third failure stays failed.
    w.hosts.get_mut(&id("a")).unwrap().replicas[0].state = ReplicaState::Failed;
    assert!(w.round()[0].1.ops.is_empty());
    // An exit (not a failure) is no reason under `on-failure`, whatever the count.
}

#[test]
fn a_failed_start_is_reported_and_waits_out_the_restart_delay() {
    let mut spec = blog(1, "img:1");
    spec.restart.delay_ms = 2_000;
    let mut w = World::new(&["a"], spec.clone());
    w.ready();
    let plans = w.round();
    let slot = plans[0].1.ops[0].action.slot().clone();
    let a = w.hosts.get_mut(&id("a")).unwrap();
    a.ops.clear();
    a.agent.done(
        &slot,
        Done::StartFailed {
            version: 1,
            template: spec.template_id(),
            error: "no such image".into(),
        },
        w.now_ms,
    );
    let reports = w.observed();
    let r = &reports[&id("a")][0];
    assert_eq!(r.state, ReplicaState::Failed);
    assert_eq!(r.error.as_deref(), Some("no such image"));
    assert_eq!(r.runtime_id, failed_start_id(&slot));
    assert_eq!(
        w.hosts
            .get_mut(&id("a"))
            .unwrap()
            .agent
            .start_failures_since(0),
        1
    );
    w.now_ms += 1_000;
    assert!(w.round()[0].1.ops.is_empty(), "still backing off");
    w.now_ms += 1_000;
    assert_eq!(w.round()[0].1.ops.len(), 1, "the delay is over");
}

#[test]
fn a_rollout_replaces_replicas_wave_by_wave() {
    let mut w = World::new(&["a", "b", "c"], blog(6, "img:1"));
    w.ready();
    w.settle(100, 10_000);
    let mut next = blog(6, "img:2");
    next.update.parallelism = 2;
    next.update.delay_ms = 500;
    next.update.monitor_ms = 0;
    let next = w.specs["blog"].followed_by(next, false);
    let template = next.template_id();
    w.specs.insert("blog".into(), next);
    let end = w.now_ms + 30_000;
    let mut most_outdated_gone = 0;
    while w.now_ms < end {
        let plans = w.round();
        let replacing = plans
            .iter()
            .flat_map(|(_, p)| &p.ops)
            .filter(|op| matches!(op.action, Action::Replace { .. }))
            .count();
        most_outdated_gone = most_outdated_gone.max(replacing);
        w.finish_ops();
        w.now_ms += 100;
    }
    assert!(
        most_outdated_gone <= 2,
        "waves of two: {most_outdated_gone} at once"
    );
    w.assert_converged();
    let all_new = w
        .hosts
        .values()
        .flat_map(|h| &h.replicas)
        .all(|r| r.template == template);
    assert!(all_new, "every replica runs the new template");
    let progress = w.board.progress("blog");
    assert!(
        progress
            .iter()
            .any(|p| p.state == RolloutState::Completed && p.wave == 3)
    );
}

#[test]
fn a_drained_host_hands_its_slots_over_and_a_paused_one_keeps_them() {
    let mut w = World::new(&["a", "b", "c"], blog(6, "img:1"));
    w.ready();
    w.settle(100, 10_000);
    // Pause b: it keeps what it runs and takes nothing new, even when c goes.
    let b_slots: Vec<SlotId> = w
        .runs()
        .into_iter()
        .filter(|(_, n)| n[0] == id("b"))
        .map(|(s, _)| s)
        .collect();
    let b = w.hosts.get_mut(&id("b")).unwrap();
    b.availability = Availability::Pause;
    b.kept.clone_from(&b_slots);
    w.hosts.get_mut(&id("c")).unwrap().up = false;
    w.settle(100, 10_000);
    w.assert_converged();
    let b_now: Vec<SlotId> = w
        .runs()
        .into_iter()
        .filter(|(_, n)| n[0] == id("b"))
        .map(|(s, _)| s)
        .collect();
    assert_eq!(b_now, b_slots, "a paused host keeps exactly what it ran");
    // Drain b: everything moves to a, and no slot goes unserved meanwhile.
    let b = w.hosts.get_mut(&id("b")).unwrap();
    b.availability = Availability::Drain;
    b.kept.clear();
    for _ in 0..100 {
        w.round();
        w.finish_ops();
        assert_eq!(w.runs().len(), 6, "a slot went unserved");
        w.now_ms += 100;
    }
    w.assert_converged();
    assert!(w.runs().values().all(|n| n[0] == id("a")));
}

#[test]
fn a_flapping_member_is_no_longer_waited_for() {
    let mut w = World::new(&["a", "b"], blog(2, "img:1"));
    w.ready();
    w.settle(100, 5_000);
    let mut settled_at_return = Vec::new();
    let mut notes = Vec::new();
    for _ in 0..5 {
        w.hosts.get_mut(&id("b")).unwrap().up = false;
        w.round();
        w.finish_ops();
        w.now_ms += 1_000;
        w.hosts.get_mut(&id("b")).unwrap().up = true;
        let plans = w.round();
        w.finish_ops();
        let a = &plans.iter().find(|(n, _)| *n == id("a")).unwrap().1;
        settled_at_return.push(a.settled);
        notes.extend(a.notes.iter().cloned());
        w.now_ms += 1_000;
    }
    // b's first sight and its next two returns hold a for SETTLE_MS; past
    // FLAP_RETURNS_MAX returns in the window, a acts at once.
    assert_eq!(settled_at_return, [false, false, true, true, true]);
    assert_eq!(
        notes,
        [Note::Flapping {
            node: id("b"),
            returns: settle::FLAP_RETURNS_MAX + 1
        }]
    );
    assert!(w.round().iter().all(|(_, p)| p.settled));
}

#[test]
fn a_restarted_host_waits_to_find_the_cluster_it_knew() {
    let mut agent = Agent::new(id("a"), 0);
    let alone = Members {
        active: BTreeMap::from([(id("a"), 2)]),
        knows_others: true,
        connected: false,
    };
    assert!(!agent.settled(&alone, SETTLE_MS).0);
    assert!(!agent.settled(&alone, settle::REJOIN_WAIT_MS - 1).0);
    assert!(agent.settled(&alone, settle::REJOIN_WAIT_MS).0);
}

#[test]
fn no_more_than_ops_max_operations_run_at_once() {
    let mut w = World::new(&["a"], blog(20, "img:1"));
    w.ready();
    let plans = w.round();
    assert_eq!(plans[0].1.ops.len(), OPS_MAX);
    assert!(w.round()[0].1.ops.is_empty(), "all eight still in flight");
    w.finish_ops();
    assert_eq!(w.round()[0].1.ops.len(), OPS_MAX);
    let busy: BTreeSet<SlotId> = w.hosts[&id("a")]
        .ops
        .iter()
        .map(|o| o.action.slot().clone())
        .collect();
    assert!(busy.iter().all(|s| w.hosts[&id("a")].agent.busy(s)));
}

#[test]
fn a_shared_coordinator_table_gives_what_each_agent_would_compute() {
    let specs: BTreeMap<String, ServiceSpec> = (0..40)
        .map(|i| {
            let mut s = blog(1, "img");
            s.name = format!("svc{i}");
            (s.name.clone(), s)
        })
        .collect();
    let nodes = ["a", "b", "c", "d", "e"];
    let members = |names: &[&str]| Members {
        active: names.iter().map(|n| (id(n), 1)).collect(),
        knows_others: true,
        connected: true,
    };
    let all = members(&nodes);
    for me in nodes {
        // `a` fills the table; `me` takes it; `alone` computes its own.
        let mut filler = Agent::new(id("a"), 0);
        let alive = filler.alive(&all);
        filler.coordinated_among(&alive, &specs);
        let mut sharer = Agent::new(id(me), 0);
        let mut alone = Agent::new(id(me), 0);
        let alive_sharer = sharer.alive(&all);
        sharer.share(filler.coordinators(), &alive_sharer, &specs);
        let own = alone.coordinated(&alive, &specs).clone();
        assert!(!own.is_empty(), "{me} coordinates some of 40 services");
        assert_eq!(sharer.coordinating(), &own, "{me}");
        assert_eq!(
            sharer.coordinated_among(&alive_sharer, &specs),
            &own,
            "{me}"
        );
    }
    // Every service has one coordinator among the five.
    let coordinated: usize = nodes
        .iter()
        .map(|me| {
            let mut agent = Agent::new(id(me), 0);
            let alive = agent.alive(&all);
            agent.coordinated_among(&alive, &specs).len()
        })
        .sum();
    assert_eq!(coordinated, specs.len());
    // A table over other members is not taken.
    let mut filler = Agent::new(id("a"), 0);
    let fewer = filler.alive(&members(&["a", "b"]));
    filler.coordinated_among(&fewer, &specs);
    let mut e = Agent::new(id("e"), 0);
    let alive = e.alive(&all);
    e.share(filler.coordinators(), &alive, &specs);
    assert!(
        e.coordinating().is_empty(),
        "nothing taken, nothing computed yet"
    );
    let mut alone = Agent::new(id("e"), 0);
    let own = alone.coordinated(&alive, &specs).clone();
    assert_eq!(e.coordinated_among(&alive, &specs), &own);
}
