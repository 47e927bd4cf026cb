//! A tiny network of node cores in virtual time, for the core's tests: outputs become
//! events on one queue (packets and pushes 1 ms later, exchanges run in memory), fake keys,
//! no sockets, no clock, a step budget on every run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{CoreConfig, Input, NodeCore, Output, TimerQueue, sync_pair};
use crate::codec;
use crate::id::{NodeId, PeerId};
use crate::profile::Profile;
use crate::store::Store;
use crate::trust::test_keys::{FakeSigner, FakeVerifier, cert};

/// Virtual time at the start, in ms (stamps look like wall-clock ones).
pub(super) const START_MS: u64 = 1_000_000_000;
/// How long a packet, a push or the start of an exchange takes, in ms.
const LATENCY_MS: u64 = 1;
/// Events handled in one run at most: a run that does not settle fails.
const STEPS_MAX: usize = 2_000_000;

enum Event {
    /// Hand `input` to `node`.
    Input(NodeId, Input),
    /// Run an exchange that `from` started with `to`.
    Exchange { from: NodeId, to: PeerId },
}

pub(super) struct Net {
    pub(super) cores: BTreeMap<NodeId, NodeCore>,
    events: TimerQueue<Event, u64>,
    pub(super) now_ms: u64,
    /// Nodes cut off: packets, pushes and exchanges to or from them are lost.
    pub(super) cut: BTreeSet<NodeId>,
    /// Pushes to these nodes are lost.
    pub(super) lose_pushes_to: BTreeSet<NodeId>,
    /// (receiver, sender) pairs whose connection handed in the sender's certificate, as
    /// the transport does once per connection.
    certs_told: BTreeSet<(NodeId, NodeId)>,
    /// Every output, in order, with the time and the node: what must reproduce.
    pub(super) log: Vec<String>,
    /// Pushes and exchanges started, per node.
    pub(super) pushes: BTreeMap<NodeId, usize>,
    pub(super) exchanges: BTreeMap<NodeId, usize>,
}

pub(super) fn peer(i: u8) -> PeerId {
    PeerId {
        node: NodeId::from_bytes([i; 16]),
        addr: format!("127.0.0.{i}:7946").parse().unwrap(),
        epoch: 1,
    }
}

pub(super) fn core(i: u8, seed: u64, sync_period_ms: u64, now_ms: u64) -> NodeCore {
    let me = peer(i);
    let config = CoreConfig {
        identity: me,
        profile: Profile::Fast,
        store: Store::new(me.node),
        sync_period_ms,
        clock_skew_max_ms: 60_000,
        cert_der: cert(&me.node),
        seed: seed.wrapping_mul(31).wrapping_add(u64::from(i)),
    };
    let signer = Box::new(FakeSigner(me.node));
    NodeCore::new(config, signer, Box::new(FakeVerifier::default()), now_ms)
}

impl Net {
    /// `n` cores (nodes 1..=n), each announced to node 1, not yet run.
    pub(super) fn new(n: u8, seed: u64, sync_period_ms: u64) -> Self {
        let mut net = Self {
            cores: BTreeMap::new(),
            events: TimerQueue::new(),
            now_ms: START_MS,
            cut: BTreeSet::new(),
            lose_pushes_to: BTreeSet::new(),
            certs_told: BTreeSet::new(),
            log: Vec::new(),
            pushes: BTreeMap::new(),
            exchanges: BTreeMap::new(),
        };
        for i in 1..=n {
            net.add(core(i, seed, sync_period_ms, START_MS));
            if i > 1 {
                net.input(peer(i).node, Input::Announce(peer(1)));
            }
        }
        net
    }

    /// Adds a core (started at any time) and drains its first outputs.
    pub(super) fn add(&mut self, core: NodeCore) {
        let node = core.view().me.node;
        self.cores.insert(node, core);
        self.drain(node);
    }

    pub(super) fn core(&self, i: u8) -> &NodeCore {
        &self.cores[&peer(i).node]
    }

