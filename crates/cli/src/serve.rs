//! `llm-emu serve`: vLLM's OpenAI-compatible server on the emulated engine, flags named as
//! `vllm serve` names them.

use crate::engine_args::{EngineFlags, FleetFlags, FleetPlan};
use crate::fleet_build::{prepare_fleet, Fleet};
use anyhow::{Context, Result};
use clap::{ArgAction, Args};
use llm_emu_serve::conn::ConnLimits;
use llm_emu_serve::kv_events::KvEventsConfig;
use llm_emu_serve::structured::{OutputMode, StructuredOptions};
use llm_emu_serve::template_sandbox::SandboxConfig;
use llm_emu_serve::text::{ModelText, SharedCodec};
use llm_emu_serve::thread_priority::PriorityRequest;
use llm_emu_serve::{fd_limit, ServeOptions, Server};
use llm_emu_text::{OutputLengthDistribution, VocabSampler};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// `--max-connections`' default is the open-file limit less a reserve, but no more than this.
const MAX_CONNECTIONS_DEFAULT_CAP: usize = 65536;

/// The model served when none is named: the built-in default (Llama-3.1-8B-Instruct's shape and
/// the built-in latency profile measured for it).
pub const DEFAULT_MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

#[derive(Args)]
pub struct ServeArgs {
    /// Model name or path, as `vllm serve MODEL` takes it (default: the built-in
    /// meta-llama/Llama-3.1-8B-Instruct); `--model MODEL` alone means the same, as in vLLM.
    /// Its architecture comes from `--model-config`, else from this name (a path, the local
    /// Hugging Face cache or the built-in table), else the built-in Llama-3.1-8B.
    #[arg(id = "model_tag", value_name = "MODEL")]
    model_tag: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    host: String,
    /// Port to listen on; 0 lets the OS choose (the bound port is printed).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Names clients may use in `model` (the first is the one responses carry; default: the
    /// model argument).
    #[arg(long, num_args = 1..)]
    served_model_name: Vec<String>,
    /// Tokenizer: a tokenizer.json or a directory holding one, an `org/name` in the local
    /// Hugging Face cache, or `builtin` (the embedded Llama-3.1-8B-Instruct tokenizer).
    /// Default: the model's, when the model is a path or in the local cache; else the
    /// embedded one, with a warning.
    #[arg(long)]
    tokenizer: Option<String>,
    /// Length of replies that only EOS ends (tokens, EOS included): `lognormal:mu=M,sigma=S`,
    /// `uniform:LO-HI` or `fixed:N` (default: ShareGPT-like log-normal, mean 338). Output tokens
    /// are synthetic words of the tokenizer's vocabulary.
    #[arg(long)]
    output_len: Option<String>,
    /// Require `Authorization: Bearer KEY` on /v1 routes (repeatable; also VLLM_API_KEY).
    #[arg(long, num_args = 1..)]
    api_key: Vec<String>,
    #[command(flatten)]
    log: crate::serve_log::LogFlags,
    /// Largest accepted request body, MiB.
    #[arg(long, default_value_t = 64)]
    max_request_body_mib: usize,
    /// After SIGTERM/SIGINT, seconds in-flight requests may still run before they are aborted.
    #[arg(long, default_value_t = 30.0)]
    shutdown_grace_s: f64,
    /// Seconds a connection may take to send a complete request head, counted from its opening
    /// or from the end of its previous response: also the idle keep-alive timeout (vLLM's
    /// uvicorn default, 5).
    #[arg(long, default_value_t = 5.0)]
    header_read_timeout_s: f64,
    /// Seconds a request body may take to arrive in full (else 408 and the connection closes).
    #[arg(long, default_value_t = 60.0)]
    body_read_timeout_s: f64,
    /// Seconds a response write may make no progress (a client that stopped reading) before
    /// the connection is closed and its requests aborted.
    #[arg(long, default_value_t = 60.0)]
    write_timeout_s: f64,
    /// Connections served at once (default: the open-file limit, raised to its hard limit at
    /// start, less 64, at most 65536); 8 more are accepted for health and metrics probes only;
    /// past those, new connections wait in the listen backlog.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Worker threads of the HTTP runtime (default: one per core).
    #[arg(long)]
    http_threads: Option<usize>,
    /// CPU priority of the engine thread, whose wake-ups end the emulated steps: `auto` asks
    /// for real-time scheduling (SCHED_FIFO; needs root or CAP_SYS_NICE), else a raised nice
    /// level, so that busy cores do not make steps late; `normal` leaves it an ordinary thread.
    #[arg(long, value_enum, default_value_t = EnginePriorityArg::Auto)]
    engine_thread_priority: EnginePriorityArg,
    /// Accept a chat template sent with a request (`chat_template`, or `chat_template` in
    /// `chat_template_kwargs`); without it such requests get vLLM's 400. Rendering stays
    /// bounded either way (see docs/serve.md, "Hardening").
    #[arg(long, action = ArgAction::SetTrue)]
    trust_request_chat_template: bool,
    /// Serve each engine of a fleet (`--data-parallel-size`, `--replicas`, `--cluster`) also
    /// on a port of its own, a full OpenAI API with its own /metrics: a comma-separated list
    /// with one port per engine (`8001,8002`), or one base port followed by `+` (`8001+`:
    /// 8001, 8002, …); 0 lets the OS choose. On a prefill/decode cluster a request sent to an
    /// instance's port runs whole on that instance (docs/fleet.md, "Served").
    #[arg(long)]
    instance_ports: Option<String>,
    #[command(flatten)]
    pub fleet: FleetFlags,
    /// Hand each response's tokens to the client as late as a real vLLM API server would:
    /// `vllm` (vLLM 0.19's front end, measured: the way in per request and prompt token, the
    /// way out per token), a file written by `tools/measure-frontend/measure.py`, or `none`
    /// (default: as soon as the engine makes them). The engine's timing is unchanged.
    #[arg(long, default_value = "none")]
    frontend_latency: llm_emu_perf::FrontendSpec,
    /// Let `tool_choice: "auto"` (and `tools` without `tool_choice`) call tools; needs
    /// `--tool-call-parser`, as in vLLM.
    #[arg(long, action = ArgAction::SetTrue)]
    enable_auto_tool_choice: bool,
    /// vLLM's tool-call parser name (`hermes`, `llama3_json`, …); accepted for compatibility:
    /// llm-emu's tool calls are synthesized, not parsed.
    #[arg(long)]
    tool_call_parser: Option<String>,
    /// Probability (0..=1) that a reply to a `tool_choice: "auto"` request is a tool call.
    #[arg(long, default_value_t = llm_emu_serve::structured::DEFAULT_TOOL_CALL_PROBABILITY)]
    tool_call_probability: f64,
    /// Output text of requests without structured output: `synthetic` words, or `echo` (the
    /// prompt's tokens repeated, for conformance tests that compare text).
    #[arg(long, value_enum, default_value_t = OutputModeArg::Synthetic)]
    output_mode: OutputModeArg,
    /// vLLM's KV cache events configuration, as JSON with vLLM's keys
    /// (`{"enable_kv_cache_events": true, "publisher": "zmq", "endpoint": "tcp://*:5557",
    /// "topic": "kv"}`): each engine publishes its block pool's `BlockStored` /
    /// `BlockRemoved` / `AllBlocksCleared` events over ZMQ (docs/serve.md, "KV cache events").
    #[arg(long, value_parser = parse_kv_events_config)]
    kv_events_config: Option<KvEventsConfig>,
    /// Serve LoRA adapters (vLLM's `--enable-lora`): requests naming one run on the same
    /// emulated engine; `vllm:lora_requests_info` is reported.
    #[arg(long, action = ArgAction::SetTrue)]
    enable_lora: bool,
    /// Adapters to serve: `name=path` or vLLM's JSON `{"name","path","base_model_name"}`.
    #[arg(long, num_args = 1.., value_parser = parse_lora_module_arg)]
    lora_modules: Vec<llm_emu_serve::lora::LoraModulePath>,
    /// Distinct adapters per batch (vLLM's default 1): the scheduler holds back a request whose
    /// adapter would exceed it; reported as the metric's `max_lora`.
    #[arg(long, default_value_t = 1)]
    max_loras: u32,
    /// Largest adapter rank (vLLM's default 16); accepted for compatibility.
    #[arg(long, default_value_t = 16)]
    max_lora_rank: u32,
    /// vLLM's model runner: `pooling` serves `/v1/embeddings` (synthetic unit vectors of the
    /// model's hidden size) instead of completions and chat; `auto` and `generate` generate.
    #[arg(long, value_enum, default_value_t = RunnerArg::Auto)]
    runner: RunnerArg,
    /// vLLM's `--convert`: `embed` turns a generative model into an embedding one (the
    /// pooling runner); `auto` and `none` leave it.
    #[arg(long, value_enum, default_value_t = ConvertArg::Auto)]
    convert: ConvertArg,
    #[command(flatten)]
    test_aids: TestAidFlags,
    #[command(flatten)]
    pub engine: EngineFlags,
}

