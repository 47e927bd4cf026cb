//! Capacity planning: the smallest cluster of identical hosts whose services still fit
//! under a target utilisation after any `k` hosts fail, and its heal times.

use knit_scheduler::{Resources, ServiceSpec};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::engine::{SimError, run};
use crate::healing::{Healing, empty_set, insert};
use crate::report::Distribution;
use crate::scenario::{Fault, HostsSpec, Scenario, ServiceDef};

/// Failure sets checked per host count: the first k hosts, the last k, and random ones.
const FAILURE_SETS: usize = 8;

/// A capacity question.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// Cores per host.
    pub host_cpu: f64,
    /// Memory per host, as `32G`.
    pub host_memory: String,
    /// The services.
    pub services: Vec<ServiceDef>,
    /// Hosts that may fail at once.
    pub failures: usize,
    /// The most of a host's capacity reservations may take (0..=1).
    pub target_utilisation: f64,
    /// Give up above this many hosts.
    pub max_hosts: usize,
    /// Simulation runs at the answer (each kills `failures` hosts).
    pub runs: u64,
    /// First seed; run `i` uses `seed + i`.
    pub seed: u64,
    /// Failure-detection profile.
    pub profile: knit_mesh::Profile,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanAnswer {
    /// The smallest host count.
    pub hosts: usize,
    /// Failures it survives with every reservation under the target.
    pub failures: usize,
    /// Failure sets whose survivors were placed with no pending slot.
    pub failure_sets_checked: usize,
    /// Heal times over every kill of every run.
    pub heal_ms: Distribution,
    /// Detection times over every kill of every run.
    pub detection_ms: Distribution,
    /// Kills whose slots did not all run again by the end of their run.
    pub unhealed: usize,
    /// Simulation runs.
    pub runs: u64,
}

/// Planning failed.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// No size up to `max_hosts` fits.
    #[error(
        "no cluster of up to {0} hosts fits these services after the failures; raise --max-hosts or --target-utilisation, or use larger hosts"
    )]
    NoFit(usize),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// The simulation failed.
    #[error(transparent)]
    Sim(#[from] SimError),
}

impl PlanRequest {
    fn scenario(&self, hosts: usize) -> Scenario {
        Scenario {
            name: format!("plan-{hosts}-hosts"),
            seed: self.seed,
            duration_s: 0.0,
            warmup_s: 10.0,
            profile: self.profile,
            hosts: HostsSpec {
                count: hosts,
                cpu: self.host_cpu,
                memory: self.host_memory.clone(),
            },
            services: self.services.clone(),
            network: Default::default(),
            containers: Default::default(),
            faults: Vec::new(),
            churn: None,
            sync_ms: crate::scenario::sync_default(),
            step_budget: 500_000_000,
        }
    }
}

/// Whether `hosts` hosts fit the services after each of several failure sets of `k`
/// hosts, with capacity scaled to the target. Returns the sets checked, or `None`.
pub fn fits_after_failures(
    specs: &[ServiceSpec],
    capacity: Resources,
    hosts: usize,
    failures: usize,
    seed: u64,
) -> Option<usize> {
    if hosts <= failures {
        return None;
    }
    let mut healing = Healing::new(specs.to_vec(), hosts, capacity);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut sets: Vec<Vec<usize>> =
        vec![(0..failures).collect(), (hosts - failures..hosts).collect()];
    while sets.len() < FAILURE_SETS {
        let mut dead: Vec<usize> = Vec::new();
        while dead.len() < failures {
            let h = rng.random_range(0..hosts);
            if !dead.contains(&h) {
                dead.push(h);
            }
        }
        sets.push(dead);
    }
    for dead in &sets {
        let mut set = empty_set(hosts);
        (0..hosts)
            .filter(|h| !dead.contains(h))
            .for_each(|h| insert(&mut set, h));
        if !healing.placement_for(&set).placement.pending().is_empty() {
            return None;
        }
    }
    Some(sets.len())
}

/// Answers `request`: the smallest size, then `runs` simulations with `failures` kills.
pub fn plan(request: &PlanRequest) -> Result<PlanAnswer, PlanError> {
    if !(request.target_utilisation > 0.0 && request.target_utilisation <= 1.0) {
        return Err(PlanError::Invalid(
            "--target-utilisation must be in (0, 1]".into(),
        ));
    }
    let base = request.scenario(1);
    let specs = base.specs().map_err(SimError::from)?;
    let full = base.capacity().map_err(SimError::from)?;
    let scaled = Resources {
        cpu_millis: scale(full.cpu_millis, request.target_utilisation),
        memory_bytes: scale(full.memory_bytes, request.target_utilisation),
    };
    let (hosts, checked) = (request.failures + 1..=request.max_hosts)
        .find_map(|n| {
            fits_after_failures(&specs, scaled, n, request.failures, request.seed).map(|c| (n, c))
        })
        .ok_or(PlanError::NoFit(request.max_hosts))?;
    let (mut heal, mut detection, mut unhealed) = (Vec::new(), Vec::new(), 0);
    for i in 0..request.runs {
        let mut scenario = request.scenario(hosts);
        let mut rng = SmallRng::seed_from_u64(request.seed + i);
        let mut dead: Vec<usize> = Vec::new();
        while dead.len() < request.failures {
            let h = rng.random_range(0..hosts);
            if !dead.contains(&h) {
                dead.push(h);
            }
        }
        scenario.faults = dead
            .iter()
            .map(|&host| Fault::Kill { at_s: 15.0, host })
            .collect();
        let bound = request.profile.detection_bound(hosts).as_secs_f64();
        scenario.duration_s = 15.0 + bound * 2.0 + 30.0;
        let report = run(&scenario, Some(request.seed + i))?;
        unhealed += report.unhealed;
        for k in &report.kill_log {
            heal.extend(k.heal_ms);
            detection.extend(k.detection_ms);
        }
    }
    Ok(PlanAnswer {
        hosts,
        failures: request.failures,
        failure_sets_checked: checked,
        heal_ms: Distribution::of(heal),
        detection_ms: Distribution::of(detection),
        unhealed,
        runs: request.runs,
    })
}

fn scale(x: u64, by: f64) -> u64 {
    // Capacities are far below 2^53.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let y = (x as f64 * by).floor() as u64;
    y
}
