//! Forwarding one client connection: to a local replica first, else a remote one, in
//! turn; a replica that fails before its first byte of answer is skipped for the next,
//! with the client's bytes so far replayed; a connection that stays silent too long
//! ([`SILENCE`]) is closed.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{PortStats, Route};

/// How long a connect to a replica may take before the next one is tried: a replica whose
/// accept queue is full drops the SYN, and the kernel would retry only after a second.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// How long the connect to the last replica tried may take.
const LAST_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Replicas tried per client connection.
const ATTEMPTS_MAX: usize = 3;
/// How long a connection may stay silent before it is closed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Silence {
    /// While the client has said nothing and no replica has answered: an idle socket
    /// holds a place of the port's cap.
    pub(super) first_byte: Duration,
    /// Once bytes flow, for nothing moving either way (IPVS, behind Swarm's routing mesh,
    /// keeps idle TCP for 15 minutes too).
    pub(super) idle: Duration,
}

/// The limits of the ingress.
pub(super) const SILENCE: Silence = Silence {
    first_byte: Duration::from_secs(30),
    idle: Duration::from_secs(15 * 60),
};

/// Local replicas first (in turn), then remote ones (in turn).
pub(super) fn candidates(route: &Route, turn: &AtomicUsize) -> Vec<SocketAddr> {
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

pub(super) async fn forward(
    mut client: TcpStream,
    peer: SocketAddr,
    port: u16,
    route: &Route,
    stats: &PortStats,
    turn: &AtomicUsize,
    silence: Silence,
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
        match early
            .until_answered(&mut client, &mut upstream, silence)
            .await
        {
            First::Failed => continue,
            First::ClientGone => return,
            First::Silent => {
                stats.timeouts.fetch_add(1, Ordering::Relaxed);
                return;
            }
            First::Answered(first) => {
                let rest = if early.client_closed {
                    // Only the answer is left to carry.
                    let copied = tokio::io::copy(&mut upstream, &mut client).await;
                    let _ = client.shutdown().await;
                    copied.unwrap_or(0)
                } else {
                    match relay(&mut client, &mut upstream, silence.idle).await {
                        Relayed::Done(bytes) => bytes,
                        Relayed::Idle(bytes) => {
                            stats.timeouts.fetch_add(1, Ordering::Relaxed);
                            bytes
                        }
                    }
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
    /// Nothing was said for the silence limit.
    Silent,
}

impl Early {
    /// Replays what the client sent so far to `upstream`, then carries the client's bytes
    /// on until `upstream` answers. A replica that dies before its first byte (stopped by
    /// a rolling update, say) costs the client nothing: the request goes to the next one.
    async fn until_answered(
        &mut self,
        client: &mut TcpStream,
        upstream: &mut TcpStream,
        silence: Silence,
    ) -> First {
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
            // Only a client that has said nothing yet is held to the first-byte limit: a
            // request already sent may take its replica a while to answer.
            let silent_limit = if self.sent.is_empty() && !self.client_closed {
                silence.first_byte
            } else {
                silence.idle
            };
            tokio::select! {
                () = tokio::time::sleep(silent_limit) => return First::Silent,
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

/// How a relay ended, with the bytes it carried.
enum Relayed {
    /// Both sides finished (or one failed).
    Done(u64),
    /// Nothing moved either way for the idle limit.
    Idle(u64),
}

/// Carries bytes both ways until both sides are done, or nothing moves for `idle`.
async fn relay(client: &mut TcpStream, upstream: &mut TcpStream, idle: Duration) -> Relayed {
    let started = tokio::time::Instant::now();
    let last = AtomicU64::new(0);
    let mut a = Tracked {
        inner: client,
        started,
        last: &last,
    };
    let mut b = Tracked {
        inner: upstream,
        started,
        last: &last,
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    let check = idle / 4;
    loop {
        tokio::select! {
            copied = &mut copy => return Relayed::Done(copied.map_or(0, |(up, down)| up + down)),
            () = tokio::time::sleep(check) => {
                let quiet_ms = millis(started.elapsed()).saturating_sub(last.load(Ordering::Relaxed));
                if quiet_ms >= millis(idle) {
                    // The bytes carried are not known here; the counters miss them.
                    return Relayed::Idle(0);
                }
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A stream that notes when it last moved a byte (ms after `started`).
struct Tracked<'a> {
    inner: &'a mut TcpStream,
    started: tokio::time::Instant,
    last: &'a AtomicU64,
}

impl Tracked<'_> {
    fn moved(&self) {
        self.last
            .store(millis(self.started.elapsed()), Ordering::Relaxed);
    }
}

impl tokio::io::AsyncRead for Tracked<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut *self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved();
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Tracked<'_> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut *self.inner).poll_write(cx, data);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_shutdown(cx)
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
    use std::sync::Arc;

    use tokio::net::TcpListener;

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
            forward(conn, peer, 80, &route, &task_stats, &turn, SILENCE).await;
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

    /// A replica that answers nothing, ever, and holds its connections.
    async fn mute_replica() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_silent_client_is_closed_and_counted_and_a_talking_one_is_not() {
        use tokio::io::AsyncReadExt;
        let route = Route {
            local: vec![mute_replica().await],
            ..Route::default()
        };
        let silence = Silence {
            first_byte: Duration::from_millis(200),
            idle: Duration::from_secs(5),
        };
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let stats = Arc::new(PortStats::default());
        let task_stats = stats.clone();
        let task_route = route.clone();
        tokio::spawn(async move {
            let turn = AtomicUsize::new(0);
            while let Ok((conn, peer)) = front.accept().await {
                forward(conn, peer, 80, &task_route, &task_stats, &turn, silence).await;
            }
        });
        // Says nothing: closed after the first-byte limit.
        let mut idle = TcpStream::connect(front_addr).await.unwrap();
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
            .await
            .expect("closed well within 5 s");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert_eq!(stats.timeouts.load(Ordering::Relaxed), 1);
        // Has sent its request: waits for the answer past the first-byte limit.
        let mut talking = TcpStream::connect(front_addr).await.unwrap();
        talking.write_all(b"slow request").await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(600), talking.read(&mut buf)).await;
        assert!(
            waited.is_err(),
            "closed a client that had spoken: {waited:?}"
        );
        assert_eq!(stats.timeouts.load(Ordering::Relaxed), 1);
    }
}
