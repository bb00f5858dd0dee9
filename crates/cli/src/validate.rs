//! `llm-emu validate`: replays a real vLLM run's workload and prints emulated vs. real latencies.

use crate::engine_args::{EngineFlags, FleetFlags};
use crate::fleet_build::{prepare_fleet, Fleet};
use crate::workload_flags::WorkloadFlags;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use llm_emu_perf::FrontendSpec;
use llm_emu_sim::client_run::{
    client_comparison_json, client_comparison_table, ClientFigures, ClientRun,
};
use llm_emu_sim::client_side::ClientSide;
use llm_emu_sim::report::write_atomic;
use llm_emu_sim::run_record::RunRecord;
use llm_emu_sim::validate::{
    comparison_json, comparison_table, pair_requests, real_arrival_order, LatencySet, RealRun,
};
use llm_emu_sim::{Sinks, WorkloadReader};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ValidateArgs {
    /// Directory of the real run: `meta.json` (engine arguments, KV cache, hardware, vLLM's
    /// resolved config) and `requests.jsonl` (engine-side timestamps per request), as in
    /// `../shared/data/real-runs/<case>/vllm/` (or the run folder holding `vllm/`); the cluster
    /// config in the folder above (`config.json`) is read too. See docs/fidelity.md, "Replaying
    /// a run as recorded".
    #[arg(long, required_unless_present = "client_result")]
    pub(crate) real: Option<PathBuf>,
    /// A client-side result instead of `--real`: `vllm bench serve --save-result` JSON, an
    /// inference-perf lifecycle summary, a guidellm report of one benchmark, or an
    /// inference-perf run folder (`exp-config.yaml`, `profile.yaml`, `results/`: its
    /// `shared_prefix` workload is regenerated with `--seed` and every load stage compared). A `vllm bench
    /// serve` result saved with `--save-detailed` carries per-request figures, send times and
    /// lengths (then the workload may be left out: it is rebuilt from them, prompts sharing no
    /// prefix); a summary needs `--workload`. Compares client-side TTFT, TPOT, ITL and E2E
    /// (mean, median, p90, p99) with the real server's front end added (`--frontend-latency`).
    /// See docs/fidelity.md, "Client-side".
    #[arg(long, conflicts_with = "real")]
    pub(crate) client_result: Option<PathBuf>,
    /// The workload the real run served (JSONL, same formats as `simulate --workload`).
    #[arg(long, required_unless_present = "client_result")]
    pub(crate) workload: Option<PathBuf>,
    /// The real server's front end added to client-side figures: `vllm` (the built-in
    /// measurement of vLLM 0.19's API server), a file written by
    /// `tools/measure-frontend/measure.py`, or `none`. Default with `--client-result`: `vllm`,
    /// since a client-side result always includes the real front end; engine-side comparisons
    /// (`--real`) do not use it.
    #[arg(long)]
    pub(crate) frontend_latency: Option<FrontendSpec>,
    /// Write the comparison as JSON (`{ttft,tpot,e2el}_{mean,median,p90,p95,p99}_{real,sim,err_pct}`,
    /// `output_throughput_{real,sim,err_pct}`).
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Write one JSON line per request with its real and emulated TTFT, TPOT and E2E latency
    /// (ms), paired in arrival order (input of `tools/fidelity/plot.py`).
    #[arg(long)]
    pub(crate) requests: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) workload_flags: WorkloadFlags,
    #[command(flatten)]
    pub(crate) engine: EngineFlags,
    #[command(flatten)]
    pub(crate) fleet: FleetFlags,
}

