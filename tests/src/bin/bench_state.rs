//! `bench-state`: the replicated-state benchmark. For each cluster size it starts real
//! `knit` peers on loopback and measures how long a service update written on one peer
//! takes to be read back from every peer, and how many bytes of membership gossip and of
//! anti-entropy each node moves per second, idle and under a steady stream of writes. It
//! prints the run header and two tables (markdown, or JSON rows with `--format json`). It
//! asserts nothing: a failed trial is a line in the report.
//!
//! ```text
//! cargo run --release -p knit-tests --bin bench-state -- [--sizes 5,20] [--trials 20] [--profile fast] [--format table|json]
//! ```
//!
//! It builds and runs the release `knit` (or `$KNIT_BIN` when set). The services it writes
//! have zero replicas, so that no agent starts anything and only the state moves.

#[path = "bench_state/report.rs"]
mod report;
#[path = "bench_state/scenario.rs"]
mod scenario;
#[path = "bench_state/traffic.rs"]
mod traffic;

use std::time::Duration;

use anyhow::Result;
use knit_tests::options::{self, Flags};
use knit_tests::report::{Format, Report};

use crate::scenario::Setup;

const USAGE: &str = "usage: bench-state [--sizes 5,20] [--trials N] [--profile P] [--window-secs S] [--writes-per-sec W]

  --sizes LIST        cluster sizes, comma-separated (default 5,20)
  --trials N          updates timed until every peer reads them (default 20)
  --profile P         timing profile of every peer (default fast)
  --window-secs S     length of the idle and the loaded traffic windows (default 15)
  --writes-per-sec W  writes per second in the loaded window (default 10)

Uses $KNIT_BIN if set, else builds the release knit first.";

/// What the command line asks for.
#[derive(Debug, Clone)]
struct Options {
    sizes: Vec<usize>,
    trials: usize,
    profile: String,
    window_secs: u64,
    writes_per_sec: u64,
    format: Format,
}

impl Options {
    /// The options, or `None` when `--help` was asked for.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Self>> {
        let known = [
            "--sizes",
            "--trials",
            "--profile",
            "--window-secs",
            "--writes-per-sec",
        ];
        let Some(flags) = Flags::parse(args, &known, USAGE)? else {
            return Ok(None);
        };
        Ok(Some(Self {
            sizes: flags.numbers("--sizes", &[5, 20], 2..=100)?,
            trials: flags.number("--trials", 20, 0..=usize::MAX)?,
            profile: flags.choice("--profile", "fast", &["lan", "wan", "fast"])?,
            window_secs: u64::try_from(flags.number("--window-secs", 15, 1..=usize::MAX)?)?,
            writes_per_sec: u64::try_from(flags.number("--writes-per-sec", 10, 1..=100)?)?,
            format: flags.format()?,
        }))
    }
}

fn main() -> Result<()> {
    let Some(options) = Options::parse(std::env::args().skip(1))? else {
        println!("{}", options::help(USAGE));
        return Ok(());
    };
    let bin = knit_tests::use_release_knit()?;
    let out = Report::start("bench-state", options.format, Some(&bin));
    let mut results = Vec::new();
    for &size in &options.sizes {
        let setup = Setup {
            size,
            profile: options.profile.clone(),
            trials: options.trials,
            window: Duration::from_secs(options.window_secs),
            writes_per_sec: options.writes_per_sec,
        };
        eprintln!("{size} peers, profile {}:", options.profile);
        let figures = scenario::run(&setup);
        results.push((setup, figures));
    }
    report::print(&out, &results);
    Ok(())
}
