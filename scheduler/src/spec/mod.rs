//! Service specs in Docker Swarm's vocabulary, and the text forms of their fields.
//!
//! Every struct decodes with missing fields filled by Docker's defaults
//! (`#[serde(default)]`), so records written by an older knit still read.

mod config;
mod constraint;
mod file_ref;
pub mod limits;
mod mount;
mod port;
mod quantity;
mod secret;
mod signal;
mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

pub use crate::resources::Resources;
pub use config::{CONFIG_MODE_DEFAULT, ConfigRef, config_name_is_valid};
pub use constraint::{Constraint, ConstraintField, ConstraintOp};
pub use limits::Limits;
pub use mount::{Mount, MountKind};
pub use port::{PortSpec, Protocol};
pub use quantity::{parse_cpu_millis, parse_duration_ms, parse_memory_bytes};
pub use secret::{SECRET_MODE_DEFAULT, SecretRef, secret_name_is_valid};
pub use signal::{normalize_signal, signal_number};

/// How replicas run.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Driver {
    /// A Docker container from `image`.
    #[default]
    Docker,
    /// A plain child process running `command`.
    Process,
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Docker => "docker",
            Self::Process => "process",
        })
    }
}

/// How many replicas and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Mode {
    /// A fixed number of slots, `name.1` to `name.N`, placed by hashing.
    Replicated {
        /// The number of slots.
        replicas: u32,
    },
    /// One slot on every active node that meets the constraints.
    Global,
}

impl Default for Mode {
    fn default() -> Self {
        Self::Replicated { replicas: 1 }
    }
}

/// When a stopped replica is started again (Docker's `--restart-*` flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RestartCondition {
    /// Whatever the exit.
    #[default]
    Any,
    /// Only after a non-zero exit or a failure to start.
    OnFailure,
    /// Never.
    None,
}

/// Restart policy; the defaults are Docker's (any, 5 s, unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RestartPolicy {
    /// When to restart.
    pub condition: RestartCondition,
    /// Wait before each restart.
    pub delay_ms: u64,
    /// Restarts allowed within `window_ms`; `None` is unlimited.
    pub max_attempts: Option<u32>,
    /// The window in which attempts count; 0 is the replica's whole life. The runtime
    /// keeps the count (see [`crate::replica::ReplicaReport::restarts`]).
    pub window_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            condition: RestartCondition::Any,
            delay_ms: 5_000,
            max_attempts: None,
            window_ms: 0,
        }
    }
}

/// How a health check probes a replica.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Probe {
    /// Run a command in the replica; exit 0 is healthy.
    Command(Vec<String>),
    /// GET a path; 2xx and 3xx are healthy.
    Http {
        /// The path, such as `/healthz`.
        path: String,
        /// The target port; `None` means the first published port's target.
        #[serde(default)]
        port: Option<u16>,
    },
}

/// A health check; Docker's defaults (30 s, 30 s, 3 retries, no start period).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthCheck {
    /// What to run.
    pub probe: Probe,
    /// Time between probes.
    #[serde(default = "HealthCheck::default_interval_ms")]
    pub interval_ms: u64,
    /// A probe slower than this failed.
    #[serde(default = "HealthCheck::default_interval_ms")]
    pub timeout_ms: u64,
    /// Consecutive failures before unhealthy.
    #[serde(default = "HealthCheck::default_retries")]
    pub retries: u32,
    /// Failures in this time after start do not count.
    #[serde(default)]
    pub start_period_ms: u64,
    /// A probe that answers but slower than this counts as failed: the response-time
    /// health check that catches a slow system.
    #[serde(default)]
    pub response_time_max_ms: Option<u64>,
}

impl HealthCheck {
    fn default_interval_ms() -> u64 {
        30_000
    }

    fn default_retries() -> u32 {
        3
    }

    /// A check with `probe` and Docker's default timings.
    pub fn new(probe: Probe) -> Self {
        Self {
            probe,
            interval_ms: Self::default_interval_ms(),
            timeout_ms: Self::default_interval_ms(),
            retries: Self::default_retries(),
            start_period_ms: 0,
            response_time_max_ms: None,
        }
    }
}

/// What a rolling update does when a wave fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FailureAction {
    /// Stop the rollout and wait for the operator.
    #[default]
    Pause,
    /// Go on with the next wave.
    Continue,
    /// Go back to the previous spec.
    Rollback,
}

/// What a side of a network partition does with this service's slots on members it cannot
/// see (`--partition-policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PartitionPolicy {
    /// Only a side that sees a majority of the known members reclaims them; a minority
    /// keeps what it runs and starts nothing of theirs. Never two copies of a slot.
    #[default]
    Majority,
    /// Every side keeps a full copy (for stateless services): after the heal, duplicates
    /// stop.
    Available,
}

/// Whether the old replica stops before or after its replacement starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum UpdateOrder {
    /// Stop, then start (Docker's default).
    #[default]
    StopFirst,
    /// Start, then stop.
    StartFirst,
}

