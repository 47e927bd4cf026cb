//! Containers made ahead of a takeover. While a member is under suspicion, a peer that would
//! take over some of its replicas if it were declared down creates their containers, not
//! started, so that on `down` only the start is left (the engine's create and the image
//! check come off the heal). A prepared container carries its replica's labels and
//! [`PREPARED`]; until it is started it is no replica, and lists skip it.
//! [`DockerDriver::start`] starts it when the launch is the one it was made from;
//! [`DockerDriver::discard_prepared`] removes those the agent no longer wants (the
//! suspicion was refuted), and a full list removes those this process did not make (left
//! by an earlier run of the peer).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use knit_scheduler::SlotId;

use super::{CALL_TIMEOUT, DockerDriver, container_body, container_name, failed, within};
use crate::driver::{DriverError, Launch, Replica};

/// The label of a container made ahead of a takeover.
pub(crate) const PREPARED: &str = "knit.prepared";
/// Prepared containers kept at most.
pub(crate) const PREPARED_MAX: usize = 64;

/// What a prepared container was made from: a launch that differs gets a new container.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Made {
    template: u64,
    spec_version: u64,
    dns: Option<Ipv4Addr>,
}

impl Made {
    fn of(launch: &Launch) -> Self {
        Self {
            template: launch.spec.template_id(),
            spec_version: launch.spec.version,
            dns: launch.directory.dns,
        }
    }
}

/// One prepared container, by slot.
#[derive(Debug)]
struct Entry {
    made: Made,
    /// The container's name, chosen before its create.
    name: String,
    /// Its id once the create returned.
    id: Option<String>,
}

/// The prepared containers of this process.
#[derive(Debug, Default)]
pub(super) struct Registry {
    entries: Mutex<BTreeMap<SlotId, Entry>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<SlotId, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a container of this name is one this process prepared (or is preparing).
    pub(super) fn knows(&self, name: &str) -> bool {
        let name = name.trim_start_matches('/');
        self.lock().values().any(|e| e.name == name)
    }
}

/// Whether `inspect` is a prepared container that has never been started (a start that
/// failed leaves it `created` with an error: that is a replica, failed).
pub(super) fn unstarted(inspect: &ContainerInspectResponse) -> bool {
    let prepared = inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .is_some_and(|l| l.contains_key(PREPARED));
    let state = inspect.state.as_ref();
    let created = state.and_then(|s| s.status) == Some(ContainerStateStatusEnum::CREATED);
    let no_error = state
        .and_then(|s| s.error.as_deref())
        .is_none_or(str::is_empty);
    prepared && created && no_error
}

impl DockerDriver {
    /// Creates, without starting it, the container `launch` would start, unless one made
    /// from the same launch is here already. True when it created one.
    pub(crate) async fn prepare(&self, launch: &Launch) -> Result<bool, DriverError> {
        let image = launch.spec.image.as_deref().ok_or_else(|| {
            DriverError::Failed(format!("service {} has no image", launch.spec.name))
        })?;
        let made = Made::of(launch);
        let name = container_name(&launch.slot);
        let stale = {
            let mut entries = self.prepared.lock();
            match entries.get(&launch.slot) {
                Some(e) if e.made == made => return Ok(false),
                None if entries.len() >= PREPARED_MAX => return Ok(false),
                _ => {}
            }
            let entry = Entry {
                made: made.clone(),
                name: name.clone(),
                id: None,
            };
            entries.insert(launch.slot.clone(), entry)
        };
        if let Some(id) = stale.and_then(|e| e.id) {
            self.remove(&id).await?;
        }
        let created = async {
            self.ensure_image(image, launch.registry.as_ref()).await?;
            let options = CreateContainerOptionsBuilder::default().name(&name).build();
            let mut body = container_body(launch, image, self.publish_ip);
            if let Some(labels) = body.labels.as_mut() {
                labels.insert(PREPARED.to_owned(), "1".to_owned());
            }
            within(
                CALL_TIMEOUT,
                self.docker.create_container(Some(options), body),
            )
            .await
            .map_err(|e| failed("create", &e))
        }
        .await;
        let id = match created {
            Ok(created) => created.id,
            Err(e) => {
                self.forget(&launch.slot, &name);
                return Err(e);
            }
        };
        let kept = {
            let mut entries = self.prepared.lock();
            match entries.get_mut(&launch.slot) {
                Some(e) if e.name == name => {
                    e.id = Some(id.clone());
                    true
                }
                _ => false,
            }
        };
        if !kept {
            // Taken by a start or discarded while it was being made.
            self.remove(&id).await?;
            return Ok(false);
        }
        tracing::debug!(slot = %launch.slot, container = %id, "container prepared for a possible takeover");
        Ok(true)
    }

    /// Forgets the entry of `slot` if it still is the one named `name`.
    fn forget(&self, slot: &SlotId, name: &str) {
        let mut entries = self.prepared.lock();
        if entries.get(slot).is_some_and(|e| e.name == name) {
            entries.remove(slot);
        }
    }

    /// Takes the prepared container of `launch`'s slot out of the registry: its id when it
    /// was made from this launch and is ready, else `None` (one made from another launch
    /// is removed; one still being made is removed by its maker).
    pub(super) async fn take_prepared(&self, launch: &Launch) -> Option<String> {
        let entry = self.prepared.lock().remove(&launch.slot)?;
        let id = entry.id?;
        if entry.made == Made::of(launch) {
            return Some(id);
        }
        if let Err(e) = self.remove(&id).await {
            tracing::warn!(container = %id, error = %e, "cannot remove an outdated prepared container");
        }
        None
    }

    /// Starts the prepared container `id`; `None` (after removing it) when it cannot be,
    /// so that the caller makes a new one.
    pub(super) async fn start_prepared(&self, id: &str, launch: &Launch) -> Option<Replica> {
        let started = async {
            within(CALL_TIMEOUT, self.docker.start_container(id, None))
                .await
                .map_err(|e| failed("start", &e))?;
            let inspect = within(CALL_TIMEOUT, self.docker.inspect_container(id, None))
                .await
                .map_err(|e| failed("inspect", &e))?;
            super::replica_from(&inspect).map_err(DriverError::Failed)
        }
        .await;
        match started {
            Ok(replica) => Some(replica),
            Err(e) => {
                tracing::warn!(slot = %launch.slot, container = %id, error = %e, "the prepared container did not start; making a new one");
                self.remove(id).await.ok();
                None
            }
        }
    }

    /// The slots with a prepared container (ready or being made).
    pub(crate) fn prepared_slots(&self) -> BTreeSet<SlotId> {
        self.prepared.lock().keys().cloned().collect()
    }

    /// Removes the prepared containers of slots outside `keep`.
    pub(crate) async fn discard_prepared(&self, keep: &BTreeSet<SlotId>) {
        let dropped: Vec<(SlotId, Entry)> = {
            let mut entries = self.prepared.lock();
            let slots: Vec<SlotId> = entries
                .keys()
                .filter(|s| !keep.contains(*s))
                .cloned()
                .collect();
            slots
                .into_iter()
                .filter_map(|s| entries.remove(&s).map(|e| (s, e)))
                .collect()
        };
        for (slot, entry) in dropped {
            let Some(id) = entry.id else { continue };
            match self.remove(&id).await {
                Ok(()) => {
                    tracing::debug!(slot = %slot, container = %id, "prepared container discarded")
                }
                Err(e) => {
                    tracing::warn!(slot = %slot, container = %id, error = %e, "cannot remove a prepared container")
                }
            }
        }
    }
}
