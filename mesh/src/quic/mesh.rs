//! The running mesh: one task owns the membership core and the store, fed a fixed set of
//! inputs over a bounded channel; its timers come from one min-heap in the same task; all
//! IO happens in the transport tasks around it.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foca::Timer;
use rand::RngExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::credentials::Credentials;
use super::join;
use super::join_secret::{self, JOIN_SECRET_KEY, SealError};
use super::keys::{KeyBook, NodeSigner};
use super::links::{Links, MeshMetrics, transport_config};
use super::sync;
use super::tls::TlsError;
use crate::id::{NodeId, PeerId};
use crate::membership::{Connection, MemberRecord, Membership, Output};
use crate::profile::Profile;
use crate::store::{Buckets, Delta, Digest, Freshness, Stamp, Store, Summary};
use crate::token::JoinToken;
pub use crate::trust::CLOCK_SKEW_MAX_MS_DEFAULT;
use crate::trust::{CertCheck, Gate, Tally, Verifier, cert_key, cert_owner};

/// Inputs of the mesh task.
pub(crate) enum Input {
    /// A gossip packet whose sender was checked against its connection.
    Packet(bytes::Bytes),
    /// A local write to the store.
    Put {
        key: String,
        value: Option<Vec<u8>>,
        reply: oneshot::Sender<Stamp>,
    },
    /// Deltas from anti-entropy or a push.
    Merge(Vec<Delta>),
    /// The certificate a peer connected with.
    PeerCert { node: NodeId, cert_der: Vec<u8> },
    /// This node's bucket summary and freshness, to start an exchange.
    Summary(oneshot::Sender<(Summary, Freshness)>),
    /// The buckets where a peer's `summary` differs, this node's digest of them and its
    /// freshness, after meeting the peer's.
    Differ {
        summary: Summary,
        peer: Freshness,
        reply: oneshot::Sender<(Buckets, Digest, Freshness)>,
    },
    /// What a peer with `digest` of `buckets` lacks, and this node's digest of them, after
    /// meeting the peer's freshness.
    Exchange {
        digest: Digest,
        buckets: Buckets,
        peer: Freshness,
        reply: oneshot::Sender<(Vec<Delta>, Digest)>,
    },
    /// An exchange with a peer of this freshness completed.
    Synced(Freshness),
    /// What a peer with `digest` of `buckets` lacks.
    Missing {
        digest: Digest,
        buckets: Buckets,
        reply: oneshot::Sender<Vec<Delta>>,
    },
    /// Announce this node to a seed.
    Announce(PeerId),
    /// Leave the cluster.
    Leave(oneshot::Sender<()>),
}

/// Inputs queued for the mesh task at most; packets past it are dropped like UDP's.
const INPUT_QUEUE_MAX: usize = 4096;
/// How often member states are re-derived from foca.
const SYNC_PERIOD: Duration = Duration::from_secs(1);
/// Deltas from other members checked per turn of the mesh task: a signature check costs
/// about 60 us, so a turn stays under about 15 ms however big an anti-entropy batch is.
const ADMIT_CHUNK: usize = 256;
/// Deltas waiting for their turn at most; past it new ones are dropped (and counted as
/// dropped unverified): anti-entropy offers them again. Exchanges wait while it is over
/// half full, so a big state arrives paced rather than dropped.
pub(crate) const BACKLOG_MAX: usize = 65_536;
/// Bytes of values waiting in the backlog at most, likewise.
const BACKLOG_MAX_BYTES: usize = 256 * 1024 * 1024;
/// How often tombstones are collected.
const COLLECT_PERIOD: Duration = Duration::from_secs(60);
/// A member that has run this long, completing exchanges, without meeting a fresh member
/// counts as fresh: the whole cluster was down (a member that was away alone meets a fresh
/// one within seconds, and rebases).
const STALE_WAIT: Duration = Duration::from_secs(600);
/// Pushes of big writes in flight at most; past it a write waits for anti-entropy.
const PUSHES_MAX: usize = 64;
/// A single write (key and value) at most: it must travel in one frame, with room to
/// spare, to every member.
pub const WRITE_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Refused store writes are logged at most this often (they are counted every time).
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(60);

