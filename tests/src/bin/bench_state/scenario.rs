//! One benchmark configuration: a cluster of `size` peers under `profile`, measured for
//! state traffic at idle, for how fast an update reaches every peer, and for state
//! traffic under a steady stream of writes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use knit_tests::{Cluster, millis};
use serde_json::{Value, json};

use crate::traffic::{Rates, Snapshot};

/// The service the propagation trials update.
const PROBE: &str = "probe";
/// The longest wait for one write to reach every peer.
const SPREAD_LIMIT: Duration = Duration::from_secs(30);
/// How long one read or write of one peer's API may take (a write waits for its fsync).
const CALL_LIMIT: Duration = Duration::from_secs(10);
/// Pause between two sweeps over the peers while waiting for a write to arrive.
const SPREAD_POLL: Duration = Duration::from_millis(10);
/// Quiet time before a traffic window, for earlier writes' rumors to die down.
const SETTLE: Duration = Duration::from_secs(5);

/// What to measure for one configuration.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub(crate) size: usize,
    pub(crate) profile: String,
    /// Updates timed until every peer reads them.
    pub(crate) trials: usize,
    /// Length of the idle and of the loaded traffic window.
    pub(crate) window: Duration,
    /// Writes per second in the loaded window.
    pub(crate) writes_per_sec: u64,
}

/// The writes of the loaded window.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Load {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// Writes acknowledged per second, over the window.
    pub(crate) rate: f64,
}

/// What one configuration measured. Failures are kept as messages, never panics.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    /// Spawning the first peer to every peer seeing every peer alive, ms.
    pub(crate) formed_ms: Option<u64>,
    /// `knit service create` on p0 to every peer reading the service, ms.
    pub(crate) create_ms: Option<u64>,
    /// Per update: sending the POST to its `200` (applied and fsynced on the writer), ms.
    pub(crate) ack_ms: Vec<u64>,
    /// Per update: sending the POST to the last peer reading the new version, ms.
    pub(crate) everywhere_ms: Vec<u64>,
    /// Per update: sending the POST to the median peer reading the new version, ms.
    pub(crate) median_peer_ms: Vec<u64>,
    pub(crate) idle: Option<Rates>,
    pub(crate) loaded: Option<Rates>,
    pub(crate) load: Load,
    /// The JSON body of one update, bytes (the spec with its previous version).
    pub(crate) update_bytes: usize,
    /// Trials or phases that failed, with why.
    pub(crate) failures: Vec<String>,
    /// Why the configuration stopped early, if it did.
    pub(crate) aborted: Option<String>,
}

/// Runs one configuration to the end, or as far as it can go.
pub(crate) fn run(setup: &Setup) -> Figures {
    let mut figures = Figures::default();
    if let Err(e) = run_into(setup, &mut figures) {
        eprintln!("  aborted: {e:#}");
        figures.aborted = Some(format!("{e:#}"));
    }
    figures
}

fn run_into(setup: &Setup, figures: &mut Figures) -> Result<()> {
    let cluster = form(setup, figures)?;
    std::thread::sleep(SETTLE);
    match window(&cluster, setup.window, |_| Ok(())) {
        Ok(rates) => {
            eprintln!(
                "  idle: gossip {:.0} B/s/node, anti-entropy {:.1} B/s/node ({:.1} rounds/s/node)",
                rates.gossip_bytes, rates.sync_bytes, rates.sync_rounds
            );
            figures.idle = Some(rates);
        }
        Err(e) => figures.failures.push(format!("idle window: {e:#}")),
    }
    let started = Instant::now();
    create(&cluster, 0, PROBE)?;
    let created = wait_everywhere(&cluster, PROBE, 1, started)
        .context("the probe service reaching every peer")?;
    figures.create_ms = Some(created.last_ms);
    let mut spec = read_spec(&cluster, 0, PROBE)?;
    for trial in 0..setup.trials {
        match update_trial(&cluster, trial, &spec, figures) {
            Ok(next) => spec = next,
            Err(e) => {
                eprintln!("  update {trial}: FAILED: {e:#}");
                figures.failures.push(format!("update {trial}: {e:#}"));
                spec = read_spec(&cluster, 0, PROBE)?;
            }
        }
    }
    loaded(&cluster, setup, figures)
}

