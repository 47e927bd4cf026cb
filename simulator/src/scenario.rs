//! Scenarios: what to simulate, read from TOML (hosts, services, network, faults).

use knit_mesh::Profile;
use knit_scheduler::spec::{Mode, parse_memory_bytes};
use knit_scheduler::{Resources, ServiceSpec};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::MembershipKind;

/// A scenario could not be read or makes no sense; each variant says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The TOML did not parse or has unknown or missing fields.
    #[error("scenario TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// A memory size (write `512M`, `32G`) or a constraint (`node.labels.zone==a`) did
    /// not parse.
    #[error("{0}")]
    Spec(#[from] knit_scheduler::SpecError),
    /// A value is out of range.
    #[error("scenario: {0}")]
    Invalid(String),
}

/// A whole scenario, as written in a `scenarios/*.toml` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A name for reports.
    #[serde(default)]
    pub name: String,
    /// The seed of every random choice; `--seed` overrides it.
    #[serde(default = "one")]
    pub seed: u64,
    /// Simulated time to run, in seconds.
    pub duration_s: f64,
    /// Time for the hosts to join before replanning, faults and measurements start.
    #[serde(default = "ten")]
    pub warmup_s: f64,
    /// The failure-detection profile every host runs.
    #[serde(default)]
    pub profile: Profile,
    /// `real` runs the membership core on every host; `model` draws when hosts learn of
    /// deaths and returns from a calibrated model (for thousands of hosts; kills, restarts
    /// and churn only).
    #[serde(default)]
    pub membership: MembershipKind,
    /// With `true`, every host runs the whole node core of the peer
    /// (`knit_mesh::node_core::NodeCore`: membership, the replicated store, the trust gate,
    /// rumors, pushes and anti-entropy) instead of the bare membership core, so that
    /// `write` faults spread as they do between peers and the report says when the stores
    /// converged. Needs `membership = "real"`; costs time (see BENCHMARKS.md).
    #[serde(default)]
    pub store: bool,
    /// The hosts (all alike).
    pub hosts: HostsSpec,
    /// The services to place.
    #[serde(default)]
    pub services: Vec<ServiceDef>,
    /// The network model.
    #[serde(default)]
    pub network: NetworkSpec,
    /// Container start times.
    #[serde(default)]
    pub containers: ContainerSpec,
    /// Faults at fixed times.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Random kills and restarts.
    #[serde(default)]
    pub churn: Option<Churn>,
    /// How often each host calls `Membership::sync` (ms; the peer does every second).
    #[serde(default = "sync_default")]
    pub sync_ms: u64,
    /// The most events one run may process before it is aborted.
    #[serde(default = "budget_default")]
    pub step_budget: u64,
}

fn one() -> u64 {
    1
}
fn ten() -> f64 {
    10.0
}
pub(crate) fn sync_default() -> u64 {
    1_000
}
fn budget_default() -> u64 {
    200_000_000
}

/// The hosts: `count` identical machines, then each of `groups` in order (hosts are
/// numbered across them: `h0000` is the first of `count`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsSpec {
    /// How many.
    pub count: usize,
    /// Cores each.
    pub cpu: f64,
    /// Memory each, as `32G`.
    pub memory: String,
    /// Node labels each, for services' constraints (`node.labels.zone==a`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// More hosts, of other sizes or labels.
    #[serde(default)]
    pub groups: Vec<HostGroup>,
}

/// Hosts of one size and labels, after the main ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostGroup {
    /// How many.
    pub count: usize,
    /// Cores each.
    pub cpu: f64,
    /// Memory each, as `32G`.
    pub memory: String,
    /// Node labels each.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One host as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostView {
    /// Its capacity.
    pub capacity: Resources,
    /// Its node labels.
    pub labels: BTreeMap<String, String>,
}

