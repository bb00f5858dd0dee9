//! A request's state inside the engine (vLLM `v1/request.py`).

use crate::kv::hash::{extend_block_hashes, BlockHash};
use crate::kv::BlockId;
use crate::prompt::PromptTokens;
use crate::time::Nanos;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What ends generation, as vLLM's `SamplingParams` holds it after the frontend's processing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// Output tokens at most (already clamped to the context by the frontend).
    pub max_tokens: u32,
    /// No EOS or stop token may be produced before this many outputs.
    #[serde(default)]
    pub min_tokens: u32,
    /// Keep generating past EOS (`ignore_eos`); EOS is still forbidden before `min_tokens`.
    #[serde(default)]
    pub ignore_eos: bool,
    /// The model's EOS id, if it has one.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    /// Further token ids that end the request (finish reason `stop`).
    #[serde(default)]
    pub stop_token_ids: Vec<u32>,
}

impl SamplingParams {
    /// Whether `token` is one the min-tokens rule forbids: EOS (even with `ignore_eos`, as
    /// vLLM's `all_stop_token_ids` holds it) or a stop token id.
    #[inline]
    pub fn is_stop_token(&self, token: u32) -> bool {
        self.eos_token_id == Some(token) || self.stop_token_ids.contains(&token)
    }
}

/// A request as a client submits it to the engine.
#[derive(Clone, Debug)]
pub struct NewRequest {
    /// Caller-chosen id, unique among live requests.
    pub request_id: String,
    /// Prompt token ids, shared with the caller (no copy for large prompts), or the rule that
    /// defines them ([`PromptTokens`]).
    pub prompt_token_ids: PromptTokens,
    pub sampling: SamplingParams,
    /// Lower runs first under `--scheduling-policy priority`.
    pub priority: i32,
    /// Isolates this request's prefix-cache entries from requests with another salt.
    pub cache_salt: Option<String>,
    /// Who sent it (the OpenAI `user` field, a workload's `tenant`), for per-tenant policies
    /// such as `--scheduling-policy fair`; vLLM's own policies ignore it.
    pub tenant: Option<Arc<str>>,
    /// When the client sent it (for latency metrics; the engine queues it when it sees it).
    pub arrival: Nanos,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// EOS or a stop token id.
    Stop,
    /// `max_tokens` or `max_model_len` reached.
    Length,
    /// Aborted by the client.
    Abort,
}

impl FinishReason {
    /// vLLM's name for it (`finish_reason` in responses, the `finished_reason` metric label):
    /// the one mapping from this type to text.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Abort => "abort",
        }
    }
}

impl std::fmt::Display for FinishReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RequestStatus {
    Waiting,
    Running,
    Preempted,
    Finished(FinishReason),
}

/// Engine-side timestamps of one request (vLLM `RequestStateStats`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RequestTimes {
    /// Sent by the client.
    pub arrival: Nanos,
    /// Taken in by the engine loop (`queued_ts`).
    pub queued: Nanos,
    /// First moved to running (`scheduled_ts`).
    pub first_scheduled: Option<Nanos>,
    /// Output processed with the first token (`first_token_ts`).
    pub first_token: Option<Nanos>,
    /// Output processed with the latest token (`last_token_ts`).
    pub last_token: Option<Nanos>,
}

/// The KV blocks a request holds (vLLM keeps these in the manager, keyed by request id).
#[derive(Clone, Debug, Default)]
pub struct RequestBlocks {
    pub blocks: Vec<BlockId>,
    /// How many leading blocks are already cached (hashed) for this request.
    pub num_cached_blocks: usize,
}

/// A request's prompt token ids as the engine keeps them.
#[derive(Clone, Debug)]
enum PromptIds {
    /// Every id (the caller's `Arc`, shared, not copied).
    All(Arc<[u32]>),
    /// A prompt's rule (never [`PromptTokens::Ids`]): any id is drawn when read, none is
    /// stored.
    Rule(PromptTokens),
    /// Released ([`Request::release_prompt_ids`]): the prompt's length and its tokens after
    /// its last full block (fewer than a block), the only ones read later, when the block
    /// they start is completed by outputs and hashed.
    Tail { len: usize, tail: Box<[u32]> },
}

