//! llm-emu's online server: vLLM's OpenAI-compatible HTTP surface on the emulated engine, on the
//! wall clock.
//!
//! One OS thread owns the synchronous engine ([`engine_loop`]); the HTTP tasks (axum on tokio)
//! validate and tokenize requests, submit them through a channel, and turn the engine's
//! per-request events into SSE chunks or JSON responses, detokenizing and matching stop strings
//! on the way ([`generate`]), as vLLM's API server and output processor do.
//!
//! A fleet (vLLM data-parallel ranks, or replicas behind a router: `llm-emu-fleet`) is driven by
//! the same single engine thread ([`Server::bind_fleet`]); its shared endpoint places each
//! request as vLLM's API server or the router would ([`fleet_front`]), and each engine can also
//! be served on a port of its own ([`ServeOptions::instance_ports`]).

pub mod access_log;
pub mod conn;
pub mod engine_loop;
pub mod errors;
pub mod fault;
pub mod fd_limit;
pub mod fleet_front;
pub mod framing;
pub mod frontend_pace;
pub mod generate;
pub mod http_metrics;
pub mod kv_events;
pub mod logprobs;
pub mod lora;
pub mod metrics;
pub mod middleware;
pub mod process_metrics;
pub mod protocol;
pub mod protocol_tools;
pub mod routes;
pub mod routes_embeddings;
pub mod routes_generate;
pub mod routes_lora;
pub mod routes_messages;
pub mod routes_messages_stream;
pub mod routes_responses;
pub mod routes_responses_stream;
pub mod routes_translate;
pub mod state;
pub mod structured;
pub mod template_sandbox;
pub mod text;
pub mod text_jobs;
pub mod thread_priority;

use conn::{ConnLimits, ConnStats};
use engine_loop::EngineThread;
use fleet_front::{FleetKind, FrontPlan, ServedCore};
use llm_emu_core::{Engine, EngineConfig};
use metrics::EngineMetrics;
use state::AppState;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use text::SharedCodec;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the engine thread: {0}")]
    EngineThread(std::io::Error),
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error("invalid server options: {0}")]
    Options(String),
    #[error(transparent)]
    KvEvents(#[from] kv_events::KvEventsError),
}

/// How the server presents itself and behaves at its edges.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub host: String,
    /// 0: the OS picks one ([`Server::local_addr`] says which).
    pub port: u16,
    /// Names clients may use in `model`; the first is the one responses carry.
    pub served_model_names: Vec<String>,
    /// The model path or id, `root` in `/v1/models`.
    pub model_root: String,
    /// Bearer tokens accepted on `/v1` routes; empty: no authentication.
    pub api_keys: Vec<String>,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// After a shutdown signal, how long in-flight requests may run before they are aborted;
    /// [`conn::ABORT_FLUSH`] later every connection still open is closed.
    pub shutdown_grace: Duration,
    /// Timeouts and the connection limit.
    pub conn: ConnLimits,
    /// The CPU priority the engine thread asks for.
    pub engine_priority: thread_priority::PriorityRequest,
    /// Accept a request's own `chat_template` (vLLM's `--trust-request-chat-template`).
    pub trust_request_chat_template: bool,
    /// A fleet's engines each also served on a port of their own, in engine order (empty:
    /// none; else one per engine; 0 lets the OS choose).
    pub instance_ports: Vec<u16>,
    /// `--gpu-memory-utilization`, `--num-gpu-blocks-override` and `--kv-cache-memory-bytes`
    /// as given, for `vllm:cache_config_info`.
    pub gpu_memory_utilization: f64,
    pub num_gpu_blocks_override: Option<u32>,
    pub kv_cache_memory_bytes: Option<u64>,
    /// Log one line per request in uvicorn's format ([`access_log`]; vLLM's default, off with
    /// `--disable-uvicorn-access-log`).
    pub access_log: bool,
    /// Tool-call flags and the output mode.
    pub structured: structured::StructuredOptions,
    /// The program that renders a request's own template in a child process under hard limits
    /// (`llm-emu render-template`); `None`: such templates render in the server process,
    /// bounded only by fuel and output size.
    pub template_sandbox: Option<template_sandbox::SandboxConfig>,
    /// vLLM's `--kv-events-config`: publish each engine's KV cache events over ZMQ
    /// ([`kv_events`]); `None` or not enabled: no events are recorded.
    pub kv_events: Option<kv_events::KvEventsConfig>,
    /// LoRA flags and adapters ([`lora`]).
    pub lora: lora::LoraOptions,
    /// `--runner pooling`: serve `/v1/embeddings` (vectors of this many components, the
    /// model's hidden size) instead of the generate routes; `None`: the generate runner.
    pub pooling_hidden_size: Option<usize>,
    /// Failure injection, a test aid ([`fault`]; default: none).
    pub faults: fault::FaultOptions,
    /// How long the server stays bound but not listening after start, as vLLM's does while
    /// its engine loads (connections are refused: a readiness probe sees the server not
    /// ready); zero: it listens at once.
    pub startup_delay: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            host: "127.0.0.1".into(),
            port: 0,
            served_model_names: vec!["llm-emu".into()],
            model_root: "llm-emu".into(),
            api_keys: Vec::new(),
            max_body_bytes: 64 << 20,
            shutdown_grace: Duration::from_secs(30),
            conn: ConnLimits::default(),
            engine_priority: Default::default(),
            trust_request_chat_template: false,
            instance_ports: Vec::new(),
            gpu_memory_utilization: 0.9,
            num_gpu_blocks_override: None,
            kv_cache_memory_bytes: None,
            access_log: false,
            structured: Default::default(),
            template_sandbox: None,
            kv_events: None,
            lora: Default::default(),
            pooling_hidden_size: None,
            faults: Default::default(),
            startup_delay: Duration::ZERO,
        }
    }
}

