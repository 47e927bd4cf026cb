//! Autoscaling on measured CPU: a service whose replicas burn CPU grows, and shrinks back
//! once the load stops. Every change is a new spec version.

use std::time::Duration;

use knit_tests::{Cluster, cluster_lock, wait_until};

fn replicas_and_version(cluster: &Cluster) -> Option<(u64, u64)> {
    let spec = cluster.peers[0].spec("burn").ok()??;
    Some((
        spec["mode"]["replicated"]["replicas"].as_u64()?,
        spec["version"].as_u64()?,
    ))
}

#[test]
fn a_busy_service_scales_up_and_back_down() {
    let _lock = cluster_lock();
    let cluster = Cluster::start(2, "fast").unwrap();
    let flag = cluster.root().join("burn");
    // Burns a core while the flag file exists; at the lowest priority, so the peers keep
    // their CPU. On a busy machine the burner gets little: the target is a low 5% of a core,
    // which an idle replica stays well under.
    let script = format!(
        "while :; do if [ -e {} ]; then :; else sleep 0.2; fi; done",
        flag.display()
    );
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "create",
            "--name",
            "burn",
            "--driver",
            "process",
            "--replicas",
            "1",
            "--autoscale-min",
            "1",
            "--autoscale-max",
            "3",
            "--autoscale-cpu-target",
            "5",
            "--",
            "nice",
            "-n",
            "19",
            "sh",
            "-c",
            &script,
        ])
        .unwrap();
    let (_, start_version) = replicas_and_version(&cluster).unwrap();
    std::fs::write(&flag, b"").unwrap();
    let ((up, up_version), took) = wait_until(Duration::from_secs(60), "a scale-up", || {
        replicas_and_version(&cluster).filter(|(n, _)| *n >= 2)
    })
    .unwrap();
    eprintln!("scaled up to {up} after {took:?}");
    assert!(up_version > start_version, "a new spec version");
    std::fs::remove_file(&flag).unwrap();
    let ((down, _), took) = wait_until(Duration::from_secs(90), "a scale-down", || {
        replicas_and_version(&cluster).filter(|(n, _)| *n == 1)
    })
    .unwrap();
    eprintln!("scaled back down to {down} after {took:?}");
}
