//! Longest waiting first with aging (`lwf`, not vLLM): request priorities, softened by time.
//!
//! A waiting request's effective priority is `priority − waited / aging_period`, where `waited`
//! is the time since its arrival and [`DEFAULT_AGING_PERIOD`] is one second: it gains one
//! priority level per second it has waited. The lowest effective priority goes first. Since
//! every request ages at the same rate, the order at any instant is the order of
//! `priority × aging_period + arrival`, which does not change with time, so a heap keeps it.
//! With all priorities equal this is pure longest-waiting-first (arrival order, a preempted
//! request back at its arrival's place); a request of priority `p` is overtaken by one of
//! priority `p + 1` that arrived more than one aging period earlier, so no priority starves.

use super::heap::KeyedHeap;
use super::{first_max_by_key, Policy};
use crate::request::Request;
use crate::sched::store::{ReqKey, RequestStore};
use crate::time::Nanos;

/// Waiting time worth one priority level: 1 s.
pub const DEFAULT_AGING_PERIOD: Nanos = Nanos(1_000_000_000);

/// See the module documentation. The victim is the running request with the largest
/// effective priority (the one that has aged least relative to its priority).
#[derive(Debug)]
pub struct LongestWaitingFirst {
    aging_period_ns: i128,
    heap: KeyedHeap<(i128, String)>,
}

impl Default for LongestWaitingFirst {
    fn default() -> Self {
        LongestWaitingFirst::new(DEFAULT_AGING_PERIOD)
    }
}

impl LongestWaitingFirst {
    /// `aging_period`: waiting time worth one priority level (must be positive; zero is taken
    /// as one nanosecond, i.e. priorities almost ignored).
    pub fn new(aging_period: Nanos) -> Self {
        LongestWaitingFirst {
            aging_period_ns: aging_period.0.max(1) as i128,
            heap: KeyedHeap::default(),
        }
    }

    /// `priority × aging_period + arrival`, in nanoseconds: lower = admitted first.
    pub fn effective_key(&self, req: &Request) -> i128 {
        req.priority as i128 * self.aging_period_ns + req.times.arrival.0 as i128
    }
}

impl Policy for LongestWaitingFirst {
    fn name(&self) -> &'static str {
        "lwf"
    }

    fn add(&mut self, key: ReqKey, req: &Request) {
        self.heap
            .push((self.effective_key(req), req.request_id.clone()), key);
    }

    fn prepend(&mut self, key: ReqKey, req: &Request) {
        self.add(key, req);
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
        first_max_by_key(running, requests, |r| self.effective_key(r))
    }
}
