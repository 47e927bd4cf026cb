//! The agent: the driver of this host's round. Each round it lists what the drivers run,
//! probes health, publishes a report per replica in its node-owned records, hands what it
//! sees to the round's core ([`knit_scheduler::agent::Agent`], which decides: settling,
//! rollouts, autoscaling, the plan and its pace), writes the records the core asks for,
//! and carries the operations out, each in its own task, so a slow image pull never holds
//! up healing.

mod health;
mod ops;
pub(crate) mod prevention;
mod published;
mod warm;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use knit_mesh::quic::Mesh;
use knit_scheduler::agent::{self as core, Done, Members, Note, Write};
use knit_scheduler::reconcile::pace;
use knit_scheduler::spec::Driver as DriverKind;
use knit_scheduler::{
    Action, Availability, Health, ReplicaReport, ReplicaState, ServiceSpec, SlotId,
};
use tokio::sync::mpsc;

use crate::cluster::Snapshot;
use crate::driver::{Drivers, Replica};
use crate::records::{node_spec_key, report_key};
use crate::tasks::Tasks;

/// Rounds happen at least this often, and at most every `ROUND_MIN`.
const ROUND_EVERY: Duration = Duration::from_millis(pace::ROUND_EVERY_MS);
const ROUND_MIN: Duration = Duration::from_millis(pace::ROUND_MIN_MS);
/// Ended replicas kept per slot for `service ps`.
const HISTORY_PER_SLOT: usize = 3;
/// How often replicas' CPU is read (for autoscaling).
const CPU_EVERY: Duration = Duration::from_secs(3);
/// Events waiting for the agent.
const EVENTS_MAX: usize = 1024;
/// How long a round waits for the local store to hold its own acknowledgement.
const STORE_WAIT: Duration = Duration::from_secs(1);

/// One replica the agent knows of.
struct Tracked {
    replica: Replica,
    kind: DriverKind,
    health: health::Tracker,
    /// When the agent first saw it stopped, for the restart delay.
    stopped_at: Option<Instant>,
    /// The last CPU time reading (when, nanoseconds), and the usage it gave, in millicores.
    cpu: Option<(Instant, u64)>,
    cpu_millis: Option<u32>,
}

/// The spec a replica was (or was to be) started from: its version for people, its
/// template for the scheduler.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpecRef {
    pub(crate) version: u64,
    pub(crate) template: u64,
}

/// What finished while the agent waited.
pub(crate) enum Event {
    /// An operation on this slot ended.
    Done {
        slot: SlotId,
        failed_start: Option<(SpecRef, String)>,
        /// The replica it started, if it started one.
        started: Option<Box<ops::Started>>,
    },
    /// A health probe of this replica ended.
    Probed {
        runtime_id: String,
        outcome: health::Outcome,
    },
}

/// The replica reports a round acts on: every member's, this node's own fresh ones, and
/// none of a service every peer ignores (stored but invalid), whose replicas are thus
/// neither restarted, replaced nor stopped.
fn acted_on(
    snapshot: &Snapshot,
    me: &knit_scheduler::NodeId,
    reports: Vec<ReplicaReport>,
    ignored: &BTreeSet<String>,
) -> BTreeMap<knit_scheduler::NodeId, Vec<ReplicaReport>> {
    let mut observed = snapshot.observed();
    observed.insert(me.clone(), reports);
    for reports in observed.values_mut() {
        reports.retain(|r| !ignored.contains(&r.slot.service));
    }
    observed
}

