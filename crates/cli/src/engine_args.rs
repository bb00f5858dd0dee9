//! The engine flags shared by the subcommands, named as `vllm serve` names them, and how they
//! become an [`EngineConfig`] (vLLM's defaults where a flag is absent).

use anyhow::{bail, Context, Result};
use clap::{ArgAction, Args};
use llm_emu_core::latency::{latency_spec_for_profile, parse_latency_spec_with, LatencyModel};
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::sizing::{num_gpu_blocks, GpuBudget, ModelShape};
use llm_emu_core::{Engine, EngineConfig, SchedulingPolicy};
use std::path::PathBuf;

/// The default step latency: operator profiles of Llama-3.1-8B measured on an RTX PRO 6000 with
/// vLLM 0.19.0 (LLMServingSim, MIT), compiled into the binary and composed as that project does.
pub const DEFAULT_LATENCY: &str = "profile:dir=builtin:rtxpro6000-llama-3.1-8b";

#[derive(Args)]
pub struct EngineArgs {
    /// Step latency model: `linear:base_us=B,per_token_us=P[,per_req_us=R,per_ctx_us=C]` (µs), or
    /// `profile:dir=PATH[,tp=N]` for real-GPU operator profiles (the layout of
    /// `../shared/data/real-runs/*/profile/`, composed for the model of `--model-config`).
    ///
    /// `step-cycle:path=FILE[,seed=N,min_samples=M]` draws whole step durations from a step-cycle
    /// pack (LLM-Emu's `serving_step_cycle_2d`; docs/step-cycle.md); its seed defaults to `--seed`.
    #[arg(long, default_value = DEFAULT_LATENCY)]
    latency: String,
    /// A profile whose kind is detected: a step-cycle pack (JSON) or an operator-profile
    /// directory (`meta.yaml` + `tp*/`). Replaces `--latency`.
    #[arg(long, conflicts_with = "latency")]
    profile: Option<PathBuf>,
    /// Hugging Face config.json of the model (default: built-in Llama-3.1-8B).
    #[arg(long)]
    model_config: Option<PathBuf>,
    /// GPU memory in GiB, for the KV cache size and vLLM's batch defaults (default: 96, an RTX
    /// PRO 6000).
    #[arg(long, default_value_t = 96.0)]
    gpu_memory_gib: f64,
    /// Fraction of GPU memory vLLM may use (weights, activations, KV cache).
    #[arg(long, default_value_t = 0.9)]
    gpu_memory_utilization: f64,
    /// Tensor-parallel ranks (divides weights and KV heads per rank; default 1).
    #[arg(long)]
    tensor_parallel_size: Option<u64>,
    /// KV blocks, replacing the count derived from GPU memory (the null block included).
    #[arg(long)]
    num_gpu_blocks_override: Option<u32>,
    /// Maximum running requests (default: vLLM's rule for the GPU's memory).
    #[arg(long)]
    max_num_seqs: Option<usize>,
    /// Maximum tokens per step (default: vLLM's rule for the GPU's memory).
    #[arg(long)]
    max_num_batched_tokens: Option<usize>,
    /// Context length, prompt plus output (default: the model's).
    #[arg(long)]
    max_model_len: Option<usize>,
    /// Tokens per KV block.
    #[arg(long, default_value_t = 16)]
    block_size: usize,
    /// Prefix caching (on by default).
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "no_enable_prefix_caching")]
    enable_prefix_caching: bool,
    /// Turn prefix caching off.
    #[arg(long, action = ArgAction::SetTrue)]
    no_enable_prefix_caching: bool,
    /// Chunked prefill (on by default).
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "no_enable_chunked_prefill")]
    enable_chunked_prefill: bool,
    /// Turn chunked prefill off.
    #[arg(long, action = ArgAction::SetTrue)]
    no_enable_chunked_prefill: bool,
    /// Cap on one request's tokens per step; 0 = none.
    #[arg(long, default_value_t = 0)]
    long_prefill_token_threshold: usize,
    /// `fcfs` or `priority` (lower `priority` first).
    #[arg(long, default_value = "fcfs")]
    scheduling_policy: String,
    /// Async scheduling (on by default): the next step is scheduled while the current one runs.
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "no_async_scheduling")]
    async_scheduling: bool,
    /// Turn async scheduling off.
    #[arg(long, action = ArgAction::SetTrue)]
    no_async_scheduling: bool,
    /// Seed of the synthetic workload, of synthetic prompt tokens and of step-cycle draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Values that replace vLLM's defaults when the matching flag is absent (e.g. from a real run's
/// recorded engine arguments).
#[derive(Clone, Debug, Default)]
pub struct EngineDefaults {
    pub max_num_seqs: Option<usize>,
    pub max_num_batched_tokens: Option<usize>,
    pub max_model_len: Option<usize>,
    pub tensor_parallel_size: Option<u64>,
}

