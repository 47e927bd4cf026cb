//! Ingress: every peer listens on every published port of every service and forwards each
//! connection to a replica that runs and is healthy, wherever it is — a local one first,
//! else a remote one, in turn. A connection that fails before any byte is answered (the
//! connect fails, or the replica closes or resets it: stopped by a rolling update, say) is
//! retried on another replica, with what the client sent so far replayed (up to 64 KiB;
//! past that, the connection stays with its replica); replicas on nodes that are suspect
//! or down are skipped at once. With `proxy_protocol` on a port, the client's address is passed on in a PROXY
//! protocol v2 header.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use knit_mesh::MemberState;
use knit_mesh::quic::Mesh;
use knit_scheduler::spec::Protocol;
use knit_scheduler::{Health, ReplicaState};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cluster::Snapshot;

/// How long a connect to a replica may take before the next one is tried: a replica whose
/// accept queue is full drops the SYN, and the kernel would retry only after a second.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// How long the connect to the last replica tried may take.
const LAST_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Replicas tried per client connection.
const ATTEMPTS_MAX: usize = 3;
/// Client connections open at once, per peer.
const CONNECTIONS_MAX: usize = 4096;

/// Where one published port leads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Route {
    service: String,
    proxy_protocol: bool,
    /// Healthy replicas on this node, by host address.
    local: Vec<SocketAddr>,
    /// Healthy replicas on other live nodes.
    remote: Vec<SocketAddr>,
}

/// Counters per published port, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct PortStats {
    pub(crate) service: Mutex<String>,
    pub(crate) connections: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) failures: AtomicU64,
}

/// The ingress's counters and the ports it could not bind.
#[derive(Debug, Default)]
pub(crate) struct IngressStats {
    pub(crate) ports: Mutex<BTreeMap<u16, Arc<PortStats>>>,
    pub(crate) bind_errors: Mutex<BTreeMap<u16, String>>,
}

impl IngressStats {
    fn port(&self, port: u16) -> Arc<PortStats> {
        self.ports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(port)
            .or_default()
            .clone()
    }
}

fn healthy(state: ReplicaState, health: Health) -> bool {
    state == ReplicaState::Running && matches!(health, Health::Healthy | Health::None)
}

/// The routes every published TCP port takes, from the cluster as this peer sees it.
fn routes(snapshot: &Snapshot) -> BTreeMap<u16, Route> {
    let me = snapshot.view.me.node;
    let mut routes: BTreeMap<u16, Route> = BTreeMap::new();
    let specs = snapshot.specs();
    for spec in specs.values() {
        for port in spec.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
            routes.insert(
                port.published,
                Route {
                    service: spec.name.clone(),
                    proxy_protocol: port.proxy_protocol,
                    ..Route::default()
                },
            );
        }
    }
    for member in snapshot
        .view
        .members
        .iter()
        .filter(|m| m.state == MemberState::Alive)
    {
        let local = member.peer.node == me;
        let ip: IpAddr = if local {
            IpAddr::from([127, 0, 0, 1])
        } else {
            member.peer.addr.ip()
        };
        for report in snapshot.reports(&member.peer.node) {
            let Some(spec) = specs.get(&report.slot.service) else {
                continue;
            };
            if report.spec_version == 0 || !healthy(report.state, report.health) {
                continue;
            }
            for port in spec.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
                let (Some(route), Some(host_port)) = (
                    routes.get_mut(&port.published),
                    report.host_ports.get(&port.target),
                ) else {
                    continue;
                };
                let addr = SocketAddr::new(ip, *host_port);
                if local {
                    route.local.push(addr)
                } else {
                    route.remote.push(addr)
                }
            }
        }
    }
    routes
}

