//! `bench-heal`: the healing benchmark. For each timing profile, driver and failure it
//! starts five real `knit` peers on loopback, runs a service of ten replicas, and then,
//! trial after trial, loses the host that runs the most replicas and measures how long
//! until every slot runs healthy again on a live node, split into failure detection (the
//! victim seen `down`) and restart. Then it brings the host back and waits for the
//! placement to return before the next trial. A host is lost by `kill` (SIGKILL of its
//! peer and of its replicas) or by `netcut` (iptables drops everything between its
//! address and the other peers', both ways, while the peer and its replicas keep running;
//! root needed). It prints the run header and a table (markdown, or JSON rows with
//! `--format json`). It asserts nothing: a failed trial is a line in the report.
//!
//! With `--swarm PATH` (PATH: the `swarm-heal.sh` script, which this repository does not
//! hold), each profile's knit trials are followed by Docker Swarm's, measured by that
//! script as a child process with as many nodes as peers, the same replicas, trials and
//! failures, `fast` beside Swarm's `--heartbeat 1s --restart-delay 0s` and `lan` beside
//! Swarm's defaults; a second table sets knit's heal p50/p90/max beside Swarm's, with the
//! ratio Swarm/knit. The Swarm part is skipped, with a message, where the script or what
//! it needs (root, dockerd, a static busybox on `PATH` or in `$BUSYBOX`) is missing.
//!
//! ```text
//! cargo run --release -p knit-tests --bin bench-heal -- [--trials N] [--profiles lan,fast] [--drivers process,docker] [--failures kill,netcut] [--replicas 10] [--swarm PATH] [--format table|json]
//! ```
//!
//! It builds and runs the release `knit` (or `$KNIT_BIN` when set). The `docker` driver is
//! skipped, with a message, where Docker or the test image cannot be had.

#[path = "bench_heal/phases.rs"]
mod phases;
#[path = "bench_heal/report.rs"]
mod report;
#[path = "bench_heal/scenario.rs"]
mod scenario;
#[path = "bench_heal/service.rs"]
mod service;
#[path = "bench_heal/swarm.rs"]
mod swarm;

use std::path::PathBuf;

use anyhow::Result;
use knit_tests::options::{self, Flags};
use knit_tests::report::{Format, Report};

use crate::scenario::{Failure, Setup};
use crate::service::Workload;
use crate::swarm::SwarmSetup;

const USAGE: &str = "usage: bench-heal [--trials N] [--profiles lan,fast] [--drivers process,docker] [--failures kill,netcut] [--replicas N] [--peers N] [--swarm PATH]

  --trials N       host-loss rounds per configuration (default 10)
  --profiles LIST  timing profiles, comma-separated (default lan,fast)
  --drivers LIST   process and/or docker, comma-separated (default process,docker)
  --failures LIST  how the host is lost, kill and/or netcut (default kill; netcut needs
                   root): kill = SIGKILL of its peer and replicas, netcut = iptables
                   drops its traffic to and from the other peers, everything keeps running
  --replicas N     replicas of the service (default 10)
  --peers N        peers in the cluster (default 5)
  --swarm PATH     after each profile's knit trials, run Docker Swarm's with the
                   swarm-heal.sh script at PATH (root, dockerd, a static busybox) and
                   print both side by side: fast beside --heartbeat 1s --restart-delay 0s,
                   lan beside Swarm's defaults

Uses $KNIT_BIN if set, else builds the release knit first.";

/// What the command line asks for.
#[derive(Debug, Clone)]
struct Options {
    trials: usize,
    profiles: Vec<String>,
    drivers: Vec<String>,
    failures: Vec<Failure>,
    replicas: usize,
    peers: usize,
    /// `swarm-heal.sh`, for the side-by-side part.
    swarm: Option<PathBuf>,
    format: Format,
}

impl Options {
    /// The options, or `None` when `--help` was asked for.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Self>> {
        let known = [
            "--trials",
            "--profiles",
            "--drivers",
            "--failures",
            "--replicas",
            "--peers",
            "--swarm",
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
            failures: flags
                .list("--failures", &["kill"], Some(&Failure::NAMES))?
                .iter()
                .filter_map(|name| Failure::from_name(name))
                .collect(),
            replicas: flags.number("--replicas", 10, 1..=100)?,
            peers: flags.number("--peers", 5, 2..=50)?,
            swarm: flags.parsed("--swarm", None, |path| Ok(Some(PathBuf::from(path))))?,
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
    let swarm = options
        .swarm
        .as_deref()
        .and_then(|script| match swarm::missing_needs(script) {
            Some(why) => {
                eprintln!("skipping Docker Swarm's part: {why}");
                None
            }
            None => Some(script.to_path_buf()),
        });
    let out = Report::start("bench-heal", options.format, Some(&bin));
    let mut results = Vec::new();
    let mut swarm_results = Vec::new();
    for profile in &options.profiles {
        for driver in &options.drivers {
            for &failure in &options.failures {
                let setup = Setup {
                    peers: options.peers,
                    replicas: options.replicas,
                    profile: profile.clone(),
                    trials: options.trials,
                    failure,
                };
                results.push((setup.clone(), driver.clone(), run_knit(&setup, driver)));
            }
        }
        if let Some(script) = &swarm {
            let setup = SwarmSetup {
                script: script.clone(),
                profile: profile.clone(),
                nodes: options.peers,
                replicas: options.replicas,
                trials: options.trials,
                failures: options.failures.clone(),
            };
            eprintln!("Docker Swarm, beside profile {profile}:");
            swarm_results.push((profile.clone(), swarm::run(&setup)));
        }
    }
    report::print(&out, &results);
    if let Some(script) = &options.swarm {
        let skipped = swarm
            .is_none()
            .then(|| swarm::missing_needs(script).unwrap_or_else(|| "not run".to_owned()));
        report::print_side_by_side(&out, &results, &swarm_results, skipped.as_deref());
    }
    Ok(())
}

/// knit's trials of one configuration.
fn run_knit(setup: &Setup, driver: &str) -> scenario::Figures {
    eprintln!(
        "{} peers, profile {}, driver {driver}, failure {}:",
        setup.peers,
        setup.profile,
        setup.failure.name()
    );
    if setup.failure == Failure::Netcut && !knit_tests::is_root() {
        return scenario::Figures::skipped("netcut needs root (iptables)".to_owned());
    }
    match Workload::new(driver) {
        Ok(Some(workload)) => scenario::run(setup, &workload),
        Ok(None) => scenario::Figures::skipped(format!("no Docker for driver {driver}")),
        Err(e) => scenario::Figures::skipped(format!("driver {driver}: {e:#}")),
    }
}
