//! Plain HTTP for tests, without a client library: GETs and POSTs to replicas, published
//! ports, `/metrics` and the admin API (over its Unix socket too), each bounded in time
//! and size.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::Cluster;

/// The most [`http_get`] reads of one response.
const HTTP_RESPONSE_MAX_BYTES: usize = 4 << 20;

/// A plain HTTP/1.0 GET of `path` on `addr` (a replica, a published port, `/metrics`),
/// without a client library;
/// `limit` bounds the connect and the whole read. Returns the body of a `200` response.
pub fn http_get(addr: SocketAddr, path: &str, limit: Duration) -> Result<String> {
    http_request(addr, "GET", path, None, limit)
}

/// Creates, through `p0`, a `process` service of `replicas` small Python web servers with
/// target port 8080 published as 8080, healthy while `<cluster root>/www/<slot>/ok` exists
/// (a test removes the file to make a replica unhealthy). `prelude` runs first in each
/// replica's shell (e.g. to fail on purpose); `extra` flags go before the command.
pub fn create_web_service(
    cluster: &Cluster,
    name: &str,
    replicas: u32,
    prelude: &str,
    extra: &[&str],
) -> Result<()> {
    let root = cluster.root().join("www");
    let script = format!(
        "{prelude} d={}/$TASK_SLOT; mkdir -p $d && touch $d/ok && cd $d && exec python3 -m http.server $PORT",
        root.display()
    );
    let replicas = replicas.to_string();
    let mut args = vec![
        "service",
        "create",
        "--name",
        name,
        "--driver",
        "process",
        "--replicas",
        &replicas,
        "-p",
        "8080:8080",
        "--health-http",
        "/ok",
        "--health-interval",
        "300ms",
        "--health-retries",
        "2",
        "--health-start-period",
        "5s",
        "--restart-delay",
        "200ms",
    ];
    args.extend_from_slice(extra);
    args.extend(["--", "sh", "-c", &script]);
    cluster.peers[0].cli_ok(&args).map(|_| ())
}

/// `curl` with `args` (10 s at most); returns the HTTP status it printed (`000` when no
/// answer came). For what [`http_request`] cannot do: Unix sockets, client certificates,
/// a foreign `Host`.
pub fn curl_status(args: &[&str]) -> Result<String> {
    let out = crate::run_bounded(
        std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
            ])
            .args(args),
        Duration::from_secs(20),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `GET path` on `addr` answers `200` within 3 s: a replica, or a published port.
pub fn answers(addr: SocketAddr, path: &str) -> bool {
    http_get(addr, path, Duration::from_secs(3)).is_ok()
}

/// A plain HTTP/1.0 POST of the JSON `body` to `path` on `addr`, bounded like
/// [`http_get`]. Returns the body of a `200` response.
pub fn http_post(addr: SocketAddr, path: &str, body: &str, limit: Duration) -> Result<String> {
    http_request(addr, "POST", path, Some(body), limit)
}

/// One HTTP/1.0 exchange over TCP: `method` on `path`, with a JSON `body` if given;
/// `limit` bounds the connect and the whole read. Returns the body of a `200` response;
/// any other status is an error that carries the body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    limit: Duration,
) -> Result<String> {
    let stream = std::net::TcpStream::connect_timeout(&addr, limit)?;
    stream.set_read_timeout(Some(limit))?;
    stream.set_write_timeout(Some(limit))?;
    // One write, without Nagle: a request split over small segments can wait for a
    // delayed ACK.
    stream.set_nodelay(true)?;
    exchange(stream, &addr.to_string(), method, path, body, limit)
}

/// One HTTP/1.0 exchange with an admin API on its Unix socket, like [`http_request`].
pub fn api_request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
    limit: Duration,
) -> Result<String> {
    let stream = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to {}", socket.display()))?;
    stream.set_read_timeout(Some(limit))?;
    stream.set_write_timeout(Some(limit))?;
    exchange(stream, "localhost", method, path, body, limit)
}

fn exchange(
    mut stream: impl std::io::Read + std::io::Write,
    host: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    limit: Duration,
) -> Result<String> {
    let started = Instant::now();
    let request = match body {
        None => format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        Some(body) => format!(
            "{method} {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    };
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    let mut chunk = [0_u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
        if raw.len() > HTTP_RESPONSE_MAX_BYTES {
            bail!("{method} {path} on {host}: response over {HTTP_RESPONSE_MAX_BYTES} bytes");
        }
        if started.elapsed() > limit {
            bail!("{method} {path} on {host}: no full response within {limit:?}");
        }
    }
    let text = String::from_utf8(raw).context("response is not UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("{method} {path} on {host}: no HTTP header"))?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        bail!("{method} {path} on {host}: status {status}: {body}");
    }
    Ok(body.to_owned())
}

/// The value of the sample named `name` in Prometheus/OpenMetrics text (as `/metrics`
/// serves it), read as a whole number (counters may be written as floats, `12.0`).
pub fn metric_value(text: &str, name: &str) -> Result<u64> {
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() == Some(name)
            && let Some(value) = parts.next()
        {
            let value: f64 = value
                .parse()
                .with_context(|| format!("{name}: {value} is not a number"))?;
            // Counters far below 2^52 and never negative.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            return Ok(value as u64);
        }
    }
    bail!("no {name} in /metrics")
}