/// What the mesh knows of the cluster, republished on every change.
#[derive(Debug, Clone)]
pub struct View {
    /// This node's identity.
    pub me: PeerId,
    /// Whether it is in a cluster.
    pub connection: Connection,
    /// The timing profile.
    pub profile: Profile,
    /// Every member ever seen, self included, in node id order.
    pub members: Vec<MemberRecord>,
}

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

/// Binds the mesh's QUIC endpoint, client-only until [`Mesh::start`] makes it a server.
pub fn bind(addr: SocketAddr) -> Result<quinn::Endpoint, MeshError> {
    quinn::Endpoint::client(addr).map_err(|source| MeshError::Bind { addr, source })
}

/// A handle on the running mesh; cheap to clone.
#[derive(Clone)]
pub struct Mesh {
    core: mpsc::Sender<Input>,
    view: watch::Receiver<Arc<View>>,
    store: watch::Receiver<Arc<Store>>,
    metrics: Arc<MeshMetrics>,
    endpoint: quinn::Endpoint,
    shutdown: CancellationToken,
    /// For the join token in force and its rotation.
    creds: Arc<Credentials>,
    /// Which members answered when the set of members seen down last changed.
    reachability: watch::Receiver<Arc<super::reach::Reachability>>,
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

        let mut membership = Membership::new(
            config.identity,
            config.profile,
            rand::rng().random(),
            now_ms(),
        );
        membership.set_clock_skew_max_ms(config.clock_skew_max_ms);
        let signer = NodeSigner::new(&creds.node_key_pem)?;
        let mut book = KeyBook::new(&creds.ca_der);
        let mut store = config.store;
        prepare_store(&mut store, &creds, &signer, &mut book);
        let (view_tx, view) = watch::channel(Arc::new(view_of(&membership)));
        let (store_tx, store_rx) = watch::channel(Arc::new(store.clone()));
        let (core, inputs) = mpsc::channel(INPUT_QUEUE_MAX);
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
            membership,
            store,
            gate: Gate::new(config.clock_skew_max_ms),
            book,
            signer,
            refusal_logged: None,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            started: Instant::now(),
            exchanged: false,
            pushes: Arc::new(tokio::sync::Semaphore::new(PUSHES_MAX)),
            initiating: Arc::new(tokio::sync::Semaphore::new(1)),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            links: links.clone(),
            view_tx,
            store_tx,
            revoked: (BTreeSet::new(), None),
        };
        tokio::spawn(task.run(inputs, config.sync_period, shutdown.clone()));
        tokio::spawn(links.clone().accept());
        tokio::spawn(seed(links, config.seeds));
        let (reach_tx, reachability) = watch::channel(Arc::default());
        tokio::spawn(super::reach::run(
            endpoint.clone(),
            (*mesh_creds).clone(),
            view.clone(),
            reach_tx,
            shutdown.clone(),
        ));
        Ok(Self {
            core,
            view,
            store: store_rx,
            metrics,
            endpoint,
            shutdown,
            creds: mesh_creds,
            reachability,
        })
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
        let input = Input::Put {
            key: key.to_owned(),
            value,
            reply,
        };
        self.core.send(input).await.map_err(|_| Stopped)?;
        Ok(rx.await.map_err(|_| Stopped)?)
    }

    /// Leaves the cluster, lets the goodbye go out, and stops the transport (at most ~1 s).
    pub async fn leave(&self) {
        let (reply, rx) = oneshot::channel();
        if self.core.send(Input::Leave(reply)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_millis(500), rx).await;
            // The goodbye is a handful of datagrams; give quinn a moment to send them.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        self.shutdown.cancel();
        self.endpoint.close(0u32.into(), b"left");
        let _ = tokio::time::timeout(Duration::from_millis(300), self.endpoint.wait_idle()).await;
    }
}

