//! Healing with the `docker` driver: real peers, real containers from an image built on
//! this host, a host lost by SIGKILL of its peer and removal of its containers.
//! Skips with a message when Docker is missing, unless `KNIT_REQUIRE_DOCKER=1`.

use std::collections::BTreeMap;
use std::time::Duration;

use knit_tests::{Cluster, cluster_lock, images, remove_containers, wait_until};
use serde_json::Value;

/// Whether the container of `node` (id) answers on its host port: published on that
/// peer's own address, not on every interface.
fn http_ok(cluster: &Cluster, node: &str, port: u16) -> bool {
    let Some(peer) = cluster
        .peers
        .iter()
        .find(|p| p.node_id().is_ok_and(|id| id == node))
    else {
        return false;
    };
    let own = knit_tests::answers(std::net::SocketAddr::new(peer.listen.ip(), port), "/");
    let elsewhere = knit_tests::answers(([127, 0, 0, 1], port).into(), "/");
    own && !elsewhere
}

/// Slot -> (node id, host port), once `replicas` slots run healthy on their owners and
/// nothing else of the service runs on a reachable node.
fn converged(
    cluster: &Cluster,
    name: &str,
    replicas: usize,
) -> Option<BTreeMap<String, (String, u16)>> {
    let peer = cluster
        .peers
        .iter()
        .find(|p| p.cli(&["node", "ls"]).is_ok_and(|o| o.status.success()))?;
    let tasks: Vec<Value> = peer.cli_json(&["service", "ps", name]).ok()?;
    let tasks: Vec<&Value> = tasks.iter().filter(|t| t["state"] != "lost").collect();
    let serving: BTreeMap<String, (String, u16)> = tasks
        .iter()
        .filter(|t| {
            t["desired_state"] == "running" && t["state"] == "running" && t["health"] == "healthy"
        })
        .filter_map(|t| {
            let port = u16::try_from(t["host_port"].as_u64()?).ok()?;
            Some((
                t["slot"].as_str()?.to_owned(),
                (t["node_id"].as_str()?.to_owned(), port),
            ))
        })
        .collect();
    (serving.len() == replicas && tasks.len() == replicas).then_some(serving)
}

fn containers(label: &str) -> usize {
    let out = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("label={label}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .count()
}

#[test]
fn docker_replicas_heal_after_a_host_loss_and_restart_after_a_crash() {
    let Some(image) = images::busybox_image().unwrap() else {
        return;
    };
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(5, "fast").unwrap();
    // Containers of a previous run of this service name would confuse the count.
    remove_containers("knit.service=site");
    let _cleanup = Guard("site");
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "create",
            "--name",
            "site",
            "--replicas",
            "10",
            "-p",
            "8088:8080",
            "--restart-delay",
            "200ms",
            // knit's own probe, which reaches the container on its node's address.
            "--health-http",
            "/",
            "--health-interval",
            "250ms",
            "--stop-grace-period",
            "2s",
            &image,
        ])
        .unwrap();
    let (placed, took) = wait_until(Duration::from_secs(120), "10 healthy containers", || {
        converged(&cluster, "site", 10)
    })
    .unwrap();
    eprintln!("10 containers running and healthy after {took:?}");
    assert_eq!(
        containers("knit.service=site"),
        10,
        "each slot runs exactly once"
    );
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    for (node, port) in placed.values() {
        *load.entry(node).or_default() += 1;
        assert!(
            http_ok(&cluster, node, *port),
            "container on port {port} answers on its node's address only"
        );
    }
    assert!(load.values().all(|&n| n <= 3), "bounded load: {load:?}");

    let busiest = load
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(id, _)| (*id).to_owned())
        .unwrap();
    let victim = (0..5)
        .find(|&i| cluster.peers[i].node_id().unwrap() == busiest)
        .unwrap();
    cluster.peers[victim].lose_host();
    let (healed, took) = wait_until(
        Duration::from_secs(60),
        "10 containers on the survivors",
        || converged(&cluster, "site", 10).filter(|m| m.values().all(|(n, _)| *n != busiest)),
    )
    .unwrap();
    eprintln!("host loss healed after {took:?}");
    for (node, port) in healed.values() {
        assert!(
            http_ok(&cluster, node, *port),
            "container on {node} port {port} answers"
        );
    }

    // docker kill one container: the restart policy brings the slot back.
    let (_, port) = healed["site.1"].clone();
    let out = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter", "label=knit.slot=site.1"])
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!id.is_empty());
    std::process::Command::new("docker")
        .args(["kill", &id])
        .output()
        .unwrap();
    let (_, took) = wait_until(Duration::from_secs(60), "site.1 back", || {
        converged(&cluster, "site", 10).filter(|m| m["site.1"].1 != port)
    })
    .unwrap();
    eprintln!("killed container replaced after {took:?}");

    // Restart a peer without touching its containers: nothing starts twice.
    let survivor = (0..5).find(|&i| i != victim).unwrap();
    cluster.peers[survivor].kill9();
    cluster.peers[survivor].start(None, None).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    wait_until(Duration::from_secs(60), "10 healthy containers", || {
        converged(&cluster, "site", 10)
    })
    .unwrap();
    assert_eq!(containers("knit.service=site"), 10);
}

/// Removes the containers of a test's service however the test ends.
struct Guard(&'static str);

impl Drop for Guard {
    fn drop(&mut self) {
        remove_containers(&format!("knit.service={}", self.0));
    }
}

#[test]
fn a_container_knit_stops_reads_as_shut_down_though_it_exits_137() {
    let Some(image) = images::busybox_image().unwrap() else {
        return;
    };
    let _lock = cluster_lock();
    let cluster = Cluster::start(2, "fast").unwrap();
    remove_containers("knit.service=stub");
    let _cleanup = Guard("stub");
    // The image's server runs as PID 1 and ignores SIGTERM: a stop ends it with SIGKILL at
    // the end of the grace, exit code 137.
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "create",
            "--name",
            "stub",
            "--replicas",
            "2",
            "--stop-grace-period",
            "1s",
            &image,
        ])
        .unwrap();
    let running_at = |version: u64| {
        move |cluster: &Cluster| {
            let tasks: Vec<Value> = cluster.peers[0].cli_json(&["service", "ps", "stub"]).ok()?;
            let up = tasks
                .iter()
                .filter(|t| t["state"] == "running" && t["spec_version"] == version)
                .count();
            (up == 2 && tasks.len() == 2).then_some(())
        }
    };
    wait_until(Duration::from_secs(120), "2 containers", || {
        running_at(1)(&cluster)
    })
    .unwrap();
    cluster.peers[1]
        .cli_ok(&["service", "update", "--env-add", "WAVE=2", "stub"])
        .unwrap();
    wait_until(
        Duration::from_secs(120),
        "2 containers of version 2",
        || running_at(2)(&cluster),
    )
    .unwrap();
    let history: Vec<Value> = cluster.peers[0]
        .cli_json(&["service", "ps", "stub", "--history"])
        .unwrap();
    let ended: Vec<&Value> = history
        .iter()
        .filter(|t| t["desired_state"] == "shutdown")
        .collect();
    assert_eq!(ended.len(), 2, "the two replaced containers: {history:#?}");
    for task in ended {
        assert_eq!(task["state"], "shutdown", "stopped by knit: {task:#}");
        assert!(task["error"].is_null(), "no error: {task:#}");
    }
}
