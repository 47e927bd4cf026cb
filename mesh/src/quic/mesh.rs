//! The running mesh: one task owns the node core ([`crate::node_core`]), fed a fixed set
//! of commands over a bounded channel; it carries out what the core asks (packets, timers
//! on one min-heap, exchanges and pushes on streams, revocations) and publishes the view
//! and the store on `watch` channels. All IO happens here and in the transport tasks
//! around it; every decision is the core's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::command::Command;
use super::credentials::Credentials;
use super::join;
use super::join_secret::{self, JOIN_SECRET_KEY, SealError};
use super::keys::{KeyBook, NodeSigner};
use super::links::{Links, MeshMetrics, transport_config};
use super::sync;
use super::tls::TlsError;
use crate::id::PeerId;
use crate::membership::Connection;
use crate::node_core::{CoreConfig, Input, NodeCore, Output, Timer, TimerQueue, View};
use crate::profile::Profile;
use crate::store::{Stamp, Store};
use crate::token::JoinToken;
pub use crate::trust::CLOCK_SKEW_MAX_MS_DEFAULT;

/// Commands queued for the core task at most; packets past it are dropped like UDP's.
const INPUT_QUEUE_MAX: usize = 4096;
/// A single write (key and value) at most: it must travel in one frame, with room to
/// spare, to every member.
pub const WRITE_MAX_BYTES: usize = 8 * 1024 * 1024;

/// How to run the mesh.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// This node's identity (node id, advertised address, epoch of this start).
    pub identity: PeerId,
    /// Failure-detection timing.
    pub profile: Profile,
    /// Seeds to announce to while not in a cluster.
    pub seeds: Vec<SocketAddr>,
    /// The store as persisted.
    pub store: Store,
    /// How often to run anti-entropy with one random member.
    pub sync_period: Duration,
    /// How far ahead of this node's wall clock another member's write may be stamped, in
    /// ms ([`CLOCK_SKEW_MAX_MS_DEFAULT`]); later stamps are refused and counted, so one
    /// fast clock cannot drag the cluster's clocks forward or freeze a key.
    pub clock_skew_max_ms: u64,
}

/// The mesh could not start.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr} (is another knit running there? pick another with --listen)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The secret a node's stateless resets are made from ([`bind`]): kept in its data dir,
/// the same for every process of the node.
pub type ResetKey = [u8; 32];

/// Binds the mesh's QUIC endpoint, client-only until [`Mesh::start`] makes it a server.
///
/// Its stateless resets, and its connection ids, come from `reset_key`, the same for
/// every process of this node (RFC 9000, 10.3.2, a static key): a member still holding a
/// connection to the process before a restart gets a reset on its first packet and dials
/// the new one at once, where with a random key the old connection would carry packets
/// into the void until it timed out. It is what lets members keep a connection across an
/// epoch of the same process (see `Links::send`).
pub fn bind(addr: SocketAddr, reset_key: &ResetKey) -> Result<quinn::Endpoint, MeshError> {
    let bind_error = |source| MeshError::Bind { addr, source };
    let socket = std::net::UdpSocket::bind(addr).map_err(bind_error)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset_key);
    // A new process answers a packet for an unknown connection with a reset only if it
    // takes the connection id for one it could have issued: the ids' key comes from the
    // same secret.
    let tag = ring::hmac::sign(&key, b"knit connection ids");
    let mut cid_key = [0_u8; 8];
    cid_key.copy_from_slice(&tag.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    let mut config = quinn::EndpointConfig::new(Arc::new(key));
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    quinn::Endpoint::new(config, None, socket, Arc::new(quinn::TokioRuntime)).map_err(bind_error)
}

/// A handle on the running mesh; cheap to clone.
#[derive(Clone)]
pub struct Mesh {
    core: mpsc::Sender<Command>,
    view: watch::Receiver<Arc<View>>,
    store: watch::Receiver<Arc<Store>>,
    metrics: Arc<MeshMetrics>,
    /// The membership traffic by kind of message and by record.
    traffic: Arc<crate::traffic::Traffic>,
    endpoint: quinn::Endpoint,
    shutdown: CancellationToken,
    /// For the join token in force and its rotation.
    creds: Arc<Credentials>,
    /// Which members answered when the set of members seen down last changed.
    reachability: watch::Receiver<Arc<super::reach::Reachability>>,
    /// The connections to members, for application streams.
    links: Arc<Links>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("me", &self.view.borrow().me)
            .finish_non_exhaustive()
    }
}

