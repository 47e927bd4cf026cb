//! `bench-false-downs`: the false-positive benchmark. Real peers, each in a network
//! namespace of its own, every link losing a share of its packets (`iptables` statistic
//! match) and one peer starved of CPU (a CPU cgroup quota); nobody dies, so every
//! `suspect` and `down` any peer logs is false. The starved peer shares its quota with a
//! busy loop, so its timers fire late (an idle peer alone stays far under any quota).
//! Prints the run header, a line per profile as it ends, then a table with a row per
//! profile (markdown, or JSON with `--format json`). It asserts nothing: it reports.
//! Needs root.
//!
//! ```text
//! cargo run --release -p knit-tests --bin bench-false-downs -- [--peers 10] [--minutes 10] [--loss 5] [--cpu-percent 10] [--profiles fast,lan] [--format table|json]
//! ```
//!
//! It builds and runs the release `knit` (or `$KNIT_BIN` when set).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use knit_tests::Cluster;
use knit_tests::options::{self, Flags};
use knit_tests::report::{Cell, Report, Table};

const USAGE: &str = "usage: bench-false-downs [--peers N] [--minutes M] [--loss PERCENT] [--cpu-percent P] [--profiles LIST]

  --peers N          peers, each in its own network namespace (default 10)
  --minutes M        how long the faults last, per profile (default 10)
  --loss PERCENT     packets every host drops from the others (default 5)
  --cpu-percent P    the CPU quota of the starved peer, in percent of one core (default 10)
  --profiles LIST    timing profiles, comma-separated (default fast,lan)

Needs root. Uses $KNIT_BIN if set, else builds the release knit first.";

/// A CPU cgroup (v1 `cpu` controller or v2) that holds one process to a quota, shared with
/// a busy loop, so that the process waits for the CPU whenever it wakes.
struct Starved {
    dir: PathBuf,
    busy: std::process::Child,
}

impl Starved {
    fn new(pid: u32, percent: u64) -> Result<Self> {
        let name = format!("knit-starved-{}", std::process::id());
        let v1 = PathBuf::from("/sys/fs/cgroup/cpu");
        let dir = if v1.join("cpu.cfs_quota_us").exists() {
            let dir = v1.join(&name);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("cpu.cfs_period_us"), "100000")?;
            std::fs::write(dir.join("cpu.cfs_quota_us"), (percent * 1000).to_string())?;
            dir
        } else {
            let dir = PathBuf::from("/sys/fs/cgroup").join(&name);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("cpu.max"), format!("{} 100000", percent * 1000))
                .context("cpu.max (is the cpu controller enabled?)")?;
            dir
        };
        let busy = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()?;
        for task in [pid, busy.id()] {
            std::fs::write(dir.join("cgroup.procs"), task.to_string())
                .with_context(|| format!("moving {task} into {}", dir.display()))?;
        }
        Ok(Self { dir, busy })
    }
}

impl Drop for Starved {
    fn drop(&mut self) {
        let _ = self.busy.kill();
        let _ = self.busy.wait();
        // Its processes are gone by now (the cluster is dropped first).
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Lines of a peer's log (plain text: the peer writes no colours to a file) that report
/// `state` for a member.
fn count(log: &str, state: &str) -> usize {
    let state = format!("state={state}");
    log.lines()
        .filter(|l| l.contains(" member ") && l.contains(&state))
        .count()
}

fn main() -> Result<()> {
    let known = [
        "--peers",
        "--minutes",
        "--loss",
        "--cpu-percent",
        "--profiles",
    ];
    let Some(flags) = Flags::parse(std::env::args().skip(1), &known, USAGE)? else {
        println!("{}", options::help(USAGE));
        return Ok(());
    };
    let peers = flags.number("--peers", 10, 2..=60)?;
    let minutes = flags.number("--minutes", 10, 1..=600)?;
    let loss = flags.number("--loss", 5, 0..=90)?;
    let cpu = flags.number("--cpu-percent", 10, 1..=100)?;
    let profiles = flags.list(
        "--profiles",
        &["fast", "lan"],
        Some(&["lan", "wan", "fast"]),
    )?;
    let format = flags.format()?;
    if !knit_tests::is_root() {
        bail!("bench-false-downs needs root (network namespaces, iptables, cgroups)");
    }
    let bin = knit_tests::use_release_knit()?;
    let out = Report::start("bench-false-downs", format, Some(&bin));
    let mut table = Table::new(&[
        "profile",
        "peers",
        "loss",
        "starved peer",
        "minutes",
        "false suspects",
        "false downs",
    ]);
    for profile in &profiles {
        let mut cluster = Cluster::in_namespaces(peers, profile)?;
        let starved_peer = peers - 1;
        let pid = cluster.peers[starved_peer]
            .pid()
            .context("the starved peer runs")?;
        let starved = Starved::new(pid, u64::try_from(cpu)?)?;
        let before: Vec<(usize, usize)> = cluster
            .peers
            .iter()
            .map(|p| (count(&p.log(), "Suspect"), count(&p.log(), "Down")))
            .collect();
        cluster
            .net()
            .context("namespaces")?
            .loss(u32::try_from(loss)?)?;
        let began = Instant::now();
        let length = Duration::from_secs(60 * u64::try_from(minutes)?);
        while began.elapsed() < length {
            std::thread::sleep(Duration::from_secs(5));
            for (i, peer) in cluster.peers.iter_mut().enumerate() {
                if !peer.is_running() {
                    bail!("p{i} exited during the run: {}", peer.log_tail(20));
                }
            }
        }
        let (mut suspects, mut downs) = (0, 0);
        for (peer, (s0, d0)) in cluster.peers.iter().zip(&before) {
            let log = peer.log();
            suspects += count(&log, "Suspect") - s0;
            downs += count(&log, "Down") - d0;
        }
        let net = cluster.net().context("namespaces")?;
        let mut dropped = 0;
        for i in 0..peers {
            dropped += net.dropped(i)?;
        }
        net.heal()?;
        let healthy = cluster.wait_all_alive(Duration::from_secs(60)).is_ok();
        out.text(&format!(
            "{profile}: {suspects} false suspect(s), {downs} false down(s) over {minutes} min ({dropped} packets dropped); all alive after: {healthy}"
        ));
        table.row(vec![
            Cell::text(profile),
            Cell::count(peers),
            Cell::figure(format!("{loss}%"), loss),
            Cell::text(format!("1 at {cpu}% of a core")),
            Cell::count(minutes),
            Cell::count(suspects),
            Cell::count(downs),
        ]);
        // The peers first, so that the cgroup is empty when it is removed.
        drop(cluster);
        drop(starved);
    }
    out.text("");
    out.table("false-downs", &table);
    Ok(())
}
