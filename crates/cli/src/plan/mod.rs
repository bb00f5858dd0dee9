//! `llm-emu plan`: the cheapest fleet (GPU × TP × engine caps × replicas or data-parallel
//! ranks) that serves a workload at a target rate within latency objectives, searched with
//! the sweep's runs (docs/plan.md).

mod objectives;
mod prices;
mod report;
mod search;

use crate::sweep::grid::Setting;
use anyhow::{bail, Context, Result};
use clap::Args;
use llm_emu_perf::gpu::GpuSpec;
use objectives::Objectives;
use prices::Prices;
use search::{ScaleOut, Space, Unit};
use serde_json::Value;
use std::path::PathBuf;

#[derive(Args)]
pub struct PlanArgs {
    /// The model, as `simulate --model` takes it.
    #[arg(long)]
    model: Option<String>,
    /// Workload JSONL, as `simulate --workload`: its own arrival times are the load (no
    /// `--request-rate`).
    #[arg(long, conflicts_with_all = ["synthetic", "scenario", "request_rate"])]
    workload: Option<PathBuf>,
    /// Tokens per `hash_ids` entry of a Mooncake trace `--workload`, as `simulate
    /// --hash-block-size` (default 512, the published traces').
    #[arg(long, value_name = "TOKENS", requires = "workload",
          value_parser = clap::value_parser!(u32).range(1..))]
    hash_block_size: Option<u32>,
    /// Requests of the built-in ShareGPT-like synthetic workload.
    #[arg(long)]
    synthetic: Option<usize>,
    /// The synthetic workload's arrival pattern, as `simulate --scenario`.
    #[arg(long)]
    scenario: Option<String>,
    /// The target load, requests/s (required with a synthetic workload).
    #[arg(long)]
    request_rate: Option<f64>,
    /// The workload's seed, as `simulate --seed`.
    #[arg(long)]
    seed: Option<u64>,
    /// Any other `simulate` flag every run shares, `FLAG=VALUE` (e.g. `--set max-model-len=4096`,
    /// `--set latency=roofline`); repeatable.
    #[arg(long = "set", value_name = "FLAG=VALUE")]
    set: Vec<String>,
    /// An objective, `METRIC:STAT=BOUND`: METRIC ttft, tpot, itl or e2el; STAT mean, median,
    /// p90 or p99; BOUND in ms (or with `s`). Repeatable; e.g. `--slo ttft:p99=500ms`.
    #[arg(long = "slo", value_name = "METRIC:STAT=BOUND")]
    slo: Vec<String>,
    /// Also require this fraction of completed requests to meet every TTFT, TPOT and E2E bound
    /// on their own (vLLM bench's goodput test), e.g. 0.95.
    #[arg(long, value_name = "FRACTION")]
    goodput: Option<f64>,
    /// GPUs to consider (any `--gpu` name), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "h100,h200,b200")]
    gpus: Vec<String>,
    /// Tensor-parallel degrees to consider, comma-separated.
    #[arg(
        long = "tensor-parallel-size",
        value_delimiter = ',',
        default_value = "1,2,4"
    )]
    tensor_parallel_size: Vec<u64>,
    /// `max_num_seqs` values to consider (default: the engine's own).
    #[arg(long, value_delimiter = ',')]
    max_num_seqs: Vec<u64>,
    /// `max_num_batched_tokens` values to consider (default: the engine's own).
    #[arg(long, value_delimiter = ',')]
    max_num_batched_tokens: Vec<u64>,
    /// How fleets grow past one engine: `replicas` (servers behind `--router`),
    /// `data-parallel` (ranks of one server), or both, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "replicas,data-parallel")]
    scale_out: Vec<String>,
    /// The router in front of replicas: round-robin, least-loaded, prefix-aware or session.
    #[arg(long, default_value = "round-robin")]
    router: String,
    /// The most GPUs a fleet may use.
    #[arg(long, default_value_t = 64)]
    max_gpus: u64,
    /// Prices per GPU-hour (`gpu: dollars` lines, JSON or YAML), replacing the built-in
    /// illustrative table.
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
    /// How many of the cheapest fleets to find and print.
    #[arg(long, default_value_t = 3)]
    top: usize,
    /// Bisection steps for each engine's saturation rate.
    #[arg(long, default_value_t = 6)]
    bisect_steps: u32,
    /// Runs at once, each on one thread [default: the number of cores].
    #[arg(long)]
    jobs: Option<usize>,
    /// Write the plan as JSON to this file.
    #[arg(long, value_name = "FILE")]
    output_json: Option<PathBuf>,
}