/// The agent of one peer.
pub(crate) struct Agent {
    mesh: Mesh,
    drivers: Arc<Drivers>,
    me: knit_mesh::NodeId,
    node: knit_scheduler::NodeId,
    replicas: BTreeMap<String, Tracked>,
    /// The round's decisions and what they remember between rounds.
    core: core::Agent,
    /// Drivers whose last list failed: their replicas are kept as unknown.
    silent: BTreeSet<DriverKind>,
    /// Report keys and values this node wrote.
    published: BTreeMap<String, Vec<u8>>,
    events: mpsc::Sender<Event>,
    /// When this node drains itself.
    thresholds: prevention::Thresholds,
    last_check: Option<Instant>,
    last_cpu: Option<Instant>,
    /// Replicas that ended here, by service, newest first; and whether it changed.
    history: BTreeMap<String, Vec<crate::cluster::Ended>>,
    history_dirty: BTreeSet<String>,
    /// The stamp of this node's node spec last acknowledged (see [`crate::records::applied_key`]).
    applied_spec: Option<knit_mesh::store::Stamp>,
    /// When the next health probe falls due: the loop wakes for it rather than waiting
    /// for the next round (a replica whose first probe came too early is seen healthy one
    /// interval later, not one round later).
    next_probe: Option<Instant>,
    /// A replica passed its first check since the reports were last published.
    passed_first: bool,
    /// Pulls ahead the images of the replicas a suspect's loss would bring here.
    warmer: warm::Warmer,
    /// Where operations and probes are spawned, and the signal that ends the rounds.
    tasks: Tasks,
    /// The secrets replicas are started with.
    secrets: crate::secrets::SecretSource,
    /// Replicas (runtime id, slot) an operation of this agent is stopping: once they end,
    /// and until the operation is done, they read as stopping, then shut down in the slot's
    /// history, whatever their exit code (a process that ignores SIGTERM is killed at the
    /// end of its grace and exits 137; it did not fail).
    stopping: BTreeMap<String, SlotId>,
}

impl Agent {
    pub(crate) fn new(
        mesh: Mesh,
        drivers: Arc<Drivers>,
        me: knit_mesh::NodeId,
        thresholds: prevention::Thresholds,
        tasks: &Tasks,
        secrets: crate::secrets::SecretSource,
    ) -> anyhow::Result<(Self, mpsc::Receiver<Event>)> {
        let (events, rx) = mpsc::channel(EVENTS_MAX);
        let node = knit_scheduler::NodeId::new(me.to_string())?;
        let agent = Self {
            mesh,
            drivers,
            me,
            core: core::Agent::new(node.clone(), crate::clock::now_ms()),
            node,
            replicas: BTreeMap::new(),
            silent: BTreeSet::new(),
            published: BTreeMap::new(),
            events,
            thresholds,
            last_check: None,
            last_cpu: None,
            history: BTreeMap::new(),
            history_dirty: BTreeSet::new(),
            applied_spec: None,
            next_probe: None,
            passed_first: false,
            warmer: warm::Warmer::default(),
            tasks: tasks.clone(),
            secrets,
            stopping: BTreeMap::new(),
        };
        Ok((agent, rx))
    }

