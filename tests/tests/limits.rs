//! Spec limits end to end: the replica bomb of issue 12 is refused at create with a clear
//! error, and a spec past the limits that a member writes anyway (signed with its own key,
//! as an older or misbehaving peer would) is ignored by every peer while the cluster stays
//! healthy; `service rm` removes it. The cluster's own limits are set with
//! `knit cluster update`.

use std::time::{Duration, Instant};

use knit_mesh::quic::Credentials;
use knit_mesh::quic::keys::NodeSigner;
use knit_mesh::store::Store;
use knit_tests::{Cluster, cluster_lock, wait_until};
use serde_json::{Value, json};

const STEADY: &str = "steady";

/// The `service ls` row of `name` on peer `i`.
fn row(cluster: &Cluster, i: usize, name: &str) -> Option<Value> {
    let rows = cluster.peers[i].services().ok()?;
    rows.into_iter().find(|r| r["name"] == name)
}

/// Whether every peer sees every peer alive and `steady` fully running.
fn healthy(cluster: &Cluster) -> Result<(), String> {
    for (i, peer) in cluster.peers.iter().enumerate() {
        let nodes = peer.nodes_http().map_err(|e| e.to_string())?;
        if nodes.len() != 3 || nodes.iter().any(|n| n.state != "alive") {
            return Err(format!("p{i} sees {nodes:?}"));
        }
        let steady = row(cluster, i, STEADY).ok_or(format!("p{i}: no {STEADY}"))?;
        if steady["running"] != 3 || !steady["invalid"].is_null() {
            return Err(format!("p{i}: {steady}"));
        }
    }
    Ok(())
}

/// Writes `svc/boom` with `replicas` into peer 2's persisted state, signed with peer 2's
/// own key, while it is stopped; it spreads when the peer starts again.
fn inject_as_member(cluster: &mut Cluster, replicas: u64) {
    let peer = &mut cluster.peers[2];
    peer.terminate(Duration::from_secs(10)).expect("p2 stops");
    let creds = Credentials::load(&peer.data_dir)
        .expect("credentials")
        .expect("p2 is a member");
    let signer = NodeSigner::new(&creds.node_key_pem).expect("p2's key");
    let state = peer.data_dir.join("state.bin");
    let mut store = Store::decode(&std::fs::read(&state).expect("state.bin")).expect("decodes");
    let bomb = json!({
        "name": "boom",
        "driver": "process",
        "command": ["true"],
        "mode": { "replicated": { "replicas": replicas } },
        "version": 1,
    });
    store.put(
        "svc/boom",
        Some(bomb.to_string().into_bytes()),
        knit_tests::wall_ms(),
        &signer,
    );
    std::fs::write(&state, store.encode().expect("encodes")).expect("write state.bin");
    peer.start(None, None).expect("p2 restarts");
}

