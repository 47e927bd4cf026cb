//! What the benchmark reads from running peers, over their admin API directly (no CLI
//! process per read): node lists with the time each state was entered, gossip counters,
//! and resident memory.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use knit_tests::{Cluster, Peer, metric_value, wall_ms};
use serde::Deserialize;

/// How long one read of one peer's API may take.
const READ_LIMIT: Duration = Duration::from_secs(2);

/// Pause between two sweeps over the peers while waiting for a state: keeps the polling's
/// CPU small next to 20 peers on two cores.
pub(crate) const POLL_PAUSE: Duration = Duration::from_millis(50);

/// One row of `/v1/nodes`, with what the harness's `NodeRow` leaves out.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Row {
    pub(crate) id: String,
    pub(crate) state: String,
    /// When the answering peer saw this state begin, ms since the Unix epoch.
    #[serde(default)]
    pub(crate) since_ms: u64,
}

/// `peer`'s node list.
pub(crate) fn rows(peer: &Peer) -> Result<Vec<Row>> {
    Ok(serde_json::from_str(
        &peer.api_get("/v1/nodes", READ_LIMIT)?,
    )?)
}

/// The indices of the running peers.
pub(crate) fn running(cluster: &mut Cluster) -> Vec<usize> {
    (0..cluster.peers.len())
        .filter(|&i| cluster.peers[i].is_running())
        .collect()
}

/// The node ids of `peers`, waiting (bounded) for a fresh peer to write its id.
pub(crate) fn node_ids(cluster: &Cluster, peers: &[usize]) -> Result<Vec<String>> {
    peers
        .iter()
        .map(|&i| {
            let peer = &cluster.peers[i];
            knit_tests::wait_until(Duration::from_secs(30), "a node id", || peer.node_id().ok())
                .map(|(id, _)| id)
        })
        .collect()
}

/// Waits until every running peer sees every running peer `alive`; returns how long that took.
pub(crate) fn wait_all_alive(cluster: &mut Cluster, limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    let live = running(cluster);
    let ids = node_ids(cluster, &live)?;
    loop {
        let all = live.iter().all(|&i| {
            rows(&cluster.peers[i]).is_ok_and(|rows| {
                ids.iter()
                    .all(|id| rows.iter().any(|r| &r.id == id && r.state == "alive"))
            })
        });
        if all {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("not every peer saw every peer alive within {limit:?}");
        }
        std::thread::sleep(POLL_PAUSE * 2);
    }
}

/// How long after an event every observer saw its outcome.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    /// By the observers' own stamps (`since_ms`, the moment each recorded the state; a
    /// poll's time where a stamp is implausible): the figure the benchmark reports.
    pub(crate) stamped_ms: u64,
    /// By this poll, which lags by up to a sweep over the observers: a cross-check.
    pub(crate) polled_ms: u64,
}

/// Waits until each of `observers` sees `subject` in `state`, counting from `from_ms`
/// (wall clock, just before the event).
pub(crate) fn wait_seen(
    cluster: &Cluster,
    observers: &[usize],
    subject: &str,
    state: &str,
    from_ms: u64,
    limit: Duration,
    alarms: &mut FalseAlarms,
) -> Result<Seen> {
    let started = Instant::now();
    let mut pending: BTreeSet<usize> = observers.iter().copied().collect();
    let mut last_stamp_ms = from_ms;
    let mut last_seen: BTreeMap<usize, String> = BTreeMap::new();
    while !pending.is_empty() {
        if started.elapsed() > limit {
            let names: Vec<String> = pending
                .iter()
                .map(|&i| {
                    let seen = last_seen.get(&i).map_or("no answer", String::as_str);
                    format!("{} sees it {seen}", cluster.peers[i].name)
                })
                .collect();
            bail!(
                "{} of {} peers did not see it {state} within {limit:?}: {names:?}",
                pending.len(),
                observers.len()
            );
        }
        let mut done = Vec::new();
        for &i in &pending {
            let Ok(rows) = rows(&cluster.peers[i]) else {
                continue;
            };
            alarms.note(i, &rows, subject);
            let row = rows.iter().find(|r| r.id == subject);
            last_seen.insert(
                i,
                row.map_or_else(|| "absent".to_owned(), |r| r.state.clone()),
            );
            if let Some(row) = rows.iter().find(|r| r.id == subject && r.state == state) {
                let polled_ms = wall_ms();
                let stamp = if (from_ms..=polled_ms).contains(&row.since_ms) {
                    row.since_ms
                } else {
                    polled_ms
                };
                last_stamp_ms = last_stamp_ms.max(stamp);
                done.push(i);
            }
        }
        for i in done {
            pending.remove(&i);
        }
        if !pending.is_empty() {
            std::thread::sleep(POLL_PAUSE);
        }
    }
    Ok(Seen {
        stamped_ms: last_stamp_ms - from_ms,
        polled_ms: wall_ms().saturating_sub(from_ms),
    })
}

/// Members that were running but that some peer saw `suspect` or `down` outside a trial's
/// victim: false alarms of the failure detector (or the cost of a starved machine).
#[derive(Debug, Default)]
pub(crate) struct FalseAlarms {
    /// The ids of members known to be running.
    pub(crate) live_ids: BTreeSet<String>,
    /// Distinct (observer, subject) pairs seen `suspect`.
    pub(crate) suspect: BTreeSet<(usize, String)>,
    /// Distinct (observer, subject) pairs seen `down`.
    pub(crate) down: BTreeSet<(usize, String)>,
}

impl FalseAlarms {
    /// Notes what observer `i` says of running members other than `except`.
    pub(crate) fn note(&mut self, i: usize, rows: &[Row], except: &str) {
        for row in rows
            .iter()
            .filter(|r| r.id != except && self.live_ids.contains(&r.id))
        {
            match row.state.as_str() {
                "suspect" => {
                    self.suspect.insert((i, row.id.clone()));
                }
                "down" => {
                    self.down.insert((i, row.id.clone()));
                }
                _ => {}
            }
        }
    }
}

/// Gossip counters of one peer, from `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gossip {
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    pub(crate) packets_sent: u64,
}

impl Gossip {
    /// Reads `peer`'s counters.
    pub(crate) fn read(peer: &Peer) -> Result<Self> {
        let text = peer.metrics_text(READ_LIMIT)?;
        Ok(Self {
            bytes_sent: metric_value(&text, "knit_gossip_bytes_sent_total")?,
            bytes_received: metric_value(&text, "knit_gossip_bytes_received_total")?,
            packets_sent: metric_value(&text, "knit_gossip_packets_sent_total")?,
        })
    }
}
