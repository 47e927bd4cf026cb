//! The node core: everything a peer of the mesh decides, with no IO.
//!
//! One [`NodeCore`] owns the membership core, the replicated store, the trust gate and the
//! backlog of deltas waiting for it, the list of removed nodes, and every choice the mesh
//! makes: whether a write spreads as a rumor or is pushed to every member, which member to
//! run anti-entropy with and when, when to collect tombstones. Inputs arrive through
//! [`NodeCore::handle`] with the current time (wall clock, ms); what the core wants done
//! comes back from [`NodeCore::poll_output`]: packets to send, exchanges and pushes to run,
//! timers to arm (relative, handed back as [`Input::Timer`]), the view and the store when
//! they change. The steps of an anti-entropy exchange are plain calls ([`NodeCore::summary`]
//! and the others in `exchange`) that the driver makes as the exchange's messages arrive.
//!
//! Every random choice comes from one seeded generator and members are visited in node id
//! order, so the same seed and the same inputs give the same outputs. Signing and checking
//! signatures go through [`Signer`] and [`Verifier`]: the core knows no cryptography, no
//! sockets and no runtime. The QUIC transport (`quic`) and the simulator drive the same
//! core; tests drive it in virtual time with fake keys.

mod event;
mod exchange;
mod timers;

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

pub use event::{Input, Output, Timer, View};
pub use exchange::sync_pair;
pub use timers::TimerQueue;

use crate::id::{NodeId, PeerId};
use crate::membership::{self, Connection, Membership};
use crate::profile::Profile;
use crate::store::{Delta, Store};
use crate::trust::{CertCheck, Gate, Signer, Tally, Verifier, cert_key, cert_owner};

/// How often member states are re-derived from foca, in ms.
pub const MEMBER_SYNC_PERIOD_MS: u64 = 1_000;
/// Deltas from other members checked per turn: a signature check costs about 60 us, so a
/// turn stays under about 15 ms however big an anti-entropy batch is.
pub const ADMIT_CHUNK: usize = 256;
/// Deltas waiting for the gate at most; past it new ones are dropped (and counted as
/// dropped unverified): anti-entropy offers them again. Exchanges wait while it is over
/// half full, so a big state arrives paced rather than dropped.
pub const BACKLOG_MAX: usize = 65_536;
/// Bytes of keys and values waiting for the gate at most, likewise.
pub const BACKLOG_MAX_BYTES: usize = 256 * 1024 * 1024;
/// How often tombstones are collected, in ms.
pub const COLLECT_PERIOD_MS: u64 = 60_000;
/// A member that has run this long (ms), completing exchanges, without meeting a fresh
/// member counts as fresh: the whole cluster was down (a member that was away alone meets a
/// fresh one within seconds, and rebases).
pub const STALE_WAIT_MS: u64 = 600_000;
/// Pushes of big writes in flight at most; past it a write waits for anti-entropy.
pub const PUSHES_MAX: usize = 64;
/// How long after announcing to a seed the store is filled from it, in ms: the announce
/// lands first, so the seed knows this node.
pub const FILL_DELAY_MS: u64 = 100;
/// Refused store writes are logged at most this often, in ms (counted every time).
pub const REFUSAL_LOG_PERIOD_MS: u64 = 60_000;

/// How to start a [`NodeCore`].
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// This node's identity (node id, advertised address, epoch of this start).
    pub identity: PeerId,
    /// Failure-detection timing.
    pub profile: Profile,
    /// The store as persisted.
    pub store: Store,
    /// How often to run anti-entropy with one member, in ms.
    pub sync_period_ms: u64,
    /// How far ahead of local wall time another member's write may be stamped, in ms;
    /// later stamps are refused and counted.
    pub clock_skew_max_ms: u64,
    /// This node's certificate (DER): learnt by its own verifier and published as its
    /// record, so that members can check its writes.
    pub cert_der: Vec<u8>,
    /// Seeds every random choice (foca's and the anti-entropy partner): the same seed
    /// and inputs give the same outputs.
    pub seed: u64,
}

