//! Is anything still listening on a member's port? One datagram of one byte to it: if the
//! member's host answers with ICMP port unreachable, no process serves that address any
//! more (it died and its host stayed up). Silence proves nothing (a cut link, a dead host,
//! or a live peer, which ignores the one-byte datagram as too short to be QUIC) and is not
//! reported.
//!
//! The checks go out from one long-lived socket per address family with `IP_RECVERR`
//! (`IPV6_RECVERR`): the kernel queues each ICMP error with the destination of the datagram
//! that caused it, and one task reads that queue. A check is then one `sendto`: no socket,
//! no task and no timer of its own. What it still costs is the receiver's wake-up, since a
//! live member's QUIC endpoint reads and drops the byte (see `Profile::port_sweep_ms`).

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::command::Command;
use crate::id::PeerId;
use crate::node_core::Input;

/// Checks awaiting an answer at most: past it, those older than [`CHECK_WAIT`] are
/// forgotten, and a check that still finds no room is skipped (silence).
pub const CHECKS_MAX: usize = 1024;
/// How long a check waits for a refusal. ICMP comes back within a round trip.
pub const CHECK_WAIT: Duration = Duration::from_millis(500);
/// Errors read from a queue in one wake-up at most, before yielding.
const ERRORS_PER_WAKE: usize = 64;

/// The checks sent and not yet answered, by destination.
type Pending = Arc<Mutex<HashMap<SocketAddr, (PeerId, Instant)>>>;

/// Sends port checks and reports refusals to the core.
#[derive(Debug)]
pub(crate) struct PortChecks {
    v4: Option<Arc<UdpSocket>>,
    v6: Option<Arc<UdpSocket>>,
    pending: Pending,
}

impl PortChecks {
    /// Opens the sockets and starts their readers, which run until `shutdown`. A family
    /// whose socket cannot be opened is not checked (its checks are silence), with a
    /// warning.
    pub(crate) fn new(core: mpsc::Sender<Command>, shutdown: &CancellationToken) -> Self {
        let pending: Pending = Arc::default();
        let open = |v6: bool| match error_queue_socket(v6) {
            Ok(socket) => {
                let socket = Arc::new(socket);
                tokio::spawn(read_errors(
                    socket.clone(),
                    pending.clone(),
                    core.clone(),
                    shutdown.clone(),
                ));
                Some(socket)
            }
            Err(e) => {
                tracing::warn!(error = %e, ipv6 = v6, "port checks off: cannot open their socket");
                None
            }
        };
        Self {
            v4: open(false),
            v6: open(true),
            pending,
        }
    }

    /// Checks `peer`'s port: a refusal within [`CHECK_WAIT`] is reported to the core as
    /// [`Input::Refused`].
    pub(crate) fn check(&self, peer: PeerId) {
        let socket = if peer.addr.is_ipv4() {
            &self.v4
        } else {
            &self.v6
        };
        let Some(socket) = socket else {
            return;
        };
        let now = Instant::now();
        if let Ok(mut pending) = self.pending.lock() {
            if pending.len() >= CHECKS_MAX {
                pending.retain(|_, (_, at)| now.duration_since(*at) < CHECK_WAIT);
            }
            if pending.len() >= CHECKS_MAX {
                tracing::debug!(peer = ?peer, "port check skipped: too many awaiting an answer");
                return;
            }
            pending.insert(peer.addr, (peer, now));
        }
        // A refusal also sets the socket's pending error, which fails the next send (the
        // refusal itself is queued with its address for the reader): send again then. Any
        // other error (a full send buffer) makes this check silence.
        if let Err(e) = socket.try_send_to(&[0], peer.addr)
            && e.kind() == std::io::ErrorKind::ConnectionRefused
        {
            let _ = socket.try_send_to(&[0], peer.addr);
        }
    }
}

/// An unconnected, non-blocking UDP socket of one family that queues ICMP errors.
fn error_queue_socket(v6: bool) -> std::io::Result<UdpSocket> {
    let socket = if v6 {
        std::net::UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))?
    } else {
        std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?
    };
    socket.set_nonblocking(true)?;
    if v6 {
        setsockopt(&socket, sockopt::Ipv6RecvErr, &true)?;
    } else {
        setsockopt(&socket, sockopt::Ipv4RecvErr, &true)?;
    }
    UdpSocket::from_std(socket)
}

