//! Rumors: small facts that ride on foca's packets as custom broadcasts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::id::{NodeId, PeerId};
use crate::store::{Delta, Stamp};
use crate::traffic::{Direction, Traffic};

/// A fact spread by piggybacking on membership traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rumor {
    /// This incarnation of the node left on purpose: show it `left`, not `down`.
    Leave(PeerId),
    /// A write to the replicated store, small enough to ride along.
    Delta(Delta),
    /// `by` found `suspect` (at foca's `incarnation` of it) silent on its own: its probe
    /// or its direct check went unanswered. Lifeguard counts such confirmations.
    Suspect {
        /// The member under suspicion.
        suspect: PeerId,
        /// foca's incarnation of it when suspected; a refutation raises it.
        incarnation: u16,
        /// The member that vouches for the suspicion.
        by: NodeId,
    },
}

/// What identifies a rumor for foca, so that a newer one replaces an older one in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RumorKey {
    /// A leave of this node at this epoch.
    Leave(NodeId, u64),
    /// A write of this key with this stamp.
    Delta(String, Stamp),
    /// A confirmation of a suspicion: suspect, its epoch and incarnation, confirmer.
    Suspect(NodeId, u64, u16, NodeId),
}

impl foca::Invalidates for RumorKey {
    fn invalidates(&self, other: &Self) -> bool {
        match (self, other) {
            (RumorKey::Leave(a, epoch_a), RumorKey::Leave(b, epoch_b)) => {
                a == b && epoch_a >= epoch_b
            }
            (RumorKey::Delta(a, stamp_a), RumorKey::Delta(b, stamp_b)) => {
                a == b && stamp_a >= stamp_b
            }
            (
                RumorKey::Suspect(a, epoch_a, inc_a, by_a),
                RumorKey::Suspect(b, epoch_b, inc_b, by_b),
            ) => a == b && by_a == by_b && (epoch_a, inc_a) >= (epoch_b, inc_b),
            _ => false,
        }
    }
}

/// foca's broadcast handler: decodes rumors, says which are news, and queues them for
/// the membership core to act on after foca returns. foca owns the handler and gives no
/// access to it, so the core keeps a second handle on the same box.
#[derive(Debug, Default, Clone)]
pub struct RumorBox {
    inner: Arc<Mutex<Rumors>>,
    /// Counts every rumor heard, by record.
    traffic: Arc<Traffic>,
}

/// Keys remembered at most in [`Rumors::seen`]; past it the least recently seen go. A
/// forgotten key's rumor, heard again, is news once more: relayed again (foca bounds its
/// transmissions) and merged as a no-op. At about 100 bytes a key, 2.5 MB at most.
pub const SEEN_MAX: usize = 16_384;
/// Nodes remembered at most in [`Rumors::left`].
pub const LEFT_MAX: usize = 4_096;
/// Confirmations remembered at most in [`Rumors::confirmed`].
pub const CONFIRMED_MAX: usize = 4_096;

/// A map that keeps the `max` most recently inserted keys.
#[derive(Debug)]
struct Recent<K, V> {
    map: BTreeMap<K, (V, u64)>,
    order: BTreeMap<u64, K>,
    seq: u64,
    max: usize,
}

impl<K: Ord + Clone, V: Copy> Recent<K, V> {
    fn new(max: usize) -> Self {
        Self {
            map: BTreeMap::new(),
            order: BTreeMap::new(),
            seq: 0,
            max,
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        self.map.get(key).map(|(v, _)| *v)
    }

    fn insert(&mut self, key: K, value: V) {
        self.seq += 1;
        if let Some((_, old)) = self.map.insert(key.clone(), (value, self.seq)) {
            self.order.remove(&old);
        }
        self.order.insert(self.seq, key);
        while self.map.len() > self.max {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&oldest);
        }
    }

