//! Drivers run replicas: `docker` (containers through the Docker Engine API) and `process`
//! (plain child processes, for hosts without Docker and for tests). Both label what they run
//! with the service, slot, spec version and node, so that a restarted peer adopts what it
//! already runs instead of starting it twice.

pub(crate) mod docker;
pub(crate) mod output;
pub(crate) mod process;
pub(crate) mod sealed_files;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use knit_scheduler::spec::Driver as DriverKind;
use knit_scheduler::{Health, ReplicaState, ServiceSpec, SlotId};

/// A replica's log file is rotated past this size (Docker's json-file `max-size`)...
pub(crate) const LOG_FILE_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// ...and this many files are kept, the live one included (`max-file`).
pub(crate) const LOG_FILES_MAX: usize = 3;

/// What a driver needs to start one replica.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    /// The slot the replica fills.
    pub(crate) slot: SlotId,
    /// The spec to run (its `version` is the replica's spec version).
    pub(crate) spec: Arc<ServiceSpec>,
    /// This node's id, for the `knit.node` label.
    pub(crate) node: String,
    /// The folder of the replica's secrets' files, when its spec names any.
    pub(crate) secrets: Option<std::path::PathBuf>,
    /// The folder of the replica's configs' files (each at its target's path under it),
    /// when its spec names any.
    pub(crate) configs: Option<std::path::PathBuf>,
    /// The services' names and addresses as this peer serves them now: the resolver a
    /// container gets, the variables a process gets (empty when discovery is off).
    pub(crate) directory: Arc<crate::discovery::Directory>,
    /// The credentials of the image's registry (`knit login`), for a pull; its `Debug`
    /// hides the password.
    pub(crate) registry: Option<crate::registry::RegistryAuth>,
}

/// One replica as its driver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replica {
    /// Container id or process id: what `stop` takes.
    pub(crate) runtime_id: String,
    pub(crate) slot: SlotId,
    pub(crate) spec_version: u64,
    /// The template it runs (`ServiceSpec::template_id`); 0 when it recorded none.
    pub(crate) template: u64,
    /// Starting, Running, Exited or Failed (Stopping is the agent's own).
    pub(crate) state: ReplicaState,
    /// The exit code, once it stopped.
    pub(crate) exit_code: Option<i64>,
    /// Host port bound for each target port.
    pub(crate) host_ports: BTreeMap<u16, u16>,
    /// Milliseconds since the Unix epoch.
    pub(crate) started_at_ms: u64,
    /// Health as the driver itself knows it (Docker's HEALTHCHECK status); `None` when the
    /// driver does not check health (the agent probes instead).
    pub(crate) driver_health: Option<Health>,
    /// Why it failed, in the driver's words.
    pub(crate) error: Option<String>,
}

/// A driver operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DriverError {
    /// The driver is not available on this host (no Docker engine, say).
    #[error("{0}")]
    Unavailable(String),
    /// The image cannot be had: not present locally and the pull failed.
    #[error("image {image}: {detail}")]
    Image { image: String, detail: String },
    /// Anything else the driver reported.
    #[error("{0}")]
    Failed(String),
}

/// The labels every replica carries.
pub(crate) mod labels {
    pub(crate) const SERVICE: &str = "knit.service";
    pub(crate) const SLOT: &str = "knit.slot";
    pub(crate) const SPEC_VERSION: &str = "knit.spec-version";
    /// The spec's template id (`ServiceSpec::template_id`), in hex.
    pub(crate) const TEMPLATE: &str = "knit.template";
    pub(crate) const NODE: &str = "knit.node";
}

/// The drivers this host has.
pub(crate) struct Drivers {
    pub(crate) docker: Option<docker::DockerDriver>,
    pub(crate) process: process::ProcessDriver,
    /// Where replicas' secrets are written, on memory.
    pub(crate) secrets: sealed_files::SealedFiles,
    /// Where replicas' configs are written, on memory.
    pub(crate) configs: sealed_files::SealedFiles,
    /// Service discovery's names and addresses, for the replicas started from now on.
    pub(crate) directory: tokio::sync::watch::Receiver<Arc<crate::discovery::Directory>>,
}

