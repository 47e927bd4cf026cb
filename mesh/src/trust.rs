//! Who may write what: the gate every store delta from another member passes.
//!
//! Every delta is signed by its writer's node key (ECDSA P-256, fixed-length signatures)
//! over [`signed_message`]: a domain tag, then the key, the stamp and the value, each
//! length-prefixed. A member accepts a delta only if the signature verifies with the
//! public key of a certificate that the cluster CA issued for the writer; node-owned keys
//! (`owned/<id>/...`) also need writer == owner. Whoever relays a delta (rumor, push,
//! anti-entropy) does not matter: the signature travels with it.
//!
//! Certificates travel in the store too: each node publishes its own, DER, as the
//! node-owned record [`CERT_RECORD`] (`owned/<id>/.cert`: the dot sorts it before the
//! node's other records). A certificate proves itself under the CA, so a member learns it
//! from whoever relays it; the transport also hands in the certificates of the peers it
//! connects to. A delta whose writer's certificate is not known yet is parked in a bounded
//! queue and retried when a certificate arrives.
//!
//! A stamp more than a bound ahead of local wall time is refused (see
//! [`crate::store::Store::merge`]), so one fast clock cannot drag every member's hybrid
//! logical clock forward or make a key unwritable.
//!
//! This module decides; it does no IO and no cryptography of its own. The `quic` side
//! implements [`Signer`] and [`Verifier`] with ring and webpki; tests use fakes.

use std::collections::{BTreeSet, VecDeque};

use crate::id::NodeId;
pub use crate::store::signature::{
    CERT_RECORD, SIGNATURE_BYTES, Signer, cert_key, cert_owner, signed_message,
};
use crate::store::{Delta, MergeError, Stamp, Store, key_owner};

/// Deltas parked at most while their writer's certificate is unknown; past it the oldest
/// is dropped (anti-entropy brings it again once the certificate is known).
pub const PENDING_DELTAS_MAX: usize = 4096;

/// How far ahead of local wall time another member's write may be stamped, by default:
/// one minute, far above what NTP leaves between hosts.
pub const CLOCK_SKEW_MAX_MS_DEFAULT: u64 = 60_000;

/// What a certificate check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertCheck {
    /// Valid for the node, and new to the verifier.
    New,
    /// Valid for the node, and already known.
    Known,
    /// Not issued by the cluster CA for that node, or unreadable.
    Invalid,
}

/// What a signature check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by the writer.
    Valid,
    /// Not signed by the writer.
    Invalid,
    /// The writer's certificate is not known yet.
    Unknown,
}

/// Checks certificates under the cluster CA and signatures with their keys.
pub trait Verifier {
    /// Checks that `cert_der` was issued by the cluster CA for `node`, and remembers its
    /// key if so.
    fn learn(&mut self, node: &NodeId, cert_der: &[u8]) -> CertCheck;
    /// Checks `sig` over `message` with `writer`'s key.
    fn verify(&self, writer: &NodeId, message: &[u8], sig: &[u8]) -> Verdict;
    /// Whether `node`'s key is known.
    fn knows(&self, node: &NodeId) -> bool;
}

/// Why a delta was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The signature does not verify with the writer's certificate.
    Signature,
    /// A node-owned key whose writer is not its owner.
    NotOwner,
    /// A certificate record that the cluster CA did not issue for its owner.
    Certificate,
    /// Stamped after its writer was revoked.
    Revoked,
    /// A key this member lacks, stamped before its collection horizon: a deleted key
    /// coming back from a member that was away longer than the tombstone TTL.
    Collected,
    /// Stamped more than the allowed skew ahead of local wall time.
    Future {
        /// How far ahead, in ms.
        ahead_ms: u64,
    },
}

/// What to do with one delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Verified: merge it.
    Accept,
    /// Changes nothing here; no need to check it.
    Stale,
    /// Drop it.
    Refuse(Refusal),
    /// The writer's certificate is unknown: keep it until it is known.
    Park,
}

