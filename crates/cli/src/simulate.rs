//! `llm-emu simulate`: flags named as `vllm serve` names them.

use crate::engine_args::{EngineFlags, FleetFlags, FleetPlan, Prepared};
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{Engine, EngineCore, EngineSink, NewRequest, RequestError, Wake};
use llm_emu_fleet::{router_by_name, DataParallel, EngineTally, Replicas, Tallied};
use llm_emu_sim::report::{print_table, summary_json, write_atomic, AtomicFile};
use llm_emu_sim::run_record::RunRecord;
use llm_emu_sim::{Sinks, WorkloadItem, WorkloadReader};
use serde_json::{json, Map, Value};
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
    /// The synthetic workload's arrival pattern: `poisson`, `gamma:burstiness=B`,
    /// `onoff:on=S,off=S`, `flash:at=S,for=S,x=K`, `diurnal:period=S,amplitude=A` or
    /// `sessions:turns=T,think=S,system=N,max_len=L` (docs/bench.md, "Scenarios").
    #[arg(long, default_value = "poisson", conflicts_with = "workload")]
    scenario: llm_emu_sim::scenario::Scenario,
    #[command(flatten)]
    pub engine: EngineFlags,
    #[command(flatten)]
    pub fleet: FleetFlags,
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
    let tp = prepared.args.tensor_parallel_size.unwrap_or(1);
    let gpus = record
        .as_ref()
        .and_then(|r| r.facts.device_count.as_ref())
        .map(|d| (d.value, d.source.as_str()));
    let plan = a.fleet.plan(tp, gpus)?;
    let (fleet, latency_desc) = Fleet::build(&prepared, &plan)?;
    let mut engine = Tallied::new(fleet);

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
            let s = a
                .scenario
                .workload(a.synthetic, a.request_rate, a.engine.seed)?
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
    let engines = engine.inner.engines();
    let first = engines[0];
    let latency_warnings = first.latency_model().warnings();
    for w in &latency_warnings {
        eprintln!("warning: latency model: {w}");
    }
    let mut summary = summary_json(&mut result, first.scheduler(), &cfg, &latency_desc);
    summary.insert("latency_warnings".into(), latency_warnings.into());
    if plan != FleetPlan::Single {
        fleet_summary(&mut summary, &plan, &engines, engine.tallies());
    }
    if let Some(p) = &a.output_json {
        let text = serde_json::to_vec_pretty(&summary)?;
        write_atomic(p, &text).with_context(|| format!("writing {}", p.display()))?;
    }
    if !a.quiet {
        let mut out = std::io::stdout().lock();
        print_table(&summary, &mut out)?;
        print_instances(&summary, &mut out)?;
    }
    Ok(())
}

/// The engines `simulate` runs: one, data-parallel ranks, or replicas behind a router.
enum Fleet {
    One(Box<Engine>),
    Dp(DataParallel),
    Replicas(Replicas),
}

impl Fleet {
    /// `n` engines as `prepared` describes, the latency model's notices said once.
    fn build(prepared: &Prepared, plan: &FleetPlan) -> Result<(Fleet, String)> {
        let n = match plan {
            FleetPlan::Single => 1,
            FleetPlan::DataParallel { size, .. } => *size,
            FleetPlan::Replicas { count, .. } => *count,
        };
        let mut engines = Vec::with_capacity(n);
        let mut desc = String::new();
        for i in 0..n {
            let (latency, notices) = prepared.resolved.build_latency(&prepared.shape)?;
            if i == 0 {
                for n in &notices {
                    eprintln!("{n}");
                }
                desc = latency.describe();
            }
            engines.push(Engine::new(
                prepared.resolved.config.clone(),
                latency,
                Box::new(HashSampler::default()),
            )?);
        }
        let fleet = match plan {
            FleetPlan::Single => Fleet::One(Box::new(engines.pop().context("one engine")?)),
            FleetPlan::DataParallel { api_servers, .. } => {
                Fleet::Dp(DataParallel::new(engines, *api_servers))
            }
            FleetPlan::Replicas { router, .. } => {
                Fleet::Replicas(Replicas::new(engines, router_by_name(router)?))
            }
        };
        Ok((fleet, desc))
    }