/// Readies a store read from the data dir: entries from a knit that did not sign are
/// signed or dropped ([`Store::adopt_unsigned`]), the certificates it holds are learnt,
/// and this node's own certificate is published as its record.
fn prepare_store(store: &mut Store, creds: &Credentials, signer: &NodeSigner, book: &mut KeyBook) {
    if store.has_unsigned() {
        let (signed, dropped) = store.adopt_unsigned(signer);
        tracing::info!(
            signed,
            dropped,
            "state from an older knit: signed this node's entries, dropped other nodes' records (their owners publish them again)"
        );
    }
    let me = *store.me();
    if book.learn(&me, &creds.node_cert_der) == CertCheck::Invalid {
        tracing::error!("this node's certificate does not verify under the cluster CA");
    }
    let certs: Vec<(NodeId, Vec<u8>)> = store
        .scan("owned/")
        .filter_map(|(key, value, _)| Some((cert_owner(key)?, value.to_vec())))
        .collect();
    for (node, cert) in certs {
        book.learn(&node, &cert);
    }
    let key = cert_key(&me);
    if store.get(&key) != Some(&creds.node_cert_der[..]) {
        store.put(&key, Some(creds.node_cert_der.clone()), now_ms(), signer);
    }
}

fn view_of(membership: &Membership) -> View {
    View {
        me: *membership.identity(),
        connection: membership.connection(),
        profile: membership.profile(),
        members: membership.members().copied().collect(),
    }
}

struct TimerEntry {
    due: Instant,
    seq: u64,
    timer: Timer<PeerId>,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerEntry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

struct CoreTask {
    membership: Membership,
    store: Store,
    /// Checks every delta from other members before the store takes it.
    gate: Gate,
    /// Other nodes' public keys, from certificates checked under the CA.
    book: KeyBook,
    /// Signs this node's writes.
    signer: NodeSigner,
    /// When a refused write was last logged.
    refusal_logged: Option<Instant>,
    /// Deltas from anti-entropy and pushes waiting for the gate, certificate records
    /// first; [`ADMIT_CHUNK`] of them per turn.
    backlog: VecDeque<Delta>,
    /// Bytes of values in the backlog.
    backlog_bytes: usize,
    /// When this task started, and whether an exchange has completed since.
    started: Instant,
    exchanged: bool,
    /// Pushes in flight.
    pushes: Arc<tokio::sync::Semaphore>,
    /// One anti-entropy exchange started by this node at a time: a big one (a new member
    /// filled) takes longer than the period, and overlapping ones would each carry it all.
    initiating: Arc<tokio::sync::Semaphore>,
    /// foca's timers, earliest first; equal deadlines fire in submission order.
    timers: BinaryHeap<Reverse<TimerEntry>>,
    timer_seq: u64,
    links: Arc<Links>,
    view_tx: watch::Sender<Arc<View>>,
    store_tx: watch::Sender<Arc<Store>>,
    /// The nodes removed so far, and the store version they were read at.
    revoked: (BTreeSet<NodeId>, Option<u64>),
}

impl CoreTask {
    async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        sync_period: Duration,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(SYNC_PERIOD);
        let mut anti_entropy = tokio::time::interval(sync_period);
        let mut collect = tokio::time::interval(COLLECT_PERIOD);
        collect.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        anti_entropy.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let before = self.versions();
        self.apply_revocations();
        self.publish(before);
        loop {
            let before = self.versions();
            let next_timer = self.timers.peek().map(|Reverse(t)| t.due);
            tokio::select! {
                () = shutdown.cancelled() => return,
                input = inputs.recv() => match input {
                    Some(input) => self.handle(input),
                    None => return,
                },
                () = sleep_until(next_timer) => self.fire_timers(),
                _ = tick.tick() => {
                    if let Err(e) = self.membership.sync(now_ms()) {
                        tracing::warn!(error = %e, "membership sync");
                    }
                }
                _ = anti_entropy.tick() => self.start_anti_entropy(),
                _ = collect.tick() => self.collect(),
                () = std::future::ready(()), if !self.backlog.is_empty() => {
                    let chunk = self.backlog.len().min(ADMIT_CHUNK);
                    let deltas: Vec<Delta> = self.backlog.drain(..chunk).collect();
                    self.backlog_bytes = self
                        .backlog_bytes
                        .saturating_sub(deltas.iter().map(value_bytes).sum());
                    self.note_backlog();
                    self.admit(deltas);
                }
            }
            self.drain();
            self.apply_revocations();
            self.publish(before);
        }
    }

