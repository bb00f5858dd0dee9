//! `llm-emu simulate`: flags named as `vllm serve` names them.

use crate::engine_args::{EngineFlags, FleetFlags, FleetPlan};
use crate::fleet_build::{prepare_fleet, Fleet};
use crate::sim_report;
use crate::workload_flags::WorkloadFlags;
use anyhow::{bail, Context, Result};
use clap::Args;
use llm_emu_core::Engine;
use llm_emu_fleet::{EngineTally, Tallied, Topology};
use llm_emu_perf::FrontendSpec;
use llm_emu_sim::client_side::ClientSide;
use llm_emu_sim::client_timeout::ClientTimeout;
use llm_emu_sim::report::{
    client_side_json, print_client_table, print_table, summary_json, write_atomic, AtomicFile,
};
use llm_emu_sim::run_record::RunRecord;
use llm_emu_sim::{Sinks, WorkloadItem, WorkloadReader};
use serde_json::{json, Map, Value};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Args)]
pub struct SimulateArgs {
    /// Workload JSONL: LLMServingSim format (`arrival_time_ns`, `input_tok_ids`, `output_toks`),
    /// plain (`arrival_s`, `prompt_len` | `prompt_token_ids`, `output_len`) or a Mooncake trace
    /// (`timestamp` ms, `input_length`, `output_length`, `hash_ids`). Without it, a built-in
    /// ShareGPT-like synthetic workload (`--synthetic`, `--request-rate`).
    #[arg(long)]
    workload: Option<PathBuf>,
    #[command(flatten)]
    workload_flags: WorkloadFlags,
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
    /// At most this many requests in flight from the client, as `vllm bench serve
    /// --max-concurrency`: an arrival waits, first come first served, for a request to finish,
    /// and its TTFT and E2E count from when it is sent.
    #[arg(long)]
    pub max_concurrency: Option<usize>,
    /// A client that gives up on a request not finished this many seconds after its send: the
    /// engine aborts it then (its KV blocks freed) and it counts as failed, timed out.
    #[arg(long, value_name = "SECONDS")]
    pub request_timeout: Option<f64>,
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
    /// Also report client-side figures (`client_side` in the summary) with a real server's
    /// front end added: `vllm` (vLLM 0.19's API server, measured), a file written by
    /// `tools/measure-frontend/measure.py`, or `none` (default: the engine's figures only).
    #[arg(long, default_value = "none")]
    frontend_latency: FrontendSpec,
}

pub fn run(a: SimulateArgs) -> Result<()> {
    let point = run_point(&a, false)?;
    if !a.quiet {
        let mut out = std::io::stdout().lock();
        out.write_all(point.header.as_bytes())?;
        print_table(&point.summary, &mut out)?;
        print_client_table(&point.summary, &mut out)?;
        print_instances(&point.summary, &mut out)?;
        out.write_all(sim_report::footer(point.wall, point.end_s).as_bytes())?;
    }
    Ok(())
}

/// What one simulated run gives: the summary (keys as `vllm bench serve`'s result JSON), and
/// what the table around it says.
pub(crate) struct PointRun {
    pub summary: Map<String, Value>,
    /// Per-request records in finishing order, when asked for (`keep_records`).
    pub records: Option<Vec<llm_emu_sim::RequestRecord>>,
    pub header: String,
    /// Wall-clock time the run took.
    pub wall: std::time::Duration,
    /// Virtual time of the last token, seconds.
    pub end_s: f64,
}

