//! Who a peer is: a node id kept for life in the data dir, and the foca identity that adds
//! where to reach it and which incarnation of the process it is.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A node's permanent id: 128 random bits, written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId([u8; 16]);

/// Byte order, compared as one integer (member tables look ids up constantly).
impl Ord for NodeId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        u128::from_be_bytes(self.0).cmp(&u128::from_be_bytes(other.0))
    }
}

impl PartialOrd for NodeId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl NodeId {
    /// A node id from its bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// A fresh random node id.
    pub fn random(rng: &mut impl rand::Rng) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The id's bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The first 12 hex digits, as `node ls` shows it (like Docker's short ids).
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(12);
        s
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Into a buffer on the stack: ids are formatted into keys on every reading of
        // the store, and `hex::encode` builds its string a char at a time.
        let mut text = [0_u8; 32];
        hex::encode_to_slice(self.0, &mut text).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// A node id could not be read from text.
#[derive(Debug, thiserror::Error)]
#[error("invalid node id {0:?}: expected 32 hex digits")]
pub struct ParseNodeIdError(String);

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(s.trim(), &mut bytes).map_err(|_| ParseNodeIdError(s.to_owned()))?;
        Ok(Self(bytes))
    }
}

/// The identity foca gossips: the node id, where to reach it, and its epoch.
///
/// Two identities with the same node id are the same member (foca's `Addr` is the node id);
/// the one with the higher epoch wins, so a restarted node, or one wrongly declared down,
/// comes back as itself and never as a phantom second member.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerId {
    /// The permanent node id.
    pub node: NodeId,
    /// The address peers dial to reach this node (QUIC, UDP).
    pub addr: SocketAddr,
    /// Bumped on every start and on every rejoin after being declared down.
    pub epoch: u64,
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.node.short(), self.addr, self.epoch)
    }
}

impl foca::Identity for PeerId {
    type Addr = NodeId;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            epoch: self.epoch + 1,
            ..*self
        })
    }

    fn addr(&self) -> NodeId {
        self.node
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.epoch > adversary.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    fn peer(byte: u8, epoch: u64) -> PeerId {
        PeerId {
            node: NodeId::from_bytes([byte; 16]),
            addr: "127.0.0.1:7946".parse().unwrap(),
            epoch,
        }
    }

    #[test]
    fn node_ids_order_as_their_bytes() {
        let ids = [[0u8; 16], [1; 16], [0x7f; 16], [0x80; 16], [0xff; 16]];
        let mut shuffled: Vec<[u8; 16]> = ids.iter().rev().copied().collect();
        let mut tail = [0u8; 16];
        tail[15] = 1;
        shuffled.push(tail);
        let mut by_id: Vec<NodeId> = shuffled.iter().map(|b| NodeId::from_bytes(*b)).collect();
        by_id.sort();
        shuffled.sort();
        let by_bytes: Vec<NodeId> = shuffled.iter().map(|b| NodeId::from_bytes(*b)).collect();
        assert_eq!(by_id, by_bytes);
    }

    #[test]
    fn node_id_round_trips_through_text() {
        let id = NodeId::from_bytes([0xab; 16]);
        assert_eq!(id.to_string().len(), 32);
        assert_eq!(id.to_string().parse::<NodeId>().unwrap(), id);
        assert_eq!(id.short(), "abababababab");
        assert!("xyz".parse::<NodeId>().is_err());
    }

    #[test]
    fn renew_bumps_epoch_and_higher_epoch_wins() {
        let old = peer(1, 4);
        let new = old.renew().unwrap();
        assert_eq!(new.epoch, 5);
        assert_eq!(new.addr(), old.addr());
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }
}
