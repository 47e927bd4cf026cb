//! Lifeguard's two rules on top of foca's SWIM (Dadgar, Phillips and Currey, "Lifeguard:
//! Local Health Awareness for More Accurate Failure Detection", 2018), as HashiCorp's
//! memberlist runs them, and the bookkeeping the membership core keeps for them.
//!
//! - **Local health**: a peer that misses acks, fires its timers late or has to refute a
//!   suspicion of itself is more likely slow than its members dead. Its score (0 to
//!   [`HEALTH_MAX`]) stretches its own probe period and probe timeout by `score + 1`, so
//!   that a starved peer stops accusing healthy ones. A probe that succeeds lowers it.
//! - **Dynamic suspicion**: a suspicion starts at the profile's longest timeout and
//!   shrinks, on a log scale, towards the shortest as other members confirm it on their
//!   own (each checks the suspect directly before it confirms). A suspicion only one
//!   member holds takes longest; one that [`SuspicionBounds::k`] members confirm ends
//!   soonest. That is what lets the shortest timeout be short without false downs.
//!
//! Pure values and arithmetic; the membership core feeds them and acts on their answers.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::id::{NodeId, PeerId};

/// The highest local health score: probe periods and timeouts stretch at most 9-fold.
pub const HEALTH_MAX: u32 = 8;

/// How many members check a suspect directly, whatever the size of the cluster: enough
/// for `k` confirmations with one to spare, few enough that a suspicion in a large cluster
/// (or many during a formation storm) does not set every member pinging.
pub const CHECKERS: usize = 4;

/// A member's rank for checking `suspect` (lower checks): FNV-1a over both node ids, the
/// same on every peer, different for every suspect.
pub fn checker_rank(suspect: &NodeId, member: &NodeId) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in suspect.as_bytes().iter().chain(member.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Whether `me` is among the [`CHECKERS`] members of lowest rank for `suspect`, out of
/// `me` and `others` (the alive members it knows, the suspect not among them).
pub fn is_checker<'a>(
    suspect: &NodeId,
    me: &NodeId,
    others: impl IntoIterator<Item = &'a NodeId>,
) -> bool {
    let mine = checker_rank(suspect, me);
    others
        .into_iter()
        .filter(|other| *other != me && *other != suspect)
        .filter(|other| checker_rank(suspect, other) < mine)
        .take(CHECKERS)
        .count()
        < CHECKERS
}

/// How much a peer distrusts its own judgement: 0 when healthy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalHealth {
    score: u32,
}

impl LocalHealth {
    /// The score, 0 to [`HEALTH_MAX`].
    pub fn score(self) -> u32 {
        self.score
    }

    /// A sign of trouble here: a missed ack, a late timer, a refuted suspicion of itself.
    pub fn worse(&mut self) {
        self.score = (self.score + 1).min(HEALTH_MAX);
    }

    /// A sign of health: a probe answered in time.
    pub fn better(&mut self) {
        self.score = self.score.saturating_sub(1);
    }

    /// `base` stretched by the score: `base * (score + 1)`.
    pub fn scale(self, base: Duration) -> Duration {
        base * (self.score + 1)
    }
}

/// How long a suspicion lasts, by how many members confirmed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuspicionBounds {
    /// With [`Self::k`] confirmations or more.
    pub min: Duration,
    /// With none.
    pub max: Duration,
    /// Confirmations (besides the first suspicion) expected: at most 2, fewer in clusters
    /// of fewer than 4 members, where there are not that many others to ask.
    pub k: usize,
}

impl SuspicionBounds {
    /// The bounds for a cluster of `members` (self included), from the profile's.
    pub fn new(min: Duration, max: Duration, members: usize) -> Self {
        Self {
            min: min.min(max),
            max,
            k: members.saturating_sub(2).min(2),
        }
    }

    /// The timeout after `confirmations` independent confirmations: `max` with none,
    /// `min` from `k` on, and `max - (max - min) * ln(c + 1) / ln(k + 1)` between, as in
    /// Lifeguard. With nobody to confirm (`k == 0`), always `max`.
    pub fn timeout(&self, confirmations: usize) -> Duration {
        if self.k == 0 || confirmations == 0 {
            return self.max;
        }
        if confirmations >= self.k {
            return self.min;
        }
        // Small counts: the conversions are exact.
        #[allow(clippy::cast_precision_loss)]
        let fraction = ((confirmations + 1) as f64).ln() / ((self.k + 1) as f64).ln();
        let span = self.max.saturating_sub(self.min).as_secs_f64();
        self.max
            .saturating_sub(Duration::from_secs_f64(span * fraction))
            .max(self.min)
    }
}

/// One member under suspicion here, at one incarnation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspicion {
    /// The suspect, as foca knows it.
    pub peer: PeerId,
    /// foca's incarnation of the suspect when the suspicion began; a refutation raises it.
    pub incarnation: u16,
    /// When this peer learnt of it (caller's clock, ms).
    pub since_ms: u64,
    /// The members that say the suspect failed their own probe or check.
    pub by: BTreeSet<NodeId>,
    /// Whether this peer saw the suspect's port closed (its host refused a datagram):
    /// hard evidence, worth one confirmation.
    pub refused: bool,
    /// This peer's direct check of the suspect, while it waits for an answer.
    pub checking: Option<u32>,
}

