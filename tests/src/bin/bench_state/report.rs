//! The tables the benchmark prints, and their notes.

use knit_tests::report::{Cell, Notes, Report, Samples, Table};

use crate::scenario::{Figures, Setup};
use crate::traffic::Rates;

/// Milliseconds as a whole number.
fn ms(value: Option<u64>) -> Cell {
    Cell::opt_int(value)
}

/// The propagation table, the traffic table, then one line per note or failure.
pub(crate) fn print(out: &Report, results: &[(Setup, Figures)]) {
    let mut propagation = Table::new(&[
        "peers",
        "profile",
        "write acked p50 (ms)",
        "on every peer p50 (ms)",
        "p99 (ms)",
        "max (ms)",
        "median peer p50 (ms)",
        "trials ok",
    ]);
    for (setup, f) in results {
        let everywhere = Samples::new(f.everywhere_ms.iter().copied());
        propagation.row(vec![
            Cell::count(setup.size),
            Cell::text(&setup.profile),
            ms(Samples::new(f.ack_ms.iter().copied()).p50()),
            ms(everywhere.p50()),
            ms(everywhere.p99()),
            ms(everywhere.max()),
            ms(Samples::new(f.median_peer_ms.iter().copied()).p50()),
            Cell::ratio(everywhere.count(), setup.trials),
        ]);
    }
    out.table("propagation", &propagation);
    out.text("");
    let mut traffic = Table::new(&[
        "peers",
        "profile",
        "idle gossip (B/s/node)",
        "idle anti-entropy (B/s/node)",
        "writes/s achieved",
        "loaded gossip (B/s/node)",
        "loaded anti-entropy (B/s/node)",
        "anti-entropy rounds (/s/node)",
    ]);
    for (setup, f) in results {
        let gossip = |r: Option<Rates>| Cell::num(r.map(|r| r.gossip_bytes), 0);
        let sync = |r: Option<Rates>| Cell::num(r.map(|r| r.sync_bytes), 0);
        traffic.row(vec![
            Cell::count(setup.size),
            Cell::text(&setup.profile),
            gossip(f.idle),
            sync(f.idle),
            Cell::num(f.loaded.map(|_| f.load.rate), 1),
            gossip(f.loaded),
            sync(f.loaded),
            Cell::num(f.idle.map(|r| r.sync_rounds), 1),
        ]);
    }
    out.table("traffic", &traffic);
    let mut notes = Notes::new();
    for (setup, f) in results {
        let label = format!("{} peers, {}", setup.size, setup.profile);
        if let (Some(formed), Some(created)) = (f.formed_ms, f.create_ms) {
            notes.add(format!(
                "{label}: formed in {formed} ms; `service create` on p0 read back from every peer after {created} ms; an update's spec is {} bytes of JSON; loaded window: {} writes acknowledged, {} failed",
                f.update_bytes, f.load.ok, f.load.failed
            ));
        }
        notes.outcome(&label, &f.failures, f.aborted.as_ref());
    }
    out.notes(&notes);
}
