//! The join service: how a new peer is admitted, and how any peer learns a seed's identity.
//!
//! A joiner dials the seed with the token's client configuration (the seed must show a
//! certificate signed by the CA the token pins), proves it knows the secret with an HMAC
//! over keying material exported from this very TLS session (so the proof cannot be
//! replayed elsewhere), and sends a fresh public key. The seed answers with a certificate
//! for it, bound to the joiner's node id, and the cluster's credentials.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::credentials::Credentials;
use super::frame::{self, FrameError};
use super::tls::{self, ANY_MEMBER_NAME, TlsError};
use crate::id::{NodeId, PeerId};
use crate::token::JoinToken;

/// How long a dial to a seed may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
const PROOF_LABEL: &[u8] = b"knit join proof v1";

/// A request on the join service.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum JoinRequest {
    /// Who are you? (Members ask it to announce themselves to a seed.)
    Hello,
    /// Admit me.
    Join {
        node: NodeId,
        public_key: Vec<u8>,
        proof: [u8; 32],
    },
}

/// The join service's answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum JoinResponse {
    /// The seed's identity.
    Hello(PeerId),
    /// Admitted: everything a member holds, and the seed's identity.
    Admitted {
        cluster_id: String,
        ca_der: Vec<u8>,
        ca_key_pem: String,
        node_cert_der: Vec<u8>,
        secret: [u8; 16],
        seed: PeerId,
    },
    /// Refused, with the reason.
    Refused(String),
}

/// Joining failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// No QUIC connection to the seed.
    #[error(
        "cannot reach the seed at {addr}: {detail}; check the address and that `knit up` runs there"
    )]
    Unreachable {
        /// The seed's address.
        addr: SocketAddr,
        /// What failed.
        detail: String,
    },
    /// The seed is not the cluster the token names, or TLS failed.
    #[error("secure connection to {addr} failed: {detail}")]
    Handshake {
        /// The seed's address.
        addr: SocketAddr,
        /// What failed.
        detail: String,
    },
    /// The seed said no.
    #[error("the seed at {addr} refused to admit this node: {reason}")]
    Refused {
        /// The seed's address.
        addr: SocketAddr,
        /// Its reason.
        reason: String,
    },
    /// The exchange broke off.
    #[error("join exchange with {addr} failed: {source}")]
    Exchange {
        /// The seed's address.
        addr: SocketAddr,
        /// What failed.
        source: FrameError,
    },
    /// Keys could not be made.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

fn keying_material(conn: &quinn::Connection, node: &NodeId) -> Option<[u8; 32]> {
    let mut material = [0u8; 32];
    conn.export_keying_material(&mut material, PROOF_LABEL, node.as_bytes())
        .ok()?;
    Some(material)
}

fn proof(conn: &quinn::Connection, secret: &[u8; 16], node: &NodeId) -> Option<[u8; 32]> {
    let material = keying_material(conn, node)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, &material);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    Some(out)
}

async fn dial(
    endpoint: &quinn::Endpoint,
    config: rustls::ClientConfig,
    addr: SocketAddr,
) -> Result<quinn::Connection, JoinError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config).map_err(|e| {
        JoinError::Handshake {
            addr,
            detail: e.to_string(),
        }
    })?;
    let client = quinn::ClientConfig::new(std::sync::Arc::new(crypto));
    let connecting = endpoint
        .connect_with(client, addr, ANY_MEMBER_NAME)
        .map_err(|e| JoinError::Unreachable {
            addr,
            detail: e.to_string(),
        })?;
    match tokio::time::timeout(DIAL_TIMEOUT, connecting).await {
        Err(_) => Err(JoinError::Unreachable {
            addr,
            detail: format!("no answer within {DIAL_TIMEOUT:?}"),
        }),
        Ok(Err(quinn::ConnectionError::TransportError(e))) => Err(JoinError::Handshake {
            addr,
            detail: e.reason,
        }),
        Ok(Err(e)) => Err(JoinError::Unreachable {
            addr,
            detail: e.to_string(),
        }),
        Ok(Ok(conn)) => Ok(conn),
    }
}

async fn exchange(
    conn: &quinn::Connection,
    addr: SocketAddr,
    request: &JoinRequest,
) -> Result<JoinResponse, JoinError> {
    let fail = |source| JoinError::Exchange { addr, source };
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| fail(FrameError::Stream(e.to_string())))?;
    frame::write(&mut send, request).await.map_err(fail)?;
    let _ = send.finish();
    frame::read(&mut recv).await.map_err(fail)
}

