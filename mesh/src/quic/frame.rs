//! Length-prefixed bincode frames on QUIC streams, with size limits and timeouts.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, CodecError};

/// The largest frame accepted: a full store digest or a batch of deltas.
pub const FRAME_MAX_BYTES: usize = 16 * 1024 * 1024;
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

async fn timed<T>(fut: impl Future<Output = Result<T, FrameError>>) -> Result<T, FrameError> {
    tokio::time::timeout(FRAME_TIMEOUT, fut)
        .await
        .map_err(|_| FrameError::Timeout(FRAME_TIMEOUT))?
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
    timed(async {
        send.write_all(&len.to_be_bytes())
            .await
            .map_err(|e| FrameError::Stream(e.to_string()))?;
        send.write_all(&bytes)
            .await
            .map_err(|e| FrameError::Stream(e.to_string()))
    })
    .await
}

/// Reads one frame.
pub async fn read<T: DeserializeOwned>(recv: &mut quinn::RecvStream) -> Result<T, FrameError> {
    timed(async {
        let mut len = [0u8; 4];
        recv.read_exact(&mut len)
            .await
            .map_err(|e| FrameError::Stream(e.to_string()))?;
        let len = u32::from_be_bytes(len) as usize;
        if len > FRAME_MAX_BYTES {
            return Err(FrameError::TooBig(len));
        }
        let mut bytes = vec![0u8; len];
        recv.read_exact(&mut bytes)
            .await
            .map_err(|e| FrameError::Stream(e.to_string()))?;
        Ok(codec::decode_large(&bytes)?)
    })
    .await
}
