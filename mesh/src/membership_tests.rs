//! The membership core in a tiny virtual network: no sockets, no clocks, one seed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use super::*;

enum Event {
    Packet {
        to: NodeId,
        bytes: Bytes,
    },
    Timer {
        node: NodeId,
        timer: MembershipTimer,
    },
    /// `node`'s transport saw `peer`'s port refused.
    Refused {
        node: NodeId,
        peer: PeerId,
    },
}

struct Net {
    nodes: BTreeMap<NodeId, Membership>,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Event>,
    seq: u64,
    now_ms: u64,
    dead: BTreeSet<NodeId>,
    /// Dead nodes whose host stays up: their port refuses datagrams.
    refusing: BTreeSet<NodeId>,
    /// Nodes that handle everything this many ms late (a starved CPU).
    slow: BTreeMap<NodeId, u64>,
    /// Store deltas each node's core handed out, in order.
    deltas: Vec<(NodeId, Delta)>,
}

fn peer(i: u8) -> PeerId {
    PeerId {
        node: NodeId::from_bytes([i; 16]),
        addr: format!("127.0.0.{i}:7946").parse().unwrap(),
        epoch: 1,
    }
}

impl Net {
    fn new(n: u8, profile: Profile) -> Self {
        let nodes = (1..=n)
            .map(|i| {
                (
                    peer(i).node,
                    Membership::new(peer(i), profile, u64::from(i), 0),
                )
            })
            .collect();
        Self {
            nodes,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            now_ms: 0,
            dead: BTreeSet::new(),
            refusing: BTreeSet::new(),
            slow: BTreeMap::new(),
            deltas: Vec::new(),
        }
    }

    fn push(&mut self, at_ms: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at_ms, self.seq)));
        self.events.insert(self.seq, event);
    }

    fn drain(&mut self, node: NodeId) {
        let mut outputs = Vec::new();
        let core = self.nodes.get_mut(&node).unwrap();
        while let Some(out) = core.poll_output() {
            outputs.push(out);
        }
        for out in outputs {
            match out {
                Output::Send { to, packet } => {
                    let late = self.slow.get(&to.node).copied().unwrap_or(0);
                    self.push(
                        self.now_ms + 1 + late,
                        Event::Packet {
                            to: to.node,
                            bytes: packet,
                        },
                    );
                }
                Output::Timer { after, timer } => {
                    let late = self.slow.get(&node).copied().unwrap_or(0);
                    let at = self.now_ms + u64::try_from(after.as_millis()).unwrap() + late;
                    self.push(at, Event::Timer { node, timer });
                }
                Output::CheckPort(peer) if self.refusing.contains(&peer.node) => {
                    self.push(self.now_ms + 1, Event::Refused { node, peer });
                }
                Output::Delta(delta) => self.deltas.push((node, delta)),
                _ => {}
            }
        }
    }

    fn run_until(&mut self, end_ms: u64) {
        while let Some(Reverse((at, seq))) = self.queue.peek().copied() {
            if at > end_ms {
                break;
            }
            self.queue.pop();
            self.now_ms = at;
            let event = self.events.remove(&seq).unwrap();
            let node = match &event {
                Event::Packet { to, .. } => *to,
                Event::Timer { node, .. } | Event::Refused { node, .. } => *node,
            };
            if self.dead.contains(&node) {
                continue;
            }
            let now = self.now_ms;
            let core = self.nodes.get_mut(&node).unwrap();
            match event {
                Event::Packet { bytes, .. } => {
                    let _ = core.handle_packet(&bytes, now);
                }
                Event::Timer { timer, .. } => {
                    let _ = core.handle_timer(timer, now);
                }
                Event::Refused { peer, .. } => {
                    let _ = core.handle_refused(peer, now);
                }
            }
            self.drain(node);
            if at % 200 == 0 {
                let _ = self.nodes.get_mut(&node).unwrap().sync(now);
            }
        }
        self.now_ms = end_ms;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            if !self.dead.contains(&id) {
                let _ = self.nodes.get_mut(&id).unwrap().sync(end_ms);
                self.drain(id);
            }
        }
    }

    fn state_of(&self, observer: u8, subject: u8) -> Option<MemberState> {
        self.nodes[&peer(observer).node]
            .member(&peer(subject).node)
            .map(|r| r.state)
    }
}