/// Failure injection and a startup delay, for testing routers and clients
/// (docs/serve.md, "Test aids").
#[derive(Args)]
struct TestAidFlags {
    /// Share (0..=1) of generation requests that fail as vLLM fails them, drawn from a
    /// sequence seeded by --fail-seed.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// The failure kinds drawn from, comma-separated: bad_request, internal, engine_dead,
    /// unavailable, mid_stream (default: all).
    #[arg(long, value_delimiter = ',', value_parser = llm_emu_serve::fault::parse_kind)]
    fail_kinds: Vec<llm_emu_serve::fault::FaultKind>,
    #[arg(long, default_value_t = 0)]
    fail_seed: u64,
    /// Honour the `X-Llm-Emu-Fail: KIND` request header, which forces that failure.
    #[arg(long, action = ArgAction::SetTrue)]
    enable_fail_header: bool,
    /// Seconds the port stays bound but not listening after start (connections refused), as
    /// vLLM's while its engine loads.
    #[arg(long, default_value_t = 0.0)]
    startup_delay: f64,
}

fn parse_kv_events_config(text: &str) -> std::result::Result<KvEventsConfig, String> {
    // clap names the flag already.
    KvEventsConfig::from_json(text).map_err(|e| match e {
        llm_emu_serve::kv_events::KvEventsError::Config(why) => why,
        other => other.to_string(),
    })
}

