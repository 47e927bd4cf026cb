//! Keys for simulated hosts. **NOT SECURE: no cryptography at all.** A "signature" is a
//! keyed-less hash of the writer and the message that anyone can compute, and a
//! "certificate" is the text `knit-sim-cert:` followed by the node id. They exist so that
//! the real node core's trust gate runs in the simulator — certificate records, parking of
//! writes from writers not known yet, signature checks — at the cost of a hash per write
//! and per check, without the real keys (which need the `quic` feature and a CA) and
//! without the mesh's own fake keys, which are test-only there. Never use them outside the
//! simulator.

use std::collections::BTreeSet;

use knit_mesh::NodeId;
use knit_mesh::trust::{CertCheck, SIGNATURE_BYTES, Signer, Verdict, Verifier};

/// What a simulated certificate starts with.
const CERT_PREFIX: &[u8] = b"knit-sim-cert:";

/// The certificate the simulated CA issues to `node`.
pub fn cert(node: &NodeId) -> Vec<u8> {
    [CERT_PREFIX, node.as_bytes()].concat()
}

/// Signs as its node: [`SIGNATURE_BYTES`] bytes drawn from an FNV-1a hash of the node id
/// and the message. Anyone can forge it; see the module doc.
#[derive(Debug, Clone)]
pub struct SimSigner(pub NodeId);

impl Signer for SimSigner {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        signature(&self.0, message)
    }
}

/// Knows the nodes whose simulated certificates it learnt, and checks signatures by
/// computing them again.
#[derive(Debug, Clone, Default)]
pub struct SimVerifier(BTreeSet<NodeId>);

impl Verifier for SimVerifier {
    fn learn(&mut self, node: &NodeId, cert_der: &[u8]) -> CertCheck {
        if cert_der != cert(node) {
            CertCheck::Invalid
        } else if self.0.insert(*node) {
            CertCheck::New
        } else {
            CertCheck::Known
        }
    }

    fn verify(&self, writer: &NodeId, message: &[u8], sig: &[u8]) -> Verdict {
        if !self.0.contains(writer) {
            Verdict::Unknown
        } else if signature(writer, message) == sig {
            Verdict::Valid
        } else {
            Verdict::Invalid
        }
    }

    fn knows(&self, node: &NodeId) -> bool {
        self.0.contains(node)
    }
}

/// FNV-1a over the node id and the message, spread over [`SIGNATURE_BYTES`] by splitmix64
/// (stable across builds and platforms, unlike std's hasher).
fn signature(node: &NodeId, message: &[u8]) -> Vec<u8> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in node.as_bytes().iter().chain(message) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (0..SIGNATURE_BYTES / 8)
        .flat_map(|i| {
            let mut z = h.wrapping_add((i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)).to_le_bytes()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_for_its_writer_only_once_the_certificate_is_known() {
        let (a, b) = (NodeId::from_bytes([1; 16]), NodeId::from_bytes([2; 16]));
        let sig = SimSigner(a).sign(b"msg");
        assert_eq!(sig.len(), SIGNATURE_BYTES);
        let mut verifier = SimVerifier::default();
        assert_eq!(verifier.verify(&a, b"msg", &sig), Verdict::Unknown);
        assert_eq!(verifier.learn(&a, &cert(&b)), CertCheck::Invalid);
        assert_eq!(verifier.learn(&a, &cert(&a)), CertCheck::New);
        assert_eq!(verifier.learn(&a, &cert(&a)), CertCheck::Known);
        assert_eq!(verifier.verify(&a, b"msg", &sig), Verdict::Valid);
        assert_eq!(verifier.verify(&a, b"other", &sig), Verdict::Invalid);
        verifier.learn(&b, &cert(&b));
        assert_eq!(verifier.verify(&b, b"msg", &sig), Verdict::Invalid);
    }
}
