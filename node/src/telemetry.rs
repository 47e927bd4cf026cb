//! Telemetry: this host's CPU, load, memory, disk (of the data dir's file system) and
//! temperature, sampled every few seconds and published in the node-owned record
//! `telemetry`, for `node ls`, and for the node's own decisions (preventive healing).

use std::path::{Path, PathBuf};
use std::time::Duration;

use knit_mesh::NodeId;
use knit_mesh::quic::Mesh;
use knit_mesh::store::owned_key;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// How often the host is sampled.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// A sample is published when it differs this much (percentage points) from the last one
/// published, or when the last one is this old: every write is gossiped to every member.
const CHANGE_POINTS: f64 = 5.0;
const REPUBLISH_EVERY: Duration = Duration::from_secs(60);

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
    /// Whether `self` differs enough from `published` to be worth spreading.
    fn differs(&self, published: &Telemetry) -> bool {
        let apart = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() >= CHANGE_POINTS,
            (a, b) => a.is_some() != b.is_some(),
        };
        apart(
            Some(f64::from(self.cpu_percent)),
            Some(f64::from(published.cpu_percent)),
        ) || apart(self.memory_percent(), published.memory_percent())
            || apart(self.disk_percent(), published.disk_percent())
            || apart(
                self.temperature_max_c.map(f64::from),
                published.temperature_max_c.map(f64::from),
            )
    }

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
pub(crate) async fn run(mesh: Mesh, me: NodeId, data_dir: PathBuf, shutdown: CancellationToken) {
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
        let due = published
            .as_ref()
            .is_none_or(|(at, last)| at.elapsed() >= REPUBLISH_EVERY || telemetry.differs(last));
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