    /// Cuts off the nodes the store says were removed, once per store change.
    fn apply_revocations(&mut self) {
        let version = self.store.version();
        if self.revoked.1 == Some(version) {
            return;
        }
        self.revoked.1 = Some(version);
        let now = self.store.revoked();
        if now == self.revoked.0 {
            return;
        }
        let me = self.membership.identity().node;
        if now.contains(&me) && !self.revoked.0.contains(&me) {
            tracing::error!(
                "this node was removed from the cluster (knit node rm): the other members refuse it; to add this host again, stop knit, remove its data dir, and join with a token"
            );
        }
        for node in now.difference(&self.revoked.0) {
            tracing::warn!(node = %node.short(), "node removed from the cluster");
        }
        self.membership.revoke(&now);
        self.links.revoke(&now);
        self.revoked.0 = now;
    }

    /// What tells whether the view or the store changed.
    fn versions(&self) -> (u64, Connection, PeerId, u64) {
        (
            self.membership.version(),
            self.membership.connection(),
            *self.membership.identity(),
            self.store.version(),
        )
    }

    /// Republishes the view and the store if they changed since `before`.
    fn publish(&self, before: (u64, Connection, PeerId, u64)) {
        let now = self.versions();
        if (now.0, now.1, now.2) != (before.0, before.1, before.2) {
            self.view_tx
                .send_replace(Arc::new(view_of(&self.membership)));
        }
        if now.3 != before.3 {
            self.store_tx.send_replace(Arc::new(self.store.clone()));
        }
    }

    fn handle(&mut self, input: Input) {
        let now = now_ms();
        match input {
            Input::Packet(packet) => {
                if let Err(e) = self.membership.handle_packet(&packet, now) {
                    tracing::trace!(error = %e, "packet refused");
                }
            }
            Input::Put { key, value, reply } => {
                let delta = self.store.put(&key, value, now, &self.signer);
                let _ = reply.send(delta.stamp);
                if !self.membership.spread(&delta) {
                    self.push_to_all(delta);
                }
            }
            Input::Merge(deltas) => self.queue(deltas),
            Input::PeerCert { node, cert_der } => {
                if self.book.learn(&node, &cert_der) == CertCheck::New && self.gate.pending() > 0 {
                    let tally = self.gate.retry(&mut self.store, &mut self.book, now);
                    self.count(&tally);
                }
            }
            Input::Summary(reply) => {
                let _ = reply.send((self.store.summary(), self.store.freshness()));
            }
            Input::Differ {
                summary,
                peer,
                reply,
            } => {
                self.meet(peer);
                let buckets = self.store.differing(&summary);
                let digest = if buckets.is_empty() {
                    Vec::new()
                } else {
                    self.store.digest(Some(&buckets))
                };
                let _ = reply.send((buckets, digest, self.store.freshness()));
            }
            Input::Exchange {
                digest,
                buckets,
                peer,
                reply,
            } => {
                self.meet(peer);
                let missing = self.store.missing_for(&digest, Some(&buckets));
                let _ = reply.send((missing, self.store.digest(Some(&buckets))));
            }
            Input::Missing {
                digest,
                buckets,
                reply,
            } => {
                let _ = reply.send(self.store.missing_for(&digest, Some(&buckets)));
            }
            Input::Synced(peer) => {
                self.exchanged = true;
                self.store.synced_with(peer, now);
            }
            Input::Announce(seed) => {
                if let Err(e) = self.membership.announce(seed, now) {
                    tracing::warn!(error = %e, "announce");
                }
            }
            Input::Leave(reply) => {
                if let Err(e) = self.membership.leave(now) {
                    tracing::warn!(error = %e, "leave");
                }
                self.drain();
                let _ = reply.send(());
            }
        }
    }

