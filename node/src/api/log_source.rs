//! Where `service logs` lines come from on one host: this host's replicas of a service, read
//! through their drivers, and the answer to another member asking for them over an
//! application stream of the mesh ([`knit_mesh::quic::app`]). Every queue is bounded, so a
//! slow reader slows the drivers' reads rather than growing memory.

use std::sync::Arc;

use knit_mesh::quic::app::Call;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::driver::Drivers;
use crate::driver::output::{LogLine, LogQuery};

/// Lines queued between one replica's driver read and the merge.
const REPLICA_QUEUE_MAX: usize = 64;
/// Items queued between a host's replicas and the one who asked.
pub(super) const ITEMS_QUEUE_MAX: usize = 256;
/// A reply frame to another member holds about this many bytes of lines at most.
const BATCH_BYTES: usize = 64 * 1024;
/// Requests for logs this host serves to other members at once (the mesh bounds them per
/// peer too); past it a request is refused.
const PEER_REQUESTS_MAX: usize = 32;

/// What one member asks another for: the lines of its replicas of `service`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct LogRequest {
    pub(super) service: String,
    /// Lines per replica (`None`: all).
    pub(super) tail: Option<usize>,
    /// Lines at or after this time, ms since the epoch.
    pub(super) since_ms: Option<u64>,
    /// Go on with new lines.
    pub(super) follow: bool,
}

impl LogRequest {
    fn query(&self) -> LogQuery {
        LogQuery {
            tail: self.tail,
            since_ms: self.since_ms,
            follow: self.follow,
        }
    }
}

/// One thing a host reports: a replica's line, or a note for the reader's error output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) enum Item {
    Line {
        /// `service.N`.
        slot: String,
        time_ms: u64,
        text: String,
    },
    Note(String),
}

impl Item {
    fn bytes(&self) -> usize {
        match self {
            Item::Line { slot, text, .. } => slot.len() + text.len() + 16,
            Item::Note(text) => text.len() + 8,
        }
    }
}

/// Sends the lines of this host's replicas of `request.service` to `out`, each replica
/// read at once; returns when all reads end (to follow: when `out` closes or the replicas
/// are gone).
pub(super) async fn gather(
    drivers: Arc<Drivers>,
    node: String,
    request: LogRequest,
    out: mpsc::Sender<Item>,
) {
    let listing = drivers.list(&node).await;
    for (kind, error) in &listing.failed {
        let kind = format!("{kind:?}").to_lowercase();
        let note = format!(
            "error: the {kind} driver on this host does not answer ({error}); its replicas' logs are missing"
        );
        if out.send(Item::Note(note)).await.is_err() {
            return;
        }
    }
    let mut reads = tokio::task::JoinSet::new();
    for (replica, kind) in listing.replicas {
        if replica.slot.service != request.service {
            continue;
        }
        let (drivers, out, query) = (drivers.clone(), out.clone(), request.query());
        reads.spawn(async move {
            let Ok(driver) = drivers.for_kind(kind) else {
                return;
            };
            let slot = replica.slot.to_string();
            let (tx, mut rx) = mpsc::channel::<LogLine>(REPLICA_QUEUE_MAX);
            let forward = async {
                loop {
                    let line = tokio::select! {
                        () = out.closed() => return,
                        line = rx.recv() => match line {
                            Some(line) => line,
                            None => return,
                        },
                    };
                    let item = Item::Line {
                        slot: slot.clone(),
                        time_ms: line.time_ms,
                        text: line.text,
                    };
                    if out.send(item).await.is_err() {
                        return;
                    }
                }
            };
            let (result, ()) = tokio::join!(
                async move {
                    let result = driver.stream_logs(&replica.runtime_id, query, &tx).await;
                    drop(tx);
                    result
                },
                forward
            );
            if let Err(e) = result {
                let _ = out
                    .send(Item::Note(format!("error: logs of {slot}: {e}")))
                    .await;
            }
        });
    }
    while reads.join_next().await.is_some() {}
}

/// Serves other members' requests for this host's logs until `shutdown`.
pub(crate) async fn serve_peers(
    mut calls: mpsc::Receiver<Call>,
    drivers: Arc<Drivers>,
    node: String,
    tasks: crate::tasks::Tasks,
) {
    let shutdown = tasks.shutdown().clone();
    let busy = Arc::new(tokio::sync::Semaphore::new(PEER_REQUESTS_MAX));
    loop {
        let call = tokio::select! {
            () = shutdown.cancelled() => return,
            call = calls.recv() => match call {
                Some(call) => call,
                None => return,
            },
        };
        let Ok(permit) = busy.clone().try_acquire_owned() else {
            tasks.spawn(
                "peer log refusal",
                call.reply.fail("busy: too many log requests; retry".into()),
            );
            continue;
        };
        let (drivers, node) = (drivers.clone(), node.clone());
        let stop = shutdown.clone();
        tasks.spawn("peer log answer", async move {
            let _permit = permit;
            tokio::select! {
                () = answer(call, drivers, node) => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

/// Answers one member's request: its lines in batches of about [`BATCH_BYTES`], sent as
/// soon as they are read.
async fn answer(call: Call, drivers: Arc<Drivers>, node: String) {
    let request: LogRequest = match serde_json::from_slice(&call.request) {
        Ok(request) => request,
        Err(e) => {
            call.reply
                .fail(format!(
                    "not a log request ({e}); are both peers the same version?"
                ))
                .await;
            return;
        }
    };
    let (tx, mut rx) = mpsc::channel::<Item>(ITEMS_QUEUE_MAX);
    let reply = &call.reply;
    let send = async {
        loop {
            let first = tokio::select! {
                () = reply.closed() => return,
                item = rx.recv() => match item {
                    Some(item) => item,
                    None => return,
                },
            };
            let mut size = first.bytes();
            let mut batch = vec![first];
            while size < BATCH_BYTES {
                let Ok(item) = rx.try_recv() else { break };
                size += item.bytes();
                batch.push(item);
            }
            let Ok(bytes) = serde_json::to_vec(&batch) else {
                return;
            };
            if reply.send(bytes).await.is_err() {
                return;
            }
        }
    };
    // The sender ends when the requester goes away: that drops the queue, which ends the
    // reads.
    tokio::join!(gather(drivers, node, request, tx), send);
}

/// The items in one reply frame from another member.
pub(super) fn decode_batch(bytes: &[u8]) -> Result<Vec<Item>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_batches_round_trip() {
        let request = LogRequest {
            service: "web".into(),
            tail: Some(2),
            since_ms: None,
            follow: true,
        };
        let bytes = serde_json::to_vec(&request).unwrap();
        assert_eq!(
            serde_json::from_slice::<LogRequest>(&bytes).unwrap(),
            request
        );
        let batch = vec![
            Item::Line {
                slot: "web.1".into(),
                time_ms: 5,
                text: "hi".into(),
            },
            Item::Note("error: x".into()),
        ];
        assert_eq!(
            decode_batch(&serde_json::to_vec(&batch).unwrap()).unwrap(),
            batch
        );
        assert!(decode_batch(b"\xff").is_err());
    }
}
