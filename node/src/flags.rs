//! The flags of `knit service create` and `knit service update`, in Docker's words, and how
//! they change a [`ServiceSpec`]. Every value is checked here with the flag's name in the
//! error; the peer validates the whole spec again.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use clap::Args;
use knit_scheduler::ServiceSpec;
use knit_scheduler::spec::{
    Autoscale, ConfigRef, Constraint, Driver, HealthCheck, Limits, Mode, Mount, PortSpec, Probe,
    SecretRef, UpdateConfig, parse_cpu_millis, parse_duration_ms, parse_memory_bytes,
};
use serde::de::DeserializeOwned;

/// Flags shared by `create` and `update`.
#[derive(Debug, Args, Default)]
pub(crate) struct SpecFlags {
    /// Number of replicas.
    #[arg(long)]
    pub(crate) replicas: Option<u32>,
    /// Service mode: replicated or global.
    #[arg(long)]
    pub(crate) mode: Option<String>,
    /// Maximum number of replicas per node (0 = no limit); replicas beyond it stay pending.
    #[arg(long)]
    pub(crate) replicas_max_per_node: Option<u32>,
    /// Reserve CPUs (e.g. 0.5).
    #[arg(long)]
    pub(crate) reserve_cpu: Option<String>,
    /// Reserve memory (e.g. 256M).
    #[arg(long)]
    pub(crate) reserve_memory: Option<String>,
    /// Limit CPUs.
    #[arg(long)]
    pub(crate) limit_cpu: Option<String>,
    /// Limit memory.
    #[arg(long)]
    pub(crate) limit_memory: Option<String>,
    /// Restart when: none, on-failure or any.
    #[arg(long)]
    pub(crate) restart_condition: Option<String>,
    /// Delay between restart attempts (ns|us|ms|s|m|h).
    #[arg(long)]
    pub(crate) restart_delay: Option<String>,
    /// Maximum number of restarts before giving up.
    #[arg(long)]
    pub(crate) restart_max_attempts: Option<u32>,
    /// Time to wait after SIGTERM before killing a replica (default 10s).
    #[arg(long)]
    pub(crate) stop_grace_period: Option<String>,
    /// Signal that asks a replica to stop, e.g. SIGQUIT (default: the image's STOPSIGNAL,
    /// else SIGTERM).
    #[arg(long)]
    pub(crate) stop_signal: Option<String>,
    /// Window used to evaluate the restart policy.
    #[arg(long)]
    pub(crate) restart_window: Option<String>,
    /// Command run in the replica to check health (exit 0 = healthy).
    #[arg(long)]
    pub(crate) health_cmd: Option<String>,
    /// HTTP path probed to check health (2xx/3xx = healthy), e.g. /healthz.
    #[arg(long)]
    pub(crate) health_http: Option<String>,
    /// Time between health checks.
    #[arg(long)]
    pub(crate) health_interval: Option<String>,
    /// Maximum time a check may take.
    #[arg(long)]
    pub(crate) health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy.
    #[arg(long)]
    pub(crate) health_retries: Option<u32>,
    /// Start period during which failures do not count.
    #[arg(long)]
    pub(crate) health_start_period: Option<String>,
    /// A response slower than this counts as a failed check.
    #[arg(long)]
    pub(crate) health_max_response_time: Option<String>,
    /// Disable any health check, the image's HEALTHCHECK too.
    #[arg(long)]
    pub(crate) no_healthcheck: bool,
    /// Maximum number of replicas updated at once (0 = all).
    #[arg(long)]
    pub(crate) update_parallelism: Option<u32>,
    /// Delay between update waves.
    #[arg(long)]
    pub(crate) update_delay: Option<String>,
    /// How long to watch each updated replica for failure.
    #[arg(long)]
    pub(crate) update_monitor: Option<String>,
    /// On update failure: pause, continue or rollback.
    #[arg(long)]
    pub(crate) update_failure_action: Option<String>,
    /// Failure rate tolerated during an update (0 to 1).
    #[arg(long)]
    pub(crate) update_max_failure_ratio: Option<f64>,
    /// Update order: stop-first or start-first.
    #[arg(long)]
    pub(crate) update_order: Option<String>,
    /// Maximum number of replicas rolled back at once (0 = all).
    #[arg(long)]
    pub(crate) rollback_parallelism: Option<u32>,
    /// Delay between rollback waves.
    #[arg(long)]
    pub(crate) rollback_delay: Option<String>,
    /// Rollback order: stop-first or start-first.
    #[arg(long)]
    pub(crate) rollback_order: Option<String>,
    /// Autoscaling: fewest replicas.
    #[arg(long)]
    pub(crate) autoscale_min: Option<u32>,
    /// Autoscaling: most replicas.
    #[arg(long)]
    pub(crate) autoscale_max: Option<u32>,
    /// Autoscaling: target CPU use of the replicas, in percent.
    #[arg(long)]
    pub(crate) autoscale_cpu_target: Option<u32>,
    /// In a network partition: majority (only a side that sees most members reclaims the
    /// others' replicas; the default) or available (every side keeps a full copy; for
    /// stateless services).
    #[arg(long)]
    pub(crate) partition_policy: Option<String>,
}

