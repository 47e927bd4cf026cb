//! Anti-entropy over a QUIC stream. The initiator sends its summary (a hash per bucket of
//! keys) and freshness; the responder answers with the buckets that differ and its
//! freshness (none differ: done, 64 hashes each way), then its digest of them; the
//! initiator sends what the responder lacks there and its own digest of them; the
//! responder sends back what the initiator lacks. Whatever rumors missed is repaired; a new
//! member is filled in one round. Both sides tell the store of the other's freshness
//! before (a member that was away rebases) and after (a completed exchange makes it fresh;
//! see the store's `gc` module).
//!
//! Digests and deltas go in chunks of about [`frame::CHUNK_BYTES`], each sequence closed by
//! `End`, so no frame nears the frame limit however big the state is: deltas are merged
//! chunk by chunk (waiting while the mesh task's backlog is full), a digest is gathered up
//! to [`DIGEST_MAX_BYTES`].
//!
//! The answers come from the node core (its `summary`, `differ`, `exchange` and `missing`
//! steps) through the core task; this module carries them as bytes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::command::Command;
use super::frame::{self, FrameError};
use super::metrics::MeshMetrics;
use crate::codec;
use crate::node_core::{BACKLOG_MAX, Input};
use crate::store::{Buckets, Delta, Digest, Freshness, Summary};

/// What an exchange needs of its node: the core task's inbox, and the counters.
#[derive(Clone)]
pub(crate) struct SyncContext {
    /// The core task, which answers every step.
    pub(crate) core: mpsc::Sender<Command>,
    /// Rounds, deltas and bytes are counted here.
    pub(crate) metrics: Arc<MeshMetrics>,
}

/// The most digest bytes gathered from one peer in one exchange (keys and stamps; about a
/// quarter of the state file's limit, which holds values besides).
pub(crate) const DIGEST_MAX_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum SyncMessage {
    /// Writes too big to ride on gossip, pushed by their writer; no answer.
    Push(Vec<Delta>),
    /// The initiator's summary (one hash per bucket of keys) and freshness.
    Summary {
        summary: Summary,
        freshness: Freshness,
    },
    /// The buckets that differ (none: in sync, the exchange ends) and the responder's
    /// freshness; its digest of those buckets follows in chunks.
    Differ {
        buckets: Buckets,
        freshness: Freshness,
    },
    /// A chunk of a digest.
    Digest(Digest),
    /// A chunk of deltas.
    Deltas(Vec<Delta>),
    /// The end of a sequence of chunks.
    End,
    /// Not anti-entropy: the request that opens an application stream (see
    /// [`super::app`]), served apart from exchanges.
    Application(Vec<u8>),
}

/// What a member stream turned out to be once [`respond`] read its first frame.
pub(crate) enum Opened {
    /// An exchange or a push, served to its end.
    Synced,
    /// An application request, for [`super::app`] to serve.
    Application {
        request: Vec<u8>,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    },
}

/// Decodes one anti-entropy frame as [`respond`] and [`initiate`] read it, without acting
/// on it: the decoder a peer's stream reaches, for fuzzing (the message type stays private).
pub fn decode_frame(bytes: &[u8]) -> Result<(), codec::CodecError> {
    codec::decode_large::<SyncMessage>(bytes).map(drop)
}

