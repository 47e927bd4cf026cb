//! Members' scheduler views ([`NodeView`]), built once per version of the records they
//! come from.
//!
//! Every placement needs a view of every member: its name, labels, drivers, capacity and
//! availability, read from three of its records (`info`, its node spec, what it applied).
//! Building them anew decoded and cloned those records four times per member per reading;
//! while a cluster forms, readings change several times a second on every peer, and at
//! 140 members that was a fifth of the machine. A member's view is kept with the records
//! it was built from (their bytes, and the node spec's stamp, which the applied record
//! answers), and built again only when one of them changes. Bytes, not stamps alone, so
//! that two stores in one process (tests) never share a view they would build apart.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use knit_mesh::NodeId;
use knit_mesh::store::{Stamp, Store};
use knit_scheduler::NodeView;

use crate::cluster::{DOCKER_LABEL, PROCESS_LABEL, Snapshot};
use crate::records::{applied_key, info_key, node_spec_key};

/// Past this many members kept, the memory starts again (a cluster has far fewer).
const KEPT_MAX: usize = 4_096;

/// A member's view, the records it was built from, and their keys.
struct Kept {
    keys: [String; 3],
    records: [Option<Box<[u8]>>; 3],
    spec_stamp: Option<Stamp>,
    view: NodeView,
}

impl Kept {
    /// Whether `store` holds the records this view was built from.
    fn holds(&self, store: &Store) -> bool {
        store.stamp(&self.keys[1]) == self.spec_stamp
            && self
                .keys
                .iter()
                .zip(&self.records)
                .all(|(key, kept)| store.get(key) == kept.as_deref())
    }
}

static KEPT: Mutex<Option<HashMap<NodeId, Kept>>> = Mutex::new(None);

/// `node`'s view in `snapshot`; `None` if its id is not one the scheduler takes.
pub(crate) fn view_of(snapshot: &Snapshot, node: &NodeId) -> Option<NodeView> {
    let store = &snapshot.store;
    let keys = {
        let kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
        match kept.as_ref().and_then(|k| k.get(node)) {
            Some(kept) if kept.holds(store) => return Some(kept.view.clone()),
            Some(kept) => kept.keys.clone(),
            None => [info_key(node), node_spec_key(node), applied_key(node)],
        }
    };
    let records = keys.each_ref().map(|k| store.get(k).map(Box::from));
    let spec_stamp = store.stamp(&keys[1]);
    let view = build(snapshot, node)?;
    let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
    let kept = kept.get_or_insert_with(HashMap::new);
    if kept.len() >= KEPT_MAX {
        kept.clear();
    }
    kept.insert(
        *node,
        Kept {
            keys,
            records,
            spec_stamp,
            view: view.clone(),
        },
    );
    Some(view)
}

fn build(snapshot: &Snapshot, node: &NodeId) -> Option<NodeView> {
    let id = knit_scheduler::NodeId::new(node.to_string()).ok()?;
    let info = snapshot.info(node);
    let mut labels = snapshot.labels(node);
    for (driver, label) in [("docker", DOCKER_LABEL), ("process", PROCESS_LABEL)] {
        if info
            .as_ref()
            .is_some_and(|i| i.drivers.iter().any(|d| d == driver))
        {
            labels.insert(label.to_owned(), "true".to_owned());
        }
    }
    Some(NodeView {
        id,
        name: info.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
        availability: snapshot.availability(node),
        labels,
        capacity: info.map(|i| i.capacity).unwrap_or_default(),
    })
}
