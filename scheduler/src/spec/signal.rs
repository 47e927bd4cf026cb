//! Stop signals, as Docker's `--stop-signal` takes them: a name with or without `SIG`, in
//! any case, or a number.

/// The Linux signals by name, in their numbering order (1 = `HUP`).
const NAMES: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

/// The highest signal number (`SIGRTMAX` on Linux).
const MAX: u32 = 64;

/// `signal` in the one spelling knit keeps: `SIGTERM` for a named signal, the number for
/// another one (`40`); `None` when it is no signal.
pub fn normalize_signal(signal: &str) -> Option<String> {
    let trimmed = signal.trim();
    if let Ok(n) = trimmed.parse::<u32>() {
        return match n {
            0 => None,
            n if n <= 31 => Some(format!("SIG{}", NAMES[n as usize - 1])),
            n if n <= MAX => Some(n.to_string()),
            _ => None,
        };
    }
    let upper = trimmed.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    NAMES.contains(&bare).then(|| format!("SIG{bare}"))
}

/// The number of a signal in the spelling [`normalize_signal`] returns.
pub fn signal_number(signal: &str) -> Option<i32> {
    let normal = normalize_signal(signal)?;
    match normal.strip_prefix("SIG") {
        Some(bare) => NAMES
            .iter()
            .position(|n| *n == bare)
            .and_then(|i| i32::try_from(i + 1).ok()),
        None => normal.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_read_as_docker_reads_them() {
        assert_eq!(normalize_signal("SIGQUIT").as_deref(), Some("SIGQUIT"));
        assert_eq!(normalize_signal("quit").as_deref(), Some("SIGQUIT"));
        assert_eq!(normalize_signal(" sigusr1 ").as_deref(), Some("SIGUSR1"));
        assert_eq!(normalize_signal("15").as_deref(), Some("SIGTERM"));
        assert_eq!(normalize_signal("40").as_deref(), Some("40"));
        assert_eq!(normalize_signal("0"), None);
        assert_eq!(normalize_signal("65"), None);
        assert_eq!(normalize_signal("SIGFOO"), None);
        assert_eq!(normalize_signal(""), None);
        assert_eq!(signal_number("SIGTERM"), Some(15));
        assert_eq!(signal_number("winch"), Some(28));
        assert_eq!(signal_number("40"), Some(40));
        assert_eq!(signal_number("nope"), None);
    }
}
