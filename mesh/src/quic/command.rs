//! What the transport's tasks hand the core task, over its bounded channel: inputs for
//! the node core, and the requests that wait for an answer (a local write's stamp, the
//! steps of an anti-entropy exchange, the goodbye).

use tokio::sync::oneshot;

use crate::node_core::Input;
use crate::store::{Buckets, Delta, Digest, Freshness, Stamp, Summary};

/// One message to the core task.
pub(crate) enum Command {
    /// An input that needs no answer.
    Core(Input),
    /// A local write; answered with its stamp.
    Put {
        key: String,
        value: Option<Vec<u8>>,
        reply: oneshot::Sender<Stamp>,
    },
    /// This node's bucket summary and freshness, to start an exchange.
    Summary(oneshot::Sender<(Summary, Freshness)>),
    /// The buckets where a peer's `summary` differs, this node's digest of them and its
    /// freshness, after meeting the peer's.
    Differ {
        summary: Summary,
        peer: Freshness,
        reply: oneshot::Sender<(Buckets, Digest, Freshness)>,
    },
    /// What a peer with `digest` of `buckets` lacks, and this node's digest of them, after
    /// meeting the peer's freshness.
    Exchange {
        digest: Digest,
        buckets: Buckets,
        peer: Freshness,
        reply: oneshot::Sender<(Vec<Delta>, Digest)>,
    },
    /// What a peer with `digest` of `buckets` lacks.
    Missing {
        digest: Digest,
        buckets: Buckets,
        reply: oneshot::Sender<Vec<Delta>>,
    },
    /// Leave the cluster; answered once the goodbye is handed to the transport.
    Leave(oneshot::Sender<()>),
}
