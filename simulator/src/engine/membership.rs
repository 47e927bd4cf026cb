//! The hosts' membership: each host's real membership core (or the calibrated model) fed
//! packets, timers and syncs in virtual time; what its outputs mean for the network, the
//! timer heap, the agent's view and the detection metrics.

use bytes::Bytes;
use knit_mesh::node_core::Input;
use knit_mesh::{MemberRecord, MemberState, Output, PeerId};
use knit_scheduler::reconcile::pace::ROUND_MIN_MS;
use rand::RngExt;

use super::node::Core;
use super::{Engine, Event, host_of, peer_of, short};
use crate::traffic::Counts;

impl Engine {
    /// Hands every output of host `h`'s core to the network, the timer heap and metrics.
    pub(super) fn drain(&mut self, h: usize) {
        let mut outputs = Vec::new();
        match self.hosts[h].core.as_mut() {
            Some(Core::Membership(core)) => {
                while let Some(out) = core.poll_output() {
                    outputs.push(out);
                }
            }
            Some(Core::Node(_)) => return self.drain_node(h),
            None => {}
        }
        let inc = self.hosts[h].inc;
        for out in outputs {
            match out {
                Output::Send { to, packet } => self.send(h, &to, packet),
                Output::Timer { after, timer } => {
                    let after = u64::try_from(after.as_millis()).unwrap_or(u64::MAX / 4);
                    self.push(
                        self.now_ms + after,
                        Event::Timer {
                            host: h,
                            inc,
                            timer,
                        },
                    );
                }
                Output::Changed(record) => {
                    self.track(h, &record);
                    self.changed(h, record);
                }
                Output::CheckPort(peer) => self.check_port(h, inc, &peer),
                Output::Delta(_) | Output::Renewed(_) => {}
            }
        }
    }

    /// Host `h` (incarnation `inc`) checks `peer`'s port: a killed peer whose machine
    /// stays up (`Fault::Kill`'s `refuses`) answers with a refusal a round trip later;
    /// a lost machine, a cut link or a live peer say nothing.
    pub(super) fn check_port(&mut self, h: usize, inc: u64, peer: &PeerId) {
        let to = host_of(peer);
        let Some(target) = self.hosts.get(to) else {
            return;
        };
        if !target.up
            && target.refuses
            && self.network.reachable(h, to)
            && self.network.reachable(to, h)
        {
            let at = self.now_ms + 2 * self.network.latency_ms();
            let peer = *peer;
            self.push(at, Event::Refused { host: h, inc, peer });
        }
    }

    /// Host `h`'s port check of `peer` was refused: its core hears of it.
    pub(super) fn refused(&mut self, h: usize, inc: u64, peer: PeerId) {
        if self.hosts[h].inc != inc {
            return;
        }
        let now = self.now_ms;
        match self.hosts[h].core.as_mut() {
            Some(Core::Membership(core)) => {
                let _ = core.handle_refused(peer, now);
                self.drain(h);
            }
            Some(Core::Node(_)) => self.node_input(h, Input::Refused(peer)),
            None => {}
        }
    }

    /// A gossip packet from host `h` to `to`, through the network model. (The core
    /// counted it as sent, lost or not.)
    pub(super) fn send(&mut self, h: usize, to: &PeerId, packet: Bytes) {
        let to = host_of(to);
        if to < self.hosts.len()
            && let Some(delay) = self.network.delivery(h, to, &mut self.rng)
        {
            let event = Event::Packet {
                to,
                from: h,
                bytes: packet,
            };
            self.push(self.now_ms + delay, event);
        }
    }

    /// Each host's traffic counters now (`None` for a host without a core: down, or the
    /// model).
    pub(super) fn traffic_counts(&self) -> Vec<Option<Counts>> {
        self.hosts
            .iter()
            .map(|host| {
                let core = host.core.as_ref().filter(|_| host.up)?;
                Some(Counts::of(&core.membership().traffic()))
            })
            .collect()
    }

    /// Observer `h` learnt `record`: count false positives, and check detection.
    pub(super) fn changed(&mut self, h: usize, record: MemberRecord) {
        if record.state.is_active() {
            return;
        }
        let subject = host_of(&record.peer);
        let Some(target) = self.hosts.get(subject) else {
            return;
        };
        // The core renews its epoch when wrongly declared down; the model keeps `peer`'s.
        let epoch = target
            .core
            .as_ref()
            .map_or(target.peer.epoch, |c| c.membership().identity().epoch);
        let alive_same = target.up && epoch == record.peer.epoch;
        if alive_same && record.state == MemberState::Down {
            let reachable =
                self.network.reachable(h, subject) && self.network.reachable(subject, h);
            self.metrics.live_seen_down(self.now_ms, reachable);
        }
        self.check_detection(subject);
    }

    /// Closes the open kill record of `subject` if every live host now counts it out.
    pub(super) fn check_detection(&mut self, subject: usize) {
        let Some(i) = self.metrics.open_detection(subject) else {
            return;
        };
        let epoch = self.metrics.kills[i].epoch;
        let node = peer_of(subject, epoch).node;
        let modelled = self.model.is_some();
        let all = self.hosts.iter().enumerate().all(|(o, host)| {
            o == subject
                || !host.up
                || if modelled {
                    host.active_epochs[subject] != short(epoch)
                } else {
                    host.core.as_ref().is_none_or(|core| {
                        core.membership()
                            .member(&node)
                            .is_none_or(|r| !r.state.is_active() || r.peer.epoch > epoch)
                    })
                }
        });
        if all {
            self.metrics.detected(i, self.now_ms);
        }
    }

