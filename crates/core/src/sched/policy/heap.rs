//! A waiting queue ordered by a per-request key, lowest first: the structure behind every
//! policy whose admission order is a static sort (vLLM's priority, shortest prompt, aging).

use crate::sched::store::ReqKey;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A min-heap of `(key, request)`; "prepending" a preempted request is an ordinary push, so a
/// preempted request goes back to its place in the order.
#[derive(Debug)]
pub struct KeyedHeap<K: Ord> {
    heap: BinaryHeap<Reverse<(K, ReqKey)>>,
}

impl<K: Ord> Default for KeyedHeap<K> {
    fn default() -> Self {
        KeyedHeap {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord> KeyedHeap<K> {
    pub fn push(&mut self, key: K, req: ReqKey) {
        self.heap.push(Reverse((key, req)));
    }

    pub fn peek(&self) -> Option<ReqKey> {
        self.heap.peek().map(|r| r.0 .1)
    }

    pub fn pop(&mut self) -> Option<ReqKey> {
        self.heap.pop().map(|r| r.0 .1)
    }

    pub fn remove(&mut self, keys: &[ReqKey]) {
        self.heap.retain(|r| !keys.contains(&r.0 .1));
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}
