//! Runs one offline replay of a Mooncake-format trace through NVIDIA Dynamo's mocker
//! (`dynamo-mocker` 1.6.1, vLLM backend, one worker) and prints its report as one JSON line.
//!
//! Usage: `mocker-replay TRACE.jsonl STEP_MS [MAX_NUM_SEQS MAX_NUM_BATCHED_TOKENS NUM_GPU_BLOCKS]`
//!
//! The step model is the mocker's `fixed` timing model with `prefill_ms = 0` and
//! `decode_ms = STEP_MS`: the mocker prices a pass as prefill time (if the pass holds any
//! prefill) plus decode time (if it holds any decode), so these settings make every pass that
//! decodes cost exactly STEP_MS, the way `llm-emu --latency linear:base_us=…` prices every step.
//! Only a pass with prefill and no decode at all differs (0 here): it occurs when the engine
//! was idle before, i.e. at most once per idle period.

use anyhow::{Context, Result, bail};
use dynamo_mocker::config::MockerConfig;
use std::path::PathBuf;

/// Tokens per hash id in the trace; the trace generator writes 16, the engine's block size.
const TRACE_BLOCK_SIZE: usize = 16;

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match args.get(i) {
        Some(s) => s.parse().with_context(|| format!("argument {i}: {s:?}")),
        None => Ok(default),
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        bail!(
            "usage: mocker-replay TRACE.jsonl STEP_MS [MAX_NUM_SEQS MAX_NUM_BATCHED_TOKENS NUM_GPU_BLOCKS]"
        );
    }
    let trace = PathBuf::from(&args[1]);
    let step_ms: f64 = arg(&args, 2, 10.0)?;
    let max_num_seqs: usize = arg(&args, 3, 128)?;
    let max_num_batched_tokens: usize = arg(&args, 4, 2048)?;
    let num_gpu_blocks: usize = arg(&args, 5, 35_000)?;

    let config = MockerConfig::from_value(serde_json::json!({
        "engine": {
            "backend": "vllm",
            "block_size": TRACE_BLOCK_SIZE,
            "num_gpu_blocks": num_gpu_blocks,
            "max_num_seqs": max_num_seqs,
            "max_num_batched_tokens": max_num_batched_tokens,
            "enable_prefix_caching": true,
            "enable_chunked_prefill": true,
            "timing_model": {"type": "fixed", "prefill_ms": 0.0, "decode_ms": step_ms},
        }
    }))?;
    let report =
        dynamo_mocker::replay::simulate_trace_file(config, &trace, TRACE_BLOCK_SIZE, 1, 1.0)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
