//! The files of this host's replicas' secrets and configs, on memory: see
//! [`crate::secrets`] for where they come from and how replicas see them.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use knit_scheduler::SlotId;

use super::DriverError;

/// Where secrets' files go: memory shared by every Linux host.
const SHM: &str = "/dev/shm";
/// The file system type of memory.
const TMPFS: &str = "tmpfs";
/// A directory younger than this is kept even if no replica uses it yet: its start may be
/// in flight.
const PRUNE_AFTER: Duration = Duration::from_secs(120);

/// Who owns a replica's files.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Owner {
    /// A container: each file as its reference says, the directory readable by all.
    Container,
    /// A process running as `(uid, gid)` (`None`: as the peer's own user).
    Process(Option<(u32, u32)>),
}

/// One file of a replica.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileEntry<'a> {
    /// Its path in the replica's folder, relative (`db_pass`, `etc/app.conf`).
    pub(crate) path: &'a str,
    /// What it holds.
    pub(crate) value: &'a [u8],
    /// Its mode, owner and group for a container (a process gets 0400, its own).
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// The files of this host's replicas' secrets, or of their configs (one of each).
#[derive(Debug, Clone)]
pub(crate) struct SealedFiles {
    /// The folders of knit's files on this host (`/dev/shm/knit`), and in it the folder of
    /// every peer's configs (`configs`): each traversable, not listable.
    bases: Vec<PathBuf>,
    /// This peer's folder.
    root: PathBuf,
}

impl SealedFiles {
    /// The secrets' files of node `node`'s replicas: `/dev/shm/knit/<node>`.
    pub(crate) fn secrets_of(node: &str) -> Self {
        let base = Path::new(SHM).join("knit");
        Self {
            root: base.join(node),
            bases: vec![base],
        }
    }

    /// The configs' files of node `node`'s replicas: `/dev/shm/knit/configs/<node>`.
    pub(crate) fn configs_of(node: &str) -> Self {
        let base = Path::new(SHM).join("knit");
        let configs = base.join("configs");
        Self {
            root: configs.join(node),
            bases: vec![base, configs],
        }
    }

    /// A folder of its own (for tests).
    #[cfg(test)]
    pub(crate) fn at(base: PathBuf) -> Self {
        Self {
            root: base.join("node"),
            bases: vec![base],
        }
    }

    fn dir(&self, slot: &SlotId, template: u64) -> PathBuf {
        self.root.join(format!("{slot}@{template:016x}"))
    }

    /// Writes `entries` for a replica of `slot` from `template`; returns their folder.
    /// A folder of the same slot and template that holds other values (a secret or config
    /// removed and created again under its name while no service named it) is replaced.
    pub(crate) fn write(
        &self,
        slot: &SlotId,
        template: u64,
        entries: &[FileEntry<'_>],
        owner: Owner,
    ) -> Result<PathBuf, DriverError> {
        let fail = |what: &str, e: std::io::Error| {
            DriverError::Failed(format!("cannot write the replica's files ({what}): {e}"))
        };
        // Traversable, not listable: a process replica reaches its own (private) folder,
        // and no other user learns which secrets this host holds.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.root)
            .map_err(|e| fail("their folder", e))?;
        for dir in self.bases.iter().chain([&self.root]) {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
                .map_err(|e| fail("their folder's mode", e))?;
        }
        if !on_memory(&self.root) {
            return Err(DriverError::Failed(format!(
                "{} is not on a tmpfs; knit keeps secrets and configs off disk and will not write them there (mount a tmpfs on {SHM})",
                self.root.display()
            )));
        }
        let dir = self.dir(slot, template);
        let partial = dir.with_extension(format!("part-{:08x}", rand::random::<u32>()));
        let written = write_folder(&partial, entries, owner).and_then(|()| {
            // A replica of the same slot and template wrote the same files first: keep them.
            match std::fs::rename(&partial, &dir) {
                Ok(()) => Ok(()),
                Err(_) if dir.is_dir() && holds(&dir, entries) => std::fs::remove_dir_all(&partial),
                Err(_) if dir.is_dir() => {
                    let stale = dir.with_extension(format!("old-{:08x}", rand::random::<u32>()));
                    std::fs::rename(&dir, &stale)?;
                    std::fs::rename(&partial, &dir)?;
                    std::fs::remove_dir_all(&stale)
                }
                Err(e) => Err(e),
            }
        });
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(fail("a file", e));
        }
        Ok(dir)
    }

    /// Removes the directories of slots and templates none of `live` runs, once they are
    /// old enough not to belong to a start in flight.
    pub(crate) fn prune<'a>(&self, live: impl IntoIterator<Item = (&'a SlotId, u64)>) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        let keep: BTreeSet<PathBuf> = live
            .into_iter()
            .map(|(slot, template)| self.dir(slot, template))
            .collect();
        for entry in entries.flatten() {
            let path = entry.path();
            let young = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age < PRUNE_AFTER);
            if keep.contains(&path) || young {
                continue;
            }
            match std::fs::remove_dir_all(&path) {
                Ok(()) => tracing::debug!(dir = %path.display(), "files no replica uses removed"),
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot remove unused files")
                }
            }
        }
    }
}

