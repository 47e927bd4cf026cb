//! How store entries are signed: the bytes a writer signs ([`signed_message`]), the
//! [`Signer`] that signs them, and the node-owned record that holds each node's
//! certificate. Checking signatures is the trust gate's ([`crate::trust`]); the store
//! only signs its own writes.

use super::{Stamp, key_owner, owned_key};
use crate::id::NodeId;

/// Length of a signature: ECDSA P-256 with SHA-256, `r || s`.
pub const SIGNATURE_BYTES: usize = 64;

/// The node-owned record that holds a node's certificate (DER).
pub const CERT_RECORD: &str = ".cert";

/// Separates store signatures from anything else a node key signs.
pub(crate) const DOMAIN: &[u8] = b"knit store delta v1\0";

/// The key of `node`'s certificate record.
pub fn cert_key(node: &NodeId) -> String {
    owned_key(node, CERT_RECORD)
}

/// The node whose certificate record `key` is.
pub fn cert_owner(key: &str) -> Option<NodeId> {
    let owner = key_owner(key)?;
    (key == cert_key(&owner)).then_some(owner)
}

/// The bytes a writer signs for a write of `key` (a tombstone when `value` is `None`).
pub fn signed_message(key: &str, stamp: &Stamp, value: Option<&[u8]>) -> Vec<u8> {
    let len = |n: usize| u64::try_from(n).unwrap_or(u64::MAX).to_le_bytes();
    let mut out = Vec::with_capacity(DOMAIN.len() + key.len() + value.map_or(0, <[u8]>::len) + 50);
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(&len(key.len()));
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&stamp.clock.to_le_bytes());
    out.extend_from_slice(stamp.writer.as_bytes());
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            out.extend_from_slice(&len(value.len()));
            out.extend_from_slice(value);
        }
    }
    out
}

/// Signs with this node's key.
pub trait Signer {
    /// The signature of `message` ([`SIGNATURE_BYTES`] long; empty only if the system
    /// could not sign, which the implementation logs).
    fn sign(&self, message: &[u8]) -> Vec<u8>;
}
