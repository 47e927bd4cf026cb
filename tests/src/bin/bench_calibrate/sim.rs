//! The simulated side: the same scenario in `knit-sim` (hosts, profile, one service, a kill
//! of one host), run over many seeds, with the container start time set to what a process
//! start costs on this machine.

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use knit_tests::report::Samples;

/// Simulated time before the kill: the warm-up (10 s) and 10 s for the first placement to
/// run everywhere.
const KILL_AT_S: u64 = 20;
/// Simulated time after the kill: several times the `lan` profile's detection bound.
const AFTER_KILL_S: u64 = 40;

/// What the process-start measurement found, in microseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct StartTime {
    /// Spawns timed.
    pub(crate) samples: usize,
    pub(crate) p10_us: u64,
    pub(crate) p50_us: u64,
    pub(crate) p90_us: u64,
    pub(crate) max_us: u64,
    /// The uniform range handed to the simulator (`containers.start_min_ms..=start_max_ms`):
    /// p10 rounded down to p90 rounded up, in whole ms.
    pub(crate) start_min_ms: u64,
    pub(crate) start_max_ms: u64,
}

/// Times `samples` spawns of `sleep 600` the way the `process` driver starts a replica (own
/// process group, output to a log file, stdin closed): `spawn` returns once the child has
/// exec'd, so this is fork + exec. Each child is killed and reaped at once.
pub(crate) fn measure_start(samples: usize) -> Result<StartTime> {
    let dir = std::env::temp_dir().join(format!("knit-calib-spawn-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut us = Vec::with_capacity(samples);
    let mut outcome = Ok(());
    for i in 0..samples {
        let log = match std::fs::File::create(dir.join(format!("{i}.log"))) {
            Ok(log) => log,
            Err(e) => {
                outcome = Err(e).context("creating a spawn log");
                break;
            }
        };
        let started = Instant::now();
        let spawned = log.try_clone().and_then(|out| {
            Command::new("sleep")
                .arg("600")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(log)
                .process_group(0)
                .spawn()
        });
        let took = started.elapsed();
        match spawned {
            Ok(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
                us.push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
            }
            Err(e) => {
                outcome = Err(e).context("cannot run sleep");
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&dir);
    outcome?;
    let us = Samples::new(us);
    let at = |q| us.percentile(q).unwrap_or(0);
    let (p10_us, p90_us) = (at(0.10), at(0.90));
    Ok(StartTime {
        samples: us.count(),
        p10_us,
        p50_us: at(0.50),
        p90_us,
        max_us: us.max().unwrap_or(0),
        start_min_ms: p10_us / 1000,
        start_max_ms: p90_us.div_ceil(1000).max(1),
    })
}

/// Kill-to-detection and kill-to-heal of each seed's run, in ms.
#[derive(Debug, Default)]
pub(crate) struct SimFigures {
    pub(crate) detection_ms: Vec<u64>,
    /// Only of kills of hosts that ran at least one slot.
    pub(crate) heal_ms: Vec<u64>,
    /// Kills of hosts that ran no slot (in `detection_ms` only).
    pub(crate) no_slot_kills: usize,
    /// Seeds whose kill was not detected or not healed by the end, or whose run failed.
    pub(crate) failures: Vec<String>,
}

/// The scenario for `seed`: `hosts` hosts under `profile`, one service of `replicas`
/// replicas, host `1 + seed % (hosts - 1)` killed (never the seed host, as in the real
/// runs) with its machine refusing its port (as the real runs' SIGKILL of a peer process
/// leaves it), no restart.
pub(crate) fn scenario_toml(
    profile: &str,
    hosts: usize,
    replicas: usize,
    start: &StartTime,
    seed: u64,
) -> String {
    let victim = 1 + seed % u64::try_from(hosts.saturating_sub(1).max(1)).unwrap_or(1);
    format!(
        r#"name = "calibrate-{profile}"
seed = {seed}
duration_s = {duration}
warmup_s = 10
profile = "{profile}"

[hosts]
count = {hosts}
cpu = 2
memory = "4G"

[[services]]
name = "calib"
replicas = {replicas}

# Loopback: well under a millisecond each way.
[network]
latency_ms = 0
jitter_ms = 1
loss = 0.0

[containers]
start_min_ms = {min}
start_max_ms = {max}

[[faults]]
kind = "kill"
at_s = {KILL_AT_S}
host = {victim}
# The real runs SIGKILL a peer process on a live host, which refuses its port.
refuses = true
"#,
        duration = KILL_AT_S + AFTER_KILL_S,
        min = start.start_min_ms,
        max = start.start_max_ms,
    )
}

/// Runs the scenario over seeds `1..=seeds`.
pub(crate) fn run(
    profile: &str,
    hosts: usize,
    replicas: usize,
    start: &StartTime,
    seeds: u64,
) -> Result<SimFigures> {
    let mut figures = SimFigures::default();
    for seed in 1..=seeds {
        let text = scenario_toml(profile, hosts, replicas, start, seed);
        let scenario = knit_sim::Scenario::from_toml(&text)
            .with_context(|| format!("the simulator refused the calibration scenario:\n{text}"))?;
        let report = match knit_sim::run(&scenario, Some(seed)) {
            Ok(report) => report,
            Err(e) => {
                figures.failures.push(format!("seed {seed}: {e}"));
                continue;
            }
        };
        let Some(kill) = report.kill_log.first() else {
            bail!("seed {seed}: the simulator logged no kill");
        };
        // A host that ran no slot "heals" at the kill: its heal time says nothing (the real
        // runs never lose such a host), so only its detection counts.
        match (kill.detection_ms, kill.heal_ms) {
            (Some(d), _) if kill.slots == 0 => {
                figures.detection_ms.push(d);
                figures.no_slot_kills += 1;
            }
            (Some(d), Some(h)) => {
                figures.detection_ms.push(d);
                figures.heal_ms.push(h);
            }
            (d, h) => figures.failures.push(format!(
                "seed {seed}: {} lost {} slots; detected {d:?} ms, healed {h:?} ms",
                kill.host, kill.slots
            )),
        }
        if !report.invariant_violations.is_empty() {
            figures.failures.push(format!(
                "seed {seed}: invariant violations: {:?}",
                report.invariant_violations
            ));
        }
    }
    Ok(figures)
}
