//! The agent's round: what one host does next, decided without IO.
//!
//! A host's runtime (the peer's agent in `knit`, or a simulated host in `knit-sim`) lists
//! its replicas, reads the replicated state, and calls [`Agent::round`] with what it sees;
//! the round returns a [`Plan`]: the operations to carry out (start, stop, replace, each
//! with its stop grace period), the records to write (rollout progress, specs an autoscaler
//! or a failed rollout asks for), and notes for the log. When an operation ends the runtime
//! says so with [`Agent::done`]. Everything else — containers, processes, sockets, the
//! store, clocks — stays with the runtime; time enters as `now_ms`, the wall clock in
//! milliseconds (rollout waves and autoscaling compare it with stamps other hosts wrote).
//!
//! A round, in order:
//! 1. **Settle** ([`settle`]): after a member joins or returns, views differ between hosts
//!    for a moment, so nothing moves for [`pace::SETTLE_MS`]; a member that comes back more
//!    than [`settle::FLAP_RETURNS_MAX`] times within [`settle::FLAP_WINDOW_MS`] is flapping
//!    and no longer waited for. A restarted host that knew others waits up to
//!    [`settle::REJOIN_WAIT_MS`] to find them before it acts alone.
//! 2. **Coordinate** ([`coordinate`]): for each service this host coordinates (the first
//!    live host on its hash), apply the autoscaling policy and step the rollout, publishing
//!    its progress; a rollout that failed with `rollback` writes the previous spec.
//! 3. **Plan**: [`crate::reconcile::plan`] for this host, gated by every rollout's newest
//!    published progress.
//! 4. **Pace**: at most [`OPS_MAX`] operations in flight, one per slot; a slot whose last
//!    start failed waits out its restart delay; restarts are counted per slot and spec
//!    version within the policy's window, for the reports ([`Agent::reports`]).

pub mod coordinate;
pub mod settle;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::node::NodeId;
use crate::placement::Placement;
use crate::reconcile::{Action, ReconcileConfig, StartCause, pace};
use crate::replica::{Health, ReplicaReport, ReplicaState, SlotId};
use crate::rollout::Progress;
use crate::spec::ServiceSpec;
use crate::spec::limits::Limits;

pub use coordinate::Published;
pub use settle::Settle;

/// Operations (start, stop, replace) in flight at once on one host.
pub const OPS_MAX: usize = 8;
/// The restart delay of a slot whose service is gone (ms).
const DEFAULT_RESTART_DELAY_MS: u64 = 5_000;

/// The members a host sees and whether it is connected to them.
#[derive(Clone, Debug, Default)]
pub struct Members {
    /// Active members (alive or suspect), with their epochs; this host included.
    pub active: BTreeMap<NodeId, u64>,
    /// Whether the host knows any member besides itself (active or not).
    pub knows_others: bool,
    /// Whether the host is connected to the cluster (its membership is active).
    pub connected: bool,
}

/// What one round looks at.
pub struct Input<'a> {
    /// The members this host sees.
    pub members: &'a Members,
    /// The services acted on (valid specs), by name.
    pub specs: &'a BTreeMap<String, ServiceSpec>,
    /// The placement this host computes over the members it sees.
    pub placement: &'a Placement,
    /// Every host's replica reports, this host's own from [`Agent::reports`]; the reports
    /// of services every peer ignores (stored but invalid) left out, so that those
    /// replicas are neither restarted, replaced nor stopped.
    pub observed: &'a BTreeMap<NodeId, Vec<ReplicaReport>>,
    /// What other hosts published: rollout progress, when specs were written.
    pub published: &'a dyn Published,
    /// The cluster's limits, which an autoscaler must not pass.
    pub limits: Limits,
    /// Active nodes, as the slot cap counts them for global services.
    pub active_nodes: usize,
}

/// One operation for the runtime to carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// What to do.
    pub action: Action,
    /// How long a stopped replica gets between its stop signal and SIGKILL (ms).
    pub stop_grace_ms: u64,
}

/// A record the round asks the runtime to write in the replicated state.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// This host's progress of a rollout it coordinates; `None` removes it (the service is
    /// gone).
    Progress {
        /// The service.
        service: String,
        /// The progress.
        progress: Option<Progress>,
    },
    /// A new spec version (and the service's version record): an autoscaler's replica
    /// count or a failed rollout's previous spec.
    Spec(Box<ServiceSpec>),
}

