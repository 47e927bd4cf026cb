//! Collecting tombstones, and keeping collected keys from coming back.
//!
//! A delete leaves a tombstone so that the delete wins over the value it replaced on every
//! member. Tombstones are dropped [`TOMBSTONE_TTL_MS`] after they were written, so
//! create/remove cycles and crash-looping replicas (a new report key per restart) leave at
//! most a day of tombstones behind. Two rules make that safe in a gossip store, where a
//! member that missed the delete may still hold the value:
//!
//! - **The horizon.** A store that collected tombstones stamped before `H` refuses any
//!   write of a key it lacks stamped before `H` ([`Store::is_collected`]): such a write can
//!   only be a deleted key coming back from a member that was away. The horizon is kept in
//!   the state file.
//! - **Freshness.** Each store knows the wall time up to which it holds everything the
//!   cluster holds (`synced_ms`, kept in the state file). A completed anti-entropy
//!   exchange with a member that is fresh (synced within the TTL) makes it fresh now; with
//!   a stale one, only as fresh as that one. The mesh also counts as fresh a lone first
//!   member (no other node known) and one that has run for a while and completed
//!   exchanges without meeting any fresh member (the whole cluster was down). A store
//!   collects only while it is fresh within the TTL, so a new member never collects, nor
//!   refuses, before it has the cluster's state. A member whose
//!   `synced_ms` is older than a peer's horizon (it was away, or cut off, for longer than
//!   the TTL) may hold keys deleted since: it drops everything stamped before that horizon
//!   but its own records ([`Store::meet`]) and takes it again from the peer, which holds
//!   every live key of that age.
//!
//! What this costs: a write that never left its member (the member went down right after
//! acknowledging it) and comes back more than the TTL later is refused as collected; and
//! after a partition longer than the TTL, writes made on either side more than the TTL
//! before the heal stay on their side (both sides stay fresh among themselves).

use serde::{Deserialize, Serialize};

use super::{Delta, OWNED_PREFIX, Store, key_owner};

/// Tombstones older than this (by their stamp's wall time) are collected.
pub const TOMBSTONE_TTL_MS: u64 = 24 * 3600 * 1000;

/// What a member says of its collection state at the start of every anti-entropy
/// exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freshness {
    /// Tombstones stamped before this were collected there (0: none).
    pub horizon_ms: u64,
    /// It holds everything the cluster held at this wall time.
    pub synced_ms: u64,
}

impl Store {
    /// This store's horizon and freshness.
    pub fn freshness(&self) -> Freshness {
        Freshness {
            horizon_ms: self.horizon_ms,
            synced_ms: self.synced_ms,
        }
    }

    /// Whether `delta` writes a key this store lacks, stamped before its horizon: a
    /// collected key coming back.
    pub fn is_collected(&self, delta: &Delta) -> bool {
        delta.stamp.millis() < self.horizon_ms && !self.entries.contains_key(&delta.key)
    }

    /// Whether this store knows of a node other than itself (a record of its own).
    pub fn knows_other_nodes(&self) -> bool {
        self.entries
            .range(OWNED_PREFIX.to_owned()..)
            .take_while(|(k, _)| k.starts_with(OWNED_PREFIX))
            .any(|(k, _)| key_owner(k).is_some_and(|owner| owner != self.me))
    }

    /// Records that this store held everything the cluster held at `ms` (a completed
    /// exchange with a member as fresh as that, or no other member at all).
    pub fn mark_synced(&mut self, ms: u64) {
        // Not a change of contents: saved with the next one.
        self.synced_ms = self.synced_ms.max(ms);
    }

    /// After an anti-entropy exchange with a member that said `peer` completed: fresh now
    /// if that member was fresh, else as fresh as it.
    pub fn synced_with(&mut self, peer: Freshness, now_ms: u64) {
        if peer.synced_ms.saturating_add(TOMBSTONE_TTL_MS) >= now_ms {
            self.mark_synced(now_ms);
        } else {
            self.mark_synced(peer.synced_ms.min(now_ms));
        }
    }