impl PromptIds {
    fn len(&self) -> usize {
        match self {
            PromptIds::All(ids) => ids.len(),
            PromptIds::Rule(r) => r.len(),
            PromptIds::Tail { len, .. } => *len,
        }
    }

    /// Token `i`. Panics if it was released.
    fn token(&self, i: usize) -> u32 {
        match self {
            PromptIds::All(ids) => ids[i],
            PromptIds::Rule(r) => r.token(i),
            PromptIds::Tail { len, tail } => {
                let first = len - tail.len();
                assert!(i >= first, "prompt token {i} was released");
                tail[i - first]
            }
        }
    }
}

/// A request inside the engine.
///
/// The fields a decode step reads or writes come first and the rest after
/// [`Request::COLD_FIELDS_START`] (`repr(C)` keeps that order): a step touches every running
/// request, and in a fleet, whose instances take turns on the CPU, their records are out of
/// the caches each time, so the fewer cache lines a step needs per request the better.
#[derive(Clone, Debug)]
#[repr(C)]
pub struct Request {
    // Read or written by every step.
    pub status: RequestStatus,
    /// Set after scheduling: this step computes only part of the known tokens (no sample).
    pub is_prefill_chunk: bool,
    /// Its blocks are neither hashed nor put in the prefix-cache index as they fill; their
    /// count is kept ([`RequestBlocks::num_cached_blocks`]), and they are hashed and indexed
    /// when the request is preempted ([`Request::end_deferred_caching`]). Set for a request
    /// whose blocks no other request can hold ([`crate::SyntheticPrompt::unique_key`]) while
    /// KV cache events are off: until its first preemption nothing can look its blocks up (a
    /// request looks the cache up only when admitted from the waiting queue), so the index
    /// answers every lookup as vLLM's does, and the request's blocks cost no hash or index
    /// operation unless it is preempted.
    defers_caching: bool,
    /// Some outputs were counted but not drawn ([`Request::append_undrawn_outputs`]): their
    /// places hold 0 until [`Request::draw_outputs`]. Only while caching is deferred.
    outputs_undrawn: bool,
    /// Tokens whose KV is computed or scheduled to be.
    pub num_computed_tokens: usize,
    /// Async scheduling: tokens scheduled for sampling whose value is not known yet.
    pub num_output_placeholders: usize,
    /// Tokens the emulated model has sampled for this request, in flight included. Never reset:
    /// it indexes the synthetic token stream.
    pub num_sampled: usize,
    output: Vec<u32>,
    prompt: PromptIds,
    pub kv: RequestBlocks,
    pub block_hashes: Vec<BlockHash>,
    pub sampling: SamplingParams,
    pub times: RequestTimes,
    /// A stable hash of the request id, for samplers that derive tokens from it.
    pub sample_seed: u64,
    /// The submitter's tag, echoed in every output for this request (0 if none was given).
    pub tag: u64,
    /// Read with the tokens of every block the outputs complete (into its hash).
    pub cache_salt: Option<String>,
    // Read at admission, preemption or finish.
    pub request_id: String,
    pub priority: i32,
    pub num_preemptions: u32,
    /// See [`NewRequest::tenant`].
    pub tenant: Option<Arc<str>>,
    /// Prompt tokens found in the prefix cache at first admission (`num_cached_tokens`).
    pub num_cached_tokens: Option<usize>,
    pub stop_reason: Option<u32>,
    /// Prompt tokens whose KV arrives from elsewhere (a prefill instance, through vLLM's KV
    /// connector: `get_num_new_matched_tokens`); used once, at admission. 0 for plain
    /// requests.
    pub num_external_computed_tokens: usize,
    /// The LoRA adapter it runs with (vLLM's `lora_request.lora_int_id`), for the scheduler's
    /// `max_loras` rule; `None`: the base model.
    pub lora_id: Option<u64>,
}

