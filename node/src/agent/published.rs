//! What the round's core reads of other peers' records ([`Published`]): the rollout
//! progress every coordinator published, and when each spec was last written.

use knit_scheduler::agent::Published;
use knit_scheduler::rollout::Progress;

use crate::cluster::Snapshot;
use crate::records::service_key;

impl Published for Snapshot {
    /// Every member's published progress of `service`.
    fn progress(&self, service: &str) -> Vec<Progress> {
        self.progress_of(service)
    }

    fn spec_written_ms(&self, service: &str) -> u64 {
        self.store
            .stamp(&service_key(service))
            .map_or(0, |s| s.millis())
    }
}
