//! Which members this node can reach right now, checked whenever the set of members it
//! sees down changes.
//!
//! Failure detection marks members down one at a time: a host cut off from two others
//! sees the first go down while the second still looks alive, and counting that one as
//! seen would give it a majority it does not have. So a node that is about to reclaim the
//! slots of members it sees down first dials every member it still sees (a QUIC handshake
//! on the join service, with its member certificate; the handshake alone proves the path)
//! and publishes those that answered, with the down set it was checked for. The quorum
//! rule counts only those. A handshake takes a round trip where the path works; where it
//! does not, the check gives up after [`DIAL_TIMEOUT`], and until then the node treats
//! itself as not confirmed (it reclaims nothing).
//!
//! While members are only suspect, the node checks ahead: it dials the members that are
//! neither down nor suspect, for the down set the suspects would make. When they are
//! declared down, that check already stands and the node reclaims at once instead of
//! after a round of handshakes; a suspect that refutes leaves it unused.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::credentials::Credentials;
use super::tls::{ANY_MEMBER_NAME, JOIN_ALPN};
use crate::id::{NodeId, PeerId};
use crate::membership::MemberState;
use crate::node_core::View;

/// How long a dial to a member may take before it counts as unreachable.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Checks ahead start at most this often: under a storm of false suspicions they would
/// otherwise dial every member again and again.
pub const AHEAD_EVERY: Duration = Duration::from_secs(5);
/// Checks ahead run in clusters of at most this many members. A check dials every member,
/// so each suspicion would cost the cluster a handshake per pair of members; a 100-peer
/// soak on 2 cores showed the checks after each `down` alone drive the load past 100.
pub const AHEAD_MEMBERS_MAX: usize = 32;

/// The members that answered, for one set of members seen down.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reachability {
    /// The members seen down when the check started.
    pub down: BTreeSet<NodeId>,
    /// The members that answered a dial then (this node not included).
    pub reachable: BTreeSet<NodeId>,
    /// A check made ahead, while members were suspect: for the down set they would make
    /// (those down then and the suspects), the members that answered.
    pub ahead: Option<(BTreeSet<NodeId>, BTreeSet<NodeId>)>,
}

impl Reachability {
    /// The members that answered a check made for exactly this down set, if one was.
    pub fn answered_for(&self, down: &BTreeSet<NodeId>) -> Option<&BTreeSet<NodeId>> {
        if self.down == *down {
            return Some(&self.reachable);
        }
        self.ahead
            .as_ref()
            .filter(|(ahead, _)| ahead == down)
            .map(|(_, reachable)| reachable)
    }
}

/// The down set the suspects of `view` would make, if any member is suspect (and the
/// cluster is small enough for a check ahead).
fn ahead_set(view: &View) -> Option<BTreeSet<NodeId>> {
    let active = view.members.iter().filter(|m| m.state.is_active()).count();
    (active <= AHEAD_MEMBERS_MAX && view.members.iter().any(|m| m.state == MemberState::Suspect))
        .then(|| {
            view.members
                .iter()
                .filter(|m| matches!(m.state, MemberState::Down | MemberState::Suspect))
                .map(|m| m.peer.node)
                .collect()
        })
}

fn down_set(view: &View) -> BTreeSet<NodeId> {
    view.members
        .iter()
        .filter(|m| m.state == MemberState::Down)
        .map(|m| m.peer.node)
        .collect()
}

/// Whether the member at `peer` completes a handshake within [`DIAL_TIMEOUT`].
async fn answers(endpoint: &quinn::Endpoint, client: quinn::ClientConfig, peer: PeerId) -> bool {
    let Ok(connecting) = endpoint.connect_with(client, peer.addr, ANY_MEMBER_NAME) else {
        return false;
    };
    match tokio::time::timeout(DIAL_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => {
            conn.close(0u32.into(), b"reach");
            true
        }
        // A refusal by the peer's TLS or application is an answer, too: the path works.
        Ok(Err(
            quinn::ConnectionError::ApplicationClosed(_)
            | quinn::ConnectionError::ConnectionClosed(_),
        )) => true,
        Ok(Err(_)) | Err(_) => false,
    }
}

/// Checks the members of `view` in the states `dial` passes.
async fn check(
    endpoint: &quinn::Endpoint,
    client: &quinn::ClientConfig,
    view: &View,
    dial: fn(MemberState) -> bool,
) -> BTreeSet<NodeId> {
    let me = view.me.node;
    let dials = view
        .members
        .iter()
        .filter(|m| m.peer.node != me && dial(m.state))
        .map(|m| {
            let (endpoint, client, peer) = (endpoint.clone(), client.clone(), m.peer);
            async move { answers(&endpoint, client, peer).await.then_some(peer.node) }
        });
    futures_join(dials).await.into_iter().flatten().collect()
}

/// Runs every future to its end, concurrently.
async fn futures_join<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        if let Ok(value) = handle.await {
            out.push(value);
        }
    }
    out
}

/// Watches the view and publishes a fresh [`Reachability`] whenever the down set changes;
/// runs until `shutdown`.
pub(crate) async fn run(
    endpoint: quinn::Endpoint,
    creds: Credentials,
    mut view: watch::Receiver<Arc<View>>,
    publish: watch::Sender<Arc<Reachability>>,
    shutdown: CancellationToken,
) {
    let client = match creds.member_tls().client_config(JOIN_ALPN) {
        Ok(config) => match quinn::crypto::rustls::QuicClientConfig::try_from(config) {
            Ok(crypto) => quinn::ClientConfig::new(Arc::new(crypto)),
            Err(e) => {
                tracing::error!(error = %e, "reachability checks cannot run");
                return;
            }
        },
        Err(e) => {
            tracing::error!(error = %e, "reachability checks cannot run");
            return;
        }
    };
    let mut last_ahead = None;
    loop {
        let current = view.borrow_and_update().clone();
        let down = down_set(&current);
        let last = publish.borrow().clone();
        if !down.is_empty() && last.answered_for(&down).is_none() {
            let reachable = tokio::select! {
                () = shutdown.cancelled() => return,
                reachable = check(&endpoint, &client, &current, MemberState::is_active) => reachable,
            };
            // Published even if the down set moved meanwhile: the next turn checks again.
            publish.send_replace(Arc::new(Reachability {
                down,
                reachable,
                ahead: last.ahead.clone(),
            }));
            continue;
        }
        if let Some(ahead) = ahead_set(&current)
            && last.ahead.as_ref().is_none_or(|(set, _)| *set != ahead)
            && last_ahead.is_none_or(|t: tokio::time::Instant| t.elapsed() >= AHEAD_EVERY)
        {
            last_ahead = Some(tokio::time::Instant::now());
            let reachable = tokio::select! {
                () = shutdown.cancelled() => return,
                reachable = check(&endpoint, &client, &current, |s| s == MemberState::Alive) => reachable,
            };
            publish.send_replace(Arc::new(Reachability {
                ahead: Some((ahead, reachable)),
                ..(*last).clone()
            }));
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = view.changed() => if changed.is_err() { return },
        }
    }
}