/// Joins the cluster of `token` through the seed at `addr` as `node`; returns the new
/// member's credentials and the seed's identity. Nothing is written anywhere.
pub async fn join(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    token: &JoinToken,
    node: &NodeId,
) -> Result<(Credentials, PeerId), JoinError> {
    let conn = dial(endpoint, tls::token_client_config(token.ca_digest)?, addr).await?;
    let proof = proof(&conn, &token.secret, node).ok_or_else(|| JoinError::Handshake {
        addr,
        detail: "cannot export keying material".into(),
    })?;
    let (node_key_pem, public_key) = tls::generate_node_key()?;
    let request = JoinRequest::Join {
        node: *node,
        public_key,
        proof,
    };
    let response = exchange(&conn, addr, &request).await;
    conn.close(0u32.into(), b"joined");
    match response? {
        JoinResponse::Admitted {
            cluster_id,
            ca_der,
            ca_key_pem,
            node_cert_der,
            secret,
            seed,
        } => Ok((
            Credentials {
                cluster_id,
                ca_der,
                ca_key_pem,
                node_cert_der,
                node_key_pem,
                secret,
            },
            seed,
        )),
        JoinResponse::Refused(reason) => Err(JoinError::Refused { addr, reason }),
        JoinResponse::Hello(_) => Err(JoinError::Refused {
            addr,
            reason: "unexpected answer".into(),
        }),
    }
}

/// Asks the member at `addr` who it is, as a member of the same cluster.
pub async fn hello(
    endpoint: &quinn::Endpoint,
    creds: &Credentials,
    addr: SocketAddr,
) -> Result<PeerId, JoinError> {
    let conn = dial(
        endpoint,
        creds.member_tls().client_config(tls::JOIN_ALPN)?,
        addr,
    )
    .await?;
    let response = exchange(&conn, addr, &JoinRequest::Hello).await;
    conn.close(0u32.into(), b"hello");
    match response? {
        JoinResponse::Hello(peer) => Ok(peer),
        JoinResponse::Refused(reason) => Err(JoinError::Refused { addr, reason }),
        JoinResponse::Admitted { .. } => Err(JoinError::Refused {
            addr,
            reason: "unexpected answer".into(),
        }),
    }
}

/// Answers one request on the join service, as member `me` holding `creds`.
pub(crate) fn answer(
    conn: &quinn::Connection,
    creds: &Credentials,
    me: PeerId,
    request: JoinRequest,
) -> JoinResponse {
    match request {
        JoinRequest::Hello => JoinResponse::Hello(me),
        JoinRequest::Join {
            node,
            public_key,
            proof: claimed,
        } => {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &creds.secret);
            let valid = keying_material(conn, &node)
                .is_some_and(|m| ring::hmac::verify(&key, &m, &claimed).is_ok());
            if !valid {
                return JoinResponse::Refused(
                    "wrong join token: get the current one with `knit token` on a member".into(),
                );
            }
            match tls::issue_node_cert(&creds.cluster_id, &creds.ca_key_pem, &node, &public_key) {
                Ok(node_cert_der) => JoinResponse::Admitted {
                    cluster_id: creds.cluster_id.clone(),
                    ca_der: creds.ca_der.clone(),
                    ca_key_pem: creds.ca_key_pem.clone(),
                    node_cert_der,
                    secret: creds.secret,
                    seed: me,
                },
                Err(e) => JoinResponse::Refused(format!("cannot issue a certificate: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The join service's decoders return errors on arbitrary bytes, never panic.
        #[test]
        fn join_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = crate::codec::decode_large::<JoinRequest>(&bytes);
            let _ = crate::codec::decode_large::<JoinResponse>(&bytes);
        }
    }

    #[test]
    fn join_messages_round_trip() {
        let request = JoinRequest::Join {
            node: NodeId::from_bytes([1; 16]),
            public_key: vec![4; 65],
            proof: [7; 32],
        };
        let bytes = crate::codec::encode_large(&request).unwrap();
        let back: JoinRequest = crate::codec::decode_large(&bytes).unwrap();
        assert!(matches!(back, JoinRequest::Join { proof, .. } if proof == [7; 32]));
        assert!(crate::codec::decode_large::<JoinRequest>(&bytes[..bytes.len() - 1]).is_err());
    }
}
