//! Decode runs: several decode steps in a row, taken request by request.
//!
//! Between two events a driver knows of (an arrival, an abort), a synchronously scheduled
//! engine whose running requests all decode and none stops repeats the same decode step
//! ([`Scheduler::schedule_decode`] and [`Scheduler::update_decode`]) with nothing to decide:
//! each request gets one token, one slot, one sample per step. A run of `k` such steps is
//! taken here in two phases instead of `k` passes over the running requests:
//!
//! 1. request by request ([`Scheduler::decode_run_requests`]): the tokens each request
//!    samples and appends (with the block hashes they complete) up to the run's end or the
//!    token that reaches its length limit (it then finishes in that step), its computed
//!    tokens, and the KV pool operations each of its steps makes (a block taken from the free
//!    queue, full blocks cached), recorded with their step;
//! 2. step by step ([`Scheduler::decode_run_schedule`], [`Scheduler::decode_run_finish`]):
//!    those pool operations, in the order the steps make them (step, then running order, then
//!    taking before caching), then the step's finished requests freed and removed in running
//!    order, so that the free queue hands out the same blocks, evicts the same hashes and
//!    caches the same blocks as the single steps do, and the scheduler's state after each
//!    step's scheduling and after its output is that of the single steps.
//!
//! A request's tokens depend only on its own sample index (the sampler must say so,
//! [`crate::sampler::TokenSampler::is_stateless`]), so drawing them request by request gives
//! the same tokens as drawing them step by step. `tests/decode_runs.rs` runs workloads with
//! and without runs and compares every record. The tokens of a request that defers caching
//! are counted, not drawn, when the scheduler holds a copy of the sampler to draw them with
//! at a preemption (`Scheduler::set_later_draws`): nothing else reads them offline.

use super::{ScheduledRequest, Scheduler, SchedulerOutput};
use crate::kv::KvCacheManager;
use crate::latency::BatchRequest;
use crate::request::Request;
use crate::sampler::TokenSampler;
use crate::sched::ReqKey;
use crate::time::Nanos;

/// One KV pool operation a request makes in a step of a decode run.
#[derive(Copy, Clone, Debug)]
struct PoolOp {
    /// Which step of the run, from 0.
    step: u32,
    key: ReqKey,
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
    /// The requests that finish within the run, `(step, key)`, by step and then in running
    /// order.
    finishes: Vec<(u32, ReqKey)>,
    /// Each running request's last step (from 0) before its length limit ends it, in running
    /// order ([`Scheduler::plan_decode_run`]).
    pub stop_steps: Vec<usize>,
    /// Each request's previous token time before the run's first step (its first inter-token
    /// gap's start), in running order.
    pub prev_token_at: Vec<Nanos>,
}

impl Scheduler {
    /// Whether the running requests can decode in a run of steps, and for at most how many
    /// (at most `cap`): every step is a decode step of [`Scheduler::schedule_decode`] (every
    /// request has an output already and none can stop on a sampled token: a request finishes
    /// in the step whose token reaches its length limit, `scratch.stop_steps`), and the free
    /// blocks hold every block the steps take, so nobody is preempted. `batch` gets the first
    /// step's batch as the latency model sees it. `None`, with nothing changed, otherwise.
    pub fn plan_decode_run(
        &self,
        cap: usize,
        batch: &mut Vec<BatchRequest>,
        scratch: &mut DecodeRunScratch,
    ) -> Option<usize> {
        if !self.decode_steps_possible() {
            return None;
        }
        let max_model_len = self.cfg.max_model_len;
        batch.clear();
        scratch.stop_steps.clear();
        for &key in &self.running {
            let req = self.requests.req(key);
            if req.num_output_placeholders != 0
                || req.num_tokens() != req.num_computed_tokens + 1
                || req.num_output_tokens() == 0
            {
                return None;
            }
            scratch
                .stop_steps
                .push(req.tokens_before_length_stop(max_model_len)?);
            batch.push(BatchRequest {
                num_tokens: 1,
                num_computed_before: req.num_computed_tokens,
                num_prompt_tokens: req.num_prompt_tokens(),
                samples: true,
            });
        }
        // The blocks the steps take grow with the steps (a request that finishes takes none
        // after its last step; the blocks it frees are not counted on): the most steps whose
        // blocks the free queue holds.
        let free = self.kv.num_free_blocks() as usize;
        let stops = &scratch.stop_steps;
        let blocks = |k: usize| -> usize {
            self.running
                .iter()
                .zip(stops)
                .map(|(&key, &stop)| {
                    self.kv
                        .blocks_to_decode(self.requests.req(key), k.min(stop + 1))
                })
                .sum()
        };
        let mut steps = cap;
        if blocks(steps) > free {
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
        (steps > 0).then_some(steps)
    }

    /// Phase 1 of a decode run of `complete` whole steps, then, with `in_flight`, one more
    /// step scheduled but not processed: samples every request's tokens, request by request,
    /// appends the whole steps' tokens (step `s`'s at `ends[s]`) up to the request's last step
    /// (`scratch.stop_steps`, where it finishes), and records the pool operations of every step
    /// and the requests finishing in each. The in-flight step's tokens go to `sampled` and
    /// its output is returned. `complete + in_flight` must not exceed the steps
    /// [`Self::plan_decode_run`] allowed, and some request must be running in every step.
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
        scratch.ops.clear();
        scratch.finishes.clear();
        scratch.prev_token_at.clear();
        scratch.tokens.clear();
        scratch.tokens.resize(steps, 0);
        sampled.clear();
        let mut out = in_flight.then(|| SchedulerOutput {
            scheduled: std::mem::take(&mut self.output_buf),
            ..SchedulerOutput::default()
        });
        let draws_later = self.draws_later();
        for (&key, &stop) in self.running.iter().zip(&scratch.stop_steps) {
            let req = self.requests.req_mut(key);
            // The steps the request is in: up to the one whose token ends it.
            let req_steps = steps.min(stop + 1);
            let appended = req_steps.min(complete);
            let tokens = &mut scratch.tokens[..req_steps];
            record_pool_ops(&self.kv, req, key, req_steps, &mut scratch.ops);
            req.num_computed_tokens += req_steps;
            if draws_later && req.defers_caching() {
                // Nothing reads these tokens unless the request is preempted, which draws
                // them; the in-flight step's token is drawn now, as it goes out.
                req.append_undrawn_outputs(appended);
                if req_steps > appended {
                    tokens[appended] = req.sample_next(sampler);
                }
            } else {
                req.sample_ahead(sampler, tokens);
                req.append_output_tokens(&tokens[..appended], block_size, hash_blocks);
            }
            req.is_prefill_chunk = false;
            if appended > 0 {
                let prev = req.times.last_token.replace(ends[appended - 1]);
                scratch
                    .prev_token_at
                    .push(prev.expect("a decoding request has had a token"));
            }
            if stop < complete {
                scratch.finishes.push((stop as u32, key));
            } else if let Some(out) = out.as_mut() {
                sampled.push(Some(tokens[complete]));
                out.scheduled.push(ScheduledRequest {
                    key,
                    num_tokens: 1,
                    num_computed_before: req.num_computed_tokens - 1,
                    num_prompt_tokens: req.num_prompt_tokens(),
                    samples: true,
                });
            }
        }
        group_by_step(scratch, steps);
        // Requests finish by step, in running order within a step (a stable sort keeps it).
        scratch.finishes.sort_by_key(|&(step, _)| step);
        out.map(|mut out| {
            out.total_num_scheduled_tokens = out.scheduled.len();
            out
        })
    }