/// Runs the configuration the flags describe in virtual time, writing the files they name
/// (`--output-json`, `--requests-out`, `--steps-out`); `keep_records` also keeps every
/// request's record in memory. Prints nothing on stdout.
pub(crate) fn run_point(a: &SimulateArgs, keep_records: bool) -> Result<PointRun> {
    let record = a.like.as_deref().map(RunRecord::load).transpose()?;
    let mut fleet_flags = a.fleet.clone();
    if let Some(r) = &record {
        recorded_fleet(&mut fleet_flags, &a.engine, r)?;
    }
    let (plan, prepared) = prepare_fleet(&a.engine, &fleet_flags, record.as_ref())?;
    let mut cfg = prepared[0].config().clone();
    // The workload is read against the longest context any instance serves.
    cfg.max_model_len = prepared
        .iter()
        .map(|p| p.config().max_model_len)
        .max()
        .unwrap_or(cfg.max_model_len);
    let (fleet, latency_desc) = Fleet::build(&prepared, &plan, record.as_ref())?;
    let mut engine = Tallied::new(fleet);

    if a.max_concurrency == Some(0) {
        bail!("--max-concurrency must be at least 1");
    }
    let timeout =
        match a.request_timeout {
            None => None,
            Some(s) => Some(ClientTimeout::exact(s).with_context(|| {
                format!("--request-timeout {s}: must be a number of seconds > 0")
            })?),
        };
    let (workload, total): (Box<dyn Iterator<Item = _>>, Option<u64>) = match &a.workload {
        Some(p) => {
            let r = a
                .workload_flags
                .apply(
                    WorkloadReader::open(p, a.engine.seed)
                        .with_context(|| format!("opening workload {}", p.display()))?,
                )
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

    let show_bar = !a.quiet && std::io::stderr().is_terminal();
    let total = match (&a.workload, total) {
        (Some(p), None) if show_bar => sim_report::count_requests(p),
        (_, t) => t,
    };
    let bar = sim_report::progress_bar(total, a.quiet);
    let described = match &a.workload {
        Some(p) => sim_report::WorkloadDesc::File(p),
        None => sim_report::WorkloadDesc::Synthetic {
            n: a.synthetic,
            rate: a.request_rate,
            seed: a.engine.seed,
        },
    };
    let header = sim_report::header(&prepared[0], &plan, &latency_desc, &described);
    let started = std::time::Instant::now();
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
        records: keep_records.then(Vec::new),
        client: a.frontend_latency.build()?.map(|fe| {
            ClientSide::new(fe, false)
                .queued_ways_in()
                .with_timeout(timeout)
        }),
        ticks: None,
    };
    let mut progress = |done: usize| bar.set_position(done as u64);
    let client = llm_emu_sim::Client {
        max_concurrency: a.max_concurrency,
        timeout,
    };
    let mut result =
        llm_emu_sim::run_client(&mut engine, workload, &mut sinks, &mut progress, client)
            .context("reading the workload")?;
    let wall = started.elapsed();
    bar.finish_and_clear();
    let mut sinks_client = sinks.client.take();
    let records = sinks.records.take();
    sinks
        .commit()
        .context("writing per-request/per-step files")?;

    report_failures(&result);
    if result.completed == 0 {
        bail!(
            "nothing ran: no request completed ({} failed: {} of them unusable workload lines, \
             {} at the client's --request-timeout)",
            result.failed,
            result.skipped_lines,
            result.aborted
        );
    }
    let engines = engine.inner.engines();
    let first = engines[0];
    let latency_warnings = first.latency_model().warnings();
    for w in &latency_warnings {
        eprintln!("warning: latency model: {w}");
    }
    let mut summary = summary_json(&mut result, first.scheduler(), &cfg, &latency_desc);
    // What the engine config does not hold: the GPU, the TP degree and the model emulated.
    if let Some(Value::Object(ec)) = summary.get_mut("engine_config") {
        let e = prepared[0].engine_json(&latency_desc)?;
        for k in [
            "gpu",
            "tensor_parallel_size",
            "model",
            "quantization",
            "kv_cache_dtype",
        ] {
            if let Some(v) = e.get(k) {
                ec.insert(k.into(), v.clone());
            }
        }
    }
    summary.insert("latency_warnings".into(), latency_warnings.into());
    if let Some(c) = a.max_concurrency {
        // As `vllm bench serve`'s result JSON names it.
        summary.insert("max_concurrency".into(), c.into());
    }
    if let Some(t) = timeout {
        summary.insert("request_timeout_s".into(), t.total_s.into());
        summary.insert("timed_out".into(), result.aborted.into());
    }
    if let Some(c) = sinks_client.as_mut() {
        let fe = a.frontend_latency.to_string();
        summary.insert(
            "client_side".into(),
            client_side_json(&mut c.stats, &fe).into(),
        );
    }
    if plan != FleetPlan::Single {
        fleet_summary(&mut summary, &plan, &engines, engine.tallies());
    }
    if let Some(p) = &a.output_json {
        let text = serde_json::to_vec_pretty(&summary)?;
        write_atomic(p, &text).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(PointRun {
        summary,
        records,
        header,
        wall,
        end_s: result.end.as_secs_f64(),
    })
}

/// The fleet a run recorded, under the fleet flags given: its cluster config when it lists
/// more than one instance and no flag changes the fleet or what its instances say (GPU,
/// memory, TP degree, model, batch limits); else `data_parallel_size` and
/// `enable_expert_parallel` from `meta.json`, filling what the flags leave (`--replicas N`
/// replicates the recorded data-parallel group; `--data-parallel-size N` keeps the recorded
/// expert parallelism). A cluster config that is not one data-parallel group cannot take such
/// flags: an error says so.
pub(crate) fn recorded_fleet(
    f: &mut FleetFlags,
    engine: &crate::engine_args::EngineFlags,
    rec: &llm_emu_sim::run_record::RunRecord,
) -> Result<()> {
    if f.cluster.is_some() {
        return Ok(());
    }
    let shape_given = f.data_parallel_size > 1 || f.replicas > 1 || f.enable_expert_parallel;
    let instance_flags = engine.instance_flags_given()?;
    let recorded_dp = rec
        .facts
        .data_parallel_size
        .as_ref()
        .filter(|d| d.value > 1);
    if let Some(p) = &rec.cluster_config_path {
        // The run's own cluster config: one that cannot describe a fleet is an error, not
        // dropped for meta.json's data-parallel size.
        let c = llm_emu_fleet::ClusterSpec::load(p)
            .with_context(|| format!("the run's cluster config {}", p.display()))?;
        if c.instances.len() > 1 {
            if !shape_given && instance_flags.is_empty() {
                eprintln!("note: the fleet of {} is replayed", p.display());
                f.cluster = Some(p.clone());
                return Ok(());
            }
            if recorded_dp.is_none() {
                bail!(
                    "{}: the run is the fleet of {} instances this cluster config \
                     describes, whose instances name their own GPU, model and limits: {} \
                     cannot be applied to them; edit a copy of the file and pass it with \
                     --cluster",
                    p.display(),
                    c.instances.len(),
                    if instance_flags.is_empty() {
                        "the fleet flags".to_string()
                    } else {
                        instance_flags.join(", ")
                    }
                );
            }
        }
    }
    if let Some(dp) = recorded_dp {
        let mut kept = Vec::new();
        if f.data_parallel_size == 1 {
            f.data_parallel_size = dp.value as usize;
            kept.push(format!("{} = {}", dp.source, dp.value));
        }
        if rec.facts.enable_expert_parallel && !f.enable_expert_parallel && f.data_parallel_size > 1
        {
            f.enable_expert_parallel = true;
            f.expert_parallel_recorded = true;
            kept.push("expert parallelism".into());
        }
        if !kept.is_empty() {
            eprintln!(
                "note: {}: replayed as a data-parallel fleet{}",
                kept.join(" with "),
                if f.replicas > 1 {
                    format!(", each of the {} replicas one such group", f.replicas)
                } else {
                    String::new()
                }
            );
        }
    } else if rec.facts.enable_expert_parallel && !f.enable_expert_parallel {
        // One engine over TP GPUs: vLLM places whole experts on them (EP size = TP) and runs
        // no all-to-all; at one GPU the flag changes nothing (`FleetFlags::plan`).
        // Said by `prepare_fleet`, which knows whether the model has experts.
        f.enable_expert_parallel = true;
        f.expert_parallel_recorded = true;
    }
    Ok(())
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
                "balancer": "vllm-dp",
            }),
            FleetPlan::Replicas { count, router } => json!({
                "kind": "replicas",
                "replicas": count,
                "router": router,
            }),
            FleetPlan::ReplicatedDp {
                count,
                size,
                api_servers,
                router,
                ep,
            } => json!({
                "kind": "replicas-of-data-parallel",
                "replicas": count,
                "data_parallel_size": size,
                "api_server_count": api_servers,
                "router": router,
                "expert_parallel_size": ep,
            }),
            FleetPlan::ExpertParallel {
                size,
                api_servers,
                ep,
            } => json!({
                "kind": "expert-parallel",
                "data_parallel_size": size,
                "api_server_count": api_servers,
                "expert_parallel_size": ep,
                "balancer": "vllm-dp",
            }),
            FleetPlan::Cluster { spec, router } => {
                let placers = sim_report::cluster_placers(spec, router);
                let mut c = json!({
                "kind": "cluster",
                "topology": match &spec.topology {
                    Topology::Single => "single",
                    Topology::Replicas => "replicas",
                    Topology::DataParallel { .. } => "data-parallel",
                    Topology::DataParallelGroups { .. } => "data-parallel-groups",
                    Topology::Disaggregated { .. } => "prefill-decode",
                },
                "instances": spec.instances.len(),
                "link_bw_gbs": spec.link.bandwidth_gbs,
                "link_latency_ns": spec.link.latency_ns,
                });
                // `router`: the router's name where one places requests (null where none
                // does); `balancer`: vLLM's DP load balancer where it does; a prefill/decode
                // cluster names each side's.
                let placed = match placers.as_slice() {
                    [one] => json!({
                        "router": match one {
                            sim_report::Placer::Router(r) => json!(r),
                            sim_report::Placer::DpBalancer => Value::Null,
                        },
                        "balancer": (one == &sim_report::Placer::DpBalancer).then_some("vllm-dp"),
                    }),
                    [p, d] => json!({
                        "router": Value::Null,
                        "prefill_placement": p.json_name(),
                        "decode_placement": d.json_name(),
                    }),
                    _ => json!({ "router": Value::Null }),
                };
                if let (Some(c), Value::Object(p)) = (c.as_object_mut(), placed) {
                    c.extend(p);
                }
                c
            }
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
/// Warns of requests that failed other than at the client's timeout, with the first ones.
pub fn report_failures(result: &llm_emu_sim::SimResult) {
    let refused = result.failed - result.aborted;
    if refused > 0 {
        eprintln!(
            "warning: {refused} request(s) failed ({} unusable workload line(s) skipped); first ones:",
            result.skipped_lines
        );
        for f in &result.failure_samples {
            eprintln!("  {f}");
        }
    }
}