fn form(setup: &Setup, figures: &mut Figures) -> Result<Cluster> {
    let started = Instant::now();
    let mut cluster = Cluster::new(&setup.profile)?;
    for _ in 0..setup.size {
        cluster.add_peer()?;
    }
    let ids: Vec<String> = cluster
        .peers
        .iter()
        .map(|p| {
            knit_tests::wait_until(Duration::from_secs(30), "a node id", || p.node_id().ok())
                .map(|(id, _)| id)
        })
        .collect::<Result<_>>()?;
    let limit = Duration::from_secs(60 + 3 * u64::try_from(setup.size).unwrap_or(100));
    let peers = &cluster.peers;
    knit_tests::wait_until(limit, "every peer to see every peer alive", || {
        peers
            .iter()
            .all(|p| {
                p.nodes_http().is_ok_and(|rows| {
                    ids.iter()
                        .all(|id| rows.iter().any(|r| &r.id == id && r.state == "alive"))
                })
            })
            .then_some(())
    })
    .context("forming the cluster")?;
    let ms = millis(started.elapsed());
    figures.formed_ms = Some(ms);
    eprintln!("  formed in {ms} ms");
    Ok(cluster)
}

/// Counts every peer's traffic over `length` while `work` runs (it is called with the
/// window's start and must return by the window's end).
fn window(
    cluster: &Cluster,
    length: Duration,
    work: impl FnOnce(Instant) -> Result<()>,
) -> Result<Rates> {
    let peers: Vec<&knit_tests::Peer> = cluster.peers.iter().collect();
    let before = Snapshot::take(&peers)?;
    let started = Instant::now();
    work(started)?;
    if let Some(rest) = length.checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    let after = Snapshot::take(&peers)?;
    Ok(before.rates_to(&after))
}

/// Creates `name` (zero replicas of an image that is never pulled) through peer `on`.
fn create(cluster: &Cluster, on: usize, name: &str) -> Result<()> {
    cluster.peers[on].cli_ok(&[
        "service",
        "create",
        "--name",
        name,
        "--replicas",
        "0",
        "bench:0",
    ])?;
    Ok(())
}

fn read_spec(cluster: &Cluster, on: usize, name: &str) -> Result<Value> {
    let body = cluster.peers[on].api_get(&format!("/v1/services/{name}"), CALL_LIMIT)?;
    Ok(serde_json::from_str(&body)?)
}

/// Posts an update of `current` (a new image) to peer `on`; returns the new spec.
fn post_update(cluster: &Cluster, on: usize, current: &Value, tag: usize) -> Result<Value> {
    let name = current["name"].as_str().context("a spec without a name")?;
    let from_version = current["version"]
        .as_u64()
        .context("a spec without a version")?;
    let mut spec = current.clone();
    spec["image"] = json!(format!("bench:{tag}"));
    spec["previous"] = Value::Null;
    let body = json!({ "spec": spec, "from_version": from_version }).to_string();
    let answer = cluster.peers[on].api_post(&format!("/v1/services/{name}"), &body, CALL_LIMIT)?;
    Ok(serde_json::from_str(&answer)?)
}

/// One propagation trial: update the probe on peer `trial % size`, time the answer and the
/// arrival at every peer.
fn update_trial(
    cluster: &Cluster,
    trial: usize,
    current: &Value,
    figures: &mut Figures,
) -> Result<Value> {
    let writer = trial % cluster.peers.len();
    let started = Instant::now();
    let next = post_update(cluster, writer, current, trial + 1)?;
    let ack_ms = millis(started.elapsed());
    figures.update_bytes = next.to_string().len();
    let version = next["version"]
        .as_u64()
        .ok_or_else(|| anyhow!("the update's answer has no version: {next}"))?;
    let spread = wait_everywhere(cluster, PROBE, version, started)?;
    eprintln!(
        "  update {trial} on {}: acknowledged after {ack_ms} ms, on every peer after {} ms (median peer {} ms)",
        cluster.peers[writer].name, spread.last_ms, spread.median_ms
    );
    figures.ack_ms.push(ack_ms);
    figures.everywhere_ms.push(spread.last_ms);
    figures.median_peer_ms.push(spread.median_ms);
    Ok(next)
}