    /// Before an exchange with a member that said `peer`: if its horizon is past the time
    /// this store was last known complete, drops every entry stamped before that horizon
    /// but this node's own records, and forgets its own horizon, so the exchange brings
    /// back what still lives and nothing the peer collected. Returns how many entries were
    /// dropped, if it rebased.
    pub fn meet(&mut self, peer: Freshness) -> Option<usize> {
        if peer.horizon_ms <= self.synced_ms {
            return None;
        }
        let mine = format!("{OWNED_PREFIX}{}/", self.me);
        let before = self.entries.len();
        self.entries
            .retain(|k, e| k.starts_with(&mine) || e.stamp.millis() >= peer.horizon_ms);
        self.horizon_ms = 0;
        self.version += 1;
        Some(before - self.entries.len())
    }

    /// Drops tombstones stamped more than [`TOMBSTONE_TTL_MS`] before `now_ms` and moves
    /// the horizon there, if this store is fresh enough to know that nothing older is
    /// missing. Returns how many tombstones went.
    pub fn collect_tombstones(&mut self, now_ms: u64) -> usize {
        let horizon = now_ms.saturating_sub(TOMBSTONE_TTL_MS);
        if self.synced_ms == 0 || self.synced_ms < horizon {
            return 0;
        }
        let before = self.entries.len();
        self.entries
            .retain(|_, e| e.value.is_some() || e.stamp.millis() >= horizon);
        self.horizon_ms = self.horizon_ms.max(horizon);
        let dropped = before - self.entries.len();
        if dropped > 0 {
            self.version += 1;
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::owned_key;
    use crate::trust::test_keys::{FakeSigner, node};

    const MINUTE_MS: u64 = 60_000;
    const HOUR_MS: u64 = 60 * MINUTE_MS;
    const SKEW_MS: u64 = 60_000;
    /// Virtual wall time at the start: far from 0, as real clocks are.
    const START_MS: u64 = 1_700_000_000_000;

    /// One anti-entropy exchange as the transport runs it: each side meets the other's
    /// freshness, both fill each other, both note the other's freshness.
    fn exchange(a: &mut Store, b: &mut Store, now_ms: u64) {
        let (fa, fb) = (a.freshness(), b.freshness());
        a.meet(fb);
        b.meet(fa);
        for d in b.missing_for(&a.digest(None), None) {
            a.merge(d, now_ms, SKEW_MS).unwrap();
        }
        for d in a.missing_for(&b.digest(None), None) {
            b.merge(d, now_ms, SKEW_MS).unwrap();
        }
        let (fa, fb) = (a.freshness(), b.freshness());
        a.synced_with(fb, now_ms);
        b.synced_with(fa, now_ms);
    }

    /// Lets `ms` pass, `a` and `b` exchanging every 10 minutes (they stay fresh).
    fn quiet(a: &mut Store, b: &mut Store, now_ms: &mut u64, ms: u64) {
        let end = *now_ms + ms;
        while *now_ms < end {
            *now_ms += 10 * MINUTE_MS;
            exchange(a, b, *now_ms);
        }
    }

    fn put(store: &mut Store, key: &str, value: Option<&[u8]>, now_ms: u64) {
        let me = *store.me();
        store.put(key, value.map(<[u8]>::to_vec), now_ms, &FakeSigner(me));
    }

    /// Three members, each with its info record; the first one alone at first.
    fn cluster(now_ms: u64) -> Vec<Store> {
        let mut stores: Vec<Store> = (1..=3).map(|i| Store::new(node(i))).collect();
        for s in &mut stores {
            let me = *s.me();
            put(s, &owned_key(&me, "info"), Some(b"i"), now_ms);
        }
        stores[0].mark_synced(now_ms);
        let (a, rest) = stores.split_at_mut(1);
        for s in rest {
            exchange(&mut a[0], s, now_ms);
        }
        stores
    }

    #[test]
    fn create_remove_cycles_leave_the_entry_count_where_it_started() {
        let mut now = START_MS;
        let mut stores = cluster(now);
        let (a, rest) = stores.split_at_mut(1);
        let (a, b) = (&mut a[0], &mut rest[0]);
        let start = a.len();
        let b_node = *b.me();
        let mut peak = 0;
        // A service created and removed every 10 minutes; its replica on b gets a new
        // report key each time (a crash loop looks the same). Members sync, and collect
        // once an hour.
        for cycle in 0..500u64 {
            now += 10 * MINUTE_MS;
            put(a, "svc/web", Some(b"spec"), now);
            let report = owned_key(&b_node, &format!("r/web.1-{cycle:08x}"));
            put(b, &report, Some(b"running"), now);
            exchange(a, b, now);
            put(a, "svc/web", None, now + 1);
            put(b, &report, None, now + 1);
            exchange(a, b, now + 2);
            if cycle % 6 == 0 {
                a.collect_tombstones(now);
                b.collect_tombstones(now);
            }
            peak = peak.max(a.len());
        }
        let before = a.len();
        quiet(a, b, &mut now, TOMBSTONE_TTL_MS + HOUR_MS);
        a.collect_tombstones(now);
        b.collect_tombstones(now);
        eprintln!(
            "500 cycles: {start} entries at the start, peak {peak}, {before} before the last collection, {} after",
            a.len()
        );
        // A day of cycles (144) leaves two tombstones each, plus an hour between collections.
        assert!(peak <= start + 2 * (144 + 6) + 2, "peak {peak}");
        assert_eq!(a.len(), start, "only the live records stay");
        assert_eq!(b.len(), start);
        assert_eq!(a.tombstones(), 0);
        assert_eq!(a.summary(), b.summary());
    }

    #[test]
    fn a_member_away_longer_than_the_ttl_cannot_bring_a_deleted_key_back() {
        let mut now = START_MS;
        let mut stores = cluster(now);
        put(&mut stores[0], "svc/old", Some(b"v1"), now);
        put(&mut stores[0], "svc/kept", Some(b"v1"), now);
        let [a, b, away] = &mut stores[..] else {
            unreachable!()
        };
        exchange(a, away, now);
        exchange(a, b, now);
        assert_eq!(away.get("svc/old"), Some(&b"v1"[..]));
        // `away` stops. The service is removed, a new one written; a day later the
        // tombstone is collected on the members that stayed.
        now += HOUR_MS;
        put(a, "svc/old", None, now);
        put(a, "svc/new", Some(b"v1"), now);
        quiet(a, b, &mut now, TOMBSTONE_TTL_MS + HOUR_MS);
        assert_eq!(a.collect_tombstones(now), 1);
        assert_eq!(b.collect_tombstones(now), 1);
        assert_eq!(
            away.collect_tombstones(now),
            0,
            "not fresh: it does not collect"
        );
        // `away` returns with the deleted key: a refuses it, and `away` rebases.
        let stale = away.missing_for(&a.digest(None), None);
        let old = stale.iter().find(|d| d.key == "svc/old").unwrap().clone();
        assert!(a.is_collected(&old));
        assert!(!a.clone().merge(old, now, SKEW_MS).unwrap(), "refused");
        let away_node = *away.me();
        exchange(a, away, now);
        assert_eq!(away.get("svc/old"), None, "the deleted key is gone");
        assert_eq!(
            away.get("svc/kept"),
            Some(&b"v1"[..]),
            "live keys come back"
        );
        assert_eq!(away.get("svc/new"), Some(&b"v1"[..]));
        assert!(away.get(&owned_key(&away_node, "info")).is_some());
        assert_eq!(a.get("svc/old"), None);
        assert_eq!(a.summary(), away.summary());
        // Fresh again, it collects like the others.
        put(a, "svc/new", None, now + 1);
        quiet(a, away, &mut now, TOMBSTONE_TTL_MS + HOUR_MS);
        assert_eq!(away.collect_tombstones(now), 1);
    }

    #[test]
    fn a_new_member_neither_collects_nor_refuses_before_it_has_the_state() {
        let now = START_MS + 3 * TOMBSTONE_TTL_MS;
        let mut a = Store::new(node(1));
        put(&mut a, "svc/ancient", Some(b"v"), START_MS);
        put(&mut a, "svc/gone", None, START_MS);
        a.mark_synced(now);
        assert_eq!(a.collect_tombstones(now), 1);
        let mut joiner = Store::new(node(2));
        put(&mut joiner, "svc/gone", None, START_MS);
        assert_eq!(joiner.collect_tombstones(now), 0, "never synced");
        exchange(&mut a, &mut joiner, now);
        assert_eq!(
            joiner.get("svc/ancient"),
            Some(&b"v"[..]),
            "old live keys arrive"
        );
        assert!(
            joiner.stamp("svc/gone").is_none(),
            "dropped when it met a's horizon"
        );
        assert_eq!(joiner.freshness().synced_ms, now, "fresh once synced");
    }
}
