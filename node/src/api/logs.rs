//! `GET /v1/services/{name}/logs`: the output of a service's replicas on every host that
//! runs them, gathered over the mesh's application streams (see [`super::log_source`]) and
//! merged as it comes, each line prefixed with `service.N@node |` as Docker does. The answer
//! is a chunked text stream; with `follow` it goes on until the client goes away. A host
//! that is down or does not answer within the mesh's open timeout is reported by a line
//! `error: ...` (the CLI prints those on stderr) and not waited for.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use knit_mesh::NodeId;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::log_source::{self, ITEMS_QUEUE_MAX, Item, LogRequest};
use super::{ApiError, ApiState};
use crate::cluster::Snapshot;
use crate::driver::output::rfc3339;
use crate::records::service_key;

/// Without `follow`, how long one host may take to send all it has.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Formatted lines queued for the HTTP body.
const BODY_QUEUE_MAX: usize = 64;

/// The query of `GET /v1/services/{name}/logs`.
#[derive(Debug, Deserialize)]
pub(super) struct LogsQuery {
    /// Lines per replica: a number, or `all` (the default).
    tail: Option<String>,
    /// Only lines since then: a duration back from now (`10m`, `1h30m`) or an RFC 3339 UTC
    /// time (`2026-12-02T17:00:00Z`).
    since: Option<String>,
    /// Keep streaming new lines.
    #[serde(default)]
    follow: bool,
    /// Show each line's time.
    #[serde(default)]
    timestamps: bool,
}

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// `tail`: `all` or a number of lines.
pub(super) fn parse_tail(tail: Option<&str>) -> Result<Option<usize>, ApiError> {
    match tail.map(str::trim) {
        None | Some("all") => Ok(None),
        Some(n) => n.parse().map(Some).map_err(|_| {
            bad(format!(
                "tail {n:?} is not a number of lines; give a number such as 20, or `all`"
            ))
        }),
    }
}

/// `since`: a duration back from `now_ms`, or an RFC 3339 UTC time; ms since the epoch.
pub(super) fn parse_since(since: Option<&str>, now_ms: u64) -> Result<Option<u64>, ApiError> {
    let Some(text) = since.map(str::trim) else {
        return Ok(None);
    };
    if let Some(ms) = crate::driver::docker::rfc3339_ms(text) {
        return Ok(Some(ms));
    }
    match knit_scheduler::spec::parse_duration_ms(text) {
        Ok(back) => Ok(Some(now_ms.saturating_sub(back))),
        Err(_) => Err(bad(format!(
            "since {text:?} is neither a duration (10m, 1h30m) nor an RFC 3339 UTC time (2026-12-02T17:00:00Z)"
        ))),
    }
}

