//! Scenarios from command-line flags: a quick question without writing a TOML file, or a
//! file with a few values overridden.
//!
//! Flags override a file field by field: `--hosts` `hosts.count`, `--host-cpu` `hosts.cpu`,
//! `--host-memory` `hosts.memory`, `--services`/`--service` the whole `services` list,
//! `--profile`, `--membership`, `--store`, `--duration` `duration_s`, `--warmup` `warmup_s`, `--loss`, `--latency-ms`
//! and `--jitter-ms` the `network`, `--kill`/`--partition` the whole `faults` list and
//! `--churn` the `churn`. Everything else keeps the file's value.

use knit_mesh::Profile;
use knit_scheduler::spec::parse_memory_bytes;
use serde::Deserialize;

use crate::model::MembershipKind;
use crate::scenario::{Churn, Fault, Scenario, ScenarioError, ServiceDef};

/// Host cores when neither a file nor `--host-cpu` says.
pub const HOST_CPU_DEFAULT: f64 = 8.0;
/// Host memory when neither a file nor `--host-memory` says.
pub const HOST_MEMORY_DEFAULT: &str = "32G";
/// Simulated time after the last fault when `--duration` is not given.
pub const TAIL_S: f64 = 40.0;
/// A run without a file and without `--duration` lasts at least this long.
pub const DURATION_DEFAULT_S: f64 = 60.0;
/// Churned hosts stay down this long when `--recover-after` is not given.
pub const CHURN_DOWNTIME_DEFAULT_S: f64 = 30.0;

/// Flags that describe a cluster: `run` and `plan` share them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterFlags {
    /// Hosts. `run`: overrides the file's count (no file needed with it). `plan`: answers
    /// how many failures this cluster survives.
    #[arg(long, value_parser = parse_hosts)]
    pub hosts: Option<usize>,
    /// Cores per host, e.g. `8` or `0.5` (run default 8).
    #[arg(long, value_name = "CORES", value_parser = parse_cores)]
    pub host_cpu: Option<f64>,
    /// Memory per host, e.g. `32G` or `512M` (run default 32G).
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    pub host_memory: Option<String>,
    /// A TOML file of `[[services]]` (name, replicas, cpu, memory).
    #[arg(long, value_name = "FILE")]
    pub services: Option<std::path::PathBuf>,
    /// A service as NAME:REPLICAS[:CPU[:MEMORY]], e.g. `web:30:0.5:512M`; repeat it.
    /// With `--services`, adds to the file's list.
    #[arg(long = "service", value_name = "NAME:REPLICAS[:CPU[:MEMORY]]", value_parser = parse_service)]
    pub service: Vec<ServiceDef>,
    /// Failure-detection profile: lan, wan or fast (default lan).
    #[arg(long)]
    pub profile: Option<Profile>,
}

/// Flags for `run` only: time, network and faults.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunFlags {
    /// Simulated seconds (default: 60, or 40 s after the last fault if later).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub duration: Option<f64>,
    /// Seconds for the hosts to join before faults and measurements (default 10).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub warmup: Option<f64>,
    /// Probability that a packet is lost, in [0, 1), e.g. `0.01`.
    #[arg(long, value_name = "P", value_parser = parse_loss)]
    pub loss: Option<f64>,
    /// One-way link latency in ms.
    #[arg(long, value_name = "MS")]
    pub latency_ms: Option<u64>,
    /// Uniform jitter added to the latency, 0..=MS.
    #[arg(long, value_name = "MS")]
    pub jitter_ms: Option<u64>,
    /// Kills this many hosts at `--at`, spread over the cluster (hosts i*n/N).
    #[arg(long, value_name = "N")]
    pub kill: Option<usize>,
    /// Cuts hosts 0..N off from the rest at `--at`.
    #[arg(long, value_name = "N")]
    pub partition: Option<usize>,
    /// When `--kill` and `--partition` happen (default: 10 s after the warm-up).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub at: Option<f64>,
    /// Killed hosts restart, a partition heals, a churned host returns this long after
    /// (default: never for kills and partitions, 30 s for churn).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub recover_after: Option<f64>,
    /// `real` (the membership core on every host) or `model` (calibrated, for thousands of
    /// hosts; kills, restarts and churn only).
    #[arg(long)]
    pub membership: Option<MembershipKind>,
    /// Runs the whole node core (membership, replicated store, anti-entropy) on every host
    /// (`store = true`); a file's `store = true` stays on without it.
    #[arg(long)]
    pub store: bool,
    /// Kills hosts at random, this many a simulated minute on average.
    #[arg(long, value_name = "PER_MINUTE", value_parser = parse_rate)]
    pub churn: Option<f64>,
}

