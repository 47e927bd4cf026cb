//! Every task the peer spawns, and the one way they all stop.
//!
//! A peer runs long-lived tasks (the agent, the API servers, the ingress, the persister) and
//! short ones (an operation on a replica, a health probe, one API or ingress connection).
//! Each is spawned through [`Tasks::spawn`] with a name, watches the same shutdown signal,
//! and is counted until it returns. Stopping is one call, [`Tasks::stop`]: it fires the
//! signal, then waits for the count to reach zero, up to a deadline, and names the tasks
//! that did not end in time. There are no fixed sleeps in the way out: a peer with nothing in
//! flight stops as soon as its tasks have returned.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The peer's tasks: a tracker, the shutdown signal they watch, and how many of each name
/// are running (for the names of those that outlive the deadline).
#[derive(Clone, Default)]
pub(crate) struct Tasks {
    tracker: TaskTracker,
    shutdown: CancellationToken,
    running: Arc<Mutex<BTreeMap<&'static str, usize>>>,
}

/// Decrements a name's count when its task ends, returns, panics or is aborted.
struct Running {
    name: &'static str,
    running: Arc<Mutex<BTreeMap<&'static str, usize>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = running.get_mut(self.name) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                running.remove(self.name);
            }
        }
    }
}

impl Tasks {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The signal every task watches; fired once, by [`Tasks::stop`].
    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Spawns `task`, counted under `name` until it ends. The task must watch
    /// [`Tasks::shutdown`] (or end by itself soon) for the peer to stop in time.
    pub(crate) fn spawn<F>(&self, name: &'static str, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        *self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name)
            .or_default() += 1;
        let guard = Running {
            name,
            running: self.running.clone(),
        };
        self.tracker.spawn(async move {
            let _guard = guard;
            task.await;
        })
    }

    /// The tasks running now, by name.
    pub(crate) fn running(&self) -> BTreeMap<&'static str, usize> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fires the shutdown signal and waits, up to `within`, for every task to end. Returns
    /// the tasks still running at the deadline (empty when all ended); they are dropped
    /// with the runtime.
    pub(crate) async fn stop(&self, within: Duration) -> BTreeMap<&'static str, usize> {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(within, self.tracker.wait())
            .await
            .is_ok()
        {
            return BTreeMap::new();
        }
        self.running()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_waits_for_tasks_that_watch_the_signal() {
        let tasks = Tasks::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shutdown = tasks.shutdown().clone();
        tasks.spawn("saver", async move {
            shutdown.cancelled().await;
            // Work done after the signal is waited for.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx.send(());
        });
        assert_eq!(tasks.running().get("saver"), Some(&1));
        let late = tasks.stop(Duration::from_secs(10)).await;
        assert!(late.is_empty(), "{late:?}");
        assert!(rx.await.is_ok(), "the task finished its work");
        assert!(tasks.running().is_empty());
    }

    #[tokio::test]
    async fn stop_names_what_outlives_the_deadline() {
        let tasks = Tasks::new();
        tasks.spawn("stubborn", std::future::pending());
        tasks.spawn("quick", async {});
        let started = std::time::Instant::now();
        let late = tasks.stop(Duration::from_millis(50)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(late, BTreeMap::from([("stubborn", 1)]));
    }

    #[tokio::test]
    async fn an_aborted_task_is_no_longer_counted() {
        let tasks = Tasks::new();
        let handle = tasks.spawn("listener", std::future::pending());
        handle.abort();
        let _ = handle.await;
        assert!(tasks.running().is_empty());
        assert!(tasks.stop(Duration::from_secs(1)).await.is_empty());
    }
}
