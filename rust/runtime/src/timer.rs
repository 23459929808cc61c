//! A heap of deadlines with cheap cancellation.
//!
//! Cancelled and reset timers leave stale heap nodes behind; they are recognised by their
//! sequence number and dropped when they reach the top, or all at once when they outnumber the
//! live timers (a loop that arms and cancels a long timeout would otherwise leave a node per
//! turn until each deadline passes: 16 MB in 3 s under an HTTP/2 client's flood). Every live
//! timer is in `entries`, so cancel is O(1) and the payloads can be walked (the Ruby binding
//! marks them for the GC).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use slab::Slab;

/// Identifies a timer in a [`TimerHeap`]; stale keys (fired, cancelled or reset) are harmless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerKey {
    slot: usize,
    seq: u64,
}

impl TimerKey {
    /// Packs the key into one integer, for callers that hand it to another language.
    pub fn to_bits(self) -> u64 {
        // Slots stay far below 2^24 in practice; the sequence keeps the low 40 bits.
        ((self.slot as u64) << 40) | (self.seq & ((1 << 40) - 1))
    }

    /// Unpacks a key made by [`TimerKey::to_bits`].
    pub fn from_bits(bits: u64) -> Self {
        Self {
            slot: (bits >> 40) as usize,
            seq: bits & ((1 << 40) - 1),
        }
    }
}

/// Stale heap nodes tolerated beyond the live timers' number before the heap is rebuilt.
const STALE_SLACK: usize = 64;

/// Timers ordered by deadline, each carrying a payload `T`.
pub struct TimerHeap<T> {
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    entries: Slab<Entry<T>>,
    next_seq: u64,
}

struct Entry<T> {
    seq: u64,
    deadline: Instant,
    payload: T,
}

impl<T> TimerHeap<T> {
    /// An empty heap.
    pub fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            entries: Slab::new(),
            next_seq: 1,
        }
    }

    /// Adds a timer firing at `deadline`.
    pub fn insert(&mut self, deadline: Instant, payload: T) -> TimerKey {
        let seq = self.bump_seq();
        let slot = self.entries.insert(Entry {
            seq,
            deadline,
            payload,
        });
        self.heap.push(Reverse((deadline, seq, slot)));
        TimerKey { slot, seq }
    }

    /// Removes a timer that has not fired yet, returning its payload.
    pub fn remove(&mut self, key: TimerKey) -> Option<T> {
        match self.entries.get(key.slot) {
            Some(entry) if entry.seq == key.seq => {
                let payload = self.entries.remove(key.slot).payload;
                self.drop_stale_nodes();
                Some(payload)
            }
            _ => None,
        }
    }

    /// Moves a live timer to a new deadline; returns its new key, or `None` if it is gone.
    pub fn reset(&mut self, key: TimerKey, deadline: Instant) -> Option<TimerKey> {
        let seq = self.bump_seq();
        let entry = self
            .entries
            .get_mut(key.slot)
            .filter(|e| e.seq == key.seq)?;
        entry.seq = seq;
        entry.deadline = deadline;
        self.heap.push(Reverse((deadline, seq, key.slot)));
        self.drop_stale_nodes();
        Some(TimerKey {
            slot: key.slot,
            seq,
        })
    }

    /// The earliest live deadline.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.prune();
        self.heap.peek().map(|Reverse((deadline, _, _))| *deadline)
    }

    /// Removes and returns the payload of one timer whose deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<T> {
        self.prune();
        let Reverse((deadline, _, slot)) = *self.heap.peek()?;
        if deadline > now {
            return None;
        }
        self.heap.pop();
        Some(self.entries.remove(slot).payload)
    }

    /// How many timers are live.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no timer is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every live payload, in no particular order.
    pub fn payloads(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|(_, e)| &e.payload)
    }

    fn bump_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Rebuilds the heap from the live timers once stale nodes outnumber them (and a few more):
    /// linear, and at most once per as many removals or resets as there are nodes, so the heap
    /// stays within twice the live timers at a constant cost per call.
    fn drop_stale_nodes(&mut self) {
        if self.heap.len() > 2 * self.entries.len() + STALE_SLACK {
            self.heap = self
                .entries
                .iter()
                .map(|(slot, e)| Reverse((e.deadline, e.seq, slot)))
                .collect();
        }
    }

    /// Drops heap nodes whose timer was removed or moved.
    fn prune(&mut self) {
        while let Some(Reverse((_, seq, slot))) = self.heap.peek() {
            match self.entries.get(*slot) {
                Some(entry) if entry.seq == *seq => return,
                _ => {
                    self.heap.pop();
                }
            }
        }
    }
}

impl<T> Default for TimerHeap<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn fires_in_deadline_order() {
        let now = Instant::now();
        let mut heap = TimerHeap::new();
        heap.insert(now + Duration::from_millis(30), "c");
        heap.insert(now + Duration::from_millis(10), "a");
        heap.insert(now + Duration::from_millis(20), "b");
        assert_eq!(heap.pop_expired(now), None);
        let later = now + Duration::from_millis(25);
        assert_eq!(heap.pop_expired(later), Some("a"));
        assert_eq!(heap.pop_expired(later), Some("b"));
        assert_eq!(heap.pop_expired(later), None);
        assert_eq!(heap.next_deadline(), Some(now + Duration::from_millis(30)));
    }

    #[test]
    fn removed_timers_never_fire_and_keys_go_stale() {
        let now = Instant::now();
        let mut heap = TimerHeap::new();
        let a = heap.insert(now, 1);
        assert_eq!(heap.remove(a), Some(1));
        assert_eq!(heap.remove(a), None);
        // The slot is reused: the old key must not reach the new timer.
        let b = heap.insert(now, 2);
        assert_eq!(heap.remove(a), None);
        assert_eq!(heap.next_deadline(), Some(now));
        assert_eq!(heap.pop_expired(now), Some(2));
        assert_eq!(heap.remove(b), None);
        assert!(heap.is_empty());
        assert_eq!(heap.next_deadline(), None);
    }

    #[test]
    fn timers_armed_and_cancelled_leave_no_trail() {
        let now = Instant::now();
        let far = now + Duration::from_secs(60);
        let mut heap = TimerHeap::new();
        let kept = heap.insert(now + Duration::from_secs(1), "kept");
        let mut moved = heap.insert(far, "moved");
        for _ in 0..100_000 {
            let key = heap.insert(far, "turn");
            assert_eq!(heap.remove(key), Some("turn"));
            moved = heap.reset(moved, far).unwrap();
        }
        assert_eq!(heap.len(), 2);
        assert!(
            heap.heap.len() <= 2 * 2 + STALE_SLACK + 1,
            "{}",
            heap.heap.len()
        );
        assert!(heap.heap.capacity() < 1024, "{}", heap.heap.capacity());
        assert_eq!(heap.pop_expired(far), Some("kept"));
        assert_eq!(heap.pop_expired(far), Some("moved"));
        assert!(heap.is_empty() && heap.remove(kept).is_none());
    }

    #[test]
    fn reset_moves_a_timer() {
        let now = Instant::now();
        let mut heap = TimerHeap::new();
        let key = heap.insert(now, "x");
        let key = heap.reset(key, now + Duration::from_secs(1)).unwrap();
        assert_eq!(heap.pop_expired(now), None);
        assert_eq!(heap.len(), 1);
        assert_eq!(TimerKey::from_bits(key.to_bits()), key);
        assert_eq!(heap.pop_expired(now + Duration::from_secs(1)), Some("x"));
    }
}