/// The flags did not make a scenario; each variant says what to give instead.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    /// Neither a file nor `--hosts`.
    #[error("give a scenario file, or --hosts N to describe one with flags")]
    NoScenario,
    /// A services file did not parse.
    #[error("services file: {0} (write [[services]] tables with name, replicas, cpu, memory)")]
    Catalogue(#[from] toml::de::Error),
    /// A combination of flags makes no sense.
    #[error("{0}")]
    Invalid(String),
    /// The scenario the flags make is not valid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Catalogue {
    services: Vec<ServiceDef>,
}

/// The `[[services]]` of a services file.
pub fn catalogue(text: &str) -> Result<Vec<ServiceDef>, FlagError> {
    Ok(toml::from_str::<Catalogue>(text)?.services)
}

impl ClusterFlags {
    /// The services: `catalogue` (the `--services` file, read by the caller), then each
    /// `--service`; `None` when neither was given.
    pub fn service_list(&self, catalogue: Option<Vec<ServiceDef>>) -> Option<Vec<ServiceDef>> {
        if catalogue.is_none() && self.service.is_empty() {
            return None;
        }
        let mut all = catalogue.unwrap_or_default();
        all.extend(self.service.iter().cloned());
        Some(all)
    }
}

/// The scenario `base` (a file, or `None`) with the flags applied, validated.
/// `catalogue` is the `--services` file's list, read by the caller.
pub fn scenario(
    base: Option<Scenario>,
    cluster: &ClusterFlags,
    run: &RunFlags,
    catalogue: Option<Vec<ServiceDef>>,
) -> Result<Scenario, FlagError> {
    let from_file = base.is_some();
    let mut s = match base {
        Some(s) => s,
        None => blank(cluster.hosts.ok_or(FlagError::NoScenario)?)?,
    };
    if let Some(n) = cluster.hosts {
        s.hosts.count = n;
    }
    if let Some(cpu) = cluster.host_cpu {
        s.hosts.cpu = cpu;
    }
    if let Some(memory) = &cluster.host_memory {
        s.hosts.memory.clone_from(memory);
    }
    if let Some(services) = cluster.service_list(catalogue) {
        s.services = services;
    }
    if let Some(profile) = cluster.profile {
        s.profile = profile;
    }
    if let Some(membership) = run.membership {
        s.membership = membership;
    }
    s.store |= run.store;
    if let Some(warmup) = run.warmup {
        s.warmup_s = warmup;
    }
    if let Some(loss) = run.loss {
        s.network.loss = loss;
    }
    if let Some(latency) = run.latency_ms {
        s.network.latency_ms = latency;
    }
    if let Some(jitter) = run.jitter_ms {
        s.network.jitter_ms = jitter;
    }
    if run.kill.is_some() || run.partition.is_some() {
        s.faults = faults(run, s.host_count(), s.warmup_s)?;
    } else if run.at.is_some() {
        return Err(FlagError::Invalid(
            "--at says when --kill or --partition happens; give one of them".into(),
        ));
    }
    if let Some(rate) = run.churn {
        let mut churn = toml::Table::new();
        churn.insert("kills_per_minute".into(), rate.into());
        let downtime_s = run.recover_after.unwrap_or(CHURN_DOWNTIME_DEFAULT_S);
        churn.insert("downtime_s".into(), downtime_s.into());
        s.churn = Some(churn.try_into::<Churn>().map_err(ScenarioError::from)?);
    }
    s.duration_s = match run.duration {
        Some(d) => d,
        None if from_file => s.duration_s,
        None => s
            .faults
            .iter()
            .map(|f| f.at_s() + TAIL_S)
            .fold(DURATION_DEFAULT_S.max(s.warmup_s + TAIL_S), f64::max),
    };
    if s.name.is_empty() || !from_file {
        s.name = format!("flags-{}-hosts", s.host_count());
    }
    s.validate()?;
    Ok(s)
}

/// A scenario of `hosts` default hosts, no services and no faults, from TOML so that every
/// field it does not name takes its default.
fn blank(hosts: usize) -> Result<Scenario, FlagError> {
    let text = format!(
        "duration_s = {DURATION_DEFAULT_S:?}\n[hosts]\ncount = {hosts}\ncpu = {HOST_CPU_DEFAULT:?}\nmemory = \"{HOST_MEMORY_DEFAULT}\"\n"
    );
    Ok(toml::from_str(&text).map_err(ScenarioError::from)?)
}