impl Request {
    /// Where the fields a decode step does not touch begin, in bytes from the record's start.
    pub const COLD_FIELDS_START: usize = std::mem::offset_of!(Request, request_id);

    pub fn new(new: NewRequest, queued: Nanos, block_size: usize, hash_blocks: bool) -> Request {
        Request::new_hashed(new, queued, block_size, hash_blocks, None)
    }

    /// [`Request::new`] with the prompt's block hashes at `block_size` given (`None`: they are
    /// computed here); they are kept only when `hash_blocks`.
    pub fn new_hashed(
        new: NewRequest,
        queued: Nanos,
        block_size: usize,
        hash_blocks: bool,
        prompt_hashes: Option<Vec<BlockHash>>,
    ) -> Request {
        let sample_seed = xxhash_rust::xxh3::xxh3_64(new.request_id.as_bytes());
        let mut r = Request {
            request_id: new.request_id,
            priority: new.priority,
            cache_salt: new.cache_salt,
            tenant: new.tenant,
            sampling: new.sampling,
            status: RequestStatus::Waiting,
            defers_caching: false,
            outputs_undrawn: false,
            prompt: match new.prompt_token_ids {
                PromptTokens::Ids(ids) => PromptIds::All(ids),
                rule => PromptIds::Rule(rule),
            },
            // Reserved at the first token: a queued request holds no output storage.
            output: Vec::new(),
            num_computed_tokens: 0,
            num_output_placeholders: 0,
            is_prefill_chunk: false,
            num_cached_tokens: None,
            num_preemptions: 0,
            num_sampled: 0,
            block_hashes: Vec::new(),
            kv: RequestBlocks::default(),
            times: RequestTimes {
                arrival: new.arrival,
                queued,
                ..Default::default()
            },
            stop_reason: None,
            sample_seed,
            tag: 0,
            num_external_computed_tokens: 0,
            lora_id: None,
        };
        if hash_blocks {
            match prompt_hashes {
                Some(given) => {
                    debug_assert_eq!(given, {
                        let mut h = Vec::new();
                        r.extend_prompt_hashes(&mut h, block_size);
                        h
                    });
                    r.block_hashes = given;
                }
                None => {
                    // Exactly the prompt's blocks: a queued request holds no spare hash
                    // capacity.
                    let mut h = Vec::with_capacity(r.prompt.len() / block_size);
                    r.extend_prompt_hashes(&mut h, block_size);
                    r.block_hashes = h;
                }
            }
        }
        r
    }

    /// Defers hashing and indexing the request's blocks (see the field's doc): for a request
    /// taken in with `hash_blocks` off, whose blocks no other request can hold, while KV cache
    /// events are off. The engine decides.
    pub(crate) fn defer_caching(&mut self) {
        debug_assert!(self.block_hashes.is_empty() && self.output.is_empty());
        self.defers_caching = true;
    }

    /// Whether caching its blocks is deferred (see the field's doc).
    pub fn defers_caching(&self) -> bool {
        self.defers_caching
    }

    /// Ends deferred caching: hashes every full block of the known tokens, as hashing them
    /// on the way would have, and returns `true` if caching was deferred (the caller then
    /// caches the blocks counted as cached). From here the request hashes as it goes.
    pub(crate) fn end_deferred_caching(&mut self, block_size: usize) -> bool {
        if !self.defers_caching {
            return false;
        }
        assert!(
            !self.outputs_undrawn,
            "outputs are drawn before their blocks are hashed"
        );
        self.defers_caching = false;
        let mut hashes = std::mem::take(&mut self.block_hashes);
        self.extend_prompt_hashes(&mut hashes, block_size);
        self.block_hashes = hashes;
        while self.num_tokens() >= (self.block_hashes.len() + 1) * block_size {
            self.hash_completed_block(block_size);
        }
        true
    }