async fn ask<T>(
    ctx: &SyncContext,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, FrameError> {
    let (tx, rx) = oneshot::channel();
    ctx.core
        .send(make(tx))
        .await
        .map_err(|_| FrameError::Stream("mesh stopped".into()))?;
    tokio::time::timeout(frame::FRAME_TIMEOUT, rx)
        .await
        .map_err(|_| FrameError::Timeout(frame::FRAME_TIMEOUT))?
        .map_err(|_| FrameError::Stream("mesh stopped".into()))
}

fn tell(ctx: &SyncContext, input: Input) {
    // Freshness is advisory: a full queue only delays the next collection.
    let _ = ctx.core.try_send(Command::Core(input));
}

fn delta_bytes(d: &Delta) -> usize {
    d.key.len() + d.value.as_ref().map_or(0, Vec::len) + d.sig.len() + 32
}

fn digest_bytes(item: &(String, crate::store::Stamp)) -> usize {
    item.0.len() + 24
}

fn count(ctx: &SyncContext, deltas: &[Delta], incoming: bool) {
    let m = &ctx.metrics;
    let bytes: usize = deltas.iter().map(delta_bytes).sum();
    m.sync_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    m.sync_delta_bytes
        .fetch_add(bytes as u64, Ordering::Relaxed);
    let counter = if incoming {
        &m.sync_deltas_in
    } else {
        &m.sync_deltas_out
    };
    counter.fetch_add(deltas.len() as u64, Ordering::Relaxed);
}

/// Counts a digest sent or received, and a summary or a bucket list (`extra` bytes), in
/// the anti-entropy byte counters.
fn count_digest(ctx: &SyncContext, digest: &Digest, extra: usize) {
    let m = &ctx.metrics;
    let digest: usize = digest.iter().map(digest_bytes).sum();
    m.sync_bytes
        .fetch_add((digest + extra) as u64, Ordering::Relaxed);
    m.sync_digest_bytes
        .fetch_add(digest as u64, Ordering::Relaxed);
    m.sync_summary_bytes
        .fetch_add(extra as u64, Ordering::Relaxed);
}

/// Hands deltas to the mesh task, first waiting (up to the frame timeout) while its
/// backlog is over half full, so a big exchange is paced by the gate rather than dropped.
async fn merge(ctx: &SyncContext, deltas: Vec<Delta>) -> Result<(), FrameError> {
    if deltas.is_empty() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + frame::FRAME_TIMEOUT;
    while ctx.metrics.backlog_deltas.load(Ordering::Relaxed) as usize > BACKLOG_MAX / 2 {
        if tokio::time::Instant::now() >= deadline {
            return Err(FrameError::Timeout(frame::FRAME_TIMEOUT));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    count(ctx, &deltas, true);
    ctx.core
        .send(Command::Core(Input::Merge(deltas)))
        .await
        .map_err(|_| FrameError::Stream("mesh stopped".into()))
}

/// The error of an exchange or a push whose peer could not be dialed.
pub(crate) fn unreachable(peer: crate::id::PeerId) -> FrameError {
    FrameError::Stream(format!("cannot reach {peer:?}"))
}

fn unexpected() -> FrameError {
    FrameError::Codec(codec::CodecError::Trailing(0))
}

/// Writes `items` as chunks of about [`frame::CHUNK_BYTES`] (a single larger item goes
/// alone), each wrapped by `wrap`.
async fn write_chunks<T>(
    send: &mut quinn::SendStream,
    items: Vec<T>,
    size: fn(&T) -> usize,
    wrap: fn(Vec<T>) -> SyncMessage,
) -> Result<(), FrameError> {
    let mut chunk = Vec::new();
    let mut bytes = 0;
    for item in items {
        let n = size(&item);
        if !chunk.is_empty() && bytes + n > frame::CHUNK_BYTES {
            frame::write(send, &wrap(std::mem::take(&mut chunk))).await?;
            bytes = 0;
        }
        bytes += n;
        chunk.push(item);
    }
    if !chunk.is_empty() {
        frame::write(send, &wrap(chunk)).await?;
    }
    Ok(())
}

/// Reads chunks until `End`: merges deltas as they come, gathers a digest (up to
/// [`DIGEST_MAX_BYTES`]) and returns it.
async fn read_chunks(
    ctx: &SyncContext,
    recv: &mut quinn::RecvStream,
) -> Result<Digest, FrameError> {
    let mut digest = Digest::new();
    let mut digest_size = 0;
    loop {
        match frame::read(recv).await? {
            SyncMessage::Deltas(deltas) => merge(ctx, deltas).await?,
            SyncMessage::Digest(part) => {
                digest_size += part.iter().map(digest_bytes).sum::<usize>();
                if digest_size > DIGEST_MAX_BYTES {
                    return Err(FrameError::TooBig(digest_size));
                }
                digest.extend(part);
            }
            SyncMessage::End => return Ok(digest),
            _ => return Err(unexpected()),
        }
    }
}

async fn open(
    conn: &quinn::Connection,
) -> Result<(quinn::SendStream, quinn::RecvStream), FrameError> {
    tokio::time::timeout(frame::FRAME_TIMEOUT, conn.open_bi())
        .await
        .map_err(|_| FrameError::Timeout(frame::FRAME_TIMEOUT))?
        .map_err(|e| FrameError::Stream(e.to_string()))
}

/// Runs one exchange with the peer at the end of `conn`, as the initiator.
pub(crate) async fn initiate(
    ctx: &SyncContext,
    conn: &quinn::Connection,
) -> Result<(), FrameError> {
    let (summary, freshness) = ask(ctx, Command::Summary).await?;
    count_digest(ctx, &Vec::new(), summary.len() * 8);
    let (mut send, mut recv) = open(conn).await?;
    frame::write(&mut send, &SyncMessage::Summary { summary, freshness }).await?;
    let SyncMessage::Differ {
        buckets,
        freshness: theirs,
    } = frame::read(&mut recv).await?
    else {
        return Err(unexpected());
    };
    ctx.metrics.sync_rounds.fetch_add(1, Ordering::Relaxed);
    if buckets.is_empty() {
        let _ = send.finish();
        tell(ctx, Input::Synced(theirs));
        return Ok(());
    }
    let digest = read_chunks(ctx, &mut recv).await?;
    count_digest(ctx, &digest, buckets.len() * 4);
    let (missing, mine) = ask(ctx, |reply| Command::Exchange {
        digest,
        buckets,
        peer: theirs,
        reply,
    })
    .await?;
    count(ctx, &missing, false);
    count_digest(ctx, &mine, 0);
    write_chunks(&mut send, missing, delta_bytes, SyncMessage::Deltas).await?;
    write_chunks(&mut send, mine, digest_bytes, SyncMessage::Digest).await?;
    frame::write(&mut send, &SyncMessage::End).await?;
    if !read_chunks(ctx, &mut recv).await?.is_empty() {
        return Err(unexpected());
    }
    let _ = send.finish();
    tell(ctx, Input::Synced(theirs));
    Ok(())
}

/// Pushes `deltas` to the peer at the end of `conn` (writes too big for rumors go
/// straight to every member).
pub(crate) async fn push(
    ctx: &SyncContext,
    conn: &quinn::Connection,
    deltas: Vec<Delta>,
) -> Result<(), FrameError> {
    let (mut send, _recv) = open(conn).await?;
    count(ctx, &deltas, false);
    write_chunks(&mut send, deltas, delta_bytes, SyncMessage::Push).await?;
    let _ = send.finish();
    Ok(())
}

/// Serves one exchange that a peer started; hands back an application request instead.
pub(crate) async fn respond(
    ctx: &SyncContext,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<Opened, FrameError> {
    let (summary, theirs) = match frame::read(&mut recv).await? {
        SyncMessage::Summary { summary, freshness } => {
            count_digest(ctx, &Vec::new(), summary.len() * 8);
            (summary, freshness)
        }
        SyncMessage::Push(deltas) => return merge(ctx, deltas).await.map(|()| Opened::Synced),
        SyncMessage::Application(request) => {
            return Ok(Opened::Application {
                request,
                send,
                recv,
            });
        }
        _ => return Err(unexpected()),
    };
    exchange_rest(ctx, send, recv, summary, theirs)
        .await
        .map(|()| Opened::Synced)
}

/// The responder's part of an exchange after the initiator's summary.
async fn exchange_rest(
    ctx: &SyncContext,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    summary: Summary,
    theirs: Freshness,
) -> Result<(), FrameError> {
    let (buckets, digest, freshness) = ask(ctx, |reply| Command::Differ {
        summary,
        peer: theirs,
        reply,
    })
    .await?;
    count_digest(ctx, &digest, buckets.len() * 4);
    let in_sync = buckets.is_empty();
    frame::write(
        &mut send,
        &SyncMessage::Differ {
            buckets: buckets.clone(),
            freshness,
        },
    )
    .await?;
    if in_sync {
        let _ = send.finish();
        tell(ctx, Input::Synced(theirs));
        return Ok(());
    }
    write_chunks(&mut send, digest, digest_bytes, SyncMessage::Digest).await?;
    frame::write(&mut send, &SyncMessage::End).await?;
    let digest = read_chunks(ctx, &mut recv).await?;
    count_digest(ctx, &digest, 0);
    let missing = ask(ctx, |reply| Command::Missing {
        digest,
        buckets,
        reply,
    })
    .await?;
    count(ctx, &missing, false);
    write_chunks(&mut send, missing, delta_bytes, SyncMessage::Deltas).await?;
    frame::write(&mut send, &SyncMessage::End).await?;
    let _ = send.finish();
    tell(ctx, Input::Synced(theirs));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chunks_stay_under_the_target() {
        let delta = |n: usize| Delta {
            key: "k".into(),
            stamp: crate::store::Stamp {
                clock: 1,
                writer: crate::id::NodeId::from_bytes([1; 16]),
            },
            value: Some(vec![0; n]),
            sig: vec![0; 64],
        };
        let message = SyncMessage::Deltas(vec![delta(frame::CHUNK_BYTES - 200)]);
        let bytes = codec::encode_large(&message).unwrap();
        assert!(bytes.len() < frame::CHUNK_BYTES + 1024);
        assert!(
            codec::encode_large(&SyncMessage::Deltas(vec![delta(frame::FRAME_MAX_BYTES)])).is_err()
        );
    }

    proptest! {
        /// The anti-entropy decoder returns errors on arbitrary bytes, never panics.
        #[test]
        fn sync_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = codec::decode_large::<SyncMessage>(&bytes);
        }
    }
}
