//! Where the admin API listens and who may talk to it.
//!
//! - A Unix socket by default (`<data dir>/knit.sock`, mode 0660, group `knit` when the
//!   host has one): as with Docker's socket, access to the file is access to the cluster.
//! - TCP only when asked, and then mutual TLS: the peer shows its node certificate and
//!   requires a client certificate from the cluster CA (`knit client-cert`). Plain HTTP on
//!   TCP needs `--api-insecure`, and is warned about.
//! - Every request's `Host` must be this API's own: an IP address, `localhost`, the host
//!   or node name, or a name given with `--api-host`. A browser on the host that was led
//!   to an attacker's name resolving to loopback (DNS rebinding) gets 403.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use knit_mesh::quic::Credentials;
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::api_addr::ApiAddr;
use crate::tasks::Tasks;

/// TLS handshakes in progress at most; connections past it wait to be accepted.
const HANDSHAKES_MAX: usize = 64;
/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Mode of the API socket: read and write for the owner (root) and the `knit` group.
const SOCKET_MODE: u32 = 0o660;

/// A bound admin API listener.
pub(crate) enum ApiListener {
    /// The Unix socket, and its path (removed when the peer stops).
    Unix(UnixListener, PathBuf),
    /// Mutual TLS on TCP.
    Tls(TlsListener),
    /// Plain HTTP on TCP (`--api-insecure`).
    Plain(TcpListener),
}

impl ApiListener {
    /// Binds the API at `addr`: TCP needs `creds` for TLS, unless `insecure`.
    pub(crate) async fn bind(
        addr: &ApiAddr,
        insecure: bool,
        creds: &Credentials,
        tasks: &Tasks,
    ) -> Result<Self> {
        match addr {
            ApiAddr::Unix(path) => Ok(Self::Unix(bind_socket(path)?, path.clone())),
            ApiAddr::Tcp(host_port) => {
                let listener = TcpListener::bind(host_port.as_str()).await.with_context(|| {
                    format!("cannot listen for the admin API on {host_port}; is another knit running? pick another with --api")
                })?;
                if insecure {
                    tracing::warn!(addr = %host_port, "the admin API serves plain HTTP on TCP (--api-insecure): anyone who reaches this port commands the cluster");
                    return Ok(Self::Plain(listener));
                }
                let config = knit_mesh::quic::operator::api_server_config(creds)
                    .context("cannot set up TLS for the admin API")?;
                let acceptor = TlsAcceptor::from(Arc::new(config));
                Ok(Self::Tls(TlsListener::spawn(listener, acceptor, tasks)?))
            }
        }
    }

    /// Where it listens, for the log.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Unix(_, path) => format!("unix://{}", path.display()),
            Self::Tls(l) => format!("https://{} (client certificates)", l.local),
            Self::Plain(l) => l
                .local_addr()
                .map_or_else(|_| "tcp".into(), |a| format!("http://{a} (insecure)")),
        }
    }
}

/// Binds the API socket at `path`: a stale socket is replaced, one that answers is
/// another peer's and is left alone.
fn bind_socket(path: &Path) -> Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another knit peer serves the API at {}; stop it, or give this one its own --data-dir or --api",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot listen for the admin API on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    if let Some(gid) = crate::datadir::api_group() {
        std::os::unix::fs::chown(path, None, Some(gid)).with_context(|| {
            format!(
                "cannot give {} to group {}",
                path.display(),
                crate::datadir::API_GROUP
            )
        })?;
    }
    Ok(listener)
}

/// TCP connections that finished a mutual TLS handshake, for axum to serve. Handshakes run
/// in their own tasks (at most [`HANDSHAKES_MAX`], each within [`HANDSHAKE_TIMEOUT`]), so a
/// slow or silent client delays no other.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    fn spawn(listener: TcpListener, acceptor: TlsAcceptor, tasks: &Tasks) -> Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(HANDSHAKES_MAX);
        let shutdown = tasks.shutdown().clone();
        let handshakes = tasks.clone();
        tasks.spawn("API TLS acceptor", async move {
            let permits = Arc::new(Semaphore::new(HANDSHAKES_MAX));
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let (tcp, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::debug!(error = %e, "admin API accept");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                handshakes.spawn("API TLS handshake", async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "admin API: TLS handshake refused");
                        }
                        Err(_) => tracing::debug!(%peer, "admin API: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(pair) => pair,
            // The acceptor stopped (shutdown): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The names a request's `Host` may carry besides IP addresses and `localhost`.
#[derive(Debug, Clone, Default)]
pub(crate) struct AllowedHosts(Arc<BTreeSet<String>>);

impl AllowedHosts {
    pub(crate) fn new(names: impl IntoIterator<Item = String>) -> Self {
        Self(Arc::new(
            names
                .into_iter()
                .map(|n| n.trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect(),
        ))
    }

    /// Whether a `Host` header value names this API.
    pub(crate) fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let name = if let Some(rest) = host.strip_prefix('[') {
            // [v6]:port
            rest.split_once(']').map_or(rest, |(ip, _)| ip)
        } else {
            match host.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => host.as_str(),
            }
        };
        let name = name.trim_end_matches('.');
        name.parse::<std::net::IpAddr>().is_ok() || name == "localhost" || self.0.contains(name)
    }
}

/// Middleware: 403 for a request whose `Host` is not this API's own.
pub(crate) async fn check_host(
    State(allowed): State<AllowedHosts>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{fffd}").to_owned());
    match host {
        Some(host) if !allowed.allows(&host) => (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({
                "error": format!("Host {host:?} is not a name of this knit API; use its IP address or localhost, or start the peer with --api-host {host}")
            })),
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

/// Reads `--metrics-addr`: `ADDR:PORT`, or `PORT` alone for loopback.
pub(crate) fn metrics_addr(text: &str) -> Result<SocketAddr> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().with_context(|| {
        format!("--metrics-addr {text:?} is not ADDR:PORT or PORT; e.g. 127.0.0.1:9947")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_apis_own_names_pass_the_host_check() {
        let allowed = AllowedHosts::new(["host-1".to_owned(), "Knit.Example".to_owned()]);
        for ok in [
            "127.0.0.11:7947",
            "10.0.0.1",
            "[::1]:7947",
            "localhost",
            "localhost:7947",
            "host-1:7947",
            "knit.example.",
            "KNIT.EXAMPLE:443",
        ] {
            assert!(allowed.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7947",
            "127.0.0.1.evil.example",
            "",
            "host-2",
        ] {
            assert!(!allowed.allows(bad), "{bad}");
        }
    }

    #[test]
    fn metrics_listen_on_loopback_unless_told_otherwise() {
        assert_eq!(
            metrics_addr("9947").unwrap(),
            "127.0.0.1:9947".parse().unwrap()
        );
        assert_eq!(
            metrics_addr("0.0.0.0:9100").unwrap(),
            "0.0.0.0:9100".parse().unwrap()
        );
        assert!(
            metrics_addr("nine")
                .unwrap_err()
                .to_string()
                .contains("--metrics-addr")
        );
    }

    #[tokio::test]
    async fn a_live_socket_is_never_taken_over_and_a_stale_one_is_replaced() {
        let dir = std::env::temp_dir().join(format!("knit-sock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("knit.sock");
        let first = bind_socket(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, SOCKET_MODE);
        let e = bind_socket(&path).unwrap_err().to_string();
        assert!(e.contains("another knit peer"), "{e}");
        drop(first);
        // The file stays behind a dead listener: it is stale now.
        assert!(path.exists());
        bind_socket(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