    /// Appends the hashes of the prompt's full blocks after those in `hashes`.
    fn extend_prompt_hashes(&self, hashes: &mut Vec<BlockHash>, block_size: usize) {
        let salt = self.cache_salt.as_deref();
        match &self.prompt {
            PromptIds::All(ids) => extend_block_hashes(hashes, ids, block_size, salt),
            PromptIds::Rule(r) => r.extend_block_hashes(hashes, block_size, salt),
            PromptIds::Tail { .. } => unreachable!("prompt hashed before its ids are released"),
        }
    }

    /// A request that stands in an empty place of the request store (see its `Slot`): it holds
    /// no storage (empty vectors and strings allocate nothing) and is never scheduled.
    pub(crate) fn vacant() -> Request {
        Request {
            status: RequestStatus::Waiting,
            is_prefill_chunk: false,
            defers_caching: false,
            outputs_undrawn: false,
            num_computed_tokens: 0,
            num_output_placeholders: 0,
            num_sampled: 0,
            output: Vec::new(),
            prompt: PromptIds::Tail {
                len: 0,
                tail: Box::default(),
            },
            kv: RequestBlocks::default(),
            block_hashes: Vec::new(),
            sampling: SamplingParams::default(),
            times: RequestTimes::default(),
            sample_seed: 0,
            tag: 0,
            request_id: String::new(),
            priority: 0,
            num_preemptions: 0,
            cache_salt: None,
            tenant: None,
            num_cached_tokens: None,
            stop_reason: None,
            num_external_computed_tokens: 0,
            lora_id: None,
        }
    }

    /// Drops the prompt's token ids but for the tokens after its last full block, so that a
    /// queued request costs its block hashes (16 bytes per block) instead of 4 bytes per
    /// prompt token. What the engine reads of the prompt after this: its length, the block
    /// hashes (computed in [`Request::new`]) and that tail, hashed with the first outputs
    /// that complete its block. For requests whose ids nothing else reads: the engine calls
    /// it while KV cache events, which report cached blocks' token ids, are off. After it,
    /// [`Request::prompt_token_ids`] is `None` and [`Request::token`] panics on the
    /// released tokens.
    pub fn release_prompt_ids(&mut self, block_size: usize) {
        let PromptIds::All(ids) = &self.prompt else {
            // A prompt by rule stores no ids; a released one has none left to drop.
            return;
        };
        let len = ids.len();
        let first = len - len % block_size;
        let tail = ids[first..].into();
        self.prompt = PromptIds::Tail { len, tail };
    }

    /// Stores the ids of a prompt by rule, for readers of every id
    /// ([`Self::prompt_token_ids`]: KV cache events). Call it after the prompt's block hashes
    /// are computed: they stay those of its rule.
    pub fn store_prompt_ids(&mut self) {
        if let PromptIds::Rule(r) = &self.prompt {
            self.prompt = PromptIds::All(r.to_arc());
        }
    }

    pub fn num_prompt_tokens(&self) -> usize {
        self.prompt.len()
    }

    pub fn num_output_tokens(&self) -> usize {
        self.output.len()
    }

    /// Prompt plus outputs known so far (`num_tokens`).
    pub fn num_tokens(&self) -> usize {
        self.prompt.len() + self.output.len()
    }

    /// Every prompt token id; `None` once released ([`Request::release_prompt_ids`]) and for
    /// a prompt by rule not stored ([`Request::store_prompt_ids`]).
    pub fn prompt_token_ids(&self) -> Option<&[u32]> {
        match &self.prompt {
            PromptIds::All(ids) => Some(ids),
            PromptIds::Rule(_) | PromptIds::Tail { .. } => None,
        }
    }

    /// The output token ids; `None` while some were counted but not drawn
    /// ([`Self::has_undrawn_outputs`]).
    pub fn output_token_ids(&self) -> Option<&[u32]> {
        (!self.outputs_undrawn).then_some(&self.output[..])
    }

    /// Whether some outputs were counted but not drawn ([`Self::append_undrawn_outputs`]).
    pub fn has_undrawn_outputs(&self) -> bool {
        self.outputs_undrawn
    }

