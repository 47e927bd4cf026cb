//! The discrete-event engine: virtual milliseconds, one event heap ordered by
//! `(time, sequence)`, one seeded RNG, and N hosts each with a real membership core (or,
//! with `store = true`, the whole node core of the peer, see `node.rs`; or, with
//! `membership = "model"`, the calibrated model of [`crate::model`]).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use knit_mesh::Timer;
use knit_mesh::node_core::Input;
use knit_mesh::store::Store;
use knit_mesh::{MemberState, NodeId, PeerId, Profile};
use knit_scheduler::agent::Agent;
use knit_scheduler::reconcile::pace::ROUND_EVERY_MS;
use knit_scheduler::{ReplicaReport, ServiceSpec};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::healing::{Healing, empty_set, insert};
use crate::metrics::{KillRecord, Metrics};
use crate::model::{CALIBRATION, MembershipKind, Model};
use crate::network::Network;
use crate::queue::Queue;
use crate::report::Report;
use crate::scenario::{Churn, Fault, Scenario, ScenarioError, secs_to_ms};

/// A run that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario is invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// More events than `step_budget` allows: raise it or shorten the run.
    #[error(
        "step budget of {budget} events exhausted at {at_ms} ms of simulated time; raise step_budget or shorten duration_s"
    )]
    StepBudget {
        /// The budget.
        budget: u64,
        /// Simulated time reached.
        at_ms: u64,
    },
}

enum Event {
    Packet {
        to: usize,
        from: usize,
        bytes: Bytes,
    },
    /// An input for a host's node core: a timer, deltas pushed to it, the end of one of its
    /// pushes or exchanges.
    Node {
        host: usize,
        inc: u64,
        input: Input,
    },
    /// Host `from` (incarnation `inc`) runs the exchange it asked for with `to`.
    Exchange {
        from: usize,
        inc: u64,
        to: PeerId,
    },
    Timer {
        host: usize,
        inc: u64,
        timer: Timer,
    },
    /// `Membership::sync`, every `sync_ms`.
    Sync {
        host: usize,
        inc: u64,
    },
    /// An agent round, if the host still expects one at `at` (an earlier one may have
    /// been asked for meanwhile).
    Round {
        host: usize,
        inc: u64,
        at: u64,
    },
    Started {
        host: usize,
        inc: u64,
        slot: u32,
    },
    /// The membership model: `host` learns that `subject` (at `epoch`) is up or down.
    Learn {
        host: usize,
        inc: u64,
        subject: usize,
        epoch: u64,
        up: bool,
    },
    /// A host's first announce to the seed (hosts start within a second of one another,
    /// so their probe timers run out of phase, as real peers' do).
    Join {
        host: usize,
    },
    /// Other hosts now see `host`'s report of `slot` running.
    Reported {
        host: usize,
        inc: u64,
        slot: u32,
    },
    /// Host `host`'s port check of `peer` was refused.
    Refused {
        host: usize,
        inc: u64,
        peer: PeerId,
    },
    Fault(Fault),
    ChurnKill,
    Warm,
    /// A point of the convergence curve.
    Sample,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Starting,
    Running,
}

