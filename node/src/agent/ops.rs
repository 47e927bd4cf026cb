//! Carrying out one action of the plan, and one health probe, each in its own task.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use knit_scheduler::spec::{Driver as DriverKind, HealthCheck, Probe, UpdateOrder};
use knit_scheduler::{Action, ServiceSpec, SlotId, StartCause};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::health::{self, Outcome};
use super::{Event, SpecRef};
use crate::driver::sealed_files::{FileEntry, Owner};
use crate::driver::{DriverError, Drivers, Launch};
use crate::records::SealedKind;

/// A replica an operation started, with what its first health probes need: the agent
/// tracks and probes it at once rather than after its next listing.
pub(crate) struct Started {
    pub(crate) replica: crate::driver::Replica,
    pub(crate) kind: DriverKind,
    pub(crate) check: Option<HealthCheck>,
    /// Whether the operation probes it itself now (its outcome comes as a probe's).
    pub(crate) probing: bool,
}

/// One action, with what it needs.
pub(crate) struct Op {
    pub(crate) action: Action,
    /// How long a stopped replica gets between SIGTERM and SIGKILL.
    pub(crate) stop_grace: Duration,
    pub(crate) specs: Arc<BTreeMap<String, ServiceSpec>>,
    pub(crate) drivers: Arc<Drivers>,
    pub(crate) node: String,
    /// Replicas of the slot on this node before the action.
    pub(crate) old: Vec<(String, DriverKind)>,
    /// When the slot's replica was seen stopped, for the restart delay.
    pub(crate) stopped_at: Option<Instant>,
    pub(crate) events: mpsc::Sender<Event>,
    /// The peer is stopping: a restart still waiting out its delay is not started.
    pub(crate) shutdown: CancellationToken,
    /// The values of the secrets and configs a started replica gets.
    pub(crate) secrets: crate::secrets::SecretSource,
}

impl Op {
    pub(crate) async fn run(self) {
        let slot = self.action.slot().clone();
        let (failed_start, started) = match self.execute().await {
            Ok(started) => (None, started),
            Err((from, e)) => (Some((from, e.to_string())), None),
        };
        // A replica with an HTTP check is probed from here on, right after its start,
        // until it first passes: the agent hears of the pass without waiting for its
        // next listing and round.
        let eager = started.as_ref().and_then(|s| self.eager_probe(s));
        let started = started.map(|s| Started {
            probing: eager.is_some(),
            ..s
        });
        let done = Event::Done {
            slot,
            failed_start,
            started: started.map(Box::new),
        };
        let _ = self.events.send(done).await;
        if let Some(task) = eager {
            task.run().await;
        }
    }

    /// The first probes of a replica just started, when its check is an HTTP one.
    fn eager_probe(&self, started: &Started) -> Option<ProbeTask> {
        let check = started.check.as_ref()?;
        let running = started.replica.state == knit_scheduler::ReplicaState::Running;
        (running && matches!(check.probe, Probe::Http { .. })).then(|| ProbeTask {
            drivers: self.drivers.clone(),
            kind: started.kind,
            runtime_id: started.replica.runtime_id.clone(),
            host_ports: started.replica.host_ports.clone(),
            check: check.clone(),
            events: self.events.clone(),
            eager: true,
        })
    }

