//! `llm-emu simulate`: flags named as `vllm serve` names them.

use anyhow::{bail, Context, Result};
use clap::{ArgAction, Args};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use llm_emu_core::latency::{parse_latency_spec, LatencyModel};
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::sizing::{num_gpu_blocks, GpuBudget, ModelShape};
use llm_emu_core::{Engine, EngineConfig, SchedulingPolicy};
use llm_emu_sim::report::{print_table, summary_json, write_atomic, AtomicFile};
use llm_emu_sim::synthetic::SyntheticWorkload;
use llm_emu_sim::{Sinks, WorkloadItem, WorkloadReader};
use std::fs::File;
use std::io::{BufReader, IsTerminal};
use std::path::PathBuf;

/// The default step latency until measured profiles are wired in: a linear function whose terms
/// roughly follow the operator-profile composition for Llama-3.1-8B on an RTX PRO 6000
/// (`../shared/docs/operator-profiles.md`: ~11.3 ms for one decode, ~25 ms for 128 decodes at
/// 1000 tokens of context, ~83 ms for a 2048-token prefill).
pub const DEFAULT_LATENCY: &str = "linear:base_us=11000,per_token_us=35,per_ctx_us=0.05";

#[derive(Args)]
pub struct SimulateArgs {
    /// Workload JSONL: LLMServingSim format (`arrival_time_ns`, `input_tok_ids`, `output_toks`)
    /// or plain (`arrival_s`, `prompt_len` | `prompt_token_ids`, `output_len`). Without it, a
    /// built-in ShareGPT-like synthetic workload (`--synthetic`, `--request-rate`).
    #[arg(long)]
    workload: Option<PathBuf>,
    /// Number of synthetic requests when no --workload is given.
    #[arg(long, default_value_t = 1000, conflicts_with = "workload")]
    synthetic: usize,
    /// Arrival rate of the synthetic workload, requests/s (Poisson); `inf` sends all at once.
    #[arg(long, default_value = "10")]
    request_rate: f64,
    /// Step latency model, `linear:base_us=B,per_token_us=P[,per_req_us=R,per_ctx_us=C]` (µs).
    #[arg(long, default_value = DEFAULT_LATENCY)]
    latency: String,
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
    /// Tensor-parallel ranks (divides weights and KV heads per rank).
    #[arg(long, default_value_t = 1)]
    tensor_parallel_size: u64,
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
    /// Seed of the synthetic workload and of synthetic prompt tokens.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the summary (keys as `vllm bench serve`'s result JSON) to this file.
    #[arg(long)]
    output_json: Option<PathBuf>,
    /// Write one JSON line per request to this file.
    #[arg(long)]
    requests_out: Option<PathBuf>,
    /// Write one JSON line per engine step to this file.
    #[arg(long)]
    steps_out: Option<PathBuf>,
    /// No progress bar and no table.
    #[arg(long)]
    quiet: bool,
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

fn engine_config(a: &SimulateArgs, shape: &ModelShape) -> Result<EngineConfig> {
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
    let max_model_len = match a.max_model_len {
        Some(n) => n,
        None => shape
            .max_position_embeddings
            .context("the model config has no max_position_embeddings; pass --max-model-len")?
            as usize,
    };
    let chunked = !a.no_enable_chunked_prefill;
    let (mut tokens, mut seqs) = batch_defaults(a.gpu_memory_gib);
    if let Some(s) = a.max_num_seqs {
        seqs = s;
    }
    match a.max_num_batched_tokens {
        Some(t) => tokens = t,
        None => {
            if !chunked {
                tokens = tokens.max(max_model_len);
            }
            tokens = tokens.min(seqs.saturating_mul(max_model_len));
        }
    }
    if a.max_num_seqs.is_none() {
        seqs = seqs.min(tokens);
    }
    let num_gpu_blocks = match a.num_gpu_blocks_override {
        Some(n) => n,
        None => num_gpu_blocks(
            shape,
            &GpuBudget {
                gpu_memory_bytes: (a.gpu_memory_gib * (1u64 << 30) as f64) as u64,
                gpu_memory_utilization: a.gpu_memory_utilization,
                tensor_parallel_size: a.tensor_parallel_size,
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

pub fn run(a: SimulateArgs) -> Result<()> {
    let shape = match &a.model_config {
        Some(p) => ModelShape::from_hf_config_json(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("in {}", p.display()))?,
        None => ModelShape::llama_3_1_8b(),
    };
    let cfg = engine_config(&a, &shape)?;
    let latency: Box<dyn LatencyModel> = parse_latency_spec(&a.latency)?;
    let latency_desc = latency.describe();
    let mut engine = Engine::new(cfg.clone(), latency, Box::new(HashSampler::default()))?;

    let (workload, total): (Box<dyn Iterator<Item = _>>, Option<u64>) = match &a.workload {
        Some(p) => {
            let f = File::open(p).with_context(|| format!("opening workload {}", p.display()))?;
            let r = WorkloadReader::new(
                p.display().to_string(),
                BufReader::with_capacity(1 << 20, f),
                a.seed,
            );
            (Box::new(r), None)
        }
        None => {
            if a.request_rate.is_nan() || a.request_rate <= 0.0 {
                bail!(
                    "--request-rate must be positive or inf, got {}",
                    a.request_rate
                );
            }
            let s = SyntheticWorkload::new(a.synthetic, a.request_rate, a.seed)
                .map(Ok::<WorkloadItem, _>);
            (Box::new(s), Some(a.synthetic as u64))
        }
    };

    let bar = if a.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden())
    } else {
        let b = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} {pos}/{len} requests done [{elapsed_precise}] {per_sec}",
            )
            .expect("valid template"),
        );
        b
    };
    let mut sinks = Sinks {
        requests: a
            .requests_out
            .as_deref()
            .map(AtomicFile::create)
            .transpose()
            .context("creating --requests-out")?,
        steps: a
            .steps_out
            .as_deref()
            .map(AtomicFile::create)
            .transpose()
            .context("creating --steps-out")?,
    };
    let mut progress = |done: usize| bar.set_position(done as u64);
    let mut result = llm_emu_sim::run(&mut engine, workload, &mut sinks, &mut progress)?;
    bar.finish_and_clear();
    sinks
        .commit()
        .context("writing per-request/per-step files")?;

    if result.failed > 0 {
        eprintln!("warning: {} request(s) failed; first ones:", result.failed);
        for f in &result.failure_samples {
            eprintln!("  {f}");
        }
    }
    let summary = summary_json(&mut result, engine.scheduler(), &cfg, &latency_desc);
    if let Some(p) = &a.output_json {
        let text = serde_json::to_vec_pretty(&summary)?;
        write_atomic(p, &text).with_context(|| format!("writing {}", p.display()))?;
    }
    if !a.quiet {
        let mut out = std::io::stdout().lock();
        print_table(&summary, &mut out)?;
    }
    Ok(())
}
