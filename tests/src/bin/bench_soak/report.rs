//! The soak's tables (detection, false alarms, idle cost) and notes.

use knit_tests::report::{Cell, Notes, Report, Samples, Table};
use serde_json::{Map, json};

use crate::scenario::{Figures, Setup};

/// Prints the three tables, then the notes.
pub(crate) fn print(out: &Report, setup: &Setup, f: &Figures) {
    out.table("detection", &detection(setup, f));
    out.text("");
    out.table("false alarms", &alarms(f));
    out.text("");
    out.table("idle cost", &cost(setup, f));
    out.notes(&notes(setup, f));
}

/// Detection by every observer of every kill, by the last observer of each kill, and
/// the restarts.
fn detection(setup: &Setup, f: &Figures) -> Table {
    let mut table = Table::new(&[
        "peers",
        "profile",
        "kills",
        "detected by all",
        "detect p50 (s)",
        "detect p90 (s)",
        "detect p99 (s)",
        "detect max (s)",
        "last observer p50 (s)",
        "last observer max (s)",
        "rejoin p50 (s)",
        "rejoin max (s)",
    ]);
    let every = Samples::new(f.kills.iter().flat_map(|k| k.detect_ms.values().copied()));
    let last = Samples::new(
        f.kills
            .iter()
            .filter(|k| k.missed == 0)
            .filter_map(|k| k.detect_ms.values().copied().max()),
    );
    let rejoin = Samples::new(f.kills.iter().filter_map(|k| k.rejoin_ms));
    let mut extra = Map::new();
    extra.insert("observers".into(), json!(f.observers));
    extra.insert("kill_list".into(), json!(f.kills));
    extra.insert("detect_ms".into(), every.summary_json());
    table.row_with(
        vec![
            Cell::count(setup.peers),
            Cell::text(&setup.profile),
            Cell::count(f.kills.len()),
            Cell::ratio(last.count(), f.kills.len()),
            Cell::secs(every.p50()),
            Cell::secs(every.p90()),
            Cell::secs(every.p99()),
            Cell::secs(every.max()),
            Cell::secs(last.p50()),
            Cell::secs(last.max()),
            Cell::secs(rejoin.p50()),
            Cell::secs(rejoin.max()),
        ],
        extra,
    );
    table
}

/// False downs and suspicions of members that were not killed.
fn alarms(f: &Figures) -> Table {
    let mut table = Table::new(&[
        "false downs",
        "false suspicions",
        "false sightings",
        "lists read",
        "suspecting observer reads (quiet)",
        "suspected max (quiet)",
        "local health max",
        "peers exited",
    ]);
    let a = &f.alarms;
    let g = &f.gauges;
    table.row(vec![
        Cell::count(a.downs.len()),
        Cell::count(a.suspects.len()),
        Cell::count(a.sightings),
        Cell::count(a.lists_read),
        Cell::figure(
            format!("{}/{}", g.quiet_suspecting, g.quiet_reads),
            json!({ "suspecting": g.quiet_suspecting, "of": g.quiet_reads }),
        ),
        Cell::int(g.quiet_max),
        Cell::int(g.health_max),
        Cell::count(f.exited.len()),
    ]);
    table
}

/// Idle CPU and memory per peer over the quiet window, and the machine's load.
fn cost(setup: &Setup, f: &Figures) -> Table {
    let mut table = Table::new(&[
        "peers",
        "CPU (% of a core/peer)",
        "RSS mean (MiB)",
        "RSS max (MiB)",
        "load 1/5/15 min (quiet)",
        "load mean (kills)",
        "load max (kills)",
    ]);
    let load = f.quiet_load.map_or_else(Cell::missing, |[a, b, c]| {
        Cell::figure(format!("{a:.2} / {b:.2} / {c:.2}"), json!([a, b, c]))
    });
    // Sample counts far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    let load_mean =
        (!f.loads.is_empty()).then(|| f.loads.iter().sum::<f64>() / f.loads.len() as f64);
    table.row(vec![
        Cell::count(setup.peers),
        Cell::num(f.quiet.map(|q| q.cpu_percent), 2),
        Cell::num(f.quiet.and_then(|q| q.rss_mean_mib), 1),
        Cell::num(f.quiet.and_then(|q| q.rss_max_mib), 1),
        load,
        Cell::num(load_mean, 2),
        Cell::num(f.loads.iter().copied().reduce(f64::max), 2),
    ]);
    table
}

fn notes(setup: &Setup, f: &Figures) -> Notes {
    let mut notes = Notes::new();
    notes.add(format!(
        "profile {}, {} min of kills, one every {} s (seed {}), after {} s of settling and a {} s quiet window; observers {}; each sample every {} s reads the observers and {} other peers in turn",
        setup.profile,
        setup.duration.as_secs() / 60,
        setup.kill_every.as_secs(),
        setup.seed,
        setup.settle.as_secs(),
        setup.window.as_secs(),
        f.observers.join(", "),
        setup.sample_every.as_secs(),
        setup.rotate,
    ));
    if let Some(formed) = f.formed {
        notes.add(format!("formed in {:.1} s", formed.as_secs_f64()));
    }
    if f.alarms.read_errors > 0 {
        notes.add(format!(
            "{} member lists could not be read",
            f.alarms.read_errors
        ));
    }
    for example in &f.alarms.examples {
        notes.add(format!("false alarm: {example}"));
    }
    notes.outcome("soak", &f.failures, f.aborted.as_ref());
    notes
}
