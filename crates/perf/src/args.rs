//! Engine arguments, as `vllm serve` names them, and the one place vLLM's rules turn them into
//! an [`EngineConfig`] and a latency model: batch defaults by GPU memory, the
//! `max_num_batched_tokens` derivation, KV sizing (or the check of a recorded block count),
//! CUDA-graph capture sizes, and the default latency model for the model and GPU. Every driver
//! (simulate, validate, serve, replays of a real run) resolves its engine here.

use crate::gpu::{GpuSpec, UnknownGpu, DEFAULT_GPU};
use crate::latency::{
    latency_spec_for_profile, vidur, HardwareDefaults, LatencyModel, LatencySpec, LatencySpecError,
    ProfileLatency, RecordedTpLink,
};
use crate::sizing::{
    blocks_for_available, check_max_model_len, num_gpu_blocks, same_weights_key, GpuBudget,
    KvCacheDtype, ModelShape, OnlineQuantization, ResolvedShape, SizingError,
};
use llm_emu_core::config::ConfigError;
use llm_emu_core::cudagraph::{CaptureRule, CudaGraphSizes};
use llm_emu_core::{EngineConfig, SchedulingPolicy};
use std::fmt;
use std::path::PathBuf;
use thiserror::Error;

/// The directory of the built-in operator profile: Llama-3.1-8B measured on an RTX PRO 6000
/// with vLLM 0.19.0 (LLMServingSim, MIT), compiled into the binary.
pub const BUILTIN_PROFILE_DIR: &str = "builtin:rtxpro6000-llama-3.1-8b";

/// What a user or a run's record gives for one engine; `None` where unset (vLLM's default, or
/// its rule, applies). Names follow `vllm serve`'s flags, except the emulator's own (`gpu`,
/// `gpu_memory_gib`, `model_config`, `latency`, `profile`).
#[derive(Clone, Debug, Default)]
pub struct EngineArgs {
    /// Model name or path to its config.json or directory (default Llama-3.1-8B).
    pub model: Option<String>,
    /// A Hugging Face config.json that overrides the shape `model` names.
    pub model_config: Option<PathBuf>,
    /// GPU name (default: the RTX PRO 6000 the built-in profile was measured on).
    pub gpu: Option<String>,
    /// Memory of one GPU, GiB (default: the GPU's).
    pub gpu_memory_gib: Option<f64>,
    /// Fraction of GPU memory vLLM may use (default 0.9).
    pub gpu_memory_utilization: Option<f64>,
    /// Default 1.
    pub tensor_parallel_size: Option<u64>,
    /// GPUs each routed expert's weights are spread over, where more than the TP degree: a
    /// MoE model's data-parallel group, DP × TP (vLLM holds `E / EP` whole experts per rank
    /// with expert parallelism, EP = DP × TP, and each expert's width over DP × TP without).
    /// Sizes the weights each GPU holds, so its KV cache.
    pub expert_shards: Option<u64>,
    /// KV blocks, the null block included, taken as given (no sizing).
    pub num_gpu_blocks_override: Option<u32>,
    /// `--kv-cache-memory-bytes`: KV-cache bytes per GPU, set by hand; vLLM then skips its
    /// memory profiling and `gpu_memory_utilization` does not apply (`gpu_worker.py`,
    /// `determine_available_memory`). Blocks = bytes ÷ page size ÷ layers per group.
    pub kv_cache_memory_bytes: Option<u64>,
    pub max_num_seqs: Option<usize>,
    pub max_num_batched_tokens: Option<usize>,
    /// Default: the model's `max_position_embeddings`.
    pub max_model_len: Option<usize>,
    /// Tokens per KV block (default 16).
    pub block_size: Option<usize>,
    /// `--quantization` of an unquantized checkpoint (`fp8`): weights' bytes in sizing and the
    /// roofline's FP8 tensor-core peak.
    pub quantization: Option<OnlineQuantization>,
    /// `--kv-cache-dtype` (default `auto`, else what the run recorded): bytes per KV block.
    pub kv_cache_dtype: Option<KvCacheDtype>,
    /// Default on.
    pub enable_prefix_caching: Option<bool>,
    /// Default on.
    pub enable_chunked_prefill: Option<bool>,
    /// 0 = no cap (default).
    pub long_prefill_token_threshold: Option<usize>,
    /// vLLM's `max_num_partial_prefills` (default 1). The v1 scheduler does not read it, but
    /// above 1 it sets an unset (0) `long_prefill_token_threshold` to 4 % of `max_model_len`
    /// (`SchedulerConfig.__post_init__`).
    pub max_num_partial_prefills: Option<usize>,
    /// Default FCFS.
    pub scheduling_policy: Option<SchedulingPolicy>,
    /// Default on.
    pub async_scheduling: Option<bool>,
    /// Default off (CUDA graphs on).
    pub enforce_eager: Option<bool>,
    /// Default true.
    pub scheduler_reserve_full_isl: Option<bool>,
    /// CUDA-graph batch sizes (empty: none); default vLLM's rule for the batch limits.
    pub cudagraph_capture_sizes: Option<Vec<usize>>,
    /// `--latency`.
    pub latency: Option<LatencySpec>,
    /// `--profile`: a measured profile whose format is detected.
    pub profile: Option<PathBuf>,
    /// Seed of the models that draw, when their spec gives none.
    pub seed: u64,
    /// What a real run recorded that is checked rather than taken.
    pub run: RunFacts,
}