pub fn run(a: ValidateArgs) -> Result<()> {
    if let Some(path) = &a.client_result {
        if path.is_dir() {
            return crate::validate_ip::run(&a, path);
        }
        return run_client(&a, path);
    }
    let (Some(real_dir), Some(workload)) = (&a.real, &a.workload) else {
        bail!("validate needs --real DIR and --workload FILE, or --client-result FILE");
    };
    if a.frontend_latency.is_some() {
        bail!("--frontend-latency applies to client-side results (--client-result), not to the engine-side timestamps of --real");
    }
    let real = RealRun::load(real_dir)?;
    let workload_differs = workload_differs_from_record(workload, &real.record)?;
    if let Some(d) = &workload_differs {
        eprintln!("note: {d}");
    }
    let mut fleet_flags = a.fleet.clone();
    crate::simulate::recorded_fleet(&mut fleet_flags, &a.engine, &real.record)?;
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
    let reader = a
        .workload_flags
        .apply(
            WorkloadReader::open(workload, a.engine.seed)
                .with_context(|| format!("opening workload {}", workload.display()))?,
        )
        .with_max_model_len(cfg.max_model_len);
    // The run's time series, when it has one that fits it; why not, otherwise.
    let (series, series_skipped) = match crate::validate_series::load(&real) {
        Ok(s) => (s, None),
        Err(why) => {
            eprintln!("warning: {why}: the time series is not compared");
            (None, Some(why))
        }
    };
    let mut sinks = Sinks {
        records: Some(Vec::new()),
        ticks: series.as_ref().map(|_| Default::default()),
        ..Default::default()
    };
    // A real request that stopped before the workload's output length (EOS or a stop string:
    // a benchmark without `--ignore-eos`) is replayed to the length it reached; the workload's
    // line order is the real run's arrival order.
    let reached: Vec<u32> = real_arrival_order(&real.requests)
        .iter()
        .map(|r| u32::try_from(r.output_toks).unwrap_or(u32::MAX))
        .collect();
    let stopped_early = std::cell::Cell::new(0usize);
    let reader = reader.enumerate().map(|(line, item)| {
        item.map(|mut it| {
            if let Some(&n) = reached.get(line).filter(|&&n| n < it.output_len) {
                it.output_len = n;
                stopped_early.set(stopped_early.get() + 1);
            }
            it
        })
    });
    let result = llm_emu_sim::run(&mut engine, reader, &mut sinks, &mut |_| {})
        .context("reading the workload")?;
    if stopped_early.get() > 0 {
        eprintln!(
            "note: {} of the real run's requests stopped before the workload's output length \
             (EOS or a stop string: a benchmark without --ignore-eos): replayed to the lengths \
             they reached (requests.jsonl output_toks)",
            stopped_early.get()
        );
    }
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
        let why = workload_differs
            .as_deref()
            .map(|d| format!("; {d}"))
            .unwrap_or_default();
        anyhow!(
            "{e} ({}): they do not describe the same run{why}",
            real_dir.display()
        )
    })?;
    let mut m = comparison_json(
        &LatencySet::from_real(&real.requests),
        &LatencySet::from_sim(&records),
    );
    // The emulated engine as configured, so a replay can be checked against the record.
    let mut engine_json = prepared.engine_json(&latency_desc)?;
    engine_json.extend(plan.shape_json(engine.engines().len()));
    m.insert("engine".into(), engine_json.into());
    println!(
        "real: vLLM {} ({} requests); emulated: {}: {latency_desc}; max_num_seqs {}, max_num_batched_tokens {}, {} KV blocks",
        real.record.facts.vllm_version.as_deref().unwrap_or("?"),
        real.requests.len(),
        emulated_gpus(prepared)?,
        cfg.max_num_seqs,
        cfg.max_num_batched_tokens,
        cfg.num_gpu_blocks
    );
    print!("{}", comparison_table(&m));
    if let (Some(series), Some(ticks)) = (&series, &sinks.ticks) {
        let json = crate::validate_series::report(&real, series, ticks, &records);
        m.insert("timeseries".into(), json);
    } else if let Some(why) = series_skipped {
        m.insert(
            "timeseries".into(),
            serde_json::json!({ "not_compared": why }),
        );
    }
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

/// Checks the workload file against the SHA-256 the run recorded for the file it served
/// (`meta.json`'s `dataset_hash`). `None` when they agree or nothing was recorded; otherwise one
/// sentence naming both hashes, since a trimmed or truncated copy pairs wrongly or not at all.
fn workload_differs_from_record(workload: &Path, record: &RunRecord) -> Result<Option<String>> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let Some(want) = &record.dataset_hash else {
        return Ok(None);
    };
    if !workload.is_file() {
        // Not a file (missing, a directory): the workload reader says what is wrong with it.
        return Ok(None);
    }
    let mut f = std::fs::File::open(workload)
        .with_context(|| format!("opening workload {}", workload.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading workload {}", workload.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let got: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if &got == want {
        return Ok(None);
    }
    let served = record
        .dataset_path
        .as_deref()
        .map(|p| format!(" ({p})"))
        .unwrap_or_default();
    Ok(Some(format!(
        "the workload {} (SHA-256 {got}) is not the file the run served{served}, whose SHA-256 \
         meta.json records as {want}",
        workload.display()
    )))
}

