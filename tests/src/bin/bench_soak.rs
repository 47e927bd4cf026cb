//! `bench-soak`: a large cluster over a long run. It starts real `knit` peers on loopback,
//! one at a time (each once the seed lists the one before alive), waits until a few fixed
//! observers see every peer alive, measures each peer's idle CPU and memory over a quiet
//! window, then for the rest of the run SIGKILLs a random peer (never the seed, never an
//! observer) every few seconds, times how long each observer takes to list it `down` (by
//! the observer's own stamp), restarts it on its data dir and waits for the observers to
//! list it `alive` again. Between kills it samples the observers and a rotating few other
//! peers for false alarms: a member not killed in that window listed `suspect`, `down` or
//! `left`, and the observers' `knit_members_suspected` while nobody is down. It prints the
//! run header and three tables (markdown, or JSON rows with `--format json`). It asserts
//! nothing.
//!
//! ```text
//! cargo run --release -p knit-tests --bin bench-soak -- [--peers 100] [--minutes 10] [--kill-every 60]
//! ```
//!
//! It builds and runs the release `knit` (or `$KNIT_BIN` when set).

#[path = "bench_soak/report.rs"]
mod report;
#[path = "bench_soak/scenario.rs"]
mod scenario;
#[path = "bench_soak/watch.rs"]
mod watch;

use std::time::Duration;

use anyhow::Result;
use knit_tests::options::{self, Flags};
use knit_tests::report::Report;

use crate::scenario::Setup;

const USAGE: &str = "usage: bench-soak [--peers N] [--minutes M] [--kill-every S] [--observers N] [--rotate N] [--sample-secs S] [--profile P] [--settle-secs S] [--window-secs S] [--seed N]

  --peers N        peers, on loopback (default 100)
  --minutes M      how long peers are killed for, after the quiet window (default 10)
  --kill-every S   seconds between two kills (default 60)
  --observers N    fixed peers that time every detection, the seed first (default 5)
  --rotate N       other peers whose member list each sample reads, in turn (default 5)
  --sample-secs S  seconds between two samples for false alarms (default 5)
  --profile P      timing profile of every peer (default lan)
  --settle-secs S  wait after the observers see every peer alive (default 30)
  --window-secs S  the quiet window for idle CPU and memory (default 30)
  --seed N         seed of the choice of victims (default: from the clock)

Uses $KNIT_BIN if set, else builds the release knit first.";

/// The options, or `None` when `--help` was asked for.
fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<(Setup, Flags)>> {
    let known = [
        "--peers",
        "--minutes",
        "--kill-every",
        "--observers",
        "--rotate",
        "--sample-secs",
        "--profile",
        "--settle-secs",
        "--window-secs",
        "--seed",
    ];
    let Some(flags) = Flags::parse(args, &known, USAGE)? else {
        return Ok(None);
    };
    let secs = |flag: &str, default: usize, min: usize| -> Result<Duration> {
        let n = flags.number(flag, default, min..=36_000)?;
        Ok(Duration::from_secs(u64::try_from(n)?))
    };
    let clock_seed = u64::from(std::process::id()) ^ knit_tests::wall_ms();
    let setup = Setup {
        // The harness gives peers addresses up to 127.x.y.250.
        peers: flags.number("--peers", 100, 3..=250)?,
        profile: flags.choice("--profile", "lan", &["lan", "wan", "fast"])?,
        duration: Duration::from_secs(60 * u64::try_from(flags.number("--minutes", 10, 0..=600)?)?),
        kill_every: secs("--kill-every", 60, 5)?,
        observers: flags.number("--observers", 5, 1..=20)?,
        rotate: flags.number("--rotate", 5, 0..=250)?,
        sample_every: secs("--sample-secs", 5, 1)?,
        settle: secs("--settle-secs", 30, 0)?,
        window: secs("--window-secs", 30, 1)?,
        seed: flags.parsed("--seed", clock_seed, |v| Ok(v.trim().parse::<u64>()?))?,
    };
    Ok(Some((setup, flags)))
}

fn main() -> Result<()> {
    let Some((setup, flags)) = parse(std::env::args().skip(1))? else {
        println!("{}", options::help(USAGE));
        return Ok(());
    };
    let bin = knit_tests::use_release_knit()?;
    let out = Report::start("bench-soak", flags.format()?, Some(&bin));
    eprintln!(
        "{} peers, profile {}, {} min of kills every {} s (seed {}):",
        setup.peers,
        setup.profile,
        setup.duration.as_secs() / 60,
        setup.kill_every.as_secs(),
        setup.seed
    );
    let figures = scenario::run(&setup);
    report::print(&out, &setup, &figures);
    Ok(())
}
