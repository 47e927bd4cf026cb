//! Telemetry: this host's CPU, load, memory, disk (of the data dir's file system) and
//! temperature, sampled every few seconds and published in the node-owned record
//! `telemetry`, for `node ls`, and for the node's own decisions (preventive healing).
//!
//! Every write of the record is gossiped to every member, so the cluster's telemetry
//! writes cost each member in proportion to their total rate. A node publishes a sample
//! when it changes the node's preventive-healing verdict (a threshold crossed either
//! way: published at once, so the record always gives the verdict the host's last
//! sample gives), and otherwise only every [`republish_period`]: 60 s, or longer in a
//! larger cluster, so that the whole cluster writes about [`CLUSTER_WRITES_PER_S`]
//! telemetry records a second whatever its size. (Publishing on every 5-point change,
//! as before, let gossip per node grow with the cluster's size: each host's CPU moves
//! that much every few seconds on a busy host.) `node ls` shows other hosts' figures as
//! last published.

use std::path::{Path, PathBuf};
use std::time::Duration;

use knit_mesh::NodeId;
use knit_mesh::quic::Mesh;
use knit_mesh::store::owned_key;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::agent::prevention::{Thresholds, failing};

/// How often the host is sampled.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// The shortest republishing period, in a small cluster.
const REPUBLISH_MIN: Duration = Duration::from_secs(60);
/// Telemetry writes the whole cluster makes per second, at most, but for threshold
/// crossings: each member's period grows with the cluster's size to keep to it.
pub(crate) const CLUSTER_WRITES_PER_S: f64 = 0.1;

/// How often a node of a cluster of `members` republishes its telemetry when nothing
/// crosses a threshold: `max(60 s, members / CLUSTER_WRITES_PER_S)`.
pub(crate) fn republish_period(members: usize) -> Duration {
    // Member counts are far below 2^52: the conversion is exact.
    #[allow(clippy::cast_precision_loss)]
    let spread = Duration::from_secs_f64(members as f64 / CLUSTER_WRITES_PER_S);
    spread.max(REPUBLISH_MIN)
}

/// Whether `sample` should be published, the last published one being `last` (and
/// `age` old) in a cluster of `members`: the first sample, a sample that changes the
/// preventive-healing verdict, or the period is over.
pub(crate) fn publish_due(
    last: Option<(Duration, &Telemetry)>,
    sample: &Telemetry,
    members: usize,
    limits: &Thresholds,
) -> bool {
    let Some((age, last)) = last else {
        return true;
    };
    // Start failures are the agent's to count, not telemetry's: none here.
    let verdict = |t: &Telemetry| failing(Some(t), 0, limits).is_some();
    verdict(sample) != verdict(last) || age >= republish_period(members)
}

/// One sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Telemetry {
    /// Busy CPU over the last sample period, 0-100 (all cores).
    pub(crate) cpu_percent: f32,
    /// One-minute load average.
    pub(crate) load1: f64,
    pub(crate) memory_used_bytes: u64,
    pub(crate) memory_total_bytes: u64,
    /// The file system holding the data dir.
    pub(crate) disk_used_bytes: u64,
    pub(crate) disk_total_bytes: u64,
    /// The hottest sensor, where the host has sensors.
    pub(crate) temperature_max_c: Option<f32>,
    pub(crate) sampled_at_ms: u64,
}

impl Telemetry {
    fn percent(used: u64, total: u64) -> Option<f64> {
        // Byte counts are far below 2^52: the conversion is exact enough for a percentage.
        #[allow(clippy::cast_precision_loss)]
        (total > 0).then(|| used as f64 * 100.0 / total as f64)
    }

    pub(crate) fn memory_percent(&self) -> Option<f64> {
        Self::percent(self.memory_used_bytes, self.memory_total_bytes)
    }

    pub(crate) fn disk_percent(&self) -> Option<f64> {
        Self::percent(self.disk_used_bytes, self.disk_total_bytes)
    }
}

/// The key of a node's telemetry record.
pub(crate) fn telemetry_key(node: &NodeId) -> String {
    owned_key(node, "telemetry")
}

