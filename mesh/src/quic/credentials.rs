//! What a member keeps in its data dir to prove it belongs: the cluster CA (certificate and
//! key, so that any member can admit new ones: there is no manager), its own certificate and
//! key, and the join secret.
//!
//! Everything lives in one file, `credentials.json` (mode 0600), written by an atomic
//! rename, so a failed join leaves nothing half-written.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::tls::{self, MemberTls, TlsError};
use crate::id::NodeId;
use crate::token::JoinToken;

const FILE: &str = "credentials.json";

/// A member's credentials.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// Names the cluster CA (its common name) so that it can be rebuilt to sign.
    pub cluster_id: String,
    /// The cluster CA certificate, DER in hex.
    #[serde(with = "hex_bytes")]
    pub ca_der: Vec<u8>,
    /// The cluster CA key, PKCS#8 PEM.
    pub ca_key_pem: String,
    /// This node's certificate, DER in hex.
    #[serde(with = "hex_bytes")]
    pub node_cert_der: Vec<u8>,
    /// This node's key, PKCS#8 PEM.
    pub node_key_pem: String,
    /// The admission secret of the join token.
    pub secret: [u8; 16],
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

/// Credentials could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Reading or writing the data dir failed.
    #[error("data dir {path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// What failed.
        source: io::Error,
    },
    /// The stored file does not parse.
    #[error(
        "{path} is corrupt ({detail}); restore it from a backup, or remove the data dir and join again"
    )]
    Corrupt {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
    /// Keys or certificates could not be made.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl Credentials {
    /// A new cluster, with this node as its first member.
    pub fn create_cluster(node: &NodeId, secret: [u8; 16]) -> Result<Self, CredentialsError> {
        let cluster_id = node.short();
        let (ca_der, ca_key_pem) = tls::generate_ca(&cluster_id)?;
        let (node_key_pem, public) = tls::generate_node_key()?;
        let node_cert_der = tls::issue_node_cert(&cluster_id, &ca_key_pem, node, &public)?;
        Ok(Self {
            cluster_id,
            ca_der,
            ca_key_pem,
            node_cert_der,
            node_key_pem,
            secret,
        })
    }

    /// The join token for this cluster.
    pub fn token(&self) -> JoinToken {
        JoinToken {
            ca_digest: tls::cert_digest(&self.ca_der),
            secret: self.secret,
        }
    }

    /// The TLS material for gossip.
    pub fn member_tls(&self) -> MemberTls {
        MemberTls::new(&self.ca_der, &self.node_cert_der, &self.node_key_pem)
    }

    /// Whether stored credentials exist in `dir`.
    pub fn exist(dir: &Path) -> bool {
        dir.join(FILE).exists()
    }

    /// Loads the credentials stored in `dir`, if any.
    pub fn load(dir: &Path) -> Result<Option<Self>, CredentialsError> {
        let path = dir.join(FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CredentialsError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| CredentialsError::Corrupt {
                path: path.display().to_string(),
                detail: e.to_string(),
            })
    }

    /// Stores the credentials in `dir` atomically (temporary file, fsync, rename), readable
    /// by the owner only; also writes `join-token` and `ca.pem` beside them for operators.
    pub fn store(&self, dir: &Path) -> Result<(), CredentialsError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| CredentialsError::Corrupt {
            path: FILE.into(),
            detail: e.to_string(),
        })?;
        write_atomic(dir, "join-token", format!("{}\n", self.token()).as_bytes())?;
        write_atomic(dir, FILE, &json)
    }
}

/// Writes `name` in `dir` durably and atomically, mode 0600: a temporary file is written
/// and fsynced, renamed over `name`, and the directory fsynced so the rename itself
/// survives a power cut. On any failure (a full disk, say) the temporary file is removed
/// and the previous `name` is left as it was.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), CredentialsError> {
    let io_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| CredentialsError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    let written = write_synced(&tmp, bytes).map_err(io_err(&tmp));
    let renamed = written.and_then(|()| fs::rename(&tmp, &target).map_err(io_err(&target)));
    if renamed.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    renamed?;
    sync_dir(dir).map_err(io_err(dir))
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

impl CredentialsError {
    /// Whether the disk (or the user's quota) is full: the operator frees space.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Self::Io { source, .. }
            if matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_through_the_data_dir() {
        let dir = std::env::temp_dir().join(format!("knit-cred-{}", std::process::id()));
        let node = NodeId::from_bytes([9; 16]);
        let creds = Credentials::create_cluster(&node, [1; 16]).unwrap();
        assert!(Credentials::load(&dir).unwrap().is_none());
        creds.store(&dir).unwrap();
        let back = Credentials::load(&dir).unwrap().unwrap();
        assert_eq!(back.token(), creds.token());
        assert!(tls::cert_names_node(&back.node_cert_der, &node));
        fs::write(dir.join(FILE), b"{not json").unwrap();
        let err = Credentials::load(&dir).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A small tmpfs, mounted for the test (root only; skipped otherwise) and unmounted
    /// whatever happens.
    struct Tmpfs(std::path::PathBuf);

    impl Tmpfs {
        fn mount(size: &str) -> Option<Self> {
            let dir = std::env::temp_dir().join(format!("knit-full-{}", std::process::id()));
            fs::create_dir_all(&dir).ok()?;
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = fs::remove_dir(&dir);
                return None;
            }
            Some(Self(dir))
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
            let _ = fs::remove_dir(&self.0);
        }
    }

    #[test]
    fn a_full_disk_leaves_the_previous_file_and_no_temporary_one() {
        let Some(disk) = Tmpfs::mount("1m") else {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        };
        let dir = disk.0.join("data");
        write_atomic(&dir, "state.bin", b"first").unwrap();
        let err = write_atomic(&dir, "state.bin", &vec![1u8; 2 << 20]).unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        assert!(err.to_string().contains(".state.bin.tmp"), "{err}");
        assert_eq!(fs::read(dir.join("state.bin")).unwrap(), b"first");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.bin")]);
        // Space again: the next write goes through.
        write_atomic(&dir, "state.bin", b"second").unwrap();
        assert_eq!(fs::read(dir.join("state.bin")).unwrap(), b"second");
    }
}
