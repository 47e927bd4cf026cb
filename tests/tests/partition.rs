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

/// A cluster cut in two: `alone` (a peer index) on one side, `others` on the other.
struct Cut {
    cluster: Cluster,
    partition: Partition,
    alone: usize,
    others: [usize; 2],
    /// What `alone` ran before the cut.
    alone_before: usize,
}

impl Cut {
    fn counts(&self) -> (usize, usize) {
        let c = counts(&self.cluster);
        (c[self.alone], self.others.iter().map(|i| c[*i]).sum())
    }
}

/// Three peers with a service of six sleeping replicas, then the peer that runs the most
/// of them (at least 2) cut off.
fn cut_one_off(policy: &str) -> Cut {
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
    let alone = (0..3).max_by_key(|i| before[*i]).unwrap();
    let others = match alone {
        0 => [1, 2],
        1 => [0, 2],
        _ => [0, 1],
    };
    eprintln!("replicas per host before the cut: {before:?}; cutting off p{alone}");
    let ip = |i: usize| -> IpAddr { cluster.peers[i].listen.ip() };
    let partition = Partition::new(&[ip(alone)], &others.map(ip)).unwrap();
    Cut {
        cluster,
        partition,
        alone,
        others,
        alone_before: before[alone],
    }
}

fn wait_cut(cut: &Cut) {
    let cluster = &cut.cluster;
    let alone = cluster.peers[cut.alone].node_id().unwrap();
    let others = cluster.peers[cut.others[0]].node_id().unwrap();
    wait_until(Duration::from_secs(30), "both sides to see the cut", || {
        let majority_sees = cluster.peers[cut.others[0]]
            .nodes()
            .ok()?
            .iter()
            .any(|r| r.id == alone && r.state == "down");
        let minority_sees = cluster.peers[cut.alone]
            .nodes()
            .ok()?
            .iter()
            .any(|r| r.id == others && r.state == "down");
        (majority_sees && minority_sees).then_some(())
    })
    .unwrap();
}

fn heal_to_six(cut: Cut) {
    let Cut {
        mut cluster,
        partition,
        ..
    } = cut;
    let cluster = &mut cluster;
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
    let cut = cut_one_off("majority");
    wait_cut(&cut);
    let (cluster, alone_before) = (&cut.cluster, cut.alone_before);
    // The majority side reclaims the cut-off host's replicas...
    wait_until(Duration::from_secs(30), "the majority to run all 6", || {
        (cut.counts().1 == 6).then_some(())
    })
    .unwrap();
    // ...while the host alone runs only what it ran, and says why.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(8) {
        let alone = running(&cluster.peers[cut.alone]);
        assert!(
            alone <= alone_before,
            "the cut-off host started replicas of others: {alone} > {alone_before}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        running(&cluster.peers[cut.alone]),
        alone_before,
        "it kept its own"
    );
    let rows: Vec<serde_json::Value> = cluster.peers[cut.alone].cli_json(&["node", "ls"]).unwrap();
    let me = rows.iter().find(|r| r["self"] == true).unwrap();
    assert!(
        me["minority"]
            .as_str()
            .is_some_and(|m| m.contains("sees 1 of 3")),
        "{me}"
    );
    let majority: Vec<serde_json::Value> = cluster.peers[cut.others[0]]
        .cli_json(&["node", "ls"])
        .unwrap();
    assert!(majority.iter().all(|r| r.get("minority").is_none()));
    heal_to_six(cut);
}

#[test]
fn an_available_service_runs_in_full_on_both_sides_and_converges_after() {
    if !knit_tests::is_root() {
        eprintln!("SKIPPED: cutting hosts off with iptables needs root");
        return;
    }
    let _lock = cluster_lock();
    let cut = cut_one_off("available");
    wait_cut(&cut);
    wait_until(Duration::from_secs(30), "a full copy on each side", || {
        (cut.counts() == (6, 6)).then_some(())
    })
    .unwrap();
    heal_to_six(cut);
}

/// The value of `V` in each live replica's environment on `peer`'s host, read from /proc.
fn env_v(peer: &Peer) -> Vec<String> {
    peer.replica_pids()
        .into_iter()
        .filter(|pid| knit_tests::process_alive(*pid))
        .filter_map(|pid| std::fs::read(format!("/proc/{pid}/environ")).ok())
        .map(|environ| {
            environ
                .split(|b| *b == 0)
                .find_map(|var| var.strip_prefix(b"V="))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn concurrent_updates_on_both_sides_converge_on_one_spec() {
    if !knit_tests::is_root() {
        eprintln!("SKIPPED: cutting hosts off with iptables needs root");
        return;
    }
    let _lock = cluster_lock();
    let cut = cut_one_off("majority");
    wait_cut(&cut);
    let (cluster, alone, others) = (&cut.cluster, cut.alone, cut.others);
    // Each side writes the next version of the same spec, unaware of the other: the host
    // alone first, so the majority's write is the later one.
    for (peer, value) in [(alone, "right"), (others[0], "left")] {
        cluster.peers[peer]
            .cli_ok(&[
                "service",
                "update",
                "--detach",
                "--env-add",
                &format!("V={value}"),
                "six",
            ])
            .unwrap();
    }
    // Both rolled out on their side: the host alone to "right", the others to "left".
    wait_until(
        Duration::from_secs(90),
        "each side to run its own update",
        || {
            let on_alone = env_v(&cluster.peers[alone]);
            let on_others: Vec<String> = others
                .iter()
                .flat_map(|i| env_v(&cluster.peers[*i]))
                .collect();
            (on_alone.len() == cut.alone_before
                && on_alone.iter().all(|v| v == "right")
                && on_others.len() == 6
                && on_others.iter().all(|v| v == "left"))
            .then_some(())
        },
    )
    .unwrap();
    let version = |peer: &Peer| -> Option<(u64, String)> {
        let out = peer.cli_ok(&["service", "inspect", "six"]).ok()?;
        let specs: serde_json::Value = serde_json::from_str(&out).ok()?;
        let spec = &specs[0];
        Some((
            spec["version"].as_u64()?,
            spec["env"]["V"].as_str()?.to_owned(),
        ))
    };
    let (left_version, _) = version(&cluster.peers[others[0]]).unwrap();
    let (right_version, _) = version(&cluster.peers[alone]).unwrap();
    assert_eq!(
        left_version, right_version,
        "the two writes collide on one version"
    );
    let Cut {
        mut cluster,
        partition,
        ..
    } = cut;
    partition.heal();
    cluster.wait_all_alive(Duration::from_secs(60)).unwrap();
    // After the heal every peer holds the same spec, and exactly 6 replicas run it (the
    // losing side's are replaced by a rollout, so the count may dip meanwhile).
    let (won, took) = wait_until(Duration::from_secs(90), "one V everywhere", || {
        let specs: Vec<(u64, String)> = cluster.peers.iter().filter_map(version).collect();
        let won = specs.first()?.1.clone();
        let values: Vec<String> = cluster.peers.iter().flat_map(env_v).collect();
        (specs.len() == 3
            && specs.iter().all(|s| s.1 == won)
            && values.len() == 6
            && values.iter().all(|v| *v == won))
        .then_some(won)
    })
    .unwrap();
    eprintln!("V={won} on all 6 replicas {took:?} after the members saw each other");
    assert_eq!(won, "left", "the later write wins");
    std::thread::sleep(Duration::from_secs(3));
    let values: Vec<String> = cluster.peers.iter().flat_map(env_v).collect();
    assert!(
        values.len() == 6 && values.iter().all(|v| *v == won),
        "{values:?}"
    );
}