/// Streams the logs of service `name` from every host that runs its replicas.
pub(super) async fn logs(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let request = LogRequest {
        service: name.clone(),
        tail: parse_tail(query.tail.as_deref())?,
        since_ms: parse_since(query.since.as_deref(), crate::clock::now_ms())?,
        follow: query.follow,
    };
    let snapshot = Snapshot::of(&state.mesh);
    if snapshot.store.get(&service_key(&name)).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no such service: {name}; `knit service ls` lists them"),
        ));
    }
    let names = snapshot.names();
    let me = snapshot.view.me.node;
    let (items, mut merged) = mpsc::channel::<(NodeId, Item)>(ITEMS_QUEUE_MAX);
    for node in hosts_of(&snapshot, &name, me) {
        let label = names
            .get(&node.to_string())
            .cloned()
            .unwrap_or_else(|| node.short());
        let (state, request, items) = (state.clone(), request.clone(), items.clone());
        let stop = state.tasks.shutdown().clone();
        state.tasks.clone().spawn("logs read", async move {
            let read = async {
                if node == me {
                    local(&state, node, request, items).await;
                } else {
                    remote(&state, node, &label, request, items).await;
                }
            };
            // A follow of a silent replica would wait for its next line: not at a stop.
            tokio::select! {
                () = read => {}
                () = stop.cancelled() => {}
            }
        });
    }
    drop(items);
    let (lines, body) = mpsc::channel::<String>(BODY_QUEUE_MAX);
    let timestamps = query.timestamps;
    state.tasks.spawn("logs merge", async move {
        loop {
            let (node, item) = tokio::select! {
                () = lines.closed() => return,
                item = merged.recv() => match item {
                    Some(item) => item,
                    None => return,
                },
            };
            let label = names
                .get(&node.to_string())
                .cloned()
                .unwrap_or_else(|| node.short());
            if lines
                .send(format_item(&item, &label, timestamps))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(body, |mut body| async move {
        let line = body.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(line), body))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// The hosts to ask: this one (its drivers know what it runs) and every other member whose
/// reports list a replica of `service`, in node order.
fn hosts_of(snapshot: &Snapshot, service: &str, me: NodeId) -> Vec<NodeId> {
    let mut hosts = vec![me];
    for member in &snapshot.view.members {
        let node = member.peer.node;
        if node != me
            && member.state != knit_mesh::MemberState::Left
            && snapshot
                .reports(&node)
                .iter()
                .any(|r| r.slot.service == service)
        {
            hosts.push(node);
        }
    }
    hosts
}

/// One line of the answer: `service.N@node | [time ]text`, or a note as it is.
fn format_item(item: &Item, node: &str, timestamps: bool) -> String {
    match item {
        Item::Line {
            slot,
            time_ms,
            text,
        } if timestamps => format!("{slot}@{node} | {} {text}\n", rfc3339(*time_ms)),
        Item::Line { slot, text, .. } => format!("{slot}@{node} | {text}\n"),
        Item::Note(note) => format!("{note}\n"),
    }
}

/// This host's lines, read from its drivers.
async fn local(
    state: &ApiState,
    node: NodeId,
    request: LogRequest,
    items: mpsc::Sender<(NodeId, Item)>,
) {
    let (tx, mut rx) = mpsc::channel(ITEMS_QUEUE_MAX);
    let gather = log_source::gather(state.drivers.clone(), node.to_string(), request, tx);
    let forward = async {
        loop {
            let item = tokio::select! {
                () = items.closed() => return,
                item = rx.recv() => match item {
                    Some(item) => item,
                    None => return,
                },
            };
            if items.send((node, item)).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(gather, forward);
}

/// Another host's lines, asked for over the mesh; a failure is one note.
async fn remote(
    state: &ApiState,
    node: NodeId,
    label: &str,
    request: LogRequest,
    items: mpsc::Sender<(NodeId, Item)>,
) {
    let follow = request.follow;
    let note = |why: String| (node, Item::Note(why));
    let bytes = match serde_json::to_vec(&request) {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = items.send(note(format!("error: {e}"))).await;
            return;
        }
    };
    let mut stream = match state.mesh.request(node, bytes).await {
        Ok(stream) => stream,
        Err(knit_mesh::quic::app::AppError::Down(_)) => {
            let why = format!("error: node {label} is down; its replicas' logs are not shown");
            let _ = items.send(note(why)).await;
            return;
        }
        Err(e) => {
            let why = format!(
                "error: node {label} did not answer ({e}); its replicas' logs are not shown"
            );
            let _ = items.send(note(why)).await;
            return;
        }
    };
    let deadline = (!follow).then(|| tokio::time::Instant::now() + READ_TIMEOUT);
    let mut view = state.mesh.view();
    loop {
        let next = tokio::select! {
            () = items.closed() => return,
            () = until(deadline) => Err(format!("no end within {READ_TIMEOUT:?}")),
            // The transport keeps idle connections for minutes and sends no keep-alives:
            // a host that died is noticed by failure detection, not by the stream.
            () = seen_gone(&mut view, node) => Err("it is down".to_owned()),
            next = stream.next() => next.map_err(|e| e.to_string()),
        };
        let batch = match next {
            Ok(Some(bytes)) => log_source::decode_batch(&bytes).map_err(|e| e.to_string()),
            Ok(None) => return,
            Err(e) => Err(e),
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                let why = format!(
                    "error: node {label} stopped answering ({e}); its replicas' logs end here"
                );
                let _ = items.send(note(why)).await;
                return;
            }
        };
        for item in batch {
            if items.send((node, item)).await.is_err() {
                return;
            }
        }
    }
}

/// Waits until this peer sees `node` down or gone (or the mesh stops).
async fn seen_gone(
    view: &mut tokio::sync::watch::Receiver<Arc<knit_mesh::node_core::View>>,
    node: NodeId,
) {
    loop {
        let gone = view
            .borrow_and_update()
            .members
            .iter()
            .find(|m| m.peer.node == node)
            .is_none_or(|m| !m.state.is_active());
        if gone || view.changed().await.is_err() {
            return;
        }
    }
}

/// Waits until `deadline`, or for ever without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_is_a_number_or_all() {
        assert_eq!(parse_tail(None).unwrap(), None);
        assert_eq!(parse_tail(Some("all")).unwrap(), None);
        assert_eq!(parse_tail(Some("2")).unwrap(), Some(2));
        let err = parse_tail(Some("two")).unwrap_err();
        assert_eq!(err.0, StatusCode::BAD_REQUEST);
        assert!(err.1.contains("`all`"), "{}", err.1);
    }

    #[test]
    fn since_is_a_duration_or_a_time() {
        assert_eq!(parse_since(None, 1_000_000).unwrap(), None);
        assert_eq!(parse_since(Some("10m"), 1_000_000).unwrap(), Some(400_000));
        assert_eq!(
            parse_since(Some("2024-05-07T21:09:36Z"), 0).unwrap(),
            Some(1_715_116_176_000)
        );
        let err = parse_since(Some("yesterday"), 0).unwrap_err();
        assert_eq!(err.0, StatusCode::BAD_REQUEST);
        assert!(err.1.contains("RFC 3339"), "{}", err.1);
    }

    #[test]
    fn lines_carry_slot_and_node() {
        let line = Item::Line {
            slot: "web.2".into(),
            time_ms: 0,
            text: "hello".into(),
        };
        assert_eq!(format_item(&line, "n1", false), "web.2@n1 | hello\n");
        assert_eq!(
            format_item(&line, "n1", true),
            "web.2@n1 | 1970-01-01T00:00:00.000000000Z hello\n"
        );
        assert_eq!(
            format_item(&Item::Note("error: x".into()), "n1", false),
            "error: x\n"
        );
    }
}
