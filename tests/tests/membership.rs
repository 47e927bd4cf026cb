//! Membership end to end: real `knit` processes on loopback, killed with real signals.

use std::net::UdpSocket;
use std::time::Duration;

use knit_tests::{Cluster, cluster_lock, wait_until};

/// How long a peer may take to be seen `down` under the fast profile: its detection bound
/// (probe, suspicion, spread) with room for a loaded two-core machine.
fn fast_down_limit() -> Duration {
    Duration::from_secs(10)
}

#[test]
fn five_peers_detect_a_kill_and_take_the_node_back_without_a_phantom() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(5, "fast").expect("5 peers form a cluster");
    for peer in &cluster.peers {
        let rows = peer.nodes().unwrap();
        assert_eq!(rows.len(), 5, "{} sees {rows:?}", peer.name);
        assert!(rows.iter().all(|r| r.state == "alive"), "{rows:?}");
        assert_eq!(rows.iter().filter(|r| r.is_self).count(), 1);
    }
    let victim = cluster.peers[3].node_id().unwrap();
    let epoch_before = cluster.peers[0]
        .nodes()
        .unwrap()
        .iter()
        .find(|r| r.id == victim)
        .unwrap()
        .epoch;

    cluster.peers[3].kill9();
    let took = cluster
        .wait_seen_as(&victim, "down", fast_down_limit())
        .unwrap();
    eprintln!("kill -9 seen as down everywhere after {took:?}");

    cluster.peers[3].start(None, None).unwrap();
    cluster.wait_all_alive(Duration::from_secs(20)).unwrap();
    for peer in &cluster.peers {
        let rows = peer.nodes().unwrap();
        assert_eq!(
            rows.len(),
            5,
            "no phantom member on {}: {rows:?}",
            peer.name
        );
        let back = rows.iter().find(|r| r.id == victim).unwrap();
        assert!(
            back.epoch > epoch_before,
            "restarted with a higher epoch: {back:?}"
        );
    }
}

#[test]
fn sigterm_leaves_at_once_and_exits_fast() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(3, "lan").expect("3 peers");
    let leaver = cluster.peers[2].node_id().unwrap();
    let exit = cluster.peers[2].terminate(Duration::from_secs(5)).unwrap();
    assert!(
        exit < Duration::from_secs(2),
        "exited {exit:?} after SIGTERM"
    );
    // Under the lan profile a silent member takes over 5 s to be declared down; `left`
    // within 2 s can only come from the goodbye.
    let seen = cluster
        .wait_seen_as(&leaver, "left", Duration::from_secs(2))
        .unwrap();
    eprintln!("SIGTERM: exit after {exit:?}, left everywhere after {seen:?}");
}

#[test]
fn a_wrong_token_is_refused_and_nothing_is_written() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(1, "fast").unwrap();
    let token = cluster.token().unwrap().to_owned();
    // Same CA digest, wrong secret.
    let mut wrong = token.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });
    let seed = cluster.peers[0].listen;
    let i = cluster.add_unstarted();
    cluster.peers[i].start(Some(seed), Some(&wrong)).unwrap();
    let (_, _) = wait_until(Duration::from_secs(15), "the joiner to exit", || {
        (!cluster.peers[i].is_running()).then_some(())
    })
    .unwrap();
    let log = cluster.peers[i].log_tail(5);
    assert!(log.contains("wrong join token"), "{log}");
    assert!(!cluster.peers[i].data_dir.join("credentials.json").exists());
    assert!(!cluster.peers[i].data_dir.join("node-id").exists());

    // A malformed token says what a token looks like.
    let mut bad = cluster.add_unstarted();
    cluster.peers[bad]
        .start(Some(seed), Some("SWMTKN-1-abc"))
        .unwrap();
    wait_until(Duration::from_secs(15), "the joiner to exit", || {
        (!cluster.peers[bad].is_running()).then_some(())
    })
    .unwrap();
    assert!(cluster.peers[bad].log_tail(5).contains("KNIT-1-"));

    // No seed at that address: a clear error, in bounded time (the joiner tries again for
    // 15 s, in case the seed is busy).
    bad = cluster.add_unstarted();
    let nowhere = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    cluster.peers[bad]
        .start(Some(nowhere), Some(&token))
        .unwrap();
    wait_until(Duration::from_secs(45), "the joiner to exit", || {
        (!cluster.peers[bad].is_running()).then_some(())
    })
    .unwrap();
    assert!(
        cluster.peers[bad]
            .log_tail(5)
            .contains("cannot reach the seed"),
        "{}",
        cluster.peers[bad].log_tail(5)
    );
    assert_eq!(cluster.peers[0].nodes().unwrap().len(), 1);
}

#[test]
fn a_joiner_waits_for_a_seed_that_is_restarting() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(1, "fast").expect("a seed");
    let seed = cluster.peers[0].node_id().unwrap();
    cluster.peers[0].kill9();
    let joiner = cluster.add_unstarted();
    cluster.start_peer(joiner).unwrap();
    // The seed is away for longer than one dial's wait.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        cluster.peers[joiner].is_running(),
        "the joiner gave up at once: {}",
        cluster.peers[joiner].log_tail(5)
    );
    cluster.peers[0].start(None, None).unwrap();
    cluster.wait_all_alive(Duration::from_secs(40)).unwrap();
    let rows = cluster.peers[joiner].nodes().unwrap();
    assert!(
        rows.iter().any(|r| r.id == seed && r.state == "alive"),
        "{rows:?}"
    );
    assert!(
        cluster.peers[joiner].log_tail(200).contains("trying again"),
        "{}",
        cluster.peers[joiner].log_tail(20)
    );
}

