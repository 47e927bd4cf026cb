//! Is anything still listening on a member's port? One datagram from a connected UDP
//! socket: if the member's host answers with ICMP port unreachable, the socket's next
//! receive fails with "connection refused", and no process serves that address any more
//! (it died and its host stayed up). Silence proves nothing (a cut link, a dead host, or a
//! live peer, which ignores the one-byte datagram as too short to be QUIC) and is not
//! reported.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, mpsc};

use super::command::Command;
use crate::id::PeerId;
use crate::node_core::Input;

/// Checks in flight at most; a check asked for beyond it is skipped (silence).
pub const CHECKS_MAX: usize = 16;
/// How long a check waits for a refusal. ICMP comes back within a round trip.
pub const CHECK_WAIT: Duration = Duration::from_millis(500);

/// Runs port checks, bounded in number, and reports refusals to the core.
#[derive(Debug, Clone)]
pub(crate) struct PortChecks {
    slots: Arc<Semaphore>,
    core: mpsc::Sender<Command>,
}

impl PortChecks {
    pub(crate) fn new(core: mpsc::Sender<Command>) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(CHECKS_MAX)),
            core,
        }
    }

    /// Checks `peer`'s port in the background.
    pub(crate) fn check(&self, peer: PeerId) {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            tracing::debug!(peer = ?peer, "port check skipped: too many in flight");
            return;
        };
        let core = self.core.clone();
        tokio::spawn(async move {
            if refused(peer.addr).await {
                tracing::debug!(peer = ?peer, "port refused");
                let _ = core.try_send(Command::Core(Input::Refused(peer)));
            }
            drop(slot);
        });
    }
}

/// Whether `addr`'s host refused a datagram within [`CHECK_WAIT`].
pub async fn refused(addr: SocketAddr) -> bool {
    let local: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(socket) = UdpSocket::bind(local).await else {
        return false;
    };
    if socket.connect(addr).await.is_err() {
        return false;
    }
    if let Err(e) = socket.send(&[0]).await {
        return e.kind() == std::io::ErrorKind::ConnectionRefused;
    }
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(CHECK_WAIT, socket.recv(&mut buf)).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_refused_and_a_bound_one_is_not() {
        let open = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let open_addr = open.local_addr().unwrap();
        assert!(
            !refused(open_addr).await,
            "a bound socket ignores the datagram"
        );
        let closed_addr = {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap()
        };
        assert!(
            refused(closed_addr).await,
            "nothing listens: the host refuses"
        );
    }
}
