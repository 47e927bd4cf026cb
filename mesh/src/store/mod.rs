//! The replicated store: a last-writer-wins map that every member holds in full.
//!
//! Each entry carries a [`Stamp`]: a hybrid logical clock reading plus the writer's node id,
//! so that every member orders two writes of one key the same way. Deletes are tombstones.
//! Keys under `owned/<node id>/` are node-owned: only that node may write them (checked on
//! every merge), which gives the scuttlebutt-style "each node writes its own record, highest
//! version wins" with the same machinery.
//!
//! Every delta carries its writer's signature (see [`crate::trust`]), kept with the entry
//! so that relays carry it on; a remote stamp too far ahead of local wall time is refused,
//! so one fast clock cannot drag the hybrid logical clock forward or freeze a key.
//!
//! The store is sans-IO: writes and merges return the deltas to spread; the driver sends
//! small ones as rumors and repairs the rest by anti-entropy: two members compare
//! [`Store::summary`] (one hash per bucket of keys), then exchange [`Store::digest`]s and
//! [`Store::missing_for`] of the buckets that differ only. Members in sync exchange 64
//! hashes, whatever the number of keys.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::id::NodeId;
use signature::{Signer, cert_owner, signed_message};

mod file;
mod gc;
pub mod signature;

pub use file::{STATE_FILE_MAX_BYTES, StoreFileError};
pub use gc::{Freshness, TOMBSTONE_TTL_MS};

/// A write's place in the total order of writes to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Hybrid logical clock: physical milliseconds shifted left 16 bits, plus a counter.
    pub clock: u64,
    /// Breaks ties between writers.
    pub writer: NodeId,
}

impl Stamp {
    /// The wall-clock milliseconds inside the clock reading.
    pub fn millis(&self) -> u64 {
        self.clock >> 16
    }
}

/// One write: a value, or a tombstone when `value` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// The key.
    pub key: String,
    /// The write's stamp.
    pub stamp: Stamp,
    /// The value; `None` deletes.
    pub value: Option<Vec<u8>>,
    /// The writer's signature over [`signed_message`] of the above, ECDSA P-256 with
    /// SHA-256, fixed length ([`crate::trust::SIGNATURE_BYTES`]); relays keep it.
    pub sig: Vec<u8>,
}

impl Delta {
    /// The bytes its writer signs.
    pub fn signed_message(&self) -> Vec<u8> {
        signed_message(&self.key, &self.stamp, self.value.as_deref())
    }
}

/// The keys and stamps a member holds: what anti-entropy compares.
pub type Digest = Vec<(String, Stamp)>;

/// Buckets of keys that anti-entropy compares by hash.
pub const BUCKETS: u32 = 64;

/// One hash per bucket ([`BUCKETS`] of them): equal summaries, equal stores (but for hash
/// collisions, which the next change to the bucket undoes).
pub type Summary = Vec<u64>;

/// Bucket numbers, each below [`BUCKETS`]; `None` where a function takes one means all.
pub type Buckets = BTreeSet<u32>;

/// FNV-1a: a hash every member computes alike, whatever its build.
fn fnv(bytes: impl IntoIterator<Item = u8>, seed: u64) -> u64 {
    bytes.into_iter().fold(seed, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// The bucket of `key`.
pub fn bucket_of(key: &str) -> u32 {
    // BUCKETS is far below 2^32.
    #[allow(clippy::cast_possible_truncation)]
    let bucket = (fnv(key.bytes(), FNV_OFFSET) % u64::from(BUCKETS)) as u32;
    bucket
}

fn in_buckets(key: &str, buckets: Option<&Buckets>) -> bool {
    buckets.is_none_or(|b| b.contains(&bucket_of(key)))
}

/// A merge was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// A node-owned key written by another node.
    #[error("key {key} is owned by another node than writer {writer}")]
    NotOwner {
        /// The key.
        key: String,
        /// Who claimed to write it.
        writer: NodeId,
    },
    /// A stamp further ahead of local wall time than the allowed clock skew.
    #[error(
        "write of {key} is stamped {ahead_ms} ms ahead of this node's clock; check the writer's clock (NTP)"
    )]
    FromTheFuture {
        /// The key.
        key: String,
        /// How far ahead of local wall time, in ms.
        ahead_ms: u64,
    },
}