    /// Token `i` of prompt followed by outputs. Panics on a released prompt token and on an
    /// output not drawn.
    pub fn token(&self, i: usize) -> u32 {
        if i < self.prompt.len() {
            self.prompt.token(i)
        } else {
            assert!(!self.outputs_undrawn, "output {i} was not drawn");
            self.output[i - self.prompt.len()]
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.status, RequestStatus::Finished(_))
    }

    /// Appends one output token and hashes any block it completes.
    ///
    /// Runs once per request per step: the common case (room reserved, no block completed)
    /// stays inline, and the rare work (the first token's reservation, hashing a completed
    /// block) is out of line, so the hot path carries no stack frame for it.
    #[inline]
    pub fn append_output_token(&mut self, token: u32, block_size: usize, hash_blocks: bool) {
        if self.output.capacity() == 0 {
            self.reserve_outputs();
        }
        self.output.push(token);
        let hash_blocks = hash_blocks && !self.defers_caching;
        if hash_blocks && self.num_tokens() >= (self.block_hashes.len() + 1) * block_size {
            self.hash_completed_block(block_size);
        }
    }

    /// [`Self::append_output_token`] for each of `tokens`, in order.
    pub fn append_output_tokens(&mut self, tokens: &[u32], block_size: usize, hash_blocks: bool) {
        if tokens.is_empty() {
            return;
        }
        if self.output.capacity() == 0 {
            self.reserve_outputs();
        }
        self.output.extend_from_slice(tokens);
        let hash_blocks = hash_blocks && !self.defers_caching;
        // Each block the tokens complete is hashed after its predecessor, as one by one.
        while hash_blocks && self.num_tokens() >= (self.block_hashes.len() + 1) * block_size {
            self.hash_completed_block(block_size);
        }
    }

    /// Appends `n` output tokens sampled but not drawn, and counts them as sampled: for a
    /// request whose caching is deferred, whose tokens nothing reads before it is preempted
    /// (hashing them then) or finishes (nothing reads them offline). A decode run calls it
    /// when the scheduler can draw them later ([`crate::sampler::TokenSampler::stateless_copy`]);
    /// [`Self::draw_outputs`] draws them. Their places hold 0 meanwhile, which the stop
    /// rule of a decode run never reads as a stop (it runs only where no token can stop).
    pub fn append_undrawn_outputs(&mut self, n: usize) {
        debug_assert!(self.defers_caching, "undrawn outputs of a cached request");
        if n == 0 {
            return;
        }
        if self.output.capacity() == 0 {
            self.reserve_outputs();
        }
        self.output.resize(self.output.len() + n, 0);
        self.num_sampled += n;
        self.outputs_undrawn = true;
    }

    /// Draws the outputs [`Self::append_undrawn_outputs`] counted, with `sampler`, a copy of
    /// the stateless sampler that sampled the others: output `i` is sample index `i` (a
    /// request whose caching is deferred has never been preempted, so none of its samples
    /// was dropped), and the outputs drawn already are drawn again, to the same values.
    pub fn draw_outputs(&mut self, sampler: &mut dyn crate::sampler::TokenSampler) {
        if !self.outputs_undrawn {
            return;
        }
        debug_assert!(sampler.is_stateless() && self.num_preemptions == 0);
        let ctx = crate::sampler::SampleContext::for_token(
            &self.request_id,
            self.sample_seed,
            0,
            &self.sampling,
        );
        sampler.sample_ahead(&ctx, &mut self.output);
        self.outputs_undrawn = false;
    }

    /// Asks the CPU to start loading what appending the next output token touches
    /// ([`crate::prefetch`]): where the token goes and, when it completes a block to be
    /// hashed, the block's earlier tokens and where its hash goes.
    #[inline]
    pub fn prefetch_next_output(&self, block_size: usize, hash_blocks: bool) {
        let out = self.output.as_ptr();
        crate::prefetch::line(out.wrapping_add(self.output.len()));
        let hashed = self.block_hashes.len();
        if hash_blocks && !self.defers_caching && self.num_tokens() + 1 >= (hashed + 1) * block_size
        {
            let start = (hashed * block_size).saturating_sub(self.prompt.len());
            crate::prefetch::line(out.wrapping_add(start));
            crate::prefetch::line(self.block_hashes.as_ptr().wrapping_add(hashed));
        }
    }