#[test]
fn another_clusters_peer_cannot_join_or_gossip() {
    let _lock = cluster_lock();
    let mut ours = Cluster::start(2, "fast").unwrap();
    let mut theirs = Cluster::start(1, "fast").unwrap();
    let seed = ours.peers[0].listen;

    // Their token names their CA: our seed's certificate does not match it.
    let j = theirs.add_unstarted();
    let their_token = theirs.token().unwrap().to_owned();
    theirs.peers[j]
        .start(Some(seed), Some(&their_token))
        .unwrap();
    wait_until(Duration::from_secs(15), "the joiner to exit", || {
        (!theirs.peers[j].is_running()).then_some(())
    })
    .unwrap();
    let log = theirs.peers[j].log_tail(5);
    assert!(
        log.contains("not from the cluster named by the join token"),
        "{log}"
    );

    // Their member, with its own CA, pointed at our seed: it cannot get in.
    theirs.peers[0].terminate(Duration::from_secs(5)).unwrap();
    theirs.peers[0].start(Some(seed), None).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    for peer in &ours.peers {
        let rows = peer.nodes().unwrap();
        assert_eq!(
            rows.len(),
            2,
            "a foreign peer got into {}: {rows:?}",
            peer.name
        );
    }
    assert!(theirs.peers[0].nodes().unwrap().len() == 1);
    ours.wait_all_alive(Duration::from_secs(5)).unwrap();
}

#[test]
fn garbage_on_the_quic_port_changes_nothing() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(3, "fast").unwrap();
    let target = cluster.peers[1].listen;
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..2000usize {
        let len = 1 + i % 1300;
        let packet: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed.to_le_bytes()[0]
            })
            .collect();
        let _ = socket.send_to(&packet, target);
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(cluster.peers[1].is_running(), "the peer survived");
    cluster.wait_all_alive(Duration::from_secs(10)).unwrap();
    for peer in &cluster.peers {
        assert_eq!(peer.nodes().unwrap().len(), 3);
    }
}

#[test]
fn client_commands_say_when_no_peer_answers() {
    let knit = |args: &[&str]| {
        let mut cmd = std::process::Command::new(knit_tests::knit_bin());
        knit_tests::clear_knit_env(&mut cmd).args(args);
        let out = knit_tests::run_bounded(&mut cmd, Duration::from_secs(20)).unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = knit(&["--api", "/nonexistent/knit.sock", "node", "ls"]);
    assert!(
        err.contains("cannot reach the knit API at unix:///nonexistent/knit.sock"),
        "{err}"
    );
    assert!(err.contains("knit up"), "{err}");
    // TCP is TLS: without a client certificate, the client says where to get one.
    let err = knit(&[
        "--api",
        "127.0.0.1:9",
        "--tls-dir",
        "/nonexistent",
        "node",
        "ls",
    ]);
    assert!(err.contains("knit client-cert"), "{err}");
    let err = knit(&["--api", "127.0.0.1:9", "--api-insecure", "node", "ls"]);
    assert!(
        err.contains("cannot reach the knit API at tcp://127.0.0.1:9"),
        "{err}"
    );
}

#[test]
fn a_removed_node_is_forgotten_everywhere_and_its_data_dir_cannot_bring_it_back() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(4, "fast").expect("4 peers");
    let victim = cluster.peers[3].node_id().unwrap();
    // A live node is refused without --force, and the answering node cannot remove itself.
    // (By id: names come from each node's own record, which may still be on its way.)
    let out = cluster.peers[0].cli(&["node", "rm", &victim]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "removed a live node");
    assert!(
        err.contains("stop knit on it") && err.contains("--force"),
        "{err}"
    );
    let me = cluster.peers[0].node_id().unwrap();
    let out = cluster.peers[0].cli(&["node", "rm", &me]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("another peer"),
        "{err}"
    );

    // Decommissioned: stopped (left), then removed through any peer.
    cluster.peers[3].terminate(Duration::from_secs(5)).unwrap();
    wait_until(Duration::from_secs(10), "p3 gone everywhere", || {
        (0..3)
            .all(|i| {
                cluster.peers[i].nodes().is_ok_and(|rows| {
                    rows.iter()
                        .any(|r| r.id == victim && (r.state == "left" || r.state == "down"))
                })
            })
            .then_some(())
    })
    .unwrap();
    cluster.peers[1].cli_ok(&["node", "rm", &victim]).unwrap();
    let forgotten = |cluster: &Cluster| {
        (0..3).all(|i| {
            cluster.peers[i]
                .nodes()
                .is_ok_and(|rows| rows.len() == 3 && rows.iter().all(|r| r.id != victim))
        })
    };
    let (_, took) = wait_until(Duration::from_secs(10), "p3 forgotten everywhere", || {
        forgotten(&cluster).then_some(())
    })
    .unwrap();
    eprintln!("removed node forgotten everywhere after {took:?}");

    // Started again with its data dir (and so its certificate), it stays out: a restart
    // with the same data dir otherwise rejoins within a second or two.
    cluster.peers[3].start(None, None).unwrap();
    let watch_until = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < watch_until {
        assert!(forgotten(&cluster), "the removed node came back");
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = cluster.peers[2].cli(&["node", "inspect", &victim]).unwrap();
    assert!(!out.status.success(), "its records are gone too");
    let log = cluster.peers[3].log_tail(100);
    assert!(
        log.contains("removed from the cluster"),
        "the removed node tried to come back and was told why: {log}"
    );
}