const OWNED_PREFIX: &str = "owned/";

/// The key of `node`'s own record `name`.
pub fn owned_key(node: &NodeId, name: &str) -> String {
    format!("{OWNED_PREFIX}{node}/{name}")
}

/// The owner of a node-owned key.
pub fn key_owner(key: &str) -> Option<NodeId> {
    let rest = key.strip_prefix(OWNED_PREFIX)?;
    let (id, _) = rest.split_once('/')?;
    id.parse().ok()
}

const REVOKED_PREFIX: &str = "revoked/";

/// The key whose live value revokes `node` (`knit node rm`): every member forgets the
/// node's own records (but its certificate, which its earlier writes need), refuses new
/// ones, and cuts the node off. What the value holds is
/// for people; only the key counts.
pub fn revoked_key(node: &NodeId) -> String {
    format!("{REVOKED_PREFIX}{node}")
}

/// One member's copy of the replicated map. Persisted with [`Store::encode`] and
/// [`Store::decode`].
#[derive(Debug, Clone)]
pub struct Store {
    me: NodeId,
    entries: BTreeMap<String, Entry>,
    /// The last clock reading issued or seen: the hybrid logical clock.
    clock: u64,
    /// Counts changes, so drivers know when to persist or republish.
    version: u64,
    /// Tombstones stamped before this (wall ms) were collected here, so a write of a key
    /// this store lacks stamped before it is refused: it can only be a deleted key coming
    /// back (see [`gc`](self::gc)). 0: nothing collected yet.
    horizon_ms: u64,
    /// Wall time (ms) up to which this store is known to hold everything the cluster
    /// holds: raised by anti-entropy with a member that is itself up to date. Gates
    /// collection, and tells a store that was away longer than a peer's horizon to rebase.
    synced_ms: u64,
    /// The last summary computed and the version it holds for: anti-entropy asks for the
    /// summary on every exchange, and at rest the store has not changed in between.
    summarised: SummaryMemo,
}

/// A summary and the store version it was computed at.
#[derive(Debug, Default)]
struct SummaryMemo(std::sync::Mutex<Option<(u64, Summary)>>);

impl SummaryMemo {
    fn get(&self, version: u64, compute: impl FnOnce() -> Summary) -> Summary {
        let mut memo = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match memo.as_ref() {
            Some((at, summary)) if *at == version => summary.clone(),
            _ => {
                let summary = compute();
                *memo = Some((version, summary.clone()));
                summary
            }
        }
    }
}