    /// Phase 2 of a decode run, the scheduling of step `step` (from 0): the pool operations
    /// it makes, in the order a single step makes them.
    pub fn decode_run_schedule(&mut self, step: usize, scratch: &DecodeRunScratch) {
        let (from, to) = (
            scratch.step_starts[step] as usize,
            scratch.step_starts[step + 1] as usize,
        );
        for &n in &scratch.by_step[from..to] {
            let op = scratch.ops[n as usize];
            let req = self.requests.req_mut(op.key);
            if op.take > 0 {
                self.kv.take_blocks(req, op.take);
            }
            if op.cache_tokens > 0 {
                self.kv.cache_blocks(req, op.cache_tokens);
            }
        }
        // vLLM's `finished_req_ids = set()`, as in `update_after_schedule`.
        self.num_finished_pending = 0;
    }

    /// Phase 2 of a decode run, the output of step `step`: the requests that finished in it,
    /// freed and removed in running order, into `finished`.
    pub fn decode_run_finish(
        &mut self,
        step: usize,
        scratch: &DecodeRunScratch,
        finished: &mut Vec<Box<Request>>,
    ) {
        finished.clear();
        let from = scratch
            .finishes
            .partition_point(|&(s, _)| (s as usize) < step);
        for &(s, key) in &scratch.finishes[from..] {
            if s as usize != step {
                break;
            }
            let stopped = self
                .requests
                .req_mut(key)
                .check_stop(self.cfg.max_model_len);
            debug_assert!(stopped, "a request stops at its length limit");
            finished.push(self.free_request(key));
        }
        if !finished.is_empty() {
            let gone = &scratch.finishes[from..from + finished.len()];
            self.running.retain(|k| !gone.iter().any(|&(_, g)| g == *k));
        }
    }
}

/// Records the pool operations of a request's first `steps` steps of a run: step `s` gives it
/// slots for its known tokens, `first + s` of them, as `allocate_slots` does for one new
/// token: the blocks they outgrow the held ones by are taken, and the blocks they fill cached.
/// Only the steps at a block boundary do either: the first step whose tokens pass the held
/// blocks' slots, and the first whose tokens fill one more block than is cached.
fn record_pool_ops(
    kv: &KvCacheManager,
    req: &Request,
    key: ReqKey,
    steps: usize,
    ops: &mut Vec<PoolOp>,
) {
    let block_size = kv.block_size();
    let first = req.num_tokens();
    let mut held = req.kv.blocks.len();
    let mut next_take = (held * block_size + 1).saturating_sub(first);
    let mut next_cache = if kv.enable_caching() {
        ((req.kv.num_cached_blocks + 1) * block_size).saturating_sub(first)
    } else {
        usize::MAX
    };
    loop {
        let step = next_take.min(next_cache);
        if step >= steps {
            return;
        }
        let tokens = first + step;
        let mut op = PoolOp {
            step: step as u32,
            key,
            take: 0,
            cache_tokens: 0,
        };
        if step == next_take {
            let need = kv.blocks_for(tokens);
            op.take = (need - held) as u32;
            held = need;
            next_take = held * block_size + 1 - first;
        }
        if step == next_cache {
            op.cache_tokens = tokens;
            next_cache = (kv.full_blocks(tokens) + 1) * block_size - first;
        }
        ops.push(op);
    }
}

/// Groups `scratch.ops` (recorded request by request) by step, keeping the running order
/// within a step.
fn group_by_step(scratch: &mut DecodeRunScratch, steps: usize) {
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
}
