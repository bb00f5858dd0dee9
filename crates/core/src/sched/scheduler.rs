//! vLLM V1's scheduler (`v1/core/sched/scheduler.py::Scheduler` and `async_scheduler.py`).
//!
//! One [`Scheduler::schedule`] call assigns tokens to requests so that each request's computed
//! tokens catch up with its known tokens: running requests first, in admission order, then the
//! head of the waiting queue while budget, `max_num_seqs` and KV blocks allow. When a running
//! request cannot get blocks, a victim is preempted by recompute: its blocks are freed and it
//! goes back to the waiting queue. Which waiting request is next, which running request is the
//! victim and how the token budget is split are the [`Policy`]'s choices (vLLM's fcfs: arrival
//! order, the newest; priority: lowest `(priority, arrival)`, the largest).
//!
//! With async scheduling, a request that will sample a token in a step carries an output
//! placeholder until the token is known, so the next step can be scheduled before the previous
//! one's output is processed.

use super::policy::{self, Policy};
use super::store::{ReqKey, RequestStore};
use crate::config::EngineConfig;
use crate::kv::{CacheHit, KvCacheEvent, KvCacheManager};
use crate::latency::BatchRequest;
use crate::request::{FinishReason, Request, RequestStatus};
use crate::sampler::TokenSampler;
use crate::time::Nanos;
use rustc_hash::FxHashMap;

mod decode;
pub mod decode_run;
pub use decode::{DecodeStep, DecodeUpdate};
pub use decode_run::DecodeRunScratch;

/// How many requests ahead a loop over a step's requests asks for their records
/// ([`RequestStore::prefetch`]): far enough for a record to arrive from memory while the
/// requests before it are processed, near enough that the records stay in the first-level
/// cache until used.
const PREFETCH_AHEAD: usize = 4;

/// One request's share of a step.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ScheduledRequest {
    pub key: ReqKey,
    /// Tokens computed in this step.
    pub num_tokens: usize,
    /// Tokens already computed (or cached) before this step.
    pub num_computed_before: usize,
    /// The request's prompt length.
    pub num_prompt_tokens: usize,
    /// Whether this step ends with a sampled token for the request (its computed tokens reach
    /// its known tokens; a partial prefill chunk samples nothing).
    pub samples: bool,
}

impl ScheduledRequest {
    /// The request's share of the step as the latency model sees it (no identity).
    #[inline]
    pub fn batch_request(&self) -> BatchRequest {
        BatchRequest {
            num_tokens: self.num_tokens,
            num_computed_before: self.num_computed_before,
            num_prompt_tokens: self.num_prompt_tokens,
            samples: self.samples,
        }
    }
}

/// What one `schedule()` call decided (vLLM `SchedulerOutput`, reduced to what is emulated).
#[derive(Clone, Debug, Default)]
pub struct SchedulerOutput {
    /// In vLLM's `num_scheduled_tokens` order: running requests, then admitted ones.
    pub scheduled: Vec<ScheduledRequest>,
    /// Preempted in this call, in order.
    pub preempted: Vec<ReqKey>,
    /// Moved from waiting to running, with their computed tokens after the prefix hit.
    pub admitted: Vec<(ReqKey, usize)>,
    pub total_num_scheduled_tokens: usize,
}

/// One request's result of a step's output processing.
#[derive(Debug)]
pub struct RequestUpdate {
    pub key: ReqKey,
    /// The token appended in this step, if any.
    pub new_token: Option<u32>,
    /// When the request's previous token was processed (for inter-token latency).
    pub prev_token_at: Option<Nanos>,
    /// The request's tag, prompt length and client arrival, and whether this token is its
    /// first output: what stats need, without looking the request up again.
    pub tag: u64,
    pub num_prompt_tokens: usize,
    pub arrival: Nanos,
    pub first_output: bool,
    /// The request, moved out of the scheduler, when it finished in this step.
    pub finished: Option<Box<Request>>,
}

