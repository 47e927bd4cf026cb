//! Ahead of a heal: while a member is under suspicion, the peers that would take over its
//! replicas if it were declared down make sure the images are on their host (a pull can
//! take far longer than failure detection), so that the start on `down` needs no pull, and
//! create the containers, not started (see [`crate::driver::docker::prepared`]), so that
//! only the start is left. A suspicion that is refuted costs an image that stays cached, as
//! Docker keeps any other, and containers that are removed again. Replicas with secrets or
//! configs are not prepared: their files are written at the start.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use knit_scheduler::spec::Driver as DriverKind;
use knit_scheduler::{NodeId, Placement, ServiceSpec, SlotId};

use crate::driver::{Drivers, Launch};
use crate::tasks::Tasks;

/// Image checks (and pulls) in flight at most.
const IN_FLIGHT_MAX: usize = 4;
/// An image checked this recently is not checked again.
const RECHECK_AFTER: Duration = Duration::from_secs(60);
/// Images remembered at most.
const REMEMBERED_MAX: usize = 256;

/// The slots `me` would start if `current` turned into `if_down`: those it holds in
/// `if_down` but not in `current`.
pub(crate) fn takeovers(current: &Placement, if_down: &Placement, me: &NodeId) -> BTreeSet<SlotId> {
    let now: BTreeSet<SlotId> = current.assigned_to(me).collect();
    if_down
        .assigned_to(me)
        .filter(|slot| !now.contains(slot))
        .collect()
}

/// Warms the images of takeovers, each at most once a minute, a few at a time.
#[derive(Debug, Default)]
pub(crate) struct Warmer {
    checked: BTreeMap<String, Instant>,
    in_flight: Arc<AtomicUsize>,
    /// Slots whose container was asked for, with the template it was asked from.
    prepared: BTreeMap<SlotId, u64>,
    /// Whether a removal of prepared containers is running.
    discarding: Arc<AtomicBool>,
}

impl Warmer {
    /// Prepares the containers, or checks the images, that `slots` (of `specs`) call
    /// for on this node (`node`).
    pub(crate) fn warm(
        &mut self,
        slots: &BTreeSet<SlotId>,
        specs: &BTreeMap<String, ServiceSpec>,
        drivers: &Arc<Drivers>,
        secrets: &crate::secrets::SecretSource,
        tasks: &Tasks,
        node: &str,
    ) {
        let now = Instant::now();
        self.checked
            .retain(|_, at| now.duration_since(*at) < RECHECK_AFTER);
        self.prepared.retain(|slot, _| slots.contains(slot));
        let (preparable, image_only): (Vec<_>, Vec<_>) = slots
            .iter()
            .filter_map(|slot| {
                specs
                    .get(&slot.service)
                    .filter(|spec| spec.driver == DriverKind::Docker && spec.image.is_some())
                    .map(|spec| (slot, spec))
            })
            .partition(|(_, spec)| spec.secrets.is_empty() && spec.configs.is_empty());
        for (slot, spec) in preparable {
            if self.prepared.get(slot) == Some(&spec.template_id()) {
                continue;
            }
            if self.in_flight.load(Ordering::Relaxed) >= IN_FLIGHT_MAX {
                return;
            }
            self.prepared.insert(slot.clone(), spec.template_id());
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            let in_flight = self.in_flight.clone();
            let drivers = drivers.clone();
            let launch = Launch {
                slot: slot.clone(),
                spec: Arc::new(spec.clone()),
                node: node.to_owned(),
                secrets: None,
                configs: None,
                directory: drivers.directory.borrow().clone(),
                registry: secrets.registry_auth(spec.image.as_deref().unwrap_or_default()),
            };
            tasks.spawn("container prepare", async move {
                if let Some(docker) = drivers.docker.as_ref()
                    && let Err(e) = docker.prepare(&launch).await
                {
                    tracing::warn!(slot = %launch.slot, error = %e,
                        "cannot prepare a container for a possible takeover");
                }
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        let wanted: BTreeMap<&str, &ServiceSpec> = image_only
            .into_iter()
            .filter_map(|(_, spec)| spec.image.as_deref().map(|image| (image, spec)))
            .collect();
        for (image, spec) in wanted {
            if self.checked.contains_key(image) || self.checked.len() >= REMEMBERED_MAX {
                continue;
            }
            if self.in_flight.load(Ordering::Relaxed) >= IN_FLIGHT_MAX {
                return;
            }
            self.checked.insert(image.to_owned(), now);
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            let in_flight = self.in_flight.clone();
            let drivers = drivers.clone();
            let spec = spec.clone();
            let auth = secrets.registry_auth(image);
            tasks.spawn("image warm-up", async move {
                if let Ok(driver) = drivers.for_kind(DriverKind::Docker)
                    && let Err(e) = driver.warm(&spec, auth.as_ref()).await
                {
                    tracing::warn!(service = %spec.name, error = %e,
                        "cannot make the image ready for a possible takeover");
                }
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }

    /// Removes the prepared containers of slots outside `keep` (a removal at a time).
    pub(crate) fn discard(&self, keep: &BTreeSet<SlotId>, drivers: &Arc<Drivers>, tasks: &Tasks) {
        let Some(docker) = drivers.docker.as_ref() else {
            return;
        };
        if docker.prepared_slots().is_subset(keep) || self.discarding.swap(true, Ordering::AcqRel) {
            return;
        }
        let (drivers, keep, discarding) = (drivers.clone(), keep.clone(), self.discarding.clone());
        tasks.spawn("prepared containers' removal", async move {
            if let Some(docker) = drivers.docker.as_ref() {
                docker.discard_prepared(&keep).await;
            }
            discarding.store(false, Ordering::Release);
        });
    }
}

#[cfg(test)]
mod tests {
    use knit_scheduler::spec::Mode;
    use knit_scheduler::{NodeView, PlacementConfig, place};

    use super::*;

    fn node(id: &str) -> NodeView {
        NodeView::new(NodeId::new(id).unwrap())
    }

    #[test]
    fn a_takeover_is_a_slot_this_node_would_gain() {
        let specs = [
            ServiceSpec {
                mode: Mode::Replicated { replicas: 6 },
                ..ServiceSpec::docker("web", "web:1")
            },
            ServiceSpec {
                mode: Mode::Replicated { replicas: 2 },
                ..ServiceSpec::docker("db", "db:1")
            },
        ];
        let config = PlacementConfig::default();
        let all = [node("a"), node("b"), node("c")];
        let current = place(&all, &specs, &config);
        let if_down = place(&all[..2], &specs, &config);
        let me = NodeId::new("a").unwrap();
        let gained = takeovers(&current, &if_down, &me);
        assert!(!gained.is_empty(), "a takes some of c's slots");
        let held: BTreeSet<SlotId> = current.assigned_to(&me).collect();
        for slot in &gained {
            assert!(!held.contains(slot), "{slot} already runs here");
            assert_eq!(
                current.owner(slot),
                Some(&NodeId::new("c").unwrap()),
                "{slot} comes from the suspect"
            );
        }
        assert!(takeovers(&current, &current, &me).is_empty());
    }
}
