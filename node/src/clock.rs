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
