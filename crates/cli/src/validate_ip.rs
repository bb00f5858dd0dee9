//! `llm-emu validate --client-result RUN_DIR` for an inference-perf run folder (the layout of
//! inference-sim/training's `default_args/<run>/`): `exp-config.yaml` (the vLLM server's
//! settings), `profile.yaml` (inference-perf's settings as asked), `results/config.yaml` (as
//! inference-perf resolved and ran them) and `results/stage_<i>_lifecycle_metrics.json` (what
//! its client saw, per load stage).
//!
//! The workload is regenerated ([`llm_emu_sim::inference_perf`]) with `--seed`, each stage is
//! run on the one engine in turn (the prefix cache carries over, as on the real server, whose
//! stages follow each other once the previous one has drained), and each stage's client-side
//! figures, in inference-perf's definitions, are compared with its stage file by the comparison
//! of every client-side result ([`client_comparison_json`]).

use crate::sweep::yaml;
use anyhow::{bail, Context, Result};
use llm_emu_perf::gpu::GpuSpec;
use llm_emu_perf::{FrontendLatency, FrontendSpec};
use llm_emu_sim::client_run::{
    client_comparison_json, client_comparison_table, ClientRun, REQUESTS_PER_S,
};
use llm_emu_sim::client_side::ClientSide;
use llm_emu_sim::inference_perf::{ip_figures, requests_per_s, InferencePerfRun};
use llm_emu_sim::report::write_atomic;
use llm_emu_sim::run_record::{Recorded, RunFacts, RunRecord};
use llm_emu_sim::Sinks;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The GPU of every run of inference-sim/training (its DESIGN.md: "collected with
/// inference-perf against instrumented vLLM on H100 SXM GPUs"; `datasheets/h100-sxm.json`).
/// exp-config.yaml does not name it; `--gpu` replaces it.
const RUNS_GPU: &str = "h100-sxm";
const RUNS_GPU_SOURCE: &str =
    "inference-sim/training DESIGN.md (\"H100 SXM\"), not in exp-config.yaml";

/// exp-config.yaml keys and the facts they are.
const EXP_KEYS: [&str; 6] = [
    "model",
    "tensor_parallelism",
    "max_model_len",
    "max_num_batched_tokens",
    "max_num_seqs",
    "app",
];

/// Figures of inference-perf's report that are not compared, and why.
pub const NOT_COMPARED: [(&str, &str); 3] = [
    (
        "itl_median",
        "inference-perf's ITL median falls on the gaps between an SSE event and its blank line \
         (the client's own parse time, µs), which the emulator puts at 0",
    ),
    (
        "output_tokens_per_sec",
        "inference-perf counts output tokens by re-tokenizing the returned text (the server \
         generated output_len each with ignore_eos)",
    ),
    (
        "input_tokens_per_sec",
        "inference-perf counts prompt tokens by re-tokenizing the prompt text, whose random ids \
         do not round-trip",
    ),
];

/// The vLLM server's settings of exp-config.yaml as a run record (GPU: [`RUNS_GPU`]).
fn exp_record(path: &Path) -> Result<RunRecord> {
    let v = yaml::read_file(path)?;
    let Some(m) = v.as_object() else {
        bail!("{}: not a mapping", path.display());
    };
    let src = |k: &str| format!("exp-config.yaml {k}");
    let int = |k: &str| -> Result<Option<Recorded<usize>>> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => {
                let n = x.as_u64().filter(|n| *n > 0).with_context(|| {
                    format!("{}: `{k}` is not a whole number > 0", path.display())
                })?;
                Ok(Some(Recorded {
                    value: n as usize,
                    source: src(k),
                }))
            }
        }
    };
    let mut facts = RunFacts {
        model: match m.get("model").and_then(Value::as_str) {
            Some(s) => Some(Recorded {
                value: s.to_string(),
                source: src("model"),
            }),
            None => bail!("{}: `model` missing", path.display()),
        },
        tensor_parallel_size: int("tensor_parallelism")?.map(|r| Recorded {
            value: r.value as u64,
            source: r.source,
        }),
        max_model_len: int("max_model_len")?,
        max_num_batched_tokens: int("max_num_batched_tokens")?,
        max_num_seqs: int("max_num_seqs")?,
        gpu: Some(Recorded {
            value: GpuSpec::lookup(RUNS_GPU)?,
            source: RUNS_GPU_SOURCE.into(),
        }),
        ..Default::default()
    };
    if let Some(app) = m.get("app").and_then(Value::as_str) {
        if app != "inference-perf" {
            bail!(
                "{}: `app` = {app}: only inference-perf runs are read",
                path.display()
            );
        }
    }
    let unread: Vec<&str> = m
        .keys()
        .map(String::as_str)
        .filter(|k| !EXP_KEYS.contains(k))
        .collect();
    if !unread.is_empty() {
        facts.notes.push(format!(
            "exp-config.yaml keys not modelled (ignored): {}",
            unread.join(", ")
        ));
    }
    facts.notes.push(
        "the vLLM version and its other server flags are not recorded: vLLM's defaults \
         (prefix caching and chunked prefill on) are used"
            .into(),
    );
    Ok(RunRecord {
        meta_path: path.to_path_buf(),
        cluster_config_path: None,
        num_requests: None,
        dataset_hash: None,
        dataset_path: None,
        started_at: None,
        tick_seconds: None,
        facts,
    })
}