    /// Hands `input` to node `node` now and drains it.
    pub(super) fn input(&mut self, node: NodeId, input: Input) {
        let now = self.now_ms;
        self.cores.get_mut(&node).unwrap().handle(input, now);
        self.drain(node);
    }

    /// Writes `key` on node `i`.
    pub(super) fn put(&mut self, i: u8, key: &str, value: &[u8]) {
        let input = Input::Put {
            key: key.into(),
            value: Some(value.to_vec()),
        };
        self.input(peer(i).node, input);
    }

    fn at(&mut self, after: Duration, event: Event) {
        let after_ms = u64::try_from(after.as_millis()).unwrap();
        self.events.push(self.now_ms + after_ms, event);
    }

    fn lost(&self, a: &NodeId, b: &NodeId) -> bool {
        self.cut.contains(a) || self.cut.contains(b)
    }

    fn drain(&mut self, node: NodeId) {
        let latency = Duration::from_millis(LATENCY_MS);
        while let Some(output) = self.cores.get_mut(&node).unwrap().poll_output() {
            self.log
                .push(format!("{} {} {output:?}", self.now_ms, node.short()));
            match output {
                Output::Send { to, packet } => {
                    if !self.lost(&node, &to.node) && self.cores.contains_key(&to.node) {
                        self.at(latency, Event::Input(to.node, Input::Packet(packet)));
                    }
                }
                Output::Timer { after, timer } => {
                    self.at(after, Event::Input(node, Input::Timer(timer)))
                }
                Output::Exchange(to) => {
                    *self.exchanges.entry(node).or_default() += 1;
                    self.at(latency, Event::Exchange { from: node, to });
                }
                Output::Push { to, deltas } => {
                    *self.pushes.entry(node).or_default() += 1;
                    if !self.lost(&node, &to.node) && !self.lose_pushes_to.contains(&to.node) {
                        self.at(latency, Event::Input(to.node, Input::Merge(deltas)));
                    }
                    self.at(latency, Event::Input(node, Input::PushEnded));
                }
                Output::Written(_)
                | Output::View(_)
                | Output::StoreChanged
                | Output::Revoked(_)
                | Output::CheckPort(_) => {}
            }
        }
    }

    /// Runs every event due in the next `ms` milliseconds.
    pub(super) fn run_for(&mut self, ms: u64) {
        let end = self.now_ms + ms;
        for _ in 0..STEPS_MAX {
            let Some((due, event)) = self.events.pop_due(end) else {
                self.now_ms = end;
                return;
            };
            self.now_ms = due;
            match event {
                Event::Input(node, input) => self.deliver(node, input),
                Event::Exchange { from, to } => self.exchange(from, to),
            }
        }
        panic!("the network did not settle within {STEPS_MAX} steps");
    }

    fn deliver(&mut self, node: NodeId, input: Input) {
        if let Input::Packet(packet) = &input {
            let from = codec::packet_source(packet).unwrap().node;
            if self.certs_told.insert((node, from)) {
                let cert_der = cert(&from);
                self.input(
                    node,
                    Input::PeerCert {
                        node: from,
                        cert_der,
                    },
                );
            }
        }
        self.input(node, input);
    }

    fn exchange(&mut self, from: NodeId, to: PeerId) {
        if !self.lost(&from, &to.node) && self.cores.contains_key(&to.node) && from != to.node {
            let mut initiator = self.cores.remove(&from).unwrap();
            let responder = self.cores.get_mut(&to.node).unwrap();
            sync_pair(&mut initiator, responder, self.now_ms);
            self.cores.insert(from, initiator);
            self.drain(to.node);
        }
        self.input(from, Input::ExchangeEnded(to));
    }

    /// Whether every core sees every core alive.
    pub(super) fn converged(&self) -> bool {
        self.cores.values().all(|core| {
            let view = core.view();
            view.members.len() == self.cores.len()
                && view
                    .members
                    .iter()
                    .all(|m| m.state == crate::MemberState::Alive)
        })
    }
}
