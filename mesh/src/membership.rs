//! The membership core: one foca instance, driven without IO.
//!
//! Inputs arrive through `handle_*` calls with the current time as an argument; what the
//! core wants done (packets to send, timers to set, member changes) comes back through
//! [`Membership::poll_output`]. The QUIC transport and the simulator drive the same core.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use foca::{AccumulatingRuntime, Foca, OwnedNotification, State, Timer};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};

use crate::codec::{self, WireCodec};
use crate::id::{NodeId, PeerId};
use crate::lifeguard::{LocalHealth, Suspicion};
use crate::profile::Profile;
use crate::rumor::{Rumor, RumorBox};
use crate::store::Delta;
use crate::traffic::{Direction, Traffic};
use crate::trust::CLOCK_SKEW_MAX_MS_DEFAULT;

/// Rumors larger than this are left to anti-entropy, so that a packet still has room for
/// membership updates.
pub const RUMOR_MAX_BYTES: usize = 700;

/// What one member is, as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Answers probes.
    Alive,
    /// Missed a probe; declared down unless it refutes in time.
    Suspect,
    /// Declared dead by the failure detector.
    Down,
    /// Left on purpose (SIGTERM, `knit down`).
    Left,
}

impl MemberState {
    /// `alive` or `suspect`: still a member that placement may count on.
    pub fn is_active(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect)
    }
}

/// One member as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Its newest known identity (node id, address, epoch).
    pub peer: PeerId,
    /// What the failure detector says of it.
    pub state: MemberState,
    /// When (caller's clock, ms) the state last changed.
    pub since_ms: u64,
}

/// Whether this node is part of a cluster, as foca sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Connection {
    /// Knows at least one other active member.
    Active,
    /// Knows no active member (alone, or not yet joined).
    Idle,
    /// Declared down by the others, or left; no longer takes part.
    Defunct,
}

/// Something the core wants its driver to do or know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this packet to that member (unreliably: a datagram).
    Send {
        /// The destination.
        to: PeerId,
        /// foca's packet.
        packet: Bytes,
    },
    /// Hand this timer back through [`Membership::handle_timer`] after the delay.
    Timer {
        /// How long from now.
        after: Duration,
        /// The timer to hand back.
        timer: MembershipTimer,
    },
    /// Check whether anything still listens on that member's port: send it a datagram the
    /// transport ignores, and call [`Membership::handle_refused`] if its host refuses it
    /// (ICMP port unreachable). Silence proves nothing and needs no answer.
    CheckPort(PeerId),
    /// A member's record changed.
    Changed(MemberRecord),
    /// A write to the replicated store arrived as a rumor: merge it.
    Delta(Delta),
    /// This node's own identity changed (it rejoined after being declared down); persist
    /// the epoch so the next start is newer still.
    Renewed(PeerId),
}

/// A timer of the membership core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipTimer {
    /// foca's own.
    Swim(Timer<PeerId>),
    /// A direct check of a suspect ran out: confirm the suspicion unless it answered.
    Check {
        /// The suspect.
        node: NodeId,
        /// Which check.
        check: u32,
    },
    /// A suspicion of this member may have reached its deadline.
    Deadline(NodeId),
    /// Gossip what waits to spread now rather than at the next periodic gossip.
    Spread,
    /// Check the next member's port ([`Profile::port_sweep_ms`]).
    Sweep,
}

/// How long after a change it is gossiped ([`MembershipTimer::Spread`]): the changes of
/// those ms (one agent round's writes) go out in the same packets.
pub const SPREAD_BATCH_MS: u64 = 5;

/// foca's probe in flight, as seen in the packets: its Ping out, and an Ack back.
#[derive(Debug, Clone, Copy)]
struct Probe {
    target: PeerId,
    number: foca::ProbeNumber,
    answered: bool,
}

