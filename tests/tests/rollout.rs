//! Rolling updates, rollback and drain, end to end with the `process` driver.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use knit_tests::{Cluster, cluster_lock, wait_until};
use serde_json::Value;

/// Six replicas that exit at once when `BROKEN` is set (a broken version), and give up
/// after two restarts.
fn create(cluster: &Cluster, name: &str) {
    let prelude = "test -n \"$BROKEN\" && exit 3;";
    knit_tests::create_web_service(cluster, name, 6, prelude, &["--restart-max-attempts", "2"])
        .unwrap();
}

fn tasks(cluster: &Cluster, name: &str) -> Vec<Value> {
    cluster
        .peers
        .iter()
        .find_map(|p| p.cli_json::<Vec<Value>>(&["service", "ps", name]).ok())
        .unwrap_or_default()
}

/// Slot -> (spec version, host port) of the replicas serving their slot on its owner.
fn serving(cluster: &Cluster, name: &str) -> BTreeMap<String, (u64, u16)> {
    tasks(cluster, name)
        .iter()
        .filter(|t| {
            t["desired_state"] == "running" && t["state"] == "running" && t["health"] == "healthy"
        })
        .filter_map(|t| {
            Some((
                t["slot"].as_str()?.to_owned(),
                (
                    t["spec_version"].as_u64()?,
                    u16::try_from(t["host_port"].as_u64()?).ok()?,
                ),
            ))
        })
        .collect()
}

fn http_ok(port: u16) -> bool {
    get(([127, 0, 0, 1], port).into())
}

/// Through a peer's ingress: `GET /ok` on the published port 8080 of its address.
fn through_ingress(cluster: &Cluster, peer: usize) -> bool {
    get(std::net::SocketAddr::new(
        cluster.peers[peer].listen.ip(),
        8080,
    ))
}

fn get(addr: std::net::SocketAddr) -> bool {
    knit_tests::answers(addr, "/ok")
}

/// How many slots have some replica, reported running and healthy by some peer, that
/// answers HTTP.
fn slots_answering(cluster: &Cluster, name: &str) -> usize {
    let mut ports: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for peer in &cluster.peers {
        for t in peer
            .cli_json::<Vec<Value>>(&["service", "ps", name])
            .unwrap_or_default()
        {
            if t["state"] == "running"
                && t["health"] == "healthy"
                && let (Some(slot), Some(port)) = (t["slot"].as_str(), t["host_port"].as_u64())
            {
                ports
                    .entry(slot.to_owned())
                    .or_default()
                    .push(u16::try_from(port).unwrap_or(0));
            }
        }
    }
    ports
        .values()
        .filter(|ps| ps.iter().any(|p| http_ok(*p)))
        .count()
}

/// Every slot answers.
fn all_slots_answer(cluster: &Cluster, name: &str, replicas: usize) -> bool {
    slots_answering(cluster, name) == replicas
}