/// Counters of what the gate did, and what waits for it now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Every batch's tally, summed since the start.
    pub tally: Tally,
    /// Deltas parked now, waiting for their writer's certificate.
    pub pending: usize,
    /// Deltas waiting for the gate now.
    pub backlog: usize,
    /// Lifeguard's local health score now (0 when healthy; see [`crate::lifeguard`]).
    pub local_health: u32,
    /// Members under suspicion here now.
    pub suspicions: usize,
}

/// One node's mesh decisions: see the module doc.
pub struct NodeCore {
    membership: Membership,
    store: Store,
    /// Checks every delta from other members before the store takes it.
    gate: Gate,
    /// Other nodes' public keys, from certificates checked under the CA.
    verifier: Box<dyn Verifier + Send>,
    /// Signs this node's writes.
    signer: Box<dyn Signer + Send>,
    /// Every random choice of the core beyond foca's (seeded from the config).
    rng: SmallRng,
    /// Deltas from exchanges and pushes waiting for the gate, certificate records first;
    /// [`ADMIT_CHUNK`] of them per [`Timer::Admit`].
    backlog: VecDeque<Delta>,
    /// Bytes of keys and values in the backlog.
    backlog_bytes: usize,
    /// Whether a [`Timer::Admit`] is out, so that one is out at most.
    admit_armed: bool,
    /// Deltas dropped from a full backlog, unverified.
    backlog_dropped: u64,
    /// When this core started (ms), and whether an exchange has completed since.
    started_ms: u64,
    exchanged: bool,
    /// The exchange this node started and that has not ended: one at a time, as a big one
    /// (a new member filled) takes longer than the period and overlapping ones would each
    /// carry it all.
    exchanging: Option<PeerId>,
    /// Pushes started and not ended.
    pushes: usize,
    /// How often to run anti-entropy.
    sync_period: Duration,
    /// The nodes removed so far, and the store version they were read at.
    revoked: BTreeSet<NodeId>,
    revoked_read_at: Option<u64>,
    /// Every gate tally summed.
    tally: Tally,
    /// When a refused write was last logged (ms).
    refusal_logged_ms: Option<u64>,
    /// What the view and the store were last published at (membership version,
    /// connection, identity, store version); `None` before the first.
    published: Option<(u64, Connection, PeerId, u64)>,
    /// Outputs waiting to be polled.
    outputs: VecDeque<Output>,
}

impl std::fmt::Debug for NodeCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCore")
            .field("membership", &self.membership)
            .field("store", &self.store.len())
            .field("backlog", &self.backlog.len())
            .finish_non_exhaustive()
    }
}

impl NodeCore {
    /// A core for `config`, alone until it announces itself or is announced to. Readies
    /// the store (an unsigned store from an older knit is signed or dropped, the
    /// certificates it holds are learnt, this node's certificate published) and arms the
    /// periodic timers; the first outputs are already waiting.
    pub fn new(
        config: CoreConfig,
        signer: Box<dyn Signer + Send>,
        verifier: Box<dyn Verifier + Send>,
        now_ms: u64,
    ) -> Self {
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let mut membership = Membership::new(config.identity, config.profile, rng.random(), now_ms);
        membership.set_clock_skew_max_ms(config.clock_skew_max_ms);
        let mut core = Self {
            membership,
            store: config.store,
            gate: Gate::new(config.clock_skew_max_ms),
            verifier,
            signer,
            rng,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            admit_armed: false,
            backlog_dropped: 0,
            started_ms: now_ms,
            exchanged: false,
            exchanging: None,
            pushes: 0,
            sync_period: Duration::from_millis(config.sync_period_ms),
            revoked: BTreeSet::new(),
            revoked_read_at: None,
            tally: Tally::default(),
            refusal_logged_ms: None,
            published: None,
            outputs: VecDeque::new(),
        };
        core.prepare_store(&config.cert_der, now_ms);
        // Periodic work runs once at the start, as a fresh interval ticks at once.
        for timer in [Timer::MemberSync, Timer::AntiEntropy, Timer::Collect] {
            core.arm(Duration::ZERO, timer);
        }
        core.settle();
        core
    }

