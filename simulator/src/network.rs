//! The network model: latency with uniform jitter, random loss, partitions, one-way cuts.

use std::collections::BTreeSet;

use rand::RngExt;
use rand::rngs::SmallRng;

use crate::scenario::NetworkSpec;

/// Every link between hosts, alike except for partitions and cuts.
#[derive(Debug, Clone)]
pub struct Network {
    latency_ms: u64,
    jitter_ms: u64,
    loss: f64,
    /// Each host's partition group; hosts in different groups cannot reach each other.
    group: Vec<u32>,
    /// One-way cuts `(from, to)`.
    cuts: BTreeSet<(usize, usize)>,
}

impl Network {
    /// A network of `hosts` hosts, whole, with the given link model.
    pub fn new(spec: &NetworkSpec, hosts: usize) -> Self {
        Self {
            latency_ms: spec.latency_ms,
            jitter_ms: spec.jitter_ms,
            loss: spec.loss,
            group: vec![0; hosts],
            cuts: BTreeSet::new(),
        }
    }

    /// Whether a packet from `from` can reach `to` at all.
    pub fn reachable(&self, from: usize, to: usize) -> bool {
        self.group[from] == self.group[to] && !self.cuts.contains(&(from, to))
    }

    /// The base one-way latency (ms).
    pub fn latency_ms(&self) -> u64 {
        self.latency_ms
    }

    /// When a packet sent now arrives (delay in ms), or `None` if it is lost.
    pub fn delivery(&self, from: usize, to: usize, rng: &mut SmallRng) -> Option<u64> {
        if !self.reachable(from, to) {
            return None;
        }
        if self.loss > 0.0 && rng.random_bool(self.loss) {
            return None;
        }
        let jitter = if self.jitter_ms > 0 {
            rng.random_range(0..=self.jitter_ms)
        } else {
            0
        };
        Some(self.latency_ms + jitter)
    }

    /// Splits the hosts: group `i` of `groups` becomes partition `i + 1`; unlisted hosts
    /// stay together in partition 0. Replaces any earlier partition.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        self.group.fill(0);
        for (i, members) in groups.iter().enumerate() {
            let id = u32::try_from(i + 1).unwrap_or(u32::MAX);
            for &host in members {
                self.group[host] = id;
            }
        }
    }

    /// Ends every partition (cuts stay).
    pub fn heal(&mut self) {
        self.group.fill(0);
    }

    /// Loses every packet from `from` to `to`.
    pub fn cut(&mut self, from: usize, to: usize) {
        self.cuts.insert((from, to));
    }

    /// Undoes [`Network::cut`].
    pub fn restore(&mut self, from: usize, to: usize) {
        self.cuts.remove(&(from, to));
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn partitions_and_cuts_block_and_heal() {
        let spec = NetworkSpec {
            latency_ms: 5,
            jitter_ms: 2,
            loss: 0.0,
        };
        let mut net = Network::new(&spec, 4);
        let mut rng = SmallRng::seed_from_u64(1);
        let d = net.delivery(0, 1, &mut rng).unwrap();
        assert!((5..=7).contains(&d));
        net.partition(&[vec![0, 1]]);
        assert!(net.reachable(0, 1) && net.reachable(2, 3));
        assert!(!net.reachable(0, 2) && !net.reachable(3, 1));
        net.heal();
        net.cut(2, 3);
        assert!(!net.reachable(2, 3) && net.reachable(3, 2));
        net.restore(2, 3);
        assert!(net.reachable(2, 3));
    }
}