/// Runs the ingress on `addr` until `shutdown`.
pub(crate) async fn run(
    mesh: Mesh,
    addr: IpAddr,
    stats: Arc<IngressStats>,
    shutdown: CancellationToken,
) {
    let (table_tx, table) = watch::channel(Arc::new(BTreeMap::new()));
    let mut listeners: BTreeMap<u16, JoinHandle<()>> = BTreeMap::new();
    let mut store = mesh.store();
    let mut view = mesh.view();
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let next = Arc::new(routes(&Snapshot::of(&mesh)));
        for port in next
            .keys()
            .filter(|p| !listeners.contains_key(*p))
            .copied()
            .collect::<Vec<_>>()
        {
            match TcpListener::bind(SocketAddr::new(addr, port)).await {
                Ok(listener) => {
                    tracing::info!(port, "ingress listening");
                    stats
                        .bind_errors
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&port);
                    let task = serve(
                        listener,
                        port,
                        table.clone(),
                        stats.port(port),
                        open.clone(),
                        shutdown.clone(),
                    );
                    listeners.insert(port, tokio::spawn(task));
                }
                Err(e) => {
                    let mut errors = stats
                        .bind_errors
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if errors.insert(port, e.to_string()).is_none() {
                        tracing::error!(port, error = %e, "ingress cannot listen on a published port");
                    }
                }
            }
        }
        listeners.retain(|port, task| {
            let keep = next.contains_key(port);
            if !keep {
                tracing::info!(port, "ingress closed");
                task.abort();
            }
            keep
        });
        table_tx.send_if_modified(|t| {
            let changed = **t != *next;
            if changed {
                *t = next.clone();
            }
            changed
        });
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = store.changed() => {}
            _ = view.changed() => {}
            // Retry ports that could not be bound.
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
    for task in listeners.values() {
        task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    port: u16,
    table: watch::Receiver<Arc<BTreeMap<u16, Route>>>,
    stats: Arc<PortStats>,
    open: Arc<AtomicUsize>,
    shutdown: CancellationToken,
) {
    let turn = Arc::new(AtomicUsize::new(0));
    loop {
        let (client, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
        };
        if open.load(Ordering::Relaxed) >= CONNECTIONS_MAX {
            continue;
        }
        let Some(route) = table.borrow().get(&port).cloned() else {
            continue;
        };
        *stats.service.lock().unwrap_or_else(PoisonError::into_inner) = route.service.clone();
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let (stats, open, turn) = (stats.clone(), open.clone(), turn.clone());
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            forward(client, peer, port, &route, &stats, &turn).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Local replicas first (in turn), then remote ones (in turn).
fn candidates(route: &Route, turn: &AtomicUsize) -> Vec<SocketAddr> {
    let start = turn.fetch_add(1, Ordering::Relaxed);
    let rotate = |list: &[SocketAddr]| -> Vec<SocketAddr> {
        if list.is_empty() {
            return Vec::new();
        }
        let k = start % list.len();
        list[k..].iter().chain(&list[..k]).copied().collect()
    };
    let mut all = rotate(&route.local);
    all.extend(rotate(&route.remote));
    all
}

async fn forward(
    mut client: TcpStream,
    peer: SocketAddr,
    port: u16,
    route: &Route,
    stats: &PortStats,
    turn: &AtomicUsize,
) {
    let backends: Vec<SocketAddr> = candidates(route, turn)
        .into_iter()
        .take(ATTEMPTS_MAX)
        .collect();
    let _ = client.set_nodelay(true);
    let mut early = Early::default();
    for (attempt, &backend) in backends.iter().enumerate() {
        if attempt > 0 {
            stats.retries.fetch_add(1, Ordering::Relaxed);
        }
        let limit = if attempt + 1 == backends.len() {
            LAST_CONNECT_TIMEOUT
        } else {
            CONNECT_TIMEOUT
        };
        let Ok(Ok(mut upstream)) = tokio::time::timeout(limit, TcpStream::connect(backend)).await
        else {
            continue;
        };
        let _ = upstream.set_nodelay(true);
        if route.proxy_protocol {
            let local = client
                .local_addr()
                .unwrap_or(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port));
            if upstream
                .write_all(&proxy_v2_header(peer, local))
                .await
                .is_err()
            {
                continue;
            }
        }
        match early.until_answered(&mut client, &mut upstream).await {
            First::Failed => continue,
            First::ClientGone => return,
            First::Answered(first) => {
                let rest = if early.client_closed {
                    // Only the answer is left to carry.
                    let copied = tokio::io::copy(&mut upstream, &mut client).await;
                    let _ = client.shutdown().await;
                    copied.unwrap_or(0)
                } else {
                    tokio::io::copy_bidirectional(&mut client, &mut upstream)
                        .await
                        .map_or(0, |(up, down)| up + down)
                };
                let total = early.sent.len() as u64 + first + rest;
                stats.bytes.fetch_add(total, Ordering::Relaxed);
                return;
            }
        }
    }
    stats.failures.fetch_add(1, Ordering::Relaxed);
}

/// Client bytes kept for a replay on another replica while no answer has come, at most
/// this many; past it, the connection stays with the replica it has.
const REPLAY_MAX: usize = 64 * 1024;

/// What a client connection said before any replica answered it.
#[derive(Default)]
struct Early {
    /// Every byte the client sent so far, for a replay.
    sent: Vec<u8>,
    /// The client shut its side down (its request is complete).
    client_closed: bool,
}

/// How the wait for a replica's first byte ended.
enum First {
    /// The replica answered: this many bytes went to the client already.
    Answered(u64),
    /// The replica closed or reset before answering: try the next one.
    Failed,
    /// The client went away.
    ClientGone,
}

impl Early {
    /// Replays what the client sent so far to `upstream`, then carries the client's bytes
    /// on until `upstream` answers. A replica that dies before its first byte (stopped by
    /// a rolling update, say) costs the client nothing: the request goes to the next one.
    async fn until_answered(&mut self, client: &mut TcpStream, upstream: &mut TcpStream) -> First {
        use tokio::io::AsyncReadExt;
        if !self.sent.is_empty() && upstream.write_all(&self.sent).await.is_err() {
            return First::Failed;
        }
        if self.client_closed {
            let _ = upstream.shutdown().await;
        }
        let mut from_client = vec![0u8; 16 * 1024];
        let mut from_upstream = vec![0u8; 16 * 1024];
        loop {
            tokio::select! {
                read = client.read(&mut from_client), if !self.client_closed => match read {
                    Ok(0) => {
                        self.client_closed = true;
                        let _ = upstream.shutdown().await;
                    }
                    Ok(n) => {
                        if upstream.write_all(&from_client[..n]).await.is_err() {
                            // Keep the bytes: the next replica gets them.
                            self.sent.extend_from_slice(&from_client[..n]);
                            return First::Failed;
                        }
                        self.sent.extend_from_slice(&from_client[..n]);
                        if self.sent.len() > REPLAY_MAX {
                            // Too much to replay: this replica keeps the connection.
                            return First::Answered(0);
                        }
                    }
                    Err(_) => return First::ClientGone,
                },
                read = upstream.read(&mut from_upstream) => match read {
                    Ok(0) | Err(_) => return First::Failed,
                    Ok(n) => {
                        return if client.write_all(&from_upstream[..n]).await.is_ok() {
                            First::Answered(n as u64)
                        } else {
                            First::ClientGone
                        };
                    }
                },
            }
        }
    }
}

/// A PROXY protocol v2 header for a TCP connection from `src` to `dst`.
fn proxy_v2_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(0x21); // version 2, PROXY
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            header.push(0x11); // TCP over IPv4
            header.extend_from_slice(&12u16.to_be_bytes());
            header.extend_from_slice(&s.ip().octets());
            header.extend_from_slice(&d.ip().octets());
            header.extend_from_slice(&s.port().to_be_bytes());
            header.extend_from_slice(&d.port().to_be_bytes());
        }
        (s, d) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            header.push(0x21); // TCP over IPv6
            header.extend_from_slice(&36u16.to_be_bytes());
            header.extend_from_slice(&v6(s).octets());
            header.extend_from_slice(&v6(d).octets());
            header.extend_from_slice(&s.port().to_be_bytes());
            header.extend_from_slice(&d.port().to_be_bytes());
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_v2_header_carries_the_client_address() {
        let h = proxy_v2_header(
            "10.1.2.3:5555".parse().unwrap(),
            "127.0.0.1:80".parse().unwrap(),
        );
        assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n");
        assert_eq!(h[12], 0x21);
        assert_eq!(h[13], 0x11);
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 12);
        assert_eq!(&h[16..20], &[10, 1, 2, 3]);
        assert_eq!(u16::from_be_bytes([h[24], h[25]]), 5555);
        assert_eq!(h.len(), 28);
    }

    #[test]
    fn local_replicas_come_first_and_take_turns() {
        let route = Route {
            local: vec![
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            ],
            remote: vec!["10.0.0.2:3".parse().unwrap()],
            ..Route::default()
        };
        let turn = AtomicUsize::new(0);
        let first = candidates(&route, &turn);
        let second = candidates(&route, &turn);
        assert_eq!(first.len(), 3);
        assert_eq!(first[2].port(), 3, "remote last");
        assert_ne!(first[0], second[0], "local ones take turns");
    }

    /// A replica that reads its request, then dies without a byte of answer.
    async fn dying_replica() -> SocketAddr {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 64];
                let _ = conn.read(&mut buf).await;
                // Dropped: a close before any answer (a reset if bytes are unread).
            }
        });
        addr
    }

    /// A replica that answers each connection with what it read, upper-cased, once the
    /// client has sent all of it.
    async fn answering_replica() -> SocketAddr {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let _ = conn.read_to_end(&mut request).await;
                    let _ = conn.write_all(&request.to_ascii_uppercase()).await;
                });
            }
        });
        addr
    }

    /// Sends `request` through `forward` to `route` and reads the whole answer.
    async fn through(route: Route, request: &[u8]) -> (Vec<u8>, Arc<PortStats>) {
        use tokio::io::AsyncReadExt;
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let stats = Arc::new(PortStats::default());
        let task_stats = stats.clone();
        tokio::spawn(async move {
            let (conn, peer) = front.accept().await.unwrap();
            let turn = AtomicUsize::new(0);
            forward(conn, peer, 80, &route, &task_stats, &turn).await;
        });
        let mut client = TcpStream::connect(front_addr).await.unwrap();
        client.write_all(request).await.unwrap();
        client.shutdown().await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut answer))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        (answer, stats)
    }

    #[tokio::test]
    async fn a_replica_that_dies_before_answering_costs_the_client_nothing() {
        let route = Route {
            local: vec![dying_replica().await, dying_replica().await],
            remote: vec![answering_replica().await],
            ..Route::default()
        };
        let (answer, stats) = through(route, b"get /ok").await;
        assert_eq!(
            answer, b"GET /OK",
            "the request was replayed to the live replica"
        );
        assert_eq!(stats.retries.load(Ordering::Relaxed), 2);
        assert_eq!(stats.failures.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn with_no_replica_answering_the_client_sees_the_failure() {
        let route = Route {
            local: vec![dying_replica().await],
            ..Route::default()
        };
        let (answer, stats) = through(route, b"get /ok").await;
        assert!(answer.is_empty());
        assert_eq!(stats.failures.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_request_too_big_to_replay_stays_with_its_replica() {
        let route = Route {
            local: vec![answering_replica().await],
            ..Route::default()
        };
        let big = vec![b'a'; REPLAY_MAX + 10_000];
        let (answer, stats) = through(route, &big).await;
        assert_eq!(answer.len(), big.len());
        assert!(answer.iter().all(|b| *b == b'A'));
        assert_eq!(
            stats.bytes.load(Ordering::Relaxed),
            2 * big.len() as u64,
            "every byte counted, both ways"
        );
    }
}
