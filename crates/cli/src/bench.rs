//! `llm-emu bench`: `vllm bench serve` with its flags, output and result files.

use crate::bench_tokenizer::load_tokenizer;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use llm_emu_bench::client::{self, Api, Target};
use llm_emu_bench::dataset::{custom, random, sharegpt, workload, DatasetReport, SampleRequest};
use llm_emu_bench::metrics::{self, Goodput};
use llm_emu_bench::result::{self, RunInfo};
use llm_emu_bench::run::{self, Progress, RunPlan};
use llm_emu_bench::tokenizer::Tokenizer;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct BenchArgs {
    /// The type of backend: `openai`/`vllm` (completions) or `openai-chat`.
    #[arg(long, default_value = "openai")]
    backend: String,
    /// Server or API base URL if not using --host and --port.
    #[arg(long)]
    base_url: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// API endpoint.
    #[arg(long, default_value = "/v1/completions")]
    endpoint: String,
    /// Extra request headers, KEY=VALUE.
    #[arg(long, num_args = 0..)]
    header: Vec<String>,
    /// Maximum number of requests in flight.
    #[arg(long)]
    max_concurrency: Option<usize>,
    /// Name of the model; without it, the first model of the server's /v1/models.
    #[arg(long)]
    model: Option<String>,
    /// The model name used in the API (default: --model).
    #[arg(long)]
    served_model_name: Option<String>,
    /// Tokenizer: a tokenizer.json or model folder, a Hugging Face model id in the local
    /// cache, or `builtin` (default: --model).
    #[arg(long)]
    tokenizer: Option<String>,
    /// Accepted for compatibility; the tokenizer is always `tokenizer.json`-based.
    #[arg(long, default_value = "auto")]
    tokenizer_mode: String,
    /// Accepted for compatibility (no remote code is ever run).
    #[arg(long)]
    trust_remote_code: bool,
    /// No tokenizer: output tokens come only from usage chunks (1 per request without).
    #[arg(long)]
    skip_tokenizer_init: bool,

    /// `random`, `sharegpt`, `custom` (JSONL with `prompt`), `workload` (an LLMServingSim,
    /// plain llm-emu or Mooncake trace workload JSONL, replayed at its own arrival times; also
    /// named `mooncake`), or `scenario` (a
    /// generated `--scenario` at `--request-rate`, ShareGPT-like lengths as token ids).
    #[arg(long, default_value = "random")]
    dataset_name: String,
    /// The scenario of `--dataset-name scenario`, as `simulate --scenario` takes it (e.g.
    /// `flash:at=60,for=30,x=5`, `sessions:turns=5,think=10`); see docs/bench.md.
    #[arg(long, default_value = "poisson")]
    scenario: llm_emu_sim::scenario::Scenario,
    #[arg(long)]
    dataset_path: Option<PathBuf>,
    #[command(flatten)]
    workload_flags: crate::workload_flags::WorkloadFlags,
    /// Number of prompts (default 1000; a workload: all its lines).
    #[arg(long)]
    num_prompts: Option<usize>,
    /// Maps to --random-input-len.
    #[arg(long)]
    input_len: Option<usize>,
    /// Maps to --random-output-len, --sharegpt-output-len and --custom-output-len.
    #[arg(long)]
    output_len: Option<usize>,
    #[arg(long, default_value_t = 1024)]
    random_input_len: usize,
    #[arg(long, default_value_t = 128)]
    random_output_len: usize,
    #[arg(long, default_value_t = 0.0)]
    random_range_ratio: f64,
    #[arg(long, default_value_t = 0)]
    random_prefix_len: usize,
    /// Output length for each ShareGPT request, replacing the dataset's.
    #[arg(long)]
    sharegpt_output_len: Option<usize>,
    /// Output length of custom requests; -1 takes each line's `output_tokens`.
    #[arg(long, default_value_t = 256, allow_negative_numbers = true)]
    custom_output_len: i64,
    #[arg(long)]
    skip_chat_template: bool,
    #[arg(long)]
    disable_shuffle: bool,
    #[arg(long)]
    no_oversample: bool,

    /// Requests per second (`inf`: all at once).
    #[arg(long, default_value_t = f64::INFINITY)]
    request_rate: f64,
    /// Gamma shape of the inter-arrival times (1: Poisson).
    #[arg(long, default_value_t = 1.0)]
    burstiness: f64,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    seed: i64,
    #[arg(long)]
    ignore_eos: bool,
    #[arg(long)]
    logprobs: Option<i64>,
    #[arg(long)]
    disable_tqdm: bool,
    #[arg(long, default_value_t = 0)]
    num_warmups: usize,
    /// Wait up to this many seconds for the first request to succeed (0: no check).
    #[arg(long, default_value_t = 0)]
    ready_check_timeout_sec: u64,

    #[arg(long)]
    save_result: bool,
    /// Also save the per-request arrays (input_lens, ttfts, itls, generated_texts, errors...).
    #[arg(long)]
    save_detailed: bool,
    #[arg(long)]
    append_result: bool,
    /// KEY=VALUE pairs saved in the result.
    #[arg(long, num_args = 0..)]
    metadata: Vec<String>,
    #[arg(long)]
    result_dir: Option<PathBuf>,
    #[arg(long)]
    result_filename: Option<String>,
    #[arg(long)]
    label: Option<String>,
    /// Metrics to report percentiles of (default `ttft,tpot,itl`).
    #[arg(long)]
    percentile_metrics: Option<String>,
    /// Percentiles to report, e.g. `25,50,99`.
    #[arg(long, default_value = "99")]
    metric_percentiles: String,
    /// Service level objectives `ttft:MS tpot:MS e2el:MS` for request goodput.
    #[arg(long, num_args = 1..)]
    goodput: Vec<String>,
    #[arg(long)]
    request_id_prefix: Option<String>,

    #[arg(long)]
    top_p: Option<f64>,
    #[arg(long)]
    top_k: Option<i64>,
    #[arg(long)]
    min_p: Option<f64>,
    #[arg(long)]
    temperature: Option<f64>,
    #[arg(long)]
    frequency_penalty: Option<f64>,
    #[arg(long)]
    presence_penalty: Option<f64>,
    #[arg(long)]
    repetition_penalty: Option<f64>,
    /// JSON object merged into every request body.
    #[arg(long)]
    extra_body: Option<String>,
}

