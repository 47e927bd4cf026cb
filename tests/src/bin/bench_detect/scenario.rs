//! One benchmark configuration: a cluster of `size` peers under `profile`, measured for
//! idle gossip, memory, failure detection after `kill -9`, and joins.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use knit_tests::{Cluster, wall_ms};

use crate::observe::{self, FalseAlarms, Gossip};

/// The longest wait for every survivor to see a killed peer `down`: far above either
/// profile's detection bound, so that a miss is a failure and not a slow trial.
const DETECT_LIMIT: Duration = Duration::from_secs(60);
/// The longest wait for a restarted or a new peer to be seen `alive` everywhere.
const ALIVE_LIMIT: Duration = Duration::from_secs(60);
/// The longest wait for a SIGTERMed peer to exit, and to be seen `left`.
const LEAVE_LIMIT: Duration = Duration::from_secs(10);
/// How often the idle window checks for false alarms (each check reads every peer).
const IDLE_CHECK_EVERY: Duration = Duration::from_secs(2);

/// What to measure for one configuration.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub(crate) size: usize,
    pub(crate) profile: String,
    /// Kill / detect / restart rounds.
    pub(crate) trials: usize,
    /// New peers joined one after the other into the formed cluster.
    pub(crate) joins: usize,
    /// The quiet window over which gossip bytes are counted.
    pub(crate) idle: Duration,
    /// The pause between forming the cluster and the quiet window.
    pub(crate) settle: Duration,
}

/// What one configuration measured. Failures are kept as messages, never panics.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    /// Time from spawning the first peer to every peer seeing every peer alive.
    pub(crate) formed: Option<Duration>,
    /// Per successful trial: kill to the last survivor's `down`, ms.
    pub(crate) detect_ms: Vec<u64>,
    /// Per successful trial: restart to the last survivor's `alive`, ms.
    pub(crate) rejoin_ms: Vec<u64>,
    /// Per successful join: spawn of `knit up --join` to the last peer's `alive`, ms.
    pub(crate) join_ms: Vec<u64>,
    /// Gossip bytes (sent + received) per second per node over the quiet window.
    pub(crate) idle_bytes_per_s: Option<f64>,
    /// Gossip packets sent per second per node over the quiet window.
    pub(crate) idle_packets_per_s: Option<f64>,
    /// Resident memory of every peer after the quiet window, KiB.
    pub(crate) rss_kib: Vec<u64>,
    pub(crate) alarms: FalseAlarms,
    /// Trials, joins or phases that failed, with why.
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
    if setup.size < 2 {
        bail!("a cluster of {} has no peer to kill", setup.size);
    }
    let mut cluster = form(setup, figures)?;
    std::thread::sleep(setup.settle);
    if let Err(e) = idle(&mut cluster, setup, figures) {
        figures.failures.push(format!("idle window: {e:#}"));
    }
    let live = observe::running(&mut cluster);
    figures.rss_kib = live
        .iter()
        .filter_map(|&i| cluster.peers[i].rss_kib())
        .collect();
    for trial in 0..setup.trials {
        detect(&mut cluster, setup, trial, figures)?;
    }
    for join in 0..setup.joins {
        if let Err(e) = join_one(&mut cluster, figures) {
            eprintln!("  join {join}: FAILED: {e:#}");
            figures.failures.push(format!("join {join}: {e:#}"));
        }
    }
    Ok(())
}

fn form(setup: &Setup, figures: &mut Figures) -> Result<Cluster> {
    let started = Instant::now();
    let mut cluster = Cluster::new(&setup.profile)?;
    for _ in 0..setup.size {
        cluster.add_peer()?;
    }
    let limit = Duration::from_secs(60 + 3 * u64::try_from(setup.size).unwrap_or(100));
    observe::wait_all_alive(&mut cluster, limit).context("forming the cluster")?;
    figures.formed = Some(started.elapsed());
    eprintln!("  formed in {:.1} s", started.elapsed().as_secs_f64());
    let live = observe::running(&mut cluster);
    figures.alarms.live_ids = observe::node_ids(&cluster, &live)?.into_iter().collect();
    Ok(cluster)
}

