//! Anti-entropy over a QUIC stream: the initiator sends its summary (a hash per bucket of
//! keys); the responder answers with the buckets that differ and its digest of them (none:
//! done, 64 hashes each way); the initiator sends what the responder lacks there and its own
//! digest of them; the responder sends back what the initiator lacks. Whatever rumors
//! missed is repaired; a new member is filled in one round.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::frame::{self, FrameError};
use super::links::Links;
use super::mesh::Input;
use crate::codec;
use crate::id::PeerId;
use crate::store::{Buckets, Delta, Digest, Summary};

#[derive(Debug, Serialize, Deserialize)]
enum SyncMessage {
    /// A write too big to ride on gossip, pushed by its writer; no answer.
    Push(Vec<Delta>),
    /// The initiator's summary: one hash per bucket of keys.
    Summary(Summary),
    /// The buckets that differ (none: in sync, the exchange ends) and the responder's
    /// digest of them.
    Differ { buckets: Buckets, digest: Digest },
    /// What the responder lacks, and the initiator's digest of the differing buckets.
    Reply { deltas: Vec<Delta>, digest: Digest },
    /// What the initiator lacks.
    Deltas(Vec<Delta>),
}

/// Decodes one anti-entropy frame as [`respond`] and [`initiate`] read it, without acting
/// on it: the decoder a peer's stream reaches, for fuzzing (the message type stays private).
pub fn decode_frame(bytes: &[u8]) -> Result<(), codec::CodecError> {
    codec::decode_large::<SyncMessage>(bytes).map(drop)
}

async fn ask<T>(
    links: &Links,
    make: impl FnOnce(oneshot::Sender<T>) -> Input,
) -> Result<T, FrameError> {
    let (tx, rx) = oneshot::channel();
    links
        .core
        .send(make(tx))
        .await
        .map_err(|_| FrameError::Stream("mesh stopped".into()))?;
    tokio::time::timeout(frame::FRAME_TIMEOUT, rx)
        .await
        .map_err(|_| FrameError::Timeout(frame::FRAME_TIMEOUT))?
        .map_err(|_| FrameError::Stream("mesh stopped".into()))
}

fn count(links: &Links, deltas: &[Delta], incoming: bool) {
    let m = &links.metrics;
    let bytes: usize = deltas
        .iter()
        .map(|d| d.key.len() + d.value.as_ref().map_or(0, Vec::len) + d.sig.len() + 32)
        .sum();
    m.sync_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    let counter = if incoming {
        &m.sync_deltas_in
    } else {
        &m.sync_deltas_out
    };
    counter.fetch_add(deltas.len() as u64, Ordering::Relaxed);
}

/// Counts a digest sent or received (and a summary: `extra` bytes) in the anti-entropy
/// byte counter.
fn count_digest(links: &Links, digest: &Digest, extra: usize) {
    let bytes: usize = digest.iter().map(|(k, _)| k.len() + 24).sum::<usize>() + extra;
    links
        .metrics
        .sync_bytes
        .fetch_add(bytes as u64, Ordering::Relaxed);
}

async fn merge(links: &Links, deltas: Vec<Delta>) -> Result<(), FrameError> {
    if deltas.is_empty() {
        return Ok(());
    }
    count(links, &deltas, true);
    links
        .core
        .send(Input::Merge(deltas))
        .await
        .map_err(|_| FrameError::Stream("mesh stopped".into()))
}

fn unexpected() -> FrameError {
    FrameError::Codec(codec::CodecError::Trailing(0))
}

/// Runs one exchange with `peer`, as the initiator.
pub(crate) async fn initiate(links: &Arc<Links>, peer: PeerId) -> Result<(), FrameError> {
    let conn = links
        .connection(peer)
        .await
        .ok_or_else(|| FrameError::Stream(format!("cannot reach {peer:?}")))?;
    let summary = ask(links, Input::Summary).await?;
    count_digest(links, &Vec::new(), summary.len() * 8);
    let (mut send, mut recv) = tokio::time::timeout(frame::FRAME_TIMEOUT, conn.open_bi())
        .await
        .map_err(|_| FrameError::Timeout(frame::FRAME_TIMEOUT))?
        .map_err(|e| FrameError::Stream(e.to_string()))?;
    frame::write(&mut send, &SyncMessage::Summary(summary)).await?;
    let SyncMessage::Differ { buckets, digest } = frame::read(&mut recv).await? else {
        return Err(unexpected());
    };
    count_digest(links, &digest, buckets.len() * 4);
    links.metrics.sync_rounds.fetch_add(1, Ordering::Relaxed);
    if buckets.is_empty() {
        let _ = send.finish();
        return Ok(());
    }
    let (theirs, mine) = ask(links, |reply| Input::Exchange {
        digest,
        buckets,
        reply,
    })
    .await?;
    count(links, &theirs, false);
    count_digest(links, &mine, 0);
    frame::write(
        &mut send,
        &SyncMessage::Reply {
            deltas: theirs,
            digest: mine,
        },
    )
    .await?;
    let SyncMessage::Deltas(deltas) = frame::read(&mut recv).await? else {
        return Err(unexpected());
    };
    let _ = send.finish();
    merge(links, deltas).await
}

/// Pushes `deltas` to `peer` (writes too big for rumors go straight to every member).
pub(crate) async fn push(
    links: &Arc<Links>,
    peer: PeerId,
    deltas: Vec<Delta>,
) -> Result<(), FrameError> {
    let conn = links
        .connection(peer)
        .await
        .ok_or_else(|| FrameError::Stream(format!("cannot reach {peer:?}")))?;
    let (mut send, _recv) = tokio::time::timeout(frame::FRAME_TIMEOUT, conn.open_bi())
        .await
        .map_err(|_| FrameError::Timeout(frame::FRAME_TIMEOUT))?
        .map_err(|e| FrameError::Stream(e.to_string()))?;
    count(links, &deltas, false);
    frame::write(&mut send, &SyncMessage::Push(deltas)).await?;
    let _ = send.finish();
    Ok(())
}

/// Serves one exchange that a peer started.
pub(crate) async fn respond(
    links: &Links,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<(), FrameError> {
    let summary = match frame::read(&mut recv).await? {
        SyncMessage::Summary(summary) => {
            count_digest(links, &Vec::new(), summary.len() * 8);
            summary
        }
        SyncMessage::Push(deltas) => return merge(links, deltas).await,
        _ => return Err(unexpected()),
    };
    let (buckets, digest) = ask(links, |reply| Input::Differ { summary, reply }).await?;
    count_digest(links, &digest, buckets.len() * 4);
    let in_sync = buckets.is_empty();
    frame::write(
        &mut send,
        &SyncMessage::Differ {
            buckets: buckets.clone(),
            digest,
        },
    )
    .await?;
    if in_sync {
        let _ = send.finish();
        return Ok(());
    }
    let SyncMessage::Reply { deltas, digest } = frame::read(&mut recv).await? else {
        return Err(unexpected());
    };
    count_digest(links, &digest, 0);
    merge(links, deltas).await?;
    let theirs = ask(links, |reply| Input::Missing {
        digest,
        buckets,
        reply,
    })
    .await?;
    count(links, &theirs, false);
    frame::write(&mut send, &SyncMessage::Deltas(theirs)).await?;
    let _ = send.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The anti-entropy decoder returns errors on arbitrary bytes, never panics.
        #[test]
        fn sync_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = codec::decode_large::<SyncMessage>(&bytes);
        }
    }
}