impl EngineArgs {
    /// The model's shape: `--model-config`, else built-in Llama-3.1-8B.
    pub fn model_shape(&self) -> Result<ModelShape> {
        Ok(match &self.model_config {
            Some(p) => ModelShape::from_hf_config_json(
                &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("in {}", p.display()))?,
            None => ModelShape::llama_3_1_8b(),
        })
    }

    /// The validated engine configuration: flags first, then `defaults`, then vLLM's.
    pub fn engine_config(
        &self,
        shape: &ModelShape,
        defaults: &EngineDefaults,
    ) -> Result<EngineConfig> {
        engine_config_impl(self, shape, defaults)
    }

    /// The `--latency` spec in force: `--profile` detected, and `--seed` given to a step-cycle
    /// model that names no seed of its own.
    pub fn latency_spec(&self) -> Result<String> {
        let spec = match &self.profile {
            Some(p) => latency_spec_for_profile(p).context("--profile")?,
            None => self.latency.clone(),
        };
        Ok(match spec.strip_prefix("step-cycle:") {
            Some(params)
                if !params
                    .split(',')
                    .any(|kv| kv.trim_start().starts_with("seed=")) =>
            {
                format!("{spec},seed={}", self.seed)
            }
            _ => spec,
        })
    }

    /// The engine with this latency model and synthetic tokens; also the model's description.
    pub fn build_engine(&self, cfg: &EngineConfig, shape: &ModelShape) -> Result<(Engine, String)> {
        let latency: Box<dyn LatencyModel> = parse_latency_spec_with(&self.latency_spec()?, shape)?;
        let desc = latency.describe();
        Ok((
            Engine::new(cfg.clone(), latency, Box::new(HashSampler::default()))?,
            desc,
        ))
    }
}

/// vLLM's batch defaults for the online server (`EngineArgs.get_batch_defaults`): GPUs with at
/// least 160 GiB get 16384 tokens / 1024 sequences, with at least 70 GiB (not A100s) 8192 /
/// 1024, others 2048 / 256.
fn batch_defaults(gpu_memory_gib: f64) -> (usize, usize) {
    if gpu_memory_gib >= 160.0 {
        (16384, 1024)
    } else if gpu_memory_gib >= 70.0 {
        (8192, 1024)
    } else {
        (2048, 256)
    }
}

fn engine_config_impl(
    a: &EngineArgs,
    shape: &ModelShape,
    d: &EngineDefaults,
) -> Result<EngineConfig> {
    let policy: SchedulingPolicy = a.scheduling_policy.parse()?;
    if a.gpu_memory_utilization.is_nan()
        || a.gpu_memory_utilization <= 0.0
        || a.gpu_memory_utilization > 1.0
    {
        bail!(
            "--gpu-memory-utilization must be in (0, 1], got {}",
            a.gpu_memory_utilization
        );
    }
    let max_model_len = match a.max_model_len.or(d.max_model_len) {
        Some(n) => n,
        None => shape
            .max_position_embeddings
            .context("the model config has no max_position_embeddings; pass --max-model-len")?
            as usize,
    };
    let chunked = !a.no_enable_chunked_prefill;
    let (mut tokens, mut seqs) = batch_defaults(a.gpu_memory_gib);
    let max_num_seqs = a.max_num_seqs.or(d.max_num_seqs);
    if let Some(s) = max_num_seqs {
        seqs = s;
    }
    match a.max_num_batched_tokens.or(d.max_num_batched_tokens) {
        Some(t) => tokens = t,
        None => {
            if !chunked {
                tokens = tokens.max(max_model_len);
            }
            tokens = tokens.min(seqs.saturating_mul(max_model_len));
        }
    }
    if max_num_seqs.is_none() {
        seqs = seqs.min(tokens);
    }
    let num_gpu_blocks = match a.num_gpu_blocks_override {
        Some(n) => n,
        None => num_gpu_blocks(
            shape,
            &GpuBudget {
                gpu_memory_bytes: (a.gpu_memory_gib * (1u64 << 30) as f64) as u64,
                gpu_memory_utilization: a.gpu_memory_utilization,
                tensor_parallel_size: a
                    .tensor_parallel_size
                    .or(d.tensor_parallel_size)
                    .unwrap_or(1),
                block_size: a.block_size as u64,
                max_num_batched_tokens: tokens as u64,
                max_num_seqs: seqs as u64,
            },
        )?,
    };
    let cfg = EngineConfig {
        block_size: a.block_size,
        num_gpu_blocks,
        max_num_seqs: seqs,
        max_num_batched_tokens: tokens,
        max_model_len,
        enable_prefix_caching: !a.no_enable_prefix_caching,
        enable_chunked_prefill: chunked,
        long_prefill_token_threshold: a.long_prefill_token_threshold,
        scheduling_policy: policy,
        async_scheduling: !a.no_async_scheduling,
        scheduler_reserve_full_isl: true,
    };
    cfg.validate()?;
    Ok(cfg)
}