/// One HTTP endpoint of a server: the shared one, or an engine's own port.
struct Front {
    listener: BoundSocket,
    state: Arc<AppState>,
    plan: Arc<FrontPlan>,
}

/// A bound server, not yet serving.
pub struct Server {
    /// The shared endpoint first, then each engine's own port.
    fronts: Vec<Front>,
    engine: EngineThread,
    opts: ServeOptions,
    conn_stats: Arc<ConnStats>,
    /// Each rank's KV events endpoint, in engine order (empty: no events published).
    kv_event_endpoints: Vec<String>,
}

impl Server {
    /// Starts the engine thread and binds the listener (inside a tokio runtime).
    pub async fn bind(
        engine: Engine,
        codec: SharedCodec,
        opts: ServeOptions,
    ) -> Result<Server, ServeError> {
        let cfg = engine.config().clone();
        Server::bind_fleet(engine, FleetKind::Single, &cfg, codec, opts).await
    }

    /// Starts one engine thread driving `core` (one engine, data-parallel ranks or replicas,
    /// as `kind` says; `cfg` the configuration of its engines, the first one's for a
    /// heterogeneous fleet) and binds the shared listener and, if asked, one per engine.
    pub async fn bind_fleet<E: ServedCore + Send + 'static>(
        mut core: E,
        kind: FleetKind,
        cfg: &EngineConfig,
        codec: SharedCodec,
        opts: ServeOptions,
    ) -> Result<Server, ServeError> {
        if opts.served_model_names.is_empty() {
            return Err(ServeError::Options(
                "at least one served model name is needed".into(),
            ));
        }
        let engines = core.num_engines();
        if !opts.instance_ports.is_empty() && opts.instance_ports.len() != engines {
            return Err(ServeError::Options(format!(
                "{} instance ports for {engines} engines: give one per engine",
                opts.instance_ports.len()
            )));
        }
        let listen_now = opts.startup_delay.is_zero();
        let listener = bind_listener(&opts.host, opts.port, listen_now).await?;
        let mut instance_listeners = Vec::with_capacity(opts.instance_ports.len());
        for &port in &opts.instance_ports {
            instance_listeners.push(bind_listener(&opts.host, port, listen_now).await?);
        }
        let max_model_len = cfg.max_model_len;
        let metrics = Arc::new(EngineMetrics::fleet(
            &opts.served_model_names[0],
            max_model_len,
            engines,
            metrics::cache_config_labels(
                cfg,
                opts.gpu_memory_utilization,
                opts.num_gpu_blocks_override,
                opts.kv_cache_memory_bytes,
            ),
        ));
        // Structured outputs, tool calls, seeds and echo mode choose token ids per request.
        let scripts = structured::Scripts::new();
        core.each_engine(&mut |_, e| {
            e.wrap_sampler(|inner| {
                Box::new(structured::ScriptedSampler::new(inner, scripts.clone()))
            })
        });
        // vLLM's LoRA config exists only with --enable-lora; its max_loras limits each batch.
        if opts.lora.enabled {
            let max_loras = opts.lora.max_loras as usize;
            core.each_engine(&mut |_, e| e.set_max_loras(Some(max_loras)));
        }
        let (kv_events, kv_event_endpoints) = match opts.kv_events.as_ref() {
            Some(c) if c.publishes() => {
                let (sender, endpoints) = kv_events::start(c, engines).await?;
                core.each_engine(&mut |_, e| e.enable_kv_cache_events());
                (Some(sender), endpoints)
            }
            _ => (None, Vec::new()),
        };
        let engine = EngineThread::spawn_with_kv_events(
            core,
            metrics.clone(),
            opts.engine_priority,
            kv_events,
        )
        .map_err(ServeError::EngineThread)?;
        // One sandbox for every endpoint: its limit on child renders is the process's.
        let sandbox = opts
            .template_sandbox
            .clone()
            .map(template_sandbox::TemplateSandbox::new);
        let lora = lora::LoraRegistry::new(opts.lora.clone(), &opts.served_model_names);
        // One sequence of failure draws for every endpoint.
        let faults = Arc::new(fault::FaultInjector::new(opts.faults.clone()));
        let state_for = |handle: engine_loop::EngineHandle| {
            Arc::new(
                AppState::new(
                    handle,
                    codec.clone(),
                    opts.served_model_names.clone(),
                    opts.model_root.clone(),
                    max_model_len,
                    opts.api_keys.clone(),
                )
                .with_trust_request_chat_template(opts.trust_request_chat_template)
                .with_structured(opts.structured.clone(), scripts.clone())
                .with_template_sandbox(sandbox.clone())
                .with_lora(lora.clone())
                .with_pooling(opts.pooling_hidden_size)
                .with_faults(faults.clone()),
            )
        };
        let mut fronts = vec![Front {
            listener,
            state: state_for(engine.handle.clone()),
            plan: Arc::new(FrontPlan {
                kind: kind.clone(),
                engines,
                pinned: None,
            }),
        }];
        for (i, listener) in instance_listeners.into_iter().enumerate() {
            let view = Arc::new(metrics.instance(i));
            fronts.push(Front {
                listener,
                state: state_for(engine.handle.pinned_to(i, view)),
                plan: Arc::new(FrontPlan {
                    kind: kind.clone(),
                    engines,
                    pinned: Some(i),
                }),
            });
        }
        Ok(Server {
            fronts,
            engine,
            opts,
            conn_stats: Arc::new(ConnStats::default()),
            kv_event_endpoints,
        })
    }

    /// Where each engine publishes its KV cache events, in engine order (empty unless
    /// `--kv-events-config` enables a ZMQ publisher).
    pub fn kv_event_endpoints(&self) -> &[String] {
        &self.kv_event_endpoints
    }

    /// Where each engine's own port listens, in engine order (empty without instance ports).
    pub fn instance_addrs(&self) -> std::io::Result<Vec<SocketAddr>> {
        self.fronts[1..]
            .iter()
            .map(|f| f.listener.local_addr())
            .collect()
    }

    /// Paces responses by a real server's front end (`--frontend-latency`) on every endpoint;
    /// call before serving.
    pub fn with_frontend(mut self, fe: Option<llm_emu_perf::FrontendLatency>) -> Server {
        for front in &mut self.fronts {
            Arc::get_mut(&mut front.state)
                .expect("the state is not shared before serving")
                .frontend = fe;
        }
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.fronts[0].listener.local_addr()
    }

    /// The CPU priority the engine thread got.
    pub fn engine_priority(&self) -> &thread_priority::PriorityGranted {
        &self.engine.handle.priority
    }

    /// The shared endpoint's state.
    pub fn state(&self) -> Arc<AppState> {
        self.fronts[0].state.clone()
    }

    /// What the accept loop has seen (connections accepted and open, accept errors, …).
    pub fn conn_stats(&self) -> Arc<ConnStats> {
        self.conn_stats.clone()
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets in-flight requests finish
    /// for up to the grace period, aborts the rest, closes the connections still open
    /// [`conn::ABORT_FLUSH`] later whatever their clients do, and stops the engine thread.
    /// Every front (the shared endpoint and each engine's port) stops together.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let mut fronts = tokio::task::JoinSet::new();
        for front in self.fronts {
            let edge = middleware::Edge {
                api_keys: middleware::ApiKeys::new(&self.opts.api_keys),
                max_body_bytes: self.opts.max_body_bytes,
                body_read_timeout: self.opts.conn.body_read_timeout,
                http: front.state.engine.metrics.http.clone(),
                plan: front.plan.clone(),
            };
            let mut app = middleware::wrap(routes::router(front.state.clone()), edge);
            if self.opts.access_log {
                // Outermost: refused requests (401, 413, …) are logged too.
                app = app.layer(axum::middleware::from_fn(access_log::log));
            }
            let mut stop = stop_rx.clone();
            let limits = self.opts.conn.clone();
            let stats = self.conn_stats.clone();
            let grace = self.opts.shutdown_grace;
            let handle = front.state.engine.clone();
            let delay = self.opts.startup_delay;
            fronts.spawn(async move {
                // vLLM binds its port first and listens once its engine is ready.
                let listener = tokio::select! {
                    l = front.listener.listen_after(delay) => l,
                    _ = stop.wait_for(|&s| s) => return 0,
                };
                let listener = match listener {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("llm-emu serve: cannot listen: {e}");
                        return 0;
                    }
                };
                let draining = conn::accept_until(listener, app, limits, stats, async move {
                    let _ = stop.wait_for(|&s| s).await;
                })
                .await;
                draining.drain(grace, move || handle.abort_all()).await
            });
        }
        let mut forced = 0;
        while let Some(r) = fronts.join_next().await {
            forced += r.unwrap_or(0);
        }
        if forced > 0 {
            eprintln!(
                "llm-emu serve: closed {forced} connection(s) still open after the grace period"
            );
        }
        let engine = self.engine;
        let _ = tokio::task::spawn_blocking(move || engine.shutdown()).await;
        Ok(())
    }
}