    fn engines(&self) -> Vec<&Engine> {
        match self {
            Fleet::One(e) => vec![e.as_ref()],
            Fleet::Dp(d) => d.engines().collect(),
            Fleet::Replicas(r) => r.engines().collect(),
        }
    }

    fn core(&mut self) -> &mut dyn EngineCore {
        match self {
            Fleet::One(e) => e.as_mut(),
            Fleet::Dp(d) => d,
            Fleet::Replicas(r) => r,
        }
    }

    fn core_ref(&self) -> &dyn EngineCore {
        match self {
            Fleet::One(e) => e.as_ref(),
            Fleet::Dp(d) => d,
            Fleet::Replicas(r) => r,
        }
    }
}

impl EngineCore for Fleet {
    fn add(&mut self, req: NewRequest, tag: u64) -> Result<(), RequestError> {
        self.core().add(req, tag)
    }
    fn abort(&mut self, request_id: &str) {
        self.core().abort(request_id)
    }
    fn finish_stopped(&mut self, request_id: &str) {
        self.core().finish_stopped(request_id)
    }
    fn run(&mut self, now: llm_emu_core::Nanos, sink: &mut dyn EngineSink) -> Wake {
        self.core().run(now, sink)
    }
    fn has_work(&self) -> bool {
        self.core_ref().has_work()
    }
    fn num_unfinished(&self) -> usize {
        self.core_ref().num_unfinished()
    }
}

/// The fleet's totals (preemptions and prefix-cache hit rate over every engine, replacing
/// the first engine's) and a per-instance section.
fn fleet_summary(
    m: &mut Map<String, Value>,
    plan: &FleetPlan,
    engines: &[&Engine],
    tallies: &[EngineTally],
) {
    let mut instances = Vec::new();
    let (mut preemptions, mut hits, mut queries) = (0u64, 0u64, 0u64);
    for (i, e) in engines.iter().enumerate() {
        let t = tallies.get(i).cloned().unwrap_or_default();
        let s = e.scheduler();
        let p = s.kv().prefix_cache_stats();
        preemptions += s.num_preemptions();
        hits += p.hits;
        queries += p.queries;
        instances.push(json!({
            "engine_index": i,
            "completed": t.completed,
            "aborted": t.aborted,
            "total_input_tokens": t.prompt_tokens,
            "total_output_tokens": t.generation_tokens,
            "num_steps": t.steps,
            "num_preemptions": s.num_preemptions(),
            "prefix_cache_queries": p.queries,
            "prefix_cache_hits": p.hits,
            "prefix_cache_hit_rate": if p.queries > 0 { p.hits as f64 / p.queries as f64 } else { 0.0 },
        }));
    }
    m.insert("num_preemptions".into(), preemptions.into());
    let rate = if queries > 0 {
        hits as f64 / queries as f64
    } else {
        0.0
    };
    m.insert("prefix_cache_hit_rate".into(), rate.into());
    m.insert(
        "fleet".into(),
        match plan {
            FleetPlan::Single => json!({ "kind": "single" }),
            FleetPlan::DataParallel { size, api_servers } => json!({
                "kind": "data-parallel",
                "data_parallel_size": size,
                "api_server_count": api_servers,
            }),
            FleetPlan::Replicas { count, router } => json!({
                "kind": "replicas",
                "replicas": count,
                "router": router,
            }),
        },
    );
    m.insert("instances".into(), instances.into());
}

/// The per-instance lines of a fleet's table (nothing for one engine).
fn print_instances(m: &Map<String, Value>, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let Some(instances) = m.get("instances").and_then(Value::as_array) else {
        return Ok(());
    };
    writeln!(out, "{:-^50}", " Per instance ")?;
    writeln!(
        out,
        "{:<8}{:>10}{:>12}{:>10}{:>10}",
        "engine", "requests", "out tokens", "preempt", "hit rate"
    )?;
    for i in instances {
        let n = |k: &str| i.get(k).and_then(Value::as_u64).unwrap_or(0);
        let rate = i
            .get("prefix_cache_hit_rate")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        writeln!(
            out,
            "{:<8}{:>10}{:>12}{:>10}{:>10.3}",
            n("engine_index"),
            n("completed"),
            n("total_output_tokens"),
            n("num_preemptions"),
            rate
        )?;
    }
    writeln!(out, "{:=^50}", "")
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