    /// Host `h`'s agent learnt `record`: any change asks for a round soon (as the peer's
    /// agent wakes on a new view); the round's core notices joins and returns itself.
    pub(super) fn track(&mut self, h: usize, record: &MemberRecord) {
        let o = host_of(&record.peer);
        let host = &mut self.hosts[h];
        if o != h && o < host.active_epochs.len() {
            let epoch = if record.state.is_active() {
                short(record.peer.epoch)
            } else {
                0
            };
            if host.active_epochs[o] != epoch {
                host.active_epochs[o] = epoch;
                host.view_version += 1;
            }
        }
        self.round_soon(h);
    }

    /// Asks for a round of `h` as soon as the agent allows (it wakes on a new view and on
    /// a finished operation, at most every `ROUND_MIN_MS`).
    pub(super) fn round_soon(&mut self, h: usize) {
        let host = &mut self.hosts[h];
        let soonest = self.now_ms.max(host.last_round_ms + ROUND_MIN_MS);
        if soonest < host.round_at {
            self.round_at(h, soonest);
        }
    }

    /// With the model: schedules when each live host learns that `subject` died (`up`
    /// false) or came back (`up` true) at its current epoch.
    pub(super) fn model_news(&mut self, subject: usize, up: bool) {
        let Some(model) = self.model.clone() else {
            return;
        };
        let epoch = self.hosts[subject].peer.epoch;
        let live: Vec<usize> = (0..self.hosts.len())
            .filter(|&o| o != subject && self.hosts[o].up)
            .collect();
        if live.is_empty() {
            return;
        }
        // News of a death starts at the first prober, suspicion and all; news of a return
        // at the seed it joined through (the first live host).
        let (origin, start) = if up {
            (0, 0)
        } else {
            let first = self.rng.random_range(0..live.len());
            let start = model.first_suspicion_ms(&mut self.rng) + model.suspect_to_down_ms();
            (first, start)
        };
        let spread = model.spread_ms(live.len(), origin, &mut self.rng);
        for (i, at) in spread.into_iter().enumerate() {
            let at = match at {
                Some(at) => start + at,
                // Missed by the epidemic: its own probes find out.
                None if up => model.own_probe_ms(live.len(), &mut self.rng),
                None => model.own_probe_ms(live.len(), &mut self.rng) + model.suspect_to_down_ms(),
            };
            let host = live[i];
            let inc = self.hosts[host].inc;
            self.push(
                self.now_ms + at,
                Event::Learn {
                    host,
                    inc,
                    subject,
                    epoch,
                    up,
                },
            );
        }
    }

    /// With the model: `h` learns news of `subject`, unless newer news came first.
    pub(super) fn learn(&mut self, h: usize, inc: u64, subject: usize, epoch: u64, up: bool) {
        let host = &self.hosts[h];
        if host.inc != inc || !host.up {
            return;
        }
        let known = host.active_epochs[subject];
        let news = if up {
            short(epoch) > known
        } else {
            known == short(epoch)
        };
        if !news {
            return;
        }
        let record = MemberRecord {
            peer: peer_of(subject, epoch),
            state: if up {
                MemberState::Alive
            } else {
                MemberState::Down
            },
            since_ms: self.now_ms,
        };
        self.track(h, &record);
        self.changed(h, record);
    }

    pub(super) fn sync(&mut self, h: usize, inc: u64) {
        if self.hosts[h].inc != inc {
            return;
        }
        let now = self.now_ms;
        // The node core syncs on its own timer.
        let Some(Core::Membership(core)) = self.hosts[h].core.as_mut() else {
            return;
        };
        let _ = core.sync(now);
        self.drain(h);
        self.push(now + self.sync_ms, Event::Sync { host: h, inc });
    }

    /// Announces `h` to the first live host in index order (the seed that answers), and
    /// backs off before the next try.
    pub(super) fn announce(&mut self, h: usize) {
        let now = self.now_ms;
        let seed = (0..self.hosts.len()).find(|&o| o != h && self.hosts[o].up);
        let seed_peer = seed.map(|o| self.hosts[o].peer);
        let host = &mut self.hosts[h];
        host.announce_at_ms = now + host.announce_backoff_ms;
        host.announce_backoff_ms = (host.announce_backoff_ms * 2).min(10_000);
        match (seed_peer, host.core.as_mut()) {
            (Some(peer), Some(Core::Membership(core))) => {
                let _ = core.announce(peer, now);
            }
            (Some(peer), Some(Core::Node(_))) => return self.node_input(h, Input::Announce(peer)),
            _ => {}
        }
        self.drain(h);
    }

    /// With `KNIT_SIM_DEBUG` set: prints, on stderr, each live host whose view differs from
    /// the truly live hosts, and how.
    pub(super) fn debug_views(&self, live: &[u64]) {
        for h in 0..self.hosts.len() {
            let Some(core) = self.hosts[h].core.as_ref().map(Core::membership) else {
                continue;
            };
            if self.active_set(h) == live {
                continue;
            }
            eprintln!(
                "h{h}: divergent view, knows {} members, last quiet round {:?}, version {}",
                core.members().count(),
                self.hosts[h].quiet,
                core.version()
            );
            for r in core.members() {
                let o = host_of(&r.peer);
                let truly = self.hosts[o]
                    .core
                    .as_ref()
                    .map(|c| c.membership().identity().epoch);
                if r.state.is_active() != truly.is_some() {
                    eprintln!(
                        "  sees h{o} {:?} epoch {}; truly {truly:?}",
                        r.state, r.peer.epoch
                    );
                }
            }
        }
    }
}