/// What a batch did, for the transport's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Deltas merged as news.
    pub applied: u64,
    /// Sum over applied deltas of (now - written), in ms.
    pub lag_ms_sum: u64,
    /// Refused: bad or missing signature, writer not the owner, bad certificate, or
    /// written by a revoked node after its revocation.
    pub refused_signature: u64,
    /// Refused: stamped too far ahead of local wall time.
    pub refused_future: u64,
    /// Refused: a collected key coming back (see [`Refusal::Collected`]).
    pub refused_collected: u64,
    /// Parked until their writer's certificate is known.
    pub parked: u64,
    /// Dropped from a full parking queue, unverified.
    pub dropped_unverified: u64,
}

impl Tally {
    pub(crate) fn add(&mut self, other: &Tally) {
        self.applied += other.applied;
        self.lag_ms_sum += other.lag_ms_sum;
        self.refused_signature += other.refused_signature;
        self.refused_future += other.refused_future;
        self.refused_collected += other.refused_collected;
        self.parked += other.parked;
        self.dropped_unverified += other.dropped_unverified;
    }
}

/// The gate: decides on every delta from other members and feeds the accepted ones to the
/// store; keeps the parked ones.
#[derive(Debug)]
pub struct Gate {
    /// How far ahead of local wall time a stamp may be, in ms.
    skew_max_ms: u64,
    /// Deltas waiting for their writer's certificate, oldest first.
    pending: VecDeque<Delta>,
    /// (key, stamp) of every parked delta, so that a delta sent again is parked once.
    parked: BTreeSet<(String, Stamp)>,
}

impl Gate {
    /// A gate that refuses stamps more than `skew_max_ms` ahead of local wall time.
    pub fn new(skew_max_ms: u64) -> Self {
        Self {
            skew_max_ms,
            pending: VecDeque::new(),
            parked: BTreeSet::new(),
        }
    }

    /// The number of parked deltas.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Decides on one delta. Learns the certificate a certificate record carries.
    pub fn decide(
        &self,
        store: &Store,
        verifier: &mut dyn Verifier,
        delta: &Delta,
        now_ms: u64,
    ) -> Decision {
        let writer = delta.stamp.writer;
        if store.is_collected(delta) {
            return Decision::Refuse(Refusal::Collected);
        }
        if store.is_stale(delta) {
            return Decision::Stale;
        }
        if key_owner(&delta.key).is_some_and(|owner| owner != writer) {
            return Decision::Refuse(Refusal::NotOwner);
        }
        let ahead_ms = delta.stamp.millis().saturating_sub(now_ms);
        if ahead_ms > self.skew_max_ms {
            return Decision::Refuse(Refusal::Future { ahead_ms });
        }
        if store
            .revoked_at(&writer)
            .is_some_and(|at| delta.stamp.clock > at.clock)
        {
            return Decision::Refuse(Refusal::Revoked);
        }
        if let (Some(owner), Some(cert)) = (cert_owner(&delta.key), &delta.value)
            && verifier.learn(&owner, cert) == CertCheck::Invalid
        {
            return Decision::Refuse(Refusal::Certificate);
        }
        match verifier.verify(&writer, &delta.signed_message(), &delta.sig) {
            Verdict::Valid => Decision::Accept,
            Verdict::Invalid => Decision::Refuse(Refusal::Signature),
            Verdict::Unknown => Decision::Park,
        }
    }

    /// Decides on a batch of deltas (certificate records first), merges the accepted ones
    /// into `store`, parks those of unknown writers, and retries the parked ones if the
    /// batch taught the verifier a certificate.
    pub fn admit(
        &mut self,
        store: &mut Store,
        verifier: &mut dyn Verifier,
        deltas: Vec<Delta>,
        now_ms: u64,
    ) -> Tally {
        let (certs, rest): (Vec<Delta>, Vec<Delta>) = deltas
            .into_iter()
            .partition(|d| cert_owner(&d.key).is_some());
        let mut tally = Tally::default();
        let mut learned = false;
        for delta in certs.into_iter().chain(rest) {
            let new_cert = cert_owner(&delta.key).filter(|owner| !verifier.knows(owner));
            self.admit_one(store, verifier, delta, now_ms, &mut tally);
            learned |= new_cert.is_some_and(|owner| verifier.knows(&owner));
        }
        if learned && !self.pending.is_empty() {
            tally.add(&self.retry(store, verifier, now_ms));
        }
        tally
    }

