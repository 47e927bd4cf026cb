//! The steps of one anti-entropy exchange, as calls on the two cores. The initiator gives
//! its [`NodeCore::summary`]; the responder answers with [`NodeCore::differ`] (the buckets
//! that differ, its digest of them); the initiator answers with [`NodeCore::exchange`]
//! (what the responder lacks, its own digest); the responder sends back
//! [`NodeCore::missing`]. Deltas go to the other side as [`Input::Merge`], and each side is
//! told [`Input::Synced`] at the end. The QUIC driver carries these steps on a stream;
//! [`sync_pair`] runs them between two cores in memory.

use super::{Input, NodeCore};
use crate::store::{Buckets, Delta, Digest, Freshness, Summary};

impl NodeCore {
    /// The first step of an exchange this node starts: its bucket summary and freshness.
    pub fn summary(&self) -> (Summary, Freshness) {
        (self.store.summary(), self.store.freshness())
    }

    /// The responder's step: the buckets where the initiator's `summary` differs, this
    /// node's digest of them and its freshness, after meeting the initiator's freshness
    /// (a store older than the peer's horizon rebases).
    pub fn differ(&mut self, summary: &Summary, peer: Freshness) -> (Buckets, Digest, Freshness) {
        self.meet(peer);
        let buckets = self.store.differing(summary);
        let digest = if buckets.is_empty() {
            Vec::new()
        } else {
            self.store.digest(Some(&buckets))
        };
        (buckets, digest, self.store.freshness())
    }

    /// The initiator's step: what a responder with `digest` of `buckets` lacks, and this
    /// node's digest of them, after meeting the responder's freshness.
    pub fn exchange(
        &mut self,
        digest: &Digest,
        buckets: &Buckets,
        peer: Freshness,
    ) -> (Vec<Delta>, Digest) {
        self.meet(peer);
        let missing = self.store.missing_for(digest, Some(buckets));
        (missing, self.store.digest(Some(buckets)))
    }

    /// The responder's last step: what an initiator with `digest` of `buckets` lacks.
    pub fn missing(&self, digest: &Digest, buckets: &Buckets) -> Vec<Delta> {
        self.store.missing_for(digest, Some(buckets))
    }

    /// Before an exchange: a peer whose horizon is past this store's freshness collected
    /// tombstones this node may never have seen; the store rebases (see the store's `gc`).
    fn meet(&mut self, peer: Freshness) {
        if let Some(dropped) = self.store.meet(peer) {
            tracing::warn!(
                dropped,
                "this node was away longer than the tombstone TTL: dropped its older entries, to take them again from the cluster (deleted ones stay deleted)"
            );
        }
        self.settle();
    }
}

/// Runs one whole exchange between `initiator` and `responder` in memory, with the same
/// steps as the QUIC driver's stream. The caller still tells the initiator
/// [`Input::ExchangeEnded`] (if it started the exchange) and drains both cores.
pub fn sync_pair(initiator: &mut NodeCore, responder: &mut NodeCore, now_ms: u64) {
    let (summary, initiator_fresh) = initiator.summary();
    let (buckets, digest, responder_fresh) = responder.differ(&summary, initiator_fresh);
    if !buckets.is_empty() {
        let (for_responder, initiator_digest) =
            initiator.exchange(&digest, &buckets, responder_fresh);
        responder.handle(Input::Merge(for_responder), now_ms);
        let for_initiator = responder.missing(&initiator_digest, &buckets);
        initiator.handle(Input::Merge(for_initiator), now_ms);
    }
    initiator.handle(Input::Synced(responder_fresh), now_ms);
    responder.handle(Input::Synced(initiator_fresh), now_ms);
}
