//! The engine flags shared by the subcommands, named as `vllm serve` names them, and how they
//! become an [`EngineConfig`] (vLLM's defaults where a flag is absent).

use anyhow::{bail, Context, Result};
use clap::{ArgAction, Args};
use llm_emu_core::gpu::{GpuSpec, DEFAULT_GPU};
use llm_emu_core::latency::{parse_latency_spec_on, HardwareDefaults, LatencyModel};
use llm_emu_core::sampler::{HashSampler, TokenSampler};
use llm_emu_core::sizing::{check_max_model_len, num_gpu_blocks, GpuBudget, ModelShape};
use llm_emu_core::{Engine, EngineConfig, SchedulingPolicy};
use std::path::PathBuf;

/// The default step latency: operator profiles of Llama-3.1-8B measured on an RTX PRO 6000 with
/// vLLM 0.19.0 (LLMServingSim, MIT), compiled into the binary and composed as that project does.
pub const DEFAULT_LATENCY: &str = "profile:dir=builtin:rtxpro6000-llama-3.1-8b";

#[derive(Args)]
pub struct EngineArgs {
    /// Step latency model: `linear:base_us=B,per_token_us=P[,per_req_us=R,per_ctx_us=C]` (µs),
    /// `profile:dir=PATH[,tp=N]` for real-GPU operator profiles (the layout of
    /// `../shared/data/real-runs/*/profile/`, composed for the model of `--model-config`), or
    /// `roofline[:gpu=NAME,tp=N,dtype=bf16|fp8,...]` for any model on any known GPU (gpu and
    /// tp default to `--gpu` and `--tensor-parallel-size`; see docs/roofline.md). Default: the
    /// built-in RTX PRO 6000 profile when the model is Llama-3.1-8B on that GPU at TP 1, else
    /// the roofline of the model on the `--gpu`.
    #[arg(long)]
    latency: Option<String>,
    /// A measured profile, its format detected: a directory with `meta.yaml` and `tp<N>/` tables
    /// (operator profile, as `--latency profile:dir=PATH`) or a step-cycle pack JSON
    /// (`"profile_type": "serving_step_cycle_2d"`, as `--latency step-cycle:path=PATH`).
    #[arg(long, conflicts_with = "latency")]
    profile: Option<PathBuf>,
    /// Hugging Face config.json of the model (overrides the shape `--model` names).
    #[arg(long)]
    model_config: Option<PathBuf>,
    /// Model name (`meta-llama/Llama-3.1-8B`, `Qwen/Qwen3-30B-A3B`, ...) or a path to its
    /// config.json or directory: looked up in the local Hugging Face cache, then in the
    /// built-in table (default: meta-llama/Llama-3.1-8B).
    #[arg(long)]
    pub model: Option<String>,
    /// GPU model (`h100`, `h200`, `b200`, `a100-80gb`, `l40s`, `rtx-4090`, `rtx-pro-6000`, ...):
    /// sets the GPU memory and vLLM's batch defaults, and the roofline latency's hardware
    /// (default: rtx-pro-6000).
    #[arg(long)]
    gpu: Option<String>,
    /// GPU memory in GiB, for the KV cache size and vLLM's batch defaults (default: the
    /// `--gpu`'s memory, 96 for the default RTX PRO 6000).
    #[arg(long)]
    gpu_memory_gib: Option<f64>,
    /// Fraction of GPU memory vLLM may use (weights, activations, KV cache) [default: 0.9].
    #[arg(long)]
    gpu_memory_utilization: Option<f64>,
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
    /// Tokens per KV block [default: 16].
    #[arg(long)]
    block_size: Option<usize>,
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
    /// Cap on one request's tokens per step; 0 = none [default: 0].
    #[arg(long)]
    long_prefill_token_threshold: Option<usize>,
    /// `fcfs` or `priority` (lower `priority` first) [default: fcfs].
    #[arg(long)]
    scheduling_policy: Option<String>,
    /// Async scheduling (on by default): the next step is scheduled while the current one runs.
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "no_async_scheduling")]
    async_scheduling: bool,
    /// Turn async scheduling off.
    #[arg(long, action = ArgAction::SetTrue)]
    no_async_scheduling: bool,
    /// Run without CUDA graphs, as vLLM's `--enforce-eager`: steps are not padded to the
    /// captured batch sizes (latency models that price padding then price the exact tokens).
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "no_enforce_eager")]
    enforce_eager: bool,
    /// Use CUDA graphs (the default).
    #[arg(long, action = ArgAction::SetTrue)]
    no_enforce_eager: bool,
    /// Seed of the synthetic workload and of synthetic prompt tokens.
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
    pub num_gpu_blocks: Option<u32>,
    pub block_size: Option<usize>,
    pub gpu_memory_utilization: Option<f64>,
    pub enable_prefix_caching: Option<bool>,
    pub enable_chunked_prefill: Option<bool>,
    pub long_prefill_token_threshold: Option<usize>,
    pub scheduling_policy: Option<String>,
    pub async_scheduling: Option<bool>,
    pub enforce_eager: Option<bool>,
}

