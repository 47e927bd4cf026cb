//! What running peers cost the machine, and how a large cluster is started so that it can
//! be measured: peers started one after the other (paced), their CPU time and resident
//! memory read from `/proc`, their `/metrics` read as named series, and the load average.
//! Shared by `bench-idle` (idle cost by size) and `bench-soak` (a long run with kills).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::{Cluster, wait_until};

/// How long one peer may take to start and have its node id.
pub const PEER_START_LIMIT: Duration = Duration::from_secs(60);
/// The kernel's clock ticks per second for `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// When [`start_paced`] starts the next peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Once the one before has its node id (it has started, it may not have joined).
    NodeId,
    /// Once the seed (`p0`) lists the one before alive: joins one at a time, so that the
    /// members' handshakes with each joiner do not pile up on two cores.
    Admitted,
}

/// Adds and starts `size` peers to `cluster`, each once the one before is as far as
/// `pace` says, so that a hundred peers starting at once on two cores do not time each
/// other out.
pub fn start_paced(cluster: &mut Cluster, size: usize, pace: Pace) -> Result<()> {
    for _ in 0..size {
        let i = cluster.add_peer()?;
        let (seed, peer) = (&cluster.peers[0], &cluster.peers[i]);
        let context = || {
            format!(
                "peer {i} of {size} (load average {}); its log:\n{}",
                load_text(),
                peer.log_tail(15)
            )
        };
        let (id, _) = wait_until(PEER_START_LIMIT, "a peer's node id", || peer.node_id().ok())
            .with_context(context)?;
        if pace == Pace::Admitted && i > 0 {
            wait_until(
                PEER_START_LIMIT,
                "the seed to list a new peer alive",
                || {
                    seed.nodes_http()
                        .ok()?
                        .iter()
                        .any(|r| r.id == id && r.state == "alive")
                        .then_some(())
                },
            )
            .with_context(context)?;
        }
    }
    Ok(())
}

/// How long a cluster of `size` peers started with [`start_paced`] may take to be seen
/// alive everywhere once the last one has started.
pub fn forming_limit(size: usize) -> Duration {
    Duration::from_secs(60 + 3 * u64::try_from(size).unwrap_or(250))
}

/// One `/metrics` read: every series by its full name with labels, e.g.
/// `knit_gossip_message_bytes_total{kind="ping",direction="out"}`.
pub type Series = BTreeMap<String, f64>;

/// The series of `/metrics` text.
pub fn read_series(text: &str) -> Series {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The value of label `label` in a series name.
pub fn label<'a>(series: &'a str, label: &str) -> Option<&'a str> {
    let start = series.find(&format!("{label}=\""))? + label.len() + 2;
    let end = series[start..].find('"')? + start;
    Some(&series[start..end])
}

/// A process's CPU time so far (user + system), in seconds.
pub fn cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which may hold spaces, in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / TICKS_PER_S)
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`).
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    Some([
        fields.next()?.ok()?,
        fields.next()?.ok()?,
        fields.next()?.ok()?,
    ])
}

/// The load averages as `1.20 / 0.90 / 0.70`, for progress lines and failure messages.
pub fn load_text() -> String {
    load_average().map_or_else(
        || "unknown".to_owned(),
        |[a, b, c]| format!("{a:.2} / {b:.2} / {c:.2}"),
    )
}

/// What the running peers of a cluster cost over a window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// CPU time per peer over the window, in percent of one core (mean over the peers).
    pub cpu_percent: f64,
    /// Resident memory per peer at the end of the window, MiB.
    pub rss_mean_mib: Option<f64>,
    /// The largest peer's resident memory at the end of the window, MiB.
    pub rss_max_mib: Option<f64>,
}

/// The start of a window over which the CPU of a cluster's running peers is measured.
#[derive(Debug, Clone)]
pub struct CpuWindow {
    /// The peers' processes when the window opened: the same ones are read at its end.
    pids: Vec<u32>,
    cpu_s: f64,
    started: Instant,
}

impl CpuWindow {
    /// Opens a window over the peers of `cluster` that run now.
    pub fn open(cluster: &Cluster) -> Self {
        let pids: Vec<u32> = cluster.peers.iter().filter_map(|p| p.pid()).collect();
        Self {
            cpu_s: pids.iter().filter_map(|&p| cpu_s(p)).sum(),
            pids,
            started: Instant::now(),
        }
    }

    /// How long the window has been open.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Closes the window: the CPU of the same peers since it opened, and the resident
    /// memory of every running peer of `cluster` now.
    pub fn close(&self, cluster: &Cluster) -> Usage {
        let cpu: f64 = self.pids.iter().filter_map(|&p| cpu_s(p)).sum();
        let secs = self.started.elapsed().as_secs_f64().max(f64::EPSILON);
        // Peer counts far below 2^52.
        #[allow(clippy::cast_precision_loss)]
        let peers = self.pids.len().max(1) as f64;
        // KiB far below 2^52.
        #[allow(clippy::cast_precision_loss)]
        let rss: Vec<f64> = cluster
            .peers
            .iter()
            .filter_map(|p| p.rss_kib())
            .map(|k| k as f64 / 1024.0)
            .collect();
        #[allow(clippy::cast_precision_loss)]
        let rss_mean_mib = (!rss.is_empty()).then(|| rss.iter().sum::<f64>() / rss.len() as f64);
        Usage {
            cpu_percent: (cpu - self.cpu_s) / secs / peers * 100.0,
            rss_mean_mib,
            rss_max_mib: rss.iter().copied().reduce(f64::max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{label, read_series};

    #[test]
    fn series_keep_their_labels() {
        let text = "# TYPE knit_members gauge\nknit_members{state=\"down\"} 2\n\
                    knit_members_suspected 1\n# EOF\n";
        let series = read_series(text);
        assert_eq!(series.get("knit_members{state=\"down\"}"), Some(&2.0));
        assert_eq!(series.get("knit_members_suspected"), Some(&1.0));
        assert_eq!(series.len(), 2);
        assert_eq!(label("knit_members{state=\"down\"}", "state"), Some("down"));
        assert_eq!(label("knit_members_suspected", "state"), None);
    }
}
