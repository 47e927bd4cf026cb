//! `bench-detect`: the membership benchmark. For each cluster size and timing profile it
//! starts real `knit` peers on loopback and measures how long a `kill -9` takes to be seen
//! `down` by every survivor, how long a join and a rejoin take, the gossip an idle cluster
//! sends, and the peers' resident memory; then it prints a markdown table. It asserts
//! nothing: it reports, and a failed trial is a line in the report.
//!
//! ```text
//! cargo run --release -p knit-tests --bin bench-detect -- [--trials N] [--sizes 5,20] [--profiles lan,fast]
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

use anyhow::{Context, Result, bail};

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
}

impl Options {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Self> {
        let mut options = Self {
            trials: 10,
            sizes: vec![5, 20],
            profiles: vec!["lan".to_owned(), "fast".to_owned()],
            joins: 5,
            idle_secs: 10,
        };
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            if flag == "--help" || flag == "-h" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value\n\n{USAGE}"))?;
            let number = |v: &str| {
                v.trim()
                    .parse::<usize>()
                    .with_context(|| format!("{flag}: {v} is not a number"))
            };
            match flag.as_str() {
                "--trials" => options.trials = number(&value)?,
                "--joins" => options.joins = number(&value)?,
                "--idle-secs" => options.idle_secs = u64::try_from(number(&value)?)?,
                "--sizes" => options.sizes = value.split(',').map(number).collect::<Result<_>>()?,
                "--profiles" => {
                    options.profiles = value.split(',').map(|p| p.trim().to_owned()).collect()
                }
                _ => bail!("unknown argument {flag}\n\n{USAGE}"),
            }
        }
        if let Some(small) = options.sizes.iter().find(|&&n| !(2..=200).contains(&n)) {
            bail!(
                "--sizes: {small} is outside 2..=200 (a trial kills one peer and others must see it)"
            );
        }
        Ok(options)
    }
}

fn main() -> Result<()> {
    let options = Options::parse(std::env::args().skip(1))?;
    let bin = knit_tests::use_release_knit()?;
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    eprintln!("knit: {} ({cores} cores)", bin.display());
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
    println!("{}", report::table(&results));
    Ok(())
}