/// The spec version as `peer` (the one that wrote it) has it.
fn spec_version(cluster: &Cluster, peer: usize, name: &str) -> u64 {
    cluster.peers[peer].spec(name).unwrap().unwrap()["version"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_rolling_update_goes_in_waves_and_a_broken_version_pauses_or_rolls_back() {
    let _lock = cluster_lock();
    let cluster = Cluster::start(3, "fast").unwrap();
    create(&cluster, "web");
    wait_until(Duration::from_secs(60), "6 healthy replicas", || {
        (serving(&cluster, "web").len() == 6).then_some(())
    })
    .unwrap();

    cluster.peers[1]
        .cli_ok(&[
            "service",
            "update",
            "--detach",
            "--env-add",
            "V=2",
            "--update-parallelism",
            "2",
            "--update-delay",
            "2s",
            "--update-monitor",
            "1s",
            "web",
        ])
        .unwrap();
    let v2 = spec_version(&cluster, 1, "web");
    // Watch the rollout: at most 2 slots move at a time, and the service answers throughout.
    let started = Instant::now();
    let mut updated_counts = Vec::new();
    let (mut requests, mut failed) = (0, 0);
    loop {
        for _ in 0..5 {
            requests += 1;
            if !through_ingress(&cluster, 0) {
                failed += 1;
            }
        }
        // Stop-first: the slots of the current wave may be down, never more; the service answers.
        let answering = slots_answering(&cluster, "web");
        assert!(
            answering >= 4,
            "only {answering} of 6 slots answered during the update"
        );
        let now = serving(&cluster, "web");
        let updated = now.values().filter(|(v, _)| *v == v2).count();
        if updated_counts.last() != Some(&updated) {
            updated_counts.push(updated);
        }
        if updated == 6 && now.len() == 6 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "update stalled at {updated_counts:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = started.elapsed();
    eprintln!(
        "6 replicas updated in waves {updated_counts:?} in {took:?}; {failed} of {requests} requests through the ingress failed"
    );
    assert_eq!(
        failed, 0,
        "no failed request through the ingress during the update"
    );
    assert!(
        updated_counts.windows(2).all(|w| w[1] - w[0] <= 2),
        "waves of at most 2: {updated_counts:?}"
    );
    assert!(
        took >= Duration::from_secs(6),
        "monitor 1 s and delay 2 s between three waves: {took:?}"
    );

    // A broken version (exits at start) pauses the rollout: most slots stay on v2.
    cluster.peers[2]
        .cli_ok(&[
            "service",
            "update",
            "--detach",
            "--env-add",
            "BROKEN=1",
            "--update-parallelism",
            "1",
            "web",
        ])
        .unwrap();
    std::thread::sleep(Duration::from_secs(8));
    let now = serving(&cluster, "web");
    assert!(
        now.values().filter(|(v, _)| *v == v2).count() >= 5,
        "the rollout paused: {now:?}"
    );
    assert!(all_slots_answer(&cluster, "web", 5) || now.len() >= 5);

    // With rollback as the failure action, a broken version is undone.
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "update",
            "--detach",
            "--env-rm",
            "BROKEN",
            "--update-parallelism",
            "0",
            "--force",
            "web",
        ])
        .unwrap();
    wait_until(Duration::from_secs(90), "all healthy again", || {
        (serving(&cluster, "web").len() == 6).then_some(())
    })
    .unwrap();
    let good = spec_version(&cluster, 0, "web");
    wait_until(Duration::from_secs(90), "all on the good version", || {
        serving(&cluster, "web")
            .values()
            .all(|(v, _)| *v == good)
            .then_some(())
    })
    .unwrap();
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "update",
            "--detach",
            "--env-add",
            "BROKEN=1",
            "--update-failure-action",
            "rollback",
            "web",
        ])
        .unwrap();
    let broken = spec_version(&cluster, 0, "web");
    let (_, took) = wait_until(Duration::from_secs(90), "the rollback", || {
        let spec = cluster.peers[0].spec("web").ok()??;
        let rolled = spec["version"].as_u64()? > broken && spec["env"].get("BROKEN").is_none();
        let now = serving(&cluster, "web");
        (rolled && now.len() == 6 && now.values().all(|(v, _)| *v > broken)).then_some(())
    })
    .unwrap();
    eprintln!("broken version rolled back in {took:?}");
}

