//! What the hosts' gossip cost over the measured time, from the counters the real cores
//! keep: `knit_mesh::traffic::Traffic` (packets and bytes by kind of SWIM message, rumors
//! by record), the very counters a peer's `/metrics` exports. With `store = true`, also
//! the anti-entropy bytes of the exchanges and pushes the engine carries, counted as the
//! QUIC driver counts them (summary and bucket list, digests, deltas; each side counts
//! what it sends and what it receives).
//!
//! Figures are per host per second, sent plus received, as `bench-idle` reads real peers
//! (`knit_gossip_bytes_sent_total + knit_gossip_bytes_received_total` over peers and
//! seconds), so the two compare directly. Hosts that run the membership model send no
//! packets: their report says the figure was not measured, and gives none.
//!
//! What the simulator does not write, and so does not count: the agent's records (node
//! record, telemetry, replica reports) are not in the simulated stores, so neither their
//! rumors nor their anti-entropy deltas are in these figures; only the writes a scenario
//! makes (`write` and `update` faults, `remove`) and the certificate records are.

use std::collections::BTreeMap;

use knit_mesh::store::{Buckets, Delta, Digest, Summary};
use knit_mesh::traffic::{Direction, KINDS, RumorCount, Traffic};
use serde::{Deserialize, Serialize};

use crate::report::round4;

/// One core's counters at one moment (or the sum of several cores' over a window).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Packets by kind (index in [`KINDS`]), out then in.
    packets: [[u64; 2]; KINDS.len()],
    /// Bytes by kind, out then in.
    bytes: [[u64; 2]; KINDS.len()],
    /// Rumors by record and direction.
    rumors: BTreeMap<(String, Direction), RumorCount>,
}

fn way(direction: Direction) -> usize {
    match direction {
        Direction::Out => 0,
        Direction::In => 1,
    }
}

impl Counts {
    /// Reads `traffic` now.
    pub fn of(traffic: &Traffic) -> Self {
        let mut counts = Self::default();
        for (name, direction, packets, bytes) in traffic.packets() {
            // `packets()` names kinds from `KINDS` itself; an unknown name cannot occur, and
            // would count as undecodable rather than be lost.
            let kind = KINDS
                .iter()
                .position(|k| *k == name)
                .unwrap_or(KINDS.len() - 1);
            counts.packets[kind][way(direction)] += packets;
            counts.bytes[kind][way(direction)] += bytes;
        }
        for (record, direction, count) in traffic.rumors() {
            counts.rumors.insert((record, direction), count);
        }
        counts
    }

    /// Adds what happened between `earlier` and `later` (two readings of one core).
    pub fn add_between(&mut self, later: &Counts, earlier: &Counts) {
        for kind in 0..KINDS.len() {
            for w in 0..2 {
                self.packets[kind][w] +=
                    later.packets[kind][w].saturating_sub(earlier.packets[kind][w]);
                self.bytes[kind][w] += later.bytes[kind][w].saturating_sub(earlier.bytes[kind][w]);
            }
        }
        for (key, count) in &later.rumors {
            let before = earlier.rumors.get(key).copied().unwrap_or_default();
            let sum = self.rumors.entry(key.clone()).or_default();
            sum.rumors += count.rumors.saturating_sub(before.rumors);
            sum.bytes += count.bytes.saturating_sub(before.bytes);
            sum.news += count.news.saturating_sub(before.news);
        }
    }

    /// Packets and bytes sent, over every kind.
    pub fn sent(&self) -> (u64, u64) {
        let w = way(Direction::Out);
        (
            self.packets.iter().map(|p| p[w]).sum(),
            self.bytes.iter().map(|b| b[w]).sum(),
        )
    }

    /// Packets and bytes received, over every kind.
    pub fn received(&self) -> (u64, u64) {
        let w = way(Direction::In);
        (
            self.packets.iter().map(|p| p[w]).sum(),
            self.bytes.iter().map(|b| b[w]).sum(),
        )
    }
}

/// Anti-entropy bytes, by part, as the QUIC driver's counters split them
/// (`knit_state_sync_summary_bytes`, `_digest_bytes`, `_delta_bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncBytes {
    /// Bucket summaries and bucket lists: the opening of every exchange.
    pub summary: u64,
    /// Digests (key and stamp) of the buckets that differed.
    pub digest: u64,
    /// The deltas themselves, exchanged or pushed.
    pub delta: u64,
    /// Exchanges run (each counted once, though both sides count its bytes).
    pub exchanges: u64,
}