    fn remove(&mut self, key: &K) {
        if let Some((_, seq)) = self.map.remove(key) {
            self.order.remove(&seq);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[derive(Debug)]
struct Rumors {
    /// The newest epoch at which each node is known to have left; news is anything newer.
    left: Recent<NodeId, u64>,
    /// The newest stamp seen in a rumor for each key: older writes are not news.
    seen: Recent<String, Stamp>,
    /// The newest (epoch, incarnation) of each suspect each confirmer vouched for.
    confirmed: Recent<(NodeId, NodeId), (u64, u16)>,
    /// Rumors received since the core last drained them.
    fresh: Vec<Rumor>,
    /// Local wall time when the packet being read arrived, in ms (0: unknown).
    now_ms: u64,
    /// How far ahead of `now_ms` a write may be stamped; later ones are not news, so
    /// foca neither relays them nor lets them hide the key's real writes.
    skew_max_ms: u64,
}

impl Default for Rumors {
    fn default() -> Self {
        Self {
            left: Recent::new(LEFT_MAX),
            seen: Recent::new(SEEN_MAX),
            confirmed: Recent::new(CONFIRMED_MAX),
            fresh: Vec::new(),
            now_ms: 0,
            skew_max_ms: 0,
        }
    }
}

/// At most this many rumors wait to be acted on; foca hands them over one packet at a time
/// and the core drains them after every packet, so the bound is never reached in practice.
const FRESH_MAX: usize = 1024;

impl RumorBox {
    fn with<R>(&self, f: impl FnOnce(&mut Rumors) -> R) -> R {
        // The lock is held only inside these short, non-panicking sections.
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Sets the local wall time of the packet about to be read, and the clock skew bound.
    pub fn set_clock(&self, now_ms: u64, skew_max_ms: u64) {
        self.with(|r| {
            r.now_ms = now_ms;
            r.skew_max_ms = skew_max_ms;
        });
    }

    /// The counters of the membership traffic this box adds its rumors to.
    pub fn traffic(&self) -> &Arc<Traffic> {
        &self.traffic
    }

    /// Takes the rumors that arrived since the last call.
    pub fn drain(&self) -> Vec<Rumor> {
        self.with(|r| std::mem::take(&mut r.fresh))
    }

    /// Forgets that a node left, once a newer incarnation of it is alive.
    pub fn forget_leave(&self, node: &NodeId, alive_epoch: u64) {
        self.with(|r| {
            if r.left.get(node).is_some_and(|epoch| epoch < alive_epoch) {
                r.left.remove(node);
            }
        });
    }
}

impl foca::BroadcastHandler<PeerId> for RumorBox {
    type Key = RumorKey;
    type Error = CodecError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&PeerId>,
    ) -> Result<Option<RumorKey>, CodecError> {
        let (rumor, used): (Rumor, usize) = codec::decode(data)?;
        let key = match &rumor {
            Rumor::Leave(_) => "leave".to_owned(),
            Rumor::Delta(delta) => delta.key.clone(),
            Rumor::Suspect { .. } => "suspect".to_owned(),
        };
        let news = self.with(|r| match rumor {
            Rumor::Leave(peer) => {
                if r.left
                    .get(&peer.node)
                    .is_some_and(|epoch| epoch >= peer.epoch)
                {
                    return None;
                }
                r.left.insert(peer.node, peer.epoch);
                if r.fresh.len() < FRESH_MAX {
                    r.fresh.push(rumor);
                }
                Some(RumorKey::Leave(peer.node, peer.epoch))
            }
            Rumor::Delta(ref delta) => {
                let ahead_ms = delta.stamp.millis().saturating_sub(r.now_ms);
                if r.now_ms > 0 && ahead_ms > r.skew_max_ms {
                    return None;
                }
                if r.seen
                    .get(&delta.key)
                    .is_some_and(|stamp| stamp >= delta.stamp)
                {
                    return None;
                }
                r.seen.insert(delta.key.clone(), delta.stamp);
                let key = RumorKey::Delta(delta.key.clone(), delta.stamp);
                if r.fresh.len() < FRESH_MAX {
                    r.fresh.push(rumor);
                }
                Some(key)
            }
            Rumor::Suspect {
                suspect,
                incarnation,
                by,
            } => {
                let version = (suspect.epoch, incarnation);
                if r.confirmed
                    .get(&(suspect.node, by))
                    .is_some_and(|seen| seen >= version)
                {
                    return None;
                }
                r.confirmed.insert((suspect.node, by), version);
                if r.fresh.len() < FRESH_MAX {
                    r.fresh.push(rumor);
                }
                Some(RumorKey::Suspect(
                    suspect.node,
                    suspect.epoch,
                    incarnation,
                    by,
                ))
            }
        });
        self.traffic
            .rumor(Direction::In, &key, used, news.is_some());
        Ok(news)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::BroadcastHandler;
    use proptest::prelude::*;

    #[test]
    fn a_rumor_is_news_once() {
        let mut rumors = RumorBox::default();
        let peer = PeerId {
            node: NodeId::from_bytes([2; 16]),
            addr: "127.0.0.1:1".parse().unwrap(),
            epoch: 3,
        };
        let bytes = codec::encode(&Rumor::Leave(peer)).unwrap();
        assert!(rumors.receive_item(&bytes, None).unwrap().is_some());
        assert!(rumors.receive_item(&bytes, None).unwrap().is_none());
        assert_eq!(rumors.drain(), vec![Rumor::Leave(peer)]);
    }

    #[test]
    fn a_write_from_the_future_is_not_news() {
        let mut rumors = RumorBox::default();
        rumors.set_clock(1_000_000, 60_000);
        let writer = NodeId::from_bytes([2; 16]);
        let delta = |clock| Delta {
            key: "svc/web".into(),
            stamp: Stamp { clock, writer },
            value: None,
            sig: vec![0; 64],
        };
        let far = codec::encode(&Rumor::Delta(delta(u64::MAX - 1))).unwrap();
        assert!(rumors.receive_item(&far, None).unwrap().is_none());
        let now = codec::encode(&Rumor::Delta(delta(1_000_000 << 16))).unwrap();
        assert!(
            rumors.receive_item(&now, None).unwrap().is_some(),
            "the key's rumors still flow"
        );
    }

    #[test]
    fn the_memory_of_rumors_is_bounded() {
        let mut rumors = RumorBox::default();
        let writer = NodeId::from_bytes([2; 16]);
        for i in 0..(SEEN_MAX + 500) {
            let delta = Delta {
                key: format!("owned/x/r/{i}"),
                stamp: Stamp { clock: 1, writer },
                value: None,
                sig: vec![0; 64],
            };
            let bytes = codec::encode(&Rumor::Delta(delta)).unwrap();
            assert!(rumors.receive_item(&bytes, None).unwrap().is_some());
            rumors.drain();
        }
        for i in 0..(LEFT_MAX + 10) {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let peer = PeerId {
                node: NodeId::from_bytes(id),
                addr: "127.0.0.1:1".parse().unwrap(),
                epoch: 1,
            };
            let bytes = codec::encode(&Rumor::Leave(peer)).unwrap();
            rumors.receive_item(&bytes, None).unwrap();
            rumors.drain();
        }
        rumors.with(|r| {
            assert_eq!(r.seen.len(), SEEN_MAX);
            assert_eq!(r.left.len(), LEFT_MAX);
            assert_eq!(r.seen.order.len(), SEEN_MAX);
            assert!(
                r.seen.get(&"owned/x/r/0".to_owned()).is_none(),
                "oldest forgotten"
            );
            assert!(
                r.seen
                    .get(&format!("owned/x/r/{}", SEEN_MAX + 499))
                    .is_some()
            );
        });
    }

    proptest! {
        #[test]
        fn rumor_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let mut rumors = RumorBox::default();
            let _ = rumors.receive_item(&bytes, None);
        }
    }
}
