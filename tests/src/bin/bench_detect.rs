//! `bench-detect`: the membership benchmark. For each cluster size and timing profile it
//! starts real `knit` peers on loopback and measures how long a `kill -9` takes to be seen
//! `down` by every survivor, how long a join and a rejoin take, the gossip an idle cluster
//! sends, and the peers' resident memory; then it prints the run header and a table
//! (markdown, or JSON rows with `--format json`). It asserts nothing: it reports, and a
//! failed trial is a line in the report.
//!
//! ```text
//! cargo run --release -p knit-tests --bin bench-detect -- [--trials N] [--sizes 5,20] [--profiles lan,fast] [--format table|json]
//! ```
//!
//! It builds and runs the release `knit` (or `$KNIT_BIN` when set).

#[path = "bench_detect/observe.rs"]
mod observe;
#[path = "bench_detect/report.rs"]
mod report;
#[path = "bench_detect/scenario.rs"]
mod scenario;

use std::time::Duration;

use anyhow::Result;
use knit_tests::options::{self, Flags};
use knit_tests::report::{Format, Report};

use crate::scenario::Setup;

const USAGE: &str = "usage: bench-detect [--trials N] [--sizes 5,20] [--profiles lan,fast] [--joins N] [--idle-secs S]

  --trials N      kill -9 / detect / restart rounds per configuration (default 10)
  --sizes LIST    cluster sizes, comma-separated (default 5,20)
  --profiles LIST timing profiles, comma-separated (default lan,fast)
  --joins N       new peers joined into each formed cluster (default 5)
  --idle-secs S   quiet window over which gossip bytes are counted (default 10)

Uses $KNIT_BIN if set, else builds the release knit first.";

/// What the command line asks for.
#[derive(Debug, Clone)]
struct Options {
    trials: usize,
    sizes: Vec<usize>,
    profiles: Vec<String>,
    joins: usize,
    idle_secs: u64,
    format: Format,
}

impl Options {
    /// The options, or `None` when `--help` was asked for.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Self>> {
        let known = [
            "--trials",
            "--sizes",
            "--profiles",
            "--joins",
            "--idle-secs",
        ];
        let Some(flags) = Flags::parse(args, &known, USAGE)? else {
            return Ok(None);
        };
        Ok(Some(Self {
            trials: flags.number("--trials", 10, 0..=usize::MAX)?,
            // A trial kills one peer and others must see it.
            sizes: flags.numbers("--sizes", &[5, 20], 2..=200)?,
            profiles: flags.list(
                "--profiles",
                &["lan", "fast"],
                Some(&["lan", "wan", "fast"]),
            )?,
            joins: flags.number("--joins", 5, 0..=usize::MAX)?,
            idle_secs: u64::try_from(flags.number("--idle-secs", 10, 0..=usize::MAX)?)?,
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
    let out = Report::start("bench-detect", options.format, Some(&bin));
    let mut results = Vec::new();
    for &size in &options.sizes {
        for profile in &options.profiles {
            let setup = Setup {
                size,
                profile: profile.clone(),
                trials: options.trials,
                joins: options.joins,
                idle: Duration::from_secs(options.idle_secs),
                settle: Duration::from_secs(5),
            };
            eprintln!("{size} peers, profile {profile}:");
            let figures = scenario::run(&setup);
            results.push((setup, figures));
        }
    }
    report::print(&out, &results);
    Ok(())
}
