//! Rendezvous scores: ids are hashed once with xxh3, and a (slot, node) pair is scored by
//! one 64x64->128 multiply folded to 64 bits, so a scan over a thousand nodes costs a
//! microsecond and allocates nothing.
//!
//! A pair's rank is the key `(score, hash)`: the score first, the other side's hash to
//! break (astronomically rare) ties, so every peer orders pairs the same way.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::node::NodeId;

/// How many best candidates one scan keeps per slot.
pub(super) const TOP: usize = 4;

/// Breaks the symmetry of the multiply, so a node and a slot with equal hashes do not
/// score alike; applied once to the node's hash rather than in the loop.
const NODE_SALT: u64 = 0x9E37_79B9_7F4A_7C15;

/// A node id's hash (salted).
pub(crate) fn node_hash(id: &NodeId) -> u64 {
    xxh3_64(id.as_str().as_bytes()) ^ NODE_SALT
}

/// The hash of slot `index` of `service`.
pub(crate) fn slot_hash(service: &str, index: u32) -> u64 {
    xxh3_64_with_seed(service.as_bytes(), u64::from(index))
}

/// The rendezvous score of a slot on a node: higher wins.
#[inline(always)]
pub(crate) fn score(slot: u64, node: u64) -> u64 {
    let product = u128::from(slot) * u128::from(node);
    (product as u64) ^ ((product >> 64) as u64)
}

/// A candidate node for a slot: its score, its hash and its position in the scanned list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Pick {
    pub(super) score: u64,
    pub(super) hash: u64,
    pub(super) pos: u32,
}

impl Pick {
    /// The slot's preference key for this node.
    pub(super) fn key(&self) -> (u64, u64) {
        (self.score, self.hash)
    }
}

/// The best `TOP` candidates of a scan, best first.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Picks {
    pub(super) best: [Pick; TOP],
    pub(super) len: u8,
}

impl Picks {
    #[inline]
    fn offer(&mut self, p: Pick) {
        let len = usize::from(self.len);
        let mut i = if len < TOP {
            self.len += 1;
            len
        } else if p.key() > self.best[TOP - 1].key() {
            TOP - 1
        } else {
            return;
        };
        while i > 0 && self.best[i - 1].key() < p.key() {
            self.best[i] = self.best[i - 1];
            i -= 1;
        }
        self.best[i] = p;
    }

    /// The lowest score that can still enter, once full.
    #[inline]
    fn floor(&self) -> u64 {
        if usize::from(self.len) < TOP {
            0
        } else {
            self.best[TOP - 1].score
        }
    }

    /// The candidates, best first.
    pub(super) fn as_slice(&self) -> &[Pick] {
        &self.best[..usize::from(self.len)]
    }
}

/// The best `TOP` of all `hashes` for each of `K` slots: the hot loop of a full
/// placement. One pass over the node hashes serves `K` slots, each floor lives in a
/// register, and the common case per pair is one multiply and one compare.
pub(super) fn top_all<const K: usize>(slots: [u64; K], hashes: &[u64]) -> [Picks; K] {
    let mut picks = [Picks::default(); K];
    let mut floor = [0u64; K];
    for (pos, &hash) in hashes.iter().enumerate() {
        for k in 0..K {
            let score = score(slots[k], hash);
            if score < floor[k] {
                continue;
            }
            picks[k].offer(Pick {
                score,
                hash,
                pos: pos as u32,
            });
            floor[k] = picks[k].floor();
        }
    }
    picks
}

/// The best `TOP` of `hashes` for `slot` ranked strictly below `ceiling` (all, when
/// `None`), leaving out the positions `skip` names.
pub(super) fn top_below(
    slot: u64,
    hashes: &[u64],
    ceiling: Option<(u64, u64)>,
    skip: impl Fn(usize) -> bool,
) -> Picks {
    let mut picks = Picks::default();
    for (pos, &hash) in hashes.iter().enumerate() {
        let score = score(slot, hash);
        if score < picks.floor() || ceiling.is_some_and(|c| (score, hash) >= c) || skip(pos) {
            continue;
        }
        picks.offer(Pick {
            score,
            hash,
            pos: pos as u32,
        });
    }
    picks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_keep_the_best_in_order() {
        let hashes: Vec<u64> = (1..200u64)
            .map(|i| i.wrapping_mul(0x1234_5678_9abc_def1))
            .collect();
        let [picks] = top_all([42], &hashes);
        let mut all: Vec<(u64, u64)> = hashes.iter().map(|&h| (score(42, h), h)).collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        let got: Vec<(u64, u64)> = picks.as_slice().iter().map(Pick::key).collect();
        assert_eq!(got, all[..TOP].to_vec());
        let below = top_below(42, &hashes, Some(all[1]), |_| false);
        let got: Vec<(u64, u64)> = below.as_slice().iter().map(Pick::key).collect();
        assert_eq!(got, all[2..2 + TOP].to_vec());
        let skipped = top_below(42, &hashes, None, |pos| hashes[pos] == all[0].1);
        let got: Vec<(u64, u64)> = skipped.as_slice().iter().map(Pick::key).collect();
        assert_eq!(got, all[1..1 + TOP].to_vec());
    }
}