impl Clone for SummaryMemo {
    fn clone(&self) -> Self {
        let memo = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Self(std::sync::Mutex::new(memo.clone()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    stamp: Stamp,
    value: Option<Vec<u8>>,
    /// The writer's signature; empty only for entries read from a state file of a knit
    /// that did not sign (see [`Store::adopt_unsigned`]).
    sig: Vec<u8>,
}

impl Store {
    /// An empty store for node `me`.
    pub fn new(me: NodeId) -> Self {
        Self {
            me,
            entries: BTreeMap::new(),
            clock: 0,
            version: 0,
            horizon_ms: 0,
            synced_ms: 0,
            summarised: SummaryMemo::default(),
        }
    }

    /// The node this copy belongs to.
    pub fn me(&self) -> &NodeId {
        &self.me
    }

    /// Counts changes; equal values mean equal contents.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The number of entries, tombstones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The number of tombstones (deleted keys kept until collected).
    pub fn tombstones(&self) -> usize {
        self.entries.values().filter(|e| e.value.is_none()).count()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn tick(&mut self, now_ms: u64) -> u64 {
        self.clock = self.clock.saturating_add(1).max(now_ms << 16);
        self.clock
    }

    /// Writes (or with `None`, deletes) `key` locally, signed by `signer` (this node's
    /// key); returns the delta to spread.
    pub fn put(
        &mut self,
        key: &str,
        value: Option<Vec<u8>>,
        now_ms: u64,
        signer: &dyn Signer,
    ) -> Delta {
        let stamp = Stamp {
            clock: self.tick(now_ms),
            writer: self.me,
        };
        let sig = signer.sign(&signed_message(key, &stamp, value.as_deref()));
        let delta = Delta {
            key: key.to_owned(),
            stamp,
            value,
            sig,
        };
        self.entries.insert(
            delta.key.clone(),
            Entry {
                stamp,
                value: delta.value.clone(),
                sig: delta.sig.clone(),
            },
        );
        self.version += 1;
        self.purge_if_revoking(&delta.key);
        delta
    }

    /// The nodes revoked (see [`revoked_key`]).
    pub fn revoked(&self) -> BTreeSet<NodeId> {
        self.scan(REVOKED_PREFIX)
            .filter_map(|(key, _, _)| key.strip_prefix(REVOKED_PREFIX)?.parse().ok())
            .collect()
    }

    /// Whether `node` is revoked.
    pub fn is_revoked(&self, node: &NodeId) -> bool {
        self.get(&revoked_key(node)).is_some()
    }

    /// Whether this store ever heard of `node`: a record of its own (tombstones included)
    /// or a revocation.
    pub fn knows_node(&self, node: &NodeId) -> bool {
        let prefix = format!("{OWNED_PREFIX}{node}/");
        self.entries
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
            || self.entries.contains_key(&revoked_key(node))
    }

    /// The nodes with records of their own here (tombstones included). One step per
    /// node, not per record.
    pub fn owners(&self) -> BTreeSet<NodeId> {
        let mut owners = BTreeSet::new();
        let mut from = OWNED_PREFIX.to_owned();
        while let Some((key, _)) = self.entries.range(from.clone()..).next() {
            let Some(rest) = key.strip_prefix(OWNED_PREFIX) else {
                break;
            };
            let Some((id, _)) = rest.split_once('/') else {
                from = format!("{key}\0");
                continue;
            };
            if let Ok(node) = id.parse() {
                owners.insert(node);
            }
            // '0' follows '/': the first key past every record of this owner.
            from = format!("{OWNED_PREFIX}{id}0");
        }
        owners
    }

    /// The stamp of `node`'s revocation, if it is revoked: its writes stamped later are
    /// refused, the ones before stay.
    pub fn revoked_at(&self, node: &NodeId) -> Option<Stamp> {
        let entry = self.entries.get(&revoked_key(node))?;
        entry.value.as_ref().map(|_| entry.stamp)
    }

    /// After a write of `key`: if it revokes a node, drops that node's own records.
    fn purge_if_revoking(&mut self, key: &str) {
        let Some(node) = key
            .strip_prefix(REVOKED_PREFIX)
            .and_then(|id| id.parse::<NodeId>().ok())
        else {
            return;
        };
        if !self.is_revoked(&node) {
            return;
        }
        let prefix = format!("{OWNED_PREFIX}{node}/");
        let before = self.entries.len();
        // The certificate stays: writes the node made before its revocation still verify.
        self.entries
            .retain(|k, _| !k.starts_with(&prefix) || cert_owner(k).is_some());
        if self.entries.len() != before {
            self.version += 1;
        }
    }

    /// Whether `delta` would change nothing here: this store holds the key at the same
    /// stamp or a newer one, or the key's owner was revoked (but for its certificate,
    /// which its writes from before the revocation need).
    pub fn is_stale(&self, delta: &Delta) -> bool {
        self.entries
            .get(&delta.key)
            .is_some_and(|e| e.stamp >= delta.stamp)
            || self.is_collected(delta)
            || key_owner(&delta.key)
                .is_some_and(|owner| self.is_revoked(&owner) && cert_owner(&delta.key).is_none())
    }

    /// Merges a delta from another member; `Ok(true)` when it was news. Checks who may
    /// write the key and the clock skew (a stamp more than `skew_max_ms` ahead of `now_ms`
    /// is refused and does not move the clock); signatures are checked before, by
    /// [`crate::trust::Gate`].
    pub fn merge(
        &mut self,
        delta: Delta,
        now_ms: u64,
        skew_max_ms: u64,
    ) -> Result<bool, MergeError> {
        if key_owner(&delta.key).is_some_and(|owner| owner != delta.stamp.writer) {
            return Err(MergeError::NotOwner {
                key: delta.key,
                writer: delta.stamp.writer,
            });
        }
        let ahead_ms = delta.stamp.millis().saturating_sub(now_ms);
        if ahead_ms > skew_max_ms {
            return Err(MergeError::FromTheFuture {
                key: delta.key,
                ahead_ms,
            });
        }
        self.clock = self.clock.max(delta.stamp.clock);
        if self.is_stale(&delta) {
            return Ok(false);
        }
        let key = delta.key.clone();
        self.entries.insert(
            delta.key,
            Entry {
                stamp: delta.stamp,
                value: delta.value,
                sig: delta.sig,
            },
        );
        self.version += 1;
        self.purge_if_revoking(&key);
        Ok(true)
    }

    /// The live value of `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries.get(key)?.value.as_deref()
    }

    /// The stamp of `key`'s last write, tombstones included.
    pub fn stamp(&self, key: &str) -> Option<Stamp> {
        self.entries.get(key).map(|e| e.stamp)
    }

    /// Live entries whose key starts with `prefix`, in key order.
    pub fn scan<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a [u8], Stamp)> + 'a {
        self.entries
            .range(prefix.to_owned()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .filter_map(|(k, e)| e.value.as_deref().map(|v| (k.as_str(), v, e.stamp)))
    }

    /// One hash per bucket of every key and stamp held.
    pub fn summary(&self) -> Summary {
        self.summarised.get(self.version, || self.compute_summary())
    }

    fn compute_summary(&self) -> Summary {
        let mut summary = vec![0u64; BUCKETS as usize];
        for (key, entry) in &self.entries {
            let stamp = entry
                .stamp
                .clock
                .to_le_bytes()
                .into_iter()
                .chain(*entry.stamp.writer.as_bytes());
            // XOR: the order of entries does not matter.
            summary[bucket_of(key) as usize] ^= fnv(stamp, fnv(key.bytes(), FNV_OFFSET));
        }
        summary
    }

    /// The buckets where `theirs` differs from this store's summary (all of them if it is
    /// not a summary of [`BUCKETS`] hashes).
    pub fn differing(&self, theirs: &Summary) -> Buckets {
        let mine = self.summary();
        if theirs.len() != mine.len() {
            return (0..BUCKETS).collect();
        }
        (0..BUCKETS)
            .filter(|&b| mine[b as usize] != theirs[b as usize])
            .collect()
    }

    /// Every key and stamp held in `buckets` (`None`: all), for anti-entropy.
    pub fn digest(&self, buckets: Option<&Buckets>) -> Digest {
        self.entries
            .iter()
            .filter(|(k, _)| in_buckets(k, buckets))
            .map(|(k, e)| (k.clone(), e.stamp))
            .collect()
    }

    /// The deltas of `buckets` (`None`: all) that a member whose digest of them is
    /// `digest` lacks (absent there, or older there).
    pub fn missing_for(&self, digest: &Digest, buckets: Option<&Buckets>) -> Vec<Delta> {
        let theirs: BTreeMap<&str, Stamp> = digest.iter().map(|(k, s)| (k.as_str(), *s)).collect();
        self.entries
            .iter()
            .filter(|(k, _)| in_buckets(k, buckets))
            .filter(|(k, e)| theirs.get(k.as_str()).is_none_or(|s| *s < e.stamp))
            .map(|(k, e)| Delta {
                key: k.clone(),
                stamp: e.stamp,
                value: e.value.clone(),
                sig: e.sig.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::test_keys::{FakeSigner, node};
    use proptest::prelude::*;

    const NOW_MS: u64 = 1_000_000;
    const SKEW_MS: u64 = 60_000;

    #[test]
    fn last_writer_wins_and_ties_break_by_writer() {
        let mut a = Store::new(node(1));
        let mut b = Store::new(node(2));
        let da = a.put("svc/web", Some(b"a".to_vec()), 1000, &FakeSigner(*a.me()));
        let db = b.put("svc/web", Some(b"b".to_vec()), 1000, &FakeSigner(*b.me()));
        assert_eq!(da.stamp.clock, db.stamp.clock);
        a.merge(db.clone(), NOW_MS, SKEW_MS).unwrap();
        b.merge(da.clone(), NOW_MS, SKEW_MS).unwrap();
        assert_eq!(a.get("svc/web"), Some(&b"b"[..]));
        assert_eq!(b.get("svc/web"), Some(&b"b"[..]));
        // A later write on a wins everywhere, even with a slower wall clock: the HLC moved.
        let later = a.put("svc/web", None, 10, &FakeSigner(*a.me()));
        assert!(b.merge(later, NOW_MS, SKEW_MS).unwrap());
        assert_eq!(b.get("svc/web"), None);
    }

    #[test]
    fn owned_keys_take_only_their_owner() {
        let mut a = Store::new(node(1));
        let mut forged = Store::new(node(2));
        let delta = forged.put(
            &owned_key(&node(1), "info"),
            Some(vec![1]),
            5,
            &FakeSigner(*forged.me()),
        );
        assert!(matches!(
            a.merge(delta, NOW_MS, SKEW_MS),
            Err(MergeError::NotOwner { .. })
        ));
        assert_eq!(key_owner(&owned_key(&node(3), "x")), Some(node(3)));
    }

    #[test]
    fn owners_are_listed_once_each_whatever_their_records() {
        let mut a = Store::new(node(1));
        for name in ["info", "applied", "replicas/x"] {
            a.put(
                &owned_key(&node(1), name),
                Some(vec![1]),
                5,
                &FakeSigner(node(1)),
            );
        }
        a.put(&owned_key(&node(1), "gone"), None, 6, &FakeSigner(node(1)));
        a.put("svc/web", Some(vec![2]), 7, &FakeSigner(node(1)));
        for n in [2, 3] {
            let mut other = Store::new(node(n));
            let delta = other.put(
                &owned_key(&node(n), "info"),
                Some(vec![n]),
                5,
                &FakeSigner(node(n)),
            );
            a.merge(delta, NOW_MS, SKEW_MS).unwrap();
        }
        assert_eq!(a.owners(), [node(1), node(2), node(3)].into());
        assert!(Store::new(node(4)).owners().is_empty());
    }

    #[test]
    fn a_revoked_node_is_forgotten_and_refused_on_every_member() {
        let mut gone = Store::new(node(3));
        let info = gone.put(
            &owned_key(&node(3), "info"),
            Some(vec![3]),
            5,
            &FakeSigner(*gone.me()),
        );
        let cert = gone.put(
            &crate::trust::cert_key(&node(3)),
            Some(vec![9]),
            5,
            &FakeSigner(*gone.me()),
        );
        let mut a = Store::new(node(1));
        let mut b = Store::new(node(2));
        a.merge(info.clone(), NOW_MS, SKEW_MS).unwrap();
        a.put("svc/web", Some(vec![1]), 6, &FakeSigner(*a.me()));
        // Revoked on a: its records go, whatever arrives later of it is refused.
        let revoke = a.put(
            &revoked_key(&node(3)),
            Some(b"removed".to_vec()),
            7,
            &FakeSigner(*a.me()),
        );
        assert_eq!(a.revoked(), BTreeSet::from([node(3)]));
        assert!(a.get(&owned_key(&node(3), "info")).is_none());
        assert_eq!(a.get("svc/web"), Some(&[1][..]), "other records stay");
        let later = gone.put(
            &owned_key(&node(3), "r/x"),
            Some(vec![4]),
            8,
            &FakeSigner(*gone.me()),
        );
        assert!(!a.merge(later.clone(), NOW_MS, SKEW_MS).unwrap());
        assert!(a.get(&owned_key(&node(3), "r/x")).is_none());
        // b had them, then learns of the revocation by merge: same result.
        b.merge(info, NOW_MS, SKEW_MS).unwrap();
        b.merge(later, NOW_MS, SKEW_MS).unwrap();
        assert!(b.merge(revoke, NOW_MS, SKEW_MS).unwrap());
        assert!(b.is_revoked(&node(3)));
        assert!(b.scan("owned/").next().is_none());
        // Its certificate stays, so that its writes from before still verify.
        assert!(b.merge(cert.clone(), NOW_MS, SKEW_MS).unwrap());
        a.merge(cert, NOW_MS, SKEW_MS).unwrap();
        assert_eq!(b.scan("owned/").count(), 1);
        for d in a.missing_for(&b.digest(None), None) {
            b.merge(d, NOW_MS, SKEW_MS).unwrap();
        }
        assert_eq!(a.get(&revoked_key(&node(3))), b.get(&revoked_key(&node(3))));
        assert!(!a.is_revoked(&node(1)));
    }

    #[test]
    fn anti_entropy_fills_both_sides() {
        let mut a = Store::new(node(1));
        let mut b = Store::new(node(2));
        a.put("k1", Some(vec![1]), 1, &FakeSigner(*a.me()));
        b.put("k2", Some(vec![2]), 2, &FakeSigner(*b.me()));
        for d in b.missing_for(&a.digest(None), None) {
            a.merge(d, NOW_MS, SKEW_MS).unwrap();
        }
        for d in a.missing_for(&b.digest(None), None) {
            b.merge(d, NOW_MS, SKEW_MS).unwrap();
        }
        assert_eq!(a.digest(None), b.digest(None));
        assert!(a.missing_for(&b.digest(None), None).is_empty());
        assert_eq!(a.summary(), b.summary());
    }

    #[test]
    fn summaries_find_the_buckets_that_differ() {
        let mut a = Store::new(node(1));
        let mut b = Store::new(node(2));
        for i in 0..500 {
            let d = a.put(&format!("key/{i}"), Some(vec![1]), i, &FakeSigner(*a.me()));
            b.merge(d, NOW_MS, SKEW_MS).unwrap();
        }
        assert!(a.differing(&b.summary()).is_empty(), "in sync");
        let newer = a.put("key/7", Some(vec![2]), 1_000, &FakeSigner(*a.me()));
        b.put("only-b", Some(vec![3]), 1_001, &FakeSigner(*b.me()));
        let differ = b.differing(&a.summary());
        let expected: Buckets = [bucket_of("key/7"), bucket_of("only-b")].into();
        assert_eq!(differ, expected);
        // Digests and deltas of those buckets only.
        let theirs = a.digest(Some(&differ));
        assert!(theirs.len() < 100, "{} keys", theirs.len());
        let for_a = b.missing_for(&theirs, Some(&differ));
        assert_eq!(for_a.len(), 1);
        assert_eq!(for_a[0].key, "only-b");
        let for_b = a.missing_for(&b.digest(Some(&differ)), Some(&differ));
        assert_eq!(for_b, vec![newer]);
        for d in for_a {
            a.merge(d, NOW_MS, SKEW_MS).unwrap();
        }
        for d in for_b {
            b.merge(d, NOW_MS, SKEW_MS).unwrap();
        }
        assert_eq!(a.summary(), b.summary());
        assert_eq!(
            b.differing(&vec![0; 3]).len(),
            BUCKETS as usize,
            "not a summary"
        );
    }

    proptest! {
        /// Any order of merging the same writes gives the same store.
        #[test]
        fn merge_order_does_not_matter(writes in proptest::collection::vec((0u8..3, 0u8..4, 0u64..50, any::<bool>()), 1..30)) {
            let mut deltas = Vec::new();
            let mut writers: Vec<Store> = (0..3).map(|i| Store::new(node(i))).collect();
            for (w, k, t, del) in writes {
                let value = if del { None } else { Some(vec![k, w]) };
                deltas.push(writers[w as usize].put(&format!("k{k}"), value, t, &FakeSigner(node(w))));
            }
            let mut forward = Store::new(node(9));
            let mut backward = Store::new(node(9));
            for d in deltas.iter().cloned() {
                let before = forward.summary();
                let changed = forward.merge(d, NOW_MS, SKEW_MS).unwrap();
                // The summary kept between changes is the summary of what is held now.
                prop_assert_eq!(forward.summary(), forward.compute_summary());
                if !changed { prop_assert_eq!(forward.summary(), before); }
            }
            for d in deltas.iter().rev().cloned() { backward.merge(d, NOW_MS, SKEW_MS).unwrap(); }
            prop_assert_eq!(forward.digest(None), backward.digest(None));
            prop_assert_eq!(forward.summary(), backward.summary());
        }
    }
}
