//! The keys behind [`crate::trust`]: this node's signer (its node key), and the book of
//! other nodes' public keys, each learnt from a certificate verified under the cluster CA.

use std::collections::BTreeMap;

use rcgen::KeyPair;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, UnparsedPublicKey};
use rustls::pki_types::{CertificateDer, UnixTime};

use super::tls::{self, TlsError};
use crate::id::NodeId;
use crate::trust::{CertCheck, Signer, Verdict, Verifier};

/// Public keys kept at most; certificates past it are not learnt (their writes stay
/// parked). Only the cluster CA issues certificates, one per admitted node.
pub const KEYS_MAX: usize = 65_536;

/// The DER prefix of a P-256 SubjectPublicKeyInfo, before its 65-byte point.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Signs store deltas with this node's key.
pub struct NodeSigner {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for NodeSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSigner").finish_non_exhaustive()
    }
}

impl NodeSigner {
    /// From the node key (PKCS#8 PEM, P-256).
    pub fn new(node_key_pem: &str) -> Result<Self, TlsError> {
        let invalid = |detail: String| TlsError::Invalid {
            what: "node key",
            detail,
        };
        let der = KeyPair::from_pem(node_key_pem)
            .map_err(|e| invalid(e.to_string()))?
            .serialize_der();
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|e| invalid(format!("not a P-256 key: {e}")))?;
        Ok(Self { key, rng })
    }
}

impl Signer for NodeSigner {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self.key.sign(&self.rng, message) {
            Ok(sig) => sig.as_ref().to_vec(),
            Err(_) => {
                tracing::error!(
                    "cannot sign a store write (the system's random source failed): other members will refuse it"
                );
                Vec::new()
            }
        }
    }
}

/// The public keys of the nodes whose certificates this node checked.
#[derive(Debug)]
pub struct KeyBook {
    ca_der: Vec<u8>,
    keys: BTreeMap<NodeId, [u8; 65]>,
}

impl KeyBook {
    /// An empty book trusting the cluster CA `ca_der`.
    pub fn new(ca_der: &[u8]) -> Self {
        Self {
            ca_der: ca_der.to_vec(),
            keys: BTreeMap::new(),
        }
    }

    /// The number of keys known.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is known.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The P-256 point of a certificate that the cluster CA `ca_der` issued for `node`.
fn certified_key(ca_der: &[u8], node: &NodeId, cert_der: &[u8]) -> Option<[u8; 65]> {
    let ca = CertificateDer::from(ca_der);
    let anchor = webpki::anchor_from_trusted_cert(&ca).ok()?;
    let der = CertificateDer::from(cert_der);
    let cert = webpki::EndEntityCert::try_from(&der).ok()?;
    cert.verify_for_usage(
        &[webpki::ring::ECDSA_P256_SHA256],
        &[anchor],
        &[],
        UnixTime::now(),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .ok()?;
    if !tls::cert_names_node(cert_der, node) {
        return None;
    }
    let spki = cert.subject_public_key_info();
    let point = spki.as_ref().strip_prefix(P256_SPKI_PREFIX)?;
    point.try_into().ok()
}

impl Verifier for KeyBook {
    fn learn(&mut self, node: &NodeId, cert_der: &[u8]) -> CertCheck {
        if self.keys.contains_key(node) {
            // A node has one certificate for life; its signature decides on the record.
            return CertCheck::Known;
        }
        let Some(key) = certified_key(&self.ca_der, node, cert_der) else {
            return CertCheck::Invalid;
        };
        if self.keys.len() >= KEYS_MAX {
            tracing::warn!(node = %node.short(), "too many node keys; this one is not learnt");
            return CertCheck::Known;
        }
        self.keys.insert(*node, key);
        CertCheck::New
    }

    fn verify(&self, writer: &NodeId, message: &[u8], sig: &[u8]) -> Verdict {
        let Some(key) = self.keys.get(writer) else {
            return Verdict::Unknown;
        };
        match UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, key).verify(message, sig)
        {
            Ok(()) => Verdict::Valid,
            Err(_) => Verdict::Invalid,
        }
    }

    fn knows(&self, node: &NodeId) -> bool {
        self.keys.contains_key(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quic::credentials::Credentials;

    #[test]
    fn a_node_key_signs_what_its_certificate_verifies() {
        let node = NodeId::from_bytes([1; 16]);
        let creds = Credentials::create_cluster(&node, [0; 16]).unwrap();
        let signer = NodeSigner::new(&creds.node_key_pem).unwrap();
        let sig = signer.sign(b"hello");
        assert_eq!(sig.len(), crate::trust::SIGNATURE_BYTES);
        let mut book = KeyBook::new(&creds.ca_der);
        assert_eq!(book.verify(&node, b"hello", &sig), Verdict::Unknown);
        assert_eq!(book.learn(&node, &creds.node_cert_der), CertCheck::New);
        assert_eq!(book.learn(&node, &creds.node_cert_der), CertCheck::Known);
        assert!(book.knows(&node));
        assert_eq!(book.verify(&node, b"hello", &sig), Verdict::Valid);
        assert_eq!(book.verify(&node, b"hellO", &sig), Verdict::Invalid);
        assert_eq!(book.verify(&node, b"hello", &sig[1..]), Verdict::Invalid);
    }

    #[test]
    fn only_certificates_of_the_cluster_ca_for_their_node_are_learnt() {
        let node = NodeId::from_bytes([1; 16]);
        let other = NodeId::from_bytes([2; 16]);
        let creds = Credentials::create_cluster(&node, [0; 16]).unwrap();
        let foreign = Credentials::create_cluster(&node, [0; 16]).unwrap();
        let mut book = KeyBook::new(&creds.ca_der);
        assert_eq!(
            book.learn(&other, &creds.node_cert_der),
            CertCheck::Invalid,
            "another node's"
        );
        assert_eq!(
            book.learn(&node, &foreign.node_cert_der),
            CertCheck::Invalid,
            "another CA's"
        );
        assert_eq!(book.learn(&node, b"not a certificate"), CertCheck::Invalid);
        assert_eq!(
            book.learn(&node, &creds.ca_der),
            CertCheck::Invalid,
            "the CA itself"
        );
        assert!(book.is_empty());
    }
}