/// foca refused an input.
#[derive(Debug, thiserror::Error)]
#[error("membership: {0}")]
pub struct MembershipError(#[from] foca::Error);

/// One node's view of the cluster, and the SWIM protocol that keeps it current.
pub struct Membership {
    foca: Foca<PeerId, WireCodec, SmallRng, RumorBox>,
    /// The same box foca's handler writes into.
    rumors: RumorBox,
    runtime: AccumulatingRuntime<PeerId>,
    /// Every member ever seen, self included, in node id order.
    members: BTreeMap<NodeId, MemberRecord>,
    /// Changes waiting to be polled, after the runtime's sends and timers.
    changes: VecDeque<Output>,
    profile: Profile,
    /// The cluster size foca's configuration was last derived for.
    configured_size: usize,
    connection: Connection,
    /// Bumped on every change of `members`, so drivers can tell when to republish.
    version: u64,
    /// Reused by `sync` for foca's member list.
    sync_buffer: Vec<(PeerId, MemberState)>,
    /// Whether a [`MembershipTimer::Spread`] is out (one at most), and when the last was
    /// armed (ms).
    spread_armed: bool,
    spread_at_ms: Option<u64>,
    /// Nodes removed from the cluster: never members again (see [`Membership::revoke`]).
    revoked: BTreeSet<NodeId>,
    /// How far ahead of local wall time a store write in a rumor may be stamped.
    clock_skew_max_ms: u64,
    /// The time of the input being handled (caller's clock, ms).
    now_ms: u64,
    /// Lifeguard's local health: how far this node stretches its own probing.
    health: LocalHealth,
    /// foca's probe in flight.
    probe: Option<Probe>,
    /// When foca's next probe is due (caller's clock): a late one is a sign of trouble.
    probe_due_ms: Option<u64>,
    /// This node's own incarnation, as its packets carry it: a rise is a refutation.
    incarnation: Option<(PeerId, foca::Incarnation)>,
    /// The members suspected here, with their confirmations.
    suspicions: BTreeMap<NodeId, Suspicion>,
    /// Members whose port was refused while alive, with the direct check sent then: if
    /// that check goes unanswered too, the member is suspected.
    refused: BTreeMap<NodeId, u32>,
    /// Numbers direct checks.
    checks: u32,
    /// Whether a [`MembershipTimer::Sweep`] is out (one at most), and the member whose
    /// port it checked last.
    sweep_armed: bool,
    sweep_cursor: Option<NodeId>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("identity", self.foca.identity())
            .field("members", &self.members.len())
            .field("connection", &self.connection)
            .finish()
    }
}

impl Membership {
    /// A core for `identity`, alone until it announces itself or is announced to.
    pub fn new(identity: PeerId, profile: Profile, seed: u64, now_ms: u64) -> Self {
        let rumors = RumorBox::default();
        let foca = Foca::with_custom_broadcast(
            identity,
            profile.config(1),
            SmallRng::seed_from_u64(seed),
            WireCodec,
            rumors.clone(),
        );
        let mut members = BTreeMap::new();
        members.insert(
            identity.node,
            MemberRecord {
                peer: identity,
                state: MemberState::Alive,
                since_ms: now_ms,
            },
        );
        Self {
            foca,
            rumors,
            runtime: AccumulatingRuntime::new(),
            members,
            changes: VecDeque::new(),
            profile,
            configured_size: 1,
            connection: Connection::Idle,
            version: 0,
            sync_buffer: Vec::new(),
            spread_armed: false,
            spread_at_ms: None,
            revoked: BTreeSet::new(),
            clock_skew_max_ms: CLOCK_SKEW_MAX_MS_DEFAULT,
            now_ms,
            health: LocalHealth::default(),
            probe: None,
            probe_due_ms: None,
            incarnation: None,
            suspicions: BTreeMap::new(),
            refused: BTreeMap::new(),
            checks: 0,
            sweep_armed: false,
            sweep_cursor: None,
        }
    }

    /// Sets how far ahead of local wall time a store write in a rumor may be stamped
    /// ([`CLOCK_SKEW_MAX_MS_DEFAULT`] unless set): later ones are neither relayed nor
    /// handed to the store.
    pub fn set_clock_skew_max_ms(&mut self, skew_max_ms: u64) {
        self.clock_skew_max_ms = skew_max_ms;
    }