fn joined(n: u8, profile: Profile) -> Net {
    let mut net = Net::new(n, profile);
    for i in 2..=n {
        let node = peer(i).node;
        net.nodes
            .get_mut(&node)
            .unwrap()
            .announce(peer(1), 0)
            .unwrap();
        net.drain(node);
    }
    net.run_until(5_000);
    net
}

#[test]
fn peers_join_through_one_seed() {
    let net = joined(5, Profile::Fast);
    for observer in 1..=5 {
        for subject in 1..=5 {
            assert_eq!(
                net.state_of(observer, subject),
                Some(MemberState::Alive),
                "{observer} sees {subject}"
            );
        }
        assert_eq!(
            net.nodes[&peer(observer).node].connection(),
            Connection::Active
        );
    }
}

#[test]
fn a_silent_member_is_declared_down_within_the_profile_bound() {
    let mut net = joined(5, Profile::Fast);
    net.dead.insert(peer(4).node);
    let killed_at = net.now_ms;
    let bound = u64::try_from(Profile::Fast.detection_bound(5).as_millis()).unwrap();
    net.run_until(killed_at + bound);
    for observer in [1, 2, 3, 5] {
        assert_eq!(
            net.state_of(observer, 4),
            Some(MemberState::Down),
            "{observer} sees 4"
        );
    }
}

#[test]
fn a_leaver_is_left_not_down() {
    let mut net = joined(4, Profile::Lan);
    let node = peer(2).node;
    let now = net.now_ms;
    net.nodes.get_mut(&node).unwrap().leave(now).unwrap();
    net.drain(node);
    net.run_until(now + 1_000);
    for observer in [1, 3, 4] {
        assert_eq!(
            net.state_of(observer, 2),
            Some(MemberState::Left),
            "{observer} sees 2"
        );
    }
}

#[test]
fn a_restarted_member_replaces_its_old_incarnation() {
    let mut net = joined(3, Profile::Fast);
    let node = peer(3).node;
    let restarted = PeerId {
        epoch: 2,
        ..peer(3)
    };
    net.nodes.insert(
        node,
        Membership::new(restarted, Profile::Fast, 99, net.now_ms),
    );
    let now = net.now_ms;
    net.nodes
        .get_mut(&node)
        .unwrap()
        .announce(peer(1), now)
        .unwrap();
    net.drain(node);
    net.run_until(now + 3_000);
    for observer in [1, 2] {
        let record = net.nodes[&peer(observer).node]
            .member(&node)
            .copied()
            .unwrap();
        assert_eq!(record.peer.epoch, 2);
        assert_eq!(record.state, MemberState::Alive);
        assert_eq!(net.nodes[&peer(observer).node].members().count(), 3);
    }
}

#[test]
fn a_revoked_member_stays_out_whatever_is_heard_of_it() {
    let mut net = joined(4, Profile::Fast);
    let gone = peer(4).node;
    let revoked = BTreeSet::from([gone]);
    for observer in 1..=3 {
        let core = net.nodes.get_mut(&peer(observer).node).unwrap();
        let before = core.version();
        core.revoke(&revoked);
        assert!(core.version() > before, "the table changed");
    }
    // It comes back in a new epoch and announces itself: still out.
    let restarted = PeerId {
        epoch: 2,
        ..peer(4)
    };
    net.nodes.insert(
        gone,
        Membership::new(restarted, Profile::Fast, 77, net.now_ms),
    );
    let now = net.now_ms;
    net.nodes
        .get_mut(&gone)
        .unwrap()
        .announce(peer(1), now)
        .unwrap();
    net.drain(gone);
    net.run_until(now + 3_000);
    for observer in 1..=3 {
        let core = &net.nodes[&peer(observer).node];
        assert!(
            core.member(&gone).is_none(),
            "{observer} lists the revoked node"
        );
        assert_eq!(core.members().count(), 3, "{observer}");
    }
    // A node never removes itself from its own table.
    let first = net.nodes.get_mut(&peer(1).node).unwrap();
    first.revoke(&BTreeSet::from([peer(1).node]));
    assert!(first.member(&peer(1).node).is_some());
}