/// A rolling update's pace (`--update-*` flags); defaults are Docker's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateConfig {
    /// Replicas replaced per wave; 0 replaces all at once.
    pub parallelism: u32,
    /// Wait between waves.
    pub delay_ms: u64,
    /// How long a replaced replica is watched before it counts as a success.
    pub monitor_ms: u64,
    /// What to do when too many replicas fail.
    pub failure_action: FailureAction,
    /// The share of failed replicas tolerated, in `[0, 1]`.
    pub max_failure_ratio: f64,
    /// Stop first or start first.
    pub order: UpdateOrder,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            parallelism: 1,
            delay_ms: 0,
            monitor_ms: 5_000,
            failure_action: FailureAction::Pause,
            max_failure_ratio: 0.0,
            order: UpdateOrder::StopFirst,
        }
    }
}

/// Scaling by policy: keep average CPU near a target between `min` and `max` replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Autoscale {
    /// Fewest replicas.
    pub min: u32,
    /// Most replicas.
    pub max: u32,
    /// Target average CPU use, in percent of the replicas' CPU reservation (or of one
    /// core when none is reserved), 1-100.
    pub cpu_target_percent: u32,
}

/// A service: what to run, how many, where, and how to heal and update it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceSpec {
    /// `[a-z0-9][a-z0-9_.-]{0,62}`; names slots (`blog.3`) and containers.
    pub name: String,
    /// Docker or plain process.
    pub driver: Driver,
    /// The image, for the Docker driver.
    pub image: Option<String>,
    /// The command: for a process, the program and its first arguments; for Docker, what
    /// the entrypoint runs (the image's CMD) when not empty.
    pub command: Vec<String>,
    /// For Docker, the entrypoint instead of the image's when not empty (Compose's
    /// `entrypoint`; the image's CMD is then not used). A process has none.
    pub entrypoint: Vec<String>,
    /// Arguments after the command (Docker: the image's CMD when not empty).
    pub args: Vec<String>,
    /// Replicated or global.
    pub mode: Mode,
    /// Published ports.
    pub ports: Vec<PortSpec>,
    /// Volumes, host paths and tmpfs mounted in each replica (Docker driver only).
    pub mounts: Vec<Mount>,
    /// Secrets each replica gets as files under `/run/secrets`.
    pub secrets: Vec<SecretRef>,
    /// Configs each replica gets as read-only files at their targets.
    pub configs: Vec<ConfigRef>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Labels on the service and its containers.
    pub labels: BTreeMap<String, String>,
    /// What each replica reserves on its node; placement makes sure it fits.
    pub reservations: Resources,
    /// The most a replica may use; enforced by the driver. Zero is no limit.
    pub limits: Resources,
    /// Where replicas may go; all must hold.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>, example = json!(["node.labels.zone==a"])))]
    pub constraints: Vec<Constraint>,
    /// The most replicas of this service one node may run (Docker's
    /// `--replicas-max-per-node`); 0 is no limit. Slots beyond it stay pending. Replicated
    /// services only.
    pub replicas_max_per_node: u32,
    /// When to restart a stopped replica.
    pub restart: RestartPolicy,
    /// How long a replica has to exit after SIGTERM before it is killed (ms).
    pub stop_grace_ms: u64,
    /// The signal that asks a replica to stop (Docker's `--stop-signal`), as
    /// [`normalize_signal`] spells it; `None`: the image's `STOPSIGNAL`, else `SIGTERM`. A
    /// replica keeps the signal it was started with.
    pub stop_signal: Option<String>,
    /// How to tell a healthy replica; `None` trusts a running one (or the image's own
    /// HEALTHCHECK, for the Docker driver).
    pub health: Option<HealthCheck>,
    /// Disable the image's HEALTHCHECK too (Docker's `--no-healthcheck`).
    pub no_healthcheck: bool,
    /// How a new spec rolls out.
    pub update: UpdateConfig,
    /// How a rollback rolls out.
    pub rollback: UpdateConfig,
    /// Scaling by policy, for replicated services.
    pub autoscale: Option<Autoscale>,
    /// What a partitioned side does with the slots of members it cannot see.
    pub partition_policy: PartitionPolicy,
    /// Bumped by whoever writes a change, for people: two writers that cannot see each
    /// other (two sides of a partition) may write the same number. What replicas run is
    /// told by [`ServiceSpec::template_id`], never by this number.
    pub version: u64,
    /// Raised by `service update --force` (Docker's `ForceUpdate`): part of the template, so
    /// replicas of an unchanged spec are replaced anyway.
    pub force_update: u64,
    /// The spec before the last update, for `knit service rollback`; one level only.
    #[cfg_attr(feature = "openapi", schema(no_recursion))]
    pub previous: Option<Box<ServiceSpec>>,
}