/// `--runner` values, as vLLM 0.19 names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum RunnerArg {
    Auto,
    Generate,
    Pooling,
}

/// `--convert` values llm-emu serves (vLLM also has `classify`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ConvertArg {
    Auto,
    None,
    Embed,
}

/// One `--lora-modules` value, with vLLM's error texts.
fn parse_lora_module_arg(s: &str) -> Result<llm_emu_serve::lora::LoraModulePath, String> {
    llm_emu_serve::lora::parse_lora_module(s).map_err(|e| e.to_string())
}

/// `--instance-ports` for `engines` engines.
fn parse_instance_ports(spec: &str, engines: usize) -> Result<Vec<u16>> {
    let bad = || {
        anyhow::anyhow!(
            "bad --instance-ports {spec:?}: expected one port per engine (P1,P2,…) or a base \
             port followed by + (P+)"
        )
    };
    let ports: Vec<u16> = if let Some(base) = spec.trim().strip_suffix('+') {
        let base: u16 = base.trim().parse().map_err(|_| bad())?;
        (0..engines)
            .map(|i| {
                if base == 0 {
                    Some(0)
                } else {
                    u16::try_from(base as usize + i).ok()
                }
            })
            .collect::<Option<_>>()
            .ok_or_else(bad)?
    } else {
        spec.split(',')
            .map(|p| p.trim().parse::<u16>().map_err(|_| bad()))
            .collect::<Result<_>>()?
    };
    if ports.len() != engines {
        anyhow::bail!(
            "--instance-ports gives {} port(s) for {engines} engine(s): give one per engine",
            ports.len()
        );
    }
    Ok(ports)
}