#[test]
fn a_drained_node_hands_its_replicas_over_without_a_failed_request_and_takes_them_back() {
    let _lock = cluster_lock();
    let cluster = Cluster::start(3, "fast").unwrap();
    create(&cluster, "api");
    wait_until(Duration::from_secs(60), "6 healthy replicas", || {
        (serving(&cluster, "api").len() == 6).then_some(())
    })
    .unwrap();
    let drained = cluster.peers[1].node_id().unwrap();
    // Placement is a function of the members and their availability: once p1 is active
    // again, every slot goes back where it was.
    let before: BTreeMap<String, String> = tasks(&cluster, "api")
        .iter()
        .filter_map(|t| {
            Some((
                t["slot"].as_str()?.to_owned(),
                t["node_id"].as_str()?.to_owned(),
            ))
        })
        .collect();
    cluster.peers[0]
        .cli_ok(&["node", "update", "--availability", "drain", "p1"])
        .unwrap();
    let started = Instant::now();
    let (mut requests, mut failed) = (0, 0);
    loop {
        assert!(
            all_slots_answer(&cluster, "api", 6),
            "a slot stopped answering during the drain"
        );
        for _ in 0..5 {
            requests += 1;
            if !through_ingress(&cluster, 2) {
                failed += 1;
            }
        }
        let on_drained = tasks(&cluster, "api")
            .iter()
            .filter(|t| t["node_id"] == drained.as_str())
            .count();
        if on_drained == 0 && serving(&cluster, "api").len() == 6 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "drain did not finish"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "drained in {:?}; {failed} of {requests} requests through the ingress failed",
        started.elapsed()
    );
    assert_eq!(
        failed, 0,
        "no failed request through the ingress during the drain"
    );
    let rows = cluster.peers[2].nodes().unwrap();
    assert!(rows.iter().any(|r| r.id == drained), "still a member");

    cluster.peers[0]
        .cli_ok(&["node", "update", "--availability", "active", "p1"])
        .unwrap();
    wait_until(Duration::from_secs(60), "p1 to take its share back", || {
        let now: BTreeMap<String, String> = tasks(&cluster, "api")
            .iter()
            .filter(|t| t["desired_state"] == "running" && t["state"] == "running")
            .filter_map(|t| {
                Some((
                    t["slot"].as_str()?.to_owned(),
                    t["node_id"].as_str()?.to_owned(),
                ))
            })
            .collect();
        (now == before && serving(&cluster, "api").len() == 6).then_some(())
    })
    .unwrap();
}

#[test]
fn a_rollout_survives_the_death_of_its_coordinator() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(4, "fast").unwrap();
    create(&cluster, "job");
    wait_until(Duration::from_secs(60), "6 healthy replicas", || {
        (serving(&cluster, "job").len() == 6).then_some(())
    })
    .unwrap();
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "update",
            "--detach",
            "--env-add",
            "V=2",
            "--update-parallelism",
            "1",
            "--update-delay",
            "1s",
            "--update-monitor",
            "1s",
            "job",
        ])
        .unwrap();
    let v2 = spec_version(&cluster, 0, "job");
    // The coordinator publishes the rollout's progress in its node-owned records; find it
    // once the rollout is under way.
    let (coordinator, _) = wait_until(Duration::from_secs(30), "the rollout under way", || {
        let now = serving(&cluster, "job");
        let updated = now.values().filter(|(v, _)| *v == v2).count();
        if !(1..6).contains(&updated) {
            return None;
        }
        (0..4).find(|&i| {
            let out = cluster.peers[i].cli(&["node", "ls"]).ok();
            out.is_some_and(|o| o.status.success())
                && cluster.peers[i].log_tail(200).contains("wave 1")
        })
    })
    .unwrap();
    eprintln!(
        "coordinator is {}; killing it mid-rollout",
        cluster.peers[coordinator].name
    );
    cluster.peers[coordinator].lose_host();
    let (_, took) = wait_until(Duration::from_secs(120), "the rollout to finish", || {
        let now = serving(&cluster, "job");
        (now.len() == 6 && now.values().all(|(v, _)| *v == v2)).then_some(())
    })
    .unwrap();
    eprintln!("rollout finished {took:?} after its coordinator died");
    // Once: the spec was not rolled out again (no newer version appeared).
    let survivor = (0..4).find(|&i| i != coordinator).unwrap();
    assert_eq!(spec_version(&cluster, survivor, "job"), v2);
}

