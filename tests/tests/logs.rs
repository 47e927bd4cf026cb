//! `knit service logs` across hosts: a global service with a replica on each of 3 peers
//! prints a line every 200 ms carrying its wall-clock time; one peer is asked for the logs.
//! `-f` must show the other peers' lines, prefixed `slot@node`, within 1 s of their being
//! printed; `--tail 2` gives at most 2 lines per replica; a peer killed with SIGKILL is
//! reported and neither a read nor a follow hangs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use knit_tests::{
    Cluster, Peer, clear_knit_env, cluster_lock, knit_bin, percentile, wait_until, wall_ms,
};
use serde_json::Value;

const SERVICE: &str = "ticker";
/// Each replica prints `tick <its wall-clock ms>` every 200 ms.
const TICKER: &str = r#"while :; do echo "tick $(date +%s%3N)"; sleep 0.2; done"#;

/// A running `knit service logs -f`, killed on drop; its lines (stdout and stderr) arrive
/// on channels stamped with when this process read them.
struct Follow {
    child: Child,
    out: mpsc::Receiver<(u64, String)>,
    err: mpsc::Receiver<(u64, String)>,
}

impl Follow {
    fn start(peer: &Peer, extra: &[&str]) -> Self {
        let mut cmd = Command::new(knit_bin());
        clear_knit_env(&mut cmd)
            .arg("--api")
            .arg(&peer.api)
            .args(["service", "logs", "-f", SERVICE])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("knit service logs -f");
        let out = lines(child.stdout.take().expect("stdout"));
        let err = lines(child.stderr.take().expect("stderr"));
        Self { child, out, err }
    }

    /// SIGINT (Ctrl-C); true when the command exits 0 within `limit`.
    fn interrupt(&mut self, limit: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<(u64, String)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send((wall_ms(), line)).is_err() {
                return;
            }
        }
    });
    rx
}

/// `ticker.N@node | tick MS` -> (`ticker.N@node`, MS).
fn parse(line: &str) -> Option<(String, u64)> {
    let (prefix, text) = line.split_once(" | ")?;
    let ms = text.strip_prefix("tick ")?.trim().parse().ok()?;
    Some((prefix.to_owned(), ms))
}

/// The node name of a prefix `ticker.N@node`.
fn node_of(prefix: &str) -> &str {
    prefix.rsplit_once('@').map_or("", |(_, node)| node)
}

/// Node name -> slot for every running replica, once each of the 3 peers runs one.
fn placed(peer: &Peer) -> Option<BTreeMap<String, String>> {
    let rows: Vec<Value> = peer.cli_json(&["service", "ps", SERVICE]).ok()?;
    let running: BTreeMap<String, String> = rows
        .iter()
        .filter(|t| t["state"] == "running")
        .filter_map(|t| {
            Some((
                t["node"].as_str()?.to_owned(),
                t["slot"].as_str()?.to_owned(),
            ))
        })
        .collect();
    (running.len() == 3).then_some(running)
}