/// `--output-mode`.
#[derive(Copy, Clone, Debug, clap::ValueEnum)]
pub enum OutputModeArg {
    Synthetic,
    Echo,
}

/// `--engine-thread-priority`.
#[derive(Copy, Clone, Debug, clap::ValueEnum)]
pub enum EnginePriorityArg {
    Auto,
    Normal,
}

/// The served names and `/v1/models` root from the model argument: the one place that maps a
/// model name to what the server says about it.
fn model_identity(a: &ServeArgs) -> (Vec<String>, String) {
    let root = a
        .model_tag
        .clone()
        .unwrap_or_else(|| DEFAULT_MODEL.to_string());
    let names = if a.served_model_name.is_empty() {
        vec![root.clone()]
    } else {
        a.served_model_name.clone()
    };
    (names, root)
}

/// The model argument as `vllm serve` takes it: the positional, or `--model` alone (vLLM moves
/// it to the positional, with a warning). Both, naming different models, is refused as vLLM
/// refuses it; the same name twice is taken once.
fn take_model_argument(a: &mut ServeArgs) -> Result<()> {
    match (&a.model_tag, a.engine.model.take()) {
        (None, Some(m)) => {
            eprintln!(
                "llm-emu serve: warning: --model {m}: vLLM takes the model as the positional \
                 argument (`vllm serve {m}`); serving {m}"
            );
            a.model_tag = Some(m);
        }
        (Some(tag), Some(m)) if *tag != m => anyhow::bail!(
            "the model is given twice: `{tag}` (positional) and --model `{m}`; vLLM 0.19 \
             refuses this too (\"unrecognized arguments: {tag}\"). Give one; to serve under \
             another name, add --served-model-name NAME; for another architecture, \
             --model-config config.json"
        ),
        _ => {}
    }
    Ok(())
}

/// `--output-len`.
fn parse_output_len(spec: &str) -> Result<OutputLengthDistribution> {
    let bad = || {
        anyhow::anyhow!(
            "bad --output-len {spec:?}: expected lognormal:mu=M,sigma=S, uniform:LO-HI or fixed:N"
        )
    };
    let (kind, rest) = spec.split_once(':').ok_or_else(bad)?;
    let d = match kind {
        "fixed" => OutputLengthDistribution::Fixed(rest.parse().map_err(|_| bad())?),
        "uniform" => {
            let (lo, hi) = rest.split_once('-').ok_or_else(bad)?;
            OutputLengthDistribution::Uniform {
                lo: lo.parse().map_err(|_| bad())?,
                hi: hi.parse().map_err(|_| bad())?,
            }
        }
        "lognormal" => {
            let (mut mu, mut sigma) = (None, None);
            for kv in rest.split(',') {
                match kv.split_once('=') {
                    Some(("mu", v)) => mu = Some(v.parse::<f64>().map_err(|_| bad())?),
                    Some(("sigma", v)) => sigma = Some(v.parse::<f64>().map_err(|_| bad())?),
                    _ => return Err(bad()),
                }
            }
            OutputLengthDistribution::LogNormal {
                mu: mu.ok_or_else(bad)?,
                sigma: sigma.ok_or_else(bad)?,
            }
        }
        _ => return Err(bad()),
    };
    d.validate()
        .map_err(|e| anyhow::anyhow!("--output-len: {e}"))?;
    Ok(d)
}