/// Parses one of a spec enum's values, accepting Docker's dashes (`on-failure`).
fn choice<T: DeserializeOwned>(flag: &str, value: &str, valid: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(value.replace('-', "_")))
        .map_err(|_| anyhow::anyhow!("--{flag} {value:?} is not valid: use {valid}"))
}

fn duration(flag: &str, value: &str) -> Result<u64> {
    parse_duration_ms(value).with_context(|| format!("--{flag}"))
}

/// `KEY=VALUE` pairs, as `-e` and `--label` take them.
pub(crate) fn pairs(flag: &str, items: &[String]) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("--{flag} {item:?}: write it as KEY=VALUE"),
        })
        .collect()
}

pub(crate) fn ports(flag: &str, items: &[String]) -> Result<Vec<PortSpec>> {
    items
        .iter()
        .map(|p| {
            p.parse::<PortSpec>()
                .with_context(|| format!("--{flag} {p:?}"))
        })
        .collect()
}

pub(crate) fn mounts(flag: &str, items: &[String]) -> Result<Vec<Mount>> {
    items
        .iter()
        .map(|m| {
            m.parse::<Mount>()
                .with_context(|| format!("--{flag} {m:?}"))
        })
        .collect()
}

pub(crate) fn secrets(flag: &str, items: &[String]) -> Result<Vec<SecretRef>> {
    items
        .iter()
        .map(|m| {
            m.parse::<SecretRef>()
                .with_context(|| format!("--{flag} {m:?}"))
        })
        .collect()
}

pub(crate) fn configs(flag: &str, items: &[String]) -> Result<Vec<ConfigRef>> {
    items
        .iter()
        .map(|m| {
            m.parse::<ConfigRef>()
                .with_context(|| format!("--{flag} {m:?}"))
        })
        .collect()
}

pub(crate) fn constraints(flag: &str, items: &[String]) -> Result<Vec<Constraint>> {
    items
        .iter()
        .map(|c| {
            c.parse::<Constraint>()
                .with_context(|| format!("--{flag} {c:?}"))
        })
        .collect()
}

impl SpecFlags {
    /// Applies the flags that were given to `spec`.
    pub(crate) fn apply(&self, spec: &mut ServiceSpec) -> Result<()> {
        self.apply_mode(spec)?;
        if let Some(v) = &self.partition_policy {
            spec.partition_policy =
                choice("partition-policy", v, "majority (the default) or available")?;
        }
        if let Some(v) = &self.reserve_cpu {
            spec.reservations.cpu_millis = parse_cpu_millis(v).context("--reserve-cpu")?;
        }
        if let Some(v) = &self.reserve_memory {
            spec.reservations.memory_bytes = parse_memory_bytes(v).context("--reserve-memory")?;
        }
        if let Some(v) = &self.limit_cpu {
            spec.limits.cpu_millis = parse_cpu_millis(v).context("--limit-cpu")?;
        }
        if let Some(v) = &self.limit_memory {
            spec.limits.memory_bytes = parse_memory_bytes(v).context("--limit-memory")?;
        }
        self.apply_restart(spec)?;
        self.apply_health(spec)?;
        self.apply_update(&mut spec.update, "update")?;
        self.apply_rollback(&mut spec.rollback)?;
        self.apply_autoscale(spec);
        Ok(())
    }

