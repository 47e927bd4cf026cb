//! The peer's DNS server, on the first address of the service range, port 53, over UDP
//! and TCP: service names are answered here ([`answer`]), everything else is asked of the
//! host's resolvers ([`upstream`]) with a timeout, at most [`FORWARDS_IN_FLIGHT_MAX`] at
//! once (past that a UDP question is dropped, as a busy resolver drops it, and the client
//! asks again).

pub(crate) mod answer;
pub(crate) mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};

use self::answer::{Answer, Outcome};
use self::upstream::{Upstreams, read_frame, write_frame};
use crate::discovery::directory::Directory;
use crate::tasks::Tasks;

/// Questions being asked of the host's resolvers at once.
const FORWARDS_IN_FLIGHT_MAX: usize = 256;
/// TCP clients at once.
const TCP_CLIENTS_MAX: usize = 64;
/// How long a TCP client may stay silent (RFC 7766 asks for seconds, not minutes).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// The largest question read over UDP.
const UDP_QUESTION_MAX_BYTES: usize = 4096;

/// The server's counters, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct DnsStats {
    pub(crate) found: AtomicU64,
    pub(crate) nodata: AtomicU64,
    pub(crate) nxdomain: AtomicU64,
    pub(crate) refused: AtomicU64,
    /// Questions answered by the host's resolvers.
    pub(crate) forwarded: AtomicU64,
    /// Questions the host's resolvers did not answer in time (SERVFAIL, or dropped).
    pub(crate) failed: AtomicU64,
    /// UDP questions dropped: too many were being forwarded.
    pub(crate) dropped: AtomicU64,
}

impl DnsStats {
    fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Found => &self.found,
            Outcome::NoData => &self.nodata,
            Outcome::NxDomain => &self.nxdomain,
            Outcome::Refused => &self.refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Every counter with the label `/metrics` gives it.
    pub(crate) fn all(&self) -> [(&'static str, u64); 7] {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            (Outcome::Found.label(), load(&self.found)),
            (Outcome::NoData.label(), load(&self.nodata)),
            (Outcome::NxDomain.label(), load(&self.nxdomain)),
            (Outcome::Refused.label(), load(&self.refused)),
            ("forwarded", load(&self.forwarded)),
            ("failed", load(&self.failed)),
            ("dropped", load(&self.dropped)),
        ]
    }
}

/// What the UDP and TCP servers share.
#[derive(Clone)]
pub(crate) struct Server {
    pub(crate) directory: watch::Receiver<Arc<Directory>>,
    pub(crate) upstreams: Arc<Upstreams>,
    pub(crate) stats: Arc<crate::discovery::DiscoveryStats>,
    pub(crate) forwards: Arc<Semaphore>,
    pub(crate) tasks: Tasks,
}

impl Server {
    pub(crate) fn new(
        directory: watch::Receiver<Arc<Directory>>,
        upstreams: Upstreams,
        stats: Arc<crate::discovery::DiscoveryStats>,
        tasks: Tasks,
    ) -> Self {
        Self {
            directory,
            upstreams: Arc::new(upstreams),
            stats,
            forwards: Arc::new(Semaphore::new(FORWARDS_IN_FLIGHT_MAX)),
            tasks,
        }
    }

    fn answer(&self, query: &[u8]) -> Answer {
        let directory = self.directory.borrow().clone();
        let answer = answer::answer(query, &directory);
        if let Answer::Local(_, outcome) = &answer {
            self.stats.dns.count(*outcome);
        }
        answer
    }

    /// Serves questions on `socket` until the peer stops.
    pub(crate) async fn serve_udp(self, socket: UdpSocket) {
        let socket = Arc::new(socket);
        let shutdown = self.tasks.shutdown().clone();
        let mut buf = vec![0u8; UDP_QUESTION_MAX_BYTES];
        loop {
            let (n, client) = tokio::select! {
                () = shutdown.cancelled() => return,
                received = socket.recv_from(&mut buf) => match received {
                    Ok(received) => received,
                    Err(e) => {
                        tracing::debug!(error = %e, "dns receive");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let query = &buf[..n];
            match self.answer(query) {
                Answer::Ignore => {}
                Answer::Local(reply, _) => {
                    let _ = socket.send_to(&reply, client).await;
                }
                Answer::Forward => self.forward_udp(query.to_vec(), client, socket.clone()),
            }
        }
    }

    fn forward_udp(&self, query: Vec<u8>, client: SocketAddr, socket: Arc<UdpSocket>) {
        let Ok(permit) = self.forwards.clone().try_acquire_owned() else {
            self.stats.dns.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let server = self.clone();
        self.tasks.spawn("dns forward", async move {
            let _permit = permit;
            let reply = tokio::select! {
                () = server.tasks.shutdown().cancelled() => return,
                reply = server.upstreams.ask_udp(&query) => reply,
            };
            let reply = match reply {
                Some(reply) => {
                    server.stats.dns.forwarded.fetch_add(1, Ordering::Relaxed);
                    reply
                }
                None => {
                    server.stats.dns.failed.fetch_add(1, Ordering::Relaxed);
                    let Some(failure) = answer::server_failure(&query) else {
                        return;
                    };
                    failure
                }
            };
            let _ = socket.send_to(&reply, client).await;
        });
    }

    /// Serves TCP clients on `listener` until the peer stops.
    pub(crate) async fn serve_tcp(self, listener: TcpListener) {
        let shutdown = self.tasks.shutdown().clone();
        let clients = Arc::new(AtomicUsize::new(0));
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::debug!(error = %e, "dns accept");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            if clients.load(Ordering::Relaxed) >= TCP_CLIENTS_MAX {
                continue;
            }
            clients.fetch_add(1, Ordering::Relaxed);
            let (server, clients) = (self.clone(), clients.clone());
            self.tasks.spawn("dns tcp client", async move {
                tokio::select! {
                    () = server.tasks.shutdown().cancelled() => {}
                    () = server.tcp_client(stream) => {}
                }
                clients.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }

    /// Answers one TCP client's questions, one after the other, until it goes quiet.
    async fn tcp_client(&self, mut stream: TcpStream) {
        loop {
            let Ok(Ok(query)) = tokio::time::timeout(TCP_IDLE, read_frame(&mut stream)).await
            else {
                return;
            };
            let reply = match self.answer(&query) {
                Answer::Ignore => return,
                Answer::Local(reply, _) => reply,
                Answer::Forward => {
                    let Ok(Ok(_permit)) =
                        tokio::time::timeout(TCP_IDLE, self.forwards.acquire()).await
                    else {
                        return;
                    };
                    match self.upstreams.ask_tcp(&query).await {
                        Some(reply) => {
                            self.stats.dns.forwarded.fetch_add(1, Ordering::Relaxed);
                            reply
                        }
                        None => {
                            self.stats.dns.failed.fetch_add(1, Ordering::Relaxed);
                            let Some(failure) = answer::server_failure(&query) else {
                                return;
                            };
                            failure
                        }
                    }
                }
            };
            let write = tokio::time::timeout(TCP_IDLE, write_frame(&mut stream, &reply));
            if !matches!(write.await, Ok(Ok(()))) {
                return;
            }
        }
    }
}
