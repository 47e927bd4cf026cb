//! The join service: how a new peer is admitted, and how any peer learns a seed's identity.
//!
//! A joiner dials the seed with the token's client configuration (the seed must show a
//! certificate signed by the CA the token pins), proves it knows the secret with an HMAC
//! over keying material exported from this very TLS session (so the proof cannot be
//! replayed elsewhere), and sends a fresh public key. The seed chooses the new node's id
//! (a fresh random one that no member, record or revocation it knows holds: identity is
//! assigned, never claimed, so a certificate is only ever issued for a fresh id) and
//! answers with that id, a certificate for it, and the cluster's credentials.
//!
//! The secret is the one in force at the seed (see [`super::join_secret`]): after a
//! rotation, an old token is refused as soon as the rotation reached the seed.

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
const PROOF_LABEL: &[u8] = b"knit join proof v2";
/// Fresh ids drawn at most for one admission (a collision of 128 random bits is already
/// out of reach; this bounds the loop).
const DRAWS_MAX: usize = 16;

/// A request on the join service.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum JoinRequest {
    /// Who are you? (Members ask it to announce themselves to a seed.)
    Hello,
    /// Admit me.
    Join {
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
        node: NodeId,
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

/// Decodes a request as the join service reads it, without answering it: the decoder any
/// host that reaches the join service feeds, for fuzzing (the message types stay private).
pub fn decode_request(bytes: &[u8]) -> Result<(), crate::codec::CodecError> {
    crate::codec::decode_large::<JoinRequest>(bytes).map(drop)
}

/// Decodes a seed's answer as a joiner reads it, without acting on it; for fuzzing.
pub fn decode_response(bytes: &[u8]) -> Result<(), crate::codec::CodecError> {
    crate::codec::decode_large::<JoinResponse>(bytes).map(drop)
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

fn keying_material(conn: &quinn::Connection) -> Option<[u8; 32]> {
    let mut material = [0u8; 32];
    conn.export_keying_material(&mut material, PROOF_LABEL, b"join")
        .ok()?;
    Some(material)
}

fn proof(conn: &quinn::Connection, secret: &[u8; 16]) -> Option<[u8; 32]> {
    let material = keying_material(conn)?;
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

/// Joins the cluster of `token` through the seed at `addr`; returns the node id the seed
/// assigned, the new member's credentials and the seed's identity. Nothing is written
/// anywhere.
pub async fn join(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    token: &JoinToken,
) -> Result<(NodeId, Credentials, PeerId), JoinError> {
    let conn = dial(endpoint, tls::token_client_config(token.ca_digest)?, addr).await?;
    let proof = proof(&conn, &token.secret).ok_or_else(|| JoinError::Handshake {
        addr,
        detail: "cannot export keying material".into(),
    })?;
    let (node_key_pem, public_key) = tls::generate_node_key()?;
    let request = JoinRequest::Join { public_key, proof };
    let response = exchange(&conn, addr, &request).await;
    conn.close(0u32.into(), b"joined");
    match response? {
        JoinResponse::Admitted {
            node,
            cluster_id,
            ca_der,
            ca_key_pem,
            node_cert_der,
            secret,
            seed,
        } => Ok((
            node,
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

/// What the join service needs to know of the member answering.
pub(crate) struct Admission<'a> {
    /// The member's credentials (the CA key signs the new certificate).
    pub(crate) creds: &'a Credentials,
    /// The member's identity, for `Hello`.
    pub(crate) me: PeerId,
    /// The join secret in force.
    pub(crate) secret: [u8; 16],
    /// Whether a node id is held by a member, a record or a revocation.
    pub(crate) taken: &'a dyn Fn(&NodeId) -> bool,
}

/// A fresh node id: random, and not `taken`; `None` if [`DRAWS_MAX`] draws all were.
pub(crate) fn draw_node_id(
    rng: &mut impl rand::Rng,
    taken: &dyn Fn(&NodeId) -> bool,
) -> Option<NodeId> {
    (0..DRAWS_MAX)
        .map(|_| NodeId::random(rng))
        .find(|node| !taken(node))
}

/// Answers one request on the join service.
pub(crate) fn answer(
    conn: &quinn::Connection,
    admission: &Admission<'_>,
    request: JoinRequest,
) -> JoinResponse {
    match request {
        JoinRequest::Hello => JoinResponse::Hello(admission.me),
        JoinRequest::Join {
            public_key,
            proof: claimed,
        } => {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &admission.secret);
            let valid = keying_material(conn)
                .is_some_and(|m| ring::hmac::verify(&key, &m, &claimed).is_ok());
            if !valid {
                return JoinResponse::Refused(
                    "wrong join token (or one rotated away): get the current one with `knit token` on a member".into(),
                );
            }
            let Some(node) = draw_node_id(&mut rand::rng(), admission.taken) else {
                return JoinResponse::Refused("no free node id was found; try again".into());
            };
            let creds = admission.creds;
            match tls::issue_node_cert(&creds.cluster_id, &creds.ca_key_pem, &node, &public_key) {
                Ok(node_cert_der) => JoinResponse::Admitted {
                    node,
                    cluster_id: creds.cluster_id.clone(),
                    ca_der: creds.ca_der.clone(),
                    ca_key_pem: creds.ca_key_pem.clone(),
                    node_cert_der,
                    secret: admission.secret,
                    seed: admission.me,
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
            public_key: vec![4; 65],
            proof: [7; 32],
        };
        let bytes = crate::codec::encode_large(&request).unwrap();
        let back: JoinRequest = crate::codec::decode_large(&bytes).unwrap();
        assert!(matches!(back, JoinRequest::Join { proof, .. } if proof == [7; 32]));
        assert!(crate::codec::decode_large::<JoinRequest>(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn a_drawn_id_is_never_one_already_held() {
        use rand::SeedableRng;
        let held: std::cell::RefCell<Vec<NodeId>> = std::cell::RefCell::default();
        // Every id is "held" the first time it is seen: the draw must go on to a new one.
        let taken = |node: &NodeId| {
            let mut held = held.borrow_mut();
            let first = held.len() < 3;
            held.push(*node);
            first
        };
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let node = draw_node_id(&mut rng, &taken).unwrap();
        assert_eq!(held.borrow().len(), 4);
        assert_eq!(held.borrow()[3], node);
        assert!(!held.borrow()[..3].contains(&node));
        assert_eq!(
            draw_node_id(&mut rng, &|_| true),
            None,
            "all held: refused, bounded"
        );
    }
}
