//! The soak itself: form a large cluster, measure its idle cost over a quiet window, then
//! for the rest of the run kill a random peer every few seconds, time its detection by a
//! few fixed observers, restart it, and between kills sample a few peers' member lists for
//! false alarms. Failures are kept as messages, never panics; every wait is bounded.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use knit_tests::cost::{self, CpuWindow, Pace, Usage};
use knit_tests::{Cluster, wall_ms};

use crate::watch::{self, Alarms, Detector, Row};

/// The longest wait for every observer to see a killed peer `down`: far above the `lan`
/// profile's bound at 250 members, so that a miss is a failure and not a slow kill.
const DETECT_LIMIT: Duration = Duration::from_secs(90);
/// The longest wait for every observer to see a restarted peer `alive` again.
const ALIVE_LIMIT: Duration = Duration::from_secs(90);
/// Pause between two reads of the observers while a kill or a restart is timed.
const POLL_PAUSE: Duration = Duration::from_millis(200);
/// Pause between two reads of the observers while the cluster forms.
const FORM_POLL: Duration = Duration::from_secs(1);

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub(crate) peers: usize,
    pub(crate) profile: String,
    /// How long peers are killed for, after the quiet window.
    pub(crate) duration: Duration,
    pub(crate) kill_every: Duration,
    /// Fixed peers that time every detection (spread over the cluster, the seed first).
    pub(crate) observers: usize,
    /// Peers other than the observers whose member list each sample reads, in turn.
    pub(crate) rotate: usize,
    pub(crate) sample_every: Duration,
    /// Pause between the cluster forming and the quiet window.
    pub(crate) settle: Duration,
    /// The quiet window over which idle CPU and memory are measured.
    pub(crate) window: Duration,
    pub(crate) seed: u64,
}

/// One kill: who, how long each observer took to see it `down`, and the restart.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Kill {
    pub(crate) victim: String,
    /// Observer name -> ms from the kill to its `down` (its own stamp).
    pub(crate) detect_ms: BTreeMap<String, u64>,
    /// Observers that did not see it `down` within the limit.
    pub(crate) missed: usize,
    /// Restart to the last observer's `alive` (its own stamp), if all saw it.
    pub(crate) rejoin_ms: Option<u64>,
}

/// Samples of the observers' failure-detector gauges.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gauges {
    /// Observer reads while no member was down or coming back (any suspicion is false).
    pub(crate) quiet_reads: usize,
    /// Of those, reads with `knit_members_suspected` above 0.
    pub(crate) quiet_suspecting: usize,
    /// The largest `knit_members_suspected` in those reads.
    pub(crate) quiet_max: u64,
    /// The largest `knit_local_health` in any read.
    pub(crate) health_max: u64,
}

/// What the run measured.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    /// From spawning the first peer to every observer seeing every peer alive.
    pub(crate) formed: Option<Duration>,
    pub(crate) observers: Vec<String>,
    /// Idle cost over the quiet window.
    pub(crate) quiet: Option<Usage>,
    /// Load averages at the end of the quiet window.
    pub(crate) quiet_load: Option<[f64; 3]>,
    pub(crate) kills: Vec<Kill>,
    /// The 1-minute load average at each sample during the kills.
    pub(crate) loads: Vec<f64>,
    pub(crate) gauges: Gauges,
    pub(crate) alarms: Alarms,
    /// Peers whose process exited by itself.
    pub(crate) exited: Vec<String>,
    pub(crate) failures: Vec<String>,
    /// Why the run stopped early, if it did.
    pub(crate) aborted: Option<String>,
}

/// Runs the soak to the end, or as far as it can go.
pub(crate) fn run(setup: &Setup) -> Figures {
    let mut figures = Figures::default();
    if let Err(e) = run_into(setup, &mut figures) {
        eprintln!("  stopped: {e:#}");
        figures.aborted = Some(format!("{e:#}"));
    }
    figures
}