/// Something worth a line in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A member came back more than [`settle::FLAP_RETURNS_MAX`] times in the window.
    Flapping {
        /// The member.
        node: NodeId,
        /// How often it came back within the window.
        returns: usize,
    },
    /// A rollout's coordinator has something to say.
    Rollout {
        /// The service.
        service: String,
        /// The spec version rolled out.
        version: u64,
        /// What happened.
        message: String,
    },
    /// A rollout failed and asks for the previous spec.
    RollingBack {
        /// The service.
        service: String,
        /// The version that failed.
        from: u64,
    },
    /// The autoscaler changes a replica count.
    Autoscaling {
        /// The service.
        service: String,
        /// Replicas before.
        from: u32,
        /// Replicas after.
        to: u32,
    },
    /// The autoscaler would pass the cluster's limits and stays put.
    AutoscaleCapped {
        /// The service.
        service: String,
        /// Why.
        reason: String,
    },
}

/// What one round decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Whether views had settled: when not, the plan moves nothing.
    pub settled: bool,
    /// Operations to carry out now, one per slot, at most [`OPS_MAX`] in flight.
    pub ops: Vec<Op>,
    /// Records to write.
    pub writes: Vec<Write>,
    /// Lines for the log.
    pub notes: Vec<Note>,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Done {
    /// It did what it was asked.
    Ok,
    /// Its start failed (the image could not be pulled, the command not run...).
    StartFailed {
        /// The spec version it started.
        version: u64,
        /// That spec's template ([`ServiceSpec::template_id`]).
        template: u64,
        /// Why, for `service ps`.
        error: String,
    },
}

/// A start that failed, reported like a failed replica so `service ps` shows why.
#[derive(Clone, Debug)]
struct FailedStart {
    version: u64,
    template: u64,
    error: String,
    at_ms: u64,
}

/// One host's agent state, between rounds.
#[derive(Debug)]
pub struct Agent {
    me: NodeId,
    settle: Settle,
    /// Slots with an operation in flight.
    busy: BTreeSet<SlotId>,
    failed_starts: BTreeMap<SlotId, FailedStart>,
    /// Start failures within the last while, for preventive healing.
    start_failures_ms: Vec<u64>,
    /// Restart times per slot and the spec version started, for the restart policy's
    /// window: a new spec version counts afresh.
    restarts: BTreeMap<SlotId, Vec<(u64, u64)>>,
    /// The rollout progress this host published as coordinator, by service.
    rollouts: BTreeMap<String, Progress>,
    /// Each service's stop grace period (ms), kept while its replicas run here, so that a
    /// removed service's replicas get their own.
    stop_graces: BTreeMap<String, u64>,
    /// Handoff starts in flight at once; see [`ReconcileConfig::moves_in_flight_max`].
    moves_in_flight_max: u32,
    /// The active members' ids at the last round (rebuilt only when they change).
    alive: Arc<BTreeSet<NodeId>>,
    /// Every service's coordinator among the members at the last round, and the services
    /// this host coordinates (recomputed only when members or services change). Hosts
    /// that see the same members and services may share one table ([`Agent::share`]).
    coordinators: Coordinators,
    coordinated: BTreeSet<String>,
}

/// A coordinator table and what it was brought to: cheap to share between agents that see
/// the same members (the table costs every service times every member to fill).
#[derive(Clone, Debug, Default)]
pub struct Coordinators {
    table: Arc<crate::rollout::CoordinatorTable>,
    /// The members the table was brought to.
    alive: Arc<BTreeSet<NodeId>>,
    /// The services the table was brought to.
    services: Arc<Vec<String>>,
}

impl Coordinators {
    /// Whether this table was brought to exactly `alive` and `specs`' services.
    pub fn covers(
        &self,
        alive: &Arc<BTreeSet<NodeId>>,
        specs: &BTreeMap<String, ServiceSpec>,
    ) -> bool {
        (Arc::ptr_eq(&self.alive, alive) || self.alive == *alive)
            && self.services.len() == specs.len()
            && self.services.iter().eq(specs.keys())
    }

    /// Brings the table to `alive` and `specs`' services; false when it was there already.
    fn update(
        &mut self,
        alive: &Arc<BTreeSet<NodeId>>,
        specs: &BTreeMap<String, ServiceSpec>,
    ) -> bool {
        if self.covers(alive, specs) {
            return false;
        }
        Arc::make_mut(&mut self.table).update(alive, specs.keys().map(String::as_str));
        self.alive = Arc::clone(alive);
        self.services = Arc::new(specs.keys().cloned().collect());
        true
    }
}

impl Agent {
    /// The agent of host `me`, started at `now_ms`.
    pub fn new(me: NodeId, now_ms: u64) -> Self {
        Self {
            me,
            settle: Settle::new(now_ms),
            busy: BTreeSet::new(),
            failed_starts: BTreeMap::new(),
            start_failures_ms: Vec::new(),
            restarts: BTreeMap::new(),
            rollouts: BTreeMap::new(),
            stop_graces: BTreeMap::new(),
            moves_in_flight_max: ReconcileConfig::default().moves_in_flight_max,
            alive: Arc::default(),
            coordinators: Coordinators::default(),
            coordinated: BTreeSet::new(),
        }
    }

