//! The wall clock, in milliseconds since the Unix epoch: what replica reports, rollout
//! waves and the replicated state's stamps are compared in. Monotonic waits use
//! `tokio::time` instead.

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How long ago `at_ms` was, as Docker's tables say it: `5 seconds ago`, `3 hours ago`.
pub(crate) fn ago(at_ms: u64) -> String {
    let seconds = now_ms().saturating_sub(at_ms) / 1000;
    let (n, unit) = match seconds {
        0..60 => (seconds, "second"),
        60..3_600 => (seconds / 60, "minute"),
        3_600..86_400 => (seconds / 3_600, "hour"),
        _ => (seconds / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ago_counts_in_the_largest_whole_unit() {
        let now = super::now_ms();
        assert_eq!(super::ago(now), "0 seconds ago");
        assert_eq!(super::ago(now - 61_000), "1 minute ago");
        assert_eq!(super::ago(now - 3 * 3_600_000 - 5), "3 hours ago");
    }
}