/// Counts gossip over a quiet window, checking now and then that nobody suspects anybody.
fn idle(cluster: &mut Cluster, setup: &Setup, figures: &mut Figures) -> Result<()> {
    let live = observe::running(cluster);
    let read_all = |cluster: &Cluster| -> Result<Vec<Gossip>> {
        live.iter()
            .map(|&i| Gossip::read(&cluster.peers[i]))
            .collect()
    };
    let before = read_all(cluster)?;
    let started = Instant::now();
    while started.elapsed() < setup.idle {
        std::thread::sleep(IDLE_CHECK_EVERY.min(setup.idle.saturating_sub(started.elapsed())));
        for &i in &live {
            if let Ok(rows) = observe::rows(&cluster.peers[i]) {
                figures.alarms.note(i, &rows, "");
            }
        }
    }
    let after = read_all(cluster)?;
    let secs = started.elapsed().as_secs_f64();
    let (mut bytes, mut packets) = (0_u64, 0_u64);
    for (b, a) in before.iter().zip(&after) {
        bytes += a.bytes_sent.saturating_sub(b.bytes_sent)
            + a.bytes_received.saturating_sub(b.bytes_received);
        packets += a.packets_sent.saturating_sub(b.packets_sent);
    }
    // Counts far below 2^52: the conversions are exact.
    #[allow(clippy::cast_precision_loss)]
    let per_node_s = |n: u64| n as f64 / secs / live.len() as f64;
    figures.idle_bytes_per_s = Some(per_node_s(bytes));
    figures.idle_packets_per_s = Some(per_node_s(packets));
    eprintln!(
        "  idle: {:.0} B/s/node, {:.1} packets/s/node",
        per_node_s(bytes),
        per_node_s(packets)
    );
    Ok(())
}

/// One trial: kill -9 a peer (never p0, the seed), time until every survivor says `down`,
/// restart it, time until every survivor says `alive` again. A missed detection is a
/// failed trial; a cluster that does not heal ends the configuration.
fn detect(cluster: &mut Cluster, setup: &Setup, trial: usize, figures: &mut Figures) -> Result<()> {
    let victim = 1 + trial % (setup.size - 1);
    let id = cluster.peers[victim].node_id()?;
    let observers: Vec<usize> = observe::running(cluster)
        .into_iter()
        .filter(|&i| i != victim)
        .collect();
    let kill_ms = wall_ms();
    cluster.peers[victim].kill9();
    let seen = observe::wait_seen(
        cluster,
        &observers,
        &id,
        "down",
        kill_ms,
        DETECT_LIMIT,
        &mut figures.alarms,
    );
    let name = cluster.peers[victim].name.clone();
    match seen {
        Ok(seen) => {
            figures.detect_ms.push(seen.stamped_ms);
            eprint!(
                "  trial {trial}: kill -9 {name}: down everywhere after {} ms (polled {} ms)",
                seen.stamped_ms, seen.polled_ms
            );
        }
        Err(e) => {
            eprint!("  trial {trial}: kill -9 {name}: FAILED: {e:#}");
            figures
                .failures
                .push(format!("trial {trial} ({name}): {e:#}"));
        }
    }
    let restart_ms = wall_ms();
    cluster.peers[victim].start(None, None)?;
    let seen = observe::wait_seen(
        cluster,
        &observers,
        &id,
        "alive",
        restart_ms,
        ALIVE_LIMIT,
        &mut figures.alarms,
    )
    .with_context(|| format!("{name} restarted after trial {trial}"))?;
    figures.rejoin_ms.push(seen.stamped_ms);
    eprintln!(
        "; alive again after {} ms (polled {} ms)",
        seen.stamped_ms, seen.polled_ms
    );
    observe::wait_all_alive(cluster, ALIVE_LIMIT)
        .with_context(|| format!("healing after trial {trial}"))?;
    Ok(())
}

/// Joins a new peer through p0, times until every other peer says it is `alive`, then
/// lets it leave (SIGTERM) so that the cluster keeps its size for the next join.
fn join_one(cluster: &mut Cluster, figures: &mut Figures) -> Result<()> {
    let observers = observe::running(cluster);
    let seed = cluster.peers[0].listen;
    let token = cluster.token().map(str::to_owned);
    let i = cluster.add_unstarted();
    let spawn_ms = wall_ms();
    cluster.peers[i].start(Some(seed), token.as_deref())?;
    let id = observe::node_ids(cluster, &[i])?.remove(0);
    let seen = observe::wait_seen(
        cluster,
        &observers,
        &id,
        "alive",
        spawn_ms,
        ALIVE_LIMIT,
        &mut figures.alarms,
    )?;
    figures.join_ms.push(seen.stamped_ms);
    eprintln!(
        "  join {}: alive everywhere {} ms after spawn (polled {} ms)",
        cluster.peers[i].name, seen.stamped_ms, seen.polled_ms
    );
    let name = cluster.peers[i].name.clone();
    cluster.peers[i]
        .terminate(LEAVE_LIMIT)
        .with_context(|| format!("{name} was let go with SIGTERM"))?;
    let mut ignored = FalseAlarms::default();
    observe::wait_seen(
        cluster,
        &observers,
        &id,
        "left",
        spawn_ms,
        LEAVE_LIMIT,
        &mut ignored,
    )
    .with_context(|| format!("{name} left (SIGTERM)"))?;
    Ok(())
}