    /// Removes `nodes` from the member table for good (`knit node rm`): whatever is heard
    /// of them later, in any epoch, is ignored. This node itself is never removed from its
    /// own table. The transport is expected to cut them off too.
    pub fn revoke(&mut self, nodes: &BTreeSet<NodeId>) {
        let me = self.identity().node;
        for node in nodes.iter().filter(|n| **n != me) {
            if self.revoked.insert(*node) && self.members.remove(node).is_some() {
                self.version += 1;
            }
        }
    }

    /// This node's current identity.
    pub fn identity(&self) -> &PeerId {
        self.foca.identity()
    }

    /// The timing profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Whether this node is in a cluster.
    pub fn connection(&self) -> Connection {
        self.connection
    }

    /// Every member ever seen (self included), in node id order.
    pub fn members(&self) -> impl Iterator<Item = &MemberRecord> {
        self.members.values()
    }

    /// One member's record.
    pub fn member(&self, node: &NodeId) -> Option<&MemberRecord> {
        self.members.get(node)
    }

    /// Counts changes to the member table; equal values mean an equal table.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Asks a known member (a seed) to let this node in.
    pub fn announce(&mut self, seed: PeerId, now_ms: u64) -> Result<(), MembershipError> {
        self.now_ms = now_ms;
        let result = self.foca.announce(seed, &mut self.runtime);
        self.absorb(now_ms);
        Ok(result?)
    }

    /// Feeds a packet that arrived from the network.
    pub fn handle_packet(&mut self, packet: &[u8], now_ms: u64) -> Result<(), MembershipError> {
        self.now_ms = now_ms;
        self.rumors.set_clock(now_ms, self.clock_skew_max_ms);
        self.rumors.traffic().packet(Direction::In, packet);
        self.heard(packet);
        let result = self.foca.handle_data(packet, &mut self.runtime);
        self.absorb(now_ms);
        Ok(result?)
    }

    /// Hands back a timer that [`Output::Timer`] asked for, once it is due.
    pub fn handle_timer(
        &mut self,
        timer: MembershipTimer,
        now_ms: u64,
    ) -> Result<(), MembershipError> {
        self.now_ms = now_ms;
        let result = match timer {
            MembershipTimer::Swim(timer) => {
                self.before_swim_timer(&timer, now_ms);
                self.foca.handle_timer(timer, &mut self.runtime)
            }
            MembershipTimer::Check { node, check } => self.check_ran_out(node, check, now_ms),
            MembershipTimer::Deadline(node) => self.deadline(node, now_ms),
            MembershipTimer::Spread => {
                self.spread_armed = false;
                self.foca.gossip(&mut self.runtime)
            }
            MembershipTimer::Sweep => {
                self.sweep();
                Ok(())
            }
        };
        self.absorb(now_ms);
        Ok(result?)
    }

    /// The transport found `peer`'s port closed: its host refused a datagram (after
    /// [`Output::CheckPort`]). A suspect's refusal confirms the suspicion unless the
    /// suspect is heard from; an alive member is pinged again at once and suspected if
    /// that ping goes unanswered too.
    pub fn handle_refused(&mut self, peer: PeerId, now_ms: u64) -> Result<(), MembershipError> {
        self.now_ms = now_ms;
        let result = self.refused(peer, now_ms);
        self.absorb(now_ms);
        Ok(result?)
    }

    /// Leaves the cluster: peers see this node `left` at once instead of `down` later.
    pub fn leave(&mut self, now_ms: u64) -> Result<(), MembershipError> {
        self.now_ms = now_ms;
        let rumor = codec::encode(&Rumor::Leave(*self.identity()))
            .map_err(|e| foca::Error::CustomBroadcast(Box::new(e)))?;
        self.foca.add_broadcast(&rumor)?;
        self.rumors
            .traffic()
            .rumor(Direction::Out, "leave", rumor.len(), false);
        let result = self.foca.leave_cluster(&mut self.runtime);
        self.absorb(now_ms);
        Ok(result?)
    }

