//! The admin API: JSON over HTTP on loopback, used by the client commands; `/metrics` for
//! Prometheus.

mod metrics;
mod nodes;
mod services;

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

pub(crate) use nodes::NodeSummary;
pub(crate) use services::{ServiceSummary, TaskRow, UpdateRequest};

/// How long a write may wait to be applied and persisted before the API gives up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct ApiState {
    mesh: Mesh,
    token: Arc<str>,
    /// The store version last written to the data dir.
    saved: watch::Receiver<u64>,
    /// This host's drivers, for logs.
    drivers: Arc<crate::driver::Drivers>,
    /// The ingress's counters and bind errors.
    ingress: Arc<crate::ingress::IngressStats>,
}

impl ApiState {
    pub(crate) fn new(
        mesh: Mesh,
        token: String,
        saved: watch::Receiver<u64>,
        drivers: Arc<crate::driver::Drivers>,
        ingress: Arc<crate::ingress::IngressStats>,
    ) -> Self {
        Self {
            mesh,
            token: token.into(),
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
        let mut store = self.mesh.store();
        let applied = tokio::time::timeout(
            WRITE_TIMEOUT,
            store.wait_for(|s| s.stamp(key).is_some_and(|s| s >= stamp)),
        )
        .await
        .map_err(|_| ApiError::unavailable())?
        .map_err(|_| ApiError::unavailable())?
        .version();
        let mut saved = self.saved.clone();
        tokio::time::timeout(WRITE_TIMEOUT, saved.wait_for(|v| *v >= applied))
            .await
            .map_err(|_| ApiError::unavailable())?
            .map_err(|_| ApiError::unavailable())?;
        Ok(())
    }
}

/// An error as JSON, with the status that fits it.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, String);

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self(status, message.into())
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

pub(crate) fn router(state: ApiState) -> Router {
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
        .route("/v1/services/{name}/logs", get(services::logs))
        .route("/v1/token", get(token))
        .route("/metrics", get(metrics::metrics))
        .with_state(state)
}

/// Serves until `shutdown`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) {
    let app = router(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "admin API stopped");
    }
}

async fn token(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "token": &*state.token }))
}
