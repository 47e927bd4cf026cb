//! The state traffic counters of every peer (`/metrics`), and their rates over a window.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use knit_tests::{Peer, metric_value};

/// How long one read of one peer's API may take.
const READ_LIMIT: Duration = Duration::from_secs(2);

/// One peer's counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    gossip_sent: u64,
    gossip_received: u64,
    sync_bytes: u64,
    sync_rounds: u64,
}

impl Counters {
    fn read(peer: &Peer) -> Result<Self> {
        let text = peer
            .metrics_text(READ_LIMIT)
            .with_context(|| format!("/metrics of {}", peer.name))?;
        Ok(Self {
            gossip_sent: metric_value(&text, "knit_gossip_bytes_sent_total")?,
            gossip_received: metric_value(&text, "knit_gossip_bytes_received_total")?,
            sync_bytes: metric_value(&text, "knit_state_sync_bytes_total")?,
            sync_rounds: metric_value(&text, "knit_state_sync_rounds_total")?,
        })
    }
}

/// Every peer's counters at the start of a window.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    at: Instant,
    counters: Vec<Counters>,
}

impl Snapshot {
    /// Reads the counters of every one of `peers`.
    pub(crate) fn take(peers: &[&Peer]) -> Result<Self> {
        let at = Instant::now();
        let counters = peers
            .iter()
            .map(|p| Counters::read(p))
            .collect::<Result<_>>()?;
        Ok(Self { at, counters })
    }

    /// The per-node rates from this snapshot to `later` (same peers, same order).
    pub(crate) fn rates_to(&self, later: &Self) -> Rates {
        let secs = later.at.duration_since(self.at).as_secs_f64().max(1e-3);
        let (mut gossip, mut sync, mut rounds) = (0_u64, 0_u64, 0_u64);
        for (a, b) in self.counters.iter().zip(&later.counters) {
            gossip += b.gossip_sent.saturating_sub(a.gossip_sent)
                + b.gossip_received.saturating_sub(a.gossip_received);
            sync += b.sync_bytes.saturating_sub(a.sync_bytes);
            rounds += b.sync_rounds.saturating_sub(a.sync_rounds);
        }
        // Counts far below 2^52: the conversions are exact.
        #[allow(clippy::cast_precision_loss)]
        let per_node_s = |n: u64| n as f64 / secs / self.counters.len().max(1) as f64;
        Rates {
            gossip_bytes: per_node_s(gossip),
            sync_bytes: per_node_s(sync),
            sync_rounds: per_node_s(rounds),
            secs,
        }
    }
}

/// Traffic per node per second over one window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rates {
    /// Membership gossip bytes, sent plus received (rumors of writes ride on it).
    pub(crate) gossip_bytes: f64,
    /// Store bytes moved by anti-entropy, as `knit_state_sync_bytes_total` counts them.
    pub(crate) sync_bytes: f64,
    /// Anti-entropy rounds this node initiated.
    pub(crate) sync_rounds: f64,
    /// The window's length.
    pub(crate) secs: f64,
}
