//! Capacity planning: the smallest cluster of identical hosts whose services still fit
//! under a target utilisation after any `k` hosts fail, and its heal times; or, for a given
//! cluster, how many failures it survives.

use knit_scheduler::{Resources, ServiceSpec};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::engine::SimError;
use crate::healing::{Healing, empty_set, insert};
use crate::progress::{Progress, Silent, run_with};
use crate::report::Distribution;
use crate::scenario::{Fault, Scenario, ServiceDef};

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
    /// A given cluster does not fit the services even with every host alive.
    #[error(
        "the services do not fit on {0} hosts under the target even with no failure; add hosts, use larger ones, or raise --target-utilisation"
    )]
    TooSmall(usize),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// The simulation failed.
    #[error(transparent)]
    Sim(#[from] SimError),
}

impl PlanRequest {
    /// The planning scenario for `hosts` hosts, with no faults and no duration yet. Built
    /// from TOML so that every field not named here takes its default.
    fn scenario(&self, hosts: usize) -> Scenario {
        let text = format!(
            "name = \"plan-{hosts}-hosts\"\nseed = {}\nduration_s = 0.0\nwarmup_s = 10.0\n\
             step_budget = 500000000\n[hosts]\ncount = {hosts}\ncpu = 0.0\nmemory = \"0\"\n",
            self.seed
        );
        let mut scenario: Scenario =
            toml::from_str(&text).expect("the planning scenario's TOML is well formed");
        scenario.profile = self.profile;
        scenario.hosts.cpu = self.host_cpu;
        scenario.hosts.memory.clone_from(&self.host_memory);
        scenario.services.clone_from(&self.services);
        scenario
    }

    /// The specs, and one host's capacity scaled to the target utilisation.
    fn fit_inputs(&self) -> Result<(Vec<ServiceSpec>, Resources), PlanError> {
        if !(self.target_utilisation > 0.0 && self.target_utilisation <= 1.0) {
            return Err(PlanError::Invalid(
                "--target-utilisation must be in (0, 1], e.g. 0.8".into(),
            ));
        }
        if self.services.is_empty() {
            return Err(PlanError::Invalid(
                "no services: give --services FILE or --service NAME:REPLICAS:CPU:MEMORY".into(),
            ));
        }
        let base = self.scenario(1);
        let specs = base.specs().map_err(SimError::from)?;
        let full = base.capacity().map_err(SimError::from)?;
        let scaled = Resources {
            cpu_millis: scale(full.cpu_millis, self.target_utilisation),
            memory_bytes: scale(full.memory_bytes, self.target_utilisation),
        };
        Ok((specs, scaled))
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
    plan_with(request, &mut Silent)
}

/// [`plan`], telling `progress` how each simulation run advances.
pub fn plan_with(
    request: &PlanRequest,
    progress: &mut dyn Progress,
) -> Result<PlanAnswer, PlanError> {
    let (specs, scaled) = request.fit_inputs()?;
    let (hosts, checked) = (request.failures + 1..=request.max_hosts)
        .find_map(|n| {
            fits_after_failures(&specs, scaled, n, request.failures, request.seed).map(|c| (n, c))
        })
        .ok_or(PlanError::NoFit(request.max_hosts))?;
    simulate(request, hosts, request.failures, checked, progress)
}

/// The most failures a cluster of `hosts` survives: the largest `k` such that, for every
/// `j <= k`, each failure set [`fits_after_failures`] checks still fits under the target;
/// then `runs` simulations that each kill `k` hosts. `request.failures` and
/// `request.max_hosts` are not used.
pub fn failures_survived(
    request: &PlanRequest,
    hosts: usize,
    progress: &mut dyn Progress,
) -> Result<PlanAnswer, PlanError> {
    if hosts == 0 {
        return Err(PlanError::Invalid("--hosts must be at least 1".into()));
    }
    let (specs, scaled) = request.fit_inputs()?;
    let mut survived = None;
    for k in 0..hosts {
        match fits_after_failures(&specs, scaled, hosts, k, request.seed) {
            Some(checked) => survived = Some((k, checked)),
            None => break,
        }
    }
    let (k, checked) = survived.ok_or(PlanError::TooSmall(hosts))?;
    simulate(request, hosts, k, checked, progress)
}

/// `request.runs` simulations of `hosts` hosts, each killing `failures` of them at random.
fn simulate(
    request: &PlanRequest,
    hosts: usize,
    failures: usize,
    checked: usize,
    progress: &mut dyn Progress,
) -> Result<PlanAnswer, PlanError> {
    let (mut heal, mut detection, mut unhealed) = (Vec::new(), Vec::new(), 0);
    // With no failure to survive there is nothing to heal.
    let runs = if failures == 0 { 0 } else { request.runs };
    for i in 0..runs {
        let mut scenario = request.scenario(hosts);
        let mut rng = SmallRng::seed_from_u64(request.seed + i);
        let mut dead: Vec<usize> = Vec::new();
        while dead.len() < failures {
            let h = rng.random_range(0..hosts);
            if !dead.contains(&h) {
                dead.push(h);
            }
        }
        scenario.faults = dead
            .iter()
            .map(|&host| Fault::Kill {
                at_s: 15.0,
                host,
                refuses: false,
            })
            .collect();
        let bound = request.profile.detection_bound(hosts).as_secs_f64();
        scenario.duration_s = 15.0 + bound * 2.0 + 30.0;
        let label = format!(
            "plan: run {}/{runs}, {failures} of {hosts} hosts killed",
            i + 1
        );
        let report = run_with(&scenario, Some(request.seed + i), &label, progress)?;
        unhealed += report.unhealed;
        for k in &report.kill_log {
            heal.extend(k.heal_ms);
            detection.extend(k.detection_ms);
        }
    }
    progress.done();
    Ok(PlanAnswer {
        hosts,
        failures,
        failure_sets_checked: checked,
        heal_ms: Distribution::of(heal),
        detection_ms: Distribution::of(detection),
        unhealed,
        runs,
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

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
