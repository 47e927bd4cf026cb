//! The Docker engine of one host stops answering and comes back while its containers run
//! on (as `dockerd` restarting with live-restore): the peer reports its replicas
//! `unknown` meanwhile, nobody starts copies of them, and once the engine answers again
//! the same containers are `running` again, none restarted or replaced.
//! The engine is cut off by a socket proxy between the peer and `dockerd`
//! (`DOCKER_HOST`), so the host's engine, which other tests use, keeps running.
//! Skips with a message when Docker is missing, unless `KNIT_REQUIRE_DOCKER=1`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use knit_tests::proxy::UnixProxy;
use knit_tests::{Cluster, cluster_lock, images, remove_containers, run_bounded, wait_until};
use serde_json::Value;

const SERVICE: &str = "engine";

struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        remove_containers(&format!("knit.service={SERVICE}"));
    }
}

/// Running containers of the service, by id, with when each started, from the engine.
fn containers() -> BTreeMap<String, String> {
    let Ok(out) = run_bounded(
        std::process::Command::new("docker").args([
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=knit.service={SERVICE}"),
        ]),
        Duration::from_secs(20),
    ) else {
        return BTreeMap::new();
    };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    ids.into_iter()
        .filter_map(|id| {
            let out = run_bounded(
                std::process::Command::new("docker").args([
                    "inspect",
                    "-f",
                    "{{.State.StartedAt}}",
                    &id,
                ]),
                Duration::from_secs(20),
            )
            .ok()?;
            Some((id, String::from_utf8_lossy(&out.stdout).trim().to_owned()))
        })
        .collect()
}

/// The states `p0` shows for the tasks of `node` (id).
fn states_on(cluster: &Cluster, node: &str) -> Vec<String> {
    let tasks: Vec<Value> = cluster.peers[0]
        .cli_json(&["service", "ps", SERVICE])
        .unwrap_or_default();
    tasks
        .iter()
        .filter(|t| t["node_id"] == node && t["desired_state"] == "running")
        .filter_map(|t| t["state"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn an_engine_that_comes_back_finds_its_containers_adopted_not_replaced() {
    let Some(image) = images::busybox_image().unwrap() else {
        return;
    };
    let _lock = cluster_lock();
    remove_containers(&format!("knit.service={SERVICE}"));
    let _cleanup = Guard;
    let mut cluster = Cluster::new("fast").unwrap();
    cluster.add_unstarted();
    let p1 = cluster.add_unstarted();
    let mut proxy = UnixProxy::start(
        &cluster.root().join("engine.sock"),
        Path::new("/var/run/docker.sock"),
    )
    .unwrap();
    let docker_host = format!("unix://{}", proxy.path().display());
    cluster.peers[p1]
        .env
        .push(("DOCKER_HOST".into(), docker_host));
    cluster.start_peer(0).unwrap();
    cluster.start_peer(p1).unwrap();
    cluster.wait_all_alive(Duration::from_secs(30)).unwrap();
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "create",
            "--name",
            SERVICE,
            "--replicas",
            "4",
            "--stop-grace-period",
            "1s",
            &image,
        ])
        .unwrap();
    let p1_id = cluster.peers[p1].node_id().unwrap();
    let (_, took) = wait_until(Duration::from_secs(90), "4 containers, some on p1", || {
        let on_p1 = states_on(&cluster, &p1_id);
        (containers().len() == 4 && !on_p1.is_empty() && on_p1.iter().all(|s| s == "running"))
            .then_some(())
    })
    .unwrap();
    eprintln!("4 containers running after {took:?}");
    let before = containers();
    let on_p1 = states_on(&cluster, &p1_id).len();

    proxy.cut();
    let (_, took) = wait_until(
        Duration::from_secs(30),
        "p1's replicas reported unknown",
        || {
            let states = states_on(&cluster, &p1_id);
            (states.len() == on_p1 && states.iter().all(|s| s == "unknown")).then_some(())
        },
    )
    .unwrap();
    eprintln!("p1's {on_p1} replica(s) reported unknown {took:?} after its engine went away");
    // Meanwhile nobody starts copies, and the containers run on.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(8) {
        assert_eq!(
            containers(),
            before,
            "no container started, stopped or replaced"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    proxy.restore().unwrap();
    let (_, took) = wait_until(
        Duration::from_secs(30),
        "p1's replicas running again",
        || {
            let states = states_on(&cluster, &p1_id);
            (states.len() == on_p1 && states.iter().all(|s| s == "running")).then_some(())
        },
    )
    .unwrap();
    eprintln!("running again {took:?} after the engine came back");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        containers(),
        before,
        "the same containers, started when they were: adopted, not restarted"
    );
}
