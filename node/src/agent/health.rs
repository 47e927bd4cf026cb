//! Health probes: an HTTP GET against the replica's host port (with a response-time
//! threshold), or a command (run in the container, or on the host for processes).
//! A replica turns unhealthy only after `retries` failures in a row, and failures in its
//! start period do not count.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use knit_scheduler::Health;
use knit_scheduler::spec::{HealthCheck, Probe};

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Pass,
    Fail,
}

/// A replica's health as its probes have found it so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker {
    pub(crate) failures_in_a_row: u32,
    pub(crate) passed_once: bool,
    pub(crate) last_probe: Option<Instant>,
    pub(crate) probing: bool,
}

/// Until a replica's first probe passes, an HTTP probe runs at least this often: a replica
/// started to heal a lost host counts from its first passing probe, and one probe a whole
/// interval (30 s by default) after a start that came too early would hold the heal up.
/// Docker's `--health-start-interval` serves the same end.
pub(crate) const START_INTERVAL_HTTP: Duration = Duration::from_millis(100);
/// The same for a command probe, which costs the engine an exec each time.
pub(crate) const START_INTERVAL_COMMAND: Duration = Duration::from_secs(1);

impl Tracker {
    /// Time between probes now: the check's interval, shorter until the first pass.
    fn interval(&self, check: &HealthCheck) -> Duration {
        let interval = Duration::from_millis(check.interval_ms);
        if self.passed_once {
            return interval;
        }
        let start = match check.probe {
            Probe::Http { .. } => START_INTERVAL_HTTP,
            Probe::Command(_) => START_INTERVAL_COMMAND,
        };
        interval.min(start)
    }

    /// Whether a probe is due.
    pub(crate) fn due(&self, check: &HealthCheck, now: Instant) -> bool {
        !self.probing
            && self
                .last_probe
                .is_none_or(|t| now.duration_since(t) >= self.interval(check))
    }

    /// When the next probe falls due (now, if none ran yet).
    pub(crate) fn next_due(&self, check: &HealthCheck) -> Instant {
        self.last_probe
            .map_or_else(Instant::now, |t| t + self.interval(check))
    }

    pub(crate) fn record(&mut self, outcome: Outcome) {
        self.probing = false;
        self.last_probe = Some(Instant::now());
        match outcome {
            Outcome::Pass => {
                self.failures_in_a_row = 0;
                self.passed_once = true;
            }
            Outcome::Fail => self.failures_in_a_row += 1,
        }
    }

    /// The health to report for a replica running for `age`.
    pub(crate) fn health(&self, check: &HealthCheck, age: Duration) -> Health {
        let in_start_period = age < Duration::from_millis(check.start_period_ms);
        // Probes before the first pass come faster than the interval; the failures they
        // count must not make a replica unhealthy sooner than probes at the interval would.
        let retries = check.retries.max(1);
        let too_young = !self.passed_once
            && age < Duration::from_millis(check.interval_ms.saturating_mul(u64::from(retries)));
        if self.failures_in_a_row >= retries && !in_start_period && !too_young {
            Health::Unhealthy
        } else if self.failures_in_a_row == 0 && self.passed_once {
            Health::Healthy
        } else if self.last_probe.is_none() {
            Health::Unknown
        } else {
            Health::Starting
        }
    }
}

/// The host port an HTTP probe targets.
pub(crate) fn probe_port(
    check: &HealthCheck,
    host_ports: &std::collections::BTreeMap<u16, u16>,
) -> Option<u16> {
    match &check.probe {
        Probe::Http {
            port: Some(target), ..
        } => host_ports.get(target).copied(),
        _ => host_ports.values().next().copied(),
    }
}

/// One HTTP probe, blocking (run it on a blocking thread): 2xx or 3xx within the timeout
/// and under the response-time threshold passes.
pub(crate) fn http_probe(
    ip: std::net::IpAddr,
    port: u16,
    path: &str,
    check: &HealthCheck,
) -> Outcome {
    let timeout = Duration::from_millis(check.timeout_ms.max(1));
    let started = Instant::now();
    let addr = SocketAddr::new(ip, port);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return Outcome::Fail;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\nUser-Agent: knit-health\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return Outcome::Fail;
    }
    let mut head = [0u8; 12];
    if stream.read_exact(&mut head).is_err() {
        return Outcome::Fail;
    }
    let status = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse::<u16>().ok());
    let slow = check
        .response_time_max_ms
        .is_some_and(|max| started.elapsed() > Duration::from_millis(max));
    match status {
        Some(200..=399) if !slow => Outcome::Pass,
        _ => Outcome::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhealthy_only_after_retries_and_outside_the_start_period() {
        let mut check = HealthCheck::new(Probe::Command(vec!["true".into()]));
        check.retries = 3;
        check.start_period_ms = 1000;
        let mut t = Tracker::default();
        assert_eq!(t.health(&check, Duration::ZERO), Health::Unknown);
        t.record(Outcome::Pass);
        assert_eq!(t.health(&check, Duration::ZERO), Health::Healthy);
        t.record(Outcome::Fail);
        t.record(Outcome::Fail);
        assert_eq!(t.health(&check, Duration::from_secs(5)), Health::Starting);
        t.record(Outcome::Fail);
        assert_eq!(
            t.health(&check, Duration::from_millis(500)),
            Health::Starting,
            "start period"
        );
        assert_eq!(t.health(&check, Duration::from_secs(5)), Health::Unhealthy);
    }

    #[test]
    fn probes_run_often_until_the_first_pass_then_at_the_interval() {
        let mut check = HealthCheck::new(Probe::Http {
            path: "/".into(),
            port: None,
        });
        check.interval_ms = 30_000;
        let mut t = Tracker::default();
        assert!(
            t.next_due(&check) <= Instant::now(),
            "never probed: due now"
        );
        // Before the first pass: every 100 ms, not every 30 s.
        t.record(Outcome::Fail);
        let last = t.last_probe.unwrap();
        assert_eq!(t.next_due(&check), last + START_INTERVAL_HTTP);
        assert!(!t.due(&check, last + Duration::from_millis(99)));
        assert!(t.due(&check, last + START_INTERVAL_HTTP));
        // After it: the check's own interval.
        t.record(Outcome::Pass);
        let last = t.last_probe.unwrap();
        assert_eq!(t.next_due(&check), last + Duration::from_secs(30));
        assert!(!t.due(&check, last + Duration::from_secs(29)));
        // Fast failures before the first pass do not make it unhealthy before three
        // intervals have passed, as probes at the interval could not have.
        let mut young = Tracker::default();
        for _ in 0..5 {
            young.record(Outcome::Fail);
        }
        assert_eq!(
            young.health(&check, Duration::from_secs(1)),
            Health::Starting
        );
        assert_eq!(
            young.health(&check, Duration::from_secs(90)),
            Health::Unhealthy
        );
        // A command probe starts at most every second.
        let command = HealthCheck::new(Probe::Command(vec!["true".into()]));
        let mut t = Tracker::default();
        t.record(Outcome::Fail);
        assert_eq!(
            t.next_due(&command),
            t.last_probe.unwrap() + START_INTERVAL_COMMAND
        );
    }

    #[test]
    fn http_probe_fails_on_a_closed_port() {
        let check = HealthCheck::new(Probe::Http {
            path: "/".into(),
            port: None,
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
        assert_eq!(http_probe(loopback, port, "/", &check), Outcome::Fail);
    }
}
