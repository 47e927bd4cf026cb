//! `bench-idle`: what an idle cluster costs each peer, by cluster size. For each size it
//! starts real `knit` peers on loopback (no services), lets them settle, then over a quiet
//! window reads the membership gossip and anti-entropy bytes from a few peers' `/metrics`,
//! what that gossip is made of (by SWIM message and by the record its rumors carry), and
//! every peer's CPU time and resident memory. It prints the run header and the tables
//! (markdown, or JSON rows with `--format json`). It asserts nothing.
//!
//! ```text
//! cargo run --release -p knit-tests --bin bench-idle -- [--sizes 5,20,40] [--profile lan] [--settle-secs 60] [--window-secs 30]
//! ```
//!
//! It builds and runs the release `knit` (or `$KNIT_BIN` when set).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use knit_tests::Cluster;
use knit_tests::cost::{self, CpuWindow, Pace, Series, label, read_series};
use knit_tests::options::{self, Flags};
use knit_tests::report::{Cell, Format, Notes, Report, Table};

const USAGE: &str = "usage: bench-idle [--sizes 5,20,40,60,100,150] [--profile P] [--settle-secs S] [--window-secs S] [--sampled N] [--pace node-id|admitted]

  --sizes LIST     cluster sizes, comma-separated (default 5,20,40,60,100,150)
  --profile P      timing profile of every peer (default lan)
  --settle-secs S  wait after every peer sees every peer alive (default 60)
  --window-secs S  the measured window (default 30)
  --sampled N      peers whose /metrics are read (default 3)
  --pace P         start each peer once the one before has its node id (node-id, the
                   default) or once the seed lists it alive (admitted: slower, gentler)

Uses $KNIT_BIN if set, else builds the release knit first.";

/// How long one `/metrics` read may take.
const READ_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Options {
    sizes: Vec<usize>,
    profile: String,
    settle: Duration,
    window: Duration,
    sampled: usize,
    pace: Pace,
    format: Format,
}

impl Options {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Self>> {
        let known = [
            "--sizes",
            "--profile",
            "--settle-secs",
            "--window-secs",
            "--sampled",
            "--pace",
        ];
        let Some(flags) = Flags::parse(args, &known, USAGE)? else {
            return Ok(None);
        };
        let secs = |flag: &str, default: usize| -> Result<Duration> {
            let n = flags.number(flag, default, 0..=3_600)?;
            Ok(Duration::from_secs(u64::try_from(n)?))
        };
        Ok(Some(Self {
            sizes: flags.numbers("--sizes", &[5, 20, 40, 60, 100, 150], 1..=250)?,
            profile: flags.choice("--profile", "lan", &["lan", "wan", "fast"])?,
            settle: secs("--settle-secs", 60)?,
            window: secs("--window-secs", 30)?.max(Duration::from_secs(1)),
            sampled: flags.number("--sampled", 3, 1..=250)?,
            pace: match flags
                .choice("--pace", "node-id", &["node-id", "admitted"])?
                .as_str()
            {
                "admitted" => Pace::Admitted,
                _ => Pace::NodeId,
            },
            format: flags.format()?,
        }))
    }
}

/// What one cluster size cost.
#[derive(Debug, Default)]
struct Figures {
    size: usize,
    formed_s: Option<f64>,
    /// Per node and second, mean over the sampled peers.
    gossip_bytes: f64,
    sync_bytes: f64,
    /// Per node and second, by SWIM message (both ways).
    kinds: BTreeMap<String, f64>,
    /// Per node and second, rumor bytes heard, by record.
    records: BTreeMap<String, f64>,
    /// Per node and second, anti-entropy bytes by part (summary, digest, delta).
    sync_parts: BTreeMap<String, f64>,
    /// Percent of one core, mean over every peer.
    cpu_percent: Option<f64>,
    rss_mean_mib: Option<f64>,
    rss_max_mib: Option<f64>,
    failure: Option<String>,
}

fn measure(options: &Options, size: usize) -> Figures {
    let mut figures = Figures {
        size,
        ..Figures::default()
    };
    if let Err(e) = measure_into(options, size, &mut figures) {
        figures.failure = Some(format!("{e:#}"));
    }
    figures
}

