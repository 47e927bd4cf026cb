//! Trust boundaries between real meshes on 127.0.0.1: forged store writes do not spread,
//! the join service assigns node ids, and a rotated join token retires the old one.
#![cfg(feature = "quic")]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use knit_mesh::NodeId;
use knit_mesh::quic::join::{self, JoinError};
use knit_mesh::quic::keys::NodeSigner;
use knit_mesh::quic::{CLOCK_SKEW_MAX_MS_DEFAULT, Credentials, Mesh, bind};
use knit_mesh::store::{Delta, Stamp, Store, owned_key};
use knit_mesh::token::JoinToken;
use knit_mesh::trust::{Signer, cert_key};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(15);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Polls `check` every 50 ms until it holds, or panics after [`WAIT`] naming `what`.
async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Peer {
    node: NodeId,
    addr: SocketAddr,
    mesh: Mesh,
    creds: Credentials,
}

fn start(
    endpoint: knit_mesh::quic::Endpoint,
    node: NodeId,
    creds: Credentials,
    store: Store,
    seeds: Vec<SocketAddr>,
    shutdown: &CancellationToken,
) -> Peer {
    let addr = endpoint.local_addr().unwrap();
    let mesh = common::start_mesh(endpoint, node, &creds, store, seeds, shutdown);
    Peer {
        node,
        addr,
        mesh,
        creds,
    }
}

fn first(shutdown: &CancellationToken) -> Peer {
    let node = NodeId::random(&mut rand::rng());
    let creds = Credentials::create_cluster(&node, [7; 16]).unwrap();
    let endpoint = bind("127.0.0.1:0".parse().unwrap(), &rand::random()).unwrap();
    start(
        endpoint,
        node,
        creds,
        Store::new(node),
        Vec::new(),
        shutdown,
    )
}

/// Joins through `seed` with its token; `forge` may fill the new member's store first.
async fn joined(
    seed: &Peer,
    shutdown: &CancellationToken,
    forge: impl FnOnce(&mut Store, &Credentials),
) -> Peer {
    let endpoint = bind("127.0.0.1:0".parse().unwrap(), &rand::random()).unwrap();
    let token = seed.mesh.token();
    let (node, creds, _) = tokio::time::timeout(WAIT, join::join(&endpoint, seed.addr, &token))
        .await
        .unwrap()
        .unwrap();
    let mut store = Store::new(node);
    forge(&mut store, &creds);
    start(endpoint, node, creds, store, vec![seed.addr], shutdown)
}

fn holds(peer: &Peer, key: &str) -> bool {
    peer.mesh.store().borrow().get(key).is_some()
}

fn refused(peer: &Peer) -> u64 {
    peer.mesh
        .metrics()
        .deltas_refused_signature
        .load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_writes_in_a_members_store_never_reach_the_others() {
    let shutdown = CancellationToken::new();
    let a = first(&shutdown);
    let forged_record = owned_key(&a.node, "forged");
    let (a_node, key) = (a.node, forged_record.clone());
    // B's persisted store holds two forgeries, merged in directly: a record of A's with a
    // signature that is not A's, and a spec that claims A wrote it, signed by B.
    let b = joined(&a, &shutdown, move |store, creds| {
        let stamp = Stamp {
            clock: now_ms() << 16,
            writer: a_node,
        };
        let record = Delta {
            key,
            stamp,
            value: Some(b"forged".to_vec()),
            sig: vec![1; 64],
        };
        let mut spec = Delta {
            key: "svc/evil".into(),
            stamp,
            value: Some(b"forged".to_vec()),
            sig: Vec::new(),
        };
        spec.sig = NodeSigner::new(&creds.node_key_pem)
            .unwrap()
            .sign(&spec.signed_message());
        for delta in [record, spec] {
            store
                .merge(delta, now_ms(), CLOCK_SKEW_MAX_MS_DEFAULT)
                .unwrap();
        }
    })
    .await;
    let c = joined(&a, &shutdown, |_, _| {}).await;
    assert!(holds(&b, &forged_record) && holds(&b, "svc/evil"));
    // B's honest writes spread, and B's certificate with them.
    b.mesh.put("svc/good", Some(b"ok".to_vec())).await.unwrap();
    wait_until("svc/good on A and C", || {
        holds(&a, "svc/good") && holds(&c, "svc/good")
    })
    .await;
    // C may check B's write with the certificate its connection to B handed in before
    // B's certificate record reaches it: the record follows within a gossip round.
    wait_until("B's and A's certificate records on C", || {
        holds(&c, &cert_key(&b.node)) && holds(&c, &cert_key(&a.node))
    })
    .await;
    // Anti-entropy offers the forgeries to A and C again and again: they refuse them.
    wait_until("A and C refusing B's forgeries", || {
        refused(&a) >= 2 && refused(&c) >= 2
    })
    .await;
    for peer in [&a, &c] {
        assert!(!holds(peer, &forged_record), "a forged record spread");
        assert!(!holds(peer, "svc/evil"), "a forged spec spread");
    }
    shutdown.cancel();
}

async fn try_join(through: &Peer, token: &JoinToken) -> Result<(NodeId, Credentials), JoinError> {
    let endpoint = bind("127.0.0.1:0".parse().unwrap(), &rand::random()).unwrap();
    let result = tokio::time::timeout(WAIT, join::join(&endpoint, through.addr, token))
        .await
        .unwrap();
    endpoint.close(0u32.into(), b"done");
    result.map(|(node, creds, _)| (node, creds))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_assigned_and_a_rotated_token_retires_the_old_one() {
    let shutdown = CancellationToken::new();
    let a = first(&shutdown);
    let b = joined(&a, &shutdown, |_, _| {}).await;
    assert_ne!(a.node, b.node, "the seed assigned a fresh id");
    assert!(knit_mesh::quic::tls::cert_names_node(
        &b.creds.node_cert_der,
        &b.node
    ));
    let old = a.mesh.token();
    assert_eq!(
        old,
        a.creds.token(),
        "no rotation yet: the credentials' secret"
    );
    wait_until("B in A's view", || {
        a.mesh
            .view()
            .borrow()
            .members
            .iter()
            .any(|m| m.peer.node == b.node)
    })
    .await;

    let new = a.mesh.rotate_token().await.unwrap();
    assert_ne!(new, old);
    assert_eq!(new.ca_digest, old.ca_digest);
    wait_until("the rotation on A and B", || {
        a.mesh.token() == new && b.mesh.token() == new
    })
    .await;
    let sealed = b
        .mesh
        .store()
        .borrow()
        .get("cluster/join-secret")
        .unwrap()
        .to_vec();
    assert!(
        !sealed.windows(16).any(|w| w == new.secret),
        "secret in clear text"
    );

    for through in [&a, &b] {
        match try_join(through, &old).await {
            Err(JoinError::Refused { reason, .. }) => {
                assert!(reason.contains("wrong join token"), "{reason}")
            }
            other => panic!("the old token was not refused: {:?}", other.map(|r| r.0)),
        }
    }
    let (d, creds) = try_join(&b, &new).await.unwrap();
    assert!(d != a.node && d != b.node, "a fresh id");
    assert_eq!(
        creds.secret, new.secret,
        "new members get the secret in force"
    );
    shutdown.cancel();
}
