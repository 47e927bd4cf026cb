//! Which members this node can reach right now, checked whenever the set of members it
//! sees down changes.
//!
//! Failure detection marks members down one at a time: a host cut off from two others
//! sees the first go down while the second still looks alive, and counting that one as
//! seen would give it a majority it does not have. So a node that is about to reclaim the
//! slots of members it sees down first checks the members it still sees and publishes
//! those that answered, with the down set it was checked for. The quorum rule counts only
//! those. Until the check answers, the node treats itself as not confirmed (it reclaims
//! nothing).
//!
//! A member answers if a packet comes from it after the check started ([`Heard`]: gossip
//! is busy right after a `down`). Members not heard from are asked: a ping in foca's
//! format ([`Input::Poke`]), which a live member acks over the connection the members
//! already hold (a QUIC handshake only where none is open). Questions go out in an order
//! of this node's own, as many at a time as answers are still needed (and a few more),
//! and the check stops as soon as a majority of the members known have answered: that is
//! all the quorum rule needs. Asking every member from every member with a new handshake
//! each, as the check first did, cost a cluster of `n` members `n²` handshakes per `down`,
//! which a 100-peer cluster on two cores did not survive. A member silent for
//! [`ANSWER_TIMEOUT`] did not answer.
//!
//! While members are only suspect, the node checks ahead: it checks the members that are
//! neither down nor suspect, for the down set the suspects would make. When they are
//! declared down, that check already stands and the node reclaims at once instead of
//! after a round of questions; a suspect that refutes leaves it unused.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::command::Command;
use crate::id::{NodeId, PeerId};
use crate::lifeguard::checker_rank;
use crate::membership::MemberState;
use crate::node_core::{Input, View};
use crate::store::Store;

/// How long an asked member may stay silent before it counts as unreachable.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// Members asked beyond the answers still needed, so that a silent few do not hold a
/// check up for [`ANSWER_TIMEOUT`].
pub const SPARE_QUESTIONS: usize = 4;
/// Checks ahead start at most this often: under a storm of false suspicions they would
/// otherwise check the cluster again and again.
pub const AHEAD_EVERY: Duration = Duration::from_secs(5);
/// Checks ahead run in clusters of at most this many members: each suspicion would
/// otherwise cost every member a check, and a 100-peer soak on 2 cores showed checks
/// alone drive the load past 100.
pub const AHEAD_MEMBERS_MAX: usize = 32;

/// The members that answered one check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answered {
    /// The members seen down (or, ahead, down and suspect) when the check started.
    pub down: BTreeSet<NodeId>,
    /// The members that answered (this node not included).
    pub reachable: BTreeSet<NodeId>,
    /// Whether every member was checked. A check that stopped at a majority of the
    /// members known stands only while they remain a majority.
    pub complete: bool,
}

/// The members that answered, for one set of members seen down.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reachability {
    /// The check for the members seen down.
    pub last: Answered,
    /// A check made ahead, while members were suspect: for the down set they would make
    /// (those down then and the suspects).
    pub ahead: Option<Answered>,
}

impl Reachability {
    /// The check made for exactly this down set, if one was.
    pub fn answered_for(&self, down: &BTreeSet<NodeId>) -> Option<&Answered> {
        if self.last.down == *down {
            return Some(&self.last);
        }
        self.ahead.as_ref().filter(|ahead| ahead.down == *down)
    }
}

impl Answered {
    /// Whether this check settles the quorum among the members known (counted by `known`
    /// only if it must be): it checked every member, or those that answered (and this
    /// node) are a majority of them.
    fn settles(&self, known: impl FnOnce() -> usize) -> bool {
        self.complete || self.reachable.len() >= answers_needed(known())
    }
}

/// How many others must answer for this node and them to be a majority of `known`.
pub fn answers_needed(known: usize) -> usize {
    known / 2
}

/// When a packet last came from each member (on its gossip connection, its source
/// checked), and a signal for each one that comes.
#[derive(Debug, Default)]
pub(crate) struct Heard {
    at: Mutex<HashMap<NodeId, Instant>>,
    news: Notify,
}

impl Heard {
    pub(crate) fn note(&self, node: NodeId) {
        self.lock().insert(node, Instant::now());
        self.news.notify_waiters();
    }

