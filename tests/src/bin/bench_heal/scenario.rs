//! One benchmark configuration: a cluster of `peers` peers under `profile` running one
//! service, healed after host losses trial after trial. A host is lost in one of two ways
//! ([`Failure`]): killed, or cut off the network while everything on it keeps running.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use knit_tests::heal::{self, Serving};
use knit_tests::{Cluster, Partition};

use crate::service::{self, Workload};

/// The longest wait for the first placement of the service to run healthy.
const FIRST_LIMIT: Duration = Duration::from_secs(180);
/// The longest wait for a lost host's replicas to run healthy elsewhere: far above the
/// `lan` profile's detection bound, so that a miss is a failure and not a slow trial.
const HEAL_LIMIT: Duration = Duration::from_secs(60);
/// The longest wait for a returning host to take its share back.
const RESTORE_LIMIT: Duration = Duration::from_secs(120);
/// The longest wait, after that, for any healthy placement to carry on from.
const RECOVER_LIMIT: Duration = Duration::from_secs(60);
/// Quiet time after a convergence before the next host loss.
const SETTLE: Duration = Duration::from_secs(2);

/// How a host is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// SIGKILL of the host's peer and of its replicas (process groups, containers).
    Kill,
    /// The host's peer becomes unreachable: `iptables` drops every packet between its
    /// address and the other peers' (both ways), while the peer and its replicas keep
    /// running. The rules go when the trial ends (or the program does).
    Netcut,
}

impl Failure {
    /// The names `--failures` takes, which are also `swarm-heal.sh`'s.
    pub(crate) const NAMES: [&'static str; 2] = ["kill", "netcut"];

    /// The failure named `name` (one of [`Failure::NAMES`]).
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name {
            "kill" => Some(Self::Kill),
            "netcut" => Some(Self::Netcut),
            _ => None,
        }
    }

    /// Its name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Netcut => "netcut",
        }
    }
}

/// What to measure for one configuration.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub(crate) peers: usize,
    pub(crate) replicas: usize,
    pub(crate) profile: String,
    /// Host-loss rounds.
    pub(crate) trials: usize,
    pub(crate) failure: Failure,
}

/// One trial that healed, in ms from the kill.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heal {
    /// Until every slot ran healthy on a live node, as seen by a survivor's `ps`.
    pub(crate) heal_ms: u64,
    /// Until the first survivor recorded the victim `down` (its own `since_ms` stamp).
    pub(crate) detect_first_ms: u64,
    /// Until the last survivor recorded the victim `down`.
    pub(crate) detect_last_ms: u64,
    /// Replicas the victim ran.
    pub(crate) lost: usize,
    /// When the lost slots' new replicas started and first passed their check.
    pub(crate) phases: crate::phases::Phases,
}

/// What one configuration measured. Failures are kept as messages, never panics.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    /// Time from creating the service to all replicas running healthy.
    pub(crate) first_ms: Option<u64>,
    pub(crate) heals: Vec<Heal>,
    /// Per trial that restored: the victim's return (restart, or the cut healed) to the
    /// placement being back, ms.
    pub(crate) restore_ms: Vec<u64>,
    /// Trials or phases that failed, with why.
    pub(crate) failures: Vec<String>,
    /// Why the configuration stopped early or did not run, if it did.
    pub(crate) aborted: Option<String>,
}

impl Figures {
    /// A configuration that did not run.
    pub(crate) fn skipped(why: String) -> Self {
        eprintln!("  skipped: {why}");
        Self {
            aborted: Some(format!("skipped: {why}")),
            ..Self::default()
        }
    }
}

/// The service as the heal is watched: its replicas have a health check, and only
/// `healthy` counts as serving.
fn watched<'a>(setup: &Setup, service: &'a str) -> heal::Service<'a> {
    heal::Service {
        name: service,
        replicas: setup.replicas,
        serving: Serving::Healthy,
    }
}

/// Runs one configuration to the end, or as far as it can go.
pub(crate) fn run(setup: &Setup, workload: &Workload) -> Figures {
    let mut figures = Figures::default();
    let service = workload.service_name();
    workload.clean_up(&service);
    if let Err(e) = run_into(setup, workload, &service, &mut figures) {
        eprintln!("  aborted: {e:#}");
        figures.aborted = Some(format!("{e:#}"));
    }
    workload.clean_up(&service);
    figures
}

fn run_into(
    setup: &Setup,
    workload: &Workload,
    service: &str,
    figures: &mut Figures,
) -> Result<()> {
    let mut cluster = Cluster::start(setup.peers, &setup.profile).context("forming the cluster")?;
    let started = Instant::now();
    workload.create(&cluster, service, setup.replicas)?;
    let mut placement =
        heal::wait_converged(&mut cluster, &watched(setup, service), None, FIRST_LIMIT)
            .context("the first placement")?;
    let first_ms = knit_tests::millis(started.elapsed());
    figures.first_ms = Some(first_ms);
    eprintln!(
        "  {} replicas running healthy {first_ms} ms after create",
        setup.replicas
    );
    for trial in 0..setup.trials {
        std::thread::sleep(SETTLE);
        placement = one_trial(&mut cluster, setup, service, trial, &placement, figures)?;
    }
    Ok(())
}

/// The index of the peer to lose: among those running the most replicas, the one the
/// trial number picks.
fn busiest(cluster: &Cluster, placement: &BTreeMap<String, String>, trial: usize) -> Result<usize> {
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    for node in placement.values() {
        *load.entry(node).or_default() += 1;
    }
    let most = load.values().copied().max().unwrap_or(0);
    let candidates: Vec<usize> = (0..cluster.peers.len())
        .filter(|&i| {
            cluster.peers[i]
                .node_id()
                .is_ok_and(|id| load.get(id.as_str()) == Some(&most))
        })
        .collect();
    if candidates.is_empty() {
        bail!("no peer runs the busiest node's replicas: {load:?}");
    }
    Ok(candidates[trial % candidates.len()])
}