fn run_into(setup: &Setup, figures: &mut Figures) -> Result<()> {
    let mut soak = Soak::form(setup, figures)?;
    std::thread::sleep(setup.settle);
    let window = CpuWindow::open(&soak.cluster);
    soak.sample_until(Instant::now() + setup.window, figures);
    let usage = window.close(&soak.cluster);
    figures.quiet = Some(usage);
    figures.quiet_load = cost::load_average();
    figures.loads.clear();
    eprintln!(
        "  quiet window: CPU {:.2}% of a core per peer, RSS mean {:.1} MiB, load {}",
        usage.cpu_percent,
        usage.rss_mean_mib.unwrap_or(f64::NAN),
        cost::load_text()
    );
    let started = Instant::now();
    let kills = setup.duration.as_millis() / setup.kill_every.as_millis().max(1);
    for n in 1..=usize::try_from(kills)? {
        let kill_at = started + setup.kill_every * u32::try_from(n - 1)?;
        soak.sample_until(kill_at, figures);
        soak.kill_round(n, figures)?;
    }
    soak.sample_until(started + setup.duration, figures);
    Ok(())
}

/// A formed cluster under watch.
struct Soak<'a> {
    setup: &'a Setup,
    cluster: Cluster,
    /// Node id of each peer, by index.
    ids: Vec<String>,
    observers: Vec<usize>,
    /// Peers that may be killed: neither the seed nor an observer, and still running.
    candidates: Vec<usize>,
    /// The next peer of the rotation that samples read beside the observers.
    cursor: usize,
    rng: u64,
    /// Whether no member is down or coming back now, so that any suspicion is false.
    quiet: bool,
    /// The peer killed and not yet restarted, if any.
    down: Option<usize>,
}

