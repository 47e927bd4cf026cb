//! The markdown tables the benchmark prints.

use std::fmt::Write as _;

use knit_tests::percentile;

use crate::scenario::{Figures, Setup};
use crate::traffic::Rates;

fn ms(value: Option<u64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| v.to_string())
}

fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.0}"))
}

/// The propagation table, the traffic table, then one line per note or failure.
pub(crate) fn tables(results: &[(Setup, Figures)]) -> String {
    let mut out = String::new();
    out.push_str(
        "| peers | profile | write acked p50 (ms) | on every peer p50 (ms) | p99 (ms) | max (ms) \
         | median peer p50 (ms) | trials ok |\n",
    );
    out.push_str("|---:|---|---:|---:|---:|---:|---:|---:|\n");
    for (setup, f) in results {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {}/{} |",
            setup.size,
            setup.profile,
            ms(percentile(&f.ack_ms, 0.50)),
            ms(percentile(&f.everywhere_ms, 0.50)),
            ms(percentile(&f.everywhere_ms, 0.99)),
            ms(f.everywhere_ms.iter().max().copied()),
            ms(percentile(&f.median_peer_ms, 0.50)),
            f.everywhere_ms.len(),
            setup.trials,
        );
    }
    out.push('\n');
    out.push_str(
        "| peers | profile | idle gossip (B/s/node) | idle anti-entropy (B/s/node) \
         | writes/s achieved | loaded gossip (B/s/node) | loaded anti-entropy (B/s/node) \
         | anti-entropy rounds (/s/node) |\n",
    );
    out.push_str("|---:|---|---:|---:|---:|---:|---:|---:|\n");
    for (setup, f) in results {
        let gossip = |r: Option<Rates>| rate(r.map(|r| r.gossip_bytes));
        let sync = |r: Option<Rates>| rate(r.map(|r| r.sync_bytes));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            setup.size,
            setup.profile,
            gossip(f.idle),
            sync(f.idle),
            f.loaded
                .map_or_else(|| "–".to_owned(), |_| format!("{:.1}", f.load.rate)),
            gossip(f.loaded),
            sync(f.loaded),
            f.idle
                .map_or_else(|| "–".to_owned(), |r| format!("{:.1}", r.sync_rounds)),
        );
    }
    let mut notes = String::new();
    for (setup, f) in results {
        let label = format!("{} peers, {}", setup.size, setup.profile);
        if let (Some(formed), Some(created)) = (f.formed_ms, f.create_ms) {
            let _ = writeln!(
                notes,
                "- {label}: formed in {formed} ms; `service create` on p0 read back from every peer after {created} ms; an update's spec is {} bytes of JSON; loaded window: {} writes acknowledged, {} failed",
                f.update_bytes, f.load.ok, f.load.failed
            );
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