/// Facts of a replayed run that the rules check or report, beside the arguments they fill.
#[derive(Clone, Debug, Default)]
pub struct RunFacts {
    /// The KV block count the run had; used when no override is given, after a check that
    /// the recorded GPU could hold it.
    pub num_gpu_blocks: Option<u32>,
    /// Where `num_gpu_blocks` was read, for messages.
    pub num_gpu_blocks_source: Option<String>,
    /// Where the capture sizes were read, for messages.
    pub cudagraph_capture_sizes_source: Option<String>,
    /// The run's KV cache dtype (vLLM's names), served unless `--kv-cache-dtype` is given.
    pub kv_cache_dtype: Option<String>,
    /// The TP all-reduce link the run's cluster config records.
    pub tp_link: Option<RecordedTpLink>,
    /// The rule of the run's vLLM version for capture sizes it did not record.
    pub capture_rule: CaptureRule,
    /// The largest capture size the run asked for, where it asked for one and not for the
    /// sizes themselves (`--max-cudagraph-capture-size`; a one-element `--cuda-graph-sizes`
    /// before vLLM 0.12).
    pub max_capture_size: Option<usize>,
    /// Which of vLLM's batch defaults fill a `max_num_seqs` / `max_num_batched_tokens` the run
    /// left unset: the context its engine was built in.
    pub batch_context: BatchContext,
    /// `performance_mode` `throughput`: vLLM doubles the batch defaults it fills.
    pub doubled_batch_defaults: bool,
    /// `max_model_len` -1 (vLLM 0.19): the model's length, reduced after the KV cache is sized
    /// to the tokens it holds (`_auto_fit_max_model_len`), where no length is given.
    pub auto_fit_max_model_len: bool,
}

/// The usage context vLLM's `EngineArgs` resolves its batch defaults in
/// (`get_batch_defaults`, `_set_default_max_num_seqs_and_batched_tokens_args`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BatchContext {
    /// `vllm serve`'s API server: 8192 tokens / 1024 sequences on GPUs of at least 70 GiB not
    /// named A100, else 2048 / 256.
    #[default]
    ApiServer,
    /// An engine built directly (`AsyncLLM.from_engine_args`, the engine context): no entry
    /// in vLLM's tables, so `SchedulerConfig`'s 2048 tokens / 128 sequences, and with chunked
    /// prefill off at least `max_model_len` tokens, in every version read (0.10, 0.11, 0.14,
    /// 0.19).
    EngineContext,
}

#[derive(Debug, Error)]
pub enum ResolveError {
    #[error(transparent)]
    UnknownGpu(#[from] UnknownGpu),
    #[error("reading {0}")]
    ReadModelConfig(String, #[source] std::io::Error),
    #[error("in {0}")]
    ModelConfig(String, #[source] SizingError),
    #[error(transparent)]
    Sizing(#[from] SizingError),
    #[error("--gpu-memory-gib must be a positive number, got {0}")]
    GpuMemory(f64),
    #[error("--gpu-memory-utilization must be in (0, 1], got {0}")]
    GpuMemoryUtilization(f64),
    #[error("block_size must be a positive number of tokens, got 0")]
    ZeroBlockSize,
    /// vLLM: "No available memory for the cache blocks" (`check_enough_kv_cache_memory`).
    #[error(
        "kv_cache_memory_bytes {bytes} holds fewer than 2 KV blocks of {per_block} bytes (vLLM \
         refuses to start: no memory for the cache blocks)"
    )]
    KvMemoryTooSmall { bytes: u64, per_block: u64 },
    /// vLLM: "Cannot auto-fit max_model_len: not enough GPU memory available to serve even a
    /// single token".
    #[error(
        "max_model_len -1: cannot fit it to the KV cache, which holds no token (vLLM refuses \
         to start so); raise gpu_memory_utilization"
    )]
    AutoFitNoMemory,
    #[error(
        "max_num_batched_tokens ({tokens}) must be greater than or equal to max_num_seqs \
         ({seqs}), as vLLM requires"
    )]
    BudgetBelowSeqs { tokens: usize, seqs: usize },
    #[error("the model config has no max_position_embeddings; pass --max-model-len")]
    NoMaxModelLen,
    /// A recorded fact contradicts another one.
    #[error("contradicting facts: {0}")]
    Contradiction(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--profile {0}")]
    Profile(String, #[source] LatencySpecError),
    #[error(transparent)]
    Latency(#[from] LatencySpecError),
}

/// A line for the user about how the engine was resolved.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    /// A substitution or comparison worth knowing.
    Note(String),
    /// Something that likely makes the run's timings wrong.
    Warning(String),
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Note(s) => write!(f, "note: {s}"),
            Notice::Warning(s) => write!(f, "warning: {s}"),
        }
    }
}

/// The engine as the rules resolved it.
#[derive(Clone, Debug)]
pub struct ResolvedEngine {
    pub config: EngineConfig,
    /// The latency model chosen: `--latency`, the detected `--profile`, else the default.
    pub latency: LatencySpec,
    /// What the latency model takes from the engine where its spec is silent.
    pub hardware: HardwareDefaults,
    /// The model the engine serves, by name, when named (not a `model_config` path): checked
    /// against the model a measured latency profile was taken with.
    pub model_name: Option<String>,
    /// The served model's shape, checked against the shape of the model a measured latency
    /// profile was taken with.
    pub served_shape: ModelShape,
    /// The `model_config` path the served model was read from, when it was.
    pub model_config_path: Option<String>,
    /// Lines about the resolution (recorded facts that differ from vLLM's rules).
    pub notices: Vec<Notice>,
}

impl EngineArgs {
    /// The model's shape: `model_config`, else `model` (path, Hugging Face cache, built-in
    /// table), else the model an operator profile's `meta.yaml` names when it resolves, else
    /// built-in Llama-3.1-8B. Reads files.
    pub fn model_shape(&self) -> Result<ModelShape, ResolveError> {
        self.model_shape_noted().map(|(shape, _)| shape)
    }

    /// [`Self::model_shape`], with a note when a name was read as a post-trained release of a
    /// known base (`Qwen/Qwen3-30B-A3B-Instruct-2507` → `Qwen/Qwen3-30B-A3B`).
    pub fn model_shape_noted(&self) -> Result<(ModelShape, Vec<Notice>), ResolveError> {
        let (shape, notes) = self.checkpoint_shape_noted()?;
        Ok((self.as_served(shape)?, notes))
    }

    /// The checkpoint's shape served with `--quantization` and the KV cache dtype (the flag,
    /// else the run's recorded one).
    fn as_served(&self, mut shape: ModelShape) -> Result<ModelShape, ResolveError> {
        if let Some(q) = self.quantization {
            shape = shape.with_online_quantization(q);
        }
        let kv = match (self.kv_cache_dtype, &self.run.kv_cache_dtype) {
            (Some(d), _) => Some(d),
            (None, Some(recorded)) => Some(recorded.parse::<KvCacheDtype>()?),
            (None, None) => None,
        };
        Ok(match kv {
            Some(d) => shape.with_kv_cache_dtype(d),
            None => shape,
        })
    }

