//! Quorum counting and the view of a restarted peer.

use super::*;
use knit_mesh::quic::reach::Answered;

fn node(b: u8) -> NodeId {
    NodeId::from_bytes([b; 16])
}

/// The quorum of `me` (node `me`), the others that answered a check being `answered`
/// (`None`: no check ran yet for this down set).
fn quorum(me: u8, states: &[(u8, MemberState)], answered: Option<&[u8]>) -> Quorum {
    let down = states
        .iter()
        .filter(|(_, s)| *s == MemberState::Down)
        .map(|&(b, _)| node(b))
        .collect();
    let reach = match answered {
        Some(ids) => Reachability {
            last: check(down, ids, true),
            ahead: None,
        },
        None => Reachability::default(),
    };
    Quorum::of(
        node(me),
        states.iter().map(|&(b, s)| (node(b), s)),
        &reach,
        &BTreeSet::new(),
    )
}

fn check(down: BTreeSet<NodeId>, ids: &[u8], complete: bool) -> Answered {
    Answered {
        down,
        reachable: ids.iter().map(|&b| node(b)).collect(),
        complete,
    }
}

#[test]
fn a_check_that_stopped_at_a_majority_stands_only_while_it_is_one() {
    use MemberState::{Alive, Down};
    let mut states = vec![(1, Alive), (2, Alive), (3, Alive), (4, Alive), (5, Down)];
    let down: BTreeSet<NodeId> = [node(5)].into();
    // 2 and 3 answered, and the check stopped there: 3 of 5 is a majority.
    let reach = Reachability {
        last: check(down, &[2, 3], false),
        ahead: None,
    };
    let of = |states: &[(u8, MemberState)]| {
        Quorum::of(
            node(1),
            states.iter().map(|&(b, s)| (node(b), s)),
            &reach,
            &BTreeSet::new(),
        )
    };
    let q = of(&states);
    assert!(q.confirmed && q.majority, "{q:?}");
    assert_eq!((q.sees, q.known), (3, 5));
    // Two members join: 3 of 7 is not a majority, and since 4, 6 and 7 were not checked,
    // nothing stands until the mesh checks again.
    states.extend([(6, Alive), (7, Alive)]);
    let q = of(&states);
    assert!(!q.confirmed && !q.majority, "{q:?}");
    assert!(
        q.minority().is_some_and(|m| m.contains("checking")),
        "{q:?}"
    );
}

#[test]
fn a_check_made_ahead_for_the_suspects_stands_once_they_are_down() {
    use MemberState::{Alive, Down};
    let states = [(1, Alive), (2, Alive), (3, Alive), (4, Down), (5, Down)];
    let down: BTreeSet<NodeId> = [node(4), node(5)].into();
    // The last check was for 4 alone; while 5 was suspect, 2 and 3 answered a check ahead.
    let reach = Reachability {
        last: check([node(4)].into(), &[2, 3, 5], true),
        ahead: Some(check(down.clone(), &[2, 3], true)),
    };
    let q = Quorum::of(
        node(1),
        states.iter().map(|&(b, s)| (node(b), s)),
        &reach,
        &BTreeSet::new(),
    );
    assert!(q.confirmed && q.majority, "{q:?}");
    assert_eq!(q.sees, 3);
    // A check ahead for another set stands for nothing.
    let other = Reachability {
        ahead: Some(check([node(5)].into(), &[2, 3], true)),
        ..reach
    };
    let q = Quorum::of(
        node(1),
        states.iter().map(|&(b, s)| (node(b), s)),
        &other,
        &BTreeSet::new(),
    );
    assert!(!q.confirmed, "{q:?}");
}