#[test]
fn a_signed_replica_report_still_rides_on_gossip() {
    let mut net = joined(3, Profile::Fast);
    let now = net.now_ms;
    let writer = peer(1).node;
    let key = crate::store::owned_key(&writer, "r/blog.3-0123456789ab");
    let delta = |len| Delta {
        key: key.clone(),
        stamp: crate::store::Stamp {
            clock: now << 16,
            writer,
        },
        value: Some(vec![b'x'; len]),
        sig: vec![7; crate::trust::SIGNATURE_BYTES],
    };
    let core = net.nodes.get_mut(&writer).unwrap();
    assert!(
        !core.spread(&delta(RUMOR_MAX_BYTES), now),
        "too big: the mesh pushes it"
    );
    // A replica report is about 250 bytes of JSON; 400, signed, still fits.
    assert!(core.spread(&delta(400), now));
    net.drain(writer);
    net.run_until(now + 3_000);
    for other in [peer(2).node, peer(3).node] {
        assert!(
            net.deltas
                .iter()
                .any(|(at, d)| *at == other && *d == delta(400)),
            "the rumor reached {}",
            other.short()
        );
    }
}

/// When each observer recorded `subject` down, in ms after `since`, if it did.
fn down_after(net: &Net, observers: &[u8], subject: u8, since: u64) -> Vec<Option<u64>> {
    observers
        .iter()
        .map(|o| {
            net.nodes[&peer(*o).node]
                .member(&peer(subject).node)
                .filter(|r| r.state == MemberState::Down)
                .map(|r| r.since_ms - since)
        })
        .collect()
}

#[test]
fn confirmed_suspicions_end_sooner_than_a_lone_one_could() {
    // 10 members, one cut off (no refusal: a dead host or a cut link). Every survivor
    // checks the suspect itself and confirms, so the suspicion ends at the shortest
    // timeout. Unconfirmed, no member could declare it down before one probe period and
    // the longest timeout had passed.
    let mut net = joined(10, Profile::Fast);
    net.dead.insert(peer(7).node);
    let killed_at = net.now_ms;
    net.run_until(killed_at + 10_000);
    let bounds = Profile::Fast.suspicion_bounds(10);
    let lone_ms = 500 + u64::try_from(bounds.max.as_millis()).unwrap();
    let observers = [1, 2, 3, 4, 5, 6, 8, 9, 10];
    let downs = down_after(&net, &observers, 7, killed_at);
    for (o, down) in observers.iter().zip(&downs) {
        let down = down.unwrap_or_else(|| panic!("{o} does not see 7 down"));
        assert!(
            down < lone_ms,
            "{o} saw 7 down after {down} ms (lone: {lone_ms})"
        );
    }
}

