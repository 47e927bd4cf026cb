//! The event stream (`/v1/events`) and the dashboard (`/ui`) end to end: real peers, a
//! process service, and Chromium reading the page as it updates itself.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use knit_tests::{Cluster, cluster_lock, create_web_service};

/// One server-sent event: its name and data.
#[derive(Debug)]
struct Sse {
    event: String,
    data: serde_json::Value,
}

/// Reads `GET /v1/events` from an API socket.
struct EventReader {
    lines: BufReader<UnixStream>,
}

impl EventReader {
    fn open(socket: &Path) -> Result<Self> {
        let mut stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        // HTTP/1.0: the body is the stream itself, not chunked.
        stream.write_all(b"GET /v1/events HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut lines = BufReader::new(stream);
        let mut status = String::new();
        lines.read_line(&mut status)?;
        if !status.contains(" 200 ") {
            bail!("GET /v1/events: {status}");
        }
        loop {
            let mut header = String::new();
            lines.read_line(&mut header)?;
            if header.trim().is_empty() {
                break;
            }
        }
        Ok(Self { lines })
    }

    /// The next event (comments and `retry` skipped).
    fn next(&mut self) -> Result<Sse> {
        let (mut event, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            if self.lines.read_line(&mut line)? == 0 {
                bail!("the stream ended");
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !event.is_empty() {
                    let data = serde_json::from_str(&data)
                        .with_context(|| format!("event {event}: {data}"))?;
                    return Ok(Sse { event, data });
                }
                continue;
            }
            if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_owned();
            } else if let Some(text) = line.strip_prefix("data: ") {
                data.push_str(text);
            }
        }
    }

    /// Reads events until `want` holds for one, for up to `limit`.
    fn until(&mut self, limit: Duration, want: impl Fn(&Sse) -> bool) -> Result<Sse> {
        let started = Instant::now();
        while started.elapsed() < limit {
            let event = self.next()?;
            if want(&event) {
                return Ok(event);
            }
        }
        bail!("no such event within {limit:?}")
    }
}

#[test]
fn the_event_stream_sends_the_picture_then_each_change() {
    let _lock = cluster_lock();
    let cluster = Cluster::start(1, "fast").expect("a peer");
    let p0 = &cluster.peers[0];
    let id = p0.node_id().unwrap();
    let mut events = EventReader::open(&p0.api).unwrap();
    // The picture first: this node, then `synced`.
    let mut nodes = Vec::new();
    loop {
        let e = events.next().unwrap();
        match e.event.as_str() {
            "node" => nodes.push(e.data),
            "synced" => break,
            _ => {}
        }
    }
    assert!(
        nodes
            .iter()
            .any(|n| n["key"] == id.as_str() && n["value"]["state"] == "alive"),
        "{nodes:?}"
    );
    create_web_service(&cluster, "web", 2, "", &[]).unwrap();
    let service = events
        .until(Duration::from_secs(10), |e| {
            e.event == "service" && e.data["key"] == "web"
        })
        .unwrap();
    assert_eq!(service.data["value"]["replicas"], 2, "{service:?}");
    let running = events
        .until(Duration::from_secs(30), |e| {
            e.event == "replica" && e.data["value"]["state"] == "running"
        })
        .unwrap();
    assert_eq!(running.data["value"]["node_id"], id.as_str(), "{running:?}");
    assert_eq!(running.data["value"]["current"], true, "{running:?}");
    p0.cli_ok(&["service", "rm", "web"]).unwrap();
    events
        .until(Duration::from_secs(10), |e| {
            e.event == "service" && e.data["key"] == "web" && e.data["value"].is_null()
        })
        .unwrap();
}

#[test]
fn the_event_stream_and_the_dashboard_check_the_host() {
    let _lock = cluster_lock();
    let cluster = Cluster::start(1, "fast").expect("a peer");
    let p0 = &cluster.peers[0];
    for path in ["/v1/events", "/ui"] {
        let mut stream = UnixStream::connect(&p0.api).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let request = format!("GET {path} HTTP/1.0\r\nHost: evil.example\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut status = String::new();
        BufReader::new(stream).read_line(&mut status).unwrap();
        assert!(status.contains(" 403 "), "{path}: {status}");
    }
    let page = p0.api_get("/ui", Duration::from_secs(10)).unwrap();
    assert!(page.contains("<title>knit</title>"), "{page}");
}
