//! The hosts' agent rounds. Every host runs the real round core
//! ([`knit_scheduler::agent::Agent`]: settling after joins, coordinating rollouts, the
//! reconcile plan, the pace of operations) over what it sees — the members its membership
//! core counts as active, the placement over them, and the reports other hosts published —
//! and the engine carries its operations out in virtual time: a start runs after a drawn
//! start time, a stop at once, and a report reaches the others one network latency after
//! the round that publishes it.
//!
//! A round's inputs change only when the host's view, the published reports or its own
//! replicas change, so a host whose inputs did not change since a quiet round (settled, no
//! operation, no write) skips the core: the same inputs give the same plan. The one thing
//! that time alone moves in the core, a rollout wave's monitor and delay, is covered by
//! running every round while a rollout is under way (see [`super::specs`]).

use std::collections::{BTreeMap, BTreeSet};

use knit_scheduler::agent::{Done, Input, Members, Plan, Published, Write};
use knit_scheduler::reconcile::Action;
use knit_scheduler::reconcile::pace::ROUND_EVERY_MS;
use knit_scheduler::rollout::{Progress, RolloutState};
use knit_scheduler::{Health, ReplicaReport, ReplicaState, SlotId};
use rand::RngExt;

use super::node::Core;
use super::{Engine, Event, SlotState, host_of};
use crate::healing::{Healing, HostSet, insert};

/// What hosts published that rounds read: rollout progress, by service and host, and
/// when each service's spec was last written.
#[derive(Debug, Default)]
pub(super) struct Board {
    progress: BTreeMap<(String, usize), Progress>,
    /// Published progresses of rollouts under way (updating or rolling back).
    rolling: usize,
    written_ms: BTreeMap<String, u64>,
}

impl Board {
    /// Sets (or, with `None`, removes) host `h`'s progress of `service`.
    fn set(&mut self, service: String, h: usize, progress: Option<Progress>) {
        let under_way =
            |p: &Progress| matches!(p.state, RolloutState::Updating | RolloutState::RollingBack);
        let key = (service, h);
        let old = match progress {
            Some(p) => {
                self.rolling += usize::from(under_way(&p));
                self.progress.insert(key, p)
            }
            None => self.progress.remove(&key),
        };
        self.rolling -= old.as_ref().map_or(0, |p| usize::from(under_way(p)));
    }

    /// Whether a rollout is under way: time alone moves it.
    pub(super) fn rolling(&self) -> bool {
        self.rolling > 0
    }

    /// `service`'s spec was written at `now_ms`.
    pub(super) fn written(&mut self, service: &str, now_ms: u64) {
        self.written_ms.insert(service.to_owned(), now_ms);
    }
}

impl Published for Board {
    fn progress(&self, service: &str) -> Vec<Progress> {
        self.progress
            .range((service.to_owned(), 0)..=(service.to_owned(), usize::MAX))
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Specs are written before the run starts, or by `update` faults.
    fn spec_written_ms(&self, service: &str) -> u64 {
        self.written_ms.get(service).copied().unwrap_or(0)
    }
}

/// Coordinator tables kept for sharing, by the set of hosts they were filled for.
const SHARED_TABLES_MAX: usize = 16;

/// The inputs of a host's last quiet round: (view version, published reports version,
/// own replicas version).
pub(super) type Seen = (u64, u64, u64);

/// Every host's reports, by scheduler node id.
pub(super) type Observed = BTreeMap<knit_scheduler::NodeId, Vec<ReplicaReport>>;

impl Engine {
    /// One agent round: announce again while outside the cluster; publish what started
    /// since the last round; once connected (and past warm-up), run the round's core and
    /// carry out its plan.
    pub(super) fn round(&mut self, h: usize, inc: u64, at: u64) {
        if self.hosts[h].inc != inc || self.hosts[h].round_at != at {
            return;
        }
        let now = self.now_ms;
        let host = &self.hosts[h];
        let (version, active) = match (&self.model, host.core.as_ref().map(Core::membership)) {
            (Some(_), _) if host.up => (host.view_version, true),
            (None, Some(core)) => (
                core.version(),
                core.connection() == knit_mesh::Connection::Active,
            ),
            _ => return,
        };
        if !active && now >= self.hosts[h].announce_at_ms {
            self.announce(h);
        }
        self.publish_reports(h);
        self.hosts[h].last_round_ms = now;
        // A host that is not connected yet acts on nothing: the peer's restart grace and the
        // members its state remembers (which the simulator does not model) keep a
        // restarted peer from placing alone.
        if active {
            self.act(h, version);
        }
        self.round_at(h, now + ROUND_EVERY_MS);
    }

