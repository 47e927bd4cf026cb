//! Progress of long runs: the engine advanced in chunks of simulated time, and a one-line
//! meter that redraws in place (`\r`) at most five times a wall second.
//!
//! The library writes nowhere by itself: the binary hands a [`Meter`] the terminal, or
//! passes [`Silent`]. Chunking does not change a run: the report is the one [`run`] gives.
//!
//! [`run`]: crate::engine::run

use std::io::Write;
use std::time::{Duration, Instant};

use crate::engine::{Engine, SimError};
use crate::report::Report;
use crate::scenario::{Scenario, secs_to_ms};

/// Simulated time between two progress updates.
pub const CHUNK_MS: u64 = 100;

/// The least wall time between two redraws of the meter.
pub const REDRAW_EVERY: Duration = Duration::from_millis(200);

/// Told how far a run has got.
pub trait Progress {
    /// The run called `label` has simulated `sim_ms` of `end_ms`.
    fn update(&mut self, label: &str, sim_ms: u64, end_ms: u64);
    /// Every run is over: end the line before anything else prints.
    fn done(&mut self);
}

/// Shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn update(&mut self, _: &str, _: u64, _: u64) {}
    fn done(&mut self) {}
}

/// Runs `scenario` with `seed` (or its own) in chunks of [`CHUNK_MS`], telling `progress`
/// after each; the same report as [`crate::engine::run`].
pub fn run_with(
    scenario: &Scenario,
    seed: Option<u64>,
    label: &str,
    progress: &mut dyn Progress,
) -> Result<Report, SimError> {
    let seed = seed.unwrap_or(scenario.seed);
    let end_ms = secs_to_ms(scenario.duration_s);
    let mut engine = Engine::new(scenario, seed)?;
    let mut at_ms = 0;
    while at_ms < end_ms {
        at_ms = (at_ms + CHUNK_MS).min(end_ms);
        engine.advance(at_ms)?;
        progress.update(label, at_ms, end_ms);
    }
    Ok(engine.finish_report(scenario))
}

/// A one-line meter: `label: 34.5 / 60.0 sim s (57%), 12.3 s wall`.
pub struct Meter<W: Write> {
    out: W,
    started: Instant,
    /// Wall time of the last redraw; `None` before the first.
    drawn_at: Option<Duration>,
    /// Characters of the last line, to blank what a shorter one leaves behind.
    width: usize,
    /// What the last update said, drawn once more by [`Progress::done`].
    last: Option<(String, u64, u64)>,
}

impl<W: Write> Meter<W> {
    /// A meter writing to `out` (a terminal: it rewrites its line).
    pub fn new(out: W) -> Self {
        Self {
            out,
            started: Instant::now(),
            drawn_at: None,
            width: 0,
            last: None,
        }
    }

    /// An update at `wall` since the start: redraws if [`REDRAW_EVERY`] has passed.
    pub fn update_at(&mut self, wall: Duration, label: &str, sim_ms: u64, end_ms: u64) {
        self.last = Some((label.to_owned(), sim_ms, end_ms));
        if self
            .drawn_at
            .is_some_and(|at| wall.saturating_sub(at) < REDRAW_EVERY)
        {
            return;
        }
        self.drawn_at = Some(wall);
        self.draw(wall, label, sim_ms, end_ms);
    }

    /// The line drawn once more with the last figures, and a newline; nothing if nothing
    /// was drawn.
    pub fn done_at(&mut self, wall: Duration) {
        if let (Some(_), Some((label, sim_ms, end_ms))) = (self.drawn_at, self.last.take()) {
            self.draw(wall, &label, sim_ms, end_ms);
            let _ = writeln!(self.out);
            let _ = self.out.flush();
        }
        self.drawn_at = None;
        self.width = 0;
    }

    /// What was written (for tests).
    pub fn into_inner(self) -> W {
        self.out
    }

