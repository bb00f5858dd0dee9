//! The engine core in any clock: vLLM's `EngineCore` busy loop (`v1/engine/core.py`) with the GPU
//! replaced by a latency model on an in-order device timeline.
//!
//! The driver owns the clock. It calls [`Engine::add_request`] / [`Engine::abort`] when those
//! happen, then [`Engine::run`] with the current time; `run` does all the work the engine would do
//! at that instant and says when it next needs to run ([`Wake`]).
//!
//! Loop, as in vLLM (`run_busy_loop` → `_process_input_queue` → `step_with_batch_queue`):
//! 1. take in queued inputs (new requests, aborts);
//! 2. schedule a step and submit it to the device: it starts when the device is free
//!    (`max(now, end of previous step)`) and lasts what the latency model says;
//! 3. with async scheduling (two batches in flight) and the queue not full, go back to 1 at once;
//!    otherwise block until the oldest in-flight step ends, apply pending aborts, process its
//!    output (tokens, stop rules, frees), and go back to 1.
//!
//! Inputs that arrive while the engine is blocked are taken in after the step's output is
//! processed, which is when vLLM stamps `queued_ts`.
//!
//! Two ways to watch it: [`Engine::run`] with an [`EngineObserver`] sees every decision with the
//! scheduler itself (for golden replays and invariant tests); drivers use the
//! [`EngineCore`](crate::engine_core::EngineCore) interface, whose sink receives stats
//! ([`crate::stats`]) and tagged per-request outputs only.

use crate::config::{ConfigError, EngineConfig};
use crate::cudagraph::CudaGraphSizes;
use crate::kv::hash::BlockHash;
use crate::latency::{BatchRequest, LatencyModel, StepBatch};
use crate::request::{FinishReason, NewRequest, Request};
use crate::sampler::{SampleContext, TokenSampler};
use crate::sched::{DecodeUpdate, ReqKey, RequestUpdate, Scheduler, SchedulerOutput};
use crate::stats::{EngineSink, StatsBuffers, StatsRecorder};
use crate::time::Nanos;
use std::collections::VecDeque;
use thiserror::Error;

mod decode_run;
pub use decode_run::{DecodeRunStep, DecodeRunUpdate, RunGaps};
use decode_run::{RunEnd, RunStepShape};

/// When the engine needs the driver to call [`Engine::run`] again.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Blocked on a device step that ends at this time.
    At(Nanos),
    /// Nothing to do until a new request or abort arrives.
    Idle,
}

/// Why a request was refused at submission (before it reached the scheduler).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("request id `{0}` is already in use")]
    DuplicateId(String),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("max_tokens must be at least 1")]
    ZeroMaxTokens,
    #[error(
        "this model's maximum context length is {max_model_len} tokens; however, the prompt \
         contains {prompt_len} input tokens, leaving no room for output"
    )]
    PromptTooLong {
        prompt_len: usize,
        max_model_len: usize,
    },
    #[error(
        "min_tokens ({min_tokens}) is greater than max_tokens ({max_tokens}, after limiting it to \
         the {room} tokens of context left after the prompt)"
    )]
    MinTokensAboveMaxTokens {
        min_tokens: u32,
        max_tokens: u32,
        room: u32,
    },
    #[error(
        "the request needs {needed} KV blocks for its prompt and output but the cache has only \
         {available}: it could never be scheduled"
    )]
    ExceedsKvCapacity { needed: usize, available: usize },
}

/// One scheduled step, as reported to observers.
#[derive(Copy, Clone, Debug)]
pub struct StepRecord<'a> {
    /// Sequence number of the `schedule()` call, from 0.
    pub index: u64,
    /// When the step was scheduled.
    pub scheduled_at: Nanos,
    /// When the device starts and ends it (both `scheduled_at` for an empty step).
    pub device_start: Nanos,
    pub device_end: Nanos,
    pub output: &'a SchedulerOutput,
    pub scheduler: &'a Scheduler,
}

