//! Shortest prompt first (`sjf`, not vLLM): the classic shortest-job-first heuristic with the
//! prompt length as the job size, since the output length is unknown at admission.

use super::first_max_by_key;
use super::heap::{HeapOrder, HeapPolicy};
use crate::request::Request;
use crate::sched::store::{ReqKey, RequestStore};
use crate::time::Nanos;

/// Waiting requests in `(prompt tokens, arrival, request_id)` order, lowest first; a preempted
/// request goes back to its place in that order. The victim is the running request with the
/// longest prompt (ties: the latest arrival, then the first in running order). Long prompts can
/// starve under sustained load: that is the policy's known weakness.
pub type ShortestPromptFirst = HeapPolicy<ShortestPrompt>;

/// [`ShortestPromptFirst`]'s key and victim rule.
#[derive(Debug, Default)]
pub struct ShortestPrompt;

impl HeapOrder for ShortestPrompt {
    type Key = (usize, Nanos, String);
    const NAME: &'static str = "sjf";

    fn key(&self, req: &Request) -> Self::Key {
        (
            req.num_prompt_tokens(),
            req.times.arrival,
            req.request_id.clone(),
        )
    }

    fn select_victim(&self, running: &[ReqKey], requests: &RequestStore) -> usize {
        first_max_by_key(running, requests, |r| {
            (r.num_prompt_tokens(), r.times.arrival)
        })
    }
}