    /// Carries the action out; what it started, if it started a replica.
    async fn execute(&self) -> Result<Option<Started>, (SpecRef, DriverError)> {
        match &self.action {
            Action::Start {
                slot,
                spec_version,
                cause,
            } => {
                if let StartCause::Restart { delay_ms, attempt } = cause {
                    let waited = self.stopped_at.map_or(Duration::ZERO, |t| t.elapsed());
                    let delay = Duration::from_millis(*delay_ms).saturating_sub(waited);
                    tracing::info!(slot = %slot, attempt, delay_ms = delay.as_millis() as u64, "restarting");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.shutdown.cancelled() => return Ok(None),
                    }
                    self.stop_all().await;
                }
                self.start(slot, *spec_version).await
            }
            Action::Stop {
                slot,
                runtime_id,
                reason,
            } => {
                tracing::info!(slot = %slot, runtime_id = %runtime_id, reason = ?reason, "stopping");
                self.stop(runtime_id).await;
                Ok(None)
            }
            Action::Replace {
                slot,
                runtime_id,
                to_version,
                reason,
                ..
            } => {
                tracing::info!(slot = %slot, runtime_id = %runtime_id, to_version, reason = ?reason, "replacing");
                let order = self
                    .specs
                    .get(&slot.service)
                    .map_or(UpdateOrder::StopFirst, |s| s.update.order);
                if order == UpdateOrder::StartFirst {
                    let started = self.start(slot, *to_version).await?;
                    self.stop(runtime_id).await;
                    Ok(started)
                } else {
                    self.stop(runtime_id).await;
                    self.start(slot, *to_version).await
                }
            }
        }
    }

    /// Who the files of a replica of `spec` are for.
    fn owner(&self, spec: &ServiceSpec) -> Owner {
        match spec.driver {
            DriverKind::Docker => Owner::Container,
            DriverKind::Process => Owner::Process(self.drivers.process.run_as_ids()),
        }
    }

    /// Writes the files of the secrets `spec` names, on memory; their folder.
    fn secret_files(
        &self,
        slot: &SlotId,
        spec: &ServiceSpec,
    ) -> Result<Option<std::path::PathBuf>, DriverError> {
        if spec.secrets.is_empty() {
            return Ok(None);
        }
        let names = spec.secrets.iter().map(|r| r.source.as_str());
        let values = self.secrets.values(SealedKind::Secret, names)?;
        let entries: Vec<FileEntry<'_>> = spec
            .secrets
            .iter()
            .zip(&values)
            .map(|(r, value)| FileEntry {
                path: &r.target,
                value,
                mode: r.mode,
                uid: r.uid,
                gid: r.gid,
            })
            .collect();
        self.drivers
            .secrets
            .write(slot, spec.template_id(), &entries, self.owner(spec))
            .map(Some)
    }

    /// Writes the files of the configs `spec` names, on memory, each at its target's
    /// path; their folder.
    fn config_files(
        &self,
        slot: &SlotId,
        spec: &ServiceSpec,
    ) -> Result<Option<std::path::PathBuf>, DriverError> {
        if spec.configs.is_empty() {
            return Ok(None);
        }
        let names = spec.configs.iter().map(|r| r.source.as_str());
        let values = self.secrets.values(SealedKind::Config, names)?;
        let entries: Vec<FileEntry<'_>> = spec
            .configs
            .iter()
            .zip(&values)
            .map(|(r, value)| FileEntry {
                path: r.relative_target(),
                value,
                mode: r.mode,
                uid: r.uid,
                gid: r.gid,
            })
            .collect();
        self.drivers
            .configs
            .write(slot, spec.template_id(), &entries, self.owner(spec))
            .map(Some)
    }

    async fn start(
        &self,
        slot: &SlotId,
        version: u64,
    ) -> Result<Option<Started>, (SpecRef, DriverError)> {
        let Some(spec) = self
            .specs
            .get(&slot.service)
            .filter(|s| s.version == version)
        else {
            return Ok(None);
        };
        let from = SpecRef {
            version,
            template: spec.template_id(),
        };
        let driver = self.drivers.for_kind(spec.driver).map_err(|e| (from, e))?;
        let secrets = self.secret_files(slot, spec).map_err(|e| (from, e))?;
        let configs = self.config_files(slot, spec).map_err(|e| (from, e))?;
        let registry = match (spec.driver, spec.image.as_deref()) {
            (DriverKind::Docker, Some(image)) => self.secrets.registry_auth(image),
            _ => None,
        };
        let launch = Launch {
            slot: slot.clone(),
            spec: Arc::new(spec.clone()),
            node: self.node.clone(),
            secrets,
            configs,
            directory: self.drivers.directory.borrow().clone(),
            registry,
        };
        let replica = driver.start(&launch).await.map_err(|e| (from, e))?;
        tracing::info!(slot = %slot, runtime_id = %replica.runtime_id, version, ports = ?replica.host_ports, "started");
        Ok(Some(Started {
            replica,
            kind: spec.driver,
            check: spec.health.clone(),
            probing: false,
        }))
    }

    async fn stop(&self, runtime_id: &str) {
        let Some((_, kind)) = self.old.iter().find(|(id, _)| id == runtime_id) else {
            return;
        };
        let Ok(driver) = self.drivers.for_kind(*kind) else {
            return;
        };
        if let Err(e) = driver.stop(runtime_id, self.stop_grace).await {
            tracing::warn!(runtime_id, error = %e, "stop failed");
        }
    }

    /// Removes every old replica of the slot (before a restart).
    async fn stop_all(&self) {
        for (id, _) in &self.old {
            self.stop(id).await;
        }
    }
}

/// One health probe.
pub(crate) struct ProbeTask {
    pub(crate) drivers: Arc<Drivers>,
    pub(crate) kind: DriverKind,
    pub(crate) runtime_id: String,
    pub(crate) host_ports: BTreeMap<u16, u16>,
    pub(crate) check: HealthCheck,
    pub(crate) events: mpsc::Sender<Event>,
    /// The first probes after a start: probe again every [`EAGER_EVERY`] until one
    /// passes or [`EAGER_WITHIN`] has gone by, and report that one.
    pub(crate) eager: bool,
}

/// How often the first probes after a start come, and for how long.
const EAGER_EVERY: Duration = Duration::from_millis(20);
const EAGER_WITHIN: Duration = Duration::from_secs(1);

impl ProbeTask {
    pub(crate) async fn run(self) {
        let began = Instant::now();
        let mut outcome = self.once().await;
        while self.eager && outcome == Outcome::Fail && began.elapsed() < EAGER_WITHIN {
            tokio::time::sleep(EAGER_EVERY).await;
            outcome = self.once().await;
        }
        let _ = self
            .events
            .send(Event::Probed {
                runtime_id: self.runtime_id,
                outcome,
            })
            .await;
    }

    async fn once(&self) -> Outcome {
        match &self.check.probe {
            Probe::Http { path, .. } => match health::probe_port(&self.check, &self.host_ports) {
                Some(port) => {
                    let (path, check) = (path.clone(), self.check.clone());
                    let ip = self.drivers.probe_ip(self.kind);
                    tokio::task::spawn_blocking(move || health::http_probe(ip, port, &path, &check))
                        .await
                        .unwrap_or(Outcome::Fail)
                }
                None => Outcome::Fail,
            },
            Probe::Command(command) => {
                let timeout = Duration::from_millis(self.check.timeout_ms.max(1));
                let passed = match (self.kind, &self.drivers.docker) {
                    (DriverKind::Docker, Some(docker)) => {
                        docker.exec_probe(&self.runtime_id, command, timeout).await
                    }
                    _ => {
                        self.drivers
                            .process
                            .exec_probe(&self.runtime_id, command, timeout)
                            .await
                    }
                };
                if passed.unwrap_or(false) {
                    Outcome::Pass
                } else {
                    Outcome::Fail
                }
            }
        }
    }
}
