//! The queue of runnable fibers, each with the value it will be resumed with.
//!
//! Every operation is O(1) (amortised): a fiber's live entry is found through a hash keyed by
//! the fiber, and an entry that is superseded (rescheduled, unscheduled) is left in place and
//! skipped when it reaches the front, instead of being searched for.
//!
//! A fiber queued by [`RunQueue::push_fresh`] has never run: it comes out of [`RunQueue::pop`]
//! marked so, also after it was rescheduled, so the backend can start it the way that frees
//! its stack when it ends.

use std::collections::hash_map::Entry as Slot;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use rb_sys::VALUE;

/// INVARIANT: every fiber in `live` has exactly one entry in `entries` with the recorded `seq`;
/// any other entry for it is stale. `live` holds `seq << 1 | fresh`, and the entry's value.
pub(crate) struct RunQueue {
    entries: VecDeque<Entry>,
    live: HashMap<VALUE, (u64, VALUE), BuildHasherDefault<ValueHasher>>,
    next_seq: u64,
    /// Whether a value must not be replaced by a later one that is not of its kind: an
    /// exception to raise in the fiber (a timeout that fell due) outranks a plain wake-up (the
    /// sleep that ended at the same time), which would otherwise make it lost.
    outranks: fn(VALUE) -> bool,
}

impl Default for RunQueue {
    fn default() -> Self {
        Self::new(|_| false)
    }
}

/// A fiber to run, the value it gets, and whether it has never run.
pub(crate) type Runnable = (VALUE, VALUE, bool);

struct Entry {
    fiber: VALUE,
    value: VALUE,
    seq: u64,
}

impl RunQueue {
    /// An empty queue; see the `outranks` field.
    pub(crate) fn new(outranks: fn(VALUE) -> bool) -> Self {
        Self {
            entries: VecDeque::new(),
            live: HashMap::default(),
            next_seq: 0,
            outranks,
        }
    }

    /// Queues `fiber` to be resumed with `value`, at the back, or at the front if `prioritize`.
    /// A fiber already queued loses its earlier entry: it runs once, with the latest value,
    /// unless the earlier value outranks the latest (see the field).
    pub(crate) fn push(&mut self, fiber: VALUE, value: VALUE, prioritize: bool) {
        self.enqueue(fiber, value, prioritize, false);
    }

    /// Queues a fiber that has never run, to be started with `value`.
    pub(crate) fn push_fresh(&mut self, fiber: VALUE, value: VALUE) {
        self.enqueue(fiber, value, false, true);
    }

    fn enqueue(&mut self, fiber: VALUE, value: VALUE, prioritize: bool, fresh: bool) {
        let seq = self.next_seq + 1;
        let outranks = self.outranks;
        let replaced = match self.live.entry(fiber) {
            Slot::Occupied(mut slot) => {
                let (tagged, pending) = *slot.get();
                if outranks(pending) && !outranks(value) {
                    return;
                }
                let fresh = fresh || tagged & 1 == 1;
                slot.insert((seq << 1 | fresh as u64, value));
                true
            }
            Slot::Vacant(slot) => {
                slot.insert((seq << 1 | fresh as u64, value));
                false
            }
        };
        self.next_seq = seq;
        let entry = Entry { fiber, value, seq };
        if prioritize {
            self.entries.push_front(entry);
        } else {
            self.entries.push_back(entry);
        }
        if replaced && self.entries.len() > 2 * self.live.len() + 64 {
            self.compact();
        }
    }

    /// The next fiber to run, its value, and whether it has never run.
    pub(crate) fn pop(&mut self) -> Option<Runnable> {
        while let Some(entry) = self.entries.pop_front() {
            match self.live.remove(&entry.fiber) {
                Some((tagged, _)) if tagged >> 1 == entry.seq => {
                    return Some((entry.fiber, entry.value, tagged & 1 == 1));
                }
                // A stale entry: the fiber's live one is further back.
                Some(live) => {
                    self.live.insert(entry.fiber, live);
                }
                None => {}
            }
        }
        None
    }

    pub(crate) fn contains(&self, fiber: VALUE) -> bool {
        self.live.contains_key(&fiber)
    }

    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Every value held, stale entries included (they are dropped soon anyway).
    pub(crate) fn values(&self) -> impl Iterator<Item = VALUE> + '_ {
        self.entries.iter().flat_map(|e| [e.fiber, e.value])
    }

    fn compact(&mut self) {
        let live = &self.live;
        self.entries
            .retain(|e| live.get(&e.fiber).map(|(tagged, _)| tagged >> 1) == Some(e.seq));
    }
}

/// Object addresses are unique and 8-aligned: multiply by a large odd constant to spread them.
#[derive(Default)]
pub(crate) struct ValueHasher(u64);

impl Hasher for ValueHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | *b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (n >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rescheduled_fiber_runs_once_with_its_latest_value() {
        let mut q = RunQueue::default();
        q.push(8, 1, false);
        q.push(16, 2, false);
        q.push(8, 3, false);
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(), Some((16, 2, false)));
        assert_eq!(q.pop(), Some((8, 3, false)));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn prioritized_fibers_run_first() {
        let mut q = RunQueue::default();
        q.push(8, 1, false);
        q.push(16, 2, false);
        q.push(24, 3, true);
        assert!(q.contains(8));
        assert_eq!(q.pop(), Some((24, 3, false)));
        assert_eq!(q.pop(), Some((8, 1, false)));
        assert_eq!(q.pop(), Some((16, 2, false)));
        assert!(q.is_empty());
        assert!(!q.contains(8));
    }

    #[test]
    fn stale_entries_do_not_pile_up() {
        let mut q = RunQueue::default();
        for i in 0..10_000 {
            q.push(8, i, false);
        }
        assert!(q.entries.len() < 200);
        assert_eq!(q.pop(), Some((8, 9_999, false)));
    }

    #[test]
    fn an_outranking_value_is_kept_until_one_of_its_kind_replaces_it() {
        let mut q = RunQueue::new(|value| value >= 100);
        q.push(8, 100, false); // the timeout's exception
        q.push(8, 1, false); // the sleep that ended with it
        assert_eq!(q.pop(), Some((8, 100, false)));
        q.push(8, 1, false);
        q.push(8, 100, false);
        q.push(8, 200, true);
        assert_eq!(q.pop(), Some((8, 200, false)));
        assert!(q.is_empty());
    }

    #[test]
    fn a_fresh_fiber_stays_fresh_when_rescheduled() {
        let mut q = RunQueue::default();
        q.push_fresh(8, 0);
        q.push(16, 1, false);
        q.push(8, 2, true);
        assert_eq!(q.pop(), Some((8, 2, true)));
        assert_eq!(q.pop(), Some((16, 1, false)));
        q.push(8, 3, false);
        assert_eq!(q.pop(), Some((8, 3, false)));
    }
}
