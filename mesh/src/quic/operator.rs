//! The operators' side of the cluster CA: client certificates for the admin API when it
//! listens on TCP, and the TLS configurations of that API.
//!
//! The API over TCP is always mutual TLS, as Docker's remote API is with `--tlsverify`:
//! the peer shows its node certificate (every member's carries the name [`API_SERVER_NAME`])
//! and asks for a client certificate signed by the cluster CA. Operators get one from
//! [`issue_client_cert`] on any member; the private key is made on the operator's side
//! ([`new_client_key`]) and never travels.

use rcgen::{CertificateParams, DnType, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::credentials::Credentials;
use super::tls::{self, ANY_MEMBER_NAME, RemoteKey, TlsError};

/// The name a client checks the API's certificate against: every member's certificate
/// carries it, so a client reaches any member by any address.
pub const API_SERVER_NAME: &str = ANY_MEMBER_NAME;

/// The suffix of the DNS name in an operator's certificate (`alice.client.knit`). It can
/// never name a node (`<node id>.node.knit`), so a client certificate cannot gossip.
const CLIENT_NAME_SUFFIX: &str = "client.knit";

/// The longest operator name a certificate is issued for.
pub const CLIENT_NAME_MAX_BYTES: usize = 63;

/// Whether `name` may name an operator: a DNS label of letters, digits and `-`.
pub fn valid_client_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= CLIENT_NAME_MAX_BYTES
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// An operator's new key pair: its PKCS#8 PEM, and the raw public key to have certified.
pub fn new_client_key() -> Result<(String, Vec<u8>), TlsError> {
    tls::generate_node_key()
}

/// Signs a client certificate for operator `name`'s P-256 `public_key` with the cluster CA
/// held in `creds`; returns it as PEM.
pub fn issue_client_cert(
    creds: &Credentials,
    name: &str,
    public_key: &[u8],
) -> Result<String, TlsError> {
    if !valid_client_name(name) {
        return Err(TlsError::Invalid {
            what: "client name",
            detail: format!(
                "{name:?}: use 1 to {CLIENT_NAME_MAX_BYTES} letters, digits or '-', e.g. alice"
            ),
        });
    }
    if public_key.len() != 65 || public_key[0] != 4 {
        return Err(TlsError::Invalid {
            what: "public key",
            detail: "expected an uncompressed P-256 point".into(),
        });
    }
    let ca_key = KeyPair::from_pem(&creds.ca_key_pem).map_err(|e| TlsError::Invalid {
        what: "CA key",
        detail: e.to_string(),
    })?;
    let issuer = Issuer::new(tls::ca_params(&creds.cluster_id)?, ca_key);
    let mut params = CertificateParams::new(vec![format!("{name}.{CLIENT_NAME_SUFFIX}")])?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("knit operator {name}"));
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let cert = params.signed_by(&RemoteKey(public_key.to_vec()), &issuer)?;
    Ok(cert.pem())
}

/// The cluster CA certificate as PEM (`ca.pem` in a client's TLS dir).
pub fn ca_pem(creds: &Credentials) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", creds.ca_der.clone()))
}

/// The API's server side: this node's certificate; a client certificate from the cluster
/// CA is required (no certificate, no handshake).
pub fn api_server_config(creds: &Credentials) -> Result<rustls::ServerConfig, TlsError> {
    let provider = tls::provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(tls::roots(&creds.ca_der)?, provider.clone())
            .build()
            .map_err(|e| TlsError::Invalid {
                what: "CA certificate",
                detail: e.to_string(),
            })?;
    let chain = vec![
        CertificateDer::from(creds.node_cert_der.clone()),
        CertificateDer::from(creds.ca_der.clone()),
    ];
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, tls::private_key(&creds.node_key_pem)?)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn invalid(what: &'static str, e: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid {
        what,
        detail: e.to_string(),
    }
}

/// The API's client side, from the PEM files of a client TLS dir: trusts members of the
/// cluster whose CA is `ca_pem`, and presents `cert_pem` with `key_pem`. Connect with the
/// server name [`API_SERVER_NAME`].
pub fn api_client_config(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<rustls::ClientConfig, TlsError> {
    let ca = CertificateDer::from_pem_slice(ca_pem).map_err(|e| invalid("ca.pem", e))?;
    let cert = CertificateDer::from_pem_slice(cert_pem).map_err(|e| invalid("cert.pem", e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid("key.pem", e))?;
    let mut config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(tls::roots(&ca)?)
        .with_client_auth_cert(vec![cert], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::NodeId;

    #[test]
    fn operator_names_are_dns_labels() {
        assert!(valid_client_name("alice"));
        assert!(valid_client_name("ci-bot-2"));
        for bad in ["", "-a", "a-", "a.b", "a b", &"x".repeat(64)] {
            assert!(!valid_client_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn client_certificates_chain_to_the_cluster_and_never_name_a_node() {
        let node = NodeId::from_bytes([5; 16]);
        let creds = Credentials::create_cluster(&node, [2; 16]).unwrap();
        let (key_pem, public) = new_client_key().unwrap();
        let cert_pem = issue_client_cert(&creds, "alice", &public).unwrap();
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        assert!(!tls::cert_names_node(&der, &node));
        // Both sides build: the server asks for it, the client presents it.
        api_server_config(&creds).unwrap();
        api_client_config(
            ca_pem(&creds).as_bytes(),
            cert_pem.as_bytes(),
            key_pem.as_bytes(),
        )
        .unwrap();
        assert!(issue_client_cert(&creds, "bad name", &public).is_err());
        assert!(issue_client_cert(&creds, "alice", b"short").is_err());
        assert!(api_client_config(b"not pem", cert_pem.as_bytes(), key_pem.as_bytes()).is_err());
    }
}
