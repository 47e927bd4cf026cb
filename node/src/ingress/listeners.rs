//! A set of TCP listeners, one per key, each forwarding every connection it accepts to the
//! route its key has in a shared table ([`forward`]), within the ingress's caps: the
//! ingress keys them by published port, service discovery by a service's target port at
//! its virtual IP. The set is kept in line with what is wanted by [`Listeners::sync`].
//!
//! Sockets are bound with `SO_REUSEPORT`, so that a service address (`VIP:8080`) and the
//! ingress on every interface (`0.0.0.0:8080`) can listen on one port number at once: the
//! kernel hands a connection to the listener bound to its exact address first. A program
//! of another user on the port still makes the bind fail, and the error is reported.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::forward::{SILENCE, forward};
use super::{PortStats, Route};
use crate::tasks::Tasks;

/// Client connections open at once, per set of listeners.
const CONNECTIONS_MAX: usize = 4096;
/// Client connections open at once on one listener: one client holding thousands of idle
/// sockets on one port leaves room for every other port.
const PORT_CONNECTIONS_MAX: usize = 1024;
/// Connections waiting to be accepted, per listener.
const BACKLOG: u32 = 1024;
/// How long connections being forwarded may go on after the peer is told to stop.
const DRAIN: Duration = Duration::from_secs(1);

/// Counters per key, and the keys whose address could not be bound (with why).
#[derive(Debug)]
pub(crate) struct ListenerStats<K> {
    pub(crate) ports: Mutex<BTreeMap<K, Arc<PortStats>>>,
    pub(crate) bind_errors: Mutex<BTreeMap<K, String>>,
}

impl<K> Default for ListenerStats<K> {
    fn default() -> Self {
        Self {
            ports: Mutex::new(BTreeMap::new()),
            bind_errors: Mutex::new(BTreeMap::new()),
        }
    }
}

impl<K: Ord + Clone> ListenerStats<K> {
    fn port(&self, key: &K) -> Arc<PortStats> {
        self.ports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// Forgets the counters of keys no longer wanted (a removed service's).
    fn retain(&self, wanted: impl Fn(&K) -> bool) {
        self.ports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| wanted(k));
        self.bind_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| wanted(k));
    }
}

/// Binds `addr` for a listener (`SO_REUSEADDR` and `SO_REUSEPORT`: see the module doc).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The listeners of one kind, by key.
pub(crate) struct Listeners<K> {
    /// What the logs call them (`ingress`, `service address`).
    kind: &'static str,
    bound: BTreeMap<K, (SocketAddr, JoinHandle<()>)>,
    table: watch::Sender<Arc<BTreeMap<K, Route>>>,
    /// Connections open across the set.
    open: Arc<AtomicUsize>,
    stats: Arc<ListenerStats<K>>,
    tasks: Tasks,
}