impl Drivers {
    /// The drivers that start replicas here, as the node's `info` record lists them.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.docker.is_some() {
            names.push("docker".to_owned());
        }
        if self.process.enabled() {
            names.push("process".to_owned());
        }
        names
    }

    /// Where this host reaches the host ports of its own replicas of `kind`: Docker
    /// publishes them on the node's address only; a process binds what it binds.
    pub(crate) fn probe_ip(&self, kind: DriverKind) -> std::net::IpAddr {
        match (kind, &self.docker) {
            (DriverKind::Docker, Some(docker)) => docker.publish_ip(),
            _ => std::net::IpAddr::from([127, 0, 0, 1]),
        }
    }

    /// Which driver runs `kind`, or why none can.
    pub(crate) fn for_kind(&self, kind: DriverKind) -> Result<Driver<'_>, DriverError> {
        match kind {
            DriverKind::Process => Ok(Driver::Process(&self.process)),
            DriverKind::Docker => self.docker.as_ref().map(Driver::Docker).ok_or_else(|| {
                DriverError::Unavailable(
                    "this host has no Docker engine; the service needs --driver docker hosts"
                        .into(),
                )
            }),
        }
    }
}

impl Drivers {
    /// Woken when a driver hears that one of this node's replicas changed (Docker's
    /// events); `None` when no driver tells.
    pub(crate) fn changed(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.docker.as_ref().map(docker::DockerDriver::changed)
    }

    /// Every replica this node runs, with the kind of driver that runs it, and the drivers
    /// that could not say (their replicas are not in the list).
    pub(crate) async fn list(&self, node: &str) -> Listing {
        let mut listing = Listing::default();
        match self.process.list().await {
            Ok(replicas) => listing
                .replicas
                .extend(replicas.into_iter().map(|r| (r, DriverKind::Process))),
            Err(e) => listing.failed.push((DriverKind::Process, e)),
        }
        if let Some(docker) = &self.docker {
            match docker.list(node).await {
                Ok(replicas) => listing
                    .replicas
                    .extend(replicas.into_iter().map(|r| (r, DriverKind::Docker))),
                Err(e) => listing.failed.push((DriverKind::Docker, e)),
            }
        }
        listing
    }
}

/// What the drivers run, as [`Drivers::list`] found it.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) replicas: Vec<(Replica, DriverKind)>,
    /// Drivers that did not answer, and why.
    pub(crate) failed: Vec<(DriverKind, DriverError)>,
}

/// One driver, chosen per service.
pub(crate) enum Driver<'a> {
    Docker(&'a docker::DockerDriver),
    Process(&'a process::ProcessDriver),
}

impl Driver<'_> {
    pub(crate) async fn start(&self, launch: &Launch) -> Result<Replica, DriverError> {
        match self {
            Driver::Docker(d) => d.start(launch).await,
            Driver::Process(d) => d.start(launch).await,
        }
    }

    /// Makes sure a replica of `spec` could start here without a pull (the docker
    /// driver's image; the process driver needs nothing).
    pub(crate) async fn warm(
        &self,
        spec: &knit_scheduler::ServiceSpec,
        auth: Option<&crate::registry::RegistryAuth>,
    ) -> Result<(), DriverError> {
        match (self, spec.image.as_deref()) {
            (Driver::Docker(d), Some(image)) => d.warm(image, auth).await,
            _ => Ok(()),
        }
    }

    /// The CPU time a replica has used so far, in nanoseconds, when the driver can tell.
    pub(crate) async fn cpu_time_ns(&self, runtime_id: &str) -> Option<u64> {
        match self {
            Driver::Docker(d) => d.cpu_time_ns(runtime_id).await,
            Driver::Process(d) => d.cpu_time_ns(runtime_id).await,
        }
    }

    /// Sends the lines of a replica's output that `query` asks for to `sink`; returns when
    /// they are sent, or (to follow) when `sink` closes or the replica is gone.
    pub(crate) async fn stream_logs(
        &self,
        runtime_id: &str,
        query: output::LogQuery,
        sink: &output::LineSink,
    ) -> Result<(), DriverError> {
        match self {
            Driver::Docker(d) => d.stream_logs(runtime_id, query, sink).await,
            Driver::Process(d) => d.stream_logs(runtime_id, query, sink).await,
        }
    }

    /// Stops a replica: SIGTERM, then SIGKILL after `grace`.
    pub(crate) async fn stop(&self, runtime_id: &str, grace: Duration) -> Result<(), DriverError> {
        match self {
            Driver::Docker(d) => d.stop(runtime_id, grace).await,
            Driver::Process(d) => d.stop(runtime_id, grace).await,
        }
    }
}
