//! A store holding service specs that break the rules (written by an older or misbehaving
//! peer): the snapshot lists them as invalid, placement gives them no slot, and a round's
//! plan leaves their replicas alone, while valid services are placed as ever.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use knit_mesh::quic::View;
use knit_mesh::store::Store;
use knit_mesh::trust::Signer;
use knit_mesh::{Connection, MemberRecord, MemberState, NodeId, PeerId, Profile};
use knit_scheduler::spec::limits::SPEC_RECORD_MAX_BYTES;
use knit_scheduler::spec::{Driver, Limits, Mode};
use knit_scheduler::{
    Action, Health, ReconcileConfig, ReplicaReport, ReplicaState, ServiceSpec, SlotId,
};

use super::acted_on;
use crate::cluster::{NodeInfo, Snapshot};
use crate::records::{LIMITS_KEY, info_key, service_key};

/// Signs nothing: a local store takes its own writes as they are.
struct Unsigned;

impl Signer for Unsigned {
    fn sign(&self, _message: &[u8]) -> Vec<u8> {
        vec![0; 64]
    }
}

fn process(name: &str, replicas: u32) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        driver: Driver::Process,
        command: vec!["true".into()],
        mode: Mode::Replicated { replicas },
        version: 1,
        ..ServiceSpec::default()
    }
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

/// Three alive members running the process driver, and `records` in the store.
fn cluster_with(records: Vec<(String, Vec<u8>)>) -> Snapshot {
    let nodes: Vec<NodeId> = (1..=3u8).map(|b| NodeId::from_bytes([b; 16])).collect();
    let peer = |i: usize| PeerId {
        node: nodes[i],
        addr: format!("127.0.0.{}:7946", i + 1).parse().unwrap(),
        epoch: 1,
    };
    let mut store = Store::new(nodes[0]);
    for (i, node) in nodes.iter().enumerate() {
        let info = NodeInfo {
            name: format!("n{i}"),
            addr: peer(i).addr,
            labels: BTreeMap::new(),
            version: "test".into(),
            started_at_ms: 0,
            capacity: Default::default(),
            drivers: vec!["process".into()],
        };
        store.put(&info_key(node), Some(json(&info)), 1_000, &Unsigned);
    }
    for (key, value) in records {
        store.put(&key, Some(value), 1_000, &Unsigned);
    }
    let view = View {
        me: peer(0),
        connection: Connection::Active,
        profile: Profile::Fast,
        members: (0..3)
            .map(|i| MemberRecord {
                peer: peer(i),
                state: MemberState::Alive,
                since_ms: 0,
            })
            .collect(),
    };
    Snapshot::new(Arc::new(view), Arc::new(store), Arc::default())
}

fn running(slot: SlotId, id: &str) -> ReplicaReport {
    ReplicaReport {
        slot,
        spec_version: 1,
        template: 1,
        state: ReplicaState::Running,
        health: Health::None,
        host_ports: BTreeMap::new(),
        error: None,
        runtime_id: id.into(),
        started_at_ms: 0,
        restarts: 0,
        cpu_millis: None,
    }
}

#[test]
fn invalid_stored_specs_are_listed_and_never_acted_on() {
    let mut alias = process("other", 1);
    alias.version = 3;
    let big = format!(
        "{{\"name\":\"big\",\"args\":[\"{}\"]}}",
        "x".repeat(SPEC_RECORD_MAX_BYTES)
    );
    let snapshot = cluster_with(vec![
        (service_key("blog"), json(&process("blog", 2))),
        (service_key("boom"), json(&process("boom", 4_000_000_000))),
        (service_key("junk"), b"not a spec".to_vec()),
        (service_key("big"), big.into_bytes()),
        (service_key("alias"), json(&alias)),
    ]);
    let services = snapshot.services();
    assert_eq!(services.valid.keys().collect::<Vec<_>>(), ["blog"]);
    let reasons: BTreeMap<&str, &str> = services
        .invalid
        .iter()
        .map(|(name, bad)| (name.as_str(), bad.reason.as_str()))
        .collect();
    assert_eq!(
        reasons.keys().copied().collect::<Vec<_>>(),
        ["alias", "big", "boom", "junk"]
    );
    assert!(reasons["boom"].contains("4000000000") && reasons["boom"].contains("0 to 10000"));
    assert!(
        reasons["junk"].contains("does not decode"),
        "{}",
        reasons["junk"]
    );
    assert!(reasons["big"].contains("bytes"), "{}", reasons["big"]);
    assert!(
        reasons["alias"].contains("names \"other\""),
        "{}",
        reasons["alias"]
    );
    assert!(
        services.invalid["boom"].spec.is_some(),
        "an update can start from it"
    );

    // Placement has the valid service's slots and nothing of the others.
    let placement = snapshot.placement();
    let slots: Vec<String> = placement.iter().map(|(s, _)| s.to_string()).collect();
    assert_eq!(slots, ["blog.1", "blog.2"]);

    // This node runs replicas of two ignored services: the plan leaves them alone.
    let me = knit_scheduler::NodeId::new(snapshot.view.me.node.to_string()).unwrap();
    let alive: BTreeSet<knit_scheduler::NodeId> = snapshot
        .view
        .members
        .iter()
        .map(|m| knit_scheduler::NodeId::new(m.peer.node.to_string()).unwrap())
        .collect();
    let mine = vec![
        running(SlotId::replica("boom", 7), "boom-7"),
        running(SlotId::replica("junk", 1), "junk-1"),
    ];
    let ignored: BTreeSet<String> = services.invalid.keys().cloned().collect();
    let plan = |ignored: &BTreeSet<String>| {
        let observed = acted_on(&snapshot, &me, mine.clone(), ignored);
        knit_scheduler::plan(
            &me,
            &placement,
            &services.valid,
            &observed,
            &alive,
            &ReconcileConfig::default(),
        )
    };
    let actions = plan(&ignored);
    assert!(
        actions.iter().all(|a| a.slot().service == "blog"),
        "{actions:?}"
    );
    // Without the filter the same round would stop them: the filter is what spares them.
    let unfiltered = plan(&BTreeSet::new());
    assert!(
        unfiltered
            .iter()
            .any(|a| matches!(a, Action::Stop { slot, .. } if slot.service == "boom")),
        "{unfiltered:?}"
    );
}

#[test]
fn the_cluster_limits_and_slot_cap_come_from_the_store() {
    let limits = Limits {
        replicas_max: 5,
        slots_max: 6,
    };
    let snapshot = cluster_with(vec![
        (LIMITS_KEY.to_owned(), json(&limits)),
        (service_key("a"), json(&process("a", 3))),
        (service_key("b"), json(&process("b", 3))),
        (service_key("c"), json(&process("c", 4))),
        (service_key("d"), json(&process("d", 6))),
    ]);
    assert_eq!(snapshot.limits(), limits);
    let services = snapshot.services();
    assert_eq!(services.valid.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert!(services.invalid["c"].reason.contains("cap of 6 slots"));
    assert!(services.invalid["d"].reason.contains("0 to 5"));

    // Limits out of range are ignored for the defaults.
    let wild = Limits {
        replicas_max: u32::MAX,
        slots_max: 1,
    };
    let snapshot = cluster_with(vec![(LIMITS_KEY.to_owned(), json(&wild))]);
    assert_eq!(snapshot.limits(), Limits::default());
}