/// The run's settings and its per-stage results.
struct IpRun {
    spec: InferencePerfRun,
    record: RunRecord,
    stage_results: Vec<(PathBuf, ClientRun)>,
}

fn load_run(dir: &Path) -> Result<IpRun> {
    let exp = dir.join("exp-config.yaml");
    let profile = dir.join("profile.yaml");
    let resolved = dir.join("results").join("config.yaml");
    for p in [&exp, &profile] {
        if !p.is_file() {
            bail!(
                "{}: not an inference-perf run folder: {} is missing (needs exp-config.yaml, \
                 profile.yaml and results/stage_<i>_lifecycle_metrics.json)",
                dir.display(),
                p.file_name().unwrap_or_default().to_string_lossy()
            );
        }
    }
    let record = exp_record(&exp)?;
    let asked = yaml::read_file(&profile)?;
    let mut notes = Vec::new();
    let spec = if resolved.is_file() {
        let ran = yaml::read_file(&resolved)?;
        InferencePerfRun::from_config(&ran, &resolved.display().to_string(), Some(&asked))?
    } else {
        notes.push(format!(
            "{} missing: the workload is regenerated from profile.yaml as the current \
             inference-perf reads it",
            resolved.display()
        ));
        InferencePerfRun::from_config(&asked, &profile.display().to_string(), None)?
    };
    let mut stage_results = Vec::new();
    for i in 0..spec.stages.len() {
        let p = dir
            .join("results")
            .join(format!("stage_{i}_lifecycle_metrics.json"));
        if !p.is_file() {
            bail!(
                "{}: missing: the run has {} load stages and stage {i} has no result",
                p.display(),
                spec.stages.len()
            );
        }
        let r = ClientRun::load(&p)?;
        if r.format != "inference-perf" {
            bail!(
                "{}: a {} result, not inference-perf's lifecycle metrics",
                p.display(),
                r.format
            );
        }
        stage_results.push((p, r));
    }
    let mut spec = spec;
    spec.notes.extend(notes);
    Ok(IpRun {
        spec,
        record,
        stage_results,
    })
}

