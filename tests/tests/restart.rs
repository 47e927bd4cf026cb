//! A full-cluster restart: every peer killed with SIGKILL (their replicas live on), then
//! brought back one by one. The first peer back is a minority of the members it knew and
//! keeps only its own slots; the next ones keep the slots of those not back yet for the
//! restart grace; at no moment does any slot run twice. Replicas are counted by the
//! driver's records and live processes, not by knit's reports.

use std::time::{Duration, Instant};

use knit_tests::{Cluster, cluster_lock, wait_until};

/// Live process replicas over every peer's data dir, killed peers included.
fn total(cluster: &Cluster) -> usize {
    cluster
        .peers
        .iter()
        .flat_map(|p| p.replica_pids())
        .filter(|pid| knit_tests::process_alive(*pid))
        .count()
}

/// Checks for `period` that exactly `want` replicas run.
fn holds_at(cluster: &Cluster, want: usize, period: Duration, what: &str) {
    let watch = Instant::now();
    while watch.elapsed() < period {
        let n = total(cluster);
        assert_eq!(n, want, "{what}: {n} replicas after {:?}", watch.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn after_a_full_cluster_restart_nothing_runs_twice() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(3, "fast").unwrap();
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "create",
            "--name",
            "six",
            "--driver",
            "process",
            "--replicas",
            "6",
            "--",
            "sleep",
            "600",
        ])
        .unwrap();
    wait_until(Duration::from_secs(60), "6 replicas", || {
        (total(&cluster) == 6).then_some(())
    })
    .unwrap();
    // Let every peer save the others' records, then the power goes out.
    std::thread::sleep(Duration::from_secs(2));
    for peer in &mut cluster.peers {
        peer.kill9();
    }
    assert_eq!(total(&cluster), 6, "replicas outlive their peer");
    // The last one comes back alone: it knows 3 members and sees 1.
    cluster.peers[2].start(None, None).unwrap();
    let alone = &cluster.peers[2];
    wait_until(
        Duration::from_secs(30),
        "the peer back alone to say so",
        || {
            let rows: Vec<serde_json::Value> = alone.cli_json(&["node", "ls"]).ok()?;
            let me = rows.iter().find(|r| r["self"] == true)?;
            (rows.len() == 3 && me["minority"].as_str()?.contains("sees 1 of 3")).then_some(())
        },
    )
    .unwrap();
    // Well past failure detection, it still runs only its own.
    holds_at(&cluster, 6, Duration::from_secs(8), "one peer back");
    // The two others come back, one a second after the other: the first of them makes a
    // majority, and the third's slots wait for it.
    cluster.peers[0].start(None, None).unwrap();
    holds_at(&cluster, 6, Duration::from_secs(1), "two peers back");
    cluster.peers[1].start(None, None).unwrap();
    let watch = Instant::now();
    while !cluster.peers.iter().all(|p| {
        p.nodes()
            .is_ok_and(|rows| rows.len() == 3 && rows.iter().all(|r| r.state == "alive"))
    }) {
        assert!(
            watch.elapsed() < Duration::from_secs(60),
            "the peers did not find each other"
        );
        assert_eq!(
            total(&cluster),
            6,
            "a slot ran twice while the peers came back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    holds_at(&cluster, 6, Duration::from_secs(5), "all back");
}
