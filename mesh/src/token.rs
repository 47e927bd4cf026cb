//! The join token: `KNIT-1-<SHA-256 of the cluster CA certificate>-<secret>`, in hex.
//!
//! The digest lets a joining peer check that the seed it dialed belongs to the cluster it
//! means to join; the secret proves to the seed that the joiner was invited.

use std::fmt;
use std::str::FromStr;

/// A cluster's join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the cluster CA certificate (DER).
    pub ca_digest: [u8; 32],
    /// The cluster's admission secret.
    pub secret: [u8; 16],
}

const PREFIX: &str = "KNIT-1-";

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}-{}",
            hex::encode(self.ca_digest),
            hex::encode(self.secret)
        )
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret stays out of logs.
        write!(f, "JoinToken({PREFIX}{}-…)", hex::encode(self.ca_digest))
    }
}

/// A join token that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid join token: {0}; a token looks like KNIT-1-<64 hex digits>-<32 hex digits> \
     (print it with `knit token` on any member)"
)]
pub struct ParseTokenError(&'static str);

impl FromStr for JoinToken {
    type Err = ParseTokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(ParseTokenError("it does not start with KNIT-1-"))?;
        let (digest, secret) = rest.split_once('-').ok_or(ParseTokenError(
            "the digest and the secret are not separated by '-'",
        ))?;
        let mut token = JoinToken {
            ca_digest: [0; 32],
            secret: [0; 16],
        };
        hex::decode_to_slice(digest, &mut token.ca_digest)
            .map_err(|_| ParseTokenError("the CA digest is not 64 hex digits"))?;
        hex::decode_to_slice(secret, &mut token.secret)
            .map_err(|_| ParseTokenError("the secret is not 32 hex digits"))?;
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn token_round_trips_and_hides_its_secret() {
        let token = JoinToken {
            ca_digest: [0x11; 32],
            secret: [0x22; 16],
        };
        let text = token.to_string();
        assert!(text.starts_with("KNIT-1-1111"));
        assert_eq!(text.parse::<JoinToken>().unwrap(), token);
        assert!(!format!("{token:?}").contains("2222"));
    }

    #[test]
    fn bad_tokens_say_what_is_wrong() {
        let err = "SWMTKN-1-abc".parse::<JoinToken>().unwrap_err().to_string();
        assert!(err.contains("KNIT-1-"), "{err}");
        let err = "KNIT-1-abc-def"
            .parse::<JoinToken>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("64 hex digits"), "{err}");
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in ".{0,200}") {
            let _ = s.parse::<JoinToken>();
        }
    }
}
