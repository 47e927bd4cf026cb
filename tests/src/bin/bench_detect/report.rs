//! The markdown table the benchmark prints.

use std::fmt::Write as _;

use knit_tests::percentile;

use crate::scenario::{Figures, Setup};

fn secs(ms: Option<u64>) -> String {
    // Milliseconds far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    ms.map_or_else(|| "–".to_owned(), |ms| format!("{:.2}", ms as f64 / 1000.0))
}

fn mib(kib: Option<u64>) -> String {
    #[allow(clippy::cast_precision_loss)]
    kib.map_or_else(
        || "–".to_owned(),
        |kib| format!("{:.1}", kib as f64 / 1024.0),
    )
}

/// The markdown table, one row per configuration, then one line per failure.
pub(crate) fn table(results: &[(Setup, Figures)]) -> String {
    let mut out = String::new();
    out.push_str(
        "| peers | profile | detect p50 (s) | detect p99 (s) | detect max (s) | trials ok | join p50 (s) \
         | rejoin p50 (s) | idle gossip (B/s/node) | idle packets (/s/node) | RSS mean (MiB) | RSS max (MiB) \
         | false suspect / down |\n",
    );
    out.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (setup, f) in results {
        let rss_mean =
            (!f.rss_kib.is_empty()).then(|| f.rss_kib.iter().sum::<u64>() / f.rss_kib.len() as u64);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} / {} |",
            setup.size,
            setup.profile,
            secs(percentile(&f.detect_ms, 0.50)),
            secs(percentile(&f.detect_ms, 0.99)),
            secs(f.detect_ms.iter().max().copied()),
            f.detect_ms.len(),
            setup.trials,
            secs(percentile(&f.join_ms, 0.50)),
            secs(percentile(&f.rejoin_ms, 0.50)),
            f.idle_bytes_per_s
                .map_or_else(|| "–".to_owned(), |b| format!("{b:.0}")),
            f.idle_packets_per_s
                .map_or_else(|| "–".to_owned(), |p| format!("{p:.1}")),
            mib(rss_mean),
            mib(f.rss_kib.iter().max().copied()),
            f.alarms.suspect.len(),
            f.alarms.down.len(),
        );
    }
    let mut notes = String::new();
    for (setup, f) in results {
        let label = format!("{} peers, {}", setup.size, setup.profile);
        if let Some(formed) = f.formed {
            let _ = writeln!(notes, "- {label}: formed in {:.1} s", formed.as_secs_f64());
        }
        for failure in &f.failures {
            let _ = writeln!(notes, "- {label}: failed: {failure}");
        }
        if let Some(why) = &f.aborted {
            let _ = writeln!(notes, "- {label}: stopped early: {why}");
        }
    }
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes);
    }
    out
}
