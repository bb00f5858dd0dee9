//! The engine flags shared by the subcommands, named as `vllm serve` names them, and how they
//! become an [`EngineConfig`] (vLLM's defaults where a flag is absent).

use anyhow::{bail, Context, Result};
use clap::{ArgAction, Args};
use llm_emu_core::cudagraph::CudaGraphSizes;
use llm_emu_core::sampler::{HashSampler, TokenSampler};
use llm_emu_core::{Engine, EngineConfig, SchedulingPolicy};
use llm_emu_perf::gpu::{GpuSpec, DEFAULT_GPU};
use llm_emu_perf::latency::{
    parse_latency_spec_on, HardwareDefaults, LatencyModel, RecordedTpLink,
};
use llm_emu_perf::sizing::{check_max_model_len, num_gpu_blocks, GpuBudget, ModelShape};
use llm_emu_sim::run_record::{CudaGraphMode, Recorded, RunRecord, VllmDefaults};
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
    /// The TP all-reduce link a replayed run's cluster config records.
    #[arg(skip)]
    recorded_tp_link: Option<RecordedTpLink>,
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
    pub scheduler_reserve_full_isl: Option<bool>,
    /// CUDA-graph sizes the run captured (empty: no graphs).
    pub cudagraph_capture_sizes: Option<Vec<usize>>,
    /// Memory of one GPU, bytes (replaces the `--gpu`'s datasheet size when
    /// `--gpu-memory-gib` is absent).
    pub gpu_memory_bytes: Option<u64>,
    /// Where the KV block count was recorded, for the line comparing it with the derived one.
    pub num_gpu_blocks_source: Option<String>,
    /// Where the capture sizes were recorded.
    pub cudagraph_capture_sizes_source: Option<String>,
    /// The run's KV cache dtype (`fp8*` halves a block's bytes in the recorded-blocks check).
    pub kv_cache_dtype: Option<String>,
}

/// A switch with an on flag and an off flag: the flag given wins, else the recorded default,
/// else vLLM's.
fn switch(on: bool, off: bool, recorded: Option<bool>, vllm_default: bool) -> bool {
    given_switch(on, off).or(recorded).unwrap_or(vllm_default)
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

    /// GPU memory for KV sizing and batch defaults, GiB: `--gpu-memory-gib`, else the
    /// recorded run's, else the GPU's.
    fn gpu_memory_gib(&self, d: &EngineDefaults) -> Result<f64> {
        let gib = match (self.gpu_memory_gib, d.gpu_memory_bytes) {
            (Some(g), _) => g,
            (None, Some(b)) => b as f64 / (1u64 << 30) as f64,
            (None, None) => self.gpu()?.memory_gib,
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
            tp_link: self.recorded_tp_link.clone(),
        };
        let spec = self.latency_spec(shape)?;
        let latency: Box<dyn LatencyModel> = parse_latency_spec_on(&spec, shape, &hw)?;
        if let Some(w) = self.measured_elsewhere(latency.as_ref())? {
            eprintln!("warning: {w}");
        }
        if let Some(link) = &self.recorded_tp_link {
            if self.tensor_parallel_size.unwrap_or(1) > 1 && !spec.starts_with("profile") {
                eprintln!(
                    "note: {}: the TP link is priced by the profile latency model only; this \
                     latency model uses its own link figures",
                    link.source
                );
            }
        }
        let desc = latency.describe();
        Ok((Engine::new(cfg.clone(), latency, sampler)?, desc))
    }
}

