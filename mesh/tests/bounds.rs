//! Bounds between real meshes on 127.0.0.1: a big state is saved, loaded and synced to a
//! new member in chunks; a flood of unauthenticated join streams does not slow state sync.
#![cfg(feature = "quic")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use knit_mesh::NodeId;
use knit_mesh::quic::credentials::write_atomic;
use knit_mesh::quic::keys::NodeSigner;
use knit_mesh::quic::{Credentials, Mesh, bind, tls};
use knit_mesh::store::Store;
use tokio_util::sync::CancellationToken;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Polls `check` every 20 ms until it holds, or panics after `wait` naming `what`.
async fn wait_until(what: &str, wait: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < wait, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// A first member (`state_mb` MB of state written before it starts, saved to and loaded
/// from a file as a restart would) and a second member that joins through it.
async fn pair(state_mb: usize, shutdown: &CancellationToken) -> (Mesh, Mesh, SocketAddr, usize) {
    let node = NodeId::random(&mut rand::rng());
    let creds = Credentials::create_cluster(&node, [7; 16]).unwrap();
    let signer = NodeSigner::new(&creds.node_key_pem).unwrap();
    let mut store = Store::new(node);
    let keys = state_mb * 16;
    for i in 0..keys {
        let value = vec![(i % 251) as u8; 64 * 1024];
        store.put(&format!("big/{i:06}"), Some(value), now_ms(), &signer);
    }
    let dir = std::env::temp_dir().join(format!("knit-bounds-{}-{state_mb}", std::process::id()));
    let started = Instant::now();
    let bytes = store.encode().unwrap();
    write_atomic(&dir, "state.bin", &bytes).unwrap();
    let saved = started.elapsed();
    let started = Instant::now();
    let loaded = Store::decode(&std::fs::read(dir.join("state.bin")).unwrap()).unwrap();
    let load = started.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "{} MB state ({keys} keys): saved in {saved:?}, loaded in {load:?}",
        bytes.len() >> 20
    );
    assert_eq!(loaded.summary(), store.summary());
    let endpoint = bind("127.0.0.1:0".parse().unwrap(), &rand::random()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let a = common::start_mesh(endpoint, node, &creds, loaded, Vec::new(), shutdown);
    let b = common::join_second(&a, addr, shutdown).await;
    (a, b, addr, keys)
}

async fn big_state_reaches_a_new_member(state_mb: usize) {
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let (_a, b, _, keys) = pair(state_mb, &shutdown).await;
    let store = b.store();
    let synced = wait_until(
        "the new member to hold the state",
        Duration::from_secs(120),
        || store.borrow().scan("big/").count() == keys,
    )
    .await;
    eprintln!(
        "{state_mb} MB state synced to a new member in {synced:?} ({:?} with set-up)",
        started.elapsed()
    );
    shutdown.cancel();
}

/// Past the 16 MB frame limit: the state goes in chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_state_restarts_and_syncs_to_a_new_member() {
    big_state_reaches_a_new_member(20).await;
}

/// The figure; about a minute in a debug build on two cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: cargo test -p knit-mesh --test bounds -- --ignored"]
async fn a_50_mb_state_restarts_and_syncs_to_a_new_member() {
    big_state_reaches_a_new_member(50).await;
}

/// Opens a connection on the join service and a stream on it that starts a request and
/// never finishes it.
async fn hold_join_stream(
    endpoint: &knit_mesh::quic::Endpoint,
    client: &quinn::ClientConfig,
    addr: SocketAddr,
) -> Option<(quinn::Connection, quinn::SendStream)> {
    let conn = endpoint
        .connect_with(client.clone(), addr, tls::ANY_MEMBER_NAME)
        .ok()?
        .await
        .ok()?;
    let (mut send, _recv) = conn.open_bi().await.ok()?;
    send.write_all(&[0, 0]).await.ok()?;
    Some((conn, send))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_join_streams_does_not_slow_state_sync() {
    let shutdown = CancellationToken::new();
    let (a, b, _, _) = pair(0, &shutdown).await;
    let b_addr = b.view().borrow().me.addr;
    let view = a.view();
    wait_until(
        "the two members to see each other",
        Duration::from_secs(15),
        || view.borrow().members.len() == 2,
    )
    .await;
    // A write too big to ride on gossip goes by a stream push: its usual time.
    let probe = |i: usize| (format!("probe/{i}"), vec![i as u8; 8 * 1024]);
    let store = b.store();
    let (key, value) = probe(0);
    a.put(&key, Some(value)).await.unwrap();
    let usual = wait_until("a pushed write", Duration::from_secs(10), || {
        store.borrow().get(&key).is_some()
    })
    .await;
    // 40 unauthenticated connections hold join streams open on b.
    let token = a.token();
    let crypto = tls::token_client_config(token.ca_digest).unwrap();
    let client = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap(),
    ));
    let flooder = bind("127.0.0.1:0".parse().unwrap(), &rand::random()).unwrap();
    let mut held = Vec::new();
    for _ in 0..40 {
        if let Some(stream) = hold_join_stream(&flooder, &client, b_addr).await {
            held.push(stream);
        }
    }
    eprintln!("{} join streams held open on b", held.len());
    let mut slowest = Duration::ZERO;
    for i in 1..=5 {
        let (key, value) = probe(i);
        a.put(&key, Some(value)).await.unwrap();
        let took = wait_until(
            "a pushed write during the flood",
            Duration::from_secs(10),
            || store.borrow().get(&key).is_some(),
        )
        .await;
        slowest = slowest.max(took);
    }
    eprintln!(
        "a pushed write reached b in {usual:?} before the flood, at most {slowest:?} during it"
    );
    assert!(
        slowest < usual.max(Duration::from_millis(100)) * 10,
        "{slowest:?} during the flood against {usual:?} before"
    );
    drop(held);
    shutdown.cancel();
}