/// One replicated service and its reservation per replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    /// The service name.
    pub name: String,
    /// Its replica count.
    pub replicas: u32,
    /// Cores reserved per replica.
    #[serde(default)]
    pub cpu: f64,
    /// Memory reserved per replica, as `512M`.
    #[serde(default = "zero_memory")]
    pub memory: String,
    /// Placement constraints, as `--constraint` takes them (`node.labels.zone==a`).
    #[serde(default)]
    pub constraints: Vec<String>,
}

fn zero_memory() -> String {
    "0".to_owned()
}

/// Latency, jitter and loss of every link.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// One-way base latency.
    #[serde(default = "one")]
    pub latency_ms: u64,
    /// Uniform jitter added to the base, `0..=jitter_ms`.
    #[serde(default)]
    pub jitter_ms: u64,
    /// Probability that a packet is lost.
    #[serde(default)]
    pub loss: f64,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        Self {
            latency_ms: 1,
            jitter_ms: 0,
            loss: 0.0,
        }
    }
}

/// How long a container takes to start: uniform in `start_min_ms..=start_max_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// Shortest start.
    pub start_min_ms: u64,
    /// Longest start.
    pub start_max_ms: u64,
}

impl Default for ContainerSpec {
    fn default() -> Self {
        Self {
            start_min_ms: 500,
            start_max_ms: 2_000,
        }
    }
}

/// One fault at a fixed simulated time (seconds from the start).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// The host stops: no packets, no timers, its containers are gone.
    Kill {
        /// When.
        at_s: f64,
        /// Host index, from 0.
        host: usize,
        /// Only the peer process dies; the machine stays up and refuses datagrams to the
        /// peer's port (ICMP port unreachable), which the other peers' port checks notice,
        /// as when a peer is killed with SIGKILL on a live host. Off by default: the whole
        /// machine is lost and says nothing.
        #[serde(default)]
        refuses: bool,
    },
    /// The host starts again with a higher epoch and announces itself to a live host.
    Restart {
        /// When.
        at_s: f64,
        /// Host index, from 0.
        host: usize,
    },
    /// Hosts in different groups cannot reach each other; unlisted hosts form one more group.
    Partition {
        /// When.
        at_s: f64,
        /// Groups of host indices.
        groups: Vec<Vec<usize>>,
    },
    /// Every partition ends.
    Heal {
        /// When.
        at_s: f64,
    },
    /// Packets from `from` to `to` are lost (one direction only).
    Cut {
        /// When.
        at_s: f64,
        /// Sender.
        from: usize,
        /// Receiver.
        to: usize,
    },
    /// Undoes a `cut`.
    Restore {
        /// When.
        at_s: f64,
        /// Sender.
        from: usize,
        /// Receiver.
        to: usize,
    },
    /// The host writes `bytes` bytes under `key` in the replicated store (as a service
    /// spec is written through any peer); needs `store = true`. Ignored if the host is
    /// down.
    Write {
        /// When.
        at_s: f64,
        /// Host index, from 0.
        host: usize,
        /// The store key, as `svc/web`.
        key: String,
        /// The value's size (at most [`WRITE_MAX_BYTES`]).
        bytes: usize,
    },
    /// The operator changes a service's spec, as `knit service update` does: a new image
    /// rolls out through the agents' real rollout (waves of `parallelism` replicas, each
    /// watched for `monitor_s`, then `delay_s` before the next), a new replica count scales
    /// the service. Every host reads the new spec from then on (at once: hosts do not read
    /// specs from their stores); with `store = true`, the spec record is also written to
    /// `host`'s store (`svc/<service>`) and spreads as any write does.
    Update {
        /// When.
        at_s: f64,
        /// The service, one of `[[services]]`.
        service: String,
        /// The host the operator writes through (default 0).
        #[serde(default)]
        host: usize,
        /// A new image: every replica is replaced, wave by wave.
        #[serde(default)]
        image: Option<String>,
        /// A new replica count.
        #[serde(default)]
        replicas: Option<u32>,
        /// Replicas replaced per wave (default 1; 0: all at once).
        #[serde(default)]
        parallelism: Option<u32>,
        /// Wait between waves, in seconds (default 0).
        #[serde(default)]
        delay_s: Option<f64>,
        /// How long a wave is watched before the next may open, in seconds (default 5).
        #[serde(default)]
        monitor_s: Option<f64>,
    },
    /// The operator removes a down host from the cluster, as `knit node rm` does: it never
    /// comes back, and with `store = true` the removal record (`revoked/<node>`) is written
    /// through host `through` and spreads, and every member that reads it cuts the host
    /// off (the real node core's revocation).
    Remove {
        /// When.
        at_s: f64,
        /// The host removed: down at `at_s` (killed earlier, not restarted).
        host: usize,
        /// The host the operator removes it through (default 0).
        #[serde(default)]
        through: usize,
    },
}