impl<'a> Soak<'a> {
    /// Starts the peers one after the other and waits until every observer sees every
    /// peer alive.
    fn form(setup: &'a Setup, figures: &mut Figures) -> Result<Self> {
        let started = Instant::now();
        let mut cluster = Cluster::new(&setup.profile)?;
        cost::start_paced(&mut cluster, setup.peers, Pace::Admitted)?;
        eprintln!(
            "  {} peers started in {:.1} s (load {}); waiting for the observers to see them all",
            setup.peers,
            started.elapsed().as_secs_f64(),
            cost::load_text()
        );
        let ids: Vec<String> = cluster
            .peers
            .iter()
            .map(knit_tests::Peer::node_id)
            .collect::<Result<_>>()?;
        let step = (setup.peers / setup.observers.min(setup.peers)).max(1);
        let observers: Vec<usize> = (0..setup.peers)
            .step_by(step)
            .take(setup.observers)
            .collect();
        let candidates: Vec<usize> = (1..setup.peers)
            .filter(|i| !observers.contains(i))
            .collect();
        if candidates.is_empty() {
            bail!("no peer to kill: every peer but the seed is an observer");
        }
        figures.observers = observers.iter().map(|&i| name(&cluster, i)).collect();
        let names = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), name(&cluster, i)))
            .collect();
        figures.alarms = Alarms::new(names);
        let soak = Self {
            setup,
            cluster,
            ids,
            observers,
            candidates,
            cursor: 0,
            rng: setup.seed,
            quiet: true,
            down: None,
        };
        soak.wait_formed(cost::forming_limit(setup.peers))?;
        figures.formed = Some(started.elapsed());
        eprintln!(
            "  formed in {:.1} s (load {})",
            started.elapsed().as_secs_f64(),
            cost::load_text()
        );
        Ok(soak)
    }

    /// Waits until every observer lists every peer alive; on a timeout, says what each
    /// observer saw.
    fn wait_formed(&self, limit: Duration) -> Result<()> {
        let started = Instant::now();
        let mut seen: BTreeMap<usize, String> = BTreeMap::new();
        loop {
            let mut all = true;
            for &o in &self.observers {
                let (alive, summary) = match watch::rows(&self.cluster.peers[o]) {
                    Ok(rows) => self.tally(&rows),
                    Err(e) => (0, format!("no answer: {e:#}")),
                };
                all &= alive == self.ids.len();
                seen.insert(o, summary);
            }
            if all {
                return Ok(());
            }
            if started.elapsed() > limit {
                let views: Vec<String> = seen
                    .iter()
                    .map(|(&o, s)| format!("{}: {s}", name(&self.cluster, o)))
                    .collect();
                bail!(
                    "the cluster did not form: not every observer saw all {} peers alive within {limit:?} (load average {}); {}",
                    self.ids.len(),
                    cost::load_text(),
                    views.join("; ")
                );
            }
            std::thread::sleep(FORM_POLL);
        }
    }

    /// How many of the cluster's peers `rows` list alive, and a summary by state.
    fn tally(&self, rows: &[Row]) -> (usize, String) {
        let mut states: BTreeMap<&str, usize> = BTreeMap::new();
        for id in &self.ids {
            let state = rows
                .iter()
                .find(|r| &r.id == id)
                .map_or("absent", |r| r.state.as_str());
            *states.entry(state).or_default() += 1;
        }
        let summary: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
        (
            states.get("alive").copied().unwrap_or(0),
            summary.join(", "),
        )
    }

    /// Samples every `sample_every` until `until`.
    fn sample_until(&mut self, until: Instant, figures: &mut Figures) {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(self.setup.sample_every.min(left));
            self.sample(figures);
        }
    }

    /// One sample: which peers still run, the observers' and a few others' member lists,
    /// the observers' detector gauges, and the load average.
    fn sample(&mut self, figures: &mut Figures) {
        self.check_running(figures);
        let others: Vec<usize> = (0..self.cluster.peers.len())
            .filter(|i| !self.observers.contains(i))
            .collect();
        let mut read: Vec<usize> = self.observers.clone();
        for _ in 0..self.setup.rotate.min(others.len()) {
            read.push(others[self.cursor % others.len()]);
            self.cursor += 1;
        }
        for i in read {
            if self.down == Some(i) || !self.cluster.peers[i].is_running() {
                continue;
            }
            match watch::rows(&self.cluster.peers[i]) {
                Ok(rows) => figures.alarms.note(&name(&self.cluster, i), &rows),
                Err(_) => figures.alarms.read_failed(),
            }
        }
        for &o in &self.observers {
            let Ok(detector) = Detector::read(&self.cluster.peers[o]) else {
                continue;
            };
            let g = &mut figures.gauges;
            g.health_max = g.health_max.max(detector.local_health);
            if self.quiet {
                g.quiet_reads += 1;
                g.quiet_suspecting += usize::from(detector.suspected > 0);
                g.quiet_max = g.quiet_max.max(detector.suspected);
            }
        }
        if let Some([one, _, _]) = cost::load_average() {
            figures.loads.push(one);
        }
    }

    /// Notes the peers that exited by themselves (not the one killed), once each.
    fn check_running(&mut self, figures: &mut Figures) {
        for i in 0..self.cluster.peers.len() {
            let peer_name = name(&self.cluster, i);
            if self.down == Some(i)
                || figures.exited.contains(&peer_name)
                || self.cluster.peers[i].is_running()
            {
                continue;
            }
            let tail = self.cluster.peers[i].log_tail(10);
            eprintln!("  {peer_name} exited by itself; its log:\n{tail}");
            figures.failures.push(format!(
                "{peer_name} exited by itself; its log ends: {tail}"
            ));
            figures.alarms.excuse_for_good(&self.ids[i]);
            figures.exited.push(peer_name);
            self.candidates.retain(|&c| c != i);
        }
    }

    /// A random candidate (splitmix64 over the seed): never the seed, never an observer.
    fn pick_victim(&mut self) -> Option<usize> {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let n = u64::try_from(self.candidates.len()).ok()?;
        let at = usize::try_from(z.checked_rem(n)?).ok()?;
        self.candidates.get(at).copied()
    }
}

