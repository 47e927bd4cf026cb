//! `/metrics` end to end: the families an operator graphs, read from a real peer while a
//! replica is killed and comes back.

use std::time::Duration;

use knit_tests::{Cluster, cluster_lock, metric_value, wait_until};

#[test]
fn metrics_show_services_nodes_members_and_a_heal() {
    let _lock = cluster_lock();
    let cluster = Cluster::start(1, "fast").expect("a peer");
    let p0 = &cluster.peers[0];
    // No health check (running counts as healthy); a restart waits 2 s, so that the slot
    // is seen without a running replica.
    p0.cli_ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--driver",
        "process",
        "--replicas",
        "2",
        "--restart-delay",
        "2s",
        "--",
        "sleep",
        "1000",
    ])
    .unwrap();
    let scrape = || p0.metrics_text(Duration::from_secs(5)).unwrap_or_default();
    let healthy = r#"knit_service_replicas_healthy{service="web"}"#;
    wait_until(
        Duration::from_secs(30),
        "two healthy replicas in /metrics",
        || (metric_value(&scrape(), healthy).ok()? == 2).then_some(()),
    )
    .unwrap();
    let text = scrape();
    for (name, value) in [
        (r#"knit_service_replicas_desired{service="web"}"#, 2),
        (r#"knit_service_replicas_running{service="web"}"#, 2),
        (r#"knit_members{state="alive"}"#, 1),
        (r#"knit_members{state="down"}"#, 0),
    ] {
        assert_eq!(metric_value(&text, name).unwrap(), value, "{name}\n{text}");
    }
    let version = format!(
        r#"knit_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(metric_value(&text, &version).unwrap(), 1, "{text}");
    assert!(
        text.contains("knit_service_rollout_in_progress{service=\"web\"}"),
        "{text}"
    );
    let id = p0.node_id().unwrap();
    let node = format!(r#"knit_node_memory_total_bytes{{node="{id}",name="p0"}}"#);
    wait_until(
        Duration::from_secs(15),
        "the node's telemetry in /metrics",
        || (metric_value(&scrape(), &node).ok()? > 0).then_some(()),
    )
    .unwrap();

    // A replica dies: restarted in place, one heal and one restart. (The peer counts a heal
    // only for a slot it saw running: give its observer a moment first.)
    std::thread::sleep(Duration::from_secs(1));
    let pid = *p0.replica_pids().first().expect("a process replica");
    let status = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status()
        .unwrap();
    assert!(status.success());
    let heals = r#"knit_heal_duration_seconds_count{service="web"}"#;
    let (text, took) = wait_until(Duration::from_secs(30), "a heal in /metrics", || {
        let text = scrape();
        (metric_value(&text, heals).ok()? >= 1).then_some(text)
    })
    .inspect_err(|_| {
        let ps = p0.cli_ok(&["service", "ps", "web"]).unwrap_or_default();
        eprintln!("service ps:\n{ps}\n/metrics:\n{}", scrape());
    })
    .unwrap();
    eprintln!("the heal was counted after {took:?}");
    assert!(
        metric_value(&text, r#"knit_service_restarts_total{service="web"}"#).unwrap() >= 1,
        "{text}"
    );
}
