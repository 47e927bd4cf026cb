//! The event stream (`/v1/events`) and the dashboard (`/ui`) end to end: real peers, a
//! process service, and Chromium reading the page as it updates itself.
//!
//! The browser test needs Chromium (Debian's `chromium`, or `$KNIT_CHROMIUM`); without
//! it, it skips with a message, unless `KNIT_REQUIRE_DOCKER` is set (as CI sets it), when
//! it fails. Its screenshots are kept in `target/test-artifacts/`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use knit_tests::browser::{Browser, chromium};
use knit_tests::{Cluster, cluster_lock, create_web_service, wait_until};

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
    assert!(
        ["web.1", "web.2"].contains(&running.data["value"]["slot"].as_str().unwrap_or("")),
        "{running:?}"
    );
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

/// Where the browser test keeps its screenshots: `target/test-artifacts/`.
fn artifacts() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
            PathBuf::from,
        )
        .join("test-artifacts")
}

/// One host column as the page shows it.
#[derive(Debug, serde::Deserialize)]
struct Column {
    name: String,
    state: String,
    /// (slot, state) of each card.
    cards: Vec<(String, String)>,
}

/// The columns of the page, read from its DOM.
const READ_COLUMNS: &str = r#"JSON.stringify([...document.querySelectorAll(".host")].map(h => ({
    name: h.dataset.name,
    state: h.dataset.state,
    cards: [...h.querySelectorAll(".card")].map(c => [c.dataset.slot, c.dataset.state]),
})))"#;

fn columns(browser: &mut Browser) -> Result<Vec<Column>> {
    let text = browser.eval(READ_COLUMNS)?;
    Ok(serde_json::from_str(text.as_str().unwrap_or("[]"))?)
}

/// Whether every slot of `slots` has a running card on a host that is alive.
fn all_running_on_live_hosts(page: &[Column], slots: &[String]) -> bool {
    slots.iter().all(|slot| {
        page.iter().any(|col| {
            col.state == "alive" && col.cards.iter().any(|(s, st)| s == slot && st == "running")
        })
    })
}

#[test]
fn the_dashboard_shows_a_killed_host_down_and_its_replicas_moved() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("KNIT_REQUIRE_DOCKER").is_none(),
            "Chromium is missing: install Debian's chromium (apt-get install -y chromium) or set KNIT_CHROMIUM"
        );
        eprintln!("SKIPPED: no chromium on the PATH (apt-get install -y chromium)");
        return;
    };
    let _lock = cluster_lock();
    let mut cluster = Cluster::new("fast").unwrap();
    for _ in 0..3 {
        cluster.add_unstarted();
    }
    // p0 serves its API on TCP too, in plain HTTP, for the browser.
    let api = std::net::SocketAddr::new(cluster.peers[0].listen.ip(), 7947);
    let tcp = format!("tcp://{api}");
    cluster.peers[0]
        .start_with(None, None, &["--api", &tcp, "--api-insecure"])
        .unwrap();
    let token_file = cluster.peers[0].data_dir.join("join-token");
    let (token, _) = wait_until(Duration::from_secs(20), "the join token", || {
        std::fs::read_to_string(&token_file)
            .ok()
            .map(|t| t.trim().to_owned())
    })
    .unwrap();
    let seed = cluster.peers[0].listen;
    for i in 1..3 {
        cluster.peers[i].start(Some(seed), Some(&token)).unwrap();
    }
    cluster.wait_all_alive(Duration::from_secs(30)).unwrap();
    create_web_service(&cluster, "web", 6, "", &[]).unwrap();
    let slots: Vec<String> = (1..=6).map(|i| format!("web.{i}")).collect();

    let dir = cluster.root().join("browser");
    let mut browser = Browser::open(&chromium, &dir, &format!("http://{api}/ui")).unwrap();
    let shots = artifacts();
    let (page, took) = wait_until(
        Duration::from_secs(60),
        "three hosts and six running replicas on the page",
        || {
            let page = columns(&mut browser).ok()?;
            let names: Vec<&str> = page.iter().map(|c| c.name.as_str()).collect();
            (names == ["p0", "p1", "p2"] && all_running_on_live_hosts(&page, &slots))
                .then_some(page)
        },
    )
    .inspect_err(|_| {
        let _ = browser.screenshot(&shots.join("dashboard-failed.png"));
    })
    .unwrap();
    eprintln!("the page showed every replica running after {took:?}: {page:?}");
    browser
        .screenshot(&shots.join("dashboard-before.png"))
        .unwrap();

    // Lose the host (other than p0, whose API the browser reads) that runs the most:
    // rendezvous hashing may give a host none of the six.
    let cards = |name: &str| {
        page.iter()
            .find(|c| c.name == name)
            .map_or(0, |c| c.cards.len())
    };
    let victim = if cards("p1") > cards("p2") { 1 } else { 2 };
    let victim_name = cluster.peers[victim].name.clone();
    assert!(cards(&victim_name) > 0, "{page:?}");
    cluster.peers[victim].lose_host();
    let (page, took) = wait_until(
        Duration::from_secs(90),
        &format!("{victim_name} down and its replicas on the others"),
        || {
            let page = columns(&mut browser).ok()?;
            let down = page
                .iter()
                .any(|c| c.name == victim_name && c.state == "down");
            (down && all_running_on_live_hosts(&page, &slots)).then_some(page)
        },
    )
    .inspect_err(|_| {
        let _ = browser.screenshot(&shots.join("dashboard-failed.png"));
    })
    .unwrap();
    eprintln!(
        "the page showed {victim_name} down and every replica running elsewhere after {took:?}: {page:?}"
    );
    let shot = shots.join("dashboard.png");
    browser.screenshot(&shot).unwrap();
    eprintln!("screenshot: {}", shot.display());
    let text = browser.eval("document.body.innerText").unwrap();
    assert!(
        text.as_str().is_some_and(|t| t.contains("down")),
        "the page says down: {text}"
    );
}
