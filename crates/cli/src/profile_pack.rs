//! `llm-emu profile-pack`: a step-cycle pack from per-step measurements (llm-emu `--steps-out`,
//! the vLLM reference server's `EMU_TRACE`, or LLM-Emu step-cycle traces).

use anyhow::{Context, Result};
use clap::Args;
use llm_emu_perf::latency::step_cycle::build::{PackBuilder, StepSample};
use llm_emu_sim::report::write_atomic;
use std::io::BufRead;
use std::path::PathBuf;

#[derive(Args)]
pub struct ProfilePackArgs {
    /// JSONL files of step records, one step per line.
    #[arg(required = true)]
    steps: Vec<PathBuf>,
    /// Where to write the pack (JSON).
    #[arg(long, short)]
    out: PathBuf,
    /// Width of total-token buckets (1: one cell per token count).
    #[arg(long, default_value_t = 1)]
    tt_bucket_width: u64,
    /// Width of concurrency (scheduled requests) buckets.
    #[arg(long, default_value_t = 5)]
    conc_bucket_width: u64,
    /// Also key cells by context tokens in buckets of this width (our extended pack type).
    #[arg(long)]
    ctx_bucket_width: Option<u64>,
    /// GPU name recorded in the pack.
    #[arg(long)]
    gpu_model: Option<String>,
    /// Model name recorded in the pack.
    #[arg(long)]
    model_name: Option<String>,
}

pub fn run(a: ProfilePackArgs) -> Result<()> {
    let mut b = PackBuilder::new(a.tt_bucket_width, a.conc_bucket_width, a.ctx_bucket_width)?;
    for path in &a.steps {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let at = || format!("{}: line {}", path.display(), i + 1);
            let v: serde_json::Value = serde_json::from_str(&line).with_context(at)?;
            if let Some(s) = StepSample::from_json(&v).with_context(at)? {
                b.add(&s).with_context(at)?;
            }
        }
    }
    let n = b.len();
    let pack = b.finish(a.gpu_model, a.model_name)?;
    let cells: Vec<usize> = pack.tables().iter().map(|t| t.len()).collect();
    write_atomic(&a.out, &serde_json::to_vec_pretty(&pack)?)
        .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!(
        "{}: {n} steps; {} prefill, {} decode, {} all-steps cells",
        a.out.display(),
        cells[0],
        cells[1],
        cells[2]
    );
    Ok(())
}