    /// Runs rounds until the peer stops.
    pub(crate) async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        let shutdown = self.tasks.shutdown().clone();
        let mut view = self.mesh.view();
        let mut store = self.mesh.store();
        // A check of who answers ends: a majority may reclaim now.
        let mut reach = self.mesh.reachability();
        let mut last_round = Instant::now() - ROUND_EVERY;
        // A replica that dies or turns unhealthy is seen at once where the driver tells.
        let replicas_changed = self.drivers.changed().unwrap_or_default();
        loop {
            let mut wait = ROUND_EVERY.saturating_sub(last_round.elapsed());
            if let Some(due) = self.next_probe {
                wait = wait.min(due.saturating_duration_since(Instant::now()));
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                _ = view.changed() => {}
                _ = store.changed() => {}
                _ = reach.changed() => {}
                () = replicas_changed.notified() => {}
                Some(event) = events.recv() => self.absorb(event),
            }
            while let Ok(event) = events.try_recv() {
                self.absorb(event);
            }
            if std::mem::take(&mut self.passed_first) {
                self.publish_now().await;
            }
            let since = last_round.elapsed();
            if since < ROUND_MIN {
                tokio::time::sleep(ROUND_MIN - since).await;
            }
            last_round = Instant::now();
            self.round().await;
        }
    }

    fn absorb(&mut self, event: Event) {
        match event {
            Event::Done {
                slot,
                failed_start,
                started,
            } => {
                // What the operation stopped is gone, or (if the engine would not remove
                // it) is what it is again.
                self.stopping.retain(|_, s| *s != slot);
                if let Some(started) = started {
                    self.track_started(*started);
                }
                let done = match failed_start {
                    Some((from, error)) => {
                        tracing::warn!(slot = %slot, error = %error, "start failed");
                        Done::StartFailed {
                            version: from.version,
                            template: from.template,
                            error,
                        }
                    }
                    None => Done::Ok,
                };
                self.core.done(&slot, done, crate::clock::now_ms());
            }
            Event::Probed {
                runtime_id,
                outcome,
            } => {
                if let Some(t) = self.replicas.get_mut(&runtime_id) {
                    let first = !t.health.passed_once;
                    t.health.record(outcome);
                    if first && t.health.passed_once {
                        tracing::info!(slot = %t.replica.slot, runtime_id = %runtime_id, "first health check passed");
                        self.passed_first = true;
                    }
                }
            }
        }
    }

    /// Tracks a replica an operation just started and probes it at once when it has a
    /// check: its first passing probe need not wait for the next listing and round (the
    /// part of a heal between the start and the replica seen healthy).
    fn track_started(&mut self, started: ops::Started) {
        let ops::Started {
            replica,
            kind,
            check,
            probing,
        } = started;
        let id = replica.runtime_id.clone();
        let t = self.replicas.entry(id.clone()).or_insert_with(|| Tracked {
            replica,
            kind,
            health: health::Tracker::default(),
            stopped_at: None,
            cpu: None,
            cpu_millis: None,
        });
        if probing {
            t.health.probing = true;
        } else if let Some(check) = check
            && t.replica.state == ReplicaState::Running
            && t.health.due(&check, Instant::now())
        {
            spawn_probe(&self.tasks, &self.drivers, &self.events, &id, t, check);
        }
    }

    async fn round(&mut self) {
        let began = Instant::now();
        self.observe().await;
        let observed = began.elapsed();
        let mut snapshot = Snapshot::of(&self.mesh);
        let mut services = snapshot.services();
        self.measure_cpu(&services.valid).await;
        self.probe(&services.valid);
        let reports = self.reports(&services.valid);
        self.publish(&snapshot, &reports).await;
        if self.acknowledge(&snapshot, &reports).await {
            // Act on the node spec as every peer now places it.
            snapshot = Snapshot::of(&self.mesh);
            services = snapshot.services();
        }
        self.check_condition(&snapshot).await;
        let published = began.elapsed();
        let ignored = services.invalid.into_keys().collect();
        let ops = self.act(&snapshot, services.valid, reports, &ignored).await;
        tracing::debug!(
            observe_ms = observed.as_millis() as u64,
            publish_ms = (published - observed).as_millis() as u64,
            act_ms = (began.elapsed() - published).as_millis() as u64,
            ops,
            "round"
        );
    }

    /// Publishes the reports as they stand, ahead of the round: a replica that just
    /// passed its first check is healthy for every peer without waiting for the round's
    /// listing (the end of a heal).
    async fn publish_now(&mut self) {
        let snapshot = Snapshot::of(&self.mesh);
        let specs = snapshot.services().valid;
        let reports = self.reports(&specs);
        self.publish(&snapshot, &reports).await;
    }

    /// Acknowledges a node spec this node has not acknowledged yet (see
    /// [`crate::cluster::Applied`]), with the slots it keeps if it is a pause; true once
    /// the local store holds the acknowledgement.
    async fn acknowledge(&mut self, snapshot: &Snapshot, reports: &[ReplicaReport]) -> bool {
        let Some(spec) = snapshot.store.stamp(&node_spec_key(&self.me)) else {
            return false;
        };
        if self.applied_spec == Some(spec) || snapshot.spec_applied(&self.me) {
            return false;
        }
        let paused = snapshot.node_spec(&self.me).availability == Availability::Pause;
        let kept = reports
            .iter()
            .filter(|r| paused && r.state.is_live())
            .map(|r| r.slot.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let applied = crate::cluster::Applied { spec, kept };
        let key = crate::records::applied_key(&self.me);
        let Ok(bytes) = serde_json::to_vec(&applied) else {
            return false;
        };
        let Ok(written) = self.mesh.put(&key, Some(bytes)).await else {
            return false;
        };
        self.applied_spec = Some(spec);
        let mut store = self.mesh.store();
        let held = store.wait_for(|s| s.stamp(&key).is_some_and(|s| s >= written));
        matches!(tokio::time::timeout(STORE_WAIT, held).await, Ok(Ok(_)))
    }

    /// Preventive healing, at most once a second.
    async fn check_condition(&mut self, snapshot: &Snapshot) {
        if self
            .last_check
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.last_check = Some(Instant::now());
        let window_ms =
            u64::try_from(self.thresholds.start_failure_window.as_millis()).unwrap_or(u64::MAX);
        let since_ms = crate::clock::now_ms().saturating_sub(window_ms);
        let failures = u32::try_from(self.core.start_failures_since(since_ms)).unwrap_or(u32::MAX);
        let reason = prevention::failing(
            snapshot.telemetry(&self.me).as_ref(),
            failures,
            &self.thresholds,
        );
        prevention::check(&self.mesh, snapshot, reason, &self.thresholds).await;
    }

    /// Lists what the drivers run and updates the tracked replicas.
    async fn observe(&mut self) {
        let listing = self.drivers.list(&self.me.to_string()).await;
        // A driver that does not answer (the Docker engine restarting) says nothing of its
        // replicas: they are kept, reported unknown, and acted on once it answers again.
        let mut silent = BTreeSet::new();
        for (kind, error) in &listing.failed {
            if self.silent.insert(*kind) {
                tracing::warn!(driver = %kind, %error, "cannot list replicas; reporting them unknown until the driver answers");
            }
            silent.insert(*kind);
            let why = format!("the {kind} driver does not answer: {error}");
            for t in self.replicas.values_mut().filter(|t| t.kind == *kind) {
                t.replica.state = ReplicaState::Unknown;
                t.replica.error = Some(why.clone());
            }
        }
        for kind in self.silent.difference(&silent) {
            tracing::info!(driver = %kind, "the driver answers again");
        }
        self.silent = silent;
        if listing.failed.is_empty() {
            let live = || listing.replicas.iter().map(|(r, _)| (&r.slot, r.template));
            self.drivers.secrets.prune(live());
            self.drivers.configs.prune(live());
        }
        let listed = listing.replicas;
        let ids: BTreeSet<String> = listed.iter().map(|(r, _)| r.runtime_id.clone()).collect();
        let gone: Vec<Replica> = self
            .replicas
            .iter()
            .filter(|(id, t)| !ids.contains(*id) && !self.silent.contains(&t.kind))
            .map(|(_, t)| t.replica.clone())
            .collect();
        for replica in gone {
            self.remember(replica);
        }
        let silent = &self.silent;
        self.replicas
            .retain(|id, t| ids.contains(id) || silent.contains(&t.kind));
        self.stopping.retain(|id, _| ids.contains(id));
        for (mut replica, kind) in listed {
            if !replica.state.is_live() && self.stopping.contains_key(&replica.runtime_id) {
                replica.state = ReplicaState::Stopping;
                replica.error = None;
            }
            let live = replica.state.is_live();
            let tracked = self
                .replicas
                .entry(replica.runtime_id.clone())
                .or_insert_with(|| Tracked {
                    replica: replica.clone(),
                    kind,
                    health: health::Tracker::default(),
                    stopped_at: None,
                    cpu: None,
                    cpu_millis: None,
                });
            if !live && tracked.stopped_at.is_none() {
                tracing::info!(slot = %replica.slot, runtime_id = %replica.runtime_id, state = ?replica.state, error = ?replica.error, "replica stopped");
                tracked.stopped_at = Some(Instant::now());
            }
            tracked.replica = replica;
        }
    }

    /// Keeps a replica that ended in its slot's history.
    fn remember(&mut self, replica: Replica) {
        let state = match replica.state {
            ReplicaState::Failed => "failed",
            ReplicaState::Exited => "complete",
            _ => "shutdown",
        };
        let service = replica.slot.service.clone();
        let entries = self.history.entry(service.clone()).or_default();
        entries.insert(
            0,
            crate::cluster::Ended {
                slot: replica.slot.clone(),
                runtime_id: replica.runtime_id,
                spec_version: replica.spec_version,
                state: state.to_owned(),
                error: replica.error,
                ended_at_ms: crate::clock::now_ms(),
            },
        );
        let mut per_slot: BTreeMap<SlotId, usize> = BTreeMap::new();
        entries.retain(|e| {
            let n = per_slot.entry(e.slot.clone()).or_default();
            *n += 1;
            *n <= HISTORY_PER_SLOT
        });
        self.history_dirty.insert(service);
    }

    /// Reads the CPU time of running replicas of autoscaled services every [`CPU_EVERY`]
    /// and turns the change into a usage in millicores. Only those: every change of a
    /// report is gossiped.
    async fn measure_cpu(&mut self, specs: &BTreeMap<String, ServiceSpec>) {
        if self.last_cpu.is_some_and(|t| t.elapsed() < CPU_EVERY) {
            return;
        }
        self.last_cpu = Some(Instant::now());
        let autoscaled = |t: &&mut Tracked| {
            specs
                .get(&t.replica.slot.service)
                .is_some_and(|s| s.autoscale.is_some())
        };
        for t in self
            .replicas
            .values_mut()
            .filter(|t| t.replica.state == ReplicaState::Running)
            .filter(autoscaled)
        {
            let Ok(driver) = self.drivers.for_kind(t.kind) else {
                continue;
            };
            let Some(ns) = driver.cpu_time_ns(&t.replica.runtime_id).await else {
                continue;
            };
            let now = Instant::now();
            if let Some((then, before)) = t.cpu {
                let wall = now.duration_since(then).as_nanos().max(1);
                let used = u128::from(ns.saturating_sub(before));
                t.cpu_millis = u32::try_from(used * 1000 / wall).ok();
            }
            t.cpu = Some((now, ns));
        }
    }

    /// Starts the health probes that are due.
    fn probe(&mut self, specs: &BTreeMap<String, ServiceSpec>) {
        let now = Instant::now();
        self.next_probe = None;
        for (id, t) in &mut self.replicas {
            let Some(check) = specs
                .get(&t.replica.slot.service)
                .and_then(|s| s.health.clone())
            else {
                continue;
            };
            if t.replica.state != ReplicaState::Running || t.health.probing {
                continue;
            }
            if !t.health.due(&check, now) {
                let due = t.health.next_due(&check);
                self.next_probe = Some(self.next_probe.map_or(due, |n| n.min(due)));
                continue;
            }
            spawn_probe(&self.tasks, &self.drivers, &self.events, id, t, check);
        }
    }

    fn health_of(t: &Tracked, spec: Option<&ServiceSpec>) -> Health {
        match spec.and_then(|s| s.health.as_ref()) {
            Some(check) if t.replica.state == ReplicaState::Running => {
                let age = Duration::from_millis(
                    crate::clock::now_ms().saturating_sub(t.replica.started_at_ms),
                );
                t.health.health(check, age)
            }
            Some(_) => Health::Unknown,
            None => t.replica.driver_health.unwrap_or(Health::None),
        }
    }

    /// This node's replica reports, as the scheduler reads them.
    fn reports(&self, specs: &BTreeMap<String, ServiceSpec>) -> Vec<ReplicaReport> {
        let listed = self
            .replicas
            .values()
            .map(|t| ReplicaReport {
                slot: t.replica.slot.clone(),
                spec_version: t.replica.spec_version,
                template: t.replica.template,
                state: t.replica.state,
                health: Self::health_of(t, specs.get(&t.replica.slot.service)),
                host_ports: t.replica.host_ports.clone(),
                error: t.replica.error.clone(),
                runtime_id: t.replica.runtime_id.clone(),
                started_at_ms: t.replica.started_at_ms,
                restarts: 0,
                cpu_millis: t.cpu_millis,
            })
            .collect();
        self.core.reports(listed, specs, crate::clock::now_ms())
    }

    /// Writes changed reports and deletes those of replicas that are gone.
    async fn publish(&mut self, snapshot: &Snapshot, reports: &[ReplicaReport]) {
        for service in std::mem::take(&mut self.history_dirty) {
            let entries = self.history.get(&service).cloned().unwrap_or_default();
            if let Ok(bytes) = serde_json::to_vec(&entries) {
                let _ = self
                    .mesh
                    .put(
                        &crate::records::history_key(&self.me, &service),
                        Some(bytes),
                    )
                    .await;
            }
        }
        let mut wanted: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for r in reports {
            if let Ok(bytes) = serde_json::to_vec(r) {
                wanted.insert(report_key(&self.me, &r.runtime_id), bytes);
            }
        }
        if self.published.is_empty() {
            // After a restart: what the store still holds from the last run.
            for r in snapshot.reports(&self.me) {
                self.published
                    .insert(report_key(&self.me, &r.runtime_id), Vec::new());
            }
        }
        let gone: Vec<String> = self
            .published
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if self.mesh.put(&key, None).await.is_ok() {
                self.published.remove(&key);
            }
        }
        for (key, value) in wanted {
            if self.published.get(&key) != Some(&value)
                && self.mesh.put(&key, Some(value.clone())).await.is_ok()
            {
                self.published.insert(key, value);
            }
        }
    }

    /// Hands the round to the core, writes the records it asks for, and starts the
    /// operations it plans. The replicas of `ignored` services (stored, but invalid) are
    /// left out of the plan, so they are left as they are.
    async fn act(
        &mut self,
        snapshot: &Snapshot,
        specs: BTreeMap<String, ServiceSpec>,
        reports: Vec<ReplicaReport>,
        ignored: &BTreeSet<String>,
    ) -> usize {
        if let Some(why) = snapshot.quorum().minority() {
            tracing::debug!(%why, "not reclaiming");
        }
        let placement = snapshot.placement();
        let takeovers = snapshot
            .placement_if_suspects_down()
            .map(|if_down| warm::takeovers(&placement, &if_down, &self.node))
            .unwrap_or_default();
        let node = self.me.to_string();
        let (drivers, secrets, tasks) = (&self.drivers, &self.secrets, &self.tasks);
        self.warmer
            .warm(&takeovers, &specs, drivers, secrets, tasks, &node);
        // Prepared containers are kept for the slots that may come here, and for those
        // assigned here that do not run yet (their start takes them).
        let live: BTreeSet<&SlotId> = self
            .replicas
            .values()
            .filter(|t| t.replica.state.is_live())
            .map(|t| &t.replica.slot)
            .collect();
        let mut keep = takeovers;
        keep.extend(
            placement
                .assigned_to(&self.node)
                .filter(|slot| !live.contains(slot)),
        );
        self.warmer.discard(&keep, drivers, tasks);
        let observed = acted_on(snapshot, &self.node, reports, ignored);
        let members = members(snapshot, self.me);
        let plan = {
            let input = core::Input {
                members: &members,
                specs: &specs,
                placement: &placement,
                observed: &observed,
                published: snapshot,
                limits: snapshot.limits(),
                active_nodes: snapshot.active_nodes(),
            };
            self.core.round(&input, crate::clock::now_ms())
        };
        for note in &plan.notes {
            log(note);
        }
        for write in plan.writes {
            self.write(write).await;
        }
        let specs = Arc::new(specs);
        let ops = plan.ops.len();
        for op in plan.ops {
            let slot = op.action.slot().clone();
            if let Action::Stop { runtime_id, .. } | Action::Replace { runtime_id, .. } = &op.action
            {
                self.stopping.insert(runtime_id.clone(), slot.clone());
            }
            let old: Vec<(String, DriverKind)> = self
                .replicas
                .values()
                .filter(|t| t.replica.slot == slot)
                .map(|t| (t.replica.runtime_id.clone(), t.kind))
                .collect();
            let op = ops::Op {
                action: op.action,
                stop_grace: Duration::from_millis(op.stop_grace_ms),
                specs: specs.clone(),
                drivers: self.drivers.clone(),
                node: self.me.to_string(),
                old,
                stopped_at: self
                    .replicas
                    .values()
                    .filter(|t| t.replica.slot == slot)
                    .find_map(|t| t.stopped_at),
                events: self.events.clone(),
                shutdown: self.tasks.shutdown().clone(),
                secrets: self.secrets.clone(),
            };
            tracing::debug!(slot = %slot, action = ?op.action, "operation begins");
            self.tasks.spawn("replica operation", op.run());
        }
        ops
    }

    /// Writes a record the round asked for.
    async fn write(&mut self, write: Write) {
        match write {
            Write::Progress { service, progress } => {
                let key = crate::records::progress_key(&self.me, &service);
                let bytes = match progress.map(|p| serde_json::to_vec(&p)).transpose() {
                    Ok(bytes) => bytes,
                    Err(_) => return,
                };
                if self.mesh.put(&key, bytes).await.is_err() {
                    self.core.unpublished(&service);
                }
            }
            Write::Spec(spec) => {
                if let Err(e) = crate::records::put_spec(&self.mesh, &spec).await {
                    tracing::warn!(service = %spec.name, error = %e, "cannot write the spec");
                }
            }
        }
    }
}

