//! `bench-heal`: the healing benchmark. For each timing profile and driver it starts five
//! real `knit` peers on loopback, runs a service of ten replicas, and then, trial after
//! trial, loses the host that runs the most replicas (SIGKILL of its peer and of its
//! replicas) and measures how long until every slot runs healthy again on a live node,
//! split into failure detection (the victim seen `down`) and restart. Then it brings the
//! host back and waits for the placement to return before the next trial. It prints the
//! run header and a table (markdown, or JSON rows with `--format json`). It asserts
//! nothing: a failed trial is a line in the report.
//!
//! ```text
//! cargo run --release -p knit-tests --bin bench-heal -- [--trials N] [--profiles lan,fast] [--drivers process,docker] [--replicas 10] [--format table|json]
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

use anyhow::Result;
use knit_tests::options::{self, Flags};
use knit_tests::report::{Format, Report};

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
    format: Format,
}

impl Options {
    /// The options, or `None` when `--help` was asked for.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Self>> {
        let known = [
            "--trials",
            "--profiles",
            "--drivers",
            "--replicas",
            "--peers",
        ];
        let Some(flags) = Flags::parse(args, &known, USAGE)? else {
            return Ok(None);
        };
        Ok(Some(Self {
            trials: flags.number("--trials", 10, 0..=10_000)?,
            profiles: flags.list(
                "--profiles",
                &["lan", "fast"],
                Some(&["lan", "wan", "fast"]),
            )?,
            drivers: flags.list(
                "--drivers",
                &["process", "docker"],
                Some(&["process", "docker"]),
            )?,
            replicas: flags.number("--replicas", 10, 1..=100)?,
            peers: flags.number("--peers", 5, 2..=50)?,
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
    let out = Report::start("bench-heal", options.format, Some(&bin));
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
    report::print(&out, &results);
    Ok(())
}