    fn apply_mode(&self, spec: &mut ServiceSpec) -> Result<()> {
        match self.mode.as_deref() {
            None => {}
            Some("replicated") if spec.mode == Mode::Global => {
                spec.mode = Mode::Replicated { replicas: 1 }
            }
            Some("replicated") => {}
            Some("global") => spec.mode = Mode::Global,
            Some(other) => bail!("--mode {other:?} is not valid: use replicated or global"),
        }
        if let Some(replicas) = self.replicas {
            if spec.mode == Mode::Global {
                bail!("--replicas applies to replicated services only; this one is global");
            }
            spec.mode = Mode::Replicated { replicas };
        }
        if let Some(max) = self.replicas_max_per_node {
            spec.replicas_max_per_node = max;
        }
        Ok(())
    }

    fn apply_restart(&self, spec: &mut ServiceSpec) -> Result<()> {
        if let Some(v) = &self.restart_condition {
            spec.restart.condition = choice("restart-condition", v, "none, on-failure or any")?;
        }
        if let Some(v) = &self.restart_delay {
            spec.restart.delay_ms = duration("restart-delay", v)?;
        }
        if let Some(v) = self.restart_max_attempts {
            spec.restart.max_attempts = Some(v);
        }
        if let Some(v) = &self.restart_window {
            spec.restart.window_ms = duration("restart-window", v)?;
        }
        if let Some(v) = &self.stop_grace_period {
            spec.stop_grace_ms = duration("stop-grace-period", v)?;
        }
        if let Some(v) = &self.stop_signal {
            spec.stop_signal = Some(knit_scheduler::spec::normalize_signal(v).ok_or_else(|| {
                anyhow::anyhow!(
                    "--stop-signal {v:?} is not a signal: give a name such as SIGTERM or SIGQUIT, or a number from 1 to 64"
                )
            })?);
        }
        Ok(())
    }

    fn apply_health(&self, spec: &mut ServiceSpec) -> Result<()> {
        if self.no_healthcheck {
            spec.health = None;
            spec.no_healthcheck = true;
            return Ok(());
        }
        if self.health_cmd.is_some() || self.health_http.is_some() {
            spec.no_healthcheck = false;
        }
        let probe = match (&self.health_cmd, &self.health_http) {
            (Some(_), Some(_)) => bail!("give --health-cmd or --health-http, not both"),
            (Some(cmd), None) => Some(Probe::Command(vec![
                "/bin/sh".into(),
                "-c".into(),
                cmd.clone(),
            ])),
            (None, Some(path)) => Some(Probe::Http {
                path: path.clone(),
                port: None,
            }),
            (None, None) => None,
        };
        if let Some(probe) = probe {
            let mut health = spec
                .health
                .take()
                .unwrap_or_else(|| HealthCheck::new(probe.clone()));
            health.probe = probe;
            spec.health = Some(health);
        }
        let touched = self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some()
            || self.health_max_response_time.is_some();
        let Some(health) = spec.health.as_mut() else {
            if touched {
                bail!("health options need a check: add --health-cmd or --health-http");
            }
            return Ok(());
        };
        if let Some(v) = &self.health_interval {
            health.interval_ms = duration("health-interval", v)?;
        }
        if let Some(v) = &self.health_timeout {
            health.timeout_ms = duration("health-timeout", v)?;
        }
        if let Some(v) = self.health_retries {
            health.retries = v;
        }
        if let Some(v) = &self.health_start_period {
            health.start_period_ms = duration("health-start-period", v)?;
        }
        if let Some(v) = &self.health_max_response_time {
            health.response_time_max_ms = Some(duration("health-max-response-time", v)?);
        }
        Ok(())
    }

