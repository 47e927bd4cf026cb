//! `bench-ingress`: the ingress's cost. It starts 3 real `knit` peers (profile `fast`) on
//! loopback, runs a `process` service of 3 replicas that serve a tiny static file
//! (`busybox httpd`, else `python3 -m http.server`) on a published port, and drives HTTP
//! load with `wrk --latency` at (a) one replica directly, (b) the ingress of the peer
//! that runs that replica (the local-first path), and (c) the ingress of a peer without a
//! replica (the remote path; when placement puts a replica on every peer, one peer is
//! drained first). Then it prints the run header and a table (markdown, or JSON rows with
//! `--format json`). It asserts nothing: it reports.
//!
//! ```text
//! cargo run --release -p knit-tests --bin bench-ingress -- [--duration 10s] [--connections 32] [--format table|json]
//! ```
//!
//! It builds and runs the release `knit` (or `$KNIT_BIN` when set).

#[path = "bench_ingress/load.rs"]
mod load;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use knit_tests::options::{self, Flags};
use knit_tests::report::{Cell, Format, Notes, Report, Table};
use knit_tests::{Cluster, Peer, wait_until};
use serde::Deserialize;

use crate::load::{Figures, Tool};

const USAGE: &str =
    "usage: bench-ingress [--duration 10s] [--connections 32] [--threads 2] [--rounds 1]

  --duration D     load per measurement: 10s, 1500ms or seconds (default 10s)
  --connections N  concurrent connections (default 32)
  --threads N      wrk threads (default 2)
  --rounds N       times each path is measured, interleaved (default 1)

Uses $KNIT_BIN if set, else builds the release knit first. Needs wrk (installed with
apt-get if missing; else a built-in loop is used).";

const SERVICE: &str = "static";
const REPLICAS: usize = 3;
const PEERS: usize = 3;

/// What the command line asks for.
#[derive(Debug, Clone)]
struct Options {
    duration: Duration,
    connections: usize,
    threads: usize,
    rounds: usize,
    format: Format,
}

fn duration(value: &str) -> Result<Duration> {
    let v = value.trim();
    let parsed = if let Some(ms) = v.strip_suffix("ms") {
        ms.parse().map(Duration::from_millis)
    } else {
        v.strip_suffix('s')
            .unwrap_or(v)
            .parse()
            .map(Duration::from_secs)
    };
    parsed.with_context(|| format!("{value} is not a duration (10s, 1500ms)"))
}

impl Options {
    /// The options, or `None` when `--help` was asked for.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Self>> {
        let known = ["--duration", "--connections", "--threads", "--rounds"];
        let Some(flags) = Flags::parse(args, &known, USAGE)? else {
            return Ok(None);
        };
        let options = Self {
            duration: flags.parsed("--duration", Duration::from_secs(10), duration)?,
            connections: flags.number("--connections", 32, 1..=usize::MAX)?,
            threads: flags.number("--threads", 2, 0..=usize::MAX)?,
            rounds: flags.number("--rounds", 1, 1..=usize::MAX)?,
            format: flags.format()?,
        };
        if options.duration.is_zero() {
            bail!("--duration must be above 0\n\n{}", options::help(USAGE));
        }
        if options.duration > Duration::from_secs(600) {
            bail!("--duration: at most 600s\n\n{}", options::help(USAGE));
        }
        Ok(Some(options))
    }
}

/// A free TCP port on this machine (bound and released).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The folder with the static file the replicas serve; removed on drop.
struct Docroot(PathBuf);

impl Docroot {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("knit-bench-ingress-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // A tiny page: the benchmark measures the path, not the payload.
        std::fs::write(dir.join("index.html"), "<p>knit ingress benchmark</p>\n")?;
        Ok(Self(dir))
    }
}

impl Drop for Docroot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The shell command each replica runs, and what it is.
fn server(docroot: &Path) -> (String, &'static str) {
    let busybox = Command::new("busybox")
        .args(["httpd", "--help"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stderr).contains("Usage: httpd"));
    let dir = docroot.display();
    if busybox {
        (
            format!("exec busybox httpd -f -p $PORT -h {dir}"),
            "busybox httpd",
        )
    } else {
        (
            format!("cd {dir} && exec python3 -m http.server $PORT"),
            "python3 -m http.server",
        )
    }
}

/// One row of `service ps --format json`.
#[derive(Debug, Clone, Deserialize)]
struct Task {
    node_id: String,
    desired_state: String,
    state: String,
    health: String,
    host_port: Option<u16>,
}

impl Task {
    fn serving(&self) -> bool {
        self.desired_state == "running"
            && self.state == "running"
            && self.health == "healthy"
            && self.host_port.is_some()
    }
}

/// The tasks, once all replicas run healthy, none on `avoid`, and no hand-off is left.
fn converged(peer: &Peer, avoid: Option<&str>) -> Option<Vec<Task>> {
    let tasks: Vec<Task> = peer.cli_json(&["service", "ps", SERVICE]).ok()?;
    let live: Vec<Task> = tasks.into_iter().filter(|t| t.state != "lost").collect();
    let ok = live.len() == REPLICAS
        && live
            .iter()
            .all(|t| t.serving() && Some(t.node_id.as_str()) != avoid);
    ok.then_some(live)
}