    /// The ids of `members`' active members, as a set (the one of the last call when they
    /// are the same).
    pub fn alive(&mut self, members: &Members) -> Arc<BTreeSet<NodeId>> {
        let same =
            self.alive.len() == members.active.len() && self.alive.iter().eq(members.active.keys());
        if !same {
            self.alive = Arc::new(members.active.keys().cloned().collect());
        }
        Arc::clone(&self.alive)
    }

    /// The services of `specs` this host coordinates among `alive` (see
    /// [`crate::rollout::coordinator`]).
    pub fn coordinated(
        &mut self,
        alive: &BTreeSet<NodeId>,
        specs: &BTreeMap<String, ServiceSpec>,
    ) -> &BTreeSet<String> {
        let alive = if *self.alive == *alive {
            Arc::clone(&self.alive)
        } else {
            Arc::new(alive.clone())
        };
        self.coordinated_among(&alive, specs)
    }

    /// As [`Agent::coordinated`], with the set [`Agent::alive`] gave.
    pub fn coordinated_among(
        &mut self,
        alive: &Arc<BTreeSet<NodeId>>,
        specs: &BTreeMap<String, ServiceSpec>,
    ) -> &BTreeSet<String> {
        if self.coordinators.update(alive, specs) {
            self.coordinated = specs
                .keys()
                .filter(|name| self.coordinators.table.of(name) == Some(&self.me))
                .cloned()
                .collect();
        }
        &self.coordinated
    }

    /// The services this host coordinated at its last round (or last
    /// [`Agent::coordinated`] call).
    pub fn coordinating(&self) -> &BTreeSet<String> {
        &self.coordinated
    }

    /// This agent's coordinator table, to [`Agent::share`] with agents that see the same
    /// members and services.
    pub fn coordinators(&self) -> &Coordinators {
        &self.coordinators
    }

    /// Takes `table` (another agent's, brought to the same members and services as this
    /// one's next round sees) instead of filling its own: the same table, computed once.
    /// A table that covers other members or services is ignored.
    pub fn share(
        &mut self,
        table: &Coordinators,
        alive: &Arc<BTreeSet<NodeId>>,
        specs: &BTreeMap<String, ServiceSpec>,
    ) {
        if !table.covers(alive, specs) || self.coordinators.covers(alive, specs) {
            return;
        }
        self.coordinators = table.clone();
        // The same members: keep one copy of them.
        self.alive = Arc::clone(&table.alive);
        self.coordinated = specs
            .keys()
            .filter(|name| self.coordinators.table.of(name) == Some(&self.me))
            .cloned()
            .collect();
    }

    /// This host.
    pub fn me(&self) -> &NodeId {
        &self.me
    }

    /// Whether an operation on `slot` is in flight.
    pub fn busy(&self, slot: &SlotId) -> bool {
        self.busy.contains(slot)
    }

    /// Operations in flight.
    pub fn in_flight(&self) -> usize {
        self.busy.len()
    }

    /// Start failures since `since_ms`, for preventive healing (older ones are forgotten).
    pub fn start_failures_since(&mut self, since_ms: u64) -> usize {
        self.start_failures_ms.retain(|&t| t >= since_ms);
        self.start_failures_ms.len()
    }

    /// The operation on `slot` ended.
    pub fn done(&mut self, slot: &SlotId, done: Done, now_ms: u64) {
        self.busy.remove(slot);
        match done {
            Done::Ok => {
                self.failed_starts.remove(slot);
            }
            Done::StartFailed {
                version,
                template,
                error,
            } => {
                self.start_failures_ms.push(now_ms);
                self.failed_starts.insert(
                    slot.clone(),
                    FailedStart {
                        version,
                        template,
                        error,
                        at_ms: now_ms,
                    },
                );
            }
        }
    }

    /// This host's reports, from what its drivers list (`listed`, with restarts unset):
    /// each gets its slot's restarts within the policy's window, and every slot whose last
    /// start failed (and that runs nothing live) gets a failed report saying why.
    pub fn reports(
        &self,
        mut listed: Vec<ReplicaReport>,
        specs: &BTreeMap<String, ServiceSpec>,
        now_ms: u64,
    ) -> Vec<ReplicaReport> {
        for r in &mut listed {
            r.restarts = self.restarts_in_window(&r.slot, r.spec_version, specs, now_ms);
        }
        for (slot, failed) in &self.failed_starts {
            if listed.iter().any(|r| &r.slot == slot && r.state.is_live()) {
                continue;
            }
            listed.push(ReplicaReport {
                slot: slot.clone(),
                spec_version: failed.version,
                template: failed.template,
                state: ReplicaState::Failed,
                health: Health::None,
                host_ports: BTreeMap::new(),
                error: Some(failed.error.clone()),
                runtime_id: failed_start_id(slot),
                started_at_ms: 0,
                restarts: self.restarts_in_window(slot, failed.version, specs, now_ms),
                cpu_millis: None,
            });
        }
        listed
    }

