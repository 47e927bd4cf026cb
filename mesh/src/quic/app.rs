//! Application streams: a request from one member to another, answered by a stream of
//! opaque frames, for the layer above the mesh (the node's `service logs` gathers replicas'
//! output this way). The mesh does not interpret the bytes; it carries them on the members'
//! mutually authenticated QUIC connections (no other port, no other credentials), with the
//! anti-entropy framing and these limits:
//!
//! - a request is at most [`REQUEST_MAX_BYTES`], a reply frame at most [`REPLY_MAX_BYTES`];
//! - at most [`STREAMS_PER_CONNECTION_MAX`] application streams per peer connection and
//!   [`STREAMS_MAX`] in all are served at once, apart from anti-entropy's own pool, so a
//!   long follow never slows state sync; past them the request is refused, not queued;
//! - dialing, opening and the first answer each have [`OPEN_TIMEOUT`]; a frame once begun
//!   has the frame timeout; between frames a stream may stay idle for as long as its
//!   connection lives (QUIC keep-alives close a connection to a dead peer within seconds);
//! - the handler hands reply frames over a channel of [`REPLY_QUEUE_MAX`]: a slow reader
//!   slows the handler down instead of growing a buffer.
//!
//! On the wire the request rides as the first frame of a member stream (the anti-entropy
//! message `Application`); the responder answers [`Reply`] frames: `Accepted` at once, then
//! `Data` frames, and a `Failed` frame or the end of the stream. A requester that goes away
//! finishes its side; the responder notices, stops writing, and drops the handler's channel.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};

use super::frame::{self, FrameError};
use crate::id::NodeId;

/// The largest request carried.
pub const REQUEST_MAX_BYTES: usize = 64 * 1024;
/// The largest payload of one reply frame.
pub const REPLY_MAX_BYTES: usize = 1024 * 1024;
/// Application streams served at once on one peer connection.
pub const STREAMS_PER_CONNECTION_MAX: usize = 8;
/// Application streams served at once by this node.
pub const STREAMS_MAX: usize = 64;
/// Calls waiting for the handler at most; past it requests are refused as busy.
pub const CALLS_QUEUED_MAX: usize = 64;
/// Reply payloads queued between the handler and the stream.
pub const REPLY_QUEUE_MAX: usize = 16;
/// How long dialing the peer, opening the stream and its first answer may each take.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// One frame of an answer.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    /// The handler took the request; data follows.
    Accepted,
    /// A payload from the handler.
    Data(Vec<u8>),
    /// The request was refused or failed; the stream ends.
    Failed(String),
}

/// Decodes one reply frame as [`AppStream::next`] reads it, without acting on it: a decoder
/// a peer's stream reaches, for fuzzing.
pub fn decode_reply(bytes: &[u8]) -> Result<(), crate::codec::CodecError> {
    crate::codec::decode_large::<Reply>(bytes).map(drop)
}

/// A request from another member, for the handler registered with
/// [`super::Mesh::serve_requests`].
#[derive(Debug)]
pub struct Call {
    /// The request's bytes, at most [`REQUEST_MAX_BYTES`].
    pub request: Vec<u8>,
    /// Where the answer goes; dropping it ends the answer.
    pub reply: Replier,
}

/// The handler's end of an answer.
#[derive(Debug)]
pub struct Replier {
    tx: mpsc::Sender<Result<Vec<u8>, String>>,
}

/// The requester went away; stop producing.
#[derive(Debug, thiserror::Error)]
#[error("the requester went away")]
pub struct Gone;

impl Replier {
    /// Sends one payload (at most [`REPLY_MAX_BYTES`]; larger is refused as gone),
    /// waiting while the stream is behind.
    pub async fn send(&self, payload: Vec<u8>) -> Result<(), Gone> {
        if payload.len() > REPLY_MAX_BYTES {
            return Err(Gone);
        }
        self.tx.send(Ok(payload)).await.map_err(|_| Gone)
    }

    /// Ends the answer with an error the requester sees.
    pub async fn fail(self, message: String) {
        let _ = self.tx.send(Err(message)).await;
    }

    /// Resolves when the requester has gone away.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

/// An application request could not be made, or its answer broke.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The member is not known or not alive in this node's view.
    #[error("node {0} is down")]
    Down(NodeId),
    /// The member did not answer in time or its connection broke.
    #[error("node {node} is unreachable: {detail}")]
    Unreachable {
        /// The member.
        node: NodeId,
        /// What failed.
        detail: String,
    },
    /// The member refused the request or its handler failed.
    #[error("node {node}: {message}")]
    Refused {
        /// The member.
        node: NodeId,
        /// Its words.
        message: String,
    },
    /// The request is larger than [`REQUEST_MAX_BYTES`].
    #[error("a request of {0} bytes exceeds the limit")]
    TooBig(usize),
}

/// What the transport shares to serve application streams.
pub(crate) struct Service {
    /// The node layer's handler, once registered.
    handler: Mutex<Option<mpsc::Sender<Call>>>,
    /// Streams served at once, node-wide.
    streams: Arc<Semaphore>,
}