pub fn run(mut a: ServeArgs) -> Result<()> {
    take_model_argument(&mut a)?;
    if a.enable_auto_tool_choice && a.tool_call_parser.is_none() {
        // vLLM's `validate_parsed_serve_args`.
        anyhow::bail!("--enable-auto-tool-choice requires --tool-call-parser");
    }
    if !(0.0..=1.0).contains(&a.tool_call_probability) {
        anyhow::bail!(
            "--tool-call-probability must lie in [0, 1], got {}",
            a.tool_call_probability
        );
    }
    // The positional model names the architecture too, when it is one llm-emu knows (a path with
    // config.json, the local Hugging Face cache, or the built-in table).
    if let Some(tag) = a.model_tag.clone() {
        match llm_emu_perf::sizing::ModelShape::resolve(&tag) {
            Ok(_) => a.engine.default_model(Some(&tag)),
            Err(e) => crate::serve_log::no_architecture_warning(&tag, &e),
        }
    }
    let seconds = |flag: &str, v: f64, zero_ok: bool| -> Result<Duration> {
        if !v.is_finite() || v < 0.0 || (v == 0.0 && !zero_ok) {
            let what = if zero_ok { "non-negative" } else { "positive" };
            anyhow::bail!("{flag} must be a {what} number, got {v}");
        }
        Ok(Duration::from_secs_f64(v))
    };
    let shutdown_grace = seconds("--shutdown-grace-s", a.shutdown_grace_s, true)?;
    let startup_delay = seconds("--startup-delay", a.test_aids.startup_delay, true)?;
    if !(0.0..=1.0).contains(&a.test_aids.fail_rate) {
        anyhow::bail!(
            "--fail-rate must lie in [0, 1], got {}",
            a.test_aids.fail_rate
        );
    }
    let header_read_timeout = seconds("--header-read-timeout-s", a.header_read_timeout_s, false)?;
    let body_read_timeout = seconds("--body-read-timeout-s", a.body_read_timeout_s, false)?;
    let write_stall_timeout = seconds("--write-timeout-s", a.write_timeout_s, false)?;
    if a.max_connections == Some(0) {
        anyhow::bail!("--max-connections must be at least 1");
    }
    let nofile = match fd_limit::raise_to_hard() {
        Ok(l) => {
            let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |n| n.to_string());
            if l.after != l.before {
                eprintln!(
                    "llm-emu serve: open-file limit (RLIMIT_NOFILE) raised from {} to {}",
                    show(l.before),
                    show(l.after)
                );
            } else {
                eprintln!(
                    "llm-emu serve: open-file limit (RLIMIT_NOFILE) {} (the hard limit)",
                    show(l.after)
                );
            }
            l.after
        }
        Err(e) => {
            eprintln!("llm-emu serve: warning: cannot raise the open-file limit: {e}");
            None
        }
    };
    let max_connections = a
        .max_connections
        .unwrap_or_else(|| fd_limit::connections_for(nofile, MAX_CONNECTIONS_DEFAULT_CAP));
    let (plan, all) = prepare_fleet(&a.engine, &a.fleet, None)?;
    if let (None, FleetPlan::Cluster { spec, .. }) = (&a.model_tag, &plan) {
        // A cluster serves its first instance's model unless a model is named.
        a.model_tag = spec.instances.first().map(|i| i.model_name.clone());
    }
    let prepared = &all[0];
    let engine_args = a.engine.to_args()?;
    let mut cfg = prepared.config().clone();
    // The front checks prompts against the longest context any instance serves; the
    // instance a request reaches refuses what it cannot hold.
    cfg.max_model_len = all
        .iter()
        .map(|p| p.config().max_model_len)
        .max()
        .unwrap_or(cfg.max_model_len);
    let tokenizer = crate::bench_tokenizer::choose(
        a.tokenizer.as_deref(),
        a.model_tag.as_deref(),
        "llm-emu serve",
    )?;
    let model = tokenizer.model;
    // Off the serving threads: the server listens at once, and a reply that comes before the
    // detokenizer's table is built waits for it.
    let warming = model.clone();
    std::thread::Builder::new()
        .name("tokenizer-warm-up".into())
        .spawn(move || warming.warm_up())
        .context("starting the tokenizer warm-up thread")?;
    let lengths = match &a.output_len {
        Some(s) => parse_output_len(s)?,
        None => OutputLengthDistribution::default(),
    };
    let sampler = VocabSampler::new(&model, lengths.clone(), a.engine.seed)
        .map_err(|e| anyhow::anyhow!("output token sampler: {e}"))?;
    // Each engine its own sampler, seeded apart so that ranks do not answer in lockstep.
    let mut samplers = |i: usize| -> Result<Box<dyn llm_emu_core::sampler::TokenSampler>> {
        Ok(Box::new(if i == 0 {
            sampler.clone()
        } else {
            VocabSampler::new(
                &model,
                lengths.clone(),
                a.engine.seed.wrapping_add(i as u64),
            )
            .map_err(|e| anyhow::anyhow!("output token sampler: {e}"))?
        }))
    };
    let (fleet, latency_desc) = Fleet::build_with(&all, &plan, None, &mut samplers)?;
    let kind = Fleet::served_kind(&plan);
    let instance_ports = match &a.instance_ports {
        Some(spec) => parse_instance_ports(spec, fleet.engines().len())?,
        None => Vec::new(),
    };
    let codec: SharedCodec = Arc::new(ModelText(model));
    let (names, root) = model_identity(&a);
    let mut api_keys = a.api_key.clone();
    if api_keys.is_empty() {
        if let Ok(k) = std::env::var("VLLM_API_KEY") {
            if !k.is_empty() {
                api_keys.push(k);
            }
        }
    }
    let opts = ServeOptions {
        host: a.host.clone(),
        port: a.port,
        served_model_names: names,
        model_root: root,
        api_keys,
        max_body_bytes: a.max_request_body_mib << 20,
        shutdown_grace,
        conn: ConnLimits {
            header_read_timeout,
            body_read_timeout,
            write_stall_timeout,
            max_connections,
        },
        engine_priority: match a.engine_thread_priority {
            EnginePriorityArg::Auto => PriorityRequest::Auto,
            EnginePriorityArg::Normal => PriorityRequest::Normal,
        },
        trust_request_chat_template: a.trust_request_chat_template,
        instance_ports,
        gpu_memory_utilization: engine_args.gpu_memory_utilization.unwrap_or(0.9),
        num_gpu_blocks_override: engine_args.num_gpu_blocks_override,
        kv_cache_memory_bytes: engine_args.kv_cache_memory_bytes,
        access_log: !a.log.disable_uvicorn_access_log,
        structured: StructuredOptions {
            enable_auto_tool_choice: a.enable_auto_tool_choice,
            tool_call_parser: a.tool_call_parser.clone(),
            tool_call_probability: a.tool_call_probability,
            output_mode: match a.output_mode {
                OutputModeArg::Synthetic => OutputMode::Synthetic,
                OutputModeArg::Echo => OutputMode::Echo,
            },
        },
        kv_events: a.kv_events_config.clone(),
        lora: {
            let lora = llm_emu_serve::lora::LoraOptions {
                enabled: a.enable_lora,
                max_loras: a.max_loras,
                max_lora_rank: a.max_lora_rank,
                modules: a.lora_modules.clone(),
                runtime_updating: llm_emu_serve::lora::runtime_updating_from_env(
                    std::env::var("VLLM_ALLOW_RUNTIME_LORA_UPDATING")
                        .ok()
                        .as_deref(),
                ),
            };
            lora.check().map_err(anyhow::Error::msg)?;
            lora
        },
        pooling_hidden_size: (a.runner == RunnerArg::Pooling || a.convert == ConvertArg::Embed)
            .then_some(prepared.shape.hidden_size as usize),
        template_sandbox: Some(SandboxConfig::llm_emu(
            std::env::current_exe().context("locating the llm-emu binary")?,
        )),
        faults: llm_emu_serve::fault::FaultOptions {
            rate: a.test_aids.fail_rate,
            kinds: a.test_aids.fail_kinds.clone(),
            seed: a.test_aids.fail_seed,
            header: a.test_aids.enable_fail_header,
        },
        startup_delay,
    };
    let frontend = a.frontend_latency.build()?;
    let startup = crate::serve_log::Startup {
        served_model_names: opts.served_model_names.clone(),
        model_root: opts.model_root.clone(),
        tokenizer: tokenizer.description,
        api_keys: opts.api_keys.len(),
        kv: crate::serve_log::kv_capacity(
            &prepared.shape,
            &cfg,
            prepared.args.tensor_parallel_size.unwrap_or(1),
        ),
        max_model_len: cfg.max_model_len,
    };
    let log_stats = !a.log.disable_log_stats;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = a.http_threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.build().context("starting the async runtime")?;
    let served = rt.block_on(async move {
        let server = Server::bind_fleet(fleet, kind, &cfg, codec, opts).await?;
        let server = server.with_frontend(frontend);
        let addr = server.local_addr()?;
        eprintln!(
            "llm-emu serve: engine: {} KV blocks of {} tokens, max_num_seqs {}, \
             max_num_batched_tokens {}, max_model_len {}, scheduling policy {}; \
             latency: {latency_desc}; engine thread: {}; at most {max_connections} connections",
            cfg.num_gpu_blocks,
            cfg.block_size,
            cfg.max_num_seqs,
            cfg.max_num_batched_tokens,
            cfg.max_model_len,
            cfg.scheduling_policy.label(),
            server.engine_priority()
        );
        startup.print();
        if log_stats {
            crate::serve_log::spawn_stats_logger(
                server.state().engine.metrics.clone(),
                crate::serve_log::stats_interval(),
            );
        }
        for (rank, endpoint) in server.kv_event_endpoints().iter().enumerate() {
            eprintln!("llm-emu serve: engine {rank} publishes KV cache events on {endpoint}");
        }
        println!("llm-emu serve: listening on http://{addr}");
        for (i, a) in server.instance_addrs()?.iter().enumerate() {
            println!("llm-emu serve: engine {i} listening on http://{a}");
        }
        let signals = Signals::install().context("installing the signal handlers")?;
        server.run(signals.first_then_force_exit()).await?;
        eprintln!("llm-emu serve: stopped");
        Ok::<(), anyhow::Error>(())
    });
    // A text job still running on a blocking thread (a huge /tokenize, say) must not hold the
    // exit past the grace period: nobody is left to read its answer.
    rt.shutdown_timeout(RUNTIME_EXIT_WAIT);
    served
}

