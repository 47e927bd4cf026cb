//! The replicated state end to end: any peer takes a write, every peer keeps it, through
//! restarts, kills and partitions.

use std::time::Duration;

use knit_tests::{Cluster, Partition, cluster_lock, wait_until};
use serde_json::Value;

fn create(cluster: &Cluster, on: usize, name: &str, image: &str) {
    cluster.peers[on]
        .cli_ok(&[
            "service",
            "create",
            "--name",
            name,
            "--replicas",
            "3",
            "-p",
            "8080:80",
            image,
        ])
        .unwrap();
}

fn image_everywhere(cluster: &Cluster, name: &str, limit: Duration) -> Duration {
    let (_, took) = wait_until(limit, &format!("{name} on every running peer"), || {
        let images: Vec<Option<String>> = cluster
            .peers
            .iter()
            .map(|p| {
                p.spec(name)
                    .ok()
                    .flatten()
                    .and_then(|s| s["image"].as_str().map(str::to_owned))
            })
            .collect();
        (images.iter().all(Option::is_some) && images.windows(2).all(|w| w[0] == w[1]))
            .then_some(())
    })
    .unwrap();
    took
}

#[test]
fn a_service_created_on_one_peer_is_listed_by_all_and_ps_agrees() {
    let _lock = cluster_lock();
    let cluster = Cluster::start(5, "fast").unwrap();
    create(&cluster, 2, "blog", "busybox:v1");
    let took = image_everywhere(&cluster, "blog", Duration::from_secs(10));
    eprintln!("service visible on all 5 peers after {took:?} (includes CLI polling)");
    for peer in &cluster.peers {
        let services = peer.services().unwrap();
        assert_eq!(services.len(), 1);
        assert_eq!(services[0]["name"], "blog");
        assert_eq!(services[0]["replicas"], 3);
        assert_eq!(services[0]["mode"], "replicated");
        assert_eq!(services[0]["ports"][0], "*:8080->80/tcp");
    }
    // Every peer computes the same placement from the same state.
    let (_, _) = wait_until(Duration::from_secs(10), "the same ps everywhere", || {
        let views: Vec<Vec<(String, String)>> = cluster
            .peers
            .iter()
            .map(|p| {
                let rows: Vec<Value> = p.cli_json(&["service", "ps", "blog"]).unwrap_or_default();
                rows.iter()
                    .map(|r| (r["slot"].to_string(), r["node_id"].to_string()))
                    .collect()
            })
            .collect();
        (views[0].len() == 3 && views.windows(2).all(|w| w[0] == w[1])).then_some(())
    })
    .unwrap();

    // Docker's listing habits: filters, -q, node ps, and `--detach NAME`.
    let p0 = &cluster.peers[0];
    let one: Vec<Value> = p0
        .cli_json(&[
            "service",
            "ps",
            "blog",
            "-f",
            "desired-state=Running",
            "-f",
            "name=blog.1",
        ])
        .unwrap();
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(one[0]["slot"], "blog.1");
    assert_eq!(p0.cli_ok(&["service", "ls", "-q"]).unwrap().trim(), "blog");
    assert_eq!(p0.cli_ok(&["node", "ls", "-q"]).unwrap().lines().count(), 5);
    let owner = one[0]["node_id"].as_str().unwrap().to_owned();
    let on_node: Vec<Value> = p0.cli_json(&["node", "ps", &owner]).unwrap();
    assert!(on_node.iter().any(|t| t["slot"] == "blog.1"), "{on_node:?}");
    assert!(on_node.iter().all(|t| t["node_id"] == owner.as_str()));
    let bad = p0
        .cli(&["service", "ps", "blog", "-f", "colour=red"])
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("desired-state"));
    p0.cli_ok(&["service", "update", "--detach", "--replicas", "4", "blog"])
        .unwrap();
    p0.cli_ok(&["service", "update", "-d", "--replicas", "3", "blog"])
        .unwrap();
}

#[test]
fn concurrent_updates_on_two_peers_converge_to_one_spec() {
    let _lock = cluster_lock();
    let cluster = Cluster::start(5, "fast").unwrap();
    create(&cluster, 0, "api", "api:v1");
    image_everywhere(&cluster, "api", Duration::from_secs(10));
    let (a, b) = (&cluster.peers[1], &cluster.peers[3]);
    std::thread::scope(|s| {
        s.spawn(|| {
            a.cli_ok(&[
                "service", "update", "--detach", "--image", "api:left", "api",
            ])
            .unwrap()
        });
        s.spawn(|| {
            b.cli_ok(&[
                "service",
                "update",
                "--detach",
                "--image",
                "api:right",
                "api",
            ])
            .unwrap()
        });
    });
    image_everywhere(&cluster, "api", Duration::from_secs(10));
    // A service's VIP is each peer's own (its service range), not part of the spec.
    let spec_of = |peer: &knit_tests::Peer| {
        let mut spec = peer.spec("api").unwrap().unwrap();
        if let Some(fields) = spec.as_object_mut() {
            fields.remove("vip");
        }
        spec
    };
    let winner = spec_of(&cluster.peers[0]);
    assert!(
        ["api:left", "api:right"].contains(&winner["image"].as_str().unwrap()),
        "{winner}"
    );
    for peer in &cluster.peers {
        assert_eq!(spec_of(peer), winner, "{} differs", peer.name);
    }
}

