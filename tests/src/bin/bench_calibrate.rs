//! `bench-calibrate`: how close the simulator is to reality. For each timing profile it
//! runs host-loss trials on a real cluster of five release `knit` peers on loopback (one
//! `process` service of ten `sleep 600` replicas, no health check, a non-seed peer lost to
//! SIGKILL per trial), then the same scenario in `knit-sim` over many seeds, with the
//! simulated container start time set to a process start measured on this machine. It
//! prints detection and heal p50/p90 of both and the simulator's error against the real
//! p50 (goal: within 25%), after the run header, as markdown or (with `--format json`) as
//! one JSON object per line with the per-trial figures. It asserts nothing: a failed trial
//! is a line in the report.
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

use anyhow::Result;
use knit_tests::options::{self, Flags};
use knit_tests::report::{Cell, Format, Notes, Report, Samples, Table};
use serde_json::{Map, Value, json};

use crate::real::RealFigures;
use crate::sim::{SimFigures, StartTime};

const USAGE: &str = "usage: bench-calibrate [--trials N] [--profiles fast,lan] [--seeds N] [--peers N] [--replicas N] [--spawns N] [--format table|json]

  --trials N       real host-loss trials per profile (default 8)
  --profiles LIST  timing profiles, comma-separated: lan, wan, fast (default fast,lan)
  --seeds N        simulator runs (one kill each) per profile (default 50)
  --peers N        peers (and simulated hosts) (default 5)
  --replicas N     replicas of the service (default 10)
  --spawns N       process spawns timed for the simulated start time (default 40)

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
    format: Format,
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
            format: flags.format()?,
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
        println!("{}", options::help(USAGE));
        return Ok(());
    };
    let bin = knit_tests::use_release_knit()?;
    let out = Report::start("bench-calibrate", options.format, Some(&bin));
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
    print(&out, &options, &start, &rows);
    Ok(())
}

/// `(sim - real) / real` of the p50s, as a fraction.
fn error(real: Option<u64>, sim: Option<u64>) -> Option<f64> {
    let (real, sim) = (real?, sim?);
    // Milliseconds far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    (real > 0).then(|| (sim as f64 - real as f64) / real as f64)
}

/// An error against the goal: `+12%`, marked `✗` when outside it.
fn percent(e: Option<f64>) -> Cell {
    e.map_or_else(Cell::missing, |e| {
        let mark = if e.abs() <= GOAL { "" } else { " ✗" };
        Cell::figure(format!("{:+.0}%{mark}", e * 100.0), e)
    })
}

/// A p50 / p90 pair, in seconds.
fn pair(v: &Samples) -> Cell {
    let (p50, p90) = (Cell::secs(v.p50()), Cell::secs(v.p90()));
    Cell::figure(
        format!("{} / {}", p50.shown(), p90.shown()),
        json!({ "p50": p50.value(), "p90": p90.value() }),
    )
}

/// One profile's samples in ms.
struct Sampled {
    real_detect: Samples,
    sim_detect: Samples,
    real_heal: Samples,
    sim_heal: Samples,
    /// `heal - detection`, trial by trial (real, then sim).
    real_gap: Samples,
    sim_gap: Samples,
    /// Detection by the first survivor (real only).
    real_first: Samples,
}

impl Sampled {
    fn of(row: &Row) -> Self {
        let gap = |heal: &[u64], detection: &[u64]| {
            // The two lists are index-aligned.
            heal.iter()
                .zip(detection)
                .map(|(h, d)| h.saturating_sub(*d))
                .collect::<Samples>()
        };
        let real_detect: Vec<u64> = row.real.heals.iter().map(|h| h.detect_last_ms).collect();
        let real_heal: Vec<u64> = row.real.heals.iter().map(|h| h.heal_ms).collect();
        Self {
            real_gap: gap(&real_heal, &real_detect),
            sim_gap: gap(&row.sim.heal_ms, &row.sim.detection_ms),
            real_first: row.real.heals.iter().map(|h| h.detect_first_ms).collect(),
            real_detect: Samples::new(real_detect),
            real_heal: Samples::new(real_heal),
            sim_detect: Samples::new(row.sim.detection_ms.iter().copied()),
            sim_heal: Samples::new(row.sim.heal_ms.iter().copied()),
        }
    }
}

