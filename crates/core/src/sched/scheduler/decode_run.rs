//! Decode runs: several decode steps in a row, taken request by request.
//!
//! Between two events a driver knows of (an arrival, an abort), a synchronously scheduled
//! engine whose running requests all decode and none stops repeats the same decode step
//! ([`Scheduler::schedule_decode`] and [`Scheduler::update_decode`]) with nothing to decide:
//! each request gets one token, one slot, one sample per step. A run of `k` such steps is
//! taken here in two phases instead of `k` passes over the running requests:
//!
//! 1. request by request ([`Scheduler::decode_run_requests`]): the `k` tokens each request
//!    samples and appends (with the block hashes they complete), its computed tokens, and the
//!    KV pool operations each of its steps makes (a block taken from the free queue, full
//!    blocks cached), recorded with their step;
//! 2. step by step ([`Scheduler::decode_run_step_ops`]): those pool operations, in the order
//!    the steps make them (step, then running order, then taking before caching), so that the
//!    free queue hands out the same blocks, evicts the same hashes and caches the same blocks
//!    as `k` single steps do, and the pool's state after each step is that step's.
//!
//! A request's tokens depend only on its own sample index (the sampler must say so,
//! [`crate::sampler::TokenSampler::is_stateless`]), so drawing them request by request gives
//! the same tokens as drawing them step by step. `tests/decode_runs.rs` runs workloads with
//! and without runs and compares every record.

use super::{ScheduledRequest, Scheduler, SchedulerOutput};
use crate::latency::BatchRequest;
use crate::sampler::TokenSampler;
use crate::time::Nanos;

/// One KV pool operation a request makes in a step of a decode run.
#[derive(Copy, Clone, Debug)]
struct PoolOp {
    /// Which step of the run, from 0.
    step: u32,
    /// The request's place in the running list.
    request: u32,
    /// Blocks taken from the free queue (0 or 1 for one token).
    take: u32,
    /// Tokens whose full blocks are cached, when a block becomes full (0: none).
    cache_tokens: usize,
}

/// Storage a decode run fills and empties (kept between runs, so none is allocated per run
/// once warm).
#[derive(Default, Debug)]
pub struct DecodeRunScratch {
    ops: Vec<PoolOp>,
    /// `ops` grouped by step: indices into `ops`, in step order.
    by_step: Vec<u32>,
    /// Where each step's operations start in `by_step` (one more entry than steps).
    step_starts: Vec<u32>,
    /// Where the next operation of each step goes while `by_step` is filled.
    cursor: Vec<u32>,
    /// One request's tokens of the run.
    tokens: Vec<u32>,
    /// Each request's previous token time before the run's first step (its first inter-token
    /// gap's start), in running order.
    pub prev_token_at: Vec<Nanos>,
}

/// The shape of a decode run the running requests allow.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DecodeRunBound {
    /// Most steps in a row no running request stops in and whose blocks the free queue holds.
    pub max_steps: usize,
    /// Σ tokens computed before the first step (the first step's attention context).
    pub context_tokens: usize,
}

