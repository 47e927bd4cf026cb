//! The transport's counters, read by `/metrics`: the tasks of the QUIC driver add to them,
//! and the core task copies the node core's gate counters into them after every turn.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::node_core::CoreStats;

/// Counters of the transport, read by `/metrics`.
#[derive(Debug, Default)]
pub struct MeshMetrics {
    /// Gossip packets sent.
    pub packets_out: AtomicU64,
    /// Gossip bytes sent.
    pub bytes_out: AtomicU64,
    /// Gossip packets received and accepted.
    pub packets_in: AtomicU64,
    /// Gossip bytes received and accepted.
    pub bytes_in: AtomicU64,
    /// Packets dropped: queue full, no connection, or the core busy.
    pub packets_dropped: AtomicU64,
    /// Packets whose claimed sender did not match the connection's certificate.
    pub packets_rejected: AtomicU64,
    /// Connections to members dialed (a QUIC handshake each).
    pub dials: AtomicU64,
    /// Connections kept when their member came back at a new epoch, where one would have
    /// been dialed (see `Links::send`).
    pub kept_across_epoch: AtomicU64,
    /// Of those, connections that turned out to lead to a process gone (reset, or not
    /// confirmed in time): their member was dialed.
    pub kept_but_gone: AtomicU64,
    /// Anti-entropy exchanges completed (as initiator).
    pub sync_rounds: AtomicU64,
    /// Store deltas received through anti-entropy.
    pub sync_deltas_in: AtomicU64,
    /// Store deltas sent through anti-entropy.
    pub sync_deltas_out: AtomicU64,
    /// Store bytes sent and received through anti-entropy.
    pub sync_bytes: AtomicU64,
    /// Of those, the bucket summaries and bucket lists that open an exchange.
    pub sync_summary_bytes: AtomicU64,
    /// Of those, the digests (key and stamp) of the buckets that differed.
    pub sync_digest_bytes: AtomicU64,
    /// Of those, the deltas.
    pub sync_delta_bytes: AtomicU64,
    /// Store writes from other members applied here (rumors and anti-entropy).
    pub deltas_applied: AtomicU64,
    /// Sum over applied writes of (applied here - written there), in ms: divided by
    /// `deltas_applied`, the mean convergence lag (clocks assumed roughly in step).
    pub apply_lag_ms_sum: AtomicU64,
    /// Store writes refused as forged: a signature missing or not the writer's, a
    /// node-owned key written by another node, a certificate record the cluster CA did not
    /// issue for its node, or a write stamped after its writer's revocation.
    pub deltas_refused_signature: AtomicU64,
    /// Store writes refused for a stamp too far ahead of this node's clock
    /// (`MeshConfig::clock_skew_max_ms`).
    pub deltas_refused_future: AtomicU64,
    /// Store writes refused as collected keys coming back (a member away longer than the
    /// tombstone TTL).
    pub deltas_refused_collected: AtomicU64,
    /// Store writes waiting in the mesh task's backlog now (a gauge).
    pub backlog_deltas: AtomicU64,
    /// Store writes parked because their writer's certificate was not known yet.
    pub deltas_parked: AtomicU64,
    /// Parked store writes dropped unverified from the full parking queue.
    pub deltas_dropped_unverified: AtomicU64,
    /// Store writes parked now (a gauge).
    pub deltas_pending: AtomicU64,
    /// Lifeguard's local health score now (a gauge): 0 healthy, up to 8 when this peer
    /// misses acks, fires its timers late or refutes suspicions of itself.
    pub local_health: AtomicU64,
    /// Members under suspicion here now (a gauge).
    pub suspicions: AtomicU64,
}

impl MeshMetrics {
    /// Copies the node core's counters of the gate and its backlog.
    pub(crate) fn record(&self, stats: &CoreStats) {
        let set = |counter: &AtomicU64, value: u64| counter.store(value, Ordering::Relaxed);
        let tally = &stats.tally;
        set(&self.deltas_applied, tally.applied);
        set(&self.apply_lag_ms_sum, tally.lag_ms_sum);
        set(&self.deltas_refused_signature, tally.refused_signature);
        set(&self.deltas_refused_future, tally.refused_future);
        set(&self.deltas_refused_collected, tally.refused_collected);
        set(&self.deltas_parked, tally.parked);
        set(&self.deltas_dropped_unverified, tally.dropped_unverified);
        set(&self.deltas_pending, stats.pending as u64);
        set(&self.backlog_deltas, stats.backlog as u64);
        set(&self.local_health, u64::from(stats.local_health));
        set(&self.suspicions, stats.suspicions as u64);
    }
}

/// Adds `by` to `counter`.
pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}