/// Progress: an indicatif bar (vLLM's tqdm) and lines on stdout.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn line(&self, text: &str) {
        self.0.suspend(|| println!("{text}"));
    }
    fn request_done(&self) {
        self.0.inc(1);
    }
}

fn default_request_id_prefix() -> String {
    // vLLM: `bench-{uuid4().hex[:8]}-`.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = t ^ ((std::process::id() as u64) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("bench-{:08x}-", (z ^ (z >> 31)) as u32)
}

fn parse_pairs(items: &[String], what: &str) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|i| {
            i.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow!("Invalid {what} format `{i}`. Please use KEY=VALUE format."))
        })
        .collect()
}

fn sampling_body(a: &BenchArgs) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    let floats = [
        ("top_p", a.top_p),
        ("min_p", a.min_p),
        ("temperature", a.temperature),
        ("frequency_penalty", a.frequency_penalty),
        ("presence_penalty", a.presence_penalty),
        ("repetition_penalty", a.repetition_penalty),
    ];
    for (k, v) in floats {
        if let Some(v) = v {
            if !v.is_finite() {
                bail!("--{} must be a finite number", k.replace('_', "-"));
            }
            m.insert(k.into(), v.into());
        }
    }
    if let Some(k) = a.top_k {
        m.insert("top_k".into(), k.into());
    }
    if let Some(e) = &a.extra_body {
        let v: Value = serde_json::from_str(e).context("--extra-body is not valid JSON")?;
        let Value::Object(o) = v else {
            bail!("--extra-body must be a JSON object");
        };
        m.extend(o);
    }
    Ok(m)
}

struct Loaded {
    requests: Vec<SampleRequest>,
    replay: bool,
}

