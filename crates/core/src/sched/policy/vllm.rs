//! vLLM's own policies (`v1/core/sched/request_queue.py` and the preemption rule in
//! `scheduler.py`), exact: `fcfs` and `priority`.

use super::heap::{HeapOrder, HeapPolicy};
use super::tombstones::Tombstones;
use super::{first_max_by_key, Policy};
use crate::request::Request;
use crate::sched::store::{ReqKey, RequestStore};
use crate::time::Nanos;
use std::collections::VecDeque;

/// First come, first served: a deque with arrivals at the back and preempted requests at the
/// front; the victim is the newest running request (`self.running.pop()`).
#[derive(Debug, Default)]
pub struct Fcfs {
    queue: VecDeque<ReqKey>,
    /// Requests removed while behind the front, dropped when they reach it: the front is never
    /// one of them.
    removed: Tombstones,
}

impl Fcfs {
    fn drop_removed_front(&mut self) {
        while let Some(&k) = self.queue.front() {
            if !self.removed.take(k) {
                break;
            }
            self.queue.pop_front();
        }
    }
}

impl Policy for Fcfs {
    fn name(&self) -> &'static str {
        "fcfs"
    }

    fn is_vllm(&self) -> bool {
        true
    }

    fn add(&mut self, key: ReqKey, _req: &Request) {
        self.queue.push_back(key);
    }

    fn prepend(&mut self, key: ReqKey, _req: &Request) {
        self.queue.push_front(key);
    }

    fn peek(&self, _now: Nanos) -> Option<ReqKey> {
        self.queue.front().copied()
    }

    fn pop(&mut self, _now: Nanos) -> Option<ReqKey> {
        let key = self.queue.pop_front();
        self.drop_removed_front();
        key
    }

    fn remove(&mut self, keys: &[ReqKey]) {
        for &k in keys {
            debug_assert!(self.queue.contains(&k), "{k:?} is not queued");
            self.removed.bury(k);
        }
        self.drop_removed_front();
    }

    fn len(&self) -> usize {
        self.queue.len() - self.removed.len()
    }

    fn select_victim(&self, running: &[ReqKey], _requests: &RequestStore) -> usize {
        running.len() - 1
    }
}

/// Lowest `(priority, arrival, request_id)` first, as vLLM's `Request.__lt__`; the victim is the
/// first running request with the largest `(priority, arrival)` (Python's `max`).
pub type Priority = HeapPolicy<PriorityOrder>;

/// [`Priority`]'s key and victim rule.
#[derive(Debug, Default)]
pub struct PriorityOrder;

impl HeapOrder for PriorityOrder {
    type Key = (i32, Nanos, String);
    const NAME: &'static str = "priority";
    const IS_VLLM: bool = true;

    fn key(&self, req: &Request) -> Self::Key {
        (req.priority, req.times.arrival, req.request_id.clone())
    }

    fn select_victim(&self, running: &[ReqKey], requests: &RequestStore) -> usize {
        first_max_by_key(running, requests, |r| (r.priority, r.times.arrival))
    }
}