/// Whether `GET /` on `addr` answers 200.
fn answers(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
    let mut head = [0u8; 12];
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok()
        && stream.read_exact(&mut head).is_ok()
        && &head[9..12] == b"200"
}

/// The sum of every sample of the counter `name` (all labels) in `/metrics` text.
fn counter_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        // Counters far below 2^52 and never negative.
        .map(|v| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let v = v as u64;
            v
        })
        .sum()
}

/// The ingress retries and failures counted so far by the peer whose `/metrics` is at `api`.
fn ingress_counters(api: SocketAddr) -> Option<(u64, u64)> {
    let text = knit_tests::http_get(api, "/metrics", Duration::from_secs(10)).ok()?;
    Some((
        counter_sum(&text, "knit_ingress_retries_total"),
        counter_sum(&text, "knit_ingress_failures_total"),
    ))
}

/// One measured path.
struct Target {
    label: String,
    addr: SocketAddr,
    /// The admin API of the peer whose ingress this is; `None` for a replica itself.
    api: Option<SocketAddr>,
}

/// One measurement.
struct Row {
    target: usize,
    round: usize,
    figures: Result<Figures>,
    /// Ingress retries and failures during the run.
    ingress: Option<(u64, u64)>,
}

struct Bench<'a> {
    options: &'a Options,
    tool: Tool,
    targets: Vec<Target>,
    rows: Vec<Row>,
}

impl Bench<'_> {
    fn add(&mut self, label: String, addr: SocketAddr, api: Option<SocketAddr>) -> Result<usize> {
        wait_until(
            Duration::from_secs(30),
            &format!("{label} ({addr}) to answer"),
            || answers(addr).then_some(()),
        )?;
        self.targets.push(Target { label, addr, api });
        Ok(self.targets.len() - 1)
    }

    fn measure(&mut self, target: usize, round: usize) {
        let t = &self.targets[target];
        eprintln!("round {round}: {} ({})…", t.label, t.addr);
        let before = t.api.and_then(ingress_counters);
        let figures = load::run(
            self.tool,
            t.addr,
            self.options.duration,
            self.options.connections,
            self.options.threads,
        );
        let after = t.api.and_then(ingress_counters);
        let ingress = before
            .zip(after)
            .map(|((r0, f0), (r1, f1))| (r1.saturating_sub(r0), f1.saturating_sub(f0)));
        match &figures {
            Ok(f) => eprintln!(
                "  {:.0} req/s, p50 {:?} ms, p99 {:?} ms, {} errors",
                f.per_second, f.p50_ms, f.p99_ms, f.errors
            ),
            Err(e) => eprintln!("  failed: {e:#}"),
        }
        self.rows.push(Row {
            target,
            round,
            figures,
            ingress,
        });
    }

    fn direct_rate(&self, round: usize) -> Option<f64> {
        self.rows
            .iter()
            .filter(|r| r.round == round && self.targets[r.target].api.is_none())
            .find_map(|r| r.figures.as_ref().ok().map(|f| f.per_second))
    }

    fn table(&self) -> Table {
        let mut table = Table::new(&[
            "path",
            "round",
            "requests/s",
            "p50 (ms)",
            "p99 (ms)",
            "requests",
            "errors",
            "ingress retries / failures",
            "ingress/direct (req/s)",
        ]);
        for row in &self.rows {
            let t = &self.targets[row.target];
            let (label, round) = (Cell::text(&t.label), Cell::count(row.round));
            let f = match &row.figures {
                Ok(f) => f,
                Err(e) => {
                    let why = format!("failed: {e:#}").replace(['\n', '|'], " ");
                    let mut cells = vec![label, round, Cell::text(why)];
                    cells.resize(9, Cell::blank());
                    table.row(cells);
                    continue;
                }
            };
            let ingress = match (t.api, row.ingress) {
                (None, _) => Cell::missing(),
                (Some(_), None) => Cell::figure("?", serde_json::Value::Null),
                (Some(_), Some((r, f))) => Cell::figure(
                    format!("{r} / {f}"),
                    serde_json::json!({ "retries": r, "failures": f }),
                ),
            };
            let ratio = if t.api.is_none() {
                Some(1.0)
            } else {
                self.direct_rate(row.round).map(|d| f.per_second / d)
            };
            table.row(vec![
                label,
                round,
                Cell::num(Some(f.per_second), 0),
                Cell::num(f.p50_ms, 2),
                Cell::num(f.p99_ms, 2),
                Cell::int(f.requests),
                Cell::int(f.errors),
                ingress,
                Cell::num(ratio, 2),
            ]);
        }
        table
    }
}

