//! Autoscaling: the replica count a service's policy asks for, from its replicas' measured
//! CPU. Like Kubernetes' horizontal autoscaler: `desired = ceil(current * usage / target)`,
//! within `[min, max]`, with a tolerance band against flapping and a cooldown after every
//! change (longer down than up). The service's coordinator applies it as a new spec
//! version.

use crate::replica::{ReplicaReport, ReplicaState};
use crate::spec::{Mode, ServiceSpec};

/// No change while usage is within this fraction of the target.
pub const TOLERANCE: f64 = 0.1;
/// Time after a change before scaling up again.
pub const UP_COOLDOWN_MS: u64 = 10_000;
/// Time after a change before scaling down again.
pub const DOWN_COOLDOWN_MS: u64 = 20_000;

/// The replica count `spec`'s policy asks for now, or `None` to keep it. `reports` are the
/// service's replicas on live nodes; `last_change_ms` is when its spec was last written.
pub fn desired(
    spec: &ServiceSpec,
    reports: &[&ReplicaReport],
    last_change_ms: u64,
    now_ms: u64,
) -> Option<u32> {
    let policy = spec.autoscale.as_ref()?;
    let Mode::Replicated { replicas: current } = spec.mode else {
        return None;
    };
    let (min, max) = (policy.min, policy.max.max(policy.min));
    if current < min || current > max {
        return Some(current.clamp(min, max));
    }
    let samples: Vec<u32> = reports
        .iter()
        .filter(|r| r.slot.service == spec.name && r.state == ReplicaState::Running)
        .filter_map(|r| r.cpu_millis)
        .collect();
    if samples.is_empty() || policy.cpu_target_percent == 0 {
        return None;
    }
    let mean_millis = f64::from(samples.iter().sum::<u32>())
        / f64::from(u32::try_from(samples.len()).unwrap_or(u32::MAX));
    // Percent of one core, as `docker stats` shows it.
    let ratio = mean_millis / 10.0 / f64::from(policy.cpu_target_percent);
    if (ratio - 1.0).abs() <= TOLERANCE {
        return None;
    }
    let wanted = (f64::from(current) * ratio)
        .ceil()
        .clamp(f64::from(min), f64::from(max));
    // In [min, max], so the conversion is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let wanted = wanted as u32;
    let since = now_ms.saturating_sub(last_change_ms);
    match wanted.cmp(&current) {
        std::cmp::Ordering::Greater if since >= UP_COOLDOWN_MS => Some(wanted),
        std::cmp::Ordering::Less if since >= DOWN_COOLDOWN_MS => Some(wanted),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::{Health, SlotId};
    use crate::spec::Autoscale;
    use std::collections::BTreeMap;

    fn spec(replicas: u32) -> ServiceSpec {
        let mut spec = ServiceSpec::docker("burn", "x");
        spec.mode = Mode::Replicated { replicas };
        spec.autoscale = Some(Autoscale {
            min: 1,
            max: 4,
            cpu_target_percent: 50,
        });
        spec
    }

    fn busy(i: u32, cpu_millis: u32) -> ReplicaReport {
        ReplicaReport {
            slot: SlotId::replica("burn", i),
            spec_version: 1,
            template: 1,
            state: ReplicaState::Running,
            health: Health::None,
            host_ports: BTreeMap::new(),
            error: None,
            runtime_id: format!("r{i}"),
            started_at_ms: 0,
            restarts: 0,
            cpu_millis: Some(cpu_millis),
        }
    }

    #[test]
    fn scales_toward_the_target_within_bounds_and_cooldowns() {
        let hot = [busy(1, 1000)];
        let hot: Vec<&ReplicaReport> = hot.iter().collect();
        assert_eq!(
            desired(&spec(1), &hot, 0, 60_000),
            Some(2),
            "100% of a core against 50%"
        );
        assert_eq!(
            desired(&spec(1), &hot, 55_000, 60_000),
            None,
            "cooling down"
        );
        let cold = [busy(1, 0), busy(2, 10), busy(3, 20)];
        let cold: Vec<&ReplicaReport> = cold.iter().collect();
        assert_eq!(
            desired(&spec(3), &cold, 0, 60_000),
            Some(1),
            "down to min at once"
        );
        assert_eq!(
            desired(&spec(3), &cold, 45_000, 60_000),
            None,
            "down waits longer"
        );
        let near = [busy(1, 520)];
        let near: Vec<&ReplicaReport> = near.iter().collect();
        assert_eq!(
            desired(&spec(1), &near, 0, 60_000),
            None,
            "within tolerance"
        );
        let very_hot = [busy(1, 1000), busy(2, 1000), busy(3, 1000)];
        let very_hot: Vec<&ReplicaReport> = very_hot.iter().collect();
        assert_eq!(
            desired(&spec(3), &very_hot, 0, 60_000),
            Some(4),
            "capped at max"
        );
        assert_eq!(
            desired(&spec(9), &[], 59_999, 60_000),
            Some(4),
            "out of bounds is clamped at once"
        );
    }
}
