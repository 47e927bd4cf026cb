//! A run's report: a terminal table or JSON.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::model::MembershipKind;
use crate::traffic::TrafficReport;

/// Everything one run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The seed used.
    pub seed: u64,
    /// `real`: the membership figures come from the real core; `model`: from the
    /// calibrated model, and are labelled so.
    pub membership: MembershipKind,
    /// What produced the figures.
    pub engine: String,
    /// Hosts in the scenario.
    pub hosts: usize,
    /// Hosts alive when the run ended.
    pub live_hosts_at_end: usize,
    /// Live hosts whose view (alive or suspect members) is not the truly live hosts, at
    /// the end: non-zero means membership had not converged.
    pub divergent_views_at_end: usize,
    /// The failure-detection profile.
    pub profile: String,
    /// Simulated time.
    pub simulated_s: f64,
    /// Simulated time after the warm-up (rates are over it).
    pub measured_s: f64,
    /// The profile's detection bound at this size.
    pub detection_bound_ms: u64,
    /// Kills (scheduled and churn).
    pub kills: usize,
    /// Kill to every live host counting the dead host out.
    pub detection_ms: Distribution,
    /// Kills never detected by every live host before the end.
    pub undetected: usize,
    /// Kills whose host came back before every survivor had counted it out.
    pub restarted_before_detection: usize,
    /// Kill to every slot of the dead host running again somewhere.
    pub heal_ms: Distribution,
    /// Kills whose slots did not all run again before the end.
    pub unhealed: usize,
    /// A live host declared down by an observer that could reach it.
    pub false_positives: u64,
    /// A live host declared down by an observer partitioned or cut from it (expected).
    pub partition_downs: u64,
    /// Membership packets sent per host per second (after the warm-up), over every host of
    /// the scenario; `traffic` has the figures sent plus received, by kind.
    pub messages_per_host_s: f64,
    /// Membership bytes sent per host per second (after the warm-up), likewise.
    pub bytes_per_host_s: f64,
    /// Slots moved by kills (placement over the truly live hosts, before vs after).
    pub moves: usize,
    /// The dead hosts' slots: the least any placement could move.
    pub moves_optimum: usize,
    /// Container starts begun by hosts after the warm-up (includes starts on partial views).
    pub container_starts: u64,
    /// Reserved over capacity at the end of the warm-up.
    pub utilisation_before: Utilisation,
    /// Reserved over capacity at the end.
    pub utilisation_after: Utilisation,
    /// Slots no host can take, and why, over the hosts alive at the end.
    pub pending: Vec<Pending>,
    /// Slots not running exactly once where placement puts them, at the end.
    pub invariant_violations: Vec<String>,
    /// Each kill: host, when, and how long detection and healing took.
    pub kill_log: Vec<KillSummary>,
    /// Events processed.
    pub steps: u64,
    /// Events (timers, packets) still queued when the run ended.
    pub events_queued_at_end: usize,
    /// Placements computed (one per distinct set of active hosts seen).
    pub placements_computed: u64,
    /// Over the measured time: the share of slots running somewhere, and live hosts.
    pub convergence: Vec<Point>,
    /// Whether hosts ran the whole node core with its replicated store (`store = true`).
    #[serde(default)]
    pub store: bool,
    /// With the store: how long after the last write or fault (partition, heal, cut,
    /// kill...) every live host held the same store (same keys and stamps); 0 if they never
    /// stopped agreeing, absent if they still differ at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_converged_ms: Option<u64>,
    /// Gossip per host per second over the measured time, sent plus received, by kind of
    /// message and record, and anti-entropy with the store: counted by the real cores'
    /// own counters, or not measured (the model).
    #[serde(default)]
    pub traffic: TrafficReport,
}

/// A point of the convergence curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Simulated time.
    pub at_s: f64,
    /// Slots with at least one running replica, over all slots.
    pub slots_running: f64,
    /// Hosts up.
    pub live_hosts: usize,
}

/// Percentiles of a set of durations (nearest rank); zeros when `count` is 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl Distribution {
    /// The percentiles of `samples`.
    pub fn of(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        let rank = |p: usize| -> u64 {
            if samples.is_empty() {
                return 0;
            }
            let i = (p * samples.len()).div_ceil(100).clamp(1, samples.len());
            samples[i - 1]
        };
        Self {
            count: samples.len(),
            p50: rank(50),
            p90: rank(90),
            p99: rank(99),
            max: samples.last().copied().unwrap_or(0),
        }
    }

    fn cells(&self) -> String {
        if self.count == 0 {
            return "-".to_owned();
        }
        format!(
            "p50 {} / p90 {} / p99 {} / max {} ms (n={})",
            self.p50, self.p90, self.p99, self.max, self.count
        )
    }
}

/// Per-host reserved over capacity, over the live hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Utilisation {
    /// Live hosts measured.
    pub hosts: usize,
    /// Mean cpu reserved / capacity.
    pub cpu_mean: f64,
    /// Highest cpu reserved / capacity.
    pub cpu_max: f64,
    /// Mean memory reserved / capacity.
    pub memory_mean: f64,
    /// Highest memory reserved / capacity.
    pub memory_max: f64,
    /// Each live host's figures.
    pub per_host: Vec<HostUtilisation>,
}

