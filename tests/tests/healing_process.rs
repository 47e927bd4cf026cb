//! Healing with the `process` driver: real peers, real child processes, real SIGKILLs.
//! The replicas are small Python HTTP servers, one folder each, so a test can make one
//! unhealthy by removing the file its health check asks for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use knit_tests::{Cluster, cluster_lock, wait_until};
use serde_json::Value;

fn tasks(cluster: &Cluster, name: &str) -> Vec<Value> {
    let peer = cluster
        .peers
        .iter()
        .find(|p| p.cli(&["node", "ls"]).is_ok_and(|o| o.status.success()))
        .unwrap();
    peer.cli_json(&["service", "ps", name]).unwrap_or_default()
}

/// Slot -> (node id, host port) for every slot served by its owner, running and healthy;
/// `None` until all `replicas` are.
fn converged(
    cluster: &Cluster,
    name: &str,
    replicas: usize,
) -> Option<BTreeMap<String, (String, u16)>> {
    let tasks: Vec<Value> = tasks(cluster, name)
        .into_iter()
        .filter(|t| t["state"] != "lost")
        .collect();
    let serving: BTreeMap<String, (String, u16)> = tasks
        .iter()
        .filter(|t| {
            t["desired_state"] == "running" && t["state"] == "running" && t["health"] == "healthy"
        })
        .filter_map(|t| {
            Some((
                t["slot"].as_str()?.to_owned(),
                (
                    t["node_id"].as_str()?.to_owned(),
                    u16::try_from(t["host_port"].as_u64()?).ok()?,
                ),
            ))
        })
        .collect();
    let extra = tasks.iter().any(|t| t["desired_state"] != "running");
    (serving.len() == replicas && tasks.len() == replicas && !extra).then_some(serving)
}

fn http_ok(port: u16) -> bool {
    knit_tests::answers(([127, 0, 0, 1], port).into(), "/ok")
}

/// Every slot has a replica that some peer reports running and healthy and that answers
/// HTTP: the service keeps answering. The peers are asked one after another while a
/// handoff may complete between two answers, so a slot gets three readings 300 ms apart.
fn assert_every_slot_answers(cluster: &Cluster, name: &str) {
    let mut last = Ok(());
    for _ in 0..3 {
        last = every_slot_answers(cluster, name);
        if last.is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    if let Err(why) = last {
        panic!("{why}");
    }
}

fn every_slot_answers(cluster: &Cluster, name: &str) -> Result<(), String> {
    let mut serving: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    let mut slots = BTreeSet::new();
    for peer in &cluster.peers {
        let Ok(rows) = peer.cli_json::<Vec<Value>>(&["service", "ps", name]) else {
            continue;
        };
        for t in rows {
            let slot = t["slot"].as_str().unwrap_or_default().to_owned();
            slots.insert(slot.clone());
            if t["state"] == "running"
                && t["health"] == "healthy"
                && let Some(port) = t["host_port"].as_u64().and_then(|p| u16::try_from(p).ok())
            {
                serving.entry(slot).or_default().insert(port);
            }
        }
    }
    for slot in slots {
        let answers = serving
            .get(&slot)
            .is_some_and(|ports| ports.iter().any(|p| http_ok(*p)));
        if !answers {
            return Err(format!(
                "slot {slot} had no replica answering; serving: {serving:?}"
            ));
        }
    }
    Ok(())
}

fn running_processes(cluster: &Cluster) -> usize {
    cluster
        .peers
        .iter()
        .flat_map(|p| p.replica_pids())
        .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
        .count()
}

#[test]
fn a_lost_host_is_healed_and_a_returning_host_takes_its_share_back() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(5, "fast").unwrap();
    knit_tests::create_web_service(&cluster, "web", 10, "", &[]).unwrap();
    let (placed, took) = wait_until(Duration::from_secs(60), "10 healthy replicas", || {
        converged(&cluster, "web", 10)
    })
    .unwrap();
    eprintln!("10 replicas running and healthy after {took:?}");
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    for (node, port) in placed.values() {
        *load.entry(node).or_default() += 1;
        assert!(http_ok(*port), "replica on port {port} answers");
    }
    assert!(
        load.values().all(|&n| n <= 3),
        "bounded load ceil(1.25*10/5) = 3: {load:?}"
    );
    assert_eq!(
        running_processes(&cluster),
        10,
        "each slot runs exactly once"
    );

    // Lose the host that runs the most replicas.
    let busiest = load
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(id, _)| (*id).to_owned())
        .unwrap();
    let victim = (0..5)
        .find(|&i| cluster.peers[i].node_id().unwrap() == busiest)
        .unwrap();
    let lost = busiest.clone();
    cluster.peers[victim].lose_host();
    let (healed, took) = wait_until(
        Duration::from_secs(30),
        "10 replicas on the survivors",
        || converged(&cluster, "web", 10).filter(|m| m.values().all(|(n, _)| *n != lost)),
    )
    .unwrap();
    eprintln!("host loss healed after {took:?}");
    for (node, port) in healed.values() {
        assert!(http_ok(*port), "replica on {node} port {port} answers");
    }

    // The host comes back: it takes its share again, make-before-break. Placement is a
    // function of the membership, so its share is what it had before.
    let before: BTreeMap<String, String> = placed
        .iter()
        .map(|(slot, (node, _))| (slot.clone(), node.clone()))
        .collect();
    cluster.peers[victim].start(None, None).unwrap();
    let (_, took) = wait_until(
        Duration::from_secs(60),
        "the returning node to take its share",
        || {
            assert_every_slot_answers(&cluster, "web");
            converged(&cluster, "web", 10)
                .filter(|m| m.iter().all(|(slot, (node, _))| before[slot] == *node))
        },
    )
    .unwrap();
    eprintln!("returning node took its share after {took:?}");
    wait_until(Duration::from_secs(20), "exactly 10 processes", || {
        (running_processes(&cluster) == 10).then_some(())
    })
    .unwrap();
}

