//! `llm-emu serve`: vLLM's OpenAI-compatible server on the emulated engine, flags named as
//! `vllm serve` names them.

use crate::engine_args::{EngineFlags, Prepared};
use anyhow::{Context, Result};
use clap::{ArgAction, Args};
use llm_emu_serve::conn::ConnLimits;
use llm_emu_serve::text::{ModelText, SharedCodec};
use llm_emu_serve::thread_priority::PriorityRequest;
use llm_emu_serve::{fd_limit, ServeOptions, Server};
use llm_emu_text::{OutputLengthDistribution, TextModel, TokenizerSource, VocabSampler};
use std::path::Path;
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
    /// meta-llama/Llama-3.1-8B-Instruct). Its architecture comes from `--model-config` or
    /// `--model`, else from this name (a path, the local Hugging Face cache or the built-in
    /// table), else the built-in Llama-3.1-8B.
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
    /// Tokenizer: a tokenizer.json or a directory holding one, or an `org/name` in the local
    /// Hugging Face cache (default: the model's; for the default model, the embedded
    /// Llama-3.1-8B-Instruct tokenizer).
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
    /// Do not log each request.
    #[arg(long, action = ArgAction::SetTrue)]
    disable_log_requests: bool,
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
    #[command(flatten)]
    pub engine: EngineFlags,
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

/// Where the tokenizer comes from: `--tokenizer`, else the model argument (a path, or a name in
/// the local Hugging Face cache), else the embedded Llama-3.1-8B-Instruct tokenizer of the
/// default model.
fn tokenizer_source(a: &ServeArgs) -> TokenizerSource {
    let named = a.tokenizer.as_deref().or(a.model_tag.as_deref());
    match named {
        None => TokenizerSource::Builtin,
        Some(DEFAULT_MODEL) if a.tokenizer.is_none() => TokenizerSource::Builtin,
        Some(n) if Path::new(n).exists() => TokenizerSource::Path(n.into()),
        Some(n) => TokenizerSource::HfModel(n.to_string()),
    }
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
    // The positional model names the architecture too, when it is one llm-emu knows (a path with
    // config.json, the local Hugging Face cache, or the built-in table).
    if let Some(tag) = a.model_tag.clone() {
        match llm_emu_perf::sizing::ModelShape::resolve(&tag) {
            Ok(_) => a.engine.default_model(Some(&tag)),
            Err(e) => eprintln!(
                "llm-emu serve: warning: no architecture for `{tag}` ({e}); using the shape of \
                 --model/--model-config or the default Llama-3.1-8B"
            ),
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
    let prepared = Prepared::new(&a.engine, None)?;
    let cfg = prepared.config().clone();
    let src = tokenizer_source(&a);
    let model =
        TextModel::load(&src).with_context(|| format!("loading the tokenizer ({src:?})"))?;
    let lengths = match &a.output_len {
        Some(s) => parse_output_len(s)?,
        None => OutputLengthDistribution::default(),
    };
    let sampler = VocabSampler::new(&model, lengths, a.engine.seed)
        .map_err(|e| anyhow::anyhow!("output token sampler: {e}"))?;
    let (engine, latency_desc) = prepared.build_engine_with(Box::new(sampler))?;
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
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = a.http_threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.build().context("starting the async runtime")?;
    let served = rt.block_on(async move {
        let server = Server::bind(engine, codec, opts).await?;
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
        println!("llm-emu serve: listening on http://{addr}");
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