    /// Makes host `h`'s next round the one at `at` (an earlier one pending is dropped when
    /// it comes: see [`Engine::round`]).
    pub(super) fn round_at(&mut self, h: usize, at: u64) {
        let host = &mut self.hosts[h];
        host.round_at = at;
        let inc = host.inc;
        self.push(at, Event::Round { host: h, inc, at });
    }

    /// The members host `h` sees, as the round's core reads them.
    pub(super) fn members_of(&self, h: usize) -> Members {
        let mut active = BTreeMap::new();
        let host = &self.hosts[h];
        active.insert(self.healing.name(h).clone(), host.peer.epoch);
        let mut knows_others = false;
        if self.model.is_some() {
            for (o, &epoch) in host.active_epochs.iter().enumerate() {
                if o != h && epoch != 0 {
                    active.insert(self.healing.name(o).clone(), u64::from(epoch));
                }
            }
            knows_others = active.len() > 1;
        } else if let Some(core) = host.core.as_ref().map(Core::membership) {
            for record in core.members() {
                let o = host_of(&record.peer);
                if o == h || o >= self.hosts.len() {
                    continue;
                }
                knows_others = true;
                if record.state.is_active() {
                    active.insert(self.healing.name(o).clone(), record.peer.epoch);
                }
            }
        }
        Members {
            active,
            knows_others,
            connected: true,
        }
    }

    /// The hosts `h` counts as active (alive or suspect), itself included, as a set.
    pub(super) fn active_set(&self, h: usize) -> crate::healing::HostSet {
        self.set_of(&self.members_of(h))
    }

    /// The hosts of `members` as a set.
    fn set_of(&self, members: &Members) -> crate::healing::HostSet {
        let mut set = crate::healing::empty_set(self.hosts.len());
        for node in members.active.keys() {
            if let Some(o) = self.healing.index_of(node) {
                insert(&mut set, o as usize);
            }
        }
        set
    }

    /// Runs host `h`'s round core (see the module doc for when it is skipped) and carries
    /// out its plan.
    fn act(&mut self, h: usize, view_version: u64) {
        let now = self.now_ms;
        let quiet_view = self.hosts[h]
            .quiet
            .is_some_and(|(v, _, l)| v == view_version && l == self.hosts[h].local_version);
        let seen = (
            view_version,
            if quiet_view {
                self.reads_stamp(h)
            } else {
                self.reports_version
            },
            self.hosts[h].local_version,
        );
        if self.hosts[h].quiet == Some(seen) && !self.board.rolling() {
            return;
        }
        if self.hosts[h]
            .members
            .as_ref()
            .is_none_or(|(v, _, _)| *v != view_version)
        {
            let members = self.members_of(h);
            let set = self.set_of(&members);
            self.hosts[h].members = Some((view_version, members, set));
        }
        let Some((_, members, set)) = self.hosts[h].members.take() else {
            return;
        };
        let plan = self.plan(h, &members, &set, seen, now);
        self.hosts[h].members = Some((view_version, members, set));
        let Some(plan) = plan else {
            return;
        };
        let quiet = plan.settled && plan.ops.is_empty() && plan.writes.is_empty();
        self.hosts[h].quiet = quiet.then_some(seen);
        for write in plan.writes {
            match write {
                Write::Progress { service, progress } => self.board.set(service, h, progress),
                // Autoscaling and rollbacks: only `update` faults change specs.
                Write::Spec(_) => {}
            }
        }
        for op in plan.ops {
            self.carry_out(h, op.action);
        }
    }

