//! Application streams between two real meshes on 127.0.0.1: a request is refused until a
//! handler is registered, answered by a stream of payloads, bounded per connection, and a
//! requester that goes away is noticed by the handler.
#![cfg(feature = "quic")]

mod common;

use std::time::{Duration, Instant};

use knit_mesh::NodeId;
use knit_mesh::quic::app::{AppError, STREAMS_PER_CONNECTION_MAX};
use knit_mesh::quic::{Credentials, Mesh, bind};
use knit_mesh::store::Store;
use tokio_util::sync::CancellationToken;

/// Two members that see each other alive.
async fn pair(shutdown: &CancellationToken) -> (Mesh, Mesh) {
    let node = NodeId::random(&mut rand::rng());
    let creds = Credentials::create_cluster(&node, [9; 16]).unwrap();
    let endpoint = bind("127.0.0.1:0".parse().unwrap(), &rand::random()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let a = common::start_mesh(endpoint, node, &creds, Store::new(node), vec![], shutdown);
    let b = common::join_second(&a, addr, shutdown).await;
    let started = Instant::now();
    while [&a, &b].iter().any(|m| {
        m.view()
            .borrow()
            .members
            .iter()
            .filter(|r| r.state == knit_mesh::MemberState::Alive)
            .count()
            < 2
    }) {
        assert!(started.elapsed() < Duration::from_secs(15), "no cluster");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_answered_bounded_and_abandoned_cleanly() {
    let shutdown = CancellationToken::new();
    let (a, b) = pair(&shutdown).await;
    let b_node = b.view().borrow().me.node;

    // No handler yet: a clear refusal, not a hang.
    match a.request(b_node, b"hello".to_vec()).await {
        Err(AppError::Refused { message, .. }) => {
            assert!(message.contains("no application service"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Too big, and an unknown node: refused before anything is sent.
    assert!(matches!(
        a.request(b_node, vec![0; 1 << 20]).await,
        Err(AppError::TooBig(_))
    ));
    let stranger = NodeId::random(&mut rand::rng());
    assert!(matches!(
        a.request(stranger, vec![]).await,
        Err(AppError::Down(_))
    ));

    // A handler that answers "count N" with N payloads, and "hold" by waiting for the
    // requester to go away (then reports it).
    let mut calls = b.serve_requests();
    let (gone_tx, mut gone) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(call) = calls.recv().await {
            let gone_tx = gone_tx.clone();
            tokio::spawn(async move {
                let text = String::from_utf8(call.request).unwrap();
                if let Some(n) = text.strip_prefix("count ") {
                    for i in 0..n.parse::<u32>().unwrap() {
                        call.reply.send(i.to_be_bytes().to_vec()).await.unwrap();
                    }
                } else if text == "fail" {
                    call.reply.fail("no such thing".into()).await;
                } else {
                    call.reply.closed().await;
                    let _ = gone_tx.send(()).await;
                }
            });
        }
    });

    let mut stream = a.request(b_node, b"count 100".to_vec()).await.unwrap();
    let mut got = Vec::new();
    while let Some(payload) = stream.next().await.unwrap() {
        got.push(u32::from_be_bytes(payload.try_into().unwrap()));
    }
    assert_eq!(got, (0..100).collect::<Vec<_>>());

    let mut failing = a.request(b_node, b"fail".to_vec()).await.unwrap();
    assert!(matches!(
        failing.next().await,
        Err(AppError::Refused { message, .. }) if message == "no such thing"
    ));

    // Streams held open fill the connection's pool; the next is refused as busy.
    let mut held = Vec::new();
    for _ in 0..STREAMS_PER_CONNECTION_MAX {
        held.push(a.request(b_node, b"hold".to_vec()).await.unwrap());
    }
    match a.request(b_node, b"hold".to_vec()).await {
        Err(AppError::Refused { message, .. }) => assert!(message.contains("busy"), "{message}"),
        other => panic!("expected busy, got {other:?}"),
    }
    // Dropping them tells the handler, which frees the pool.
    drop(held);
    for _ in 0..STREAMS_PER_CONNECTION_MAX {
        tokio::time::timeout(Duration::from_secs(5), gone.recv())
            .await
            .expect("the handler hears that the requester went away");
    }
    let started = Instant::now();
    loop {
        match a.request(b_node, b"count 1".to_vec()).await {
            Ok(_) => break,
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(5),
                "the pool is not freed: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
}