/// Samples the host; `system` keeps the CPU counters between samples.
fn sample(system: &mut sysinfo::System, data_dir: &Path) -> Telemetry {
    system.refresh_cpu_usage();
    system.refresh_memory();
    let dir = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    let (disk_used_bytes, disk_total_bytes) = sysinfo::Disks::new_with_refreshed_list()
        .ok()
        .and_then(|disks| {
            disks
                .iter()
                .filter(|d| dir.starts_with(d.mount_point()))
                .max_by_key(|d| d.mount_point().as_os_str().len())
                .map(|d| {
                    (
                        d.total_space().saturating_sub(d.available_space()),
                        d.total_space(),
                    )
                })
        })
        .unwrap_or((0, 0));
    let temperature_max_c = sysinfo::Components::new_with_refreshed_list()
        .ok()
        .and_then(|components| {
            components
                .iter()
                .filter_map(sysinfo::Component::temperature)
                .filter(|t| t.is_finite())
                .reduce(f32::max)
        });
    Telemetry {
        cpu_percent: system.global_cpu_usage(),
        load1: sysinfo::System::load_average().map_or(0.0, |l| l.one),
        memory_used_bytes: system.used_memory(),
        memory_total_bytes: system.total_memory(),
        disk_used_bytes,
        disk_total_bytes,
        temperature_max_c,
        sampled_at_ms: crate::clock::now_ms(),
    }
}

/// Samples and publishes until `shutdown`.
pub(crate) async fn run(
    mesh: Mesh,
    me: NodeId,
    data_dir: PathBuf,
    limits: Thresholds,
    shutdown: CancellationToken,
) {
    let Ok(mut system) = sysinfo::System::new() else {
        tracing::warn!("telemetry is not available on this host");
        return;
    };
    let key = telemetry_key(&me);
    let mut published: Option<(std::time::Instant, Telemetry)> = None;
    loop {
        let dir = data_dir.clone();
        let sampled = tokio::task::spawn_blocking(move || {
            let t = sample(&mut system, &dir);
            (system, t)
        })
        .await;
        let Ok((back, telemetry)) = sampled else {
            return;
        };
        system = back;
        let members = mesh
            .view()
            .borrow()
            .members
            .iter()
            .filter(|m| m.state.is_active())
            .count();
        let last = published.as_ref().map(|(at, t)| (at.elapsed(), t));
        let due = publish_due(last, &telemetry, members, &limits);
        if due && let Ok(bytes) = serde_json::to_vec(&telemetry) {
            if mesh.put(&key, Some(bytes)).await.is_err() {
                return;
            }
            published = Some((std::time::Instant::now(), telemetry));
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(disk_percent: u64, cpu_percent: f32) -> Telemetry {
        Telemetry {
            cpu_percent,
            disk_used_bytes: disk_percent,
            disk_total_bytes: 100,
            ..Telemetry::default()
        }
    }

    #[test]
    fn the_period_keeps_the_cluster_writes_flat() {
        assert_eq!(republish_period(1), REPUBLISH_MIN);
        assert_eq!(republish_period(6), REPUBLISH_MIN);
        assert_eq!(republish_period(150), Duration::from_secs(1_500));
        for members in [10, 40, 150, 1_000] {
            let rate = members as f64 / republish_period(members).as_secs_f64();
            assert!(rate <= CLUSTER_WRITES_PER_S + 1e-9, "{members}: {rate}");
        }
    }

    #[test]
    fn a_crossing_is_published_at_once_and_noise_is_not() {
        let limits = Thresholds::default();
        let calm = at(50, 10.0);
        let second = Duration::from_secs(1);
        assert!(publish_due(None, &calm, 3, &limits), "the first sample");
        assert!(
            !publish_due(Some((second, &calm)), &at(60, 95.0), 3, &limits),
            "a busy CPU and a fuller disk below the threshold wait for the period"
        );
        assert!(
            publish_due(Some((second, &calm)), &at(96, 10.0), 3, &limits),
            "the disk crossed the drain threshold"
        );
        assert!(
            publish_due(Some((second, &at(96, 10.0))), &calm, 3, &limits),
            "and back"
        );
        assert!(publish_due(Some((REPUBLISH_MIN, &calm)), &calm, 3, &limits));
        assert!(!publish_due(
            Some((REPUBLISH_MIN, &calm)),
            &calm,
            150,
            &limits
        ));
    }

    #[test]
    fn a_sample_reads_this_host() {
        let mut system = sysinfo::System::new().unwrap();
        let t = sample(&mut system, Path::new("."));
        assert!(t.memory_total_bytes > 0);
        assert!(t.memory_used_bytes <= t.memory_total_bytes);
        assert!(t.disk_total_bytes > 0, "the file system of . is found");
        assert!(t.disk_percent().is_some_and(|p| (0.0..=100.0).contains(&p)));
    }
}
