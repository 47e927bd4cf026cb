//! Preventive healing: a node whose telemetry crosses a threshold drains itself, shows why,
//! and never drains so many nodes that the services no longer fit.

use std::time::Duration;

use knit_tests::{Cluster, cluster_lock, wait_until};
use serde_json::Value;

fn node_rows(cluster: &Cluster) -> Vec<Value> {
    cluster
        .peers
        .iter()
        .find_map(|p| p.cli_json::<Vec<Value>>(&["node", "ls"]).ok())
        .unwrap_or_default()
}

#[test]
fn a_failing_disk_drains_its_node_but_never_all_nodes() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(2, "fast").unwrap();
    let seed = cluster.peers[0].listen;
    let token = cluster.token().unwrap().to_owned();
    // Every disk is more than 1% full: this node's threshold says it is failing.
    let i = cluster.add_unstarted();
    cluster.peers[i]
        .start_with(Some(seed), Some(&token), &["--drain-disk-percent", "1"])
        .unwrap();
    cluster.wait_all_alive(Duration::from_secs(30)).unwrap();
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "create",
            "--name",
            "s",
            "--driver",
            "process",
            "--replicas",
            "3",
            "--",
            "sleep",
            "600",
        ])
        .unwrap();
    let failing = cluster.peers[i].node_id().unwrap();
    let (row, took) = wait_until(
        Duration::from_secs(30),
        "the failing node to drain itself",
        || {
            node_rows(&cluster)
                .into_iter()
                .find(|r| r["id"] == failing.as_str() && r["availability"] == "drain")
        },
    )
    .unwrap();
    eprintln!("self-drained after {took:?}: {}", row["condition"]["note"]);
    assert!(
        row["condition"]["note"].as_str().unwrap().contains("disk"),
        "{row}"
    );
    wait_until(
        Duration::from_secs(30),
        "no replica on the drained node",
        || {
            let tasks: Vec<Value> = cluster.peers[0].cli_json(&["service", "ps", "s"]).ok()?;
            let running = tasks.iter().filter(|t| t["state"] == "running").count();
            (running == 3 && tasks.iter().all(|t| t["node_id"] != failing.as_str())).then_some(())
        },
    )
    .unwrap();

    // Now every node's disk "fails": they may not all drain.
    for p in 0..2 {
        cluster.peers[p].terminate(Duration::from_secs(5)).unwrap();
        let join = (p == 1).then_some(seed);
        cluster.peers[p]
            .start_with(join, None, &["--drain-disk-percent", "1"])
            .unwrap();
    }
    cluster.wait_all_alive(Duration::from_secs(30)).unwrap();
    let (rows, _) = wait_until(
        Duration::from_secs(30),
        "every node to report its failing disk",
        || {
            let rows = node_rows(&cluster);
            (rows.len() == 3 && rows.iter().all(|r| !r["condition"]["failing"].is_null()))
                .then_some(rows)
        },
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let rows = if rows.is_empty() {
        rows
    } else {
        node_rows(&cluster)
    };
    let active: Vec<&Value> = rows
        .iter()
        .filter(|r| r["availability"] == "active")
        .collect();
    assert!(!active.is_empty(), "some node stays active: {rows:#?}");
    assert!(
        active.iter().any(|r| r["condition"]["note"]
            .as_str()
            .unwrap_or_default()
            .contains("would no longer fit")),
        "the node that stays says why: {rows:#?}"
    );
    let tasks: Vec<Value> = cluster.peers[0].cli_json(&["service", "ps", "s"]).unwrap();
    assert!(tasks.iter().all(|t| t["state"] != "pending"), "{tasks:#?}");
}