    fn checkpoint_shape_noted(&self) -> Result<(ModelShape, Vec<Notice>), ResolveError> {
        let (shape, mut notes) = self.checkpoint_shape_named()?;
        if let Some(v) = &shape.vision {
            notes.push(Notice::Note(match v.params {
                Some(p) => format!(
                    "the vision encoder (`{}`, {:.2} B parameters with its projector) is \
                     counted in the weights; vLLM's memory profiling also runs it on a batch \
                     of dummy images, whose activations are not modelled, so the KV cache may \
                     come out a little larger than vLLM's",
                    v.model_type,
                    p as f64 / 1e9
                ),
                None => format!(
                    "the vision encoder (`{}`) is not counted in the weights (its layout is not \
                     known here): the KV cache comes out larger than vLLM's by its size",
                    v.model_type
                ),
            }));
        }
        if let Some(note) = sliding_window_note(&shape) {
            notes.push(Notice::Note(note));
        }
        Ok((shape, notes))
    }

    fn checkpoint_shape_named(&self) -> Result<(ModelShape, Vec<Notice>), ResolveError> {
        let noted = |r: ResolvedShape| (r.shape, r.note.into_iter().map(Notice::Note).collect());
        Ok(match (&self.model_config, &self.model) {
            (Some(p), _) => {
                let shown = || p.display().to_string();
                let text = crate::text_file::read_text(p)
                    .map_err(|e| ResolveError::ReadModelConfig(shown(), e))?;
                let shape = ModelShape::from_hf_config_json(&text)
                    .map_err(|e| ResolveError::ModelConfig(shown(), e))?;
                (shape, Vec::new())
            }
            (None, Some(name)) => noted(ModelShape::resolve_noted(name)?),
            (None, None) => match self.profiled_model() {
                Some((_, r)) => noted(r),
                None => (ModelShape::llama_3_1_8b(), Vec::new()),
            },
        })
    }

    /// The model the operator profile's `meta.yaml` names (the `profile:` spec's directory,
    /// else a `--profile` directory), or a Vidur directory's place in Vidur's layout
    /// (`compute/<gpu>/<org>/<model>`), and its shape, when it resolves.
    fn profiled_model(&self) -> Option<(String, ResolvedShape)> {
        let vidur_dir = match (&self.latency, &self.profile) {
            (Some(LatencySpec::Vidur { dir, .. }), _) => Some(dir),
            (None, Some(p)) if p.join(vidur::MLP_FILE).is_file() => Some(p),
            _ => None,
        };
        if let Some(name) = vidur_dir.and_then(|d| vidur::layout_names(d).1) {
            let shape = ModelShape::resolve_noted(&name).ok()?;
            return Some((name, shape));
        }
        let dir = match (&self.latency, &self.profile) {
            (Some(LatencySpec::Profile { dir, .. }), _) => dir.clone(),
            (None, Some(p)) if p.join("meta.yaml").is_file() => p.clone(),
            _ => return None,
        };
        let name = ProfileLatency::measured_model(&dir).ok()??;
        let shape = ModelShape::resolve_noted(&name).ok()?;
        Some((name, shape))
    }

    /// The model the engine serves by name: `model`, else the one a profile's `meta.yaml`
    /// names when it resolves, else Llama-3.1-8B (`None` with a `model_config`).
    fn served_model_name(&self) -> Option<String> {
        if self.model_config.is_some() {
            return None;
        }
        Some(
            self.model
                .clone()
                .or_else(|| self.profiled_model().map(|(name, _)| name))
                .unwrap_or_else(|| "meta-llama/Llama-3.1-8B".into()),
        )
    }

    /// The GPU (default: the RTX PRO 6000 the built-in profile was measured on).
    pub fn gpu_spec(&self) -> Result<&'static GpuSpec, UnknownGpu> {
        GpuSpec::lookup(self.gpu.as_deref().unwrap_or(DEFAULT_GPU))
    }
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

/// The engine configuration and latency model `args` give for a model of `shape` on `gpu`,
/// by vLLM's rules where an argument is unset. Reads a `--profile` path to detect its format.
pub fn resolve(
    args: &EngineArgs,
    shape: &ModelShape,
    gpu: &'static GpuSpec,
) -> Result<ResolvedEngine, ResolveError> {
    // The shape's note, when a name was read as a post-trained release of its base.
    let mut notices = args
        .model_shape_noted()
        .map(|(_, notes)| notes)
        .unwrap_or_default();
    let config = engine_config(args, shape, gpu, &mut notices)?;
    let latency = latency_spec(args, shape, gpu)?;
    Ok(ResolvedEngine {
        config,
        latency,
        hardware: HardwareDefaults {
            gpu: Some(gpu),
            tensor_parallel_size: args.tensor_parallel_size,
            seed: args.seed,
            tp_link: args.run.tp_link.clone(),
            moe_data_parallel: None,
        },
        model_name: args.served_model_name(),
        served_shape: shape.clone(),
        model_config_path: args.model_config.as_ref().map(|p| p.display().to_string()),
        notices,
    })
}

/// `latency`, else the detected `profile`, else the measured built-in profile where it applies
/// (its model, GPU and TP 1), else the roofline of this model on this GPU.
fn latency_spec(
    args: &EngineArgs,
    shape: &ModelShape,
    gpu: &'static GpuSpec,
) -> Result<LatencySpec, ResolveError> {
    if let Some(spec) = &args.latency {
        return Ok(spec.clone());
    }
    if let Some(p) = &args.profile {
        return latency_spec_for_profile(p)
            .map_err(|e| ResolveError::Profile(p.display().to_string(), e));
    }
    let profiled = ModelShape::llama_3_1_8b();
    let same_model = shape.num_hidden_layers == profiled.num_hidden_layers
        && shape.hidden_size == profiled.hidden_size
        && shape.num_attention_heads == profiled.num_attention_heads
        && shape.kv_heads() == profiled.kv_heads()
        && shape.intermediate_size == profiled.intermediate_size
        && shape.vocab_size == profiled.vocab_size;
    let same_gpu = gpu.name == GpuSpec::lookup(DEFAULT_GPU)?.name;
    let tp1 = args.tensor_parallel_size.unwrap_or(1) == 1;
    Ok(if same_model && same_gpu && tp1 {
        LatencySpec::profile(BUILTIN_PROFILE_DIR)
    } else {
        LatencySpec::roofline()
    })
}