    fn apply_update(&self, update: &mut UpdateConfig, prefix: &str) -> Result<()> {
        if let Some(v) = self.update_parallelism {
            update.parallelism = v;
        }
        if let Some(v) = &self.update_delay {
            update.delay_ms = duration(&format!("{prefix}-delay"), v)?;
        }
        if let Some(v) = &self.update_monitor {
            update.monitor_ms = duration(&format!("{prefix}-monitor"), v)?;
        }
        if let Some(v) = &self.update_failure_action {
            update.failure_action =
                choice("update-failure-action", v, "pause, continue or rollback")?;
        }
        if let Some(v) = self.update_max_failure_ratio {
            update.max_failure_ratio = v;
        }
        if let Some(v) = &self.update_order {
            update.order = choice("update-order", v, "stop-first or start-first")?;
        }
        Ok(())
    }

    fn apply_rollback(&self, rollback: &mut UpdateConfig) -> Result<()> {
        if let Some(v) = self.rollback_parallelism {
            rollback.parallelism = v;
        }
        if let Some(v) = &self.rollback_delay {
            rollback.delay_ms = duration("rollback-delay", v)?;
        }
        if let Some(v) = &self.rollback_order {
            rollback.order = choice("rollback-order", v, "stop-first or start-first")?;
        }
        Ok(())
    }

    fn apply_autoscale(&self, spec: &mut ServiceSpec) {
        if self.autoscale_min.is_none()
            && self.autoscale_max.is_none()
            && self.autoscale_cpu_target.is_none()
        {
            return;
        }
        let current = spec.replicas().max(1);
        let mut autoscale = spec.autoscale.unwrap_or(Autoscale {
            min: current,
            max: current,
            cpu_target_percent: 70,
        });
        if let Some(v) = self.autoscale_min {
            autoscale.min = v;
        }
        if let Some(v) = self.autoscale_max {
            autoscale.max = v;
        }
        if let Some(v) = self.autoscale_cpu_target {
            autoscale.cpu_target_percent = v;
        }
        spec.autoscale = Some(autoscale);
    }
}

/// `knit service create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Service name.
    #[arg(long)]
    pub(crate) name: String,
    /// docker (IMAGE [COMMAND] [ARG...]) or process (COMMAND [ARG...]).
    #[arg(long, default_value = "docker")]
    pub(crate) driver: String,
    /// Publish a port: PUBLISHED:TARGET[/tcp|udp]; TARGET alone: reached by the service's
    /// name only, not published.
    #[arg(short = 'p', long = "publish")]
    pub(crate) publish: Vec<String>,
    /// Mount a volume, a host path or a tmpfs (docker driver):
    /// type=bind|volume|tmpfs,source=...,target=/path[,readonly]. A volume is local to
    /// the host that runs the replica.
    #[arg(long = "mount")]
    pub(crate) mounts: Vec<String>,
    /// Give each replica a secret as the file /run/secrets/TARGET: NAME, or
    /// source=NAME,target=FILE[,uid=N,gid=N,mode=0400] (`knit secret create` first).
    #[arg(long = "secret")]
    pub(crate) secrets: Vec<String>,
    /// Give each replica a config as a read-only file: NAME (at /NAME), or
    /// source=NAME,target=/PATH[,uid=N,gid=N,mode=0440] (`knit config create` first).
    #[arg(long = "config")]
    pub(crate) configs: Vec<String>,
    /// Set an environment variable: KEY=VALUE.
    #[arg(short = 'e', long = "env")]
    pub(crate) env: Vec<String>,
    /// Set a service label: KEY=VALUE.
    #[arg(long = "label")]
    pub(crate) labels: Vec<String>,
    /// Placement constraint, e.g. node.labels.zone==a.
    #[arg(long = "constraint")]
    pub(crate) constraints: Vec<String>,
    #[command(flatten)]
    pub(crate) detach: DetachArg,
    #[command(flatten)]
    pub(crate) registry_auth: RegistryAuthArg,
    #[command(flatten)]
    pub(crate) spec: SpecFlags,
    /// IMAGE [COMMAND] [ARG...] (docker), or COMMAND [ARG...] (process).
    #[arg(required = true, trailing_var_arg = true)]
    pub(crate) image_and_command: Vec<String>,
}

