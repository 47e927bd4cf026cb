//! A Unix socket proxy a test can cut and restore: a peer given `DOCKER_HOST=unix://<the
//! proxy's path>` loses its Docker engine while the engine, and the containers, run on —
//! what a peer sees while `dockerd` restarts with live-restore, without restarting the
//! engine every other test on this host uses.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};

/// Connections carried and whether the proxy accepts new ones.
#[derive(Default)]
struct Shared {
    open: AtomicBool,
    /// Each carried connection (client side, engine side), by number, until it closes.
    streams: Mutex<BTreeMap<u64, (UnixStream, UnixStream)>>,
    next: AtomicU64,
}

impl Shared {
    fn streams(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, (UnixStream, UnixStream)>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Forwards connections on `path` to `upstream` until [`UnixProxy::cut`]; stops on drop.
pub struct UnixProxy {
    path: PathBuf,
    upstream: PathBuf,
    shared: Arc<Shared>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl UnixProxy {
    /// Listens on `path` and forwards to `upstream`.
    pub fn start(path: &Path, upstream: &Path) -> Result<Self> {
        let mut proxy = Self {
            path: path.to_owned(),
            upstream: upstream.to_owned(),
            shared: Arc::default(),
            accept: None,
        };
        proxy.restore()?;
        Ok(proxy)
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection and the socket: a client's next connect fails, as with an
    /// engine that is down.
    pub fn cut(&mut self) {
        self.shared.open.store(false, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let streams = std::mem::take(&mut *self.shared.streams());
        for (client, server) in streams.into_values() {
            let _ = client.shutdown(std::net::Shutdown::Both);
            let _ = server.shutdown(std::net::Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.path);
    }

    /// Listens again, as an engine that came back.
    pub fn restore(&mut self) -> Result<()> {
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path)
            .with_context(|| format!("binding {}", self.path.display()))?;
        listener.set_nonblocking(true)?;
        self.shared.open.store(true, Ordering::SeqCst);
        let shared = self.shared.clone();
        let upstream = self.upstream.clone();
        self.accept = Some(std::thread::spawn(move || {
            accept(&listener, &upstream, &shared);
        }));
        Ok(())
    }
}

impl Drop for UnixProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

fn accept(listener: &UnixListener, upstream: &Path, shared: &Arc<Shared>) {
    while shared.open.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let _ = client.set_nonblocking(false);
                let Ok(server) = UnixStream::connect(upstream) else {
                    continue;
                };
                let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
                    client.try_clone(),
                    server.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                ) else {
                    continue;
                };
                let id = shared.next.fetch_add(1, Ordering::Relaxed);
                shared.streams().insert(id, (c3, s3));
                let done = shared.clone();
                std::thread::spawn(move || pipe(client, server));
                std::thread::spawn(move || {
                    pipe(s2, c2);
                    done.streams().remove(&id);
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => return,
        }
    }
}

/// Copies `from` to `to` until either side closes, then closes both.
fn pipe(mut from: UnixStream, mut to: UnixStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}
