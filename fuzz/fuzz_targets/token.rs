//! Text a user or a peer hands over: join tokens (`--token`, the `join-token` file), node
//! ids (API paths, store keys), and the owners that store keys name.
#![no_main]

use knit_mesh::NodeId;
use knit_mesh::store::{key_owner, owned_key};
use knit_mesh::token::JoinToken;
use knit_mesh::trust::{cert_key, cert_owner};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(token) = text.parse::<JoinToken>() {
        let back: JoinToken = token.to_string().parse().expect("a printed token parses");
        assert!(back == token);
    }
    if let Ok(id) = text.parse::<NodeId>() {
        let back: NodeId = id.to_string().parse().expect("a printed node id parses");
        assert_eq!(back, id);
        assert_eq!(key_owner(&owned_key(&id, "info")), Some(id));
    }
    let _ = key_owner(text);
    if let Some(owner) = cert_owner(text) {
        assert_eq!(text, cert_key(&owner));
    }
});
