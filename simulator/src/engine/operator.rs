//! The operator's changes during a run.
//!
//! - `update` faults: the operator writes a new version of a service's spec, every host
//!   reads it from the next round, and the agents roll it out through the real rollout core
//!   (the coordinator opens waves, every host replaces its replicas as the waves allow) or
//!   scale it (new slots placed, surplus ones stopped).
//! - `remove` faults: a down host is removed (`knit node rm`) and never restarts; with
//!   `store = true` the removal record is written through another host and the real node
//!   cores cut the host off as it reaches them.
//!
//! A rollout moves with time alone (a wave is watched for its monitor time, then the delay
//! runs), so while any rollout is under way no host skips its round (see [`super::round`]).

use knit_scheduler::spec::Mode;

use super::Engine;
use crate::scenario::{Fault, secs_to_ms};

impl Engine {
    /// Writes the spec change of an `update` fault.
    pub(super) fn update(&mut self, fault: &Fault) {
        let Fault::Update {
            service,
            host,
            image,
            replicas,
            parallelism,
            delay_s,
            monitor_s,
            ..
        } = fault
        else {
            return;
        };
        let Some(old) = self.specs.get(service) else {
            return;
        };
        let mut next = old.clone();
        if let Some(image) = image {
            next.image = Some(image.clone());
        }
        if let Some(replicas) = replicas {
            next.mode = Mode::Replicated {
                replicas: *replicas,
            };
        }
        if let Some(p) = parallelism {
            next.update.parallelism = *p;
        }
        if let Some(d) = delay_s {
            next.update.delay_ms = secs_to_ms(*d);
        }
        if let Some(m) = monitor_s {
            next.update.monitor_ms = secs_to_ms(*m);
        }
        let next = old.followed_by(next, false);
        self.templates
            .insert(service.clone(), (next.version, next.template_id()));
        self.healing.set_service(next.clone());
        self.board.written(service, self.now_ms);
        if self.store && self.hosts[*host].up {
            // The spec record, of the size the peer writes, through the operator's host.
            let bytes = serde_json::to_vec(&next).map_or(0, |json| json.len());
            self.write(*host, format!("svc/{service}"), bytes);
        }
        self.specs.insert(service.clone(), next);
        // Every host's inputs changed.
        self.hosts.iter_mut().for_each(|host| host.quiet = None);
    }

    /// Removes down host `h` from the cluster through host `through` (a `remove` fault).
    pub(super) fn remove(&mut self, h: usize, through: usize) {
        self.hosts[h].removed = true;
        if !(self.store && self.hosts[through].up) {
            return;
        }
        let node = self.hosts[h].peer.node;
        let record = serde_json::json!({
            "name": crate::healing::host_name(h),
            "removed_at_ms": self.now_ms,
        });
        let value = serde_json::to_vec(&record).unwrap_or_default();
        self.stores.disturbed(self.now_ms);
        self.node_input(
            through,
            knit_mesh::node_core::Input::Put {
                key: knit_mesh::store::revoked_key(&node),
                value: Some(value),
            },
        );
    }

    /// Each running replica that does not run its service's current spec, as
    /// `slot: runs version v on host`, for the report's violations.
    pub(super) fn outdated(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (h, host) in self.hosts.iter().enumerate() {
            for (&s, &(version, template)) in &host.started_as {
                let slot = &self.healing.slots[s as usize];
                let current = self.templates.get(&slot.service);
                if current.is_some_and(|&(_, t)| t != template) {
                    out.push(format!(
                        "{slot}: runs version {version} on {}, the spec is at version {}",
                        crate::healing::host_name(h),
                        current.map_or(0, |&(v, _)| v)
                    ));
                }
            }
        }
        out
    }
}
