//! Rumors: the custom broadcasts riding on gossip packets (`Leave`, store `Delta`s), as
//! foca hands each one to knit's handler.
#![no_main]

use foca::BroadcastHandler;
use knit_fuzz::{NOW_MS, messages};
use knit_mesh::codec;
use knit_mesh::rumor::{Rumor, RumorBox};
use knit_mesh::trust::CLOCK_SKEW_MAX_MS_DEFAULT;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rumors = RumorBox::default();
    rumors.set_clock(NOW_MS, CLOCK_SKEW_MAX_MS_DEFAULT);
    let mut news = 0;
    for item in messages(data) {
        if let Ok(Some(_)) = rumors.receive_item(item, None) {
            news += 1;
        }
        if let Ok((rumor, used)) = codec::decode::<Rumor>(item) {
            assert!(used <= item.len());
            let bytes = codec::encode(&rumor).expect("a decoded rumor encodes");
            let (back, _) = codec::decode::<Rumor>(&bytes).expect("an encoded rumor decodes");
            assert_eq!(back, rumor);
        }
    }
    assert_eq!(
        rumors.drain().len(),
        news,
        "every rumor that was news is handed on"
    );
});
