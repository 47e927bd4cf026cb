//! Whether a host's view of the members has had time to agree with the others'.
//!
//! A member that joins or returns reaches every host's view at a slightly different
//! moment; a host that placed at once would move slots the others do not move yet. So
//! after a join or return nothing moves for [`SETTLE_MS`]. A departure needs no wait: every
//! view loses the member. A member that comes back more than [`FLAP_RETURNS_MAX`] times
//! within [`FLAP_WINDOW_MS`] is flapping: its returns are not waited for, or it would hold
//! every change up. A restarted host that knows other members but is not connected to them
//! yet waits up to [`REJOIN_WAIT_MS`] before it acts alone on what it knows.

use std::collections::BTreeMap;

use super::{Members, Note};
use crate::node::NodeId;
pub use crate::reconcile::pace::SETTLE_MS;

/// The window in which a member's returns are counted (ms).
pub const FLAP_WINDOW_MS: u64 = 30_000;
/// Returns within [`FLAP_WINDOW_MS`] past which a member is flapping.
pub const FLAP_RETURNS_MAX: usize = 3;
/// How long a restarted host waits to find the cluster it knew before it acts alone (ms).
pub const REJOIN_WAIT_MS: u64 = 10_000;

/// The settle state of one host.
#[derive(Debug)]
pub struct Settle {
    /// Active members and their epochs at the last check, to notice joins and returns.
    members: BTreeMap<NodeId, u64>,
    /// When each member joined or returned lately (within [`FLAP_WINDOW_MS`]).
    returns: BTreeMap<NodeId, Vec<u64>>,
    /// No action before this (ms).
    until_ms: u64,
    /// When the host started (ms), for [`REJOIN_WAIT_MS`].
    started_ms: u64,
}

impl Settle {
    /// A host that starts at `now_ms`: it waits [`SETTLE_MS`] before its first move.
    pub fn new(now_ms: u64) -> Self {
        Self {
            members: BTreeMap::new(),
            returns: BTreeMap::new(),
            until_ms: now_ms + SETTLE_MS,
            started_ms: now_ms,
        }
    }

    /// Takes the members seen now; true when the host may act.
    pub fn check(&mut self, members: &Members, now_ms: u64) -> (bool, Vec<Note>) {
        let mut notes = Vec::new();
        self.returns.retain(|_, times| {
            times
                .last()
                .is_some_and(|t| now_ms.saturating_sub(*t) < FLAP_WINDOW_MS)
        });
        if self.members != members.active {
            for (node, _) in members
                .active
                .iter()
                .filter(|(node, epoch)| self.members.get(*node) != Some(*epoch))
            {
                let times = self.returns.entry(node.clone()).or_default();
                times.retain(|t| now_ms.saturating_sub(*t) < FLAP_WINDOW_MS);
                times.push(now_ms);
                if times.len() <= FLAP_RETURNS_MAX {
                    self.until_ms = self.until_ms.max(now_ms + SETTLE_MS);
                } else if times.len() == FLAP_RETURNS_MAX + 1 {
                    notes.push(Note::Flapping {
                        node: node.clone(),
                        returns: times.len(),
                    });
                }
            }
            self.members.clone_from(&members.active);
        }
        let alone = !members.connected;
        if members.knows_others && alone && now_ms.saturating_sub(self.started_ms) < REJOIN_WAIT_MS
        {
            return (false, notes);
        }
        (now_ms >= self.until_ms, notes)
    }

    /// When the host may act next, if it is waiting for views to settle (ms).
    pub fn until_ms(&self) -> u64 {
        self.until_ms
    }
}
