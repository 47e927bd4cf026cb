//! The membership model: for clusters beyond what the real membership core can simulate
//! fast (it keeps every member of every host, O(N^2) in all), when each host learns that a
//! member went down or came back is drawn from a model of SWIM instead of run through
//! foca. Placement, agent rounds and container starts stay the real code paths of the
//! engine. Reports say "model" wherever its figures appear.
//!
//! The model, for a member killed at `t0`, with the profile's foca configuration for the
//! cluster's size (read from [`Profile::config`], not restated here):
//! - the first suspicion: some prober's probe of the dead member times out at the end of
//!   its probe period, `probe_period * (1 + X)` after `t0`, with `X` exponential of mean
//!   [`Calibration::first_probe`] (about one prober per period reaches any given member);
//! - every host that learns the suspicion checks the member itself and confirms it
//!   (Lifeguard, [`knit_mesh::lifeguard`]), so with enough hosts to confirm it, each host
//!   declares the member down at the shortest suspicion timeout
//!   ([`Profile::suspicion_bounds`]), or one probe timeout and two gossip rounds if those
//!   take longer; with too few (two hosts), at the longest. A host's detection is the
//!   first suspicion, plus that, plus the time the suspicion takes to reach it;
//! - that spread is a push epidemic: in rounds of the periodic gossip frequency, each host
//!   that knows sends it to `num_members` random live hosts, at most `max_transmissions`
//!   times, with [`Calibration::fanout`] as a multiplier for the probes and acks that
//!   carry it too;
//! - a host the epidemic misses finds out by itself when its own round-robin probing
//!   reaches the dead member (foca probes every member once per round of N periods): a
//!   uniform number of probe periods up to N, one more for the probe, then the suspicion.
//!
//! A member that comes back is known to the host it joins through at once, and to the
//! others by the same epidemic (or by its own probes of them). Loss, partitions and one-way links are not modelled:
//! scenarios with them run with the real core only.
//!
//! The calibration constants are fitted to real-core runs of the same engine
//! (`knit-sim calibrate`; figures in BENCHMARKS.md).

use knit_mesh::Profile;
use rand::RngExt;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};

/// How a run simulates membership.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MembershipKind {
    /// The real membership core (foca) on every host, over the simulated network.
    #[default]
    Real,
    /// The calibrated model of this module.
    Model,
}

impl std::fmt::Display for MembershipKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MembershipKind::Real => "real",
            MembershipKind::Model => "model",
        })
    }
}

impl std::str::FromStr for MembershipKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "real" => Ok(Self::Real),
            "model" => Ok(Self::Model),
            other => Err(format!("unknown membership {other:?}: use real or model")),
        }
    }
}

/// The model's fitted constants.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Mean of the wait for the first probe of a dead member, in probe periods.
    pub first_probe: f64,
    /// Effective gossip fanout over the configured `num_members`.
    pub fanout: f64,
}

/// Fitted by `knit-sim calibrate` against the real core at 50 to 400 hosts.
pub const CALIBRATION: Calibration = Calibration {
    first_probe: 0.5,
    fanout: 1.0,
};

/// Draws the model's timings for one cluster size and profile.
#[derive(Debug, Clone)]
pub struct Model {
    probe_ms: f64,
    suspect_to_down_ms: u64,
    gossip_ms: u64,
    fanout: f64,
    max_transmissions: u32,
    calibration: Calibration,
}

impl Model {
    /// The model for `hosts` hosts running `profile`.
    pub fn new(profile: Profile, hosts: usize, calibration: Calibration) -> Self {
        let config = profile.config(hosts);
        let (gossip, fanout) = config
            .periodic_gossip
            .map_or((config.probe_period, 1), |g| {
                (g.frequency, g.num_members.get())
            });
        let bounds = profile.suspicion_bounds(hosts);
        let suspect_to_down_ms = if bounds.k == 0 {
            duration_ms(bounds.max)
        } else {
            duration_ms(bounds.min).max(duration_ms(config.probe_rtt) + 2 * duration_ms(gossip))
        };
        Self {
            probe_ms: duration_ms(config.probe_period) as f64,
            suspect_to_down_ms,
            gossip_ms: duration_ms(gossip).max(1),
            fanout: fanout as f64 * calibration.fanout,
            max_transmissions: u32::from(config.max_transmissions.get()),
            calibration,
        }
    }