    /// Readies a store read from the data dir: entries from a knit that did not sign are
    /// signed or dropped ([`Store::adopt_unsigned`]), the certificates it holds are learnt,
    /// and this node's own certificate is published as its record.
    fn prepare_store(&mut self, cert_der: &[u8], now_ms: u64) {
        if self.store.has_unsigned() {
            let (signed, dropped) = self.store.adopt_unsigned(&*self.signer);
            tracing::info!(
                signed,
                dropped,
                "state from an older knit: signed this node's entries, dropped other nodes' records (their owners publish them again)"
            );
        }
        let me = *self.store.me();
        if self.verifier.learn(&me, cert_der) == CertCheck::Invalid {
            tracing::error!("this node's certificate does not verify under the cluster CA");
        }
        let certs: Vec<(NodeId, Vec<u8>)> = self
            .store
            .scan("owned/")
            .filter_map(|(key, value, _)| Some((cert_owner(key)?, value.to_vec())))
            .collect();
        for (node, cert) in certs {
            self.verifier.learn(&node, &cert);
        }
        let key = cert_key(&me);
        if self.store.get(&key) != Some(cert_der) {
            self.store
                .put(&key, Some(cert_der.to_vec()), now_ms, &*self.signer);
        }
    }

    /// The counters of this node's membership traffic, by kind of message and by record.
    pub fn traffic(&self) -> std::sync::Arc<crate::traffic::Traffic> {
        self.membership.traffic()
    }

    /// The view of the cluster now.
    pub fn view(&self) -> View {
        View {
            me: *self.membership.identity(),
            connection: self.membership.connection(),
            profile: self.membership.profile(),
            members: self.membership.members().copied().collect(),
        }
    }

    /// The store now.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The membership core.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// What the gate did since the start, and what waits for it.
    pub fn stats(&self) -> CoreStats {
        let mut tally = self.tally.clone();
        tally.dropped_unverified += self.backlog_dropped;
        CoreStats {
            tally,
            pending: self.gate.pending(),
            backlog: self.backlog.len(),
            local_health: self.membership.local_health(),
            suspicions: self.membership.suspicions().count(),
        }
    }

    /// The next thing to do, or `None` when the core is drained. Drain it after every
    /// input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Takes in one input at `now_ms` (wall clock).
    pub fn handle(&mut self, input: Input, now_ms: u64) {
        match input {
            Input::Packet(packet) => {
                if let Err(e) = self.membership.handle_packet(&packet, now_ms) {
                    tracing::trace!(error = %e, "packet refused");
                }
            }
            Input::Put { key, value } => self.put(&key, value, now_ms),
            Input::Merge(deltas) => self.queue(deltas),
            Input::PeerCert { node, cert_der } => {
                if self.verifier.learn(&node, &cert_der) == CertCheck::New
                    && self.gate.pending() > 0
                {
                    let tally = self
                        .gate
                        .retry(&mut self.store, &mut *self.verifier, now_ms);
                    self.count(&tally, now_ms);
                }
            }
            Input::Synced(peer) => {
                self.exchanged = true;
                self.store.synced_with(peer, now_ms);
            }
            Input::ExchangeEnded(peer) => {
                if self.exchanging == Some(peer) {
                    self.exchanging = None;
                }
            }
            Input::PushEnded => self.pushes = self.pushes.saturating_sub(1),
            Input::Announce(seed) => {
                if let Err(e) = self.membership.announce(seed, now_ms) {
                    tracing::warn!(error = %e, "announce");
                }
                self.arm(Duration::from_millis(FILL_DELAY_MS), Timer::FillFrom(seed));
            }
            Input::Leave => {
                if let Err(e) = self.membership.leave(now_ms) {
                    tracing::warn!(error = %e, "leave");
                }
            }
            Input::Timer(timer) => self.fire(timer, now_ms),
            Input::Refused(peer) => {
                if let Err(e) = self.membership.handle_refused(peer, now_ms) {
                    tracing::debug!(error = %e, "port refused");
                }
            }
            Input::Poke(peers) => {
                for peer in peers {
                    self.membership.poke(peer);
                }
            }
        }
        self.absorb_membership(now_ms);
        self.settle();
    }

    fn arm(&mut self, after: Duration, timer: Timer) {
        self.outputs.push_back(Output::Timer { after, timer });
    }