#[test]
fn scaling_up_and_down_converges_and_leaves_nothing_behind() {
    let _lock = cluster_lock();
    let cluster = Cluster::start(3, "fast").unwrap();
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "create",
            "--name",
            "sc",
            "--driver",
            "process",
            "--replicas",
            "3",
            "--",
            "sleep",
            "600",
        ])
        .unwrap();
    let running = |n: usize| {
        move |cluster: &Cluster| {
            let tasks = tasks(cluster, "sc");
            let up = tasks
                .iter()
                .filter(|t| t["desired_state"] == "running" && t["state"] == "running")
                .count();
            (up == n && tasks.len() == n).then_some(())
        }
    };
    let (_, took) = wait_until(Duration::from_secs(60), "3 replicas", || {
        running(3)(&cluster)
    })
    .unwrap();
    eprintln!("3 replicas after {took:?}");
    cluster.peers[1]
        .cli_ok(&["service", "scale", "sc=12"])
        .unwrap();
    let (_, took) = wait_until(Duration::from_secs(60), "12 replicas", || {
        running(12)(&cluster)
    })
    .unwrap();
    eprintln!("scaled 3 -> 12 in {took:?}");
    cluster.peers[2]
        .cli_ok(&["service", "scale", "sc=2"])
        .unwrap();
    let (_, took) = wait_until(Duration::from_secs(60), "2 replicas", || {
        running(2)(&cluster)
    })
    .unwrap();
    eprintln!("scaled 12 -> 2 in {took:?}");
    let processes: usize = cluster
        .peers
        .iter()
        .flat_map(|p| p.replica_pids())
        .filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
        .count();
    assert_eq!(processes, 2, "nothing left running beyond 2");
}

#[test]
fn a_paused_node_keeps_its_replicas_but_takes_no_new_ones() {
    let _lock = cluster_lock();
    let cluster = Cluster::start(3, "fast").unwrap();
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "create",
            "--name",
            "pz",
            "--driver",
            "process",
            "--replicas",
            "6",
            "--",
            "sleep",
            "600",
        ])
        .unwrap();
    let on = |cluster: &Cluster, node: &str| -> Option<Vec<String>> {
        let tasks = tasks(cluster, "pz");
        let up = tasks.iter().filter(|t| t["state"] == "running").count();
        (up == tasks.len()).then(|| {
            tasks
                .iter()
                .filter(|t| t["node_id"] == node && t["desired_state"] == "running")
                .map(|t| format!("{} {}", t["slot"], t["id"]))
                .collect()
        })
    };
    // The node with the most replicas is paused.
    let ids: Vec<String> = (0..3)
        .map(|i| cluster.peers[i].node_id().unwrap())
        .collect();
    let (counts, _) = wait_until(Duration::from_secs(60), "6 replicas", || {
        let counts: Vec<Vec<String>> = ids
            .iter()
            .map(|id| on(&cluster, id))
            .collect::<Option<_>>()?;
        (counts.iter().map(Vec::len).sum::<usize>() == 6).then_some(counts)
    })
    .unwrap();
    let busiest = (0..3).max_by_key(|&i| counts[i].len()).unwrap();
    let name = format!("p{busiest}");
    cluster.peers[0]
        .cli_ok(&["node", "update", "--availability", "pause", &name])
        .unwrap();
    cluster.peers[1]
        .cli_ok(&["service", "scale", "pz=12"])
        .unwrap();
    let (_, _) = wait_until(Duration::from_secs(60), "12 replicas", || {
        let total: usize = ids
            .iter()
            .map(|id| on(&cluster, id).map_or(0, |v| v.len()))
            .sum();
        (total == 12).then_some(())
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let kept = on(&cluster, &ids[busiest]).unwrap();
    assert_eq!(
        kept, counts[busiest],
        "the paused node keeps exactly the replicas it ran: scaling restarts none"
    );
}
