//! The load bound, node by node.
//!
//! With x = c * S / N, a uniform bound of `ceil(x)` would change for every node at once
//! whenever a join or a loss makes x cross an integer, and every node at the old bound would
//! shed or regain a slot together: a movement spike (about 20x the optimum at 1,000 nodes).
//! So the step from `k = ceil(x) - 1` to `k + 1` is spread over the first quarter of each
//! unit of x: the `m` nodes ranked first by a hash of their id get `k + 1`, the others `k`,
//! where `m = min(N, ceil(4 * (x - k) * N))`. Outside that quarter every node has `ceil(x)`,
//! exactly as plain bounded loads; inside it, a change of N moves the bound of a few dozen
//! nodes rather than all. Guarantees: no node's bound exceeds `ceil(x)`, the bounds add up
//! to at least S (so slots without constraints always fit), and every bound is at least 1.

use super::matching::Model;

/// A node's place in the bound ranking: a scramble of its hash, so that the ranking does
/// not follow the scores.
pub(super) fn seat_key(node_hash: u64) -> (u64, u64) {
    (
        node_hash
            .rotate_left(29)
            .wrapping_mul(0xD6E8_FEB8_6659_FD93),
        node_hash,
    )
}

/// `(k, m)`: `m` nodes get `k + 1`, the rest `k`.
fn split(load_factor_milli: u64, slots: u32, nodes: u32) -> (u32, u32) {
    if slots == 0 || nodes == 0 {
        return (0, 0);
    }
    let num = u128::from(load_factor_milli) * u128::from(slots);
    let den = 1_000 * u128::from(nodes);
    let k = num.div_ceil(den) - 1;
    let excess = num - k * den;
    let m = (4 * excess).div_ceil(1_000).min(u128::from(nodes));
    let k = u32::try_from(k).unwrap_or(u32::MAX - 1);
    if k == 0 {
        return (0, nodes);
    }
    (k, m as u32)
}

impl Model {
    /// Each node's bound (by node index; 0 for nodes that are not active) for `slots`
    /// matchable slots on the active nodes.
    pub(super) fn caps_for(&self, slots: u32) -> Vec<u32> {
        let (k, m) = split(self.load_factor_milli, slots, self.ranked.len() as u32);
        let mut caps = vec![0; self.nodes.len()];
        for (rank, &(_, _, n)) in self.ranked.iter().enumerate() {
            caps[n as usize] = k + u32::from((rank as u32) < m);
        }
        caps
    }

    /// The largest bound of any node.
    pub(super) fn bound(&self) -> u32 {
        self.caps.iter().copied().max().unwrap_or(0)
    }

    /// Adds an active node to the ranking.
    pub(super) fn rank_node(&mut self, n: u32) {
        let key = seat_key(self.nodes[n as usize].hash);
        let at = self.ranked.partition_point(|&(a, b, _)| (a, b) < key);
        self.ranked.insert(at, (key.0, key.1, n));
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn bounds_step_smoothly_and_cover_the_slots() {
        // x = 12.5: everyone at 13.
        assert_eq!(split(1_250, 10_000, 1_000), (12, 1_000));
        // x = 13.007: 28 nodes at 14; x = 12.994: all at 13.
        assert_eq!(split(1_250, 10_000, 961), (13, 28));
        assert_eq!(split(1_250, 10_000, 962), (12, 962));
        // Small x: every node may hold one.
        assert_eq!(split(1_250, 1, 100), (0, 100));
        for slots in 1..300u32 {
            for nodes in 1..40u32 {
                for c in [1_000, 1_250, 2_000] {
                    let (k, m) = split(c, slots, nodes);
                    let seats = u64::from(k) * u64::from(nodes) + u64::from(m);
                    assert!(seats >= u64::from(slots), "{c} {slots} {nodes}");
                    let ceil = (c * u64::from(slots)).div_ceil(1_000 * u64::from(nodes));
                    assert!(u64::from(k) + u64::from(m > 0) <= ceil);
                }
            }
        }
    }
}