    /// Retries every parked delta: call it when a certificate arrived by another way
    /// (a connection's peer).
    pub fn retry(&mut self, store: &mut Store, verifier: &mut dyn Verifier, now_ms: u64) -> Tally {
        let mut tally = Tally::default();
        let waiting = std::mem::take(&mut self.pending);
        self.parked.clear();
        for delta in waiting {
            self.admit_one(store, verifier, delta, now_ms, &mut tally);
        }
        // Still parked: counted once, when first parked.
        tally.parked = 0;
        tally
    }

    fn admit_one(
        &mut self,
        store: &mut Store,
        verifier: &mut dyn Verifier,
        delta: Delta,
        now_ms: u64,
        tally: &mut Tally,
    ) {
        match self.decide(store, verifier, &delta, now_ms) {
            Decision::Stale => {}
            Decision::Accept => {
                let written_ms = delta.stamp.millis();
                match store.merge(delta, now_ms, self.skew_max_ms) {
                    Ok(true) => {
                        tally.applied += 1;
                        tally.lag_ms_sum += now_ms.saturating_sub(written_ms);
                    }
                    Ok(false) => {}
                    Err(MergeError::FromTheFuture { .. }) => tally.refused_future += 1,
                    Err(MergeError::NotOwner { .. }) => tally.refused_signature += 1,
                }
            }
            Decision::Refuse(Refusal::Future { .. }) => tally.refused_future += 1,
            Decision::Refuse(Refusal::Collected) => tally.refused_collected += 1,
            Decision::Refuse(refusal) => {
                tracing::debug!(key = %delta.key, writer = %delta.stamp.writer.short(), ?refusal, "refused a store write");
                tally.refused_signature += 1;
            }
            Decision::Park => self.park(delta, tally),
        }
    }

    fn park(&mut self, delta: Delta, tally: &mut Tally) {
        if !self.parked.insert((delta.key.clone(), delta.stamp)) {
            return;
        }
        if self.pending.len() >= PENDING_DELTAS_MAX
            && let Some(old) = self.pending.pop_front()
        {
            self.parked.remove(&(old.key, old.stamp));
            tally.dropped_unverified += 1;
        }
        self.pending.push_back(delta);
        tally.parked += 1;
    }
}

/// Fake keys for tests: a "signature" is a hash of the writer and the message, and a
/// "certificate" names its node.
#[cfg(test)]
pub(crate) mod test_keys {
    use std::collections::BTreeSet;
    use std::hash::{Hash, Hasher};

    use super::{CertCheck, SIGNATURE_BYTES, Signer, Verdict, Verifier};
    use crate::id::NodeId;

    pub(crate) fn node(b: u8) -> NodeId {
        NodeId::from_bytes([b; 16])
    }

    /// Signs as its node.
    pub(crate) struct FakeSigner(pub(crate) NodeId);

    impl Signer for FakeSigner {
        fn sign(&self, message: &[u8]) -> Vec<u8> {
            (0..SIGNATURE_BYTES / 8)
                .flat_map(|i| {
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    (self.0, message, i).hash(&mut h);
                    h.finish().to_le_bytes()
                })
                .collect()
        }
    }

    /// The certificate the fake CA issues to `node`.
    pub(crate) fn cert(node: &NodeId) -> Vec<u8> {
        [b"cert:".as_slice(), node.as_bytes()].concat()
    }

    /// Knows the nodes whose certificates it learnt.
    #[derive(Default)]
    pub(crate) struct FakeVerifier(pub(crate) BTreeSet<NodeId>);

    impl Verifier for FakeVerifier {
        fn learn(&mut self, node: &NodeId, cert_der: &[u8]) -> CertCheck {
            if cert_der != cert(node) {
                CertCheck::Invalid
            } else if self.0.insert(*node) {
                CertCheck::New
            } else {
                CertCheck::Known
            }
        }

        fn knows(&self, node: &NodeId) -> bool {
            self.0.contains(node)
        }