#[test]
fn a_refused_port_is_a_failed_probe_and_a_confirmation() {
    // The peer process died and its host refuses datagrams: its prober, which checks the
    // port with its probe, suspects it one ping later instead of at the end of its probe
    // period, and every member that checks it confirms at once instead of after the probe
    // timeout.
    let run = |refusing: bool| {
        let mut net = joined(5, Profile::Fast);
        net.dead.insert(peer(5).node);
        if refusing {
            net.refusing.insert(peer(5).node);
        }
        let killed_at = net.now_ms;
        let mut first_suspect = None;
        for step in 1..=1_000 {
            net.run_until(killed_at + step * 10);
            if first_suspect.is_none()
                && (1..=4).any(|o| net.state_of(o, 5) == Some(MemberState::Suspect))
            {
                first_suspect = Some(step * 10);
            }
        }
        let downs = down_after(&net, &[1, 2, 3, 4], 5, killed_at);
        let down = downs.iter().map(|d| d.expect("seen down")).max().unwrap();
        (first_suspect.expect("suspected"), down)
    };
    let (silent_suspect, silent_down) = run(false);
    let (refused_suspect, refused_down) = run(true);
    // The port is checked with the probe itself: the suspicion comes one probe timeout
    // (200 ms) after the ping, not at the end of the probe period (500 ms).
    let rtt = u64::try_from(Profile::Fast.config(5).probe_rtt.as_millis()).unwrap();
    assert!(
        refused_suspect + rtt <= silent_suspect,
        "suspected after {refused_suspect} ms refused, {silent_suspect} ms silent"
    );
    assert!(
        refused_down + rtt <= silent_down,
        "down after {refused_down} ms refused, {silent_down} ms silent"
    );
}

#[test]
fn a_dead_peer_process_is_found_by_the_sweep_wherever_the_kill_falls() {
    // Wherever the kill falls in the members' probe cycles, a survivor checks the dead
    // member's port within about one sweep period (each checks one member per period, out
    // of step with the others), pings it, and suspects it one probe timeout later, without
    // waiting for its turn to be probed (up to a few probe periods).
    let profile = Profile::Fast;
    let sweep = profile.port_sweep_ms();
    let rtt = u64::try_from(profile.config(5).probe_rtt.as_millis()).unwrap();
    let mut firsts = Vec::new();
    for offset in (0..20).map(|i| i * 53) {
        let mut net = joined(5, profile);
        let killed_at = 5_000 + offset;
        net.run_until(killed_at);
        net.dead.insert(peer(5).node);
        net.refusing.insert(peer(5).node);
        let mut first = None;
        for step in 1..=600 {
            net.run_until(killed_at + step * 5);
            if (1..=4).any(|o| net.state_of(o, 5) == Some(MemberState::Suspect)) {
                first = Some(step * 5);
                break;
            }
        }
        firsts.push(first.unwrap_or_else(|| panic!("kill at +{offset} ms: never suspected")));
    }
    firsts.sort_unstable();
    let (median, worst) = (firsts[firsts.len() / 2], firsts[firsts.len() - 1]);
    assert!(
        median <= sweep + rtt + 10 && worst <= 4 * sweep + rtt + 10,
        "first suspicion after {firsts:?} ms (sweep {sweep} ms, probe timeout {rtt} ms)"
    );
}

#[test]
fn a_starved_member_distrusts_itself_and_accuses_no_healthy_one() {
    // Member 5 handles everything 400 ms late (longer than the probe timeout): its acks
    // are late, so it is suspected and refutes, and its own probes time out. Its local
    // health must fall, and no healthy member may ever be declared down.
    let mut net = joined(5, Profile::Fast);
    net.slow.insert(peer(5).node, 400);
    let start = net.now_ms;
    let mut worst = 0;
    for step in 1..=60 {
        net.run_until(start + step * 1_000);
        worst = worst.max(net.nodes[&peer(5).node].local_health());
        for observer in 1..=5 {
            for subject in 1..=4 {
                assert_ne!(
                    net.state_of(observer, subject),
                    Some(MemberState::Down),
                    "{observer} declared healthy {subject} down at {step} s"
                );
            }
        }
    }
    assert!(worst > 0, "the starved member never distrusted itself");
    for observer in 1..=4 {
        assert_eq!(
            net.nodes[&peer(observer).node].local_health(),
            0,
            "{observer}"
        );
    }
}
