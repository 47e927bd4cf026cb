//! Bounds on what a spec may ask of the cluster, so that no spec (a typo such as
//! `--replicas 4000000000`, or a record written by a misbehaving peer) can make placement or
//! the agents do unbounded work.
//!
//! Two of them are the cluster's to choose ([`Limits`]: replicas per service, slots in the
//! whole cluster), within hard ceilings; the others are fixed constants. Every peer applies
//! them twice: the API refuses a spec that breaks them, and a spec read back from the store
//! that breaks them is ignored (see `knit`'s `cluster.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ServiceSpec;
use crate::error::SpecError;

/// Replicas a service may ask for by default (`--replicas`, autoscaling's max, update
/// parallelism); a cluster may change it up to [`REPLICAS_MAX_CEILING`].
pub const REPLICAS_MAX: u32 = 10_000;
/// The most a cluster may allow per service.
pub const REPLICAS_MAX_CEILING: u32 = 100_000;
/// Slots the whole cluster may hold by default (replicas of every replicated service, plus
/// one per node for every global service); a cluster may change it up to
/// [`SLOTS_MAX_CEILING`].
pub const SLOTS_MAX: u32 = 100_000;
/// The most a cluster may allow in all.
pub const SLOTS_MAX_CEILING: u32 = 1_000_000;

/// A spec's JSON encoding (as the API and the store carry it), without its `previous`.
pub const SPEC_ENCODED_MAX_BYTES: usize = 64 * 1024;
/// A stored spec record: the spec and the previous spec it keeps for rollback, each within
/// [`SPEC_ENCODED_MAX_BYTES`], and some room for the nesting.
pub const SPEC_RECORD_MAX_BYTES: usize = 2 * SPEC_ENCODED_MAX_BYTES + 1024;

/// Environment variables per spec.
pub const ENV_MAX: usize = 256;
/// An environment variable's name.
pub const ENV_NAME_MAX_BYTES: usize = 256;
/// An environment variable's value.
pub const ENV_VALUE_MAX_BYTES: usize = 16 * 1024;
/// Labels per spec.
pub const LABELS_MAX: usize = 64;
/// A label's key.
pub const LABEL_KEY_MAX_BYTES: usize = 256;
/// A label's value.
pub const LABEL_VALUE_MAX_BYTES: usize = 4 * 1024;
/// Published ports per spec.
pub const PORTS_MAX: usize = 64;
/// Placement constraints per spec.
pub const CONSTRAINTS_MAX: usize = 32;
/// Secrets per service.
pub const SECRETS_MAX: usize = 64;
/// Configs per service.
pub const CONFIGS_MAX: usize = 64;
/// Mounts per service.
pub const MOUNTS_MAX: usize = 32;
/// The longest mount source or target path, in bytes.
pub const MOUNT_PATH_MAX_BYTES: usize = 4096;
/// One constraint, as text (`node.labels.zone==a`).
pub const CONSTRAINT_MAX_BYTES: usize = 512;
/// Words of the command and its arguments together (and of a command health probe).
pub const ARGS_MAX: usize = 256;
/// One word of the command or its arguments.
pub const ARG_MAX_BYTES: usize = 16 * 1024;
/// An image reference.
pub const IMAGE_MAX_BYTES: usize = 512;
/// An HTTP health probe's path.
pub const HEALTH_PATH_MAX_BYTES: usize = 1024;
/// The shortest time between two health probes of a replica.
pub const HEALTH_INTERVAL_MIN_MS: u64 = 100;
/// Failed probes in a row before a replica is unhealthy.
pub const HEALTH_RETRIES_MAX: u32 = 100;
/// Any delay, window, interval or timeout of a spec (a week).
pub const DURATION_MAX_MS: u64 = 7 * 24 * 3600 * 1000;

/// The limits a cluster chose (`knit cluster update`); defaults when it chose none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Limits {
    /// Replicas one service may ask for, 1 to [`REPLICAS_MAX_CEILING`].
    pub replicas_max: u32,
    /// Slots in the whole cluster, 1 to [`SLOTS_MAX_CEILING`].
    pub slots_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            replicas_max: REPLICAS_MAX,
            slots_max: SLOTS_MAX,
        }
    }
}

impl Limits {
    /// The most permissive limits any cluster may have: what a client checks before it
    /// knows the cluster's own.
    pub const CEILING: Limits = Limits {
        replicas_max: REPLICAS_MAX_CEILING,
        slots_max: SLOTS_MAX_CEILING,
    };

    /// Checks that the limits are within their ceilings.
    pub fn validate(&self) -> Result<(), LimitsError> {
        if !(1..=REPLICAS_MAX_CEILING).contains(&self.replicas_max) {
            return Err(LimitsError(format!(
                "max-replicas {} must be 1 to {REPLICAS_MAX_CEILING} (default {REPLICAS_MAX})",
                self.replicas_max
            )));
        }
        if !(1..=SLOTS_MAX_CEILING).contains(&self.slots_max) {
            return Err(LimitsError(format!(
                "max-slots {} must be 1 to {SLOTS_MAX_CEILING} (default {SLOTS_MAX})",
                self.slots_max
            )));
        }
        Ok(())
    }
}

/// A cluster's limits are out of range; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cluster limits: {0}")]
pub struct LimitsError(String);

