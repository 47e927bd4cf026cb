//! The wire codec for foca's packets: bincode 2 over serde, with limits.

use bytes::{Buf, BufMut};
use foca::{Header, Member};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::id::PeerId;

/// Decoding or encoding a gossip packet failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes are not a valid packet.
    #[error("malformed packet: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// The value could not be encoded (too big for the buffer, most often).
    #[error("cannot encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// A frame had bytes after its value.
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
    /// The value encodes to more bytes than its readers accept.
    #[error("{bytes} bytes exceed the limit of {limit} bytes")]
    TooLarge {
        /// Bytes the encoded value needs.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The output buffer has no room; it was left untouched.
    #[error("output buffer too small: need {needed} bytes, have {available}")]
    BufferTooSmall {
        /// Bytes the encoded value needs.
        needed: usize,
        /// Bytes the buffer had.
        available: usize,
    },
}

/// Packets never exceed this, so a decoder never allocates more than this much.
const DECODE_LIMIT_BYTES: usize = 64 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT_BYTES>()
}

/// Encodes a value with the mesh's bincode configuration.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(bincode::serde::encode_to_vec(value, config())?)
}

/// Decodes a value from the front of `bytes`; returns it and how many bytes it used.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), CodecError> {
    Ok(bincode::serde::decode_from_slice(bytes, config())?)
}

/// Frames on streams may be larger than packets, up to this. Writers refuse what readers
/// would refuse: [`encode_large`] checks the same limit that [`decode_large`] applies.
pub const LARGE_LIMIT_BYTES: usize = 16 * 1024 * 1024;

fn large_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LARGE_LIMIT_BYTES>()
}

/// The state file may be up to this large; [`encode_file`] refuses more, so whatever a
/// member saves it can load again.
pub const FILE_LIMIT_BYTES: usize = 1024 * 1024 * 1024;

fn file_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<FILE_LIMIT_BYTES>()
}

/// What bincode may claim per byte of input for a valid value: a primitive's size in memory
/// (16 for a `u128`) for as little as one varint byte; a string's declared length for as
/// many bytes.
const CLAIMS_PER_INPUT_BYTE: usize = 16;

/// Decodes the value at the front of `bytes` under `LIMIT`, and under no more than a valid
/// value of `bytes.len()` bytes could claim. bincode claims a string's declared length, and
/// allocates it, before it reads the string: under the full limit alone, a 29-byte state
/// file that declared a 768 MiB string made the decoder allocate 768 MiB.
fn decode_bounded<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
) -> Result<(T, usize), CodecError> {
    use bincode::config::standard;
    use bincode::serde::decode_from_slice;
    let claims = bytes.len().saturating_mul(CLAIMS_PER_INPUT_BYTE);
    let decoded = if claims <= 64 << 10 && (64 << 10) < LIMIT {
        decode_from_slice(bytes, standard().with_limit::<{ 64 << 10 }>())
    } else if claims <= 1 << 20 && (1 << 20) < LIMIT {
        decode_from_slice(bytes, standard().with_limit::<{ 1 << 20 }>())
    } else if claims <= 16 << 20 && (16 << 20) < LIMIT {
        decode_from_slice(bytes, standard().with_limit::<{ 16 << 20 }>())
    } else if claims <= 256 << 20 && (256 << 20) < LIMIT {
        decode_from_slice(bytes, standard().with_limit::<{ 256 << 20 }>())
    } else {
        decode_from_slice(bytes, standard().with_limit::<LIMIT>())
    };
    Ok(decoded?)
}

fn within<const LIMIT: usize>(bytes: Vec<u8>) -> Result<Vec<u8>, CodecError> {
    if bytes.len() > LIMIT {
        return Err(CodecError::TooLarge {
            bytes: bytes.len(),
            limit: LIMIT,
        });
    }
    Ok(bytes)
}

fn whole<T>((value, used): (T, usize), bytes: &[u8]) -> Result<T, CodecError> {
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

/// Encodes a value that travels on a stream, not in a packet; refuses one larger than
/// [`LARGE_LIMIT_BYTES`].
pub fn encode_large<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    within::<LARGE_LIMIT_BYTES>(bincode::serde::encode_to_vec(value, large_config())?)
}

/// Decodes a whole stream frame; trailing bytes are an error.
pub fn decode_large<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    whole(decode_bounded::<T, LARGE_LIMIT_BYTES>(bytes)?, bytes)
}