impl<K> Listeners<K>
where
    K: Ord + Clone + Display + Send + Sync + 'static,
{
    pub(crate) fn new(kind: &'static str, stats: Arc<ListenerStats<K>>, tasks: Tasks) -> Self {
        Self {
            kind,
            bound: BTreeMap::new(),
            table: watch::channel(Arc::new(BTreeMap::new())).0,
            open: Arc::new(AtomicUsize::new(0)),
            stats,
            tasks,
        }
    }

    /// Listens on the address of every key of `wanted` (binding those not bound yet, or
    /// bound at another address, and retrying those that failed), closes the listeners of
    /// keys no longer wanted, and routes every connection from now on by `wanted`'s routes.
    pub(crate) fn sync(&mut self, wanted: BTreeMap<K, (SocketAddr, Route)>) {
        self.bound.retain(|key, (addr, task)| {
            let keep = wanted.get(key).is_some_and(|(a, _)| a == addr);
            if !keep {
                tracing::info!(kind = self.kind, %key, %addr, "closed");
                task.abort();
            }
            keep
        });
        self.stats.retain(|k| wanted.contains_key(k));
        for (key, (addr, _)) in &wanted {
            if self.bound.contains_key(key) {
                continue;
            }
            match bind(*addr) {
                Ok(listener) => {
                    tracing::info!(kind = self.kind, %key, %addr, "listening");
                    self.stats
                        .bind_errors
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(key);
                    let task = serve(
                        listener,
                        key.clone(),
                        *addr,
                        self.table.subscribe(),
                        self.stats.port(key),
                        self.open.clone(),
                        self.tasks.clone(),
                    );
                    let handle = self.tasks.spawn("forwarding listener", task);
                    self.bound.insert(key.clone(), (*addr, handle));
                }
                Err(e) => {
                    let mut errors = self
                        .stats
                        .bind_errors
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if errors.insert(key.clone(), e.to_string()).is_none() {
                        tracing::error!(kind = self.kind, %key, %addr, error = %e, "cannot listen");
                    }
                }
            }
        }
        let next: BTreeMap<K, Route> = wanted.into_iter().map(|(k, (_, r))| (k, r)).collect();
        self.table.send_if_modified(|t| {
            let changed = **t != next;
            if changed {
                *t = Arc::new(next);
            }
            changed
        });
    }

    /// Closes every listener (connections in flight go on, within the drain).
    pub(crate) fn close(&mut self) {
        for (_, task) in std::mem::take(&mut self.bound).into_values() {
            task.abort();
        }
    }
}

async fn serve<K>(
    listener: TcpListener,
    key: K,
    addr: SocketAddr,
    table: watch::Receiver<Arc<BTreeMap<K, Route>>>,
    stats: Arc<PortStats>,
    open: Arc<AtomicUsize>,
    tasks: Tasks,
) where
    K: Ord + Display + Send + Sync + 'static,
{
    let shutdown = tasks.shutdown().clone();
    let turn = Arc::new(AtomicUsize::new(0));
    let port_open = Arc::new(AtomicUsize::new(0));
    loop {
        let (client, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait for some to close.
                    tracing::debug!(%key, error = %e, "accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if open.load(Ordering::Relaxed) >= CONNECTIONS_MAX
            || port_open.load(Ordering::Relaxed) >= PORT_CONNECTIONS_MAX
        {
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Some(route) = table.borrow().get(&key).cloned() else {
            continue;
        };
        *stats.service.lock().unwrap_or_else(PoisonError::into_inner) = route.service.clone();
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let (stats, turn) = (stats.clone(), turn.clone());
        let (open, port_open) = (open.clone(), port_open.clone());
        open.fetch_add(1, Ordering::Relaxed);
        port_open.fetch_add(1, Ordering::Relaxed);
        let stop = shutdown.clone();
        tasks.spawn("forwarded connection", async move {
            let drained = async {
                stop.cancelled().await;
                tokio::time::sleep(DRAIN).await;
            };
            tokio::select! {
                () = forward(client, peer, addr.port(), &route, &stats, &turn, SILENCE) => {}
                () = drained => {}
            }
            open.fetch_sub(1, Ordering::Relaxed);
            port_open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service address and the ingress on every interface share a port number, and a
    /// connection to the service address reaches the listener bound to it.
    #[tokio::test]
    async fn an_exact_address_and_every_interface_share_a_port() {
        let any = bind("0.0.0.0:0".parse().unwrap()).unwrap();
        let port = any.local_addr().unwrap().port();
        let exact_addr: SocketAddr = ([127, 0, 0, 2], port).into();
        let exact = bind(exact_addr).expect("SO_REUSEPORT lets both listen");
        let _client = tokio::net::TcpStream::connect(exact_addr).await.unwrap();
        let accepted = tokio::time::timeout(Duration::from_secs(5), exact.accept()).await;
        assert!(matches!(accepted, Ok(Ok(_))), "{accepted:?}");
        let stray = tokio::time::timeout(Duration::from_millis(100), any.accept()).await;
        assert!(stray.is_err(), "the wildcard listener got it: {stray:?}");
    }
}
