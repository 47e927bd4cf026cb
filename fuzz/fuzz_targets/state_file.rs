//! `state.bin`, the store as a file in the data dir (both formats): read at start, written
//! back, and signed over when it comes from a knit that did not sign.
#![no_main]

use knit_fuzz::{HashSigner, NOW_MS};
use knit_mesh::store::Store;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut store) = Store::decode(data) else {
        return;
    };
    let digest = store.digest(None);
    let summary = store.summary();
    let bytes = store
        .encode()
        .expect("a store read from a file writes back");
    let back = Store::decode(&bytes).expect("what a store writes reads back");
    assert_eq!(back.me(), store.me());
    assert_eq!(back.digest(None), digest);
    assert_eq!(back.summary(), summary);
    assert_eq!(back.has_unsigned(), store.has_unsigned());
    let _ = store.revoked();
    let before = store.len();
    let (signed, dropped) = store.adopt_unsigned(&HashSigner);
    assert_eq!(store.len() + dropped, before);
    assert!(signed <= store.len());
    assert!(!store.has_unsigned(), "every entry left is signed");
    store.collect_tombstones(NOW_MS);
});
