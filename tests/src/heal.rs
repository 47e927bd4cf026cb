//! Watching a real cluster lose a host and heal, for the benchmark programs.
//!
//! Reads go straight to the admin API, not through a CLI process per read (a poll every
//! 50 ms of four survivors would otherwise cost a process start each): `/v1/services/NAME/ps`
//! gives the rows `knit service ps --format json` prints, and `/v1/nodes` the rows of
//! `knit node ls --format json` plus `since_ms`, the time the answering peer saw the state
//! begin. Detection is timed by those stamps; healing by the poll that first sees it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde::Deserialize;

use crate::{Cluster, Peer, wall_ms};

/// How long one read of one peer's API may take.
const READ_LIMIT: Duration = Duration::from_secs(2);
/// Pause between two polls of the survivors while a heal is timed.
const HEAL_POLL: Duration = Duration::from_millis(50);
/// Pause between two polls while waiting for convergence outside a timed window.
const WAIT_POLL: Duration = Duration::from_millis(250);

/// One row of `/v1/services/NAME/ps`.
#[derive(Debug, Clone, Deserialize)]
pub struct Task {
    /// `service.N`.
    pub slot: String,
    /// The node that runs (or should run) it.
    pub node_id: String,
    /// `running` for the slot's owner, `shutdown` for a replica being moved away.
    pub desired_state: String,
    /// `running`, `starting`, `lost`, ...
    pub state: String,
    /// `healthy`, `unhealthy`, `unknown`, or `none` for a service without a check.
    pub health: String,
    /// The host port of its first published port, if any.
    pub host_port: Option<u16>,
}

/// Which health states count as serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// Only `healthy`: replicas with a health check serve once they pass it.
    Healthy,
    /// `healthy` or `none`: replicas without a health check serve once they run.
    HealthyOrUnchecked,
}

impl Serving {
    /// Whether a replica whose health is `health` counts as serving.
    pub fn admits(self, health: &str) -> bool {
        match self {
            Self::Healthy => health == "healthy",
            Self::HealthyOrUnchecked => matches!(health, "healthy" | "none"),
        }
    }
}

/// The service a heal is watched on: its name, its replica count, and which health
/// states count as serving.
#[derive(Debug, Clone, Copy)]
pub struct Service<'a> {
    pub name: &'a str,
    pub replicas: usize,
    pub serving: Serving,
}

impl Task {
    /// Whether it runs as wanted: owned, running, and in a health state `serving` admits.
    pub fn serving(&self, serving: Serving) -> bool {
        self.desired_state == "running" && self.state == "running" && serving.admits(&self.health)
    }
}

/// The tasks of `service` as `peer` sees them.
pub fn tasks(peer: &Peer, service: &str) -> Result<Vec<Task>> {
    let body = peer.api_get(&format!("/v1/services/{service}/ps"), READ_LIMIT)?;
    Ok(serde_json::from_str(&body)?)
}

/// Slot -> node id, once all `replicas` slots serve on their owners and nothing else of
/// the service runs on a reachable node (no hand-off in progress).
pub fn converged(
    tasks: &[Task],
    replicas: usize,
    serving: Serving,
) -> Option<BTreeMap<String, String>> {
    let live: Vec<&Task> = tasks.iter().filter(|t| t.state != "lost").collect();
    let placement: BTreeMap<String, String> = live
        .iter()
        .filter(|t| t.serving(serving))
        .map(|t| (t.slot.clone(), t.node_id.clone()))
        .collect();
    (placement.len() == replicas && live.len() == replicas).then_some(placement)
}

/// Slot -> host port, once every one of `replicas` slots has an owner other than `victim`
/// whose replica serves. Replicas being moved away are not looked at.
pub fn healed(
    tasks: &[Task],
    replicas: usize,
    victim: &str,
    serving: Serving,
) -> Option<BTreeMap<String, Option<u16>>> {
    let owners: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.desired_state == "running")
        .collect();
    let ok = owners.len() == replicas
        && owners
            .iter()
            .all(|t| t.serving(serving) && !t.node_id.is_empty() && t.node_id != victim);
    ok.then(|| {
        owners
            .iter()
            .map(|t| (t.slot.clone(), t.host_port))
            .collect()
    })
}

