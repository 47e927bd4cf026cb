//! `bench-calibrate`: how close the simulator is to reality. For each timing profile it
//! runs host-loss trials on a real cluster of five release `knit` peers on loopback (one
//! `process` service of ten `sleep 600` replicas, no health check, a non-seed peer lost to
//! SIGKILL per trial), then the same scenario in `knit-sim` over many seeds, with the
//! simulated container start time set to a process start measured on this machine. It
//! prints detection and heal p50/p90 of both and the simulator's error against the real
//! p50 (goal: within 25%). It asserts nothing: a failed trial is a line in the report.
//!
//! ```text
//! cargo run --release -p knit-tests --bin bench-calibrate -- [--trials 8] [--profiles fast,lan] [--seeds 50] [--format table|json]
//! ```
//!
//! It builds and runs the release `knit` (or `$KNIT_BIN` when set).

#[path = "bench_calibrate/real.rs"]
mod real;
#[path = "bench_calibrate/sim.rs"]
mod sim;

use std::fmt::Write as _;

use anyhow::Result;
use knit_tests::options::Flags;
use knit_tests::percentile;
use serde_json::json;

use crate::real::RealFigures;
use crate::sim::{SimFigures, StartTime};

const USAGE: &str = "usage: bench-calibrate [--trials N] [--profiles fast,lan] [--seeds N] [--peers N] [--replicas N] [--spawns N] [--format table|json]

  --trials N       real host-loss trials per profile (default 8)
  --profiles LIST  timing profiles, comma-separated: lan, wan, fast (default fast,lan)
  --seeds N        simulator runs (one kill each) per profile (default 50)
  --peers N        peers (and simulated hosts) (default 5)
  --replicas N     replicas of the service (default 10)
  --spawns N       process spawns timed for the simulated start time (default 40)
  --format F       table or json (default table)

Uses $KNIT_BIN if set, else builds the release knit first.";

/// The goal: the simulator's p50 within this fraction of the real p50.
const GOAL: f64 = 0.25;

/// What the command line asks for.
#[derive(Debug, Clone)]
struct Options {
    trials: usize,
    profiles: Vec<String>,
    seeds: usize,
    peers: usize,
    replicas: usize,
    spawns: usize,
    json: bool,
}

impl Options {
    /// The options, or `None` when `--help` was asked for.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Self>> {
        let known = [
            "--trials",
            "--profiles",
            "--seeds",
            "--peers",
            "--replicas",
            "--spawns",
            "--format",
        ];
        let Some(flags) = Flags::parse(args, &known, USAGE)? else {
            return Ok(None);
        };
        Ok(Some(Self {
            trials: flags.number("--trials", 8, 1..=1_000)?,
            profiles: flags.list(
                "--profiles",
                &["fast", "lan"],
                Some(&["lan", "wan", "fast"]),
            )?,
            seeds: flags.number("--seeds", 50, 1..=10_000)?,
            peers: flags.number("--peers", 5, 2..=50)?,
            replicas: flags.number("--replicas", 10, 1..=100)?,
            spawns: flags.number("--spawns", 40, 5..=10_000)?,
            json: flags.choice("--format", "table", &["table", "json"])? == "json",
        }))
    }
}

/// One profile's figures, real and simulated.
struct Row {
    profile: String,
    real: RealFigures,
    sim: SimFigures,
}

fn main() -> Result<()> {
    let Some(options) = Options::parse(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    let bin = knit_tests::use_release_knit()?;
    eprintln!("knit: {}", bin.display());
    let start = sim::measure_start(options.spawns)?;
    eprintln!(
        "process start (fork+exec of sleep, {} spawns): p10 {} µs, p50 {} µs, p90 {} µs, max {} µs -> simulated start uniform {}..={} ms",
        start.samples,
        start.p10_us,
        start.p50_us,
        start.p90_us,
        start.max_us,
        start.start_min_ms,
        start.start_max_ms
    );
    let mut rows = Vec::new();
    for profile in &options.profiles {
        eprintln!("{} peers, profile {profile}, real cluster:", options.peers);
        let real = real::run(options.peers, profile, options.replicas, options.trials);
        eprintln!("profile {profile}, simulator, {} seeds", options.seeds);
        let seeds = u64::try_from(options.seeds)?;
        let sim = sim::run(profile, options.peers, options.replicas, &start, seeds)?;
        rows.push(Row {
            profile: profile.clone(),
            real,
            sim,
        });
    }
    if options.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report_json(&options, &start, &rows))?
        );
    } else {
        println!("{}", report_table(&options, &start, &rows));
    }
    Ok(())
}

/// `(sim - real) / real` of the p50s, as a fraction.
fn error(real: Option<u64>, sim: Option<u64>) -> Option<f64> {
    let (real, sim) = (real?, sim?);
    // Milliseconds far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    (real > 0).then(|| (sim as f64 - real as f64) / real as f64)
}

fn secs(ms: Option<u64>) -> String {
    // Milliseconds far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    ms.map_or_else(|| "–".to_owned(), |ms| format!("{:.2}", ms as f64 / 1000.0))
}

