//! Shortest prompt first (`sjf`, not vLLM): the classic shortest-job-first heuristic with the
//! prompt length as the job size, since the output length is unknown at admission.

use super::heap::KeyedHeap;
use super::{first_max_by_key, Policy};
use crate::request::Request;
use crate::sched::store::{ReqKey, RequestStore};
use crate::time::Nanos;

/// Waiting requests in `(prompt tokens, arrival, request_id)` order, lowest first; a preempted
/// request goes back to its place in that order. The victim is the running request with the
/// longest prompt (ties: the latest arrival, then the first in running order). Long prompts can
/// starve under sustained load: that is the policy's known weakness.
#[derive(Debug, Default)]
pub struct ShortestPromptFirst {
    heap: KeyedHeap<(usize, Nanos, String)>,
}

impl ShortestPromptFirst {
    fn key(req: &Request) -> (usize, Nanos, String) {
        (
            req.num_prompt_tokens(),
            req.times.arrival,
            req.request_id.clone(),
        )
    }
}

impl Policy for ShortestPromptFirst {
    fn name(&self) -> &'static str {
        "sjf"
    }

    fn add(&mut self, key: ReqKey, req: &Request) {
        self.heap.push(Self::key(req), key);
    }

    fn prepend(&mut self, key: ReqKey, req: &Request) {
        self.heap.push(Self::key(req), key);
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
        first_max_by_key(running, requests, |r| {
            (r.num_prompt_tokens(), r.times.arrival)
        })
    }
}