#[test]
fn the_replica_bomb_is_refused_and_a_stored_one_is_ignored_by_every_peer() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(3, "fast").expect("3 peers");
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "create",
            "--driver",
            "process",
            "--name",
            STEADY,
            "--replicas",
            "3",
            "--",
            "sleep",
            "3600",
        ])
        .expect("a steady service");
    wait_until(Duration::from_secs(60), "steady running everywhere", || {
        healthy(&cluster).ok()
    })
    .expect("steady runs");

    // At create, through the CLI and straight through the API: a clear error.
    let out = cluster.peers[0]
        .cli(&[
            "service",
            "create",
            "--driver",
            "process",
            "--name",
            "boom",
            "--replicas",
            "4000000000",
            "--",
            "true",
        ])
        .expect("cli runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the bomb was accepted");
    assert!(
        stderr.contains("replicas") && stderr.contains("0 to 10000"),
        "{stderr}"
    );
    let body = json!({
        "name": "boom", "driver": "process", "command": ["true"],
        "mode": { "replicated": { "replicas": 4_000_000_000u64 } },
    });
    let refused = cluster.peers[1]
        .api_post("/v1/services", &body.to_string(), Duration::from_secs(5))
        .expect_err("the API refuses the bomb");
    assert!(
        refused.to_string().contains("status 400") && refused.to_string().contains("0 to 10000"),
        "{refused}"
    );
    assert!(row(&cluster, 0, "boom").is_none());

    // Past the API: a member writes it anyway. Every peer lists it as invalid.
    inject_as_member(&mut cluster, 4_000_000_000);
    cluster
        .wait_all_alive(Duration::from_secs(30))
        .expect("3 alive");
    wait_until(
        Duration::from_secs(30),
        "boom listed as invalid everywhere",
        || {
            (0..3)
                .all(|i| {
                    row(&cluster, i, "boom").is_some_and(|r| {
                        r["invalid"].as_str().is_some_and(|why| {
                            why.contains("replicas") && why.contains("0 to 10000")
                        })
                    })
                })
                .then_some(())
        },
    )
    .expect("every peer has the bomb and ignores it");
    // p2's restart may have moved steady's slots (they go back when it returns): once
    // they have settled, its replica processes must stay the very same.
    let live = |peer: &knit_tests::Peer| -> Vec<u32> {
        let mut pids: Vec<u32> = peer
            .replica_pids()
            .into_iter()
            .filter(|p| knit_tests::process_alive(*p))
            .collect();
        pids.sort_unstable();
        pids
    };
    let mut last: Vec<Vec<u32>> = Vec::new();
    let (steady_pids, _) = wait_until(Duration::from_secs(60), "steady settled", || {
        let now: Vec<Vec<u32>> = cluster.peers.iter().map(live).collect();
        let settled = healthy(&cluster).is_ok()
            && now.iter().map(Vec::len).sum::<usize>() == 3
            && now == last;
        last = now.clone();
        if settled {
            Some(now)
        } else {
            std::thread::sleep(Duration::from_millis(1000));
            None
        }
    })
    .expect("steady settles after p2's restart");

    // For a while: every member alive, steady untouched, no replica of boom, small peers.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(10) {
        healthy(&cluster).expect("the cluster stays healthy");
        for peer in &cluster.peers {
            let rss = peer.rss_kib().expect("running");
            assert!(rss < 200 * 1024, "{} grew to {rss} KiB", peer.name);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for (i, peer) in cluster.peers.iter().enumerate() {
        // Nothing restarted or moved while the bomb sat in the store.
        assert_eq!(live(peer), steady_pids[i], "{}", peer.name);
        let out = peer.cli(&["service", "ps", "boom"]).expect("cli runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("every peer ignores it"),
            "{stderr}"
        );
        let warnings = peer
            .log()
            .lines()
            .filter(|l| l.contains("invalid service spec") && l.contains("svc/boom"))
            .count();
        assert_eq!(warnings, 1, "{}: logged once, not every round", peer.name);
    }

    // `service rm` removes it like any other.
    cluster.peers[1]
        .cli_ok(&["service", "rm", "boom"])
        .expect("rm works on an invalid spec");
    wait_until(Duration::from_secs(30), "boom gone everywhere", || {
        (0..3)
            .all(|i| row(&cluster, i, "boom").is_none())
            .then_some(())
    })
    .expect("removed");
    healthy(&cluster).expect("still healthy");

    // The cluster's own limits: lower, refused below what runs, and applied at create.
    let out = cluster.peers[0]
        .cli(&["cluster", "update", "--max-replicas", "2"])
        .expect("cli runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(STEADY), "{stderr}");
    cluster.peers[0]
        .cli_ok(&[
            "cluster",
            "update",
            "--max-replicas",
            "5",
            "--max-slots",
            "6",
        ])
        .expect("limits set");
    wait_until(Duration::from_secs(20), "the limits on p2", || {
        let text = cluster.peers[2].cli_ok(&["cluster", "inspect"]).ok()?;
        text.contains("\"replicas_max\": 5").then_some(())
    })
    .expect("limits spread");
    let out = cluster.peers[2]
        .cli(&[
            "service",
            "create",
            "--driver",
            "process",
            "--name",
            "six",
            "--replicas",
            "6",
            "--",
            "sleep",
            "3600",
        ])
        .expect("cli runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("0 to 5"),
        "{stderr}"
    );
    let out = cluster.peers[2]
        .cli(&[
            "service",
            "create",
            "--driver",
            "process",
            "--name",
            "four",
            "--replicas",
            "4",
            "--",
            "sleep",
            "3600",
        ])
        .expect("cli runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("cap of 6 slots") && stderr.contains("at most 3"),
        "{stderr}"
    );
    healthy(&cluster).expect("still healthy");
}