/// The most replicas an `update` fault may ask for.
pub const REPLICAS_MAX: u32 = 100_000;

/// The largest value a `write` fault may write.
pub const WRITE_MAX_BYTES: usize = 1024 * 1024;

impl Fault {
    /// When it happens, in seconds.
    pub fn at_s(&self) -> f64 {
        match self {
            Fault::Kill { at_s, .. }
            | Fault::Restart { at_s, .. }
            | Fault::Partition { at_s, .. }
            | Fault::Heal { at_s }
            | Fault::Cut { at_s, .. }
            | Fault::Restore { at_s, .. }
            | Fault::Write { at_s, .. }
            | Fault::Update { at_s, .. }
            | Fault::Remove { at_s, .. } => *at_s,
        }
    }

    fn hosts(&self) -> Vec<usize> {
        match self {
            Fault::Kill { host, .. } | Fault::Restart { host, .. } | Fault::Write { host, .. } => {
                vec![*host]
            }
            Fault::Partition { groups, .. } => groups.iter().flatten().copied().collect(),
            Fault::Heal { .. } => Vec::new(),
            Fault::Update { host, .. } => vec![*host],
            Fault::Remove { host, through, .. } => vec![*host, *through],
            Fault::Cut { from, to, .. } | Fault::Restore { from, to, .. } => vec![*from, *to],
        }
    }
}

/// Random kills at a mean rate; each killed host restarts after `downtime_s`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Churn {
    /// Mean kills per simulated minute (exponential gaps).
    pub kills_per_minute: f64,
    /// How long a killed host stays down.
    pub downtime_s: f64,
    /// Churn starts (default: the end of the warm-up).
    #[serde(default)]
    pub start_s: Option<f64>,
    /// Churn stops, so the run can end quiet (default: 30 s before the end).
    #[serde(default)]
    pub stop_s: Option<f64>,
}

