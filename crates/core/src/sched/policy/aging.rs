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

use super::first_max_by_key;
use super::heap::{HeapOrder, HeapPolicy};
use crate::request::Request;
use crate::sched::store::{ReqKey, RequestStore};
use crate::time::Nanos;

/// Waiting time worth one priority level: 1 s.
pub const DEFAULT_AGING_PERIOD: Nanos = Nanos(1_000_000_000);

/// See the module documentation. The victim is the running request with the largest
/// effective priority (the one that has aged least relative to its priority).
pub type LongestWaitingFirst = HeapPolicy<Aging>;

impl LongestWaitingFirst {
    /// `aging_period`: waiting time worth one priority level (must be positive; zero is taken
    /// as one nanosecond, i.e. priorities almost ignored).
    pub fn new(aging_period: Nanos) -> Self {
        HeapPolicy::with_order(Aging::new(aging_period))
    }
}

/// [`LongestWaitingFirst`]'s key and victim rule, with its aging period.
#[derive(Debug)]
pub struct Aging {
    aging_period_ns: i128,
}

impl Default for Aging {
    fn default() -> Self {
        Aging::new(DEFAULT_AGING_PERIOD)
    }
}

impl Aging {
    /// See [`LongestWaitingFirst::new`].
    pub fn new(aging_period: Nanos) -> Self {
        Aging {
            aging_period_ns: aging_period.0.max(1) as i128,
        }
    }

    /// `priority × aging_period + arrival`, in nanoseconds: lower = admitted first.
    pub fn effective_key(&self, req: &Request) -> i128 {
        req.priority as i128 * self.aging_period_ns + req.times.arrival.0 as i128
    }
}

impl HeapOrder for Aging {
    type Key = (i128, String);
    const NAME: &'static str = "lwf";

    fn key(&self, req: &Request) -> Self::Key {
        (self.effective_key(req), req.request_id.clone())
    }

    fn select_victim(&self, running: &[ReqKey], requests: &RequestStore) -> usize {
        first_max_by_key(running, requests, |r| self.effective_key(r))
    }
}