/// The state one `schedule()` call threads through its phases.
struct StepState {
    /// Tokens left to schedule in this step (vLLM's `token_budget`).
    budget: usize,
    /// Cap on one request's tokens in this step: `--long-prefill-token-threshold` and the
    /// policy's chunk cap, the smaller non-zero one; 0 = none.
    threshold: usize,
    /// `(request, tokens)` in vLLM's `num_scheduled_tokens` dict order: running requests, then
    /// admitted ones; an entry is removed when its request is preempted later in the step.
    scheduled: Vec<(ReqKey, usize)>,
    /// How many leading entries of `scheduled` are running requests (`scheduled_running_reqs`).
    num_scheduled_running: usize,
    out: SchedulerOutput,
}

#[derive(Debug)]
pub struct Scheduler {
    cfg: EngineConfig,
    requests: RequestStore,
    ids: FxHashMap<String, ReqKey>,
    /// Owns the waiting queue and makes the policy's choices.
    waiting: Box<dyn Policy>,
    running: Vec<ReqKey>,
    /// Requests finished since the last `schedule()` (vLLM's `finished_req_ids`): while non-empty
    /// the engine still "has requests", which costs one more (empty) schedule call.
    num_finished_pending: usize,
    kv: KvCacheManager,
    num_preemptions: u64,
    /// vLLM's `lora_config.max_loras` (`None`: no LoRA config).
    max_loras: Option<usize>,
    /// [`StepState::scheduled`]'s storage, kept between steps (empty between calls).
    scheduled_buf: Vec<(ReqKey, usize)>,
    /// Storage for the next output's `scheduled` list, handed back by
    /// [`Scheduler::recycle_output`] once a step's output is processed.
    output_buf: Vec<ScheduledRequest>,
    /// A copy of the engine's sampler, when it is stateless: draws a preempted request's
    /// outputs that decode runs counted without drawing ([`Scheduler::set_later_draws`]).
    later_draws: LaterDraws,
}

/// The sampler [`Scheduler::set_later_draws`] gives, if any.
#[derive(Default)]
struct LaterDraws(Option<Box<dyn TokenSampler>>);

impl std::fmt::Debug for LaterDraws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "LaterDraws(sampler)"
        } else {
            "LaterDraws(none)"
        })
    }
}

impl Scheduler {
    /// A scheduler with the policy `cfg.scheduling_policy` names.
    pub fn new(cfg: EngineConfig) -> Scheduler {
        let policy = policy::build(cfg.scheduling_policy);
        Scheduler::with_policy(cfg, policy)
    }

    /// A scheduler with a policy of the caller's (`cfg.scheduling_policy` is then ignored).
    pub fn with_policy(cfg: EngineConfig, policy: Box<dyn Policy>) -> Scheduler {
        let kv = KvCacheManager::new(
            cfg.num_gpu_blocks,
            cfg.block_size,
            cfg.max_model_len,
            cfg.enable_prefix_caching,
            cfg.sliding_window,
        );
        Scheduler {
            waiting: policy,
            cfg,
            requests: RequestStore::default(),
            ids: FxHashMap::default(),
            running: Vec::new(),
            num_finished_pending: 0,
            kv,
            num_preemptions: 0,
            max_loras: None,
            scheduled_buf: Vec::new(),
            output_buf: Vec::new(),
            later_draws: LaterDraws::default(),
        }
    }

    /// Gives the scheduler `sampler`, a copy of the engine's stateless sampler
    /// ([`TokenSampler::stateless_copy`]), or takes it away (`None`). With it, a decode run
    /// counts the outputs of a request whose caching is deferred without drawing them
    /// ([`Request::append_undrawn_outputs`]), and they are drawn if the request is
    /// preempted, before its blocks are hashed; nothing else reads them offline.
    pub(crate) fn set_later_draws(&mut self, sampler: Option<Box<dyn TokenSampler>>) {
        self.later_draws = LaterDraws(sampler);
    }

    /// Whether decode runs may leave outputs undrawn ([`Self::set_later_draws`]).
    pub(crate) fn draws_later(&self) -> bool {
        self.later_draws.0.is_some()
    }

