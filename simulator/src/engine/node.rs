//! The hosts' node cores (`store = true`): each host runs the whole node core of the peer,
//! [`NodeCore`] — membership, the replicated store, the trust gate, the choice of rumor or
//! push, anti-entropy — instead of the bare membership core, driven as the QUIC driver
//! drives it:
//!
//! - its packets travel the network model as the bare core's do (latency, jitter, loss,
//!   partitions, one-way cuts); the first packet from each sender also hands in that
//!   sender's certificate, as a new connection does;
//! - its timers, and the ends of its pushes and exchanges, come back through the event
//!   heap;
//! - a push (a write too big for a rumor) arrives one latency later, and an anti-entropy
//!   exchange runs in memory between the two hosts' cores two round trips after it was
//!   asked for, with the steps of `knit_mesh::node_core::sync_pair`, its messages' bytes
//!   counted as the QUIC driver counts them (see [`crate::traffic`]). Both ride on QUIC
//!   streams, which retransmit, so they are not subject to loss; but they need the link up
//!   both ways and the other host up, else they fail after the transport's dial timeout
//!   ([`DIAL_TIMEOUT_MS`]);
//! - the view the core publishes is compared with the last one member by member, and each
//!   change reaches the agent and the metrics as the bare core's `Changed` outputs do.
//!
//! Signatures are the simulator's own, not secure ([`crate::keys`]). A killed host keeps
//! its store, as the peer keeps `state.bin`, and starts again from it (all of it: the
//! peer's last writes before a crash may be missing from its file; here none are). A host's
//! core is made at the start, but its first outputs (its timers among them) are taken when
//! the host first announces itself or hears from another, so that the hosts' periodic timers
//! run out of phase.
//!
//! Every change of a host's store updates a signature of it (its bucket summary and its
//! size); the stores have converged while every live host holds the same signature
//! ([`StoreWatch`]).

use std::collections::BTreeMap;

use bytes::Bytes;
use knit_mesh::node_core::{CoreConfig, Input, NodeCore, Output, View};
use knit_mesh::store::Store;
use knit_mesh::trust::CLOCK_SKEW_MAX_MS_DEFAULT;
use knit_mesh::{Membership, PeerId};

use super::{Engine, Event, host_of, peer_of};
use crate::keys::{SimSigner, SimVerifier, cert};
use crate::traffic::SyncBytes;

/// How long a dial to a host that cannot be reached takes to fail, in ms (the transport's
/// `CONNECT_TIMEOUT`): a push or an exchange over a cut link ends after it.
pub(super) const DIAL_TIMEOUT_MS: u64 = 2_000;

/// What a host runs: the bare membership core, or the whole node core.
// One per host, made at start and restart and never moved: the default, the membership
// core, stays inline as it was; the node core is boxed.
#[allow(clippy::large_enum_variant)]
pub(super) enum Core {
    /// The membership core alone (`store = false`): the cheaper default.
    Membership(Membership),
    /// The whole node core (`store = true`).
    Node(Box<NodeCore>),
}

impl Core {
    /// The membership core, inside the node core or alone.
    pub(super) fn membership(&self) -> &Membership {
        match self {
            Core::Membership(core) => core,
            Core::Node(core) => core.membership(),
        }
    }

    /// The replicated store, with the node core.
    pub(super) fn store(&self) -> Option<&Store> {
        match self {
            Core::Membership(_) => None,
            Core::Node(core) => Some(core.store()),
        }
    }
}

/// Whether the hosts' stores agree, and since when.
#[derive(Debug, Default)]
pub(super) struct StoreWatch {
    /// Each host's store signature; `None` while it is down (or runs no store).
    sig: Vec<Option<u64>>,
    /// How many live hosts hold each signature.
    holders: BTreeMap<u64, usize>,
    /// Since when every live host holds the same store; `None` while they differ.
    equal_since_ms: Option<u64>,
    /// The last write or fault that could make the stores differ.
    disturbed_ms: u64,
}

impl StoreWatch {
    /// Sets host `h`'s signature (`None`: it went down) at `now_ms`.
    fn set(&mut self, h: usize, sig: Option<u64>, now_ms: u64) {
        if self.sig.len() <= h {
            self.sig.resize(h + 1, None);
        }
        if self.sig[h] == sig {
            return;
        }
        if let Some(old) = self.sig[h].take()
            && let Some(n) = self.holders.get_mut(&old)
        {
            *n -= 1;
            if *n == 0 {
                self.holders.remove(&old);
            }
        }
        if let Some(new) = sig {
            *self.holders.entry(new).or_default() += 1;
        }
        self.sig[h] = sig;
        if self.holders.len() > 1 {
            self.equal_since_ms = None;
        } else if self.equal_since_ms.is_none() {
            self.equal_since_ms = Some(now_ms);
        }
    }