/// One trial: lose the busiest host, time detection and healing, bring the host back and
/// wait for its share to return. Returns the placement to start the next trial from.
fn one_trial(
    cluster: &mut Cluster,
    setup: &Setup,
    service: &str,
    trial: usize,
    placement: &BTreeMap<String, String>,
    figures: &mut Figures,
) -> Result<BTreeMap<String, String>> {
    let victim = busiest(cluster, placement, trial)?;
    let victim_id = cluster.peers[victim].node_id()?;
    let name = cluster.peers[victim].name.clone();
    let lost = placement.values().filter(|n| **n == victim_id).count();
    let survivors: Vec<usize> = (0..cluster.peers.len())
        .filter(|&i| i != victim && cluster.peers[i].is_running())
        .collect();
    let watched = watched(setup, service);
    let kill_ms = knit_tests::wall_ms();
    let cut = lose(cluster, victim, setup.failure)?;
    if cut.is_some() {
        // The time is counted from before the first rule: this is how late the last came.
        let ms = knit_tests::wall_ms().saturating_sub(kill_ms);
        eprintln!("  trial {trial}: {name} cut off in {ms} ms");
    }
    match heal::watch_heal(
        cluster, &survivors, &watched, &victim_id, kill_ms, HEAL_LIMIT,
    ) {
        Ok((times, ports)) => {
            let lost_slots = placement
                .iter()
                .filter(|(_, node)| **node == victim_id)
                .map(|(slot, _)| slot.clone())
                .collect();
            let logs: Vec<&knit_tests::Peer> =
                survivors.iter().map(|&i| &cluster.peers[i]).collect();
            let heal = Heal {
                heal_ms: times.heal_ms,
                detect_first_ms: times.detect_first_ms,
                detect_last_ms: times.detect_last_ms,
                lost,
                phases: crate::phases::read(&logs, &lost_slots, kill_ms),
            };
            let shown = |ms: Option<u64>| ms.map_or_else(|| "?".to_owned(), |ms| ms.to_string());
            eprint!(
                "  trial {trial}: lost {name} ({lost} replicas): down after {}-{} ms, started after {} ms, first check passed after {} ms, healed after {} ms",
                heal.detect_first_ms,
                heal.detect_last_ms,
                shown(heal.phases.started_ms),
                shown(heal.phases.healthy_ms),
                heal.heal_ms
            );
            figures.heals.push(heal);
            let ips: Vec<std::net::IpAddr> = std::iter::once([127, 0, 0, 1].into())
                .chain(cluster.peers.iter().map(|p| p.listen.ip()))
                .collect();
            let silent: Vec<&String> = ports
                .iter()
                .filter(|(_, port)| !port.is_some_and(|p| service::answers(&ips, p)))
                .map(|(slot, _)| slot)
                .collect();
            if !silent.is_empty() {
                figures.failures.push(format!(
                    "trial {trial}: reported healthy but did not answer HTTP: {silent:?}"
                ));
            }
        }
        Err(e) => {
            eprint!("  trial {trial}: lost {name}: FAILED: {e:#}");
            figures
                .failures
                .push(format!("trial {trial} ({name}): {e:#}"));
        }
    }
    let restart = Instant::now();
    let back = bring_back(cluster, victim, cut, &watched, placement)?;
    match back {
        Ok(back) => {
            let ms = knit_tests::millis(restart.elapsed());
            eprintln!("; placement back {ms} ms after the host returned");
            figures.restore_ms.push(ms);
            Ok(back)
        }
        Err(e) => {
            eprintln!("; placement NOT back: {e:#}");
            figures
                .failures
                .push(format!("trial {trial}: returning {name}: {e:#}"));
            heal::wait_converged(cluster, &watched, None, RECOVER_LIMIT)
                .with_context(|| format!("no healthy placement after trial {trial}"))
        }
    }
}

/// Loses peer `victim` by `failure`; a cut is returned, to be healed (dropping it heals
/// it too).
fn lose(cluster: &mut Cluster, victim: usize, failure: Failure) -> Result<Option<Partition>> {
    match failure {
        Failure::Kill => {
            cluster.peers[victim].lose_host();
            Ok(None)
        }
        Failure::Netcut => {
            let others: Vec<std::net::IpAddr> = (0..cluster.peers.len())
                .filter(|&i| i != victim)
                .map(|i| cluster.peers[i].listen.ip())
                .collect();
            let cut = Partition::new(&[cluster.peers[victim].listen.ip()], &others)
                .context("cutting the host off")?;
            Ok(Some(cut))
        }
    }
}

/// Brings the lost host back (restarts it, or heals its cut) and waits for the placement
/// to return to `placement`. Fails early only when the peer cannot be started.
fn bring_back(
    cluster: &mut Cluster,
    victim: usize,
    cut: Option<Partition>,
    watched: &heal::Service,
    placement: &BTreeMap<String, String>,
) -> Result<Result<BTreeMap<String, String>>> {
    Ok(match cut {
        Some(cut) => {
            cut.heal();
            // The peer that was cut off answers from its own view until it has caught
            // up: wait for every peer to see every peer, and the placement everywhere.
            cluster.wait_all_alive(RESTORE_LIMIT).and_then(|_| {
                heal::wait_converged_everywhere(cluster, watched, Some(placement), RESTORE_LIMIT)
            })
        }
        None => {
            cluster.peers[victim].start(None, None)?;
            heal::wait_converged(cluster, watched, Some(placement), RESTORE_LIMIT)
        }
    })
}