#[test]
fn only_a_side_that_sees_most_members_reclaims() {
    use MemberState::{Alive, Down, Left, Suspect};
    // One cut off from two: the two reclaim, the one does not.
    assert!(quorum(1, &[(1, Alive), (2, Alive), (3, Down)], Some(&[2])).majority);
    let alone = quorum(3, &[(1, Down), (2, Down), (3, Alive)], Some(&[]));
    assert!(!alone.majority);
    assert_eq!((alone.sees, alone.known), (1, 3));
    assert!(alone.minority().is_some_and(|m| m.contains("sees 1 of 3")));
    // The cut-off host has seen one go down while the other still looks alive: the
    // dial to it fails, so it is not counted.
    assert!(!quorum(3, &[(1, Alive), (2, Down), (3, Alive)], Some(&[])).majority);
    // Until the check of a new down set answers, nothing is reclaimed.
    let waiting = quorum(1, &[(1, Alive), (2, Alive), (3, Down)], None);
    assert!(!waiting.majority && !waiting.confirmed);
    assert!(waiting.minority().is_some_and(|m| m.contains("checking")));
    // 2|3 of 5.
    let five = [(1, Alive), (2, Alive), (3, Down), (4, Down), (5, Down)];
    assert!(!quorum(1, &five, Some(&[2])).majority);
    let five = [(1, Down), (2, Down), (3, Alive), (4, Alive), (5, Alive)];
    assert!(quorum(3, &five, Some(&[4, 5])).majority);
    // A suspect that answers counts; a member that left counts for nothing.
    assert!(quorum(1, &[(1, Alive), (2, Suspect), (3, Down)], Some(&[2])).majority);
    assert!(quorum(3, &[(1, Left), (2, Left), (3, Alive)], None).majority);
    // Nobody down: nothing to reclaim, no check needed.
    assert!(quorum(1, &[(1, Alive), (2, Alive), (3, Suspect)], None).majority);
    // Exactly half: the side with the lowest node id, and only that side.
    assert!(quorum(1, &[(1, Alive), (2, Down)], Some(&[])).majority);
    assert!(!quorum(2, &[(1, Down), (2, Alive)], Some(&[])).majority);
    let four = [(1, Alive), (2, Alive), (3, Down), (4, Down)];
    assert!(quorum(1, &four, Some(&[2])).majority);
    let four = [(1, Down), (2, Down), (3, Alive), (4, Alive)];
    assert!(!quorum(3, &four, Some(&[4])).majority);
    // Alone and the only member: a cluster of one.
    assert!(quorum(1, &[(1, Alive)], None).majority);
    assert_eq!(quorum(1, &[(1, Alive)], None).minority(), None);
}

/// Signs nothing: a local store takes its own writes as they are.
struct Unsigned;

impl knit_mesh::trust::Signer for Unsigned {
    fn sign(&self, _message: &[u8]) -> Vec<u8> {
        vec![0; 64]
    }
}

/// A peer (node 1) that started `started_ago_ms` ago and knows nodes 1-3 from its
/// store, with a service of 6 process replicas; its failure detector has heard of the
/// nodes in `heard` (alive) only.
fn restarted(heard: &[u8], started_ago_ms: u64) -> Snapshot {
    let now = crate::clock::now_ms();
    let peer = |b: u8| PeerId {
        node: node(b),
        addr: format!("127.0.0.{b}:7946").parse().unwrap(),
        epoch: 1,
    };
    let mut store = Store::new(node(1));
    for b in 1..=3 {
        let info = NodeInfo {
            name: format!("n{b}"),
            addr: peer(b).addr,
            labels: BTreeMap::new(),
            version: "test".into(),
            started_at_ms: if b == 1 { now - started_ago_ms } else { 0 },
            capacity: Resources::default(),
            drivers: vec!["process".into()],
        };
        let bytes = serde_json::to_vec(&info).unwrap();
        store.put(&info_key(&node(b)), Some(bytes), now, &Unsigned);
    }
    let spec = ServiceSpec {
        name: "six".into(),
        driver: knit_scheduler::spec::Driver::Process,
        command: vec!["true".into()],
        mode: knit_scheduler::spec::Mode::Replicated { replicas: 6 },
        version: 1,
        ..ServiceSpec::default()
    };
    let bytes = serde_json::to_vec(&spec).unwrap();
    store.put(&service_key("six"), Some(bytes), now, &Unsigned);
    let view = View {
        me: peer(1),
        connection: knit_mesh::Connection::Active,
        profile: knit_mesh::Profile::Fast,
        members: heard
            .iter()
            .map(|&b| MemberRecord {
                peer: peer(b),
                state: MemberState::Alive,
                since_ms: now,
            })
            .collect(),
    };
    Snapshot::new(Arc::new(view), Arc::new(store), Arc::default())
}

fn slots_on(snapshot: &Snapshot, b: u8) -> usize {
    let id = knit_scheduler::NodeId::new(node(b).to_string()).unwrap();
    snapshot
        .placement()
        .iter()
        .filter(|(_, a)| *a == knit_scheduler::placement::Assignment::Assigned(&id))
        .count()
}

