//! How a client command reaches the admin API: HTTP/1.1 over the peer's Unix socket, over
//! mutual TLS on TCP with the operator's certificate, or (when asked) plain TCP. One
//! connection per request: the CLI sends few, and the socket costs nothing to open.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::api_addr::ApiAddr;

/// How long connecting (and the TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest answer read.
const RESPONSE_MAX_BYTES: usize = 64 << 20;

/// Where and how to reach the API.
pub(crate) enum Transport {
    Unix(PathBuf),
    Tls {
        addr: String,
        connector: tokio_rustls::TlsConnector,
    },
    Plain(String),
}

impl Transport {
    /// The transport for `addr`: TCP takes the TLS files in `tls_dir` (default
    /// `~/.knit/tls`) unless `insecure`.
    pub(crate) fn new(addr: &ApiAddr, tls_dir: Option<&Path>, insecure: bool) -> Result<Self> {
        match addr {
            ApiAddr::Unix(path) => Ok(Self::Unix(path.clone())),
            ApiAddr::Tcp(host_port) if insecure => Ok(Self::Plain(host_port.clone())),
            ApiAddr::Tcp(host_port) => {
                let dir = tls_dir.map_or_else(
                    || crate::cli::default_data_dir().join("tls"),
                    Path::to_path_buf,
                );
                let read = |name: &str| {
                    std::fs::read(dir.join(name)).with_context(|| {
                        format!(
                            "the API at {addr} is TCP, which needs a client certificate: cannot read {}; \
                             make one on a member with `knit client-cert --name NAME --out DIR` and pass --tls-dir DIR",
                            dir.join(name).display()
                        )
                    })
                };
                let config = knit_mesh::quic::operator::api_client_config(
                    &read("ca.pem")?,
                    &read("cert.pem")?,
                    &read("key.pem")?,
                )
                .with_context(|| format!("the TLS files in {} are not usable", dir.display()))?;
                Ok(Self::Tls {
                    addr: host_port.clone(),
                    connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
                })
            }
        }
    }

    /// Sends one request; returns the status and the whole body.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes)> {
        let response = self.open(method, path, body).await?;
        let status = response.status();
        let body = Limited::new(response.into_body(), RESPONSE_MAX_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow!("reading the answer: {e}"))?
            .to_bytes();
        Ok((status, body))
    }

    /// Sends one request; returns the answer as it starts, its body still to read.
    pub(crate) async fn open(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "localhost");
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .context("cannot build the request")?;
        let response = match self {
            Self::Unix(path) => {
                let stream = timeout(tokio::net::UnixStream::connect(path)).await?;
                exchange(stream, request).await?
            }
            Self::Plain(addr) => {
                let stream = timeout(tokio::net::TcpStream::connect(addr.as_str())).await?;
                exchange(stream, request).await?
            }
            Self::Tls { addr, connector } => {
                let tcp = timeout(tokio::net::TcpStream::connect(addr.as_str())).await?;
                let name = rustls_pki_types::ServerName::try_from(
                    knit_mesh::quic::operator::API_SERVER_NAME,
                )
                .context("server name")?;
                let tls = timeout(connector.connect(name, tcp)).await?;
                exchange(tls, request).await?
            }
        };
        Ok(response)
    }
}

async fn timeout<T>(connecting: impl Future<Output = std::io::Result<T>>) -> std::io::Result<T> {
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {CONNECT_TIMEOUT:?}"),
            ))
        })
}

async fn exchange<S>(stream: S, request: Request<Full<Bytes>>) -> Result<Response<Incoming>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    match sender.send_request(request).await {
        Ok(response) => Ok(response),
        Err(e) => bail!("{e}"),
    }
}