/// A socket bound to its address, listening or not yet (during a startup delay connections
/// to it are refused, as to vLLM's socket while its engine loads).
enum BoundSocket {
    Listening(tokio::net::TcpListener),
    NotYet(tokio::net::TcpSocket),
}

/// The listen backlog, as tokio's `TcpListener::bind` and uvicorn's default (2048 there;
/// the kernel caps both at `somaxconn`).
const LISTEN_BACKLOG: u32 = 1024;

impl BoundSocket {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            BoundSocket::Listening(l) => l.local_addr(),
            BoundSocket::NotYet(s) => s.local_addr(),
        }
    }

    /// Listens after `delay` (at once if it listens already).
    async fn listen_after(self, delay: Duration) -> std::io::Result<tokio::net::TcpListener> {
        match self {
            BoundSocket::Listening(l) => Ok(l),
            BoundSocket::NotYet(s) => {
                tokio::time::sleep(delay).await;
                s.listen(LISTEN_BACKLOG)
            }
        }
    }
}

/// Binds `host:port`, and listens on it if `listen_now`.
async fn bind_listener(host: &str, port: u16, listen_now: bool) -> Result<BoundSocket, ServeError> {
    let addr = format!("{host}:{port}");
    let fail = |source| ServeError::Bind {
        addr: addr.clone(),
        source,
    };
    if listen_now {
        return tokio::net::TcpListener::bind(&addr)
            .await
            .map(BoundSocket::Listening)
            .map_err(fail);
    }
    let sock_addr = tokio::net::lookup_host(&addr)
        .await
        .map_err(fail)?
        .next()
        .ok_or_else(|| fail(std::io::Error::other("the host resolves to no address")))?;
    let socket = if sock_addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(fail)?;
    socket.set_reuseaddr(true).map_err(fail)?;
    socket.bind(sock_addr).map_err(fail)?;
    Ok(BoundSocket::NotYet(socket))
}