    /// Spreads a store write by piggybacking it on membership traffic. Returns `false`
    /// (and spreads nothing) when it is too big to ride along: anti-entropy carries it.
    pub fn spread(&mut self, delta: &Delta, now_ms: u64) -> bool {
        self.now_ms = now_ms;
        let Ok(rumor) = codec::encode(&Rumor::Delta(delta.clone())) else {
            return false;
        };
        if rumor.len() > RUMOR_MAX_BYTES {
            return false;
        }
        let added = self.foca.add_broadcast(&rumor).unwrap_or(false);
        if added {
            self.rumors
                .traffic()
                .rumor(Direction::Out, &delta.key, rumor.len(), false);
            self.spread_soon();
        }
        added
    }

    /// Gossips what waits to spread in [`SPREAD_BATCH_MS`] (foca's `gossip`), not at the
    /// next periodic gossip: a local write, a rumor heard for the first time (relayed at
    /// once, so that it reaches every member in a few hops of a few ms each, not of a
    /// gossip period each), a member's new state. Each rumor still goes out at most foca's
    /// `max_transmissions` times, so this sends it sooner, not more often; and at most
    /// one such gossip per gossip period, so that in a storm of changes (many members
    /// joining) the periodic gossips carry the rest, packed together as before.
    fn spread_soon(&mut self) {
        let now_ms = self.now_ms;
        let recent = self
            .spread_at_ms
            .is_some_and(|at| now_ms.saturating_sub(at) < self.profile.gossip_period_ms());
        if !self.spread_armed && !recent {
            self.spread_armed = true;
            self.spread_at_ms = Some(now_ms);
            self.changes.push_back(Output::Timer {
                after: std::time::Duration::from_millis(SPREAD_BATCH_MS),
                timer: MembershipTimer::Spread,
            });
        }
    }

    /// Re-derives every member's state from foca's full membership (so a missed
    /// notification cannot leave a stale record) and re-tunes foca for the cluster's size.
    /// Drivers call it periodically, about once a second. One pass over the members, and
    /// a second only when some member is missing from foca's list.
    pub fn sync(&mut self, now_ms: u64) -> Result<(), MembershipError> {
        self.now_ms = now_ms;
        let mut seen = std::mem::take(&mut self.sync_buffer);
        seen.clear();
        seen.extend(
            self.foca
                .iter_membership_state()
                .map(|m| (*m.id(), from_foca(m.state()))),
        );
        // foca holds one entry per node (its identity's address is the node id).
        let mut active_seen = 0;
        for (peer, state) in &seen {
            if self.observe(*peer, *state, now_ms) {
                active_seen += 1;
            }
        }
        let me = self.identity().node;
        let active = self
            .members
            .values()
            .filter(|r| r.peer.node != me && r.state.is_active())
            .count();
        if active != active_seen {
            // foca forgot an active member without telling: it counts as down.
            let known: std::collections::BTreeSet<NodeId> =
                seen.iter().map(|(p, _)| p.node).collect();
            let forgotten: Vec<PeerId> = self
                .members
                .values()
                .filter(|r| r.peer.node != me && r.state.is_active())
                .filter(|r| !known.contains(&r.peer.node))
                .map(|r| r.peer)
                .collect();
            for peer in forgotten {
                self.observe(peer, MemberState::Down, now_ms);
            }
        }
        self.sync_buffer = seen;
        self.sweep_suspicions(now_ms)?;
        self.retune()?;
        self.absorb(now_ms);
        Ok(())
    }

    fn retune(&mut self) -> Result<(), MembershipError> {
        let size = self.foca.num_members() + 1;
        let wanted = self.profile.config(size);
        let current = self.profile.config(self.configured_size);
        if wanted.suspect_to_down_after != current.suspect_to_down_after
            || wanted.max_transmissions != current.max_transmissions
        {
            self.foca.set_config(wanted)?;
            self.configured_size = size;
        }
        Ok(())
    }

    /// The counters of this core's traffic, by kind of message and by record.
    pub fn traffic(&self) -> Arc<Traffic> {
        self.rumors.traffic().clone()
    }

