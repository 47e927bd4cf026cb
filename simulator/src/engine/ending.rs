//! The end of a run: the invariants checked once the queue has drained (every slot runs
//! exactly where the placement over the live hosts puts it, once, at its current spec; no
//! slot runs that the specs no longer have), and the report.

use super::{Engine, SlotState};
use crate::report::Report;
use crate::scenario::Scenario;
use crate::traffic::{MODEL_NOT_MEASURED, TrafficReport};

impl Engine {
    /// Checks the invariants over the hosts as they stand and reports.
    pub(super) fn finish(mut self, scenario: &Scenario) -> Report {
        let util_after = self.utilisation();
        let live = self.live_set();
        let truth = self.healing.placement_for(&live);
        let mut runs_on: Vec<Vec<usize>> = vec![Vec::new(); self.healing.slots.len()];
        for (h, host) in self.hosts.iter().enumerate() {
            for (&s, &state) in &host.running {
                if state == SlotState::Running {
                    runs_on[s as usize].push(h);
                }
            }
        }
        let mut violations = Vec::new();
        for (s, hosts) in runs_on.iter().enumerate() {
            let slot = &self.healing.slots[s];
            match truth.owner[s] {
                Some(owner) if hosts.len() != 1 || hosts[0] != owner as usize => {
                    violations.push(format!(
                        "{slot}: placement names {}, runs on [{}]",
                        crate::healing::host_name(owner as usize),
                        names(hosts)
                    ));
                }
                None if truth.placement.get(slot).is_none() && !hosts.is_empty() => {
                    violations.push(format!(
                        "{slot}: not in the spec any more, runs on [{}]",
                        names(hosts)
                    ));
                }
                None if hosts.len() > 1 => {
                    violations.push(format!("{slot}: pending, runs on [{}]", names(hosts)));
                }
                _ => {}
            }
        }
        violations.extend(self.outdated());
        let pending = truth
            .placement
            .pending()
            .into_iter()
            .map(|(slot, why)| (slot.to_string(), format!("{why:?}")))
            .collect();
        let live_hosts = self.hosts.iter().filter(|h| h.up).count();
        let divergent_views = (0..self.hosts.len())
            .filter(|&h| self.hosts[h].up && self.active_set(h) != live)
            .count();
        if std::env::var_os("KNIT_SIM_DEBUG").is_some() {
            self.debug_views(&live);
        }
        let counts = self.traffic_counts();
        let window = std::mem::take(&mut self.traffic);
        let (traffic, sent) = match window.close(self.now_ms, counts, self.store) {
            Some((counted, sent)) => (TrafficReport::Counted(counted), sent),
            None if self.model.is_some() => (
                TrafficReport::NotMeasured(MODEL_NOT_MEASURED.to_owned()),
                (0, 0),
            ),
            None => (
                TrafficReport::NotMeasured("the run ended before its warm-up did".to_owned()),
                (0, 0),
            ),
        };
        self.metrics.report(crate::metrics::Ending {
            scenario,
            seed: self.seed,
            end_ms: self.end_ms,
            steps: self.steps,
            queued: self.queue.len(),
            placements_computed: self.healing.computed,
            util_after,
            pending,
            violations,
            live_hosts,
            divergent_views,
            store_converged_ms: self.stores.converged_ms().filter(|_| self.store),
            traffic,
            sent,
        })
    }
}

fn names(hosts: &[usize]) -> String {
    hosts
        .iter()
        .map(|&h| crate::healing::host_name(h))
        .collect::<Vec<_>>()
        .join(", ")
}