    fn fire(&mut self, timer: Timer, now_ms: u64) {
        match timer {
            Timer::Membership(timer) => {
                if let Err(e) = self.membership.handle_timer(timer, now_ms) {
                    tracing::debug!(error = %e, "timer");
                }
            }
            Timer::MemberSync => {
                if let Err(e) = self.membership.sync(now_ms) {
                    tracing::warn!(error = %e, "membership sync");
                }
                self.arm(
                    Duration::from_millis(MEMBER_SYNC_PERIOD_MS),
                    Timer::MemberSync,
                );
            }
            Timer::AntiEntropy => {
                self.start_anti_entropy();
                self.arm(self.sync_period, Timer::AntiEntropy);
            }
            Timer::Collect => {
                self.collect(now_ms);
                self.arm(Duration::from_millis(COLLECT_PERIOD_MS), Timer::Collect);
            }
            Timer::Admit => {
                self.admit_armed = false;
                let chunk = self.backlog.len().min(ADMIT_CHUNK);
                let deltas: Vec<Delta> = self.backlog.drain(..chunk).collect();
                self.backlog_bytes = self
                    .backlog_bytes
                    .saturating_sub(deltas.iter().map(value_bytes).sum());
                self.admit(deltas, now_ms);
                self.arm_admit();
            }
            Timer::FillFrom(seed) => {
                if self.exchanging.is_none() {
                    self.exchanging = Some(seed);
                    self.outputs.push_back(Output::Exchange(seed));
                }
            }
        }
    }

    /// A local write: spread as a rumor when small enough, else pushed to every member.
    fn put(&mut self, key: &str, value: Option<Vec<u8>>, now_ms: u64) {
        let delta = self.store.put(key, value, now_ms, &*self.signer);
        self.outputs.push_back(Output::Written(delta.stamp));
        if !self.membership.spread(&delta, now_ms) {
            self.push_to_all(&delta);
        }
    }

    /// The active members other than this node, in node id order.
    fn active_others(&self) -> Vec<PeerId> {
        let me = self.membership.identity().node;
        self.membership
            .members()
            .filter(|m| m.peer.node != me && m.state.is_active())
            .map(|m| m.peer)
            .collect()
    }

    /// Sends a write too big for a rumor straight to every active member, so it spreads as
    /// fast as a small one; anti-entropy repairs any push that is lost or not made.
    fn push_to_all(&mut self, delta: &Delta) {
        for to in self.active_others() {
            if self.pushes >= PUSHES_MAX {
                tracing::debug!("too many pushes in flight: anti-entropy carries this write");
                return;
            }
            self.pushes += 1;
            self.outputs.push_back(Output::Push {
                to,
                deltas: vec![delta.clone()],
            });
        }
    }

    /// Picks one active member at random for anti-entropy, unless an exchange this node
    /// started is still running.
    fn start_anti_entropy(&mut self) {
        if self.exchanging.is_some() {
            return;
        }
        let candidates = self.active_others();
        if candidates.is_empty() {
            return;
        }
        let peer = candidates[self.rng.random_range(0..candidates.len())];
        self.exchanging = Some(peer);
        self.outputs.push_back(Output::Exchange(peer));
    }

    /// Collects tombstones older than the TTL, if the store is fresh; a first member that
    /// has never known another is fresh by itself.
    fn collect(&mut self, now_ms: u64) {
        let me = self.membership.identity().node;
        let lone =
            self.membership.members().all(|m| m.peer.node == me) && !self.store.knows_other_nodes();
        let stale_wait_over = now_ms.saturating_sub(self.started_ms) >= STALE_WAIT_MS;
        if lone || (self.exchanged && stale_wait_over) {
            self.store.mark_synced(now_ms);
        }
        let dropped = self.store.collect_tombstones(now_ms);
        if dropped > 0 {
            tracing::debug!(dropped, "collected tombstones");
        }
    }

