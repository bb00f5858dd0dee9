//! A request's state inside the engine (vLLM `v1/request.py`).

use crate::kv::hash::{extend_block_hashes, BlockHash};
use crate::kv::BlockId;
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
    /// Prompt token ids, shared with the caller (no copy for large prompts).
    pub prompt_token_ids: Arc<[u32]>,
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

/// A request inside the engine.
#[derive(Clone, Debug)]
pub struct Request {
    pub request_id: String,
    pub priority: i32,
    pub cache_salt: Option<String>,
    /// See [`NewRequest::tenant`].
    pub tenant: Option<Arc<str>>,
    pub sampling: SamplingParams,
    pub status: RequestStatus,
    prompt: Arc<[u32]>,
    output: Vec<u32>,
    /// Tokens whose KV is computed or scheduled to be.
    pub num_computed_tokens: usize,
    /// Async scheduling: tokens scheduled for sampling whose value is not known yet.
    pub num_output_placeholders: usize,
    /// Set after scheduling: this step computes only part of the known tokens (no sample).
    pub is_prefill_chunk: bool,
    /// Prompt tokens found in the prefix cache at first admission (`num_cached_tokens`).
    pub num_cached_tokens: Option<usize>,
    pub num_preemptions: u32,
    /// Tokens the emulated model has sampled for this request, in flight included. Never reset:
    /// it indexes the synthetic token stream.
    pub num_sampled: usize,
    pub block_hashes: Vec<BlockHash>,
    pub kv: RequestBlocks,
    pub times: RequestTimes,
    pub stop_reason: Option<u32>,
    /// A stable hash of the request id, for samplers that derive tokens from it.
    pub sample_seed: u64,
    /// The submitter's tag, echoed in every output for this request (0 if none was given).
    pub tag: u64,
    /// Prompt tokens whose KV arrives from elsewhere (a prefill instance, through vLLM's KV
    /// connector: `get_num_new_matched_tokens`); used once, at admission. 0 for plain
    /// requests.
    pub num_external_computed_tokens: usize,
    /// The LoRA adapter it runs with (vLLM's `lora_request.lora_int_id`), for the scheduler's
    /// `max_loras` rule; `None`: the base model.
    pub lora_id: Option<u64>,
}

impl Request {
    pub fn new(new: NewRequest, queued: Nanos, block_size: usize, hash_blocks: bool) -> Request {
        let sample_seed = xxhash_rust::xxh3::xxh3_64(new.request_id.as_bytes());
        let mut r = Request {
            request_id: new.request_id,
            priority: new.priority,
            cache_salt: new.cache_salt,
            tenant: new.tenant,
            sampling: new.sampling,
            status: RequestStatus::Waiting,
            prompt: new.prompt_token_ids,
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
            let salt = r.cache_salt.clone();
            extend_block_hashes(&mut r.block_hashes, &r.prompt, block_size, salt.as_deref());
        }
        r
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

    pub fn prompt_token_ids(&self) -> &[u32] {
        &self.prompt
    }

    pub fn output_token_ids(&self) -> &[u32] {
        &self.output
    }

    /// Token `i` of prompt followed by outputs.
    pub fn token(&self, i: usize) -> u32 {
        if i < self.prompt.len() {
            self.prompt[i]
        } else {
            self.output[i - self.prompt.len()]
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.status, RequestStatus::Finished(_))
    }

    /// Appends one output token and hashes any block it completes.
    pub fn append_output_token(&mut self, token: u32, block_size: usize, hash_blocks: bool) {
        if self.output.capacity() == 0 {
            // Room for every output up front (no regrowth while decoding), capped for huge
            // `max_tokens`.
            self.output
                .reserve_exact(self.sampling.max_tokens.min(1 << 16) as usize);
        }
        self.output.push(token);
        let start = self.block_hashes.len() * block_size;
        if hash_blocks && self.num_tokens() >= start + block_size {
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
                // The block straddles the end of the prompt.
                let mut block = Vec::with_capacity(block_size);
                block.extend_from_slice(&self.prompt[start..]);
                block.extend_from_slice(&self.output[..block_size - (p - start)]);
                crate::kv::hash::hash_request_block(parent, start, &block, salt)
            };
            self.block_hashes.push(h);
        }
    }

    /// vLLM's `check_stop`, run after each appended token. Sets the status when it stops.
    pub fn check_stop(&mut self, max_model_len: usize) -> bool {
        if self.num_output_tokens() < self.sampling.min_tokens as usize {
            return false;
        }
        let last = *self.output.last().expect("check_stop after a token");
        if !self.sampling.ignore_eos && self.sampling.eos_token_id == Some(last) {
            self.status = RequestStatus::Finished(FinishReason::Stop);
            return true;
        }
        if self.sampling.stop_token_ids.contains(&last) {
            self.status = RequestStatus::Finished(FinishReason::Stop);
            self.stop_reason = Some(last);
            return true;
        }
        if self.num_tokens() >= max_model_len
            || self.num_output_tokens() >= self.sampling.max_tokens as usize
        {
            self.status = RequestStatus::Finished(FinishReason::Length);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::FinishReason;

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