    fn restarts_in_window(
        &self,
        slot: &SlotId,
        version: u64,
        specs: &BTreeMap<String, ServiceSpec>,
        now_ms: u64,
    ) -> u32 {
        let window = specs.get(&slot.service).map_or(0, |s| s.restart.window_ms);
        let times = self.restarts.get(slot).map_or(&[][..], Vec::as_slice);
        let count = times
            .iter()
            .filter(|(t, v)| *v == version && (window == 0 || now_ms.saturating_sub(*t) < window))
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// Whether views have settled (see [`Settle`]); a round calls it itself.
    pub fn settled(&mut self, members: &Members, now_ms: u64) -> (bool, Vec<Note>) {
        self.settle.check(members, now_ms)
    }

    /// One round: see the module doc.
    pub fn round(&mut self, input: &Input<'_>, now_ms: u64) -> Plan {
        let (settled, notes) = self.settled(input.members, now_ms);
        let mut plan = Plan {
            settled,
            notes,
            ..Plan::default()
        };
        if !settled {
            return plan;
        }
        let alive = self.alive(input.members);
        coordinate::coordinate(self, input, &alive, now_ms, &mut plan);
        let config = ReconcileConfig {
            moves_in_flight_max: self.moves_in_flight_max,
            update_allowed: Some(coordinate::gate(input, &self.me)),
        };
        let actions = crate::reconcile::plan(
            &self.me,
            input.placement,
            input.specs,
            input.observed,
            &alive,
            &config,
        );
        self.keep_stop_graces(input);
        for action in actions {
            if self.busy.len() >= OPS_MAX {
                break;
            }
            let slot = action.slot().clone();
            if self.busy.contains(&slot) || self.backing_off(&slot, input.specs, now_ms) {
                continue;
            }
            if let Action::Start {
                cause: StartCause::Restart { attempt, .. },
                spec_version,
                ..
            } = &action
            {
                let restarts = self.restarts.entry(slot.clone()).or_default();
                if *attempt == 1 {
                    restarts.retain(|(_, v)| v != spec_version);
                }
                restarts.push((now_ms, *spec_version));
            }
            self.busy.insert(slot.clone());
            let stop_grace_ms = self
                .stop_graces
                .get(&slot.service)
                .copied()
                .unwrap_or(crate::spec::DEFAULT_STOP_GRACE_MS);
            plan.ops.push(Op {
                action,
                stop_grace_ms,
            });
        }
        plan
    }

    /// Keeps each service's stop grace period while the service exists or its replicas
    /// run here.
    fn keep_stop_graces(&mut self, input: &Input<'_>) {
        // Most rounds: one entry per service, each as the specs have it; nothing to do.
        let same = self.stop_graces.len() == input.specs.len()
            && self
                .stop_graces
                .iter()
                .zip(input.specs)
                .all(|((n, g), (name, spec))| {
                    n == name && *n == spec.name && *g == spec.stop_grace_ms
                });
        if same {
            return;
        }
        for spec in input.specs.values() {
            match self.stop_graces.get_mut(&spec.name) {
                Some(grace) => *grace = spec.stop_grace_ms,
                None => {
                    self.stop_graces
                        .insert(spec.name.clone(), spec.stop_grace_ms);
                }
            }
        }
        let running: BTreeSet<&str> = input
            .observed
            .get(&self.me)
            .into_iter()
            .flatten()
            .map(|r| r.slot.service.as_str())
            .collect();
        self.stop_graces
            .retain(|name, _| input.specs.contains_key(name) || running.contains(name.as_str()));
    }

    /// A slot whose last start failed waits out the restart delay before trying again.
    fn backing_off(
        &self,
        slot: &SlotId,
        specs: &BTreeMap<String, ServiceSpec>,
        now_ms: u64,
    ) -> bool {
        let delay = specs
            .get(&slot.service)
            .map_or(DEFAULT_RESTART_DELAY_MS, |s| s.restart.delay_ms);
        self.failed_starts
            .get(slot)
            .is_some_and(|f| now_ms.saturating_sub(f.at_ms) < delay)
    }

    /// Forgets that this host published `service`'s progress (its write failed), so the
    /// next round publishes it again.
    pub fn unpublished(&mut self, service: &str) {
        self.rollouts.remove(service);
    }
}

/// The runtime id a failed start is reported under.
pub fn failed_start_id(slot: &SlotId) -> String {
    format!("failed-start-{slot}")
}

/// The pace rounds keep; re-exported for runtimes.
pub use pace::{ROUND_EVERY_MS, ROUND_MIN_MS, SETTLE_MS};
