//! Waiting queues (vLLM `v1/core/sched/request_queue.py`).

use super::store::ReqKey;
use crate::config::SchedulingPolicy;
use crate::time::Nanos;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Ordering of the priority queue: `(priority, arrival, request_id)`, lowest first, as vLLM's
/// `Request.__lt__`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PriorityKey {
    pub priority: i32,
    pub arrival: Nanos,
    pub request_id: String,
    pub key: ReqKey,
}

#[derive(Debug)]
pub enum WaitingQueue {
    /// A deque: new requests at the back, preempted ones at the front.
    Fcfs(VecDeque<ReqKey>),
    /// A min-heap; "prepending" a preempted request is an ordinary push.
    Priority(BinaryHeap<Reverse<PriorityKey>>),
}

impl WaitingQueue {
    pub fn new(policy: SchedulingPolicy) -> WaitingQueue {
        match policy {
            SchedulingPolicy::Fcfs => WaitingQueue::Fcfs(VecDeque::new()),
            SchedulingPolicy::Priority => WaitingQueue::Priority(BinaryHeap::new()),
        }
    }

    pub fn add(&mut self, k: PriorityKey) {
        match self {
            WaitingQueue::Fcfs(q) => q.push_back(k.key),
            WaitingQueue::Priority(h) => h.push(Reverse(k)),
        }
    }

    pub fn prepend(&mut self, k: PriorityKey) {
        match self {
            WaitingQueue::Fcfs(q) => q.push_front(k.key),
            WaitingQueue::Priority(h) => h.push(Reverse(k)),
        }
    }

    pub fn peek(&self) -> Option<ReqKey> {
        match self {
            WaitingQueue::Fcfs(q) => q.front().copied(),
            WaitingQueue::Priority(h) => h.peek().map(|r| r.0.key),
        }
    }

    pub fn pop(&mut self) -> Option<ReqKey> {
        match self {
            WaitingQueue::Fcfs(q) => q.pop_front(),
            WaitingQueue::Priority(h) => h.pop().map(|r| r.0.key),
        }
    }

    /// Removes the given requests wherever they are (aborts, stops while preempted).
    pub fn remove(&mut self, keys: &[ReqKey]) {
        if keys.is_empty() {
            return;
        }
        match self {
            WaitingQueue::Fcfs(q) => q.retain(|k| !keys.contains(k)),
            WaitingQueue::Priority(h) => h.retain(|r| !keys.contains(&r.0.key)),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            WaitingQueue::Fcfs(q) => q.len(),
            WaitingQueue::Priority(h) => h.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
