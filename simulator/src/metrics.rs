//! What a run measures while it runs: kills and their detection and heal times, false
//! positives, container starts and utilisation (gossip traffic is the cores' own count, read
//! by [`crate::traffic`]).

use crate::model::MembershipKind;
use crate::report::{Distribution, KillSummary, Pending, Point, Report, Utilisation, round4};
use crate::scenario::Scenario;
use crate::traffic::TrafficReport;

/// One kill and what followed.
#[derive(Debug, Clone)]
pub struct KillRecord {
    /// The host killed.
    pub host: usize,
    /// Its epoch when killed.
    pub epoch: u64,
    /// When.
    pub at_ms: u64,
    /// The slots it ran (slot indices).
    pub slots: Vec<u32>,
    /// Slots the placement over the truly live hosts moved because of the kill.
    pub moves: usize,
    /// The dead host's slots in that placement: the least any placement could move.
    pub optimum: usize,
    /// When every live host first counted it out (not alive, not suspect).
    pub detected_ms: Option<u64>,
    /// When every slot it ran was running again somewhere.
    pub healed_ms: Option<u64>,
    /// It came back before every survivor had counted it out.
    pub restarted_first: bool,
}

/// Counters of one run.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Every kill, in order.
    pub kills: Vec<KillRecord>,
    /// Container starts begun after the warm-up.
    pub starts: u64,
    warm_ms: Option<u64>,
    false_positives: u64,
    partition_downs: u64,
    util_before: Vec<(usize, f64, f64)>,
    convergence: Vec<Point>,
}

/// What the engine hands over at the end of a run.
pub struct Ending<'a> {
    /// The scenario run.
    pub scenario: &'a Scenario,
    /// The seed used.
    pub seed: u64,
    /// Simulated end time.
    pub end_ms: u64,
    /// Events processed.
    pub steps: u64,
    /// Events still queued at the end.
    pub queued: usize,
    /// Full placements computed.
    pub placements_computed: u64,
    /// Utilisation of each live host at the end.
    pub util_after: Vec<(usize, f64, f64)>,
    /// Pending slots with their reasons.
    pub pending: Vec<(String, String)>,
    /// Broken invariants.
    pub violations: Vec<String>,
    /// Live hosts at the end.
    pub live_hosts: usize,
    /// Live hosts whose active members differ from the truly live hosts at the end.
    pub divergent_views: usize,
    /// With `store = true`: how long after the last write or fault every live host held
    /// the same store; `None` if they differ at the end, or run no store.
    pub store_converged_ms: Option<u64>,
    /// The hosts' gossip over the measured time, from their cores' counters.
    pub traffic: TrafficReport,
    /// Membership packets and bytes sent in all over the measured time (0 with the model).
    pub sent: (u64, u64),
}

impl Metrics {
    /// The warm-up ended: measurements start, utilisation "before" is taken.
    pub fn warm(&mut self, now_ms: u64, util: Vec<(usize, f64, f64)>) {
        self.warm_ms = Some(now_ms);
        self.util_before = util;
    }

    /// A point of the convergence curve: at `now_ms`, the share of slots running somewhere
    /// and the live hosts.
    pub fn sample(&mut self, now_ms: u64, served: f64, live_hosts: usize) {
        self.convergence.push(Point {
            at_s: now_ms as f64 / 1000.0,
            slots_running: round4(served),
            live_hosts,
        });
    }

    /// A live host was declared down by an observer that can (`reachable`) or cannot
    /// reach it.
    pub fn live_seen_down(&mut self, _now_ms: u64, reachable: bool) {
        if self.warm_ms.is_none() {
            return;
        }
        if reachable {
            self.false_positives += 1;
        } else {
            self.partition_downs += 1;
        }
    }

    /// Records a kill.
    pub fn killed(&mut self, record: KillRecord) {
        self.kills.push(record);
    }

    /// The open (undetected) kill record of `host`.
    pub fn open_detection(&self, host: usize) -> Option<usize> {
        self.kills
            .iter()
            .rposition(|k| k.host == host && k.detected_ms.is_none() && !k.restarted_first)
    }

    /// Hosts with an open kill record.
    pub fn open_detections(&self) -> Vec<usize> {
        let mut hosts: Vec<usize> = self
            .kills
            .iter()
            .filter(|k| k.detected_ms.is_none() && !k.restarted_first)
            .map(|k| k.host)
            .collect();
        hosts.dedup();
        hosts
    }