pub fn run(a: PlanArgs) -> Result<()> {
    let slos = a
        .slo
        .iter()
        .map(|s| objectives::parse_slo(s))
        .collect::<Result<Vec<_>>>()?;
    let objectives = Objectives::new(slos, a.goodput)?;
    let rate = match (&a.workload, a.request_rate) {
        (Some(_), _) => None,
        (None, Some(r)) if r > 0.0 && r.is_finite() => Some(r),
        (None, Some(r)) => bail!("--request-rate {r}: the target must be a positive number"),
        (None, None) => {
            bail!("give the target load with --request-rate R (or a --workload file)")
        }
    };
    let mut gpus: Vec<String> = Vec::new();
    for g in &a.gpus {
        let name = GpuSpec::lookup(g)
            .map_err(|e| anyhow::anyhow!("--gpus: {e}"))?
            .name
            .to_string();
        if !gpus.contains(&name) {
            gpus.push(name);
        }
    }
    let prices = match &a.prices {
        Some(p) => Prices::load(p)?,
        None => Prices::built_in(),
    };
    prices.check_covers(&gpus)?;
    let mut scale_outs = Vec::new();
    for s in &a.scale_out {
        let so = ScaleOut::parse(s).with_context(|| {
            format!("--scale-out `{s}`: expected replicas or data-parallel (comma-separated)")
        })?;
        if !scale_outs.contains(&so) {
            scale_outs.push(so);
        }
    }
    llm_emu_fleet::router_by_name(&a.router).map_err(|e| anyhow::anyhow!("--router: {e}"))?;
    for (flag, values) in [
        ("--tensor-parallel-size", &a.tensor_parallel_size),
        ("--max-num-seqs", &a.max_num_seqs),
        ("--max-num-batched-tokens", &a.max_num_batched_tokens),
    ] {
        if values.contains(&0) {
            bail!("{flag}: every value must be at least 1");
        }
    }
    if a.max_gpus == 0 {
        bail!("--max-gpus must be at least 1");
    }
    let jobs = match a.jobs {
        Some(0) => bail!("--jobs must be at least 1"),
        Some(j) => j,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let base = base_settings(&a)?;
    crate::sweep::check(&base, &[], false).context("the workload and --set flags")?;

    let units = units(&a, &gpus);
    // Units whose engine cannot be built are reported, not run; when none can, say why.
    let mut usable = Vec::new();
    let mut unusable = Vec::new();
    for u in units {
        match crate::sweep::check(&base, &u.settings(), true) {
            Ok(()) => usable.push(u),
            Err(e) => unusable.push((u, format!("{e:#}"))),
        }
    }
    if usable.is_empty() {
        let why: Vec<String> = unusable
            .iter()
            .map(|(u, e)| format!("  {}: {e}", u.describe()))
            .collect();
        bail!(
            "no configuration of the search space can run:\n{}",
            why.join("\n")
        );
    }
    let space = Space {
        base: &base,
        rate,
        objectives: &objectives,
        router: &a.router,
        scale_outs: &scale_outs,
        max_gpus: a.max_gpus,
        bisect_steps: a.bisect_steps,
        top: a.top,
        jobs,
    };
    let outcome = search::search(&space, &usable, &|g| prices.of(g));
    let plan = report::Plan {
        args: &a,
        base: &base,
        rate,
        objectives: &objectives,
        prices: &prices,
        unusable: &unusable,
        outcome: &outcome,
    };
    if let Some(p) = &a.output_json {
        let doc = plan.json();
        llm_emu_sim::report::write_atomic(p, &serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let mut out = std::io::stdout().lock();
    plan.print(&mut out)?;
    if outcome.fleets.is_empty() {
        bail!("{}", plan.none_meets());
    }
    Ok(())
}

/// The settings every run shares: the workload, the model and `--set` flags.
fn base_settings(a: &PlanArgs) -> Result<Vec<Setting>> {
    let mut base: Vec<Setting> = Vec::new();
    if let Some(m) = &a.model {
        base.push(("model".into(), m.clone().into()));
    }
    if let Some(w) = &a.workload {
        base.push(("workload".into(), w.display().to_string().into()));
    }
    if let Some(n) = a.hash_block_size {
        base.push(("hash-block-size".into(), n.into()));
    }
    if let Some(n) = a.synthetic {
        base.push(("synthetic".into(), n.into()));
    }
    if let Some(s) = &a.scenario {
        base.push(("scenario".into(), s.clone().into()));
    }
    if let Some(s) = a.seed {
        base.push(("seed".into(), s.into()));
    }
    const SEARCHED: &[&str] = &[
        "gpu",
        "tensor-parallel-size",
        "max-num-seqs",
        "max-num-batched-tokens",
        "replicas",
        "data-parallel-size",
        "router",
        "request-rate",
        "model",
        "workload",
        "hash-block-size",
        "synthetic",
        "scenario",
        "seed",
        "max-concurrency",
    ];
    for s in &a.set {
        let Some((k, v)) = s.split_once('=') else {
            bail!("--set `{s}`: expected FLAG=VALUE (a `simulate` flag by its long name)");
        };
        let k = k.trim().trim_start_matches("--").to_string();
        if SEARCHED.contains(&k.as_str()) {
            bail!("--set `{s}`: `{k}` is set by plan's own flags");
        }
        let v = match v.trim() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            v => Value::String(v.to_string()),
        };
        base.push((k, v));
    }
    Ok(base)
}

/// The units of the space, GPU slowest, in the order the flags list them.
fn units(a: &PlanArgs, gpus: &[String]) -> Vec<Unit> {
    let seqs: Vec<Option<u64>> = if a.max_num_seqs.is_empty() {
        vec![None]
    } else {
        a.max_num_seqs.iter().copied().map(Some).collect()
    };
    let tokens: Vec<Option<u64>> = if a.max_num_batched_tokens.is_empty() {
        vec![None]
    } else {
        a.max_num_batched_tokens.iter().copied().map(Some).collect()
    };
    let mut tps = a.tensor_parallel_size.clone();
    tps.dedup();
    let mut out = Vec::new();
    for g in gpus {
        for &tp in &tps {
            for &s in &seqs {
                for &t in &tokens {
                    out.push(Unit {
                        gpu: g.clone(),
                        tp,
                        max_num_seqs: s,
                        max_num_batched_tokens: t,
                    });
                }
            }
        }
    }
    out
}