fn measure_into(options: &Options, size: usize, figures: &mut Figures) -> Result<()> {
    let started = Instant::now();
    let mut cluster = Cluster::new(&options.profile)?;
    cost::start_paced(&mut cluster, size, options.pace)?;
    cluster
        .wait_all_alive(cost::forming_limit(size))
        .context("forming the cluster")?;
    figures.formed_s = Some(started.elapsed().as_secs_f64());
    eprintln!(
        "  formed in {:.1} s; settling",
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(options.settle);
    // Spread over the cluster: the seed, the last to join, and between.
    let step = (size / options.sampled.min(size)).max(1);
    let sampled: Vec<usize> = (0..size).step_by(step).take(options.sampled).collect();
    let read = |cluster: &Cluster| -> Result<Vec<Series>> {
        sampled
            .iter()
            .map(|&i| Ok(read_series(&cluster.peers[i].metrics_text(READ_LIMIT)?)))
            .collect()
    };
    let (before, window) = (read(&cluster)?, CpuWindow::open(&cluster));
    std::thread::sleep(options.window);
    let after = read(&cluster)?;
    let secs = window.elapsed().as_secs_f64();
    let usage = window.close(&cluster);
    rates(figures, &before, &after, secs * sampled.len() as f64);
    figures.cpu_percent = Some(usage.cpu_percent);
    figures.rss_mean_mib = usage.rss_mean_mib;
    figures.rss_max_mib = usage.rss_max_mib;
    Ok(())
}

/// Fills the traffic figures from the counters before and after, over `node_secs`
/// (seconds times sampled peers).
fn rates(figures: &mut Figures, before: &[Series], after: &[Series], node_secs: f64) {
    let mut add = |name: &str, value: f64| {
        let gossip = [
            "knit_gossip_bytes_sent_total",
            "knit_gossip_bytes_received_total",
        ];
        if gossip.contains(&name) {
            figures.gossip_bytes += value;
        } else if name == "knit_state_sync_bytes_total" {
            figures.sync_bytes += value;
        } else if let Some(part) = name
            .strip_prefix("knit_state_sync_")
            .and_then(|n| n.strip_suffix("_bytes_total"))
        {
            *figures.sync_parts.entry(part.to_owned()).or_default() += value;
        } else if name.starts_with("knit_gossip_message_bytes_total{") {
            let kind = label(name, "kind").unwrap_or("?").to_owned();
            *figures.kinds.entry(kind).or_default() += value;
        } else if name.starts_with("knit_rumor_bytes_total{")
            && label(name, "direction") == Some("in")
        {
            let record = label(name, "record").unwrap_or("?").to_owned();
            *figures.records.entry(record).or_default() += value;
        }
    };
    for (b, a) in before.iter().zip(after) {
        for (name, value) in a {
            add(name, value - b.get(name).copied().unwrap_or(0.0));
        }
    }
    figures.gossip_bytes /= node_secs;
    figures.sync_bytes /= node_secs;
    figures.kinds.values_mut().for_each(|v| *v /= node_secs);
    figures.records.values_mut().for_each(|v| *v /= node_secs);
    figures
        .sync_parts
        .values_mut()
        .for_each(|v| *v /= node_secs);
}

/// The largest entries of a breakdown, as `name 123` pairs.
fn top(breakdown: &BTreeMap<String, f64>, n: usize) -> String {
    let mut entries: Vec<(&String, &f64)> = breakdown.iter().filter(|(_, v)| **v >= 0.5).collect();
    entries.sort_by(|a, b| b.1.total_cmp(a.1));
    entries
        .iter()
        .take(n)
        .map(|(k, v)| format!("{k} {v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn breakdown_json(breakdown: &BTreeMap<String, f64>) -> serde_json::Value {
    breakdown
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::json!((v * 10.0).round() / 10.0)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn print(out: &Report, options: &Options, results: &[Figures]) {
    let mut table = Table::new(&[
        "peers",
        "gossip (B/s/node)",
        "anti-entropy (B/s/node)",
        "CPU (% of a core/peer)",
        "RSS mean (MiB)",
        "RSS max (MiB)",
        "gossip by message (B/s/node)",
        "rumors heard by record (B/s/node)",
        "anti-entropy by part (B/s/node)",
    ]);
    for f in results {
        let mut extra = serde_json::Map::new();
        extra.insert("by_message".into(), breakdown_json(&f.kinds));
        extra.insert("rumors_by_record".into(), breakdown_json(&f.records));
        extra.insert("anti_entropy_by_part".into(), breakdown_json(&f.sync_parts));
        table.row_with(
            vec![
                Cell::count(f.size),
                Cell::num(f.failure.is_none().then_some(f.gossip_bytes), 0),
                Cell::num(f.failure.is_none().then_some(f.sync_bytes), 0),
                Cell::num(f.cpu_percent, 2),
                Cell::num(f.rss_mean_mib, 1),
                Cell::num(f.rss_max_mib, 1),
                Cell::text(top(&f.kinds, 4)),
                Cell::text(top(&f.records, 3)),
                Cell::text(top(&f.sync_parts, 3)),
            ],
            extra,
        );
    }
    out.table("idle cost", &table);
    let mut notes = Notes::new();
    notes.add(format!(
        "profile {}, peers started {}, {} s to settle, {} s window, gossip from {} peers' /metrics (sent + received), CPU and RSS of every peer",
        options.profile,
        match options.pace {
            Pace::NodeId => "once the one before has its node id",
            Pace::Admitted => "once the seed lists the one before alive",
        },
        options.settle.as_secs(),
        options.window.as_secs(),
        options.sampled
    ));
    for f in results {
        if let Some(failure) = &f.failure {
            notes.add(format!("{} peers: {failure}", f.size));
        }
    }
    out.notes(&notes);
}

fn main() -> Result<()> {
    let Some(options) = Options::parse(std::env::args().skip(1))? else {
        println!("{}", options::help(USAGE));
        return Ok(());
    };
    let bin = knit_tests::use_release_knit()?;
    let out = Report::start("bench-idle", options.format, Some(&bin));
    let mut results = Vec::new();
    for &size in &options.sizes {
        eprintln!("{size} peers, profile {}:", options.profile);
        let figures = measure(&options, size);
        eprintln!(
            "  gossip {:.0} B/s/node, anti-entropy {:.0} B/s/node, CPU {:.2}%",
            figures.gossip_bytes,
            figures.sync_bytes,
            figures.cpu_percent.unwrap_or(f64::NAN)
        );
        results.push(figures);
    }
    print(&out, &options, &results);
    Ok(())
}
