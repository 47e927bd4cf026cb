//! Ahead of a heal: while a member is under suspicion, the peers that would take over its
//! replicas if it were declared down make sure the images are on their host (a pull can
//! take far longer than failure detection), so that the start on `down` needs no pull. A
//! suspicion that is refuted costs an image that stays cached, as Docker keeps any other.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use knit_scheduler::spec::Driver as DriverKind;
use knit_scheduler::{NodeId, Placement, ServiceSpec, SlotId};

use crate::driver::Drivers;
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
}

impl Warmer {
    /// Starts the image checks that `slots` (of `specs`) call for.
    pub(crate) fn warm(
        &mut self,
        slots: &BTreeSet<SlotId>,
        specs: &BTreeMap<String, ServiceSpec>,
        drivers: &Arc<Drivers>,
        secrets: &crate::secrets::SecretSource,
        tasks: &Tasks,
    ) {
        let now = Instant::now();
        self.checked
            .retain(|_, at| now.duration_since(*at) < RECHECK_AFTER);
        let wanted: BTreeMap<&str, &ServiceSpec> = slots
            .iter()
            .filter_map(|slot| specs.get(&slot.service))
            .filter(|spec| spec.driver == DriverKind::Docker)
            .filter_map(|spec| spec.image.as_deref().map(|image| (image, spec)))
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
