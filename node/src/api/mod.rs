//! The admin API: JSON over HTTP on a root-only Unix socket (or mutual TLS on TCP), used by
//! the client commands; a stream of the cluster's changes (`/v1/events`) and a dashboard
//! that follows it (`/ui`); `/metrics` and `/healthz` for Prometheus on a listener of
//! their own. Its routes are one table ([`routes`]); `GET /v1/openapi.json` documents them
//! (`openapi.rs`), and JSON request bodies are read strictly against that document
//! (`body.rs`).

mod body;
mod cluster;
mod configs;
mod dashboard;
mod events;
mod listen;
mod log_source;
mod logs;
mod metrics;
mod nodes;
mod openapi;
mod operators;
mod picture;
mod registries;
mod sealed;
mod secrets;
mod services;
mod shape;
mod tally;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, get, on};
use axum::{Json, Router};
use knit_mesh::quic::Mesh;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::wire::{ErrorBody, TokenAnswer};

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
    /// Service discovery's counters (its addresses are in `drivers.directory`).
    discovery: Arc<crate::discovery::DiscoveryStats>,
    /// The observer of the cluster's changes, and the event streams it feeds.
    events: Arc<events::Events>,
    /// Where request-scoped tasks (a logs fan-out) are spawned, so that they end with the peer.
    tasks: crate::tasks::Tasks,
}

impl ApiState {
    pub(crate) fn new(
        mesh: Mesh,
        creds: knit_mesh::quic::Credentials,
        saved: watch::Receiver<crate::persist::Saved>,
        drivers: Arc<crate::driver::Drivers>,
        ingress: Arc<crate::ingress::IngressStats>,
        discovery: Arc<crate::discovery::DiscoveryStats>,
        tasks: &crate::tasks::Tasks,
    ) -> Self {
        Self {
            events: events::Events::start(mesh.clone(), tasks),
            tasks: tasks.clone(),
            mesh,
            creds: Arc::new(creds),
            saved,
            drivers,
            ingress,
            discovery,
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
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

/// The HTTP methods the admin API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Get,
    Post,
    Delete,
}

impl Verb {
    fn filter(self) -> MethodFilter {
        match self {
            Self::Get => MethodFilter::GET,
            Self::Post => MethodFilter::POST,
            Self::Delete => MethodFilter::DELETE,
        }
    }
}

/// One route of the admin API.
pub(crate) struct Route {
    /// Read by the test that holds the document to the routes.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) verb: Verb,
    /// axum's path syntax, which is OpenAPI's (`/v1/services/{name}`).
    pub(crate) path: &'static str,
    handler: MethodRouter<ApiState>,
}

fn route<H, T>(verb: Verb, path: &'static str, handler: H) -> Route
where
    H: Handler<T, ApiState>,
    T: 'static,
{
    Route {
        verb,
        path,
        handler: on(verb.filter(), handler),
    }
}

/// Every route of the admin API, in one place: [`router`] serves these, and a test holds
/// the OpenAPI document (`/v1/openapi.json`) to them.
pub(crate) fn routes() -> Vec<Route> {
    use Verb::{Delete, Get, Post};
    vec![
        route(Get, "/v1/nodes", nodes::list),
        route(Get, "/v1/nodes/{node}", nodes::inspect),
        route(Delete, "/v1/nodes/{node}", nodes::remove),
        route(Post, "/v1/nodes/{node}/spec", nodes::update),
        route(Get, "/v1/services", services::list),
        route(Post, "/v1/services", services::create),
        route(Get, "/v1/services/{name}", services::inspect),
        route(Post, "/v1/services/{name}", services::update),
        route(Delete, "/v1/services/{name}", services::remove),
        route(Post, "/v1/services/{name}/rollback", services::rollback),
        route(Get, "/v1/services/{name}/ps", services::ps),
        route(Get, "/v1/services/{name}/logs", logs::logs),
        route(Get, "/v1/secrets", secrets::list),
        route(Post, "/v1/secrets", secrets::create),
        route(Get, "/v1/secrets/{name}", secrets::inspect),
        route(Delete, "/v1/secrets/{name}", secrets::remove),
        route(Get, "/v1/configs", configs::list),
        route(Post, "/v1/configs", configs::create),
        route(Get, "/v1/configs/{name}", configs::inspect),
        route(Delete, "/v1/configs/{name}", configs::remove),
        route(Get, "/v1/registries", registries::list),
        route(Post, "/v1/registries", registries::login),
        route(Delete, "/v1/registries/{server}", registries::logout),
        route(Get, "/v1/cluster/limits", cluster::limits),
        route(Post, "/v1/cluster/limits", cluster::set_limits),
        route(Get, "/v1/events", events::stream),
        route(Get, "/ui", dashboard::page),
        route(Get, "/v1/token", token),
        route(Post, "/v1/token/rotate", rotate_token),
        route(Post, "/v1/client-certs", operators::client_cert),
        route(Get, "/v1/openapi.json", openapi::serve),
    ]
}

/// The admin API's routes ([`routes`]), behind the `Host` check.
pub(crate) fn router(state: ApiState, hosts: AllowedHosts) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |router, r| router.route(r.path, r.handler))
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

/// How long open requests (an event stream, a long answer) may run on after the peer is
/// told to stop, before their connections are cut.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown`, then lets open requests end for up to
/// [`DRAIN`]; removes the socket file after.
pub(crate) async fn serve(listener: ApiListener, app: Router, shutdown: CancellationToken) {
    let stop = shutdown.clone();
    let stop = async move { stop.cancelled().await };
    let served = async move {
        match listener {
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
        }
    };
    if let Some(Err(e)) = drained(served, &shutdown).await {
        tracing::error!(error = %e, "admin API stopped");
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown` (and [`DRAIN`]).
pub(crate) async fn serve_metrics(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
) {
    let stop = shutdown.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .into_future();
    if let Some(Err(e)) = drained(served, &shutdown).await {
        tracing::error!(error = %e, "metrics listener stopped");
    }
}

/// Runs `server` to its end, or until [`DRAIN`] after `shutdown` (then `None`).
async fn drained<T>(server: impl Future<Output = T>, shutdown: &CancellationToken) -> Option<T> {
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(DRAIN).await;
    };
    tokio::select! {
        result = server => Some(result),
        () = deadline => {
            tracing::debug!("open API requests cut at the stop");
            None
        }
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

/// The cluster's join token (`knit token`).
#[utoipa::path(
    get,
    path = "/v1/token",
    tag = "cluster",
    responses((status = 200, description = "The join token", body = TokenAnswer))
)]
async fn token(State(state): State<ApiState>) -> Json<TokenAnswer> {
    Json(TokenAnswer {
        token: state.mesh.token().to_string(),
    })
}

/// Rotates the join secret; answers with the new token once this peer has it on disk.
/// Members keep their membership; a node that joins from now on needs the new token.
#[utoipa::path(
    post,
    path = "/v1/token/rotate",
    tag = "cluster",
    responses(
        (status = 200, description = "The new join token", body = TokenAnswer),
        (status = 503, description = "Not applied or not saved in time", body = ErrorBody),
        (status = 507, description = "Applied, but this peer's disk is full", body = ErrorBody),
    )
)]
async fn rotate_token(State(state): State<ApiState>) -> Result<Json<TokenAnswer>, ApiError> {
    let token = rotate(&state).await?;
    Ok(Json(TokenAnswer { token }))
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
