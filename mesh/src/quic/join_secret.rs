//! The rotating join secret. `knit token rotate` writes a fresh secret under the
//! cluster-wide key [`JOIN_SECRET_KEY`], encrypted (AES-256-GCM, a random nonce stored
//! before the ciphertext) under a key derived with HKDF-SHA256 from the cluster CA key,
//! which every member holds and nothing else does: the secret never lies in clear text in
//! the replicated state or its file. The join service and the token shown to operators use
//! the newest secret in the store, and the one in the credentials while there is none.

use super::credentials::Credentials;
use super::sealed::{self, Purpose};
use crate::store::Store;
use crate::token::JoinToken;

/// The store key holding the current join secret, encrypted.
pub const JOIN_SECRET_KEY: &str = "cluster/join-secret";

/// The secret could not be encrypted (the system's random source failed).
pub use super::sealed::SealError;

/// `secret` encrypted for the store: nonce, then ciphertext and tag (see [`sealed`]).
pub fn seal(creds: &Credentials, secret: &[u8; 16]) -> Result<Vec<u8>, SealError> {
    sealed::seal(creds, Purpose::JoinSecret, JOIN_SECRET_KEY, secret)
}

/// The secret in a value [`seal`] made, if it opens under this cluster's key.
pub fn open(creds: &Credentials, value: &[u8]) -> Option<[u8; 16]> {
    sealed::open(creds, Purpose::JoinSecret, JOIN_SECRET_KEY, value)?
        .try_into()
        .ok()
}

/// The join secret in force: the newest in `store`, else the credentials'.
pub fn current(creds: &Credentials, store: &Store) -> [u8; 16] {
    match store.get(JOIN_SECRET_KEY) {
        None => creds.secret,
        Some(value) => open(creds, value).unwrap_or_else(|| {
            tracing::warn!(
                "the rotated join secret in the store does not decrypt; using the credentials' one"
            );
            creds.secret
        }),
    }
}

/// The join token in force.
pub fn token(creds: &Credentials, store: &Store) -> JoinToken {
    JoinToken {
        secret: current(creds, store),
        ..creds.token()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::NodeId;
    use crate::trust::test_keys::FakeSigner;

    #[test]
    fn the_secret_is_sealed_for_this_cluster_only() {
        let node = NodeId::from_bytes([1; 16]);
        let creds = Credentials::create_cluster(&node, [1; 16]).unwrap();
        let other = Credentials::create_cluster(&node, [1; 16]).unwrap();
        let sealed = seal(&creds, &[7; 16]).unwrap();
        assert!(!sealed.windows(16).any(|w| w == [7; 16]), "no clear text");
        assert_ne!(sealed, seal(&creds, &[7; 16]).unwrap(), "fresh nonce");
        assert_eq!(open(&creds, &sealed), Some([7; 16]));
        assert_eq!(open(&other, &sealed), None);
        assert_eq!(open(&creds, &sealed[..10]), None);
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert_eq!(open(&creds, &flipped), None);
    }

    #[test]
    fn a_secret_sealed_before_the_shared_sealing_still_opens() {
        use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
        use ring::hkdf;
        let node = NodeId::from_bytes([1; 16]);
        let creds = Credentials::create_cluster(&node, [1; 16]).unwrap();
        // The construction every cluster's state holds: HKDF-SHA256 of the CA key with the
        // join-secret salt and the cluster id, the store key as associated data.
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"knit join secret v1")
            .extract(creds.ca_key_pem.as_bytes());
        let info = [creds.cluster_id.as_bytes()];
        let okm = prk.expand(&info, &AES_256_GCM).unwrap();
        let key = LessSafeKey::new(UnboundKey::from(okm));
        let nonce = [3u8; NONCE_LEN];
        let mut sealed = vec![5u8; 16];
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(JOIN_SECRET_KEY.as_bytes()),
            &mut sealed,
        )
        .unwrap();
        let stored = [&nonce[..], &sealed].concat();
        assert_eq!(open(&creds, &stored), Some([5; 16]));
    }

    #[test]
    fn the_newest_secret_in_the_store_is_the_token() {
        let node = NodeId::from_bytes([1; 16]);
        let creds = Credentials::create_cluster(&node, [1; 16]).unwrap();
        let mut store = Store::new(node);
        assert_eq!(token(&creds, &store), creds.token());
        let sealed = seal(&creds, &[9; 16]).unwrap();
        store.put(JOIN_SECRET_KEY, Some(sealed), 5, &FakeSigner(node));
        let rotated = token(&creds, &store);
        assert_eq!(rotated.secret, [9; 16]);
        assert_eq!(rotated.ca_digest, creds.token().ca_digest);
    }
}