/// A switch with an on flag and an off flag: the flag given wins, else the recorded default,
/// else vLLM's.
fn switch(on: bool, off: bool, recorded: Option<bool>, vllm_default: bool) -> bool {
    if off {
        false
    } else if on {
        true
    } else {
        recorded.unwrap_or(vllm_default)
    }
}

impl EngineArgs {
    /// The model's shape: `--model-config`, else `--model` (path, Hugging Face cache, built-in
    /// table), else built-in Llama-3.1-8B.
    pub fn model_shape(&self) -> Result<ModelShape> {
        Ok(match (&self.model_config, &self.model) {
            (Some(p), _) => ModelShape::from_hf_config_json(
                &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("in {}", p.display()))?,
            (None, Some(name)) => ModelShape::resolve(name)?,
            (None, None) => ModelShape::llama_3_1_8b(),
        })
    }

    /// Takes `name` as `--model` when neither `--model` nor `--model-config` is given (a real
    /// run's recorded model).
    pub fn default_model(&mut self, name: Option<&str>) {
        if self.model.is_none() && self.model_config.is_none() {
            self.model = name.map(str::to_string);
        }
    }

    /// Takes `tp` as `--tensor-parallel-size` when the flag is absent (a real run's recorded
    /// value), so KV sizing and the roofline latency both see it.
    pub fn default_tensor_parallel_size(&mut self, tp: Option<u64>) {
        self.tensor_parallel_size = self.tensor_parallel_size.or(tp);
    }

    /// `--latency`, else the measured built-in profile where it applies (its model, GPU and
    /// TP 1), else the roofline of this model on this GPU.
    pub fn latency_spec(&self, shape: &ModelShape) -> Result<String> {
        if let Some(spec) = &self.latency {
            return Ok(spec.clone());
        }
        if let Some(p) = &self.profile {
            return profile_spec(p);
        }
        let profiled = ModelShape::llama_3_1_8b();
        let same_model = shape.num_hidden_layers == profiled.num_hidden_layers
            && shape.hidden_size == profiled.hidden_size
            && shape.num_attention_heads == profiled.num_attention_heads
            && shape.kv_heads() == profiled.kv_heads()
            && shape.intermediate_size == profiled.intermediate_size
            && shape.vocab_size == profiled.vocab_size;
        let same_gpu = self.gpu()?.name == GpuSpec::lookup(DEFAULT_GPU)?.name;
        let tp1 = self.tensor_parallel_size.unwrap_or(1) == 1;
        Ok(if same_model && same_gpu && tp1 {
            DEFAULT_LATENCY.to_string()
        } else {
            "roofline".to_string()
        })
    }

    /// The `--gpu` (default: the RTX PRO 6000 the built-in profile was measured on).
    pub fn gpu(&self) -> Result<&'static GpuSpec> {
        Ok(GpuSpec::lookup(self.gpu.as_deref().unwrap_or(DEFAULT_GPU))?)
    }

    /// GPU memory for KV sizing and batch defaults, GiB: `--gpu-memory-gib`, else the GPU's.
    fn gpu_memory_gib(&self) -> Result<f64> {
        let gib = match self.gpu_memory_gib {
            Some(g) => g,
            None => self.gpu()?.memory_gib,
        };
        if !(gib.is_finite() && gib > 0.0) {
            bail!("--gpu-memory-gib must be a positive number, got {gib}");
        }
        Ok(gib)
    }

    /// The validated engine configuration: flags first, then `defaults`, then vLLM's.
    pub fn engine_config(
        &self,
        shape: &ModelShape,
        defaults: &EngineDefaults,
    ) -> Result<EngineConfig> {
        engine_config_impl(self, shape, defaults)
    }

    /// The engine with this latency model and synthetic tokens; also the model's description.
    pub fn build_engine(&self, cfg: &EngineConfig, shape: &ModelShape) -> Result<(Engine, String)> {
        self.build_engine_with(cfg, shape, Box::new(HashSampler::default()))
    }

    /// The engine with this latency model and the given token sampler.
    pub fn build_engine_with(
        &self,
        cfg: &EngineConfig,
        shape: &ModelShape,
        sampler: Box<dyn TokenSampler>,
    ) -> Result<(Engine, String)> {
        let hw = HardwareDefaults {
            gpu: Some(self.gpu()?),
            tensor_parallel_size: self.tensor_parallel_size,
            seed: self.seed,
        };
        let spec = self.latency_spec(shape)?;
        let latency: Box<dyn LatencyModel> = parse_latency_spec_on(&spec, shape, &hw)?;
        let desc = latency.describe();
        Ok((Engine::new(cfg.clone(), latency, sampler)?, desc))
    }
}