fn engine_config(
    a: &EngineArgs,
    shape: &ModelShape,
    gpu: &'static GpuSpec,
    notices: &mut Vec<Notice>,
) -> Result<EngineConfig, ResolveError> {
    let policy = a.scheduling_policy.unwrap_or_default();
    let gpu_memory_utilization = a.gpu_memory_utilization.unwrap_or(0.9);
    if gpu_memory_utilization.is_nan()
        || gpu_memory_utilization <= 0.0
        || gpu_memory_utilization > 1.0
    {
        return Err(ResolveError::GpuMemoryUtilization(gpu_memory_utilization));
    }
    let block_size = a.block_size.unwrap_or(16);
    if block_size == 0 {
        return Err(ResolveError::ZeroBlockSize);
    }
    let max_model_len = match a.max_model_len {
        Some(n) => n,
        None => shape
            .max_position_embeddings
            .ok_or(ResolveError::NoMaxModelLen)? as usize,
    };
    let chunked = a.enable_chunked_prefill.unwrap_or(true);
    let gpu_memory_gib = a.gpu_memory_gib.unwrap_or(gpu.memory_gib);
    if !(gpu_memory_gib.is_finite() && gpu_memory_gib > 0.0) {
        return Err(ResolveError::GpuMemory(gpu_memory_gib));
    }
    let (mut tokens, mut seqs) = match a.run.batch_context {
        BatchContext::ApiServer => batch_defaults(gpu_memory_gib, gpu.device_name),
        BatchContext::EngineContext => (2048, 128),
    };
    if a.run.doubled_batch_defaults {
        (tokens, seqs) = (2 * tokens, 2 * seqs);
    }
    if let Some(s) = a.max_num_seqs {
        seqs = s;
    }
    match a.max_num_batched_tokens {
        Some(t) => tokens = t,
        None => {
            if !chunked {
                // `max(max_model_len, the default)`: the API server's rule since vLLM 0.12,
                // and the engine context's in every version.
                tokens = tokens.max(max_model_len);
            }
            tokens = tokens.min(seqs.saturating_mul(max_model_len));
        }
    }
    if a.max_num_seqs.is_none() {
        seqs = seqs.min(tokens);
    }
    // vLLM refuses to start so (`SchedulerConfig.verify_max_model_len`).
    if tokens < seqs {
        return Err(ResolveError::BudgetBelowSeqs { tokens, seqs });
    }
    let budget = GpuBudget {
        gpu_memory_bytes: (gpu_memory_gib * (1u64 << 30) as f64) as u64,
        gpu_memory_utilization,
        tensor_parallel_size: a.tensor_parallel_size.unwrap_or(1),
        expert_shards: a.expert_shards.unwrap_or(1),
        block_size: block_size as u64,
        max_num_batched_tokens: tokens as u64,
        max_num_seqs: seqs as u64,
    };
    let auto_fit = a.run.auto_fit_max_model_len && a.max_model_len.is_none();
    let mut fit = |blocks: u32| -> Result<usize, ResolveError> {
        let (len, note) = fit_model_len(auto_fit, max_model_len, blocks, block_size)?;
        notices.extend(note.map(Notice::Note));
        Ok(len)
    };
    // vLLM reads 0 as unset (`if kv_cache_memory_bytes := …` in `gpu_worker.py`).
    let kv_bytes = a.kv_cache_memory_bytes.filter(|b| *b > 0);
    let (num_gpu_blocks, model_len) = match (a.num_gpu_blocks_override, a.run.num_gpu_blocks) {
        (Some(n), _) => (n, fit(n)?),
        (None, Some(n)) => {
            let len = fit(n)?;
            check_recorded_blocks(shape, &budget, n, kv_bytes, &a.run, len, notices)?;
            (n, len)
        }
        (None, None) => {
            let n = match kv_bytes {
                Some(bytes) => blocks_in_kv_bytes(shape, &budget, bytes)?,
                None => num_gpu_blocks(shape, &budget)?,
            };
            let len = fit(n)?;
            check_max_model_len(shape, &budget, n, len as u64)?;
            if let Some(bytes) = kv_bytes {
                notices.push(Notice::Note(format!(
                    "KV blocks: {n} in kv_cache_memory_bytes {bytes} ({:.2} GiB) at {} bytes a \
                     block, as vLLM sizes them when the KV memory is given \
                     (gpu_memory_utilization does not apply)",
                    bytes as f64 / (1u64 << 30) as f64,
                    shape.bytes_per_block(budget.block_size, budget.tensor_parallel_size.max(1))
                )));
            }
            (n, len)
        }
    };
    let enforce_eager = a.enforce_eager.unwrap_or(false);
    // Given capture sizes replace vLLM's rule unless the engine runs eagerly, less those above
    // the token budget (as vLLM drops them); the rule of a version other than the engine's own,
    // or a largest size the run asked for, gives its sizes explicitly.
    let rule = a.run.capture_rule;
    let largest = a.run.max_capture_size;
    let derived = CudaGraphSizes::by_rule(rule, seqs, tokens, largest, enforce_eager);
    let cudagraph_capture_sizes = match &a.cudagraph_capture_sizes {
        Some(given) if !enforce_eager => {
            let above: Vec<usize> = given.iter().copied().filter(|&s| s > tokens).collect();
            let given = CudaGraphSizes::from_sizes(
                given.iter().copied().filter(|&s| s <= tokens).collect(),
            );
            if !above.is_empty() {
                notices.push(Notice::Note(format!(
                    "CUDA-graph capture sizes {above:?} ({}) are above max_num_batched_tokens \
                     {tokens}: dropped, as vLLM drops them",
                    a.run
                        .cudagraph_capture_sizes_source
                        .as_deref()
                        .unwrap_or("given")
                )));
            }
            if given.sizes() != derived.sizes() {
                notices.push(Notice::Note(format!(
                    "CUDA-graph capture sizes: the run recorded {} ({}); vLLM's rule for \
                     max_num_seqs {seqs}, max_num_batched_tokens {tokens} gives {}: using the \
                     recorded ones",
                    describe_sizes(given.sizes()),
                    a.run
                        .cudagraph_capture_sizes_source
                        .as_deref()
                        .unwrap_or("recorded"),
                    describe_sizes(derived.sizes())
                )));
            }
            Some(given.sizes().to_vec())
        }
        None if !enforce_eager && (rule != CaptureRule::default() || largest.is_some()) => {
            Some(derived.sizes().to_vec())
        }
        _ => None,
    };
    let cfg = EngineConfig {
        block_size,
        num_gpu_blocks,
        max_num_seqs: seqs,
        max_num_batched_tokens: tokens,
        max_model_len: model_len,
        enable_prefix_caching: a.enable_prefix_caching.unwrap_or(true),
        enable_chunked_prefill: chunked,
        long_prefill_token_threshold: match a.long_prefill_token_threshold.unwrap_or(0) {
            // `int(max_model_len * 0.04)`.
            0 if a.max_num_partial_prefills.is_some_and(|p| p > 1) => {
                (max_model_len as f64 * 0.04) as usize
            }
            t => t,
        },
        scheduling_policy: policy,
        async_scheduling: a.async_scheduling.unwrap_or(true),
        scheduler_reserve_full_isl: a.scheduler_reserve_full_isl.unwrap_or(true),
        enforce_eager,
        cudagraph_capture_sizes,
        sliding_window: uniform_window(shape),
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The engine's `max_model_len` over `blocks` KV blocks of `block_size` tokens: with `auto_fit`
/// (`max_model_len` -1), vLLM 0.19 reduces the model's `max_model_len` to what the KV cache
/// holds once it is sized (`L` tokens fit when `cdiv(L, block_size)` blocks do); also the note
/// saying so when it reduces it.
fn fit_model_len(
    auto_fit: bool,
    max_model_len: usize,
    blocks: u32,
    block_size: usize,
) -> Result<(usize, Option<String>), ResolveError> {
    if !auto_fit {
        return Ok((max_model_len, None));
    }
    let fits = blocks as usize * block_size;
    if fits == 0 {
        return Err(ResolveError::AutoFitNoMemory);
    }
    let note = (fits < max_model_len).then(|| {
        format!(
            "max_model_len -1: fitted to the KV cache's {fits} tokens ({blocks} blocks of \
             {block_size}), from the model's {max_model_len}, as vLLM 0.19 does"
        )
    });
    Ok((fits.min(max_model_len), note))
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
/// vLLM would not have started. Notes when sizing the GPU would give another count.
/// vLLM's blocks in `bytes` of KV memory per GPU (`kv_cache_memory_bytes`), after checking
/// that the GPU holds them beside the weights (vLLM would fail to allocate them) and that they
/// hold two blocks (vLLM's "no available memory for the cache blocks").
fn blocks_in_kv_bytes(
    shape: &ModelShape,
    budget: &GpuBudget,
    bytes: u64,
) -> Result<u32, ResolveError> {
    const GIB: f64 = (1u64 << 30) as f64;
    let tp = budget.tensor_parallel_size.max(1);
    let weights = shape.weight_bytes_per_gpu(tp, budget.expert_shards);
    let room = budget.gpu_memory_bytes as f64 - weights;
    // 2 % slack for the weights' estimate.
    if bytes as f64 > room.max(0.0) * 1.02 {
        return Err(ResolveError::Contradiction(format!(
            "kv_cache_memory_bytes {bytes} ({:.2} GiB) does not fit a {:.1} GiB GPU beside the \
             model's weights ({:.2} GiB per GPU)",
            bytes as f64 / GIB,
            budget.gpu_memory_bytes as f64 / GIB,
            weights / GIB
        )));
    }
    let n = blocks_for_available(shape, budget.block_size, tp, bytes);
    if n < 2 {
        return Err(ResolveError::KvMemoryTooSmall {
            bytes,
            per_block: shape.bytes_per_block(budget.block_size, tp),
        });
    }
    Ok(n.min(u64::from(u32::MAX)) as u32)
}

fn check_recorded_blocks(
    shape: &ModelShape,
    budget: &GpuBudget,
    n: u32,
    kv_bytes: Option<u64>,
    run: &RunFacts,
    max_model_len: usize,
    notices: &mut Vec<Notice>,
) -> Result<(), ResolveError> {
    const GIB: f64 = (1u64 << 30) as f64;
    // The shape carries the served KV cache dtype (the run's recorded one included).
    let tp = budget.tensor_parallel_size.max(1);
    let per_block = shape.bytes_per_block(budget.block_size, tp) as f64;
    let kv = f64::from(n) * per_block;
    let weights = shape.weight_bytes_per_gpu(tp, budget.expert_shards);
    // With the KV memory given, vLLM does not apply the utilization.
    let utilization = if kv_bytes.is_some() {
        1.0
    } else {
        budget.gpu_memory_utilization
    };
    let room = budget.gpu_memory_bytes as f64 * utilization - weights;
    let source = run
        .num_gpu_blocks_source
        .as_deref()
        .unwrap_or("the recorded block count");
    // 2 % slack for the weights' estimate.
    if kv > room.max(0.0) * 1.02 + per_block {
        return Err(ResolveError::Contradiction(format!(
            "{source} = {n} KV blocks ({:.2} GiB per GPU at {} tokens per block), but {:.1} GiB \
             × {} utilization less the model's weights ({:.2} GiB per GPU) leaves at most \
             {:.2} GiB: the GPU, its memory, the model or the block count is recorded wrong \
             (override with --gpu, --gpu-memory-gib or --num-gpu-blocks-override)",
            kv / GIB,
            budget.block_size,
            budget.gpu_memory_bytes as f64 / GIB,
            utilization,
            weights / GIB,
            room.max(0.0) / GIB
        )));
    }
    if let Err(e) = check_max_model_len(shape, budget, n, max_model_len as u64) {
        return Err(ResolveError::Contradiction(format!(
            "{source} = {n} KV blocks, but vLLM would not have started with max_model_len \
             {max_model_len}: {e}"
        )));
    }
    if let Some(bytes) = kv_bytes {
        let derived = blocks_in_kv_bytes(shape, budget, bytes)?;
        if derived != n {
            notices.push(Notice::Note(format!(
                "KV blocks: the run recorded {n} ({source}); its kv_cache_memory_bytes {bytes} \
                 holds {derived} blocks for this model: using {n}"
            )));
        }
        return Ok(());
    }
    match num_gpu_blocks(shape, budget) {
        Ok(derived) if derived != n => notices.push(Notice::Note(format!(
            "KV blocks: the run recorded {n} ({source}); sizing {:.1} GiB × {} for this model \
             would give {derived}: using {n}",
            budget.gpu_memory_bytes as f64 / GIB,
            budget.gpu_memory_utilization
        ))),
        Ok(_) => {}
        Err(e) => notices.push(Notice::Note(format!(
            "KV blocks: the run recorded {n} ({source}); sizing the GPU would fail ({e}): using \
             {n}"
        ))),
    }
    Ok(())
}

impl ResolvedEngine {
    /// The latency model, built for `shape` on the resolved hardware (loads its data), with
    /// the lines to show about it: a profile measured on another GPU or model, a recorded TP
    /// link this model does not use (only the profile and roofline models price it).
    pub fn build_latency(
        &self,
        shape: &ModelShape,
    ) -> Result<(Box<dyn LatencyModel>, Vec<Notice>), ResolveError> {
        let latency = self.latency.build(shape, &self.hardware)?;
        let mut notices = Vec::new();
        if let Some(w) = self.measured_elsewhere(latency.as_ref()) {
            notices.push(Notice::Warning(w));
        }
        if let Some(link) = &self.hardware.tp_link {
            let tp = self.hardware.tensor_parallel_size.unwrap_or(1);
            if tp > 1
                && !matches!(
                    self.latency,
                    LatencySpec::Profile { .. } | LatencySpec::Roofline { .. }
                )
            {
                notices.push(Notice::Note(format!(
                    "{}: the TP link is priced by the profile and roofline latency models only; \
                     this latency model uses its own link figures",
                    link.source
                )));
            }
        }
        Ok((latency, notices))
    }

    /// A warning when the latency model was measured on another GPU or model than the
    /// engine emulates, naming both.
    fn measured_elsewhere(&self, latency: &dyn LatencyModel) -> Option<String> {
        let (gpu, model) = latency.measured_on();
        let clean = |s: &str| s.trim().trim_matches(|c| c == '\'' || c == '"').to_string();
        let mut diffs = Vec::new();
        if let (Some(g), Some(engine_gpu)) = (gpu.map(clean), self.hardware.gpu) {
            if GpuSpec::lookup(&g).map_or(true, |p| p.name != engine_gpu.name) {
                diffs.push(format!(
                    "on the {g} but the engine emulates the {}",
                    engine_gpu.device_name
                ));
            }
        }
        if let Some(m) = model.map(clean) {
            // The dimensions in which the profile's model differs from the served one, where
            // its shape is known.
            let dims = || {
                ModelShape::resolve_noted(&m)
                    .map(|p| p.shape.architecture_differences(&self.served_shape))
            };
            match (&self.model_name, &self.model_config_path) {
                // A post-trained release, or the same weights under an older name, shares the
                // base's architecture and timings.
                (Some(engine_model), _) => {
                    if same_weights_key(&m) != same_weights_key(engine_model) {
                        let listed = dims()
                            .ok()
                            .filter(|d| !d.is_empty())
                            .map_or(String::new(), |d| format!(" ({})", d.join(", ")));
                        diffs.push(format!(
                            "with {m} but the engine serves {engine_model}{listed}"
                        ));
                    }
                }
                // A model given by its config.json has no name to compare: its shape is.
                (None, Some(path)) => match dims() {
                    Ok(d) if d.is_empty() => {}
                    Ok(d) => diffs.push(format!(
                        "with {m} but the engine serves the model of {path} ({})",
                        d.join(", ")
                    )),
                    Err(_) => diffs.push(format!(
                        "with {m}, whose shape is not known here, so it cannot be compared \
                         with the model of {path}"
                    )),
                },
                (None, None) => {}
            }
        }
        (!diffs.is_empty()).then(|| {
            format!(
                "the latency profile was measured {}: its timings are not of this engine",
                diffs.join(", and ")
            )
        })
    }
}

/// The window of a model every layer of which attends within the same window: vLLM's one
/// KV cache group is then a `SlidingWindowSpec`, which the emulated KV cache manages as its
/// `SlidingWindowManager` does. `None` for full attention and for hybrid models.
fn uniform_window(shape: &ModelShape) -> Option<usize> {
    match shape.layers_per_window()[..] {
        [(Some(w), _)] => Some(w as usize),
        _ => None,
    }
}

/// How the emulated KV cache treats a model with windowed layers (sliding windows, Llama 4's
/// chunks), said once: the sizing and the roofline use the windows; the block manager frees
/// blocks behind a window only when every layer shares it ([`uniform_window`]).
fn sliding_window_note(shape: &ModelShape) -> Option<String> {
    let sliding = shape.num_sliding_layers();
    if sliding == 0 {
        return None;
    }
    let mut windows: Vec<u64> = shape
        .layers_per_window()
        .into_iter()
        .filter_map(|(w, _)| w)
        .collect();
    windows.sort_unstable();
    let windows = windows
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("/");
    let layers = shape.layers.len();
    Some(if uniform_window(shape).is_some() {
        format!(
            "every layer attends within a window of {windows} tokens, as vLLM builds this \
             model: the KV sizing and the roofline use the window, and the emulated KV cache \
             frees a request's blocks that fall behind it, as vLLM's sliding-window manager does"
        )
    } else if sliding as usize == layers {
        format!(
            "every layer attends within a window ({windows} tokens, by layer): the KV sizing \
             and the roofline use the windows, but the emulated KV cache keeps every block of \
             a request, where vLLM's windowed KV-cache groups free the blocks that fall behind \
             their window, so a request longer than a window holds more blocks than on vLLM"
        )
    } else {
        format!(
            "{sliding} of {layers} layers attend within a window of {windows} tokens: the KV \
             sizing and the roofline use the window, but the emulated KV cache allocates the \
             full-attention layers' blocks only, so the windowed layers' own blocks (vLLM's \
             windowed KV-cache groups, at most a window and a batch of tokens per request) are \
             not taken from the pool, and it holds a little more than vLLM's"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(name: &str) -> &'static GpuSpec {
        GpuSpec::lookup(name).unwrap()
    }

    #[test]
    fn batch_defaults_follow_the_gpu_memory_and_name() {
        let shape = ModelShape::llama_3_1_8b();
        let args = EngineArgs::default();
        let big = resolve(&args, &shape, gpu("h100")).unwrap().config;
        assert_eq!((big.max_num_batched_tokens, big.max_num_seqs), (8192, 1024));
        // An A100 gets the small defaults whatever its memory.
        let a100 = resolve(&args, &shape, gpu("a100-80gb")).unwrap().config;
        assert_eq!(
            (a100.max_num_batched_tokens, a100.max_num_seqs),
            (2048, 256)
        );
        let small = EngineArgs {
            gpu_memory_gib: Some(48.0),
            ..Default::default()
        };
        let c = resolve(&small, &shape, gpu("h100")).unwrap().config;
        assert_eq!((c.max_num_batched_tokens, c.max_num_seqs), (2048, 256));
    }

    #[test]
    fn kv_cache_dtype_and_quantization_size_the_blocks() {
        let blocks = |args: &EngineArgs| {
            let shape = args.model_shape().unwrap();
            resolve(args, &shape, gpu("h100"))
                .unwrap()
                .config
                .num_gpu_blocks
        };
        let base = EngineArgs {
            model: Some("meta-llama/Llama-2-7b-hf".into()),
            max_model_len: Some(4096),
            ..Default::default()
        };
        let auto = blocks(&base);
        // The flag, or the dtype the run recorded: one byte per element, twice the blocks.
        let flag = EngineArgs {
            kv_cache_dtype: Some(KvCacheDtype::Fp8),
            ..base.clone()
        };
        let mut recorded = base.clone();
        recorded.run.kv_cache_dtype = Some("fp8_e5m2".into());
        for args in [&flag, &recorded] {
            let n = blocks(args);
            assert!(n.abs_diff(2 * auto) <= 1, "{auto} → {n}");
        }
        // FP8 weights free about half of the 13.5 GB of fp16 weights: every freed byte goes to
        // KV blocks (the activation estimate does not depend on the weights' format).
        let fp8 = EngineArgs {
            quantization: Some(OnlineQuantization::Fp8),
            ..base.clone()
        };
        let (w_auto, w_fp8) = (
            base.model_shape().unwrap().weight_bytes(),
            fp8.model_shape().unwrap().weight_bytes(),
        );
        let freed = w_auto - w_fp8;
        let per_block = base.model_shape().unwrap().bytes_per_block(16, 1) as f64;
        let more = f64::from(blocks(&fp8) - auto);
        assert!(
            (more - freed / per_block).abs() <= 1.0,
            "{more} vs {}",
            freed / per_block
        );
        let mut bad = base.clone();
        bad.run.kv_cache_dtype = Some("int3".into());
        assert!(bad.model_shape().unwrap_err().to_string().contains("int3"));
    }

    #[test]
    fn batched_tokens_cover_a_whole_prompt_without_chunked_prefill() {
        let shape = ModelShape::llama_3_1_8b();
        let args = EngineArgs {
            enable_chunked_prefill: Some(false),
            max_model_len: Some(20_000),
            ..Default::default()
        };
        let c = resolve(&args, &shape, gpu("h100")).unwrap().config;
        assert_eq!(c.max_num_batched_tokens, 20_000);
        // A given max_num_seqs caps the derived tokens at seqs × max_model_len.
        let args = EngineArgs {
            max_num_seqs: Some(2),
            max_model_len: Some(1000),
            ..Default::default()
        };
        let c = resolve(&args, &shape, gpu("h100")).unwrap().config;
        assert_eq!((c.max_num_batched_tokens, c.max_num_seqs), (2000, 2));
    }

    #[test]
    fn the_default_latency_is_the_builtin_profile_only_where_it_was_measured() {
        let llama = ModelShape::llama_3_1_8b();
        let args = EngineArgs::default();
        let on_pro = resolve(&args, &llama, gpu(DEFAULT_GPU)).unwrap().latency;
        assert_eq!(on_pro, LatencySpec::profile(BUILTIN_PROFILE_DIR));
        let on_h100 = resolve(&args, &llama, gpu("h100")).unwrap().latency;
        assert_eq!(on_h100, LatencySpec::roofline());
        let tp2 = EngineArgs {
            tensor_parallel_size: Some(2),
            ..Default::default()
        };
        let r = resolve(&tp2, &llama, gpu(DEFAULT_GPU)).unwrap();
        assert_eq!(r.latency, LatencySpec::roofline());
        assert_eq!(r.hardware.tensor_parallel_size, Some(2));
        let given: LatencySpec = "linear:base_us=7".parse().unwrap();
        let chosen = EngineArgs {
            latency: Some(given.clone()),
            ..Default::default()
        };
        assert_eq!(
            resolve(&chosen, &llama, gpu("h100")).unwrap().latency,
            given
        );
    }

    #[test]
    fn recorded_blocks_are_checked_and_compared() {
        let shape = ModelShape::llama_3_1_8b();
        let derived = resolve(&EngineArgs::default(), &shape, gpu("h100"))
            .unwrap()
            .config
            .num_gpu_blocks;
        let recorded = |n: u32| EngineArgs {
            run: RunFacts {
                num_gpu_blocks: Some(n),
                num_gpu_blocks_source: Some("meta.json".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let r = resolve(&recorded(derived / 2), &shape, gpu("h100")).unwrap();
        assert_eq!(r.config.num_gpu_blocks, derived / 2);
        assert!(
            matches!(&r.notices[..], [Notice::Note(n)] if n.contains("meta.json")),
            "{:?}",
            r.notices
        );
        let same = resolve(&recorded(derived), &shape, gpu("h100")).unwrap();
        assert!(same.notices.is_empty(), "{:?}", same.notices);
        match resolve(&recorded(derived * 3), &shape, gpu("h100")) {
            Err(ResolveError::Contradiction(m)) => assert!(m.contains("meta.json"), "{m}"),
            other => panic!("{other:?}"),
        }
        // An override is taken as given.
        let over = EngineArgs {
            num_gpu_blocks_override: Some(derived * 3),
            ..Default::default()
        };
        assert_eq!(
            resolve(&over, &shape, gpu("h100"))
                .unwrap()
                .config
                .num_gpu_blocks,
            derived * 3
        );
    }

    #[test]
    fn partial_prefills_derive_an_unset_long_prefill_threshold() {
        let shape = ModelShape::llama_3_1_8b();
        let threshold = |partial: Option<usize>, set: Option<usize>| {
            let a = EngineArgs {
                max_model_len: Some(32768),
                max_num_partial_prefills: partial,
                long_prefill_token_threshold: set,
                ..Default::default()
            };
            resolve(&a, &shape, gpu("h100"))
                .unwrap()
                .config
                .long_prefill_token_threshold
        };
        // int(32768 × 0.04) = 1310, as vLLM's SchedulerConfig sets it.
        assert_eq!(threshold(Some(4), None), 1310);
        assert_eq!(threshold(Some(4), Some(0)), 1310);
        assert_eq!(threshold(Some(4), Some(500)), 500);
        assert_eq!(threshold(Some(1), None), 0);
        assert_eq!(threshold(None, None), 0);
    }

    #[test]
    fn kv_cache_memory_bytes_sizes_the_blocks_whatever_the_utilization() {
        let shape = ModelShape::llama_3_1_8b();
        // Llama-3.1-8B: 16 tokens × 32 layers × 2 (K, V) × 8 heads × 128 × 2 B = 2 MiB a block.
        let per_block = shape.bytes_per_block(16, 1);
        assert_eq!(per_block, 2 << 20);
        let with = |util: f64| {
            let a = EngineArgs {
                kv_cache_memory_bytes: Some(4 << 30),
                gpu_memory_utilization: Some(util),
                max_model_len: Some(8192),
                ..Default::default()
            };
            let r = resolve(&a, &shape, gpu("h100")).unwrap();
            (r.config.num_gpu_blocks, r.notices)
        };
        let (blocks, notices) = with(0.9);
        assert_eq!(blocks, 2048);
        assert_eq!(with(0.5).0, 2048);
        assert!(
            notices
                .iter()
                .any(|n| n.to_string().contains("kv_cache_memory_bytes")),
            "{notices:?}"
        );
        // 0 is unset, as vLLM reads it: sized from the GPU's memory.
        let unset = EngineArgs {
            kv_cache_memory_bytes: Some(0),
            max_model_len: Some(8192),
            ..Default::default()
        };
        let sized = EngineArgs {
            max_model_len: Some(8192),
            ..Default::default()
        };
        assert_eq!(
            resolve(&unset, &shape, gpu("h100"))
                .unwrap()
                .config
                .num_gpu_blocks,
            resolve(&sized, &shape, gpu("h100"))
                .unwrap()
                .config
                .num_gpu_blocks
        );
        // More than the GPU holds beside the weights: vLLM could not allocate it.
        let over = EngineArgs {
            kv_cache_memory_bytes: Some(80 << 30),
            ..Default::default()
        };
        assert!(matches!(
            resolve(&over, &shape, gpu("h100")),
            Err(ResolveError::Contradiction(_))
        ));
        // Too little for two blocks: vLLM refuses to start.
        let a = EngineArgs {
            kv_cache_memory_bytes: Some(per_block),
            ..Default::default()
        };
        assert!(matches!(
            resolve(&a, &shape, gpu("h100")),
            Err(ResolveError::KvMemoryTooSmall { .. })
        ));
    }

    #[test]
    fn bad_values_are_typed_errors() {
        let shape = ModelShape::llama_3_1_8b();
        let util = EngineArgs {
            gpu_memory_utilization: Some(1.5),
            ..Default::default()
        };
        assert!(matches!(
            resolve(&util, &shape, gpu("h100")),
            Err(ResolveError::GpuMemoryUtilization(_))
        ));
        let zero_block = EngineArgs {
            block_size: Some(0),
            ..Default::default()
        };
        assert!(matches!(
            resolve(&zero_block, &shape, gpu("h100")),
            Err(ResolveError::ZeroBlockSize)
        ));
        let mem = EngineArgs {
            gpu_memory_gib: Some(0.0),
            ..Default::default()
        };
        assert!(matches!(
            resolve(&mem, &shape, gpu("h100")),
            Err(ResolveError::GpuMemory(_))
        ));
        let blocks = EngineArgs {
            num_gpu_blocks_override: Some(1),
            ..Default::default()
        };
        assert!(matches!(
            resolve(&blocks, &shape, gpu("h100")),
            Err(ResolveError::Config(_))
        ));
    }

    #[test]
    fn the_engine_manages_a_window_only_when_every_layer_shares_it() {
        let window = |name: &str| {
            let shape = ModelShape::builtin(name).unwrap();
            resolve(&EngineArgs::default(), &shape, gpu("h100"))
                .unwrap()
                .config
                .sliding_window
        };
        // Every layer within 4096 tokens: vLLM's one KV group is a SlidingWindowSpec.
        assert_eq!(window("mistralai/Mistral-7B-v0.1"), Some(4096));
        // Full attention, and hybrids whose full-attention group the engine keeps.
        assert_eq!(window("mistralai/Mistral-7B-v0.3"), None);
        assert_eq!(window("openai/gpt-oss-20b"), None);
        assert_eq!(window("google/gemma-3-1b-it"), None);
    }
}
