//! Store deltas from peers (anti-entropy batches, pushes, rumor-sized writes) through the
//! trust gate with the real key book: certificate records parsed and checked under the
//! cluster CA (webpki), signatures checked (ring), accepted writes merged.
#![no_main]

use knit_fuzz::{NOW_MS, cluster, messages, node};
use knit_mesh::codec;
use knit_mesh::quic::keys::KeyBook;
use knit_mesh::store::{Delta, Store, key_owner};
use knit_mesh::trust::{CLOCK_SKEW_MAX_MS_DEFAULT, Gate, Verifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut store = Store::new(node(9));
    let mut book = KeyBook::new(&cluster().ca_der);
    let mut gate = Gate::new(CLOCK_SKEW_MAX_MS_DEFAULT);
    for message in messages(data) {
        let deltas = match codec::decode_large::<Vec<Delta>>(message) {
            Ok(deltas) => deltas,
            Err(_) => match codec::decode::<Delta>(message) {
                Ok((delta, _)) => vec![delta],
                Err(_) => continue,
            },
        };
        gate.admit(&mut store, &mut book, deltas, NOW_MS);
    }
    gate.retry(&mut store, &mut book, NOW_MS);
    for (key, stamp) in store.digest(None) {
        if let Some(owner) = key_owner(&key) {
            assert_eq!(
                owner, stamp.writer,
                "{key} merged from a writer not its owner"
            );
        }
        assert!(
            stamp.millis() <= NOW_MS + CLOCK_SKEW_MAX_MS_DEFAULT,
            "{key} merged from the future"
        );
        assert!(book.knows(&stamp.writer), "{key} merged unverified");
    }
});