#[test]
fn crashed_and_unhealthy_replicas_are_replaced_and_a_peer_restart_starts_nothing_twice() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(3, "fast").unwrap();
    knit_tests::create_web_service(&cluster, "app", 3, "", &[]).unwrap();
    let (placed, _) = wait_until(Duration::from_secs(60), "3 healthy replicas", || {
        converged(&cluster, "app", 3)
    })
    .unwrap();
    // Spread: three replicas on three hosts, one each (the load bound alone, 2 a host,
    // let most services land 2-1-0).
    let hosts: BTreeSet<&String> = placed.values().map(|(node, _)| node).collect();
    assert_eq!(hosts.len(), 3, "one replica per host: {placed:?}");

    // kill -9 one replica: the restart policy (any, 200 ms) brings it back.
    let (_, port) = placed["app.1"].clone();
    let pid = cluster
        .peers
        .iter()
        .flat_map(|p| p.replica_pids())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.contains(&format!("PORT={port}\0")))
        });
    let pid = pid.expect("the replica's process");
    std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status()
        .unwrap();
    let (after, took) = wait_until(Duration::from_secs(30), "app.1 restarted", || {
        converged(&cluster, "app", 3).filter(|m| m["app.1"].1 != port)
    })
    .unwrap();
    eprintln!("crashed replica restarted after {took:?}");

    // Make app.2 unhealthy: its health file disappears; it is replaced after the retries.
    let (_, port2) = after["app.2"].clone();
    std::fs::remove_file(cluster.root().join("www").join("app.2").join("ok")).unwrap();
    let (after, took) = wait_until(Duration::from_secs(30), "app.2 replaced", || {
        converged(&cluster, "app", 3).filter(|m| m["app.2"].1 != port2)
    })
    .unwrap();
    eprintln!("unhealthy replica replaced after {took:?}");

    // Restart every peer without touching its processes: they are adopted, not restarted.
    let before: BTreeSet<u32> = cluster
        .peers
        .iter()
        .flat_map(|p| p.replica_pids())
        .collect();
    for i in 0..3 {
        cluster.peers[i].kill9();
        cluster.peers[i].start(None, None).unwrap();
    }
    cluster.wait_all_alive(Duration::from_secs(30)).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let again = wait_until(Duration::from_secs(30), "3 healthy replicas", || {
        converged(&cluster, "app", 3)
    })
    .unwrap()
    .0;
    let now: BTreeSet<u32> = cluster
        .peers
        .iter()
        .flat_map(|p| p.replica_pids())
        .collect();
    assert_eq!(before, now, "no replica was started again");
    assert_eq!(after, again, "same replicas, same ports");
    assert_eq!(running_processes(&cluster), 3);

    // A replica that ignores SIGTERM is killed after its service's stop grace period (1 s
    // here), not Docker's default 10 s.
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "create",
            "--name",
            "stubborn",
            "--driver",
            "process",
            "--stop-grace-period",
            "1s",
            "--",
            "sh",
            "-c",
            "trap '' TERM; while true; do sleep 1; done",
        ])
        .unwrap();
    wait_until(Duration::from_secs(30), "stubborn running", || {
        (running_processes(&cluster) == 4).then_some(())
    })
    .unwrap();
    cluster.peers[1]
        .cli_ok(&["service", "rm", "stubborn"])
        .unwrap();
    let (_, took) = wait_until(Duration::from_secs(30), "stubborn killed", || {
        (running_processes(&cluster) == 3).then_some(())
    })
    .unwrap();
    assert!(
        took < Duration::from_secs(8),
        "killed after {took:?}: the grace period is 1 s"
    );

    // A service's stop signal reaches its replica, even one the peer itself inherited as
    // ignored (the peer resets SIGINT and SIGQUIT for what it runs).
    let marker = cluster.root().join("quit-marker");
    let script = format!(
        "trap 'echo QUIT > {m}; exit 0' QUIT; trap '' TERM; echo ready > {m}; while true; do sleep 0.1; done",
        m = marker.display()
    );
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "create",
            "--name",
            "quitter",
            "--driver",
            "process",
            "--stop-signal",
            "quit",
            "--stop-grace-period",
            "20s",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .unwrap();
    wait_until(Duration::from_secs(30), "quitter running", || {
        let said = std::fs::read_to_string(&marker).unwrap_or_default();
        (said.trim() == "ready").then_some(())
    })
    .unwrap();
    cluster.peers[2]
        .cli_ok(&["service", "rm", "quitter"])
        .unwrap();
    let (_, took) = wait_until(
        Duration::from_secs(15),
        "quitter stopped by SIGQUIT",
        || {
            let said = std::fs::read_to_string(&marker).unwrap_or_default();
            (said.trim() == "QUIT").then_some(())
        },
    )
    .unwrap();
    eprintln!("SIGQUIT reached the replica {took:?} after service rm");

    replicas_max_per_node_leaves_the_rest_pending(&cluster);
}