// The sizes below are the QUIC driver's (`mesh/src/quic/sync.rs`: `delta_bytes`,
// `digest_bytes`, a summary as 8 bytes a bucket, a bucket list as 4), which that module
// keeps private behind the `quic` feature the simulator turns off. Keep them equal.

/// The bytes the driver counts for one delta.
pub fn delta_bytes(delta: &Delta) -> u64 {
    (delta.key.len() + delta.value.as_ref().map_or(0, Vec::len) + delta.sig.len() + 32) as u64
}

/// The bytes the driver counts for a digest.
pub fn digest_bytes(digest: &Digest) -> u64 {
    digest.iter().map(|(key, _)| key.len() as u64 + 24).sum()
}

impl SyncBytes {
    /// A summary sent by one side and received by the other: both count it.
    pub fn summary(&mut self, summary: &Summary) {
        self.summary += 2 * 8 * summary.len() as u64;
    }

    /// A bucket list sent by one side and received by the other.
    pub fn buckets(&mut self, buckets: &Buckets) {
        self.summary += 2 * 4 * buckets.len() as u64;
    }

    /// A digest sent by one side and received by the other.
    pub fn digest(&mut self, digest: &Digest) {
        self.digest += 2 * digest_bytes(digest);
    }

    /// Deltas sent by one side and received by the other (an exchange's or a push's).
    pub fn deltas(&mut self, deltas: &[Delta]) {
        self.delta += 2 * deltas.iter().map(delta_bytes).sum::<u64>();
    }

    fn add(&mut self, other: &SyncBytes) {
        self.summary += other.summary;
        self.digest += other.digest;
        self.delta += other.delta;
        self.exchanges += other.exchanges;
    }

    fn total(&self) -> u64 {
        self.summary + self.digest + self.delta
    }
}

/// The measuring window: from the end of the warm-up to the end of the run. It reads each
/// host's core when the window opens, when the core goes (a kill) and when the run ends;
/// a core made during the window (a restart) counts from zero.
#[derive(Debug, Default)]
pub struct Window {
    /// When the window opened; `None` before.
    open_ms: Option<u64>,
    /// Each host's counters when the window opened, or zero for a core made since.
    baseline: Vec<Counts>,
    /// What cores that went during the window counted in it.
    gone: Counts,
    /// Host-milliseconds spent up in the window by hosts that went down since.
    host_ms: u64,
    /// Since when each host has been up in the window; `None` while it is down.
    up_since: Vec<Option<u64>>,
    /// Anti-entropy bytes moved in the window.
    sync: SyncBytes,
}

impl Window {
    /// Opens the window at `now_ms` with each host's counters (`None`: the host is down).
    pub fn open(&mut self, now_ms: u64, hosts: Vec<Option<Counts>>) {
        self.open_ms = Some(now_ms);
        self.up_since = hosts.iter().map(|c| c.as_ref().map(|_| now_ms)).collect();
        self.baseline = hosts.into_iter().map(Option::unwrap_or_default).collect();
    }

    /// Host `h`'s core goes at `now_ms` with `last` as its final counts.
    pub fn core_gone(&mut self, h: usize, now_ms: u64, last: &Counts) {
        if self.open_ms.is_none() || h >= self.baseline.len() {
            return;
        }
        let baseline = std::mem::take(&mut self.baseline[h]);
        self.gone.add_between(last, &baseline);
        if let Some(since) = self.up_since[h].take() {
            self.host_ms += now_ms.saturating_sub(since);
        }
    }

    /// Host `h` starts a new core at `now_ms` (counting from zero).
    pub fn core_started(&mut self, h: usize, now_ms: u64) {
        if self.open_ms.is_some() && h < self.up_since.len() {
            self.baseline[h] = Counts::default();
            self.up_since[h] = Some(now_ms);
        }
    }

    /// Counts anti-entropy bytes moved now.
    pub fn synced(&mut self, bytes: &SyncBytes) {
        if self.open_ms.is_some() {
            self.sync.add(bytes);
        }
    }

    /// Closes the window at `now_ms` with each live host's counters, and sums it up;
    /// `store` says whether hosts ran anti-entropy. Also gives the packets and bytes sent
    /// in all. `None` if it never opened.
    pub fn close(
        mut self,
        now_ms: u64,
        hosts: Vec<Option<Counts>>,
        store: bool,
    ) -> Option<(CountedTraffic, (u64, u64))> {
        let open_ms = self.open_ms?;
        for (h, counts) in hosts.into_iter().enumerate() {
            if let Some(counts) = counts {
                let baseline = self.baseline.get(h).cloned().unwrap_or_default();
                self.gone.add_between(&counts, &baseline);
            }
            if let Some(since) = self.up_since.get(h).copied().flatten() {
                self.host_ms += now_ms.saturating_sub(since);
            }
        }
        let host_s = self.host_ms as f64 / 1000.0;
        let counted = CountedTraffic::of(
            &self.gone,
            store.then_some(&self.sync),
            now_ms.saturating_sub(open_ms) as f64 / 1000.0,
            host_s,
        );
        Some((counted, self.gone.sent()))
    }
}

