//! The table the benchmark prints, and its notes.

use knit_tests::report::{Cell, Notes, Report, Samples, Table};
use serde_json::json;

use crate::scenario::{Figures, Setup};

/// Replicas lost per trial: one count, or the range over the trials.
fn lost(f: &Figures) -> Cell {
    let lost = Samples::new(f.heals.iter().map(|h| u64::try_from(h.lost).unwrap_or(0)));
    match (lost.min(), lost.max()) {
        (Some(a), Some(b)) if a == b => Cell::int(a),
        (Some(a), Some(b)) => Cell::figure(format!("{a}-{b}"), json!({ "min": a, "max": b })),
        _ => Cell::missing(),
    }
}

/// The table, one row per configuration, then one line per failure.
pub(crate) fn print(out: &Report, results: &[(Setup, String, Figures)]) {
    let mut table = Table::new(&[
        "profile",
        "driver",
        "heal p50 (s)",
        "heal p99 (s)",
        "heal max (s)",
        "detect p50 (s)",
        "detect first p50 (s)",
        "heal − detect p50 (s)",
        "restore p50 (s)",
        "replicas lost / trial",
        "trials ok",
    ]);
    for (setup, driver, f) in results {
        let heal = Samples::new(f.heals.iter().map(|h| h.heal_ms));
        let restart = f
            .heals
            .iter()
            .map(|h| h.heal_ms.saturating_sub(h.detect_last_ms));
        table.row(vec![
            Cell::text(&setup.profile),
            Cell::text(driver),
            Cell::secs(heal.p50()),
            Cell::secs(heal.p99()),
            Cell::secs(heal.max()),
            Cell::secs(Samples::new(f.heals.iter().map(|h| h.detect_last_ms)).p50()),
            Cell::secs(Samples::new(f.heals.iter().map(|h| h.detect_first_ms)).p50()),
            Cell::secs(Samples::new(restart).p50()),
            Cell::secs(Samples::new(f.restore_ms.iter().copied()).p50()),
            lost(f),
            Cell::ratio(f.heals.len(), setup.trials),
        ]);
    }
    out.table("heal", &table);
    let mut notes = Notes::new();
    for (setup, driver, f) in results {
        let label = format!("{}, {driver}", setup.profile);
        if let Some(ms) = f.first_ms {
            notes.add(format!(
                "{label}: {} replicas first ran healthy {} s after create",
                setup.replicas,
                Cell::secs(Some(ms)).shown()
            ));
        }
        notes.outcome(&label, &f.failures, f.aborted.as_ref());
    }
    out.notes(&notes);
}
