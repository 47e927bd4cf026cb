//! CPU and memory: what a replica reserves and what a node offers. A leaf: both `spec`
//! and `node` use it.

use serde::{Deserialize, Serialize};

/// CPU and memory, as reserved by a replica or offered by a node.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resources {
    /// Thousandths of a core; `--reserve-cpu 0.5` is 500. Zero: none or unknown.
    pub cpu_millis: u64,
    /// Bytes; `--reserve-memory 512M`. Zero: none or unknown.
    pub memory_bytes: u64,
}

impl Resources {
    /// Whether `self` (a reservation) fits in `room`; a zero field of `capacity` means
    /// unknown, and that dimension is not checked.
    pub fn fits(&self, room: &Resources, capacity: &Resources) -> bool {
        (capacity.cpu_millis == 0 || self.cpu_millis <= room.cpu_millis)
            && (capacity.memory_bytes == 0 || self.memory_bytes <= room.memory_bytes)
    }

    /// Field-wise sum, saturating.
    pub fn plus(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
        }
    }

    /// Field-wise difference, saturating at zero.
    pub fn minus(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
        }
    }
}