    /// Room for every output up front (no regrowth while decoding), capped for huge
    /// `max_tokens`.
    #[cold]
    #[inline(never)]
    fn reserve_outputs(&mut self) {
        self.output
            .reserve_exact(self.sampling.max_tokens.min(1 << 16) as usize);
    }

    /// Hashes the block after the last hashed one, which the tokens now fill.
    #[inline(never)]
    fn hash_completed_block(&mut self, block_size: usize) {
        let start = self.block_hashes.len() * block_size;
        let salt = self.cache_salt.as_deref();
        let parent = self.block_hashes.last().copied();
        let p = self.prompt.len();
        let h = if start >= p {
            let o = start - p;
            crate::kv::hash::hash_request_block(
                parent,
                start,
                &self.output[o..o + block_size],
                salt,
            )
        } else {
            // The block straddles the end of the prompt: the prompt's tail, then outputs.
            let mut block = Vec::with_capacity(block_size);
            block.extend((start..p).map(|i| self.prompt.token(i)));
            block.extend_from_slice(&self.output[..block_size - (p - start)]);
            crate::kv::hash::hash_request_block(parent, start, &block, salt)
        };
        self.block_hashes.push(h);
    }

    /// vLLM's `check_stop`, run after each appended token. Sets the status when it stops.
    #[inline]
    pub fn check_stop(&mut self, max_model_len: usize) -> bool {
        let last = *self.output.last().expect("check_stop after a token");
        match self.stop_with(
            last,
            self.num_tokens(),
            self.num_output_tokens(),
            max_model_len,
        ) {
            Some((reason, stop_token)) => {
                self.status = RequestStatus::Finished(reason);
                if stop_token.is_some() {
                    self.stop_reason = stop_token;
                }
                true
            }
            None => false,
        }
    }

    /// Whether appending `token` next would stop the request ([`Self::check_stop`]'s rule,
    /// asked before the token is appended, with nothing changed).
    #[inline]
    pub fn would_stop_after(&self, token: u32, max_model_len: usize) -> bool {
        self.stop_with(
            token,
            self.num_tokens() + 1,
            self.num_output_tokens() + 1,
            max_model_len,
        )
        .is_some()
    }

    /// How many more tokens can be appended, one at a time, without [`Self::check_stop`]
    /// ending the request: those before `max_tokens` or `max_model_len` is reached. `None`
    /// when a sampled token can end it (EOS not ignored, or stop token ids): that depends on
    /// the tokens.
    pub fn tokens_before_length_stop(&self, max_model_len: usize) -> Option<usize> {
        let by_token = (!self.sampling.ignore_eos && self.sampling.eos_token_id.is_some())
            || !self.sampling.stop_token_ids.is_empty();
        if by_token {
            return None;
        }
        let by_model_len = max_model_len.saturating_sub(self.num_tokens());
        let by_max_tokens =
            (self.sampling.max_tokens as usize).saturating_sub(self.num_output_tokens());
        Some(by_model_len.min(by_max_tokens).saturating_sub(1))
    }

    /// The stop rule of vLLM's `check_stop` for a request whose last token is `last`, with
    /// `num_tokens` tokens of which `num_outputs` are outputs: the finish reason and, for a
    /// stop token id, that id.
    #[inline(always)]
    fn stop_with(
        &self,
        last: u32,
        num_tokens: usize,
        num_outputs: usize,
        max_model_len: usize,
    ) -> Option<(FinishReason, Option<u32>)> {
        if num_outputs < self.sampling.min_tokens as usize {
            return None;
        }
        if !self.sampling.ignore_eos && self.sampling.eos_token_id == Some(last) {
            return Some((FinishReason::Stop, None));
        }
        if self.sampling.stop_token_ids.contains(&last) {
            return Some((FinishReason::Stop, Some(last)));
        }
        if num_tokens >= max_model_len || num_outputs >= self.sampling.max_tokens as usize {
            return Some((FinishReason::Length, None));
        }
        None
    }