/// Writes `entries` into the new folder `dir`, as `owner` should see them.
fn write_folder(dir: &Path, entries: &[FileEntry<'_>], owner: Owner) -> std::io::Result<()> {
    let dir_mode = match owner {
        Owner::Container => 0o755,
        Owner::Process(_) => 0o700,
    };
    let ids = |entry: &FileEntry<'_>| match owner {
        Owner::Container => (entry.mode, Some((entry.uid, entry.gid))),
        Owner::Process(ids) => (0o400, ids),
    };
    std::fs::DirBuilder::new().mode(dir_mode).create(dir)?;
    for entry in entries {
        let path = dir.join(entry.path);
        // Folders on the way (a config at /etc/app/app.conf): the owner's, as the top one.
        if let Some(parent) = path.parent().filter(|p| *p != dir) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(dir_mode)
                .create(parent)?;
            let mut folder = parent;
            while folder != dir {
                if let Owner::Process(ids) = owner {
                    chown(folder, ids)?;
                }
                folder = folder.parent().unwrap_or(dir);
            }
        }
        let (mode, ids) = ids(entry);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(entry.value)?;
        chown(&path, ids)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    if let Owner::Process(ids) = owner {
        chown(dir, ids)?;
    }
    Ok(())
}

/// Whether the folder `dir` holds `entries`' values already.
fn holds(dir: &Path, entries: &[FileEntry<'_>]) -> bool {
    entries
        .iter()
        .all(|e| std::fs::read(dir.join(e.path)).is_ok_and(|v| v == e.value))
}

/// Whether `path` is on a tmpfs (memory): read from the mount table.
fn on_memory(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    // The longest mount point that holds `path` is the one it is on.
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            Some((point.replace("\\040", " "), kind.to_owned()))
        })
        .filter(|(point, _)| path.starts_with(point))
        .max_by_key(|(point, _)| point.len())
        .is_some_and(|(_, kind)| kind == TMPFS)
}

fn chown(path: &Path, ids: Option<(u32, u32)>) -> std::io::Result<()> {
    match ids {
        // Only root may give files away; a peer that is not root keeps them as its own.
        Some((uid, gid)) if nix::unistd::geteuid().is_root() => {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries<'a>(values: &'a [&'a [u8]]) -> Vec<FileEntry<'a>> {
        vec![
            FileEntry {
                path: "db_pass",
                value: values[0],
                mode: 0o444,
                uid: 0,
                gid: 0,
            },
            FileEntry {
                path: "etc/app/key",
                value: values[1],
                mode: 0o440,
                uid: 0,
                gid: 0,
            },
        ]
    }

    #[test]
    fn files_land_on_memory_with_their_modes_and_are_pruned_when_unused() {
        if !on_memory(Path::new(SHM)) {
            eprintln!("skipping: {SHM} is not a tmpfs here");
            return;
        }
        let root = Path::new(SHM).join(format!("knit-test-{}", std::process::id()));
        let files = SealedFiles::at(root.clone());
        let slot = SlotId::replica("db", 1);
        let values: [&[u8]; 2] = [b"hunter2", b"k3y"];
        let dir = files
            .write(&slot, 7, &entries(&values), Owner::Container)
            .unwrap();
        assert_eq!(std::fs::read(dir.join("db_pass")).unwrap(), b"hunter2");
        assert_eq!(std::fs::read(dir.join("etc/app/key")).unwrap(), b"k3y");
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.join("db_pass")), 0o444);
        assert_eq!(mode(dir.join("etc/app/key")), 0o440);
        assert_eq!(mode(dir.join("etc/app")), 0o755);
        // A second replica of the same slot and template shares the files.
        let again = files
            .write(&slot, 7, &entries(&values), Owner::Container)
            .unwrap();
        assert_eq!(again, dir);
        // Other values under the same names (removed and created again) replace them.
        let changed: [&[u8]; 2] = [b"hunter3", b"k3y"];
        let replaced = files
            .write(&slot, 7, &entries(&changed), Owner::Container)
            .unwrap();
        assert_eq!(replaced, dir);
        assert_eq!(std::fs::read(dir.join("db_pass")).unwrap(), b"hunter3");
        // A process gets a private folder of owner-only files.
        let private = files
            .write(&slot, 8, &entries(&values), Owner::Process(None))
            .unwrap();
        assert_eq!(mode(private.clone()), 0o700);
        assert_eq!(mode(private.join("etc")), 0o700);
        assert_eq!(mode(private.join("etc/app/key")), 0o400);
        // Young folders stay; the prune of old unused ones is timed, so only the keep
        // rule is checked here.
        files.prune([(&slot, 7)]);
        assert!(dir.is_dir() && private.is_dir());
        let left: Vec<_> = std::fs::read_dir(root.join("node")).unwrap().collect();
        assert_eq!(left.len(), 2, "no partial or stale folder is left");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_disk_folder_is_refused() {
        let root = std::env::temp_dir().join(format!("knit-secrets-disk-{}", std::process::id()));
        if on_memory(&std::env::temp_dir()) {
            eprintln!("skipping: the temp dir is a tmpfs here");
            return;
        }
        let files = SealedFiles::at(root.clone());
        let values: [&[u8]; 2] = [b"1", b"2"];
        let e = files
            .write(
                &SlotId::replica("db", 1),
                1,
                &entries(&values),
                Owner::Container,
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("not on a tmpfs"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