#[test]
fn a_stopped_peer_catches_up_and_a_full_restart_loses_nothing() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(5, "fast").unwrap();
    create(&cluster, 0, "keep", "keep:v1");
    create(&cluster, 0, "gone", "gone:v1");
    image_everywhere(&cluster, "gone", Duration::from_secs(10));
    cluster.peers[4].terminate(Duration::from_secs(5)).unwrap();

    create(&cluster, 1, "new", "new:v1");
    cluster.peers[2]
        .cli_ok(&[
            "service", "update", "--detach", "--image", "keep:v2", "keep",
        ])
        .unwrap();
    cluster.peers[3].cli_ok(&["service", "rm", "gone"]).unwrap();

    cluster.peers[4].start(None, None).unwrap();
    cluster.wait_all_alive(Duration::from_secs(20)).unwrap();
    image_everywhere(&cluster, "new", Duration::from_secs(10));
    let (_, _) = wait_until(
        Duration::from_secs(10),
        "the returning peer to catch up",
        || {
            let p = &cluster.peers[4];
            let keep = p.spec("keep").ok().flatten()?;
            (keep["image"] == "keep:v2" && p.spec("gone").ok()?.is_none()).then_some(())
        },
    )
    .unwrap();

    // Write on p1 and kill it at once: the acknowledged write was persisted.
    create(&cluster, 1, "last", "last:v1");
    cluster.peers[1].kill9();
    for i in 0..5 {
        if cluster.peers[i].is_running() {
            cluster.peers[i].terminate(Duration::from_secs(5)).unwrap();
        }
    }
    for i in 0..5 {
        cluster.peers[i].start(None, None).unwrap();
    }
    cluster.wait_all_alive(Duration::from_secs(30)).unwrap();
    for name in ["keep", "new", "last"] {
        image_everywhere(&cluster, name, Duration::from_secs(15));
    }
    for peer in &cluster.peers {
        let names: Vec<String> = peer
            .services()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["keep", "last", "new"], "on {}", peer.name);
    }
}

#[test]
fn writes_on_both_sides_of_a_partition_converge_after_the_heal() {
    let _lock = cluster_lock();
    let cluster = Cluster::start(5, "fast").unwrap();
    let ips: Vec<std::net::IpAddr> = cluster.peers.iter().map(|p| p.listen.ip()).collect();
    let partition = Partition::new(&ips[..3], &ips[3..]).unwrap();
    // Both sides see the other side go down, and keep taking writes.
    let far = cluster.peers[4].node_id().unwrap();
    wait_until(
        Duration::from_secs(15),
        "the majority to see the minority down",
        || {
            cluster.peers[0]
                .nodes()
                .ok()?
                .iter()
                .any(|r| r.id == far && r.state == "down")
                .then_some(())
        },
    )
    .unwrap();
    create(&cluster, 0, "left-side", "l:v1");
    create(&cluster, 4, "right-side", "r:v1");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        cluster.peers[4].spec("left-side").unwrap().is_none(),
        "the partition leaked"
    );
    partition.heal();
    let took = image_everywhere(&cluster, "left-side", Duration::from_secs(30));
    image_everywhere(&cluster, "right-side", Duration::from_secs(30));
    eprintln!("after the heal, both sides' writes everywhere within {took:?}");
    let mut c = cluster;
    c.wait_all_alive(Duration::from_secs(30)).unwrap();
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let _lock = cluster_lock();
    let cluster = Cluster::start(1, "fast").unwrap();
    let p = &cluster.peers[0];
    create(&cluster, 0, "ok", "ok:v1");
    let cases: &[(&[&str], &str)] = &[
        (&["service", "inspect", "nope"], "no such service: nope"),
        (&["service", "scale", "nope=3"], "no such service: nope"),
        (&["service", "rm", "nope"], "no such service: nope"),
        (&["service", "scale", "ok=-1"], "whole number"),
        (&["service", "scale", "ok"], "SERVICE=REPLICAS"),
        (&["service", "create", "--name", "Bad_Name!", "img"], "name"),
        (
            &["service", "create", "--name", "x", "-p", "80:x", "img"],
            "PUBLISHED:TARGET",
        ),
        (
            &[
                "service",
                "create",
                "--name",
                "x",
                "--replicas",
                "-1",
                "img",
            ],
            "-1",
        ),
        (
            &["service", "create", "--name", "x", "--bogus", "img"],
            "--bogus",
        ),
        (
            &["service", "create", "--name", "ok", "img"],
            "already exists",
        ),
        (
            &[
                "service",
                "update",
                "--detach",
                "--update-delay",
                "soon",
                "ok",
            ],
            "--update-delay",
        ),
        (
            &["node", "update", "--availability", "sleep", "p0"],
            "active, pause or drain",
        ),
    ];
    for (args, expected) in cases {
        let out = p.cli(args).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "knit {args:?} succeeded");
        assert!(
            err.contains(expected),
            "knit {args:?} said {err:?}, expected {expected:?}"
        );
    }
    let services = p.services().unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(
        p.spec("ok").unwrap().unwrap()["version"],
        1,
        "nothing was half-applied"
    );
    // A published UDP port is accepted, with a warning that the ingress routes TCP only.
    let out = p
        .cli(&[
            "service",
            "create",
            "--name",
            "dns",
            "--replicas",
            "0",
            "-p",
            "5353:53/udp",
            "dns:v1",
        ])
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("5353/udp") && err.contains("TCP only"),
        "{err}"
    );
}
