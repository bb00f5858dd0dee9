//! `llm-emu simulate`: flags named as `vllm serve` names them.

use crate::engine_args::{EngineFlags, Prepared};
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use llm_emu_sim::report::{print_table, summary_json, write_atomic, AtomicFile};
use llm_emu_sim::run_record::RunRecord;
use llm_emu_sim::synthetic::SyntheticWorkload;
use llm_emu_sim::{Sinks, WorkloadItem, WorkloadReader};
use std::io::IsTerminal;
use std::path::PathBuf;

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
    #[command(flatten)]
    pub engine: EngineFlags,
    /// Configure the engine as a recorded vLLM run was (`RUN_DIR/vllm/meta.json` or
    /// `RUN_DIR/meta.json`, and the cluster config beside it), as `validate` does; flags given
    /// still win.
    #[arg(long, value_name = "RUN_DIR")]
    like: Option<PathBuf>,
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

pub fn run(a: SimulateArgs) -> Result<()> {
    let record = a.like.as_deref().map(RunRecord::load).transpose()?;
    let prepared = Prepared::new(&a.engine, record.as_ref())?;
    let cfg = prepared.config().clone();
    let (mut engine, latency_desc) = prepared.build_engine()?;

    let (workload, total): (Box<dyn Iterator<Item = _>>, Option<u64>) = match &a.workload {
        Some(p) => {
            let r = WorkloadReader::open(p, a.engine.seed)
                .with_context(|| format!("opening workload {}", p.display()))?
                .with_max_model_len(cfg.max_model_len);
            (Box::new(r), None)
        }
        None => {
            if a.request_rate.is_nan() || a.request_rate <= 0.0 {
                bail!(
                    "--request-rate must be positive or inf, got {}",
                    a.request_rate
                );
            }
            let s = SyntheticWorkload::new(a.synthetic, a.request_rate, a.engine.seed)
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
        records: None,
    };
    let mut progress = |done: usize| bar.set_position(done as u64);
    let mut result = llm_emu_sim::run(&mut engine, workload, &mut sinks, &mut progress)
        .context("reading the workload")?;
    bar.finish_and_clear();
    sinks
        .commit()
        .context("writing per-request/per-step files")?;

    report_failures(&result);
    if result.completed == 0 {
        bail!(
            "nothing ran: no request completed ({} failed, {} of them unusable workload lines)",
            result.failed,
            result.skipped_lines
        );
    }
    let latency_warnings = engine.latency_model().warnings();
    for w in &latency_warnings {
        eprintln!("warning: latency model: {w}");
    }
    let mut summary = summary_json(&mut result, engine.scheduler(), &cfg, &latency_desc);
    summary.insert("latency_warnings".into(), latency_warnings.into());
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

/// Prints how many requests failed (and how many of those were unusable workload lines), with
/// the first few reasons.
pub fn report_failures(result: &llm_emu_sim::SimResult) {
    if result.failed > 0 {
        eprintln!(
            "warning: {} request(s) failed ({} unusable workload line(s) skipped); first ones:",
            result.failed, result.skipped_lines
        );
        for f in &result.failure_samples {
            eprintln!("  {f}");
        }
    }
}