        fn verify(&self, writer: &NodeId, message: &[u8], sig: &[u8]) -> Verdict {
            if !self.0.contains(writer) {
                Verdict::Unknown
            } else if FakeSigner(*writer).sign(message) == sig {
                Verdict::Valid
            } else {
                Verdict::Invalid
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_keys::{FakeSigner, FakeVerifier, cert, node};
    use super::*;
    use crate::store::{owned_key, revoked_key};

    const SKEW_MS: u64 = 60_000;
    const NOW_MS: u64 = 1_000_000;

    /// A store of `writer` that wrote `key`; returns the delta.
    fn write(writer: u8, key: &str, value: &[u8]) -> Delta {
        Store::new(node(writer)).put(key, Some(value.to_vec()), NOW_MS, &FakeSigner(node(writer)))
    }

    fn knowing(nodes: &[u8]) -> FakeVerifier {
        FakeVerifier(nodes.iter().map(|&b| node(b)).collect())
    }

    #[test]
    fn a_signed_delta_is_accepted_and_a_tampered_one_refused() {
        let gate = Gate::new(SKEW_MS);
        let store = Store::new(node(9));
        let mut verifier = knowing(&[1]);
        let good = write(1, "svc/web", b"v1");
        assert_eq!(
            gate.decide(&store, &mut verifier, &good, NOW_MS),
            Decision::Accept
        );
        let mut value = good.clone();
        value.value = Some(b"v2".to_vec());
        let mut key = good.clone();
        key.key = "svc/api".into();
        let mut clock = good.clone();
        clock.stamp.clock += 1;
        let mut unsigned = good.clone();
        unsigned.sig.clear();
        for forged in [value, key, clock, unsigned] {
            assert_eq!(
                gate.decide(&store, &mut verifier, &forged, NOW_MS),
                Decision::Refuse(Refusal::Signature)
            );
        }
    }

    #[test]
    fn a_spec_claiming_a_writer_that_did_not_sign_it_is_refused() {
        let gate = Gate::new(SKEW_MS);
        let store = Store::new(node(9));
        let mut verifier = knowing(&[1, 2]);
        // Node 2 signs a write that says node 1 wrote it.
        let mut forged = write(2, "svc/web", b"evil");
        forged.stamp.writer = node(1);
        forged.sig = FakeSigner(node(2)).sign(&forged.signed_message());
        assert_eq!(
            gate.decide(&store, &mut verifier, &forged, NOW_MS),
            Decision::Refuse(Refusal::Signature)
        );
        // Node 2 writing node 1's record under its own name: not the owner.
        let record = write(2, &owned_key(&node(1), "info"), b"evil");
        assert_eq!(
            gate.decide(&store, &mut verifier, &record, NOW_MS),
            Decision::Refuse(Refusal::NotOwner)
        );
    }

    #[test]
    fn stamps_from_the_future_are_refused_and_do_not_move_the_clock() {
        let mut gate = Gate::new(SKEW_MS);
        let mut store = Store::new(node(9));
        let mut verifier = knowing(&[1]);
        let signer = FakeSigner(node(1));
        let mut far = write(1, "svc/web", b"frozen");
        far.stamp.clock = u64::MAX - 1;
        far.sig = signer.sign(&far.signed_message());
        let tally = gate.admit(&mut store, &mut verifier, vec![far.clone()], NOW_MS);
        assert_eq!(tally.refused_future, 1);
        assert_eq!(store.get("svc/web"), None);
        // The store itself refuses it too, whoever calls it.
        assert!(matches!(
            store.merge(far, NOW_MS, SKEW_MS),
            Err(MergeError::FromTheFuture { .. })
        ));
        // Local writes of the key work, stamped from local time.
        let local = store.put(
            "svc/web",
            Some(b"mine".to_vec()),
            NOW_MS,
            &FakeSigner(node(9)),
        );
        assert_eq!(local.stamp.millis(), NOW_MS);
        assert_eq!(store.get("svc/web"), Some(&b"mine"[..]));
        // Just inside the bound is fine.
        let mut near = write(1, "svc/api", b"ok");
        near.stamp.clock = (NOW_MS + SKEW_MS) << 16;
        near.sig = signer.sign(&near.signed_message());
        assert_eq!(
            gate.admit(&mut store, &mut verifier, vec![near], NOW_MS)
                .applied,
            1
        );
    }

    #[test]
    fn unknown_writers_wait_for_their_certificate_in_the_same_batch_or_later() {
        let mut gate = Gate::new(SKEW_MS);
        let mut store = Store::new(node(9));
        let mut verifier = FakeVerifier::default();
        let info = write(1, &owned_key(&node(1), "info"), b"one");
        let spec = write(1, "svc/web", b"v1");
        let cert_1 = write(1, &cert_key(&node(1)), &cert(&node(1)));
        // The certificate comes last in the batch, but is decided first.
        let tally = gate.admit(
            &mut store,
            &mut verifier,
            vec![info.clone(), cert_1],
            NOW_MS,
        );
        assert_eq!((tally.applied, tally.parked), (2, 0));
        // Node 2's write waits; twice sent, parked once.
        let other = write(2, "svc/api", b"v1");
        for _ in 0..2 {
            gate.admit(&mut store, &mut verifier, vec![other.clone()], NOW_MS);
        }
        assert_eq!(gate.pending(), 1);
        assert_eq!(store.get("svc/api"), None);
        // Its certificate arrives by a later batch, relayed by anyone.
        let cert_2 = write(2, &cert_key(&node(2)), &cert(&node(2)));
        let tally = gate.admit(&mut store, &mut verifier, vec![cert_2, spec], NOW_MS);
        assert_eq!(tally.applied, 3);
        assert_eq!(gate.pending(), 0);
        assert_eq!(store.get("svc/api"), Some(&b"v1"[..]));
        // Or from a connection: retry.
        let third = write(3, "svc/db", b"v1");
        gate.admit(&mut store, &mut verifier, vec![third], NOW_MS);
        assert_eq!(verifier.learn(&node(3), &cert(&node(3))), CertCheck::New);
        assert_eq!(gate.retry(&mut store, &mut verifier, NOW_MS).applied, 1);
    }

    #[test]
    fn a_certificate_record_must_be_the_cas_for_its_owner() {
        let mut gate = Gate::new(SKEW_MS);
        let mut store = Store::new(node(9));
        let mut verifier = FakeVerifier::default();
        let stolen = write(2, &cert_key(&node(2)), &cert(&node(1)));
        let tally = gate.admit(&mut store, &mut verifier, vec![stolen], NOW_MS);
        assert_eq!(tally.refused_signature, 1);
        assert!(verifier.0.is_empty());
    }

    #[test]
    fn the_parking_queue_is_bounded_and_drops_the_oldest() {
        let mut gate = Gate::new(SKEW_MS);
        let mut store = Store::new(node(9));
        let mut verifier = FakeVerifier::default();
        let deltas: Vec<Delta> = (0..PENDING_DELTAS_MAX + 3)
            .map(|i| write(1, &format!("k/{i}"), b"x"))
            .collect();
        let tally = gate.admit(&mut store, &mut verifier, deltas, NOW_MS);
        assert_eq!(tally.dropped_unverified, 3);
        assert_eq!(gate.pending(), PENDING_DELTAS_MAX);
        let cert_1 = write(1, &cert_key(&node(1)), &cert(&node(1)));
        let tally = gate.admit(&mut store, &mut verifier, vec![cert_1], NOW_MS);
        assert_eq!(tally.applied, PENDING_DELTAS_MAX as u64 + 1);
        assert_eq!(store.get("k/0"), None, "dropped");
    }

    #[test]
    fn a_revoked_writer_keeps_its_past_writes_only() {
        let gate = Gate::new(SKEW_MS);
        let mut store = Store::new(node(9));
        let mut verifier = knowing(&[1]);
        let before = write(1, "svc/web", b"v1");
        store.put(
            &revoked_key(&node(1)),
            Some(b"rm".to_vec()),
            NOW_MS + 1,
            &FakeSigner(node(9)),
        );
        assert_eq!(
            gate.decide(&store, &mut verifier, &before, NOW_MS),
            Decision::Accept
        );
        let mut after = write(1, "svc/api", b"v1");
        after.stamp.clock = (NOW_MS + 2) << 16;
        after.sig = FakeSigner(node(1)).sign(&after.signed_message());
        assert_eq!(
            gate.decide(&store, &mut verifier, &after, NOW_MS),
            Decision::Refuse(Refusal::Revoked)
        );
    }

    #[test]
    fn the_signed_message_separates_its_fields() {
        let stamp = Stamp {
            clock: 1,
            writer: node(1),
        };
        let a = signed_message("ab", &stamp, Some(b"c"));
        assert_ne!(a, signed_message("a", &stamp, Some(b"bc")));
        assert_ne!(
            signed_message("k", &stamp, None),
            signed_message("k", &stamp, Some(b""))
        );
        assert!(a.starts_with(crate::store::signature::DOMAIN));
    }
}
