//! The store as a file (`state.bin` in the data dir): a magic and format number, then the
//! entries in bincode, up to [`STATE_FILE_MAX_BYTES`] (a store that would not load again
//! is not saved). Format 3 adds the collection horizon and freshness (see `gc`);
//! format 2 files are read with neither. A file from a knit that did not sign its writes (no magic) is still
//! read: its entries come back unsigned, and [`Store::adopt_unsigned`] signs what this node
//! may sign and drops the rest before the store meets any peer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::signature::{Signer, signed_message};
use super::{Entry, Stamp, Store, key_owner};
use crate::codec::{self, CodecError};
use crate::id::NodeId;

/// Opens every file of the current format: "KNITST", a zero, format 3.
const MAGIC: &[u8; 8] = b"KNITST\x00\x03";
/// Format 2: signed entries, no horizon.
const MAGIC_2: &[u8; 8] = b"KNITST\x00\x02";

/// The largest state file written or read.
pub const STATE_FILE_MAX_BYTES: usize = codec::FILE_LIMIT_BYTES;

/// The state file could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "the state file does not parse ({0}); move it aside and restart: the other members send the state again"
)]
pub struct StoreFileError(String);

#[derive(Serialize)]
struct FileRef<'a> {
    me: &'a NodeId,
    entries: &'a BTreeMap<String, Entry>,
    clock: u64,
    horizon_ms: u64,
    synced_ms: u64,
}

#[derive(Deserialize)]
struct File {
    me: NodeId,
    entries: BTreeMap<String, Entry>,
    clock: u64,
    horizon_ms: u64,
    synced_ms: u64,
}

/// Format 2: as format 3 without horizon and freshness.
#[derive(Deserialize)]
struct File2 {
    me: NodeId,
    entries: BTreeMap<String, Entry>,
    clock: u64,
}

/// Format 1: no magic, entries without signatures.
#[derive(Deserialize)]
struct LegacyFile {
    me: NodeId,
    entries: BTreeMap<String, LegacyEntry>,
    clock: u64,
}

#[derive(Deserialize)]
struct LegacyEntry {
    stamp: Stamp,
    value: Option<Vec<u8>>,
}

