//! `GET /v1/events`: what changes in the cluster, as server-sent events.
//!
//! One task, the observer, follows the mesh's view, store and reachability watches (as
//! the agent does), reads the cluster at most every [`BATCH`] after a change, keeps the
//! [`Tally`] of heals and restarts for `/metrics`, and, while a client listens, compares
//! the [`Picture`] with the last one. Each change goes to every client's queue without waiting: a client whose
//! queue is full (more than [`QUEUED_EVENTS_MAX`] behind) is dropped, never waited for.
//!
//! The stream, per client: `retry: 1000`; the whole picture, one event per entry; an
//! event `synced`; then each change as it happens; and a comment every [`KEEP_ALIVE`].
//! Events are named by kind (`node`, `replica`, `service`, `rollout`) and carry
//! `{"key": ..., "value": ...}`, `value` being the JSON `/v1/nodes` or `/v1/services`
//! serve for the entry (a replica: its report, with `node_id`, the slot as `service ps`
//! writes it, and `current`: whether it runs the service's current spec), or `null`
//! when the entry went away. A client that reconnects gets the whole picture again.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use knit_mesh::quic::Mesh;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::picture::{Change, Picture};
use super::tally::Tally;
use super::{ApiError, ApiState};
use crate::cluster::Snapshot;

/// Event streams served at once; past it a client is refused with 503.
const CLIENTS_MAX: usize = 32;
/// Events waiting to be sent to one client; a client further behind is dropped.
const QUEUED_EVENTS_MAX: usize = 256;
/// How long the observer lets changes gather before it reads the cluster.
const BATCH: Duration = Duration::from_millis(200);
/// How often an idle stream carries a comment, so that proxies and browsers keep it.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// What a browser waits before it reconnects a stream that ended (ms).
const RETRY_MS: u64 = 1000;

/// What a client's queue carries.
enum Item {
    Change(Change),
    KeepAlive,
}

/// The observer's shared state: the last picture and the clients' queues, under one lock,
/// so that a new client's picture and the changes queued to it after follow each other
/// exactly.
struct Clients {
    /// The picture the last changes were made from; `None` while no client listened (it
    /// is made again when one comes).
    picture: Option<Arc<Picture>>,
    queues: Vec<mpsc::Sender<Item>>,
}