/// What a replica of a spec runs, borrowed from it: see [`ServiceSpec::template`]. Its
/// JSON form is what [`ServiceSpec::template_id`] hashes, so a field added here replaces
/// every replica once.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Template<'a> {
    driver: Driver,
    image: Option<&'a str>,
    /// Left out when empty, as mounts.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    entrypoint: &'a [String],
    command: &'a [String],
    args: &'a [String],
    ports: &'a [PortSpec],
    /// Left out when empty, so that specs written before mounts existed keep their ids.
    #[serde(skip_serializing_if = "no_mounts")]
    mounts: &'a [Mount],
    /// Left out when empty, as mounts.
    #[serde(skip_serializing_if = "no_secrets")]
    secrets: &'a [SecretRef],
    /// Left out when empty, as mounts.
    #[serde(skip_serializing_if = "no_configs")]
    configs: &'a [ConfigRef],
    env: &'a BTreeMap<String, String>,
    labels: &'a BTreeMap<String, String>,
    limits: Resources,
    health: Option<&'a HealthCheck>,
    stop_signal: Option<&'a str>,
    no_healthcheck: bool,
    force_update: u64,
}

fn no_mounts(mounts: &&[Mount]) -> bool {
    mounts.is_empty()
}

fn no_secrets(secrets: &&[SecretRef]) -> bool {
    secrets.is_empty()
}

fn no_configs(configs: &&[ConfigRef]) -> bool {
    configs.is_empty()
}

/// Docker's default stop grace period.
pub const DEFAULT_STOP_GRACE_MS: u64 = 10_000;

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            name: String::new(),
            driver: Driver::Docker,
            image: None,
            command: Vec::new(),
            entrypoint: Vec::new(),
            args: Vec::new(),
            mode: Mode::default(),
            ports: Vec::new(),
            mounts: Vec::new(),
            secrets: Vec::new(),
            configs: Vec::new(),
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            reservations: Resources::default(),
            limits: Resources::default(),
            constraints: Vec::new(),
            replicas_max_per_node: 0,
            restart: RestartPolicy::default(),
            stop_grace_ms: DEFAULT_STOP_GRACE_MS,
            stop_signal: None,
            health: None,
            no_healthcheck: false,
            update: UpdateConfig::default(),
            rollback: UpdateConfig::default(),
            autoscale: None,
            partition_policy: PartitionPolicy::Majority,
            version: 0,
            force_update: 0,
            previous: None,
        }
    }
}

impl ServiceSpec {
    /// A Docker service of one replica with every other field at its default.
    pub fn docker(name: &str, image: &str) -> Self {
        Self {
            name: name.to_owned(),
            image: Some(image.to_owned()),
            ..Self::default()
        }
    }

    /// The number of replicated slots (0 for a global service).
    pub fn replicas(&self) -> u32 {
        match self.mode {
            Mode::Replicated { replicas } => replicas,
            Mode::Global => 0,
        }
    }

    /// Whether the fields placement reads (mode, constraints, reservations, the most
    /// replicas per node) are equal.
    pub fn same_placement(&self, other: &ServiceSpec) -> bool {
        self.mode == other.mode
            && self.constraints == other.constraints
            && self.reservations == other.reservations
            && self.replicas_max_per_node == other.replicas_max_per_node
    }

    /// What a replica of this spec runs: what the driver starts (driver, image, command,
    /// entrypoint, args, ports, mounts, secrets, configs, env, labels, limits, stop signal), how its health is told, and the force
    /// counter. Scale, placement, restart, update and autoscaling policies are not part of
    /// it: changing them replaces no replica.
    pub fn template(&self) -> Template<'_> {
        Template {
            driver: self.driver,
            image: self.image.as_deref(),
            entrypoint: &self.entrypoint,
            command: &self.command,
            args: &self.args,
            ports: &self.ports,
            mounts: &self.mounts,
            secrets: &self.secrets,
            configs: &self.configs,
            env: &self.env,
            labels: &self.labels,
            limits: self.limits,
            health: self.health.as_ref(),
            stop_signal: self.stop_signal.as_deref(),
            no_healthcheck: self.no_healthcheck,
            force_update: self.force_update,
        }
    }

    /// Whether replicas of `self` and `other` run the same thing (see [`Self::template`]).
    pub fn same_template(&self, other: &ServiceSpec) -> bool {
        self.template() == other.template()
    }

    /// A fingerprint of [`Self::template`], the same on every peer and build: what a
    /// replica records at its start and what tells whether it runs this spec. Unlike the
    /// version number, two writers that cannot see each other never give two different
    /// templates the same id, so once the store converges on one spec, every replica of the
    /// other is outdated. Never 0 (0 marks a replica that recorded none).
    pub fn template_id(&self) -> u64 {
        let text = serde_json::to_vec(&self.template())
            .expect("a template serializes: its maps have string keys");
        xxh3_64(&text).max(1)
    }

    /// Whether a replica started from template `template` runs what this spec asks for.
    pub fn runs_current(&self, template: u64) -> bool {
        template == self.template_id()
    }

    /// `next` written as the version after `self`: same name, `self` kept (one level) for
    /// rollback, and the force counter raised when `redeploy` asks to replace replicas
    /// whether or not what they run changed.
    pub fn followed_by(&self, mut next: ServiceSpec, redeploy: bool) -> ServiceSpec {
        let mut kept = self.clone();
        kept.previous = None;
        next.name = self.name.clone();
        next.version = self.version + 1;
        if redeploy {
            next.force_update = self.force_update.max(next.force_update) + 1;
        }
        next.previous = Some(Box::new(kept));
        next
    }
}
