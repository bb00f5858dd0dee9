//! Engine configuration, named as `vllm serve` names it (vLLM `config/scheduler.py`,
//! `config/cache.py`, `engine/arg_utils.py`).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// `--scheduling-policy`: which [`crate::sched::policy::Policy`] the scheduler uses.
///
/// `fcfs` and `priority` are vLLM's and exact; the others are not in vLLM, and every output that
/// names the policy marks them so ([`SchedulingPolicy::label`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulingPolicy {
    /// First come, first served: waiting requests in arrival order; preempt the newest.
    #[default]
    #[serde(rename = "fcfs")]
    Fcfs,
    /// Lowest `(priority, arrival)` first; preempt the largest.
    #[serde(rename = "priority")]
    Priority,
    /// Shortest prompt first; preempt the longest prompt (not vLLM).
    #[serde(rename = "sjf")]
    ShortestPromptFirst,
    /// Longest waiting first, priorities aged by one level per second waited (not vLLM).
    #[serde(rename = "lwf")]
    LongestWaitingFirst,
    /// Round-robin over tenants (`user`); preempt from the tenant running most (not vLLM).
    #[serde(rename = "fair")]
    FairShare,
}

impl SchedulingPolicy {
    /// Every policy, vLLM's first.
    pub const ALL: [SchedulingPolicy; 5] = [
        SchedulingPolicy::Fcfs,
        SchedulingPolicy::Priority,
        SchedulingPolicy::ShortestPromptFirst,
        SchedulingPolicy::LongestWaitingFirst,
        SchedulingPolicy::FairShare,
    ];

    /// The name `--scheduling-policy` takes.
    pub fn name(self) -> &'static str {
        match self {
            SchedulingPolicy::Fcfs => "fcfs",
            SchedulingPolicy::Priority => "priority",
            SchedulingPolicy::ShortestPromptFirst => "sjf",
            SchedulingPolicy::LongestWaitingFirst => "lwf",
            SchedulingPolicy::FairShare => "fair",
        }
    }

    /// Whether vLLM has this policy (and the emulator reproduces it exactly).
    pub fn is_vllm(self) -> bool {
        matches!(self, SchedulingPolicy::Fcfs | SchedulingPolicy::Priority)
    }

    /// The name as outputs show it: `fcfs`, or `sjf (not vLLM)`.
    pub fn label(self) -> String {
        if self.is_vllm() {
            self.name().to_string()
        } else {
            format!("{} (not vLLM)", self.name())
        }
    }
}

impl std::fmt::Display for SchedulingPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SchedulingPolicy {
    type Err = ConfigError;
    /// A name from [`SchedulingPolicy::name`], or a long alias (`shortest-prompt-first`,
    /// `longest-waiting-first`, `fair-share`).
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let alias = match s {
            "shortest-prompt-first" => Some(SchedulingPolicy::ShortestPromptFirst),
            "longest-waiting-first" => Some(SchedulingPolicy::LongestWaitingFirst),
            "fair-share" => Some(SchedulingPolicy::FairShare),
            _ => None,
        };
        alias
            .or_else(|| SchedulingPolicy::ALL.into_iter().find(|p| p.name() == s))
            .ok_or_else(|| {
                let names: Vec<&str> = SchedulingPolicy::ALL.iter().map(|p| p.name()).collect();
                ConfigError::Invalid(format!(
                    "unknown scheduling policy `{s}` (expected one of: {}; only fcfs and priority are vLLM's)",
                    names.join(", ")
                ))
            })
    }
}

/// Everything the scheduler and KV cache need, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineConfig {
    /// Tokens per KV block (`--block-size`).
    pub block_size: usize,
    /// KV blocks including the reserved null block (vLLM's `num_gpu_blocks`).
    pub num_gpu_blocks: u32,
    /// Running requests at most (`--max-num-seqs`).
    pub max_num_seqs: usize,
    /// Tokens scheduled per step at most (`--max-num-batched-tokens`).
    pub max_num_batched_tokens: usize,
    /// Prompt plus output tokens at most (`--max-model-len`).
    pub max_model_len: usize,
    pub enable_prefix_caching: bool,
    pub enable_chunked_prefill: bool,
    /// Cap on one request's tokens per step; 0 = no cap (`--long-prefill-token-threshold`).
    pub long_prefill_token_threshold: usize,
    pub scheduling_policy: SchedulingPolicy,
    /// Schedule step N+1 while step N runs (`--async-scheduling`, on by default).
    pub async_scheduling: bool,
    /// Admit a waiting request only if its whole known sequence fits the free blocks
    /// (vLLM's `scheduler_reserve_full_isl`, default true).
    pub scheduler_reserve_full_isl: bool,
    /// No CUDA graphs (`--enforce-eager`): steps run unpadded. Off by default, as in vLLM.
    pub enforce_eager: bool,
    /// The CUDA-graph batch sizes a real run captured (its `cudagraph_capture_sizes`), replacing
    /// vLLM's rule ([`crate::cudagraph::CudaGraphSizes::for_engine`]); ignored with
    /// `enforce_eager`. `None` = vLLM's rule.
    #[serde(default)]
    pub cudagraph_capture_sizes: Option<Vec<usize>>,
    /// The attention window, in tokens, of a model every layer of which attends within the same
    /// window (vLLM's `SlidingWindowSpec` as the one KV cache group, managed by its
    /// `SlidingWindowManager`): blocks that fall wholly behind the window are freed as the
    /// request advances, and a prefix hit needs only the blocks within the window. `None`: full
    /// attention (`FullAttentionManager`).
    #[serde(default)]
    pub sliding_window: Option<usize>,
}