/// `--replicas-max-per-node 1` with 4 replicas on 3 hosts: one per host, the fourth
/// pending with the reason in `service ps`; raising it to 2 places the fourth.
fn replicas_max_per_node_leaves_the_rest_pending(cluster: &Cluster) {
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "create",
            "--name",
            "capped",
            "--driver",
            "process",
            "--replicas",
            "4",
            "--replicas-max-per-node",
            "1",
            "--",
            "sh",
            "-c",
            "while true; do sleep 1; done",
        ])
        .unwrap();
    let (rows, _) = wait_until(
        Duration::from_secs(30),
        "3 capped running, 1 pending",
        || {
            let rows = tasks(cluster, "capped");
            let running = rows.iter().filter(|t| t["state"] == "running").count();
            let pending = rows.iter().filter(|t| t["state"] == "pending").count();
            (rows.len() == 4 && running == 3 && pending == 1).then_some(rows)
        },
    )
    .unwrap();
    let hosts: BTreeSet<&str> = rows
        .iter()
        .filter(|t| t["state"] == "running")
        .filter_map(|t| t["node_id"].as_str())
        .collect();
    assert_eq!(hosts.len(), 3, "one replica per host: {rows:?}");
    let pending = rows.iter().find(|t| t["state"] == "pending").unwrap();
    let why = pending["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("max replicas per node (1)"),
        "the pending slot says why: {pending}"
    );
    let table = cluster.peers[1]
        .cli_ok(&["service", "ps", "capped"])
        .unwrap();
    assert!(table.contains("max replicas per node"), "{table}");
    let inspect = cluster.peers[2]
        .cli_ok(&["service", "inspect", "capped"])
        .unwrap();
    let spec: Vec<Value> = serde_json::from_str(&inspect).unwrap();
    assert_eq!(spec[0]["replicas_max_per_node"], 1, "{spec:?}");

    cluster.peers[1]
        .cli_ok(&[
            "service",
            "update",
            "--detach",
            "--replicas-max-per-node",
            "2",
            "capped",
        ])
        .unwrap();
    wait_until(Duration::from_secs(30), "4 capped running", || {
        let rows = tasks(cluster, "capped");
        let running = rows.iter().filter(|t| t["state"] == "running").count();
        (rows.len() == 4 && running == 4).then_some(())
    })
    .unwrap();
    cluster.peers[0]
        .cli_ok(&["service", "rm", "capped"])
        .unwrap();
}