    /// Milliseconds from a member's death to its first suspicion.
    pub fn first_suspicion_ms(&self, rng: &mut SmallRng) -> u64 {
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        let wait = -u.ln() * self.calibration.first_probe;
        ms(self.probe_ms * (1.0 + wait))
    }

    /// When a host the epidemic missed probes a member itself: within one round of
    /// `hosts` probe periods, plus the probe's own period.
    pub fn own_probe_ms(&self, hosts: usize, rng: &mut SmallRng) -> u64 {
        let position = rng.random_range(0..hosts.max(1));
        ms(self.probe_ms * (position as f64 + 1.0))
    }

    /// How long a suspicion takes to turn into a declaration of death.
    pub fn suspect_to_down_ms(&self) -> u64 {
        self.suspect_to_down_ms
    }

    /// When each of `hosts` learns news that `origin` knows at 0, by a push epidemic:
    /// `None` for a host it never reaches. Hosts are indices into `hosts`.
    pub fn spread_ms(&self, hosts: usize, origin: usize, rng: &mut SmallRng) -> Vec<Option<u64>> {
        let mut learnt = vec![None; hosts];
        if origin >= hosts {
            return learnt;
        }
        learnt[origin] = Some(0);
        // (host, transmissions left), for the hosts that still push.
        let mut pushing = vec![(origin, self.max_transmissions)];
        let mut round = 0u64;
        while !pushing.is_empty() {
            round += 1;
            // Each host's gossip timer has its own phase within the round.
            let mut next = Vec::with_capacity(pushing.len() * 2);
            for (host, left) in pushing {
                let sends = self.sends(rng);
                for _ in 0..sends {
                    let to = rng.random_range(0..hosts);
                    if learnt[to].is_none() {
                        let phase = rng.random_range(0..self.gossip_ms);
                        learnt[to] = Some((round - 1) * self.gossip_ms + phase);
                        next.push((to, self.max_transmissions));
                    }
                }
                if left > 1 {
                    next.push((host, left - 1));
                }
            }
            pushing = next;
        }
        learnt
    }

    /// Messages one host sends in a round: the fanout, with its fraction drawn.
    fn sends(&self, rng: &mut SmallRng) -> u32 {
        let whole = self.fanout.floor();
        let extra = u32::from(rng.random_range(0.0..1.0) < self.fanout - whole);
        // A fanout of a few messages per round.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let whole = whole as u32;
        whole + extra
    }
}

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4)
}

fn ms(x: f64) -> u64 {
    // Durations of seconds to minutes.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = x.max(0.0).round() as u64;
    ms
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn news_reaches_every_host_in_about_log_n_rounds() {
        let model = Model::new(Profile::Lan, 1000, CALIBRATION);
        let mut rng = SmallRng::seed_from_u64(7);
        let learnt = model.spread_ms(1000, 3, &mut rng);
        let reached = learnt.iter().filter(|t| t.is_some()).count();
        assert!(reached >= 995, "reached {reached} of 1000");
        let slowest = learnt.iter().flatten().max().copied().unwrap();
        // ln(1000) / ln(1 + 3) is about 5 rounds; allow for the tail.
        let rounds = slowest / model.gossip_ms;
        assert!((3..=15).contains(&rounds), "{rounds} rounds");
        assert_eq!(learnt[3], Some(0));
    }

    #[test]
    fn first_suspicion_takes_at_least_one_probe_period() {
        let model = Model::new(Profile::Fast, 5, CALIBRATION);
        let mut rng = SmallRng::seed_from_u64(1);
        let waits: Vec<u64> = (0..200)
            .map(|_| model.first_suspicion_ms(&mut rng))
            .collect();
        assert!(waits.iter().all(|&w| w >= 500));
        let mean = waits.iter().sum::<u64>() / 200;
        assert!((600..=900).contains(&mean), "mean {mean} ms");
    }

    #[test]
    fn kinds_parse() {
        assert_eq!("model".parse::<MembershipKind>(), Ok(MembershipKind::Model));
        assert!(
            "foca"
                .parse::<MembershipKind>()
                .unwrap_err()
                .contains("real or model")
        );
    }
}
