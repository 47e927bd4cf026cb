//! Length-prefixed bincode frames on QUIC streams, with size limits and timeouts.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, CodecError};

/// The largest frame written or read: the codec's stream limit, so a reader accepts every
/// frame a writer sends. Big exchanges go in chunks of [`CHUNK_BYTES`]; only a single
/// write larger than that makes a frame this big.
pub const FRAME_MAX_BYTES: usize = codec::LARGE_LIMIT_BYTES;
/// What a chunk of deltas or digest aims at: many frames, none near the limit.
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// A frame's bytes are read in pieces of at most this, as they arrive: a declared length
/// costs nothing until the bytes come.
const READ_PIECE_BYTES: usize = 64 * 1024;
/// How long a peer may take to send a frame or take one.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// A stream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer did not answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The stream broke.
    #[error("stream: {0}")]
    Stream(String),
    /// The frame is larger than [`FRAME_MAX_BYTES`].
    #[error("frame of {0} bytes exceeds the limit")]
    TooBig(usize),
    /// The frame does not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

async fn timed<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, FrameError>>,
) -> Result<T, FrameError> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| FrameError::Timeout(timeout))?
}

/// Writes one frame.
pub async fn write<T: Serialize>(
    send: &mut quinn::SendStream,
    value: &T,
) -> Result<(), FrameError> {
    let bytes = codec::encode_large(value)?;
    if bytes.len() > FRAME_MAX_BYTES {
        return Err(FrameError::TooBig(bytes.len()));
    }
    let len = u32::try_from(bytes.len()).map_err(|_| FrameError::TooBig(bytes.len()))?;
    timed(FRAME_TIMEOUT, async {
        send.write_all(&len.to_be_bytes())
            .await
            .map_err(|e| FrameError::Stream(e.to_string()))?;
        send.write_all(&bytes)
            .await
            .map_err(|e| FrameError::Stream(e.to_string()))
    })
    .await
}

/// Reads one frame within [`FRAME_TIMEOUT`].
pub async fn read<T: DeserializeOwned>(recv: &mut quinn::RecvStream) -> Result<T, FrameError> {
    read_within(recv, FRAME_TIMEOUT).await
}

/// Reads one frame within `timeout`. Memory grows with the bytes that arrived, never
/// with the length the peer declared.
pub async fn read_within<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    timeout: Duration,
) -> Result<T, FrameError> {
    read_within_max(recv, timeout, FRAME_MAX_BYTES).await
}

/// Reads one frame of at most `max_bytes` within `timeout`.
pub async fn read_within_max<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    timeout: Duration,
    max_bytes: usize,
) -> Result<T, FrameError> {
    timed(timeout, async {
        let mut len = [0u8; 4];
        recv.read_exact(&mut len)
            .await
            .map_err(|e| FrameError::Stream(e.to_string()))?;
        read_body(recv, u32::from_be_bytes(len) as usize, max_bytes).await
    })
    .await
}

/// Reads one frame of at most `max_bytes`, or `None` at the end of the stream. The wait for
/// the frame to begin has no timeout of its own (the connection's idle timeout ends it
/// when the peer is gone); the rest of the frame must come within [`FRAME_TIMEOUT`].
pub async fn read_after_idle<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max_bytes: usize,
) -> Result<Option<T>, FrameError> {
    let mut first = [0u8; 1];
    match recv.read(&mut first).await {
        Ok(Some(0)) => return Err(FrameError::Stream("empty read".into())),
        Ok(Some(_)) => {}
        Ok(None) => return Ok(None),
        Err(e) => return Err(FrameError::Stream(e.to_string())),
    }
    timed(FRAME_TIMEOUT, async {
        let mut rest = [0u8; 3];
        recv.read_exact(&mut rest)
            .await
            .map_err(|e| FrameError::Stream(e.to_string()))?;
        let len = u32::from_be_bytes([first[0], rest[0], rest[1], rest[2]]) as usize;
        read_body(recv, len, max_bytes).await.map(Some)
    })
    .await
}

/// Reads a frame's `len` bytes, refusing more than `max_bytes` (and the frame limit).
async fn read_body<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    len: usize,
    max_bytes: usize,
) -> Result<T, FrameError> {
    if len > FRAME_MAX_BYTES.min(max_bytes) {
        return Err(FrameError::TooBig(len));
    }
    let mut bytes = Vec::new();
    while bytes.len() < len {
        let piece = (len - bytes.len()).min(READ_PIECE_BYTES);
        match recv.read_chunk(piece, true).await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk.bytes),
            Ok(None) => return Err(FrameError::Stream("stream ended inside a frame".into())),
            Err(e) => return Err(FrameError::Stream(e.to_string())),
        }
    }
    Ok(codec::decode_large(&bytes)?)
}
