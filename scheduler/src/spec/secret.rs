//! A service's secrets, as `docker service create --secret` names them:
//! `NAME` or `source=NAME,target=FILE,uid=0,gid=0,mode=0444`.
//!
//! The spec names a secret only; its value lives sealed in the cluster's state (see the
//! node's `secret` commands) and reaches a replica as a file `/run/secrets/TARGET` on
//! memory, never on disk.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// Docker's default mode of a secret's file.
pub const SECRET_MODE_DEFAULT: u32 = 0o444;

/// One secret a replica gets, and how its file looks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretRef {
    /// The secret's name.
    pub source: String,
    /// The file's name under `/run/secrets` (the source's name when not given).
    pub target: String,
    /// The file's owner and group (numeric, as Docker's).
    #[serde(default)]
    pub uid: u32,
    /// The file's group.
    #[serde(default)]
    pub gid: u32,
    /// The file's permission bits.
    #[serde(default = "default_mode")]
    pub mode: u32,
}

fn default_mode() -> u32 {
    SECRET_MODE_DEFAULT
}

/// Whether `name` may name a secret: 1-64 of letters, digits, `_`, `.` and `-`, starting
/// with a letter or digit (Docker's rule).
pub fn secret_name_is_valid(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl SecretRef {
    /// What is wrong with this reference, if anything.
    pub fn problem(&self) -> Option<String> {
        if !secret_name_is_valid(&self.source) {
            return Some(format!(
                "secret name {:?} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
                self.source
            ));
        }
        let target_ok = !self.target.is_empty()
            && self.target.len() <= 255
            && !self.target.contains(['/', '\0'])
            && self.target != "."
            && self.target != "..";
        if !target_ok {
            return Some(format!(
                "target {:?} must be a file name under /run/secrets (no '/')",
                self.target
            ));
        }
        if self.mode > 0o777 {
            return Some(format!("mode {:o} must be at most 0777", self.mode));
        }
        None
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "source={},target={}", self.source, self.target)?;
        if self.uid != 0 || self.gid != 0 {
            write!(f, ",uid={},gid={}", self.uid, self.gid)?;
        }
        if self.mode != SECRET_MODE_DEFAULT {
            write!(f, ",mode={:04o}", self.mode)?;
        }
        Ok(())
    }
}

impl FromStr for SecretRef {
    type Err = SpecError;

    /// Reads `NAME`, or Docker's `source=NAME[,target=FILE][,uid=N][,gid=N][,mode=0440]`.
    fn from_str(input: &str) -> Result<Self, SpecError> {
        let err = |why: String| SpecError::Secret {
            input: input.to_owned(),
            why,
        };
        let fields = super::file_ref::parse(input).map_err(err)?;
        let secret = SecretRef {
            target: fields.target.unwrap_or_else(|| fields.source.clone()),
            source: fields.source,
            uid: fields.uid,
            gid: fields.gid,
            mode: fields.mode.unwrap_or(SECRET_MODE_DEFAULT),
        };
        match secret.problem() {
            Some(why) => Err(err(why)),
            None => Ok(secret),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dockers_forms() {
        let plain: SecretRef = "db_pass".parse().unwrap();
        assert_eq!(
            (plain.source.as_str(), plain.target.as_str(), plain.mode),
            ("db_pass", "db_pass", 0o444)
        );
        let full: SecretRef = "source=db_pass,target=password,uid=999,gid=999,mode=0400"
            .parse()
            .unwrap();
        assert_eq!((full.uid, full.gid, full.mode), (999, 999, 0o400));
        assert_eq!(full.target, "password");
        assert_eq!(full.to_string().parse::<SecretRef>().unwrap(), full);
    }

    #[test]
    fn refuses_bad_names_targets_and_keys() {
        for bad in [
            "",
            "-x",
            "source=a,target=../etc/passwd",
            "source=a,target=x/y",
            "source=a,mode=999",
            "source=a,uid=-1",
            "source=a,size=1",
            "target=x",
        ] {
            let e = bad.parse::<SecretRef>().expect_err(bad).to_string();
            assert!(e.contains("--secret"), "{bad}: {e}");
        }
    }
}