/// The gossip figures of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrafficReport {
    /// Counted by every host's real core over the measured time.
    Counted(CountedTraffic),
    /// Not measured, and why (hosts ran the membership model: there are no packets).
    NotMeasured(String),
}

impl Default for TrafficReport {
    fn default() -> Self {
        Self::NotMeasured("not in this report".to_owned())
    }
}

/// Why a model run gives no gossip figure.
pub const MODEL_NOT_MEASURED: &str =
    "n/a (model): the membership model sends no packets, so there is nothing to count";

/// Gossip counted over the measured time, per host per second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountedTraffic {
    /// Simulated seconds the window lasted.
    pub window_s: f64,
    /// Host-seconds the rates are over (hosts up, times the time they were up in it).
    pub host_s: f64,
    /// Membership bytes sent plus received, per host per second: the figure `bench-idle`
    /// gives for real peers.
    pub gossip_bytes_per_host_s: f64,
    /// Membership packets sent plus received, per host per second.
    pub gossip_packets_per_host_s: f64,
    /// Of the bytes, those sent.
    pub sent_bytes_per_host_s: f64,
    /// Of the bytes, those received (fewer than sent when packets are lost or dropped).
    pub received_bytes_per_host_s: f64,
    /// The same split by kind of SWIM message, most bytes first.
    pub by_kind: Vec<KindRate>,
    /// Rumors (store writes riding on gossip) by record, each way.
    pub rumors: Vec<RumorRate>,
    /// With `store = true`, anti-entropy bytes; absent without a store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_entropy: Option<SyncRate>,
}

/// One kind of SWIM message, per host per second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindRate {
    /// The kind, as `/metrics` labels it (`ping`, `ack`, `feed`...).
    pub kind: String,
    /// Packets sent.
    pub packets_out: f64,
    /// Packets received.
    pub packets_in: f64,
    /// Bytes sent.
    pub bytes_out: f64,
    /// Bytes received.
    pub bytes_in: f64,
}

/// Rumors of one record one way, per host per second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RumorRate {
    /// The record, as `/metrics` labels it (`owned/telemetry`, `svc`, `cert`...).
    pub record: String,
    /// `out` (started here) or `in` (heard).
    pub direction: String,
    /// Rumors.
    pub rumors: f64,
    /// Their encoded bytes.
    pub bytes: f64,
    /// Of those heard, the ones that were news.
    pub news: f64,
}

/// Anti-entropy per host per second, sent plus received, as the driver counts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRate {
    /// All of it: the figure `bench-idle` gives for real peers.
    pub bytes_per_host_s: f64,
    /// Bucket summaries and lists.
    pub summary_bytes_per_host_s: f64,
    /// Digests.
    pub digest_bytes_per_host_s: f64,
    /// Deltas, exchanged and pushed.
    pub delta_bytes_per_host_s: f64,
    /// Exchanges started per host per second.
    pub exchanges_per_host_s: f64,
}

impl CountedTraffic {
    fn of(counts: &Counts, sync: Option<&SyncBytes>, window_s: f64, host_s: f64) -> Self {
        let rate = |n: u64| {
            if host_s > 0.0 {
                round4(n as f64 / host_s)
            } else {
                0.0
            }
        };
        let (packets_out, bytes_out) = counts.sent();
        let (packets_in, bytes_in) = counts.received();
        let mut by_kind: Vec<(u64, KindRate)> = KINDS
            .iter()
            .enumerate()
            .filter(|(k, _)| counts.packets[*k].iter().any(|&p| p > 0))
            .map(|(k, name)| {
                let [po, pi] = counts.packets[k];
                let [bo, bi] = counts.bytes[k];
                let rate = KindRate {
                    kind: (*name).to_owned(),
                    packets_out: rate(po),
                    packets_in: rate(pi),
                    bytes_out: rate(bo),
                    bytes_in: rate(bi),
                };
                (bo + bi, rate)
            })
            .collect();
        by_kind.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.kind.cmp(&b.1.kind)));
        let rumors = counts
            .rumors
            .iter()
            .map(|((record, direction), c)| RumorRate {
                record: record.clone(),
                direction: direction.name().to_owned(),
                rumors: rate(c.rumors),
                bytes: rate(c.bytes),
                news: rate(c.news),
            })
            .collect();
        Self {
            window_s: round4(window_s),
            host_s: round4(host_s),
            gossip_bytes_per_host_s: rate(bytes_out + bytes_in),
            gossip_packets_per_host_s: rate(packets_out + packets_in),
            sent_bytes_per_host_s: rate(bytes_out),
            received_bytes_per_host_s: rate(bytes_in),
            by_kind: by_kind.into_iter().map(|(_, r)| r).collect(),
            rumors,
            anti_entropy: sync.map(|s| SyncRate {
                bytes_per_host_s: rate(s.total()),
                summary_bytes_per_host_s: rate(s.summary),
                digest_bytes_per_host_s: rate(s.digest),
                delta_bytes_per_host_s: rate(s.delta),
                exchanges_per_host_s: rate(s.exchanges),
            }),
        }
    }
}