fn percent(e: Option<f64>) -> String {
    e.map_or_else(
        || "–".to_owned(),
        |e| {
            let mark = if e.abs() <= GOAL { "" } else { " ✗" };
            format!("{:+.0}%{mark}", e * 100.0)
        },
    )
}

/// Per profile: (real detection, sim detection, real heal, sim heal) samples in ms.
fn samples(row: &Row) -> [Vec<u64>; 4] {
    [
        row.real.heals.iter().map(|h| h.detect_last_ms).collect(),
        row.sim.detection_ms.clone(),
        row.real.heals.iter().map(|h| h.heal_ms).collect(),
        row.sim.heal_ms.clone(),
    ]
}

fn report_table(options: &Options, start: &StartTime, rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| profile | real detect p50 / p90 (s) | sim detect p50 / p90 (s) | detect error (p50) \
         | real heal p50 / p90 (s) | sim heal p50 / p90 (s) | heal error (p50) | real trials ok | sim seeds detected / healed |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in rows {
        let [rd, sd, rh, sh] = samples(row);
        let pair = |v: &[u64]| {
            format!(
                "{} / {}",
                secs(percentile(v, 0.5)),
                secs(percentile(v, 0.9))
            )
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {}/{} | {} / {} of {} |",
            row.profile,
            pair(&rd),
            pair(&sd),
            percent(error(percentile(&rd, 0.5), percentile(&sd, 0.5))),
            pair(&rh),
            pair(&sh),
            percent(error(percentile(&rh, 0.5), percentile(&sh, 0.5))),
            row.real.heals.len(),
            options.trials,
            row.sim.detection_ms.len(),
            row.sim.heal_ms.len(),
            options.seeds,
        );
    }
    let _ = writeln!(
        out,
        "\n{} peers / simulated hosts, {} replicas of `sleep 600` (process driver, no health check). \
         Error = (sim − real) / real of the p50; goal ±{:.0}% (✗ = outside).",
        options.peers,
        options.replicas,
        GOAL * 100.0
    );
    let _ = writeln!(
        out,
        "Simulated container start: uniform {}..={} ms = p10..p90 of {} timed spawns of `sleep 600` \
         (fork+exec, own process group; p50 {} µs, max {} µs).",
        start.start_min_ms, start.start_max_ms, start.samples, start.p50_us, start.max_us
    );
    for row in rows {
        let [rd, sd, rh, sh] = samples(row);
        let _ = writeln!(
            out,
            "- {}: heal − detection p50 (agent reaction + start): real {} s, sim {} s; \
             detection by the first survivor p50: real {} s; sim kills of a host without \
             slots (detection only): {}",
            row.profile,
            secs(gap_p50(&rh, &rd)),
            secs(gap_p50(&sh, &sd)),
            secs(percentile(
                &row.real
                    .heals
                    .iter()
                    .map(|h| h.detect_first_ms)
                    .collect::<Vec<_>>(),
                0.5
            )),
            row.sim.no_slot_kills,
        );
    }
    for row in rows {
        for failure in &row.real.failures {
            let _ = writeln!(out, "- {} real: {failure}", row.profile);
        }
        for failure in &row.sim.failures {
            let _ = writeln!(out, "- {} sim: {failure}", row.profile);
        }
    }
    out
}

/// The p50 of `heal - detection`, trial by trial (the two lists are index-aligned).
fn gap_p50(heal: &[u64], detection: &[u64]) -> Option<u64> {
    let gaps: Vec<u64> = heal
        .iter()
        .zip(detection)
        .map(|(h, d)| h.saturating_sub(*d))
        .collect();
    percentile(&gaps, 0.5)
}

fn report_json(options: &Options, start: &StartTime, rows: &[Row]) -> serde_json::Value {
    let dist = |v: &[u64]| {
        json!({
            "count": v.len(),
            "p50_ms": percentile(v, 0.5),
            "p90_ms": percentile(v, 0.9),
            "max_ms": v.iter().max(),
        })
    };
    let profiles: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let [rd, sd, rh, sh] = samples(row);
            json!({
                "profile": row.profile,
                "real": {
                    "trials": options.trials,
                    "detection": dist(&rd),
                    "heal": dist(&rh),
                    "per_trial": row.real.heals,
                    "failures": row.real.failures,
                },
                "sim": {
                    "seeds": options.seeds,
                    "detection": dist(&sd),
                    "heal": dist(&sh),
                    "kills_of_hosts_without_slots": row.sim.no_slot_kills,
                    "failures": row.sim.failures,
                },
                "detection_error_p50": error(percentile(&rd, 0.5), percentile(&sd, 0.5)),
                "heal_error_p50": error(percentile(&rh, 0.5), percentile(&sh, 0.5)),
                "heal_minus_detection_p50_ms": {
                    "real": gap_p50(&rh, &rd),
                    "sim": gap_p50(&sh, &sd),
                },
            })
        })
        .collect();
    json!({
        "peers": options.peers,
        "replicas": options.replicas,
        "goal_error": GOAL,
        "start_time": start,
        "profiles": profiles,
    })
}
