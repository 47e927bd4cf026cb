//! The data dir: this node's id, the epoch of its last start, its credentials (written by
//! the mesh crate), and the replicated state it knows. Every file is replaced by an atomic
//! rename, so a crash leaves either the old or the new version.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use knit_mesh::NodeId;
use knit_mesh::quic::credentials::write_atomic;
use knit_mesh::store::Store;

/// The group that may use the API socket (and read the data dir), as `docker` is for
/// Docker's.
pub(crate) const API_GROUP: &str = "knit";

/// The host's group database.
const GROUP_FILE: &str = "/etc/group";

/// The id of the [`API_GROUP`] group, if the host has one. Read from `/etc/group` itself,
/// not through the C library's name service: a static binary cannot load NSS modules (and
/// crashes trying), and knit's group is a local one.
pub(crate) fn api_group() -> Option<u32> {
    let groups = std::fs::read_to_string(GROUP_FILE).ok()?;
    group_id(&groups, API_GROUP)
}

/// The id of group `name` in the text of a group file (`name:password:gid:members`).
fn group_id(groups: &str, name: &str) -> Option<u32> {
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        fields.nth(1)?.trim().parse().ok()
    })
}

/// Closes the data dir to everyone but its owner and, when the host has one, the `knit`
/// group (who may use the API socket in it): mode 0700, or 0750 with that group. Its
/// files are 0600 besides.
fn restrict(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let group = api_group();
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("cannot give {} to group knit", path.display()))?;
    }
    let mode = if group.is_some() { 0o750 } else { 0o700 };
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of the data dir {}", path.display()))
}

/// A data dir, locked for the life of the peer so two peers cannot share it.
pub(crate) struct DataDir {
    path: PathBuf,
    /// Holds the lock.
    _lock: fs::File,
}

impl DataDir {
    /// Opens (creating) and locks `path`.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        fs::create_dir_all(path)
            .with_context(|| format!("cannot create the data dir {}", path.display()))?;
        restrict(path)?;
        let lock_path = path.join("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            bail!(
                "the data dir {} is in use by another knit peer; stop it, or give this one its own --data-dir",
                path.display()
            );
        }
        Ok(Self {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The stored node id, if this data dir has one.
    pub(crate) fn node_id(&self) -> Result<Option<NodeId>> {
        let path = self.path.join("node-id");
        match fs::read_to_string(&path) {
            Ok(text) => {
                Ok(Some(text.parse().with_context(|| {
                    format!("{} is corrupt", path.display())
                })?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub(crate) fn store_node_id(&self, id: &NodeId) -> Result<()> {
        Ok(write_atomic(
            &self.path,
            "node-id",
            format!("{id}\n").as_bytes(),
        )?)
    }

    /// The secret this node's QUIC stateless resets are made from (see
    /// [`knit_mesh::quic::bind`]): made once, at the first start, and kept (`reset-key`,
    /// readable by root only, like the node's key).
    pub(crate) fn reset_key(&self) -> Result<knit_mesh::quic::ResetKey> {
        let path = self.path.join("reset-key");
        match fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let mut key = [0_u8; 32];
                hex::decode_to_slice(text.trim(), &mut key).with_context(|| {
                    format!(
                        "{} is corrupt; remove it (a new one is made at the next start)",
                        path.display()
                    )
                })?;
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: knit_mesh::quic::ResetKey = rand::random();
                write_atomic(
                    &self.path,
                    "reset-key",
                    format!("{}\n", hex::encode(key)).as_bytes(),
                )?;
                Ok(key)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// The epoch for this start: one more than any epoch used before, recorded at once.
    pub(crate) fn next_epoch(&self) -> Result<u64> {
        let epoch = self.stored_epoch()? + 1;
        self.store_epoch(epoch)?;
        Ok(epoch)
    }

    fn stored_epoch(&self) -> Result<u64> {
        let path = self.path.join("epoch");
        match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .with_context(|| format!("{} is corrupt", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Records an epoch the mesh moved to (after a rejoin), if it is newer.
    pub(crate) fn store_epoch(&self, epoch: u64) -> Result<()> {
        if self.stored_epoch().unwrap_or(0) >= epoch {
            return Ok(());
        }
        Ok(write_atomic(
            &self.path,
            "epoch",
            format!("{epoch}\n").as_bytes(),
        )?)
    }

    /// The replicated state as last persisted, or an empty store.
    pub(crate) fn load_store(&self, me: NodeId) -> Result<Store> {
        let path = self.path.join("state.bin");
        match fs::read(&path) {
            Ok(bytes) => {
                let store = Store::decode(&bytes).with_context(|| {
                    format!("{} is corrupt; move it aside and restart: the cluster will send the state again", path.display())
                })?;
                if store.me() != &me {
                    bail!(
                        "{} belongs to another node id; the data dir is mixed up",
                        path.display()
                    );
                }
                Ok(store)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Store::new(me)),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Persists the replicated state.
    /// Writes the current join token to `join-token` (mode 0600), for operators.
    pub(crate) fn store_token(&self, token: &str) -> Result<()> {
        Ok(write_atomic(
            &self.path,
            "join-token",
            format!("{token}\n").as_bytes(),
        )?)
    }

    pub(crate) fn save_store(&self, store: &Store) -> Result<()> {
        let bytes = store.encode()?;
        Ok(write_atomic(&self.path, "state.bin", &bytes)?)
    }
}

#[cfg(test)]
mod group_tests {
    use super::{DataDir, group_id};

    #[test]
    fn the_reset_key_is_made_once_and_kept() {
        let scratch = |name: &str| {
            let dir = std::env::temp_dir().join(format!("knit-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            dir
        };
        let (one, two) = (scratch("reset-key-one"), scratch("reset-key-two"));
        let first = DataDir::open(&one).unwrap().reset_key().unwrap();
        let again = DataDir::open(&one).unwrap().reset_key().unwrap();
        assert_eq!(first, again);
        assert_ne!(first, DataDir::open(&two).unwrap().reset_key().unwrap());
        std::fs::write(one.join("reset-key"), "not hex\n").unwrap();
        let error = DataDir::open(&one).unwrap().reset_key().unwrap_err();
        assert!(
            format!("{error:#}").contains("is corrupt; remove it"),
            "{error:#}"
        );
        for dir in [one, two] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn the_group_id_is_read_from_the_group_file() {
        let file = "root:x:0:\n# a comment\nknitters:x:7:\nknit:x:998:alice,bob\nbroken\n";
        assert_eq!(group_id(file, "knit"), Some(998));
        assert_eq!(group_id(file, "root"), Some(0));
        assert_eq!(group_id(file, "docker"), None);
        assert_eq!(group_id("knit:x:nan:\n", "knit"), None);
    }
}