struct Host {
    peer: PeerId,
    /// Whether the host runs (not killed).
    up: bool,
    /// Removed from the cluster (a `remove` fault): it never restarts.
    removed: bool,
    /// Killed, and its machine refuses datagrams to its port (see `Fault::Kill`).
    refuses: bool,
    /// The real membership core, or the whole node core; `None` while the host is down,
    /// and with the model.
    core: Option<Core>,
    /// With the node core: the hosts whose certificate this incarnation was handed with
    /// their first packet, as a connection does.
    certs_from: BTreeSet<usize>,
    /// With the node core: each host's state and epoch in the last view, to turn views
    /// into member changes.
    seen: Vec<Option<(MemberState, u64)>>,
    /// With the node core: the store a killed host starts again from (its `state.bin`).
    disk: Option<Store>,
    /// With the model: bumped on every change of `active_epochs`, which is then the view.
    view_version: u64,
    /// Bumped on every kill and restart; events of an older incarnation are dropped.
    inc: u64,
    /// The round's core: settling, rollouts, the plan and its pace, as the peer runs it.
    agent: Agent,
    /// The inputs of the last quiet round (see [`round`]).
    quiet: Option<round::Seen>,
    /// Bumped on every change of `running`.
    local_version: u64,
    /// The members this host sees, and the same as a set, at the view version they were
    /// read at.
    members: Option<(u64, knit_scheduler::agent::Members, crate::healing::HostSet)>,
    /// The placement of the last round that placed, for [`round`]'s skip test.
    placed: Option<std::rc::Rc<crate::healing::Computed>>,
    /// When the next round is due.
    round_at: u64,
    /// When the last round ran.
    last_round_ms: u64,
    /// The epoch of each host this host counts as active (0: not active), kept from the
    /// core's notifications; with the model, the view itself.
    active_epochs: Vec<u32>,
    running: BTreeMap<u32, SlotState>,
    /// The spec version and template each running slot was started from.
    started_as: BTreeMap<u32, (u64, u64)>,
    /// Running slots whose report other hosts have seen.
    reported: BTreeSet<u32>,
    /// Slots started since the last round, reported at the next one (as the agent does).
    unreported: Vec<u32>,
    /// While not active: when to announce again, and the back-off (1 s doubling to 10 s,
    /// as the peer's seed task does).
    announce_at_ms: u64,
    announce_backoff_ms: u64,
}

/// One simulation run.
pub struct Engine {
    now_ms: u64,
    queue: Queue<Event>,
    rng: SmallRng,
    seed: u64,
    hosts: Vec<Host>,
    network: Network,
    profile: Profile,
    /// `Some` when membership is modelled.
    model: Option<Model>,
    /// Whether hosts run the whole node core (`store = true`).
    store: bool,
    /// Whether the hosts' stores agree, and since when.
    stores: StoreWatch,
    sync_ms: u64,
    warmup_ms: u64,
    end_ms: u64,
    step_budget: u64,
    steps: u64,
    start_ms: (u64, u64),
    churn: Option<Churn>,
    healing: Healing,
    /// Live running instances of each slot.
    running_count: Vec<u32>,
    /// Running instances of each slot that other hosts have seen reported: what heal
    /// and make-before-break go by.
    reported_count: Vec<u32>,
    metrics: Metrics,
    /// Each host's capacity.
    capacity: Vec<knit_scheduler::Resources>,
    /// The services by name, as rounds read them, and each one's version and template.
    specs: BTreeMap<String, ServiceSpec>,
    templates: BTreeMap<String, (u64, u64)>,
    /// What hosts published for rounds to read.
    board: round::Board,
    /// Bumped on every change of a published report (`reported`).
    reports_version: u64,
    /// The `reports_version` at the last change of each slot's published reports: a
    /// round's reports changed when one of the slots it reads has a newer stamp.
    slot_stamp: Vec<u64>,
    /// The published reports of each slot (by slot index), with their hosts: what other
    /// hosts read, indexed so that a round reads only the slots it looks at.
    by_slot: Vec<Vec<(usize, ReplicaReport)>>,
    /// Coordinator tables hosts share, by the set of hosts they cover (see
    /// `Engine::coordinated`).
    coordinators: BTreeMap<crate::healing::HostSet, knit_scheduler::agent::Coordinators>,
    /// The hosts' gossip and anti-entropy over the measured time, from their cores'
    /// counters.
    traffic: crate::traffic::Window,
}

/// The mesh identity of host `h`: its index in the first four bytes of the node id.
fn peer_of(host: usize, epoch: u64) -> PeerId {
    let index = u32::try_from(host).unwrap_or(u32::MAX);
    let mut bytes = [0x6b; 16];
    bytes[..4].copy_from_slice(&index.to_be_bytes());
    let [_, a, b, c] = index.to_be_bytes();
    PeerId {
        node: NodeId::from_bytes(bytes),
        addr: std::net::SocketAddr::from(([10, a, b, c], 7946)),
        epoch,
    }
}

/// Hosts start (and first announce themselves) within this long of one another.
const JOIN_SPREAD_MS: u64 = 1_000;

