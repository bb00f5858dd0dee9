//! The virtual-time event queue: arrivals, aborts and engine wake-ups ordered by `(time, seq)`.
//!
//! `seq` is the order of [`EventQueue::push`] calls, so events due at the same instant come out
//! in the order they were pushed: deterministic whatever the heap does. The driver takes every
//! event due at an instant, then runs the engine once at that instant; so at equal times an
//! arrival pushed before a wake-up is taken in before the engine runs, as is one pushed after it.

use llm_emu_core::Nanos;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Something that happens at a virtual time.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<A> {
    /// A request reaches the engine.
    Arrival(A),
    /// A client gives up on a request.
    Abort(String),
    /// The engine asked to run at this time; `generation` tells a current wake-up from one
    /// superseded by a later `run`.
    Wake { generation: u64 },
}

struct Entry<A> {
    time: Nanos,
    seq: u64,
    event: Event<A>,
}

impl<A> PartialEq for Entry<A> {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl<A> Eq for Entry<A> {}
impl<A> PartialOrd for Entry<A> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<A> Ord for Entry<A> {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest `(time, seq)` must come out first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

/// A min-queue of events by `(time, push order)`.
pub struct EventQueue<A> {
    heap: BinaryHeap<Entry<A>>,
    seq: u64,
}

impl<A> Default for EventQueue<A> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<A> EventQueue<A> {
    pub fn push(&mut self, time: Nanos, event: Event<A>) {
        self.heap.push(Entry {
            time,
            seq: self.seq,
            event,
        });
        self.seq += 1;
    }

    /// The time of the earliest event.
    pub fn peek_time(&self) -> Option<Nanos> {
        self.heap.peek().map(|e| e.time)
    }

    /// The earliest event, without removing it.
    pub fn peek(&self) -> Option<(Nanos, &Event<A>)> {
        self.heap.peek().map(|e| (e.time, &e.event))
    }

    /// Removes and returns the earliest event if it is due at or before `now`.
    pub fn pop_due(&mut self, now: Nanos) -> Option<(Nanos, Event<A>)> {
        if self.peek_time()? > now {
            return None;
        }
        self.heap.pop().map(|e| (e.time, e.event))
    }

    /// Removes and returns the earliest event.
    pub fn pop(&mut self) -> Option<(Nanos, Event<A>)> {
        self.heap.pop().map(|e| (e.time, e.event))
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_then_push_order() {
        let mut q = EventQueue::<u32>::default();
        q.push(Nanos(20), Event::Wake { generation: 0 });
        q.push(Nanos(10), Event::Arrival(1));
        q.push(Nanos(20), Event::Arrival(2));
        q.push(Nanos(20), Event::Abort("a".into()));
        q.push(Nanos(5), Event::Arrival(3));
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            order,
            vec![
                (Nanos(5), Event::Arrival(3)),
                (Nanos(10), Event::Arrival(1)),
                (Nanos(20), Event::Wake { generation: 0 }),
                (Nanos(20), Event::Arrival(2)),
                (Nanos(20), Event::Abort("a".into())),
            ]
        );
    }

    #[test]
    fn pop_due_stops_at_the_future() {
        let mut q = EventQueue::<u32>::default();
        q.push(Nanos(10), Event::Arrival(1));
        q.push(Nanos(30), Event::Arrival(2));
        assert_eq!(q.pop_due(Nanos(20)), Some((Nanos(10), Event::Arrival(1))));
        assert_eq!(q.pop_due(Nanos(20)), None);
        assert_eq!(q.peek_time(), Some(Nanos(30)));
        assert!(!q.is_empty());
    }
}
