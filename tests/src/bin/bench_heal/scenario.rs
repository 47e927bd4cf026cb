//! One benchmark configuration: a cluster of `peers` peers under `profile` running one
//! service, healed after host losses trial after trial.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use knit_tests::{Cluster, http_get};
use serde::Deserialize;

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
/// Pause between two polls of the survivors during a heal.
const HEAL_POLL: Duration = Duration::from_millis(50);
/// Pause between two polls while waiting for convergence outside a measured window.
const WAIT_POLL: Duration = Duration::from_millis(250);
/// Quiet time after a convergence before the next host loss.
const SETTLE: Duration = Duration::from_secs(2);
/// How long one read of one peer's API may take.
const READ_LIMIT: Duration = Duration::from_secs(2);

/// What to measure for one configuration.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub(crate) peers: usize,
    pub(crate) replicas: usize,
    pub(crate) profile: String,
    /// Host-loss rounds.
    pub(crate) trials: usize,
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
}

/// What one configuration measured. Failures are kept as messages, never panics.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    /// Time from creating the service to all replicas running healthy.
    pub(crate) first_ms: Option<u64>,
    pub(crate) heals: Vec<Heal>,
    /// Per trial that restored: restart of the victim to the placement being back, ms.
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

/// Milliseconds since the Unix epoch: the clock the peers' `since_ms` stamps are on.
fn wall_ms() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(now.as_millis()).unwrap_or(u64::MAX)
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
    let mut placement = wait_converged(&mut cluster, service, setup.replicas, None, FIRST_LIMIT)
        .context("the first placement")?;
    let first_ms = millis(started.elapsed());
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
    let kill_ms = wall_ms();
    cluster.peers[victim].lose_host();
    match watch_heal(
        cluster,
        &survivors,
        service,
        setup.replicas,
        &victim_id,
        kill_ms,
    ) {
        Ok((mut heal, ports)) => {
            heal.lost = lost;
            eprint!(
                "  trial {trial}: lost {name} ({lost} replicas): down after {}-{} ms, healed after {} ms",
                heal.detect_first_ms, heal.detect_last_ms, heal.heal_ms
            );
            figures.heals.push(heal);
            let silent: Vec<&String> = ports
                .iter()
                .filter(|(_, port)| !port.is_some_and(service::answers))
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
    cluster.peers[victim].start(None, None)?;
    match wait_converged(
        cluster,
        service,
        setup.replicas,
        Some(placement),
        RESTORE_LIMIT,
    ) {
        Ok(back) => {
            let ms = millis(restart.elapsed());
            eprintln!("; placement back {ms} ms after restart");
            figures.restore_ms.push(ms);
            Ok(back)
        }
        Err(e) => {
            eprintln!("; placement NOT back: {e:#}");
            figures
                .failures
                .push(format!("trial {trial}: returning {name}: {e:#}"));
            wait_converged(cluster, service, setup.replicas, None, RECOVER_LIMIT)
                .with_context(|| format!("no healthy placement after trial {trial}"))
        }
    }
}

/// Polls the survivors until every slot runs healthy on a live node and every survivor
/// lists the victim `down`. Returns the times, and slot -> host port once healed.
fn watch_heal(
    cluster: &Cluster,
    survivors: &[usize],
    service: &str,
    replicas: usize,
    victim_id: &str,
    kill_ms: u64,
) -> Result<(Heal, BTreeMap<String, Option<u16>>)> {
    let started = Instant::now();
    let mut down_ms: BTreeMap<usize, u64> = BTreeMap::new();
    let mut healed: Option<(u64, BTreeMap<String, Option<u16>>)> = None;
    let mut last_error = String::from("no answer yet");
    while started.elapsed() < HEAL_LIMIT {
        for &i in survivors {
            if down_ms.contains_key(&i) {
                continue;
            }
            if let Some(stamp) = seen_down(cluster, i, victim_id, kill_ms) {
                down_ms.insert(i, stamp);
            }
        }
        if healed.is_none() {
            // The first survivor that answers; another if it does not.
            for &i in survivors {
                match service::tasks(&cluster.peers[i], service) {
                    Ok(tasks) => {
                        healed = service::healed(&tasks, replicas, victim_id)
                            .map(|ports| (wall_ms().saturating_sub(kill_ms), ports));
                        break;
                    }
                    Err(e) => last_error = format!("{e:#}"),
                }
            }
        }
        if let Some((heal_ms, ports)) = &healed
            && down_ms.len() == survivors.len()
        {
            let stamps = down_ms.values().map(|s| s - kill_ms);
            let heal = Heal {
                heal_ms: *heal_ms,
                detect_first_ms: stamps.clone().min().unwrap_or(0),
                detect_last_ms: stamps.max().unwrap_or(0),
                lost: 0,
            };
            return Ok((heal, ports.clone()));
        }
        std::thread::sleep(HEAL_POLL);
    }
    match healed {
        Some((ms, _)) => bail!(
            "healed after {ms} ms, but only {} of {} survivors saw the host down within {HEAL_LIMIT:?}",
            down_ms.len(),
            survivors.len()
        ),
        None => bail!(
            "not healed within {HEAL_LIMIT:?} ({} of {} survivors saw the host down; last read error: {last_error})",
            down_ms.len(),
            survivors.len()
        ),
    }
}

/// One row of `/v1/nodes`, with the time its state began.
#[derive(Debug, Deserialize)]
struct NodeRow {
    id: String,
    state: String,
    /// When the answering peer saw this state begin, ms since the Unix epoch.
    #[serde(default)]
    since_ms: u64,
}

/// When survivor `i` recorded `victim` `down`, if it has: its own stamp, or the time of
/// this poll where the stamp is implausible.
fn seen_down(cluster: &Cluster, i: usize, victim: &str, kill_ms: u64) -> Option<u64> {
    let body = http_get(cluster.peers[i].api, "/v1/nodes", READ_LIMIT).ok()?;
    let rows: Vec<NodeRow> = serde_json::from_str(&body).ok()?;
    let row = rows.iter().find(|r| r.id == victim && r.state == "down")?;
    let now = wall_ms();
    Some(if (kill_ms..=now).contains(&row.since_ms) {
        row.since_ms
    } else {
        now
    })
}

/// Waits until the service has converged (on `wanted`, when given) as some running peer
/// sees it; returns the placement.
fn wait_converged(
    cluster: &mut Cluster,
    service: &str,
    replicas: usize,
    wanted: Option<&BTreeMap<String, String>>,
    limit: Duration,
) -> Result<BTreeMap<String, String>> {
    let started = Instant::now();
    let mut last = String::from("no answer");
    loop {
        let running: Vec<usize> = (0..cluster.peers.len())
            .filter(|&i| cluster.peers[i].is_running())
            .collect();
        for &i in &running {
            match service::tasks(&cluster.peers[i], service) {
                Ok(tasks) => {
                    if let Some(placement) = service::converged(&tasks, replicas)
                        && wanted.is_none_or(|w| *w == placement)
                    {
                        return Ok(placement);
                    }
                    last = summary(&tasks);
                    break;
                }
                Err(e) => last = format!("{e:#}"),
            }
        }
        if started.elapsed() > limit {
            bail!("not converged within {limit:?}; last seen: {last}");
        }
        std::thread::sleep(WAIT_POLL);
    }
}

/// Counts of task (desired, state, health), for a failure message.
fn summary(tasks: &[service::Task]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        *counts
            .entry(format!("{}/{}/{}", t.desired_state, t.state, t.health))
            .or_default() += 1;
    }
    format!("{counts:?}")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
