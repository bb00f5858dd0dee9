//! `llm-emu validate`: replays a real vLLM run's workload and prints emulated vs. real latencies.

use crate::engine_args::{EngineFlags, FleetFlags};
use crate::simulate::{prepare_fleet, Fleet};
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
    /// Directory of the real run: `meta.json` (engine arguments, KV cache, hardware, vLLM's
    /// resolved config) and `requests.jsonl` (engine-side timestamps per request), as in
    /// `../shared/data/real-runs/<case>/vllm/` (or the run folder holding `vllm/`); the cluster
    /// config in the folder above (`config.json`) is read too. See docs/fidelity.md, "Replaying
    /// a run as recorded".
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
    engine: EngineFlags,
    #[command(flatten)]
    fleet: FleetFlags,
}

pub fn run(a: ValidateArgs) -> Result<()> {
    let real = RealRun::load(&a.real)?;
    let mut fleet_flags = a.fleet;
    recorded_fleet(&mut fleet_flags, &real.record);
    // Every fact the run recorded becomes a default; flags given still win.
    let (plan, all) = prepare_fleet(&a.engine, &fleet_flags, Some(&real.record))?;
    let mut cfg = all[0].config().clone();
    cfg.max_model_len = all
        .iter()
        .map(|p| p.config().max_model_len)
        .max()
        .unwrap_or(cfg.max_model_len);
    let prepared = &all[0];
    let (mut engine, latency_desc) = Fleet::build(&all, &plan, Some(&real.record))?;
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
    for w in engine.engines()[0].latency_model().warnings() {
        eprintln!("warning: latency model: {w}");
    }
    let pairs = pair_requests(&real.requests, &records).map_err(|e| {
        anyhow!(
            "{e} ({}): they do not describe the same run",
            a.real.display()
        )
    })?;
    let mut m = comparison_json(
        &LatencySet::from_real(&real.requests),
        &LatencySet::from_sim(&records),
    );
    // The emulated engine as configured, so a replay can be checked against the record.
    m.insert("engine".into(), prepared.engine_json(&latency_desc)?.into());
    println!(
        "real: vLLM {} ({} requests); emulated: {latency_desc}; max_num_seqs {}, max_num_batched_tokens {}, {} KV blocks",
        real.record.facts.vllm_version.as_deref().unwrap_or("?"),
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

/// The fleet a run recorded, where no fleet flag is given: its cluster config when it lists
/// more than one instance, else `data_parallel_size` (and `enable_expert_parallel`) from
/// `meta.json`.
fn recorded_fleet(f: &mut FleetFlags, rec: &llm_emu_sim::run_record::RunRecord) {
    let flags_given = f.cluster.is_some()
        || f.data_parallel_size > 1
        || f.replicas > 1
        || f.enable_expert_parallel;
    if flags_given {
        return;
    }
    if let Some(p) = &rec.cluster_config_path {
        if llm_emu_fleet::ClusterSpec::load(p).is_ok_and(|c| c.instances.len() > 1) {
            eprintln!("note: the fleet of {} is replayed", p.display());
            f.cluster = Some(p.clone());
            return;
        }
    }
    if let Some(dp) = rec
        .facts
        .data_parallel_size
        .as_ref()
        .filter(|d| d.value > 1)
    {
        f.data_parallel_size = dp.value as usize;
        f.enable_expert_parallel = rec.facts.enable_expert_parallel;
        eprintln!(
            "note: {} = {}{}: replayed as a data-parallel fleet",
            dp.source,
            dp.value,
            if f.enable_expert_parallel {
                " with expert parallelism"
            } else {
                ""
            }
        );
    }
}
