//! A queue of timers by deadline, for whoever drives a [`super::NodeCore`]: the QUIC task
//! keys it by `tokio::time::Instant`, tests and the simulator by virtual milliseconds.
//! Equal deadlines come out in the order they went in, as foca expects of its timers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Timers waiting for their deadline, earliest first.
#[derive(Debug)]
pub struct TimerQueue<T, I> {
    /// (deadline, submission number, timer); the number keeps equal deadlines in order.
    heap: BinaryHeap<Reverse<Entry<T, I>>>,
    /// Timers submitted so far: the next submission number.
    submitted: u64,
}

#[derive(Debug)]
struct Entry<T, I> {
    due: I,
    seq: u64,
    timer: T,
}

impl<T, I: Ord> PartialEq for Entry<T, I> {
    fn eq(&self, other: &Self) -> bool {
        (&self.due, self.seq) == (&other.due, other.seq)
    }
}
impl<T, I: Ord> Eq for Entry<T, I> {}
impl<T, I: Ord> PartialOrd for Entry<T, I> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T, I: Ord> Ord for Entry<T, I> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.due, self.seq).cmp(&(&other.due, other.seq))
    }
}

impl<T, I: Ord + Copy> Default for TimerQueue<T, I> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            submitted: 0,
        }
    }
}

impl<T, I: Ord + Copy> TimerQueue<T, I> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `timer`, due at `due`.
    pub fn push(&mut self, due: I, timer: T) {
        self.submitted += 1;
        self.heap.push(Reverse(Entry {
            due,
            seq: self.submitted,
            timer,
        }));
    }

    /// The earliest deadline, if any timer waits.
    pub fn next_due(&self) -> Option<I> {
        self.heap.peek().map(|Reverse(e)| e.due)
    }

    /// The earliest timer if it is due at `now`.
    pub fn pop_due(&mut self, now: I) -> Option<(I, T)> {
        if self.next_due()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(e)| (e.due, e.timer))
    }

    /// The number of timers waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no timer waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_come_out_by_deadline_then_in_submission_order() {
        let mut queue = TimerQueue::new();
        queue.push(5u64, "late");
        queue.push(1, "first");
        queue.push(1, "second");
        assert_eq!(queue.next_due(), Some(1));
        assert_eq!(queue.pop_due(0), None);
        assert_eq!(queue.pop_due(3), Some((1, "first")));
        assert_eq!(queue.pop_due(3), Some((1, "second")));
        assert_eq!(queue.pop_due(3), None);
        assert_eq!(queue.pop_due(9), Some((5, "late")));
        assert!(queue.is_empty());
    }
}