/// When peers first read a version, ms after a write was sent.
struct Spread {
    last_ms: u64,
    median_ms: u64,
}

/// Polls every peer's copy of `name` until each has `version` or later.
fn wait_everywhere(cluster: &Cluster, name: &str, version: u64, since: Instant) -> Result<Spread> {
    let mut pending: BTreeSet<usize> = (0..cluster.peers.len()).collect();
    let mut arrived: Vec<u64> = Vec::new();
    while !pending.is_empty() {
        if since.elapsed() > SPREAD_LIMIT {
            let names: Vec<&str> = pending
                .iter()
                .map(|&i| cluster.peers[i].name.as_str())
                .collect();
            bail!("version {version} of {name} did not reach {names:?} within {SPREAD_LIMIT:?}");
        }
        let mut done = Vec::new();
        for &i in &pending {
            let seen = cluster.peers[i]
                .api_get(&format!("/v1/services/{name}"), CALL_LIMIT)
                .ok()
                .and_then(|body| serde_json::from_str::<Value>(&body).ok())
                .and_then(|spec| spec["version"].as_u64());
            if seen.is_some_and(|v| v >= version) {
                arrived.push(millis(since.elapsed()));
                done.push(i);
            }
        }
        for i in done {
            pending.remove(&i);
        }
        if !pending.is_empty() {
            std::thread::sleep(SPREAD_POLL);
        }
    }
    arrived.sort_unstable();
    Ok(Spread {
        last_ms: arrived.last().copied().unwrap_or(0),
        median_ms: arrived[arrived.len() / 2],
    })
}

/// The loaded window: a service per peer, each updated through its own peer, the writes
/// spread evenly over the window and over the peers.
fn loaded(cluster: &Cluster, setup: &Setup, figures: &mut Figures) -> Result<()> {
    let n = cluster.peers.len();
    let names: Vec<String> = (0..n).map(|i| format!("load-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        create(cluster, i, name)?;
    }
    let mut specs: Vec<Value> = (0..n)
        .map(|i| read_spec(cluster, i, &names[i]))
        .collect::<Result<_>>()?;
    std::thread::sleep(SETTLE);
    let every = Duration::from_secs(1) / u32::try_from(setup.writes_per_sec).unwrap_or(10);
    let mut load = Load::default();
    let mut errors: Vec<String> = Vec::new();
    let rates = window(cluster, setup.window, |started| {
        let mut k: u32 = 0;
        loop {
            // Write k is due at k/rate into the window; a late write goes at once.
            let due = every * k;
            if due >= setup.window {
                break;
            }
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            let i = usize::try_from(k).unwrap_or(0) % n;
            match post_update(cluster, i, &specs[i], usize::try_from(k).unwrap_or(0)) {
                Ok(next) => {
                    specs[i] = next;
                    load.ok += 1;
                }
                Err(e) => {
                    load.failed += 1;
                    errors.push(format!("{e:#}"));
                    if let Ok(spec) = read_spec(cluster, i, &names[i]) {
                        specs[i] = spec;
                    }
                }
            }
            k += 1;
        }
        Ok(())
    })?;
    // Counts far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    let rate = load.ok as f64 / rates.secs;
    load.rate = rate;
    eprintln!(
        "  {rate:.1} writes/s ({} failed): gossip {:.0} B/s/node, anti-entropy {:.1} B/s/node ({:.1} rounds/s/node)",
        load.failed, rates.gossip_bytes, rates.sync_bytes, rates.sync_rounds
    );
    figures.load = load;
    figures.loaded = Some(rates);
    errors.truncate(3);
    for e in errors {
        figures.failures.push(format!("loaded window write: {e}"));
    }
    Ok(())
}
