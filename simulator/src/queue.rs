//! The event queue: events in virtual time, popped in `(time, insertion)` order.
//!
//! The heap orders small keys only (time, sequence, index); the events themselves stay
//! put in a slab, so sifting moves 24 bytes and not a whole event.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A queue of `E` by virtual time; ties go in insertion order, so a run is deterministic.
#[derive(Debug)]
pub struct Queue<E> {
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slab: Vec<Option<E>>,
    free: Vec<u32>,
    seq: u64,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }
}

impl<E> Queue<E> {
    /// Queues `event` at `at`.
    pub fn push(&mut self, at: u64, event: E) {
        self.seq += 1;
        let index = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(event);
                i
            }
            None => {
                self.slab.push(Some(event));
                u32::try_from(self.slab.len() - 1).expect("fewer than 2^32 queued events")
            }
        };
        self.heap.push(Reverse((at, self.seq, index)));
    }

    /// The earliest event at or before `until`, with its time.
    pub fn pop_until(&mut self, until: u64) -> Option<(u64, E)> {
        let &Reverse((at, _, _)) = self.heap.peek()?;
        if at > until {
            return None;
        }
        let Reverse((at, _, index)) = self.heap.pop()?;
        let event = self.slab[index as usize].take()?;
        self.free.push(index);
        Some((at, event))
    }

    /// Events queued.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_insertion_order_and_reuses_slots() {
        let mut q = Queue::default();
        q.push(20, "c");
        q.push(10, "a");
        q.push(10, "b");
        assert_eq!(q.pop_until(5), None, "nothing that early");
        assert_eq!(q.pop_until(15), Some((10, "a")));
        q.push(10, "d");
        assert_eq!(q.pop_until(100), Some((10, "b")));
        assert_eq!(q.pop_until(100), Some((10, "d")));
        assert_eq!(q.pop_until(100), Some((20, "c")));
        assert!(q.is_empty());
        assert_eq!(q.slab.len(), 3, "a freed slot is reused");
    }
}
