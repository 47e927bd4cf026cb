//! Partitions: a host cut off from the others keeps what it runs and takes nothing of
//! theirs, while the majority side reclaims its replicas; after the heal every slot runs
//! exactly once. With `--partition-policy available`, both sides keep a full copy.
//! Replicas are counted by the driver (live process groups), not by knit's reports.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use knit_tests::{Cluster, Partition, Peer, cluster_lock, wait_until};

/// Process replicas alive on `peer`'s host, from its driver's records.
fn running(peer: &Peer) -> usize {
    peer.replica_pids()
        .into_iter()
        .filter(|pid| knit_tests::process_alive(*pid))
        .count()
}

fn counts(cluster: &Cluster) -> Vec<usize> {
    cluster.peers.iter().map(running).collect()
}

/// Three peers with a service of six sleeping replicas, the third peer then cut off.
fn cut_one_off(policy: &str) -> (Cluster, Partition, usize) {
    let cluster = Cluster::start(3, "fast").unwrap();
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
            "--partition-policy",
            policy,
            "--",
            "sleep",
            "600",
        ])
        .unwrap();
    wait_until(Duration::from_secs(60), "6 replicas", || {
        (counts(&cluster).iter().sum::<usize>() == 6).then_some(())
    })
    .unwrap();
    let before = counts(&cluster);
    eprintln!("replicas per host before the cut: {before:?}");
    let ips: Vec<IpAddr> = cluster.peers.iter().map(|p| p.listen.ip()).collect();
    let partition = Partition::new(&ips[2..], &ips[..2]).unwrap();
    (cluster, partition, before[2])
}

fn wait_cut(cluster: &Cluster) {
    let alone = cluster.peers[2].node_id().unwrap();
    let others = cluster.peers[0].node_id().unwrap();
    wait_until(Duration::from_secs(30), "both sides to see the cut", || {
        let majority_sees = cluster.peers[0]
            .nodes()
            .ok()?
            .iter()
            .any(|r| r.id == alone && r.state == "down");
        let minority_sees = cluster.peers[2]
            .nodes()
            .ok()?
            .iter()
            .any(|r| r.id == others && r.state == "down");
        (majority_sees && minority_sees).then_some(())
    })
    .unwrap();
}

fn heal_to_six(cluster: &mut Cluster, partition: Partition) {
    partition.heal();
    cluster.wait_all_alive(Duration::from_secs(60)).unwrap();
    let (_, took) = wait_until(Duration::from_secs(60), "exactly 6 replicas again", || {
        (counts(cluster).iter().sum::<usize>() == 6).then_some(())
    })
    .unwrap();
    // And it stays so.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        counts(cluster).iter().sum::<usize>(),
        6,
        "{:?}",
        counts(cluster)
    );
    eprintln!("6 replicas {took:?} after the heal: {:?}", counts(cluster));
}

#[test]
fn a_cut_off_host_keeps_its_own_replicas_and_takes_none_of_the_others() {
    if !knit_tests::is_root() {
        eprintln!("SKIPPED: cutting hosts off with iptables needs root");
        return;
    }
    let _lock = cluster_lock();
    let (mut cluster, partition, alone_before) = cut_one_off("majority");
    wait_cut(&cluster);
    // The majority side reclaims the cut-off host's replicas...
    wait_until(Duration::from_secs(30), "the majority to run all 6", || {
        let c = counts(&cluster);
        (c[0] + c[1] == 6).then_some(())
    })
    .unwrap();
    // ...while the host alone runs only what it ran, and says why.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(8) {
        let alone = running(&cluster.peers[2]);
        assert!(
            alone <= alone_before,
            "the cut-off host started replicas of others: {alone} > {alone_before}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(running(&cluster.peers[2]), alone_before, "it kept its own");
    let rows: Vec<serde_json::Value> = cluster.peers[2].cli_json(&["node", "ls"]).unwrap();
    let me = rows.iter().find(|r| r["self"] == true).unwrap();
    assert!(
        me["minority"]
            .as_str()
            .is_some_and(|m| m.contains("sees 1 of 3")),
        "{me}"
    );
    let majority: Vec<serde_json::Value> = cluster.peers[0].cli_json(&["node", "ls"]).unwrap();
    assert!(majority.iter().all(|r| r.get("minority").is_none()));
    heal_to_six(&mut cluster, partition);
}

#[test]
fn an_available_service_runs_in_full_on_both_sides_and_converges_after() {
    if !knit_tests::is_root() {
        eprintln!("SKIPPED: cutting hosts off with iptables needs root");
        return;
    }
    let _lock = cluster_lock();
    let (mut cluster, partition, _) = cut_one_off("available");
    wait_cut(&cluster);
    wait_until(Duration::from_secs(30), "a full copy on each side", || {
        let c = counts(&cluster);
        (c[0] + c[1] == 6 && c[2] == 6).then_some(())
    })
    .unwrap();
    heal_to_six(&mut cluster, partition);
}
