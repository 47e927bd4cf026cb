//! The rotating join secret. `knit token rotate` writes a fresh secret under the
//! cluster-wide key [`JOIN_SECRET_KEY`], encrypted (AES-256-GCM, a random nonce stored
//! before the ciphertext) under a key derived with HKDF-SHA256 from the cluster CA key,
//! which every member holds and nothing else does: the secret never lies in clear text in
//! the replicated state or its file. The join service and the token shown to operators use
//! the newest secret in the store, and the one in the credentials while there is none.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use super::credentials::Credentials;
use crate::store::Store;
use crate::token::JoinToken;

/// The store key holding the current join secret, encrypted.
pub const JOIN_SECRET_KEY: &str = "cluster/join-secret";

const HKDF_SALT: &[u8] = b"knit join secret v1";

/// The secret could not be encrypted (the system's random source failed).
#[derive(Debug, thiserror::Error)]
#[error("cannot encrypt the join secret (the system's random source failed); try again")]
pub struct SealError;

/// The AES-256-GCM key of this cluster (`None` cannot happen: HKDF-SHA256 expands to
/// 32 bytes).
fn aead_key(creds: &Credentials) -> Option<LessSafeKey> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(creds.ca_key_pem.as_bytes());
    let info = [creds.cluster_id.as_bytes()];
    let okm = prk.expand(&info, &AES_256_GCM).ok()?;
    Some(LessSafeKey::new(UnboundKey::from(okm)))
}

/// `secret` encrypted for the store: nonce, then ciphertext and tag.
pub fn seal(creds: &Credentials, secret: &[u8; 16]) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SealError)?;
    let mut sealed = secret.to_vec();
    aead_key(creds)
        .ok_or(SealError)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(JOIN_SECRET_KEY.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| SealError)?;
    Ok([&nonce[..], &sealed].concat())
}

/// The secret in a value [`seal`] made, if it opens under this cluster's key.
pub fn open(creds: &Credentials, value: &[u8]) -> Option<[u8; 16]> {
    let (nonce, sealed) = value.split_at_checked(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = sealed.to_vec();
    let plain = aead_key(creds)?
        .open_in_place(nonce, Aad::from(JOIN_SECRET_KEY.as_bytes()), &mut buf)
        .ok()?;
    plain.try_into().ok()
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
