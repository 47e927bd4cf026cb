//! What the in-process mesh tests share: a real mesh on a loopback endpoint.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use knit_mesh::quic::{CLOCK_SKEW_MAX_MS_DEFAULT, Credentials, Mesh, MeshConfig};
use knit_mesh::store::Store;
use knit_mesh::{NodeId, PeerId, Profile};
use tokio_util::sync::CancellationToken;

/// Starts a `fast` mesh for `node` on `endpoint` with `store`, announcing to `seeds`, with
/// anti-entropy every 200 ms; it stops with `shutdown`.
pub(crate) fn start_mesh(
    endpoint: knit_mesh::quic::Endpoint,
    node: NodeId,
    creds: &Credentials,
    store: Store,
    seeds: Vec<SocketAddr>,
    shutdown: &CancellationToken,
) -> Mesh {
    let addr = endpoint.local_addr().expect("a bound endpoint");
    let config = MeshConfig {
        identity: PeerId {
            node,
            addr,
            epoch: 1,
        },
        profile: Profile::Fast,
        seeds,
        store,
        sync_period: Duration::from_millis(200),
        clock_skew_max_ms: CLOCK_SKEW_MAX_MS_DEFAULT,
    };
    Mesh::start(endpoint, creds.clone(), config, shutdown.child_token()).expect("a mesh")
}

/// A new member, on its own loopback endpoint, joined through `seed` (at `addr`) with its
/// token and started with an empty store.
#[allow(dead_code)] // Not every test file joins a second member.
pub(crate) async fn join_second(
    seed: &Mesh,
    addr: SocketAddr,
    shutdown: &CancellationToken,
) -> Mesh {
    let endpoint =
        knit_mesh::quic::bind("127.0.0.1:0".parse().expect("an address"), &rand::random())
            .expect("a loopback endpoint");
    let (node, creds, _) = knit_mesh::quic::join::join(&endpoint, addr, &seed.token())
        .await
        .expect("joined");
    start_mesh(
        endpoint,
        node,
        &creds,
        Store::new(node),
        vec![addr],
        shutdown,
    )
}

/// Polls `check` every 20 ms until it holds, or panics after `wait` naming `what`.
#[allow(dead_code)] // Not every test file waits this way.
pub(crate) async fn wait_until(what: &str, wait: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < wait, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A new cluster's first member on a loopback endpoint, and its address.
#[allow(dead_code)] // Not every test file starts its own cluster.
pub(crate) fn start_seed(shutdown: &CancellationToken) -> (Mesh, SocketAddr) {
    let node = NodeId::random(&mut rand::rng());
    let creds = Credentials::create_cluster(&node, [7; 16]).expect("a cluster's credentials");
    let endpoint =
        knit_mesh::quic::bind("127.0.0.1:0".parse().expect("an address"), &rand::random())
            .expect("a loopback endpoint");
    let addr = endpoint.local_addr().expect("a bound endpoint");
    let seed = start_mesh(
        endpoint,
        node,
        &creds,
        Store::new(node),
        Vec::new(),
        shutdown,
    );
    (seed, addr)
}
