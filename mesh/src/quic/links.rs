//! Connections to other members: one cached QUIC connection per peer, dialed on demand,
//! read by one task each. Sending never waits: a packet for a peer whose connection is
//! still being dialed waits in a short queue, and is dropped (as UDP would) past it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::command::Command;
use super::credentials::Credentials;
use super::join_secret;
pub use super::metrics::MeshMetrics;
use super::metrics::bump;
use super::sync::{self, SyncContext};
use super::tls::{self, GOSSIP_ALPN, JOIN_ALPN};
use super::{app, frame, join};
use crate::codec;
use crate::id::{NodeId, PeerId};
use crate::node_core::{Input, View};
use crate::store::Store;

/// How long a dial to a member may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Packets queued per peer while its connection is being dialed.
const PENDING_MAX: usize = 16;
/// Stream exchanges with members (anti-entropy, pushes) served at once, per node.
const STREAMS_MAX: usize = 32;
/// Connections on the join service (unauthenticated: anyone who can reach the port) open
/// at once; past it new ones are closed at once. Their own pool, apart from members'
/// streams, so a flood of join attempts cannot slow state sync.
pub(crate) const JOIN_CONNECTIONS_MAX: usize = 32;
/// Join requests being read and answered at once; the permit is released before the
/// wait for the joiner to close.
pub(crate) const JOIN_STREAMS_MAX: usize = 4;
/// How long a joiner may take to send its request.
const JOIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// The QUIC close code that says the join service is busy.
const BUSY_CODE: u32 = 4;
/// After a failed dial, packets to that peer are dropped for this long.
const REDIAL_AFTER: Duration = Duration::from_millis(250);
/// How long a connection kept across a member's new epoch may go without a packet of that
/// epoch before it is given up and the member dialed (see [`Links::send`]).
const CONFIRM_WITHIN: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Link {
    addr: Option<SocketAddr>,
    /// The epoch of the peer the connection was made for; a newer epoch is a new process.
    epoch: u64,
    conn: Option<quinn::Connection>,
    pending: VecDeque<Bytes>,
    dialing: bool,
    retry_at: Option<tokio::time::Instant>,
    /// Set while the connection was made for an older epoch of the member: since when,
    /// and what was sent on it since (at most [`PENDING_MAX`]), sent again on a new
    /// connection if this one turns out to lead to a process that is gone.
    unconfirmed: Option<(tokio::time::Instant, VecDeque<Bytes>)>,
}

/// What every transport task shares.
pub(crate) struct Links {
    pub(crate) endpoint: quinn::Endpoint,
    gossip_client: quinn::ClientConfig,
    pub(crate) creds: Credentials,
    pub(crate) core: mpsc::Sender<Command>,
    pub(crate) view: tokio::sync::watch::Receiver<Arc<View>>,
    /// The store as last published: the join service reads the secret in force and the
    /// ids already held from it.
    store: tokio::sync::watch::Receiver<Arc<Store>>,
    pub(crate) metrics: Arc<MeshMetrics>,
    pub(crate) shutdown: CancellationToken,
    links: Mutex<HashMap<NodeId, Link>>,
    /// When a packet last came from each member, for reachability checks.
    pub(crate) heard: Arc<super::reach::Heard>,
    /// Members' stream exchanges.
    streams: Arc<Semaphore>,
    /// Application streams (see [`app`]), in a pool of their own.
    pub(crate) app: app::Service,
    /// Unauthenticated connections on the join service.
    join_connections: Arc<Semaphore>,
    /// Join requests being served.
    join_streams: Semaphore,
    /// Nodes removed from the cluster: nothing is sent to them or taken from them.
    revoked: std::sync::RwLock<BTreeSet<NodeId>>,
    /// Another member refused this node as removed (said once).
    refused: std::sync::atomic::AtomicBool,
}

/// The QUIC close code that tells a removed node why.
const REVOKED_CODE: u32 = 3;
const REVOKED_REASON: &[u8] = b"this node was removed from the cluster (knit node rm)";