    /// Queues deltas for the gate, certificate records first.
    fn queue(&mut self, deltas: Vec<Delta>) {
        for delta in deltas {
            let bytes = value_bytes(&delta);
            if self.backlog.len() >= BACKLOG_MAX || self.backlog_bytes + bytes > BACKLOG_MAX_BYTES {
                self.backlog_dropped += 1;
                continue;
            }
            self.backlog_bytes += bytes;
            if cert_owner(&delta.key).is_some() {
                self.backlog.push_front(delta);
            } else {
                self.backlog.push_back(delta);
            }
        }
        self.arm_admit();
    }

    fn arm_admit(&mut self) {
        if !self.backlog.is_empty() && !self.admit_armed {
            self.admit_armed = true;
            self.arm(Duration::ZERO, Timer::Admit);
        }
    }

    /// Passes deltas from other members through the gate into the store.
    fn admit(&mut self, deltas: Vec<Delta>, now_ms: u64) {
        let tally = self
            .gate
            .admit(&mut self.store, &mut *self.verifier, deltas, now_ms);
        self.count(&tally, now_ms);
    }

    fn count(&mut self, tally: &Tally, now_ms: u64) {
        self.tally.add(tally);
        let refused = tally.refused_signature + tally.refused_future;
        if refused > 0
            && self
                .refusal_logged_ms
                .is_none_or(|t| now_ms.saturating_sub(t) >= REFUSAL_LOG_PERIOD_MS)
        {
            self.refusal_logged_ms = Some(now_ms);
            tracing::warn!(
                forged = tally.refused_signature,
                future = tally.refused_future,
                "refused store writes from other members (forged, or stamped too far ahead: check that member's clock); counted in the mesh metrics, logged at most once a minute"
            );
        }
    }

    /// Takes what the membership core asked for: packets and timers go out, rumored
    /// deltas go through the gate.
    fn absorb_membership(&mut self, now_ms: u64) {
        while let Some(output) = self.membership.poll_output() {
            match output {
                membership::Output::Send { to, packet } => {
                    self.outputs.push_back(Output::Send { to, packet });
                }
                membership::Output::Timer { after, timer } => {
                    self.arm(after, Timer::Membership(timer));
                }
                membership::Output::CheckPort(peer) => {
                    self.outputs.push_back(Output::CheckPort(peer));
                }
                membership::Output::Changed(record) => {
                    tracing::info!(node = %record.peer.node.short(), addr = %record.peer.addr,
                        epoch = record.peer.epoch, state = ?record.state, "member");
                }
                membership::Output::Delta(delta) => self.admit(vec![delta], now_ms),
                membership::Output::Renewed(peer) => {
                    tracing::warn!(epoch = peer.epoch, "rejoined after being declared down");
                }
            }
        }
    }

    /// After every input: cuts off newly removed nodes and republishes what changed.
    fn settle(&mut self) {
        self.apply_revocations();
        let now = (
            self.membership.version(),
            self.membership.connection(),
            *self.membership.identity(),
            self.store.version(),
        );
        let before = self.published.replace(now);
        if before.is_none_or(|b| (b.0, b.1, b.2) != (now.0, now.1, now.2)) {
            self.outputs.push_back(Output::View(self.view()));
        }
        if before.is_none_or(|b| b.3 != now.3) {
            self.outputs.push_back(Output::StoreChanged);
        }
    }

    /// Cuts off the nodes the store says were removed, once per store change.
    fn apply_revocations(&mut self) {
        let version = self.store.version();
        if self.revoked_read_at == Some(version) {
            return;
        }
        self.revoked_read_at = Some(version);
        let now = self.store.revoked();
        if now == self.revoked {
            return;
        }
        let me = self.membership.identity().node;
        if now.contains(&me) && !self.revoked.contains(&me) {
            tracing::error!(
                "this node was removed from the cluster (knit node rm): the other members refuse it; to add this host again, stop knit, remove its data dir, and join with a token"
            );
        }
        for node in now.difference(&self.revoked) {
            tracing::warn!(node = %node.short(), "node removed from the cluster");
        }
        self.membership.revoke(&now);
        self.outputs.push_back(Output::Revoked(now.clone()));
        self.revoked = now;
    }
}

fn value_bytes(delta: &Delta) -> usize {
    delta.key.len() + delta.value.as_ref().map_or(0, Vec::len)
}

#[cfg(test)]
mod net;
#[cfg(test)]
mod tests;