/// The `--latency` spec of a `--profile PATH`, by its format.
fn profile_spec(p: &std::path::Path) -> Result<String> {
    llm_emu_core::latency::latency_spec_for_profile(p)
        .with_context(|| format!("--profile {}", p.display()))
}

/// vLLM 0.19's batch defaults for the online server (`EngineArgs.get_batch_defaults`): GPUs
/// with at least 70 GiB whose device name does not contain "a100" get 8192 tokens / 1024
/// sequences, others 2048 / 256.
fn batch_defaults(gpu_memory_gib: f64, device_name: &str) -> (usize, usize) {
    if gpu_memory_gib >= 70.0 && !device_name.to_ascii_lowercase().contains("a100") {
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
    let policy: SchedulingPolicy = a
        .scheduling_policy
        .as_deref()
        .or(d.scheduling_policy.as_deref())
        .unwrap_or("fcfs")
        .parse()?;
    let gpu_memory_utilization = a
        .gpu_memory_utilization
        .or(d.gpu_memory_utilization)
        .unwrap_or(0.9);
    if gpu_memory_utilization.is_nan()
        || gpu_memory_utilization <= 0.0
        || gpu_memory_utilization > 1.0
    {
        bail!("--gpu-memory-utilization must be in (0, 1], got {gpu_memory_utilization}");
    }
    let block_size = a.block_size.or(d.block_size).unwrap_or(16);
    let max_model_len = match a.max_model_len.or(d.max_model_len) {
        Some(n) => n,
        None => shape
            .max_position_embeddings
            .context("the model config has no max_position_embeddings; pass --max-model-len")?
            as usize,
    };
    let chunked = switch(
        a.enable_chunked_prefill,
        a.no_enable_chunked_prefill,
        d.enable_chunked_prefill,
        true,
    );
    let gpu_memory_gib = a.gpu_memory_gib()?;
    let (mut tokens, mut seqs) = batch_defaults(gpu_memory_gib, a.gpu()?.device_name);
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
    let num_gpu_blocks = match a.num_gpu_blocks_override.or(d.num_gpu_blocks) {
        Some(n) => n,
        None => {
            let budget = GpuBudget {
                gpu_memory_bytes: (gpu_memory_gib * (1u64 << 30) as f64) as u64,
                gpu_memory_utilization,
                tensor_parallel_size: a
                    .tensor_parallel_size
                    .or(d.tensor_parallel_size)
                    .unwrap_or(1),
                block_size: block_size as u64,
                max_num_batched_tokens: tokens as u64,
                max_num_seqs: seqs as u64,
            };
            let n = num_gpu_blocks(shape, &budget)?;
            check_max_model_len(shape, &budget, n, max_model_len as u64)?;
            n
        }
    };
    let cfg = EngineConfig {
        block_size,
        num_gpu_blocks,
        max_num_seqs: seqs,
        max_num_batched_tokens: tokens,
        max_model_len,
        enable_prefix_caching: switch(
            a.enable_prefix_caching,
            a.no_enable_prefix_caching,
            d.enable_prefix_caching,
            true,
        ),
        enable_chunked_prefill: chunked,
        long_prefill_token_threshold: a
            .long_prefill_token_threshold
            .or(d.long_prefill_token_threshold)
            .unwrap_or(0),
        scheduling_policy: policy,
        async_scheduling: switch(
            a.async_scheduling,
            a.no_async_scheduling,
            d.async_scheduling,
            true,
        ),
        scheduler_reserve_full_isl: true,
        enforce_eager: switch(a.enforce_eager, a.no_enforce_eager, d.enforce_eager, false),
    };
    cfg.validate()?;
    Ok(cfg)
}