/// An epoch as a view keeps it: hosts restart far fewer than 2^32 times in a run.
fn short(epoch: u64) -> u32 {
    u32::try_from(epoch).unwrap_or(u32::MAX)
}

fn host_of(peer: &PeerId) -> usize {
    let b = peer.node.as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
}

impl Engine {
    /// Builds the cluster of `scenario` (with `seed`): every host joins through host 0, and
    /// every slot runs where the full placement puts it.
    pub fn new(scenario: &Scenario, seed: u64) -> Result<Self, SimError> {
        scenario.validate()?;
        let views = scenario.host_views()?;
        let n = views.len();
        let capacity = views.iter().map(|v| v.capacity).collect();
        let healing = Healing::with_table(scenario.specs()?, &scenario.table_specs()?, views);
        let slots = healing.slots.len();
        let specs: BTreeMap<String, ServiceSpec> = healing
            .services()
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        let templates = specs
            .values()
            .map(|s| (s.name.clone(), (s.version, s.template_id())))
            .collect();
        let mut engine = Self {
            now_ms: 0,
            queue: Queue::default(),
            rng: SmallRng::seed_from_u64(seed),
            seed,
            hosts: Vec::with_capacity(n),
            network: Network::new(&scenario.network, n),
            profile: scenario.profile,
            model: (scenario.membership == MembershipKind::Model)
                .then(|| Model::new(scenario.profile, n, CALIBRATION)),
            store: scenario.store,
            stores: StoreWatch::default(),
            sync_ms: scenario.sync_ms,
            warmup_ms: secs_to_ms(scenario.warmup_s),
            end_ms: secs_to_ms(scenario.duration_s),
            step_budget: scenario.step_budget,
            steps: 0,
            start_ms: (
                scenario.containers.start_min_ms,
                scenario.containers.start_max_ms,
            ),
            churn: scenario.churn.clone(),
            healing,
            running_count: vec![0; slots],
            reported_count: vec![0; slots],
            metrics: Metrics::default(),
            capacity,
            specs,
            templates,
            board: round::Board::default(),
            reports_version: 0,
            slot_stamp: vec![0; slots],
            by_slot: vec![Vec::new(); slots],
            coordinators: BTreeMap::new(),
            traffic: crate::traffic::Window::default(),
        };
        engine.boot(scenario);
        Ok(engine)
    }

    fn boot(&mut self, scenario: &Scenario) {
        let n = scenario.host_count();
        let modelled = self.model.is_some();
        for h in 0..n {
            let peer = peer_of(h, 1);
            let core = (!modelled).then(|| self.new_core(h, peer, None));
            // The model starts from the joined cluster: every host knows every other.
            let mut known = vec![u32::from(modelled); n];
            known[h] = 0;
            self.hosts.push(Host {
                peer,
                up: true,
                removed: false,
                refuses: false,
                core,
                certs_from: BTreeSet::new(),
                seen: if self.store {
                    vec![None; n]
                } else {
                    Vec::new()
                },
                disk: None,
                view_version: 0,
                inc: 0,
                agent: Agent::new(self.healing.name(h).clone(), 0),
                quiet: None,
                local_version: 0,
                members: None,
                placed: None,
                round_at: 0,
                last_round_ms: 0,
                active_epochs: known,
                running: BTreeMap::new(),
                started_as: BTreeMap::new(),
                reported: BTreeSet::new(),
                unreported: Vec::new(),
                announce_at_ms: 1_000,
                announce_backoff_ms: 2_000,
            });
        }
        if self.store {
            // The seed's node core starts now: its first view, store and timers. Each other
            // host's starts when it first announces itself (`Join`), so that their periodic
            // timers (anti-entropy, member sync) run out of phase, as real peers' do.
            self.drain(0);
        }
        for h in 1..n {
            if !modelled {
                let at = self.rng.random_range(0..JOIN_SPREAD_MS);
                self.push(at, Event::Join { host: h });
            }
        }
        let mut all = empty_set(n);
        (0..n).for_each(|h| insert(&mut all, h));
        let full = self.healing.placement_for(&all);
        for (h, owned) in full.by_host.iter().enumerate() {
            for &s in owned {
                self.hosts[h].running.insert(s, SlotState::Running);
                let as_ = self.templates[&self.healing.slots[s as usize].service];
                self.hosts[h].started_as.insert(s, as_);
                self.hosts[h].reported.insert(s);
                let r = round::report(&self.healing, as_, h, s);
                self.by_slot[s as usize].push((h, r));
                self.running_count[s as usize] += 1;
                self.reported_count[s as usize] += 1;
            }
        }
        for h in 0..n {
            let offset = 1 + (h as u64 * self.sync_ms) / n as u64;
            if !modelled && !self.store {
                self.push(offset, Event::Sync { host: h, inc: 0 });
            }
            let at = 1 + (h as u64 * ROUND_EVERY_MS) / n as u64;
            self.round_at(h, at);
        }
        for fault in &scenario.faults {
            self.push(secs_to_ms(fault.at_s()), Event::Fault(fault.clone()));
        }
        self.push(self.warmup_ms, Event::Warm);
        self.push(self.warmup_ms, Event::Sample);
        if let Some(churn) = self.churn.clone() {
            let start = churn.start_s.map_or(self.warmup_ms, secs_to_ms);
            let gap = self.churn_gap(&churn);
            self.push(start + gap, Event::ChurnKill);
        }
    }