/// The GPU an engine emulates and its TP degree, for the report's first line: the latency
/// model's description names where its figures were measured, not what is emulated.
fn emulated_gpus(p: &crate::engine_args::Prepared) -> Result<String> {
    Ok(format!(
        "{} × {}",
        p.args.tensor_parallel_size.unwrap_or(1),
        p.args.gpu_spec()?.device_name
    ))
}

/// `validate --client-result`: replays the workload and compares what clients saw.
fn run_client(a: &ValidateArgs, path: &Path) -> Result<()> {
    let real = ClientRun::load(path)?;
    let prepared = crate::engine_args::Prepared::new(&a.engine, None)?;
    let cfg = prepared.config().clone();
    let (mut engine, latency_desc) = prepared.build_engine()?;
    let spec = a.frontend_latency.clone().unwrap_or(FrontendSpec::Vllm);
    let fe = spec.build()?.unwrap_or(llm_emu_perf::FrontendLatency {
        per_request_us: 0.0,
        per_prompt_token_ns: 0.0,
        per_output_token_us: 0.0,
        per_batch_output_us: 0.0,
    });
    let mut sinks = Sinks {
        client: Some(ClientSide::new(fe, true).queued_ways_in()),
        ..Default::default()
    };
    let max_len = cfg.max_model_len;
    let result = match (&a.workload, real.workload_jsonl()) {
        (Some(w), _) => {
            let reader = a
                .workload_flags
                .apply(
                    WorkloadReader::open(w, a.engine.seed)
                        .with_context(|| format!("opening workload {}", w.display()))?,
                )
                .with_max_model_len(max_len);
            llm_emu_sim::run(&mut engine, reader, &mut sinks, &mut |_| {})
        }
        (None, Some(text)) => {
            let reader = WorkloadReader::new(
                format!("{} (its send times and lengths)", path.display()),
                std::io::Cursor::new(text.into_bytes()),
                a.engine.seed,
            )
            .with_max_model_len(max_len);
            llm_emu_sim::run(&mut engine, reader, &mut sinks, &mut |_| {})
        }
        (None, None) => bail!(
            "{}: this {} result is a summary only (no per-request send times and lengths; \
             vllm bench serve writes them with --save-detailed), so the workload it ran is \
             unknown: give it with --workload FILE",
            path.display(),
            real.format
        ),
    }
    .context("reading the workload")?;
    crate::simulate::report_failures(&result);
    if result.completed == 0 {
        bail!(
            "nothing ran: no emulated request completed ({} failed)",
            result.failed
        );
    }
    for w in engine.latency_model().warnings() {
        eprintln!("warning: latency model: {w}");
    }
    let client = sinks.client.take().expect("set above");
    let sim_reqs = client.requests.unwrap_or_default();
    let sim = ClientFigures::from_sim(&sim_reqs, &client.itl_ms.unwrap_or_default()).stats();
    let real_stats = if real.is_detailed() {
        if real.requests.len() != sim_reqs.len() {
            eprintln!(
                "note: the result has {} successful requests, the replay {}",
                real.requests.len(),
                sim_reqs.len()
            );
        }
        real.figures().stats()
    } else {
        real.summary_stats()
    };
    if real_stats.is_empty() {
        bail!("{}: no client-side figure to compare", path.display());
    }
    let mut m = client_comparison_json(&real_stats, &sim);
    m.insert("frontend_latency".into(), spec.to_string().into());
    let mut engine_json = prepared.engine_json(&latency_desc)?;
    engine_json.extend(crate::engine_args::FleetPlan::Single.shape_json(1));
    m.insert("engine".into(), engine_json.into());
    println!(
        "real: {} result {} ({} requests{}); emulated: {}: {latency_desc}; front end: {spec}; max_num_seqs {}, max_num_batched_tokens {}, {} KV blocks",
        real.format,
        path.display(),
        if real.is_detailed() { real.requests.len() } else { sim_reqs.len() },
        if real.is_detailed() { "" } else { ", summary only" },
        emulated_gpus(&prepared)?,
        cfg.max_num_seqs,
        cfg.max_num_batched_tokens,
        cfg.num_gpu_blocks
    );
    print!("{}", client_comparison_table(&m));
    if let Some(p) = &a.json {
        write_atomic(p, &serde_json::to_vec_pretty(&m)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if a.requests.is_some() {
        eprintln!("note: --requests is written for engine-side comparisons (--real) only");
    }
    Ok(())
}