impl TrafficReport {
    /// The report's lines for the terminal table: `(label, value)`.
    pub fn rows(&self) -> Vec<(String, String)> {
        let counted = match self {
            Self::Counted(counted) => counted,
            Self::NotMeasured(why) => return vec![("gossip".to_owned(), why.clone())],
        };
        let mut rows = vec![(
            "gossip (counted)".to_owned(),
            format!(
                "{:.0} B/s/host sent+received ({:.0} out, {:.0} in), {:.2} packets/s/host, over {} host-s",
                counted.gossip_bytes_per_host_s,
                counted.sent_bytes_per_host_s,
                counted.received_bytes_per_host_s,
                counted.gossip_packets_per_host_s,
                counted.host_s
            ),
        )];
        for k in &counted.by_kind {
            rows.push((
                format!("  {}", k.kind),
                format!(
                    "{:.1} B/s/host ({:.2} packets/s out, {:.2} in)",
                    k.bytes_out + k.bytes_in,
                    k.packets_out,
                    k.packets_in
                ),
            ));
        }
        for r in &counted.rumors {
            rows.push((
                format!("  rumors {} {}", r.record, r.direction),
                format!(
                    "{:.3}/s/host, {:.1} B/s/host ({:.3} news)",
                    r.rumors, r.bytes, r.news
                ),
            ));
        }
        if let Some(s) = &counted.anti_entropy {
            rows.push((
                "anti-entropy".to_owned(),
                format!(
                    "{:.0} B/s/host sent+received (summary {:.0}, digest {:.0}, deltas {:.0}), {:.3} exchanges/s/host",
                    s.bytes_per_host_s,
                    s.summary_bytes_per_host_s,
                    s.digest_bytes_per_host_s,
                    s.delta_bytes_per_host_s,
                    s.exchanges_per_host_s
                ),
            ));
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_only_what_happened_in_it_and_cores_gone_meanwhile() {
        let ping = |n: usize| -> Traffic {
            let t = Traffic::default();
            for _ in 0..n {
                t.packet(Direction::Out, &[0xff; 10]);
            }
            t
        };
        let mut window = Window::default();
        // Host 0 had sent 3 packets before the window, host 1 is down.
        window.open(1_000, vec![Some(Counts::of(&ping(3))), None]);
        // Host 0 is killed at 2 s having sent 5 in all; host 1 starts at 1.5 s.
        window.core_gone(0, 2_000, &Counts::of(&ping(5)));
        window.core_started(1, 1_500);
        let mut sync = SyncBytes::default();
        sync.summary(&vec![0; 64]);
        sync.exchanges += 1;
        window.synced(&sync);
        let (counted, sent) = window
            .close(3_000, vec![None, Some(Counts::of(&ping(6)))], true)
            .unwrap();
        assert_eq!(sent, (8, 80));
        // 2 + 6 packets of 10 bytes over 1 s (host 0) + 1.5 s (host 1).
        assert_eq!(counted.host_s, 2.5);
        assert_eq!(counted.gossip_bytes_per_host_s, 80.0 / 2.5);
        assert_eq!(counted.received_bytes_per_host_s, 0.0);
        assert_eq!(counted.by_kind.len(), 1);
        assert_eq!(counted.by_kind[0].kind, "undecodable");
        let sync = counted.anti_entropy.unwrap();
        assert_eq!(sync.summary_bytes_per_host_s, 2.0 * 512.0 / 2.5);
    }

    #[test]
    fn a_window_never_opened_gives_nothing() {
        assert!(Window::default().close(5, vec![None], false).is_none());
    }
}
