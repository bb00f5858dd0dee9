//! `llm-emu validate`: replays a real vLLM run's workload and prints emulated vs. real latencies.

use crate::engine_args::{EngineArgs, EngineDefaults};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use llm_emu_sim::report::write_atomic;
use llm_emu_sim::validate::{
    comparison_json, comparison_table, pair_requests, LatencySet, RealRun,
};
use llm_emu_sim::{Sinks, WorkloadReader};
use std::path::PathBuf;

#[derive(Args)]
pub struct ValidateArgs {
    /// Directory of the real run: `meta.json` (engine arguments) and `requests.jsonl`
    /// (engine-side timestamps per request), as in `../shared/data/real-runs/<case>/vllm/`.
    #[arg(long)]
    real: PathBuf,
    /// The workload the real run served (JSONL, same formats as `simulate --workload`).
    #[arg(long)]
    workload: PathBuf,
    /// Write the comparison as JSON (`{ttft,tpot,e2el}_{mean,median,p90,p95,p99}_{real,sim,err_pct}`,
    /// `output_throughput_{real,sim,err_pct}`).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write one JSON line per request with its real and emulated TTFT, TPOT and E2E latency
    /// (ms), paired in arrival order (input of `tools/fidelity/plot.py`).
    #[arg(long)]
    requests: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(mut a: ValidateArgs) -> Result<()> {
    let real = RealRun::load(&a.real)?;
    a.engine
        .default_tensor_parallel_size(real.engine.tensor_parallel_size);
    a.engine
        .default_model(real.engine.model.as_deref().or(real.model.as_deref()));
    if !real.ignored_meta_keys.is_empty() {
        eprintln!(
            "note: meta.json keys not modelled (ignored): {}",
            real.ignored_meta_keys.join(", ")
        );
    }
    let rec = &real.engine;
    let defaults = EngineDefaults {
        max_num_seqs: rec.max_num_seqs,
        max_num_batched_tokens: rec.max_num_batched_tokens,
        max_model_len: rec.max_model_len,
        tensor_parallel_size: rec.tensor_parallel_size,
        num_gpu_blocks: rec.num_gpu_blocks,
        block_size: rec.block_size,
        gpu_memory_utilization: rec.gpu_memory_utilization,
        enable_prefix_caching: rec.enable_prefix_caching,
        enable_chunked_prefill: rec.enable_chunked_prefill,
        long_prefill_token_threshold: rec.long_prefill_token_threshold,
        scheduling_policy: rec.scheduling_policy.clone(),
        async_scheduling: rec.async_scheduling,
        enforce_eager: rec.enforce_eager,
    };
    let shape = a.engine.model_shape()?;
    let cfg = a.engine.engine_config(&shape, &defaults)?;
    let (mut engine, latency_desc) = a.engine.build_engine(&cfg, &shape)?;
    let reader = WorkloadReader::open(&a.workload, a.engine.seed)
        .with_context(|| format!("opening workload {}", a.workload.display()))?
        .with_max_model_len(cfg.max_model_len);
    let mut sinks = Sinks {
        records: Some(Vec::new()),
        ..Default::default()
    };
    let result = llm_emu_sim::run(&mut engine, reader, &mut sinks, &mut |_| {})
        .context("reading the workload")?;
    let records = sinks.records.take().unwrap_or_default();
    crate::simulate::report_failures(&result);
    if result.completed == 0 {
        bail!(
            "nothing ran: no emulated request completed ({} failed, {} of them unusable workload \
             lines)",
            result.failed,
            result.skipped_lines
        );
    }
    for w in engine.latency_model().warnings() {
        eprintln!("warning: latency model: {w}");
    }
    let pairs = pair_requests(&real.requests, &records).map_err(|e| {
        anyhow!(
            "{e} ({}): they do not describe the same run",
            a.real.display()
        )
    })?;
    let m = comparison_json(
        &LatencySet::from_real(&real.requests),
        &LatencySet::from_sim(&records),
    );
    println!(
        "real: vLLM {} ({} requests); emulated: {latency_desc}; max_num_seqs {}, max_num_batched_tokens {}, {} KV blocks",
        real.vllm_version.as_deref().unwrap_or("?"),
        real.requests.len(),
        cfg.max_num_seqs,
        cfg.max_num_batched_tokens,
        cfg.num_gpu_blocks
    );
    print!("{}", comparison_table(&m));
    if let Some(p) = &a.json {
        write_atomic(p, &serde_json::to_vec_pretty(&m)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.requests {
        let mut buf = Vec::new();
        for pair in &pairs {
            serde_json::to_writer(&mut buf, pair)?;
            buf.push(b'\n');
        }
        write_atomic(p, &buf).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
