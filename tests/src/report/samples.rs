//! Measured values and what the benchmarks say about them: count, min, percentiles, max,
//! mean. One percentile definition for every program, so that a p50 in one table means what
//! it means in the next.

use serde_json::{Value, json};

/// How far `q × n` may lie from a whole number and still count as that number: `0.7 × 10`
/// is `7.000000000000001` in floating point, and its rank is 7, not 8.
const RANK_TOLERANCE: f64 = 1e-9;

/// The nearest-rank percentile `q` (0..=1) of `values`, if there are any; see
/// [`Samples::percentile`] for the definition. Sorts a copy: for several percentiles of
/// one set, build a [`Samples`] once.
pub fn percentile(values: &[u64], q: f64) -> Option<u64> {
    Samples::new(values.iter().copied()).percentile(q)
}

/// A set of measured values (durations in ms or µs, bytes, counts), kept sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Samples {
    /// Every value, smallest first; the percentiles index into it.
    sorted: Vec<u64>,
}

impl Samples {
    /// The samples `values`, in any order.
    pub fn new(values: impl IntoIterator<Item = u64>) -> Self {
        let mut sorted: Vec<u64> = values.into_iter().collect();
        sorted.sort_unstable();
        Self { sorted }
    }

    /// How many values there are.
    pub fn count(&self) -> usize {
        self.sorted.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The smallest value.
    pub fn min(&self) -> Option<u64> {
        self.sorted.first().copied()
    }

    /// The largest value.
    pub fn max(&self) -> Option<u64> {
        self.sorted.last().copied()
    }

    /// The nearest-rank percentile `q` (a fraction, 0..=1): the smallest measured value
    /// such that at least `q` of all values are at most it, that is the value of rank
    /// `ceil(q × n)` (ranks from 1), with rank 1 for `q = 0`. It is always a measured
    /// value, never an interpolation: the p50 of an even count is the lower of the two
    /// middle values, and the p99 of fewer than 100 values is the max. `None` when empty.
    ///
    /// # Panics
    ///
    /// When `q` is outside 0..=1 (a programmer error).
    pub fn percentile(&self, q: f64) -> Option<u64> {
        assert!(
            (0.0..=1.0).contains(&q),
            "a percentile is a fraction in 0..=1, not {q}"
        );
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        // Lengths far below 2^52: the conversions are exact.
        #[allow(clippy::cast_precision_loss)]
        let exact = q * n as f64;
        let rank = if (exact - exact.round()).abs() < RANK_TOLERANCE {
            exact.round()
        } else {
            exact.ceil()
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rank = rank as usize;
        Some(self.sorted[rank.clamp(1, n) - 1])
    }

    /// The median as [`Samples::percentile`] defines it (the lower middle of an even count).
    pub fn p50(&self) -> Option<u64> {
        self.percentile(0.50)
    }

    /// The 90th percentile.
    pub fn p90(&self) -> Option<u64> {
        self.percentile(0.90)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> Option<u64> {
        self.percentile(0.99)
    }

    /// The arithmetic mean.
    pub fn mean(&self) -> Option<f64> {
        if self.sorted.is_empty() {
            return None;
        }
        let sum: u128 = self.sorted.iter().map(|&v| u128::from(v)).sum();
        // Sums and counts of benchmark figures are far below 2^52.
        #[allow(clippy::cast_precision_loss)]
        Some(sum as f64 / self.sorted.len() as f64)
    }

    /// Count, min, p50, p90, p99, max and mean as one JSON object (`null` where empty).
    pub fn summary_json(&self) -> Value {
        json!({
            "count": self.count(),
            "min": self.min(),
            "p50": self.p50(),
            "p90": self.p90(),
            "p99": self.p99(),
            "max": self.max(),
            "mean": self.mean(),
        })
    }
}

impl FromIterator<u64> for Samples {
    fn from_iter<I: IntoIterator<Item = u64>>(values: I) -> Self {
        Self::new(values)
    }
}

#[cfg(test)]
mod tests {
    use super::{Samples, percentile};

    #[test]
    fn empty_has_no_figures() {
        let s = Samples::default();
        assert!(s.is_empty());
        assert_eq!(s.count(), 0);
        assert_eq!(
            (s.min(), s.p50(), s.p99(), s.max()),
            (None, None, None, None)
        );
        assert_eq!(s.mean(), None);
        assert_eq!(percentile(&[], 0.5), None);
        assert!(s.summary_json()["p50"].is_null());
    }

    #[test]
    fn one_sample_is_every_figure() {
        let s = Samples::new([7]);
        for q in [0.0, 0.01, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(s.percentile(q), Some(7), "q = {q}");
        }
        assert_eq!((s.min(), s.max(), s.mean()), (Some(7), Some(7), Some(7.0)));
    }

    #[test]
    fn nearest_rank_on_an_even_count() {
        // Given out of order: the samples sort themselves.
        let s: Samples = [10, 3, 1, 8, 2, 9, 4, 7, 6, 5].into_iter().collect();
        assert_eq!(s.count(), 10);
        // The lower middle, a measured value, no interpolation (5.5).
        assert_eq!(s.p50(), Some(5));
        assert_eq!(s.p90(), Some(9));
        assert_eq!(s.p99(), Some(10));
        assert_eq!(s.percentile(0.0), Some(1));
        assert_eq!(s.percentile(0.1), Some(1));
        assert_eq!(s.percentile(0.11), Some(2));
        assert_eq!(s.percentile(1.0), Some(10));
        assert_eq!(s.mean(), Some(5.5));
        assert_eq!(Samples::new([1, 2]).p50(), Some(1));
        assert_eq!(Samples::new([1, 2, 3]).p50(), Some(2));
    }

    #[test]
    fn floating_point_does_not_move_a_rank() {
        // 0.7 × 10 = 7.000000000000001 in f64; the rank is still 7.
        let s = Samples::new(1..=10);
        assert_eq!(s.percentile(0.7), Some(7));
        assert_eq!(Samples::new(1..=100).percentile(0.29), Some(29));
        assert_eq!(percentile(&[4, 1, 3, 2], 0.75), Some(3));
    }

    #[test]
    fn summary_names_every_figure() {
        let s = Samples::new([1, 2, 3, 4]);
        let j = s.summary_json();
        assert_eq!(j["count"], 4);
        assert_eq!(j["min"], 1);
        assert_eq!(j["p50"], 2);
        assert_eq!(j["p90"], 4);
        assert_eq!(j["max"], 4);
        assert_eq!(j["mean"], 2.5);
    }

    #[test]
    #[should_panic(expected = "a percentile is a fraction")]
    fn a_percent_for_a_fraction_is_a_bug() {
        let _ = Samples::new([1]).percentile(50.0);
    }
}