/// How long the exit waits for blocking work still running once the server has stopped.
const RUNTIME_EXIT_WAIT: Duration = Duration::from_secs(1);

/// SIGINT and SIGTERM, taken from their default actions for the whole run.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// The next SIGINT or SIGTERM; its number.
    async fn next(&mut self) -> i32 {
        tokio::select! {
            _ = self.interrupt.recv() => libc_signal::SIGINT,
            _ = self.terminate.recv() => libc_signal::SIGTERM,
        }
    }

    /// Resolves at the first signal (the graceful shutdown starts); a second one ends the
    /// process at once with status 128 + its number, as a second Ctrl-C stops uvicorn.
    async fn first_then_force_exit(mut self) {
        let first = self.next().await;
        eprintln!(
            "llm-emu serve: {} received: shutting down (a second signal exits at once)",
            libc_signal::name(first)
        );
        tokio::spawn(async move {
            let second = self.next().await;
            eprintln!(
                "llm-emu serve: {} received again: exiting without waiting",
                libc_signal::name(second)
            );
            std::process::exit(128 + second);
        });
    }
}

/// The two signal numbers (Linux and the BSDs agree on them).
mod libc_signal {
    pub const SIGINT: i32 = 2;
    pub const SIGTERM: i32 = 15;

    pub fn name(sig: i32) -> &'static str {
        match sig {
            SIGINT => "SIGINT",
            _ => "SIGTERM",
        }
    }
}