/// The slots `spec` asks for on a cluster of `nodes` nodes: its replicas, or one per node
/// for a global service.
pub fn slots_asked(spec: &ServiceSpec, nodes: usize) -> u64 {
    match spec.mode {
        super::Mode::Replicated { replicas } => u64::from(replicas),
        super::Mode::Global => nodes as u64,
    }
}

/// Checks that `spec`, beside `others` (the other services), keeps the cluster within its
/// slot cap.
pub fn check_slot_cap<'a>(
    spec: &ServiceSpec,
    others: impl IntoIterator<Item = &'a ServiceSpec>,
    nodes: usize,
    limits: &Limits,
) -> Result<(), SpecError> {
    let others: u64 = others
        .into_iter()
        .filter(|o| o.name != spec.name)
        .map(|o| slots_asked(o, nodes))
        .sum();
    let asked = slots_asked(spec, nodes);
    if others.saturating_add(asked) <= u64::from(limits.slots_max) {
        return Ok(());
    }
    Err(SpecError::invalid(
        &spec.name,
        "replicas",
        format!(
            "{asked} slots with the {others} the other services hold would pass the cluster's cap of {} slots; ask for at most {}, scale other services down, or raise the cap with `knit cluster update --max-slots N`",
            limits.slots_max,
            u64::from(limits.slots_max).saturating_sub(others)
        ),
    ))
}

/// The services of `specs` left out so that the rest fit the cluster's slot cap, each with
/// the reason: services are admitted smallest first (ties by name), so that one service
/// that asks for too much is the one left out, whatever the order the specs arrived in.
/// Every peer with the same specs and node count leaves out the same services.
pub fn over_slot_cap<'a>(
    specs: impl IntoIterator<Item = &'a ServiceSpec>,
    nodes: usize,
    limits: &Limits,
) -> BTreeMap<String, SpecError> {
    let mut order: Vec<(u64, &ServiceSpec)> = specs
        .into_iter()
        .map(|s| (slots_asked(s, nodes), s))
        .collect();
    order.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
    let mut total = 0u64;
    let mut left_out = BTreeMap::new();
    for (asked, spec) in order {
        let next = total.saturating_add(asked);
        if next <= u64::from(limits.slots_max) {
            total = next;
            continue;
        }
        let why = format!(
            "{asked} slots with the {total} of smaller services pass the cluster's cap of {} slots; scale it down, or raise the cap with `knit cluster update --max-slots N`",
            limits.slots_max
        );
        left_out.insert(
            spec.name.clone(),
            SpecError::invalid(&spec.name, "replicas", why),
        );
    }
    left_out
}

/// Counts bytes written, to measure an encoding without keeping it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The length of `value`'s JSON encoding (`usize::MAX` if it cannot be encoded).
pub(super) fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Mode;

    fn replicated(name: &str, replicas: u32) -> ServiceSpec {
        ServiceSpec {
            mode: Mode::Replicated { replicas },
            ..ServiceSpec::docker(name, "img")
        }
    }

    #[test]
    fn limits_stay_within_their_ceilings() {
        assert_eq!(Limits::default().validate(), Ok(()));
        assert_eq!(Limits::CEILING.validate(), Ok(()));
        let e = Limits {
            replicas_max: 0,
            ..Limits::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("must be 1 to 100000"), "{e}");
        let e = Limits {
            slots_max: SLOTS_MAX_CEILING + 1,
            ..Limits::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("max-slots"), "{e}");
        let old: Limits = serde_json::from_str("{}").unwrap();
        assert_eq!(old, Limits::default());
    }

    #[test]
    fn the_slot_cap_counts_every_service() {
        let limits = Limits {
            replicas_max: 100,
            slots_max: 10,
        };
        let a = replicated("a", 6);
        let b = replicated("b", 4);
        assert_eq!(check_slot_cap(&b, [&a], 3, &limits), Ok(()));
        let e = check_slot_cap(&replicated("b", 5), [&a], 3, &limits).unwrap_err();
        assert!(e.to_string().contains("ask for at most 4"), "{e}");
        // A service's own old spec is not counted twice.
        assert_eq!(
            check_slot_cap(&replicated("a", 10), [&a], 3, &limits),
            Ok(())
        );
        let global = ServiceSpec {
            mode: Mode::Global,
            ..ServiceSpec::docker("g", "img")
        };
        assert!(check_slot_cap(&global, [&a], 4, &limits).is_ok());
        assert!(check_slot_cap(&global, [&a], 5, &limits).is_err());
    }

    #[test]
    fn the_largest_services_are_left_out_first() {
        let limits = Limits {
            replicas_max: 100,
            slots_max: 10,
        };
        let specs = [
            replicated("zz", 3),
            replicated("bomb", 9),
            replicated("a", 3),
            replicated("b", 4),
        ];
        let out = over_slot_cap(&specs, 3, &limits);
        assert_eq!(out.keys().collect::<Vec<_>>(), ["bomb"]);
        let reversed: Vec<&ServiceSpec> = specs.iter().rev().collect();
        assert_eq!(over_slot_cap(reversed, 3, &limits), out);
        assert!(over_slot_cap(&specs[..1], 3, &limits).is_empty());
    }

    #[test]
    fn encoded_len_is_the_json_length() {
        let s = ServiceSpec::docker("blog", "img");
        assert_eq!(encoded_len(&s), serde_json::to_vec(&s).unwrap().len());
    }
}
