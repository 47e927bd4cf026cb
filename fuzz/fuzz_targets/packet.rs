//! Gossip packets: foca's header and member records through knit's wire codec, as the
//! transport reads a packet's claimed sender before the membership core sees it.
#![no_main]

use foca::Codec;
use knit_mesh::codec::{WireCodec, packet_source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut codec = WireCodec;
    let source = packet_source(data);
    if let Ok(header) = codec.decode_header(data) {
        assert_eq!(
            source.ok(),
            Some(header.src),
            "the transport reads the header's sender"
        );
        let mut buf = Vec::new();
        codec
            .encode_header(&header, &mut buf)
            .expect("a decoded header encodes");
        let back = codec
            .decode_header(&buf[..])
            .expect("an encoded header decodes");
        assert_eq!(back, header);
    }
    if let Ok(member) = codec.decode_member(data) {
        let mut buf = Vec::new();
        codec
            .encode_member(&member, &mut buf)
            .expect("a decoded member encodes");
        let back = codec
            .decode_member(&buf[..])
            .expect("an encoded member decodes");
        assert_eq!(back, member);
    }
});