    /// Something happened at `now_ms` that could make the stores differ.
    pub(super) fn disturbed(&mut self, now_ms: u64) {
        self.disturbed_ms = now_ms;
    }

    /// How long after the last write or fault every live host held the same store (0 if
    /// they never stopped agreeing); `None` while they differ.
    pub(super) fn converged_ms(&self) -> Option<u64> {
        self.equal_since_ms
            .map(|since| since.saturating_sub(self.disturbed_ms))
    }
}

/// Runs one anti-entropy exchange between two node cores in memory, step by step as
/// `knit_mesh::node_core::sync_pair` does (and as the QUIC driver does message by
/// message), and counts each message's bytes as the driver counts them. The caller tells
/// the initiator that the exchange ended and drains both cores.
fn exchange_counted(initiator: &mut NodeCore, responder: &mut NodeCore, now_ms: u64) -> SyncBytes {
    let mut bytes = SyncBytes {
        exchanges: 1,
        ..SyncBytes::default()
    };
    let (summary, initiator_fresh) = initiator.summary();
    bytes.summary(&summary);
    let (buckets, digest, responder_fresh) = responder.differ(&summary, initiator_fresh);
    if !buckets.is_empty() {
        bytes.buckets(&buckets);
        bytes.digest(&digest);
        let (for_responder, initiator_digest) =
            initiator.exchange(&digest, &buckets, responder_fresh);
        bytes.deltas(&for_responder);
        bytes.digest(&initiator_digest);
        responder.handle(Input::Merge(for_responder), now_ms);
        let for_initiator = responder.missing(&initiator_digest, &buckets);
        bytes.deltas(&for_initiator);
        initiator.handle(Input::Merge(for_initiator), now_ms);
    }
    initiator.handle(Input::Synced(responder_fresh), now_ms);
    responder.handle(Input::Synced(initiator_fresh), now_ms);
    bytes
}

/// A signature of a store's contents: its bucket summary (every key and stamp) and size.
fn signature(store: &Store) -> u64 {
    let mut h = store.len() as u64;
    for bucket in store.summary() {
        h = (h ^ bucket)
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(17);
    }
    h
}

impl Engine {
    /// A new core for host `h` as `peer`: the node core from `store` (empty when `None`)
    /// when the scenario runs stores, else the bare membership core.
    pub(super) fn new_core(&self, h: usize, peer: PeerId, store: Option<Store>) -> Core {
        let seed = self.core_seed(h, peer.epoch);
        if !self.store {
            return Core::Membership(Membership::new(peer, self.profile, seed, self.now_ms));
        }
        let config = CoreConfig {
            identity: peer,
            profile: self.profile,
            store: store.unwrap_or_else(|| Store::new(peer.node)),
            sync_period_ms: self.profile.anti_entropy_period_ms(),
            clock_skew_max_ms: CLOCK_SKEW_MAX_MS_DEFAULT,
            cert_der: cert(&peer.node),
            seed,
        };
        let signer = Box::new(SimSigner(peer.node));
        let verifier = Box::new(SimVerifier::default());
        Core::Node(Box::new(NodeCore::new(
            config,
            signer,
            verifier,
            self.now_ms,
        )))
    }

    /// Hands `input` to host `h`'s node core (if it runs one) and carries out its outputs.
    pub(super) fn node_input(&mut self, h: usize, input: Input) {
        let now = self.now_ms;
        let Some(Core::Node(core)) = self.hosts[h].core.as_mut() else {
            return;
        };
        core.handle(input, now);
        self.drain_node(h);
    }

    /// A gossip packet from host `from` reaches host `to`'s node core, after `from`'s
    /// certificate the first time (as a new connection hands it in).
    pub(super) fn node_packet(&mut self, to: usize, from: usize, bytes: Bytes) {
        if self.hosts[to].certs_from.insert(from) {
            let node = peer_of(from, 1).node;
            let cert_der = cert(&node);
            self.node_input(to, Input::PeerCert { node, cert_der });
        }
        self.node_input(to, Input::Packet(bytes));
    }

    /// Host `h` writes `bytes` bytes under `key` (a `write` fault).
    pub(super) fn write(&mut self, h: usize, key: String, bytes: usize) {
        self.stores.disturbed(self.now_ms);
        // Stamped with the time, so two writes of one key differ.
        let stamp = self.now_ms.to_le_bytes();
        let value = (0..bytes).map(|i| stamp[i % 8] ^ (i % 251) as u8).collect();
        self.node_input(
            h,
            Input::Put {
                key,
                value: Some(value),
            },
        );
    }