fn load_dataset(
    a: &BenchArgs,
    api: Api,
    tok: Option<&dyn Tokenizer>,
    prefix: &str,
) -> Result<Loaded> {
    let need_tok = || {
        tok.ok_or_else(|| {
            anyhow!(
                "the {} dataset needs a tokenizer (drop --skip-tokenizer-init)",
                a.dataset_name
            )
        })
    };
    let need_path = || {
        a.dataset_path
            .as_deref()
            .ok_or_else(|| anyhow!("--dataset-name {} needs --dataset-path", a.dataset_name))
    };
    let num = a.num_prompts.unwrap_or(1000);
    let mut report = DatasetReport::default();
    let (name, requests, replay) = match a.dataset_name.as_str() {
        "random" => {
            if let Some(p) = &a.dataset_path {
                bail!(
                    "Cannot use 'random' dataset with --dataset-path. Please specify the appropriate --dataset-name (e.g., 'sharegpt', 'custom') for your dataset file: {}",
                    p.display()
                );
            }
            let o = random::RandomOptions {
                num_requests: num,
                seed: a.seed,
                input_len: a.input_len.unwrap_or(a.random_input_len),
                output_len: a.output_len.unwrap_or(a.random_output_len),
                range_ratio: a.random_range_ratio,
                prefix_len: a.random_prefix_len,
                request_id_prefix: prefix,
            };
            let r = random::sample(need_tok()?, &o)?;
            report.sampled = r.len();
            ("random", r, false)
        }
        "sharegpt" => {
            let path = need_path()?;
            let data = sharegpt::load(path, &mut report)?;
            let o = sharegpt::ShareGptOptions {
                num_requests: num,
                seed: a.seed,
                output_len: a.output_len.or(a.sharegpt_output_len),
                request_id_prefix: prefix,
                disable_shuffle: a.disable_shuffle,
                no_oversample: a.no_oversample,
            };
            ("ShareGPT", sharegpt::sample(data, need_tok()?, &o, &mut report)?, false)
        }
        "custom" => {
            let path = need_path()?;
            let f = std::fs::File::open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            let data = custom::read(std::io::BufReader::new(f), &mut report);
            let o = custom::CustomOptions {
                num_requests: num,
                seed: a.seed,
                output_len: a.output_len.map(|n| n as i64).unwrap_or(a.custom_output_len),
                skip_chat_template: a.skip_chat_template,
                request_id_prefix: prefix,
                disable_shuffle: a.disable_shuffle,
                no_oversample: a.no_oversample,
            };
            ("custom", custom::sample(data, need_tok()?, &o, &mut report)?, false)
        }
        "workload" | "llmservingsim" | "mooncake" => {
            let path = need_path()?;
            let o = workload::WorkloadOptions {
                num_requests: a.num_prompts,
                seed: a.seed as u64,
                request_id_prefix: prefix,
                decode_prompts: api == Api::Chat,
                hash_block_tokens: a.workload_flags.hash_block_size as usize,
            };
            ("workload", workload::load(path, tok, &o, &mut report)?, true)
        }
        "scenario" => {
            let seed = u64::try_from(a.seed).context("--seed must not be negative for a scenario")?;
            let items = a.scenario.workload(num, a.request_rate, seed)?;
            let o = workload::WorkloadOptions {
                num_requests: Some(num),
                seed,
                request_id_prefix: prefix,
                decode_prompts: api == Api::Chat,
                hash_block_tokens: a.workload_flags.hash_block_size as usize,
            };
            let items = items.map(Ok);
            ("scenario", workload::from_items(items, "scenario", tok, &o, &mut report)?, true)
        }
        other => bail!(
            "unknown --dataset-name `{other}`: this client supports random, sharegpt, custom, workload (or mooncake) and scenario"
        ),
    };
    eprintln!("{}", report.summary(name));
    for m in &report.malformed_samples {
        eprintln!("  skipped: {m}");
    }
    if requests.is_empty() {
        bail!("the dataset gave no request to send");
    }
    Ok(Loaded { requests, replay })
}