    fn since(&self, node: &NodeId, start: Instant) -> bool {
        self.lock().get(node).is_some_and(|at| *at >= start)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Instant>> {
        self.at.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The members the quorum rule counts, as far as the mesh can tell: those in `view` not
/// `left`, and those with records of their own in `store` (a restarted node's members
/// not heard from yet). It may count more than the quorum rule does, never fewer, so a
/// check that stops at a majority of these is a majority there too.
fn known_members(view: &View, store: &Store) -> usize {
    let in_view: BTreeSet<NodeId> = view.members.iter().map(|m| m.peer.node).collect();
    let active = view
        .members
        .iter()
        .filter(|m| m.state != MemberState::Left)
        .count();
    active + store.owners().difference(&in_view).count()
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

/// What one check needs.
struct Checker {
    /// The core task, which sends the questions.
    core: mpsc::Sender<Command>,
    heard: Arc<Heard>,
}

impl Checker {
    /// Checks the members of `view` in the states `ask` passes, for `down`, until
    /// [`answers_needed`] of `known` members have answered or every one was asked.
    ///
    /// A member answers if any packet comes from it after the check started. Members not
    /// heard from yet are asked (a ping through the core, [`Input::Poke`]), as many at a
    /// time as answers are still needed plus [`SPARE_QUESTIONS`], in an order of this
    /// node's own; one that stays silent for [`ANSWER_TIMEOUT`] did not answer.
    async fn check(
        &self,
        view: &View,
        down: BTreeSet<NodeId>,
        known: usize,
        ask: fn(MemberState) -> bool,
    ) -> Answered {
        let start = Instant::now();
        let me = view.me.node;
        let mut members: Vec<PeerId> = view
            .members
            .iter()
            .filter(|m| m.peer.node != me && ask(m.state))
            .map(|m| m.peer)
            .collect();
        // Each member asks in its own order, so that no member takes every question.
        members.sort_by_key(|peer| checker_rank(&me, &peer.node));
        let mut unasked: VecDeque<PeerId> = members.into();
        let mut asked: Vec<(PeerId, Instant)> = Vec::new();
        let mut reachable = BTreeSet::new();
        let needed = answers_needed(known);
        loop {
            // Armed before looking, so that a packet between the look and the wait wakes it.
            let news = self.heard.news.notified();
            tokio::pin!(news);
            news.as_mut().enable();
            let now = Instant::now();
            let heard = |peer: &PeerId| self.heard.since(&peer.node, start);
            reachable.extend(unasked.iter().filter(|p| heard(p)).map(|p| p.node));
            reachable.extend(asked.iter().filter(|(p, _)| heard(p)).map(|(p, _)| p.node));
            unasked.retain(|p| !reachable.contains(&p.node));
            asked.retain(|(p, at)| {
                !reachable.contains(&p.node) && now.duration_since(*at) < ANSWER_TIMEOUT
            });
            if reachable.len() >= needed || (unasked.is_empty() && asked.is_empty()) {
                let complete = unasked.is_empty() && asked.is_empty();
                return Answered {
                    down,
                    reachable,
                    complete,
                };
            }
            let wanted = needed - reachable.len() + SPARE_QUESTIONS;
            let more = wanted.saturating_sub(asked.len()).min(unasked.len());
            let batch: Vec<PeerId> = unasked.drain(..more).collect();
            if !batch.is_empty() {
                asked.extend(batch.iter().map(|p| (*p, now)));
                let question = self.core.send(Command::Core(Input::Poke(batch)));
                // A core too busy to take the question within the timeout: those asked
                // count as silent.
                let _ = tokio::time::timeout(ANSWER_TIMEOUT, question).await;
            }
            let Some(first_due) = asked.iter().map(|(_, at)| *at + ANSWER_TIMEOUT).min() else {
                continue;
            };
            tokio::select! {
                () = news => {}
                () = tokio::time::sleep_until(first_due) => {}
            }
        }
    }
}

/// Watches the view and publishes a fresh [`Reachability`] whenever the down set changes
/// (or the members known grow past what a check that stopped early settles); runs until
/// `shutdown`.
pub(crate) async fn run(
    core: mpsc::Sender<Command>,
    heard: Arc<Heard>,
    mut view: watch::Receiver<Arc<View>>,
    mut store: watch::Receiver<Arc<Store>>,
    publish: watch::Sender<Arc<Reachability>>,
    shutdown: CancellationToken,
) {
    let checker = Checker { core, heard };
    let mut last_ahead = None;
    loop {
        let current = view.borrow_and_update().clone();
        let down = down_set(&current);
        let last = publish.borrow().clone();
        // Counted only when a check needs it: the store changes far more often than the
        // members seen down.
        store.borrow_and_update();
        let known = || known_members(&current, &store.borrow());
        if !down.is_empty()
            && last
                .answered_for(&down)
                .is_none_or(|answered| !answered.settles(known))
        {
            let known = known();
            let answered = tokio::select! {
                () = shutdown.cancelled() => return,
                answered = checker.check(&current, down, known, MemberState::is_active) => answered,
            };
            // Published even if the down set moved meanwhile: the next turn checks again.
            publish.send_replace(Arc::new(Reachability {
                last: answered,
                ahead: last.ahead.clone(),
            }));
            continue;
        }
        if let Some(ahead) = ahead_set(&current)
            && last
                .ahead
                .as_ref()
                .is_none_or(|answered| answered.down != ahead)
            && last_ahead.is_none_or(|t: Instant| t.elapsed() >= AHEAD_EVERY)
        {
            last_ahead = Some(Instant::now());
            let known = known();
            let answered = tokio::select! {
                () = shutdown.cancelled() => return,
                answered = checker.check(&current, ahead, known, |s| s == MemberState::Alive) => answered,
            };
            publish.send_replace(Arc::new(Reachability {
                ahead: Some(answered),
                ..(*last).clone()
            }));
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = view.changed() => if changed.is_err() { return },
            changed = store.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{Connection, MemberRecord};
    use crate::profile::Profile;

    fn peer(b: u8) -> PeerId {
        PeerId {
            node: NodeId::from_bytes([b; 16]),
            addr: ([127, 0, 0, b], 7946).into(),
            epoch: 1,
        }
    }

    /// A view of member 1 with members 2..=n alive and `down` down.
    fn view(n: u8, down: u8) -> View {
        let members = (1..=n)
            .map(|b| MemberRecord {
                peer: peer(b),
                state: if b == down {
                    MemberState::Down
                } else {
                    MemberState::Alive
                },
                since_ms: 0,
            })
            .collect();
        View {
            me: peer(1),
            connection: Connection::Active,
            profile: Profile::Lan,
            members,
        }
    }

    /// The members of the next question the core is sent.
    async fn question(core: &mut mpsc::Receiver<Command>) -> Vec<PeerId> {
        let command = tokio::time::timeout(Duration::from_secs(5), core.recv()).await;
        match command {
            Ok(Some(Command::Core(Input::Poke(peers)))) => peers,
            _ => panic!("no question was asked"),
        }
    }

    /// A check by member 1 of `n` members, the last of them down, with `n` known: the
    /// running check, the questions it sends the core, and where answers are noted.
    fn start_check(
        n: u8,
    ) -> (
        tokio::task::JoinHandle<Answered>,
        mpsc::Receiver<Command>,
        Arc<Heard>,
    ) {
        let (core, questions) = mpsc::channel(8);
        let heard = Arc::new(Heard::default());
        let checker = Checker {
            core,
            heard: heard.clone(),
        };
        let view = view(n, n);
        let down: BTreeSet<NodeId> = [peer(n).node].into();
        let known = usize::from(n);
        let check = tokio::spawn(async move {
            checker
                .check(&view, down, known, MemberState::is_active)
                .await
        });
        (check, questions, heard)
    }

    #[tokio::test]
    async fn a_check_asks_what_a_majority_needs_and_stops_when_it_answered() {
        // 20 members, one down: 10 answers make a majority with this one.
        let (check, mut questions, heard) = start_check(20);
        let asked = question(&mut questions).await;
        assert_eq!(asked.len(), answers_needed(20) + SPARE_QUESTIONS);
        assert!(
            !asked.contains(&peer(1)) && !asked.contains(&peer(20)),
            "{asked:?}"
        );
        // Nine answer: not yet.
        for p in &asked[..9] {
            heard.note(p.node);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!check.is_finished());
        // The tenth: a majority, and the five members never asked stay unasked.
        heard.note(asked[9].node);
        let answered = tokio::time::timeout(Duration::from_secs(5), check)
            .await
            .expect("the check ends")
            .expect("the check ran");
        assert_eq!(answered.reachable.len(), 10);
        assert!(!answered.complete);
        assert!(questions.try_recv().is_err(), "nothing more was asked");
    }

    #[tokio::test]
    async fn a_check_that_too_few_answer_ends_complete_once_the_silent_time_out() {
        // 9 members, one down: 4 answers needed, 7 others to ask, and only 2 answer.
        let (check, mut questions, heard) = start_check(9);
        let asked = question(&mut questions).await;
        assert_eq!(
            asked.len(),
            7,
            "fewer than needed plus spare: every member at once"
        );
        heard.note(asked[0].node);
        heard.note(asked[3].node);
        let answered = tokio::time::timeout(ANSWER_TIMEOUT * 3, check)
            .await
            .expect("the check ends once the silent ones time out")
            .expect("the check ran");
        assert_eq!(answered.reachable, [asked[0].node, asked[3].node].into());
        assert!(answered.complete, "every member was asked");
    }
}
