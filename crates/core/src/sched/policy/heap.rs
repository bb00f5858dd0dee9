//! A waiting queue ordered by a per-request key, lowest first: the structure behind every
//! policy whose admission order is a static sort (vLLM's priority, shortest prompt, aging).
//!
//! Such a policy is a [`HeapOrder`] (its name, its key and its victim rule) wrapped in a
//! [`HeapPolicy`], which owns the heap and answers the rest of [`Policy`] once for all of them.

use super::tombstones::Tombstones;
use super::Policy;
use crate::request::Request;
use crate::sched::store::{ReqKey, RequestStore};
use crate::time::Nanos;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A min-heap of `(key, request)`; "prepending" a preempted request is an ordinary push, so a
/// preempted request goes back to its place in the order.
#[derive(Debug)]
pub struct KeyedHeap<K: Ord> {
    heap: BinaryHeap<Reverse<(K, ReqKey)>>,
    /// Requests removed while below the top, dropped when they reach it: the top is never one
    /// of them.
    removed: Tombstones,
}

impl<K: Ord> Default for KeyedHeap<K> {
    fn default() -> Self {
        KeyedHeap {
            heap: BinaryHeap::new(),
            removed: Tombstones::default(),
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
        let req = self.heap.pop().map(|r| r.0 .1);
        self.drop_removed_top();
        req
    }

    /// Removes queued requests.
    pub fn remove(&mut self, keys: &[ReqKey]) {
        for &k in keys {
            debug_assert!(self.heap.iter().any(|r| r.0 .1 == k), "{k:?} is not queued");
            self.removed.bury(k);
        }
        self.drop_removed_top();
    }

    fn drop_removed_top(&mut self) {
        while let Some(r) = self.heap.peek() {
            if !self.removed.take(r.0 .1) {
                break;
            }
            self.heap.pop();
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len() - self.removed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What sets one heap-ordered policy apart: its name, its admission key and its victim rule.
pub trait HeapOrder: std::fmt::Debug + Send {
    /// The admission key, lowest admitted first; it must not change while a request waits.
    type Key: Ord + std::fmt::Debug + Send;

    /// The name `--scheduling-policy` takes ([`Policy::name`]).
    const NAME: &'static str;

    /// Whether this is one of vLLM's own policies ([`Policy::is_vllm`]).
    const IS_VLLM: bool = false;

    /// `req`'s admission key, the same for an arrival and for a preempted request (which so
    /// goes back to its place in the order).
    fn key(&self, req: &Request) -> Self::Key;

    /// The index in `running` of the request to preempt ([`Policy::select_victim`]).
    fn select_victim(&self, running: &[ReqKey], requests: &RequestStore) -> usize;
}

/// A [`Policy`] whose waiting queue is a [`KeyedHeap`] in `O`'s key order, with `O`'s name and
/// victim rule and vLLM's budget split.
#[derive(Debug, Default)]
pub struct HeapPolicy<O: HeapOrder> {
    order: O,
    heap: KeyedHeap<O::Key>,
}

impl<O: HeapOrder> HeapPolicy<O> {
    /// An empty queue in `order`'s order.
    pub fn with_order(order: O) -> Self {
        HeapPolicy {
            order,
            heap: KeyedHeap::default(),
        }
    }

    /// The order this policy keeps.
    pub fn order(&self) -> &O {
        &self.order
    }
}

impl<O: HeapOrder> Policy for HeapPolicy<O> {
    fn name(&self) -> &'static str {
        O::NAME
    }

    fn is_vllm(&self) -> bool {
        O::IS_VLLM
    }

    fn add(&mut self, key: ReqKey, req: &Request) {
        self.heap.push(self.order.key(req), key);
    }

    fn prepend(&mut self, key: ReqKey, req: &Request) {
        self.heap.push(self.order.key(req), key);
    }

    fn peek(&self, _now: Nanos) -> Option<ReqKey> {
        self.heap.peek()
    }

    fn pop(&mut self, _now: Nanos) -> Option<ReqKey> {
        self.heap.pop()
    }

    fn remove(&mut self, keys: &[ReqKey]) {
        self.heap.remove(keys);
    }

    fn len(&self) -> usize {
        self.heap.len()
    }

    fn select_victim(&self, running: &[ReqKey], requests: &RequestStore) -> usize {
        self.order.select_victim(running, requests)
    }
}
