//! Anti-entropy frames (and application-stream replies) from a peer's stream, and what the mesh task does with their
//! parts: a peer's freshness met (a rebase past its horizon), a summary compared with the
//! store's, a peer's buckets and digest answered with the store's deltas and digest, a
//! completed exchange noted.
#![no_main]

use std::sync::OnceLock;

use knit_fuzz::{HashSigner, NOW_MS, node};
use knit_mesh::codec;
use knit_mesh::quic::sync;
use knit_mesh::store::{BUCKETS, Buckets, Digest, Freshness, Store, Summary, owned_key};
use libfuzzer_sys::fuzz_target;

/// A member's store with a few cluster-wide and node-owned keys, and a tombstone.
fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let mut store = Store::new(node(1));
        for (i, key) in [
            "svc/web",
            "svc/db",
            "svc-version/web",
            "cluster/join-secret",
        ]
        .iter()
        .enumerate()
        {
            store.put(key, Some(vec![1; i + 1]), NOW_MS - 1000, &HashSigner);
        }
        for name in ["info", "telemetry", "r/web.1"] {
            store.put(
                &owned_key(&node(1), name),
                Some(b"{}".to_vec()),
                NOW_MS - 500,
                &HashSigner,
            );
        }
        store.put("svc/old", None, NOW_MS - 100, &HashSigner);
        store
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = sync::decode_frame(data);
    let _ = knit_mesh::quic::app::decode_reply(data);
    let mut store = store().clone();
    if let Ok((summary, peer)) = codec::decode_large::<(Summary, Freshness)>(data) {
        store.meet(peer);
        let buckets = store.differing(&summary);
        assert!(buckets.iter().all(|&b| b < BUCKETS));
        if summary == store.summary() {
            assert!(buckets.is_empty(), "equal summaries differ nowhere");
        }
        let _ = store.digest(Some(&buckets));
    }
    if let Ok((buckets, digest, peer)) = codec::decode_large::<(Buckets, Digest, Freshness)>(data) {
        store.meet(peer);
        let missing = store.missing_for(&digest, Some(&buckets));
        let mine = store.digest(Some(&buckets));
        assert!(
            missing.len() <= mine.len(),
            "only what the store holds is sent"
        );
        store.synced_with(peer, NOW_MS);
        store.collect_tombstones(NOW_MS);
    }
});
