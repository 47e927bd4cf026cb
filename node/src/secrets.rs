//! Secrets, configs and registry credentials on their way to a replica: read from the replicated state and
//! unsealed ([`SecretSource`]), then written as files on memory
//! ([`crate::driver::sealed_files::SealedFiles`]), never on disk.
//!
//! The secrets of one slot and template live in
//! `/dev/shm/knit/<node id>/<slot>@<template>/` (a tmpfs on every Linux host; knit refuses
//! to write them anywhere that is not one). The directory is what the replica sees:
//! bind-mounted read-only at `/run/secrets` for a container (each file with the mode, uid
//! and gid its reference asks for, 0444 root by default, as Docker's), or named by
//! `KNIT_SECRETS_DIR` for a process (a 0700 directory of 0400 files owned by the user it
//! runs as).
//!
//! Configs go the same way to `/dev/shm/knit/configs/<node id>/<slot>@<template>/`, each
//! file at its target's path under it (`etc/app.conf`): a container gets each file
//! bind-mounted read-only at its target, a process the folder in `KNIT_CONFIGS_DIR`.
//! Configs are not secret, but they are sealed in the state all the same, and memory keeps
//! them out of the data dir and gone after a reboot, as secrets.
//!
//! Secrets and configs do not change while a service names them, and a template names
//! them, so every replica of one slot and template on a host shares one directory; the
//! agent removes directories no replica of this host uses any more.

use std::sync::Arc;

use knit_mesh::quic::sealed;
use knit_mesh::quic::{Credentials, Mesh};

use crate::driver::DriverError;
use crate::records::{SealedKind, SealedRecord};

/// Reads and unseals the cluster's secrets and configs.
#[derive(Clone)]
pub(crate) struct SecretSource {
    mesh: Mesh,
    creds: Arc<Credentials>,
}

impl SecretSource {
    pub(crate) fn new(mesh: Mesh, creds: Arc<Credentials>) -> Self {
        Self { mesh, creds }
    }

    /// The credentials `knit login` stored for `image`'s registry, unsealed.
    pub(crate) fn registry_auth(&self, image: &str) -> Option<crate::registry::RegistryAuth> {
        crate::registry::auth_for(&self.mesh.store().borrow(), &self.creds, image)
    }

    /// The value of each secret or config of `kind` that `names` names, in their order.
    pub(crate) fn values<'a>(
        &self,
        kind: SealedKind,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<Vec<u8>>, DriverError> {
        let store = self.mesh.store().borrow().clone();
        let what = kind.word();
        names
            .into_iter()
            .map(|name| {
                let record: SealedRecord = store
                    .get(&kind.key(name))
                    .and_then(|bytes| serde_json::from_slice(bytes).ok())
                    .ok_or_else(|| {
                        DriverError::Failed(format!(
                            "{what} {name} does not exist (removed, or not here yet); `knit {what} create {name} FILE`"
                        ))
                    })?;
                hex::decode(&record.sealed_hex)
                    .ok()
                    .and_then(|sealed| sealed::open(&self.creds, kind.purpose(), name, &sealed))
                    .ok_or_else(|| {
                        DriverError::Failed(format!(
                            "{what} {name} does not decrypt with this cluster's key; create it again"
                        ))
                    })
            })
            .collect()
    }
}