/// One host's reserved over capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostUtilisation {
    /// `h0007`.
    pub host: String,
    /// Cpu reserved / capacity.
    pub cpu: f64,
    /// Memory reserved / capacity.
    pub memory: f64,
}

impl Utilisation {
    /// Summarises `(host, cpu, memory)` ratios.
    pub fn of(per_host: &[(usize, f64, f64)]) -> Self {
        let n = per_host.len().max(1) as f64;
        Self {
            hosts: per_host.len(),
            cpu_mean: round4(per_host.iter().map(|u| u.1).sum::<f64>() / n),
            cpu_max: round4(per_host.iter().map(|u| u.1).fold(0.0, f64::max)),
            memory_mean: round4(per_host.iter().map(|u| u.2).sum::<f64>() / n),
            memory_max: round4(per_host.iter().map(|u| u.2).fold(0.0, f64::max)),
            per_host: per_host
                .iter()
                .map(|&(h, cpu, memory)| HostUtilisation {
                    host: crate::healing::host_name(h),
                    cpu: round4(cpu),
                    memory: round4(memory),
                })
                .collect(),
        }
    }

    fn cells(&self) -> String {
        format!(
            "cpu mean {:.1}% max {:.1}% | memory mean {:.1}% max {:.1}% ({} hosts)",
            self.cpu_mean * 100.0,
            self.cpu_max * 100.0,
            self.memory_mean * 100.0,
            self.memory_max * 100.0,
            self.hosts
        )
    }
}

/// One kill in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillSummary {
    /// `h0007`.
    pub host: String,
    /// When it was killed.
    pub at_ms: u64,
    /// Kill to detection by every live host.
    pub detection_ms: Option<u64>,
    /// Kill to all its slots running again.
    pub heal_ms: Option<u64>,
    /// Slots it ran.
    pub slots: usize,
}

/// A slot no host can take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// `name.3`.
    pub slot: String,
    /// The scheduler's reason.
    pub reason: String,
}

impl Report {
    /// The report as JSON (pretty).
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The report as a terminal table.
    pub fn table(&self) -> String {
        let modelled = self.membership == MembershipKind::Model;
        let model = |label: &'static str, real: &'static str| if modelled { label } else { real };
        let mut rows: Vec<(&str, String)> = vec![
            (
                "scenario",
                format!("{} (seed {})", self.scenario, self.seed),
            ),
            ("engine", self.engine.clone()),
            (
                "hosts",
                format!(
                    "{} ({} alive at end, {} with a divergent view)",
                    self.hosts, self.live_hosts_at_end, self.divergent_views_at_end
                ),
            ),
            (
                "profile",
                format!(
                    "{} (detection bound {} ms)",
                    self.profile, self.detection_bound_ms
                ),
            ),
            (
                "simulated",
                format!("{} s ({} s measured)", self.simulated_s, self.measured_s),
            ),
            ("kills", self.kills.to_string()),
            (
                model("detection (MODEL)", "detection"),
                self.detection_ms.cells(),
            ),
            (
                "undetected",
                format!(
                    "{} (restarted before detection: {})",
                    self.undetected, self.restarted_before_detection
                ),
            ),
            (model("heal (MODEL)", "heal"), self.heal_ms.cells()),
            ("unhealed", self.unhealed.to_string()),
            (
                "false positives",
                if modelled {
                    "not modelled".to_owned()
                } else {
                    format!(
                        "{} (downs across partitions: {})",
                        self.false_positives, self.partition_downs
                    )
                },
            ),
            (
                "moves vs optimum",
                format!("{} / {}", self.moves, self.moves_optimum),
            ),
            ("container starts", self.container_starts.to_string()),
            ("utilisation before", self.utilisation_before.cells()),
            ("utilisation after", self.utilisation_after.cells()),
            ("pending slots", self.pending.len().to_string()),
            (
                "invariant violations",
                self.invariant_violations.len().to_string(),
            ),
            (
                "events",
                format!(
                    "{} ({} placements computed)",
                    self.steps, self.placements_computed
                ),
            ),
        ];
        if self.store {
            let store = match self.store_converged_ms {
                Some(ms) => format!("converged {ms} ms after the last write or fault"),
                None => "NOT converged at the end".to_owned(),
            };
            rows.push(("store", store));
        }
        let mut out = String::new();
        for (k, v) in rows {
            let _ = writeln!(out, "{k:<22} {v}");
        }
        for (k, v) in self.traffic.rows() {
            let _ = writeln!(out, "{k:<22} {v}");
        }
        for p in self.pending.iter().take(10) {
            let _ = writeln!(out, "  pending {} : {}", p.slot, p.reason);
        }
        for v in self.invariant_violations.iter().take(10) {
            let _ = writeln!(out, "  violation {v}");
        }
        out
    }
}

/// Rounds to four decimals, so reports read well and compare exactly.
pub fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}