/// The `--latency` spec of a `--profile PATH`, by its format.
fn profile_spec(p: &std::path::Path) -> Result<String> {
    llm_emu_perf::latency::latency_spec_for_profile(p)
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
    let gpu_memory_gib = a.gpu_memory_gib(d)?;
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
    let num_gpu_blocks = match (a.num_gpu_blocks_override, d.num_gpu_blocks) {
        (Some(n), _) => n,
        (None, Some(n)) => {
            let ratio = match d.kv_cache_dtype.as_deref() {
                Some(t) if t.starts_with("fp8") => 0.5,
                _ => 1.0,
            };
            check_recorded_blocks(
                shape,
                &budget,
                n,
                d.num_gpu_blocks_source.as_deref(),
                ratio,
                max_model_len,
            )?;
            n
        }
        (None, None) => {
            let n = num_gpu_blocks(shape, &budget)?;
            check_max_model_len(shape, &budget, n, max_model_len as u64)?;
            n
        }
    };
    let enforce_eager = switch(a.enforce_eager, a.no_enforce_eager, d.enforce_eager, false);
    // Recorded capture sizes replace vLLM's rule unless the engine runs eagerly.
    let cudagraph_capture_sizes =
        match &d.cudagraph_capture_sizes {
            Some(rec) if !enforce_eager => {
                let derived = CudaGraphSizes::for_engine(seqs, tokens, false);
                let rec = CudaGraphSizes::from_sizes(rec.clone());
                if rec.sizes() != derived.sizes() {
                    eprintln!(
                    "note: CUDA-graph capture sizes: the run recorded {} ({}); vLLM's rule for \
                     max_num_seqs {seqs}, max_num_batched_tokens {tokens} gives {}: using the \
                     recorded ones",
                    describe_sizes(rec.sizes()),
                    d.cudagraph_capture_sizes_source.as_deref().unwrap_or("recorded"),
                    describe_sizes(derived.sizes())
                );
                }
                Some(rec.sizes().to_vec())
            }
            _ => None,
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
        scheduler_reserve_full_isl: d.scheduler_reserve_full_isl.unwrap_or(true),
        enforce_eager,
        cudagraph_capture_sizes,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// `N sizes, 1 … MAX` for a one-line comparison.
fn describe_sizes(sizes: &[usize]) -> String {
    match (sizes.first(), sizes.last()) {
        (Some(a), Some(b)) => format!("{} sizes, {a} to {b}", sizes.len()),
        _ => "none".into(),
    }
}

/// A recorded KV block count must fit the GPU the run recorded: `n` blocks of this model's
/// page size against the memory left after the weights at the recorded utilization (activations
/// not counted, so the bound is lenient); and it must hold one request of `max_model_len`, or
/// vLLM would not have started. Prints one line when sizing the GPU would give another count.
fn check_recorded_blocks(
    shape: &ModelShape,
    budget: &GpuBudget,
    n: u32,
    source: Option<&str>,
    kv_bytes_ratio: f64,
    max_model_len: usize,
) -> Result<()> {
    const GIB: f64 = (1u64 << 30) as f64;
    let tp = budget.tensor_parallel_size.max(1);
    let per_block = shape.bytes_per_block(budget.block_size, tp) as f64 * kv_bytes_ratio;
    let kv = f64::from(n) * per_block;
    let weights = shape.weight_bytes() / tp as f64;
    let room = budget.gpu_memory_bytes as f64 * budget.gpu_memory_utilization - weights;
    let source = source.unwrap_or("the recorded block count");
    // 2 % slack for the weights' estimate.
    if kv > room.max(0.0) * 1.02 + per_block {
        bail!(
            "contradicting facts: {source} = {n} KV blocks ({:.2} GiB per GPU at {} tokens per \
             block), but {:.1} GiB × {} utilization less the model's weights ({:.2} GiB per GPU) \
             leaves at most {:.2} GiB: the GPU, its memory, the model or the block count is \
             recorded wrong (override with --gpu, --gpu-memory-gib or --num-gpu-blocks-override)",
            kv / GIB,
            budget.block_size,
            budget.gpu_memory_bytes as f64 / GIB,
            budget.gpu_memory_utilization,
            weights / GIB,
            room.max(0.0) / GIB
        );
    }
    if let Err(e) = check_max_model_len(shape, budget, n, max_model_len as u64) {
        bail!(
            "contradicting facts: {source} = {n} KV blocks, but vLLM would not have started \
             with max_model_len {max_model_len}: {e}"
        );
    }
    match num_gpu_blocks(shape, budget) {
        Ok(derived) if derived != n => eprintln!(
            "note: KV blocks: the run recorded {n} ({source}); sizing {:.1} GiB × {} for this \
             model would give {derived}: using {n}",
            budget.gpu_memory_bytes as f64 / GIB,
            budget.gpu_memory_utilization
        ),
        Ok(_) => {}
        Err(e) => eprintln!(
            "note: KV blocks: the run recorded {n} ({source}); sizing the GPU would fail ({e}): \
             using {n}"
        ),
    }
    Ok(())
}

/// Names a command-line flag that replaces a recorded fact, when the two differ.
fn overridden<T: std::fmt::Display + PartialEq>(
    out: &mut Vec<String>,
    flag: &str,
    given: Option<&T>,
    recorded: Option<&Recorded<T>>,
) {
    if let (Some(g), Some(r)) = (given, recorded) {
        if *g != r.value {
            out.push(format!("{flag} {g} (recorded {}: {})", r.value, r.source));
        }
    }
}

/// A switch flag pair as an optional value: `Some` when either flag is given.
fn given_switch(on: bool, off: bool) -> Option<bool> {
    (on || off).then_some(!off)
}

impl EngineArgs {
    /// Applies the facts a real run recorded (`validate`, `simulate --like`): they become the
    /// defaults of every flag not given, vLLM's defaults of the run's version fill what it did
    /// not record, and each substitution is said on stderr (one line for the flags that replace
    /// recorded facts, one for the defaults used, one per recorded fact not modelled).
    pub fn replay(&mut self, rec: &RunRecord) -> Result<EngineDefaults> {
        let f = &rec.facts;
        for n in &f.notes {
            eprintln!("note: {n}");
        }
        let (vd, version_note) = VllmDefaults::for_version(f.vllm_version.as_deref());
        if let Some(n) = version_note {
            eprintln!("note: {n}");
        }
        let mut over = Vec::new();
        let mut defaulted = Vec::new();

        // GPU and its memory.
        match (&self.gpu, &f.gpu) {
            (None, Some(g)) => self.gpu = Some(g.value.name.to_string()),
            (Some(name), Some(g)) => {
                if GpuSpec::lookup(name)?.name != g.value.name {
                    over.push(format!(
                        "--gpu {name} (recorded {}: {})",
                        g.value.device_name, g.source
                    ));
                }
            }
            (None, None) => eprintln!(
                "note: the run records no GPU (no meta.json hardware.device_name, no cluster \
                 config): emulating the {DEFAULT_GPU} (pass --gpu NAME)"
            ),
            (Some(_), None) => {}
        }
        let recorded_gib = f
            .device_memory_bytes
            .as_ref()
            .map(|m| m.value as f64 / (1u64 << 30) as f64);
        if let (Some(g), Some(r), Some(m)) =
            (self.gpu_memory_gib, recorded_gib, &f.device_memory_bytes)
        {
            if (g - r).abs() > 1e-6 {
                over.push(format!(
                    "--gpu-memory-gib {g} (recorded {r:.2} GiB: {})",
                    m.source
                ));
            }
        }
        // A --gpu other than the recorded one brings its own memory.
        let gpu_memory_bytes = if over.iter().any(|o| o.starts_with("--gpu ")) {
            None
        } else {
            f.device_memory_bytes.as_ref().map(|m| m.value)
        };

        overridden(&mut over, "--model", self.model.as_ref(), f.model.as_ref());
        self.default_model(f.model.as_ref().map(|m| m.value.as_str()));
        overridden(
            &mut over,
            "--tensor-parallel-size",
            self.tensor_parallel_size.as_ref(),
            f.tensor_parallel_size.as_ref(),
        );
        self.default_tensor_parallel_size(f.tensor_parallel_size.as_ref().map(|t| t.value));
        overridden(
            &mut over,
            "--max-num-seqs",
            self.max_num_seqs.as_ref(),
            f.max_num_seqs.as_ref(),
        );
        overridden(
            &mut over,
            "--max-num-batched-tokens",
            self.max_num_batched_tokens.as_ref(),
            f.max_num_batched_tokens.as_ref(),
        );
        overridden(
            &mut over,
            "--max-model-len",
            self.max_model_len.as_ref(),
            f.max_model_len.as_ref(),
        );
        overridden(
            &mut over,
            "--block-size",
            self.block_size.as_ref(),
            f.block_size.as_ref(),
        );
        overridden(
            &mut over,
            "--num-gpu-blocks-override",
            self.num_gpu_blocks_override.as_ref(),
            f.num_gpu_blocks.as_ref(),
        );
        overridden(
            &mut over,
            "--gpu-memory-utilization",
            self.gpu_memory_utilization.as_ref(),
            f.gpu_memory_utilization.as_ref(),
        );
        overridden(
            &mut over,
            "--long-prefill-token-threshold",
            self.long_prefill_token_threshold.as_ref(),
            f.long_prefill_token_threshold.as_ref(),
        );
        overridden(
            &mut over,
            "--scheduling-policy",
            self.scheduling_policy.as_ref(),
            f.scheduling_policy.as_ref(),
        );
        let graphs_off = f
            .cudagraph_mode
            .as_ref()
            .is_some_and(|m| m.value == CudaGraphMode::None);
        for (flag, given, recorded) in [
            (
                "prefix caching",
                given_switch(self.enable_prefix_caching, self.no_enable_prefix_caching),
                f.enable_prefix_caching.as_ref(),
            ),
            (
                "chunked prefill",
                given_switch(self.enable_chunked_prefill, self.no_enable_chunked_prefill),
                f.enable_chunked_prefill.as_ref(),
            ),
            (
                "async scheduling",
                given_switch(self.async_scheduling, self.no_async_scheduling),
                f.async_scheduling.as_ref(),
            ),
            (
                "enforce eager",
                given_switch(self.enforce_eager, self.no_enforce_eager),
                f.enforce_eager.as_ref(),
            ),
        ] {
            overridden(&mut over, &format!("{flag}:"), given.as_ref(), recorded);
        }
        if !over.is_empty() {
            eprintln!(
                "note: given on the command line, replacing what the run recorded: {}",
                over.join("; ")
            );
        }

        // vLLM's defaults for what the run did not record and no flag gives.
        let mut default_of = |absent: bool, what: String| {
            if absent {
                defaulted.push(what);
            }
        };
        default_of(
            f.block_size.is_none() && self.block_size.is_none(),
            format!("block_size {}", vd.block_size),
        );
        default_of(
            f.gpu_memory_utilization.is_none() && self.gpu_memory_utilization.is_none(),
            format!("gpu_memory_utilization {}", vd.gpu_memory_utilization),
        );
        let on_off = |b: bool| if b { "on" } else { "off" };
        default_of(
            f.enable_prefix_caching.is_none()
                && given_switch(self.enable_prefix_caching, self.no_enable_prefix_caching)
                    .is_none(),
            format!("prefix caching {}", on_off(vd.enable_prefix_caching)),
        );
        default_of(
            f.enable_chunked_prefill.is_none()
                && given_switch(self.enable_chunked_prefill, self.no_enable_chunked_prefill)
                    .is_none(),
            format!("chunked prefill {}", on_off(vd.enable_chunked_prefill)),
        );
        default_of(
            f.async_scheduling.is_none()
                && given_switch(self.async_scheduling, self.no_async_scheduling).is_none(),
            format!("async scheduling {}", on_off(vd.async_scheduling)),
        );
        let eager_given = given_switch(self.enforce_eager, self.no_enforce_eager).is_some();
        default_of(
            f.enforce_eager.is_none() && f.cudagraph_mode.is_none() && !eager_given,
            "CUDA graphs on".into(),
        );
        default_of(
            f.cudagraph_capture_sizes.is_none() && !graphs_off && !eager_given,
            "capture sizes by vLLM's rule".into(),
        );
        default_of(
            f.max_num_seqs.is_none() && self.max_num_seqs.is_none(),
            "max_num_seqs by vLLM's batch defaults for the GPU".into(),
        );
        default_of(
            f.max_num_batched_tokens.is_none() && self.max_num_batched_tokens.is_none(),
            "max_num_batched_tokens by vLLM's batch defaults for the GPU".into(),
        );
        default_of(
            f.max_model_len.is_none() && self.max_model_len.is_none(),
            "max_model_len from the model config".into(),
        );
        default_of(
            f.num_gpu_blocks.is_none() && self.num_gpu_blocks_override.is_none(),
            "KV blocks sized from the GPU memory".into(),
        );
        default_of(
            f.scheduling_policy.is_none() && self.scheduling_policy.is_none(),
            "scheduling policy fcfs".into(),
        );
        if !defaulted.is_empty() {
            eprintln!(
                "note: not recorded by the run, vLLM {} defaults used: {}",
                vd.version,
                defaulted.join(", ")
            );
        }
        if let Some(d) = f.kv_cache_dtype.as_ref().filter(|d| d.value != "auto") {
            eprintln!(
                "note: {} = {}: the KV cache dtype is not modelled by the latency models",
                d.source, d.value
            );
        }

        if let Some(l) = &f.tp_link {
            self.recorded_tp_link = Some(RecordedTpLink {
                gbps: l.bandwidth_gbs,
                hop_latency_us: l.latency_ns / 1e3,
                source: l.source.clone(),
            });
        }
        let v = |r: &Option<Recorded<bool>>, default: bool| {
            Some(r.as_ref().map_or(default, |r| r.value))
        };
        Ok(EngineDefaults {
            max_num_seqs: f.max_num_seqs.as_ref().map(|r| r.value),
            max_num_batched_tokens: f.max_num_batched_tokens.as_ref().map(|r| r.value),
            max_model_len: f.max_model_len.as_ref().map(|r| r.value),
            tensor_parallel_size: f.tensor_parallel_size.as_ref().map(|r| r.value),
            num_gpu_blocks: f.num_gpu_blocks.as_ref().map(|r| r.value),
            block_size: Some(f.block_size.as_ref().map_or(vd.block_size, |r| r.value)),
            gpu_memory_utilization: Some(
                f.gpu_memory_utilization
                    .as_ref()
                    .map_or(vd.gpu_memory_utilization, |r| r.value),
            ),
            enable_prefix_caching: v(&f.enable_prefix_caching, vd.enable_prefix_caching),
            enable_chunked_prefill: v(&f.enable_chunked_prefill, vd.enable_chunked_prefill),
            long_prefill_token_threshold: f.long_prefill_token_threshold.as_ref().map(|r| r.value),
            scheduling_policy: f.scheduling_policy.as_ref().map(|r| r.value.clone()),
            async_scheduling: v(&f.async_scheduling, vd.async_scheduling),
            enforce_eager: f.enforce_eager.as_ref().map(|r| r.value),
            scheduler_reserve_full_isl: f.scheduler_reserve_full_isl.as_ref().map(|r| r.value),
            cudagraph_capture_sizes: if graphs_off {
                Some(Vec::new())
            } else {
                f.cudagraph_capture_sizes.as_ref().map(|r| r.value.clone())
            },
            gpu_memory_bytes,
            num_gpu_blocks_source: f.num_gpu_blocks.as_ref().map(|r| r.source.clone()),
            cudagraph_capture_sizes_source: if graphs_off {
                f.cudagraph_mode
                    .as_ref()
                    .map(|r| format!("{} NONE", r.source))
            } else {
                f.cudagraph_capture_sizes.as_ref().map(|r| r.source.clone())
            },
            kv_cache_dtype: f.kv_cache_dtype.as_ref().map(|r| r.value.clone()),
        })
    }

    /// The engine as configured, for reports: the [`EngineConfig`] fields plus the GPU, its
    /// memory, the TP degree and the latency model.
    pub fn engine_json(
        &self,
        cfg: &EngineConfig,
        latency: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>> {
        let mut m = match serde_json::to_value(cfg)? {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        m.insert("gpu".into(), self.gpu()?.name.into());
        m.insert(
            "tensor_parallel_size".into(),
            self.tensor_parallel_size.unwrap_or(1).into(),
        );
        m.insert("latency".into(), latency.into());
        Ok(m)
    }

    /// A warning when the latency model was measured on another GPU or model than the
    /// engine emulates, naming both.
    fn measured_elsewhere(&self, latency: &dyn LatencyModel) -> Result<Option<String>> {
        let (gpu, model) = latency.measured_on();
        let clean = |s: &str| s.trim().trim_matches(|c| c == '\'' || c == '"').to_string();
        let mut diffs = Vec::new();
        let engine_gpu = self.gpu()?;
        if let Some(g) = gpu.map(clean) {
            if GpuSpec::lookup(&g).map_or(true, |p| p.name != engine_gpu.name) {
                diffs.push(format!(
                    "on the {g} but the engine emulates the {}",
                    engine_gpu.device_name
                ));
            }
        }
        if let (Some(m), None) = (model.map(clean), &self.model_config) {
            let engine_model = self.model.as_deref().unwrap_or("meta-llama/Llama-3.1-8B");
            let base = |s: &str| {
                s.trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or(s)
                    .to_ascii_lowercase()
            };
            if base(&m) != base(engine_model) {
                diffs.push(format!("with {m} but the engine serves {engine_model}"));
            }
        }
        Ok((!diffs.is_empty()).then(|| {
            format!(
                "the latency profile was measured {}: its timings are not of this engine",
                diffs.join(", and ")
            )
        }))
    }
}
