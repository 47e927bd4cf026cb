//! The cluster's certificate authority, node certificates, and the rustls configurations
//! that make every gossip connection mutual TLS against the cluster CA.
//!
//! Node certificates carry two DNS names: `<node id>.node.knit`, which binds a certificate
//! to one node, and `node.knit`, which any member answers to. Peers dial a member by its
//! node name, so the server side is checked against the node it should be; the client
//! side's node id is checked against the id its packets claim.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::id::NodeId;

/// ALPN of gossip connections (members only, mutual TLS).
pub const GOSSIP_ALPN: &[u8] = b"knit/1";
/// ALPN of the join service (hello and admission; a client certificate is optional).
pub const JOIN_ALPN: &[u8] = b"knit-join/1";
/// The DNS name every member's certificate carries.
pub const ANY_MEMBER_NAME: &str = "node.knit";

/// The DNS name that binds a certificate to one node.
pub fn node_name(node: &NodeId) -> String {
    format!("{node}.{ANY_MEMBER_NAME}")
}

/// Certificates and keys could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen failed to make a key or certificate.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused a configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// A stored key or certificate does not parse.
    #[error("invalid {what} in the data dir: {detail}")]
    Invalid {
        /// Which item.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of a DER certificate: the digest a join token pins.
pub fn cert_digest(der: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

pub(crate) fn ca_params(cluster_id: &str) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("knit cluster {cluster_id}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(params)
}

/// A new cluster CA: its certificate (DER) and key (PKCS#8 PEM).
pub fn generate_ca(cluster_id: &str) -> Result<(Vec<u8>, String), TlsError> {
    let key = KeyPair::generate()?;
    let cert = ca_params(cluster_id)?.self_signed(&key)?;
    Ok((cert.der().to_vec(), key.serialize_pem()))
}

/// A node's new key pair: its PKCS#8 PEM and the raw public key to have certified.
pub fn generate_node_key() -> Result<(String, Vec<u8>), TlsError> {
    let key = KeyPair::generate()?;
    Ok((key.serialize_pem(), key.public_key_raw().to_vec()))
}

/// A public key received from a joining node (P-256, raw point).
pub(crate) struct RemoteKey(pub(crate) Vec<u8>);

impl PublicKeyData for RemoteKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// Signs a node certificate for `node`'s public key with the cluster CA.
pub fn issue_node_cert(
    cluster_id: &str,
    ca_key_pem: &str,
    node: &NodeId,
    public_key: &[u8],
) -> Result<Vec<u8>, TlsError> {
    if public_key.len() != 65 || public_key[0] != 4 {
        return Err(TlsError::Invalid {
            what: "public key",
            detail: "expected an uncompressed P-256 point".into(),
        });
    }
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| TlsError::Invalid {
        what: "CA key",
        detail: e.to_string(),
    })?;
    let issuer = Issuer::new(ca_params(cluster_id)?, ca_key);
    let mut params = CertificateParams::new(vec![node_name(node), ANY_MEMBER_NAME.to_owned()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, node.to_string());
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let cert = params.signed_by(&RemoteKey(public_key.to_vec()), &issuer)?;
    Ok(cert.der().to_vec())
}

pub(crate) fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let key = KeyPair::from_pem(pem).map_err(|e| TlsError::Invalid {
        what: "node key",
        detail: e.to_string(),
    })?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        key.serialize_der(),
    )))
}

pub(crate) fn roots(ca_der: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .map_err(|e| TlsError::Invalid {
            what: "CA certificate",
            detail: e.to_string(),
        })?;
    Ok(Arc::new(roots))
}

/// What a member presents and trusts.
#[derive(Clone)]
pub struct MemberTls {
    ca_der: Vec<u8>,
    chain: Vec<CertificateDer<'static>>,
    key_pem: String,
}

impl std::fmt::Debug for MemberTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberTls").finish_non_exhaustive()
    }
}

impl MemberTls {
    /// From the CA certificate, this node's certificate (both DER) and key (PEM).
    pub fn new(ca_der: &[u8], node_cert_der: &[u8], node_key_pem: &str) -> Self {
        Self {
            ca_der: ca_der.to_vec(),
            chain: vec![
                CertificateDer::from(node_cert_der.to_vec()),
                CertificateDer::from(ca_der.to_vec()),
            ],
            key_pem: node_key_pem.to_owned(),
        }
    }

    /// The server side: gossip needs a client certificate from the cluster CA (checked
    /// again per connection); the join service accepts clients without one.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(roots(&self.ca_der)?, provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Invalid {
                    what: "CA certificate",
                    detail: e.to_string(),
                })?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), private_key(&self.key_pem)?)?;
        config.alpn_protocols = vec![GOSSIP_ALPN.to_vec(), JOIN_ALPN.to_vec()];
        Ok(config)
    }

    /// The client side towards another member, presenting this node's certificate.
    pub fn client_config(&self, alpn: &[u8]) -> Result<rustls::ClientConfig, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots(&self.ca_der)?)
            .with_client_auth_cert(self.chain.clone(), private_key(&self.key_pem)?)?;
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(config)
    }
}

/// The client side of a join with a token: trusts the seed only if its chain holds the CA
/// whose digest the token pins, and the seed's certificate is signed by it.
pub fn token_client_config(ca_digest: [u8; 32]) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCaVerifier {
            ca_digest,
            provider,
        }))
        .with_no_client_auth();
    config.alpn_protocols = vec![JOIN_ALPN.to_vec()];
    Ok(config)
}

#[derive(Debug)]
struct PinnedCaVerifier {
    ca_digest: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|cert| cert_digest(cert) == self.ca_digest)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the seed's certificate is not from the cluster named by the join token \
                     (wrong seed address, or a token from another cluster)"
                        .into(),
                )
            })?;
        let roots = roots(ca).map_err(|e| rustls::Error::General(e.to_string()))?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots,
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Whether a certificate the CA already vouched for (rustls checked the chain during the
/// handshake) names `node`.
pub fn cert_names_node(cert_der: &[u8], node: &NodeId) -> bool {
    let der = CertificateDer::from(cert_der);
    let Ok(cert) = webpki::EndEntityCert::try_from(&der) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(node_name(node)) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}

/// The end-entity certificate a connection's peer presented, if any.
pub fn peer_cert(identity: Option<Box<dyn std::any::Any>>) -> Option<Vec<u8>> {
    let chain = identity?.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    chain.first().map(|c| c.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_certificates_bind_to_their_node() {
        let (ca_der, ca_key) = generate_ca("test").unwrap();
        let node = NodeId::from_bytes([3; 16]);
        let other = NodeId::from_bytes([4; 16]);
        let (_key, public) = generate_node_key().unwrap();
        let cert = issue_node_cert("test", &ca_key, &node, &public).unwrap();
        assert!(cert_names_node(&cert, &node));
        assert!(!cert_names_node(&cert, &other));
        assert_eq!(cert_digest(&ca_der).len(), 32);
        assert!(issue_node_cert("test", &ca_key, &node, b"short").is_err());
    }
}