/// Encodes a file's body; refuses one larger than [`FILE_LIMIT_BYTES`].
pub fn encode_file<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    within::<FILE_LIMIT_BYTES>(bincode::serde::encode_to_vec(value, file_config())?)
}

/// Decodes a whole file's body; trailing bytes are an error.
pub fn decode_file<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    whole(decode_bounded::<T, FILE_LIMIT_BYTES>(bytes)?, bytes)
}

fn encode_into<T: Serialize>(value: &T, mut buf: impl BufMut) -> Result<(), CodecError> {
    let bytes = encode(value)?;
    if buf.remaining_mut() < bytes.len() {
        return Err(CodecError::BufferTooSmall {
            needed: bytes.len(),
            available: buf.remaining_mut(),
        });
    }
    buf.put_slice(&bytes);
    Ok(())
}

fn decode_from<T: DeserializeOwned>(mut buf: impl Buf) -> Result<T, CodecError> {
    let (value, used) = decode(buf.chunk())?;
    buf.advance(used);
    Ok(value)
}

/// foca's codec for [`PeerId`] packets.
#[derive(Debug, Default, Clone, Copy)]
pub struct WireCodec;

impl foca::Codec<PeerId> for WireCodec {
    type Error = CodecError;

    fn encode_header(
        &mut self,
        header: &Header<PeerId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        encode_into(header, buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<PeerId>, Self::Error> {
        decode_from(buf)
    }

    fn encode_member(
        &mut self,
        member: &Member<PeerId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        encode_into(member, buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<PeerId>, Self::Error> {
        decode_from(buf)
    }
}

/// The sender a gossip packet claims, read from its header without handling the packet.
///
/// The transport checks it against the certificate of the connection the packet came over.
pub fn packet_source(packet: &[u8]) -> Result<PeerId, CodecError> {
    let header: Header<PeerId> = decode_from(packet)?;
    Ok(header.src)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::NodeId;
    use foca::Codec;
    use proptest::prelude::*;

    fn peer() -> PeerId {
        PeerId {
            node: NodeId::from_bytes([7; 16]),
            addr: "127.0.0.1:1".parse().unwrap(),
            epoch: 3,
        }
    }

    #[test]
    fn header_round_trips() {
        let header = Header {
            src: peer(),
            src_incarnation: 2,
            dst: peer(),
            message: foca::Message::Ping(9),
        };
        let mut buf = Vec::new();
        WireCodec.encode_header(&header, &mut buf).unwrap();
        let back = WireCodec.decode_header(&buf[..]).unwrap();
        assert_eq!(back, header);
        assert_eq!(packet_source(&buf).unwrap(), peer());
    }

    #[test]
    fn too_small_buffer_is_left_untouched() {
        let member = Member::alive(peer());
        let mut storage = [0u8; 4];
        let mut buf = &mut storage[..];
        let err = WireCodec.encode_member(&member, &mut buf).unwrap_err();
        assert!(matches!(err, CodecError::BufferTooSmall { .. }));
        assert_eq!(storage, [0u8; 4]);
    }

    /// Found by fuzzing: a 29-byte `state.bin` declaring a 768 MiB string made the decoder
    /// allocate 768 MiB before it found the bytes missing.
    #[test]
    fn declared_lengths_beyond_the_input_are_refused_before_allocating() {
        // A string declared 0x3000_0000 bytes long (varint: 0xfc, then a u32), in 5 bytes.
        let declared = [0xfc, 0x00, 0x00, 0x00, 0x30];
        let limit = |r: Result<String, CodecError>| {
            matches!(
                r,
                Err(CodecError::Decode(
                    bincode::error::DecodeError::LimitExceeded
                ))
            )
        };
        assert!(limit(decode_file(&declared)));
        assert!(limit(decode_large(&declared)));
        // Valid values still read, whatever they claim per byte: one varint byte per u64,
        // and strings past the smaller limits.
        let summary = vec![0u64; 64];
        let back: Vec<u64> = decode_large(&encode_large(&summary).unwrap()).unwrap();
        assert_eq!(back, summary);
        let text = "x".repeat(3 << 20);
        let back: String = decode_file(&encode_file(&text).unwrap()).unwrap();
        assert_eq!(back, text);
        let back: String = decode_large(&encode_large(&text).unwrap()).unwrap();
        assert_eq!(back, text);
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = WireCodec.decode_header(&bytes[..]);
            let _ = WireCodec.decode_member(&bytes[..]);
            let _ = packet_source(&bytes);
        }
    }
}