/// `--detach` of the commands that change a service's replicas.
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct DetachArg {
    /// Return once the change is accepted, without following it. By default the command
    /// shows the replicas' progress until they converge when its output is a terminal (as
    /// Docker's does), and returns at once when it is a pipe or a file.
    #[arg(short = 'd', long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) detach: Option<bool>,
}

/// `--with-registry-auth` of `service create` and `service update`, as Docker's.
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct RegistryAuthArg {
    /// Docker's flag, taken for its scripts: credentials are cluster-wide once given
    /// with `knit login` (every host pulls with them, with or without this flag). With
    /// it, the command warns when the cluster has none for the image's registry.
    #[arg(long)]
    pub(crate) with_registry_auth: bool,
}

impl DetachArg {
    /// Whether to follow the change, for output that is a `terminal` or not.
    pub(crate) fn follows(&self, terminal: bool) -> bool {
        !self.detach.unwrap_or(!terminal)
    }
}

impl CreateArgs {
    /// The spec these flags describe.
    pub(crate) fn to_spec(&self, limits: &Limits) -> Result<ServiceSpec> {
        let mut spec = ServiceSpec {
            name: self.name.clone(),
            ..ServiceSpec::default()
        };
        spec.driver = choice("driver", &self.driver, "docker or process")?;
        let mut words = self.image_and_command.iter().cloned();
        match spec.driver {
            Driver::Docker => {
                spec.image = words.next();
                spec.command = words.collect();
            }
            Driver::Process => {
                spec.image = None;
                spec.command = words.collect();
            }
        }
        spec.ports = ports("publish", &self.publish)?;
        spec.mounts = mounts("mount", &self.mounts)?;
        spec.secrets = secrets("secret", &self.secrets)?;
        spec.configs = configs("config", &self.configs)?;
        spec.env = pairs("env", &self.env)?;
        spec.labels = pairs("label", &self.labels)?;
        spec.constraints = constraints("constraint", &self.constraints)?;
        self.spec.apply(&mut spec)?;
        spec.validate(limits)?;
        Ok(spec)
    }
}

/// `knit service update`.
#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// The service.
    pub(crate) name: String,
    /// A new image.
    #[arg(long)]
    pub(crate) image: Option<String>,
    /// New command arguments, as one string split at spaces (replace the old ones).
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) args: Option<String>,
    /// Publish a port: PUBLISHED:TARGET[/tcp|udp], or TARGET (reached by name only).
    #[arg(long)]
    pub(crate) publish_add: Vec<String>,
    /// Stop publishing a port: PUBLISHED[/tcp|udp] (or the TARGET of one reached by name
    /// only).
    #[arg(long)]
    pub(crate) publish_rm: Vec<String>,
    /// Add or replace a mount (by target): type=bind|volume|tmpfs,source=...,target=/path.
    #[arg(long)]
    pub(crate) mount_add: Vec<String>,
    /// Remove the mount at a target path.
    #[arg(long)]
    pub(crate) mount_rm: Vec<String>,
    /// Add or replace a secret (by target): NAME or source=NAME,target=FILE,...
    #[arg(long)]
    pub(crate) secret_add: Vec<String>,
    /// Remove a secret by name.
    #[arg(long)]
    pub(crate) secret_rm: Vec<String>,
    /// Add or replace a config (by target): NAME or source=NAME,target=/PATH,...
    #[arg(long)]
    pub(crate) config_add: Vec<String>,
    /// Remove a config by name.
    #[arg(long)]
    pub(crate) config_rm: Vec<String>,
    /// Add or change an environment variable: KEY=VALUE.
    #[arg(long)]
    pub(crate) env_add: Vec<String>,
    /// Remove an environment variable.
    #[arg(long)]
    pub(crate) env_rm: Vec<String>,
    /// Add or change a service label: KEY=VALUE.
    #[arg(long)]
    pub(crate) label_add: Vec<String>,
    /// Remove a service label.
    #[arg(long)]
    pub(crate) label_rm: Vec<String>,
    /// Add a placement constraint.
    #[arg(long)]
    pub(crate) constraint_add: Vec<String>,
    /// Remove a placement constraint.
    #[arg(long)]
    pub(crate) constraint_rm: Vec<String>,
    /// Redeploy even if nothing changed.
    #[arg(long)]
    pub(crate) force: bool,
    /// Return once the spec is accepted, without following the rollout (by default the
    /// command shows the rollout's progress until it converges, as Docker's does).
    #[arg(short = 'd', long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) detach: bool,
    #[command(flatten)]
    pub(crate) registry_auth: RegistryAuthArg,
    #[command(flatten)]
    pub(crate) spec: SpecFlags,
}

