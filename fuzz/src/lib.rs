//! What knit's fuzz targets share: one input split into several messages, a fixed test
//! cluster (so that checked-in seeds can carry certificates and signatures that verify),
//! and a cheap signer.
//!
//! Every target feeds bytes that a peer, a client or a disk could hand to knit into the
//! real decoder, and then what the peer does next with the value, where that is pure.

use std::sync::OnceLock;

use knit_mesh::quic::Credentials;
use knit_mesh::trust::{SIGNATURE_BYTES, Signer};
use knit_mesh::{NodeId, PeerId};

/// The wall clock every target runs at, in ms since the Unix epoch (2025-06-15).
pub const NOW_MS: u64 = 1_750_000_000_000;

/// Messages read from one input at most.
pub const MESSAGES_MAX: usize = 64;

/// Splits `data` into messages: each is a little-endian `u16` length and that many bytes;
/// a last one shorter than its length takes what is left. At most [`MESSAGES_MAX`].
pub fn messages(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 && out.len() < MESSAGES_MAX {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let body = &rest[2..];
        let (message, next) = body.split_at(len.min(body.len()));
        out.push(message);
        rest = next;
    }
    out
}

/// The input [`messages`] splits into `parts` (for the seed generator).
pub fn join_messages<B: AsRef<[u8]>>(parts: &[B]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let part = part.as_ref();
        let len = u16::try_from(part.len()).expect("a message fits in 64 KiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// The test cluster's credentials (node 1 of the fixed CA in `fixtures/cluster.json`).
/// For fuzzing only: the key is public.
pub fn cluster() -> &'static Credentials {
    static CLUSTER: OnceLock<Credentials> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        serde_json::from_str(include_str!("../fixtures/cluster.json"))
            .expect("fixtures/cluster.json holds credentials")
    })
}

/// Node `b` of the tests: every byte of its id is `b`.
pub fn node(b: u8) -> NodeId {
    NodeId::from_bytes([b; 16])
}

/// Node `b`'s identity at epoch 1, on `127.0.0.<b>:7946`.
pub fn peer(b: u8) -> PeerId {
    PeerId {
        node: node(b),
        addr: std::net::SocketAddr::from(([127, 0, 0, b], 7946)),
        epoch: 1,
    }
}

/// A signer whose signatures are a hash of the message: cheap, and never empty.
#[derive(Debug, Clone, Copy)]
pub struct HashSigner;

impl Signer for HashSigner {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut out = Vec::with_capacity(SIGNATURE_BYTES);
        for &b in message {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        while out.len() < SIGNATURE_BYTES {
            h = h.rotate_left(17).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            out.extend_from_slice(&h.to_le_bytes());
        }
        out.truncate(SIGNATURE_BYTES);
        out
    }
}