pub fn run(a: BenchArgs) -> Result<()> {
    let api = Api::from_backend(&a.backend).ok_or_else(|| {
        anyhow!(
            "unsupported --backend `{}`: this client speaks openai, vllm (completions) and openai-chat",
            a.backend
        )
    })?;
    let (api_url, base_url) = match &a.base_url {
        Some(b) => (format!("{b}{}", a.endpoint), b.clone()),
        None => {
            let hp = if a.host.contains(':') {
                format!("[{}]:{}", a.host, a.port)
            } else {
                format!("{}:{}", a.host, a.port)
            };
            (format!("http://{hp}{}", a.endpoint), format!("http://{hp}"))
        }
    };
    if api_url.starts_with("https://") {
        bail!("https is not supported: llm-emu bench speaks plain HTTP/1.1");
    }
    api.check_url(&api_url)?;
    let uri = api_url
        .parse()
        .with_context(|| format!("bad URL {api_url}"))?;
    if a.request_rate.is_nan() || a.request_rate <= 0.0 {
        bail!(
            "--request-rate must be positive or inf, got {}",
            a.request_rate
        );
    }
    if a.burstiness.is_nan() || a.burstiness <= 0.0 {
        bail!(
            "A positive burstiness factor is expected, but given {}.",
            a.burstiness
        );
    }
    if a.max_concurrency == Some(0) {
        bail!("--max-concurrency must be at least 1");
    }
    let goodput = Goodput::parse(&a.goodput).map_err(|e| anyhow!(e))?;
    let percentiles: Vec<f64> = a
        .metric_percentiles
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| (0.0..=100.0).contains(x))
                .ok_or_else(|| {
                    anyhow!("--metric-percentiles: `{p}` is not a percentile in [0, 100]")
                })
        })
        .collect::<Result<_>>()?;
    let percentile_metrics: Vec<String> = a
        .percentile_metrics
        .as_deref()
        .unwrap_or("ttft,tpot,itl")
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    if let Some(bad) = percentile_metrics
        .iter()
        .find(|m| !["ttft", "tpot", "itl", "e2el"].contains(&m.as_str()))
    {
        bail!("--percentile-metrics: unknown metric `{bad}` (ttft, tpot, itl, e2el)");
    }
    let metadata = parse_pairs(&a.metadata, "metadata")?;
    let api_key = std::env::var("OPENAI_API_KEY").ok();
    let headers = client::headers(&a.header, api_key.as_deref()).map_err(|e| anyhow!(e))?;
    let extra_body = sampling_body(&a)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;

    let (model_id, model_name) = match &a.model {
        Some(m) => (m.clone(), a.served_model_name.clone()),
        None => {
            println!("Model not specified, fetching first model from server...");
            let http = client::http_client();
            let (name, id) = rt
                .block_on(client::first_model(&http, &base_url, &headers))
                .map_err(|e| anyhow!(e))?;
            println!("First model name: {name}, first model id: {id}");
            (id, Some(name))
        }
    };
    let tokenizer_id = if a.skip_tokenizer_init {
        None
    } else {
        Some(a.tokenizer.clone().unwrap_or_else(|| model_id.clone()))
    };
    let tokenizer: Option<Box<dyn Tokenizer>> = match &tokenizer_id {
        Some(_) => Some(load_tokenizer(a.tokenizer.as_deref(), &model_id)?),
        None => None,
    };

    let prefix = a
        .request_id_prefix
        .clone()
        .unwrap_or_else(default_request_id_prefix);
    let loaded = load_dataset(&a, api, tokenizer.as_deref(), &prefix)?;
    // vLLM sets ignore_eos for the random dataset so that requests run to their length; a
    // replayed workload pinned its output lengths the same way.
    let ignore_eos = a.ignore_eos || a.dataset_name == "random" || loaded.replay;
    if a.temperature.is_none() {
        println!(
            "WARNING: vllm bench serve no longer sets temperature==0 (greedy) in requests by default. The default will be determined on the server side and can be model/API specific. For the old behavior, include --temperature=0."
        );
    }
    let n = loaded.requests.len();
    let offsets = if loaded.replay {
        if a.request_rate.is_finite() && a.dataset_name != "scenario" {
            bail!("--request-rate does not apply to a workload: it is replayed at its own arrival times");
        }
        loaded
            .requests
            .iter()
            .map(|r| r.send_at.unwrap_or(0.0))
            .collect()
    } else {
        llm_emu_bench::arrival::send_offsets(n, a.request_rate, a.burstiness, a.seed)?
    };
    let distribution = if a.burstiness == 1.0 {
        "Poisson process"
    } else {
        "Gamma distribution"
    };
    let traffic_lines = vec![
        if loaded.replay {
            // Said up front: a recorded trace may span hours (or, mistyped, years).
            let span = offsets.iter().cloned().fold(0.0, f64::max);
            format!(
                "Traffic: replaying the workload's arrival times ({n} requests over {span:.3} s)"
            )
        } else {
            format!(
                "Traffic request rate: {}",
                result::python_float(a.request_rate)
            )
        },
        format!(
            "Burstiness factor: {} ({distribution})",
            result::python_float(a.burstiness)
        ),
        format!(
            "Maximum request concurrency: {}",
            a.max_concurrency
                .map(|c| c.to_string())
                .unwrap_or_else(|| "None".into())
        ),
    ];

    let target = Arc::new(Target {
        api,
        uri,
        model: model_name.clone().unwrap_or_else(|| model_id.clone()),
        logprobs: a.logprobs,
        ignore_eos,
        extra_body,
        headers,
        timeout: Duration::from_secs(6 * 3600),
    });
    let bar = if a.disable_tqdm {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::with_draw_target(Some(n as u64), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template(
                "{percent:>3}%|{wide_bar}| {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}]",
            )
            .expect("valid template"),
        );
        b
    };
    let progress = Arc::new(Bar(bar.clone()));
    let plan = RunPlan {
        offsets,
        max_concurrency: a.max_concurrency,
        ready_check_timeout: Duration::from_secs(a.ready_check_timeout_sec),
        num_warmups: a.num_warmups,
        traffic_lines,
    };
    let requests = Arc::new(loaded.requests);
    let out = rt.block_on(run::run(target, requests, plan, progress))?;
    bar.finish_and_clear();
    drop(rt);

    let m = metrics::calculate(
        &out.outputs,
        out.duration,
        tokenizer.as_deref(),
        &percentiles,
        &goodput,
    );
    let failed: Vec<&str> = out
        .outputs
        .iter()
        .filter(|o| !o.success)
        .map(|o| o.error.as_str())
        .collect();
    if m.completed == 0 {
        eprintln!("warning: All requests failed. This is likely due to a misconfiguration on the benchmark arguments.");
    }
    if !failed.is_empty() {
        println!("Failed requests during benchmark run detected (capping to 10):");
        for (i, e) in failed.iter().take(10).enumerate() {
            println!("Error {i}: {e}");
        }
    }
    let date = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
    let info = RunInfo {
        date,
        backend: &a.backend,
        label: a.label.as_deref(),
        model_id: &model_id,
        tokenizer_id: tokenizer_id.as_deref(),
        num_prompts: a
            .num_prompts
            .unwrap_or(if loaded.replay { n } else { 1000 }),
        metadata: &metadata,
        request_rate: a.request_rate,
        burstiness: a.burstiness,
        max_concurrency: a.max_concurrency,
        duration: out.duration,
        goodput_set: goodput.is_set(),
        percentile_metrics: &percentile_metrics,
        has_tokenizer: tokenizer.is_some(),
    };
    {
        let mut stdout = std::io::stdout().lock();
        result::write_table(&mut stdout, &info, &m)?;
        stdout.flush()?;
    }
    if a.save_result || a.append_result {
        let mut r = result::result_json(&info, &m, &out.outputs);
        if !a.save_detailed {
            result::drop_detail(&mut r);
        }
        let mut path = PathBuf::from(
            a.result_filename
                .clone()
                .unwrap_or_else(|| result::default_file_name(&info)),
        );
        if let Some(d) = &a.result_dir {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            path = d.join(path);
        }
        let text = result::to_python_json(&r);
        if a.append_result {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            if f.metadata()?.len() > 0 {
                f.write_all(b"\n")?;
            }
            f.write_all(&text)?;
        } else {
            llm_emu_sim::report::write_atomic(&path, &text)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        eprintln!("result saved to {}", path.display());
    }
    if m.completed == 0 {
        // The table and result file are written all the same (as vLLM writes them); the exit
        // status tells a script that nothing was measured.
        bail!(
            "no request succeeded ({} failed; the first error is above)",
            failed.len()
        );
    }
    Ok(())
}