    /// Samples the request's next token with `sampler` (at scheduling time, as the engine's
    /// executor does) and counts it.
    #[inline]
    pub fn sample_next(&mut self, sampler: &mut dyn crate::sampler::TokenSampler) -> u32 {
        let token = sampler.sample(&self.sample_context());
        self.num_sampled += 1;
        token
    }

    /// [`Self::sample_next`] `out.len()` times, the tokens into `out`
    /// ([`crate::sampler::TokenSampler::sample_ahead`]).
    pub fn sample_ahead(
        &mut self,
        sampler: &mut dyn crate::sampler::TokenSampler,
        out: &mut [u32],
    ) {
        sampler.sample_ahead(&self.sample_context(), out);
        self.num_sampled += out.len();
    }

    /// What a sampler knows when it draws the request's next token.
    #[inline]
    fn sample_context(&self) -> crate::sampler::SampleContext<'_> {
        crate::sampler::SampleContext::for_token(
            &self.request_id,
            self.sample_seed,
            self.num_sampled,
            &self.sampling,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(prompt: Vec<u32>, salt: Option<&str>, block_size: usize) -> Request {
        let new = NewRequest {
            request_id: "r".into(),
            prompt_token_ids: PromptTokens::from(prompt),
            sampling: SamplingParams {
                max_tokens: 64,
                ..Default::default()
            },
            priority: 0,
            cache_salt: salt.map(String::from),
            tenant: None,
            arrival: Nanos::ZERO,
        };
        Request::new(new, Nanos::ZERO, block_size, true)
    }

    #[test]
    fn released_prompt_ids_hash_the_same_blocks() {
        // Prompts ending mid-block (the tail is hashed with the first outputs), on a block
        // boundary (no tail), shorter than a block, salted or not.
        for (len, salt) in [(10, Some("s")), (10, None), (12, None), (3, Some("t"))] {
            let prompt: Vec<u32> = (0..len).map(|i| 100 + i * 7).collect();
            let mut all = request(prompt.clone(), salt, 4);
            let mut released = request(prompt.clone(), salt, 4);
            released.release_prompt_ids(4);
            assert_eq!(all.prompt_token_ids(), Some(&prompt[..]));
            assert_eq!(released.prompt_token_ids(), None);
            assert_eq!(released.num_prompt_tokens(), len as usize);
            assert_eq!(released.block_hashes, all.block_hashes);
            for t in 0..9 {
                all.append_output_token(900 + t, 4, true);
                released.append_output_token(900 + t, 4, true);
            }
            assert_eq!(released.block_hashes, all.block_hashes, "prompt of {len}");
            assert_eq!(released.block_hashes.len(), (len as usize + 9) / 4);
            // The tail and the outputs are still readable.
            let first_kept = len as usize / 4 * 4;
            for i in first_kept..released.num_tokens() {
                assert_eq!(released.token(i), all.token(i));
            }
        }
    }

    #[test]
    #[should_panic(expected = "was released")]
    fn released_prompt_tokens_are_not_read() {
        let mut r = request((0..10).collect(), None, 4);
        r.release_prompt_ids(4);
        r.token(7);
    }

    #[test]
    fn finish_reasons_have_vllms_names_everywhere() {
        for (r, name) in [
            (FinishReason::Stop, "stop"),
            (FinishReason::Length, "length"),
            (FinishReason::Abort, "abort"),
        ] {
            assert_eq!(r.as_str(), name);
            assert_eq!(r.to_string(), name);
            // Serialized records use the same names.
            assert_eq!(serde_json::to_value(r).unwrap(), name);
        }
    }
}