    /// Carries out every output of host `h`'s node core.
    pub(super) fn drain_node(&mut self, h: usize) {
        let mut outputs = Vec::new();
        if let Some(Core::Node(core)) = self.hosts[h].core.as_mut() {
            while let Some(out) = core.poll_output() {
                outputs.push(out);
            }
        }
        let inc = self.hosts[h].inc;
        for out in outputs {
            match out {
                Output::Send { to, packet } => self.send(h, &to, packet),
                Output::Timer { after, timer } => {
                    let after = u64::try_from(after.as_millis()).unwrap_or(u64::MAX / 4);
                    let input = Input::Timer(timer);
                    self.push(
                        self.now_ms + after,
                        Event::Node {
                            host: h,
                            inc,
                            input,
                        },
                    );
                }
                Output::Exchange(to) => {
                    let latency = self.network.latency_ms();
                    let event = Event::Exchange { from: h, inc, to };
                    self.push(self.now_ms + 4 * latency, event);
                }
                Output::Push { to, deltas } => self.push_deltas(h, &to, deltas),
                Output::View(view) => self.absorb_view(h, &view),
                Output::StoreChanged => self.store_changed(h),
                Output::CheckPort(peer) => self.check_port(h, inc, &peer),
                Output::Written(_) | Output::Revoked(_) => {}
            }
        }
    }

    /// Whether hosts `a` and `b` can hold a connection: both up, the link up both ways.
    fn linked(&self, a: usize, b: usize) -> bool {
        b < self.hosts.len()
            && a != b
            && self.hosts[b].up
            && self.network.reachable(a, b)
            && self.network.reachable(b, a)
    }

    /// A push from host `h`: the deltas reach `to` one latency later and the push ends a
    /// round trip after it started, or it fails after the dial timeout.
    fn push_deltas(&mut self, h: usize, to: &PeerId, deltas: Vec<knit_mesh::store::Delta>) {
        let o = host_of(to);
        let inc = self.hosts[h].inc;
        let latency = self.network.latency_ms();
        let ended_after = if self.linked(h, o) {
            let mut bytes = SyncBytes::default();
            bytes.deltas(&deltas);
            self.traffic.synced(&bytes);
            let input = Input::Merge(deltas);
            let event = Event::Node {
                host: o,
                inc: self.hosts[o].inc,
                input,
            };
            self.push(self.now_ms + latency, event);
            2 * latency
        } else {
            DIAL_TIMEOUT_MS
        };
        let input = Input::PushEnded;
        self.push(
            self.now_ms + ended_after,
            Event::Node {
                host: h,
                inc,
                input,
            },
        );
    }

    /// Runs the exchange host `from` (incarnation `inc`) started with `to`, in memory, if
    /// they are linked; then tells `from` it ended (at once, or after the dial timeout).
    pub(super) fn exchange(&mut self, from: usize, inc: u64, to: PeerId) {
        if self.hosts[from].inc != inc {
            return;
        }
        let o = host_of(&to);
        if !self.linked(from, o) {
            let input = Input::ExchangeEnded(to);
            let event = Event::Node {
                host: from,
                inc,
                input,
            };
            self.push(self.now_ms + DIAL_TIMEOUT_MS, event);
            return;
        }
        let now = self.now_ms;
        let mut initiator = self.hosts[from].core.take();
        if let (Some(Core::Node(a)), Some(Core::Node(b))) =
            (initiator.as_mut(), self.hosts[o].core.as_mut())
        {
            let bytes = exchange_counted(a, b, now);
            self.traffic.synced(&bytes);
        }
        self.hosts[from].core = initiator;
        self.drain_node(o);
        self.node_input(from, Input::ExchangeEnded(to));
    }

    /// Feeds each member whose state or epoch changed in host `h`'s new view to the agent
    /// and the metrics, as the bare core's `Changed` outputs are.
    fn absorb_view(&mut self, h: usize, view: &View) {
        let seen = &mut self.hosts[h].seen;
        let mut changed = Vec::new();
        for record in &view.members {
            let o = host_of(&record.peer);
            if o == h || o >= seen.len() {
                continue;
            }
            let now = Some((record.state, record.peer.epoch));
            if seen[o] != now {
                seen[o] = now;
                changed.push(*record);
            }
        }
        for record in changed {
            self.track(h, &record);
            self.changed(h, record);
        }
    }

    /// Host `h`'s store changed (or the host went down): updates the watch.
    pub(super) fn store_changed(&mut self, h: usize) {
        let host = &self.hosts[h];
        let sig = host
            .core
            .as_ref()
            .filter(|_| host.up)
            .and_then(Core::store)
            .map(signature);
        self.stores.set(h, sig, self.now_ms);
    }
}