impl Soak<'_> {
    /// Kill `n`: SIGKILL a random peer, time each observer's `down`, restart it on its
    /// data dir and time each observer's `alive`. A missed detection or restart is a
    /// failure of this kill; a peer that does not come back is excused from then on.
    fn kill_round(&mut self, n: usize, figures: &mut Figures) -> Result<()> {
        let Some(victim) = self.pick_victim() else {
            bail!("no peer left to kill");
        };
        let (id, victim_name) = (self.ids[victim].clone(), name(&self.cluster, victim));
        figures.alarms.start_window(n, &id);
        self.quiet = false;
        let kill_ms = wall_ms();
        self.cluster.peers[victim].kill9();
        self.down = Some(victim);
        let detect_ms = self.wait_state(&id, "down", kill_ms, DETECT_LIMIT, figures);
        let missed = self.observers.len() - detect_ms.len();
        if missed > 0 {
            figures.failures.push(format!(
                "kill {n} ({victim_name}): {missed} of {} observers did not see it down within {DETECT_LIMIT:?}",
                self.observers.len()
            ));
        }
        let restart_ms = wall_ms();
        self.cluster.peers[victim]
            .start(None, None)
            .with_context(|| format!("restarting {victim_name}"))?;
        self.down = None;
        let alive_ms = self.wait_state(&id, "alive", restart_ms, ALIVE_LIMIT, figures);
        let rejoin_ms = (alive_ms.len() == self.observers.len())
            .then(|| alive_ms.values().copied().max().unwrap_or(0));
        if rejoin_ms.is_none() {
            figures.failures.push(format!(
                "kill {n} ({victim_name}): restarted, but only {} of {} observers saw it alive within {ALIVE_LIMIT:?}; excused from then on",
                alive_ms.len(),
                self.observers.len()
            ));
            figures.alarms.excuse_for_good(&id);
            self.candidates.retain(|&c| c != victim);
        }
        self.quiet = true;
        let kill = Kill {
            victim: victim_name,
            detect_ms: detect_ms
                .into_iter()
                .map(|(o, ms)| (name(&self.cluster, o), ms))
                .collect(),
            missed,
            rejoin_ms,
        };
        progress(n, &kill, figures);
        figures.kills.push(kill);
        Ok(())
    }

    /// Polls the observers until each lists `subject` in `state` or `limit` passes;
    /// returns observer -> ms from `from_ms` to its own stamp, for those that did.
    fn wait_state(
        &self,
        subject: &str,
        state: &str,
        from_ms: u64,
        limit: Duration,
        figures: &mut Figures,
    ) -> BTreeMap<usize, u64> {
        let started = Instant::now();
        let mut seen: BTreeMap<usize, u64> = BTreeMap::new();
        while seen.len() < self.observers.len() && started.elapsed() < limit {
            for &o in &self.observers {
                if seen.contains_key(&o) {
                    continue;
                }
                let Ok(rows) = watch::rows(&self.cluster.peers[o]) else {
                    figures.alarms.read_failed();
                    continue;
                };
                figures.alarms.note(&name(&self.cluster, o), &rows);
                if let Some(at) = watch::seen_since(&rows, subject, state, from_ms, wall_ms()) {
                    seen.insert(o, at - from_ms);
                }
            }
            std::thread::sleep(POLL_PAUSE);
        }
        seen
    }
}

/// One line on standard error per kill.
fn progress(n: usize, kill: &Kill, figures: &Figures) {
    let secs = |ms: Option<u64>| {
        ms.map_or_else(|| "–".to_owned(), |ms| format!("{:.2}", ms as f64 / 1000.0))
    };
    eprintln!(
        "  kill {n}: {}: down at {} observers after {} s (first {} s); alive again after {} s; false so far: {} down, {} suspect; load {}",
        kill.victim,
        kill.detect_ms.len(),
        secs(kill.detect_ms.values().copied().max()),
        secs(kill.detect_ms.values().copied().min()),
        secs(kill.rejoin_ms),
        figures.alarms.downs.len(),
        figures.alarms.suspects.len(),
        cost::load_text()
    );
}

/// The name of peer `i`.
fn name(cluster: &Cluster, i: usize) -> String {
    cluster.peers[i].name.clone()
}