/// One row of `/v1/nodes`, with the time its state began.
#[derive(Debug, Deserialize)]
struct StampedNode {
    id: String,
    state: String,
    /// When the answering peer saw this state begin, ms since the Unix epoch.
    #[serde(default)]
    since_ms: u64,
}

/// When `observer` recorded `victim` `down`, if it has: its own stamp, or the time of this
/// poll where the stamp is not between the kill and now.
pub fn down_since(observer: &Peer, victim: &str, kill_ms: u64) -> Option<u64> {
    let body = observer.api_get("/v1/nodes", READ_LIMIT).ok()?;
    let rows: Vec<StampedNode> = serde_json::from_str(&body).ok()?;
    let row = rows.iter().find(|r| r.id == victim && r.state == "down")?;
    let now = wall_ms();
    Some(if (kill_ms..=now).contains(&row.since_ms) {
        row.since_ms
    } else {
        now
    })
}

/// One host loss that healed, in ms from the kill.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct HealTimes {
    /// Until every slot served on a live node, as a survivor's `ps` showed it.
    pub heal_ms: u64,
    /// Until the first survivor recorded the victim `down` (its own stamp).
    pub detect_first_ms: u64,
    /// Until the last survivor recorded the victim `down`: detection by every survivor.
    pub detect_last_ms: u64,
}

/// Polls `survivors` every 50 ms until every slot of `service` serves on a node other than
/// `victim_id` and every survivor lists the victim `down`; fails after `limit`. Returns the
/// times, and slot -> host port as the poll that saw the heal read it.
pub fn watch_heal(
    cluster: &Cluster,
    survivors: &[usize],
    service: &Service,
    victim_id: &str,
    kill_ms: u64,
    limit: Duration,
) -> Result<(HealTimes, BTreeMap<String, Option<u16>>)> {
    let started = Instant::now();
    let mut down_ms: BTreeMap<usize, u64> = BTreeMap::new();
    let mut heal: Option<(u64, BTreeMap<String, Option<u16>>)> = None;
    let mut last_error = String::from("no answer yet");
    while started.elapsed() < limit {
        for &i in survivors {
            if !down_ms.contains_key(&i)
                && let Some(stamp) = down_since(&cluster.peers[i], victim_id, kill_ms)
            {
                down_ms.insert(i, stamp);
            }
        }
        if heal.is_none() {
            // The first survivor that answers; another if it does not.
            for &i in survivors {
                match tasks(&cluster.peers[i], service.name) {
                    Ok(tasks) => {
                        heal = healed(&tasks, service.replicas, victim_id, service.serving)
                            .map(|ports| (wall_ms().saturating_sub(kill_ms), ports));
                        break;
                    }
                    Err(e) => last_error = format!("{e:#}"),
                }
            }
        }
        if let Some((heal_ms, ports)) = &heal
            && down_ms.len() == survivors.len()
        {
            let stamps = down_ms.values().map(|s| s - kill_ms);
            let times = HealTimes {
                heal_ms: *heal_ms,
                detect_first_ms: stamps.clone().min().unwrap_or(0),
                detect_last_ms: stamps.max().unwrap_or(0),
            };
            return Ok((times, ports.clone()));
        }
        std::thread::sleep(HEAL_POLL);
    }
    match heal {
        Some((ms, _)) => bail!(
            "healed after {ms} ms, but only {} of {} survivors saw the host down within {limit:?}",
            down_ms.len(),
            survivors.len()
        ),
        None => bail!(
            "not healed within {limit:?} ({} of {} survivors saw the host down; last read error: {last_error})",
            down_ms.len(),
            survivors.len()
        ),
    }
}

