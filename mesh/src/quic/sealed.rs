//! Values sealed for the members of this cluster: AES-256-GCM under a key derived with
//! HKDF-SHA256 from the cluster CA key (which every member holds and nothing else does),
//! one key per purpose, a random nonce stored before the ciphertext, and the value's name
//! as associated data, so that a sealed value moved to another name does not open.
//!
//! The join secret, service secrets, configs and registry passwords are stored this way: the replicated state, its
//! file and the API's answers never hold them in clear text.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use super::credentials::Credentials;

/// What a sealed value is for; each purpose has its own key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The rotating join secret (`knit token rotate`), named by its store key.
    JoinSecret,
    /// A service secret (`knit secret create`).
    Secret,
    /// A service config (`knit config create`): not secret, but kept out of the state's
    /// file in clear text all the same.
    Config,
    /// A registry password (`knit login`), named by its record's server and user.
    Registry,
}

impl Purpose {
    fn salt(self) -> &'static [u8] {
        match self {
            Self::JoinSecret => b"knit join secret v1",
            Self::Secret => b"knit service secret v1",
            Self::Config => b"knit service config v1",
            Self::Registry => b"knit registry credentials v1",
        }
    }
}

/// A value could not be sealed (the system's random source failed).
#[derive(Debug, thiserror::Error)]
#[error("cannot encrypt the value (the system's random source failed); try again")]
pub struct SealError;

fn aead_key(creds: &Credentials, purpose: Purpose) -> Option<LessSafeKey> {
    let prk =
        hkdf::Salt::new(hkdf::HKDF_SHA256, purpose.salt()).extract(creds.ca_key_pem.as_bytes());
    let info = [creds.cluster_id.as_bytes()];
    let okm = prk.expand(&info, &AES_256_GCM).ok()?;
    Some(LessSafeKey::new(UnboundKey::from(okm)))
}

/// `plain`, named `name`, sealed for this cluster: nonce, then ciphertext and tag.
pub fn seal(
    creds: &Credentials,
    purpose: Purpose,
    name: &str,
    plain: &[u8],
) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SealError)?;
    let mut sealed = plain.to_vec();
    aead_key(creds, purpose)
        .ok_or(SealError)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(name.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| SealError)?;
    Ok([&nonce[..], &sealed].concat())
}

/// The value [`seal`] sealed as `name`, if it opens under this cluster's key.
pub fn open(creds: &Credentials, purpose: Purpose, name: &str, value: &[u8]) -> Option<Vec<u8>> {
    let (nonce, sealed) = value.split_at_checked(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = sealed.to_vec();
    let plain = aead_key(creds, purpose)?
        .open_in_place(nonce, Aad::from(name.as_bytes()), &mut buf)
        .ok()?;
    Some(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::NodeId;

    #[test]
    fn a_value_opens_in_this_cluster_under_its_own_name_only() {
        let node = NodeId::from_bytes([1; 16]);
        let creds = Credentials::create_cluster(&node, [1; 16]).unwrap();
        let other = Credentials::create_cluster(&node, [1; 16]).unwrap();
        let plain = b"correct horse battery staple";
        let sealed = seal(&creds, Purpose::Secret, "db_pass", plain).unwrap();
        assert!(
            !sealed.windows(plain.len()).any(|w| w == plain),
            "no clear text"
        );
        assert_ne!(
            sealed,
            seal(&creds, Purpose::Secret, "db_pass", plain).unwrap()
        );
        assert_eq!(
            open(&creds, Purpose::Secret, "db_pass", &sealed).as_deref(),
            Some(&plain[..])
        );
        assert_eq!(
            open(&creds, Purpose::Secret, "other", &sealed),
            None,
            "moved"
        );
        assert_eq!(
            open(&other, Purpose::Secret, "db_pass", &sealed),
            None,
            "another cluster"
        );
        assert_eq!(open(&creds, Purpose::Secret, "db_pass", &sealed[..8]), None);
        assert_eq!(
            open(&creds, Purpose::Config, "db_pass", &sealed),
            None,
            "another purpose"
        );
        let mut flipped = sealed.clone();
        flipped[14] ^= 1;
        assert_eq!(open(&creds, Purpose::Secret, "db_pass", &flipped), None);
    }
}