    /// Kill `i` is detected by every live host.
    pub fn detected(&mut self, i: usize, now_ms: u64) {
        self.kills[i].detected_ms = Some(now_ms);
    }

    /// `host` restarts: an undetected kill of it can no longer be detected.
    pub fn restarted(&mut self, host: usize) {
        if let Some(i) = self.open_detection(host) {
            self.kills[i].restarted_first = true;
        }
    }

    /// Marks healed every kill whose slots all run (`runs(slot)`) again.
    pub fn check_heal(&mut self, now_ms: u64, runs: impl Fn(u32) -> bool) {
        for kill in self.kills.iter_mut().filter(|k| k.healed_ms.is_none()) {
            if kill.slots.iter().all(|&s| runs(s)) {
                kill.healed_ms = Some(now_ms);
            }
        }
    }

    /// The report of the run.
    pub fn report(self, end: Ending<'_>) -> Report {
        let warm = self.warm_ms.unwrap_or(end.end_ms);
        let measured_ms = end.end_ms.saturating_sub(warm).max(1);
        let hosts = end.scenario.host_count();
        let host_s = hosts as f64 * measured_ms as f64 / 1000.0;
        let detection: Vec<u64> = self
            .kills
            .iter()
            .filter_map(|k| k.detected_ms.map(|d| d - k.at_ms))
            .collect();
        let heal: Vec<u64> = self
            .kills
            .iter()
            .filter_map(|k| k.healed_ms.map(|d| d - k.at_ms))
            .collect();
        Report {
            scenario: end.scenario.name.clone(),
            seed: end.seed,
            membership: end.scenario.membership,
            engine: match end.scenario.membership {
                MembershipKind::Real if end.scenario.store => {
                    "real node core (knit-mesh: membership, store, trust gate, rumors, pushes, anti-entropy; simulated keys) + real placement (knit-scheduler)"
                }
                MembershipKind::Real => {
                    "real foca membership core (knit-mesh) + real placement (knit-scheduler)"
                }
                MembershipKind::Model => {
                    "MODEL of membership (calibrated against the real core; knit_sim::model) + real placement (knit-scheduler)"
                }
            }
            .to_owned(),
            hosts,
            live_hosts_at_end: end.live_hosts,
            divergent_views_at_end: end.divergent_views,
            profile: end.scenario.profile.to_string(),
            simulated_s: end.end_ms as f64 / 1000.0,
            measured_s: measured_ms as f64 / 1000.0,
            detection_bound_ms: u64::try_from(
                end.scenario.profile.detection_bound(hosts).as_millis(),
            )
            .unwrap_or(u64::MAX),
            kills: self.kills.len(),
            detection_ms: Distribution::of(detection),
            undetected: self
                .kills
                .iter()
                .filter(|k| k.detected_ms.is_none() && !k.restarted_first)
                .count(),
            restarted_before_detection: self.kills.iter().filter(|k| k.restarted_first).count(),
            heal_ms: Distribution::of(heal),
            unhealed: self.kills.iter().filter(|k| k.healed_ms.is_none()).count(),
            false_positives: self.false_positives,
            partition_downs: self.partition_downs,
            messages_per_host_s: round4(end.sent.0 as f64 / host_s),
            bytes_per_host_s: round4(end.sent.1 as f64 / host_s),
            moves: self.kills.iter().map(|k| k.moves).sum(),
            moves_optimum: self.kills.iter().map(|k| k.optimum).sum(),
            container_starts: self.starts,
            utilisation_before: Utilisation::of(&self.util_before),
            utilisation_after: Utilisation::of(&end.util_after),
            pending: end
                .pending
                .into_iter()
                .map(|(slot, reason)| Pending { slot, reason })
                .collect(),
            invariant_violations: end.violations,
            kill_log: self
                .kills
                .iter()
                .map(|k| KillSummary {
                    host: crate::healing::host_name(k.host),
                    at_ms: k.at_ms,
                    detection_ms: k.detected_ms.map(|d| d - k.at_ms),
                    heal_ms: k.healed_ms.map(|d| d - k.at_ms),
                    slots: k.slots.len(),
                })
                .collect(),
            steps: end.steps,
            events_queued_at_end: end.queued,
            placements_computed: end.placements_computed,
            convergence: self.convergence,
            store: end.scenario.store,
            store_converged_ms: end.store_converged_ms,
            traffic: end.traffic,
        }
    }
}