impl Scenario {
    /// Reads and checks a scenario.
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = toml::from_str(text)?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Checks ranges and host indices.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |why: String| Err(ScenarioError::Invalid(why));
        let hosts = self.host_count();
        if hosts == 0 || hosts > 100_000 {
            return bad(
                "hosts.count (with every hosts.groups count) must be between 1 and 100000".into(),
            );
        }
        if !(self.duration_s > self.warmup_s && self.warmup_s >= 0.0) {
            return bad("duration_s must be greater than warmup_s (default 10)".into());
        }
        if !(0.0..1.0).contains(&self.network.loss) {
            return bad("network.loss must be in [0, 1)".into());
        }
        if self.containers.start_min_ms > self.containers.start_max_ms {
            return bad("containers.start_min_ms must not exceed start_max_ms".into());
        }
        if self.sync_ms == 0 {
            return bad("sync_ms must be at least 1".into());
        }
        if self.membership == MembershipKind::Model {
            let network_fault = self.faults.iter().any(|f| {
                matches!(
                    f,
                    Fault::Partition { .. }
                        | Fault::Heal { .. }
                        | Fault::Cut { .. }
                        | Fault::Restore { .. }
                )
            });
            if network_fault || self.network.loss > 0.0 {
                return bad(
                    "the membership model covers kills, restarts and churn only; run partitions, cuts and packet loss with membership = \"real\"".into(),
                );
            }
            if self
                .faults
                .iter()
                .any(|f| matches!(f, Fault::Kill { refuses: true, .. }))
            {
                return bad(
                    "the membership model loses whole machines only; run kills with refuses = true with membership = \"real\"".into(),
                );
            }
        }
        if self.store && self.membership == MembershipKind::Model {
            return bad(
                "store = true runs the real node core on every host: use it with membership = \"real\"".into(),
            );
        }
        for fault in &self.faults {
            self.validate_update(fault)?;
            self.validate_remove(fault)?;
            if let Fault::Write { bytes, .. } = fault {
                if !self.store {
                    return bad("a write fault needs store = true".into());
                }
                if *bytes > WRITE_MAX_BYTES {
                    return bad(format!(
                        "a write fault writes at most {WRITE_MAX_BYTES} bytes"
                    ));
                }
            }
            if fault.at_s() < self.warmup_s {
                return bad(format!("fault at {} s is inside the warm-up", fault.at_s()));
            }
            if let Some(h) = fault.hosts().into_iter().find(|h| *h >= hosts) {
                return bad(format!("fault names host {h}, but hosts are 0..{}", hosts));
            }
        }
        if let Some(churn) = &self.churn
            && !(churn.kills_per_minute > 0.0 && churn.downtime_s >= 0.0)
        {
            return bad("churn.kills_per_minute must be positive".into());
        }
        self.host_views()?;
        self.specs()?;
        Ok(())
    }

    /// Checks an `update` fault: it names a service and changes what runs.
    fn validate_update(&self, fault: &Fault) -> Result<(), ScenarioError> {
        let Fault::Update {
            service,
            image,
            replicas,
            delay_s,
            monitor_s,
            ..
        } = fault
        else {
            return Ok(());
        };
        let bad = |why: String| Err(ScenarioError::Invalid(why));
        if !self.services.iter().any(|s| &s.name == service) {
            let names: Vec<&str> = self.services.iter().map(|s| s.name.as_str()).collect();
            return bad(format!(
                "an update fault names service `{service}`, but the services are [{}]: fix the name or add it under [[services]]",
                names.join(", ")
            ));
        }
        if image.is_none() && replicas.is_none() {
            return bad(format!(
                "the update fault of `{service}` changes nothing that runs: give it an image (rolls out) or replicas (scales)"
            ));
        }
        if image.as_deref().is_some_and(str::is_empty) {
            return bad(format!(
                "the update fault of `{service}` has an empty image: name one, as \"sim:2\""
            ));
        }
        if replicas.is_some_and(|r| r > REPLICAS_MAX) {
            return bad(format!(
                "the update fault of `{service}` asks for more than {REPLICAS_MAX} replicas: ask for fewer"
            ));
        }
        if [delay_s, monitor_s]
            .into_iter()
            .flatten()
            .any(|s| !(s.is_finite() && *s >= 0.0))
        {
            return bad(format!(
                "the update fault of `{service}` has a negative or non-finite delay_s or monitor_s: give seconds, 0 or more"
            ));
        }
        Ok(())
    }

    /// Checks a `remove` fault: the host is down then and never restarts after.
    fn validate_remove(&self, fault: &Fault) -> Result<(), ScenarioError> {
        let &Fault::Remove {
            at_s,
            host,
            through,
        } = fault
        else {
            return Ok(());
        };
        let bad = |why: String| Err(ScenarioError::Invalid(why));
        if through == host {
            return bad(format!(
                "the remove fault of host {host} goes through the host itself: give another host as `through` (knit node rm runs on another peer)"
            ));
        }
        let last_before = self
            .faults
            .iter()
            .filter(|f| f.at_s() < at_s)
            .filter_map(|f| match f {
                Fault::Kill { host: h, at_s, .. } if *h == host => Some((*at_s, true)),
                Fault::Restart { host: h, at_s } if *h == host => Some((*at_s, false)),
                _ => None,
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if last_before.is_none_or(|(_, killed)| !killed) {
            return bad(format!(
                "the remove fault at {at_s} s removes host {host}, which is not down then: add a kill fault of it before (knit node rm refuses an active member)"
            ));
        }
        let back = self
            .faults
            .iter()
            .find(|f| matches!(f, Fault::Restart { host: h, at_s: t } if *h == host && *t >= at_s));
        if let Some(back) = back {
            return bad(format!(
                "host {host} is removed at {at_s} s and never comes back: drop its restart at {} s",
                back.at_s()
            ));
        }
        Ok(())
    }

    /// The services with as many slots as any `update` fault gives them: the slot table
    /// of the run.
    pub fn table_specs(&self) -> Result<Vec<ServiceSpec>, ScenarioError> {
        let mut specs = self.specs()?;
        for fault in &self.faults {
            if let Fault::Update {
                service,
                replicas: Some(r),
                ..
            } = fault
                && let Some(spec) = specs.iter_mut().find(|s| &s.name == service)
                && *r > spec.replicas()
            {
                spec.mode = Mode::Replicated { replicas: *r };
            }
        }
        Ok(specs)
    }

    /// Every host: the main ones and every group's.
    pub fn host_count(&self) -> usize {
        self.hosts.count + self.hosts.groups.iter().map(|g| g.count).sum::<usize>()
    }

    /// Each host's capacity and labels, by host index.
    pub fn host_views(&self) -> Result<Vec<HostView>, ScenarioError> {
        let mut views = Vec::with_capacity(self.host_count());
        let main = HostView {
            capacity: self.capacity()?,
            labels: self.hosts.labels.clone(),
        };
        views.extend(std::iter::repeat_n(main, self.hosts.count));
        for group in &self.hosts.groups {
            let view = HostView {
                capacity: Resources {
                    cpu_millis: cores_to_millis(group.cpu),
                    memory_bytes: parse_memory_bytes(&group.memory)?,
                },
                labels: group.labels.clone(),
            };
            views.extend(std::iter::repeat_n(view, group.count));
        }
        Ok(views)
    }

    /// The capacity of one of the main hosts.
    pub fn capacity(&self) -> Result<Resources, ScenarioError> {
        Ok(Resources {
            cpu_millis: cores_to_millis(self.hosts.cpu),
            memory_bytes: parse_memory_bytes(&self.hosts.memory)?,
        })
    }

    /// The services as the scheduler's specs.
    pub fn specs(&self) -> Result<Vec<ServiceSpec>, ScenarioError> {
        self.services.iter().map(ServiceDef::spec).collect()
    }
}

impl ServiceDef {
    /// This service as a scheduler spec.
    pub fn spec(&self) -> Result<ServiceSpec, ScenarioError> {
        let mut spec = ServiceSpec::docker(&self.name, "sim");
        spec.mode = Mode::Replicated {
            replicas: self.replicas,
        };
        spec.reservations = Resources {
            cpu_millis: cores_to_millis(self.cpu),
            memory_bytes: parse_memory_bytes(&self.memory)?,
        };
        spec.constraints = self
            .constraints
            .iter()
            .map(|c| c.parse())
            .collect::<Result<_, _>>()?;
        Ok(spec)
    }
}

/// Cores (`0.5`) to millicores (`500`); negative or non-finite values count as zero.
pub fn cores_to_millis(cores: f64) -> u64 {
    if cores.is_finite() && cores > 0.0 {
        // Rounded and far below 2^53: exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let millis = (cores * 1000.0).round() as u64;
        millis
    } else {
        0
    }
}

/// Seconds to whole milliseconds.
pub fn secs_to_ms(s: f64) -> u64 {
    cores_to_millis(s)
}
