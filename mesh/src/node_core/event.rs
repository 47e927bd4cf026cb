//! What goes into the node core ([`Input`], each with the time) and what comes out
//! ([`Output`]), and the [`View`] of the cluster it publishes.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;

use crate::id::{NodeId, PeerId};
use crate::membership::{Connection, MemberRecord};
use crate::profile::Profile;
use crate::store::{Delta, Freshness, Stamp};

/// What the mesh knows of the cluster, republished on every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// This node's identity.
    pub me: PeerId,
    /// Whether it is in a cluster.
    pub connection: Connection,
    /// The timing profile.
    pub profile: Profile,
    /// Every member ever seen, self included, in node id order.
    pub members: Vec<MemberRecord>,
}

/// Something that happened, handed to [`super::NodeCore::handle`] with the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A gossip packet whose claimed sender the driver checked against its connection.
    Packet(Bytes),
    /// A local write of `key` (a delete with `None`); answered by [`Output::Written`].
    Put {
        /// The key.
        key: String,
        /// The value, or `None` to delete.
        value: Option<Vec<u8>>,
    },
    /// Store deltas from another member (a push, or a chunk of an exchange), for the gate.
    Merge(Vec<Delta>),
    /// The certificate a peer connected with (DER), to learn its key.
    PeerCert {
        /// The node its connection proved to be.
        node: NodeId,
        /// Its certificate.
        cert_der: Vec<u8>,
    },
    /// An exchange (started by either side) completed with a peer of this freshness.
    Synced(Freshness),
    /// The exchange this node started with [`Output::Exchange`] ended, done or failed.
    ExchangeEnded(PeerId),
    /// A push this node started with [`Output::Push`] ended, delivered or not.
    PushEnded,
    /// A seed answered: announce this node to it, then fill the store from it.
    Announce(PeerId),
    /// Leave the cluster: peers see this node `left`.
    Leave,
    /// A timer from [`Output::Timer`] fell due.
    Timer(Timer),
    /// The port of that member refused a datagram sent after [`Output::CheckPort`]: no
    /// process listens there any more.
    Refused(PeerId),
    /// Ask these members for an answer now: a ping in foca's format, which a live member
    /// acks (the reachability check's question; any packet back is the answer).
    Poke(Vec<PeerId>),
}

/// What the core wants done in time; the driver hands it back as [`Input::Timer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// The membership core's timer (foca's, or Lifeguard's).
    Membership(crate::membership::MembershipTimer),
    /// Re-derive member states from foca.
    MemberSync,
    /// Start anti-entropy with one member.
    AntiEntropy,
    /// Collect tombstones past their TTL.
    Collect,
    /// Admit the next chunk of the deltas waiting for the gate.
    Admit,
    /// Fill the store from a seed this node announced to.
    FillFrom(PeerId),
}

/// Something the core wants its driver to do or know; drain them after every input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this gossip packet to that member (unreliably: a datagram).
    Send {
        /// The destination.
        to: PeerId,
        /// foca's packet.
        packet: Bytes,
    },
    /// Check whether anything still listens on that member's port: send one datagram
    /// the peer ignores and answer [`Input::Refused`] if its host refuses it (ICMP port
    /// unreachable). Silence needs no answer.
    CheckPort(PeerId),
    /// Hand this timer back after the delay.
    Timer {
        /// How long from now.
        after: Duration,
        /// The timer to hand back.
        timer: Timer,
    },
    /// Run one anti-entropy exchange with this member, as the initiator, through the
    /// core's `summary`, `exchange` (and the peer's `differ`, `missing`); report its end
    /// with [`Input::ExchangeEnded`]. One at a time.
    Exchange(PeerId),
    /// Send these deltas (a write too big for a rumor) straight to that member; report
    /// the end with [`Input::PushEnded`].
    Push {
        /// The destination.
        to: PeerId,
        /// The write.
        deltas: Vec<Delta>,
    },
    /// The stamp of the local write of the last [`Input::Put`].
    Written(Stamp),
    /// The view changed.
    View(View),
    /// The store changed: republish [`super::NodeCore::store`].
    StoreChanged,
    /// The nodes removed from the cluster so far (it grew): close their connections,
    /// send them nothing and refuse what they send.
    Revoked(BTreeSet<NodeId>),
}