    /// Host `h`'s round over `members`, or `None` when it did not act (warming up, or
    /// views not settled).
    fn plan(
        &mut self,
        h: usize,
        members: &Members,
        set: &HostSet,
        seen: Seen,
        now: u64,
    ) -> Option<Plan> {
        let host = &mut self.hosts[h];
        if now < self.warmup_ms {
            // Slots run where the full placement put them; the agent only follows joins.
            host.agent.settled(members, now);
            host.quiet = Some(seen);
            return None;
        }
        if !host.agent.settled(members, now).0 {
            host.quiet = None;
            return None;
        }
        let placement = self.healing.placement_for(set);
        self.hosts[h].placed = Some(std::rc::Rc::clone(&placement));
        let coordinated = self.coordinated(h, members, set);
        let observed = self.observed_for(h, &placement.by_host[h], &coordinated);
        let input = Input {
            members,
            specs: &self.specs,
            placement: &placement.placement,
            observed: &observed,
            published: &self.board,
            limits: knit_scheduler::spec::limits::Limits::default(),
            active_nodes: members.active.len(),
        };
        Some(self.hosts[h].agent.round(&input, now))
    }

    /// The newest stamp of the slots whose reports host `h`'s round reads (as
    /// [`Engine::observed_for`] picks them), with the members of its last round: the
    /// reports it reads changed since a round iff this is newer than that round.
    fn reads_stamp(&self, h: usize) -> u64 {
        let host = &self.hosts[h];
        let Some(placement) = host.placed.as_ref() else {
            return self.reports_version;
        };
        let stamp = &self.slot_stamp;
        let mut newest = 0;
        for &s in placement.by_host[h].iter().chain(host.running.keys()) {
            newest = newest.max(stamp[s as usize]);
        }
        for service in host.agent.coordinating() {
            for s in self.healing.slots_of_service(service) {
                newest = newest.max(stamp[s as usize]);
            }
        }
        newest
    }

    /// The services host `h` coordinates among `members` (the hosts of `set`). Hosts that
    /// see the same members share one coordinator table: the first to need it fills it, the
    /// others take it ([`knit_scheduler::agent::Agent::share`]), as it is a pure function of
    /// the members and services.
    fn coordinated(&mut self, h: usize, members: &Members, set: &HostSet) -> BTreeSet<String> {
        let agent = &mut self.hosts[h].agent;
        let alive = agent.alive(members);
        if let Some(shared) = self.coordinators.get(set) {
            agent.share(shared, &alive, &self.specs);
        }
        let coordinated = agent.coordinated_among(&alive, &self.specs).clone();
        if !self.coordinators.contains_key(set) {
            if self.coordinators.len() >= SHARED_TABLES_MAX {
                self.coordinators.pop_first();
            }
            let table = agent.coordinators().clone();
            self.coordinators.insert(set.clone(), table);
        }
        coordinated
    }

    /// The reports host `h`'s round reads: of the slots it runs or owns and of the services
    /// it coordinates, from every host that published them, and its own as they are now.
    /// The round reads no other (see [`knit_scheduler::reconcile::plan`] and
    /// [`knit_scheduler::agent::coordinate`]), so this gives the same plan as every report.
    fn observed_for(&self, h: usize, owned: &[u32], coordinated: &BTreeSet<String>) -> Observed {
        let mut slots: BTreeSet<u32> = owned.iter().copied().collect();
        slots.extend(self.hosts[h].running.keys().copied());
        for service in coordinated {
            slots.extend(self.healing.slots_of_service(service));
        }
        let mut observed: Observed = BTreeMap::new();
        for s in slots {
            for (o, r) in &self.by_slot[s as usize] {
                if *o != h {
                    observed
                        .entry(self.healing.name(*o).clone())
                        .or_default()
                        .push(r.clone());
                }
            }
        }
        observed.insert(self.healing.name(h).clone(), self.own_reports(h));
        observed
    }

    /// Host `h`'s reports as its drivers would list them now.
    fn own_reports(&self, h: usize) -> Vec<ReplicaReport> {
        let listed = self.hosts[h]
            .running
            .iter()
            .map(|(&s, state)| {
                let state = match state {
                    SlotState::Starting => ReplicaState::Starting,
                    SlotState::Running => ReplicaState::Running,
                };
                let as_ = self.hosts[h]
                    .started_as
                    .get(&s)
                    .copied()
                    .unwrap_or_default();
                ReplicaReport {
                    state,
                    ..report(&self.healing, as_, h, s)
                }
            })
            .collect();
        self.hosts[h]
            .agent
            .reports(listed, &self.specs, self.now_ms)
    }

