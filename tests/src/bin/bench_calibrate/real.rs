//! The real side: a cluster of release `knit` peers on loopback running one `process`
//! service of plain long-running processes (no health check), a non-seed peer lost per
//! trial (SIGKILL of the peer and of its replicas), detection and heal timed, the peer
//! brought back and the placement awaited before the next trial.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use knit_tests::heal::{self, HealTimes, Serving};
use knit_tests::{Cluster, cluster_lock};

/// The longest wait for the first placement of the service to run.
const FIRST_LIMIT: Duration = Duration::from_secs(120);
/// The longest wait for a lost host's replicas to run elsewhere: far above the `lan`
/// profile's detection bound, so that a miss is a failure and not a slow trial.
const HEAL_LIMIT: Duration = Duration::from_secs(60);
/// The longest wait for a returning host to take its share back.
const RESTORE_LIMIT: Duration = Duration::from_secs(90);
/// The longest wait, after that, for any placement to carry on from.
const RECOVER_LIMIT: Duration = Duration::from_secs(60);
/// Quiet time after a convergence before the next host loss.
const SETTLE: Duration = Duration::from_secs(2);

/// What the real cluster measured for one profile. Failures are kept as messages.
#[derive(Debug, Default)]
pub(crate) struct RealFigures {
    /// One entry per trial that healed.
    pub(crate) heals: Vec<HealTimes>,
    /// Trials or phases that failed, with why.
    pub(crate) failures: Vec<String>,
}

/// Runs `trials` host losses on a cluster of `peers` peers under `profile` with a service
/// of `replicas` replicas. Never fails: what went wrong is in the figures.
pub(crate) fn run(peers: usize, profile: &str, replicas: usize, trials: usize) -> RealFigures {
    let mut figures = RealFigures::default();
    // One cluster at a time: on two cores, parallel clusters starve each other.
    let _lock = cluster_lock();
    if let Err(e) = run_into(peers, profile, replicas, trials, &mut figures) {
        eprintln!("  stopped: {e:#}");
        figures.failures.push(format!("stopped: {e:#}"));
    }
    // The cluster (dropped inside run_into) killed its peers and their replicas.
    figures
}

fn run_into(
    peers: usize,
    profile: &str,
    replicas: usize,
    trials: usize,
    figures: &mut RealFigures,
) -> Result<()> {
    let mut cluster = Cluster::start(peers, profile).context("forming the cluster")?;
    let service = format!("calib-{}", std::process::id());
    let count = replicas.to_string();
    cluster.peers[0].cli_ok(&[
        "service",
        "create",
        "--name",
        &service,
        "--driver",
        "process",
        "--replicas",
        &count,
        "--restart-delay",
        "200ms",
        "--",
        "sleep",
        "600",
    ])?;
    let started = Instant::now();
    let mut placement = heal::wait_converged(
        &mut cluster,
        &watched(&service, replicas),
        None,
        FIRST_LIMIT,
    )
    .context("the first placement")?;
    eprintln!(
        "  {replicas} replicas running {} ms after create",
        knit_tests::millis(started.elapsed())
    );
    for trial in 0..trials {
        std::thread::sleep(SETTLE);
        placement = one_trial(&mut cluster, &service, replicas, trial, &placement, figures)?;
    }
    Ok(())
}

/// The service as the heal is watched: its replicas have no health check, so `none`
/// counts as serving.
fn watched(service: &str, replicas: usize) -> heal::Service<'_> {
    heal::Service {
        name: service,
        replicas,
        serving: Serving::HealthyOrUnchecked,
    }
}

/// The peer to lose: among the non-seed peers (never `p0`) that run at least one replica,
/// the one the trial number picks. A host without replicas would "heal" at once.
fn victim(cluster: &Cluster, placement: &BTreeMap<String, String>, trial: usize) -> Result<usize> {
    let candidates: Vec<usize> = (1..cluster.peers.len())
        .filter(|&i| {
            cluster.peers[i]
                .node_id()
                .is_ok_and(|id| placement.values().any(|n| *n == id))
        })
        .collect();
    if candidates.is_empty() {
        bail!("no non-seed peer runs a replica: {placement:?}");
    }
    Ok(candidates[trial % candidates.len()])
}

/// One trial: lose a non-seed peer that runs replicas, time detection and healing, bring
/// the peer back and wait for the placement to return. Returns the placement to start the
/// next trial from.
fn one_trial(
    cluster: &mut Cluster,
    service: &str,
    replicas: usize,
    trial: usize,
    placement: &BTreeMap<String, String>,
    figures: &mut RealFigures,
) -> Result<BTreeMap<String, String>> {
    let victim = victim(cluster, placement, trial)?;
    let victim_id = cluster.peers[victim].node_id()?;
    let name = cluster.peers[victim].name.clone();
    let lost = placement.values().filter(|n| **n == victim_id).count();
    let survivors: Vec<usize> = (0..cluster.peers.len())
        .filter(|&i| i != victim && cluster.peers[i].is_running())
        .collect();
    let kill_ms = knit_tests::wall_ms();
    cluster.peers[victim].lose_host();
    let watched = watched(service, replicas);
    match heal::watch_heal(
        cluster, &survivors, &watched, &victim_id, kill_ms, HEAL_LIMIT,
    ) {
        Ok((times, _ports)) => {
            eprint!(
                "  trial {trial}: lost {name} ({lost} replicas): down everywhere after {} ms, healed after {} ms",
                times.detect_last_ms, times.heal_ms
            );
            figures.heals.push(times);
        }
        Err(e) => {
            eprint!("  trial {trial}: lost {name}: FAILED: {e:#}");
            figures
                .failures
                .push(format!("trial {trial} ({name}): {e:#}"));
        }
    }
    let restart = Instant::now();
    cluster.peers[victim].start(None, None)?;
    match heal::wait_converged(cluster, &watched, Some(placement), RESTORE_LIMIT) {
        Ok(back) => {
            eprintln!(
                "; placement back {} ms after restart",
                knit_tests::millis(restart.elapsed())
            );
            Ok(back)
        }
        Err(e) => {
            eprintln!("; placement NOT back: {e:#}");
            figures
                .failures
                .push(format!("trial {trial}: returning {name}: {e:#}"));
            cluster
                .wait_all_alive(RECOVER_LIMIT)
                .with_context(|| format!("peers not all alive after trial {trial}"))?;
            heal::wait_converged(cluster, &watched, None, RECOVER_LIMIT)
                .with_context(|| format!("no placement after trial {trial}"))
        }
    }
}