/// Reads `socket`'s error queue until `shutdown`: each "port unreachable" for an address
/// checked within [`CHECK_WAIT`] is a refusal of that member. Datagrams that arrive on the
/// socket (nobody should send any) are read and dropped.
async fn read_errors(
    socket: Arc<UdpSocket>,
    pending: Pending,
    core: mpsc::Sender<Command>,
    shutdown: CancellationToken,
) {
    loop {
        let ready = tokio::select! {
            () = shutdown.cancelled() => return,
            ready = socket.ready(Interest::READABLE | Interest::ERROR) => ready,
        };
        if ready.is_err() {
            return;
        }
        drop_data(&socket);
        for _ in 0..ERRORS_PER_WAKE {
            // `try_io` clears the readiness when the queue is empty (`WouldBlock`); past
            // the bound, `ready` returns at once and the rest is read then.
            let entry = socket.try_io(Interest::ERROR, || {
                next_refusal(&socket).map_err(std::io::Error::from)
            });
            match entry {
                Ok(Some(addr)) => {
                    let checked = pending.lock().ok().and_then(|mut p| p.remove(&addr));
                    if let Some((peer, at)) = checked
                        && at.elapsed() < CHECK_WAIT
                    {
                        tracing::debug!(peer = ?peer, "port refused");
                        let _ = core.try_send(Command::Core(Input::Refused(peer)));
                    }
                }
                Ok(None) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "port checks: reading the error queue");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    break;
                }
            }
        }
    }
}

/// Reads and drops what came in as data (nobody should send any, and a stranger's
/// datagrams must not fill the buffer), and the socket's pending error, which each
/// refusal also sets.
fn drop_data(socket: &UdpSocket) {
    let mut buf = [0u8; 64];
    for _ in 0..ERRORS_PER_WAKE {
        match socket.try_recv_from(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            _ => {}
        }
    }
}

/// Reads one entry of `socket`'s error queue: `Ok(Some(addr))` for a "port unreachable"
/// from ICMP for a datagram sent to `addr`, `Ok(None)` for any other entry, an error
/// (`WouldBlock`) once the queue is empty.
fn next_refusal(socket: &impl AsRawFd) -> nix::Result<Option<SocketAddr>> {
    let mut data = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut data)];
    let mut cmsg = nix::cmsg_space!(nix::libc::sock_extended_err, nix::libc::sockaddr_in6);
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_ERRQUEUE,
    )?;
    let refused = msg.cmsgs()?.any(|c| match c {
        ControlMessageOwned::Ipv4RecvErr(e, _) => {
            e.ee_origin == nix::libc::SO_EE_ORIGIN_ICMP
                && e.ee_errno == u32::try_from(nix::libc::ECONNREFUSED).unwrap_or(u32::MAX)
        }
        ControlMessageOwned::Ipv6RecvErr(e, _) => {
            e.ee_origin == nix::libc::SO_EE_ORIGIN_ICMP6
                && e.ee_errno == u32::try_from(nix::libc::ECONNREFUSED).unwrap_or(u32::MAX)
        }
        _ => false,
    });
    let addr = msg.address.and_then(|a| {
        a.as_sockaddr_in()
            .map(|a| SocketAddr::from((a.ip(), a.port())))
            .or_else(|| {
                a.as_sockaddr_in6()
                    .map(|a| SocketAddr::from((a.ip(), a.port())))
            })
    });
    Ok(addr.filter(|_| refused))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed_port(ip: &str) -> SocketAddr {
        let socket = std::net::UdpSocket::bind((ip, 0)).unwrap();
        socket.local_addr().unwrap()
    }

    fn peer_at(addr: SocketAddr) -> PeerId {
        PeerId {
            node: crate::id::NodeId::from_bytes([7; 16]),
            addr,
            epoch: 1,
        }
    }

    async fn refusals(
        checks: &PortChecks,
        rx: &mut mpsc::Receiver<Command>,
        addr: SocketAddr,
    ) -> bool {
        checks.check(peer_at(addr));
        match tokio::time::timeout(Duration::from_millis(400), rx.recv()).await {
            Ok(Some(Command::Core(Input::Refused(peer)))) => {
                assert_eq!(peer.addr, addr);
                true
            }
            Ok(_) => panic!("unexpected command"),
            Err(_) => false,
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_and_a_bound_one_is_not() {
        let (tx, mut rx) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let checks = PortChecks::new(tx, &shutdown);
        let open = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let open_addr = open.local_addr().unwrap();
        assert!(
            !refusals(&checks, &mut rx, open_addr).await,
            "a bound socket ignores the datagram"
        );
        let closed = closed_port("127.0.0.1");
        assert!(
            refusals(&checks, &mut rx, closed).await,
            "nothing listens: the host refuses"
        );
        // Again, and after a bound port's silence: each check is answered on its own.
        assert!(refusals(&checks, &mut rx, closed).await);
        assert!(!refusals(&checks, &mut rx, open_addr).await);
        // Two dead ports checked back to back: the first refusal fails the second send
        // (the socket's pending error), which is sent again.
        let (a, b) = (closed_port("127.0.0.1"), closed_port("127.0.0.1"));
        checks.check(peer_at(a));
        checks.check(peer_at(b));
        let mut refused = Vec::new();
        while let Ok(Some(Command::Core(Input::Refused(peer)))) =
            tokio::time::timeout(Duration::from_millis(400), rx.recv()).await
        {
            refused.push(peer.addr);
        }
        refused.sort();
        let mut both = vec![a, b];
        both.sort();
        assert_eq!(refused, both);
        // IPv6 where the machine has it.
        if std::net::UdpSocket::bind("[::1]:0").is_ok() {
            assert!(refusals(&checks, &mut rx, closed_port("::1")).await);
        }
        shutdown.cancel();
    }
}
