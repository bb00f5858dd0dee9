//! Scheduling policies: the seam between the scheduler's mechanics and its choices.
//!
//! The scheduler ([`super::Scheduler`]) does what vLLM's does: it schedules running requests,
//! allocates KV blocks, preempts by recompute and admits waiting requests while the token budget,
//! `max_num_seqs` and the KV cache allow. Three choices in that loop belong to a [`Policy`]:
//!
//! 1. **Admission order**: the policy owns the waiting queue. The scheduler adds arrivals with
//!    [`Policy::add`], gives back preempted requests with [`Policy::prepend`], and admits whatever
//!    [`Policy::peek`] names (then [`Policy::pop`]s it) until one does not fit.
//! 2. **Preemption victim**: when a running request cannot get KV blocks, the scheduler preempts
//!    the running request at the index [`Policy::select_victim`] returns, and retries.
//! 3. **Token budget split**: once per step, [`Policy::split_budget`] says how many of the
//!    `max_num_batched_tokens` the running requests may use (the rest is held for waiting ones)
//!    and an optional cap on one request's prefill chunk.
//!
//! vLLM's `fcfs` and `priority` ([`vllm`]) are implementations that reproduce vLLM 0.19 exactly
//! (golden replays check them). The others ship for research and are marked "not vLLM" wherever
//! a run names its policy: [`shortest_prompt::ShortestPromptFirst`] (`sjf`),
//! [`aging::LongestWaitingFirst`] (`lwf`) and [`fair_share::FairShare`] (`fair`).
//!
//! To write a policy: implement [`Policy`] (or, for an admission order that is a fixed sort
//! key, a [`heap::HeapOrder`] used as [`heap::HeapPolicy`]), then either pass it to
//! [`crate::Engine::with_policy`] (no other change), or give it a name in
//! [`crate::SchedulingPolicy`] and [`build`] so that `--scheduling-policy NAME` selects it.

pub mod aging;
pub mod fair_share;
pub mod heap;
pub mod shortest_prompt;
mod tombstones;
pub mod vllm;

use super::store::{ReqKey, RequestStore};
use crate::config::SchedulingPolicy;
use crate::request::Request;
use crate::time::Nanos;

/// How one step's token budget is shared, from [`Policy::split_budget`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BudgetSplit {
    /// Tokens the running requests may take in this step at most; the waiting requests get what
    /// is left of the whole budget after them. `usize::MAX` (or anything ≥ the budget) = no
    /// reservation for waiting requests, as in vLLM.
    pub running: usize,
    /// Cap on the tokens of one request in this step (a prefill chunk), on top of
    /// `--long-prefill-token-threshold` (the smaller wins); 0 = no further cap, as in vLLM.
    pub chunk_cap: usize,
}

impl BudgetSplit {
    /// vLLM's split: running requests first with the whole budget, no extra chunk cap.
    pub const VLLM: BudgetSplit = BudgetSplit {
        running: usize::MAX,
        chunk_cap: 0,
    };
}

/// A scheduling policy: the waiting queue's order, the preemption victim and the budget split.
///
/// Contract with the scheduler:
/// - every live request is either in `running` (owned by the scheduler) or in this policy's
///   queue; [`Policy::len`] counts the latter;
/// - [`Policy::pop`] is called only right after [`Policy::peek`] returned `Some`, with the same
///   `now`, and must remove exactly that request;
/// - [`Policy::select_victim`] gets a non-empty `running` (in admission order) and returns an
///   index into it; returning the request being scheduled preempts that request itself.
pub trait Policy: std::fmt::Debug + Send {
    /// The name `--scheduling-policy` takes.
    fn name(&self) -> &'static str;

    /// Whether this is one of vLLM's own policies (outputs mark the others "not vLLM").
    fn is_vllm(&self) -> bool {
        false
    }

    /// Queues a newly arrived request.
    fn add(&mut self, key: ReqKey, req: &Request);

    /// Queues a request just preempted (its computed tokens are already reset).
    fn prepend(&mut self, key: ReqKey, req: &Request);

    /// The request to admit next at time `now`, if any is waiting.
    fn peek(&self, now: Nanos) -> Option<ReqKey>;

    /// Removes and returns the request [`Policy::peek`] just named.
    fn pop(&mut self, now: Nanos) -> Option<ReqKey>;

    /// Removes the given requests wherever they are in the queue (aborts, stops while
    /// preempted); every key is queued (the scheduler passes only waiting requests).
    fn remove(&mut self, keys: &[ReqKey]);

    /// Requests waiting.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index in `running` of the request to preempt.
    fn select_victim(&self, running: &[ReqKey], requests: &RequestStore) -> usize;

    /// This step's budget split; `budget` is `max_num_batched_tokens`. Called once per step.
    fn split_budget(
        &self,
        _budget: usize,
        _num_running: usize,
        _num_waiting: usize,
    ) -> BudgetSplit {
        BudgetSplit::VLLM
    }
}

/// The policy `--scheduling-policy` names.
pub fn build(p: SchedulingPolicy) -> Box<dyn Policy> {
    match p {
        SchedulingPolicy::Fcfs => Box::new(vllm::Fcfs::default()),
        SchedulingPolicy::Priority => Box::new(vllm::Priority::default()),
        SchedulingPolicy::ShortestPromptFirst => {
            Box::new(shortest_prompt::ShortestPromptFirst::default())
        }
        SchedulingPolicy::LongestWaitingFirst => Box::new(aging::LongestWaitingFirst::default()),
        SchedulingPolicy::FairShare => Box::new(fair_share::FairShare::default()),
    }
}

/// The first index holding the largest `key(request)`, as Python's `max` picks it.
pub fn first_max_by_key<K: Ord>(
    running: &[ReqKey],
    requests: &RequestStore,
    key: impl Fn(&Request) -> K,
) -> usize {
    let mut best = 0usize;
    let mut best_key: Option<K> = None;
    for (i, k) in running.iter().enumerate() {
        let v = key(requests.req(*k));
        if best_key.as_ref().is_none_or(|b| v > *b) {
            best = i;
            best_key = Some(v);
        }
    }
    best
}