    /// Before an exchange: a peer whose horizon is past this store's freshness collected
    /// tombstones this node may never have seen; the store rebases (see the store's `gc`).
    fn meet(&mut self, peer: Freshness) {
        if let Some(dropped) = self.store.meet(peer) {
            tracing::warn!(
                dropped,
                "this node was away longer than the tombstone TTL: dropped its older entries, to take them again from the cluster (deleted ones stay deleted)"
            );
        }
    }

    /// Collects tombstones older than the TTL, if the store is fresh; a first member that
    /// has never known another is fresh by itself.
    fn collect(&mut self) {
        let now = now_ms();
        let me = self.membership.identity().node;
        let lone =
            self.membership.members().all(|m| m.peer.node == me) && !self.store.knows_other_nodes();
        if lone || (self.exchanged && self.started.elapsed() >= STALE_WAIT) {
            self.store.mark_synced(now);
        }
        let dropped = self.store.collect_tombstones(now);
        if dropped > 0 {
            tracing::debug!(dropped, "collected tombstones");
        }
    }

    fn note_backlog(&self) {
        self.links.metrics.backlog_deltas.store(
            self.backlog.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Queues deltas for the gate, certificate records first.
    fn queue(&mut self, deltas: Vec<Delta>) {
        let mut dropped = 0;
        for delta in deltas {
            let bytes = value_bytes(&delta);
            if self.backlog.len() >= BACKLOG_MAX || self.backlog_bytes + bytes > BACKLOG_MAX_BYTES {
                dropped += 1;
                continue;
            }
            self.backlog_bytes += bytes;
            if cert_owner(&delta.key).is_some() {
                self.backlog.push_front(delta);
            } else {
                self.backlog.push_back(delta);
            }
        }
        self.note_backlog();
        if dropped > 0 {
            self.links
                .metrics
                .deltas_dropped_unverified
                .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Passes deltas from other members through the gate into the store.
    fn admit(&mut self, deltas: Vec<Delta>) {
        let tally = self
            .gate
            .admit(&mut self.store, &mut self.book, deltas, now_ms());
        self.count(&tally);
    }

    fn count(&mut self, tally: &Tally) {
        use std::sync::atomic::Ordering::Relaxed;
        let m = &self.links.metrics;
        m.deltas_applied.fetch_add(tally.applied, Relaxed);
        m.apply_lag_ms_sum.fetch_add(tally.lag_ms_sum, Relaxed);
        m.deltas_refused_signature
            .fetch_add(tally.refused_signature, Relaxed);
        m.deltas_refused_future
            .fetch_add(tally.refused_future, Relaxed);
        m.deltas_refused_collected
            .fetch_add(tally.refused_collected, Relaxed);
        m.deltas_parked.fetch_add(tally.parked, Relaxed);
        m.deltas_dropped_unverified
            .fetch_add(tally.dropped_unverified, Relaxed);
        m.deltas_pending.store(self.gate.pending() as u64, Relaxed);
        let refused = tally.refused_signature + tally.refused_future;
        if refused > 0
            && self
                .refusal_logged
                .is_none_or(|t| t.elapsed() >= REFUSAL_LOG_PERIOD)
        {
            self.refusal_logged = Some(Instant::now());
            tracing::warn!(
                forged = tally.refused_signature,
                future = tally.refused_future,
                "refused store writes from other members (forged, or stamped too far ahead: check that member's clock); counted in the mesh metrics, logged at most once a minute"
            );
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while self.timers.peek().is_some_and(|Reverse(t)| t.due <= now) {
            let Some(Reverse(entry)) = self.timers.pop() else {
                break;
            };
            if let Err(e) = self.membership.handle_timer(entry.timer, now_ms()) {
                tracing::debug!(error = %e, "timer");
            }
            self.drain();
        }
    }

    /// Sends a write too big for a rumor straight to every active member, so it spreads as
    /// fast as a small one; anti-entropy repairs any push that is lost.
    fn push_to_all(&self, delta: Delta) {
        let me = self.membership.identity().node;
        for member in self
            .membership
            .members()
            .filter(|m| m.peer.node != me && m.state.is_active())
        {
            let Ok(permit) = self.pushes.clone().try_acquire_owned() else {
                tracing::debug!("too many pushes in flight: anti-entropy carries this write");
                return;
            };
            let (links, peer, delta) = (self.links.clone(), member.peer, delta.clone());
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = sync::push(&links, peer, vec![delta]).await {
                    tracing::debug!(peer = ?peer, error = %e, "push");
                }
            });
        }
    }

    fn start_anti_entropy(&mut self) {
        let me = self.membership.identity().node;
        let candidates: Vec<PeerId> = self
            .membership
            .members()
            .filter(|m| m.peer.node != me && m.state.is_active())
            .map(|m| m.peer)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let Ok(permit) = self.initiating.clone().try_acquire_owned() else {
            return;
        };
        let peer = candidates[rand::rng().random_range(0..candidates.len())];
        let links = self.links.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = sync::initiate(&links, peer).await {
                tracing::debug!(peer = ?peer, error = %e, "anti-entropy");
            }
        });
    }

    /// Carries out everything the core asked for.
    fn drain(&mut self) {
        while let Some(output) = self.membership.poll_output() {
            match output {
                Output::Send { to, packet } => self.links.send(to, packet),
                Output::Timer { after, timer } => {
                    self.timer_seq += 1;
                    self.timers.push(Reverse(TimerEntry {
                        due: Instant::now() + after,
                        seq: self.timer_seq,
                        timer,
                    }));
                }
                Output::Changed(record) => {
                    tracing::info!(node = %record.peer.node.short(), addr = %record.peer.addr,
                        epoch = record.peer.epoch, state = ?record.state, "member");
                }
                Output::Delta(delta) => self.admit(vec![delta]),
                Output::Renewed(peer) => {
                    tracing::warn!(epoch = peer.epoch, "rejoined after being declared down")
                }
            }
        }
    }
}

fn value_bytes(delta: &Delta) -> usize {
    delta.key.len() + delta.value.as_ref().map_or(0, Vec::len)
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// While this node is alone, asks the seeds who they are and announces itself to them,
/// backing off from 1 s to 10 s; then pulls the store from the seed that answered.
async fn seed(links: Arc<Links>, seeds: Vec<SocketAddr>) {
    let mut view = links.view.clone();
    let mut backoff = Duration::from_secs(1);
    loop {
        let alone = view.borrow().connection != Connection::Active;
        if alone && !seeds.is_empty() {
            for addr in &seeds {
                match join::hello(&links.endpoint, &links.creds, *addr).await {
                    Ok(peer) if peer.node != view.borrow().me.node => {
                        let _ = links.core.send(Input::Announce(peer)).await;
                        let links = links.clone();
                        tokio::spawn(async move {
                            // Let the announce land first, so the seed knows this node.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            if let Err(e) = sync::initiate(&links, peer).await {
                                tracing::debug!(error = %e, "first anti-entropy with the seed");
                            }
                        });
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
