//! `bench-docker-idle`: what one idle `knit` peer costs the Docker engine. It starts one
//! peer, runs `--replicas` containers of the local test image (an idle HTTP server each)
//! under it, lets them settle,
//! and then measures, over `--window-secs`, the CPU time of `dockerd` and of the peer, in
//! percent of one core. It prints the run header and a table (markdown, or JSON rows with
//! `--format json`). It asserts nothing.
//!
//! ```text
//! cargo run --release -p knit-tests --bin bench-docker-idle -- [--replicas 20] [--window-secs 30] [--format table|json]
//! ```
//!
//! It builds and runs the release `knit` (or `$KNIT_BIN` when set), so that two builds can
//! be compared on one machine, one after the other.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use knit_tests::options::{self, Flags};
use knit_tests::report::{Cell, Report, Table};
use knit_tests::{Cluster, images, wait_until};

const USAGE: &str = "usage: bench-docker-idle [--replicas N] [--window-secs S] [--healthcheck H]

  --replicas N     containers run by the peer (default 20)
  --window-secs S  length of the measured idle window (default 30)
  --healthcheck H  image: the test image with its HEALTHCHECK (an exec a second in each
                   container, which dockerd pays for); none: a copy built here with
                   HEALTHCHECK NONE, so that any knit can run it (default)

Needs a Docker engine and a static busybox for the test image.
Uses $KNIT_BIN if set, else builds the release knit first.";

/// User plus system CPU time of `pid` so far, in clock ticks (USER_HZ = 100).
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("no process {pid}"))?;
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 2..])
        .context("unreadable /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .context("short /proc stat")?
            .parse()
            .context("unreadable /proc stat field")
    };
    Ok(field(11)? + field(12)?)
}

/// The pid of the running `dockerd`.
fn dockerd_pid() -> Result<u32> {
    for entry in std::fs::read_dir("/proc")?.filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "dockerd" {
            return Ok(pid);
        }
    }
    bail!("no dockerd process on this host")
}

fn main() -> Result<()> {
    let Some(flags) = Flags::parse(
        std::env::args().skip(1),
        &["--replicas", "--window-secs", "--healthcheck"],
        USAGE,
    )?
    else {
        println!("{}", options::help(USAGE));
        return Ok(());
    };
    let replicas = flags.number("--replicas", 20, 1..=200)?;
    let window = Duration::from_secs(u64::try_from(flags.number(
        "--window-secs",
        30,
        1..=3600,
    )?)?);
    let healthcheck = flags.choice("--healthcheck", "none", &["image", "none"])?;
    let format = flags.format()?;
    let bin = knit_tests::use_release_knit()?;
    let out = Report::start("bench-docker-idle", format, Some(&bin));
    let image = images::busybox_image()?.context(
        "no static busybox to build the test image from: apt-get install busybox-static",
    )?;
    let dockerd = dockerd_pid()?;
    eprintln!("dockerd pid {dockerd}");

    let cluster = Cluster::start(1, "fast")?;
    let peer = &cluster.peers[0];
    let name = format!("idle{}", std::process::id());
    let count = replicas.to_string();
    let image = if healthcheck == "none" {
        without_healthcheck(&image)?
    } else {
        image
    };
    peer.cli_ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        &name,
        "--replicas",
        &count,
        &image,
    ])?;
    let result = measure(&cluster, &name, replicas, dockerd, window);
    let _ = peer.cli(&["service", "rm", &name]);
    let _ = wait_until(Duration::from_secs(60), "the containers removed", || {
        let out = std::process::Command::new("docker")
            .args([
                "ps",
                "-q",
                "--filter",
                &format!("label=knit.service={name}"),
            ])
            .output()
            .ok()?;
        out.stdout.is_empty().then_some(())
    });
    knit_tests::remove_containers(&format!("knit.service={name}"));
    let (dockerd_pct, knit_pct) = result?;
    let cpu = |pct: f64| Cell::figure(format!("{pct:.1}%"), pct);
    let mut table = Table::new(&[
        "replicas",
        "image HEALTHCHECK",
        "window",
        "dockerd CPU",
        "knit CPU",
    ]);
    table.row(vec![
        Cell::count(replicas),
        Cell::text(healthcheck),
        Cell::figure(format!("{} s", window.as_secs()), window.as_secs()),
        cpu(dockerd_pct),
        cpu(knit_pct),
    ]);
    out.table("docker-idle", &table);
    Ok(())
}

/// `image` with its HEALTHCHECK switched off, built locally (no pull).
fn without_healthcheck(image: &str) -> Result<String> {
    use std::io::Write;
    let tag = "knit-test/busybox-no-healthcheck:1".to_owned();
    let mut child = std::process::Command::new("docker")
        .args(["build", "-q", "-t", &tag, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("cannot run docker build")?;
    child
        .stdin
        .take()
        .context("no stdin for docker build")?
        .write_all(format!("FROM {image}\nHEALTHCHECK NONE\n").as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!("docker build of {tag} failed ({status})");
    }
    Ok(tag)
}

/// Waits for `replicas` running containers, lets them settle, then measures the window.
fn measure(
    cluster: &Cluster,
    name: &str,
    replicas: usize,
    dockerd: u32,
    window: Duration,
) -> Result<(f64, f64)> {
    let peer = &cluster.peers[0];
    wait_until(Duration::from_secs(120), "every replica running", || {
        let tasks: Vec<serde_json::Value> = peer.cli_json(&["service", "ps", name]).ok()?;
        let up = tasks.iter().filter(|t| t["state"] == "running").count();
        (up == replicas).then_some(())
    })?;
    std::thread::sleep(Duration::from_secs(10));
    let knit = peer.pid().context("the peer is not running")?;
    let (d0, k0, t0) = (cpu_ticks(dockerd)?, cpu_ticks(knit)?, Instant::now());
    std::thread::sleep(window);
    let (d1, k1, elapsed) = (cpu_ticks(dockerd)?, cpu_ticks(knit)?, t0.elapsed());
    // Ticks of 10 ms over the elapsed seconds: percent of one core.
    #[allow(clippy::cast_precision_loss)]
    let pct = |ticks: u64| ticks as f64 / elapsed.as_secs_f64();
    Ok((pct(d1 - d0), pct(k1 - k0)))
}