    /// The next thing to do, or `None` when the core is drained. Drain it after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.changes.pop_front()
    }

    /// Takes what foca asked for with the last input: packets and timers go out (timers
    /// stretched by local health), then notifications and rumors are applied, and again
    /// while acting on them asked foca for more.
    fn absorb(&mut self, now_ms: u64) {
        for _ in 0..4 {
            self.take_runtime();
            if !self.absorb_notifications(now_ms) {
                break;
            }
        }
        self.take_runtime();
        self.arm_sweep();
    }

    /// Moves foca's sends and timers to the output queue, noting what Lifeguard reads in
    /// them (probes, refutations, failed probes).
    fn take_runtime(&mut self) {
        while let Some((to, packet)) = self.runtime.to_send() {
            self.rumors.traffic().packet(Direction::Out, &packet);
            self.sent(&to, &packet);
            self.changes.push_back(Output::Send { to, packet });
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            let after = self.swim_timer_out(&timer, after);
            self.changes.push_back(Output::Timer {
                after,
                timer: MembershipTimer::Swim(timer),
            });
        }
    }

    /// Applies foca's notifications and the rumors that arrived with the last input.
    /// Returns whether anything was applied (acting on it may have asked foca for more).
    fn absorb_notifications(&mut self, now_ms: u64) -> bool {
        let mut any = false;
        while let Some(notification) = self.runtime.to_notify() {
            any = true;
            let (peer, state) = match notification {
                OwnedNotification::MemberUp(peer) | OwnedNotification::Rename(_, peer) => {
                    (peer, MemberState::Alive)
                }
                OwnedNotification::MemberDown(peer) => (peer, MemberState::Down),
                OwnedNotification::Rejoin(me) => {
                    self.observe(me, MemberState::Alive, now_ms);
                    self.changes.push_back(Output::Renewed(me));
                    continue;
                }
                OwnedNotification::Active => {
                    self.connection = Connection::Active;
                    continue;
                }
                OwnedNotification::Idle => {
                    self.connection = Connection::Idle;
                    continue;
                }
                OwnedNotification::Defunct => {
                    self.connection = Connection::Defunct;
                    continue;
                }
            };
            self.observe(peer, state, now_ms);
        }
        for rumor in self.rumors.drain() {
            any = true;
            self.spread_soon();
            match rumor {
                Rumor::Leave(peer) => {
                    self.observe(peer, MemberState::Left, now_ms);
                }
                Rumor::Delta(delta) => self.changes.push_back(Output::Delta(delta)),
                Rumor::Suspect {
                    suspect,
                    incarnation,
                    by,
                } => self.heard_suspicion(suspect, incarnation, by, now_ms),
            }
        }
        any
    }

    /// Records what was learnt of `peer`. Knowledge of an older incarnation never
    /// overrides a newer one, and `left` is not turned into `down`. Returns whether the
    /// record is active (alive or suspect) afterwards.
    fn observe(&mut self, peer: PeerId, state: MemberState, now_ms: u64) -> bool {
        if self.revoked.contains(&peer.node) {
            return false;
        }
        let mut inserted = false;
        let record = self.members.entry(peer.node).or_insert_with(|| {
            inserted = true;
            MemberRecord {
                peer,
                state,
                since_ms: now_ms,
            }
        });
        let changed = if inserted {
            true
        } else if peer.epoch < record.peer.epoch {
            false
        } else if peer.epoch > record.peer.epoch {
            record.peer = peer;
            record.state = state;
            true
        } else if record.state == state
            || (record.state == MemberState::Left && state == MemberState::Down)
        {
            record.peer = peer;
            false
        } else if record.state == MemberState::Left && state.is_active() {
            // A leave is final for its epoch; foca may still count the leaver for a moment.
            false
        } else {
            record.state = state;
            true
        };
        if changed {
            record.since_ms = now_ms;
            let record = *record;
            if state.is_active() {
                self.rumors.forget_leave(&peer.node, peer.epoch);
            }
            self.suspicion_changed(&record, now_ms);
            self.version += 1;
            self.changes.push_back(Output::Changed(record));
            self.spread_soon();
            return record.state.is_active();
        }
        record.state.is_active()
    }
}

fn from_foca(state: State) -> MemberState {
    match state {
        State::Alive => MemberState::Alive,
        State::Suspect => MemberState::Suspect,
        State::Down => MemberState::Down,
    }
}

#[path = "membership_suspicion.rs"]
mod suspicion;

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
