//! Secrets on their way to a replica: read from the replicated state and unsealed
//! ([`SecretSource`]), then written as files on memory
//! ([`crate::driver::secret_files::SecretFiles`]), never on disk.
//!
//! The files of one slot and template live in `/dev/shm/knit/<node id>/<slot>@<template>/`
//! (a tmpfs on every Linux host; knit refuses to write secrets anywhere that is not one).
//! The directory is what the replica sees: bind-mounted read-only at `/run/secrets` for a
//! container (each file with the mode, uid and gid its reference asks for, 0444 root by
//! default, as Docker's), or named by `KNIT_SECRETS_DIR` for a process (a 0700 directory
//! of 0400 files owned by the user it runs as). Secrets do not change, and a template names
//! its secrets, so every replica of one slot and template on a host shares one directory;
//! the agent removes directories no replica of this host uses any more.

use std::sync::Arc;

use knit_mesh::quic::sealed::{self, Purpose};
use knit_mesh::quic::{Credentials, Mesh};
use knit_scheduler::spec::SecretRef;

use crate::driver::DriverError;
use crate::records::{SecretRecord, secret_key};

/// Reads and unseals the cluster's secrets.
#[derive(Clone)]
pub(crate) struct SecretSource {
    mesh: Mesh,
    creds: Arc<Credentials>,
}

impl SecretSource {
    pub(crate) fn new(mesh: Mesh, creds: Arc<Credentials>) -> Self {
        Self { mesh, creds }
    }

    /// The value of each secret `refs` names, in their order.
    pub(crate) fn values(&self, refs: &[SecretRef]) -> Result<Vec<Vec<u8>>, DriverError> {
        let store = self.mesh.store().borrow().clone();
        refs.iter()
            .map(|r| {
                let record: SecretRecord = store
                    .get(&secret_key(&r.source))
                    .and_then(|bytes| serde_json::from_slice(bytes).ok())
                    .ok_or_else(|| {
                        DriverError::Failed(format!(
                            "secret {} does not exist (removed, or not here yet); `knit secret create {} FILE`",
                            r.source, r.source
                        ))
                    })?;
                hex::decode(&record.sealed_hex)
                    .ok()
                    .and_then(|sealed| sealed::open(&self.creds, Purpose::Secret, &r.source, &sealed))
                    .ok_or_else(|| {
                        DriverError::Failed(format!(
                            "secret {} does not decrypt with this cluster's key; create it again",
                            r.source
                        ))
                    })
            })
            .collect()
    }
}
