//! A member declared down while it was only frozen comes back at a new epoch, as the
//! same process: the others keep their connections to it rather than each dialing it
//! again (a handshake per member per false `down`). Real meshes over QUIC on 127.0.0.1.
#![cfg(feature = "quic")]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::wait_until;

use knit_mesh::quic::{Mesh, bind};
use knit_mesh::store::Store;
use knit_mesh::{MemberState, NodeId};
use tokio_util::sync::CancellationToken;

/// `node`'s state and epoch in `mesh`'s view.
fn seen(mesh: &Mesh, node: NodeId) -> Option<(MemberState, u64)> {
    mesh.view()
        .borrow()
        .members
        .iter()
        .find(|m| m.peer.node == node)
        .map(|m| (m.state, m.peer.epoch))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_back_from_a_false_down_keeps_its_connections() {
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let (seed, addr) = common::start_seed(&shutdown);
    let other = common::join_second(&seed, addr, &shutdown).await;

    // The member to freeze runs on a runtime of its own, on one thread: blocking that
    // thread stops everything it does, its QUIC connections included, as a stopped
    // process (SIGSTOP) would.
    let (handle_tx, handle_rx) = tokio::sync::oneshot::channel();
    let (freeze_tx, freeze_rx) = std::sync::mpsc::channel::<Duration>();
    let token = seed.token();
    let frozen_shutdown = shutdown.child_token();
    let stop = frozen_shutdown.clone();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let endpoint = bind("127.0.0.1:0".parse().unwrap(), &rand::random()).unwrap();
            let (node, creds, _) = knit_mesh::quic::join::join(&endpoint, addr, &token)
                .await
                .unwrap();
            let mesh = common::start_mesh(
                endpoint,
                node,
                &creds,
                Store::new(node),
                vec![addr],
                &frozen_shutdown,
            );
            let _ = handle_tx.send(mesh);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                if let Ok(pause) = freeze_rx.try_recv() {
                    std::thread::sleep(pause);
                }
            }
        });
    });
    let frozen = handle_rx.await.unwrap();
    let victim = frozen.view().borrow().me.node;
    wait_until("every member alive", Duration::from_secs(20), || {
        [&seed, &other].iter().all(|m| {
            let view = m.view().borrow().clone();
            view.members.len() == 3 && view.members.iter().all(|m| m.state == MemberState::Alive)
        })
    })
    .await;
    let epoch = seen(&seed, victim).unwrap().1;
    // Let the pair's connections settle (each dials the others once).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dials = |m: &Mesh| m.metrics().dials.load(Ordering::Relaxed);
    let before = (dials(&seed), dials(&other));

    freeze_tx.send(Duration::from_secs(6)).unwrap();
    wait_until("the frozen member down", Duration::from_secs(20), || {
        seen(&seed, victim).is_some_and(|(state, _)| state == MemberState::Down)
    })
    .await;
    wait_until(
        "the member back at a new epoch",
        Duration::from_secs(30),
        || {
            [&seed, &other].iter().all(|m| {
                seen(m, victim).is_some_and(|(state, e)| state == MemberState::Alive && e > epoch)
            })
        },
    )
    .await;
    // Gossip both ways with it at its new epoch for a while.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        [&seed, &other]
            .iter()
            .all(|m| seen(m, victim).is_some_and(|(s, _)| s == MemberState::Alive)),
        "the member stays alive"
    );
    let kept = |m: &Mesh| m.metrics().kept_across_epoch.load(Ordering::Relaxed);
    let gone = |m: &Mesh| m.metrics().kept_but_gone.load(Ordering::Relaxed);
    eprintln!(
        "dials before {before:?}, after {:?}; kept {} {}",
        (dials(&seed), dials(&other)),
        kept(&seed),
        kept(&other)
    );
    assert_eq!(
        gone(&seed) + gone(&other),
        0,
        "a kept connection was given up"
    );
    assert_eq!(
        (dials(&seed), dials(&other)),
        before,
        "the members dialed the member back from its false down"
    );
    frozen_shutdown_and_join(&shutdown, thread);
}

fn frozen_shutdown_and_join(shutdown: &CancellationToken, thread: std::thread::JoinHandle<()>) {
    shutdown.cancel();
    let started = Instant::now();
    while !thread.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the frozen member did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    thread.join().unwrap();
}
