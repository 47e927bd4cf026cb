//! Containers prepared ahead of a takeover, against the local engine: made but not listed,
//! started as they are by a matching launch, made again for one that differs, discarded,
//! and removed by a later run of the peer.

use std::collections::BTreeSet;

use super::*;

/// The ids of `node`'s containers, all or only the prepared ones, as the docker CLI lists
/// them (each one's status after a space).
fn containers(node: &TestNode, only_prepared: bool) -> Vec<(String, String)> {
    let node_filter = format!("label={}={}", labels::NODE, node.0);
    let mut args = vec!["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.State}}"];
    args.extend(["--filter", &node_filter]);
    let prepared_filter = format!("label={}", prepared::PREPARED);
    if only_prepared {
        args.extend(["--filter", &prepared_filter]);
    }
    let out = std::process::Command::new("docker")
        .args(&args)
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, state)| (id.to_owned(), state.to_owned()))
        .collect()
}

#[tokio::test]
async fn a_prepared_container_is_no_replica_until_a_matching_start_starts_it() {
    let Some((driver, image)) = driver_and_image().await else {
        return;
    };
    let node = TestNode::new();
    let slot = SlotId::replica("web", 1);
    let wanted = launch(&node.0, slot.clone(), &image, &[]);
    assert!(driver.prepare(&wanted).await.expect("prepare"));
    assert!(
        !driver.prepare(&wanted).await.expect("prepare again"),
        "the same launch is prepared once"
    );
    let prepared = containers(&node, true);
    assert_eq!(prepared.len(), 1, "{prepared:?}");
    assert_eq!(prepared[0].1, "created");
    assert_eq!(driver.list(&node.0).await.expect("list"), Vec::new());
    assert_eq!(driver.prepared_slots(), BTreeSet::from([slot.clone()]));

    let replica = driver.start(&wanted).await.expect("start");
    assert_eq!(
        replica.runtime_id, prepared[0].0,
        "the prepared container ran"
    );
    assert_eq!(replica.state, ReplicaState::Running);
    assert!(driver.prepared_slots().is_empty());
    let port = replica.host_ports[&images::BUSYBOX_HTTP_PORT];
    let t0 = Instant::now();
    while http_status(port).is_none_or(|s| !s.contains(" 200 ")) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no HTTP 200 on {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = wait_list(&driver, &node, Duration::from_secs(5), "the replica", |r| {
        r.len() == 1
    })
    .await;
    assert_eq!(listed[0].runtime_id, replica.runtime_id);
    assert_eq!((&listed[0].slot, listed[0].spec_version), (&slot, 7));
}

#[tokio::test]
async fn a_launch_that_differs_gets_a_new_container_and_the_prepared_one_goes() {
    let Some((driver, image)) = driver_and_image().await else {
        return;
    };
    let node = TestNode::new();
    let slot = SlotId::replica("web", 2);
    let old = launch(&node.0, slot.clone(), &image, &[]);
    assert!(driver.prepare(&old).await.expect("prepare"));
    let prepared = containers(&node, true);
    assert_eq!(prepared.len(), 1, "{prepared:?}");
    let mut newer = old.clone();
    let mut spec = (*newer.spec).clone();
    spec.version = 8;
    spec.env.insert("COLOUR".into(), "blue".into());
    newer.spec = Arc::new(spec);

    let replica = driver.start(&newer).await.expect("start");
    assert_ne!(replica.runtime_id, prepared[0].0);
    assert_eq!(replica.spec_version, 8);
    let all = containers(&node, false);
    assert_eq!(all.len(), 1, "only the new replica is left: {all:?}");
    assert_eq!(all[0].0, replica.runtime_id);
}

#[tokio::test]
async fn discarded_and_earlier_runs_prepared_containers_are_removed() {
    let Some((first, image)) = driver_and_image().await else {
        return;
    };
    let node = TestNode::new();
    let kept = SlotId::replica("web", 3);
    let dropped = SlotId::replica("web", 4);
    for slot in [&kept, &dropped] {
        let made = first
            .prepare(&launch(&node.0, slot.clone(), &image, &[]))
            .await;
        assert!(made.expect("prepare"));
    }
    assert_eq!(containers(&node, true).len(), 2);
    first
        .discard_prepared(&BTreeSet::from([kept.clone()]))
        .await;
    assert_eq!(first.prepared_slots(), BTreeSet::from([kept.clone()]));
    assert_eq!(containers(&node, true).len(), 1);

    // A new run of the peer (a new driver) did not make the one left: its first list,
    // a full one, removes it.
    let Some(later) = driver().await else {
        return;
    };
    assert_eq!(later.list(&node.0).await.expect("list"), Vec::new());
    assert_eq!(containers(&node, false), Vec::new());
}