/// The table, one row per profile (in JSON with the per-trial figures), then the notes.
fn print(out: &Report, options: &Options, start: &StartTime, rows: &[Row]) {
    let mut table = Table::new(&[
        "profile",
        "real detect p50 / p90 (s)",
        "sim detect p50 / p90 (s)",
        "detect error (p50)",
        "real heal p50 / p90 (s)",
        "sim heal p50 / p90 (s)",
        "heal error (p50)",
        "real trials ok",
        "sim seeds detected / healed",
    ]);
    for row in rows {
        let s = Sampled::of(row);
        let (detected, healed) = (s.sim_detect.count(), s.sim_heal.count());
        table.row_with(
            vec![
                Cell::text(&row.profile),
                pair(&s.real_detect),
                pair(&s.sim_detect),
                percent(error(s.real_detect.p50(), s.sim_detect.p50())),
                pair(&s.real_heal),
                pair(&s.sim_heal),
                percent(error(s.real_heal.p50(), s.sim_heal.p50())),
                Cell::ratio(row.real.heals.len(), options.trials),
                Cell::figure(
                    format!("{detected} / {healed} of {}", options.seeds),
                    json!({ "detected": detected, "healed": healed, "of": options.seeds }),
                ),
            ],
            details(options, row, &s),
        );
    }
    out.table("calibrate", &table);
    out.text(&format!(
        "\n{} peers / simulated hosts, {} replicas of `sleep 600` (process driver, no health check). \
         Error = (sim − real) / real of the p50; goal ±{:.0}% (✗ = outside).",
        options.peers,
        options.replicas,
        GOAL * 100.0
    ));
    let mut start_json = Map::new();
    start_json.insert("start_time".into(), json!(start));
    out.text_with(
        &format!(
            "Simulated container start: uniform {}..={} ms = p10..p90 of {} timed spawns of `sleep 600` \
             (fork+exec, own process group; p50 {} µs, max {} µs).",
            start.start_min_ms, start.start_max_ms, start.samples, start.p50_us, start.max_us
        ),
        &start_json,
    );
    let mut notes = Notes::new();
    for row in rows {
        let s = Sampled::of(row);
        notes.add(format!(
            "{}: heal − detection p50 (agent reaction + start): real {} s, sim {} s; \
             detection by the first survivor p50: real {} s; sim kills of a host without \
             slots (detection only): {}",
            row.profile,
            Cell::secs(s.real_gap.p50()).shown(),
            Cell::secs(s.sim_gap.p50()).shown(),
            Cell::secs(s.real_first.p50()).shown(),
            row.sim.no_slot_kills,
        ));
    }
    for row in rows {
        for failure in &row.real.failures {
            notes.add(format!("{} real: {failure}", row.profile));
        }
        for failure in &row.sim.failures {
            notes.add(format!("{} sim: {failure}", row.profile));
        }
    }
    // The notes follow the paragraph above without a blank line, as a list.
    out.text(notes.markdown().trim_start());
}

/// What a JSON row carries beside the table's cells: the run's settings, the per-trial
/// figures, the full distributions and the failures.
fn details(options: &Options, row: &Row, s: &Sampled) -> Map<String, Value> {
    let fields = json!({
        "peers": options.peers,
        "replicas": options.replicas,
        "goal_error": GOAL,
        "real": {
            "trials": options.trials,
            "detection_ms": s.real_detect.summary_json(),
            "heal_ms": s.real_heal.summary_json(),
            "per_trial": row.real.heals,
            "failures": row.real.failures,
        },
        "sim": {
            "seeds": options.seeds,
            "detection_ms": s.sim_detect.summary_json(),
            "heal_ms": s.sim_heal.summary_json(),
            "kills_of_hosts_without_slots": row.sim.no_slot_kills,
            "failures": row.sim.failures,
        },
        "heal_minus_detection_p50_ms": {
            "real": s.real_gap.p50(),
            "sim": s.sim_gap.p50(),
        },
        "detect_first_p50_ms": s.real_first.p50(),
    });
    match fields {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