    fn core_seed(&self, host: usize, epoch: u64) -> u64 {
        self.seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add((host as u64) << 20)
            .wrapping_add(epoch)
    }

    fn push(&mut self, at: u64, event: Event) {
        self.queue.push(at, event);
    }

    /// Runs to the end of the scenario and reports.
    pub fn run(mut self, scenario: &Scenario) -> Result<Report, SimError> {
        self.advance(self.end_ms)?;
        Ok(self.finish(scenario))
    }

    /// Processes every event up to `until_ms` (at most the scenario's end).
    pub fn advance(&mut self, until_ms: u64) -> Result<(), SimError> {
        let until_ms = until_ms.min(self.end_ms);
        while let Some((at, event)) = self.queue.pop_until(until_ms) {
            self.steps += 1;
            if self.steps > self.step_budget {
                return Err(SimError::StepBudget {
                    budget: self.step_budget,
                    at_ms: at,
                });
            }
            self.now_ms = at;
            self.dispatch(event);
        }
        self.now_ms = self.now_ms.max(until_ms);
        Ok(())
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Packet { to, from, bytes } => {
                let now = self.now_ms;
                match self.hosts[to].core.as_mut() {
                    Some(Core::Membership(core)) => {
                        let _ = core.handle_packet(&bytes, now);
                        self.drain(to);
                    }
                    Some(Core::Node(_)) => self.node_packet(to, from, bytes),
                    None => {}
                }
            }
            Event::Timer { host, inc, timer } => {
                let now = self.now_ms;
                if self.hosts[host].inc == inc
                    && let Some(Core::Membership(core)) = self.hosts[host].core.as_mut()
                {
                    let _ = core.handle_timer(timer, now);
                    self.drain(host);
                }
            }
            Event::Node { host, inc, input } => {
                if self.hosts[host].inc == inc {
                    self.node_input(host, input);
                }
            }
            Event::Refused { host, inc, peer } => self.refused(host, inc, peer),
            Event::Exchange { from, inc, to } => self.exchange(from, inc, to),
            Event::Sync { host, inc } => self.sync(host, inc),
            Event::Learn {
                host,
                inc,
                subject,
                epoch,
                up,
            } => self.learn(host, inc, subject, epoch, up),
            Event::Round { host, inc, at } => self.round(host, inc, at),
            Event::Started { host, inc, slot } => self.started(host, inc, slot),
            Event::Fault(fault) => self.fault(fault),
            Event::ChurnKill => self.churn_kill(),
            Event::Warm => {
                self.metrics.warm(self.now_ms, self.utilisation());
                if self.model.is_none() {
                    let counts = self.traffic_counts();
                    self.traffic.open(self.now_ms, counts);
                }
                // Agents that only followed joins until now act from the next round.
                self.hosts.iter_mut().for_each(|host| host.quiet = None);
            }
            Event::Join { host } => {
                let now = self.now_ms;
                if self.hosts[host].inc != 0 {
                    return;
                }
                match self.hosts[host].core.as_mut() {
                    Some(Core::Membership(core)) => {
                        let _ = core.announce(peer_of(0, 1), now);
                        self.drain(host);
                    }
                    Some(Core::Node(_)) => self.node_input(host, Input::Announce(peer_of(0, 1))),
                    None => {}
                }
            }
            Event::Reported { host, inc, slot } => self.reported(host, inc, slot),
            Event::Sample => self.sample(),
        }
    }

    fn fault(&mut self, fault: Fault) {
        if !matches!(fault, Fault::Write { .. } | Fault::Update { .. }) {
            self.stores.disturbed(self.now_ms);
        }
        match fault {
            Fault::Kill { host, refuses, .. } => {
                self.kill(host);
                self.hosts[host].refuses = refuses;
            }
            Fault::Restart { host, .. } => self.restart(host),
            Fault::Partition { groups, .. } => self.network.partition(&groups),
            Fault::Heal { .. } => self.network.heal(),
            Fault::Cut { from, to, .. } => self.network.cut(from, to),
            Fault::Restore { from, to, .. } => self.network.restore(from, to),
            Fault::Write {
                host, key, bytes, ..
            } => self.write(host, key, bytes),
            update @ Fault::Update { .. } => self.update(&update),
            Fault::Remove { host, through, .. } => self.remove(host, through),
        }
    }

    fn live_set(&self) -> Vec<u64> {
        let mut set = empty_set(self.hosts.len());
        for (h, host) in self.hosts.iter().enumerate() {
            if host.up {
                insert(&mut set, h);
            }
        }
        set
    }

    fn kill(&mut self, h: usize) {
        if !self.hosts[h].up {
            return;
        }
        let before = self.healing.placement_for(&self.live_set());
        if let Some(core) = &self.hosts[h].core {
            let last = crate::traffic::Counts::of(&core.membership().traffic());
            self.traffic.core_gone(h, self.now_ms, &last);
        }
        let host = &mut self.hosts[h];
        host.up = false;
        host.disk = host.core.take().and_then(|core| core.store().cloned());
        host.inc += 1;
        host.quiet = None;
        host.local_version += 1;
        let mut slots = Vec::new();
        let reported = std::mem::take(&mut host.reported);
        self.reports_version += 1;
        for &s in &reported {
            self.by_slot[s as usize].retain(|(o, _)| *o != h);
            self.slot_stamp[s as usize] = self.reports_version;
        }
        host.unreported.clear();
        host.started_as.clear();
        for (s, state) in std::mem::take(&mut host.running) {
            if state == SlotState::Running {
                self.running_count[s as usize] -= 1;
                slots.push(s);
            }
        }
        for s in reported {
            self.reported_count[s as usize] -= 1;
        }
        let after = self.healing.placement_for(&self.live_set());
        let counts = &self.reported_count;
        let healed = slots.iter().all(|&s| counts[s as usize] > 0);
        self.metrics.killed(KillRecord {
            host: h,
            epoch: self.hosts[h].peer.epoch,
            at_ms: self.now_ms,
            moves: after.placement.moves_from(&before.placement),
            optimum: before.by_host[h].len(),
            detected_ms: None,
            healed_ms: healed.then_some(self.now_ms),
            restarted_first: false,
            slots,
        });
        for subject in self.metrics.open_detections() {
            self.check_detection(subject);
        }
        self.store_changed(h);
        self.model_news(h, false);
    }

    fn restart(&mut self, h: usize) {
        if self.hosts[h].up || self.hosts[h].removed {
            return;
        }
        self.metrics.restarted(h);
        let epoch = self.hosts[h].peer.epoch + 1;
        let peer = peer_of(h, epoch);
        let disk = self.hosts[h].disk.take();
        let core = self.model.is_none().then(|| self.new_core(h, peer, disk));
        if core.is_some() {
            self.traffic.core_started(h, self.now_ms);
        }
        let agent = Agent::new(self.healing.name(h).clone(), self.now_ms);
        let host = &mut self.hosts[h];
        host.peer = peer;
        host.up = true;
        host.refuses = false;
        host.core = core;
        host.certs_from.clear();
        host.seen.fill(None);
        host.inc += 1;
        host.agent = agent;
        host.quiet = None;
        host.active_epochs.fill(0);
        host.announce_backoff_ms = 1_000;
        let inc = host.inc;
        let next = self.now_ms + ROUND_EVERY_MS;
        host.last_round_ms = self.now_ms;
        self.round_at(h, next);
        if self.model.is_some() {
            // The seed answers the join with every member it knows.
            let truth: Vec<u32> = self
                .hosts
                .iter()
                .enumerate()
                .map(|(o, other)| {
                    if other.up && o != h {
                        short(other.peer.epoch)
                    } else {
                        0
                    }
                })
                .collect();
            let host = &mut self.hosts[h];
            host.active_epochs = truth;
            host.view_version += 1;
            self.model_news(h, true);
        } else {
            self.announce(h);
            if !self.store {
                self.push(self.now_ms + self.sync_ms, Event::Sync { host: h, inc });
            }
        }
    }

    fn churn_gap(&mut self, churn: &Churn) -> u64 {
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        secs_to_ms(-u.ln() * 60.0 / churn.kills_per_minute)
    }

    fn churn_kill(&mut self) {
        let Some(churn) = self.churn.clone() else {
            return;
        };
        let stop = churn
            .stop_s
            .map_or(self.end_ms.saturating_sub(30_000), secs_to_ms);
        if self.now_ms > stop {
            return;
        }
        let live: Vec<usize> = (0..self.hosts.len())
            .filter(|&h| self.hosts[h].up)
            .collect();
        if live.len() > 1 {
            let h = live[self.rng.random_range(0..live.len())];
            self.kill(h);
            let back = self.now_ms + secs_to_ms(churn.downtime_s);
            self.push(back, Event::Fault(Fault::Restart { at_s: 0.0, host: h }));
        }
        let gap = self.churn_gap(&churn);
        self.push(self.now_ms + gap, Event::ChurnKill);
    }

    /// Records the share of slots running somewhere and the live hosts, then schedules the
    /// next point: about 500 over the measured time, at least a second apart.
    fn sample(&mut self) {
        let slots = self.running_count.len();
        let served = self.running_count.iter().filter(|&&c| c > 0).count();
        let live = self.hosts.iter().filter(|h| h.up).count();
        self.metrics
            .sample(self.now_ms, ratio(served as u64, slots as u64), live);
        let every = (self.end_ms.saturating_sub(self.warmup_ms) / 500).max(1_000);
        self.push(self.now_ms + every, Event::Sample);
    }

    /// Reserved cpu and memory over capacity, for each live host.
    fn utilisation(&self) -> Vec<(usize, f64, f64)> {
        self.hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.up)
            .map(|(h, host)| {
                let (mut cpu, mut mem) = (0u64, 0u64);
                for &s in host.running.keys() {
                    let r = self.healing.reservation[s as usize];
                    cpu += r.cpu_millis;
                    mem += r.memory_bytes;
                }
                let cap = self.capacity[h];
                (h, ratio(cpu, cap.cpu_millis), ratio(mem, cap.memory_bytes))
            })
            .collect()
    }

    /// Ends the run where it stands (after [`Engine::advance`]) and reports.
    pub fn finish_report(mut self, scenario: &Scenario) -> Report {
        self.now_ms = self.now_ms.min(self.end_ms);
        self.finish(scenario)
    }
}

fn ratio(used: u64, capacity: u64) -> f64 {
    if capacity == 0 {
        0.0
    } else {
        // Quantities far below 2^53.
        #[allow(clippy::cast_precision_loss)]
        let r = used as f64 / capacity as f64;
        r
    }
}

/// Runs `scenario` with `seed` (or its own) and reports.
pub fn run(scenario: &Scenario, seed: Option<u64>) -> Result<Report, SimError> {
    let seed = seed.unwrap_or(scenario.seed);
    Engine::new(scenario, seed)?.run(scenario)
}

mod ending;
mod membership;
mod node;
mod operator;
mod round;

use node::{Core, StoreWatch};

#[cfg(test)]
mod operator_tests;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tests;
