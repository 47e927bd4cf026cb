//! Docker's event stream, so that listing a node's containers does not inspect every one of
//! them every round.
//!
//! A task follows the engine's events for the containers labelled with this node and marks
//! each container it hears about as dirty, and wakes the agent: a container that dies or
//! turns unhealthy is acted on at once instead of at the next round. [`DockerDriver::list`]
//! then inspects the dirty containers only, and lists and inspects everything again every
//! [`RESYNC`], and on every call while the stream is down, so that an event missed while
//! the stream was (re)connecting costs at most one [`RESYNC`] of delay, never a wrong state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::super::{Replica, labels};
use crate::tasks::Tasks;

/// How often a full list runs even while the stream is up.
pub(crate) const RESYNC: Duration = Duration::from_secs(5);
/// The pause before the stream is opened again after it failed.
const RECONNECT: Duration = Duration::from_secs(1);
/// The container events that can change what a list shows. Not `exec_*`: a Docker health
/// check runs an exec every interval, three events each, and a round for each would cost
/// more than the polling the stream replaces.
const STATE_EVENTS: [&str; 13] = [
    "create",
    "start",
    "restart",
    "die",
    "kill",
    "oom",
    "stop",
    "destroy",
    "pause",
    "unpause",
    "update",
    "rename",
    "health_status",
];

/// What the stream keeps between full lists.
#[derive(Default)]
pub(super) struct Cache {
    /// The node whose containers it holds, and the task following its events.
    node: Option<String>,
    task: Option<tokio::task::AbortHandle>,
    /// The stream is open (as far as the task knows).
    up: bool,
    /// This node's containers as last inspected, by id.
    pub(super) replicas: BTreeMap<String, Replica>,
    /// Containers with events since their last inspection.
    dirty: BTreeSet<String>,
    /// When the last full list started, if the stream has stayed up since.
    listed_at: Option<Instant>,
}

/// The event stream's side of the driver.
pub(crate) struct Watch {
    pub(super) cache: Arc<Mutex<Cache>>,
    /// Woken on every event.
    pub(super) changed: Arc<Notify>,
    /// Where the follower runs; it ends when the peer stops.
    pub(super) tasks: Tasks,
}

/// What [`super::DockerDriver::list`] has to do now.
pub(super) enum Due {
    /// List and inspect everything.
    Full,
    /// Inspect these (and return the cache).
    Dirty(Vec<String>),
}

impl Watch {
    /// A watch whose follower runs among `tasks`.
    pub(super) fn new(tasks: &Tasks) -> Self {
        Self {
            cache: Arc::default(),
            changed: Arc::default(),
            tasks: tasks.clone(),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows `node`'s events (once per node) and says what listing it takes now.
    pub(super) fn due(&self, docker: &Docker, node: &str) -> Due {
        let mut cache = self.lock();
        if cache.node.as_deref() != Some(node) {
            if let Some(task) = cache.task.take() {
                task.abort();
            }
            *cache = Cache {
                node: Some(node.to_owned()),
                ..Cache::default()
            };
            let followed = follow(
                docker.clone(),
                node.to_owned(),
                self.cache.clone(),
                self.changed.clone(),
            );
            let shutdown = self.tasks.shutdown().clone();
            let task = self.tasks.spawn("docker event stream", async move {
                tokio::select! {
                    () = followed => {}
                    () = shutdown.cancelled() => {}
                }
            });
            cache.task = Some(task.abort_handle());
        }
        let fresh = cache.up && cache.listed_at.is_some_and(|t| t.elapsed() < RESYNC);
        if fresh {
            Due::Dirty(std::mem::take(&mut cache.dirty).into_iter().collect())
        } else {
            Due::Full
        }
    }

    /// Records a full list that started at `started`.
    pub(super) fn listed(&self, started: Instant, replicas: &[Replica]) {
        let mut cache = self.lock();
        cache.replicas = replicas
            .iter()
            .map(|r| (r.runtime_id.clone(), r.clone()))
            .collect();
        // Events that came during the list are in `dirty` still and are inspected next time.
        cache.listed_at = cache.up.then_some(started);
    }

    /// Records one container as just inspected (`None`: it is gone).
    pub(super) fn inspected(&self, id: &str, replica: Option<Replica>) {
        let mut cache = self.lock();
        match replica {
            Some(r) => cache.replicas.insert(id.to_owned(), r),
            None => cache.replicas.remove(id),
        };
    }

    /// Records a container this driver just started for `node`.
    pub(super) fn started(&self, node: &str, replica: &Replica) {
        let mut cache = self.lock();
        if cache.node.as_deref() == Some(node) {
            cache
                .replicas
                .insert(replica.runtime_id.clone(), replica.clone());
        }
    }

    /// Marks a container for inspection at the next list (after a failed inspect, say).
    pub(super) fn mark(&self, id: &str) {
        self.lock().dirty.insert(id.to_owned());
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(task) = self.lock().task.take() {
            task.abort();
        }
    }
}

/// Follows the events of `node`'s containers until aborted, reopening the stream after
/// [`RECONNECT`] when it fails or ends.
async fn follow(docker: Docker, node: String, cache: Arc<Mutex<Cache>>, changed: Arc<Notify>) {
    let set_up = |up: bool| {
        let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.up = up;
        if !up {
            cache.listed_at = None;
        }
    };
    loop {
        let filters = std::collections::HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("label".to_owned(), vec![format!("{}={node}", labels::NODE)]),
            (
                "event".to_owned(),
                STATE_EVENTS.iter().map(|e| (*e).to_owned()).collect(),
            ),
        ]);
        let options = EventsOptions {
            filters: Some(filters),
            ..EventsOptions::default()
        };
        let mut stream = docker.events(Some(options));
        set_up(true);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    // The engine filters already; one that does not would still send its
                    // health checks' execs.
                    let action = event.action.as_deref().unwrap_or_default();
                    if action.starts_with("exec_") {
                        continue;
                    }
                    if let Some(id) = event.actor.and_then(|a| a.id) {
                        cache
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .dirty
                            .insert(id);
                        changed.notify_one();
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "docker event stream failed; reopening it");
                    break;
                }
            }
        }
        set_up(false);
        tokio::time::sleep(RECONNECT).await;
    }
}