    fn draw(&mut self, wall: Duration, label: &str, sim_ms: u64, end_ms: u64) {
        let line = line(wall, label, sim_ms, end_ms);
        let pad = self.width.saturating_sub(line.chars().count());
        let _ = write!(self.out, "\r{line}{:pad$}", "");
        let _ = self.out.flush();
        self.width = line.chars().count();
    }
}

impl<W: Write> Progress for Meter<W> {
    fn update(&mut self, label: &str, sim_ms: u64, end_ms: u64) {
        self.update_at(self.started.elapsed(), label, sim_ms, end_ms);
    }

    fn done(&mut self) {
        self.done_at(self.started.elapsed());
    }
}

/// One meter line.
pub fn line(wall: Duration, label: &str, sim_ms: u64, end_ms: u64) -> String {
    let percent = (sim_ms.min(end_ms) * 100)
        .checked_div(end_ms)
        .unwrap_or(100);
    format!(
        "{label}: {} / {} sim s ({percent}%), {:.1} s wall",
        tenths(sim_ms),
        tenths(end_ms),
        wall.as_secs_f64()
    )
}

/// Milliseconds as seconds with one decimal, exactly (`34500` is `34.5`).
fn tenths(ms: u64) -> String {
    format!("{}.{}", ms / 1_000, ms % 1_000 / 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::run;

    fn kill_one() -> Scenario {
        Scenario::from_toml(include_str!("../scenarios/kill-one.toml")).unwrap()
    }

    #[derive(Default)]
    struct Log(Vec<(u64, u64)>);

    impl Progress for Log {
        fn update(&mut self, _: &str, sim_ms: u64, end_ms: u64) {
            self.0.push((sim_ms, end_ms));
        }
        fn done(&mut self) {}
    }

    #[test]
    fn chunked_runs_report_what_whole_runs_do() {
        let s = kill_one();
        let mut log = Log::default();
        let chunked = run_with(&s, Some(5), "kill-one", &mut log).unwrap();
        assert_eq!(chunked.json(), run(&s, Some(5)).unwrap().json());
        assert_eq!(log.0.len(), 600, "60 s in chunks of 100 ms");
        assert_eq!(log.0.last(), Some(&(60_000, 60_000)));
        assert!(log.0.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn the_meter_redraws_at_most_five_times_a_second_and_ends_its_line() {
        let mut meter = Meter::new(Vec::new());
        for i in 0..=100u64 {
            // 100 updates over one wall second.
            meter.update_at(Duration::from_millis(i * 10), "run", i * 600, 60_000);
        }
        meter.done_at(Duration::from_millis(1_010));
        let text = String::from_utf8(meter.into_inner()).unwrap();
        // Redraws at 0, 200, 400, 600, 800, 1000 ms, and once more at the end.
        assert_eq!(text.matches('\r').count(), 7, "{text:?}");
        assert!(
            text.ends_with("run: 60.0 / 60.0 sim s (100%), 1.0 s wall\n"),
            "{text:?}"
        );
        assert!(
            text.contains("run: 12.0 / 60.0 sim s (20%), 0.2 s wall"),
            "{text:?}"
        );
    }

    #[test]
    fn a_meter_that_drew_nothing_writes_nothing() {
        let mut meter = Meter::new(Vec::new());
        meter.done_at(Duration::from_secs(1));
        assert!(meter.into_inner().is_empty());
    }

    #[test]
    fn a_shorter_line_blanks_the_longer_one_before_it() {
        let mut meter = Meter::new(Vec::new());
        meter.update_at(Duration::ZERO, "a long label", 0, 1_000);
        meter.update_at(Duration::from_secs(1), "b", 1_000, 1_000);
        let text = String::from_utf8(meter.into_inner()).unwrap();
        let second = text.rsplit('\r').next().unwrap();
        assert_eq!(
            second.len(),
            "a long label: 0.0 / 1.0 sim s (0%), 0.0 s wall".len()
        );
    }
}
