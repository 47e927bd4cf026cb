//! The markdown table the benchmark prints.

use std::fmt::Write as _;

use knit_tests::percentile;

use crate::scenario::{Figures, Setup};

fn secs(ms: Option<u64>) -> String {
    // Milliseconds far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    ms.map_or_else(|| "–".to_owned(), |ms| format!("{:.2}", ms as f64 / 1000.0))
}

/// The markdown table, one row per configuration, then one line per failure.
pub(crate) fn table(results: &[(Setup, String, Figures)]) -> String {
    let mut out = String::new();
    out.push_str(
        "| profile | driver | heal p50 (s) | heal p99 (s) | heal max (s) | detect p50 (s) \
         | detect first p50 (s) | heal − detect p50 (s) | restore p50 (s) | replicas lost / trial \
         | trials ok |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (setup, driver, f) in results {
        let heal: Vec<u64> = f.heals.iter().map(|h| h.heal_ms).collect();
        let detect: Vec<u64> = f.heals.iter().map(|h| h.detect_last_ms).collect();
        let first: Vec<u64> = f.heals.iter().map(|h| h.detect_first_ms).collect();
        let restart: Vec<u64> = f
            .heals
            .iter()
            .map(|h| h.heal_ms.saturating_sub(h.detect_last_ms))
            .collect();
        let lost: Vec<u64> = f
            .heals
            .iter()
            .map(|h| u64::try_from(h.lost).unwrap_or(0))
            .collect();
        let lost = match (lost.iter().min(), lost.iter().max()) {
            (Some(a), Some(b)) if a == b => a.to_string(),
            (Some(a), Some(b)) => format!("{a}-{b}"),
            _ => "–".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {driver} | {} | {} | {} | {} | {} | {} | {} | {lost} | {}/{} |",
            setup.profile,
            secs(percentile(&heal, 0.50)),
            secs(percentile(&heal, 0.99)),
            secs(heal.iter().max().copied()),
            secs(percentile(&detect, 0.50)),
            secs(percentile(&first, 0.50)),
            secs(percentile(&restart, 0.50)),
            secs(percentile(&f.restore_ms, 0.50)),
            f.heals.len(),
            setup.trials,
        );
    }
    let mut notes = String::new();
    for (setup, driver, f) in results {
        let label = format!("{}, {driver}", setup.profile);
        if let Some(ms) = f.first_ms {
            let _ = writeln!(
                notes,
                "- {label}: {} replicas first ran healthy {} s after create",
                setup.replicas,
                secs(Some(ms))
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
