//! A flapping peer — joining and dying again every second — does not stall reconciliation
//! on the others: a service created and scaled on the steady peers converges while it
//! flaps. Replicas are counted by the driver's records and live processes.

use std::time::{Duration, Instant};

use knit_tests::{Cluster, Peer, cluster_lock};

fn running(peer: &Peer) -> usize {
    peer.replica_pids()
        .into_iter()
        .filter(|pid| knit_tests::process_alive(*pid))
        .count()
}

/// Runs `step` every 100 ms until it returns true, restarting or killing the flapping peer
/// every `period`; fails after `limit`.
fn while_flapping(
    cluster: &mut Cluster,
    flapper: usize,
    period: Duration,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&Cluster) -> bool,
) -> Duration {
    let started = Instant::now();
    let mut flipped = Instant::now();
    loop {
        if done(cluster) {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        if flipped.elapsed() >= period {
            flipped = Instant::now();
            let peer = &mut cluster.peers[flapper];
            if peer.is_running() {
                peer.kill9();
            } else {
                peer.start(None, None).unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_flapping_peer_does_not_stall_the_others() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(4, "fast").unwrap();
    let flapper = 3;
    let steady = |c: &Cluster| (0..3).map(|i| running(&c.peers[i])).sum::<usize>();
    let period = Duration::from_millis(600);
    // Flap for a while first, so that the peer is flapping when the work arrives.
    while_flapping(
        &mut cluster,
        flapper,
        period,
        Duration::from_secs(60),
        "warm-up",
        {
            let until = Instant::now() + Duration::from_secs(8);
            move |_| Instant::now() > until
        },
    );
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "create",
            "--detach",
            "--name",
            "steady",
            "--driver",
            "process",
            "--replicas",
            "6",
            "--constraint",
            "node.name!=p3",
            "--",
            "sleep",
            "600",
        ])
        .unwrap();
    let took = while_flapping(
        &mut cluster,
        flapper,
        period,
        Duration::from_secs(30),
        "6 replicas",
        |c| steady(c) == 6,
    );
    eprintln!("6 replicas on the steady peers {took:?} after the create, while p3 flapped");
    cluster.peers[0]
        .cli_ok(&["service", "scale", "steady=9"])
        .unwrap();
    let took = while_flapping(
        &mut cluster,
        flapper,
        period,
        Duration::from_secs(30),
        "9 replicas",
        |c| steady(c) == 9,
    );
    eprintln!("9 replicas {took:?} after the scale, while p3 flapped");
    // It did flap: p0 saw it come back again and again.
    let p3 = cluster.peers[flapper].node_id().ok();
    let log = cluster.peers[0].log();
    let returns = log
        .lines()
        .filter(|l| l.contains("Alive"))
        .filter(|l| p3.as_deref().is_none_or(|id| l.contains(&id[..12])))
        .count();
    eprintln!("p0 saw p3 come back {returns} times");
    assert!(returns >= 4, "p3 flapped: {returns} returns seen");
}