/// Starts one health probe of `t`; its outcome comes back as [`Event::Probed`].
fn spawn_probe(
    tasks: &Tasks,
    drivers: &Arc<Drivers>,
    events: &mpsc::Sender<Event>,
    id: &str,
    t: &mut Tracked,
    check: knit_scheduler::spec::HealthCheck,
) {
    t.health.probing = true;
    let task = ops::ProbeTask {
        drivers: drivers.clone(),
        kind: t.kind,
        runtime_id: id.to_owned(),
        host_ports: t.replica.host_ports.clone(),
        check,
        events: events.clone(),
        eager: false,
    };
    tasks.spawn("health probe", task.run());
}

/// The members `snapshot` shows, as the round's core reads them.
fn members(snapshot: &Snapshot, me: knit_mesh::NodeId) -> Members {
    let active = snapshot
        .view
        .members
        .iter()
        .filter(|m| m.state.is_active())
        .filter_map(|m| {
            let id = knit_scheduler::NodeId::new(m.peer.node.to_string()).ok()?;
            Some((id, m.peer.epoch))
        })
        .collect();
    Members {
        active,
        knows_others: snapshot.view.members.iter().any(|m| m.peer.node != me),
        connected: snapshot.view.connection == knit_mesh::Connection::Active,
    }
}

/// A line in the log for what the round noted.
fn log(note: &Note) {
    match note {
        Note::Flapping { node, returns } => {
            tracing::warn!(node = %node, returns, window_s = core::settle::FLAP_WINDOW_MS / 1000, "member is flapping; acting without waiting for it to settle");
        }
        Note::Rollout {
            service,
            version,
            message,
        } => tracing::info!(service = %service, version, "{message}"),
        Note::RollingBack { service, from } => {
            tracing::warn!(service = %service, from, "update failed: rolling back to the previous spec");
        }
        Note::Autoscaling { service, from, to } => {
            tracing::info!(service = %service, from, to, "autoscaling");
        }
        Note::AutoscaleCapped { service, reason } => {
            let what = "not autoscaling past the cluster's limits";
            crate::cluster::warn_once(&crate::records::service_key(service), what, reason);
        }
    }
}

#[cfg(test)]
#[path = "ignored_tests.rs"]
mod ignored_tests;
