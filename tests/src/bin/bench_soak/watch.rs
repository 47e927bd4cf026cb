//! What the soak reads from running peers (their admin API's `/v1/nodes` and their
//! `/metrics`, never a CLI process), and the false alarms it finds there: a live member
//! that some peer lists `suspect`, `down` or `left` when it was not the one killed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Result;
use knit_tests::Peer;
use knit_tests::cost::read_series;
use serde::Deserialize;

/// How long one read of one peer's API or `/metrics` may take.
const READ_LIMIT: Duration = Duration::from_secs(3);
/// False alarms described one by one in the report; past this many they are only counted.
const EXAMPLES_MAX: usize = 12;

/// One row of `/v1/nodes`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Row {
    pub(crate) id: String,
    /// alive | suspect | down | left.
    pub(crate) state: String,
    /// When the answering peer saw this state begin, ms since the Unix epoch.
    #[serde(default)]
    pub(crate) since_ms: u64,
}

/// `peer`'s member list.
pub(crate) fn rows(peer: &Peer) -> Result<Vec<Row>> {
    Ok(serde_json::from_str(
        &peer.api_get("/v1/nodes", READ_LIMIT)?,
    )?)
}

/// When `rows` say `subject` entered `state`, if they list it so: the peer's own stamp, or
/// `now_ms` where the stamp is not between `from_ms` and now.
pub(crate) fn seen_since(
    rows: &[Row],
    subject: &str,
    state: &str,
    from_ms: u64,
    now_ms: u64,
) -> Option<u64> {
    let row = rows.iter().find(|r| r.id == subject && r.state == state)?;
    Some(if (from_ms..=now_ms).contains(&row.since_ms) {
        row.since_ms
    } else {
        now_ms
    })
}

/// What one peer's `/metrics` says of failure detection right now.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Detector {
    /// `knit_members_suspected`: members it holds under suspicion.
    pub(crate) suspected: u64,
    /// `knit_local_health`: Lifeguard's local health score (0 healthy).
    pub(crate) local_health: u64,
}

impl Detector {
    /// Reads `peer`'s gauges; a gauge the peer does not export reads 0.
    pub(crate) fn read(peer: &Peer) -> Result<Self> {
        let series = read_series(&peer.metrics_text(READ_LIMIT)?);
        let gauge = |name: &str| {
            // Gauges of small whole counts.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            series.get(name).map_or(0, |v| v.max(0.0) as u64)
        };
        Ok(Self {
            suspected: gauge("knit_members_suspected"),
            local_health: gauge("knit_local_health"),
        })
    }
}

/// False alarms: members that were not killed, seen not alive. A member killed in a kill
/// window is excused for that window; so is a peer that exited by itself (counted apart).
#[derive(Debug, Default)]
pub(crate) struct Alarms {
    /// Node id -> peer name, of every member of the cluster.
    names: BTreeMap<String, String>,
    /// The window samples are taken in: 0 for the quiet window, then 1 per kill.
    window: usize,
    /// The member killed in this window, which may be seen not alive.
    victim: Option<String>,
    /// Members whose process exited by itself: not alive, and not a false alarm.
    exited: BTreeSet<String>,
    /// (window, member) seen `down` or `left` by some sampled peer.
    pub(crate) downs: BTreeSet<(usize, String)>,
    /// (window, member) seen `suspect` by some sampled peer.
    pub(crate) suspects: BTreeSet<(usize, String)>,
    /// Rows read that listed a live member not alive (one per peer, member and read).
    pub(crate) sightings: usize,
    /// Member lists read, over all peers.
    pub(crate) lists_read: usize,
    /// Member lists that could not be read (a timeout, a refused connection).
    pub(crate) read_errors: usize,
    /// The first false alarms, for the report: `window 3: p40 saw p17 down`.
    pub(crate) examples: Vec<String>,
}

impl Alarms {
    /// Alarms over a cluster whose members are `names` (node id -> peer name).
    pub(crate) fn new(names: BTreeMap<String, String>) -> Self {
        Self {
            names,
            ..Self::default()
        }
    }

    /// Starts kill window `window`, in which member `victim` may be seen not alive.
    pub(crate) fn start_window(&mut self, window: usize, victim: &str) {
        self.window = window;
        self.victim = Some(victim.to_owned());
    }

    /// Excuses `member` for the rest of the run (it exited by itself).
    pub(crate) fn excuse_for_good(&mut self, member: &str) {
        self.exited.insert(member.to_owned());
    }

    fn is_excused(&self, member: &str) -> bool {
        self.victim.as_deref() == Some(member) || self.exited.contains(member)
    }

    /// A member list could not be read.
    pub(crate) fn read_failed(&mut self) {
        self.read_errors += 1;
    }

    /// Notes what `observer` (a peer name) lists.
    pub(crate) fn note(&mut self, observer: &str, rows: &[Row]) {
        self.lists_read += 1;
        for row in rows {
            let Some(name) = self.names.get(&row.id) else {
                continue;
            };
            if self.is_excused(&row.id) || row.state == "alive" {
                continue;
            }
            let key = (self.window, row.id.clone());
            let fresh = match row.state.as_str() {
                "suspect" => self.suspects.insert(key),
                _ => self.downs.insert(key),
            };
            self.sightings += 1;
            if fresh && self.examples.len() < EXAMPLES_MAX {
                self.examples.push(format!(
                    "window {}: {observer} saw {name} {}",
                    self.window, row.state
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Alarms, Row, seen_since};

    fn row(id: &str, state: &str, since_ms: u64) -> Row {
        Row {
            id: id.to_owned(),
            state: state.to_owned(),
            since_ms,
        }
    }

    #[test]
    fn only_members_not_killed_in_the_window_are_false_alarms() {
        let names = [("a", "p1"), ("b", "p2"), ("c", "p3")]
            .iter()
            .map(|(id, name)| ((*id).to_owned(), (*name).to_owned()))
            .collect();
        let mut alarms = Alarms::new(names);
        alarms.start_window(1, "a");
        let rows = [
            row("a", "down", 0),
            row("b", "suspect", 0),
            row("z", "down", 0),
        ];
        alarms.note("p0", &rows);
        alarms.note("p4", &rows);
        assert_eq!(alarms.suspects.len(), 1);
        assert!(alarms.downs.is_empty());
        assert_eq!(alarms.sightings, 2);
        assert_eq!(alarms.examples, ["window 1: p0 saw p2 suspect"]);
        // Next window: the last victim is no longer excused.
        alarms.start_window(2, "b");
        alarms.excuse_for_good("c");
        alarms.note("p0", &[row("a", "down", 0), row("c", "down", 0)]);
        assert_eq!(alarms.downs.len(), 1);
        alarms.start_window(3, "a");
        alarms.note("p0", &[row("c", "left", 0)]);
        assert_eq!(alarms.downs.len(), 1);
        assert_eq!(alarms.lists_read, 4);
    }

    #[test]
    fn a_stamp_outside_the_window_is_the_poll_time() {
        let rows = [row("a", "down", 1_500)];
        assert_eq!(seen_since(&rows, "a", "down", 1_000, 2_000), Some(1_500));
        assert_eq!(seen_since(&rows, "a", "down", 1_600, 2_000), Some(2_000));
        assert_eq!(seen_since(&rows, "a", "alive", 1_000, 2_000), None);
    }
}