impl Scheduler {
    /// Whether the running requests can decode in a run of steps and for at most how many
    /// ([`DecodeRunBound`], at most `cap` steps): every step would be a decode step of
    /// [`Scheduler::schedule_decode`] with a plain update (every request has an output
    /// already, none can stop on a sampled token, none reaches a length limit), and the free
    /// blocks hold every block the steps take, so nobody is preempted. `batch` gets the first
    /// step's batch as the latency model sees it. `None`, with nothing changed, otherwise.
    pub fn plan_decode_run(
        &self,
        cap: usize,
        batch: &mut Vec<BatchRequest>,
    ) -> Option<DecodeRunBound> {
        if !self.kv.fast_paths()
            || self.cfg.async_scheduling
            || self.running.is_empty()
            || !self.waiting.is_empty()
        {
            return None;
        }
        let budget = self.cfg.max_num_batched_tokens;
        let split = self.waiting.split_budget(budget, self.running.len(), 0);
        if split.running.min(budget) < self.running.len() {
            return None;
        }
        let max_model_len = self.cfg.max_model_len;
        let mut steps = cap;
        let mut context = 0usize;
        batch.clear();
        for &key in &self.running {
            let req = self.requests.req(key);
            if req.num_output_placeholders != 0
                || req.num_tokens() != req.num_computed_tokens + 1
                || req.num_output_tokens() == 0
            {
                return None;
            }
            steps = steps.min(req.tokens_before_length_stop(max_model_len)?);
            context += req.num_computed_tokens;
            batch.push(BatchRequest {
                num_tokens: 1,
                num_computed_before: req.num_computed_tokens,
                num_prompt_tokens: req.num_prompt_tokens(),
                samples: true,
            });
        }
        // The blocks the steps take grow with the steps: the most that the free queue holds.
        let free = self.kv.num_free_blocks() as usize;
        let blocks = |k: usize| -> usize {
            self.running
                .iter()
                .map(|&key| self.kv.blocks_to_decode(self.requests.req(key), k))
                .sum()
        };
        if steps > 0 && blocks(steps) > free {
            let (mut lo, mut hi) = (0, steps);
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                if blocks(mid) <= free {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            steps = lo;
        }
        (steps > 0).then_some(DecodeRunBound {
            max_steps: steps,
            context_tokens: context,
        })
    }

    /// Phase 1 of a decode run of `complete` whole steps, then, with `in_flight`, one more
    /// step scheduled but not processed: samples every request's tokens, request by request,
    /// appends the whole steps' tokens (the last at `ends[complete - 1]`), and records the
    /// pool operations of every step for [`Self::decode_run_step_ops`]. The last step's tokens
    /// go to `sampled`, and its output is returned. `complete + in_flight` must not exceed
    /// the bound [`Self::plan_decode_run`] gave.
    pub fn decode_run_requests(
        &mut self,
        complete: usize,
        in_flight: bool,
        ends: &[Nanos],
        sampler: &mut dyn TokenSampler,
        scratch: &mut DecodeRunScratch,
        sampled: &mut Vec<Option<u32>>,
    ) -> Option<SchedulerOutput> {
        debug_assert_eq!(ends.len(), complete);
        let steps = complete + usize::from(in_flight);
        let block_size = self.cfg.block_size;
        let hash_blocks = self.cfg.enable_prefix_caching;
        let caching = self.kv.enable_caching();
        scratch.ops.clear();
        scratch.prev_token_at.clear();
        scratch.tokens.clear();
        scratch.tokens.resize(steps, 0);
        sampled.clear();
        let mut out = in_flight.then(|| SchedulerOutput {
            scheduled: std::mem::take(&mut self.output_buf),
            ..SchedulerOutput::default()
        });
        for (i, &key) in self.running.iter().enumerate() {
            let req = self.requests.req_mut(key);
            let first_tokens = req.num_tokens();
            let tokens = &mut scratch.tokens[..steps];
            req.sample_ahead(sampler, tokens);
            // Step `step` gives the request slots for its known tokens, `first_tokens + step`,
            // as `allocate_slots` does for one new token: the blocks they outgrow the held
            // ones by are taken, and the blocks they fill cached. Only the steps at a block
            // boundary do either: the first step whose tokens pass the held blocks' slots,
            // and the first whose tokens fill one more block than is cached.
            let mut held = req.kv.blocks.len();
            let mut next_take = (held * block_size + 1).saturating_sub(first_tokens);
            let mut next_cache = if caching {
                ((req.kv.num_cached_blocks + 1) * block_size).saturating_sub(first_tokens)
            } else {
                usize::MAX
            };
            loop {
                let step = next_take.min(next_cache);
                if step >= steps {
                    break;
                }
                let tokens = first_tokens + step;
                let mut op = PoolOp {
                    step: step as u32,
                    request: i as u32,
                    take: 0,
                    cache_tokens: 0,
                };
                if step == next_take {
                    let need = self.kv.blocks_for(tokens);
                    op.take = (need - held) as u32;
                    held = need;
                    next_take = (held * block_size + 1) - first_tokens;
                }
                if step == next_cache {
                    op.cache_tokens = tokens;
                    next_cache = ((self.kv.full_blocks(tokens) + 1) * block_size) - first_tokens;
                }
                scratch.ops.push(op);
            }
            req.num_computed_tokens += steps;
            req.append_output_tokens(&tokens[..complete], block_size, hash_blocks);
            if in_flight {
                sampled.push(Some(tokens[complete]));
            }
            req.is_prefill_chunk = false;
            if let Some(&last) = ends.last() {
                let prev = req.times.last_token.replace(last);
                scratch
                    .prev_token_at
                    .push(prev.expect("a decoding request has had a token"));
            }
            if let Some(out) = out.as_mut() {
                out.scheduled.push(ScheduledRequest {
                    key,
                    num_tokens: 1,
                    num_computed_before: req.num_computed_tokens - 1,
                    num_prompt_tokens: req.num_prompt_tokens(),
                    samples: true,
                });
            }
        }
        // Group the operations by step (they were recorded request by request), keeping the
        // running order within a step.
        scratch.step_starts.clear();
        scratch.step_starts.resize(steps + 1, 0);
        for op in &scratch.ops {
            scratch.step_starts[op.step as usize + 1] += 1;
        }
        for s in 0..steps {
            scratch.step_starts[s + 1] += scratch.step_starts[s];
        }
        scratch.by_step.clear();
        scratch.by_step.resize(scratch.ops.len(), 0);
        scratch.cursor.clear();
        scratch
            .cursor
            .extend_from_slice(&scratch.step_starts[..steps]);
        for (n, op) in scratch.ops.iter().enumerate() {
            let slot = &mut scratch.cursor[op.step as usize];
            scratch.by_step[*slot as usize] = n as u32;
            *slot += 1;
        }
        // vLLM's `finished_req_ids = set()`, as in `update_after_schedule`.
        self.num_finished_pending = 0;
        out.map(|mut out| {
            out.total_num_scheduled_tokens = out.scheduled.len();
            out
        })
    }

    /// Phase 2 of a decode run: the pool operations of step `step` (from 0), in the order a
    /// single step makes them.
    pub fn decode_run_step_ops(&mut self, step: usize, scratch: &DecodeRunScratch) {
        let (from, to) = (
            scratch.step_starts[step] as usize,
            scratch.step_starts[step + 1] as usize,
        );
        for &n in &scratch.by_step[from..to] {
            let op = scratch.ops[n as usize];
            let req = self.requests.req_mut(self.running[op.request as usize]);
            if op.take > 0 {
                self.kv.take_blocks(req, op.take);
            }
            if op.cache_tokens > 0 {
                self.kv.cache_blocks(req, op.cache_tokens);
            }
        }
    }
}
