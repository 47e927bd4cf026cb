//! A node's stateless resets come from a key of its own ([`knit_mesh::quic::bind`]): a
//! connection held to a process that was replaced at the same address by one with the
//! same key is reset on its first packet; with another key it would carry packets into
//! the void until it timed out. Real QUIC endpoints on 127.0.0.1.
#![cfg(feature = "quic")]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use knit_mesh::NodeId;
use knit_mesh::quic::tls::{self, GOSSIP_ALPN};
use knit_mesh::quic::{Credentials, ResetKey, bind};

/// A member's endpoint at `addr`, serving with `creds`, its resets made from `key`; it
/// accepts (and holds) every connection.
fn server(addr: SocketAddr, key: &ResetKey, creds: &Credentials) -> quinn::Endpoint {
    let endpoint = bind(addr, key).unwrap();
    let crypto = creds.member_tls().server_config().unwrap();
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto).unwrap();
    endpoint.set_server_config(Some(quinn::ServerConfig::with_crypto(Arc::new(crypto))));
    let accepting = endpoint.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(incoming) = accepting.accept().await {
            if let Ok(conn) = incoming.await {
                held.push(conn);
            }
        }
    });
    endpoint
}

/// A connection from a new client endpoint to the member at `addr`, with `node`'s name.
async fn connect(addr: SocketAddr, creds: &Credentials, node: &NodeId) -> quinn::Connection {
    let client = bind("127.0.0.1:0".parse().unwrap(), &rand::random()).unwrap();
    let crypto = creds.member_tls().client_config(GOSSIP_ALPN).unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    let config = quinn::ClientConfig::new(Arc::new(crypto));
    let connecting = client
        .connect_with(config, addr, &tls::node_name(node))
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .expect("connected within 5 s")
        .unwrap()
}

/// A UDP relay at a loopback address of its own, to the address in `target`: a member's
/// address whose process can be swapped for another without a packet from the first (as
/// when a process is killed and another starts at its address).
async fn relay(target: Arc<Mutex<SocketAddr>>) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut client = None;
        let mut buf = vec![0_u8; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            // The first sender is the client; what comes from the member in `target`
            // goes back to it, and what comes from anywhere else is dropped.
            let client = *client.get_or_insert(from);
            let server = *target.lock().unwrap();
            let to = if from == client {
                server
            } else if from == server {
                client
            } else {
                continue;
            };
            let _ = socket.send_to(&buf[..n], to).await;
        }
    });
    addr
}

/// Connects to a member behind a relay, then swaps the member, without a word (as a
/// killed process), for one with resets from `new_key`; sends one datagram on the old
/// connection and returns how it ended within `wait`.
async fn replaced_member(
    key: ResetKey,
    new_key: ResetKey,
    wait: Duration,
) -> Option<quinn::ConnectionError> {
    let node = NodeId::random(&mut rand::rng());
    let creds = Credentials::create_cluster(&node, [3; 16]).unwrap();
    let first = server("127.0.0.1:0".parse().unwrap(), &key, &creds);
    let target = Arc::new(Mutex::new(first.local_addr().unwrap()));
    let addr = relay(target.clone()).await;
    let conn = connect(addr, &creds, &node).await;
    let second = server("127.0.0.1:0".parse().unwrap(), &new_key, &creds);
    *target.lock().unwrap() = second.local_addr().unwrap();
    conn.send_datagram(bytes::Bytes::from_static(b"ping"))
        .unwrap();
    tokio::time::timeout(wait, conn.closed()).await.ok()
}

#[tokio::test]
async fn a_process_with_the_same_key_resets_an_old_connection_at_once() {
    let key: ResetKey = rand::random();
    let closed = replaced_member(key, key, Duration::from_secs(10)).await;
    assert!(
        matches!(closed, Some(quinn::ConnectionError::Reset)),
        "{closed:?}"
    );
}

#[tokio::test]
async fn a_process_with_another_key_leaves_the_old_connection_open() {
    let closed = replaced_member(rand::random(), rand::random(), Duration::from_secs(2)).await;
    assert!(closed.is_none(), "{closed:?}");
}
