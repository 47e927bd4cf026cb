//! Lifeguard in the membership core: local health read off foca's packets and timers,
//! suspicions confirmed by direct checks and ended by their dynamic deadline, and the
//! transport's "port refused" taken as a failed probe. See [`crate::lifeguard`].
//!
//! foca runs the probe cycle and keeps member states; this part watches it from outside
//! (foca's packets are decoded with the same codec, its timers pass through here) and
//! acts through foca's public calls: `apply_many` to suspect, refute or declare down, and
//! `add_broadcast` for the confirmations.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use foca::{Codec, Message, State, Timer};

use super::{MemberState, Membership, MembershipTimer, Output, Probe, WireCodec, codec, from_foca};
use crate::id::{NodeId, PeerId};
use crate::lifeguard::{self, Suspicion, SuspicionBounds};
use crate::rumor::Rumor;
use crate::traffic::Direction;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Membership {
    /// Lifeguard's local health score (0 when healthy): this node's probe period and
    /// probe timeout are stretched by `score + 1`.
    pub fn local_health(&self) -> u32 {
        self.health.score()
    }

    /// The members under suspicion here, with their confirmations.
    pub fn suspicions(&self) -> impl Iterator<Item = &Suspicion> {
        self.suspicions.values()
    }

    /// Whether this node is one of the few that check `suspect` directly.
    fn checks(&self, suspect: &NodeId) -> bool {
        let me = self.identity().node;
        let alive: Vec<NodeId> = self
            .foca
            .iter_membership_state()
            .filter(|m| m.state() == State::Alive)
            .map(|m| m.id().node)
            .collect();
        lifeguard::is_checker(suspect, &me, alive.iter())
    }

    fn bounds(&self) -> SuspicionBounds {
        self.profile.suspicion_bounds(self.foca.num_members() + 1)
    }

    /// foca's record of `node`: identity, incarnation, state.
    fn foca_member(&self, node: &NodeId) -> Option<(PeerId, foca::Incarnation, State)> {
        self.foca
            .iter_membership_state()
            .find(|m| m.id().node == *node)
            .map(|m| (*m.id(), m.incarnation(), m.state()))
    }

    /// A packet arrived: anything from a member is a sign of life, and an ack of foca's
    /// probe in flight means the probe succeeded.
    pub(super) fn heard(&mut self, packet: &[u8]) {
        let Ok(header) = WireCodec.decode_header(packet) else {
            return;
        };
        let src = header.src;
        if let Some(suspicion) = self.suspicions.get_mut(&src.node)
            && suspicion.peer.epoch <= src.epoch
        {
            // Alive after all: whatever refused a datagram was not the suspect's peer (a
            // firewall that rejects strangers' ports, say).
            suspicion.checking = None;
            suspicion.refused = false;
        }
        self.refused.remove(&src.node);
        if let Some(probe) = self.probe.as_mut() {
            let number = match header.message {
                Message::Ack(n) if src == probe.target => Some(n),
                Message::ForwardedAck { probe_number, .. } => Some(probe_number),
                _ => None,
            };
            if number == Some(probe.number) {
                probe.answered = true;
            }
        }
    }

    /// foca sends a packet: note its probes (and have the transport check the probed
    /// member's port) and this node's own incarnation (a rise is a refutation of a
    /// suspicion of this node: a sign it is slow).
    pub(super) fn sent(&mut self, to: &PeerId, packet: &[u8]) {
        let Ok(header) = WireCodec.decode_header(packet) else {
            return;
        };
        if let Message::Ping(number) = header.message {
            self.probe = Some(Probe {
                target: *to,
                number,
                answered: false,
            });
            // The port is checked with the probe, not after its timeout: a refusal comes
            // back within a round trip, and the member is pinged again at once.
            self.changes.push_back(Output::CheckPort(*to));
        }
        if let Some((id, incarnation)) = self.incarnation
            && id == header.src
            && header.src_incarnation > incarnation
        {
            self.health.worse();
        }
        self.incarnation = Some((header.src, header.src_incarnation));
    }

    /// One of foca's timers is about to be armed: stretch the probe timers by local
    /// health, and take a suspect-to-down timer as this node's probe having failed.
    pub(super) fn swim_timer_out(&mut self, timer: &Timer<PeerId>, after: Duration) -> Duration {
        match timer {
            Timer::ProbeRandomMember(_) => {
                let after = self.health.scale(after);
                self.probe_due_ms = Some(self.now_ms.saturating_add(millis(after)));
                after
            }
            Timer::SendIndirectProbe { .. } => self.health.scale(after),
            Timer::ChangeSuspectToDown {
                member_id,
                incarnation,
                ..
            } => {
                self.suspected_here(*member_id, *incarnation);
                after
            }
            _ => after,
        }
    }

    /// One of foca's timers fell due: a late probe timer and an unanswered probe make
    /// local health worse, an answered one better.
    pub(super) fn before_swim_timer(&mut self, timer: &Timer<PeerId>, now_ms: u64) {
        if let Timer::ProbeRandomMember(_) = timer {
            let period = millis(self.profile.config(self.configured_size).probe_period);
            let late = self
                .probe_due_ms
                .take()
                .is_some_and(|due| now_ms > due.saturating_add(period / 2));
            let answered = self.probe.take().map(|probe| probe.answered);
            // A late timer outweighs an answered probe: a starved peer's acks arrive as
            // late as its timers fire. With nobody to probe, health recovers.
            if late || answered == Some(false) {
                self.health.worse();
            } else {
                self.health.better();
            }
        }
    }

    /// This node's own probe of `peer` failed and foca now holds it suspect.
    fn suspected_here(&mut self, peer: PeerId, incarnation: foca::Incarnation) {
        let now_ms = self.now_ms;
        self.suspicion_entry(peer, incarnation, now_ms);
        self.confirm(&peer.node, now_ms);
        self.observe(peer, MemberState::Suspect, now_ms);
    }

    /// The suspicion of `peer` at `incarnation`, started now if there was none (or only an
    /// older one). Returns whether it is new.
    fn suspicion_entry(
        &mut self,
        peer: PeerId,
        incarnation: foca::Incarnation,
        now_ms: u64,
    ) -> bool {
        let fresh = self
            .suspicions
            .get(&peer.node)
            .is_none_or(|s| (s.peer.epoch, s.incarnation) < (peer.epoch, incarnation));
        if fresh {
            self.suspicions
                .insert(peer.node, Suspicion::new(peer, incarnation, now_ms));
        }
        fresh
    }

    /// This node vouches for the suspicion of `node`: tell the others (once) and bring its
    /// deadline forward.
    fn confirm(&mut self, node: &NodeId, now_ms: u64) {
        let me = self.identity().node;
        let k = self.bounds().k;
        let Some(suspicion) = self.suspicions.get_mut(node) else {
            return;
        };
        suspicion.checking = None;
        // Past `k` confirmations more change no deadline: keep this one to itself, so
        // that a large cluster does not spread one confirmation per member.
        let enough = suspicion.by.len() > k;
        if suspicion.by.insert(me) && !enough {
            let rumor = Rumor::Suspect {
                suspect: suspicion.peer,
                incarnation: suspicion.incarnation,
                by: me,
            };
            if let Ok(bytes) = codec::encode(&rumor)
                && self.foca.add_broadcast(&bytes).unwrap_or(false)
            {
                self.rumors
                    .traffic()
                    .rumor(Direction::Out, "suspect", bytes.len(), false);
            }
        }
        self.arm_deadline(node, now_ms);
    }

    fn arm_deadline(&mut self, node: &NodeId, now_ms: u64) {
        let bounds = self.bounds();
        if let Some(suspicion) = self.suspicions.get(node) {
            let after = suspicion.deadline_ms(&bounds).saturating_sub(now_ms);
            self.changes.push_back(Output::Timer {
                after: Duration::from_millis(after),
                timer: MembershipTimer::Deadline(*node),
            });
        }
    }

    /// Asks `peer` directly whether it lives: a ping that also tells it it is suspected
    /// (so that it refutes at once: Lifeguard's buddy system), a port check, and a timer
    /// after which silence confirms the suspicion.
    fn start_check(&mut self, node: &NodeId) {
        let Some(suspicion) = self.suspicions.get(node) else {
            return;
        };
        let (peer, incarnation) = (suspicion.peer, suspicion.incarnation);
        self.checks = self.checks.wrapping_add(1);
        let check = self.checks;
        if let Some(s) = self.suspicions.get_mut(node) {
            s.checking = Some(check);
        }
        let update = foca::Member::new(peer, incarnation, State::Suspect);
        self.ping(peer, Some(update));
        self.changes.push_back(Output::CheckPort(peer));
        let rtt = self.profile.config(self.configured_size).probe_rtt;
        self.changes.push_back(Output::Timer {
            after: self.health.scale(rtt),
            timer: MembershipTimer::Check { node: *node, check },
        });
    }

    /// Sends `to` a ping of foca's own format that asks nothing of this node's own
    /// probing: a live member acks it, and the ack (like any packet from it) is noted by
    /// whoever waits for signs of life. A member not in the view is not pinged.
    pub fn poke(&mut self, to: PeerId) {
        if self
            .foca_member(&to.node)
            .is_some_and(|(peer, _, _)| peer == to)
        {
            self.ping(to, None);
        }
    }

    /// Sends `to` a ping of foca's own format (its ack proves it alive), carrying
    /// `update` if given.
    fn ping(&mut self, to: PeerId, update: Option<foca::Member<PeerId>>) {
        let me = *self.identity();
        let header = foca::Header {
            src: me,
            src_incarnation: self
                .incarnation
                .filter(|(id, _)| *id == me)
                .map_or(0, |(_, i)| i),
            dst: to,
            // The low byte of the check number: an ack is matched by its sender.
            message: Message::Ping(self.checks.to_le_bytes()[0]),
        };
        let mut buf = BytesMut::new();
        if WireCodec.encode_header(&header, &mut buf).is_err() {
            return;
        }
        if let Some(update) = update {
            buf.put_u16(1);
            if WireCodec.encode_member(&update, &mut buf).is_err() {
                return;
            }
        }
        let packet: Bytes = buf.freeze();
        self.rumors.traffic().packet(Direction::Out, &packet);
        self.changes.push_back(Output::Send { to, packet });
    }

    /// A direct check of `node` ran out: if nothing was heard from it, and it is still
    /// suspect, confirm.
    pub(super) fn check_ran_out(
        &mut self,
        node: NodeId,
        check: u32,
        now_ms: u64,
    ) -> Result<(), foca::Error> {
        if self.refused.get(&node) == Some(&check) {
            self.refused.remove(&node);
            return self.suspect_refused(node, now_ms);
        }
        let Some(suspicion) = self.suspicions.get(&node) else {
            return Ok(());
        };
        if suspicion.checking != Some(check) {
            return Ok(());
        }
        if self.still_suspect(&node) {
            self.confirm(&node, now_ms);
        } else {
            self.suspicions.remove(&node);
        }
        Ok(())
    }

    /// Whether foca still holds `node` suspect at the incarnation the suspicion began at.
    fn still_suspect(&self, node: &NodeId) -> bool {
        let Some(suspicion) = self.suspicions.get(node) else {
            return false;
        };
        self.foca_member(node)
            .is_some_and(|(peer, incarnation, state)| {
                peer == suspicion.peer
                    && incarnation == suspicion.incarnation
                    && state == State::Suspect
            })
    }

    /// A suspicion's deadline may have come: declare the suspect down, or wait on.
    pub(super) fn deadline(&mut self, node: NodeId, now_ms: u64) -> Result<(), foca::Error> {
        let bounds = self.bounds();
        let Some(suspicion) = self.suspicions.get(&node) else {
            return Ok(());
        };
        if !self.still_suspect(&node) {
            self.suspicions.remove(&node);
            return Ok(());
        }
        if now_ms < suspicion.deadline_ms(&bounds) {
            self.arm_deadline(&node, now_ms);
            return Ok(());
        }
        let (peer, incarnation) = (suspicion.peer, suspicion.incarnation);
        tracing::info!(node = %node.short(), confirmations = suspicion.confirmations(),
            "suspicion not refuted in time: down");
        self.suspicions.remove(&node);
        self.foca.apply_many(
            std::iter::once(foca::Member::new(peer, incarnation, State::Down)),
            true,
            &mut self.runtime,
        )
    }

    /// The transport found `peer`'s port closed.
    pub(super) fn refused(&mut self, peer: PeerId, now_ms: u64) -> Result<(), foca::Error> {
        let node = peer.node;
        if node == self.identity().node || self.revoked.contains(&node) {
            return Ok(());
        }
        if let Some(suspicion) = self.suspicions.get_mut(&node)
            && suspicion.peer == peer
        {
            suspicion.refused = true;
            self.confirm(&node, now_ms);
            return Ok(());
        }
        if self.refused.contains_key(&node) {
            return Ok(());
        }
        let Some((known, _, state)) = self.foca_member(&node) else {
            return Ok(());
        };
        if known != peer || state != State::Alive {
            return Ok(());
        }
        // A failed probe: probe again at once, and suspect if that fails too (no answer
        // within the probe timeout; any packet from it in the meantime clears this).
        self.checks = self.checks.wrapping_add(1);
        let check = self.checks;
        self.refused.insert(node, check);
        self.ping(peer, None);
        let rtt = self.profile.config(self.configured_size).probe_rtt;
        self.changes.push_back(Output::Timer {
            after: self.health.scale(rtt),
            timer: MembershipTimer::Check { node, check },
        });
        Ok(())
    }

    /// Arms the port sweep ([`MembershipTimer::Sweep`]) unless it is out or there is no
    /// other member.
    pub(super) fn arm_sweep(&mut self) {
        if self.sweep_armed || self.foca.num_members() == 0 {
            return;
        }
        self.sweep_armed = true;
        self.changes.push_back(Output::Timer {
            after: Duration::from_millis(self.profile.port_sweep_ms()),
            timer: MembershipTimer::Sweep,
        });
    }

    /// The sweep's turn: the transport checks the port of the next alive member in node
    /// id order after the one checked last (each node starts after its own id, so the
    /// members' sweeps are out of step). A peer process that died on a live host is then
    /// found within one sweep period in a quiet cluster (every member checks one member
    /// per period), where waiting for its first probe takes up to a few probe periods.
    pub(super) fn sweep(&mut self) {
        use std::ops::Bound::{Excluded, Unbounded};
        self.sweep_armed = false;
        let me = self.identity().node;
        let cursor = self.sweep_cursor.unwrap_or(me);
        let alive = |r: &&crate::MemberRecord| r.state == MemberState::Alive && r.peer.node != me;
        let next = self
            .members
            .range((Excluded(cursor), Unbounded))
            .map(|(_, r)| r)
            .find(alive)
            .or_else(|| self.members.values().find(alive))
            .map(|r| r.peer);
        if let Some(peer) = next {
            self.sweep_cursor = Some(peer.node);
            self.changes.push_back(Output::CheckPort(peer));
        }
    }

    /// An alive member's port was refused and it did not answer the ping after: suspect it
    /// now rather than at the end of the probe period.
    fn suspect_refused(&mut self, node: NodeId, now_ms: u64) -> Result<(), foca::Error> {
        let Some((peer, incarnation, state)) = self.foca_member(&node) else {
            return Ok(());
        };
        if state != State::Alive {
            return Ok(());
        }
        tracing::debug!(node = %node.short(), "port refused and ping unanswered: suspect");
        self.suspicion_entry(peer, incarnation, now_ms);
        if let Some(s) = self.suspicions.get_mut(&node) {
            s.refused = true;
        }
        self.foca.apply_many(
            std::iter::once(foca::Member::new(peer, incarnation, State::Suspect)),
            true,
            &mut self.runtime,
        )?;
        self.confirm(&node, now_ms);
        self.observe(peer, MemberState::Suspect, now_ms);
        Ok(())
    }

    /// A confirmation arrived: `by` says `suspect` (at `incarnation`) failed its check.
    pub(super) fn heard_suspicion(
        &mut self,
        suspect: PeerId,
        incarnation: foca::Incarnation,
        by: NodeId,
        now_ms: u64,
    ) {
        let me = *self.identity();
        if suspect.node == me.node {
            // foca refutes on the update; this covers a confirmation that came without it.
            if suspect == me {
                let update = foca::Member::new(me, incarnation, State::Suspect);
                if let Err(e) =
                    self.foca
                        .apply_many(std::iter::once(update), true, &mut self.runtime)
                {
                    tracing::debug!(error = %e, "refuting a suspicion");
                }
            }
            return;
        }
        if self.revoked.contains(&suspect.node) {
            return;
        }
        let Some((known, current, state)) = self.foca_member(&suspect.node) else {
            return;
        };
        if known != suspect || current > incarnation || state == State::Down {
            return;
        }
        if state == State::Alive {
            // The update was left out of the packet the confirmation came in: apply it.
            let update = foca::Member::new(suspect, incarnation, State::Suspect);
            if self
                .foca
                .apply_many(std::iter::once(update), true, &mut self.runtime)
                .is_err()
            {
                return;
            }
        }
        let fresh = self.suspicion_entry(suspect, incarnation, now_ms);
        let Some(suspicion) = self.suspicions.get_mut(&suspect.node) else {
            return;
        };
        if suspicion.incarnation != incarnation {
            return;
        }
        suspicion.by.insert(by);
        let mine = suspicion.by.contains(&me.node);
        let enough =
            suspicion.by.len() > self.profile.suspicion_bounds(self.foca.num_members() + 1).k;
        if fresh && !mine && !enough && self.checks(&suspect.node) {
            self.start_check(&suspect.node);
        }
        self.arm_deadline(&suspect.node, now_ms);
        self.observe(suspect, MemberState::Suspect, now_ms);
    }

    /// A member's record changed: a new suspect is checked directly; a suspect that is
    /// alive again (refuted), down or gone needs no more watching.
    pub(super) fn suspicion_changed(&mut self, record: &super::MemberRecord, now_ms: u64) {
        let node = record.peer.node;
        if node == self.identity().node {
            return;
        }
        if record.state != MemberState::Suspect {
            if self
                .suspicions
                .get(&node)
                .is_some_and(|s| s.peer.epoch <= record.peer.epoch)
            {
                self.suspicions.remove(&node);
            }
            return;
        }
        let Some((peer, incarnation, state)) = self.foca_member(&node) else {
            return;
        };
        if from_foca(state) != MemberState::Suspect {
            return;
        }
        if self.suspicion_entry(peer, incarnation, now_ms) {
            if self.checks(&node) {
                self.start_check(&node);
            }
            self.arm_deadline(&node, now_ms);
        }
    }

    /// Ends the suspicions past their deadline whose timers were lost, and forgets those
    /// foca no longer holds. Drivers call it through [`Membership::sync`].
    pub(super) fn sweep_suspicions(&mut self, now_ms: u64) -> Result<(), foca::Error> {
        let bounds = self.bounds();
        let due: Vec<NodeId> = self
            .suspicions
            .iter()
            .filter(|(_, s)| now_ms >= s.deadline_ms(&bounds))
            .map(|(node, _)| *node)
            .collect();
        for node in due {
            self.deadline(node, now_ms)?;
        }
        let stale: Vec<NodeId> = self
            .suspicions
            .keys()
            .filter(|node| !self.still_suspect(node))
            .copied()
            .collect();
        for node in stale {
            self.suspicions.remove(&node);
        }
        Ok(())
    }
}