impl Store {
    /// The bytes to persist; an error if they would exceed [`STATE_FILE_MAX_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let body = codec::encode_file(&FileRef {
            me: &self.me,
            entries: &self.entries,
            clock: self.clock,
            horizon_ms: self.horizon_ms,
            synced_ms: self.synced_ms,
        })?;
        Ok([&MAGIC[..], &body].concat())
    }

    /// Reads what [`Store::encode`] wrote, or a file of the format before signatures (its
    /// entries unsigned: call [`Store::adopt_unsigned`] before merging or serving any).
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreFileError> {
        let fail = |e: CodecError| StoreFileError(e.to_string());
        if let Some(body) = bytes.strip_prefix(&MAGIC[..]) {
            let file: File = codec::decode_file(body).map_err(fail)?;
            return Ok(Self {
                me: file.me,
                entries: file.entries,
                clock: file.clock,
                version: 0,
                horizon_ms: file.horizon_ms,
                synced_ms: file.synced_ms,
                summarised: super::SummaryMemo::default(),
            });
        }
        let (me, entries, clock) = match bytes.strip_prefix(&MAGIC_2[..]) {
            Some(body) => {
                let file: File2 = codec::decode_file(body).map_err(fail)?;
                (file.me, file.entries, file.clock)
            }
            None => {
                let file: LegacyFile = codec::decode_file(bytes).map_err(fail)?;
                let entries = file
                    .entries
                    .into_iter()
                    .map(|(k, e)| {
                        let entry = Entry {
                            stamp: e.stamp,
                            value: e.value,
                            sig: Vec::new(),
                        };
                        (k, entry)
                    })
                    .collect();
                (file.me, entries, file.clock)
            }
        };
        // Older formats collected nothing; they were complete when last written.
        Ok(Self {
            me,
            entries,
            clock,
            version: 0,
            horizon_ms: 0,
            synced_ms: clock >> 16,
            summarised: super::SummaryMemo::default(),
        })
    }

    /// Whether some entry has no signature (read from a file of the format before them).
    pub fn has_unsigned(&self) -> bool {
        self.entries.values().any(|e| e.sig.is_empty())
    }

    /// Makes every unsigned entry one this node vouches for, or drops it: this node's own
    /// records and cluster-wide keys are signed by `signer` (cluster-wide ones taking this
    /// node as writer, with their clock kept, so their order against other writes stays);
    /// other nodes' records are dropped (each owner signs its own again). Returns how many
    /// entries were signed and dropped.
    pub fn adopt_unsigned(&mut self, signer: &dyn Signer) -> (usize, usize) {
        let me = self.me;
        let before = self.entries.len();
        self.entries
            .retain(|k, e| !e.sig.is_empty() || key_owner(k).is_none_or(|owner| owner == me));
        let dropped = before - self.entries.len();
        let mut signed = 0;
        for (key, entry) in self.entries.iter_mut().filter(|(_, e)| e.sig.is_empty()) {
            entry.stamp.writer = me;
            entry.sig = signer.sign(&signed_message(key, &entry.stamp, entry.value.as_deref()));
            signed += 1;
        }
        if signed + dropped > 0 {
            self.version += 1;
        }
        (signed, dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::owned_key;
    use crate::trust::test_keys::{FakeSigner, node};

    #[test]
    fn a_store_round_trips_through_its_file() {
        let signer = FakeSigner(node(1));
        let mut store = Store::new(node(1));
        store.put("svc/web", Some(vec![1]), 5, &signer);
        store.put("svc/old", None, 6, &signer);
        let back = Store::decode(&store.encode().unwrap()).unwrap();
        assert_eq!(back.me(), &node(1));
        assert_eq!(back.digest(None), store.digest(None));
        assert_eq!(
            back.missing_for(&Vec::new(), None),
            store.missing_for(&Vec::new(), None)
        );
        assert!(!back.has_unsigned());
        let err = Store::decode(b"garbage").unwrap_err().to_string();
        assert!(err.contains("move it aside"), "{err}");
    }

    #[test]
    fn what_is_saved_loads_again_past_the_frame_limit() {
        let signer = FakeSigner(node(1));
        let mut store = Store::new(node(1));
        for i in 0..24 {
            store.put(&format!("big/{i}"), Some(vec![7; 1 << 20]), 5, &signer);
        }
        store.mark_synced(9_000);
        let bytes = store.encode().unwrap();
        assert!(
            bytes.len() > codec::LARGE_LIMIT_BYTES,
            "{} bytes",
            bytes.len()
        );
        let back = Store::decode(&bytes).unwrap();
        assert_eq!(back.summary(), store.summary());
        assert_eq!(back.freshness(), store.freshness());
    }

    #[test]
    fn a_file_from_before_signatures_is_read_and_adopted() {
        #[derive(Serialize)]
        struct OldEntry {
            stamp: Stamp,
            value: Option<Vec<u8>>,
        }
        #[derive(Serialize)]
        struct OldStore {
            me: NodeId,
            entries: BTreeMap<String, OldEntry>,
            clock: u64,
        }
        let stamp = |writer| Stamp {
            clock: 7 << 16,
            writer,
        };
        let old = OldStore {
            me: node(1),
            entries: BTreeMap::from([
                (
                    "svc/web".to_owned(),
                    OldEntry {
                        stamp: stamp(node(2)),
                        value: Some(vec![1]),
                    },
                ),
                (
                    owned_key(&node(1), "info"),
                    OldEntry {
                        stamp: stamp(node(1)),
                        value: Some(vec![2]),
                    },
                ),
                (
                    owned_key(&node(2), "info"),
                    OldEntry {
                        stamp: stamp(node(2)),
                        value: Some(vec![3]),
                    },
                ),
            ]),
            clock: 7 << 16,
        };
        let mut store = Store::decode(&codec::encode_file(&old).unwrap()).unwrap();
        assert!(store.has_unsigned());
        assert_eq!(store.get("svc/web"), Some(&[1][..]));
        let signer = FakeSigner(node(1));
        assert_eq!(store.adopt_unsigned(&signer), (2, 1));
        assert!(!store.has_unsigned());
        assert_eq!(
            store.get(&owned_key(&node(2), "info")),
            None,
            "only its owner vouches for it"
        );
        let web = store.stamp("svc/web").unwrap();
        assert_eq!(
            (web.clock, web.writer),
            (7 << 16, node(1)),
            "clock kept, signed by this node"
        );
        for delta in store.missing_for(&Vec::new(), None) {
            assert_eq!(delta.sig, signer.sign(&delta.signed_message()));
        }
    }
}