/// Replays the run's stages and prints one comparison per stage.
pub fn run(a: &crate::validate::ValidateArgs, dir: &Path) -> Result<()> {
    if a.workload.is_some() {
        bail!(
            "{}: an inference-perf run folder: its workload is regenerated from its settings, \
             so --workload does not apply",
            dir.display()
        );
    }
    let run = load_run(dir)?;
    for n in &run.spec.notes {
        eprintln!("note: {n}");
    }
    let prepared = crate::engine_args::Prepared::new(&a.engine, Some(&run.record))?;
    let cfg = prepared.config().clone();
    let (mut engine, latency_desc) = prepared.build_engine()?;
    let spec = a.frontend_latency.clone().unwrap_or(FrontendSpec::Vllm);
    let fe = spec.build()?.unwrap_or(FrontendLatency {
        per_request_us: 0.0,
        per_prompt_token_ns: 0.0,
        per_output_token_us: 0.0,
        per_batch_output_us: 0.0,
    });
    let vocab = u32::try_from(prepared.shape.vocab_size).unwrap_or(u32::MAX);
    let prompts = run
        .spec
        .prompts(a.engine.seed, vocab, cfg.max_model_len.saturating_add(1))
        .with_context(|| format!("{}", dir.display()))?;
    let prompt_len = prompts
        .iter()
        .map(|p| p.token_ids.len() as f64)
        .sum::<f64>()
        / prompts.len().max(1) as f64;
    println!(
        "real: inference-perf run {} ({} {} load stage{}); emulated: {latency_desc}; front end: \
         {spec}; max_num_seqs {}, max_num_batched_tokens {}, max_model_len {}, {} KV blocks",
        dir.display(),
        run.spec.stages.len(),
        run.spec.load.name(),
        if run.spec.stages.len() == 1 { "" } else { "s" },
        cfg.max_num_seqs,
        cfg.max_num_batched_tokens,
        cfg.max_model_len,
        cfg.num_gpu_blocks
    );
    println!(
        "workload: {}, seed {}; client timeout: {}",
        run.spec.data.describe(),
        a.engine.seed,
        match run.spec.request_timeout {
            Some(t) => format!(
                "{} s per request{} (aiohttp; load.request_timeout: {})",
                t.total_s,
                if t.ceil_to_second {
                    ", the deadline rounded up to the next whole second"
                } else {
                    ""
                },
                run.spec.request_timeout_source
            ),
            None => format!(
                "none (load.request_timeout: {})",
                run.spec.request_timeout_source
            ),
        }
    );
    for (k, why) in NOT_COMPARED {
        println!("not compared: {k}: {why}");
    }
    let mut start = llm_emu_core::Nanos::ZERO;
    let mut stages_json = Vec::new();
    for (i, ((path, real), st)) in run.stage_results.iter().zip(&run.spec.stages).enumerate() {
        let items = run.spec.stage_workload(i, start, &prompts, a.engine.seed);
        let n = items.len();
        let timeout = run.spec.request_timeout;
        let mut sinks = Sinks {
            client: Some(ClientSide::new(fe, true).with_timeout(timeout)),
            ..Default::default()
        };
        let client_behaviour = llm_emu_sim::Client {
            max_concurrency: st.concurrency,
            timeout,
        };
        let result = llm_emu_sim::run_client(
            &mut engine,
            items.into_iter().map(Ok),
            &mut sinks,
            &mut |_| {},
            client_behaviour,
        )
        .with_context(|| format!("stage {i}"))?;
        let client = sinks.client.take().expect("set above");
        let timed_out = client.timed_out;
        crate::simulate::report_failures(&result);
        let reqs = client.requests.unwrap_or_default();
        // An overload can leave a stage without a success: its counts are still compared. A
        // stage whose requests all failed otherwise did not run.
        if reqs.is_empty() && timed_out.is_empty() {
            bail!(
                "stage {i}: no emulated request completed ({} failed, none of them at the \
                 client's timeout)",
                result.failed
            );
        }
        let mut sim = if reqs.is_empty() {
            Default::default()
        } else {
            ip_figures(&reqs, &client.itl_ms.unwrap_or_default()).stats()
        };
        if let Some(r) = requests_per_s(&reqs, &timed_out) {
            sim.insert(REQUESTS_PER_S.into(), r);
        }
        let mut real_stats = real.summary_stats();
        for (k, _) in NOT_COMPARED {
            sim.remove(k);
            real_stats.remove(k);
        }
        let mut m = client_comparison_json(&real_stats, &sim);
        // The stage file's `count` of one of its sections.
        let count = |section: &str| {
            real.summary
                .get(section)
                .and_then(|s| s.get("count"))
                .and_then(Value::as_u64)
        };
        let real_count = count("successes");
        let real_failed = count("failures");
        let real_prompt = real
            .summary
            .get("successes")
            .and_then(|s| s.pointer("/prompt_len/mean"))
            .and_then(Value::as_f64);
        let load = match st.concurrency {
            Some(c) => format!("at most {c} in flight"),
            None => format!("{} req/s for {} s", st.rate, st.duration_s),
        };
        println!(
            "\nstage {i}: {load}, {n} requests (real: {} successful; client-counted prompt mean \
             {} tokens, generated {prompt_len:.1}), {}",
            real_count.map_or("?".into(), |c| c.to_string()),
            real_prompt.map_or("?".into(), |p| format!("{p:.1}")),
            path.display()
        );
        println!(
            "successful: real {}, emulated {}; failed at the client's timeout: real {}, emulated {}",
            real_count.map_or("?".into(), |c| c.to_string()),
            reqs.len(),
            real_failed.map_or("?".into(), |c| c.to_string()),
            timed_out.len()
        );
        if let Some(t) = count("load_summary").filter(|&t| t != n as u64) {
            eprintln!(
                "warning: stage {i}: {} counts {t} requests, the run's settings give {n}: the \
                 stage file may not be of these settings",
                path.display()
            );
        }
        if reqs.is_empty() {
            println!("no emulated request ended in time: no latency figures to compare");
        }
        print!("{}", client_comparison_table(&m));
        m.insert("stage".into(), i.into());
        m.insert("rate".into(), st.rate.into());
        m.insert("duration_s".into(), st.duration_s.into());
        if let Some(c) = st.concurrency {
            m.insert("concurrency".into(), c.into());
        }
        m.insert("requests".into(), n.into());
        m.insert("completed".into(), reqs.len().into());
        m.insert("timed_out".into(), timed_out.len().into());
        if let Some(c) = real_count {
            m.insert("completed_real".into(), c.into());
        }
        if let Some(c) = real_failed {
            m.insert("failed_real".into(), c.into());
        }
        stages_json.push(Value::Object(m));
        // The next stage is set up once this one has drained (its last response or its last
        // failure), after `load.interval`.
        let last_failure = timed_out
            .iter()
            .map(|f| llm_emu_core::Nanos::from_secs_f64(f.end_s))
            .max()
            .unwrap_or(llm_emu_core::Nanos::ZERO);
        start = result.end.max(last_failure).max(start)
            + llm_emu_core::Nanos::from_secs_f64(run.spec.stage_interval_s);
    }
    for w in engine.latency_model().warnings() {
        eprintln!("warning: latency model: {w}");
    }
    if let Some(p) = &a.json {
        let mut out = Map::new();
        out.insert("run".into(), dir.display().to_string().into());
        out.insert("stages".into(), stages_json.into());
        out.insert("frontend_latency".into(), spec.to_string().into());
        out.insert("seed".into(), a.engine.seed.into());
        out.insert(
            "notes".into(),
            run.spec
                .notes
                .iter()
                .cloned()
                .map(Value::from)
                .collect::<Vec<_>>()
                .into(),
        );
        out.insert("engine".into(), prepared.engine_json(&latency_desc)?.into());
        write_atomic(p, &serde_json::to_vec_pretty(&Value::Object(out))?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if a.requests.is_some() {
        eprintln!("note: --requests is written for engine-side comparisons (--real) only");
    }
    Ok(())
}