/// Receives what the engine does, as it happens. All methods default to doing nothing.
pub trait EngineObserver {
    /// After each `schedule()` (with the step submitted to the device).
    fn on_schedule(&mut self, _step: &StepRecord<'_>) {}
    /// After a step's output is processed: appended tokens and finished requests, in order.
    fn on_update(&mut self, _now: Nanos, _updates: &[RequestUpdate], _scheduler: &Scheduler) {}
    /// Whether [`Self::on_decode_update`] may stand for [`Self::on_update`] after a decode
    /// step in which no request stopped (`false` by default: every update then comes as
    /// [`RequestUpdate`]s).
    fn accepts_decode_updates(&self) -> bool {
        false
    }
    /// After a decode step's output is processed, when [`Self::accepts_decode_updates`]: each
    /// request's token, in order. Every request is running, had a token before, and goes on.
    fn on_decode_update(&mut self, _now: Nanos, _updates: &[DecodeUpdate], _scheduler: &Scheduler) {
    }
    /// Whether the observer takes the whole steps of a decode run as
    /// [`Self::on_decode_run_step`]s (`false` by default: the engine then takes no decode
    /// runs, and every step comes as [`Self::on_schedule`] and an update).
    fn accepts_decode_runs(&self) -> bool {
        false
    }
    /// The scheduling of a whole step of a decode run ([`Engine::run_until`]): it stands for
    /// that step's [`Self::on_schedule`].
    fn on_decode_run_step(&mut self, _step: &DecodeRunStep<'_>) {}
    /// The output of that step, processed at its end: it stands for its
    /// [`Self::on_decode_update`] or [`Self::on_update`].
    fn on_decode_run_update(&mut self, _update: &DecodeRunUpdate<'_>) {}
    /// A request was taken in by the engine loop.
    fn on_queued(&mut self, _now: Nanos, _key: ReqKey, _scheduler: &Scheduler) {}
    /// Requests finished by aborts applied at `now`.
    fn on_abort(&mut self, _now: Nanos, _finished: &[Box<Request>], _scheduler: &Scheduler) {}
}

/// An observer that ignores everything.
pub struct NoObserver;
impl EngineObserver for NoObserver {}

enum Input {
    Add(Box<Request>),
    /// Finish with this reason: `Abort` from the client, `Stop` for a stop string matched
    /// outside the engine.
    Finish(String, FinishReason),
}

struct InFlight {
    output: SchedulerOutput,
    sampled: Vec<Option<u32>>,
    end: Nanos,
    /// A decode step with a plain update ([`crate::sched::DecodeStep::plain_update`]).
    decode: bool,
}

pub struct Engine {
    sched: Scheduler,
    latency: Box<dyn LatencyModel>,
    sampler: Box<dyn TokenSampler>,
    inputs: VecDeque<Input>,
    /// Ids of requests in `inputs`, for the duplicate check in O(1).
    queued_ids: rustc_hash::FxHashSet<String>,
    /// Newest at the front, oldest at the back (vLLM's `batch_queue`).
    batch_queue: VecDeque<InFlight>,
    batch_queue_size: usize,
    cuda_graphs: CudaGraphSizes,
    device_free_at: Nanos,
    blocked: bool,
    num_schedule_calls: u64,
    /// Steps scheduled by [`Scheduler::schedule_decode`] or a decode run (for tests:
    /// `num_decode_steps`).
    num_decode_steps: u64,
    /// Steps taken in decode runs (for tests: `num_decode_run_steps`).
    num_decode_run_steps: u64,
    /// Storage for the next step's sampled tokens, taken back from the last processed step.
    sampled_buf: Vec<Option<u32>>,
    /// Which engine of a fleet this is (the `engine` label of metrics).
    engine_index: usize,
    scratch: EngineScratch,
}

/// Buffers an engine fills and empties within one [`Engine::run`]: nothing in them outlives
/// the call, so engines that run one after another (a fleet's) can share one set
/// ([`Engine::swap_scratch`]), which then stays in the CPU's caches instead of each engine's
/// going cold while the others run.
#[derive(Default)]
pub struct EngineScratch {
    /// The processed step's per-request updates.
    updates: Vec<RequestUpdate>,
    /// The same for a decode step ([`Scheduler::update_decode`]).
    decode_updates: Vec<DecodeUpdate>,
    /// The latency model's view of the step being submitted.
    batch_requests: Vec<BatchRequest>,
    /// What the stats recorder hands the sink per iteration.
    stats: StatsBuffers,
    /// A decode run's steps as priced, their ends, the running-order indices of the requests
    /// in a step, the requests finished in a step, and the scheduler's storage.
    run_steps: Vec<RunStepShape>,
    run_ends: Vec<Nanos>,
    run_alive: Vec<usize>,
    /// Boxed as the scheduler hands finished requests out (and observers take them).
    #[allow(clippy::vec_box)]
    run_finished: Vec<Box<Request>>,
    run: crate::sched::DecodeRunScratch,
}

/// Holds the sampler's place while [`Engine::wrap_sampler`] moves it.
struct NoSampler;

impl TokenSampler for NoSampler {
    fn sample(&mut self, _: &SampleContext<'_>) -> u32 {
        0
    }
}

impl Engine {
    pub fn new(
        cfg: EngineConfig,
        latency: Box<dyn LatencyModel>,
        sampler: Box<dyn TokenSampler>,
    ) -> Result<Engine, ConfigError> {
        cfg.validate()?;
        let batch_queue_size = if cfg.async_scheduling { 2 } else { 1 };
        let cuda_graphs = cfg.cuda_graph_sizes();
        let mut sched = Scheduler::new(cfg);
        sched.set_later_draws(sampler.stateless_copy());
        Ok(Engine {
            sched,
            latency,
            sampler,
            inputs: VecDeque::new(),
            queued_ids: Default::default(),
            batch_queue: VecDeque::new(),
            batch_queue_size,
            cuda_graphs,
            device_free_at: Nanos::ZERO,
            blocked: false,
            num_schedule_calls: 0,
            num_decode_steps: 0,
            num_decode_run_steps: 0,
            sampled_buf: Vec::new(),
            engine_index: 0,
            scratch: EngineScratch::default(),
        })
    }

    /// Uses a scheduling policy of the caller's instead of the one the configuration names
    /// (see [`crate::sched::policy`]); call before adding requests (ignored after).
    pub fn with_policy(mut self, policy: Box<dyn crate::sched::Policy>) -> Engine {
        self.sched.replace_policy(policy);
        self
    }

    /// Exchanges this engine's scratch buffers with `other` (see [`EngineScratch`]); what the
    /// engine does is unchanged, since it empties them before use.
    pub fn swap_scratch(&mut self, other: &mut EngineScratch) {
        std::mem::swap(&mut self.scratch, other);
    }

    /// Sets which engine of a fleet this is (default 0); stats carry it.
    pub fn with_engine_index(mut self, index: usize) -> Engine {
        self.engine_index = index;
        self
    }

    /// Replaces the token sampler by `wrap(current)`: lets a frontend layer per-request rules
    /// (scripted outputs, seeds) over the sampler the engine was built with.
    pub fn wrap_sampler(
        &mut self,
        wrap: impl FnOnce(Box<dyn TokenSampler>) -> Box<dyn TokenSampler>,
    ) {
        let inner = std::mem::replace(&mut self.sampler, Box::new(NoSampler));
        self.sampler = wrap(inner);
        self.sched.set_later_draws(self.sampler.stateless_copy());
    }

    /// Turns the per-step hot paths' shortcuts on (the default) or off; off, every step takes
    /// the general path. Results are identical either way: this exists for the tests that check
    /// that (`tests/fast_paths.rs`), not as a setting.
    #[doc(hidden)]
    pub fn set_fast_paths(&mut self, on: bool) {
        self.sched.set_fast_paths(on);
    }

    /// Steps taken by the decode-step path ([`Scheduler::schedule_decode`]); for the tests
    /// that check the path is exercised, not a statistic.
    #[doc(hidden)]
    pub fn num_decode_steps(&self) -> u64 {
        self.num_decode_steps
    }

    /// Steps taken in decode runs ([`Engine::run_until`]), the one left in flight included;
    /// for the tests that check runs are taken, not a statistic.
    #[doc(hidden)]
    pub fn num_decode_run_steps(&self) -> u64 {
        self.num_decode_run_steps
    }

    pub fn engine_index(&self) -> usize {
        self.engine_index
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }

    /// Starts recording KV cache events (vLLM `enable_kv_cache_events`); off by default. Call
    /// it before adding requests: while events are off the engine drops a request's prompt ids
    /// when it takes the request in ([`Request::release_prompt_ids`]), and `BlockStored`
    /// events report them.
    pub fn enable_kv_cache_events(&mut self) {
        self.sched.enable_kv_cache_events();
    }

    /// The KV cache events since the last call, oldest first (empty while events are off).
    pub fn take_kv_cache_events(&mut self) -> Vec<crate::kv::KvCacheEvent> {
        self.sched.take_kv_cache_events()
    }

    pub fn config(&self) -> &EngineConfig {
        self.sched.config()
    }

    pub fn latency_model(&self) -> &dyn LatencyModel {
        self.latency.as_ref()
    }

    /// The CUDA-graph sizes this engine pads its steps to (empty with `enforce_eager`): a
    /// data-parallel group reads them to decide whether its ranks pad to each other.
    pub fn cuda_graph_sizes(&self) -> &CudaGraphSizes {
        &self.cuda_graphs
    }

    /// Requests submitted and not yet finished (queued inputs included).
    pub fn num_unfinished(&self) -> usize {
        self.sched.num_unfinished() + self.queued_ids.len()
    }

    /// Steps in flight that compute tokens (a step that scheduled nothing is not counted).
    #[doc(hidden)]
    pub fn num_executing_steps(&self) -> usize {
        self.batch_queue
            .iter()
            .filter(|s| s.output.total_num_scheduled_tokens > 0)
            .count()
    }

    /// Sets when the steps in flight that compute tokens end, oldest first (`end_of(i)` for
    /// the `i`-th), and the device's free time to the newest one's end. For engines whose steps
    /// are priced together after every one of them has scheduled its own (a mixture-of-experts
    /// model's data-parallel ranks in lockstep, `llm-emu-fleet`'s `ep`): they are built with a
    /// latency model that answers a provisional length, and the group sets the lengths here,
    /// before the engines run again.
    #[doc(hidden)]
    pub fn retime_executing_steps(&mut self, mut end_of: impl FnMut(usize) -> Nanos) {
        let executing = self
            .batch_queue
            .iter_mut()
            .rev()
            .filter(|s| s.output.total_num_scheduled_tokens > 0);
        for (i, step) in executing.enumerate() {
            step.end = end_of(i);
            self.device_free_at = step.end;
        }
    }

    /// Whether the engine still has anything to do (vLLM's `has_work`, plus queued inputs).
    pub fn has_work(&self) -> bool {
        self.sched.has_requests() || !self.batch_queue.is_empty() || !self.inputs.is_empty()
    }

    /// Validates a request as vLLM's frontend does and queues it for the engine loop. The
    /// returned error means the request will never run; everything else goes on.
    pub fn add_request(&mut self, new: NewRequest) -> Result<(), RequestError> {
        self.add_tagged(new, 0)
    }

    /// [`Engine::add_request`] with the caller's tag, returned with each of its outputs.
    pub fn add_tagged(&mut self, new: NewRequest, tag: u64) -> Result<(), RequestError> {
        self.add_tagged_hashed(new, tag, None)
    }

    /// [`Engine::add_tagged`] with the prompt's full-block hashes already computed by the
    /// caller (a router that looked the prompt up in the instances' caches), so the prompt is
    /// not hashed again. They must be [`crate::kv::hash::extend_block_hashes`] of the prompt
    /// at this engine's block size with the request's salt; hashes of another block size are
    /// ignored (the engine hashes then).
    pub fn add_tagged_hashed(
        &mut self,
        mut new: NewRequest,
        tag: u64,
        prompt_hashes: Option<(usize, Vec<BlockHash>)>,
    ) -> Result<(), RequestError> {
        let cfg = self.sched.config();
        let prompt_len = new.prompt_token_ids.len();
        if prompt_len == 0 {
            return Err(RequestError::EmptyPrompt);
        }
        if new.sampling.max_tokens == 0 {
            return Err(RequestError::ZeroMaxTokens);
        }
        if prompt_len >= cfg.max_model_len {
            return Err(RequestError::PromptTooLong {
                prompt_len,
                max_model_len: cfg.max_model_len,
            });
        }
        // The frontend clamps max_tokens to the context left.
        let room = (cfg.max_model_len - prompt_len) as u32;
        new.sampling.max_tokens = new.sampling.max_tokens.min(room);
        // vLLM refuses min_tokens > max_tokens; past the clamp it would also never stop.
        if new.sampling.min_tokens > new.sampling.max_tokens {
            return Err(RequestError::MinTokensAboveMaxTokens {
                min_tokens: new.sampling.min_tokens,
                max_tokens: new.sampling.max_tokens,
                room,
            });
        }
        let total = prompt_len + new.sampling.max_tokens as usize;
        // A windowed group holds at most the window and one step's tokens (vLLM's
        // `SlidingWindowSpec.max_memory_usage_bytes`: one block more for a window that does
        // not start at a block's start). But with `scheduler_reserve_full_isl` vLLM admits a
        // request, and re-admits it after a preemption, only when its whole known sequence
        // fits the free blocks, window or not (`can_fit_full_sequence`): a longer one would
        // wait forever, so it is refused as with full attention.
        let all_blocks = total.div_ceil(cfg.block_size);
        let needed = match cfg.sliding_window {
            Some(w) if !cfg.scheduler_reserve_full_isl => all_blocks.min(
                total
                    .min(w - 1 + cfg.max_num_batched_tokens)
                    .div_ceil(cfg.block_size)
                    + 1,
            ),
            _ => all_blocks,
        };
        let available = cfg.num_gpu_blocks as usize - 1;
        if needed > available {
            return Err(RequestError::ExceedsKvCapacity { needed, available });
        }
        if self.sched.key_of(&new.request_id).is_some() || self.queued_ids.contains(&new.request_id)
        {
            return Err(RequestError::DuplicateId(new.request_id));
        }
        self.queued_ids.insert(new.request_id.clone());
        let events = self.sched.kv().pool().kv_cache_events_enabled();
        // No other request can hold this one's blocks: nothing looks them up before it is
        // preempted (see `Request::defers_caching`), unless events report every cached block.
        // Not with a window either: blocks behind it are freed while cached, as vLLM caches them.
        let defer = cfg.enable_prefix_caching
            && !events
            && cfg.sliding_window.is_none()
            && new.prompt_token_ids.has_unique_key();
        let given = prompt_hashes
            .filter(|(bs, _)| *bs == cfg.block_size && !defer)
            .map(|(_, h)| h);
        let mut req = Request::new_hashed(
            new,
            Nanos::ZERO,
            cfg.block_size,
            cfg.enable_prefix_caching && !defer,
            given,
        );
        if defer {
            req.defer_caching();
        }
        if !events {
            // Nothing reads the ids past the block hashes just computed: a queued request
            // holds what prefix caching needs, not 4 bytes per prompt token.
            req.release_prompt_ids(cfg.block_size);
        } else {
            // `BlockStored` events report every cached block's ids.
            req.store_prompt_ids();
        }
        req.tag = tag;
        self.inputs.push_back(Input::Add(Box::new(req)));
        Ok(())
    }

    /// [`Engine::add_tagged`] for a request whose prompt KV was computed elsewhere (a
    /// prefill instance under prefill/decode disaggregation): the scheduler admits it with
    /// its prompt already computed but for the last token, as vLLM's KV connector does.
    pub fn add_prefilled(&mut self, new: NewRequest, tag: u64) -> Result<(), RequestError> {
        self.add_prefilled_lora(new, tag, None)
    }

    /// [`Engine::add_prefilled`] for a request that runs with LoRA adapter `lora_id`
    /// ([`Engine::add_tagged_lora`]).
    pub fn add_prefilled_lora(
        &mut self,
        new: NewRequest,
        tag: u64,
        lora_id: Option<u64>,
    ) -> Result<(), RequestError> {
        let prompt = new.prompt_token_ids.len();
        self.add_tagged_lora(new, tag, lora_id)?;
        if let Some(Input::Add(req)) = self.inputs.back_mut() {
            req.num_external_computed_tokens = prompt;
        }
        Ok(())
    }

    /// [`Engine::add_tagged`] for a request that runs with LoRA adapter `lora_id` (counted by
    /// the scheduler's `max_loras` rule, [`Engine::set_max_loras`]).
    pub fn add_tagged_lora(
        &mut self,
        new: NewRequest,
        tag: u64,
        lora_id: Option<u64>,
    ) -> Result<(), RequestError> {
        self.add_tagged_hashed_lora(new, tag, None, lora_id)
    }

    /// [`Engine::add_tagged_hashed`] for a request that runs with LoRA adapter `lora_id`
    /// ([`Engine::add_tagged_lora`]).
    pub fn add_tagged_hashed_lora(
        &mut self,
        new: NewRequest,
        tag: u64,
        prompt_hashes: Option<(usize, Vec<BlockHash>)>,
        lora_id: Option<u64>,
    ) -> Result<(), RequestError> {
        self.add_tagged_hashed(new, tag, prompt_hashes)?;
        if let Some(Input::Add(req)) = self.inputs.back_mut() {
            req.lora_id = lora_id;
        }
        Ok(())
    }

    /// vLLM's LoRA config's `max_loras`: at most this many distinct adapters per batch
    /// (`None`: no LoRA config, no limit).
    pub fn set_max_loras(&mut self, max_loras: Option<usize>) {
        self.sched.set_max_loras(max_loras);
    }

    /// Queues an abort; unknown or finished ids are ignored when it is applied.
    pub fn abort(&mut self, request_id: &str) {
        self.inputs
            .push_back(Input::Finish(request_id.to_string(), FinishReason::Abort));
    }

    /// Queues the end of a request stopped outside the engine (a stop string): applied as an
    /// abort, with finish reason `stop`.
    pub fn finish_stopped(&mut self, request_id: &str) {
        self.inputs
            .push_back(Input::Finish(request_id.to_string(), FinishReason::Stop));
    }

    /// [`Engine::run`] reporting stats and tagged outputs to `sink` instead of raw decisions.
    pub fn run_with_stats(&mut self, now: Nanos, sink: &mut dyn EngineSink) -> Wake {
        self.run_with_stats_until(now, now, sink)
    }

    /// [`Engine::run_until`] reporting to `sink` as [`Engine::run_with_stats`] does.
    pub fn run_with_stats_until(
        &mut self,
        now: Nanos,
        horizon: Nanos,
        sink: &mut dyn EngineSink,
    ) -> Wake {
        let mut buffers = std::mem::take(&mut self.scratch.stats);
        let mut rec = StatsRecorder {
            engine_index: self.engine_index,
            sink,
            buffers: &mut buffers,
            preemptions_before: self.sched.num_preemptions(),
        };
        let wake = self.run_until(now, horizon, &mut rec);
        self.scratch.stats = buffers;
        wake
    }

    /// Does everything the engine does at `now` and says when it must run next.
    pub fn run(&mut self, now: Nanos, obs: &mut dyn EngineObserver) -> Wake {
        self.run_until(now, now, obs)
    }

    /// [`Engine::run`], told that nothing will reach the engine (no request, no abort) before
    /// `horizon`: the engine then goes on by itself through the steps that end before it, as
    /// if called at each of their ends, and takes the decode steps among them as one run
    /// ([`crate::sched::scheduler::decode_run`]). What it reports and decides is what
    /// [`Engine::run`] called at each step's end reports and decides; the [`Wake`] it returns
    /// is at or after `horizon`, or [`Wake::Idle`]. `horizon <= now` is [`Engine::run`].
    pub fn run_until(&mut self, now: Nanos, horizon: Nanos, obs: &mut dyn EngineObserver) -> Wake {
        let mut now = now;
        loop {
            if self.blocked {
                let end = self.batch_queue.back().expect("blocked on a step").end;
                if end > now {
                    if end >= horizon {
                        return Wake::At(end);
                    }
                    // Nothing reaches the engine before the step ends: go on as if called then.
                    now = end;
                }
                self.blocked = false;
                let step = self.batch_queue.pop_back().expect("blocked on a step");
                let finished = self.apply_pending_aborts(now, obs);
                if step.decode && !finished && obs.accepts_decode_updates() {
                    let updates = &mut self.scratch.decode_updates;
                    updates.clear();
                    self.sched
                        .update_decode(&step.output, &step.sampled, now, updates);
                    obs.on_decode_update(now, updates, &self.sched);
                } else {
                    let updates = &mut self.scratch.updates;
                    updates.clear();
                    self.sched
                        .update_from_output(&step.output, &step.sampled, now, updates);
                    obs.on_update(now, updates, &self.sched);
                }
                self.debug_check();
                self.sched.recycle_output(step.output);
                self.sampled_buf = step.sampled;
            }
            self.process_inputs(now, obs);
            if !self.has_work() {
                return Wake::Idle;
            }
            if self.sched.has_requests() {
                match self.decode_run(now, horizon, obs) {
                    Some(RunEnd::At(t)) => {
                        now = t;
                        continue;
                    }
                    Some(RunEnd::InFlight(t)) => {
                        now = t;
                        self.blocked = true;
                        continue;
                    }
                    None => {}
                }
                let executed = self.schedule_step(now, obs);
                if executed
                    && self.batch_queue.len() < self.batch_queue_size
                    && self.batch_queue.back().is_some_and(|s| s.end > now)
                {
                    continue;
                }
            }
            self.blocked = true;
        }
    }

    /// Schedules one step, samples its tokens and submits it to the device. Returns whether the
    /// step has tokens (vLLM's `model_executed`).
    fn schedule_step(&mut self, now: Nanos, obs: &mut dyn EngineObserver) -> bool {
        let mut sampled = std::mem::take(&mut self.sampled_buf);
        let decode_step = self.sched.schedule_decode(
            self.sampler.as_mut(),
            &mut sampled,
            &mut self.scratch.batch_requests,
        );
        let (output, decode) = match decode_step {
            Some(step) => {
                self.num_decode_steps += 1;
                (step.output, step.plain_update)
            }
            None => {
                let output = self.sched.schedule(now);
                self.sample(&output, &mut sampled);
                let batch_requests = &mut self.scratch.batch_requests;
                batch_requests.clear();
                batch_requests.extend(output.scheduled.iter().map(|s| s.batch_request()));
                (output, false)
            }
        };
        let (start, end) = if output.total_num_scheduled_tokens == 0 {
            (now, now)
        } else {
            let batch = StepBatch {
                requests: &self.scratch.batch_requests,
                total_tokens: output.total_num_scheduled_tokens,
                padded_tokens: self
                    .cuda_graphs
                    .padded_tokens(output.total_num_scheduled_tokens),
                num_running: self.sched.num_running(),
            };
            let start = now.max(self.device_free_at);
            let end = start + self.latency.step_time(&batch);
            self.device_free_at = end;
            (start, end)
        };
        obs.on_schedule(&StepRecord {
            index: self.num_schedule_calls,
            scheduled_at: now,
            device_start: start,
            device_end: end,
            output: &output,
            scheduler: &self.sched,
        });
        self.num_schedule_calls += 1;
        let executed = output.total_num_scheduled_tokens > 0;
        self.batch_queue.push_front(InFlight {
            output,
            sampled,
            end,
            decode,
        });
        executed
    }

    /// Samples a generally scheduled step's tokens into `sampled`: one per request whose step
    /// ends in a sample, `None` for a partial prefill chunk.
    fn sample(&mut self, output: &SchedulerOutput, sampled: &mut Vec<Option<u32>>) {
        sampled.clear();
        sampled.reserve(output.scheduled.len());
        // A request appears at most once in a step, so counting each sample as it is drawn
        // gives every request the same index as counting them all afterwards.
        for s in &output.scheduled {
            let token = s.samples.then(|| {
                self.sched
                    .request_mut(s.key)
                    .expect("scheduled request is live")
                    .sample_next(self.sampler.as_mut())
            });
            sampled.push(token);
        }
    }

    fn process_inputs(&mut self, now: Nanos, obs: &mut dyn EngineObserver) {
        while let Some(input) = self.inputs.pop_front() {
            match input {
                Input::Add(mut req) => {
                    self.queued_ids.remove(&req.request_id);
                    req.times.queued = now;
                    let key = self
                        .sched
                        .add_request(*req)
                        .expect("ids checked at submission");
                    obs.on_queued(now, key, &self.sched);
                }
                Input::Finish(id, reason) => self.apply_finish(&id, reason, now, obs),
            }
        }
    }

    /// vLLM applies aborts eagerly right before processing a step's output, all of those that
    /// arrived during the step in one call; they stay queued too (applying one twice is a no-op).
    /// Returns whether a request was finished.
    fn apply_pending_aborts(&mut self, now: Nanos, obs: &mut dyn EngineObserver) -> bool {
        if self.inputs.is_empty() {
            return false;
        }
        let keys: Vec<(ReqKey, FinishReason)> = self
            .inputs
            .iter()
            .filter_map(|i| match i {
                Input::Finish(id, reason) => self.sched.key_of(id).map(|k| (k, *reason)),
                Input::Add(_) => None,
            })
            .collect();
        self.finish_from_outside(&keys, now, obs)
    }

    /// Finishes `keys` in order, as one batch reported in one `on_abort`. Runs of the same
    /// reason go to the scheduler in one call (a batch of plain aborts is one call, as before
    /// stops existed).
    fn finish_from_outside(
        &mut self,
        keys: &[(ReqKey, FinishReason)],
        now: Nanos,
        obs: &mut dyn EngineObserver,
    ) -> bool {
        if keys.is_empty() {
            return false;
        }
        let mut finished = Vec::new();
        for run in keys.chunk_by(|a, b| a.1 == b.1) {
            let ks: Vec<ReqKey> = run.iter().map(|k| k.0).collect();
            finished.extend(self.sched.finish_requests(&ks, run[0].1));
        }
        if finished.is_empty() {
            return false;
        }
        obs.on_abort(now, &finished, &self.sched);
        self.debug_check();
        true
    }

    fn apply_finish(
        &mut self,
        id: &str,
        reason: FinishReason,
        now: Nanos,
        obs: &mut dyn EngineObserver,
    ) {
        if let Some(key) = self.sched.key_of(id) {
            self.finish_from_outside(&[(key, reason)], now, obs);
        }
    }

    fn debug_check(&self) {
        #[cfg(debug_assertions)]
        if let Err(e) = self.sched.check_invariants() {
            panic!("scheduler invariant broken: {e}");
        }
    }
}