    /// Sets `max_loras` (see [`Scheduler::schedule_waiting`]).
    pub fn set_max_loras(&mut self, max_loras: Option<usize>) {
        self.max_loras = max_loras;
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The scheduling policy in use.
    pub fn policy(&self) -> &dyn Policy {
        self.waiting.as_ref()
    }

    /// Replaces the policy; only before any request was added (`false` otherwise, and nothing
    /// changes), since the old policy holds the waiting queue.
    pub fn replace_policy(&mut self, policy: Box<dyn Policy>) -> bool {
        if !self.requests.is_empty() {
            return false;
        }
        self.waiting = policy;
        true
    }

    /// See [`crate::Engine::set_fast_paths`].
    pub(crate) fn set_fast_paths(&mut self, on: bool) {
        self.kv.set_fast_paths(on);
    }

    pub fn kv(&self) -> &KvCacheManager {
        &self.kv
    }

    /// Starts recording the block pool's KV cache events (vLLM `enable_kv_cache_events`).
    pub fn enable_kv_cache_events(&mut self) {
        self.kv.enable_kv_cache_events();
    }

    /// The KV cache events since the last call, oldest first (what vLLM's `update_from_output`
    /// drains with `kv_cache_manager.take_events()` for its event publisher).
    pub fn take_kv_cache_events(&mut self) -> Vec<KvCacheEvent> {
        self.kv.take_events()
    }

    pub fn request(&self, key: ReqKey) -> Option<&Request> {
        self.requests.get(key)
    }

    /// Mutable access for the engine's executor-side bookkeeping (`num_sampled`).
    pub fn request_mut(&mut self, key: ReqKey) -> Option<&mut Request> {
        self.requests.get_mut(key)
    }

    pub fn key_of(&self, request_id: &str) -> Option<ReqKey> {
        self.ids.get(request_id).copied()
    }

    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn num_unfinished(&self) -> usize {
        self.requests.len()
    }

    /// Preemptions since start (`vllm:num_preemptions`).
    pub fn num_preemptions(&self) -> u64 {
        self.num_preemptions
    }

    /// vLLM's `has_requests`: unfinished requests, or finished ones not yet reported to a step.
    pub fn has_requests(&self) -> bool {
        !self.requests.is_empty() || self.num_finished_pending > 0
    }

    /// Queues a request (already validated by the engine); `None` if the id is in use.
    pub fn add_request(&mut self, req: Request) -> Option<ReqKey> {
        if self.ids.contains_key(&req.request_id) {
            return None;
        }
        let id = req.request_id.clone();
        let key = self.requests.insert(req);
        self.waiting.add(key, self.requests.req(key));
        self.ids.insert(id, key);
        Some(key)
    }

    /// One scheduling decision at time `now` (`Scheduler.schedule`, `scheduler.py` lines
    /// 348–949), in vLLM's three phases: running requests first ([`Self::schedule_running`]),
    /// then waiting ones if nothing was preempted ([`Self::schedule_waiting`]), then the computed
    /// tokens advance and the output is built ([`Self::update_after_schedule`]).
    pub fn schedule(&mut self, now: Nanos) -> SchedulerOutput {
        let budget = self.cfg.max_num_batched_tokens;
        let split = self
            .waiting
            .split_budget(budget, self.running.len(), self.waiting.len());
        let threshold = match (self.cfg.long_prefill_token_threshold, split.chunk_cap) {
            (0, c) | (c, 0) => c,
            (t, c) => t.min(c),
        };
        // Tokens the policy holds back from the running requests for the waiting ones.
        let held_back = budget - split.running.min(budget);
        let mut step = StepState {
            budget: budget - held_back,
            threshold,
            scheduled: std::mem::take(&mut self.scheduled_buf),
            num_scheduled_running: 0,
            out: SchedulerOutput {
                scheduled: std::mem::take(&mut self.output_buf),
                ..SchedulerOutput::default()
            },
        };
        self.schedule_running(&mut step);
        step.budget += held_back;
        if step.out.preempted.is_empty() {
            self.schedule_waiting(&mut step, now);
        }
        debug_assert!(self.running.len() <= self.cfg.max_num_seqs);
        self.update_after_schedule(step)
    }

    /// Gives each running request, in order, the tokens that let its computed tokens catch up
    /// with its known ones, preempting others when its blocks do not fit; stops at the first
    /// request that cannot be scheduled even after preempting ("First, schedule the RUNNING
    /// requests", `scheduler.py` lines 383–553, encoder and speculative parts left out).
    fn schedule_running(&mut self, step: &mut StepState) {
        let threshold = step.threshold;
        let max_model_len = self.cfg.max_model_len;
        let mut req_index = 0usize;
        while req_index < self.running.len() && step.budget > 0 {
            let key = self.running[req_index];
            let req = self.requests.req(key);
            if req.num_output_placeholders > 0
                && req.num_computed_tokens + 2 - req.num_output_placeholders
                    >= req.num_prompt_tokens() + req.sampling.max_tokens as usize
            {
                // Async: the in-flight step already reaches max_tokens.
                req_index += 1;
                continue;
            }
            let mut n = (req.num_tokens() + req.num_output_placeholders) as i64
                - req.num_computed_tokens as i64;
            if threshold > 0 && (threshold as i64) < n {
                n = threshold as i64;
            }
            n = n.min(step.budget as i64);
            n = n.min(max_model_len as i64 - 1 - req.num_computed_tokens as i64);
            if n <= 0 {
                req_index += 1;
                continue;
            }
            let n = n as usize;
            if !self.allocate_or_preempt(key, n, step, &mut req_index) {
                break;
            }
            step.scheduled.push((key, n));
            step.num_scheduled_running += 1;
            step.budget -= n;
            req_index += 1;
        }
    }

    /// Allocates slots for `n` more tokens of running request `key`, preempting victims until
    /// they fit or `key` itself is preempted; `false` in the latter case ("Schedule newly needed
    /// KV blocks for the request", `scheduler.py` lines 460–510). `req_index` is the running
    /// loop's cursor, moved back when a victim before it is taken out of `running`.
    fn allocate_or_preempt(
        &mut self,
        key: ReqKey,
        n: usize,
        step: &mut StepState,
        req_index: &mut usize,
    ) -> bool {
        loop {
            let req = self.requests.req_mut(key);
            if self.kv.allocate_slots(req, n, None) {
                return true;
            }
            let victim = self.select_victim(step, req_index);
            self.preempt_request(victim, &mut step.out);
            if victim == key {
                return false;
            }
        }
    }

    /// Takes the request the policy names out of `running` (vLLM: the last one under FCFS, the
    /// first with the largest `(priority, arrival)` under priority). A victim already scheduled
    /// in this step is unscheduled and its tokens return to the budget (`scheduler.py` lines
    /// 473–500). Requests scheduled in this step all sit before `req_index`, so a victim at or
    /// after it (always, under FCFS) needs no search.
    fn select_victim(&mut self, step: &mut StepState, req_index: &mut usize) -> ReqKey {
        let i = self.waiting.select_victim(&self.running, &self.requests);
        let victim = self.running.remove(i);
        if i < *req_index {
            if let Some(pos) = step.scheduled[..step.num_scheduled_running]
                .iter()
                .position(|(k, _)| *k == victim)
            {
                let (_, tokens) = step.scheduled.remove(pos);
                step.num_scheduled_running -= 1;
                step.budget += tokens;
                *req_index -= 1;
            }
        } else {
            debug_assert!(!step.scheduled.iter().any(|(k, _)| *k == victim));
        }
        victim
    }

    /// Frees a running request's blocks and puts it back at the head of the waiting queue, to
    /// be recomputed from scratch (`_preempt_request`, `scheduler.py` lines 956–976). The
    /// caller has already taken it out of `running`.
    fn preempt_request(&mut self, key: ReqKey, out: &mut SchedulerOutput) {
        let req = self.requests.req_mut(key);
        debug_assert_eq!(req.status, RequestStatus::Running);
        if req.has_undrawn_outputs() {
            let sampler = self.later_draws.0.as_deref_mut();
            req.draw_outputs(sampler.expect("undrawn outputs come with a sampler"));
        }
        self.kv.end_deferred_caching(req);
        self.kv.free(req);
        req.status = RequestStatus::Preempted;
        req.num_computed_tokens = 0;
        req.num_preemptions += 1;
        self.num_preemptions += 1;
        self.waiting.prepend(key, req);
        out.preempted.push(key);
    }

    /// Admits requests from the head of the waiting queue while the budget, `max_num_seqs` and
    /// the KV blocks allow, each starting after its prefix-cache hit; stops at the first that
    /// does not fit ("Next, schedule the WAITING requests", `scheduler.py` lines 563–850,
    /// LoRA, connector and encoder parts left out).
    ///
    /// With a LoRA config (`max_loras`), a waiting request whose adapter would make the step's
    /// batch hold more than `max_loras` distinct adapters is skipped, not a stop: the next one
    /// is tried, and the skipped ones go back to the head of the queue in their order
    /// (`scheduler.py` lines 553–561, 589–603, 820–821).
    fn schedule_waiting(&mut self, step: &mut StepState, now: Nanos) {
        let mut loras = self.max_loras.map(|_| self.scheduled_loras(step));
        let mut skipped: Vec<ReqKey> = Vec::new();
        self.admit_waiting(step, now, &mut loras, &mut skipped);
        for &key in skipped.iter().rev() {
            let req = self.requests.req(key);
            self.waiting.prepend(key, req);
        }
    }

    /// The distinct adapters of the running requests scheduled so far in this step.
    fn scheduled_loras(&self, step: &StepState) -> Vec<u64> {
        let mut ids: Vec<u64> = step.scheduled[..step.num_scheduled_running]
            .iter()
            .filter_map(|&(k, _)| self.requests.req(k).lora_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The admission loop of [`Scheduler::schedule_waiting`]; `loras`: the step's adapters
    /// when `max_loras` applies.
    fn admit_waiting(
        &mut self,
        step: &mut StepState,
        now: Nanos,
        loras: &mut Option<Vec<u64>>,
        skipped: &mut Vec<ReqKey>,
    ) {
        let threshold = step.threshold;
        while step.budget > 0 {
            let Some(key) = self.waiting.peek(now) else {
                break;
            };
            if self.running.len() == self.cfg.max_num_seqs {
                break;
            }
            let req = self.requests.req(key);
            if let (Some(ids), Some(max), Some(id)) = (loras.as_ref(), self.max_loras, req.lora_id)
            {
                if ids.len() == max && !ids.contains(&id) {
                    self.waiting.pop(now);
                    skipped.push(key);
                    continue;
                }
            }
            let (hit, num_computed) = if req.num_computed_tokens == 0 {
                let hit = self.kv.get_computed_blocks(req);
                let n = hit.num_tokens;
                (hit, n)
            } else {
                (CacheHit::default(), req.num_computed_tokens)
            };
            // KV from a prefill instance (vLLM's connector): computed past the local hit, the
            // last token always recomputed for its logits (`scheduler.py`,
            // `num_computed_tokens -= 1` when everything was matched).
            let external = req
                .num_external_computed_tokens
                .min((req.num_tokens() - 1).saturating_sub(num_computed));
            let num_computed = num_computed + external;
            let mut n = req.num_tokens() - num_computed;
            if threshold > 0 && threshold < n {
                n = threshold;
            }
            if !self.cfg.enable_chunked_prefill && n > step.budget {
                break;
            }
            n = n.min(step.budget);
            debug_assert!(n > 0);
            if self.cfg.scheduler_reserve_full_isl && !self.kv.can_fit_full_sequence(req, &hit) {
                break;
            }
            let req = self.requests.req_mut(key);
            if !self.kv.allocate_slots(req, external + n, Some(&hit)) {
                break;
            }
            req.num_external_computed_tokens = 0;
            self.waiting.pop(now);
            self.running.push(key);
            let req = self.requests.req_mut(key);
            if req.times.first_scheduled.is_none() {
                req.times.first_scheduled = Some(now);
            }
            req.status = RequestStatus::Running;
            req.num_computed_tokens = num_computed;
            if req.num_cached_tokens.is_none() {
                req.num_cached_tokens = Some(num_computed);
            }
            if let (Some(ids), Some(id)) = (loras.as_mut(), req.lora_id) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            step.scheduled.push((key, n));
            step.out.admitted.push((key, num_computed));
            step.budget -= n;
        }
    }

    /// Advances each scheduled request's computed tokens, marks partial prefill chunks, adds an
    /// output placeholder per sampling request under async scheduling, and fills the output's
    /// `scheduled` list in vLLM's `num_scheduled_tokens` order ("Construct the scheduler
    /// output", `scheduler.py` lines 875–949; `_update_after_schedule`, lines 978–1010;
    /// `async_scheduler.py::_update_after_schedule`, lines 18–35).
    fn update_after_schedule(&mut self, step: StepState) -> SchedulerOutput {
        let StepState {
            mut scheduled,
            mut out,
            ..
        } = step;
        out.scheduled.reserve(scheduled.len());
        for (key, n) in scheduled.drain(..) {
            let req = self.requests.req_mut(key);
            let before = req.num_computed_tokens;
            req.num_computed_tokens += n;
            req.is_prefill_chunk =
                req.num_computed_tokens < req.num_tokens() + req.num_output_placeholders;
            let samples = !req.is_prefill_chunk;
            if self.cfg.async_scheduling && samples {
                req.num_output_placeholders += 1;
            }
            out.total_num_scheduled_tokens += n;
            out.scheduled.push(ScheduledRequest {
                key,
                num_tokens: n,
                num_computed_before: before,
                num_prompt_tokens: req.num_prompt_tokens(),
                samples,
            });
        }
        self.scheduled_buf = scheduled;
        // vLLM's `finished_req_ids = set()`: finished requests are reported to this step.
        self.num_finished_pending = 0;
        out
    }

    /// Takes back a processed step's output so that the next `schedule()` reuses its storage
    /// (no allocation per step once warm).
    pub fn recycle_output(&mut self, output: SchedulerOutput) {
        let mut v = output.scheduled;
        v.clear();
        if v.capacity() > self.output_buf.capacity() {
            self.output_buf = v;
        }
    }

    /// Applies a step's sampled tokens (`update_from_output`): appends them, checks stop rules,
    /// frees finished requests. `sampled[i]` is the token for `output.scheduled[i]`, `None` for a
    /// partial prefill chunk. Updates are pushed to `updates` in scheduling order.
    pub fn update_from_output(
        &mut self,
        output: &SchedulerOutput,
        sampled: &[Option<u32>],
        now: Nanos,
        updates: &mut Vec<RequestUpdate>,
    ) {
        let block_size = self.cfg.block_size;
        let hash_blocks = self.cfg.enable_prefix_caching;
        let mut stopped_running: Vec<ReqKey> = Vec::new();
        let mut stopped_preempted: Vec<ReqKey> = Vec::new();
        // A step's requests are scattered in memory and, in a fleet, out of the caches since
        // the other instances ran: start loading each one a few requests ahead.
        let scheduled = &output.scheduled;
        for s in scheduled.iter().take(PREFETCH_AHEAD) {
            self.requests.prefetch(s.key);
        }
        for (j, (s, token)) in scheduled.iter().zip(sampled).enumerate() {
            if let Some(ahead) = scheduled.get(j + PREFETCH_AHEAD) {
                self.requests.prefetch(ahead.key);
            }
            // Half-way, that record has arrived: ask for what its next token touches.
            if let Some(r) = scheduled
                .get(j + PREFETCH_AHEAD / 2)
                .and_then(|s| self.requests.get(s.key))
            {
                r.prefetch_next_output(block_size, hash_blocks);
            }
            let Some(req) = self.requests.get_mut(s.key) else {
                continue;
            };
            if req.is_finished() {
                continue;
            }
            let Some(token) = *token else { continue };
            let status_before = req.status;
            req.append_output_token(token, block_size, hash_blocks);
            let stopped = req.check_stop(self.cfg.max_model_len);
            if req.times.first_token.is_none() {
                req.times.first_token = Some(now);
            }
            let prev_token_at = req.times.last_token.replace(now);
            let (tag, num_prompt_tokens, arrival) =
                (req.tag, req.num_prompt_tokens(), req.times.arrival);
            let first_output = req.num_output_tokens() == 1;
            if self.cfg.async_scheduling {
                req.num_output_placeholders -= 1;
                if status_before == RequestStatus::Running {
                    let upto = req.num_computed_tokens - req.num_output_placeholders;
                    self.kv.cache_blocks(req, upto);
                }
            }
            let finished = if stopped {
                if status_before == RequestStatus::Running {
                    stopped_running.push(s.key);
                } else {
                    stopped_preempted.push(s.key);
                }
                Some(self.free_request(s.key))
            } else {
                None
            };
            updates.push(RequestUpdate {
                key: s.key,
                new_token: Some(token),
                prev_token_at,
                tag,
                num_prompt_tokens,
                arrival,
                first_output,
                finished,
            });
        }
        if !stopped_running.is_empty() {
            self.running.retain(|k| !stopped_running.contains(k));
        }
        if !stopped_preempted.is_empty() {
            self.waiting.remove(&stopped_preempted);
        }
    }

    /// Frees a finished request's blocks and removes it.
    fn free_request(&mut self, key: ReqKey) -> Box<Request> {
        let mut req = self.requests.remove(key).expect("live request");
        self.kv.free(&mut req);
        self.ids.remove(&req.request_id);
        self.num_finished_pending += 1;
        Box::new(req)
    }

    /// Finishes requests from outside (client aborts; `finish_requests`). Unknown or finished
    /// ids are ignored. Returns the finished requests in the given order.
    pub fn finish_requests(&mut self, keys: &[ReqKey], reason: FinishReason) -> Vec<Box<Request>> {
        let mut running_gone = rustc_hash::FxHashSet::default();
        let mut waiting_gone = Vec::new();
        let mut valid = Vec::new();
        // Sets, not list scans: a batch of aborts can hold every request a client gave up on
        // during one step.
        let mut seen = rustc_hash::FxHashSet::default();
        for &k in keys {
            let Some(req) = self.requests.get(k) else {
                continue;
            };
            if req.is_finished() || !seen.insert(k) {
                continue;
            }
            valid.push(k);
            if req.status == RequestStatus::Running {
                running_gone.insert(k);
            } else {
                waiting_gone.push(k);
            }
        }
        if !running_gone.is_empty() {
            self.running.retain(|k| !running_gone.contains(k));
        }
        if !waiting_gone.is_empty() {
            self.waiting.remove(&waiting_gone);
        }
        valid
            .into_iter()
            .map(|k| {
                self.requests.req_mut(k).status = RequestStatus::Finished(reason);
                self.free_request(k)
            })
            .collect()
    }

    /// Checks the scheduler's own invariants (debug builds and tests): every live request is in
    /// exactly one of running/waiting, running holds only RUNNING requests, block ownership
    /// matches the pool's ref counts.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.kv.pool().check_invariants()?;
        if self.running.len() + self.waiting.len() != self.requests.len() {
            return Err(format!(
                "{} running + {} waiting != {} live requests",
                self.running.len(),
                self.waiting.len(),
                self.requests.len()
            ));
        }
        let mut refs = vec![0u32; self.kv.pool().num_gpu_blocks() as usize];
        for &k in &self.running {
            let r = self.requests.get(k).ok_or("stale key in running")?;
            if r.status != RequestStatus::Running {
                return Err(format!(
                    "{} in running with status {:?}",
                    r.request_id, r.status
                ));
            }
            for &b in &r.kv.blocks {
                refs[b as usize] += 1;
            }
        }
        for (b, &want) in refs.iter().enumerate().skip(1) {
            if self.kv.pool().ref_cnt(b as u32) != want {
                return Err(format!(
                    "block {b}: ref count {} but {} holders",
                    self.kv.pool().ref_cnt(b as u32),
                    want
                ));
            }
        }
        Ok(())
    }
}