fn main() -> Result<()> {
    let Some(options) = Options::parse(std::env::args().skip(1))? else {
        println!("{}", options::help(USAGE));
        return Ok(());
    };
    let bin = knit_tests::use_release_knit()?;
    let out = Report::start("bench-ingress", options.format, Some(&bin));
    let tool = load::tool();
    eprintln!("load: {}", tool.describe());

    let docroot = Docroot::new()?;
    let (command, server_name) = server(&docroot.0);
    let cluster = Cluster::start(PEERS, "fast")?;
    let published = free_port()?;
    cluster.peers[0].cli_ok(&[
        "service",
        "create",
        "--name",
        SERVICE,
        "--driver",
        "process",
        "--replicas",
        &REPLICAS.to_string(),
        "-p",
        &format!("{published}:8080"),
        "--health-http",
        "/",
        "--health-interval",
        "300ms",
        "--",
        "sh",
        "-c",
        &command,
    ])?;
    let (tasks, took) = wait_until(
        Duration::from_secs(90),
        "3 running, healthy replicas",
        || converged(&cluster.peers[0], None),
    )?;
    eprintln!("{REPLICAS} replicas of {server_name} healthy in {took:.1?}");

    let ids: Vec<String> = cluster
        .peers
        .iter()
        .map(Peer::node_id)
        .collect::<Result<_>>()?;
    let index_of = |id: &str| ids.iter().position(|i| i == id);
    // The replica measured directly: one alone on its peer (so that the ingress of (b)
    // has exactly that local replica), p0's if it qualifies.
    let alone = |t: &&Task| tasks.iter().filter(|u| u.node_id == t.node_id).count() == 1;
    let chosen = tasks
        .iter()
        .filter(alone)
        .find(|t| index_of(&t.node_id) == Some(0))
        .or_else(|| tasks.iter().find(alone))
        .unwrap_or(&tasks[0]);
    let local = index_of(&chosen.node_id).context("the replica's node is not a peer")?;
    let host_port = chosen.host_port.context("no host port")?;
    let spread: Vec<usize> = tasks.iter().filter_map(|t| index_of(&t.node_id)).collect();
    let bare = (0..PEERS).find(|i| !spread.contains(i));

    let mut bench = Bench {
        options: &options,
        tool,
        targets: Vec::new(),
        rows: Vec::new(),
    };
    let mut notes = Notes::new();
    notes.add(format!(
        "replicas on {}: {server_name}, which closes every connection after one answer, \
         so every request is a new TCP connection (and, through an ingress, a new upstream one)",
        spread
            .iter()
            .map(|&i| cluster.peers[i].name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let on_local = spread.iter().filter(|&&i| i == local).count();
    if on_local > 1 {
        notes.add(format!(
            "no peer runs a single replica: the ingress of (b) shares its load over {on_local} local replicas"
        ));
    }
    let a = bench.add(
        format!("(a) direct to the replica on {}", cluster.peers[local].name),
        // Docker publishes a replica's port on its peer's address only.
        SocketAddr::new(cluster.peers[local].listen.ip(), host_port),
        None,
    )?;
    let b = bench.add(
        format!(
            "(b) ingress of {} (local replica)",
            cluster.peers[local].name
        ),
        SocketAddr::new(cluster.peers[local].listen.ip(), published),
        Some(cluster.peers[local].metrics),
    )?;
    let c = match bare {
        Some(i) => Some(bench.add(
            format!(
                "(c) ingress of {} (no local replica)",
                cluster.peers[i].name
            ),
            SocketAddr::new(cluster.peers[i].listen.ip(), published),
            Some(cluster.peers[i].metrics),
        )?),
        None => None,
    };
    for round in 1..=options.rounds {
        bench.measure(a, round);
        bench.measure(b, round);
        if let Some(c) = c {
            bench.measure(c, round);
        }
    }
    if c.is_none() {
        // Every peer runs a replica: drain one (not the local one) so that its ingress
        // has to forward to remote replicas only.
        let drained = (0..PEERS).find(|&i| i != local).context("one peer only")?;
        let name = cluster.peers[drained].name.clone();
        notes.add(format!(
            "placement put a replica on every peer: (c) was measured after \
             `knit node update --availability drain {name}` (its replica moved to another peer)"
        ));
        cluster.peers[0].cli_ok(&["node", "update", "--availability", "drain", &name])?;
        let (_, took) = wait_until(
            Duration::from_secs(90),
            &format!("3 healthy replicas off {name}"),
            || converged(&cluster.peers[0], Some(&ids[drained])),
        )?;
        eprintln!("{name} drained in {took:.1?}");
        let label = format!("(c) ingress of {name} (drained: no local replica)");
        let addr = SocketAddr::new(cluster.peers[drained].listen.ip(), published);
        let index = bench.add(label, addr, Some(cluster.peers[drained].metrics))?;
        for round in 1..=options.rounds {
            bench.measure(index, round);
        }
    }

    out.text(&format!(
        "{} peers (profile fast), {REPLICAS} replicas; load: {}; {} connections, {} per run\n",
        PEERS,
        tool.describe(),
        options.connections,
        humantime(options.duration),
    ));
    out.table("ingress", &bench.table());
    out.notes(&notes);
    drop(cluster);
    drop(docroot);
    Ok(())
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
