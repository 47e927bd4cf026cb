//! Records of the replicated store, decoded once.
//!
//! Every reading of the cluster ([`crate::cluster::Snapshot`]) reads each member's
//! records: the agent twice a second, service discovery, the ingress and the event stream
//! on every change. Decoding them from JSON each time was most of an idle peer's own CPU
//! at 100 members (and, with the hex of the keys, what a store that changes often, as
//! while a cluster forms, spent its time on). A record is decoded once and kept with its
//! bytes; a later reading of the same key gets the value as long as the bytes are the
//! same, whatever store they come from.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Past this many records kept, the memory starts again (a store holds far fewer).
const KEPT_MAX: usize = 16_384;

/// A decoded record and the bytes it came from.
struct Kept {
    bytes: Box<[u8]>,
    value: Arc<dyn Any + Send + Sync>,
}

static KEPT: Mutex<Option<HashMap<String, Kept>>> = Mutex::new(None);

/// `bytes` (the value of `key`) decoded as a `T`: from memory when the same bytes were
/// decoded as a `T` before.
pub(crate) fn decode<T>(key: &str, bytes: &[u8]) -> Result<T, serde_json::Error>
where
    T: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    if let Some(value) = recall::<T>(key, bytes) {
        return Ok(value);
    }
    let value: T = serde_json::from_slice(bytes)?;
    let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
    let kept = kept.get_or_insert_with(HashMap::new);
    if kept.len() >= KEPT_MAX {
        kept.clear();
    }
    kept.insert(
        key.to_owned(),
        Kept {
            bytes: bytes.into(),
            value: Arc::new(value.clone()),
        },
    );
    Ok(value)
}

fn recall<T: Clone + 'static>(key: &str, bytes: &[u8]) -> Option<T> {
    let kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
    let kept = kept.as_ref()?.get(key)?;
    if *kept.bytes != *bytes {
        return None;
    }
    kept.value.downcast_ref::<T>().cloned()
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn the_same_bytes_decode_to_the_same_value_and_new_bytes_anew() {
        let key = "test/decoded/a";
        assert_eq!(decode::<u64>(key, b"7").unwrap(), 7);
        assert_eq!(decode::<u64>(key, b"7").unwrap(), 7);
        assert_eq!(decode::<u64>(key, b"8").unwrap(), 8);
        // Another type under the same key and bytes is decoded as that type.
        assert_eq!(decode::<String>(key, b"\"x\"").unwrap(), "x");
        assert_eq!(decode::<serde_json::Value>(key, b"\"x\"").unwrap(), "x");
        assert!(decode::<u64>(key, b"not json").is_err());
        assert_eq!(decode::<u64>(key, b"8").unwrap(), 8);
    }
}