impl UpdateArgs {
    /// `current` changed by these flags, checked against `limits` (the peer keeps the
    /// previous spec itself).
    pub(crate) fn apply(&self, current: &ServiceSpec, limits: &Limits) -> Result<ServiceSpec> {
        let mut spec = current.clone();
        spec.previous = None;
        if let Some(image) = &self.image {
            spec.image = Some(image.clone());
        }
        if let Some(args) = &self.args {
            spec.args = args.split_whitespace().map(str::to_owned).collect();
        }
        for rm in &self.publish_rm {
            let (port, proto) = rm.split_once('/').unwrap_or((rm, "tcp"));
            let port: u16 = port
                .parse()
                .with_context(|| format!("--publish-rm {rm:?}: give PUBLISHED[/tcp|udp]"))?;
            spec.ports.retain(|p| {
                let number = p.published_port().unwrap_or(p.target);
                !(number == port && p.protocol.to_string() == proto)
            });
        }
        for add in ports("publish-add", &self.publish_add)? {
            // A published port replaces the one published there; a target reached by
            // name only, the same target.
            let key = |p: &PortSpec| (p.published_port().ok_or(p.target), p.protocol);
            spec.ports.retain(|p| key(p) != key(&add));
            spec.ports.push(add);
        }
        for target in &self.mount_rm {
            let target = target.trim_end_matches('/');
            spec.mounts
                .retain(|m| m.target.trim_end_matches('/') != target);
        }
        spec.secrets.retain(|r| !self.secret_rm.contains(&r.source));
        for add in secrets("secret-add", &self.secret_add)? {
            spec.secrets.retain(|r| r.target != add.target);
            spec.secrets.push(add);
        }
        spec.configs.retain(|r| !self.config_rm.contains(&r.source));
        for add in configs("config-add", &self.config_add)? {
            spec.configs.retain(|r| r.target != add.target);
            spec.configs.push(add);
        }
        for add in mounts("mount-add", &self.mount_add)? {
            let target = add.target.trim_end_matches('/').to_owned();
            spec.mounts
                .retain(|m| m.target.trim_end_matches('/') != target);
            spec.mounts.push(add);
        }
        for key in &self.env_rm {
            spec.env.remove(key);
        }
        spec.env.extend(pairs("env-add", &self.env_add)?);
        for key in &self.label_rm {
            spec.labels.remove(key);
        }
        spec.labels.extend(pairs("label-add", &self.label_add)?);
        let removed = constraints("constraint-rm", &self.constraint_rm)?;
        spec.constraints.retain(|c| !removed.contains(c));
        for c in constraints("constraint-add", &self.constraint_add)? {
            if !spec.constraints.contains(&c) {
                spec.constraints.push(c);
            }
        }
        self.spec.apply(&mut spec)?;
        spec.validate(limits)?;
        Ok(spec)
    }
}
