//! The load generator: `wrk --latency` when it is installed (or can be), else a small
//! std::net loop with one request per connection; and the figures either one gives.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use knit_tests::report::Samples;

/// What drives the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    Wrk,
    /// The fallback: threads of blocking clients, one request per connection.
    Loop,
}

impl Tool {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Wrk => "wrk --latency",
            Self::Loop => {
                "the built-in std::net loop (wrk could not be installed; one request per connection)"
            }
        }
    }
}

fn wrk_present() -> bool {
    // `wrk -v` prints its version and exits non-zero: that it runs at all is the test.
    Command::new("wrk")
        .arg("-v")
        .output()
        .is_ok_and(|o| !o.stdout.is_empty() || !o.stderr.is_empty())
}

/// `wrk` if present, else after `apt-get install -y wrk`, else the built-in loop.
pub(crate) fn tool() -> Tool {
    if wrk_present() {
        return Tool::Wrk;
    }
    eprintln!("wrk is missing: apt-get install -y wrk…");
    let installed = knit_tests::run_bounded(
        Command::new("apt-get")
            .args(["install", "-y", "wrk"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        Duration::from_secs(300),
    );
    if installed.is_ok_and(|o| o.status.success()) && wrk_present() {
        return Tool::Wrk;
    }
    eprintln!("wrk cannot be installed: falling back to the built-in loop");
    Tool::Loop
}

/// What one run of the load measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Figures {
    pub(crate) requests: u64,
    pub(crate) per_second: f64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    /// Socket errors, timeouts and non-2xx/3xx answers.
    pub(crate) errors: u64,
}

/// Runs the load against `http://addr/` for `duration` with `connections` clients.
pub(crate) fn run(
    tool: Tool,
    addr: SocketAddr,
    duration: Duration,
    connections: usize,
    threads: usize,
) -> Result<Figures> {
    match tool {
        Tool::Wrk => wrk(addr, duration, connections, threads),
        Tool::Loop => Ok(client_loop(addr, duration, connections)),
    }
}

fn wrk(
    addr: SocketAddr,
    duration: Duration,
    connections: usize,
    threads: usize,
) -> Result<Figures> {
    let secs = duration.as_secs().max(1);
    let threads = threads.clamp(1, connections.max(1));
    let out = knit_tests::run_bounded(
        Command::new("wrk").args([
            &format!("-t{threads}"),
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "--timeout",
            "5s",
            "--latency",
            &format!("http://{addr}/"),
        ]),
        duration + Duration::from_secs(60),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("cannot read wrk's report:\n{text}"))
}

/// `1.23ms`, `812.00us`, `1.01s`, `2.00m` as milliseconds.
fn millis(value: &str) -> Option<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(number * scale)
}

/// The figures in wrk's `--latency` report.
fn parse_wrk(text: &str) -> Result<Figures> {
    let mut figures = Figures::default();
    let mut rate = None;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => figures.p50_ms = millis(v),
            ["99%", v] => figures.p99_ms = millis(v),
            ["Requests/sec:", v] => rate = v.parse::<f64>().ok(),
            [n, "requests", "in", ..] => figures.requests = n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                figures.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => {
                figures.errors += n.parse::<u64>().unwrap_or(0);
            }
            _ => {}
        }
    }
    figures.per_second = rate.context("no Requests/sec")?;
    Ok(figures)
}

/// One `GET /` on a new connection; whether the answer was a 200.
fn one_request(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_nodelay(true);
    let request = format!("GET / HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).is_ok() && answer.get(9..12) == Some(b"200".as_slice())
}

/// The fallback: `connections` threads, each one request per connection, for `duration`.
fn client_loop(addr: SocketAddr, duration: Duration, connections: usize) -> Figures {
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new((Vec::<u64>::new(), 0_u64)));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections.max(1))
        .map(|_| {
            let (stop, samples) = (stop.clone(), samples.clone());
            std::thread::spawn(move || {
                let (mut ok, mut errors) = (Vec::new(), 0_u64);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if one_request(addr) {
                        ok.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                    } else {
                        errors += 1;
                    }
                }
                let mut all = samples.lock().unwrap_or_else(PoisonError::into_inner);
                all.0.extend(ok);
                all.1 += errors;
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (latencies, errors) =
        std::mem::take(&mut *samples.lock().unwrap_or_else(PoisonError::into_inner));
    let latencies = Samples::new(latencies);
    // Microsecond latencies and counts far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    let ms = |us: Option<u64>| us.map(|us| us as f64 / 1000.0);
    #[allow(clippy::cast_precision_loss)]
    Figures {
        requests: latencies.count() as u64,
        per_second: latencies.count() as f64 / elapsed,
        p50_ms: ms(latencies.p50()),
        p99_ms: ms(latencies.p99()),
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::{millis, parse_wrk};

    #[test]
    fn reads_a_wrk_report() {
        let text = "Running 10s test @ http://127.0.0.1:8080/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.10ms    1.20ms  40.00ms   90.00%
    Req/Sec     5.00k   300.00     6.00k    70.00%
  Latency Distribution
     50%    2.90ms
     75%    3.50ms
     90%    4.20ms
     99%  812.00us
  99500 requests in 10.00s, 20.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 2
Requests/sec:   9950.12
Transfer/sec:      2.00MB
";
        let f = parse_wrk(text).unwrap();
        assert_eq!(f.requests, 99_500);
        assert!((f.per_second - 9950.12).abs() < 1e-6);
        assert_eq!(f.p50_ms, Some(2.9));
        assert!((f.p99_ms.unwrap() - 0.812).abs() < 1e-9);
        assert_eq!(f.errors, 6);
        assert_eq!(millis("1.50s"), Some(1500.0));
    }
}