impl Clients {
    /// Queues an item to every client; drops those whose queue is full or closed.
    fn send(&mut self, item: impl Fn() -> Item) {
        self.queues.retain(|queue| match queue.try_send(item()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::info!(
                    "an event stream client fell {QUEUED_EVENTS_MAX} events behind: dropped (it may reconnect)"
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }
}

/// The event streams of this peer, and what the observer counts.
pub(crate) struct Events {
    mesh: Mesh,
    clients: Mutex<Clients>,
    tally: Mutex<Tally>,
}

impl Events {
    /// Starts the observer of `mesh`; it stops, and every stream ends, when the peer stops.
    pub(crate) fn start(mesh: Mesh, tasks: &crate::tasks::Tasks) -> Arc<Self> {
        let events = Arc::new(Self {
            mesh,
            clients: Mutex::new(Clients {
                picture: None,
                queues: Vec::new(),
            }),
            tally: Mutex::new(Tally::default()),
        });
        tasks.spawn(
            "event observer",
            events.clone().observe(tasks.shutdown().clone()),
        );
        events
    }

    /// Runs `read` on the tally (for `/metrics`).
    pub(crate) fn with_tally<T>(&self, read: impl FnOnce(&Tally) -> T) -> T {
        read(&self.tally.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, Clients> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn observe(self: Arc<Self>, shutdown: CancellationToken) {
        let mut view = self.mesh.view();
        let mut store = self.mesh.store();
        let mut reach = self.mesh.reachability();
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let changed = tokio::select! {
                () = shutdown.cancelled() => break,
                _ = keep_alive.tick() => {
                    self.send(|| Item::KeepAlive);
                    continue;
                }
                changed = view.changed() => changed,
                changed = store.changed() => changed,
                changed = reach.changed() => changed,
            };
            if changed.is_err() {
                // The mesh stopped.
                break;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(BATCH) => {}
            }
            view.borrow_and_update();
            store.borrow_and_update();
            reach.borrow_and_update();
            self.read_cluster();
        }
        // Dropping the queues ends every stream, so that the API's shutdown need not wait.
        self.clients().queues.clear();
    }

    /// Reads the cluster once: tallies it and queues its changes to every client.
    fn read_cluster(&self) {
        let snapshot = Snapshot::of(&self.mesh);
        let placement = snapshot.placement();
        self.tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(&snapshot, &placement, crate::clock::now_ms());
        let mut clients = self.clients();
        clients.queues.retain(|q| !q.is_closed());
        if clients.queues.is_empty() {
            clients.picture = None;
            return;
        }
        let picture = Arc::new(Picture::of(&snapshot, &placement));
        let changes = clients
            .picture
            .as_ref()
            .map(|before| picture.changes_since(before))
            .unwrap_or_default();
        clients.picture = Some(picture);
        drop(clients);
        for change in changes {
            self.send(|| Item::Change(change.clone()));
        }
    }

    fn send(&self, item: impl Fn() -> Item) {
        self.clients().send(item);
    }

    /// A new client: the picture to start it with and its queue, or `None` at the cap.
    fn subscribe(&self) -> Option<(Arc<Picture>, mpsc::Receiver<Item>)> {
        let mut clients = self.clients();
        clients.queues.retain(|q| !q.is_closed());
        if clients.queues.len() >= CLIENTS_MAX {
            return None;
        }
        let picture = match &clients.picture {
            Some(picture) => picture.clone(),
            None => {
                let snapshot = Snapshot::of(&self.mesh);
                let picture = Arc::new(Picture::of(&snapshot, &snapshot.placement()));
                clients.picture = Some(picture.clone());
                picture
            }
        };
        let (tx, rx) = mpsc::channel(QUEUED_EVENTS_MAX);
        clients.queues.push(tx);
        Some((picture, rx))
    }
}

fn event(change: &Change) -> Event {
    Event::default()
        .event(change.kind.name())
        .data(change.data())
}

/// The cluster's changes as server-sent events: the whole picture first (one event per
/// node, replica, service and rollout), an event `synced`, then each change as it happens.
/// Events are named by kind and carry `{"key": ..., "value": ...}`, `value` being what
/// `/v1/nodes` or `/v1/services` serve for the entry, or `null` when it went away.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    responses(
        (status = 200, description = "A stream of server-sent events", content_type = "text/event-stream", body = String),
        (status = 503, description = "Too many streams are open", body = crate::wire::ErrorBody),
    )
)]
pub(super) async fn stream(
    State(state): State<ApiState>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Some((picture, queue)) = state.events.subscribe() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "this peer already serves {CLIENTS_MAX} event streams; close one (a dashboard tab?) or use another peer's API"
            ),
        ));
    };
    let start = stream::iter(
        std::iter::once(Event::default().retry(Duration::from_millis(RETRY_MS)))
            .chain(picture.all().map(|c| event(&c)).collect::<Vec<_>>())
            .chain(std::iter::once(Event::default().event("synced").data("{}")))
            .map(Ok),
    );
    let changes = stream::unfold(queue, |mut queue| async move {
        let item = queue.recv().await?;
        let event = match item {
            Item::Change(change) => event(&change),
            Item::KeepAlive => Event::default().comment(""),
        };
        Some((Ok(event), queue))
    });
    Ok(Sse::new(start.chain(changes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_that_falls_behind_is_dropped_and_others_are_not() {
        let (slow_tx, _slow_rx) = mpsc::channel(QUEUED_EVENTS_MAX);
        let (fast_tx, mut fast_rx) = mpsc::channel(QUEUED_EVENTS_MAX);
        let (gone_tx, gone_rx) = mpsc::channel(QUEUED_EVENTS_MAX);
        drop(gone_rx);
        let mut clients = Clients {
            picture: None,
            queues: vec![slow_tx, fast_tx, gone_tx],
        };
        for _ in 0..QUEUED_EVENTS_MAX {
            clients.send(|| Item::KeepAlive);
            assert!(fast_rx.try_recv().is_ok());
        }
        assert_eq!(
            clients.queues.len(),
            2,
            "a client that went away is dropped"
        );
        clients.send(|| Item::KeepAlive);
        assert_eq!(clients.queues.len(), 1, "the slow one is dropped");
        assert!(fast_rx.try_recv().is_ok(), "the fast one is not");
    }
}
