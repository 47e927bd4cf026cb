//! The table the benchmark prints, and its notes.

use knit_tests::report::{Cell, Notes, Report, Samples, Table};

use crate::scenario::{Figures, Setup};

/// KiB shown as MiB with one decimal.
fn mib(kib: Option<f64>) -> Cell {
    Cell::num(kib.map(|kib| kib / 1024.0), 1)
}

/// The table, one row per configuration, then one line per failure.
pub(crate) fn print(out: &Report, results: &[(Setup, Figures)]) {
    let mut table = Table::new(&[
        "peers",
        "profile",
        "detect p50 (s)",
        "detect p99 (s)",
        "detect max (s)",
        "trials ok",
        "join p50 (s)",
        "rejoin p50 (s)",
        "idle gossip (B/s/node)",
        "idle packets (/s/node)",
        "RSS mean (MiB)",
        "RSS max (MiB)",
        "false suspect / down",
    ]);
    for (setup, f) in results {
        let detect = Samples::new(f.detect_ms.iter().copied());
        let rss = Samples::new(f.rss_kib.iter().copied());
        let (suspect, down) = (f.alarms.suspect.len(), f.alarms.down.len());
        // KiB far below 2^52.
        #[allow(clippy::cast_precision_loss)]
        let rss_max = rss.max().map(|kib| kib as f64);
        table.row(vec![
            Cell::count(setup.size),
            Cell::text(&setup.profile),
            Cell::secs(detect.p50()),
            Cell::secs(detect.p99()),
            Cell::secs(detect.max()),
            Cell::ratio(detect.count(), setup.trials),
            Cell::secs(Samples::new(f.join_ms.iter().copied()).p50()),
            Cell::secs(Samples::new(f.rejoin_ms.iter().copied()).p50()),
            Cell::num(f.idle_bytes_per_s, 0),
            Cell::num(f.idle_packets_per_s, 1),
            // The mean of whole KiB, as before: truncated to a whole KiB.
            mib(rss.mean().map(f64::floor)),
            mib(rss_max),
            Cell::figure(
                format!("{suspect} / {down}"),
                serde_json::json!({ "suspect": suspect, "down": down }),
            ),
        ]);
    }
    out.table("detect", &table);
    let mut notes = Notes::new();
    for (setup, f) in results {
        let label = format!("{} peers, {}", setup.size, setup.profile);
        if let Some(formed) = f.formed {
            notes.add(format!("{label}: formed in {:.1} s", formed.as_secs_f64()));
        }
        notes.outcome(&label, &f.failures, f.aborted.as_ref());
    }
    out.notes(&notes);
}
