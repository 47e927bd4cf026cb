//! What the membership traffic is made of: packets and bytes by kind of SWIM message, in
//! and out, and rumors (store writes riding on those packets) by the record they carry.
//! The membership core counts; `/metrics` reads the counts, so an operator sees which
//! messages and which records a peer's gossip is spent on.
//!
//! Counting is a few relaxed atomic adds per packet and a short lock per rumor; it changes
//! nothing the core decides.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use foca::{Codec, Message};

use crate::codec::WireCodec;

/// Which way a packet or a rumor went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// Sent by this peer.
    Out,
    /// Received by this peer.
    In,
}

impl Direction {
    /// The label value: `out` or `in`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Out => "out",
            Self::In => "in",
        }
    }
}

/// The kinds of SWIM message, as labels, in the order of [`kind_of`]'s answers.
pub const KINDS: [&str; 12] = [
    "ping",
    "ack",
    "ping_req",
    "indirect_ping",
    "indirect_ack",
    "forwarded_ack",
    "announce",
    "feed",
    "gossip",
    "broadcast",
    "turn_undead",
    "undecodable",
];

/// The index in [`KINDS`] of the message a foca packet carries.
pub fn kind_of(packet: &[u8]) -> usize {
    let Ok(header) = WireCodec.decode_header(packet) else {
        return KINDS.len() - 1;
    };
    match header.message {
        Message::Ping(_) => 0,
        Message::Ack(_) => 1,
        Message::PingReq { .. } => 2,
        Message::IndirectPing { .. } => 3,
        Message::IndirectAck { .. } => 4,
        Message::ForwardedAck { .. } => 5,
        Message::Announce => 6,
        Message::Feed => 7,
        Message::Gossip => 8,
        Message::Broadcast => 9,
        Message::TurnUndead => 10,
    }
}

/// The record a store key belongs to, as a label: a node-owned key by its kind
/// (`owned/<node>/telemetry` is `owned/telemetry`, `owned/<node>/r/<id>` is `owned/r`),
/// any other by its first segment (`svc/blog` is `svc`).
pub fn record_of(key: &str) -> String {
    let mut parts = key.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("owned"), Some(_node), Some(kind)) => format!("owned/{kind}"),
        (Some(first), _, _) => first.to_owned(),
        (None, _, _) => String::new(),
    }
}

/// Distinct record labels kept; past it, new ones count under `other` (keys come from
/// members, and a label set must stay small).
pub const RECORDS_MAX: usize = 32;

/// Rumors of one record, one way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RumorCount {
    /// Rumors: started here (out), or heard (in, news or not).
    pub rumors: u64,
    /// Their encoded size.
    pub bytes: u64,
    /// Of those heard, the ones that were news (relayed on, and merged).
    pub news: u64,
}

/// The counters. One per membership core, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct Traffic {
    packets: [[AtomicU64; 2]; KINDS.len()],
    bytes: [[AtomicU64; 2]; KINDS.len()],
    rumors: Mutex<BTreeMap<(String, Direction), RumorCount>>,
}

fn way(direction: Direction) -> usize {
    match direction {
        Direction::Out => 0,
        Direction::In => 1,
    }
}

impl Traffic {
    /// Counts a foca packet.
    pub fn packet(&self, direction: Direction, packet: &[u8]) {
        let kind = kind_of(packet);
        self.packets[kind][way(direction)].fetch_add(1, Ordering::Relaxed);
        self.bytes[kind][way(direction)].fetch_add(packet.len() as u64, Ordering::Relaxed);
    }

    /// Counts a rumor of the store key `key` (or of a leave, `key` being `leave`), `bytes`
    /// long; `news` says whether a rumor heard was new here.
    pub fn rumor(&self, direction: Direction, key: &str, bytes: usize, news: bool) {
        let mut rumors = self.rumors.lock().unwrap_or_else(PoisonError::into_inner);
        let mut record = record_of(key);
        if !rumors.contains_key(&(record.clone(), direction)) && rumors.len() >= RECORDS_MAX {
            record = "other".to_owned();
        }
        let count = rumors.entry((record, direction)).or_default();
        count.rumors += 1;
        count.bytes += bytes as u64;
        count.news += u64::from(news);
    }

    /// Packets and bytes of every kind seen, each way: `(kind, direction, packets, bytes)`.
    pub fn packets(&self) -> Vec<(&'static str, Direction, u64, u64)> {
        let mut rows = Vec::new();
        for (kind, name) in KINDS.iter().enumerate() {
            for direction in [Direction::Out, Direction::In] {
                let packets = self.packets[kind][way(direction)].load(Ordering::Relaxed);
                let bytes = self.bytes[kind][way(direction)].load(Ordering::Relaxed);
                if packets > 0 {
                    rows.push((*name, direction, packets, bytes));
                }
            }
        }
        rows
    }

    /// Rumors by record, each way.
    pub fn rumors(&self) -> Vec<(String, Direction, RumorCount)> {
        self.rumors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|((record, direction), count)| (record.clone(), *direction, *count))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_named_by_kind_not_by_node() {
        assert_eq!(record_of("owned/0123abcd/telemetry"), "owned/telemetry");
        assert_eq!(record_of("owned/0123abcd/r/c0ffee"), "owned/r");
        assert_eq!(record_of("svc/blog"), "svc");
        assert_eq!(record_of("cluster/limits"), "cluster");
        assert_eq!(record_of("leave"), "leave");
    }

    #[test]
    fn labels_stay_few_whatever_the_keys() {
        let traffic = Traffic::default();
        for i in 0..(RECORDS_MAX * 2) {
            traffic.rumor(Direction::In, &format!("k{i}/x"), 10, true);
        }
        let rumors = traffic.rumors();
        assert_eq!(rumors.len(), RECORDS_MAX + 1);
        let other = rumors.iter().find(|(r, _, _)| r == "other");
        assert_eq!(other.map(|(_, _, c)| c.rumors), Some(RECORDS_MAX as u64));
    }

    #[test]
    fn garbage_counts_as_undecodable() {
        let traffic = Traffic::default();
        traffic.packet(Direction::In, &[0xff; 7]);
        assert_eq!(
            traffic.packets(),
            vec![("undecodable", Direction::In, 1, 7)]
        );
    }
}