impl Suspicion {
    /// A suspicion of `peer` at `incarnation`, learnt at `now_ms`, not yet confirmed.
    pub fn new(peer: PeerId, incarnation: u16, now_ms: u64) -> Self {
        Self {
            peer,
            incarnation,
            since_ms: now_ms,
            by: BTreeSet::new(),
            refused: false,
            checking: None,
        }
    }

    /// Confirmations beyond the first suspicion: every member but one that vouched for
    /// it, and a refused datagram.
    pub fn confirmations(&self) -> usize {
        self.by.len().saturating_sub(1) + usize::from(self.refused)
    }

    /// When (caller's clock, ms) the suspect is to be declared down, under `bounds`.
    pub fn deadline_ms(&self, bounds: &SuspicionBounds) -> u64 {
        let timeout = bounds.timeout(self.confirmations());
        self.since_ms
            .saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId {
            node: NodeId::from_bytes([7; 16]),
            addr: "127.0.0.7:7946".parse().unwrap(),
            epoch: 1,
        }
    }

    #[test]
    fn a_few_members_check_each_suspect_and_not_always_the_same() {
        let members: Vec<NodeId> = (0..100u8).map(|i| NodeId::from_bytes([i; 16])).collect();
        let mut checked_by: BTreeSet<&NodeId> = BTreeSet::new();
        for suspect in &members[..20] {
            let others: Vec<&NodeId> = members.iter().filter(|m| *m != suspect).collect();
            let checkers: Vec<&NodeId> = others
                .iter()
                .copied()
                .filter(|me| is_checker(suspect, me, others.iter().copied()))
                .collect();
            assert_eq!(checkers.len(), CHECKERS, "suspect {suspect:?}");
            checked_by.extend(checkers);
        }
        assert!(checked_by.len() > 2 * CHECKERS, "the work is spread");
        // With fewer members than checkers, every member checks.
        let few = &members[..3];
        assert!(
            few[1..]
                .iter()
                .all(|me| is_checker(&few[0], me, few.iter()))
        );
    }

    #[test]
    fn local_health_stretches_and_recovers_within_bounds() {
        let mut health = LocalHealth::default();
        let base = Duration::from_millis(500);
        assert_eq!(health.scale(base), base);
        health.worse();
        health.worse();
        assert_eq!(health.scale(base), base * 3);
        for _ in 0..20 {
            health.worse();
        }
        assert_eq!(health.score(), HEALTH_MAX);
        assert_eq!(health.scale(base), base * 9);
        for _ in 0..20 {
            health.better();
        }
        assert_eq!(health.score(), 0);
    }

    #[test]
    fn suspicion_timeout_shrinks_with_confirmations_on_a_log_scale() {
        let bounds = SuspicionBounds::new(Duration::from_millis(500), Duration::from_secs(2), 5);
        assert_eq!(bounds.k, 2);
        assert_eq!(bounds.timeout(0), Duration::from_secs(2));
        let one = bounds.timeout(1);
        // max - 1.5 s * ln 2 / ln 3 = 2 - 0.946 s
        assert!(one > Duration::from_millis(1_050) && one < Duration::from_millis(1_060));
        assert_eq!(bounds.timeout(2), Duration::from_millis(500));
        assert_eq!(bounds.timeout(9), Duration::from_millis(500));
    }

    #[test]
    fn small_clusters_expect_fewer_confirmations() {
        let (min, max) = (Duration::from_millis(500), Duration::from_secs(2));
        assert_eq!(SuspicionBounds::new(min, max, 3).k, 1);
        assert_eq!(SuspicionBounds::new(min, max, 3).timeout(1), min);
        // Two members: nobody else can confirm, so a suspicion always runs its full time.
        let pair = SuspicionBounds::new(min, max, 2);
        assert_eq!(pair.k, 0);
        assert_eq!(pair.timeout(5), max);
    }

    #[test]
    fn a_deadline_counts_distinct_confirmers_and_a_refusal() {
        let bounds = SuspicionBounds::new(Duration::from_millis(500), Duration::from_secs(2), 10);
        let mut suspicion = Suspicion::new(peer(), 3, 10_000);
        assert_eq!(suspicion.deadline_ms(&bounds), 12_000);
        suspicion.by.insert(NodeId::from_bytes([1; 16]));
        assert_eq!(
            suspicion.deadline_ms(&bounds),
            12_000,
            "the first suspicion"
        );
        suspicion.by.insert(NodeId::from_bytes([1; 16]));
        assert_eq!(suspicion.confirmations(), 0, "the same member twice");
        suspicion.by.insert(NodeId::from_bytes([2; 16]));
        suspicion.refused = true;
        assert_eq!(suspicion.confirmations(), 2);
        assert_eq!(suspicion.deadline_ms(&bounds), 10_500);
    }
}
