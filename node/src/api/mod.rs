//! The admin API: JSON over HTTP on a root-only Unix socket (or mutual TLS on TCP), used by
//! the client commands; a stream of the cluster's changes (`/v1/events`) and a dashboard
//! that follows it (`/ui`); `/metrics` and `/healthz` for Prometheus on a listener of
//! their own.

mod cluster;
mod dashboard;
mod events;
mod listen;
mod log_source;
mod logs;
mod metrics;
mod nodes;
mod operators;
mod picture;
mod services;
mod tally;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use knit_mesh::quic::Mesh;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub(crate) use listen::{AllowedHosts, ApiListener, metrics_addr};
pub(crate) use log_source::serve_peers;

/// How long a write may wait to be applied and persisted before the API gives up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct ApiState {
    mesh: Mesh,
    /// This member's credentials: the CA signs operators' client certificates.
    creds: Arc<knit_mesh::quic::Credentials>,
    /// What was last written to the data dir, or why it failed.
    saved: watch::Receiver<crate::persist::Saved>,
    /// This host's drivers, for logs.
    drivers: Arc<crate::driver::Drivers>,
    /// The ingress's counters and bind errors.
    ingress: Arc<crate::ingress::IngressStats>,
    /// The observer of the cluster's changes, and the event streams it feeds.
    events: Arc<events::Events>,
}

impl ApiState {
    pub(crate) fn new(
        mesh: Mesh,
        creds: knit_mesh::quic::Credentials,
        saved: watch::Receiver<crate::persist::Saved>,
        drivers: Arc<crate::driver::Drivers>,
        ingress: Arc<crate::ingress::IngressStats>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            events: events::Events::start(mesh.clone(), shutdown),
            mesh,
            creds: Arc::new(creds),
            saved,
            drivers,
            ingress,
        }
    }

    /// Writes `key` and returns once the write is in this peer's data dir: a write the API
    /// acknowledged survives a crash of this peer.
    async fn write(&self, key: &str, value: Option<Vec<u8>>) -> Result<(), ApiError> {
        let stamp = self
            .mesh
            .put(key, value)
            .await
            .map_err(|_| ApiError::unavailable())?;
        self.applied(key, stamp).await
    }

    /// Waits until this peer's store holds the write of `key` stamped `stamp`, and has
    /// saved it.
    async fn applied(&self, key: &str, stamp: knit_mesh::store::Stamp) -> Result<(), ApiError> {
        let mut store = self.mesh.store();
        let applied = tokio::time::timeout(
            WRITE_TIMEOUT,
            store.wait_for(|s| s.stamp(key).is_some_and(|s| s >= stamp)),
        )
        .await
        .map_err(|_| ApiError::unavailable())?
        .map_err(|_| ApiError::unavailable())?
        .version();
        wait_saved(&self.saved, applied).await
    }
}

/// Waits until store version `applied` is on disk; answers a failed save at once, with
/// what to do (507 when the disk is full).
async fn wait_saved(
    saved: &watch::Receiver<crate::persist::Saved>,
    applied: u64,
) -> Result<(), ApiError> {
    let mut saved = saved.clone();
    let state = tokio::time::timeout(
        WRITE_TIMEOUT,
        saved.wait_for(|s| {
            s.version >= applied || s.failure.as_ref().is_some_and(|f| f.version >= applied)
        }),
    )
    .await
    .map_err(|_| ApiError::unavailable())?
    .map_err(|_| ApiError::unavailable())?
    .clone();
    match state.failure {
        Some(failure) if state.version < applied => Err(ApiError::not_saved(&failure)),
        _ => Ok(()),
    }
}

/// An error as JSON, with the status that fits it.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, String);

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self(status, message.into())
    }

    /// The change was applied (and spreads to the other members) but this peer could not
    /// write it to its data dir.
    fn not_saved(failure: &crate::persist::SaveFailure) -> Self {
        let status = if failure.disk_full {
            StatusCode::INSUFFICIENT_STORAGE
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        Self::new(
            status,
            format!(
                "{}; the change was applied and spreads to the other members, but is not yet on this peer's disk",
                failure.message
            ),
        )
    }

    fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the peer could not apply and persist the change in time; check its log and disk, then retry",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// The admin API's routes, behind the `Host` check.
pub(crate) fn router(state: ApiState, hosts: AllowedHosts) -> Router {
    Router::new()
        .route("/v1/nodes", get(nodes::list))
        .route(
            "/v1/nodes/{node}",
            get(nodes::inspect).delete(nodes::remove),
        )
        .route("/v1/nodes/{node}/spec", post(nodes::update))
        .route("/v1/services", get(services::list).post(services::create))
        .route(
            "/v1/services/{name}",
            get(services::inspect)
                .post(services::update)
                .delete(services::remove),
        )
        .route("/v1/services/{name}/rollback", post(services::rollback))
        .route("/v1/services/{name}/ps", get(services::ps))
        .route("/v1/services/{name}/logs", get(logs::logs))
        .route(
            "/v1/cluster/limits",
            get(cluster::limits).post(cluster::set_limits),
        )
        .route("/v1/events", get(events::stream))
        .route("/ui", get(dashboard::page))
        .route("/v1/token", get(token))
        .route("/v1/token/rotate", post(rotate_token))
        .route("/v1/client-certs", post(operators::client_cert))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            hosts,
            listen::check_host,
        ))
}

/// `/metrics` and `/healthz`, for their own listener: nothing else is served there.
pub(crate) fn metrics_router(state: ApiState, hosts: AllowedHosts) -> Router {
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            hosts,
            listen::check_host,
        ))
}

/// Serves `app` on `listener` until `shutdown`; removes the socket file after.
pub(crate) async fn serve(listener: ApiListener, app: Router, shutdown: CancellationToken) {
    let stop = async move { shutdown.cancelled().await };
    let result = match listener {
        ApiListener::Unix(listener, path) => {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await;
            let _ = std::fs::remove_file(path);
            result
        }
        ApiListener::Tls(listener) => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        }
        ApiListener::Plain(listener) => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        }
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "admin API stopped");
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown`.
pub(crate) async fn serve_metrics(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
) {
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "metrics listener stopped");
    }
}

/// 200 while the peer runs and is in a cluster (or alone, having created one).
async fn healthz(State(state): State<ApiState>) -> Json<serde_json::Value> {
    let view = state.mesh.view().borrow().clone();
    Json(serde_json::json!({
        "status": "ok",
        "node": view.me.node.to_string(),
        "connection": format!("{:?}", view.connection).to_lowercase(),
    }))
}

async fn token(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "token": state.mesh.token().to_string() }))
}

/// Rotates the join secret; answers with the new token once this peer has it on disk.
async fn rotate_token(State(state): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    let token = rotate(&state).await?;
    Ok(Json(serde_json::json!({ "token": token })))
}

/// Rotates the join secret and waits until the write is persisted here.
pub(crate) async fn rotate(state: &ApiState) -> Result<String, ApiError> {
    let token = state
        .mesh
        .rotate_token()
        .await
        .map_err(|_| ApiError::unavailable())?;
    let applied = state.mesh.store().borrow().version();
    wait_saved(&state.saved, applied).await?;
    Ok(token.to_string())
}