impl Links {
    pub(crate) fn new(
        endpoint: quinn::Endpoint,
        creds: Credentials,
        core: mpsc::Sender<Command>,
        view: tokio::sync::watch::Receiver<Arc<View>>,
        store: tokio::sync::watch::Receiver<Arc<Store>>,
        metrics: Arc<MeshMetrics>,
        shutdown: CancellationToken,
    ) -> Result<Self, tls::TlsError> {
        let crypto = creds.member_tls().client_config(GOSSIP_ALPN)?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).map_err(|e| {
            tls::TlsError::Invalid {
                what: "client TLS configuration",
                detail: e.to_string(),
            }
        })?;
        let mut gossip_client = quinn::ClientConfig::new(Arc::new(crypto));
        gossip_client.transport_config(Arc::new(transport_config()));
        Ok(Self {
            endpoint,
            gossip_client,
            creds,
            core,
            view,
            store,
            metrics,
            shutdown,
            links: Mutex::new(HashMap::new()),
            heard: Arc::default(),
            streams: Arc::new(Semaphore::new(STREAMS_MAX)),
            app: app::Service::new(),
            join_connections: Arc::new(Semaphore::new(JOIN_CONNECTIONS_MAX)),
            join_streams: Semaphore::new(JOIN_STREAMS_MAX),
            revoked: std::sync::RwLock::default(),
            refused: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// What an anti-entropy exchange on one of these connections needs.
    pub(crate) fn sync_context(&self) -> SyncContext {
        SyncContext {
            core: self.core.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// Cuts `nodes` off (all the nodes removed so far): closes their connections, and
    /// from now on drops what would go to them and refuses what comes from them.
    pub(crate) fn revoke(&self, nodes: &BTreeSet<NodeId>) {
        nodes.clone_into(&mut self.revoked.write().unwrap_or_else(PoisonError::into_inner));
        self.with(|links| {
            for node in nodes {
                if let Some(conn) = links.remove(node).and_then(|l| l.conn) {
                    conn.close(REVOKED_CODE.into(), REVOKED_REASON);
                }
            }
        });
    }

    /// Says once, loudly, that another member refused this node because it was removed.
    fn note_refusal(&self, closed: &quinn::ConnectionError) {
        let quinn::ConnectionError::ApplicationClosed(close) = closed else {
            return;
        };
        if close.error_code == REVOKED_CODE.into() && !self.refused.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "a member refused this node: it was removed from the cluster (knit node rm); to add this host again, stop knit, remove its data dir, and join with a token"
            );
        }
    }

    fn is_revoked(&self, node: &NodeId) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(node)
    }

    /// Whether a member certificate names a removed node.
    fn cert_revoked(&self, cert: &[u8]) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|node| tls::cert_names_node(cert, node))
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<NodeId, Link>) -> R) -> R {
        f(&mut self.links.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Sends a gossip packet to `to` without waiting; dials if needed.
    ///
    /// A member at a new epoch is often the same process: one declared down that came
    /// back (SWIM's refutation by a new incarnation). Its connection is kept, rather than
    /// each member dialing it again (a handshake per member per false `down`, which is
    /// what turned a few false alarms into a storm at 100 peers). The connection is then
    /// unconfirmed until a packet of the new epoch comes on it ([`Links::adopt`]); if the
    /// process was replaced, its stateless reset closes the connection on the first packet
    /// (the key is the node's, see [`super::mesh::bind`]) and what was sent on it goes out
    /// again on a new one; if nothing confirms it within [`CONFIRM_WITHIN`], it is dropped.
    pub(crate) fn send(self: &Arc<Self>, to: PeerId, packet: Bytes) {
        if self.is_revoked(&to.node) {
            bump(&self.metrics.packets_dropped, 1);
            return;
        }
        let len = packet.len() as u64;
        let now = tokio::time::Instant::now();
        let dial = self.with(|links| {
            let link = links.entry(to.node).or_default();
            if link.addr != Some(to.addr) {
                link.addr = Some(to.addr);
                link.epoch = to.epoch;
                link.conn = None;
                link.unconfirmed = None;
            } else if link.epoch < to.epoch {
                link.epoch = to.epoch;
                if link
                    .conn
                    .as_ref()
                    .is_some_and(|c| c.close_reason().is_none())
                {
                    link.unconfirmed.get_or_insert_with(|| {
                        bump(&self.metrics.kept_across_epoch, 1);
                        (now, VecDeque::new())
                    });
                }
            }
            if link
                .unconfirmed
                .as_ref()
                .is_some_and(|(since, _)| now.duration_since(*since) > CONFIRM_WITHIN)
            {
                bump(&self.metrics.kept_but_gone, 1);
                link.conn = None;
                link.unconfirmed = None;
            }
            if let Some(conn) = link.conn.as_ref().filter(|c| c.close_reason().is_none()) {
                if let Some((_, sent)) = link.unconfirmed.as_mut() {
                    if sent.len() >= PENDING_MAX {
                        sent.pop_front();
                    }
                    sent.push_back(packet.clone());
                }
                if conn.send_datagram(packet).is_ok() {
                    bump(&self.metrics.packets_out, 1);
                    bump(&self.metrics.bytes_out, len);
                    return false;
                }
                link.conn = None;
                return false;
            }
            link.conn = None;
            link.unconfirmed = None;
            if link
                .retry_at
                .is_some_and(|t| t > tokio::time::Instant::now())
            {
                bump(&self.metrics.packets_dropped, 1);
                return false;
            }
            if link.pending.len() >= PENDING_MAX {
                link.pending.pop_front();
                bump(&self.metrics.packets_dropped, 1);
            }
            link.pending.push_back(packet);
            !std::mem::replace(&mut link.dialing, true)
        });
        if dial {
            let links = Arc::clone(self);
            tokio::spawn(async move { links.dial(to).await });
        }
    }

    /// The live connection to `peer`, dialing it if there is none.
    pub(crate) async fn connection(self: &Arc<Self>, peer: PeerId) -> Option<quinn::Connection> {
        let cached = self.with(|links| {
            links
                .get(&peer.node)
                .filter(|l| l.addr == Some(peer.addr) && l.epoch >= peer.epoch)
                .and_then(|l| l.conn.clone())
                .filter(|c| c.close_reason().is_none())
        });
        if cached.is_some() {
            return cached;
        }
        let conn = self.connect(peer).await?;
        self.adopt(peer, conn.clone());
        Some(conn)
    }

    async fn connect(self: &Arc<Self>, peer: PeerId) -> Option<quinn::Connection> {
        bump(&self.metrics.dials, 1);
        let name = tls::node_name(&peer.node);
        let connecting = self
            .endpoint
            .connect_with(self.gossip_client.clone(), peer.addr, &name)
            .ok()?;
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(conn)) => {
                let links = Arc::clone(self);
                let reader = conn.clone();
                tokio::spawn(async move { links.serve(reader, Some(peer.node)).await });
                Some(conn)
            }
            Ok(Err(e)) => {
                tracing::debug!(peer = ?peer, error = %e, "dial failed");
                None
            }
            Err(_) => {
                tracing::debug!(peer = ?peer, "dial timed out");
                None
            }
        }
    }

    async fn dial(self: Arc<Self>, peer: PeerId) {
        let conn = self.connect(peer).await;
        let pending = self.with(|links| {
            let link = links.entry(peer.node).or_default();
            link.dialing = false;
            match &conn {
                Some(conn) if link.addr == Some(peer.addr) && link.epoch <= peer.epoch => {
                    link.epoch = peer.epoch;
                    link.conn = Some(conn.clone());
                    link.retry_at = None;
                    link.unconfirmed = None;
                    std::mem::take(&mut link.pending)
                }
                _ => {
                    link.pending.clear();
                    link.retry_at = Some(tokio::time::Instant::now() + REDIAL_AFTER);
                    VecDeque::new()
                }
            }
        });
        if let Some(conn) = conn {
            for packet in pending {
                let len = packet.len() as u64;
                if conn.send_datagram(packet).is_ok() {
                    bump(&self.metrics.packets_out, 1);
                    bump(&self.metrics.bytes_out, len);
                }
            }
        }
    }

    /// Caches `conn` as the link to `peer`: the peer just proved it uses this connection,
    /// so it replaces any older one (which may lead to a process that has died).
    fn adopt(&self, peer: PeerId, conn: quinn::Connection) {
        self.with(|links| {
            let link = links.entry(peer.node).or_default();
            if link.epoch <= peer.epoch {
                link.addr = Some(peer.addr);
                link.epoch = peer.epoch;
                link.conn = Some(conn);
                link.retry_at = None;
                link.unconfirmed = None;
            }
        });
    }

    /// `conn`, a connection to `node`, closed: if it was kept unconfirmed across a new
    /// epoch (see [`Links::send`]), what was sent on it goes out again, on a new one.
    fn closed(self: &Arc<Self>, node: NodeId, conn: &quinn::Connection) {
        let resend = self.with(|links| {
            let link = links.get_mut(&node)?;
            let ours = link
                .conn
                .as_ref()
                .is_some_and(|c| c.stable_id() == conn.stable_id());
            if !ours {
                return None;
            }
            link.conn = None;
            let (_, sent) = link.unconfirmed.take()?;
            bump(&self.metrics.kept_but_gone, 1);
            let peer = PeerId {
                node,
                addr: link.addr?,
                epoch: link.epoch,
            };
            Some((peer, sent))
        });
        if let Some((peer, sent)) = resend {
            tracing::debug!(peer = ?peer, packets = sent.len(), "a connection kept across a new epoch was reset; dialing");
            for packet in sent {
                self.send(peer, packet);
            }
        }
    }

    /// Accepts connections until shutdown.
    pub(crate) async fn accept(self: Arc<Self>) {
        loop {
            let incoming = tokio::select! {
                () = self.shutdown.cancelled() => return,
                incoming = self.endpoint.accept() => match incoming {
                    Some(incoming) => incoming,
                    None => return,
                },
            };
            let links = Arc::clone(&self);
            tokio::spawn(async move {
                match tokio::time::timeout(CONNECT_TIMEOUT, incoming).await {
                    Ok(Ok(conn)) => links.serve_incoming(conn).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "incoming handshake failed"),
                    Err(_) => tracing::debug!("incoming handshake timed out"),
                }
            });
        }
    }

    async fn serve_incoming(self: Arc<Self>, conn: quinn::Connection) {
        let alpn = conn
            .handshake_data()
            .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|d| d.protocol);
        match alpn.as_deref() {
            Some(GOSSIP_ALPN) => match tls::peer_cert(conn.peer_identity()) {
                Some(cert) if self.cert_revoked(&cert) => {
                    conn.close(REVOKED_CODE.into(), REVOKED_REASON);
                }
                Some(_) => self.serve(conn, None).await,
                None => conn.close(1u32.into(), b"gossip needs a member certificate"),
            },
            Some(JOIN_ALPN) => match self.join_connections.clone().try_acquire_owned() {
                Ok(permit) => {
                    let _permit = permit;
                    self.serve_join(conn).await;
                }
                Err(_) => conn.close(BUSY_CODE.into(), b"the join service is busy; retry"),
            },
            _ => conn.close(1u32.into(), b"gossip needs a member certificate"),
        }
    }

    /// Serves one join request: the stream permit is held while the request is read and
    /// answered, and released before waiting for the joiner to close.
    async fn serve_join(self: Arc<Self>, conn: quinn::Connection) {
        let Ok(Ok((mut send, mut recv))) =
            tokio::time::timeout(JOIN_REQUEST_TIMEOUT, conn.accept_bi()).await
        else {
            return;
        };
        {
            let Ok(_permit) = self.join_streams.try_acquire() else {
                conn.close(BUSY_CODE.into(), b"the join service is busy; retry");
                return;
            };
            let Ok(request) = frame::read_within(&mut recv, JOIN_REQUEST_TIMEOUT).await else {
                return;
            };
            let response = self.answer_join(&conn, request);
            if frame::write(&mut send, &response).await.is_err() {
                return;
            }
        }
        let _ = send.finish();
        let _ = tokio::time::timeout(frame::FRAME_TIMEOUT, conn.closed()).await;
    }

    /// Answers a join request with the view, the store and the secret in force now.
    fn answer_join(
        &self,
        conn: &quinn::Connection,
        request: join::JoinRequest,
    ) -> join::JoinResponse {
        let view = self.view.borrow().clone();
        let store = self.store.borrow().clone();
        let taken = |node: &NodeId| {
            view.members.iter().any(|m| m.peer.node == *node) || store.knows_node(node)
        };
        let admission = join::Admission {
            creds: &self.creds,
            me: view.me,
            secret: join_secret::current(&self.creds, &store),
            taken: &taken,
        };
        join::answer(conn, &admission, request)
    }

    /// Reads datagrams and serves streams on one gossip connection until it closes.
    /// `known` is the node dialed; for an accepted connection it is learnt from the first
    /// packet, whose claimed sender must match the client certificate.
    async fn serve(self: Arc<Self>, conn: quinn::Connection, mut known: Option<NodeId>) {
        let cert = tls::peer_cert(conn.peer_identity());
        if let (Some(node), Some(cert)) = (known, &cert) {
            self.offer_cert(node, cert);
        }
        let app_streams = Arc::new(Semaphore::new(app::STREAMS_PER_CONNECTION_MAX));
        // The newest epoch of the member seen on this connection.
        let mut epoch = None;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                datagram = conn.read_datagram() => {
                    let packet = match datagram {
                        Ok(packet) => packet,
                        Err(e) => {
                            self.note_refusal(&e);
                            if let Some(node) = known {
                                self.closed(node, &conn);
                            }
                            return;
                        }
                    };
                    let Some(source) = self.check_source(&packet, &mut known, cert.as_deref()) else {
                        bump(&self.metrics.packets_rejected, 1);
                        continue;
                    };
                    // The first packet, and any of a newer epoch, prove which process
                    // this connection leads to: it becomes the member's link (confirming
                    // one kept across the epoch, see `send`).
                    if epoch.is_none_or(|seen| source.epoch > seen) {
                        epoch = Some(source.epoch);
                        self.adopt(source, conn.clone());
                    }
                    if let Some(node) = known {
                        self.heard.note(node);
                    }
                    let len = packet.len() as u64;
                    if self.core.try_send(Command::Core(Input::Packet(packet))).is_ok() {
                        bump(&self.metrics.packets_in, 1);
                        bump(&self.metrics.bytes_in, len);
                    } else {
                        bump(&self.metrics.packets_dropped, 1);
                    }
                }
                stream = conn.accept_bi() => {
                    let Ok((send, recv)) = stream else { return };
                    let Ok(permit) = self.streams.clone().try_acquire_owned() else {
                        continue;
                    };
                    let links = Arc::clone(&self);
                    let app_streams = app_streams.clone();
                    tokio::spawn(async move {
                        let opened = sync::respond(&links.sync_context(), send, recv).await;
                        drop(permit);
                        let result = match opened {
                            Ok(sync::Opened::Synced) => Ok(()),
                            Ok(sync::Opened::Application { request, send, recv }) => {
                                links.app.serve(&app_streams, request, send, recv).await
                            }
                            Err(e) => Err(e),
                        };
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "member stream failed");
                        }
                    });
                }
            }
        }
    }

    /// Hands the certificate a peer connected with to the core, which learns its key (the
    /// core checks it again under the CA). Never waits: certificates also come as records.
    fn offer_cert(&self, node: NodeId, cert: &[u8]) {
        let _ = self.core.try_send(Command::Core(Input::PeerCert {
            node,
            cert_der: cert.to_vec(),
        }));
    }

    /// The sender of `packet` on `conn`, if it may send on it: a member not removed, the
    /// one dialed, or for an accepted connection the one its certificate names (learnt
    /// into `known` with the first packet).
    fn check_source(
        &self,
        packet: &[u8],
        known: &mut Option<NodeId>,
        cert: Option<&[u8]>,
    ) -> Option<PeerId> {
        let source = codec::packet_source(packet).ok()?;
        if self.is_revoked(&source.node) {
            return None;
        }
        match known {
            Some(node) => (*node == source.node).then_some(source),
            None => {
                let cert = cert?;
                if !tls::cert_names_node(cert, &source.node) {
                    return None;
                }
                *known = Some(source.node);
                self.offer_cert(source.node, cert);
                Some(source)
            }
        }
    }
}

/// How long a connection between members may carry nothing before it closes. Members
/// are not kept connected: SWIM's own probes (each member probed about once per round of
/// the member list) keep a pair's connection in use, and a connection that closed is
/// dialed again on the next packet. Keep-alives on every connection every second, as
/// before, cost each peer two packets a second per member and a timer wake-up each:
/// idle CPU that grew with the cluster's size (issue of idle cost; see BENCHMARKS.md).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// QUIC transport settings for gossip: no keep-alives (see [`IDLE_TIMEOUT`]); failure
/// detection is SWIM's, not the transport's.
pub(crate) fn transport_config() -> quinn::TransportConfig {
    let mut config = quinn::TransportConfig::default();
    config.keep_alive_interval(None);
    let idle_ms = u32::try_from(IDLE_TIMEOUT.as_millis()).unwrap_or(u32::MAX);
    config.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
        idle_ms,
    ))));
    config.datagram_receive_buffer_size(Some(256 * 1024));
    config.datagram_send_buffer_size(256 * 1024);
    config
}
