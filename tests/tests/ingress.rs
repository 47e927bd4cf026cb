//! Ingress: a published port answers on every peer's address and reaches only healthy
//! replicas, also while a host is lost.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use knit_tests::{Cluster, cluster_lock, wait_until};
use serde_json::Value;

/// A free TCP port on this machine (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(addr: SocketAddr) -> bool {
    knit_tests::answers(addr, "/")
}

fn healthy_replicas(cluster: &Cluster, name: &str) -> usize {
    cluster
        .peers
        .iter()
        .find_map(|p| p.cli_json::<Vec<Value>>(&["service", "ps", name]).ok())
        .unwrap_or_default()
        .iter()
        .filter(|t| {
            t["desired_state"] == "running" && t["state"] == "running" && t["health"] == "healthy"
        })
        .count()
}

#[test]
fn a_published_port_answers_on_every_peer_and_survives_a_host_loss() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(5, "fast").unwrap();
    let published = free_port();
    let publish = format!("{published}:8080");
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "create",
            "--name",
            "front",
            "--driver",
            "process",
            "--replicas",
            "3",
            "-p",
            &publish,
            "--health-http",
            "/",
            "--health-interval",
            "300ms",
            "--",
            "sh",
            "-c",
            "exec python3 -m http.server $PORT",
        ])
        .unwrap();
    wait_until(Duration::from_secs(60), "3 healthy replicas", || {
        (healthy_replicas(&cluster, "front") == 3).then_some(())
    })
    .unwrap();
    for peer in &cluster.peers {
        let addr = SocketAddr::new(peer.listen.ip(), published);
        wait_until(
            Duration::from_secs(20),
            &format!("port {published} on {}", peer.name),
            || get(addr).then_some(()),
        )
        .unwrap();
    }

    // Lose a host that runs a replica, while a client loops against another peer's port.
    let tasks: Vec<Value> = cluster.peers[0]
        .cli_json(&["service", "ps", "front"])
        .unwrap();
    let victim_id = tasks[0]["node_id"].as_str().unwrap().to_owned();
    let victim = (0..5)
        .find(|&i| cluster.peers[i].node_id().unwrap() == victim_id)
        .unwrap();
    let observer = (0..5).find(|&i| i != victim).unwrap();
    let target = SocketAddr::new(cluster.peers[observer].listen.ip(), published);
    cluster.peers[victim].lose_host();
    let killed = Instant::now();
    let (mut before_suspect, mut after_suspect, mut requests) = (0, 0, 0);
    let mut suspected: Option<Duration> = None;
    while killed.elapsed() < Duration::from_secs(10) {
        if suspected.is_none() {
            let rows = cluster.peers[observer].nodes().unwrap_or_default();
            if rows.iter().any(|r| r.id == victim_id && r.state != "alive") {
                suspected = Some(killed.elapsed());
            }
        }
        requests += 1;
        if !get(target) {
            if suspected.is_some() {
                after_suspect += 1
            } else {
                before_suspect += 1
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "{requests} requests during a host loss: {before_suspect} failed before the host was suspect ({suspected:?}), {after_suspect} after"
    );
    assert!(suspected.is_some(), "the victim was suspected within 10 s");
    assert_eq!(
        after_suspect, 0,
        "no failed request once the host is suspect"
    );
}

#[test]
fn a_taken_port_is_reported_not_fatal() {
    let _lock = cluster_lock();
    let cluster = Cluster::start(1, "fast").unwrap();
    let taken =
        std::net::TcpListener::bind(SocketAddr::new(cluster.peers[0].listen.ip(), 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "create",
            "--name",
            "clash",
            "--driver",
            "process",
            "-p",
            &format!("{port}:8080"),
            "--",
            "sleep",
            "600",
        ])
        .unwrap();
    let (row, _) = wait_until(Duration::from_secs(20), "the bind error in node ls", || {
        let rows: Vec<Value> = cluster.peers[0].cli_json(&["node", "ls"]).ok()?;
        rows.into_iter().find(|r| {
            r["ingress_errors"]
                .as_array()
                .is_some_and(|e| !e.is_empty())
        })
    })
    .unwrap();
    assert!(
        row["ingress_errors"][0]
            .as_str()
            .unwrap()
            .contains(&port.to_string()),
        "{row}"
    );
    assert!(
        cluster.peers[0]
            .cli(&["node", "ls"])
            .unwrap()
            .status
            .success(),
        "the peer runs on"
    );
}

/// Holds `count` idle TCP connections to `addr` open from a child process (it raises its
/// own open-files limit) until killed; prints how many it got.
fn hold_connections(addr: SocketAddr, count: usize) -> std::process::Child {
    let script = format!(
        r#"
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, {count} + 256), hard))
held = []
for _ in range({count}):
    try:
        held.append(socket.create_connection(("{ip}", {port}), timeout=2))
    except OSError:
        pass
print(len(held), flush=True)
time.sleep(120)
"#,
        ip = addr.ip(),
        port = addr.port(),
    );
    std::process::Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs")
}

#[test]
fn thousands_of_idle_connections_on_one_port_leave_the_others_answering() {
    let _lock = cluster_lock();
    let cluster = Cluster::start(1, "fast").unwrap();
    let peer = &cluster.peers[0];
    let (flooded, quiet) = (free_port(), free_port());
    for (name, port) in [("flooded", flooded), ("quiet", quiet)] {
        peer.cli_ok(&[
            "service",
            "create",
            "--name",
            name,
            "--driver",
            "process",
            "-p",
            &format!("{port}:8080"),
            "--",
            "sh",
            "-c",
            "exec python3 -m http.server $PORT",
        ])
        .unwrap();
    }
    let ip = peer.listen.ip();
    for port in [flooded, quiet] {
        wait_until(Duration::from_secs(30), &format!("port {port}"), || {
            get(SocketAddr::new(ip, port)).then_some(())
        })
        .unwrap();
    }
    let mut holder = hold_connections(SocketAddr::new(ip, flooded), 4000);
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let holder = Kill(&mut holder);
    let mut line = String::new();
    let stdout = holder.0.stdout.take().expect("stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    eprintln!("holding {} connections to port {flooded}", line.trim());
    // The other port answers at once, every time.
    let started = Instant::now();
    for _ in 0..20 {
        assert!(
            get(SocketAddr::new(ip, quiet)),
            "the quiet port stopped answering"
        );
    }
    eprintln!("20 requests to the quiet port in {:?}", started.elapsed());
    let metrics = peer.metrics_text(Duration::from_secs(5)).unwrap();
    let rejected: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("knit_ingress_rejected_total")
                && l.contains(&format!("port=\"{flooded}\""))
        })
        .filter_map(|l| l.rsplit(" ").next()?.parse::<f64>().ok())
        .sum();
    eprintln!("{rejected} connections to port {flooded} refused at its cap");
    assert!(
        rejected >= 2000.0,
        "the port's cap held: {rejected} refused"
    );
    drop(holder);
}