/// The `--kill` and `--partition` faults, and their recovery.
fn faults(run: &RunFlags, hosts: usize, warmup_s: f64) -> Result<Vec<Fault>, FlagError> {
    let at_s = run.at.unwrap_or(warmup_s + 10.0);
    let back_s = run.recover_after.map(|after| at_s + after);
    let mut faults = Vec::new();
    if let Some(k) = run.kill {
        if k == 0 || k >= hosts {
            return Err(FlagError::Invalid(format!(
                "--kill {k}: kill between 1 and {} of the {hosts} hosts",
                hosts.saturating_sub(1)
            )));
        }
        for host in (0..k).map(|i| i * hosts / k) {
            faults.push(Fault::Kill {
                at_s,
                host,
                refuses: false,
            });
            if let Some(back_s) = back_s {
                faults.push(Fault::Restart { at_s: back_s, host });
            }
        }
    }
    if let Some(p) = run.partition {
        if p == 0 || p >= hosts {
            return Err(FlagError::Invalid(format!(
                "--partition {p}: cut off between 1 and {} of the {hosts} hosts",
                hosts.saturating_sub(1)
            )));
        }
        faults.push(Fault::Partition {
            at_s,
            groups: vec![(0..p).collect()],
        });
        if let Some(back_s) = back_s {
            faults.push(Fault::Heal { at_s: back_s });
        }
    }
    Ok(faults)
}

/// `--hosts`: a whole number from 1.
pub fn parse_hosts(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "{text:?} is not a host count: write a whole number from 1, e.g. 50"
        )),
    }
}

/// A number that `valid` accepts, or an error naming `what` and showing `example`.
fn number(
    text: &str,
    valid: impl Fn(f64) -> bool,
    what: &str,
    example: &str,
) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() && valid(x) => Ok(x),
        _ => Err(format!("{text:?} is not {what}: write {example}")),
    }
}

/// Cores: a positive number, e.g. `8` or `0.5`.
pub fn parse_cores(text: &str) -> Result<f64, String> {
    number(
        text,
        |c| c > 0.0,
        "a core count",
        "a positive number, e.g. 8 or 0.5",
    )
}

/// Memory: a size the scheduler reads, e.g. `32G` or `512M` (its error says so).
pub fn parse_memory(text: &str) -> Result<String, String> {
    parse_memory_bytes(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

/// Seconds: a number, zero or more.
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    number(text, |s| s >= 0.0, "a time", "seconds, e.g. 20 or 2.5")
}

/// `--loss`: a probability in [0, 1).
pub fn parse_loss(text: &str) -> Result<f64, String> {
    number(
        text,
        |p| (0.0..1.0).contains(&p),
        "a loss rate",
        "a probability in [0, 1), e.g. 0.01",
    )
}

/// `--churn`: a positive rate.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    number(text, |r| r > 0.0, "a rate", "kills per minute, e.g. 4")
}

/// `--service NAME:REPLICAS[:CPU[:MEMORY]]`, e.g. `web:30:0.5:512M`.
pub fn parse_service(text: &str) -> Result<ServiceDef, String> {
    let shape = "write NAME:REPLICAS[:CPU[:MEMORY]], e.g. web:30:0.5:512M";
    let parts: Vec<&str> = text.split(':').collect();
    let [name, replicas, rest @ ..] = parts.as_slice() else {
        return Err(format!("{text:?} has no replica count: {shape}"));
    };
    if name.trim().is_empty() || rest.len() > 2 {
        return Err(format!("{text:?} is not a service: {shape}"));
    }
    let replicas = replicas
        .parse::<u32>()
        .map_err(|_| format!("replicas {replicas:?} in {text:?} is not a whole number: {shape}"))?;
    let cpu = match rest.first() {
        None => 0.0,
        Some(c) => match c.parse::<f64>() {
            Ok(c) if c.is_finite() && c >= 0.0 => c,
            _ => {
                return Err(format!(
                    "cpu {c:?} in {text:?} is not a core count: {shape}"
                ));
            }
        },
    };
    let memory = match rest.get(1) {
        None => "0".to_owned(),
        Some(m) => parse_memory(m).map_err(|e| format!("memory in {text:?}: {e}"))?,
    };
    // From a TOML table, so that fields added later take their defaults.
    let mut table = toml::Table::new();
    table.insert("name".into(), (*name).into());
    table.insert("replicas".into(), i64::from(replicas).into());
    table.insert("cpu".into(), cpu.into());
    table.insert("memory".into(), memory.into());
    table
        .try_into::<ServiceDef>()
        .map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
#[path = "flags_tests.rs"]
mod tests;