#[test]
fn logs_come_from_every_host_and_a_dead_host_is_reported() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(3, "fast").expect("a 3-peer cluster");
    cluster.peers[0]
        .cli_ok(&[
            "service", "create", "--name", SERVICE, "--mode", "global", "--driver", "process",
            "--detach", "--", "sh", "-c", TICKER,
        ])
        .expect("service create");
    let (slots, _) = wait_until(Duration::from_secs(60), "a replica on each peer", || {
        placed(&cluster.peers[0])
    })
    .expect("placement");
    eprintln!("replicas: {slots:?}");
    // Let every replica print lines for a while (older than --since below reaches).
    std::thread::sleep(Duration::from_secs(5));

    // --tail 2: at most 2 lines per replica, from all three hosts.
    let tail = cluster.peers[0]
        .cli_ok(&["service", "logs", SERVICE, "--tail", "2"])
        .expect("service logs --tail 2");
    let mut per_replica: BTreeMap<String, usize> = BTreeMap::new();
    for line in tail.lines() {
        let (prefix, _) = parse(line).unwrap_or_else(|| panic!("unexpected line {line:?}"));
        *per_replica.entry(prefix).or_default() += 1;
    }
    let nodes: BTreeSet<&str> = per_replica.keys().map(|p| node_of(p)).collect();
    assert_eq!(nodes, BTreeSet::from(["p0", "p1", "p2"]), "{tail}");
    assert!(
        per_replica.values().all(|&n| (1..=2).contains(&n)),
        "{per_replica:?}"
    );

    // -t puts each line's time before its text; --since 1s leaves out older lines.
    let stamped = cluster.peers[0]
        .cli_ok(&["service", "logs", SERVICE, "--tail", "1", "-t"])
        .expect("service logs -t");
    for line in stamped.lines() {
        let (_, text) = line.split_once(" | ").unwrap_or_default();
        let (time, rest) = text.split_once(' ').unwrap_or_default();
        assert!(time.ends_with('Z') && rest.starts_with("tick "), "{line}");
    }
    // The process driver knows a past line's time to about a second (when the peer saw
    // its file reach it), so "old" is older than 3 s here.
    let asked = wall_ms();
    let recent = cluster.peers[0]
        .cli_ok(&["service", "logs", SERVICE, "--since", "1s"])
        .expect("service logs --since 1s");
    let recent: Vec<(String, u64)> = recent.lines().filter_map(parse).collect();
    let old = recent.iter().filter(|(_, ms)| ms + 3000 < asked).count();
    assert_eq!(old, 0, "--since 1s showed older lines: {recent:?}");
    assert!(!recent.is_empty(), "--since 1s showed nothing");
    let all = cluster.peers[0]
        .cli_ok(&["service", "logs", SERVICE])
        .expect("service logs");
    let oldest = all.lines().filter_map(parse).map(|(_, ms)| ms).min();
    assert!(
        oldest.is_some_and(|ms| ms + 4000 < asked),
        "the full logs reach back at least 4 s"
    );

    // A bad --since is refused with what to write.
    let bad = cluster.peers[0]
        .cli(&["service", "logs", SERVICE, "--since", "yesterday"])
        .expect("service logs --since yesterday");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"));

    // -f: lines from the other peers within 1 s of their being printed.
    let mut follow = Follow::start(&cluster.peers[0], &["--tail", "0"]);
    let started = wall_ms();
    let mut latency_ms: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let Ok((seen_ms, line)) = follow.out.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let (prefix, printed_ms) =
            parse(&line).unwrap_or_else(|| panic!("unexpected line {line:?}"));
        assert!(
            printed_ms + 50 >= started,
            "--tail 0 showed an old line: {line}"
        );
        latency_ms
            .entry(node_of(&prefix).to_owned())
            .or_default()
            .push(seen_ms.saturating_sub(printed_ms));
    }
    for node in ["p0", "p1", "p2"] {
        let ms = latency_ms.get(node).cloned().unwrap_or_default();
        assert!(ms.len() >= 15, "{node}: only {} lines in 5 s", ms.len());
        let (p50, p95, max) = (
            percentile(&ms, 0.5).unwrap_or(0),
            percentile(&ms, 0.95).unwrap_or(0),
            ms.iter().max().copied().unwrap_or(0),
        );
        eprintln!(
            "print-to-display latency from {node}: p50 {p50} ms, p95 {p95} ms, max {max} ms ({} lines)",
            ms.len()
        );
        assert!(max < 1000, "{node}: a line took {max} ms to show");
    }

    // SIGKILL p2 while following. A read right after the kill (p2 not yet seen down)
    // reports p2 as not answering and does not hang.
    cluster.peers[2].kill9();
    let killed = Instant::now();
    let asked = Instant::now();
    let read = cluster.peers[1]
        .cli(&["service", "logs", SERVICE, "--tail", "1"])
        .expect("service logs after the kill");
    let took = asked.elapsed();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&read.stdout),
        String::from_utf8_lossy(&read.stderr),
    );
    eprintln!("read after the kill took {took:?}; stderr: {stderr}");
    assert!(read.status.success(), "{stderr}");
    assert!(stderr.contains("error: node p2"), "{stderr}");
    assert!(took < Duration::from_secs(8), "the read took {took:?}");
    let shown: BTreeSet<String> = stdout
        .lines()
        .filter_map(parse)
        .map(|(p, _)| node_of(&p).to_owned())
        .collect();
    assert!(shown.contains("p0") && shown.contains("p1"), "{stdout}");
    // ...and the follow reports it (its connection's idle timeout) and goes on.
    let (note, _) = wait_until(Duration::from_secs(15), "the follow to report p2", || {
        follow
            .err
            .try_iter()
            .map(|(_, l)| l)
            .find(|l| l.starts_with("error: node p2"))
    })
    .expect("the follow reports the dead peer");
    eprintln!("follow reported after {:?}: {note}", killed.elapsed());
    while follow.out.try_recv().is_ok() {}
    let (line, _) = wait_until(
        Duration::from_secs(3),
        "a line from p1 after the kill",
        || {
            follow
                .out
                .try_iter()
                .map(|(_, l)| l)
                .find(|l| parse(l).is_some_and(|(p, _)| node_of(&p) == "p1"))
        },
    )
    .expect("the follow goes on");
    eprintln!("after the kill: {line}");
    assert!(
        follow.interrupt(Duration::from_secs(3)),
        "Ctrl-C ends the follow cleanly"
    );
}