/// The most KV blocks an engine holds: 2²⁴, some twenty times what the largest GPU gives the
/// smallest model (a 186 GB GB200 holds about 850,000 blocks of 16 tokens of a 0.5 B model's
/// 12 KB per token); each block costs the engine some 30 bytes whether used or not, so the
/// bound keeps an absurd memory figure from exhausting the host.
pub const MAX_GPU_BLOCKS: u32 = 1 << 24;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid engine configuration: {0}")]
    Invalid(String),
}

impl EngineConfig {
    /// vLLM's defaults for the online server on a GPU with at least 70 GiB that is not an A100
    /// (`get_batch_defaults`), with an explicit KV size and context length.
    pub fn with_defaults(num_gpu_blocks: u32, max_model_len: usize) -> EngineConfig {
        EngineConfig {
            block_size: 16,
            num_gpu_blocks,
            max_num_seqs: 1024,
            max_num_batched_tokens: 8192,
            max_model_len,
            enable_prefix_caching: true,
            enable_chunked_prefill: true,
            long_prefill_token_threshold: 0,
            scheduling_policy: SchedulingPolicy::Fcfs,
            async_scheduling: true,
            scheduler_reserve_full_isl: true,
            enforce_eager: false,
            cudagraph_capture_sizes: None,
            sliding_window: None,
        }
    }

    /// Checks the limits vLLM checks at start-up.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.block_size == 0 {
            return bad("block_size must be positive".into());
        }
        if self.num_gpu_blocks < 2 {
            return bad(format!(
                "num_gpu_blocks is {}: at least 2 are needed (one is reserved)",
                self.num_gpu_blocks
            ));
        }
        if self.num_gpu_blocks > MAX_GPU_BLOCKS {
            return bad(format!(
                "num_gpu_blocks is {}: more than the {MAX_GPU_BLOCKS} llm-emu holds (a GPU memory \
                 or block count far beyond any GPU's)",
                self.num_gpu_blocks
            ));
        }
        // The budget first: with no budget given, vLLM's rule caps max_num_seqs at it, so a
        // zero budget is the cause of a zero max_num_seqs.
        if self.max_num_batched_tokens == 0 {
            return bad("max_num_batched_tokens must be positive".into());
        }
        if self.max_num_seqs == 0 {
            return bad("max_num_seqs must be positive".into());
        }
        if self.max_model_len < 2 {
            return bad("max_model_len must be at least 2".into());
        }
        if !self.enable_chunked_prefill && self.max_num_batched_tokens < self.max_model_len {
            return bad(format!(
                "max_num_batched_tokens ({}) is smaller than max_model_len ({}) with chunked prefill off: \
                 long prompts could never be scheduled; raise max_num_batched_tokens or lower max_model_len",
                self.max_num_batched_tokens, self.max_model_len
            ));
        }
        if self.long_prefill_token_threshold > self.max_model_len {
            return bad(format!(
                "long_prefill_token_threshold ({}) cannot be greater than max_model_len ({})",
                self.long_prefill_token_threshold, self.max_model_len
            ));
        }
        if self.sliding_window == Some(0) {
            return bad("sliding_window must be positive (leave it out for full attention)".into());
        }
        Ok(())
    }

    /// The CUDA-graph batch sizes the engine captures: the given ones, else vLLM's rule for
    /// its batch limits; none with `enforce_eager`.
    pub fn cuda_graph_sizes(&self) -> crate::cudagraph::CudaGraphSizes {
        use crate::cudagraph::CudaGraphSizes;
        match &self.cudagraph_capture_sizes {
            Some(sizes) if !self.enforce_eager => CudaGraphSizes::from_sizes(sizes.clone()),
            _ => CudaGraphSizes::for_engine(
                self.max_num_seqs,
                self.max_num_batched_tokens,
                self.enforce_eager,
            ),
        }
    }

    /// Tokens the KV cache can hold at once (usable blocks × block size).
    pub fn kv_capacity_tokens(&self) -> usize {
        (self.num_gpu_blocks as usize - 1) * self.block_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_rejects_impossible_settings() {
        let ok = EngineConfig::with_defaults(100, 4096);
        assert!(ok.validate().is_ok());
        let mut c = ok.clone();
        c.num_gpu_blocks = 1;
        assert!(c.validate().is_err());
        // A block count far beyond any GPU's is refused before the engine allocates it.
        c.num_gpu_blocks = MAX_GPU_BLOCKS;
        assert!(c.validate().is_ok());
        c.num_gpu_blocks = MAX_GPU_BLOCKS + 1;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("more than the"));
        let mut c = ok.clone();
        c.enable_chunked_prefill = false;
        c.max_num_batched_tokens = 1024;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("chunked prefill off"));
        assert!("lifo".parse::<SchedulingPolicy>().is_err());
    }

    #[test]
    fn policy_names_round_trip_and_non_vllm_ones_are_marked() {
        for p in SchedulingPolicy::ALL {
            assert_eq!(p.name().parse::<SchedulingPolicy>(), Ok(p));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.name()));
            assert_eq!(p.label().ends_with("(not vLLM)"), !p.is_vllm());
        }
        assert_eq!(SchedulingPolicy::Fcfs.label(), "fcfs");
        assert_eq!(
            SchedulingPolicy::ShortestPromptFirst.label(),
            "sjf (not vLLM)"
        );
        assert_eq!(
            "fair-share".parse::<SchedulingPolicy>(),
            Ok(SchedulingPolicy::FairShare)
        );
    }
}
