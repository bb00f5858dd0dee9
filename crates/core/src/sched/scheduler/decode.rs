//! The decode step: [`Scheduler::schedule`] and [`Scheduler::update_from_output`] in one pass
//! each when every running request decodes one token and nothing else can happen in the step.
//!
//! Most steps of a long run are such steps: no request waits, every running request has
//! computed all its tokens but the last sampled one, and the free blocks cover every block the
//! step can take, so no request is preempted. vLLM's general path then gives each running
//! request, in order, one token, a slot (`allocate_slots`) and a sampled token, and processes
//! the outputs in the same order. Here that is done in one pass over the running requests
//! instead of the general path's four (schedule the running requests, advance their computed
//! tokens and build the output, sample, describe the batch to the latency model), and, when no
//! request stops, the outputs in one pass with a compact record per token ([`DecodeUpdate`]).
//! The decisions, their order and every record observers and sinks see are the general path's;
//! `tests/fast_paths.rs` runs workloads both ways and compares them.

use super::{ScheduledRequest, Scheduler, SchedulerOutput};
use crate::latency::BatchRequest;
use crate::sampler::TokenSampler;
use crate::time::Nanos;

/// One decoding request's output of a decode step with a plain update
/// ([`DecodeStep::plain_update`]): what stats need of it
/// ([`crate::engine::EngineObserver::on_decode_update`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DecodeUpdate {
    /// The request's tag.
    pub tag: u64,
    /// The token appended.
    pub token: u32,
    /// When the request's previous token was processed.
    pub prev_token_at: Nanos,
}

/// What a decode step hands the engine besides its [`SchedulerOutput`].
pub struct DecodeStep {
    pub output: SchedulerOutput,
    /// Whether every request had an output token before this step and none stops when the
    /// step's tokens are appended: then its output may be processed by
    /// [`Scheduler::update_decode`]. (A request whose prefill chunk left just its last prompt
    /// token also computes one token here, and samples its first.)
    pub plain_update: bool,
}

impl Scheduler {
    /// Schedules the step as [`Scheduler::schedule`] would, samples its tokens into `sampled`
    /// and describes it to the latency model in `batch` (both cleared first), when it is a
    /// decode step: synchronous scheduling, no waiting request, every running request one
    /// token from its known tokens, a token budget for all of them, and free blocks for every
    /// block they take. `None`, with nothing changed, otherwise.
    pub fn schedule_decode(
        &mut self,
        sampler: &mut dyn TokenSampler,
        sampled: &mut Vec<Option<u32>>,
        batch: &mut Vec<BatchRequest>,
    ) -> Option<DecodeStep> {
        if !self.decode_steps_possible() {
            return None;
        }
        let max_model_len = self.cfg.max_model_len;
        let mut new_blocks = 0usize;
        for &key in &self.running {
            let req = self.requests.req(key);
            if req.num_output_placeholders != 0
                || req.num_tokens() != req.num_computed_tokens + 1
                || req.num_computed_tokens + 1 >= max_model_len
            {
                return None;
            }
            new_blocks += self.kv.blocks_to_decode_one(req);
        }
        if new_blocks > self.kv.num_free_blocks() as usize {
            return None;
        }
        sampled.clear();
        batch.clear();
        let mut out = SchedulerOutput {
            scheduled: std::mem::take(&mut self.output_buf),
            ..SchedulerOutput::default()
        };
        out.scheduled.reserve(self.running.len());
        let mut plain_update = true;
        for &key in &self.running {
            let req = self.requests.req_mut(key);
            let fits = self.kv.allocate_slots(req, 1, None);
            debug_assert!(fits, "the free blocks were counted");
            let before = req.num_computed_tokens;
            req.num_computed_tokens = before + 1;
            req.is_prefill_chunk = false;
            let token = req.sample_next(sampler);
            plain_update &=
                req.num_output_tokens() > 0 && !req.would_stop_after(token, max_model_len);
            sampled.push(Some(token));
            let scheduled = ScheduledRequest {
                key,
                num_tokens: 1,
                num_computed_before: before,
                num_prompt_tokens: req.num_prompt_tokens(),
                samples: true,
            };
            batch.push(scheduled.batch_request());
            out.scheduled.push(scheduled);
        }
        out.total_num_scheduled_tokens = out.scheduled.len();
        // vLLM's `finished_req_ids = set()`, as in `update_after_schedule`.
        self.num_finished_pending = 0;
        Some(DecodeStep {
            output: out,
            plain_update,
        })
    }

    /// Whether the queues and the budget let the next steps be decode steps: synchronous
    /// scheduling with the shortcuts on, running requests and none waiting, and
    /// `schedule()`'s running budget (the whole budget less what the policy holds back)
    /// covering one token for each running request. The requests' own state is for the caller.
    pub(super) fn decode_steps_possible(&self) -> bool {
        if !self.kv.fast_paths()
            || self.cfg.async_scheduling
            || self.running.is_empty()
            || !self.waiting.is_empty()
        {
            return false;
        }
        let budget = self.cfg.max_num_batched_tokens;
        let split = self.waiting.split_budget(budget, self.running.len(), 0);
        split.running.min(budget) >= self.running.len()
    }

    /// [`Scheduler::update_from_output`] for a decode step with a plain update
    /// ([`DecodeStep::plain_update`]) none of whose requests finished since it was scheduled:
    /// appends each token, in order, and reports it in `updates`.
    pub fn update_decode(
        &mut self,
        output: &SchedulerOutput,
        sampled: &[Option<u32>],
        now: Nanos,
        updates: &mut Vec<DecodeUpdate>,
    ) {
        let block_size = self.cfg.block_size;
        let hash_blocks = self.cfg.enable_prefix_caching;
        let scheduled = &output.scheduled;
        updates.reserve(scheduled.len());
        for s in scheduled.iter().take(super::PREFETCH_AHEAD) {
            self.requests.prefetch(s.key);
        }
        for (j, (s, token)) in scheduled.iter().zip(sampled).enumerate() {
            if let Some(ahead) = scheduled.get(j + super::PREFETCH_AHEAD) {
                self.requests.prefetch(ahead.key);
            }
            let token = token.expect("a decode step samples every request");
            let req = self.requests.req_mut(s.key);
            debug_assert!(!req.would_stop_after(token, self.cfg.max_model_len));
            req.append_output_token(token, block_size, hash_blocks);
            let prev = req.times.last_token.replace(now);
            updates.push(DecodeUpdate {
                tag: req.tag,
                token,
                prev_token_at: prev.expect("a decoding request has had a token"),
            });
        }
    }
}