/// Waits until `service` has converged (on `wanted`, when given) as some running peer sees
/// it; returns the placement, slot -> node id.
pub fn wait_converged(
    cluster: &mut Cluster,
    service: &Service,
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
            match tasks(&cluster.peers[i], service.name) {
                Ok(tasks) => {
                    if let Some(placement) = converged(&tasks, service.replicas, service.serving)
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

/// Waits until every running peer sees `service` converged on one placement (`wanted`,
/// when given); returns it. After a cut heals, the peer that was cut off answers from a
/// view of its own until it has caught up, so one peer's answer is not enough.
pub fn wait_converged_everywhere(
    cluster: &mut Cluster,
    service: &Service,
    wanted: Option<&BTreeMap<String, String>>,
    limit: Duration,
) -> Result<BTreeMap<String, String>> {
    let started = Instant::now();
    let mut last = String::from("no answer");
    loop {
        let running: Vec<usize> = (0..cluster.peers.len())
            .filter(|&i| cluster.peers[i].is_running())
            .collect();
        let mut seen: Option<BTreeMap<String, String>> = None;
        let mut agree = !running.is_empty();
        for &i in &running {
            let peer = &cluster.peers[i];
            let placement = match tasks(peer, service.name) {
                Ok(tasks) => {
                    let placement = converged(&tasks, service.replicas, service.serving);
                    if placement.is_none() {
                        last = format!("{}: {}", peer.name, summary(&tasks));
                    }
                    placement
                }
                Err(e) => {
                    last = format!("{}: {e:#}", peer.name);
                    None
                }
            };
            let fits = placement.as_ref().is_some_and(|p| {
                wanted.is_none_or(|w| w == p) && seen.as_ref().is_none_or(|s| s == p)
            });
            if !fits {
                if placement.is_some() {
                    last = format!("{} sees another placement", peer.name);
                }
                agree = false;
                break;
            }
            seen = placement;
        }
        if agree && let Some(placement) = seen {
            return Ok(placement);
        }
        if started.elapsed() > limit {
            bail!("not converged on every peer within {limit:?}; last seen: {last}");
        }
        std::thread::sleep(WAIT_POLL);
    }
}

/// Counts of task (desired, state, health), for a failure message.
fn summary(tasks: &[Task]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        *counts
            .entry(format!("{}/{}/{}", t.desired_state, t.state, t.health))
            .or_default() += 1;
    }
    format!("{counts:?}")
}

#[cfg(test)]
mod tests {
    use super::{Serving, Task, converged, healed};

    fn task(slot: u32, node: &str, desired: &str, state: &str, health: &str) -> Task {
        Task {
            slot: format!("s.{slot}"),
            node_id: node.to_owned(),
            desired_state: desired.to_owned(),
            state: state.to_owned(),
            health: health.to_owned(),
            host_port: None,
        }
    }

    #[test]
    fn replicas_without_a_check_count_as_serving() {
        let tasks = [
            task(0, "a", "running", "running", "none"),
            task(1, "b", "running", "running", "healthy"),
        ];
        let unchecked = Serving::HealthyOrUnchecked;
        assert_eq!(converged(&tasks, 2, unchecked).map(|p| p.len()), Some(2));
        assert!(healed(&tasks, 2, "c", unchecked).is_some());
        assert!(healed(&tasks, 2, "b", unchecked).is_none());
    }

    #[test]
    fn with_a_check_only_healthy_replicas_serve() {
        let mut tasks = vec![
            task(0, "a", "running", "running", "healthy"),
            task(1, "b", "running", "running", "none"),
        ];
        assert!(converged(&tasks, 2, Serving::Healthy).is_none());
        assert!(healed(&tasks, 2, "c", Serving::Healthy).is_none());
        tasks[1].health = "healthy".to_owned();
        tasks[1].host_port = Some(18_080);
        assert_eq!(
            converged(&tasks, 2, Serving::Healthy).map(|p| p.len()),
            Some(2)
        );
        let ports = healed(&tasks, 2, "c", Serving::Healthy).unwrap();
        assert_eq!(ports.get("s.1"), Some(&Some(18_080)));
        assert_eq!(ports.get("s.0"), Some(&None));
    }

    #[test]
    fn a_starting_or_lost_replica_is_not_healed() {
        let tasks = [
            task(0, "a", "running", "running", "none"),
            task(1, "b", "running", "starting", "none"),
            task(1, "c", "shutdown", "lost", "none"),
        ];
        assert!(healed(&tasks, 2, "c", Serving::HealthyOrUnchecked).is_none());
        assert!(converged(&tasks, 2, Serving::HealthyOrUnchecked).is_none());
    }
}