/// The mesh stopped before answering.
#[derive(Debug, thiserror::Error)]
#[error("the mesh has stopped")]
pub struct Stopped;

/// A write was not made.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The mesh stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
    /// Too big to replicate.
    #[error(
        "a write of {bytes} bytes exceeds the limit of {limit} bytes per key; store less under one key"
    )]
    TooLarge {
        /// The key's and value's bytes.
        bytes: usize,
        /// [`WRITE_MAX_BYTES`].
        limit: usize,
    },
}

/// The join token could not be rotated.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The mesh stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
    /// The write was refused.
    #[error(transparent)]
    Put(#[from] PutError),
    /// The new secret could not be encrypted.
    #[error(transparent)]
    Seal(#[from] SealError),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Mesh {
    /// Starts the mesh on `endpoint` (from [`bind`]) with `creds`; runs until `shutdown`.
    pub fn start(
        endpoint: quinn::Endpoint,
        creds: Credentials,
        config: MeshConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, MeshError> {
        let server_crypto = creds.member_tls().server_config()?;
        let server_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_crypto)
            .map_err(|e| TlsError::Invalid {
                what: "server TLS configuration",
                detail: e.to_string(),
            })?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(Arc::new(transport_config()));
        endpoint.set_server_config(Some(server));

        let signer = NodeSigner::new(&creds.node_key_pem)?;
        let book = KeyBook::new(&creds.ca_der);
        let core_config = CoreConfig {
            identity: config.identity,
            profile: config.profile,
            store: config.store,
            sync_period_ms: u64::try_from(config.sync_period.as_millis()).unwrap_or(u64::MAX),
            clock_skew_max_ms: config.clock_skew_max_ms,
            cert_der: creds.node_cert_der.clone(),
            seed: rand::rng().random(),
        };
        let node_core = NodeCore::new(core_config, Box::new(signer), Box::new(book), now_ms());
        let traffic = node_core.traffic();
        let (view_tx, view) = watch::channel(Arc::new(node_core.view()));
        let (store_tx, store_rx) = watch::channel(Arc::new(node_core.store().clone()));
        let (core, commands) = mpsc::channel(INPUT_QUEUE_MAX);
        let metrics = Arc::new(MeshMetrics::default());
        let mesh_creds = Arc::new(creds.clone());
        let links = Arc::new(Links::new(
            endpoint.clone(),
            creds,
            core.clone(),
            view.clone(),
            store_rx.clone(),
            metrics.clone(),
            shutdown.clone(),
        )?);
        let task = CoreTask {
            core: node_core,
            timers: TimerQueue::new(),
            links: links.clone(),
            view_tx,
            store_tx,
            put_reply: None,
            port_checks: super::port_check::PortChecks::new(core.clone(), &shutdown),
        };
        tokio::spawn(task.run(commands, shutdown.clone()));
        tokio::spawn(links.clone().accept());
        let links_handle = links.clone();
        tokio::spawn(seed(links, config.seeds));
        let (reach_tx, reachability) = watch::channel(Arc::default());
        tokio::spawn(super::reach::run(
            core.clone(),
            links_handle.heard.clone(),
            view.clone(),
            store_rx.clone(),
            reach_tx,
            shutdown.clone(),
        ));
        Ok(Self {
            core,
            view,
            store: store_rx,
            metrics,
            traffic,
            endpoint,
            shutdown,
            creds: mesh_creds,
            reachability,
            links: links_handle,
        })
    }

    /// Registers this node's handler of application requests (see [`super::app`]) and
    /// returns the calls it must serve; until then requests are refused.
    pub fn serve_requests(&self) -> mpsc::Receiver<super::app::Call> {
        self.links.app.register()
    }

    /// Sends `request` to member `node` on an application stream and returns its answer once
    /// accepted. A member this node sees down (or suspect) is not dialed; one that does not
    /// answer within [`super::app::OPEN_TIMEOUT`] per step is reported unreachable.
    pub async fn request(
        &self,
        node: crate::id::NodeId,
        request: Vec<u8>,
    ) -> Result<super::app::AppStream, super::app::AppError> {
        use super::app::{AppError, AppStream, OPEN_TIMEOUT, REQUEST_MAX_BYTES};
        if request.len() > REQUEST_MAX_BYTES {
            return Err(AppError::TooBig(request.len()));
        }
        let peer = self
            .view
            .borrow()
            .members
            .iter()
            .find(|m| m.peer.node == node && m.state == crate::MemberState::Alive)
            .map(|m| m.peer)
            .ok_or(AppError::Down(node))?;
        let conn = tokio::time::timeout(OPEN_TIMEOUT, self.links.connection(peer))
            .await
            .ok()
            .flatten()
            .ok_or_else(|| AppError::Unreachable {
                node,
                detail: format!("no connection within {OPEN_TIMEOUT:?}"),
            })?;
        AppStream::open(&conn, node, &sync::SyncMessage::Application(request)).await
    }

    /// Which members answered a dial when the set of members seen down last changed (see
    /// [`super::reach`]).
    pub fn reachability(&self) -> watch::Receiver<Arc<super::reach::Reachability>> {
        self.reachability.clone()
    }

    /// The join token in force: the newest rotated secret this node has, else the one it
    /// was created or admitted with.
    pub fn token(&self) -> JoinToken {
        join_secret::token(&self.creds, &self.store.borrow())
    }

    /// Rotates the join secret (`knit token rotate`): writes a fresh one, encrypted, to the
    /// store and returns the new token once this node uses it. Every member refuses the old
    /// token as soon as the write reaches it (a gossip round or two).
    pub async fn rotate_token(&self) -> Result<JoinToken, RotateError> {
        let secret: [u8; 16] = rand::rng().random();
        let sealed = join_secret::seal(&self.creds, &secret)?;
        self.put(JOIN_SECRET_KEY, Some(sealed)).await?;
        Ok(JoinToken {
            secret,
            ..self.creds.token()
        })
    }

    /// The current view; `changed()` on the receiver wakes on every change.
    pub fn view(&self) -> watch::Receiver<Arc<View>> {
        self.view.clone()
    }

    /// The store as of now; `changed()` on the receiver wakes on every change.
    pub fn store(&self) -> watch::Receiver<Arc<Store>> {
        self.store.clone()
    }

    /// The transport's counters.
    pub fn metrics(&self) -> &MeshMetrics {
        &self.metrics
    }

    /// The membership traffic, by kind of message and by record.
    pub fn traffic(&self) -> &crate::traffic::Traffic {
        &self.traffic
    }

    /// Writes `key` (or deletes it with `None`) and spreads the write; refuses one larger
    /// than [`WRITE_MAX_BYTES`].
    pub async fn put(&self, key: &str, value: Option<Vec<u8>>) -> Result<Stamp, PutError> {
        let bytes = key.len() + value.as_ref().map_or(0, Vec::len);
        if bytes > WRITE_MAX_BYTES {
            return Err(PutError::TooLarge {
                bytes,
                limit: WRITE_MAX_BYTES,
            });
        }
        let (reply, rx) = oneshot::channel();
        let command = Command::Put {
            key: key.to_owned(),
            value,
            reply,
        };
        self.core.send(command).await.map_err(|_| Stopped)?;
        Ok(rx.await.map_err(|_| Stopped)?)
    }

    /// Leaves the cluster, lets the goodbye go out, and stops the transport (at most ~1 s).
    pub async fn leave(&self) {
        let (reply, rx) = oneshot::channel();
        if self.core.send(Command::Leave(reply)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_millis(500), rx).await;
            // The goodbye is a handful of datagrams; give quinn a moment to send them.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        self.shutdown.cancel();
        self.endpoint.close(0u32.into(), b"left");
        let _ = tokio::time::timeout(Duration::from_millis(300), self.endpoint.wait_idle()).await;
    }
}

/// The core task: owns the node core and its timers, and carries out its outputs.
struct CoreTask {
    core: NodeCore,
    /// The core's timers, earliest first; equal deadlines fire in submission order.
    timers: TimerQueue<Timer, Instant>,
    links: Arc<Links>,
    view_tx: watch::Sender<Arc<View>>,
    store_tx: watch::Sender<Arc<Store>>,
    /// Where the stamp of the write being handled goes.
    put_reply: Option<oneshot::Sender<Stamp>>,
    port_checks: super::port_check::PortChecks,
}

impl CoreTask {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        self.drain();
        loop {
            let next_timer = self.timers.next_due();
            tokio::select! {
                () = shutdown.cancelled() => return,
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => return,
                },
                () = sleep_until(next_timer) => self.fire_timers(),
            }
        }
    }

    fn command(&mut self, command: Command) {
        let now = now_ms();
        match command {
            Command::Core(input) => self.core.handle(input, now),
            Command::Put { key, value, reply } => {
                self.put_reply = Some(reply);
                self.core.handle(Input::Put { key, value }, now);
            }
            Command::Summary(reply) => {
                let _ = reply.send(self.core.summary());
            }
            Command::Differ {
                summary,
                peer,
                reply,
            } => {
                let _ = reply.send(self.core.differ(&summary, peer));
            }
            Command::Exchange {
                digest,
                buckets,
                peer,
                reply,
            } => {
                let _ = reply.send(self.core.exchange(&digest, &buckets, peer));
            }
            Command::Missing {
                digest,
                buckets,
                reply,
            } => {
                let _ = reply.send(self.core.missing(&digest, &buckets));
            }
            Command::Leave(reply) => {
                self.core.handle(Input::Leave, now);
                self.drain();
                let _ = reply.send(());
            }
        }
        self.drain();
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some((_, timer)) = self.timers.pop_due(now) {
            self.core.handle(Input::Timer(timer), now_ms());
            self.drain();
        }
    }

    /// Carries out everything the core asked for.
    fn drain(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Send { to, packet } => self.links.send(to, packet),
                Output::Timer { after, timer } => self.timers.push(Instant::now() + after, timer),
                Output::Exchange(peer) => self.exchange(peer),
                Output::Push { to, deltas } => self.push(to, deltas),
                Output::Written(stamp) => {
                    if let Some(reply) = self.put_reply.take() {
                        let _ = reply.send(stamp);
                    }
                }
                Output::View(view) => {
                    self.view_tx.send_replace(Arc::new(view));
                }
                Output::StoreChanged => {
                    self.store_tx
                        .send_replace(Arc::new(self.core.store().clone()));
                }
                Output::Revoked(nodes) => self.links.revoke(&nodes),
                Output::CheckPort(peer) => self.port_checks.check(peer),
            }
        }
        self.links.metrics.record(&self.core.stats());
    }

    /// Runs one exchange with `peer` as the initiator, and tells the core when it ends.
    fn exchange(&self, peer: PeerId) {
        let links = self.links.clone();
        tokio::spawn(async move {
            let result = match links.connection(peer).await {
                Some(conn) => sync::initiate(&links.sync_context(), &conn).await,
                None => Err(sync::unreachable(peer)),
            };
            if let Err(e) = result {
                tracing::debug!(peer = ?peer, error = %e, "anti-entropy");
            }
            let _ = links
                .core
                .send(Command::Core(Input::ExchangeEnded(peer)))
                .await;
        });
    }

    /// Pushes a write to `to`, and tells the core when the push ends.
    fn push(&self, to: PeerId, deltas: Vec<crate::store::Delta>) {
        let links = self.links.clone();
        tokio::spawn(async move {
            let result = match links.connection(to).await {
                Some(conn) => sync::push(&links.sync_context(), &conn, deltas).await,
                None => Err(sync::unreachable(to)),
            };
            if let Err(e) = result {
                tracing::debug!(peer = ?to, error = %e, "push");
            }
            let _ = links.core.send(Command::Core(Input::PushEnded)).await;
        });
    }
}

/// Waits until `due`; at once if it has passed (a timer armed with no delay runs on the
/// next turn, not on the runtime's next timer tick); for ever without one.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) if due <= Instant::now() => {}
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// While this node is alone, asks the seeds who they are and hands the core each that
/// answers (it announces itself and fills its store from it), backing off from 1 s to
/// 10 s.
async fn seed(links: Arc<Links>, seeds: Vec<SocketAddr>) {
    let mut view = links.view.clone();
    let mut backoff = Duration::from_secs(1);
    loop {
        let alone = view.borrow().connection != Connection::Active;
        if alone && !seeds.is_empty() {
            for addr in &seeds {
                match join::hello(&links.endpoint, &links.creds, *addr).await {
                    Ok(peer) if peer.node != view.borrow().me.node => {
                        let _ = links.core.send(Command::Core(Input::Announce(peer))).await;
                    }
                    Ok(_) => {}
                    Err(_) if links.shutdown.is_cancelled() => return,
                    Err(e) => tracing::warn!(seed = %addr, error = %e, "seed did not answer"),
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        } else {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            () = links.shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
            _ = view.changed() => {}
        }
    }
}