impl Service {
    pub(crate) fn new() -> Self {
        Self {
            handler: Mutex::new(None),
            streams: Arc::new(Semaphore::new(STREAMS_MAX)),
        }
    }

    /// Registers the handler; a second registration replaces the first.
    pub(crate) fn register(&self) -> mpsc::Receiver<Call> {
        let (tx, rx) = mpsc::channel(CALLS_QUEUED_MAX);
        *self.handler.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
        rx
    }

    /// Serves one application stream whose request frame was read; `connection` is the
    /// per-connection pool.
    pub(crate) async fn serve(
        &self,
        connection: &Arc<Semaphore>,
        request: Vec<u8>,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) -> Result<(), FrameError> {
        let (Ok(_local), Ok(_node)) = (
            connection.clone().try_acquire_owned(),
            self.streams.clone().try_acquire_owned(),
        ) else {
            return refuse(&mut send, "busy: too many application streams; retry").await;
        };
        if request.len() > REQUEST_MAX_BYTES {
            return refuse(&mut send, "request too big").await;
        }
        let handler = self
            .handler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(handler) = handler else {
            return refuse(&mut send, "no application service on this node").await;
        };
        let (tx, mut rx) = mpsc::channel(REPLY_QUEUE_MAX);
        let call = Call {
            request,
            reply: Replier { tx },
        };
        if handler.try_send(call).is_err() {
            return refuse(
                &mut send,
                "busy: the node has too many requests queued; retry",
            )
            .await;
        }
        frame::write(&mut send, &Reply::Accepted).await?;
        let mut probe = [0u8; 64];
        loop {
            tokio::select! {
                item = rx.recv() => match item {
                    Some(Ok(payload)) => frame::write(&mut send, &Reply::Data(payload)).await?,
                    Some(Err(message)) => return refuse(&mut send, &message).await,
                    None => {
                        let _ = send.finish();
                        return Ok(());
                    }
                },
                // The requester sends nothing after its request: the end of its side, or an
                // error, means it went away.
                read = recv.read(&mut probe) => match read {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return Ok(()),
                },
            }
        }
    }
}

async fn refuse(send: &mut quinn::SendStream, message: &str) -> Result<(), FrameError> {
    frame::write(send, &Reply::Failed(message.to_owned())).await?;
    let _ = send.finish();
    Ok(())
}

/// The requester's end of an answer. Dropping it tells the responder to stop.
#[derive(Debug)]
pub struct AppStream {
    node: NodeId,
    /// Kept open while the answer is wanted: its end tells the responder to stop.
    _send: quinn::SendStream,
    recv: quinn::RecvStream,
    done: bool,
}

impl AppStream {
    /// Sends `request` on a new stream of `conn` to `node` and waits (up to
    /// [`OPEN_TIMEOUT`]) for it to be accepted.
    pub(crate) async fn open(
        conn: &quinn::Connection,
        node: NodeId,
        opening: &impl Serialize,
    ) -> Result<Self, AppError> {
        let unreachable = |detail: String| AppError::Unreachable { node, detail };
        let (mut send, mut recv) = tokio::time::timeout(OPEN_TIMEOUT, conn.open_bi())
            .await
            .map_err(|_| unreachable(format!("no stream within {OPEN_TIMEOUT:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::time::timeout(OPEN_TIMEOUT, frame::write(&mut send, opening))
            .await
            .map_err(|_| unreachable(format!("no room to send within {OPEN_TIMEOUT:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let first = frame::read_within_max(&mut recv, OPEN_TIMEOUT, REPLY_MAX_BYTES + 64)
            .await
            .map_err(|e| unreachable(format!("no answer: {e}")))?;
        match first {
            Reply::Accepted => Ok(Self {
                node,
                _send: send,
                recv,
                done: false,
            }),
            Reply::Failed(message) => Err(AppError::Refused { node, message }),
            Reply::Data(_) => Err(unreachable("answered out of order".into())),
        }
    }

    /// The next payload; `None` once the answer ended. Waits between frames for as long as
    /// the connection lives; a frame once begun must arrive within the frame timeout.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, AppError> {
        if self.done {
            return Ok(None);
        }
        let node = self.node;
        match frame::read_after_idle(&mut self.recv, REPLY_MAX_BYTES + 64).await {
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Ok(Some(Reply::Data(payload))) => Ok(Some(payload)),
            Ok(Some(Reply::Failed(message))) => {
                self.done = true;
                Err(AppError::Refused { node, message })
            }
            Ok(Some(Reply::Accepted)) => Err(AppError::Unreachable {
                node,
                detail: "answered out of order".into(),
            }),
            Err(e) => {
                self.done = true;
                Err(AppError::Unreachable {
                    node,
                    detail: e.to_string(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The reply decoder returns errors on arbitrary bytes, never panics.
        #[test]
        fn reply_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = decode_reply(&bytes);
        }
    }
}
