//! The join service: a request from any host that reaches it (before the proof is
//! checked), a seed's answer as a joiner reads it, the rotated join secret as a member
//! opens it from the store, an operator's name for a client certificate, and the
//! `credentials.json` a member keeps.
#![no_main]

use knit_fuzz::cluster;
use knit_mesh::quic::{Credentials, join, join_secret, operator};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = join::decode_request(data);
    let _ = join::decode_response(data);
    let creds = cluster();
    if let Some(secret) = join_secret::open(creds, data) {
        // Only a value sealed with this cluster's key opens.
        assert_eq!(data.len(), 12 + 16 + 16, "nonce, secret, tag");
        let _ = secret;
    }
    if let Ok(read) = serde_json::from_slice::<Credentials>(data) {
        let _ = read.token();
    }
    if let Ok(name) = std::str::from_utf8(data)
        && operator::valid_client_name(name)
    {
        assert!(name.len() <= operator::CLIENT_NAME_MAX_BYTES);
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }
});
