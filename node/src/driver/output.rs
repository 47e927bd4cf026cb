//! Replica output as the drivers hand it to `service logs`: which lines a read asks for
//! (tail, since, follow), the lines with their time, and the cutting of a byte stream into
//! lines with a bound on a line's length.

use tokio::sync::mpsc;

/// The longest line kept whole; a longer one is cut into lines of this many bytes.
pub(crate) const LINE_MAX_BYTES: usize = 16 * 1024;
/// How often a followed process log is checked for new output.
pub(crate) const FOLLOW_POLL_MS: u64 = 100;

/// Which of a replica's output to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogQuery {
    /// The last this many lines of what was written before the read (`None`: all).
    pub(crate) tail: Option<usize>,
    /// Only lines written at or after this time (ms since the epoch).
    pub(crate) since_ms: Option<u64>,
    /// Go on with new lines until the reader goes away or the replica is removed.
    pub(crate) follow: bool,
}

/// One line of a replica's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogLine {
    /// When it was written, in ms since the epoch, as the driver knows it (Docker stamps
    /// every line; the process driver knows when it read a followed line, and a past line
    /// only as "at or before its file's last change").
    pub(crate) time_ms: u64,
    /// The text, without its newline.
    pub(crate) text: String,
}

/// Where a driver sends lines; a send fails once the reader went away.
pub(crate) type LineSink = mpsc::Sender<LogLine>;

/// Cuts bytes into lines, keeping at most [`LINE_MAX_BYTES`] of an unfinished one.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// The complete lines in `bytes` (after what was left over), in order.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                out.push(self.take());
            } else {
                self.partial.push(b);
                if self.partial.len() >= LINE_MAX_BYTES {
                    out.push(self.take());
                }
            }
        }
        out
    }

    /// What is left of an unfinished line, if anything.
    pub(crate) fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let bytes = std::mem::take(&mut self.partial);
        let text = String::from_utf8_lossy(&bytes);
        text.strip_suffix('\r').unwrap_or(&text).to_owned()
    }
}

/// The last `tail` of `lines` (all of them for `None`).
pub(crate) fn last<T>(mut lines: Vec<T>, tail: Option<usize>) -> Vec<T> {
    if let Some(n) = tail {
        lines.drain(..lines.len().saturating_sub(n));
    }
    lines
}

/// `ms` since the epoch as RFC 3339 UTC with nanoseconds, as Docker writes times
/// (`2024-05-07T21:09:36.123000000Z`).
pub(crate) fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    // The civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}000000Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_at_newlines_and_at_the_bound() {
        let mut lines = Lines::default();
        assert_eq!(lines.push(b"a\nb"), vec!["a"]);
        assert_eq!(lines.push(b"c\r\n\n"), vec!["bc", ""]);
        assert_eq!(lines.finish(), None);
        let long = vec![b'x'; LINE_MAX_BYTES + 5];
        let out = lines.push(&long);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), LINE_MAX_BYTES);
        assert_eq!(lines.finish().as_deref(), Some("xxxxx"));
    }

    #[test]
    fn times_format_as_docker_writes_them() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_715_116_176_123), "2024-05-07T21:09:36.123000000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn last_keeps_the_tail() {
        assert_eq!(last(vec![1, 2, 3], Some(2)), vec![2, 3]);
        assert_eq!(last(vec![1, 2, 3], Some(0)), Vec::<i32>::new());
        assert_eq!(last(vec![1, 2, 3], None), vec![1, 2, 3]);
    }
}
