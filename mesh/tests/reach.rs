//! The reachability check between real meshes on 127.0.0.1: after a `down`, the members
//! still there answer a member's questions over QUIC.
#![cfg(feature = "quic")]

mod common;

use std::time::Duration;

use common::wait_until;

use knit_mesh::MemberState;
use knit_mesh::quic::Mesh;
use knit_mesh::quic::reach::answers_needed;
use tokio_util::sync::CancellationToken;

fn states(mesh: &Mesh) -> Vec<MemberState> {
    mesh.view()
        .borrow()
        .members
        .iter()
        .map(|m| m.state)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_down_a_member_checks_a_majority_and_stops() {
    const MEMBERS: usize = 7;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let (seed, addr) = common::start_seed(&shutdown);
    let mut others = Vec::new();
    for _ in 1..MEMBERS {
        // Each with a token of its own, so that one can be stopped alone.
        let own = shutdown.child_token();
        others.push((common::join_second(&seed, addr, &own).await, own));
    }
    wait_until("every member alive", Duration::from_secs(20), || {
        let s = states(&seed);
        s.len() == MEMBERS && s.iter().all(|s| *s == MemberState::Alive)
    })
    .await;

    // One member stops without a word: the others suspect it, see it down, and check
    // the rest.
    let (gone, stop) = others.pop().unwrap();
    let gone = gone.view().borrow().me.node;
    stop.cancel();
    let mut reach = seed.reachability();
    let down = [gone].into();
    // The check made ahead while it was suspect, or the one made once it was down.
    wait_until(
        "the seed's check for the member gone",
        Duration::from_secs(20),
        || reach.borrow_and_update().answered_for(&down).is_some(),
    )
    .await;
    let last = reach.borrow().answered_for(&down).cloned().unwrap();
    // Seven known: this member and three others are a majority. (Which members were asked,
    // and when the check stops, is `reach`'s unit tests' concern.)
    assert!(last.reachable.len() >= answers_needed(MEMBERS), "{last:?}");
    assert!(!last.reachable.contains(&gone), "{last:?}");
}
