//! `bench-heal`: the healing benchmark. For each timing profile and driver it starts five
//! real `knit` peers on loopback, runs a service of ten replicas, and then, trial after
//! trial, loses the host that runs the most replicas (SIGKILL of its peer and of its
//! replicas) and measures how long until every slot runs healthy again on a live node,
//! split into failure detection (the victim seen `down`) and restart. Then it brings the
//! host back and waits for the placement to return before the next trial. It prints a
//! markdown table. It asserts nothing: a failed trial is a line in the report.
//!
//! ```text
//! cargo run --release -p knit-tests --bin bench-heal -- [--trials N] [--profiles lan,fast] [--drivers process,docker] [--replicas 10]
//! ```
//!
//! It builds and runs the release `knit` (or `$KNIT_BIN` when set). The `docker` driver is
//! skipped, with a message, where Docker or the test image cannot be had.

#[path = "bench_heal/report.rs"]
mod report;
#[path = "bench_heal/scenario.rs"]
mod scenario;
#[path = "bench_heal/service.rs"]
mod service;

use anyhow::{Context, Result, bail};

use crate::scenario::Setup;
use crate::service::Workload;

const USAGE: &str = "usage: bench-heal [--trials N] [--profiles lan,fast] [--drivers process,docker] [--replicas N] [--peers N]

  --trials N       host-loss rounds per configuration (default 10)
  --profiles LIST  timing profiles, comma-separated (default lan,fast)
  --drivers LIST   process and/or docker, comma-separated (default process,docker)
  --replicas N     replicas of the service (default 10)
  --peers N        peers in the cluster (default 5)

Uses $KNIT_BIN if set, else builds the release knit first.";

/// What the command line asks for.
#[derive(Debug, Clone)]
struct Options {
    trials: usize,
    profiles: Vec<String>,
    drivers: Vec<String>,
    replicas: usize,
    peers: usize,
}

impl Options {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Self> {
        let mut options = Self {
            trials: 10,
            profiles: vec!["lan".to_owned(), "fast".to_owned()],
            drivers: vec!["process".to_owned(), "docker".to_owned()],
            replicas: 10,
            peers: 5,
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
            let list = |v: &str| v.split(',').map(|p| p.trim().to_owned()).collect();
            match flag.as_str() {
                "--trials" => options.trials = number(&value)?,
                "--replicas" => options.replicas = number(&value)?,
                "--peers" => options.peers = number(&value)?,
                "--profiles" => options.profiles = list(&value),
                "--drivers" => options.drivers = list(&value),
                _ => bail!("unknown argument {flag}\n\n{USAGE}"),
            }
        }
        if !(2..=50).contains(&options.peers) {
            bail!("--peers: {} is outside 2..=50", options.peers);
        }
        if !(1..=100).contains(&options.replicas) {
            bail!("--replicas: {} is outside 1..=100", options.replicas);
        }
        if let Some(bad) = options
            .drivers
            .iter()
            .find(|d| !["process", "docker"].contains(&d.as_str()))
        {
            bail!("--drivers: {bad} is neither process nor docker");
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
    for profile in &options.profiles {
        for driver in &options.drivers {
            let setup = Setup {
                peers: options.peers,
                replicas: options.replicas,
                profile: profile.clone(),
                trials: options.trials,
            };
            eprintln!(
                "{} peers, profile {profile}, driver {driver}:",
                options.peers
            );
            let figures = match Workload::new(driver) {
                Ok(Some(workload)) => scenario::run(&setup, &workload),
                Ok(None) => scenario::Figures::skipped(format!("no Docker for driver {driver}")),
                Err(e) => scenario::Figures::skipped(format!("driver {driver}: {e:#}")),
            };
            results.push((setup, driver.clone(), figures));
        }
    }
    println!("{}", report::table(&results));
    Ok(())
}