#[test]
fn a_restarted_peer_counts_the_members_it_knew_before_hearing_from_them() {
    let all = restarted(&[1, 2, 3], 1_000);
    assert!(all.absent.is_empty(), "all back: nobody is absent");
    // Back alone: the two others it knew count, unseen: a minority that keeps its own.
    let alone = restarted(&[1], 1_000);
    assert_eq!(alone.absent.len(), 2);
    let q = alone.quorum();
    assert_eq!(
        (q.sees, q.known, q.majority, q.confirmed),
        (1, 3, false, true)
    );
    assert!(q.minority().is_some_and(|m| m.contains("sees 1 of 3")));
    assert_eq!(
        slots_on(&alone, 1),
        slots_on(&all, 1),
        "its own share, not all 6"
    );
    let rows = alone
        .view
        .members
        .iter()
        .filter(|m| m.state == MemberState::Down);
    assert_eq!(rows.count(), 2, "`node ls` shows them down");
    // With a second one back: a majority, but within the grace the third keeps its
    // slots, so a peer on its way back finds them still its own.
    let two = restarted(&[1, 2], 1_000);
    assert!(two.quorum().majority);
    assert_eq!(slots_on(&two, 3), slots_on(&all, 3));
    assert!(slots_on(&all, 3) > 0);
    // After the grace, they are reclaimed.
    let later = restarted(&[1, 2], RESTART_GRACE_MS + 1_000);
    assert!(later.quorum().majority);
    assert_eq!(slots_on(&later, 3), 0);
    assert_eq!(slots_on(&later, 1) + slots_on(&later, 2), 6);
}

/// A reading of one member, node 77 (alive), from `store`.
fn reading_of(store: &Store) -> Snapshot {
    let now = crate::clock::now_ms();
    let me = PeerId {
        node: node(77),
        addr: "127.0.0.77:7946".parse().unwrap(),
        epoch: 1,
    };
    let view = View {
        me,
        connection: knit_mesh::Connection::Active,
        profile: knit_mesh::Profile::Fast,
        members: vec![MemberRecord {
            peer: me,
            state: MemberState::Alive,
            since_ms: now,
        }],
    };
    Snapshot::new(Arc::new(view), Arc::new(store.clone()), Arc::default())
}

#[test]
fn a_members_view_follows_its_records_and_never_another_stores() {
    let now = crate::clock::now_ms();
    let member = node(77);
    let mut store = Store::new(member);
    let info = NodeInfo {
        name: "n77".into(),
        addr: "127.0.0.77:7946".parse().unwrap(),
        labels: BTreeMap::from([("zone".to_owned(), "a".to_owned())]),
        version: "test".into(),
        started_at_ms: 0,
        capacity: Resources::default(),
        drivers: vec!["process".into()],
    };
    store.put(
        &info_key(&member),
        Some(serde_json::to_vec(&info).unwrap()),
        now,
        &Unsigned,
    );
    let first = reading_of(&store);
    let view = |s: &Snapshot| s.node_views().into_iter().next().unwrap();
    let before = view(&first);
    assert_eq!(before.labels.get("zone").map(String::as_str), Some("a"));
    assert_eq!(
        before.labels.get(PROCESS_LABEL).map(String::as_str),
        Some("true")
    );
    assert_eq!(before.availability, Availability::Active);

    // An operator relabels and pauses the node: the labels change at once, the pause once
    // the node has applied it.
    let spec = NodeSpec {
        availability: Availability::Pause,
        labels: Some(BTreeMap::from([("zone".to_owned(), "b".to_owned())])),
        auto_drained: false,
    };
    store.put(
        &node_spec_key(&member),
        Some(serde_json::to_vec(&spec).unwrap()),
        now + 1,
        &Unsigned,
    );
    let relabelled = view(&reading_of(&store));
    assert_eq!(relabelled.labels.get("zone").map(String::as_str), Some("b"));
    assert_eq!(
        relabelled.availability,
        Availability::Active,
        "not applied yet"
    );
    let applied = Applied {
        spec: store.stamp(&node_spec_key(&member)).unwrap(),
        kept: Vec::new(),
    };
    store.put(
        &applied_key(&member),
        Some(serde_json::to_vec(&applied).unwrap()),
        now + 2,
        &Unsigned,
    );
    assert_eq!(view(&reading_of(&store)).availability, Availability::Pause);

    // The first reading's store still holds the first records: its view is theirs.
    assert_eq!(view(&first), before);
}