    /// Carries out one operation of host `h`'s plan.
    fn carry_out(&mut self, h: usize, action: Action) {
        let slot = action.slot().clone();
        let Some(s) = self.healing.index_of_slot(&slot) else {
            self.hosts[h].agent.done(&slot, Done::Ok, self.now_ms);
            return;
        };
        match action {
            Action::Start { .. } => self.start(h, s),
            Action::Stop { .. } => {
                self.stop(h, s);
                self.hosts[h].agent.done(&slot, Done::Ok, self.now_ms);
            }
            Action::Replace { .. } => {
                self.stop(h, s);
                self.start(h, s);
            }
        }
    }

    /// Starts slot `s` on host `h`; it runs after a drawn start time.
    fn start(&mut self, h: usize, s: u32) {
        let (lo, hi) = self.start_ms;
        let delay = if hi > lo {
            self.rng.random_range(lo..=hi)
        } else {
            lo
        };
        let host = &mut self.hosts[h];
        host.running.insert(s, SlotState::Starting);
        let service = &self.healing.slots[s as usize].service;
        let as_ = self.templates.get(service).copied().unwrap_or_default();
        host.started_as.insert(s, as_);
        host.local_version += 1;
        self.metrics.starts += 1;
        let inc = host.inc;
        self.push(
            self.now_ms + delay,
            Event::Started {
                host: h,
                inc,
                slot: s,
            },
        );
    }

    /// Stops slot `s` on host `h` at once.
    fn stop(&mut self, h: usize, s: u32) {
        let host = &mut self.hosts[h];
        host.started_as.remove(&s);
        if host.running.remove(&s) == Some(SlotState::Running) {
            self.running_count[s as usize] -= 1;
        }
        host.unreported.retain(|&u| u != s);
        host.local_version += 1;
        if host.reported.remove(&s) {
            self.reported_count[s as usize] -= 1;
            self.reports_version += 1;
            self.slot_stamp[s as usize] = self.reports_version;
            self.by_slot[s as usize].retain(|(o, _)| *o != h);
        }
    }

    pub(super) fn started(&mut self, h: usize, inc: u64, slot: u32) {
        if self.hosts[h].inc != inc {
            return;
        }
        let host = &mut self.hosts[h];
        if let Some(state) = host.running.get_mut(&slot)
            && *state == SlotState::Starting
        {
            *state = SlotState::Running;
            host.local_version += 1;
            self.running_count[slot as usize] += 1;
            host.unreported.push(slot);
            let id: &SlotId = &self.healing.slots[slot as usize];
            host.agent.done(id, Done::Ok, self.now_ms);
            self.round_soon(h);
        }
    }

    /// Publishes, at a round, the reports of what `h` started since the last: the other
    /// hosts see them one network latency later.
    fn publish_reports(&mut self, h: usize) {
        let slots = std::mem::take(&mut self.hosts[h].unreported);
        let inc = self.hosts[h].inc;
        for slot in slots {
            let at = self.now_ms + self.network.latency_ms();
            self.push(at, Event::Reported { host: h, inc, slot });
        }
    }

    pub(super) fn reported(&mut self, h: usize, inc: u64, slot: u32) {
        let host = &mut self.hosts[h];
        if host.inc != inc || host.running.get(&slot) != Some(&SlotState::Running) {
            return;
        }
        if host.reported.insert(slot) {
            self.reported_count[slot as usize] += 1;
            self.reports_version += 1;
            self.slot_stamp[slot as usize] = self.reports_version;
            let as_ = host.started_as.get(&slot).copied().unwrap_or_default();
            let r = report(&self.healing, as_, h, slot);
            self.by_slot[slot as usize].push((h, r));
            let counts = &self.reported_count;
            self.metrics
                .check_heal(self.now_ms, |s| counts[s as usize] > 0);
        }
    }
}

/// The report of slot `s` running on host `h`, started from spec version and template
/// `started_as`.
pub(super) fn report(healing: &Healing, started_as: (u64, u64), h: usize, s: u32) -> ReplicaReport {
    let slot = healing.slots[s as usize].clone();
    let (spec_version, template) = started_as;
    ReplicaReport {
        runtime_id: format!("h{h}-{s}"),
        slot,
        spec_version,
        template,
        state: ReplicaState::Running,
        health: Health::None,
        host_ports: BTreeMap::new(),
        error: None,
        started_at_ms: 0,
        restarts: 0,
        cpu_millis: None,
    }
}
